//! The GitOps sync core: Git sources, rendering, diff, apply, health and the Application reconciler.

pub mod app_writes;
pub mod apply;
pub mod chart;
pub mod clusters;
pub mod compare;
pub mod conditions;
pub mod controller;
pub mod credentials;
pub mod diff;
#[cfg(test)]
mod diff_property_tests;
pub mod engine_fields;
pub mod events;
pub mod health;
pub mod health_rules;
pub mod hooks;
pub mod ignore;
pub mod impersonation;
pub mod kinds;
pub mod live;
pub mod metrics;
pub mod object;
pub mod observe;
pub mod order;
pub mod plan;
pub mod project;
pub mod projects;
pub mod refresh;
pub mod render;
pub mod semver_range;
pub mod source;
pub mod sync_options;
pub mod sync_windows;
pub mod unified;
pub mod unsupported;
pub mod webhook;
