# YMERA developer commands. Only Python 3.11+ is needed; everything else is installed here.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast bench lint fmt typecheck clean install

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# YMERA_SEMANTIC=1 adds the `semantic` extra (torch's CPU build first, so pip never
# fetches a CUDA one).
SEMANTIC_STAMP := $(VENV)/.installed-semantic
ifeq ($(YMERA_SEMANTIC),1)
INSTALLED := $(STAMP) $(SEMANTIC_STAMP)
else
INSTALLED := $(STAMP)
endif

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(SEMANTIC_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --quiet 'torch==2.13.0'
	$(BIN)/python -m pip install --quiet -e '.[dev,semantic]'
	touch $(SEMANTIC_STAMP)

install: $(INSTALLED)

## run: start the server on the embedded defaults (SQLite in ./.ymera, in-process bus)
run: $(INSTALLED)
	$(BIN)/ymera serve

## test: lint, type-check and run the whole suite (SQLite + PostgreSQL, memory bus + Redis)
test: $(INSTALLED)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy src
	$(BIN)/pytest -n 2 --dist loadgroup --durations=15

## test-fast: the suite without lint, on one process
test-fast: $(INSTALLED)
	$(BIN)/pytest -x -q

## bench: the benchmarks in bench/ (installs the bench extra: Celery for the comparison)
bench: $(INSTALLED)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench

lint: $(INSTALLED)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy src

fmt: $(INSTALLED)
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
