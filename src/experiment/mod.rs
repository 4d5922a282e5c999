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
pub const FIELD_MANAGER: &str = "sluice-experiment";
/// Label of an Experiment's AnalysisRuns naming it (when the name fits a label value).
pub const EXPERIMENT_LABEL: &str = "sluice.dev/experiment";
