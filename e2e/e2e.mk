# --- e2e cluster ---
# Included by the top-level Makefile (`include e2e/e2e.mk`). A real single-node
# Kubernetes built on this machine; see e2e/README.md. Needs root.
#
#   make e2e-up       build (once, cached in /var/cache/waypost-e2e) and start the cluster
#   make e2e-down     stop everything it started, leave nothing behind
#   make e2e-status   what runs, and the KUBECONFIG line
#   make e2e          bring the cluster up if needed, run the e2e tests (the
#                     last one takes the cluster down and checks nothing is left)
#   KUBECONFIG=... make e2e   run the e2e tests against an existing cluster instead
#   make e2e E2E_PYTEST_ARGS='-m "not teardown"'   keep the cluster up afterwards
#   make e2e-bench    only the long cluster benchmarks (left out of `make e2e`), keeping
#                     the cluster up; they write bench/results/*.json

E2E_PYTHON ?= .venv/bin/python
E2E_PYTEST_ARGS ?=
E2E_HARNESS_KUBECONFIG := /var/lib/waypost-e2e/admin.kubeconfig

.PHONY: e2e e2e-up e2e-down e2e-status e2e-build e2e-bench

e2e-build:
	e2e/cluster/build-binaries
	e2e/cluster/build-system-images

e2e-up:
	e2e/cluster/up

e2e-down:
	e2e/cluster/down

e2e-status:
	e2e/cluster/status

# `venv` is the top-level Makefile's target (the project venv with kubernetes and pytest).
e2e: venv
	@if [ -z "$$KUBECONFIG" ] || [ "$$KUBECONFIG" = "$(E2E_HARNESS_KUBECONFIG)" ]; then e2e/cluster/up; fi
	WAYPOST_JAEGER="$$(tools/ensure jaeger)" WAYPOST_PROMETHEUS="$$(tools/ensure prometheus)" \
	  $(E2E_PYTHON) -m pytest e2e/ -v -p no:cacheprovider $(E2E_PYTEST_ARGS)

e2e-bench: venv
	@if [ -z "$$KUBECONFIG" ] || [ "$$KUBECONFIG" = "$(E2E_HARNESS_KUBECONFIG)" ]; then e2e/cluster/up; fi
	WAYPOST_E2E_BENCH=1 $(E2E_PYTHON) -m pytest e2e/ -v -p no:cacheprovider -m long_benchmark \
		--timeout=3600 $(E2E_PYTEST_ARGS)
