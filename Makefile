# Two commands on a fresh machine: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

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

clean:
	rm -rf $(VENV) results .pytest_cache .mypy_cache .ruff_cache
