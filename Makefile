# Hej CTI. Needs only Python 3.11+ and make; everything else goes into .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install run demo test lint bench extension clean

help: ## this list
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Hej CTI needs Python 3.11 or newer; set PYTHON=python3.x")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint]'
	@touch $(STAMP)

install: $(STAMP) ## make .venv and install the project with its test and lint tools

run: $(STAMP) ## serve on http://127.0.0.1:8080 (embedded PostgreSQL in .hejcti/ unless HEJCTI_DATABASE_URL is set)
	$(BIN)/hejcti serve

demo: $(STAMP) ## one simulated call end to end, printing what the extension receives
	$(BIN)/hejcti demo

test: $(STAMP) ## the whole test suite against a real PostgreSQL (HEJCTI_TEST_DATABASE_URL, else embedded)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP) ## ruff and the import-linter contracts that keep the layers apart
	$(BIN)/ruff check .
	$(BIN)/lint-imports

bench: $(STAMP) ## the benchmark: Hej CTI against a bare aiohttp baseline; writes BENCHMARKS.md
	$(BIN)/python -m bench

extension: ## zip the browser extension for the store (its manifest without "key"): build/hejcti-extension.zip
	$(PYTHON) tools/extension_zip.py build/hejcti-extension.zip

clean: ## remove .venv and caches (keeps .hejcti/, your data)
	rm -rf $(VENV) .pytest_cache .ruff_cache
