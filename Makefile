# One command to start the system (`make up`), one to run the tests (`make test`).
# Both do all set-up first (`make setup`, idempotent): system packages via apt when run as
# root or with sudo, a virtual environment in .venv, the Python and npm packages.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
WEB := services/web
STAMP := $(VENV)/.installed
# `make up ARGS="--workers 4 --work-seconds 2"` passes options to `lab up`.
ARGS ?=
# `make test PYTEST_ARGS="-k gemini"` narrows the suite.
PYTEST_ARGS ?=
# `make up WORKERS=python=2,go=2,java=2` starts a fleet of any mix (a bare number: Python workers).
WORKERS ?=
# The Go and Java workers (services/workers.sh): built by `make setup` where their toolchains are or can be
# installed, else skipped with a warning; `make workers` and CI insist.
GO_WORKER := services/worker-go/bin/worker-go
JAVA_WORKER := services/worker-java/target/worker-java.jar
GO_SOURCES := $(shell find services/worker-go -name '*.go' -not -path '*/bin/*' 2>/dev/null) services/worker-go/go.mod services/worker-go/go.sum
JAVA_SOURCES := $(shell find services/worker-java/src -type f 2>/dev/null) services/worker-java/pom.xml proto/worker.proto
STRICT := $(if $(CI),,BEST_EFFORT=1)

# Run apt-get as root, through sudo, or not at all (then say what is missing).
SUDO := $(shell if [ "$$(id -u)" = 0 ]; then echo; elif command -v sudo >/dev/null; then echo sudo; else echo none; fi)

.PHONY: help setup setup-test system-packages test-packages up up-all workers workers-if-possible codegen-tools notebooks test bench lint unit integration conformance proto clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

setup: system-packages $(STAMP) $(WEB)/node_modules/.package-lock.json workers-if-possible ## install everything `make up` needs (idempotent)

setup-test: setup test-packages codegen-tools ## everything `make test` needs too (Chromium, a Docker engine, ip, mosquitto_sub, protoc)

up: setup ## start Mosquitto, the master and 2 Python workers; chat on http://127.0.0.1:8888
	$(VENV)/bin/lab up $(if $(WORKERS),--workers $(WORKERS)) $(ARGS)

up-all: setup ## like `make up`, with the original system's fleet: 2 Python, 2 Go and 2 Java workers
	$(VENV)/bin/lab up --workers python=2,go=2,java=2 $(ARGS)

workers: ## build the Go and Java workers (installs JDK 17, Maven and, where it can, Go 1.26)
	$(MAKE) --no-print-directory $(GO_WORKER) $(JAVA_WORKER) STRICT=

# Outside CI a missing toolchain is a warning: the Python workers need none of this.
workers-if-possible:
	@$(MAKE) --no-print-directory $(GO_WORKER) $(JAVA_WORKER)

$(GO_WORKER): $(GO_SOURCES)
	$(STRICT) services/workers.sh build go

$(JAVA_WORKER): $(JAVA_SOURCES)
	$(STRICT) services/workers.sh build java

# protoc and the pinned Go plugins, for the test that regenerates the Go stubs and compares them.
codegen-tools:
	@$(STRICT) services/workers.sh codegen

# `make notebooks PORT=8891` when 8890 is taken. Only a PORT given on make's command line counts: a PORT
# variable in the environment is often some other program's.
NOTEBOOKS_PORT := $(if $(filter command line,$(origin PORT)),$(PORT),8890)
# JupyterLab refuses to run as root unless told (a root shell in a container or VM is common here).
notebooks: setup ## open the lab's notebooks in JupyterLab on http://127.0.0.1:8890 (8888 is the chat's; PORT=P for another)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks --ip=127.0.0.1 --port=$(NOTEBOOKS_PORT) --no-browser $(if $(filter 0,$(shell id -u)),--allow-root)

test: setup-test lint ## run the whole test suite (unit, integration, conformance, browser, notebooks, stack)
	$(STRICT) services/workers.sh test
	$(PY) -m pytest $(PYTEST_ARGS)

# Each test folder is a marker (tests/conftest.py): unit, integration, browser, notebooks, netns, engine,
# conformance.
unit: setup ## run the unit tests only (no processes, under a minute)
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

integration: setup-test ## run the integration tests only (real Mosquitto, master and workers; minutes)
	$(PY) -m pytest -m integration $(PYTEST_ARGS)

conformance: setup-test ## run the worker conformance suite for Python, Go and Java (CONFORMANCE_WORKERS=go for one)
	$(PY) -m pytest -m conformance $(PYTEST_ARGS)

bench: setup-test ## run the benchmark suite one after another (~20 min); figures and charts to data/bench/
	$(VENV)/bin/lab bench overhead
	for n in 1 2 4 8; do $(VENV)/bin/lab bench throughput --workers $$n || exit 1; done
	$(VENV)/bin/lab bench saturation
	$(VENV)/bin/lab bench registration
	$(VENV)/bin/lab bench scale
	$(VENV)/bin/lab bench peer --workers 4 --clients 50
	$(VENV)/bin/lab bench languages
	$(VENV)/bin/lab bench baseline

lint: setup ## ruff, mypy and the layer rules (import-linter contracts in pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

proto: setup ## regenerate the gRPC stubs from proto/ (ours, and etcd's API for the master's etcd client)
	$(PY) -m services.protocol.generate
	$(PY) -m services.master.etcd.generate

clean: ## remove the virtual environment, node_modules and the workers' builds
	rm -rf $(VENV) $(WEB)/node_modules .mypy_cache .ruff_cache .pytest_cache .tools services/worker-go/bin services/worker-java/target

# -- set-up steps -------------------------------------------------------------------------------------
define apt_install
	@missing=""; for pair in $(1); do cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  if ! eval "$$cmd" >/dev/null 2>&1; then missing="$$missing $$pkg"; fi; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$(SUDO)" = none ]; then \
	    echo "missing system packages:$$missing; install them with: apt-get install$$missing" >&2; exit 1; fi; \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null && \
	  if [[ " $$missing " == *" mosquitto "* ]] && command -v systemctl >/dev/null && systemctl is-active -q mosquitto 2>/dev/null; then \
	    echo "stopping the system mosquitto service: lab runs its own broker on port 1883"; \
	    $(SUDO) systemctl disable --now mosquitto >/dev/null 2>&1 || true; fi; \
	fi
endef

system-packages:
	$(call apt_install,"command -v mosquitto || test -x /usr/sbin/mosquitto:mosquitto" "$(PYTHON) -c 'import ensurepip':python3-venv" "command -v npm:npm")

test-packages:
	$(call apt_install,"test -x /usr/bin/chromium:chromium" "command -v mosquitto_sub:mosquitto-clients" "command -v ip:iproute2" "command -v unshare:util-linux" "command -v docker:docker.io" "command -v dockerd || test -x /usr/sbin/dockerd:docker.io" "command -v debootstrap || test -x /usr/sbin/debootstrap:debootstrap" "command -v docker-registry:docker-registry" "command -v nft || test -x /usr/sbin/nft:nftables" "command -v redis-server:redis-server" "command -v etcd:etcd-server" "command -v etcdctl:etcd-client" "command -v haproxy || test -x /usr/sbin/haproxy:haproxy")

# pyproject.toml's extras are by role: dev is the test tools and the lab, which has the master's and the worker's.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,notebooks,bench]'
	touch $@

$(WEB)/node_modules/.package-lock.json: $(WEB)/package.json $(WEB)/package-lock.json
	cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error
