# Set-up is one locked `uv sync` into .venv; uv's cache (~/.cache/uv) keeps the wheels,
# torch's included, so a second set-up (or a fresh clone) downloads nothing.
PYTHON ?= python3
UV := $(PYTHON) -m uv
VENV := .venv
SYNCED := $(VENV)/.synced

.PHONY: setup run test lint bench
setup: $(SYNCED)

$(SYNCED): pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --user --quiet uv
	$(UV) sync --frozen --quiet
	@touch $@

# The main job on the embedded default: the default dataset (256 trials × 2 s), cached.
run: setup
	$(VENV)/bin/descartes-agent simulate --out data/default --force

test: setup lint
	$(VENV)/bin/python -m pytest

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	$(VENV)/bin/python benchmarks/bench_simulator.py
