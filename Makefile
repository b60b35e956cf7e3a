# Two commands: `make run` starts the product, `make test` runs the suite.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: run test lint bench soak setup clean

setup: $(STAMP) $(NODE_STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	mkdir -p webclient/vendor
	cp node_modules/mqtt/dist/mqtt.esm.js webclient/vendor/mqtt.esm.js
	touch $@

run: setup
	$(PY) -m devhost

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

test: setup lint
	$(PY) -m pytest

bench: setup
	$(PY) -m bench

# Not in `make test`: 30 minutes of mixed load (SOAK_SECONDS to change it); writes BENCHMARKS.md's Soak section.
soak: setup
	$(PY) -m bench.soak

clean:
	rm -rf $(VENV) node_modules .data .pytest_cache .mypy_cache .ruff_cache
