//! The ApplicationSet controller (Argo CD's): generates parameter sets from an
//! [`ApplicationSet`](crate::api::applicationset::ApplicationSet)'s generators, renders its template
//! once per set, and server-side applies the Applications it owns (an ownerReference to the
//! ApplicationSet, the field manager [`FIELD_MANAGER`]), deleting those no longer generated unless
//! its `syncPolicy` forbids it.
//!
//! Built as observe → plan → act: [`generators`] and [`template`] are pure, [`plan`] is a pure
//! function of the ApplicationSet, its parameter sets and the Applications it owns; the controller
//! reads the caches (and the Git trees, through the Application controller's cache) and applies the
//! plan. All state is in the ApplicationSet's status and the Applications themselves. Generated
//! Applications are ordinary Applications: their AppProject's rules apply to them as to any other.

pub mod controller;
pub mod generators;
pub mod git;
pub mod plan;
pub mod template;

/// Server-side apply field manager of everything the ApplicationSet controller writes.
pub const FIELD_MANAGER: &str = crate::api::keys::APPLICATIONSET_FIELD_MANAGER;
/// Label on every generated Application: its ApplicationSet's name (or a prefix and a hash of it
/// when longer than a label value may be). The controller's watch selects by it, so it caches the
/// generated Applications only.
pub const APPLICATION_SET_LABEL: &str = "sluice.dev/application-set";

/// The value of [`APPLICATION_SET_LABEL`] for the ApplicationSet `name` (at most 63 characters).
pub fn application_set_label_value(name: &str) -> String {
    // The Experiment controller's scheme: a name that fits, else a prefix and a hash.
    crate::experiment::experiment_label_value(name)
}
