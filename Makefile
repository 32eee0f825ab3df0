# neurodeploy: the two commands a new user needs are `make demo` and `make test`.
# Both set up the environments first (.ci/setup-env: fast when nothing changed).

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON := .venv/bin/python
RUFF := .venv/bin/ruff
ARGS ?=
PYTEST_ARGS ?=

.PHONY: help env demo test lint deps pytest clean-env

help:
	@echo "neurodeploy"
	@echo "  make demo        set up, then run the end-to-end job (train, export NIR, quantize,"
	@echo "                   run on Lava and the event simulator, verify); options: ARGS=\"...\""
	@echo "  make test        set up, then ruff check and pytest; options: PYTEST_ARGS=\"...\""
	@echo "  make env         set up .venv (Python 3.11, torch) and .venv-lava (Python 3.10, Lava)"
	@echo "  make lint        set up, then ruff check and the import layers (lint-imports)"
	@echo "  make deps        set up, then print the package dependency graph (core < ... < targets)"
	@echo "  make pytest      set up, then pytest only; options: PYTEST_ARGS=\"...\""
	@echo "  make clean-env   delete both environments"

env:
	@bash .ci/setup-env

demo: env
	$(PYTHON) -m targets.end_to_end $(ARGS)

# ruff, then the import layers (core < models < convert < train < targets; pyproject.toml).
lint: env
	$(RUFF) check .
	.venv/bin/lint-imports --no-cache

deps: env
	$(PYTHON) .ci/deps.py

# pytest's exit code 5 means it ran no test at all: that is a failure here, not a pass.
pytest: env
	@rc=0; $(PYTHON) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then \
		echo "neurodeploy: FAIL: pytest ran no tests (exit code 5); check PYTEST_ARGS and tests/" >&2; \
		exit 1; \
	fi; \
	exit $$rc

test: lint pytest

clean-env:
	rm -rf .venv .venv-lava
