# Pinned versions for the e2e cluster. Sourced by the scripts in this folder.
# Changing one of these changes the cache key, so the next `up` rebuilds only
# the component whose version changed.
KUBERNETES_VERSION=v1.34.4   # newest minor whose kubelet runs on cgroup v1 without overrides
ETCD_VERSION=v3.6.16         # upstream pairs 1.34 with etcd 3.6; Debian's 3.4 is too old
COREDNS_VERSION=v1.14.7
HELM_VERSION=v3.19.5         # built with client-go 0.34, same minor as the cluster
PAUSE_IMAGE=registry.k8s.io/pause:3.10.1-waypost
COREDNS_IMAGE=registry.k8s.io/coredns/coredns:${COREDNS_VERSION}-waypost
BASE_IMAGE=localhost/waypost/debian-python:bookworm-1
DEBIAN_SUITE=bookworm

# Everything the harness builds or runs lives outside the repository.
E2E_CACHE=${E2E_CACHE:-/var/cache/waypost-e2e}
E2E_STATE=${E2E_STATE:-/var/lib/waypost-e2e}
E2E_RUN=${E2E_RUN:-/run/waypost-e2e}
