"""Vendor etcd's v3 API protos into proto/etcd/ (`python -m services.master.etcd.vendor_protos`).

Takes `etcdserverpb/rpc.proto`, `mvccpb/kv.proto` and `authpb/auth.proto` from the Go module
`go.etcd.io/etcd/api/v3` (downloaded through the Go module proxy with `go mod download`, or an unpacked module
given with `--module-dir`) and makes three changes, none of which changes a byte on the wire:
- drops the gogoproto and HTTP-gateway options and imports (they shape Go code and the JSON gateway only);
- moves the messages into packages under `sal.etcd.` so that they never clash, in one process, with another
  client's stubs of the same protos (aetcd registers `mvccpb.KeyValue` in the default descriptor pool);
- moves the services into `rpc_service.proto`, which keeps the package `etcdserverpb`: the method paths
  (`/etcdserverpb.KV/Range`) are what the server routes on.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PROTO_DIR = ROOT / "proto" / "etcd"
MODULE = "go.etcd.io/etcd/api/v3"
VERSION = "v3.5.29"  # the closest API to Debian's etcd-server 3.4.23 on the proxy (3.4 is not there)
# What the generated stubs import each other as (services/master/etcd/generate.py maps it to proto/etcd).
VIRTUAL = "services/master/etcd/gen"
PACKAGE_PREFIX = "sal.etcd."
SOURCES = {"rpc.proto": "etcdserverpb/rpc.proto", "kv.proto": "mvccpb/kv.proto", "auth.proto": "authpb/auth.proto"}

_GATEWAY_IMPORTS = re.compile(
    r'import "(gogoproto/gogo\.proto|google/api/annotations\.proto|protoc-gen-openapiv2/options/annotations\.proto)";'
    r"\n"
)
_SWAGGER = re.compile(
    r"option \(grpc\.gateway\.protoc_gen_openapiv2\.options\.openapiv2_swagger\) = \{.*?\n\};\n", re.S
)
_HTTP_OPTION = re.compile(r"\s*option \(google\.api\.http\) = \{(?:[^{}]|\{[^{}]*\})*\};")
_GOGO_FILE_OPTION = re.compile(r"option \(gogoproto\.[^;]*;\n")
_GOGO_FIELD_OPTION = re.compile(r"\s*\[\s*\(gogoproto\.[^\]]*\]")
_ETCD_IMPORT = re.compile(r'import "etcd/api/\w+/(\w+\.proto)";')
_PACKAGE = re.compile(r"^package (\w+);$", re.M)
_SERVICE = re.compile(r"^service \w+ \{\n.*?^\}\n\n?", re.M | re.S)
_RPC = re.compile(r"rpc (\w+)\((stream )?(\w+)\) returns \((stream )?(\w+)\)")
_FOR_GATEWAY_COMMENT = "// for grpc-gateway\n"


def header(source: str, change: str) -> str:
    """The comment every vendored file starts with: where it came from, its licence, what was changed."""
    return (
        f"// Vendored from {MODULE}@{VERSION} {source} (Copyright The etcd Authors,\n"
        "// Apache License 2.0: see LICENSE in this directory). Changed by services/master/etcd/vendor_protos.py:\n"
        f"// gogoproto and HTTP gateway options removed, {change}. The wire format is unchanged.\n\n"
    )


def strip(text: str) -> str:
    """Drop the Go-only and gateway-only imports and options, point etcd imports at the stubs' virtual path."""
    text = _GATEWAY_IMPORTS.sub("", text).replace(_FOR_GATEWAY_COMMENT, "")
    text = _SWAGGER.sub("", text)
    text = _HTTP_OPTION.sub("", text)
    text = _GOGO_FILE_OPTION.sub("", text)
    text = _GOGO_FIELD_OPTION.sub("", text)
    text = _ETCD_IMPORT.sub(lambda m: f'import "{VIRTUAL}/{m.group(1)}";', text)
    # An rpc whose only option went is `{\n  }`: write it as `{}`.
    text = re.sub(r"\{\s*\}", "{}", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    if "gogoproto" in text or "google.api" in text:
        raise ValueError("an option of gogoproto or the HTTP gateway survived the stripping")
    return text


def split_services(rpc: str) -> tuple[str, str]:
    """rpc.proto without its services, and rpc_service.proto holding them in package `etcdserverpb`."""
    services = _SERVICE.findall(rpc)
    if not services:
        raise ValueError("no service found in rpc.proto")
    messages = _SERVICE.sub("", rpc)
    package = _PACKAGE.search(rpc)
    assert package is not None
    qualified = f".{PACKAGE_PREFIX}{package.group(1)}."

    def qualify(m: re.Match[str]) -> str:
        return (
            f"rpc {m.group(1)}({m.group(2) or ''}{qualified}{m.group(3)}) "
            f"returns ({m.group(4) or ''}{qualified}{m.group(5)})"
        )

    body = "".join(_RPC.sub(qualify, s) for s in services)
    service_file = f'syntax = "proto3";\npackage {package.group(1)};\n\nimport "{VIRTUAL}/rpc.proto";\n\n{body}'
    return messages, service_file


def vendor(module_dir: Path, out: Path) -> list[Path]:
    """Write the stripped protos, the licence and a README under `out`, and return the files written."""
    out.mkdir(parents=True, exist_ok=True)
    texts = {name: strip((module_dir / source).read_text()) for name, source in SOURCES.items()}
    texts["rpc.proto"], services = split_services(texts["rpc.proto"])
    for name in SOURCES:
        texts[name] = _PACKAGE.sub(lambda m: f"package {PACKAGE_PREFIX}{m.group(1)};", texts[name], count=1)
    texts["rpc_service.proto"] = services
    written = []
    changes = {
        "rpc.proto": "package moved under `sal.etcd.`, services moved to rpc_service.proto",
        "rpc_service.proto": "messages named by their package under `sal.etcd.`",
    }
    for name, text in texts.items():
        source = SOURCES.get(name, SOURCES["rpc.proto"] + " (its services)")
        path = out / name
        path.write_text(header(source, changes.get(name, "package moved under `sal.etcd.`")) + text.rstrip() + "\n")
        written.append(path)
    shutil.copyfile(module_dir / "LICENSE", out / "LICENSE")
    (out / "README.md").write_text(
        f"# etcd's v3 API\n\nFrom the Go module `{MODULE}@{VERSION}` (etcd's own protos: `etcdserverpb/rpc.proto`,\n"
        "`mvccpb/kv.proto`, `authpb/auth.proto`; Apache License 2.0, see LICENSE), fetched through the Go module\n"
        "proxy and stripped of Go-only and HTTP-gateway options by `python -m services.master.etcd.vendor_protos`.\n"
        "The 3.5 API talks to Debian's etcd-server 3.4.23: fields a 3.4 server does not know are ignored.\n"
        "The stubs are generated from here by `python -m services.master.etcd.generate`. Do not edit by hand.\n"
    )
    return [*written, out / "LICENSE", out / "README.md"]


def download(version: str, cache: Path) -> Path:
    """Download the module through the Go module proxy into `cache` and return its directory."""
    env = {**os.environ, "GOMODCACHE": str(cache), "GOFLAGS": "-mod=mod"}
    done = subprocess.run(
        ["go", "mod", "download", "-json", f"{MODULE}@{version}"],
        env=env,
        cwd=cache,
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(json.loads(done.stdout)["Dir"])


def main() -> int:
    """Vendor the protos into proto/etcd/."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--module-dir", type=Path, help=f"an unpacked {MODULE}@{VERSION} (default: download it)")
    args = parser.parse_args()
    if args.module_dir:
        written = vendor(args.module_dir, PROTO_DIR)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            written = vendor(download(VERSION, Path(tmp)), PROTO_DIR)
            subprocess.run(["chmod", "-R", "u+w", tmp], check=True)  # the module cache is read-only
    for path in written:
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
