# Quick start: `make run` (set up + run the embedded default) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SPEC ?= benchmark_specs/quickstart.yaml
OUTPUT ?= results/quickstart

.PHONY: setup run test clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# Pinned CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

run: setup
	$(BIN)/knowundo-bench run $(SPEC) --output $(OUTPUT)

test: setup
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) results .pytest_cache
