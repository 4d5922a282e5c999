//! The Kubernetes API types of group `sluice.dev/v1alpha1`.
//!
//! Field names, shapes and defaults follow Argo CD and Argo Rollouts, so a manifest written for them
//! works here with only `apiVersion` changed. Defaults are applied by the controllers (through the
//! accessor methods next to each type), not by the schema, so what a user wrote round-trips unchanged.
//! This module holds types only: no I/O.

pub mod analysis;
pub mod application;
pub mod applicationset;
pub mod common;
pub mod experiment;
pub mod keys;
pub mod project;
pub mod rollout;
pub mod routes;
pub mod unsupported;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use analysis::{AnalysisRun, AnalysisTemplate, ClusterAnalysisTemplate};
pub use application::Application;
pub use applicationset::ApplicationSet;
pub use experiment::Experiment;
pub use rollout::Rollout;

/// The API group of every Sluice kind.
pub const GROUP: &str = "sluice.dev";
/// The API version of every Sluice kind.
pub const VERSION: &str = "v1alpha1";

/// Every CRD Sluice serves, in a stable order (the order `sluice crdgen` prints them).
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![
        Application::crd(),
        Rollout::crd(),
        AnalysisTemplate::crd(),
        ClusterAnalysisTemplate::crd(),
        AnalysisRun::crd(),
        project::AppProject::crd(),
        experiment::Experiment::crd(),
        applicationset::ApplicationSet::crd(),
    ]
}

#[cfg(test)]
mod tests {
    use super::analysis::AnalysisPhase;
    use super::application::{HealthStatusCode, SyncStatusCode};
    use super::rollout::RolloutPhase;

    fn assert_names_match_the_wire<T: serde::Serialize + std::fmt::Display>(values: &[T]) {
        for value in values {
            let wire = serde_json::to_value(value).unwrap();
            assert_eq!(wire, serde_json::Value::String(value.to_string()));
        }
    }

    #[test]
    fn display_names_are_the_serialized_names() {
        use AnalysisPhase as A;
        use HealthStatusCode as H;
        assert_names_match_the_wire(&[
            A::Pending,
            A::Running,
            A::Successful,
            A::Failed,
            A::Error,
            A::Inconclusive,
        ]);
        assert_names_match_the_wire(&[
            SyncStatusCode::Synced,
            SyncStatusCode::OutOfSync,
            SyncStatusCode::Unknown,
        ]);
        assert_names_match_the_wire(&[
            H::Healthy,
            H::Progressing,
            H::Degraded,
            H::Suspended,
            H::Missing,
            H::Unknown,
        ]);
        assert_names_match_the_wire(&[
            RolloutPhase::Healthy,
            RolloutPhase::Progressing,
            RolloutPhase::Paused,
            RolloutPhase::Degraded,
        ]);
    }
}
