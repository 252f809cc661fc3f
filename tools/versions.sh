# shellcheck shell=bash
# Pinned versions of the Go programs the tests use besides the cluster's
# (tools/build-go-tools builds them; tools/ensure prints a binary's path).
# Changing a version changes the cache directory, so only that tool rebuilds.
JAEGER_VERSION=v1.76.0        # module github.com/jaegertracing/jaeger (cmd/jaeger is Jaeger v2's all-in-one)
PROMETHEUS_VERSION=v0.316.0   # module github.com/prometheus/prometheus (Prometheus 3.x); promtool and prometheus
# Outside the repository, so a fresh clone (CI) on the same machine reuses them.
TOOLS_CACHE=${WAYPOST_TOOLS_CACHE:-/var/cache/waypost-tools}
# Service discovery plugins stay out of both Prometheus binaries: the tests use
# static targets, and the cloud SDKs are most of the cold build.
PROMETHEUS_TAGS=remove_all_sd
