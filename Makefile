# Entry points (see README): `make demo`, `make test`, `make bench`. Each creates .venv when missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"

demo: install
	$(BIN)/fhe-estimators demo

# Extra pytest arguments, e.g. make test PYTEST_ARGS="--junitxml=junit.xml" (.ci/run does).
PYTEST_ARGS ?=

test: install-test
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Full benchmark (about an hour): writes benchmarks/results/RESULTS.md and pareto.png.
bench: install-test
	$(BIN)/fhe-estimators bench --measure-pbs-costs

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
