# The README's two set-up commands are `make demo` and `make test`; .ci/run calls `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install system-deps demo test lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Debian packages the tests need: chromium drives the dashboard's end-to-end test.
system-deps:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not found and no apt-get: the dashboard browser test will be skipped"; fi; \
	fi

# The main job: simulated clusters, the hub and the six-step story, checked (docs/demo.md).
demo: $(STAMP)
	$(BIN)/hub demo

lint: $(STAMP)
	$(BIN)/ruff check hub generators clusters tests bench
	$(BIN)/ruff format --check hub generators clusters tests bench
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) system-deps lint typecheck
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python bench/sim_server.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
