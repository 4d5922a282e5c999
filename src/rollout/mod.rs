//! The Rollout engine: canary weight steps and blue-green switching on ReplicaSets the Rollout owns.
//!
//! Built as observe → plan → act (DESIGN.md): `observed` is the snapshot a reconcile reads, `plan` is a
//! pure function from it (and `now`) to `action`s, and the act step applies them with server-side apply
//! under the field manager [`FIELD_MANAGER`].

pub mod act;
pub mod action;
pub mod analysis_runs;
pub mod anti_affinity;
pub(crate) mod basic_canary;
pub mod bluegreen;
pub mod canary;
pub mod controller;
pub(crate) mod experiment_step;
pub mod experiments;
pub mod hash;
pub mod managed_routes;
pub mod metrics;
pub mod observe;
pub mod observed;
pub mod phase;
pub mod plan;
pub mod pod_metadata;
#[cfg(test)]
mod property_tests;
pub mod replicasets;
pub mod restart;
pub mod simulate;
pub mod template_composition;
pub(crate) mod template_stores;
pub mod templates;
pub mod traffic;

/// Server-side apply field manager of everything the Rollout engine writes.
pub const FIELD_MANAGER: &str = crate::api::keys::ROLLOUT_FIELD_MANAGER;
