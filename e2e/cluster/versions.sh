# shellcheck shell=bash
# Pinned versions for the e2e cluster. Sourced by the scripts in this folder.
# Changing one of these changes the cache key, so the next `up` rebuilds only
# the component whose version changed.
KUBERNETES_VERSION=v1.34.4   # newest minor whose kubelet runs on cgroup v1 without overrides
ETCD_VERSION=v3.6.16         # upstream pairs 1.34 with etcd 3.6; Debian's 3.4 is too old
COREDNS_VERSION=v1.14.7
HELM_VERSION=v3.19.5         # built with client-go 0.34, same minor as the cluster
CRICTL_VERSION=v1.34.0        # crictl: lets `down` stop pod sandboxes through CRI (CNI DEL, netns removal)
PAUSE_IMAGE=registry.k8s.io/pause:3.10.1-waypost
COREDNS_IMAGE=registry.k8s.io/coredns/coredns:${COREDNS_VERSION}-waypost
BASE_IMAGE=localhost/waypost/debian-python:bookworm-2
DEBIAN_SUITE=bookworm

# Everything the harness builds or runs lives outside the repository.
E2E_CACHE=${E2E_CACHE:-/var/cache/waypost-e2e}
E2E_STATE=${E2E_STATE:-/var/lib/waypost-e2e}
E2E_RUN=${E2E_RUN:-/run/waypost-e2e}

# Networks: private to this machine. The harness creates the bridge itself;
# Pods get routes only to the Pod and Service ranges (no default route), and a
# mangle-table guard drops anything forwarded between the bridge and any other
# interface, so Pod traffic cannot leave the machine.
NODE_NAME=waypost-e2e
BRIDGE=wpe2e0
POD_CIDR=10.203.0.0/24
NODE_IP=10.203.0.1            # the bridge's address: apiserver, kubelet, node InternalIP
SERVICE_CIDR=10.204.0.0/24
KUBERNETES_SVC_IP=10.204.0.1
DNS_SVC_IP=10.204.0.10
CLUSTER_DOMAIN=cluster.local
ETCD_CLIENT_PORT=23790        # non-default ports: no clash with another etcd on this machine
ETCD_PEER_PORT=23800
APISERVER_PORT=6443
