# Sourced by scripts/test and scripts/bench (from the repository root). `use_local_cluster [N]` brings the
# local cluster (and clusters 2..N, `e2e/cluster/up --clusters N`) up when it is not running and loads e2e/.run/env into the environment. A cluster it
# started is stopped when the script exits, even on failure; one that was already running is left
# running, so that a developer's cluster survives `make test` and `make bench`.
#
# The cluster is started with an empty Go module cache (the control-plane binaries built first, into their
# own cache), as on a new user's machine whose binaries came from an earlier build: whatever `up` reads from
# a Go module's files it must download itself. Every `make test` checks that.
use_local_cluster() {
  if [ ! -f e2e/.run/env ]; then
    trap 'e2e/cluster/down || true' EXIT
  fi
  e2e/cluster/build
  local modcache status=0
  modcache=$(mktemp -d "${TMPDIR:-/tmp}/sluice-empty-gomodcache.XXXXXX")
  GOMODCACHE=$modcache e2e/cluster/up --clusters "${1:-1}" || status=$?
  # The module cache's files are read-only by design.
  chmod -R u+w "$modcache" && rm -rf "$modcache"
  [ "$status" = 0 ] || { echo "e2e/cluster/up failed with an empty Go module cache (status $status)" >&2; return "$status"; }
  set -a
  . e2e/.run/env
  set +a
}
