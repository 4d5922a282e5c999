//! The `AppProject` kind: what the Applications of a project may deploy, from where and to where.
//!
//! Field names and shapes are Argo CD's (`AppProjectSpec` in `pkg/apis/application/v1alpha1`), for the
//! parts Sluice enforces: source repositories, destinations, source namespaces ("apps in any
//! namespace"), cluster- and namespace-scoped kind allow and deny lists, and the ServiceAccounts a sync
//! impersonates. The rules themselves are pure functions in `crate::gitops::project`.

use kube::CustomResource;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The project every Application without `spec.project` belongs to.
pub const DEFAULT_PROJECT_NAME: &str = "default";

/// Argo CD's AppProject fields Sluice does not implement yet, each refused by the API server with a
/// message naming it: accepted and ignored, a sync window or a role would give a false sense of
/// safety.
pub const UNIMPLEMENTED_FIELDS: &[&str] = &[
    "roles",
    "signatureKeys",
    "orphanedResources",
    "permitOnlyProjectScopedClusters",
];

/// What the Applications of this project may deploy.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "AppProject",
    namespaced,
    shortname = "appproj",
    derive = "PartialEq",
    doc = "A project: the repositories, destinations and kinds its Applications may use."
)]
#[x_kube(validation = Rule::new("!has(self.roles) || size(self.roles) == 0")
    .message("spec.roles is not implemented by Sluice: access to Applications is Kubernetes RBAC on the Application objects; remove it")
    .field_path(".roles"))]
#[x_kube(validation = Rule::new("!has(self.signatureKeys) || size(self.signatureKeys) == 0")
    .message("spec.signatureKeys is not implemented by Sluice: commits are not verified; remove it")
    .field_path(".signatureKeys"))]
#[x_kube(validation = Rule::new("!has(self.orphanedResources)")
    .message("spec.orphanedResources is not implemented by Sluice: remove it")
    .field_path(".orphanedResources"))]
#[x_kube(validation = Rule::new("!has(self.permitOnlyProjectScopedClusters) || !self.permitOnlyProjectScopedClusters")
    .message("spec.permitOnlyProjectScopedClusters is not implemented by Sluice (it syncs to its own cluster only): remove it")
    .field_path(".permitOnlyProjectScopedClusters"))]
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
    /// When the project's Applications may sync (Argo CD's sync windows).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub sync_windows: Vec<SyncWindow>,
    /// Argo CD's project roles: not implemented, refused by the schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "refused_list")]
    pub roles: Option<Value>,
    /// Argo CD's GnuPG keys: not implemented, refused by the schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "refused_list")]
    pub signature_keys: Option<Value>,
    /// Argo CD's orphaned resource monitoring: not implemented, refused by the schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "refused_object")]
    pub orphaned_resources: Option<Value>,
    /// Argo CD's project-scoped clusters: not implemented, refused by the schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "refused_flag")]
    pub permit_only_project_scoped_clusters: Option<Value>,
}

// Refused fields are typed as Argo's (CEL sees no untyped field) and kept whole (never pruned), so
// that the rule refusing them sees them.
fn refused_list(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Not implemented by Sluice; refused.",
        "type": "array",
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
    })
}

fn refused_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Not implemented by Sluice; refused.",
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

fn refused_flag(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Not implemented by Sluice; refused.",
        "type": "boolean",
    })
}

/// A time window in which the project's matching Applications may (`allow`) or may not (`deny`)
/// sync; see `crate::gitops::sync_windows` for how they combine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncWindow {
    /// `allow` or `deny`.
    pub kind: SyncWindowKind,
    /// When the window opens: a 5-field cron schedule (minute hour day-of-month month
    /// day-of-week), e.g. `0 22 * * *`.
    #[schemars(length(min = 1, max = 256))]
    pub schedule: String,
    /// How long it stays open after each opening, e.g. `1h`, `30m`, `1h30m`.
    #[schemars(length(min = 1, max = 64), pattern(crate::duration::DURATION_PATTERN))]
    pub duration: String,
    /// Application name globs it applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub applications: Vec<String>,
    /// Destination namespace globs it applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub namespaces: Vec<String>,
    /// Destination cluster (server URL or name) globs it applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub clusters: Vec<String>,
    /// Let syncs requested by a user through while this deny window is active, or while this
    /// allow window is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual_sync: Option<bool>,
    /// The time zone of `schedule` (IANA name, e.g. `Europe/Amsterdam`); UTC by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub time_zone: Option<String>,
    /// Apply only to Applications matched by every selector given, not by any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub and_operator: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Whether a sync window allows or denies syncs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SyncWindowKind {
    Allow,
    Deny,
}

/// A destination a project allows (or, with `!`, denies).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.server) || has(self.name)")
    .message("a destination needs server or name (use server: '*' for any cluster)"))]
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
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectResource {
    /// API group glob.
    #[serde(default)]
    pub group: String,
    /// Kind glob.
    #[x_kube(validation = Rule::new("self != ''").message("kind must not be empty (use '*' for any kind)"))]
    pub kind: String,
    /// Object name glob (cluster-scoped lists only); any name when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The ServiceAccount syncs to a destination run as.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DestinationServiceAccount {
    /// API server URL glob.
    pub server: String,
    /// Namespace glob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `name` (in the destination namespace) or `namespace:name`.
    #[x_kube(validation = Rule::new("self != ''").message("defaultServiceAccount must not be empty"))]
    pub default_service_account: String,
}
