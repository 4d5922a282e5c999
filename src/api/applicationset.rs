//! The `ApplicationSet` kind: Applications generated from parameter sets (a list, the clusters, the
//! directories or files of a Git repository, and their matrix or merge), rendered from one template.
//! Field names and shapes are Argo CD's (`applicationset_types.go`), so an Argo ApplicationSet works
//! with only `apiVersion` changed.
//!
//! The schema prunes nothing Argo accepts: where Argo's schema is open (list elements, the
//! Application template's spec, nested matrix and merge generators, the generators Sluice does not
//! implement) the field keeps unknown fields. The controller refuses the fields Sluice does not
//! implement by path ([`ApplicationSetSpec::unsupported_fields`]): an `ErrorOccurred` condition,
//! and nothing created or deleted.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::common::Condition;
use super::unsupported::{self, preserved_object_schema, preserved_schema};

/// Condition types of an ApplicationSet (Argo's).
pub const CONDITION_ERROR_OCCURRED: &str = "ErrorOccurred";
pub const CONDITION_PARAMETERS_GENERATED: &str = "ParametersGenerated";
pub const CONDITION_RESOURCES_UP_TO_DATE: &str = "ResourcesUpToDate";

/// The desired state of an ApplicationSet: Argo CD's `ApplicationSetSpec`.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "ApplicationSet",
    namespaced,
    status = "ApplicationSetStatus",
    shortname = "appset",
    shortname = "appsets",
    derive = "PartialEq",
    doc = "Applications generated from parameter sets and one template (Argo CD's ApplicationSet)."
)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSetSpec {
    /// Where the parameter sets come from; their union is rendered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generators: Vec<ApplicationSetGenerator>,
    /// The Application rendered once per parameter set.
    #[serde(default)]
    pub template: ApplicationSetTemplate,
    /// A Go template of a patch merged into each rendered Application (goTemplate only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_patch: Option<String>,
    /// Render with Go templates (`{{ .path.basename }}`) instead of `{{path.basename}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub go_template: Option<bool>,
    /// Go template options; Sluice knows `missingkey=error|zero|default|invalid`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub go_template_options: Vec<String>,
    /// What the controller may do to the Applications it generates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_policy: Option<ApplicationSetSyncPolicy>,
    /// `AllAtOnce` (default) or `RollingSync` (progressive syncs: not implemented by Sluice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object_schema")]
    pub strategy: Option<Map<String, Value>>,
    /// Parts of the generated Applications the controller leaves as they are live.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_application_differences: Vec<ApplicationSetResourceIgnoreDifferences>,
    /// Annotations and labels of the Applications kept as they are live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserved_fields: Option<ApplicationPreservedFields>,
    /// Deprecated by Argo (selectors of nested generators always apply); accepted and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_nested_selectors: Option<bool>,
}

/// `spec.syncPolicy` (Argo's `ApplicationSetSyncPolicy`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSetSyncPolicy {
    /// Generated Applications get no resources finalizer: deleting them leaves what they deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve_resources_on_deletion: Option<bool>,
    /// `create-only`, `create-update`, `create-delete` or `sync` (default: all three).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applications_sync: Option<String>,
}

/// What the controller may do to generated Applications (`syncPolicy.applicationsSync`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApplicationsSyncPolicy {
    pub update: bool,
    pub delete: bool,
}

impl ApplicationSetSyncPolicy {
    /// The policy, or the unknown value as written.
    pub fn applications_sync(&self) -> Result<ApplicationsSyncPolicy, String> {
        let (update, delete) = match self.applications_sync.as_deref().unwrap_or("sync") {
            "" | "sync" => (true, true),
            "create-only" => (false, false),
            "create-update" => (true, false),
            "create-delete" => (false, true),
            other => return Err(other.to_string()),
        };
        Ok(ApplicationsSyncPolicy { update, delete })
    }

    pub fn preserve_resources_on_deletion(&self) -> bool {
        self.preserve_resources_on_deletion.unwrap_or(false)
    }
}

/// `spec.ignoreApplicationDifferences[]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSetResourceIgnoreDifferences {
    /// Only the Application of this name (all when empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// RFC 6901 pointers into the Application (`/spec/source/targetRevision`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub json_pointers: Vec<String>,
    /// jq paths (not implemented by Sluice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_schema")]
    pub jq_path_expressions: Option<Value>,
}

/// `spec.preservedFields`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationPreservedFields {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub annotations: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

/// `spec.template`: an Application's metadata and spec, with template expressions in its strings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSetTemplate {
    #[serde(default)]
    pub metadata: ApplicationSetTemplateMeta,
    /// An Application spec; kept as written (its strings are templates), checked once rendered.
    #[serde(default)]
    #[schemars(schema_with = "preserved_object_schema")]
    pub spec: Map<String, Value>,
}

/// `spec.template.metadata`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSetTemplateMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
}

/// One generator (Argo's `ApplicationSetGenerator`): exactly one kind set, plus an optional
/// `selector` over the parameter sets it makes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSetGenerator {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<ListGenerator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<ClusterGenerator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitGenerator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrix: Option<MatrixGenerator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<MergeGenerator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object_schema")]
    pub scm_provider: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object_schema")]
    pub cluster_decision_resource: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object_schema")]
    pub pull_request: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object_schema")]
    pub plugin: Option<Value>,
    /// Keeps only the parameter sets whose (flattened) values match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// A generator inside `matrix` or `merge` (Argo's `ApplicationSetNestedGenerator`): a nested
/// `matrix` or `merge` is kept as written JSON (a schema cannot recurse) and read by the controller.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NestedGenerator {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<ListGenerator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<ClusterGenerator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitGenerator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object_schema")]
    pub matrix: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object_schema")]
    pub merge: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object_schema")]
    pub scm_provider: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object_schema")]
    pub cluster_decision_resource: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object_schema")]
    pub pull_request: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object_schema")]
    pub plugin: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// `list`: literal parameter sets.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListGenerator {
    /// One parameter set per element (any JSON object).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "preserved_object_list")]
    pub elements: Vec<Value>,
    /// The elements as a YAML list, after rendering (Argo's `elementsYaml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elements_yaml: Option<String>,
    /// Overrides of the ApplicationSet's template for this generator's Applications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object_schema")]
    pub template: Option<Value>,
}

/// `clusters`: one parameter set per cluster Secret (and the implicit in-cluster cluster).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterGenerator {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object_schema")]
    pub template: Option<Value>,
    /// Extra parameters `values.<key>` (templates over the cluster's parameters).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, String>,
    /// One parameter set listing every cluster (not implemented by Sluice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_schema")]
    pub flat_list: Option<Value>,
}

/// `git`: the directories or files of a Git repository at a revision.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitGenerator {
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    /// Branch, tag or commit (default `HEAD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub directories: Vec<GitDirectoryGeneratorItem>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<GitFileGeneratorItem>,
    /// Look again after this many seconds (default: `--repo-poll-interval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requeue_after_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object_schema")]
    pub template: Option<Value>,
    /// Prefix of the `path` parameters (`<prefix>.path...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_param_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, String>,
}

/// `git.directories[]`: a glob over the repository's directories.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitDirectoryGeneratorItem {
    pub path: String,
    /// Directories matching are left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<bool>,
}

/// `git.files[]`: a glob over the repository's files (JSON or YAML).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitFileGeneratorItem {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<bool>,
}

/// `matrix`: every combination of the sets of its two generators.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MatrixGenerator {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generators: Vec<NestedGenerator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object_schema")]
    pub template: Option<Value>,
}

/// `merge`: the sets of the first generator, overridden by the sets of the others with the same
/// values of `mergeKeys`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MergeGenerator {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generators: Vec<NestedGenerator>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merge_keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object_schema")]
    pub template: Option<Value>,
}

/// The observed state (Argo's `ApplicationSetStatus`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSetStatus {
    /// `ErrorOccurred`, `ParametersGenerated`, `ResourcesUpToDate`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generated Applications and their sync and health.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ApplicationSetResource>,
    /// Progressive-sync states (Argo's `applicationStatus`; Sluice has no progressive syncs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_schema")]
    pub application_status: Option<Value>,
}

/// `status.resources[]`: one generated Application (Argo's `ResourceStatus`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSetResource {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    /// The Application's sync status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<ApplicationSetResourceHealth>,
}

/// `status.resources[].health`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSetResourceHealth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

fn preserved_object_list(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
    })
}

/// Paths under an ApplicationSet's `spec` that Sluice does not implement. `[]` matches every item.
/// Generators nested in a nested `matrix`/`merge` are checked by the controller when it reads them.
pub const UNSUPPORTED_SPEC: &[&str] = &[
    "generators[].scmProvider",
    "generators[].clusterDecisionResource",
    "generators[].pullRequest",
    "generators[].plugin",
    "generators[].clusters.flatList",
    "generators[].matrix.generators[].scmProvider",
    "generators[].matrix.generators[].clusterDecisionResource",
    "generators[].matrix.generators[].pullRequest",
    "generators[].matrix.generators[].plugin",
    "generators[].matrix.generators[].clusters.flatList",
    "generators[].merge.generators[].scmProvider",
    "generators[].merge.generators[].clusterDecisionResource",
    "generators[].merge.generators[].pullRequest",
    "generators[].merge.generators[].plugin",
    "generators[].merge.generators[].clusters.flatList",
    "ignoreApplicationDifferences[].jqPathExpressions",
];

impl ApplicationSetSpec {
    /// Whether templates are Go templates.
    pub fn go_template(&self) -> bool {
        self.go_template.unwrap_or(false)
    }

    /// The unimplemented Argo fields set, as concrete paths (`spec.generators[1].plugin`),
    /// including a `RollingSync` strategy.
    pub fn unsupported_fields(&self) -> Vec<String> {
        let Ok(value) = serde_json::to_value(self) else {
            return Vec::new();
        };
        let mut found = unsupported::set_paths(&value, "spec", UNSUPPORTED_SPEC.iter().copied());
        if let Some(strategy) = &self.strategy {
            let kind = strategy.get("type").and_then(Value::as_str).unwrap_or("");
            if kind == "RollingSync" || strategy.contains_key("rollingSync") {
                found.push("spec.strategy.rollingSync".to_string());
            } else if !kind.is_empty() && kind != "AllAtOnce" {
                found.push("spec.strategy.type".to_string());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;
    use serde_json::json;

    #[test]
    fn argo_git_directories_appset_round_trips() {
        let spec: ApplicationSetSpec = serde_json::from_value(json!({
            "goTemplate": true,
            "goTemplateOptions": ["missingkey=error"],
            "generators": [{"git": {"repoURL": "https://example.com/r.git", "revision": "HEAD",
                "directories": [{"path": "apps/*"}, {"path": "apps/skip", "exclude": true}]}}],
            "template": {"metadata": {"name": "{{.path.basename}}"},
                "spec": {"project": "default", "source": {"repoURL": "https://example.com/r.git",
                    "path": "{{.path.path}}"}, "destination": {"namespace": "{{.path.basename}}"}}},
            "syncPolicy": {"applicationsSync": "create-update", "preserveResourcesOnDeletion": true}
        }))
        .unwrap();
        assert!(spec.go_template());
        assert!(spec.unsupported_fields().is_empty());
        let policy = spec.sync_policy.as_ref().unwrap();
        assert_eq!(
            policy.applications_sync(),
            Ok(ApplicationsSyncPolicy {
                update: true,
                delete: false
            })
        );
        assert!(policy.preserve_resources_on_deletion());
        let again: ApplicationSetSpec =
            serde_json::from_value(serde_json::to_value(&spec).unwrap()).unwrap();
        assert_eq!(again, spec);
    }

    #[test]
    fn unimplemented_generators_and_strategies_are_named() {
        let spec: ApplicationSetSpec = serde_json::from_value(json!({
            "generators": [{"list": {"elements": []}}, {"pullRequest": {"github": {}}},
                {"matrix": {"generators": [{"plugin": {}}, {"list": {"elements": []}}]}}],
            "strategy": {"type": "RollingSync", "rollingSync": {"steps": []}},
            "template": {}
        }))
        .unwrap();
        assert_eq!(
            spec.unsupported_fields(),
            vec![
                "spec.generators[1].pullRequest",
                "spec.generators[2].matrix.generators[0].plugin",
                "spec.strategy.rollingSync"
            ]
        );
    }

    #[test]
    fn crd_names() {
        let crd = ApplicationSet::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("applicationsets.sluice.dev")
        );
    }
}
