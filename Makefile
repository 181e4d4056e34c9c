# The README's two set-up commands are `make demo` and `make test`; .ci/run calls `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The main job. For now: three simulated clusters and a kubeconfig to reach them.
demo: $(STAMP)
	$(BIN)/hub sim serve --clusters 3 --names dev,staging,prod --kubeconfig-out sim.kubeconfig

lint: $(STAMP)
	$(BIN)/ruff check hub generators clusters tests bench
	$(BIN)/ruff format --check hub generators clusters tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) lint typecheck
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python bench/sim_server.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
