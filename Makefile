# Two commands on a fresh machine: `make run` and `make test`. Every target uses the
# project's own virtual environment (.venv), created on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ANALYSIS_STAMP := $(VENV)/.installed-analysis

.PHONY: install run test lint bench notebook clean distclean

# setup.py builds the per-node driver's compiled hot path (raysim/engine/_hotpath.pyx):
# editing it reinstalls, which rebuilds the extension in place.
$(STAMP): pyproject.toml setup.py raysim/engine/_hotpath.pyx
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# JupyterLab is only needed to open the notebooks (the tests execute them without it).
$(ANALYSIS_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,analysis]'
	touch $(ANALYSIS_STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/raysim sweep experiments/gossip_quick.toml --out results
	$(BIN)/raysim report results/gossip_quick

lint: $(STAMP)
	$(BIN)/ruff check raysim tests
	$(BIN)/lint-imports
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/raysim bench

notebook: $(ANALYSIS_STAMP)
	$(BIN)/jupyter lab analysis/

# Caches only: the virtual environment and every results/ directory are kept.
clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache
	find raysim tests -name __pycache__ -type d -prune -exec rm -rf {} +

# Everything `make` made, results included: says what it deletes first.
distclean: clean
	@if [ -d results ]; then \
	  echo "distclean: deleting results/ ($$(du -sh results | cut -f1)) and $(VENV)"; \
	else echo "distclean: deleting $(VENV)"; fi
	rm -rf $(VENV) results build raysim/engine/_hotpath.c raysim/engine/_hotpath.*.so
