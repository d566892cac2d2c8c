# One entry point for people and CI. Everything installs into .venv from nothing.
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch for CI and laptops; on a GPU machine set TORCH_SPEC= to keep your own torch.
TORCH_SPEC ?= torch==2.13.0
# Test workers: one per core, at most 4 (each holds its own torch); TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= auto

.PHONY: install test lint demo bench clean

$(VENV)/.installed: pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(if $(TORCH_SPEC),$(PY) -m pip install -q "$(TORCH_SPEC)")
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) --maxprocesses 4 --dist loadfile

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/lint-imports

demo: install
	$(VENV)/bin/flowrl train --overwrite

bench: install
	$(PY) benchmarks/attention.py

clean:
	rm -rf $(VENV) .pytest_cache
