#!/bin/sh
# Regenerate the committed gRPC stubs pb/*.go from proto/worker.proto, without changing the proto (the `M`
# option gives it a Go package). Needs protoc (Debian: apt-get install protobuf-compiler) and the plugins
# at the versions below (go install ...@version puts them in $(go env GOPATH)/bin).
# tests/unit/test_go_stubs.py regenerates into a temporary folder and compares.
#   ./generate.sh           write pb/
#   ./generate.sh OUTDIR    write OUTDIR instead
set -eu
cd "$(dirname "$0")"
MOD=$(sed -n 's/^module //p' go.mod)
OUT=${1:-pb}
PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2
GOBIN_DIR=$(go env GOBIN 2>/dev/null || true)
[ -n "$GOBIN_DIR" ] || GOBIN_DIR="$(go env GOPATH 2>/dev/null || echo "$HOME/go")/bin"
PATH="$GOBIN_DIR:$PATH"
if [ "${INSTALL_PLUGINS:-}" = 1 ]; then
  go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
  go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
fi
mkdir -p "$OUT"
protoc --proto_path=../../proto \
  --go_out="$OUT" --go_opt=paths=source_relative,Mworker.proto="$MOD/pb" \
  --go-grpc_out="$OUT" --go-grpc_opt=paths=source_relative,Mworker.proto="$MOD/pb" \
  worker.proto
