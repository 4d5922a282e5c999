# Sourced by scripts/test and scripts/bench (from the repository root). `use_local_cluster` brings the
# local cluster up when it is not running and loads e2e/.run/env into the environment. A cluster it
# started is stopped when the script exits, even on failure; one that was already running is left
# running, so that a developer's cluster survives `make test` and `make bench`.
use_local_cluster() {
  if [ ! -f e2e/.run/env ]; then
    trap 'e2e/cluster/down || true' EXIT
  fi
  e2e/cluster/up
  set -a
  . e2e/.run/env
  set +a
}
