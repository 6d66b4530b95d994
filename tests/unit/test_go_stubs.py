"""The Go worker's committed gRPC stubs (services/worker-go/pb) are what proto/worker.proto generates today."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from lab.paths import REPO_ROOT
from tests.conftest import require

GO_WORKER = REPO_ROOT / "services" / "worker-go"
TOOLS_BIN = REPO_ROOT / ".tools" / "bin"
HOW = "run `services/workers.sh codegen` (protoc from apt, the pinned Go plugins into .tools/bin)"


def without_protoc_version(text: str) -> list[str]:
    """The lines of a generated file but the `// - protoc vX` header line (the only one protoc/buf change)."""
    return [
        line
        for line in text.splitlines(keepends=True)
        if not line.startswith("// \tprotoc ") and not line.startswith("// - protoc ")
    ]


def test_regenerated_go_stubs_equal_the_committed_ones(tmp_path: Path) -> None:
    """Regenerating with generate.sh into a temporary folder gives the committed pb/*.go byte for byte, but
    for the protoc version line: a proto change without new stubs (or hand-edited stubs) fails here."""
    path = f"{TOOLS_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    missing = [
        tool for tool in ("protoc", "protoc-gen-go", "protoc-gen-go-grpc", "go") if not shutil.which(tool, path=path)
    ]
    require(f"{', '.join(missing)} (to regenerate the Go stubs)", not missing, HOW)
    out = tmp_path / "pb"
    done = subprocess.run(
        [str(GO_WORKER / "generate.sh"), str(out)],
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    committed = sorted(p.name for p in (GO_WORKER / "pb").glob("*.go"))
    assert committed and sorted(p.name for p in out.glob("*.go")) == committed
    for name in committed:
        want = (GO_WORKER / "pb" / name).read_text()
        got = (out / name).read_text()
        assert without_protoc_version(got) == without_protoc_version(want), f"{name} differs from a fresh generation"
