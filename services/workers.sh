#!/usr/bin/env bash
# Toolchains and builds of the Go and Java workers (`make workers`, `make setup`).
#
#   services/workers.sh build        build both: services/worker-go/bin/worker-go, services/worker-java/target/
#   services/workers.sh build go     one of them
#   services/workers.sh test         their own unit tests: go test, mvn test (`make test` runs them)
#   services/workers.sh codegen      also protoc and the Go plugins, for the stubs' regenerate-and-compare test
#   services/workers.sh check        say what is missing, build nothing
#
# Needs Go >= 1.26 and a JDK >= 17 with Maven 3.8+. As root (or with sudo) on Debian/Ubuntu it installs the JDK,
# Maven and protoc with apt; an older Go (>= 1.21) fetches Go 1.26 itself through its module proxy
# (GOTOOLCHAIN). Go 1.26 itself must otherwise come from the Go project's own downloads: this says so.
# With BEST_EFFORT=1 a missing toolchain is a warning (the Python system runs without these workers).
set -euo pipefail
cd "$(dirname "$0")/.."

GO_MIN=1.26
GO_TOOLCHAIN=go1.26.8
PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2
TOOLS_BIN="$PWD/.tools/bin" # the protoc plugins, kept out of the user's own Go bin

if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO=sudo; else SUDO=none; fi

say() { echo "workers: $*" >&2; }

fail() { # a missing toolchain: the end (exit 1), or with BEST_EFFORT=1 a warning and return 1 (skip this worker)
  if [ "${BEST_EFFORT:-}" = 1 ]; then
    say "warning: $* (skipped: the Python workers run without it)"
    return 1
  fi
  say "$*"
  exit 1
}

apt_install() { # apt_install PACKAGE...: install with apt, or say which to install
  if [ "$SUDO" = none ] || ! command -v apt-get >/dev/null; then
    fail "missing: $*; install them with your package manager (Debian/Ubuntu: apt-get install $*)"
    return 1
  fi
  say "installing $*"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

version_at_least() { # version_at_least HAVE WANT
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}

GO=""
go_version() { GOTOOLCHAIN=local "$1" env GOVERSION 2>/dev/null | sed 's/^go//'; }

pick_go() { # sets GO to the newest usable go among the usual places; GOTOOLCHAIN when it must switch
  local candidate have best="" best_version=0
  for candidate in "$(command -v go || true)" /usr/local/go/bin/go /usr/lib/go/bin/go "$HOME/go/bin/go" \
    "$HOME/sdk/go/bin/go"; do
    [ -n "$candidate" ] && [ -x "$candidate" ] || continue
    have=$(go_version "$candidate")
    if version_at_least "${have:-0}" "$best_version"; then best=$candidate; best_version=${have:-0}; fi
  done
  [ -n "$best" ] || return 1
  GO=$best
  version_at_least "$best_version" "$GO_MIN" && return 0
  # Go 1.21+ downloads a newer toolchain itself, through the module proxy it already uses.
  version_at_least "$best_version" 1.21 && export GOTOOLCHAIN="$GO_TOOLCHAIN" && "$GO" version >/dev/null 2>&1
}

find_go() { # sets GO to the go binary that builds the workers, installing one with apt if there is none
  pick_go && return 0
  if [ -z "$GO" ] && [ "$SUDO" != none ] && command -v apt-get >/dev/null; then
    # Ubuntu 24.04's Go (1.22) can fetch 1.26 itself; Debian 12's (1.19) cannot.
    apt_install golang-go || return 1
    pick_go && return 0
  fi
  if [ -z "$GO" ]; then
    fail "Go $GO_MIN or newer is missing: install it from the Go project's downloads (go.dev/dl) into /usr/local/go"
  else
    fail "Go $(go_version "$GO") at $GO is too old: the Go worker needs Go $GO_MIN or newer (go.dev/dl, into /usr/local/go)"
  fi
}

need_java() {
  local have
  have=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p' || true)
  if ! command -v javac >/dev/null || ! version_at_least "${have:-0}" 17; then
    apt_install openjdk-17-jdk-headless || return 1
  fi
  command -v mvn >/dev/null || apt_install maven
}

build_go() {
  find_go || return 0
  say "building the Go worker with $("$GO" version | cut -d' ' -f3)"
  PATH="$(dirname "$GO"):$PATH" services/worker-go/build.sh
}

build_java() {
  need_java || return 0
  say "building the Java worker with Java $(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.version = //p')"
  SKIP_TESTS="${SKIP_TESTS:-1}" services/worker-java/build.sh
}

test_go() {
  find_go || return 0
  say "Go worker: go test ./..."
  (cd services/worker-go && CGO_ENABLED=0 "$GO" test ./...)
}

test_java() {
  need_java || return 0
  say "Java worker: mvn test"
  (cd services/worker-java && mvn -B -q -Dstyle.color=never test)
}

codegen() { # protoc from the distribution, the Go plugins at pinned versions into .tools/bin
  command -v protoc >/dev/null || apt_install protobuf-compiler || return 0
  find_go || return 0
  mkdir -p "$TOOLS_BIN"
  [ -x "$TOOLS_BIN/protoc-gen-go" ] || GOBIN="$TOOLS_BIN" "$GO" install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
  [ -x "$TOOLS_BIN/protoc-gen-go-grpc" ] || GOBIN="$TOOLS_BIN" "$GO" install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
}

check() {
  BEST_EFFORT=1 SUDO=none find_go 2>/dev/null && say "Go: $("$GO" version | cut -d' ' -f3) ($GO)" || say "Go $GO_MIN+: missing (go.dev/dl)"
  command -v javac >/dev/null && say "JDK: $(javac -version 2>&1)" || say "JDK 17+: missing (apt-get install openjdk-17-jdk-headless)"
  command -v mvn >/dev/null && say "Maven: $(mvn -B -v 2>/dev/null | head -n1 | sed 's/\x1b\[[0-9;]*m//g')" || say "Maven: missing (apt-get install maven)"
  command -v protoc >/dev/null && say "protoc: $(protoc --version)" || say "protoc: missing (apt-get install protobuf-compiler; tests only)"
}

case "${1:-build}" in
  build)
    case "${2:-all}" in
      go) build_go ;;
      java) build_java ;;
      all) build_go; build_java ;;
      *) say "unknown worker ${2}; known: go, java"; exit 2 ;;
    esac ;;
  test)
    case "${2:-all}" in
      go) test_go ;;
      java) test_java ;;
      all) test_go; test_java ;;
      *) say "unknown worker ${2}; known: go, java"; exit 2 ;;
    esac ;;
  codegen) codegen ;;
  check) check ;;
  *) say "usage: services/workers.sh build|test [go|java] | codegen | check"; exit 2 ;;
esac
