# One command to set up and run, one to test. The venv is rebuilt when pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Test files run in two processes (one per core here); a file's tests stay together in one of them.
PYTEST_ARGS ?= -n 2 --dist loadfile

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/seqcast run $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check seqcast flows tests benchmarks deployments
	$(BIN)/ruff format --check seqcast flows tests benchmarks deployments
	$(BIN)/mypy

bench: $(STAMP)  # long: accuracy (M1, development, bundled series), scale (100 to 5,000 series), ingest
	$(BIN)/python benchmarks/accuracy.py
	$(BIN)/python benchmarks/scale.py
	$(BIN)/python benchmarks/ingest.py

clean:
	rm -rf $(VENV) seqcast-data
