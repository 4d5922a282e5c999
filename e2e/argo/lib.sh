# Argo Rollouts settings for `make bench-argo` (sourced after e2e/cluster/lib.sh, not run).
ARGO_ROLLOUTS_VERSION=${ARGO_ROLLOUTS_VERSION:-v1.10.1}
ARGO_MODULE=github.com/argoproj/argo-rollouts
ARGO_CACHE=$CACHE_ROOT/argo-rollouts
ARGO_BIN=$ARGO_CACHE/bin/$ARGO_ROLLOUTS_VERSION/rollouts-controller
