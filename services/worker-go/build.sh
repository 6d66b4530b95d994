#!/bin/sh
# Build the Go worker as a static binary: services/worker-go/bin/worker-go.
# Needs Go 1.26 or newer (go.mod); the module cache and the build cache are Go's own
# (GOMODCACHE, GOCACHE), so a second build takes about a second. No protoc: the stubs in pb/ are committed.
set -eu
cd "$(dirname "$0")"
mkdir -p bin
CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o bin/worker-go ./cmd/worker-go
echo "built $(pwd)/bin/worker-go"
