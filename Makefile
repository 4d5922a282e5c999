# Sluice make targets (the public contract in DESIGN.md): test, demo, crds, bench.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: test lint unit fuzz crds demo bench bench-argo cluster-up cluster-down

## test: everything CI runs — format and lint checks, unit tests, and the end-to-end suite on a real
## local cluster that this target brings up (and down at the end, even on failure).
test:
	scripts/test

## lint: rustfmt and clippy, warnings are errors.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## unit: the tests that need no cluster.
unit:
	$(CARGO) test --workspace --lib --bins

## fuzz: the property tests of the parsers and planners that read user input (durations, conditions,
## int-or-percent, Rollout and AnalysisRun plans) with FUZZ_CASES cases each instead of the 2,000 of
## `make test`; a failure prints the smallest input that fails.
FUZZ_CASES ?= 100000
fuzz:
	SLUICE_PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) test --lib

## crds: regenerate crds/ from the Rust types, and the Helm chart's copy (tests/chart.rs checks they agree).
CHART_CRDS := charts/sluice/crds
crds:
	$(CARGO) run --quiet --bin sluice -- crdgen --out-dir crds
	mkdir -p $(CHART_CRDS)
	rm -f $(CHART_CRDS)/*.yaml
	cp crds/*.yaml $(CHART_CRDS)/

## demo: the main job on the local cluster.
demo:
	scripts/demo

## bench: performance figures, printed: the Rollout planner, and GitOps at scale on the local cluster
## (brought up, and down at the end unless it was already running). Release build, in its own target
## dir so that it never waits for the test builds' lock.
BENCH_TARGET_DIR ?= $(HOME)/.cache/sluice-build/bench-target
bench:
	BENCH_TARGET_DIR=$(BENCH_TARGET_DIR) CARGO=$(CARGO) scripts/bench

## bench-argo (optional, not in `make test`): Argo Rollouts v1.10.1's controller (built from its Go
## module into the e2e cache) and Sluice's release build, one after the other on the local cluster,
## each on BENCH_N canary Rollouts (create, image change, abort); prints peak RSS, CPU seconds and the
## time to all Healthy / Paused / Degraded side by side with the Sluice / Argo ratios. BENCH_PHASE_TIMEOUT
## (seconds, default max(120, 0.9 × N)) bounds the wait for each phase.
BENCH_N ?= 100 1000
bench-argo:
	BENCH_N="$(BENCH_N)" BENCH_TARGET_DIR=$(BENCH_TARGET_DIR) CARGO=$(CARGO) scripts/bench-argo

## cluster-up: the local cluster, and clusters 2..CLUSTERS for multi-cluster Applications (default 1).
CLUSTERS ?= 1
cluster-up:
	e2e/cluster/up --clusters $(CLUSTERS)

cluster-down:
	e2e/cluster/down
