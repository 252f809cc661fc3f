# waypost — `make dev` runs it, `make test` tests it. Both set up what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev dev-once test lint types imports unit integration deps venv schema clean faults

# The server binaries of PostgreSQL (Debian's package) for the embedded database,
# Debian's chromium for the UI's browser test (Playwright's own browser
# download is not used: tests/ui drives /usr/bin/chromium), and Debian's PgBouncer
# for the transaction-pooling test (tests/integration/test_pgbouncer.py).
deps:
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; missing=; \
	if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ -z "$$WAYPOST_PG_BIN" ]; then \
	  missing="$$missing postgresql"; fi; \
	if [ ! -x /usr/bin/chromium ]; then missing="$$missing chromium"; fi; \
	if [ ! -x /usr/sbin/pgbouncer ]; then missing="$$missing pgbouncer"; fi; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing …"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "waypost needs Python >= 3.11, found " + sys.version' 
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,operator,test]'
	@touch $(STAMP)

venv: $(STAMP)

dev: deps venv
	$(BIN)/waypost dev --examples

dev-once: deps venv
	$(BIN)/waypost dev --examples --once

lint: venv
	$(BIN)/ruff check operator tests examples e2e bench

types: venv
	$(BIN)/mypy operator/waypost

imports: venv
	$(BIN)/lint-imports

test: deps venv lint types imports chart-lint
	WAYPOST_HELM="$$(charts/tools/ensure-helm)" WAYPOST_PROMTOOL="$$(tools/ensure promtool)" \
	  WAYPOST_JAEGER="$$(tools/ensure jaeger)" WAYPOST_PROMETHEUS="$$(tools/ensure prometheus)" \
	  $(BIN)/python -m pytest tests -q -p no:cacheprovider

# The fault suite (docs/reliability.md): Postgres restarted and cut mid-COMMIT, the
# engine SIGKILLed and SIGTERMed, a runner frozen past its lease, each scenario ending
# with the invariant check. 10-25 minutes; `.ci/run` runs it after `make test`.
# FAULTS_ARGS for pytest flags (e.g. -k sigterm); WAYPOST_FAULT_REPORT=file collects
# each scenario's figures as JSON lines.
FAULTS_ARGS ?=
faults: deps venv
	$(BIN)/python -m pytest tests/faults --faults -v -p no:cacheprovider --timeout=1200 $(FAULTS_ARGS)

schema: deps venv
	$(BIN)/python -m waypost.store.dump_schema > operator/waypost/store/schema.sql

clean:
	rm -rf $(VENV) .waypost .mypy_cache .ruff_cache

# Benchmarks against pgqueuer and procrastinate on a durable Postgres of its own
# (docs/benchmarks.md). Not part of `make test`. BENCH_QUICK=1 for a
# smoke run; BENCH_ARGS for flags (python -m bench --help).
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(BIN)/pip install -q -e '.[dev,operator,test,bench]'
	@touch $(BENCH_STAMP)

.PHONY: bench
bench: deps $(BENCH_STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

include e2e/e2e.mk
include charts/chart.mk
include tools/tools.mk

# The UI's vendored scripts (docs/ui.md): fetched from npm with `npm pack`, the
# files copied into the package and their versions and sha256 recorded in
# static/VENDORED.json (tests/unit/test_ui_assets.py checks the two agree).
# Run it only to upgrade; the built files are committed, so the UI needs no network.
HTMX_VERSION := 2.0.11
HTMX_SSE_VERSION := 2.2.4
UI_STATIC := operator/waypost/coordinator/static
# The UI's browser test alone (it also runs in `make test`): Playwright drives
# Debian's chromium against `waypost dev`. ui-screenshots also rewrites docs/ui/*.png.
.PHONY: ui-test ui-screenshots
ui-test: deps venv
	$(BIN)/python -m pytest tests/ui -q -p no:cacheprovider

ui-screenshots: deps venv
	WAYPOST_UI_SCREENSHOTS=docs/ui $(BIN)/python -m pytest tests/ui -q -p no:cacheprovider

.PHONY: ui-assets
ui-assets:
	@tmp=$$(mktemp -d) && cd $$tmp && \
	  npm pack -q htmx.org@$(HTMX_VERSION) htmx-ext-sse@$(HTMX_SSE_VERSION) >/dev/null && \
	  tar xzf htmx.org-$(HTMX_VERSION).tgz package/dist/htmx.min.js package/LICENSE && \
	  cp package/dist/htmx.min.js $(CURDIR)/$(UI_STATIC)/htmx.min.js && \
	  cp package/LICENSE $(CURDIR)/$(UI_STATIC)/LICENSE.htmx && rm -rf package && \
	  tar xzf htmx-ext-sse-$(HTMX_SSE_VERSION).tgz package/dist/sse.js && \
	  cp package/dist/sse.js $(CURDIR)/$(UI_STATIC)/sse.js && cd $(CURDIR) && rm -rf $$tmp
	$(PYTHON) -c 'import hashlib, json, pathlib; d = pathlib.Path("$(UI_STATIC)"); \
	  files = {"htmx.min.js": ("htmx.org", "$(HTMX_VERSION)", "dist/htmx.min.js"), \
	           "sse.js": ("htmx-ext-sse", "$(HTMX_SSE_VERSION)", "dist/sse.js")}; \
	  out = {n: {"package": p, "version": v, "path": f, \
	             "sha256": hashlib.sha256((d / n).read_bytes()).hexdigest()} \
	         for n, (p, v, f) in files.items()}; \
	  (d / "VENDORED.json").write_text(json.dumps(out, indent=2) + "\n")'
	@cat $(UI_STATIC)/VENDORED.json
