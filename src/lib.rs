//! Sluice: progressive delivery for Kubernetes in one process.
//!
//! The GitOps core syncs `Application`s from Git; the Rollout engine moves traffic step by step, gated
//! by analysis; a failed analysis rolls traffic back and reverts the offending commit in Git.
//! See `DESIGN.md` for the architecture and the public contract.

pub mod analysis;
pub mod api;
pub mod appset;
pub mod cli;
pub mod crdgen;
pub mod duration;
pub mod error;
pub mod experiment;
pub mod gitops;
pub mod kube_requests;
pub mod leader;
pub mod manager;
pub mod metrics;
pub mod notifications;
pub mod plugin;
pub mod readiness;
pub mod reconcile_guard;
pub mod revert;
pub mod rollout;
pub mod scope;
pub mod server;
pub mod telemetry;
pub mod tls;

/// The version of this build, as shown by `--version` and `sluice_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The property tests' settings: `SLUICE_PROPTEST_CASES` cases each (2,000 by default, `make fuzz`
/// runs many more), no regression files written into the source tree.
#[cfg(test)]
pub(crate) fn proptest_config() -> proptest::prelude::ProptestConfig {
    let cases = std::env::var("SLUICE_PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(2000);
    proptest::prelude::ProptestConfig {
        cases,
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    }
}
