//! The `AppProject` kind: what the Applications of a project may deploy, from where and to where.
//!
//! Field names and shapes are Argo CD's (`AppProjectSpec` in `pkg/apis/application/v1alpha1`), for the
//! parts Sluice enforces: source repositories, destinations, source namespaces ("apps in any
//! namespace"), cluster- and namespace-scoped kind allow and deny lists, and the ServiceAccounts a sync
//! impersonates. The rules themselves are pure functions in `crate::gitops::project`.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The project every Application without `spec.project` belongs to.
pub const DEFAULT_PROJECT_NAME: &str = "default";

/// What the Applications of this project may deploy.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "AppProject",
    namespaced,
    shortname = "appproj",
    derive = "PartialEq",
    doc = "A project: the repositories, destinations and kinds its Applications may use."
)]
#[serde(rename_all = "camelCase")]
pub struct AppProjectSpec {
    /// What the project is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Repository URL globs the project's Applications may sync from; `!` in front denies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_repos: Vec<String>,
    /// Clusters and namespaces (globs, `!` in front denies) the project may deploy to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<ProjectDestination>,
    /// Cluster-scoped kinds the project may deploy; none when empty or absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_resource_whitelist: Option<Vec<ProjectResource>>,
    /// Cluster-scoped kinds the project may not deploy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_resource_blacklist: Option<Vec<ProjectResource>>,
    /// Namespaced kinds the project may deploy; all when absent, none when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_resource_whitelist: Option<Vec<ProjectResource>>,
    /// Namespaced kinds the project may not deploy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_resource_blacklist: Option<Vec<ProjectResource>>,
    /// Namespaces (globs) outside the control namespace whose Applications may use this project.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_namespaces: Vec<String>,
    /// The ServiceAccount a sync to a destination runs as (first match wins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_service_accounts: Vec<DestinationServiceAccount>,
}

/// A destination a project allows (or, with `!`, denies).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectDestination {
    /// API server URL glob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Cluster name glob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Namespace glob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A kind in an allow or deny list: `group` and `kind` are globs (`""` is the core group).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectResource {
    /// API group glob.
    #[serde(default)]
    pub group: String,
    /// Kind glob.
    pub kind: String,
    /// Object name glob (cluster-scoped lists only); any name when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The ServiceAccount syncs to a destination run as.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DestinationServiceAccount {
    /// API server URL glob.
    pub server: String,
    /// Namespace glob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `name` (in the destination namespace) or `namespace:name`.
    pub default_service_account: String,
}
