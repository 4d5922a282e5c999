//! Multi-tenancy on the local cluster: two teams, each with a namespace, an AppProject and a
//! ServiceAccount with a namespaced Role, and one cluster-wide controller (see
//! `common::tenancy::TenancyHarness`). Each module is one of the holes the projects close.

mod common;

#[path = "tenancy/impersonation.rs"]
mod impersonation;
#[path = "tenancy/projects.rs"]
mod projects;

#[path = "tenancy/revert.rs"]
mod revert;
