# Set-up is one locked `uv sync` into .venv; uv's cache (~/.cache/uv) keeps the wheels,
# torch's included, so a second set-up (or a fresh clone) downloads nothing.
PYTHON ?= python3
UV := $(PYTHON) -m uv
VENV := .venv
SYNCED := $(VENV)/.synced

.PHONY: setup run test lint bench sandbox-tools report-tools
setup: $(SYNCED)

$(SYNCED): pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --user --quiet uv
	$(UV) sync --frozen --quiet --compile-bytecode
	@touch $@

# The main job on the embedded default: the search loop, offline architect, tiny data, CPU.
run: setup sandbox-tools
	$(VENV)/bin/descartes-agent run --preset quick

test: setup lint sandbox-tools report-tools
	$(VENV)/bin/python -m pytest

# The process sandbox isolates fully with bubblewrap; the docker sandbox's image is built
# with debootstrap. As root (CI), install both from Debian when missing.
sandbox-tools:
	@for tool in bwrap:bubblewrap debootstrap:debootstrap; do \
		cmd=$${tool%%:*}; pkg=$${tool##*:}; \
		command -v $$cmd >/dev/null 2>&1 || [ -x /usr/sbin/$$cmd ] || [ "$$(id -u)" != 0 ] || \
			apt-get install -y -qq $$pkg >/dev/null 2>&1 || \
			{ apt-get update -qq >/dev/null && apt-get install -y -qq $$pkg >/dev/null; } || true; \
	done
	@command -v bwrap >/dev/null 2>&1 || \
		echo "bubblewrap missing: --sandbox process stops (docker, or --allow-degraded, still run)"

# The report's test renders it in headless Chromium; as root (CI), install Debian's package.
report-tools:
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
		apt-get install -y -qq chromium >/dev/null 2>&1 || \
		{ apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null; } || true
	@command -v chromium >/dev/null 2>&1 || \
		echo "chromium missing: the report's rendering test is skipped outside CI"

lint: setup
	$(VENV)/bin/ruff check .

# Each benchmark prints ratios against a named peer measured in the same run.
bench: setup
	$(VENV)/bin/python benchmarks/bench_simulator.py
	$(VENV)/bin/python benchmarks/bench_training.py
	$(VENV)/bin/python benchmarks/bench_sandbox.py
