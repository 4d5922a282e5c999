//! The `Application` kind: what to sync from Git into the cluster, and how it went.
//!
//! Field names and shapes are Argo CD's (`pkg/apis/application/v1alpha1/types.go`) for the features
//! Sluice has: one Git `source` rendered as a plain directory, Kustomize or Helm; the `destination`
//! (the controller's own cluster, or one of a cluster Secret: `gitops::clusters`); `syncPolicy` (automated, options, retry); `ignoreDifferences`; and the status Argo CD
//! reports; and Argo CD's top-level `operation` (a requested sync, recorded in
//! `status.operationState`). Sluice adds `spec.syncPolicy.rollback.gitRevert`; in `operation`,
//! `rollback` (to a `status.history` id; it turns automated sync off) and `refresh`; in status,
//! `revert`, `quarantinedRevisions` (the Git write-back of the hand-off described in DESIGN.md) and
//! `resources[].diff`.
//!
//! Every other field of Argo CD's Application schema is in the schema too, typed or as preserved
//! JSON, so that the API server stores it as written: those Sluice does not implement (multiple
//! `sources`, chart repositories, plugins, Jsonnet, ...) are refused by name by the controller
//! (`InvalidSpecError`, see `gitops::unsupported`), never pruned silently.
//!
//! Defaults are not in the schema (what a user wrote round-trips unchanged); they are applied through the
//! accessor methods here, with Argo CD's values.

use std::collections::BTreeMap;
use std::time::Duration;

use std::borrow::Cow;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::core::object::{HasSpec, HasStatus};
use kube::core::{ApiResource, Resource};
use kube::{CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::common::{Condition, api_enum_names};
use crate::duration::{DurationError, parse_duration};

/// `destination.server` meaning "the cluster the controller runs in / talks to" (also the default).
pub const IN_CLUSTER_SERVER: &str = "https://kubernetes.default.svc";
/// `destination.name` meaning the same cluster.
pub const IN_CLUSTER_NAME: &str = "in-cluster";
/// `source.targetRevision` when unset.
pub const DEFAULT_TARGET_REVISION: &str = "HEAD";
/// `source.path` when unset.
pub const DEFAULT_PATH: &str = ".";
/// `spec.project` when unset.
pub const DEFAULT_PROJECT: &str = "default";
/// `spec.revisionHistoryLimit` when unset.
pub const DEFAULT_REVISION_HISTORY_LIMIT: i64 = 10;
/// `syncPolicy.retry.limit` when a `retry` block leaves it unset.
pub const DEFAULT_RETRY_LIMIT: i64 = 5;
/// `syncPolicy.retry.backoff.duration` when unset.
pub const DEFAULT_BACKOFF_DURATION: Duration = Duration::from_secs(5);
/// `syncPolicy.retry.backoff.factor` when unset.
pub const DEFAULT_BACKOFF_FACTOR: i64 = 2;
/// `syncPolicy.retry.backoff.maxDuration` when unset.
pub const DEFAULT_BACKOFF_MAX_DURATION: Duration = Duration::from_secs(180);

/// A spec value that cannot be interpreted.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplicationSpecError {
    #[error("{field}: {source}")]
    InvalidDuration {
        field: &'static str,
        #[source]
        source: DurationError,
    },
}

// ---------------------------------------------------------------------------------------------------
// Spec
// ---------------------------------------------------------------------------------------------------

/// The Application object. Written by hand rather than derived because Argo CD keeps `operation` at
/// the top level, beside `spec` and `status`, which `#[derive(CustomResource)]` cannot express; the
/// CRD is generated from [`schema::Application`], whose flattened [`schema::ApplicationFields`]
/// give the same shape.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Application {
    pub metadata: ObjectMeta,
    pub spec: ApplicationSpec,
    /// A sync, rollback or refresh requested by a user (Argo CD's `operation`); the controller
    /// removes it once it has acted on it and records the outcome in `status.operationState`.
    #[serde(default)]
    pub operation: Option<Operation>,
    #[serde(default)]
    pub status: Option<ApplicationStatus>,
}

impl Application {
    /// An Application named `name` with `spec`, no operation and no status.
    pub fn new(name: &str, spec: ApplicationSpec) -> Self {
        Self {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..ObjectMeta::default()
            },
            spec,
            operation: None,
            status: None,
        }
    }
}

impl Serialize for Application {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Repr<'a> {
            api_version: &'a str,
            kind: &'a str,
            metadata: &'a ObjectMeta,
            spec: &'a ApplicationSpec,
            #[serde(skip_serializing_if = "Option::is_none")]
            operation: Option<&'a Operation>,
            #[serde(skip_serializing_if = "Option::is_none")]
            status: Option<&'a ApplicationStatus>,
        }
        Repr {
            api_version: &<Application as Resource>::api_version(&()),
            kind: &<Application as Resource>::kind(&()),
            metadata: &self.metadata,
            spec: &self.spec,
            operation: self.operation.as_ref(),
            status: self.status.as_ref(),
        }
        .serialize(ser)
    }
}

impl Resource for Application {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        <schema::Application as Resource>::kind(&())
    }

    fn group(_: &()) -> Cow<'_, str> {
        <schema::Application as Resource>::group(&())
    }

    fn version(_: &()) -> Cow<'_, str> {
        <schema::Application as Resource>::version(&())
    }

    fn api_version(_: &()) -> Cow<'_, str> {
        <schema::Application as Resource>::api_version(&())
    }

    fn plural(_: &()) -> Cow<'_, str> {
        <schema::Application as Resource>::plural(&())
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl HasSpec for Application {
    type Spec = ApplicationSpec;

    fn spec(&self) -> &ApplicationSpec {
        &self.spec
    }

    fn spec_mut(&mut self) -> &mut ApplicationSpec {
        &mut self.spec
    }
}

impl HasStatus for Application {
    type Status = ApplicationStatus;

    fn status(&self) -> Option<&ApplicationStatus> {
        self.status.as_ref()
    }

    fn status_mut(&mut self) -> &mut Option<ApplicationStatus> {
        &mut self.status
    }
}

impl CustomResourceExt for Application {
    fn crd() -> CustomResourceDefinition {
        schema::Application::crd()
    }

    fn crd_name() -> &'static str {
        schema::Application::crd_name()
    }

    fn api_resource() -> ApiResource {
        schema::Application::api_resource()
    }

    fn shortnames() -> &'static [&'static str] {
        schema::Application::shortnames()
    }
}

/// The CRD's schema source: the derived root is named `Application` here (the CRD's title), apart
/// from the hand-written [`Application`](super::Application) everyone uses.
pub mod schema {
    use super::{ApplicationSpec, ApplicationStatus, Operation};
    use kube::CustomResource;
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};

    /// The top-level fields of an Application besides `metadata` and `status`: the schema source of the
    /// CRD (see [`Application`]).
    // Clippy reads the repeated `type_ = "string"` of the printer columns as duplicated attributes.
    #[allow(clippy::duplicated_attributes)]
    #[derive(
        CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema,
    )]
    #[kube(
        group = "sluice.dev",
        version = "v1alpha1",
        kind = "Application",
        no_spec,
        namespaced,
        shortname = "app",
        shortname = "apps",
        status = "ApplicationStatus",
        derive = "PartialEq",
        doc = "A set of manifests in Git, kept in sync with the cluster.",
        printcolumn(
            name = "Sync",
            type_ = "string",
            json_path = ".status.sync.status",
            description = "Sync status"
        ),
        printcolumn(
            name = "Health",
            type_ = "string",
            json_path = ".status.health.status",
            description = "Health status"
        ),
        printcolumn(
            name = "Revision",
            type_ = "string",
            json_path = ".status.sync.revision",
            description = "Synced revision"
        ),
        printcolumn(
            name = "Age",
            type_ = "date",
            json_path = ".metadata.creationTimestamp"
        )
    )]
    #[serde(rename_all = "camelCase")]
    pub struct ApplicationFields {
        #[doc = "What to deploy (a path of a Git repository at a revision) and where, and how to keep it in sync."]
        pub spec: ApplicationSpec,
        /// A requested operation (sync, rollback, refresh); removed by the controller once acted on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub operation: Option<Operation>,
    }
}

/// Helm's release name check (`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`) on
/// the `source` of the object it is set on, empty meaning the default; Sluice checks it again before
/// running helm. Set on the objects users write (`spec`, `operation.sync`), not on the source copies
/// of `status.history`: an unbounded list, whose rule cost the API server would refuse.
const RELEASE_NAME_RULE: &str = "!has(self.source) || !has(self.source.helm) || \
    !has(self.source.helm.releaseName) || self.source.helm.releaseName == '' || \
    self.source.helm.releaseName.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')";
const RELEASE_NAME_MESSAGE: &str = "releaseName must be a DNS-1123 name (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit) of at most 53 characters, as Helm requires";

/// Why an Application without `spec.source` is refused: Argo CD Applications with `spec.sources`
/// have none.
const SOURCE_REQUIRED_MESSAGE: &str = "spec.source is required: Sluice syncs one source (spec.sources, Argo CD's multiple sources, is not supported by Sluice yet)";

/// What to deploy (a path of a Git repository at a revision) and where, and how to keep it in sync.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new(RELEASE_NAME_RULE)
    .message(RELEASE_NAME_MESSAGE)
    .field_path(".source.helm.releaseName"))]
#[x_kube(validation = Rule::new("has(self.source)")
    .message(SOURCE_REQUIRED_MESSAGE)
    .field_path(".source"))]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSpec {
    /// The `AppProject` (in the controller's control namespace) whose rules the Application follows
    /// (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Where the manifests come from. Required, by a validation rule rather than by the schema's
    /// `required`, so that the API server's message can name `spec.sources` (which it would not
    /// check once a required field is missing).
    #[serde(default)]
    #[schemars(transform = without_default)]
    pub source: ApplicationSource,
    /// Where they go.
    pub destination: ApplicationDestination,
    /// When and how to sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_policy: Option<SyncPolicy>,
    /// Entries kept in `status.history` (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<i64>,
    /// Differences to ignore when comparing Git with the live objects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_differences: Vec<ResourceIgnoreDifferences>,
    /// Free-form notes about the Application (Argo CD's `info`), shown by `kubectl sluice app get`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub info: Vec<Info>,
    /// Argo CD's multiple sources: kept as written, refused (InvalidSpecError) when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object_list")]
    pub sources: Option<Vec<Map<String, Value>>>,
    /// Argo CD's source hydrator: kept as written, refused (InvalidSpecError) when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object")]
    pub source_hydrator: Option<Map<String, Value>>,
}

impl ApplicationSpec {
    /// `project`, default [`DEFAULT_PROJECT`] when unset or empty (Argo CD's `GetProject`).
    pub fn project(&self) -> &str {
        self.project
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or(DEFAULT_PROJECT)
    }

    /// `revisionHistoryLimit`, default [`DEFAULT_REVISION_HISTORY_LIMIT`].
    pub fn revision_history_limit(&self) -> i64 {
        self.revision_history_limit
            .unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT)
    }

    /// The automated sync policy when automated sync is on (`automated` set, `enabled` not false).
    pub fn automated(&self) -> Option<&SyncPolicyAutomated> {
        self.sync_policy
            .as_ref()?
            .automated
            .as_ref()
            .filter(|a| a.is_enabled())
    }

    /// Whether new commits are synced without a request.
    pub fn is_automated(&self) -> bool {
        self.automated().is_some()
    }

    /// `syncPolicy.retry`: `None` means a failed sync is not retried for the same revision.
    pub fn retry(&self) -> Option<&RetryStrategy> {
        self.sync_policy.as_ref()?.retry.as_ref()
    }

    /// The value of sync option `key` (`syncOptions: ["CreateNamespace=true"]` gives `Some("true")`).
    pub fn sync_option(&self, key: &str) -> Option<&str> {
        self.sync_policy.as_ref()?.sync_option(key)
    }

    /// `syncPolicy.rollback.gitRevert`, default true: revert the offending commit in Git when a
    /// Rollout of this Application fails its analysis.
    pub fn git_revert(&self) -> bool {
        self.sync_policy
            .as_ref()
            .and_then(|p| p.rollback.as_ref())
            .is_none_or(RollbackPolicy::git_revert_enabled)
    }

    /// What is wrong with `syncPolicy.rollback.gitRevert`, if anything.
    pub fn git_revert_error(&self) -> Option<String> {
        self.sync_policy
            .as_ref()
            .and_then(|p| p.rollback.as_ref())
            .and_then(RollbackPolicy::git_revert_error)
    }

    /// `syncPolicy.rollback.gitRevert.onError`, default false: revert also when the analysis
    /// ended in Error (no verdict, e.g. the metric provider was down).
    pub fn git_revert_on_error(&self) -> bool {
        self.sync_policy
            .as_ref()
            .and_then(|p| p.rollback.as_ref())
            .is_some_and(RollbackPolicy::git_revert_on_error)
    }
}

/// A path of a Git repository at a revision, rendered as plain YAML, Kustomize or Helm.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new(
    "(has(self.directory) ? 1 : 0) + (has(self.kustomize) ? 1 : 0) + (has(self.helm) ? 1 : 0) <= 1"
).message("at most one of directory, kustomize and helm may be set"))]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSource {
    /// URL of the Git repository, or of the chart repository (`https://`) or OCI registry
    /// (`oci://`) of `chart`.
    #[serde(rename = "repoURL")]
    #[x_kube(validation = Rule::new("self != ''").message("repoURL must not be empty"))]
    pub repo_url: String,
    /// Branch, tag, commit or semver range of tags to follow (default `HEAD`); for a chart, its
    /// version or a semver range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_revision: Option<String>,
    /// Directory of the repository holding the manifests (default `.`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Options for a plain directory of manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<ApplicationSourceDirectory>,
    /// Options for a Kustomize overlay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kustomize: Option<ApplicationSourceKustomize>,
    /// Options for a Helm chart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<ApplicationSourceHelm>,
    /// A name for the source, for display (Argo CD's `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A Helm chart of the chart repository or OCI registry `repoURL` (then `targetRevision` is
    /// the chart's version or a semver range, and `path` is not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<String>,
    /// Argo CD's reference for `$ref/...` value files of multiple sources: refused when set.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub ref_: Option<String>,
    /// Argo CD's prefix of the Git tags a semver `targetRevision` is matched against: refused
    /// when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_prefix: Option<String>,
    /// Argo CD's config management plugin: kept as written, refused (InvalidSpecError) when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object")]
    pub plugin: Option<Map<String, Value>>,
}

impl ApplicationSource {
    /// `targetRevision`, default [`DEFAULT_TARGET_REVISION`] (also when empty).
    pub fn target_revision(&self) -> &str {
        self.target_revision
            .as_deref()
            .filter(|r| !r.is_empty())
            .unwrap_or(DEFAULT_TARGET_REVISION)
    }

    /// `path`, default [`DEFAULT_PATH`] (also when empty).
    pub fn path(&self) -> &str {
        self.path
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or(DEFAULT_PATH)
    }

    /// The source type the spec names (`helm`, `kustomize` or `directory` set); `None` means it is
    /// detected from the files (as Argo CD: `Chart.yaml` → Helm, `kustomization.yaml` → Kustomize, else
    /// Directory).
    pub fn explicit_source_type(&self) -> Option<ApplicationSourceType> {
        if self.helm.is_some() {
            Some(ApplicationSourceType::Helm)
        } else if self.kustomize.is_some() {
            Some(ApplicationSourceType::Kustomize)
        } else if self.directory.is_some() {
            Some(ApplicationSourceType::Directory)
        } else {
            None
        }
    }
}

/// Options for a plain directory of manifests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSourceDirectory {
    /// Read subdirectories too (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurse: Option<bool>,
    /// Glob of the files to read, e.g. `*.yaml` or `{app.yaml,svc.yaml}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<String>,
    /// Glob of the files to skip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<String>,
    /// Argo CD's jsonnet options: kept as written, refused (InvalidSpecError) when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object")]
    pub jsonnet: Option<Map<String, Value>>,
    /// Read files of every name, not only `*.yaml`, `*.yml`, `*.json` (with `include` /
    /// `exclude` to choose them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_extension_filter: Option<bool>,
}

impl ApplicationSourceDirectory {
    /// `recurse`, default false.
    pub fn recurse(&self) -> bool {
        self.recurse.unwrap_or(false)
    }
}

/// Options for a Kustomize overlay.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSourceKustomize {
    /// Prefix added to every resource name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_prefix: Option<String>,
    /// Suffix added to every resource name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_suffix: Option<String>,
    /// Image overrides as `kustomize edit set image` takes them, e.g. `nginx=nginx:1.27`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    /// Labels added to every resource (and selector).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub common_labels: BTreeMap<String, String>,
    /// Annotations added to every resource.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub common_annotations: BTreeMap<String, String>,
    /// Namespace set on every namespaced resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Replica counts set on the named Deployments, StatefulSets, ... (`replicas` of a
    /// kustomization).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<KustomizeReplica>,
    /// `commonLabels` also on the kustomization's own labels (Sluice always lets the Application's
    /// labels win, so both values give that result).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_common_labels: Option<bool>,
    /// `commonAnnotations` also over the kustomization's own (as `forceCommonLabels`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_common_annotations: Option<bool>,
    /// `commonLabels` added to resources only, not to selectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_without_selector: Option<bool>,
    /// `commonLabels` added to pod templates too (with `labelWithoutSelector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_include_templates: Option<bool>,
    /// Kustomize components (directories relative to the source path) applied to the output.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<String>,
    /// Skip the `components` that are not in the repository instead of failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_missing_components: Option<bool>,
    /// Kustomize patches (`patch` inline or `path` relative to the source path, `target`,
    /// `options`) applied to the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "patch_list")]
    pub patches: Option<Vec<Map<String, Value>>>,
    /// Argo CD's environment substitution in `commonAnnotations`: refused when true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_annotations_envsubst: Option<bool>,
    /// Argo CD's kustomize binary version: refused when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Argo CD's Kubernetes version for Helm charts of the kustomization: refused when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_version: Option<String>,
    /// Argo CD's API versions for Helm charts of the kustomization: refused when set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_versions: Vec<String>,
}

/// A replica count override (`replicas` of a kustomization).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct KustomizeReplica {
    /// Name of the Deployment, StatefulSet, ReplicaSet or ReplicationController.
    pub name: String,
    /// The replica count (a number, or a string of digits as Argo CD accepts).
    pub count: k8s_openapi::apimachinery::pkg::util::intstr::IntOrString,
}

/// Options for a Helm chart.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSourceHelm {
    /// Values files, relative to the chart (`-f`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub value_files: Vec<String>,
    /// Values as a YAML string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<String>,
    /// Values as an object; takes precedence over `values`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub values_object: Option<Map<String, Value>>,
    /// `--set` / `--set-string` parameters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<HelmParameter>,
    /// Release name (default: the Application's name): a DNS-1123 name of at most 53 characters, as
    /// Helm requires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 53))]
    pub release_name: Option<String>,
    /// Do not install the chart's CRDs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_crds: Option<bool>,
    /// Ignore values files that do not exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_missing_value_files: Option<bool>,
    /// Do not render the chart's test hooks (`--skip-tests`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_tests: Option<bool>,
    /// Skip the chart's values schema (`--skip-schema-validation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_schema_validation: Option<bool>,
    /// The namespace the chart is rendered for (`--namespace`; default the destination namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `Capabilities.KubeVersion` of the rendering (`--kube-version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_version: Option<String>,
    /// `Capabilities.APIVersions` of the rendering (`--api-versions`), as `[group/]version[/kind]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_versions: Vec<String>,
    /// Helm major version: `3` / `v3` (the one Sluice runs) or unset; any other is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `--set-file` parameters: files of the repository (relative to the chart, `/` for the
    /// repository's root).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file_parameters: Vec<HelmFileParameter>,
    /// Send the chart repository's credentials to archive URLs on other hosts too (by default
    /// only to the repository's own host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_credentials: Option<bool>,
}

/// A `--set-file` parameter (Argo CD's `fileParameters`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HelmFileParameter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl ApplicationSourceHelm {
    /// `skipCrds`, default false.
    pub fn skip_crds(&self) -> bool {
        self.skip_crds.unwrap_or(false)
    }

    /// `ignoreMissingValueFiles`, default false.
    pub fn ignore_missing_value_files(&self) -> bool {
        self.ignore_missing_value_files.unwrap_or(false)
    }

    /// `skipTests`, default false.
    pub fn skip_tests(&self) -> bool {
        self.skip_tests.unwrap_or(false)
    }

    /// `skipSchemaValidation`, default false.
    pub fn skip_schema_validation(&self) -> bool {
        self.skip_schema_validation.unwrap_or(false)
    }
}

/// Drops the `default` schemars derives from `#[serde(default)]`: defaults are not in the schema
/// (what a user wrote round-trips unchanged).
fn without_default(schema: &mut schemars::Schema) {
    schema.remove("default");
}

/// An object kept as written (`x-kubernetes-preserve-unknown-fields`): an Argo CD field Sluice does
/// not implement, stored unpruned so that it can be refused by name.
fn preserved_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Argo CD field Sluice does not implement: kept as written; the Application is refused (InvalidSpecError naming it) when it is set.",
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// Kustomize patches, as Argo CD's schema has them (their fields are checked when rendering).
fn patch_list(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Kustomize patches (`patch` inline or `path` relative to the source path, `target`, `options`) applied to the output.",
        "type": "array",
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
    })
}

/// A list of objects kept as written (see [`preserved_object`]).
fn preserved_object_list(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Argo CD field Sluice does not implement: kept as written; the Application is refused (InvalidSpecError naming it) when it is set.",
        "type": "array",
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
    })
}

fn preserve_unknown_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Values as an object; takes precedence over `values`.",
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// A Helm parameter (`--set name=value`, or `--set-string` with `forceString`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HelmParameter {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Pass the value as a string even if it looks like a number or boolean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_string: Option<bool>,
}

/// The cluster and namespace to deploy to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationDestination {
    /// API server URL; `https://kubernetes.default.svc` (the default) is the cluster Sluice talks to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Namespace for namespaced objects that do not name one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Cluster name, instead of `server`; `in-cluster` is the cluster Sluice talks to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ApplicationDestination {
    /// `server`, default [`IN_CLUSTER_SERVER`] (also when empty).
    pub fn server(&self) -> &str {
        self.server
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(IN_CLUSTER_SERVER)
    }

    /// Whether the destination is the cluster the controller talks to: `server` unset or
    /// [`IN_CLUSTER_SERVER`], and `name` unset or [`IN_CLUSTER_NAME`].
    pub fn is_in_cluster(&self) -> bool {
        let server_ok = self.server().trim_end_matches('/') == IN_CLUSTER_SERVER;
        let name_ok = self
            .name
            .as_deref()
            .is_none_or(|n| n.is_empty() || n == IN_CLUSTER_NAME);
        server_ok && name_ok
    }
}

/// When and how to sync.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncPolicy {
    /// Sync new revisions without a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automated: Option<SyncPolicyAutomated>,
    /// Options such as `CreateNamespace=true`, `PruneLast=true`, `ServerSideApply=true`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sync_options: Vec<String>,
    /// Retry of failed syncs; without it a failed sync is not retried for the same revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryStrategy>,
    /// What to do in Git when a rollout of this Application fails (Sluice extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackPolicy>,
    /// Labels and annotations of the namespace `CreateNamespace=true` creates (and keeps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_namespace_metadata: Option<ManagedNamespaceMetadata>,
}

/// Labels and annotations Sluice sets on the destination namespace with `CreateNamespace=true`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ManagedNamespaceMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl SyncPolicy {
    /// The value of sync option `key`: `CreateNamespace=true` gives `Some("true")` for
    /// `CreateNamespace`; an option written without `=` gives `Some("")`.
    pub fn sync_option(&self, key: &str) -> Option<&str> {
        self.sync_options.iter().find_map(|option| {
            let (k, v) = option.split_once('=').unwrap_or((option.as_str(), ""));
            (k.trim() == key).then(|| v.trim())
        })
    }

    /// Whether sync option `key` is `true` (e.g. `has_sync_option("CreateNamespace")`).
    pub fn has_sync_option(&self, key: &str) -> bool {
        self.sync_option(key)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// Automated sync.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncPolicyAutomated {
    /// Delete objects no longer in Git (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<bool>,
    /// Revert live changes to synced objects (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_heal: Option<bool>,
    /// Allow a sync that leaves the Application with no objects (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_empty: Option<bool>,
    /// Turn automated sync off without removing the block (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

impl SyncPolicyAutomated {
    /// `prune`, default false.
    pub fn prune(&self) -> bool {
        self.prune.unwrap_or(false)
    }

    /// `selfHeal`, default false.
    pub fn self_heal(&self) -> bool {
        self.self_heal.unwrap_or(false)
    }

    /// `allowEmpty`, default false.
    pub fn allow_empty(&self) -> bool {
        self.allow_empty.unwrap_or(false)
    }

    /// `enabled`, default true.
    pub fn is_enabled(&self) -> bool {
        self.enabled.unwrap_or(true)
    }
}

/// Retry of failed syncs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryStrategy {
    /// Attempts after the first failure (default 5; negative: unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// Delay between attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    /// Retry with the latest revision of `targetRevision` instead of the one that failed
    /// (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<bool>,
}

/// Exponential backoff: `duration × factor^n`, at most `maxDuration`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Backoff {
    /// First delay, e.g. `5s`, `2m`, or a number of seconds (default 5s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Multiplier after each failed attempt (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<i64>,
    /// Longest delay (default 3m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration: Option<String>,
}

impl RetryStrategy {
    /// `limit`, default [`DEFAULT_RETRY_LIMIT`]; negative means unlimited.
    pub fn limit(&self) -> i64 {
        self.limit.unwrap_or(DEFAULT_RETRY_LIMIT)
    }

    /// Whether another attempt is allowed after `retry_count` retries.
    pub fn allows_retry(&self, retry_count: i64) -> bool {
        let limit = self.limit();
        limit < 0 || retry_count < limit
    }

    /// `backoff.duration`, default [`DEFAULT_BACKOFF_DURATION`].
    pub fn backoff_duration(&self) -> Result<Duration, ApplicationSpecError> {
        let value = self.backoff.as_ref().and_then(|b| b.duration.as_deref());
        parse_backoff_duration("backoff.duration", value, DEFAULT_BACKOFF_DURATION)
    }

    /// `backoff.factor`, default [`DEFAULT_BACKOFF_FACTOR`] (at least 1).
    pub fn backoff_factor(&self) -> i64 {
        self.backoff
            .as_ref()
            .and_then(|b| b.factor)
            .unwrap_or(DEFAULT_BACKOFF_FACTOR)
            .max(1)
    }

    /// `backoff.maxDuration`, default [`DEFAULT_BACKOFF_MAX_DURATION`].
    pub fn backoff_max_duration(&self) -> Result<Duration, ApplicationSpecError> {
        let value = self
            .backoff
            .as_ref()
            .and_then(|b| b.max_duration.as_deref());
        parse_backoff_duration("backoff.maxDuration", value, DEFAULT_BACKOFF_MAX_DURATION)
    }

    /// The delay before the next attempt when `retry_count` retries were made already, as Argo CD:
    /// `duration × factor^retry_count`, capped at `maxDuration`.
    pub fn delay(&self, retry_count: u32) -> Result<Duration, ApplicationSpecError> {
        let max = self.backoff_max_duration()?;
        let factor = u32::try_from(self.backoff_factor()).unwrap_or(u32::MAX);
        let mut delay = self.backoff_duration()?;
        for _ in 0..retry_count {
            if delay >= max {
                break;
            }
            delay = delay.saturating_mul(factor);
        }
        Ok(if max.is_zero() { delay } else { delay.min(max) })
    }
}

/// Parse an Argo CD backoff duration: a Go duration (`5s`, `2m`, `1h30m`) or a number of seconds.
fn parse_backoff_duration(
    field: &'static str,
    value: Option<&str>,
    default: Duration,
) -> Result<Duration, ApplicationSpecError> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(default);
    };
    if let Ok(seconds) = value.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    parse_duration(value).map_err(|source| ApplicationSpecError::InvalidDuration { field, source })
}

/// What to do in Git when a rollout of this Application fails its analysis (Sluice extension).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackPolicy {
    /// `true` / `false`, or `{enabled, onError}`: push a `git revert` of the commit that
    /// introduced the failed revision (default true); when the analysis ended in Error (e.g. its
    /// metric provider was unreachable) only with `onError: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "git_revert_schema")]
    pub git_revert: Option<GitRevert>,
}

impl RollbackPolicy {
    /// Whether a failed analysis reverts its commit in Git (default true).
    pub fn git_revert_enabled(&self) -> bool {
        match &self.git_revert {
            None | Some(GitRevert::Invalid(_)) => true,
            Some(GitRevert::Enabled(enabled)) => *enabled,
            Some(GitRevert::Policy(policy)) => policy.enabled.unwrap_or(true),
        }
    }

    /// Whether an analysis that ended in Error (no verdict) reverts too (default false).
    pub fn git_revert_on_error(&self) -> bool {
        match &self.git_revert {
            Some(GitRevert::Policy(policy)) => {
                policy.on_error.unwrap_or(false) && policy.enabled.unwrap_or(true)
            }
            _ => false,
        }
    }

    /// What is wrong with `gitRevert`, if it is neither a boolean nor `{enabled, onError}`.
    pub fn git_revert_error(&self) -> Option<String> {
        match &self.git_revert {
            Some(GitRevert::Invalid(value)) => Some(format!(
                "spec.syncPolicy.rollback.gitRevert must be true, false or {{enabled: <bool>, onError: <bool>}}, not {}",
                shorten(&value.to_string())
            )),
            _ => None,
        }
    }
}

/// `syncPolicy.rollback.gitRevert`: a switch, or the policy with its options. Anything else is
/// kept as [`GitRevert::Invalid`] (reported when a revert is due) rather than refused: a value the
/// schema cannot check must not make the Application unreadable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum GitRevert {
    Enabled(bool),
    Policy(GitRevertPolicy),
    Invalid(Value),
}

impl<'de> Deserialize<'de> for GitRevert {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Ok(match value {
            Value::Bool(enabled) => Self::Enabled(enabled),
            Value::Object(_) => match serde_json::from_value(value.clone()) {
                Ok(policy) => Self::Policy(policy),
                Err(_) => Self::Invalid(value),
            },
            other => Self::Invalid(other),
        })
    }
}

/// `syncPolicy.rollback.gitRevert` as an object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitRevertPolicy {
    /// Revert at all (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Also revert when the analysis ended in Error rather than Failed (default false: traffic
    /// goes back to stable and Git stays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<bool>,
}

/// A boolean or an object: a structural schema has no "one of two types", and the API server
/// cannot run CEL on a value of no declared type, so the value is kept and checked in code.
fn git_revert_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "`true` / `false`, or `{enabled, onError}`: push a `git revert` of the commit that introduced the failed revision (default true); when the analysis ended in Error (e.g. its metric provider was unreachable) only with `onError: true`.",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// At most 80 characters of `text`, for messages quoting user input.
fn shorten(text: &str) -> String {
    if text.chars().count() <= 80 {
        return text.to_string();
    }
    let cut: String = text.chars().take(77).collect();
    format!("{cut}...")
}

/// Differences to ignore for the matching objects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceIgnoreDifferences {
    /// API group (empty or unset: the core group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub kind: String,
    /// Object name (unset: every object of the kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Object namespace (unset: every namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// JSON pointers (RFC 6901) of the fields to ignore, e.g. `/spec/replicas`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub json_pointers: Vec<String>,
    /// jq path expressions of the fields to ignore.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jq_path_expressions: Vec<String>,
    /// Field managers whose fields are ignored (e.g. `kube-controller-manager`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_fields_managers: Vec<String>,
}

// ---------------------------------------------------------------------------------------------------
// Status
// ---------------------------------------------------------------------------------------------------

/// Status of an Application, as Argo CD reports it, plus Sluice's Git revert state.
///
/// Fields that only the controller writes follow Go's `omitempty` wire form where Argo CD has plain
/// values (zero numbers, false booleans and empty identity strings are omitted).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationStatus {
    /// Whether the live objects match Git, at which revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncStatus>,
    /// The worst health of the Application's objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthStatus>,
    /// The objects of the Application and their sync and health.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceStatus>,
    /// Successful syncs, oldest first, capped by `revisionHistoryLimit`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<RevisionHistory>,
    /// The current or last sync operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_state: Option<OperationState>,
    /// Errors and warnings: `ComparisonError`, `SyncError`, `InvalidSpecError`, `RevertFailed`, ...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// When the Application was last compared with Git.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciled_at: Option<Time>,
    /// Deprecated in Argo CD; kept for compatibility.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<Time>,
    /// How the source was rendered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_type: Option<ApplicationSourceType>,
    /// Summary of the objects, e.g. their images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<ApplicationSummary>,
    /// The Git revert of a revision whose rollout failed (Sluice extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert: Option<RevertStatus>,
    /// Revisions automated sync must not apply (a failed rollout's commit, until its revert lands).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quarantined_revisions: Vec<String>,
}

impl ApplicationStatus {
    /// `sync.status`, Unknown when unset.
    pub fn sync_status(&self) -> SyncStatusCode {
        self.sync
            .as_ref()
            .map_or(SyncStatusCode::Unknown, |s| s.status)
    }

    /// `health.status`, Unknown when unset.
    pub fn health_status(&self) -> HealthStatusCode {
        self.health
            .as_ref()
            .map_or(HealthStatusCode::Unknown, |h| h.status)
    }

    /// Whether automated sync must not apply `revision`.
    pub fn is_quarantined(&self, revision: &str) -> bool {
        self.quarantined_revisions.iter().any(|r| r == revision)
    }

    /// The id for the next history entry: one more than the last, 0 for the first (as Argo CD).
    pub fn next_history_id(&self) -> i64 {
        self.history.last().map_or(0, |h| h.id + 1)
    }

    /// Append `entry` to `history`, dropping the oldest entries beyond `limit` (at least one is kept).
    pub fn push_history(&mut self, entry: RevisionHistory, limit: i64) {
        self.history.push(entry);
        let keep = usize::try_from(limit.max(1)).unwrap_or(usize::MAX);
        if self.history.len() > keep {
            let excess = self.history.len() - keep;
            self.history.drain(..excess);
        }
    }
}

/// Comparison of Git with the live objects.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    pub status: SyncStatusCode,
    /// The commit compared (full sha).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The source and destination compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compared_to: Option<ComparedTo>,
}

/// The source and destination a comparison used.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComparedTo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ApplicationSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<ApplicationDestination>,
}

/// Whether live objects match Git.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum SyncStatusCode {
    /// Live objects match Git.
    Synced,
    /// Live objects differ from Git.
    OutOfSync,
    /// Not compared yet, or the comparison failed.
    #[default]
    Unknown,
}

api_enum_names!(SyncStatusCode {
    Synced,
    OutOfSync,
    Unknown
});

/// Health of an object or of the whole Application.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthStatus {
    pub status: HealthStatusCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}

/// Health codes, as Argo CD's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum HealthStatusCode {
    /// Working as intended.
    Healthy,
    /// Not healthy yet, but may become so.
    Progressing,
    /// Failed, or could not become healthy in time.
    Degraded,
    /// Paused or suspended (e.g. a paused Rollout).
    Suspended,
    /// In Git but not in the cluster.
    Missing,
    /// Health could not be assessed.
    #[default]
    Unknown,
}

impl HealthStatusCode {
    /// Rank used to combine health codes, as Argo CD's (gitops-engine `healthOrder`):
    /// Healthy < Suspended < Progressing < Missing < Degraded < Unknown.
    pub fn severity(self) -> u8 {
        match self {
            HealthStatusCode::Healthy => 0,
            HealthStatusCode::Suspended => 1,
            HealthStatusCode::Progressing => 2,
            HealthStatusCode::Missing => 3,
            HealthStatusCode::Degraded => 4,
            HealthStatusCode::Unknown => 5,
        }
    }

    /// The worse of two codes (by [`severity`](Self::severity)).
    #[must_use]
    pub fn worst(self, other: HealthStatusCode) -> HealthStatusCode {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }

    /// The worst of several codes (an Application's health from its objects'); Healthy for none.
    pub fn worst_of(codes: impl IntoIterator<Item = HealthStatusCode>) -> HealthStatusCode {
        codes
            .into_iter()
            .fold(HealthStatusCode::Healthy, HealthStatusCode::worst)
    }
}

api_enum_names!(HealthStatusCode {
    Healthy,
    Progressing,
    Degraded,
    Suspended,
    Missing,
    Unknown
});

/// An object of the Application.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    /// API group; empty for the core group.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    pub kind: String,
    /// Empty for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<SyncStatusCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthStatus>,
    /// In the cluster but no longer in Git.
    #[serde(default, skip_serializing_if = "is_false")]
    pub requires_pruning: bool,
    /// The object's sync wave.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sync_wave: i64,
    /// Sluice: how the live object differs from Git, when OutOfSync: the hunks of a unified diff
    /// (`@@` lines, 3 lines of context) from the live object (`-`) to what Git declares (`+`),
    /// both as YAML restricted to the fields Git declares (Secret values masked). An object
    /// missing from the cluster is all `+`. At most 50 lines per object and 1000 for all objects
    /// of the Application, the last one `... N more lines` when cut.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diff: Vec<String>,
}

/// A successful sync.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionHistory {
    /// Increasing id, used by `app rollback ID`.
    pub id: i64,
    /// The commit synced (full sha).
    pub revision: String,
    /// When the sync finished.
    pub deployed_at: Time,
    /// When the sync started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_started_at: Option<Time>,
    /// The source synced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ApplicationSource>,
    /// Who asked for the sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiated_by: Option<OperationInitiator>,
}

/// Who started an operation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationInitiator {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Started by the controller (automated sync, self-heal).
    #[serde(default, skip_serializing_if = "is_false")]
    pub automated: bool,
}

/// The current or last sync operation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationState {
    /// What was asked.
    pub operation: Operation,
    pub phase: OperationPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// What was done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_result: Option<SyncOperationResult>,
    pub started_at: Time,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// Retries made for this operation.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retry_count: i64,
}

/// An operation on the Application: Argo CD's top-level `operation` (and, as recorded, the
/// `operation` of `status.operationState`). Exactly one of `sync`, `rollback` and `refresh` is
/// expected; a sync is what Argo CD runs, `rollback` and `refresh` are Sluice's requests for what Argo
/// CD's API server and `argocd.argoproj.io/refresh` annotation do.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncOperation>,
    /// Sluice: sync the revision of a `status.history` entry and turn automated sync off
    /// (`spec.syncPolicy.automated.enabled: false`) so that it is not synced away again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackOperation>,
    /// Sluice: compare with Git now (`normal`), also rendering again (`hard`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<RefreshType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiated_by: Option<OperationInitiator>,
    /// Free-form notes about the operation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub info: Vec<Info>,
    /// Retry of this operation when it fails (default: `spec.syncPolicy.retry`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryStrategy>,
}

/// A note attached to an operation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Info {
    pub name: String,
    pub value: String,
}

/// A sync request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new(RELEASE_NAME_RULE)
    .message(RELEASE_NAME_MESSAGE)
    .field_path(".source.helm.releaseName"))]
#[serde(rename_all = "camelCase")]
pub struct SyncOperation {
    /// The revision to sync: a commit sha, branch or tag (default: `spec.source.targetRevision`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Delete objects no longer in Git.
    #[serde(default, skip_serializing_if = "is_false")]
    pub prune: bool,
    /// Sync options for this operation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sync_options: Vec<String>,
    /// The source to sync instead of `spec.source` (a rollback syncs the source of its history entry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ApplicationSource>,
    /// Consecutive self-heal syncs of the same revision, for the self-heal backoff.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub auto_heal_attempts_count: i64,
    /// Only check what would be applied and pruned (server-side dry runs); nothing changes and
    /// no history entry is added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    /// Argo CD's manifests to sync instead of the source's: refused when set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifests: Vec<String>,
    /// Selective sync: only these objects are applied (and, with `prune`, pruned); no hooks run
    /// and no history entry is added, as in Argo CD.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub resources: Vec<SyncOperationResource>,
    /// Argo CD's revisions of multiple sources: refused when set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revisions: Vec<String>,
    /// Argo CD's multiple sources: kept as written, refused when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object_list")]
    pub sources: Option<Vec<Map<String, Value>>>,
    /// Argo CD's sync strategy (`apply.force`, `hook.force`): kept as written, refused when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserved_object")]
    pub sync_strategy: Option<Map<String, Value>>,
}

/// One object of a selective sync (Argo CD's `SyncOperationResource`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncOperationResource {
    /// API group; empty for the core group.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    pub kind: String,
    pub name: String,
    /// Empty matches the object in any namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

impl SyncOperationResource {
    /// Argo CD's `HasIdentity`: the same group, kind and name, and the namespace when given.
    pub fn matches(&self, group: &str, kind: &str, namespace: &str, name: &str) -> bool {
        self.group == group
            && self.kind == kind
            && self.name == name
            && (self.namespace.is_empty() || self.namespace == namespace)
    }
}

impl SyncOperation {
    /// `dryRun: true`.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run.unwrap_or(false)
    }
}

/// A rollback request: sync the revision and source of `status.history[id]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackOperation {
    /// The `id` of the history entry.
    pub id: i64,
    /// Delete objects that are not in that revision.
    #[serde(default, skip_serializing_if = "is_false")]
    pub prune: bool,
}

/// How thoroughly to refresh (Argo CD's refresh annotation values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RefreshType {
    /// Fetch the repository and compare again.
    Normal,
    /// Also render the manifests again instead of using the cached rendering.
    Hard,
}

/// Phase of an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum OperationPhase {
    /// In progress.
    Running,
    /// Being stopped.
    Terminating,
    /// Done, everything applied.
    Succeeded,
    /// Done, something could not be applied.
    Failed,
    /// Done, the operation itself went wrong.
    Error,
}

impl OperationPhase {
    /// Succeeded, Failed and Error are final.
    pub fn is_completed(self) -> bool {
        matches!(
            self,
            OperationPhase::Succeeded | OperationPhase::Failed | OperationPhase::Error
        )
    }
}

/// What a sync did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncOperationResult {
    /// The commit synced (full sha).
    pub revision: String,
    /// One entry per object applied or pruned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceResult>,
    /// The source synced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ApplicationSource>,
}

/// What a sync did to one object. Identity fields are always written, as Argo CD does.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceResult {
    /// API group; empty for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ResultCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_phase: Option<SyncPhase>,
    /// For a hook: its type (the phase it was written for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_type: Option<SyncPhase>,
    /// For a hook: how far it got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_phase: Option<HookPhase>,
}

/// How far a hook got (Argo CD's `hookPhase`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum HookPhase {
    /// Created, not complete yet (or not seen complete before the sync ended).
    Running,
    /// Completed successfully (a Job complete, a Pod succeeded, a resource healthy).
    Succeeded,
    /// Failed (or could not be created).
    Failed,
}

/// Result of a sync for one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ResultCode {
    /// Applied.
    Synced,
    /// Could not be applied.
    SyncFailed,
    /// Deleted.
    Pruned,
    /// Should be deleted, but pruning is off.
    PruneSkipped,
}

/// Phase of a sync in which an object was handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum SyncPhase {
    /// Before the main sync.
    PreSync,
    /// The main sync.
    Sync,
    /// After a successful sync.
    PostSync,
    /// After a failed sync.
    SyncFail,
}

/// How a source is rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ApplicationSourceType {
    /// `helm template`.
    Helm,
    /// `kustomize build`.
    Kustomize,
    /// Plain YAML files.
    Directory,
    /// A config management plugin (Argo CD only; Sluice does not render these).
    Plugin,
}

/// Summary of the Application's objects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSummary {
    /// URLs of the Application (from Ingress hosts and the `link.argocd.argoproj.io/*` annotations).
    #[serde(
        rename = "externalURLs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub external_urls: Vec<String>,
    /// Container images used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
}

/// The Git revert of a revision whose rollout failed its analysis (Sluice extension).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevertStatus {
    /// The commit being reverted (full sha); quarantined until the revert lands.
    pub sha: String,
    /// The revert commit pushed (full sha), once pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert_commit: Option<String>,
    /// The revert commit's message (at most 4 KiB), for people without access to the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_message: Option<String>,
    pub phase: RevertPhase,
    /// Why the revert is in its phase (e.g. the conflict that stopped it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The Rollout whose analysis failed (`namespace/name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
    /// The AnalysisRun that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_run: Option<String>,
    /// When the revert was decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// Attempts that failed on a Git or network error (retried with a growing delay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i32>,
    /// When the last failed attempt ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<Time>,
}

/// Progress of a Git revert.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum RevertPhase {
    /// Decided, not pushed yet.
    #[default]
    Pending,
    /// The revert commit is pushed; waiting for the Application to sync it.
    Pushed,
    /// The Application synced the revert.
    Completed,
    /// The revert could not be made or pushed (e.g. a conflict); nothing was pushed.
    Failed,
    /// No revert: the analysis ended in Error (no verdict) and `gitRevert.onError` is not set;
    /// traffic is on the stable revision and Git stays as it is.
    Skipped,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::analysis::assert_structural;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::CustomResourceExt;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    const DIRECTORY: &str = include_str!("../../tests/fixtures/application/directory.yaml");
    const KUSTOMIZE: &str = include_str!("../../tests/fixtures/application/kustomize.yaml");
    const HELM: &str = include_str!("../../tests/fixtures/application/helm.yaml");
    const WITH_STATUS: &str = include_str!("../../tests/fixtures/application/with-status.yaml");

    /// Parse `yaml` as an Application, serialize it back and compare with the YAML read as a generic
    /// value.
    fn round_trip(yaml: &str) -> Application {
        let generic: Value = serde_saphyr::from_str(yaml).unwrap();
        let typed: Application = serde_saphyr::from_str(yaml).unwrap();
        assert_eq!(serde_json::to_value(&typed).unwrap(), generic);
        typed
    }

    fn spec(v: Value) -> ApplicationSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn directory_application_round_trips() {
        let app = round_trip(DIRECTORY);
        let source = &app.spec.source;
        assert_eq!(
            source.explicit_source_type(),
            Some(ApplicationSourceType::Directory)
        );
        assert!(source.directory.as_ref().unwrap().recurse());
        assert!(!app.spec.is_automated());
        assert!(app.spec.destination.is_in_cluster());
    }

    #[test]
    fn kustomize_application_round_trips() {
        let app = round_trip(KUSTOMIZE);
        let kustomize = app.spec.source.kustomize.as_ref().unwrap();
        assert_eq!(
            kustomize.images,
            ["ghcr.io/example/shop=ghcr.io/example/shop:1.4.2"]
        );
        assert_eq!(app.spec.sync_option("CreateNamespace"), Some("true"));
        assert!(
            app.spec
                .sync_policy
                .as_ref()
                .unwrap()
                .has_sync_option("CreateNamespace")
        );
        assert!(
            !app.spec
                .sync_policy
                .as_ref()
                .unwrap()
                .has_sync_option("PruneLast")
        );
        assert_eq!(
            app.spec.ignore_differences[0].json_pointers,
            ["/spec/replicas"]
        );
    }

    #[test]
    fn helm_application_round_trips() {
        let app = round_trip(HELM);
        let helm = app.spec.source.helm.as_ref().unwrap();
        assert_eq!(
            app.spec.source.explicit_source_type(),
            Some(ApplicationSourceType::Helm)
        );
        assert_eq!(helm.parameters[1].force_string, Some(true));
        assert_eq!(
            helm.values_object.as_ref().unwrap()["ingress"]["hosts"][0],
            "shop.example.com"
        );
        let automated = app.spec.automated().unwrap();
        assert!(automated.prune() && automated.self_heal() && !automated.allow_empty());
        let retry = app.spec.retry().unwrap();
        assert_eq!(retry.limit(), 3);
        assert_eq!(retry.backoff_duration(), Ok(Duration::from_secs(10)));
        assert_eq!(retry.backoff_max_duration(), Ok(Duration::from_secs(300)));
        assert!(!app.spec.git_revert());
        assert_eq!(app.spec.revision_history_limit(), 3);
    }

    #[test]
    fn application_with_status_round_trips() {
        let app = round_trip(WITH_STATUS);
        let status = app.status.as_ref().unwrap();
        assert_eq!(status.sync_status(), SyncStatusCode::OutOfSync);
        assert_eq!(status.health_status(), HealthStatusCode::Degraded);
        assert_eq!(status.resources[0].group, "");
        assert_eq!(status.resources[1].group, "sluice.dev");
        assert!(status.is_quarantined("9f2c4e1b7d3a5c6e8f0a1b2c3d4e5f6a7b8c9d0e"));
        assert!(!status.is_quarantined("1111111111111111111111111111111111111111"));
        assert_eq!(status.revert.as_ref().unwrap().phase, RevertPhase::Pushed);
        assert_eq!(status.next_history_id(), 2);
        let op = status.operation_state.as_ref().unwrap();
        assert_eq!(op.phase, OperationPhase::Succeeded);
        assert!(op.phase.is_completed());
        assert_eq!(
            op.sync_result.as_ref().unwrap().resources[0].sync_phase,
            Some(SyncPhase::Sync)
        );
    }

    #[test]
    fn operation_is_a_top_level_field_beside_spec_and_status() {
        let wire = json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Application",
            "metadata": {"name": "shop", "namespace": "sluice"},
            "spec": {"source": {"repoURL": "r"}, "destination": {}},
            "operation": {"sync": {"revision": "main", "prune": true},
                          "initiatedBy": {"username": "alice"}}
        });
        let app: Application = serde_json::from_value(wire.clone()).unwrap();
        let sync = app.operation.as_ref().unwrap().sync.as_ref().unwrap();
        assert_eq!(sync.revision.as_deref(), Some("main"));
        assert!(sync.prune);
        assert_eq!(serde_json::to_value(&app).unwrap(), wire);

        let rollback: Operation =
            serde_json::from_value(json!({"rollback": {"id": 3}, "refresh": "hard"})).unwrap();
        assert_eq!(
            rollback.rollback,
            Some(RollbackOperation {
                id: 3,
                prune: false
            })
        );
        assert_eq!(rollback.refresh, Some(RefreshType::Hard));

        let mut bare = Application::new("shop", app.spec.clone());
        bare.metadata.namespace = Some("sluice".into());
        assert_eq!(
            serde_json::to_value(&bare).unwrap(),
            json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Application",
                   "metadata": {"name": "shop", "namespace": "sluice"},
                   "spec": {"source": {"repoURL": "r"}, "destination": {}}})
        );
        assert_eq!(Application::kind(&()), "Application");
        assert_eq!(Application::plural(&()), "applications");
    }

    #[test]
    fn spec_defaults_are_argo_cds() {
        let s = spec(
            json!({"source": {"repoURL": "https://git.example.com/shop.git"}, "destination": {}}),
        );
        assert_eq!(s.project(), "default");
        let empty = spec(json!({"project": "", "source": {"repoURL": "r"}, "destination": {}}));
        assert_eq!(empty.project(), "default");
        assert_eq!(s.source.target_revision(), "HEAD");
        assert_eq!(s.source.path(), ".");
        assert_eq!(s.source.explicit_source_type(), None);
        assert_eq!(s.revision_history_limit(), 10);
        assert_eq!(s.destination.server(), "https://kubernetes.default.svc");
        assert!(s.destination.is_in_cluster());
        assert!(!s.is_automated());
        assert!(s.retry().is_none());
        assert!(s.git_revert());
        assert_eq!(s.sync_option("CreateNamespace"), None);
        // Nothing added on the way back.
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({"source": {"repoURL": "https://git.example.com/shop.git"}, "destination": {}})
        );
    }

    #[test]
    fn automated_can_be_disabled() {
        let s = spec(json!({
            "source": {"repoURL": "r"}, "destination": {},
            "syncPolicy": {"automated": {"enabled": false, "prune": true}}
        }));
        assert!(!s.is_automated());
        let s = spec(
            json!({"source": {"repoURL": "r"}, "destination": {}, "syncPolicy": {"automated": {}}}),
        );
        let automated = s.automated().unwrap();
        assert!(!automated.prune() && !automated.self_heal() && !automated.allow_empty());
    }

    #[test]
    fn destination_outside_the_cluster() {
        let d = |v: Value| serde_json::from_value::<ApplicationDestination>(v).unwrap();
        assert!(d(json!({"name": "in-cluster", "namespace": "shop"})).is_in_cluster());
        assert!(d(json!({"server": "https://kubernetes.default.svc/"})).is_in_cluster());
        assert!(!d(json!({"server": "https://prod.example.com:6443"})).is_in_cluster());
        assert!(!d(json!({"name": "prod"})).is_in_cluster());
    }

    #[test]
    fn retry_defaults_and_delays() {
        let retry = RetryStrategy::default();
        assert_eq!(retry.limit(), 5);
        assert_eq!(retry.backoff_duration(), Ok(Duration::from_secs(5)));
        assert_eq!(retry.backoff_factor(), 2);
        assert_eq!(retry.backoff_max_duration(), Ok(Duration::from_secs(180)));
        let delays: Vec<u64> = (0..8).map(|n| retry.delay(n).unwrap().as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 180, 180]);
        assert!(retry.allows_retry(4));
        assert!(!retry.allows_retry(5));
        assert!(retry.delay(u32::MAX).is_ok());

        let unlimited: RetryStrategy = serde_json::from_value(json!({
            "limit": -1, "backoff": {"duration": "30", "factor": 3, "maxDuration": "1h"}
        }))
        .unwrap();
        assert!(unlimited.allows_retry(1_000));
        assert_eq!(unlimited.delay(2), Ok(Duration::from_secs(270)));

        let bad: RetryStrategy =
            serde_json::from_value(json!({"backoff": {"duration": "soon"}})).unwrap();
        let err = bad.delay(0).unwrap_err();
        assert!(matches!(
            err,
            ApplicationSpecError::InvalidDuration {
                field: "backoff.duration",
                ..
            }
        ));
    }

    #[test]
    fn health_ordering_is_argo_cds() {
        use HealthStatusCode::*;
        let order = [Healthy, Suspended, Progressing, Missing, Degraded, Unknown];
        for (i, a) in order.iter().enumerate() {
            for (j, b) in order.iter().enumerate() {
                assert_eq!(a.worst(*b), if i >= j { *a } else { *b }, "{a} vs {b}");
            }
        }
        assert_eq!(HealthStatusCode::worst_of([]), Healthy);
        assert_eq!(
            HealthStatusCode::worst_of([Healthy, Suspended, Progressing]),
            Progressing
        );
        for code in order {
            assert_eq!(serde_json::to_value(code).unwrap(), json!(code.to_string()));
        }
        for code in [
            SyncStatusCode::Synced,
            SyncStatusCode::OutOfSync,
            SyncStatusCode::Unknown,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), json!(code.to_string()));
        }
    }

    #[test]
    fn history_is_capped() {
        let mut status = ApplicationStatus::default();
        let at: Time = serde_json::from_value(json!("2025-03-04T10:00:00Z")).unwrap();
        for n in 0..5 {
            let id = status.next_history_id();
            assert_eq!(id, n);
            status.push_history(
                RevisionHistory {
                    id,
                    revision: format!("rev{n}"),
                    deployed_at: at.clone(),
                    deploy_started_at: None,
                    source: None,
                    initiated_by: None,
                },
                3,
            );
        }
        let ids: Vec<i64> = status.history.iter().map(|h| h.id).collect();
        assert_eq!(ids, [2, 3, 4]);
        assert_eq!(status.next_history_id(), 5);
    }

    fn version(crd: &CustomResourceDefinition) -> Value {
        serde_json::to_value(&crd.spec.versions[0]).unwrap()
    }

    #[test]
    fn application_crd() {
        let crd = Application::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("applications.sluice.dev")
        );
        assert_eq!(crd.spec.group, "sluice.dev");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(
            crd.spec.names.short_names,
            Some(vec!["app".to_owned(), "apps".to_owned()])
        );
        let v = version(&crd);
        assert_eq!(v["name"], "v1alpha1");
        assert_eq!(v["subresources"], json!({"status": {}}));
        let columns: Vec<(&str, &str)> = v["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].as_str().unwrap(), c["jsonPath"].as_str().unwrap()))
            .collect();
        assert_eq!(
            columns,
            [
                ("Sync", ".status.sync.status"),
                ("Health", ".status.health.status"),
                ("Revision", ".status.sync.revision"),
                ("Age", ".metadata.creationTimestamp"),
            ]
        );
    }

    #[test]
    fn application_schema() {
        let schema = version(&Application::crd())["schema"]["openAPIV3Schema"].clone();
        assert_structural(&schema, "");
        assert_eq!(schema["required"], json!(["spec"]));
        assert_eq!(schema["title"], "Application");
        let operation = &schema["properties"]["operation"]["properties"];
        assert_eq!(operation["refresh"]["enum"], json!(["normal", "hard"]));
        assert_eq!(operation["rollback"]["required"], json!(["id"]));
        assert!(operation["sync"]["properties"]["source"].is_object());
        let spec = &schema["properties"]["spec"];
        assert_eq!(spec["required"], json!(["destination"]));
        let source = &spec["properties"]["source"];
        assert_eq!(source["required"], json!(["repoURL"]));
        assert_eq!(
            source["properties"]["repoURL"]["x-kubernetes-validations"],
            json!([{"rule": "self != ''", "message": "repoURL must not be empty"}])
        );
        assert!(source["x-kubernetes-validations"].is_array());
        let release_name = &source["properties"]["helm"]["properties"]["releaseName"];
        assert_eq!(release_name["maxLength"], 53);
        let release_rule = json!([{
            "rule": RELEASE_NAME_RULE, "message": RELEASE_NAME_MESSAGE,
            "fieldPath": ".source.helm.releaseName"
        }]);
        assert_eq!(spec["x-kubernetes-validations"][0], release_rule[0]);
        assert_eq!(
            spec["x-kubernetes-validations"][1],
            json!({"rule": "has(self.source)", "message": SOURCE_REQUIRED_MESSAGE,
                   "fieldPath": ".source"})
        );
        assert_eq!(operation["sync"]["x-kubernetes-validations"], release_rule);
        let values_object = &source["properties"]["helm"]["properties"]["valuesObject"];
        assert_eq!(values_object["type"], "object");
        assert_eq!(values_object["x-kubernetes-preserve-unknown-fields"], true);
        let status = &schema["properties"]["status"]["properties"];
        assert_eq!(
            status["sync"]["properties"]["status"]["enum"],
            json!(["Synced", "OutOfSync", "Unknown"])
        );
        assert_eq!(
            status["health"]["properties"]["status"]["enum"],
            json!([
                "Healthy",
                "Progressing",
                "Degraded",
                "Suspended",
                "Missing",
                "Unknown"
            ])
        );
        assert_eq!(
            status["operationState"]["properties"]["phase"]["enum"],
            json!(["Running", "Terminating", "Succeeded", "Failed", "Error"])
        );
        assert_eq!(
            status["revert"]["properties"]["phase"]["enum"],
            json!(["Pending", "Pushed", "Completed", "Failed", "Skipped"])
        );
        let git_revert = &schema["properties"]["spec"]["properties"]["syncPolicy"]["properties"]["rollback"]
            ["properties"]["gitRevert"];
        assert_eq!(git_revert["x-kubernetes-preserve-unknown-fields"], true);
        assert_eq!(git_revert.get("x-kubernetes-validations"), None);
        assert_eq!(status["quarantinedRevisions"]["items"]["type"], "string");
        assert!(
            !serde_json::to_string(&schema)
                .unwrap()
                .contains("\"default\"")
        );
    }

    #[test]
    fn git_revert_is_a_switch_or_a_policy() {
        let rollback = |value: serde_json::Value| -> RollbackPolicy {
            serde_json::from_value(json!({"gitRevert": value})).unwrap()
        };
        let cases = [
            (json!(null), true, false),
            (json!(true), true, false),
            (json!(false), false, false),
            (json!({}), true, false),
            (json!({"onError": true}), true, true),
            (json!({"enabled": false, "onError": true}), false, false),
            (json!({"enabled": true, "onError": false}), true, false),
        ];
        for (value, enabled, on_error) in cases {
            let policy = rollback(value.clone());
            assert_eq!(policy.git_revert_enabled(), enabled, "{value}");
            assert_eq!(policy.git_revert_on_error(), on_error, "{value}");
        }
        // Written back as it was given.
        let policy = rollback(json!({"onError": true}));
        assert_eq!(
            serde_json::to_value(&policy).unwrap(),
            json!({"gitRevert": {"onError": true}})
        );
        assert_eq!(
            serde_json::to_value(rollback(json!(false))).unwrap(),
            json!({"gitRevert": false})
        );
        // Anything else is kept, read, and named when a revert is due.
        for bad in [
            json!("yes"),
            json!({"onError": "yes"}),
            json!({"onErorr": true}),
            json!([true]),
        ] {
            let policy = rollback(bad.clone());
            let error = policy
                .git_revert_error()
                .unwrap_or_else(|| panic!("{bad}: {policy:?}"));
            assert!(
                error.contains("spec.syncPolicy.rollback.gitRevert"),
                "{bad}: {error}"
            );
            assert!(!policy.git_revert_on_error());
        }
        assert_eq!(rollback(json!({"onError": true})).git_revert_error(), None);
    }
}
