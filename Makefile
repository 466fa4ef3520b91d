# The two commands of the quick start: `make run` and `make test`.
# Both create .venv from the pinned lock file on first use; nothing else needs installing.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
# pytest workers: each starts its own embedded PostgreSQL and Airflow home; one per core here
TEST_WORKERS ?= 2
STAMP := $(VENV)/.installed

.PHONY: install run test lint format bench clean

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

run: install
	$(BIN)/ecom run

test: install
	$(BIN)/ruff check .
	# loadscope: a module's tests stay on one worker, so a module-scoped fixture runs once
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python -m ecom_insights.bench

clean:
	rm -rf $(VENV) .ecom
