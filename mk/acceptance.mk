# Acceptance tests: real Matrix client libraries against a real running Paigham server.
# Included by the main Makefile, which defines VENV (and STAMP, the editable install of the project).
#
#   make acceptance-deps   install what tests/acceptance needs (idempotent, fast when up to date)
#   make acceptance        run only the acceptance tests (both storage engines)
#
# What gets installed:
#   - Python: matrix-nio with E2EE. matrix-nio >= 0.26 uses vodozemac (manylinux wheels), so no
#     libolm / python-olm build is needed.
#   - Node: tests/acceptance/js via `npm ci` (matrix-js-sdk 43, its Rust crypto wasm, fake-indexeddb).
#   - Debian: nodejs + npm, only if `node` / `npm` are missing (apt-get, as root).

VENV ?= .venv
ACC_JS_DIR := tests/acceptance/js
ACC_PY_STAMP := $(VENV)/.acceptance-py-installed
ACC_JS_STAMP := $(ACC_JS_DIR)/node_modules/.acceptance-installed
ACC_PY_PKGS := 'matrix-nio[e2e]==0.26.0'
ACC_APT_STAMP := $(VENV)/.acceptance-apt-checked

.PHONY: acceptance-deps acceptance acceptance-sqlite acceptance-postgres

acceptance-deps: $(ACC_APT_STAMP) $(ACC_PY_STAMP) $(ACC_JS_STAMP)

# Debian packages: install only what is missing.
$(ACC_APT_STAMP): mk/acceptance.mk $(STAMP)
	@missing=""; \
	command -v node >/dev/null 2>&1 || missing="$$missing nodejs"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
		echo "acceptance-deps: installing Debian packages:$$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	@node -e 'const m = +process.versions.node.split(".")[0]; if (m < 20) { console.error("acceptance-deps: node " + process.version + " found; matrix-js-sdk 43 needs >= 20 (22 declared)"); process.exit(1); }'
	@touch $@

# Python client libraries into the project venv.
$(ACC_PY_STAMP): mk/acceptance.mk $(STAMP)
	$(VENV)/bin/pip install --quiet $(ACC_PY_PKGS)
	$(VENV)/bin/python -c "import nio, vodozemac; from nio.crypto import ENCRYPTION_ENABLED; assert ENCRYPTION_ENABLED, 'nio without E2EE'"
	@touch $@

# Node packages, exactly as locked.
$(ACC_JS_STAMP): $(ACC_JS_DIR)/package.json $(ACC_JS_DIR)/package-lock.json $(ACC_APT_STAMP)
	cd $(ACC_JS_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

acceptance: acceptance-deps
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/acceptance

acceptance-sqlite: acceptance-deps
	PAIGHAM_ACCEPTANCE_ENGINES=sqlite $(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/acceptance

acceptance-postgres: acceptance-deps
	PAIGHAM_ACCEPTANCE_ENGINES=postgres $(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/acceptance
