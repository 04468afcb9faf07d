# no2fusion — the two commands a newcomer runs: `make demo` and `make test`.
# Idempotent: the venv is created once; installs are skipped when the stamp is newer than pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_VERSION := 2.13.0
# make demo uses a two-year world and a small model so three models train in minutes on a
# 2-core CPU; config/default.yaml holds the seed's full values (make demo CONFIG=config/default.yaml).
CONFIG ?= config/demo.yaml
OUTPUT ?= outputs

.PHONY: install demo test lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip

# torch first: pip install torch==2.13.0 takes the local CPU build; installing it after its
# dependents would pull the registry's newest CUDA build (gigabytes).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/python main.py --mode full --config $(CONFIG) --output $(OUTPUT)

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check src tests benchmarks main.py
	$(BIN)/ruff format --check src tests benchmarks main.py

typecheck: install
	$(BIN)/mypy src

# every benchmark of BENCHMARKS.md in order (about 25 min); benchmarks/run_all.py --list shows them
bench: install
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) outputs .pytest_cache .mypy_cache .ruff_cache
