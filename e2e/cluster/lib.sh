# Shared settings for the local-cluster scripts (sourced, not run).
# Build caches live outside the clone, so a fresh clone on the same machine starts warm.
K8S_VERSION=v1.36.3
HELM_VERSION=v3.22.0
# `crane registry serve`: the local OCI registry (go-containerregistry's registry implementation).
CRANE_VERSION=v0.22.1
# The Gateway API proxy (its kubernetesgateway provider). v3.7.x does not build as a dependency: it needs a
# nested module (traefik/dynamic/ext) that the module proxy does not serve.
TRAEFIK_VERSION=v3.6.12
CLUSTER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_DIR=$(dirname "$CLUSTER_DIR")
REPO_DIR=$(dirname "$E2E_DIR")
RUN_DIR=$E2E_DIR/.run
PID_DIR=$RUN_DIR/pids
LOG_DIR=$RUN_DIR/logs
CACHE_ROOT=${SLUICE_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice-e2e}
BIN_DIR=$CACHE_ROOT/bin/$K8S_VERSION
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
# Reverse of the start order; `down` stops them in this order.
COMPONENTS_STOP_ORDER=(traefik oci-registry chart-repo traffic prometheus git-daemon kwok kube-scheduler kube-controller-manager kube-apiserver etcd)
# Clusters 2..N (`up --clusters N`): a control plane and a KWOK node each, nothing else. Their pids are
# recorded as `cluster<i>-<component>` beside cluster 1's; `down` stops them first, in this order.
EXTRA_CLUSTER_STOP_ORDER=(kwok kube-scheduler kube-controller-manager kube-apiserver etcd)
CLUSTERS_DIR=$RUN_DIR/clusters

# Every local cluster on this machine (one per clone or worktree) answers HTTP on its pods' IPs, so each
# takes a /16 of 127.0.0.0/8 of its own: a claim dir per range (mkdir is atomic), released by `down`.
POD_CIDR_CLAIMS=$CACHE_ROOT/pod-cidrs

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { printf '[cluster] error: %s\n' "$*" >&2; exit 1; }

# A TCP port on 127.0.0.1 that nothing listens on, below the kernel's ephemeral range: a port in
# that range may be the local end of any outgoing connection at the moment a server binds it (seen
# in CI: "git daemon: Address already in use" on a port no one listened on when it was chosen).
free_port() {
  local port tries=0 low
  low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  [ "$low" -gt 12000 ] 2>/dev/null || low=32768
  while [ $tries -lt 200 ]; do
    port=$(( (RANDOM << 1 | RANDOM & 1) % (low - 11000) + 10000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      if ! grep -qx "$port" "$RUN_DIR/ports.taken" 2>/dev/null; then
        echo "$port" >>"$RUN_DIR/ports.taken"
        echo "$port"
        return 0
      fi
    fi
    tries=$((tries + 1))
  done
  die "no free port found on 127.0.0.1"
}

# The source dir of a module that go.mod requires, downloading it first: `go list -m` alone prints nothing
# for a module that is not in the module cache yet (a fresh machine, or binaries built on another one).
module_dir() {
  local dir
  (cd "$CLUSTER_DIR" && go mod download "$1") || die "cannot download Go module $1 (needed for its files; see the go error above)"
  dir=$(cd "$CLUSTER_DIR" && go list -m -f '{{.Dir}}' "$1") || die "go list failed for module $1"
  [ -n "$dir" ] && [ -d "$dir" ] || die "Go module $1 has no source dir in the module cache after download"
  echo "$dir"
}

# The pid recorded for a component, if that process is still alive.
alive_pid() {
  local file=$PID_DIR/$1.pid pid
  [ -f "$file" ] || return 1
  pid=$(cat "$file")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# wait_for DESCRIPTION TIMEOUT_SECONDS COMMAND...: polls COMMAND until it succeeds.
wait_for() {
  local what=$1 timeout=$2 start=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    if [ $((SECONDS - start)) -ge "$timeout" ]; then
      die "timed out after ${timeout}s waiting for $what (logs: $LOG_DIR)"
    fi
    sleep 0.2
  done
}

# stop_component NAME: SIGTERM to the recorded process, SIGKILL after 30 s; waits until it is gone.
stop_component() {
  local name=$1 pid waited=0
  pid=$(alive_pid "$name") || { rm -f "$PID_DIR/$name.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null
  # kube-apiserver drains for up to ~15 s after SIGTERM.
  while kill -0 "$pid" 2>/dev/null && [ $waited -lt 300 ]; do
    sleep 0.1
    waited=$((waited + 1))
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) ignored SIGTERM for 30 s: killing it"
    kill -KILL "$pid" 2>/dev/null
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$PID_DIR/$name.pid"
}

# stop_extra_cluster I: stops the processes of cluster I (2..N) and removes its state.
stop_extra_cluster() {
  local i=$1 c
  for c in "${EXTRA_CLUSTER_STOP_ORDER[@]}"; do
    stop_component "cluster$i-$c"
  done
  rm -rf "${CLUSTERS_DIR:?}/$i"
}

# Releases this run dir's pod IP range claim, if any.
release_pod_cidr() {
  local claim
  for claim in "$POD_CIDR_CLAIMS"/127.*; do
    [ -d "$claim" ] || continue
    if [ "$(cat "$claim/owner" 2>/dev/null)" = "$RUN_DIR" ]; then rm -rf "$claim"; fi
  done
}

# Sets POD_CIDR to a free 127.N.0.0/16 (N in 20..99, random start; e2e/argo/bench-nodes gives its nodes
# 127.101.0.0/20 and up) and claims it for this run dir. A
# claim whose owner has no pids dir (its cluster is down) is stale and taken over; a range in which
# some process already listens is skipped. Call after PID_DIR exists.
claim_pod_cidr() {
  local i octet claim owner listening first=$((RANDOM % 80))
  release_pod_cidr
  mkdir -p "$POD_CIDR_CLAIMS"
  # Second octets (hex) of loopback addresses something listens on (/proc/net/tcp: little-endian).
  listening=$(awk 'NR > 1 && $4 == "0A" && substr($2, 7, 2) == "7F" { print substr($2, 5, 2) }' /proc/net/tcp | sort -u)
  for i in $(seq 0 79); do
    octet=$(((first + i) % 80 + 20))
    grep -qix "$(printf '%02x' "$octet")" <<<"$listening" && continue
    claim=$POD_CIDR_CLAIMS/127.$octet
    if ! mkdir "$claim" 2>/dev/null; then
      owner=$(cat "$claim/owner" 2>/dev/null) || continue
      [ -n "$owner" ] && [ ! -d "$owner/pids" ] || continue
      rm -rf "$claim"
      mkdir "$claim" 2>/dev/null || continue
    fi
    echo "$RUN_DIR" >"$claim/owner"
    POD_CIDR=127.$octet.0.0/16
    log "pod IPs from $POD_CIDR"
    return 0
  done
  die "no free 127.N.0.0/16 for pod IPs (claims in $POD_CIDR_CLAIMS)"
}
