# waypost — `make dev` runs it, `make test` tests it. Both set up what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev dev-once test lint types imports unit integration deps venv schema clean

# The server binaries of PostgreSQL (Debian's package) for the embedded database.
deps:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ -z "$$WAYPOST_PG_BIN" ]; then \
	  echo "Installing PostgreSQL server (Debian package)…"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql >/dev/null; \
	fi

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "waypost needs Python >= 3.11, found " + sys.version' 
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,operator]'
	@touch $(STAMP)

venv: $(STAMP)

dev: deps venv
	$(BIN)/waypost dev

dev-once: deps venv
	$(BIN)/waypost dev --once

lint: venv
	$(BIN)/ruff check operator tests examples e2e

types: venv
	$(BIN)/mypy operator/waypost

imports: venv
	$(BIN)/lint-imports

test: deps venv lint types imports chart-lint
	WAYPOST_HELM="$$(charts/tools/ensure-helm)" $(BIN)/python -m pytest tests -q -p no:cacheprovider

schema: deps venv
	$(BIN)/python -m waypost.store.dump_schema > operator/waypost/store/schema.sql

clean:
	rm -rf $(VENV) .waypost .mypy_cache .ruff_cache

# Benchmarks against pgqueuer and procrastinate on a durable Postgres of its own
# (docs/benchmarks.md). Not part of `make test`. BENCH_QUICK=1 for a
# smoke run; BENCH_ARGS for flags (python -m bench --help).
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(BIN)/pip install -q -e '.[dev,operator,bench]'
	@touch $(BENCH_STAMP)

.PHONY: bench
bench: deps $(BENCH_STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

include e2e/e2e.mk
include charts/chart.mk
