# Set-up and checks. `make test` creates .venv if missing, installs the package with its dev
# extra into it, lints, and runs the whole test suite (offline).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: test lint format install clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install -e ".[dev]"
	touch $@

install: $(VENV)/.installed

lint: $(VENV)/.installed
	$(BIN)/ruff check talking_faces tests benchmarks
	$(BIN)/ruff format --check talking_faces tests benchmarks

format: $(VENV)/.installed
	$(BIN)/ruff check --fix talking_faces tests benchmarks
	$(BIN)/ruff format talking_faces tests benchmarks

test: lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
