//! The Experiment controller: runs an [`Experiment`](crate::api::experiment::Experiment)'s
//! templates as ReplicaSets it owns, starts its AnalysisRuns once they are available, and ends it
//! when its duration passes, an analysis decides, or it is terminated (Argo Rollouts' semantics).
//!
//! Built as observe → plan → act like the Rollout engine: [`observe`] reads the watch caches into
//! a snapshot, [`plan`] is a pure function of it (and `now`) returning actions and the whole
//! status, [`act`] applies them under the field manager [`FIELD_MANAGER`]. All state is in the
//! Experiment's status and its ReplicaSets' scale-down annotation.

pub mod act;
mod analyses;
pub mod controller;
pub mod observe;
mod phase;
pub mod plan;

/// Server-side apply field manager of everything the Experiment controller writes.
pub const FIELD_MANAGER: &str = crate::api::keys::EXPERIMENT_FIELD_MANAGER;
/// Label on everything an Experiment creates (ReplicaSets, Services, AnalysisRuns): its name, or
/// for a name longer than a label value may be, a prefix and a hash of it. The controller's
/// watches select by it, so they cache the Experiments' objects only, not every ReplicaSet of the
/// cluster a second time.
pub const EXPERIMENT_LABEL: &str = "sluice.dev/experiment";

/// The value of [`EXPERIMENT_LABEL`] for the Experiment `name` (at most 63 characters).
pub fn experiment_label_value(name: &str) -> String {
    if name.len() <= 63 {
        return name.to_string();
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, name.as_bytes());
    let hash: String = digest.as_ref()[..5]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let prefix: String = name.chars().take(52).collect();
    format!("{}-{hash}", prefix.trim_end_matches(['-', '.']))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_fit_and_stay_distinct() {
        assert_eq!(experiment_label_value("web-abc-1-2"), "web-abc-1-2");
        let long_a = format!("{}-a", "x".repeat(70));
        let long_b = format!("{}-b", "x".repeat(70));
        let (a, b) = (
            experiment_label_value(&long_a),
            experiment_label_value(&long_b),
        );
        assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
        assert_ne!(a, b);
    }
}
