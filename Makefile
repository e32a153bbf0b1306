# Every target bootstraps .venv itself, so a fresh clone needs nothing but python3.
# `make run` installs what running needs; lint, test and bench add the development tools.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
# Extra arguments for `plaid-bridge dev`, e.g. make run ARGS="--port 8400 --emulator-port 8500"
ARGS ?=
# Line and branch coverage of src/plaid_bridge (the emulator aside). With PostgreSQL (and Redis),
# as CI runs the suite, the floor is 90% (91.44% when it was set); without them their code stays
# unrun, so a run on SQLite alone is held to a lower floor.
COVERAGE_FLOOR ?= $(if $(TEST_DATABASE_URL),90,80)
# constraints.txt pins every package (runtime and dev) to the tested versions; `make lock`
# regenerates it from pyproject.toml with pip-tools, in a throwaway venv.
LOCK_VENV := .lock-venv
PIP_TOOLS := pip-tools==7.6.2

.PHONY: run reset test lint bench install lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e .
	touch $(RUN_STAMP)

$(DEV_STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(RUN_STAMP) $(DEV_STAMP)

install: $(DEV_STAMP)

run: $(RUN_STAMP)
	$(BIN)/plaid-bridge dev $(ARGS)

# The development database and the emulator's state, removed: the next start begins empty.
reset: $(RUN_STAMP)
	$(BIN)/plaid-bridge reset

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest --cov --cov-report=term --cov-fail-under=$(COVERAGE_FLOOR)

bench: $(DEV_STAMP)
	$(BIN)/python -m benchmarks

lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet $(PIP_TOOLS)
	CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile --quiet --upgrade \
		--extra dev --strip-extras --no-emit-index-url --no-emit-find-links \
		--output-file constraints.txt pyproject.toml
	rm -rf $(LOCK_VENV)

clean:
	rm -rf $(VENV) $(LOCK_VENV) var .pytest_cache .mypy_cache .ruff_cache .grimp_cache .import_linter_cache .coverage
