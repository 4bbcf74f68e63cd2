# Paigham: `make run` starts a server on the embedded defaults; `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck services system-deps clean migration acceptance-deps unit coverage-doc bench

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/paigham serve

-include mk/acceptance.mk

# Paigham against Synapse (installed from PyPI into build/bench/synapse-venv on first use), same
# workloads, same database kind; writes docs/benchmarks.md. Options: BENCH_ARGS="--help".
BENCH_VENV := build/bench/venv
bench: $(STAMP)
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet -r bench/requirements.txt
	$(BENCH_VENV)/bin/python -m bench $(BENCH_ARGS)

# PostgreSQL and NATS must be up for the backend tests; start them if they are down.
services:
	@bash scripts/ensure-services.sh

# Debian packages whose real servers the tests drive (ClamAV's clamd, with a local signature file:
# no signature download; coturn's turnserver, started on loopback by tests/api/coturn.py), installed
# when missing (as root, as on CI machines).
SYSTEM_PKGS := clamav-daemon:/usr/sbin/clamd coturn:/usr/bin/turnserver
system-deps:
	@for spec in $(SYSTEM_PKGS); do pkg=$${spec%%:*}; bin=$${spec#*:}; \
	  if [ ! -x "$$bin" ]; then echo "installing Debian package $$pkg for the tests"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$pkg >/dev/null 2>&1 \
	    || { apt-get update >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive \
	         apt-get install -y --no-install-recommends $$pkg >/dev/null; } \
	    || echo "WARNING: could not install $$pkg" >&2; fi; done

test: $(STAMP) services acceptance-deps system-deps
	rm -f build/requests-*.jsonl
	$(PY) -m pytest -q -p no:cacheprovider

# Rewrite docs/api-coverage.md from the spec, the route table and the last test run's records.
coverage-doc: $(STAMP)
	$(PY) scripts/api_coverage.py

unit: $(STAMP)
	$(PY) -m pytest -q -m "not acceptance" -p no:cacheprovider

# The gate CI runs before the tests: lint, formatting, strict types, the import contracts (pyproject.toml).
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/mypy
	PYTHONPATH=src $(VENV)/bin/lint-imports

migration: $(STAMP)
	$(PY) scripts/regen_initial_migration.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
