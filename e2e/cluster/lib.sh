# shellcheck shell=bash
# Shared helpers for the e2e cluster scripts (sourced, not executed).

log() { echo "[$(basename "$0") $(date -u +%H:%M:%S)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Install Debian packages that are missing; the machines are fresh, so nothing
# installed by hand survives.
ensure_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# registry.k8s.io/pause:3.10 -> registry.k8s.io_pause_3.10.oci.tar
image_file() { echo "$1" | tr '/:' '__' | sed 's/$/.oci.tar/'; }

k8s_bin()   { echo "$E2E_CACHE/kubernetes-$KUBERNETES_VERSION/bin"; }
bin_path()  { echo "$(k8s_bin):$E2E_CACHE/etcd-$ETCD_VERSION/bin:$E2E_CACHE/coredns-$COREDNS_VERSION/bin:$E2E_CACHE/helm-$HELM_VERSION/bin:$E2E_CACHE/crictl-$CRICTL_VERSION/bin"; }
KUBECONFIG_ADMIN() { echo "$E2E_STATE/admin.kubeconfig"; }
PIDDIR() { echo "$E2E_RUN/pids"; }
LOGDIR=/var/log/waypost-e2e
CONTAINERD_SOCK() { echo "$E2E_RUN/containerd.sock"; }

# Order matters: `down` stops them in reverse.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy)

pid_of() { local f; f="$(PIDDIR)/$1.pid"; [ -s "$f" ] && cat "$f"; }
alive() { # component: running, and still the process we started (same exe)
  local pid; pid=$(pid_of "$1") || return 1
  [ -d "/proc/$pid" ] || return 1
  [ "$(cat "/proc/$pid/stat" 2>/dev/null | awk '{print $3}')" != Z ] || return 1
  return 0
}

# Start a long-running component detached from the caller's session; its pid
# is recorded so that `down` stops exactly what `up` started.
start_component() { # name cmd...
  local name=$1; shift
  mkdir -p "$(PIDDIR)" "$LOGDIR"
  if alive "$name"; then return 0; fi
  # The subshell closes our lock fds (a daemon holding them would hold the
  # lock forever) and execs; setsid execs in place too (the background job is
  # not a group leader), so $! is the component's own pid.
  (
    for fd in ${E2E_LOCK_FDS:-}; do eval "exec $fd>&-"; done
    exec setsid "$@"
  ) >"$LOGDIR/$name.log" 2>&1 </dev/null &
  echo $! >"$(PIDDIR)/$name.pid"
}

wait_for() { # description timeout-seconds command...
  local what=$1 timeout=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then die "timed out after ${timeout}s waiting for $what"; fi
    sleep 0.5
  done
}

# Kubernetes resolves `image: foo:1` to docker.io/library/foo:1 and looks that
# name up in containerd, so local images are stored under the normalized name.
normalize_image() {
  local ref=$1 first=${1%%/*}
  if [[ $ref != */* ]]; then echo "docker.io/library/$ref"
  elif [[ $first == *.* || $first == *:* || $first == localhost ]]; then echo "$ref"
  else echo "docker.io/$ref"; fi
}

# Save an image from buildah's storage as an OCI archive in the cache (so `up`
# can import it into a fresh containerd) and import it now if containerd runs.
save_and_import() { # normalized-name
  local name=$1 archive
  archive="$E2E_CACHE/images/$(image_file "$name")"
  mkdir -p "$E2E_CACHE/images"
  rm -f "$archive.tmp"
  buildah push -q "$name" "oci-archive:$archive.tmp:$name" >/dev/null
  mv "$archive.tmp" "$archive"
  echo "$name" >"${archive%.oci.tar}.name"
  if [ -S "$(CONTAINERD_SOCK)" ] && ctr --address "$(CONTAINERD_SOCK)" version >/dev/null 2>&1; then
    ctr --address "$(CONTAINERD_SOCK)" -n k8s.io images import "$archive" >/dev/null
    log "imported $name into containerd (k8s.io)"
  fi
}

# Serialize runs that share state (two `up`s, a build while another builds).
# Re-entrant across the scripts' own calls (up -> down) via the environment.
take_lock() { # name
  local var="WAYPOST_E2E_LOCK_${1//-/_}" fd
  [ -n "${!var:-}" ] && return 0
  mkdir -p "$E2E_CACHE"
  exec {fd}>"$E2E_CACHE/.$1.lock"
  if ! flock -n "$fd"; then
    log "waiting for another $1 run to finish"
    flock "$fd"
  fi
  export "$var=1"
  E2E_LOCK_FDS="${E2E_LOCK_FDS:-} $fd"
}
