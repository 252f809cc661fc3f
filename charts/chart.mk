# --- Helm chart and images ---
# Included by the top-level Makefile. `make test` runs chart-lint first.
#
#   make chart-lint   helm lint + helm template (default values, bundled Postgres)
#   make chart-crds   regenerate crds/ from the models and copy them into the chart
#   make images       build the runner, example, operator (and e2e Postgres) images
#
# helm comes from charts/tools/ensure-helm: $WAYPOST_HELM, else the e2e
# harness's cached build, else a one-time `go install` of the pinned version
# into $E2E_CACHE/chart-helm-<version> (~6 min cold on 2 cores, instant afterwards).

CHART := charts/waypost
# The chart's kubeVersion check and capabilities use this instead of helm's
# built-in default (a source-built helm reports v1.20).
CHART_KUBE_VERSION ?= 1.34.4

.PHONY: chart-lint chart-crds images

chart-lint:
	@helm=$$(charts/tools/ensure-helm) && set -x && \
	  $$helm lint --strict --kube-version $(CHART_KUBE_VERSION) $(CHART) && \
	  $$helm lint --strict --kube-version $(CHART_KUBE_VERSION) $(CHART) --set postgresql.enabled=true && \
	  $$helm template waypost $(CHART) --kube-version $(CHART_KUBE_VERSION) >/dev/null && \
	  $$helm template waypost $(CHART) --kube-version $(CHART_KUBE_VERSION) \
	    --set postgresql.enabled=true,serviceMonitor.enabled=true,prometheusRule.enabled=true,grafanaDashboard.enabled=true >/dev/null

chart-crds: venv
	$(BIN)/python -m waypost.model.crd crds
	$(BIN)/python charts/tools/sync_crds.py

images:
	runner-image/build-images $(IMAGES)
