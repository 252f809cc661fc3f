# --- Go tools for the tests (promtool, Prometheus, Jaeger) ---
# Included by the top-level Makefile. Built once from the Go module proxy into
# /var/cache/waypost-tools (outside the repository: a fresh clone reuses them),
# versions pinned in tools/versions.sh; see tools/build-go-tools.
#
#   make tools            all three
#   make tools-promtool   promtool alone (make test needs it and Jaeger)

.PHONY: tools tools-promtool tools-prometheus tools-jaeger

tools:
	tools/build-go-tools promtool prometheus jaeger

tools-promtool:
	tools/build-go-tools promtool

tools-prometheus:
	tools/build-go-tools prometheus

tools-jaeger:
	tools/build-go-tools jaeger
