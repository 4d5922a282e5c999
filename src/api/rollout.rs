//! The `Rollout` kind (`sluice.dev/v1alpha1`), shaped like Argo Rollouts' `argoproj.io/v1alpha1`
//! `Rollout` so that a manifest written for Argo works with only `apiVersion` changed.
//!
//! Field names and JSON types are Argo's (see `pkg/apis/rollouts/v1alpha1/types.go` upstream). Sluice
//! adds two status fields of its own, `status.revisions` (the Git commit behind each ReplicaSet
//! revision) and `status.revert` (the Git write-back after a failed analysis).
//!
//! Defaults are **not** in the schema, so what a user wrote round-trips unchanged; the accessor
//! methods next to each type give Argo's defaults (`RolloutSpec::replicas()` is 1 when unset, ...).
//! The CRD schema enforces what the API server can check (`template` xor `workloadRef`, one strategy,
//! one kind per canary step, weights in 0..=100, enum values); [`RolloutSpec::validate`] checks the
//! same rules and more (durations, percentages) for the controller, which reports them as
//! `InvalidSpec`.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::analysis::{
    AnalysisPhase, DryRun, FieldRef, MeasurementRetention, PodTemplateHashValue,
};
use super::common::{Condition, api_enum_names};

/// Label put on ReplicaSets, pods and Service selectors to tell revisions apart (Argo's name).
pub const POD_TEMPLATE_HASH_LABEL: &str = "rollouts-pod-template-hash";
/// Key of the Gateway API traffic router under `trafficRouting.plugins` (Argo's plugin name).
pub const GATEWAY_API_PLUGIN: &str = "argoproj-labs/gatewayAPI";
/// Argo's default `nginx.annotationPrefix`.
pub const DEFAULT_NGINX_ANNOTATION_PREFIX: &str = "nginx.ingress.kubernetes.io";
/// The total traffic weight in CEL, on a canary strategy: `trafficRouting.maxTrafficWeight`, 100
/// unless set.
const MAX_WEIGHT_CEL: &str = "(has(self.trafficRouting) && has(self.trafficRouting.maxTrafficWeight) ? self.trafficRouting.maxTrafficWeight : 100)";
/// The total traffic weight when `maxTrafficWeight` is not set.
pub const DEFAULT_MAX_TRAFFIC_WEIGHT: i32 = 100;
/// Argo's message when `maxTrafficWeight` is set for a router other than NGINX or a plugin.
pub const MAX_WEIGHT_ROUTERS: &str =
    "Canary maxTrafficWeight in traffic routing only supported in Nginx and Plugins";
/// Argo's message when `nginx` sets both `stableIngress` and `stableIngresses`.
pub const NGINX_BOTH_INGRESSES: &str =
    "Either StableIngress or StableIngresses must be configured. Both are configured.";
/// Argo's message when `nginx` sets neither `stableIngress` nor `stableIngresses`.
pub const NGINX_NEITHER_INGRESS: &str =
    "Either StableIngress or StableIngresses must be configured. Neither are configured.";

/// Default `spec.replicas`.
pub const DEFAULT_REPLICAS: i32 = 1;
/// Default `spec.revisionHistoryLimit`.
pub const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;
/// Default `spec.progressDeadlineSeconds`.
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;
/// Default `maxSurge` and `maxUnavailable` of the canary strategy.
pub const DEFAULT_MAX_SURGE_UNAVAILABLE: &str = "25%";
/// Default `scaleDownDelaySeconds` (canary with a traffic router, and blue-green).
pub const DEFAULT_SCALE_DOWN_DELAY_SECONDS: i32 = 30;
/// Default `abortScaleDownDelaySeconds`.
pub const DEFAULT_ABORT_SCALE_DOWN_DELAY_SECONDS: i32 = 30;

/// What is wrong with a Rollout spec, or a value in it that cannot be interpreted.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RolloutSpecError {
    /// A pause duration (or other duration) that is neither whole seconds nor a duration string.
    #[error(
        "invalid duration {value:?}: {reason}; expected whole seconds or a duration like 30s, 5m, 1h"
    )]
    InvalidDuration {
        /// The value as written.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// An int-or-percent value (`maxSurge`, `maxUnavailable`) that is neither an integer nor `N%`.
    #[error(
        "invalid value {value:?} for {field}: expected a non-negative integer or a percentage like 25%"
    )]
    InvalidIntOrPercent {
        /// The field, e.g. `spec.strategy.canary.maxSurge`.
        field: String,
        /// The value as written.
        value: String,
    },
    /// Both `spec.template` and `spec.workloadRef` are set.
    #[error("spec.template and spec.workloadRef are both set; set exactly one")]
    TemplateAndWorkloadRef,
    /// Neither `spec.template` nor `spec.workloadRef` is set.
    #[error("one of spec.template and spec.workloadRef must be set")]
    NoTemplate,
    /// `spec.template` is used without `spec.selector`.
    #[error("spec.selector is required when spec.template is set")]
    MissingSelector,
    /// Neither or both of `spec.strategy.canary` and `spec.strategy.blueGreen` are set.
    #[error("exactly one of spec.strategy.canary and spec.strategy.blueGreen must be set")]
    Strategy,
    /// A canary step that does not set exactly one step kind, or sets it to a bad value.
    #[error("spec.strategy.canary.steps[{index}]: {reason}")]
    InvalidStep {
        /// Index of the step in `steps`.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// An analysis (step, background, pre/post-promotion) that names no template or has a bad
    /// argument.
    #[error("{field}: {reason}")]
    InvalidAnalysis {
        /// Where the analysis is, e.g. `spec.strategy.blueGreen.prePromotionAnalysis`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A field that must be set is not.
    #[error("{0} is required")]
    Required(&'static str),
    /// A field set where it cannot apply.
    #[error("{field} {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
    /// A field with a bad value, and why (Argo's message where Argo has one).
    #[error("{field}: {reason}")]
    InvalidField {
        /// The field, e.g. `spec.strategy.canary.trafficRouting.nginx`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Argo fields Sluice does not implement are set (paths from the object's root).
    #[error("{}", super::unsupported::message(.0))]
    Unsupported(Vec<String>),
    /// A number outside its allowed range.
    #[error("{field} is {value}, must be between {min} and {max}")]
    OutOfRange {
        /// The field, e.g. `spec.replicas`.
        field: String,
        /// The value as written.
        value: i64,
        /// Smallest allowed value.
        min: i64,
        /// Largest allowed value.
        max: i64,
    },
}

// ---------------------------------------------------------------------------------------------
// Spec
// ---------------------------------------------------------------------------------------------

/// Argo's `rollbackWindow`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackWindow {
    /// How many revisions back a rollback is fast-tracked: the revision rolled back to is older
    /// than the stable one, with fewer than this many revisions in between.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub revisions: Option<i32>,
}

/// The desired state of a Rollout: Argo's `RolloutSpec`.
// Several printer columns share `type_ = "integer"`, which clippy takes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "Rollout",
    namespaced,
    status = "RolloutStatus",
    shortname = "ro",
    derive = "PartialEq",
    doc = "A Deployment-like workload updated by canary or blue-green steps (Argo Rollouts' Rollout).",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.HPAReplicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".spec.replicas",
        description = "Number of desired pods"
    ),
    printcolumn(
        name = "Current",
        type_ = "integer",
        json_path = ".status.replicas",
        description = "Total number of non-terminated pods targeted by this rollout"
    ),
    printcolumn(
        name = "Up-to-date",
        type_ = "integer",
        json_path = ".status.updatedReplicas",
        description = "Total number of non-terminated pods that have the desired template"
    ),
    printcolumn(
        name = "Available",
        type_ = "integer",
        json_path = ".status.availableReplicas",
        description = "Total number of available pods (ready for at least minReadySeconds)"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Healthy, Progressing, Paused or Degraded"
    ),
    printcolumn(
        name = "Step",
        type_ = "integer",
        json_path = ".status.currentStepIndex",
        description = "Index of the current canary step"
    ),
    printcolumn(
        name = "Weight",
        type_ = "integer",
        json_path = ".status.canary.weights.canary.weight",
        description = "Traffic weight of the canary, in percent"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp",
        description = "Time since the resource was created"
    )
)]
#[x_kube(
    validation = Rule::new("has(self.template) != has(self.workloadRef)")
        .message("exactly one of spec.template and spec.workloadRef must be set"),
    validation = Rule::new("has(self.workloadRef) || has(self.selector)")
        .message("spec.selector is required when spec.template is set")
)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// Desired number of pods [`DEFAULT_REPLICAS`]; see [`RolloutSpec::replicas`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
    /// Selects the pods of this Rollout; must match the template's labels. Required with `template`;
    /// with `workloadRef` the referenced workload's selector is used when this is unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// The pods to run. Exactly one of `template` and `workloadRef` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "pod_template_schema")]
    pub template: Option<PodTemplateSpec>,
    /// A workload (a Deployment) whose pod template this Rollout runs instead of `template`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_ref: Option<WorkloadRef>,
    /// Seconds a new pod must be ready before it counts as available [0].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_ready_seconds: Option<i32>,
    /// Old ReplicaSets kept at 0 replicas [`DEFAULT_REVISION_HISTORY_LIMIT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub revision_history_limit: Option<i32>,
    /// Pauses the rollout at its current step (`kubectl sluice pause`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// Seconds without progress before the `ProgressDeadlineExceeded` condition
    /// [`DEFAULT_PROGRESS_DEADLINE_SECONDS`]; not counted while paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub progress_deadline_seconds: Option<i32>,
    /// Abort the update when the progress deadline is exceeded [false].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_abort: Option<bool>,
    /// Restart every pod created before this time (`kubectl sluice restart`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_at: Option<Time>,
    /// How new revisions are rolled out: `canary` or `blueGreen`.
    pub strategy: RolloutStrategy,
    /// How many finished AnalysisRuns of the Rollout are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisRunStrategy>,
    /// A rollback to one of the last `revisions` revisions skips the steps, pauses and analysis
    /// (Argo's fast-track rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_window: Option<RollbackWindow>,
}

/// Default `successfulRunHistoryLimit` and `unsuccessfulRunHistoryLimit` (Argo's).
pub const DEFAULT_RUN_HISTORY_LIMIT: i32 = 5;

/// `spec.analysis` (Argo's `AnalysisRunStrategy`): how many finished AnalysisRuns are kept; older
/// ones (and those of a revision whose ReplicaSet is gone) are deleted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunStrategy {
    /// Successful runs kept [`DEFAULT_RUN_HISTORY_LIMIT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub successful_run_history_limit: Option<i32>,
    /// Failed, Error and Inconclusive runs kept [`DEFAULT_RUN_HISTORY_LIMIT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub unsuccessful_run_history_limit: Option<i32>,
}

impl AnalysisRunStrategy {
    /// `(successful, unsuccessful)` limits, defaults applied.
    pub fn limits(strategy: Option<&Self>) -> (i32, i32) {
        let get = |limit: Option<i32>| limit.unwrap_or(DEFAULT_RUN_HISTORY_LIMIT).max(0);
        (
            get(strategy.and_then(|s| s.successful_run_history_limit)),
            get(strategy.and_then(|s| s.unsuccessful_run_history_limit)),
        )
    }
}

/// Largest pod count `maxSurge` / `maxUnavailable` accept: beyond it a count is a typo, and the
/// arithmetic on it need not be trusted.
pub const MAX_POD_BUDGET: i64 = 1_000_000;

/// Largest percentage `maxSurge` accepts: Kubernetes and Argo allow more than 100% (a surge of twice
/// the replicas is `200%`); beyond this it is a typo.
pub const MAX_SURGE_PERCENT: i64 = 1000;
/// Largest percentage `maxUnavailable` accepts: more than every pod cannot be unavailable
/// (Kubernetes' rule for Deployments).
pub const MAX_UNAVAILABLE_PERCENT: i64 = 100;

/// `maxSurge`: an int-or-string whose integer form is a count `0..=`[`MAX_POD_BUDGET`] and whose string
/// form a percentage `0%..=1000%` (OpenAPI's `minimum`, `maximum` apply to numbers only, `pattern` and
/// `maxLength` to strings only).
fn max_surge_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    pod_budget_schema("^(1000|[1-9][0-9]{0,2}|0)%$", 5)
}

/// `maxUnavailable`: a count `0..=`[`MAX_POD_BUDGET`] or a percentage `0%..=100%`.
fn max_unavailable_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    pod_budget_schema("^(100|[1-9]?[0-9])%$", 4)
}

fn pod_budget_schema(percent_pattern: &str, max_length: u32) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true,
        "nullable": true,
        "minimum": 0,
        "maximum": MAX_POD_BUDGET,
        "maxLength": max_length,
        "pattern": percent_pattern,
    })
}

/// `steps[].pause.duration`: whole seconds as an integer or digits, or a Go duration string.
fn pause_duration_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let pattern = format!(
        "^([0-9]{{1,10}}|{})$",
        crate::duration::DURATION_PATTERN
            .trim_start_matches('^')
            .trim_end_matches('$')
    );
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true,
        "nullable": true,
        "minimum": 0,
        // Seconds in an i32, as the controller reads them: a larger number would not decode.
        "maximum": i32::MAX,
        "maxLength": crate::duration::MAX_DURATION_LENGTH,
        "pattern": pattern,
    })
}

/// The schema of `spec.template`: Kubernetes' `PodTemplateSpec` without its descriptions, as Argo
/// does, which keeps the CRD under the 256 KiB that client-side `kubectl apply` can store (with
/// them it is about 380 KB). Validation is unchanged.
pub(crate) fn pod_template_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    fn strip_descriptions(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                map.remove("description");
                map.values_mut().for_each(strip_descriptions);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip_descriptions),
            _ => {}
        }
    }
    let mut value = PodTemplateSpec::json_schema(generator).to_value();
    strip_descriptions(&mut value);
    if let serde_json::Value::Object(map) = &mut value {
        map.insert(
            "description".to_string(),
            serde_json::Value::String(
                "The pods to run (a Kubernetes PodTemplateSpec). Exactly one of template and \
                 workloadRef is set."
                    .to_string(),
            ),
        );
    }
    schemars::Schema::try_from(value).unwrap_or_default()
}

/// Argo's `ObjectRef` as used by `spec.workloadRef`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    /// API version of the referent, e.g. `apps/v1`.
    pub api_version: String,
    /// Kind of the referent, e.g. `Deployment`.
    pub kind: String,
    /// Name of the referent, in the Rollout's namespace.
    pub name: String,
    /// What to do with the referenced workload's own pods [never].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<ScaleDown>,
}

/// `spec.workloadRef.scaleDown`: how the referenced Deployment is scaled down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScaleDown {
    /// Leave the Deployment alone.
    #[default]
    Never,
    /// Scale the Deployment to 0 once the Rollout is Healthy.
    #[serde(rename = "onsuccess")]
    OnSuccess,
    /// Scale the Deployment down as the Rollout's pods become available.
    Progressively,
}

/// `spec.strategy`: exactly one of `canary` and `blueGreen`.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[x_kube(validation = Rule::new("has(self.canary) != has(self.blueGreen)")
    .message("exactly one of spec.strategy.canary and spec.strategy.blueGreen must be set"))]
#[serde(rename_all = "camelCase")]
pub struct RolloutStrategy {
    /// Canary: steps of traffic weight, pauses and analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStrategy>,
    /// Blue-green: a preview stack, then a switch of the active Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenStrategy>,
}

/// `spec.strategy.canary` (Argo's `CanaryStrategy`). Each `setWeight` is at most
/// `maxTrafficWeight` (100 unless set): the API server checks it (a static message: a message
/// expression naming the bound exceeds the schema's CEL cost budget), and so does
/// [`RolloutSpec::validate`] with Argo's message.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[x_kube(validation = Rule::new(format!(
    "!has(self.steps) || self.steps.all(s, !has(s.setWeight) || s.setWeight <= {MAX_WEIGHT_CEL})"
)).message("setWeight: SetWeight needs to be between 0 and 100, or maxTrafficWeight when set"))]
#[serde(rename_all = "camelCase")]
pub struct CanaryStrategy {
    /// The steps, run in order. Without steps a new revision is promoted at once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub steps: Vec<CanaryStep>,
    /// Service selecting only the canary pods (required with a traffic router).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_service: Option<String>,
    /// Service selecting only the stable pods (required with a traffic router).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_service: Option<String>,
    /// The traffic router. Without one, weights are approximated by replica counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_routing: Option<TrafficRouting>,
    /// Pods above `replicas` during the update: a count (at most 1000000) or a percentage (at most
    /// 1000%) [25%].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "max_surge_schema")]
    pub max_surge: Option<IntOrString>,
    /// Pods that may be unavailable during the update: a count (at most 1000000) or a percentage
    /// (at most 100%) [25%].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "max_unavailable_schema")]
    pub max_unavailable: Option<IntOrString>,
    /// Delay before the old stable is scaled down after promotion, with a traffic router [30].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub scale_down_delay_seconds: Option<i32>,
    /// Delay before the canary is scaled down after an abort, with a traffic router [30];
    /// 0 keeps it running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub abort_scale_down_delay_seconds: Option<i32>,
    /// Scale the stable down as the canary takes traffic (traffic router only) [false].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_stable_scale: Option<bool>,
    /// Background analysis, run for the whole update from `startingStep`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<RolloutAnalysisBackground>,
    /// Labels and annotations added to canary pods while they are the canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_metadata: Option<PodTemplateMetadata>,
    /// Labels and annotations added to stable pods while they are the stable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_metadata: Option<PodTemplateMetadata>,
    /// Keep the new revision's pods off the nodes of the stable revision's while it rolls out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anti_affinity: Option<AntiAffinity>,
    /// With `trafficRouting`: a canary or stable ReplicaSet that gets pods gets at least this many
    /// (Argo's high-availability floor; not with an explicit `setCanaryScale.replicas`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_pods_per_replica_set: Option<i32>,
    /// Argo's `pingPong`: kept as written, not implemented (the Rollout is `InvalidSpec`; see
    /// [`crate::api::unsupported`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::unsupported::preserved_object_schema")]
    pub ping_pong: Option<serde_json::Value>,
    /// How many of the canary's pods must be available for a step (and the promotion) to go on;
    /// all of them when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_progress_threshold: Option<ReplicaProgressThreshold>,
    /// How many old revisions may wait out `scaleDownDelaySeconds` at once, the newest first; older
    /// ones are scaled down at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub scale_down_delay_revision_limit: Option<i32>,
}

/// One canary step (Argo's `CanaryStep`): exactly one of its fields is set.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[x_kube(validation = Rule::new(
    "(has(self.setWeight) ? 1 : 0) + (has(self.pause) ? 1 : 0) + (has(self.setCanaryScale) ? 1 : 0) + (has(self.analysis) ? 1 : 0) + (has(self.experiment) ? 1 : 0) + (has(self.plugin) ? 1 : 0) + (has(self.setHeaderRoute) ? 1 : 0) + (has(self.setMirrorRoute) ? 1 : 0) == 1"
).message("a canary step sets exactly one of setWeight, pause, setCanaryScale, analysis, experiment, plugin, setHeaderRoute and setMirrorRoute"))]
#[serde(rename_all = "camelCase")]
pub struct CanaryStep {
    /// Traffic (or, without a router, replicas) sent to the canary, out of `maxTrafficWeight`
    /// (100 unless set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub set_weight: Option<i32>,
    /// Wait: for `duration`, or until promoted when it has none (`pause: {}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<RolloutPause>,
    /// Change the canary's pod count without changing its traffic weight (traffic router only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_canary_scale: Option<SetCanaryScale>,
    /// Run an AnalysisRun and wait for it to succeed before the next step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<RolloutAnalysis>,
    /// Run an Experiment (baseline and canary ReplicaSets side by side, judged by analyses) and
    /// wait for it to succeed before the next step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<RolloutExperimentStep>,
    /// Argo's `plugin`: kept as written, not implemented (the Rollout is `InvalidSpec`; see
    /// [`crate::api::unsupported`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::unsupported::preserved_object_schema")]
    pub plugin: Option<serde_json::Value>,
    /// Send requests with a header to the canary only (a managed route, see
    /// [`crate::api::routes`]); without `match` the route is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_header_route: Option<super::routes::SetHeaderRoute>,
    /// Mirror a percentage of matching requests to the canary (a managed route, see
    /// [`crate::api::routes`]); without `match` the route is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_mirror_route: Option<super::routes::SetMirrorRoute>,
}

/// What a canary step does, borrowed from a [`CanaryStep`] that sets exactly one kind.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CanaryStepKind<'a> {
    /// `setWeight: N`.
    SetWeight(i32),
    /// `pause: {duration}`.
    Pause(&'a RolloutPause),
    /// `setCanaryScale: {...}`.
    SetCanaryScale(&'a SetCanaryScale),
    /// `analysis: {...}`.
    Analysis(&'a RolloutAnalysis),
    /// `experiment: {...}`.
    Experiment(&'a RolloutExperimentStep),
    /// `setHeaderRoute: {...}`.
    SetHeaderRoute(&'a super::routes::SetHeaderRoute),
    /// `setMirrorRoute: {...}`.
    SetMirrorRoute(&'a super::routes::SetMirrorRoute),
}

/// `steps[].experiment` (Argo's `RolloutExperimentStep`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutExperimentStep {
    /// The ReplicaSets of the Experiment, each from the stable or the canary template.
    pub templates: Vec<RolloutExperimentTemplate>,
    /// How long the Experiment runs once its templates are available (`30s`, `5m`, `1h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// AnalysisTemplates run by the Experiment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analyses: Vec<RolloutExperimentStepAnalysisTemplateRef>,
    /// Metrics run in dry-run mode.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<DryRun>,
    /// Labels and annotations put on the Experiment's AnalysisRuns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_run_metadata: Option<AnalysisRunMetadata>,
    /// Seconds before the Experiment's ReplicaSets are scaled down once it is done [30].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_delay_seconds: Option<i32>,
}

/// `steps[].experiment.templates[]` (Argo's `RolloutExperimentTemplate`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutExperimentTemplate {
    /// Names the template in the Experiment.
    pub name: String,
    /// `stable` or `canary`: which revision's pod template it runs.
    pub spec_ref: String,
    /// Pods to run [1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Labels (also added to the selector) and annotations for its pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<PodTemplateMetadata>,
    /// Overrides the selector taken from the revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Argo's `weight` (traffic to the template through the router): kept as written, not
    /// implemented (the Rollout is `InvalidSpec`; see [`crate::api::unsupported`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::unsupported::preserved_schema")]
    pub weight: Option<serde_json::Value>,
    /// A Service for the template's pods, created by the Experiment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<super::experiment::TemplateService>,
}

/// `steps[].experiment.analyses[]` (Argo's `RolloutExperimentStepAnalysisTemplateRef`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutExperimentStepAnalysisTemplateRef {
    /// Names the analysis in the Experiment.
    pub name: String,
    /// The AnalysisTemplate (or ClusterAnalysisTemplate with `clusterScope`).
    pub template_name: String,
    /// Look the name up as a ClusterAnalysisTemplate [false].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_scope: Option<bool>,
    /// Arguments, resolved by the Rollout (`podTemplateHashValue`, `fieldRef`) into the Experiment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<AnalysisRunArgument>,
    /// The Experiment ends when this analysis completes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_for_completion: Option<bool>,
}

/// `steps[].pause` (Argo's `RolloutPause`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutPause {
    /// Whole seconds (`30`, `"30"`) or a duration string (`"30s"`, `"5m"`, `"1h"`). Unset: wait for
    /// promotion. See [`parse_duration`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "pause_duration_schema")]
    pub duration: Option<IntOrString>,
}

/// `steps[].setCanaryScale` (Argo's `SetCanaryScale`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetCanaryScale {
    /// Share of `spec.replicas` the canary runs, out of `maxTrafficWeight` (100 unless set), as
    /// in Argo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub weight: Option<i32>,
    /// Absolute number of canary pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
    /// Go back to scaling the canary by its traffic weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_traffic_weight: Option<bool>,
}

/// How many canary pods a [`SetCanaryScale`] step asks for, with Argo's precedence resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CanaryScale {
    /// Scale the canary by its current traffic weight.
    MatchTrafficWeight,
    /// This many canary pods.
    Replicas(i32),
    /// This percentage of `spec.replicas` (rounded up).
    Weight(i32),
}

/// `trafficRouting` (Argo's `RolloutTrafficRouting`, the routers Sluice drives).
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[x_kube(validation = Rule::new(
    "!has(self.maxTrafficWeight) || has(self.nginx) || has(self.plugins)"
).message(MAX_WEIGHT_ROUTERS))]
#[serde(rename_all = "camelCase")]
pub struct TrafficRouting {
    /// NGINX Ingress: a canary Ingress next to `stableIngress`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nginx: Option<NginxTrafficRouting>,
    /// Traffic router plugins, keyed by plugin name (Argo's `plugins` map). Sluice implements
    /// `argoproj-labs/gatewayAPI` itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugins: Option<TrafficRoutingPlugins>,
    /// Argo's `alb`: kept as written, not implemented (the Rollout is `InvalidSpec`; see
    /// [`crate::api::unsupported`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::unsupported::preserved_object_schema")]
    pub alb: Option<serde_json::Value>,
    /// Ambassador: a canary copy of each Mapping, weighted
    /// (`crate::rollout::traffic::ambassador`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ambassador: Option<AmbassadorTrafficRouting>,
    /// APISIX: the canary and stable backend weights of an ApisixRoute's http rules
    /// (`crate::rollout::traffic::apisix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apisix: Option<ApisixTrafficRouting>,
    /// Argo's `appMesh`: kept as written, not implemented (the Rollout is `InvalidSpec`; see
    /// [`crate::api::unsupported`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::unsupported::preserved_object_schema")]
    pub app_mesh: Option<serde_json::Value>,
    /// Argo's `istio` (`virtualService` / `virtualServices`, `destinationRule`): VirtualService
    /// destination weights, host- or subset-level (`crate::rollout::traffic::istio`). Kept as
    /// written JSON, read by the router.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::unsupported::preserved_object_schema")]
    pub istio: Option<serde_json::Value>,
    /// The routes `setHeaderRoute` and `setMirrorRoute` steps may add, in order of precedence;
    /// required by such steps, removed at the end of the update and on abort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_routes: Option<Vec<super::routes::ManagedRoute>>,
    /// The total traffic weight (default 100): `setWeight` values and the weights the router
    /// writes are out of it. NGINX and the Gateway API plugin only, as in Argo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_traffic_weight: Option<i32>,
    /// Argo's `smi` (`rootService`, `trafficSplitName`): a TrafficSplit owned by the Rollout
    /// (`crate::rollout::traffic::smi`). Kept as written JSON, read by the router.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::unsupported::preserved_object_schema")]
    pub smi: Option<serde_json::Value>,
    /// Argo's `traefik` (`weightedTraefikServiceName`): the weights of a TraefikService's weighted
    /// services (`crate::rollout::traffic::traefik`). Kept as written JSON, read by the router.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::unsupported::preserved_object_schema")]
    pub traefik: Option<serde_json::Value>,
}

/// `trafficRouting.nginx` (Argo's `NginxTrafficRouting`).
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[x_kube(
    validation = Rule::new(
        "!(has(self.stableIngress) && self.stableIngress != '' && has(self.stableIngresses))"
    ).message(NGINX_BOTH_INGRESSES),
    validation = Rule::new(
        "(has(self.stableIngress) && self.stableIngress != '') || has(self.stableIngresses)"
    ).message(NGINX_NEITHER_INGRESS)
)]
#[serde(rename_all = "camelCase")]
pub struct NginxTrafficRouting {
    /// The Ingress serving the stable Service; the canary Ingress is derived from it. Exactly one
    /// of `stableIngress` and `stableIngresses` is set.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stable_ingress: String,
    /// Annotation prefix of the NGINX controller [`DEFAULT_NGINX_ANNOTATION_PREFIX`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation_prefix: Option<String>,
    /// Extra `canary-*` annotations for the canary Ingress (e.g. `canary-by-header`), keyed
    /// without the prefix.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub additional_ingress_annotations: BTreeMap<String, String>,
    /// Extra annotations for the canary Ingresses, full keys (any group, no prefix added); they
    /// win over `additionalIngressAnnotations`, never over `canary` and `canary-weight`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub canary_ingress_annotations: BTreeMap<String, String>,
    /// Several stable Ingresses (e.g. one per NGINX controller), each with a canary Ingress of
    /// its own at the same weight. Exactly one of `stableIngress` and `stableIngresses` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_ingresses: Option<Vec<String>>,
}

/// `trafficRouting.ambassador` (Argo's `AmbassadorTrafficRouting`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AmbassadorTrafficRouting {
    /// The Mappings (`getambassador.io/v2`) that route to the stable Service; each gets a canary
    /// Mapping `<name>-canary` carrying the canary weight. At least one.
    pub mappings: Vec<String>,
}

/// `trafficRouting.apisix` (Argo's `ApisixTrafficRouting`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApisixTrafficRouting {
    /// The ApisixRoute whose backends are weighted. Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<ApisixRouteRef>,
}

/// `trafficRouting.apisix.route` (Argo's `ApisixRoute`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApisixRouteRef {
    /// The ApisixRoute (`apisix.apache.org/v2`) in the Rollout's namespace.
    pub name: String,
    /// The names of its `spec.http` rules to weight; without, the rule named like the route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<String>>,
}

/// `trafficRouting.plugins`: a map from plugin name to that plugin's configuration, exactly as Argo
/// users write it. The Gateway API plugin is typed; any other entry is kept as written in
/// [`TrafficRoutingPlugins::other`] (the controller reports it as unsupported).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrafficRoutingPlugins {
    /// `argoproj-labs/gatewayAPI`.
    #[serde(
        rename = "argoproj-labs/gatewayAPI",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub gateway_api: Option<GatewayApiTrafficRouting>,
    /// Every other plugin, by name.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl JsonSchema for TrafficRoutingPlugins {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TrafficRoutingPlugins".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // A structural schema cannot mix `properties` and `additionalProperties`; the typed
        // plugin is a property and other plugins are preserved as unknown fields.
        let gateway_api = generator.subschema_for::<GatewayApiTrafficRouting>();
        schemars::json_schema!({
            "description": "Traffic router plugins keyed by plugin name, as in Argo Rollouts.",
            "type": "object",
            "properties": { "argoproj-labs/gatewayAPI": gateway_api },
            "x-kubernetes-preserve-unknown-fields": true,
        })
    }
}

/// The configuration of the `argoproj-labs/gatewayAPI` plugin (its `GatewayAPITrafficRouting`),
/// for HTTPRoutes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayApiTrafficRouting {
    /// The HTTPRoute whose stable/canary `backendRefs` weights are set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_route: Option<String>,
    /// Several HTTPRoutes (the plugin's `httpRoutes` form).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_routes: Vec<GatewayApiHttpRoute>,
    /// Namespace of the routes [the Rollout's].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The plugin's state ConfigMap; accepted for compatibility, unused (Sluice keeps its state in
    /// the Rollout's status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<String>,
}

/// One entry of the Gateway API plugin's `httpRoutes`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayApiHttpRoute {
    /// Name of the HTTPRoute.
    pub name: String,
    /// Whether managed routes (setHeaderRoute and setMirrorRoute rules) are added to this route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_header_routes: Option<bool>,
}

/// Argo's `replicaProgressThreshold`: a share or a number of the pods a step wants that is enough
/// for it to go on (with an HPA, say, that is slow to bring the last pods).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaProgressThreshold {
    /// `Percent` of the pods the step wants, or a number of `Pods`.
    #[serde(rename = "type")]
    pub type_: ProgressType,
    /// The percentage or the pod count, at least 1.
    #[schemars(range(min = 1))]
    pub value: i32,
}

/// Argo's `ProgressType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ProgressType {
    Percent,
    Pods,
}

impl ReplicaProgressThreshold {
    /// Argo's `ReplicaProgressThresholdMet`: whether `available` pods of the `desired` are enough.
    pub fn met(&self, available: i32, desired: i32) -> bool {
        match self.type_ {
            ProgressType::Percent => {
                desired <= 0
                    || i64::from(available) * 100 >= i64::from(self.value) * i64::from(desired)
            }
            ProgressType::Pods => available >= self.value,
        }
    }
}

/// Argo's `antiAffinity`: while a new revision rolls out, its pods avoid the nodes (by
/// `kubernetes.io/hostname`) of the stable revision's pods, preferably or as a requirement.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[x_kube(validation = Rule::new(
    "has(self.preferredDuringSchedulingIgnoredDuringExecution) != has(self.requiredDuringSchedulingIgnoredDuringExecution)"
).message("AntiAffinity must have exactly one strategy listed"))]
#[serde(rename_all = "camelCase")]
pub struct AntiAffinity {
    /// The scheduler prefers other nodes, with this weight among the pod's preferences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_during_scheduling_ignored_during_execution: Option<PreferredAntiAffinity>,
    /// The scheduler never puts a new pod on a node running a stable pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_during_scheduling_ignored_during_execution: Option<RequiredAntiAffinity>,
}

/// Argo's `PreferredDuringSchedulingIgnoredDuringExecution`.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[x_kube(validation = Rule::new("self.weight >= 1 && self.weight <= 100")
    .message("AntiAffinity weight must be between 1-100"))]
#[serde(rename_all = "camelCase")]
pub struct PreferredAntiAffinity {
    /// Weight of the preference, 1 to 100.
    pub weight: i32,
}

/// Argo's `RequiredDuringSchedulingIgnoredDuringExecution` (no fields).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RequiredAntiAffinity {}

impl AntiAffinity {
    /// The preferred weight, `None` for the required strategy; an error naming `field` unless
    /// exactly one strategy with a weight of 1 to 100 is set (Argo's messages).
    pub fn preferred_weight(&self, field: &'static str) -> Result<Option<i32>, RolloutSpecError> {
        match (
            &self.preferred_during_scheduling_ignored_during_execution,
            &self.required_during_scheduling_ignored_during_execution,
        ) {
            (Some(preferred), None) if (1..=100).contains(&preferred.weight) => {
                Ok(Some(preferred.weight))
            }
            (Some(_), None) => Err(RolloutSpecError::Invalid {
                field,
                reason: "is invalid: AntiAffinity weight must be between 1-100",
            }),
            (None, Some(_)) => Ok(None),
            _ => Err(RolloutSpecError::Invalid {
                field,
                reason: "is invalid: AntiAffinity must have exactly one strategy listed",
            }),
        }
    }
}

/// Labels and annotations added to pods for as long as they play a role (Argo's
/// `PodTemplateMetadata`, used by `canaryMetadata`, `stableMetadata`, `previewMetadata`,
/// `activeMetadata`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateMetadata {
    /// Labels to add.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations to add.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `spec.strategy.blueGreen` (Argo's `BlueGreenStrategy`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenStrategy {
    /// The Service switched to the new revision at promotion.
    pub active_service: String,
    /// The Service pointing at the new revision before promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_service: Option<String>,
    /// Promote without waiting for `promote` [true].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_promotion_enabled: Option<bool>,
    /// Seconds to wait, once the preview is available, before promoting automatically [0].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub auto_promotion_seconds: Option<i32>,
    /// Pods of the new revision before promotion [`spec.replicas`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub preview_replica_count: Option<i32>,
    /// Delay before the previous revision is scaled down after the switch [30].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub scale_down_delay_seconds: Option<i32>,
    /// Delay before the preview is scaled down after an abort [30]; 0 keeps it running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub abort_scale_down_delay_seconds: Option<i32>,
    /// Analysis that must succeed before the active Service is switched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_promotion_analysis: Option<RolloutAnalysis>,
    /// Analysis run after the switch; failure switches back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_promotion_analysis: Option<RolloutAnalysis>,
    /// Labels and annotations added to preview pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_metadata: Option<PodTemplateMetadata>,
    /// Labels and annotations added to active pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_metadata: Option<PodTemplateMetadata>,
    /// Keep the new revision's pods off the nodes of the stable revision's while it rolls out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anti_affinity: Option<AntiAffinity>,
    /// Pods that may be unavailable at once while `restartAt` replaces them: a count (at most
    /// 1000000) or a percentage (at most 100%) [25%], as Argo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "max_unavailable_schema")]
    pub max_unavailable: Option<IntOrString>,
    /// How many old revisions may wait out `scaleDownDelaySeconds` at once, the newest first; older
    /// ones are scaled down at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub scale_down_delay_revision_limit: Option<i32>,
}

/// An analysis to run (Argo's `RolloutAnalysis`): step analysis, pre/post-promotion analysis.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutAnalysis {
    /// Templates whose metrics are combined into one AnalysisRun.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<RolloutAnalysisTemplate>,
    /// Argument values passed to the templates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<AnalysisRunArgument>,
    /// Metrics run in dry-run mode: measured and shown, never failing the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<DryRun>,
    /// How many measurements to keep per metric [10].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurement_retention: Vec<MeasurementRetention>,
    /// Labels and annotations put on the AnalysisRuns created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_run_metadata: Option<AnalysisRunMetadata>,
}

/// Background analysis of a canary (Argo's `RolloutAnalysisBackground`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutAnalysisBackground {
    /// Templates, args, dry-run and retention, as for any analysis.
    #[serde(flatten)]
    pub analysis: RolloutAnalysis,
    /// Index of the step at which the background analysis starts [0].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub starting_step: Option<i32>,
}

/// A reference to an AnalysisTemplate (Argo's `RolloutAnalysisTemplate`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutAnalysisTemplate {
    /// Name of the AnalysisTemplate (or ClusterAnalysisTemplate with `clusterScope`).
    pub template_name: String,
    /// Look the name up as a ClusterAnalysisTemplate [false].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_scope: Option<bool>,
}

/// An argument passed to an AnalysisRun (Argo's `AnalysisRunArgument`): `value` or `valueFrom`.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[x_kube(validation = Rule::new("!(has(self.value) && has(self.valueFrom))")
    .message("value and valueFrom are mutually exclusive"))]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunArgument {
    /// Name of the template argument.
    pub name: String,
    /// A literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Where to take the value from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ArgumentValueFrom>,
}

/// `args[].valueFrom` (Argo's `ArgumentValueFrom`): exactly one source. (The AnalysisTemplate's
/// own arguments, which may also read Secrets, are [`super::analysis::Argument`].)
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[x_kube(validation = Rule::new("has(self.podTemplateHashValue) != has(self.fieldRef)")
    .message("exactly one of podTemplateHashValue and fieldRef must be set"))]
#[serde(rename_all = "camelCase")]
pub struct ArgumentValueFrom {
    /// The pod template hash of the stable or of the latest ReplicaSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template_hash_value: Option<PodTemplateHashValue>,
    /// A field of the Rollout, e.g. `metadata.labels['app']`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_ref: Option<FieldRef>,
}

/// Labels and annotations added to AnalysisRuns (Argo's `AnalysisRunMetadata`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunMetadata {
    /// Labels to add.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations to add.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

// ---------------------------------------------------------------------------------------------
// Status
// ---------------------------------------------------------------------------------------------

/// The observed state of a Rollout: Argo's `RolloutStatus`, plus Sluice's `revisions` and `revert`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// Healthy, Progressing, Paused or Degraded. Only meaningful when `observedGeneration` equals
    /// `metadata.generation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RolloutPhase>,
    /// Why the Rollout is in its phase (names the failed metric after an analysis failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Pod template hash of the current (newest) revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_pod_hash: Option<String>,
    /// Hash of the current list of steps, to notice when the steps change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step_hash: Option<String>,
    /// Index of the current canary step; equal to the number of steps when all are done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step_index: Option<i32>,
    /// Pod template hash of the stable ReplicaSet.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "stableRS")]
    pub stable_rs: Option<String>,
    /// Abort the update (`true`, set by the user or on analysis failure); `false` retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<bool>,
    /// When the controller acted on the abort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted_at: Option<Time>,
    /// Why the Rollout is paused; clearing the list promotes one step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pause_conditions: Vec<PauseCondition>,
    /// Set when the controller added a pause condition; with an empty `pauseConditions` it means
    /// the user resumed the Rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_pause: Option<bool>,
    /// Skip the remaining steps and analysis (`promote --full`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote_full: Option<bool>,
    /// Conditions: `Available`, `Progressing`, `Paused`, `Completed`, `Healthy`, `InvalidSpec`,
    /// `ReplicaFailure`, `RevertFailed`, ...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// `metadata.generation` last acted on. A **string**, as in Argo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<String>,
    /// Non-terminated pods selected by the Rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Non-terminated pods with the current template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_replicas: Option<i32>,
    /// Ready pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Pods ready for at least `minReadySeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_replicas: Option<i32>,
    /// Pods receiving active traffic (the scale subresource's `status.replicas`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "HPAReplicas"
    )]
    pub hpa_replicas: Option<i32>,
    /// Label selector (string form) of the pods receiving active traffic, for the scale
    /// subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Hash collisions met when naming the newest ReplicaSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collision_count: Option<i32>,
    /// When the pods were last restarted for `spec.restartAt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<Time>,
    /// Canary state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStatus>,
    /// Blue-green state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenStatus>,
    /// Sluice: per ReplicaSet revision, the Git commit (and Application) that introduced it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revisions: Vec<RevisionRecord>,
    /// Sluice: the Git revert of the commit behind a failed revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert: Option<RevertStatus>,
}

/// `status.phase` (Argo's `RolloutPhase`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum RolloutPhase {
    /// Fully rolled out and available.
    Healthy,
    /// Moving towards Healthy.
    Progressing,
    /// Waiting for a promotion, a pause duration, or a resume.
    Paused,
    /// Aborted, invalid, or past its progress deadline.
    Degraded,
}

api_enum_names!(RolloutPhase {
    Healthy,
    Progressing,
    Paused,
    Degraded
});

/// `status.pauseConditions[]` (Argo's `PauseCondition`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PauseCondition {
    /// Why the Rollout paused.
    pub reason: PauseReason,
    /// When the pause started (timed pauses count from here).
    pub start_time: Time,
}

/// `pauseConditions[].reason` (Argo's `PauseReason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum PauseReason {
    /// A canary `pause` step.
    CanaryPauseStep,
    /// Blue-green waiting for promotion.
    BlueGreenPause,
    /// An AnalysisRun ended Inconclusive.
    InconclusiveAnalysisRun,
    /// The Experiment of an experiment step ended Inconclusive.
    InconclusiveExperiment,
}

/// `status.canary` (Argo's `CanaryStatus`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    /// Weights last set on the traffic router.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<TrafficWeights>,
    /// The AnalysisRun of the current analysis step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step_analysis_run_status: Option<RolloutAnalysisRunStatus>,
    /// The background AnalysisRun.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_background_analysis_run_status: Option<RolloutAnalysisRunStatus>,
    /// The Experiment of the current experiment step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_experiment: Option<String>,
}

/// `status.canary.weights` (Argo's `TrafficWeights`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficWeights {
    /// Traffic sent to the canary.
    pub canary: WeightDestination,
    /// Traffic sent to the stable.
    pub stable: WeightDestination,
}

/// One side of the traffic split (Argo's `WeightDestination`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WeightDestination {
    /// Percentage of traffic.
    pub weight: i32,
    /// The Service receiving it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// Pod template hash of the pods behind that Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template_hash: Option<String>,
}

/// The AnalysisRun a Rollout waits on (Argo's `RolloutAnalysisRunStatus`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutAnalysisRunStatus {
    /// Name of the AnalysisRun.
    pub name: String,
    /// Its phase.
    pub status: AnalysisPhase,
    /// Its message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `status.blueGreen` (Argo's `BlueGreenStatus`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenStatus {
    /// Pod template hash the active Service selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_selector: Option<String>,
    /// Pod template hash the preview Service selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_selector: Option<String>,
    /// The preview is ready to be scaled up to full size once the Rollout is resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up_preview_check_point: Option<bool>,
    /// The pre-promotion AnalysisRun.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_promotion_analysis_run_status: Option<RolloutAnalysisRunStatus>,
    /// The post-promotion AnalysisRun.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_promotion_analysis_run_status: Option<RolloutAnalysisRunStatus>,
}

/// Sluice: the Git commit that introduced one ReplicaSet revision (`status.revisions[]`), taken from
/// the `sluice.dev/revision` and `sluice.dev/application` labels of the applied Rollout.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionRecord {
    /// The ReplicaSet's `rollouts-pod-template-hash`.
    pub pod_template_hash: String,
    /// The ReplicaSet's `rollout.argoproj.io/revision` number.
    pub revision: i64,
    /// Full commit sha that introduced the revision; unset when it was not applied from Git.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_revision: Option<String>,
    /// The Application (`<namespace>/<name>`) that applied it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
}

/// Sluice: the revert of a failed revision's commit (`status.revert`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevertStatus {
    /// Full sha of the commit being reverted.
    pub sha: String,
    /// Full sha of the revert commit, once made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert_commit: Option<String>,
    /// Where the revert is.
    pub phase: RevertPhase,
    /// Details, e.g. why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `status.revert.phase`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum RevertPhase {
    /// Decided, not yet pushed.
    #[default]
    Pending,
    /// The revert commit is pushed to the tracked branch.
    Pushed,
    /// The Application has synced the revert commit.
    Synced,
    /// The revert could not be made or pushed (see `message` and the `RevertFailed` condition).
    Failed,
}

// ---------------------------------------------------------------------------------------------
// Accessors with Argo's defaults, and validation
// ---------------------------------------------------------------------------------------------

impl RolloutSpec {
    /// `replicas`, default 1.
    pub fn replicas(&self) -> i32 {
        self.replicas.unwrap_or(DEFAULT_REPLICAS)
    }

    /// `minReadySeconds`, default 0.
    pub fn min_ready_seconds(&self) -> i32 {
        self.min_ready_seconds.unwrap_or(0)
    }

    /// `revisionHistoryLimit`, default 10.
    pub fn revision_history_limit(&self) -> i32 {
        self.revision_history_limit
            .unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT)
    }

    /// `progressDeadlineSeconds`, default 600.
    pub fn progress_deadline_seconds(&self) -> i32 {
        self.progress_deadline_seconds
            .unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS)
    }

    /// `progressDeadlineAbort`, default false.
    pub fn progress_deadline_abort(&self) -> bool {
        self.progress_deadline_abort.unwrap_or(false)
    }

    /// `paused`, default false.
    pub fn paused(&self) -> bool {
        self.paused.unwrap_or(false)
    }

    /// The canary strategy, when that is the strategy.
    pub fn canary(&self) -> Option<&CanaryStrategy> {
        self.strategy.canary.as_ref()
    }

    /// The blue-green strategy, when that is the strategy.
    pub fn blue_green(&self) -> Option<&BlueGreenStrategy> {
        self.strategy.blue_green.as_ref()
    }

    /// The Argo fields set in this spec that Sluice does not implement
    /// ([`super::unsupported::ROLLOUT_SPEC`]), as paths from the object's root.
    pub fn unsupported_fields(&self) -> Vec<String> {
        let mut fields = serde_json::Map::new();
        let mut keep = |key: &str, value: Result<serde_json::Value, serde_json::Error>| {
            if let Ok(value) = value {
                fields.insert(key.to_string(), value);
            }
        };
        keep("strategy", serde_json::to_value(&self.strategy));
        super::unsupported::set_paths(
            &serde_json::Value::Object(fields),
            "spec",
            super::unsupported::ROLLOUT_SPEC.iter().copied(),
        )
    }

    /// Checks what the CRD schema checks, and what it cannot (durations, percentages), so that the
    /// controller reports an `InvalidSpec` condition with the first problem found.
    pub fn validate(&self) -> Result<(), RolloutSpecError> {
        let unsupported = self.unsupported_fields();
        if !unsupported.is_empty() {
            return Err(RolloutSpecError::Unsupported(unsupported));
        }
        self.validate_values()
    }

    /// [`RolloutSpec::validate`] without the unimplemented-fields check (which `lint` reports field
    /// by field).
    pub fn validate_values(&self) -> Result<(), RolloutSpecError> {
        match (&self.template, &self.workload_ref) {
            (Some(_), Some(_)) => return Err(RolloutSpecError::TemplateAndWorkloadRef),
            (None, None) => return Err(RolloutSpecError::NoTemplate),
            (Some(_), None) if self.selector.is_none() => {
                return Err(RolloutSpecError::MissingSelector);
            }
            _ => {}
        }
        for (field, value) in [
            ("spec.replicas", self.replicas),
            ("spec.minReadySeconds", self.min_ready_seconds),
            ("spec.revisionHistoryLimit", self.revision_history_limit),
            (
                "spec.progressDeadlineSeconds",
                self.progress_deadline_seconds,
            ),
        ] {
            check_range(field, value, 0, i64::from(i32::MAX))?;
        }
        match (&self.strategy.canary, &self.strategy.blue_green) {
            (Some(canary), None) => canary.validate()?,
            (None, Some(blue_green)) => blue_green.validate()?,
            _ => return Err(RolloutSpecError::Strategy),
        }
        self.validate_scale_down_delay_revision_limit()
    }

    /// Argo's rule (blue-green): no more revisions wait to be scaled down than are kept at all.
    fn validate_scale_down_delay_revision_limit(&self) -> Result<(), RolloutSpecError> {
        let Some(limit) = self.scale_down_delay_revision_limit() else {
            return Ok(());
        };
        if self.blue_green().is_some() && self.revision_history_limit() < limit {
            return Err(RolloutSpecError::Invalid {
                field: "spec.strategy.blueGreen.scaleDownDelayRevisionLimit",
                reason: "is invalid: This rollout's revision history limit can not be smaller than the rollout's scale down limit",
            });
        }
        Ok(())
    }

    /// The strategy's `scaleDownDelayRevisionLimit`, `None` for no limit.
    pub fn scale_down_delay_revision_limit(&self) -> Option<i32> {
        self.canary()
            .and_then(|c| c.scale_down_delay_revision_limit)
            .or_else(|| {
                self.blue_green()
                    .and_then(|b| b.scale_down_delay_revision_limit)
            })
    }
}

impl WorkloadRef {
    /// `scaleDown`, default `never`.
    pub fn scale_down(&self) -> ScaleDown {
        self.scale_down.unwrap_or_default()
    }
}

impl CanaryStrategy {
    /// `maxSurge`, default 25%.
    pub fn max_surge(&self) -> IntOrString {
        self.max_surge
            .clone()
            .unwrap_or_else(|| IntOrString::String(DEFAULT_MAX_SURGE_UNAVAILABLE.to_string()))
    }

    /// `maxUnavailable`, default 25%.
    pub fn max_unavailable(&self) -> IntOrString {
        self.max_unavailable
            .clone()
            .unwrap_or_else(|| IntOrString::String(DEFAULT_MAX_SURGE_UNAVAILABLE.to_string()))
    }

    /// `scaleDownDelaySeconds`, default 30.
    pub fn scale_down_delay_seconds(&self) -> i32 {
        self.scale_down_delay_seconds
            .unwrap_or(DEFAULT_SCALE_DOWN_DELAY_SECONDS)
    }

    /// `abortScaleDownDelaySeconds`, default 30 (0 = keep the canary running).
    pub fn abort_scale_down_delay_seconds(&self) -> i32 {
        self.abort_scale_down_delay_seconds
            .unwrap_or(DEFAULT_ABORT_SCALE_DOWN_DELAY_SECONDS)
    }

    /// `dynamicStableScale`, default false.
    pub fn dynamic_stable_scale(&self) -> bool {
        self.dynamic_stable_scale.unwrap_or(false)
    }

    /// `trafficRouting.maxTrafficWeight`, default 100: the total every weight is out of.
    pub fn max_traffic_weight(&self) -> i32 {
        self.traffic_routing
            .as_ref()
            .and_then(|t| t.max_traffic_weight)
            .unwrap_or(DEFAULT_MAX_TRAFFIC_WEIGHT)
    }

    /// Argo's rules for `maxTrafficWeight`: NGINX and plugins only (with Argo's message), and
    /// positive, since weights are divided by it.
    fn validate_max_traffic_weight(&self) -> Result<(), RolloutSpecError> {
        let Some(routing) = &self.traffic_routing else {
            return Ok(());
        };
        let Some(max) = routing.max_traffic_weight else {
            return Ok(());
        };
        let field = "spec.strategy.canary.trafficRouting.maxTrafficWeight";
        if routing.nginx.is_none() && routing.plugins.is_none() {
            return Err(RolloutSpecError::InvalidField {
                field: field.to_string(),
                reason: MAX_WEIGHT_ROUTERS.to_string(),
            });
        }
        check_range(field, Some(max), 1, i64::from(i32::MAX))
    }

    /// Whether a traffic router is configured (nginx, istio, smi, traefik or a plugin). Without one, weights are
    /// approximated by replica counts.
    pub fn has_traffic_routing(&self) -> bool {
        self.traffic_routing.as_ref().is_some_and(|t| {
            t.nginx.is_some()
                || t.ambassador.is_some()
                || t.apisix.is_some()
                || t.plugins.is_some()
                || t.istio.is_some()
                || t.smi.is_some()
                || t.traefik.is_some()
        })
    }

    /// `maxSurge` as a pod count for `replicas` pods (percentages rounded up, as Kubernetes does).
    pub fn max_surge_for(&self, replicas: i32) -> Result<i32, RolloutSpecError> {
        resolve_int_or_percent(
            "spec.strategy.canary.maxSurge",
            &self.max_surge(),
            replicas,
            true,
        )
    }

    /// `maxUnavailable` as a pod count for `replicas` pods (percentages rounded down).
    pub fn max_unavailable_for(&self, replicas: i32) -> Result<i32, RolloutSpecError> {
        resolve_int_or_percent(
            "spec.strategy.canary.maxUnavailable",
            &self.max_unavailable(),
            replicas,
            false,
        )
    }

    fn validate(&self) -> Result<(), RolloutSpecError> {
        self.validate_max_traffic_weight()?;
        let max_weight = self.max_traffic_weight();
        for (index, step) in self.steps.iter().enumerate() {
            step.validate(index, max_weight)?;
        }
        if let Some(anti_affinity) = &self.anti_affinity {
            anti_affinity.preferred_weight("spec.strategy.canary.antiAffinity")?;
        }
        if self.scale_down_delay_revision_limit.is_some() && self.traffic_routing.is_none() {
            return Err(RolloutSpecError::Invalid {
                field: "spec.strategy.canary.scaleDownDelayRevisionLimit",
                reason: "applies only with trafficRouting (without one, older revisions are scaled down as soon as availability allows, with no delay to limit; set trafficRouting or remove it)",
            });
        }
        super::routes::validate_steps_against_routing(self)?;
        if self.min_pods_per_replica_set.is_some() && self.traffic_routing.is_none() {
            return Err(RolloutSpecError::Invalid {
                field: "spec.strategy.canary.minPodsPerReplicaSet",
                reason: "applies only with trafficRouting (Argo Rollouts ignores it without; set trafficRouting or remove it)",
            });
        }
        if let Some(nginx) = self.traffic_routing.as_ref().and_then(|t| t.nginx.as_ref()) {
            nginx.validate()?;
        }
        if let Some(ambassador) = self
            .traffic_routing
            .as_ref()
            .and_then(|t| t.ambassador.as_ref())
        {
            ambassador.validate()?;
        }
        let apisix = self
            .traffic_routing
            .as_ref()
            .and_then(|t| t.apisix.as_ref());
        if apisix.is_some_and(|a| a.route.as_ref().is_none_or(|r| r.name.is_empty())) {
            return Err(RolloutSpecError::Required(
                "spec.strategy.canary.trafficRouting.apisix.route.name",
            ));
        }
        for (field, value, max_percent) in [
            (
                "spec.strategy.canary.maxSurge",
                self.max_surge(),
                MAX_SURGE_PERCENT,
            ),
            (
                "spec.strategy.canary.maxUnavailable",
                self.max_unavailable(),
                MAX_UNAVAILABLE_PERCENT,
            ),
        ] {
            check_pod_budget(field, &value, max_percent)?;
        }
        let surge = self.max_surge_for(100)?;
        let unavailable = self.max_unavailable_for(100)?;
        if surge == 0 && unavailable == 0 {
            return Err(RolloutSpecError::InvalidIntOrPercent {
                field: "spec.strategy.canary.maxSurge".to_string(),
                value: "0 (maxSurge and maxUnavailable cannot both be 0)".to_string(),
            });
        }
        for (field, value) in [
            (
                "spec.strategy.canary.scaleDownDelaySeconds",
                self.scale_down_delay_seconds,
            ),
            (
                "spec.strategy.canary.abortScaleDownDelaySeconds",
                self.abort_scale_down_delay_seconds,
            ),
        ] {
            check_range(field, value, 0, i64::from(i32::MAX))?;
        }
        if let Some(background) = &self.analysis {
            background
                .analysis
                .validate("spec.strategy.canary.analysis")?;
            check_range(
                "spec.strategy.canary.analysis.startingStep",
                background.starting_step,
                0,
                i64::try_from(self.steps.len()).unwrap_or(i64::MAX),
            )?;
        }
        Ok(())
    }
}

impl CanaryStep {
    /// The one thing this step does, or `None` when it sets no kind or more than one (the CRD
    /// schema refuses such steps).
    pub fn kind(&self) -> Option<CanaryStepKind<'_>> {
        let kinds = [
            self.set_weight.map(CanaryStepKind::SetWeight),
            self.pause.as_ref().map(CanaryStepKind::Pause),
            self.set_canary_scale
                .as_ref()
                .map(CanaryStepKind::SetCanaryScale),
            self.analysis.as_ref().map(CanaryStepKind::Analysis),
            self.experiment.as_ref().map(CanaryStepKind::Experiment),
            self.set_header_route
                .as_ref()
                .map(CanaryStepKind::SetHeaderRoute),
            self.set_mirror_route
                .as_ref()
                .map(CanaryStepKind::SetMirrorRoute),
        ];
        let mut set = kinds.into_iter().flatten();
        match (set.next(), set.next()) {
            (Some(kind), None) => Some(kind),
            _ => None,
        }
    }

    fn sets_unimplemented_kind(&self) -> bool {
        self.plugin.is_some()
    }

    /// The step's own rules; weights are out of `max_weight` (`maxTrafficWeight`).
    fn validate(&self, index: usize, max_weight: i32) -> Result<(), RolloutSpecError> {
        let invalid = |reason: String| RolloutSpecError::InvalidStep { index, reason };
        match self.kind() {
            // An Argo step kind Sluice does not implement: reported as such (`unsupported_fields`).
            None if self.sets_unimplemented_kind() => Ok(()),
            None => Err(invalid(
                "a step sets exactly one of setWeight, pause, setCanaryScale and analysis"
                    .to_string(),
            )),
            Some(CanaryStepKind::SetWeight(weight)) if !(0..=max_weight).contains(&weight) => {
                Err(invalid(format!(
                    "setWeight is {weight}: SetWeight needs to be between 0 and {max_weight}"
                )))
            }
            Some(CanaryStepKind::Pause(pause)) => pause
                .duration()
                .map(|_| ())
                .map_err(|e| invalid(e.to_string())),
            Some(CanaryStepKind::SetCanaryScale(scale)) => {
                if let Some(weight) = scale.weight.filter(|w| !(0..=max_weight).contains(w)) {
                    return Err(invalid(format!(
                        "setCanaryScale.weight is {weight}, must be between 0 and {max_weight}"
                    )));
                }
                if let Some(replicas) = scale.replicas.filter(|r| *r < 0) {
                    return Err(invalid(format!(
                        "setCanaryScale.replicas is {replicas}, must not be negative"
                    )));
                }
                Ok(())
            }
            Some(CanaryStepKind::Analysis(analysis)) => analysis
                .validate(&format!("spec.strategy.canary.steps[{index}].analysis"))
                .map_err(|e| invalid(e.to_string())),
            Some(CanaryStepKind::Experiment(experiment)) => experiment.validate().map_err(invalid),
            Some(CanaryStepKind::SetHeaderRoute(route)) => super::routes::validate_header_route(
                route,
                &format!("spec.strategy.canary.steps[{index}].setHeaderRoute"),
            )
            .map_err(invalid),
            Some(CanaryStepKind::SetMirrorRoute(route)) => super::routes::validate_mirror_route(
                route,
                &format!("spec.strategy.canary.steps[{index}].setMirrorRoute"),
            )
            .map_err(invalid),
            Some(_) => Ok(()),
        }
    }
}

impl RolloutExperimentStep {
    /// Argo's `ValidateRolloutStrategyCanary` rules for an experiment step: templates named
    /// uniquely, each from `stable` or `canary`; a duration that parses.
    fn validate(&self) -> Result<(), String> {
        if self.templates.is_empty() {
            return Err("experiment.templates must not be empty".to_string());
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, template) in self.templates.iter().enumerate() {
            if !names.insert(template.name.as_str()) {
                return Err(format!(
                    "experiment.templates[{i}].name {:?} is used twice",
                    template.name
                ));
            }
            if !matches!(template.spec_ref.as_str(), "stable" | "canary") {
                return Err(format!(
                    "experiment.templates[{i}].specRef is {:?}, must be stable or canary",
                    template.spec_ref
                ));
            }
        }
        if let Some(duration) = self.duration.as_deref().filter(|d| !d.is_empty()) {
            crate::duration::parse_duration(duration)
                .map_err(|e| format!("experiment.duration: {e}"))?;
        }
        Ok(())
    }
}

impl RolloutPause {
    /// The pause duration; `None` for `pause: {}` (wait for promotion).
    pub fn duration(&self) -> Result<Option<Duration>, RolloutSpecError> {
        self.duration.as_ref().map(parse_duration).transpose()
    }
}

impl SetCanaryScale {
    /// What the step asks for, with Argo's precedence: `matchTrafficWeight: true` first, then
    /// `replicas`, then `weight`; an empty `setCanaryScale` matches the traffic weight.
    pub fn target(&self) -> CanaryScale {
        if self.match_traffic_weight == Some(true) {
            CanaryScale::MatchTrafficWeight
        } else if let Some(replicas) = self.replicas {
            CanaryScale::Replicas(replicas)
        } else if let Some(weight) = self.weight {
            CanaryScale::Weight(weight)
        } else {
            CanaryScale::MatchTrafficWeight
        }
    }
}

impl TrafficRouting {
    /// The Gateway API plugin's configuration, when that is the router.
    pub fn gateway_api(&self) -> Option<&GatewayApiTrafficRouting> {
        self.plugins.as_ref().and_then(|p| p.gateway_api.as_ref())
    }
}

impl AmbassadorTrafficRouting {
    /// Argo needs at least one Mapping (it aborts the Rollout without); and each named.
    fn validate(&self) -> Result<(), RolloutSpecError> {
        let field = "spec.strategy.canary.trafficRouting.ambassador.mappings";
        if self.mappings.is_empty() {
            return Err(RolloutSpecError::InvalidField {
                field: field.to_string(),
                reason: "names no Mapping; list at least one".to_string(),
            });
        }
        if let Some(i) = self.mappings.iter().position(String::is_empty) {
            return Err(RolloutSpecError::InvalidField {
                field: format!("{field}[{i}]"),
                reason: "is empty; name a Mapping".to_string(),
            });
        }
        Ok(())
    }
}

impl NginxTrafficRouting {
    /// `annotationPrefix`, default `nginx.ingress.kubernetes.io`.
    pub fn annotation_prefix(&self) -> &str {
        self.annotation_prefix
            .as_deref()
            .unwrap_or(DEFAULT_NGINX_ANNOTATION_PREFIX)
    }

    /// The stable Ingresses: `stableIngress`, or `stableIngresses` in order without repeats.
    pub fn stable_ingress_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        let listed = self.stable_ingresses.iter().flatten().map(String::as_str);
        for name in std::iter::once(self.stable_ingress.as_str()).chain(listed) {
            if !name.is_empty() && !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }

    /// Argo's rules: exactly one of `stableIngress` and `stableIngresses` (with its message);
    /// and, since the canary Ingresses carry `canaryIngressAnnotations` as written, keys the API
    /// server accepts as annotation keys (Kubernetes' qualified names), so that a bad key is named
    /// here rather than failing every write of a canary Ingress.
    fn validate(&self) -> Result<(), RolloutSpecError> {
        let field = |path: &str| format!("spec.strategy.canary.trafficRouting.nginx{path}");
        let invalid = |path: &str, reason: String| RolloutSpecError::InvalidField {
            field: field(path),
            reason,
        };
        match (self.stable_ingress.is_empty(), &self.stable_ingresses) {
            (false, Some(_)) => return Err(invalid("", NGINX_BOTH_INGRESSES.to_string())),
            (true, None) => return Err(invalid("", NGINX_NEITHER_INGRESS.to_string())),
            (true, Some(list)) if list.is_empty() => {
                return Err(invalid(
                    ".stableIngresses",
                    "names no Ingress; list at least one".to_string(),
                ));
            }
            _ => {}
        }
        if let Some(i) = self
            .stable_ingresses
            .iter()
            .flatten()
            .position(String::is_empty)
        {
            return Err(invalid(
                &format!(".stableIngresses[{i}]"),
                "is empty; name an Ingress".to_string(),
            ));
        }
        for key in self.canary_ingress_annotations.keys() {
            super::common::qualified_name(key).map_err(|reason| {
                invalid(
                    &format!(".canaryIngressAnnotations.{key}"),
                    format!("{key:?} is not a valid annotation key: {reason}"),
                )
            })?;
        }
        Ok(())
    }
}

impl GatewayApiTrafficRouting {
    /// Every HTTPRoute named, `httpRoute` first, then `httpRoutes` in order.
    pub fn http_route_names(&self) -> Vec<&str> {
        self.http_route
            .iter()
            .map(String::as_str)
            .chain(self.http_routes.iter().map(|r| r.name.as_str()))
            .collect()
    }

    /// The HTTPRoutes that take header and mirror rules: `httpRoute` (the plugin implies
    /// `useHeaderRoutes` for it), then the `httpRoutes` with `useHeaderRoutes: true`.
    pub fn routes_with_managed_rules(&self) -> impl Iterator<Item = &str> {
        self.http_route.iter().map(String::as_str).chain(
            self.http_routes
                .iter()
                .filter(|r| r.use_header_routes == Some(true))
                .map(|r| r.name.as_str()),
        )
    }
}

impl BlueGreenStrategy {
    /// `maxUnavailable`, default 25% (Argo's default for both strategies).
    pub fn max_unavailable(&self) -> IntOrString {
        self.max_unavailable
            .clone()
            .unwrap_or_else(|| IntOrString::String(DEFAULT_MAX_SURGE_UNAVAILABLE.to_string()))
    }

    /// `maxUnavailable` of `replicas` pods, rounded down.
    pub fn max_unavailable_for(&self, replicas: i32) -> Result<i32, RolloutSpecError> {
        resolve_int_or_percent(
            "spec.strategy.blueGreen.maxUnavailable",
            &self.max_unavailable(),
            replicas,
            false,
        )
    }

    /// `autoPromotionEnabled`, default true.
    pub fn auto_promotion_enabled(&self) -> bool {
        self.auto_promotion_enabled.unwrap_or(true)
    }

    /// `autoPromotionSeconds`, default 0.
    pub fn auto_promotion_seconds(&self) -> i32 {
        self.auto_promotion_seconds.unwrap_or(0)
    }

    /// `previewReplicaCount`, default `spec.replicas` (pass the Rollout's effective replicas).
    pub fn preview_replica_count(&self, replicas: i32) -> i32 {
        self.preview_replica_count.unwrap_or(replicas)
    }

    /// `scaleDownDelaySeconds`, default 30.
    pub fn scale_down_delay_seconds(&self) -> i32 {
        self.scale_down_delay_seconds
            .unwrap_or(DEFAULT_SCALE_DOWN_DELAY_SECONDS)
    }

    /// `abortScaleDownDelaySeconds`, default 30 (0 = keep the preview running).
    pub fn abort_scale_down_delay_seconds(&self) -> i32 {
        self.abort_scale_down_delay_seconds
            .unwrap_or(DEFAULT_ABORT_SCALE_DOWN_DELAY_SECONDS)
    }

    fn validate(&self) -> Result<(), RolloutSpecError> {
        if let Some(anti_affinity) = &self.anti_affinity {
            anti_affinity.preferred_weight("spec.strategy.blueGreen.antiAffinity")?;
        }
        check_pod_budget(
            "spec.strategy.blueGreen.maxUnavailable",
            &self.max_unavailable(),
            MAX_UNAVAILABLE_PERCENT,
        )?;
        for (field, value) in [
            (
                "spec.strategy.blueGreen.autoPromotionSeconds",
                self.auto_promotion_seconds,
            ),
            (
                "spec.strategy.blueGreen.previewReplicaCount",
                self.preview_replica_count,
            ),
            (
                "spec.strategy.blueGreen.scaleDownDelaySeconds",
                self.scale_down_delay_seconds,
            ),
            (
                "spec.strategy.blueGreen.abortScaleDownDelaySeconds",
                self.abort_scale_down_delay_seconds,
            ),
        ] {
            check_range(field, value, 0, i64::from(i32::MAX))?;
        }
        if let Some(pre) = &self.pre_promotion_analysis {
            pre.validate("spec.strategy.blueGreen.prePromotionAnalysis")?;
        }
        if let Some(post) = &self.post_promotion_analysis {
            post.validate("spec.strategy.blueGreen.postPromotionAnalysis")?;
        }
        Ok(())
    }
}

impl RolloutAnalysis {
    /// Checks that templates are named and each argument has exactly one of `value` and
    /// `valueFrom` (with exactly one source). `field` locates the analysis in errors.
    pub fn validate(&self, field: &str) -> Result<(), RolloutSpecError> {
        let invalid = |reason: String| RolloutSpecError::InvalidAnalysis {
            field: field.to_string(),
            reason,
        };
        if self.templates.is_empty() {
            return Err(invalid("names no templates".to_string()));
        }
        if let Some(t) = self.templates.iter().find(|t| t.template_name.is_empty()) {
            return Err(invalid(format!(
                "a template has an empty templateName (clusterScope: {})",
                t.cluster_scope()
            )));
        }
        for arg in &self.args {
            let sources = arg.value_from.as_ref().map_or(0, |v| {
                usize::from(v.pod_template_hash_value.is_some())
                    + usize::from(v.field_ref.is_some())
            });
            match (&arg.value, &arg.value_from) {
                (Some(_), Some(_)) => {
                    return Err(invalid(format!(
                        "argument {:?} sets both value and valueFrom",
                        arg.name
                    )));
                }
                (None, None) => {
                    return Err(invalid(format!(
                        "argument {:?} sets neither value nor valueFrom",
                        arg.name
                    )));
                }
                (None, Some(_)) if sources != 1 => {
                    return Err(invalid(format!(
                        "argument {:?}: valueFrom sets exactly one of podTemplateHashValue and fieldRef",
                        arg.name
                    )));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl RolloutAnalysisBackground {
    /// `startingStep`, default 0.
    pub fn starting_step(&self) -> i32 {
        self.starting_step.unwrap_or(0)
    }
}

impl RolloutAnalysisTemplate {
    /// `clusterScope`, default false.
    pub fn cluster_scope(&self) -> bool {
        self.cluster_scope.unwrap_or(false)
    }
}

impl RolloutStatus {
    /// `abort`, default false.
    pub fn aborted(&self) -> bool {
        self.abort.unwrap_or(false)
    }

    /// `promoteFull`, default false.
    pub fn promote_full(&self) -> bool {
        self.promote_full.unwrap_or(false)
    }

    /// `controllerPause`, default false.
    pub fn controller_pause(&self) -> bool {
        self.controller_pause.unwrap_or(false)
    }

    /// `observedGeneration` as a number (it is a string in Argo's status); `None` when unset or
    /// not a number.
    pub fn observed_generation(&self) -> Option<i64> {
        self.observed_generation.as_deref()?.parse().ok()
    }

    /// The recorded Git origin of the revision with this pod template hash.
    pub fn revision_for_hash(&self, pod_template_hash: &str) -> Option<&RevisionRecord> {
        self.revisions
            .iter()
            .find(|r| r.pod_template_hash == pod_template_hash)
    }

    /// The canary traffic weight last set, 0 when none was.
    pub fn canary_weight(&self) -> i32 {
        self.canary
            .as_ref()
            .and_then(|c| c.weights.as_ref())
            .map_or(0, |w| w.canary.weight)
    }
}

fn check_range(
    field: &str,
    value: Option<i32>,
    min: i64,
    max: i64,
) -> Result<(), RolloutSpecError> {
    match value.map(i64::from) {
        Some(v) if v < min || v > max => Err(RolloutSpecError::OutOfRange {
            field: field.to_string(),
            value: v,
            min,
            max,
        }),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Pure helpers
// ---------------------------------------------------------------------------------------------

/// Parses a pause duration as Argo does: an integer is seconds (`30`, and the string `"30"`), a
/// string with units is a duration (`"30s"`, `"5m"`, `"1h"`, `"1h30m"`). Negative or malformed
/// values are refused.
pub fn parse_duration(value: &IntOrString) -> Result<Duration, RolloutSpecError> {
    match value {
        IntOrString::Int(seconds) => {
            u64::try_from(*seconds)
                .map(Duration::from_secs)
                .map_err(|_| RolloutSpecError::InvalidDuration {
                    value: seconds.to_string(),
                    reason: "negative".to_string(),
                })
        }
        IntOrString::String(text) => parse_duration_str(text),
    }
}

/// The string form of [`parse_duration`]: bare digits are seconds, anything else needs units.
pub fn parse_duration_str(text: &str) -> Result<Duration, RolloutSpecError> {
    let invalid = |reason: &str| RolloutSpecError::InvalidDuration {
        value: text.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(invalid("empty"));
    }
    if trimmed.starts_with('-') {
        return Err(invalid("negative"));
    }
    if trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return trimmed
            .parse::<u64>()
            .ok()
            .map(Duration::from_secs)
            .filter(|d| *d <= crate::duration::MAX_DURATION)
            .ok_or_else(|| invalid("too large (at most 2562047h47m16.854775807s)"));
    }
    crate::duration::parse_duration(trimmed).map_err(|e| invalid(&e.reason))
}

/// What the CRD admits for `maxSurge` / `maxUnavailable` (checked again here for objects that
/// were stored before, or bypass, the schema): a count up to [`MAX_POD_BUDGET`] or a percentage up
/// to `max_percent`.
fn check_pod_budget(
    field: &str,
    value: &IntOrString,
    max_percent: i64,
) -> Result<(), RolloutSpecError> {
    let resolved = i64::from(resolve_int_or_percent(field, value, 100, false)?);
    let limit = match value {
        IntOrString::Int(_) => MAX_POD_BUDGET,
        IntOrString::String(_) => max_percent,
    };
    if resolved > limit {
        return Err(RolloutSpecError::InvalidIntOrPercent {
            field: field.to_string(),
            value: match value {
                IntOrString::Int(n) => format!("{n} (at most {MAX_POD_BUDGET})"),
                IntOrString::String(s) => format!("{s} (at most {max_percent}%)"),
            },
        });
    }
    Ok(())
}

/// Resolves an int-or-percent value (`maxSurge`, `maxUnavailable`, ...) against `total`, like
/// Kubernetes' `GetScaledValueFromIntOrPercent`: `N` is N, `"P%"` is `total × P / 100` rounded up
/// or down. `field` names the value in the error.
pub fn resolve_int_or_percent(
    field: &str,
    value: &IntOrString,
    total: i32,
    round_up: bool,
) -> Result<i32, RolloutSpecError> {
    let invalid = || RolloutSpecError::InvalidIntOrPercent {
        field: field.to_string(),
        value: match value {
            IntOrString::Int(n) => n.to_string(),
            IntOrString::String(s) => s.clone(),
        },
    };
    match value {
        IntOrString::Int(n) if *n >= 0 => Ok(*n),
        IntOrString::Int(_) => Err(invalid()),
        IntOrString::String(text) => {
            let percent: i64 = text
                .strip_suffix('%')
                .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|p| p.parse().ok())
                .ok_or_else(invalid)?;
            let scaled = i64::from(total.max(0))
                .checked_mul(percent)
                .ok_or_else(invalid)?;
            let value = if round_up {
                scaled.checked_add(99).ok_or_else(invalid)? / 100
            } else {
                scaled / 100
            };
            i32::try_from(value).map_err(|_| invalid())
        }
    }
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;
    use pretty_assertions::assert_eq;
    use serde_json::{Value, json};

    use super::*;

    const CANARY_REPLICAS: &str = include_str!("../../tests/fixtures/rollout/canary-replicas.yaml");
    const CANARY_GATEWAY_API: &str =
        include_str!("../../tests/fixtures/rollout/canary-gatewayapi.yaml");
    const CANARY_NGINX: &str = include_str!("../../tests/fixtures/rollout/canary-nginx.yaml");
    const BLUE_GREEN: &str = include_str!("../../tests/fixtures/rollout/bluegreen-analysis.yaml");
    const WORKLOAD_REF: &str = include_str!("../../tests/fixtures/rollout/workloadref.yaml");
    const WITH_STATUS: &str = include_str!("../../tests/fixtures/rollout/canary-status.yaml");

    const FIXTURES: [(&str, &str); 6] = [
        ("canary-replicas", CANARY_REPLICAS),
        ("canary-gatewayapi", CANARY_GATEWAY_API),
        ("canary-nginx", CANARY_NGINX),
        ("bluegreen-analysis", BLUE_GREEN),
        ("workloadref", WORKLOAD_REF),
        ("canary-status", WITH_STATUS),
    ];

    fn parse(yaml: &str) -> Rollout {
        serde_saphyr::from_str(yaml).unwrap()
    }

    /// Typed parse, then back to JSON: must equal the YAML read as an untyped value.
    fn assert_round_trip(name: &str, yaml: &str) -> Rollout {
        let generic: Value = serde_saphyr::from_str(yaml).unwrap();
        let rollout: Rollout = serde_saphyr::from_str(yaml)
            .unwrap_or_else(|e| panic!("{name}: does not parse as a Rollout: {e}"));
        let back = serde_json::to_value(&rollout).unwrap();
        assert_eq!(back, generic, "{name}: a field was lost or changed");
        rollout
    }

    #[test]
    fn every_fixture_round_trips_and_validates() {
        for (name, yaml) in FIXTURES {
            let rollout = assert_round_trip(name, yaml);
            assert_eq!(rollout.spec.validate(), Ok(()), "{name}");
            assert_eq!(
                serde_json::to_value(&rollout).unwrap()["apiVersion"],
                json!("sluice.dev/v1alpha1")
            );
        }
    }

    #[test]
    fn canary_replica_ratio_fixture() {
        let r = parse(CANARY_REPLICAS);
        let canary = r.spec.canary().unwrap();
        assert!(!canary.has_traffic_routing());
        let kinds: Vec<_> = canary.steps.iter().map(|s| s.kind().unwrap()).collect();
        assert_eq!(kinds[0], CanaryStepKind::SetWeight(20));
        match kinds[1] {
            CanaryStepKind::Pause(p) => assert_eq!(p.duration(), Ok(None)),
            other => panic!("step 1 is {other:?}"),
        }
        match kinds[3] {
            CanaryStepKind::Pause(p) => assert_eq!(p.duration(), Ok(Some(Duration::from_secs(30)))),
            other => panic!("step 3 is {other:?}"),
        }
        assert_eq!(canary.max_surge_for(10), Ok(1));
        assert_eq!(canary.max_unavailable_for(10), Ok(0));
        let background = canary.analysis.as_ref().unwrap();
        assert_eq!(background.starting_step(), 2);
        assert_eq!(
            background.analysis.args[1]
                .value_from
                .as_ref()
                .unwrap()
                .pod_template_hash_value,
            Some(PodTemplateHashValue::Latest)
        );
        assert_eq!(r.spec.replicas(), 10);
        assert_eq!(r.spec.revision_history_limit(), 3);
    }

    #[test]
    fn gateway_api_plugin_is_typed_and_keyed_like_argo() {
        let r = parse(CANARY_GATEWAY_API);
        let canary = r.spec.canary().unwrap();
        assert!(canary.has_traffic_routing());
        let routing = canary.traffic_routing.as_ref().unwrap();
        let gw = routing.gateway_api().unwrap();
        assert_eq!(gw.http_route.as_deref(), Some("web-route"));
        assert_eq!(gw.namespace.as_deref(), Some("shop"));
        assert_eq!(gw.http_route_names(), vec!["web-route"]);
        assert!(routing.plugins.as_ref().unwrap().other.is_empty());
        assert_eq!(canary.canary_service.as_deref(), Some("web-canary"));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json["spec"]["strategy"]["canary"]["trafficRouting"]["plugins"]["argoproj-labs/gatewayAPI"]
                ["httpRoute"],
            json!("web-route")
        );
        let scales: Vec<_> = canary
            .steps
            .iter()
            .filter_map(|s| s.set_canary_scale.as_ref().map(SetCanaryScale::target))
            .collect();
        assert_eq!(
            scales,
            vec![CanaryScale::Replicas(2), CanaryScale::MatchTrafficWeight]
        );
    }

    #[test]
    fn other_plugins_are_kept_as_written() {
        let yaml = r#"
argoproj-labs/gatewayAPI:
  httpRoutes:
    - name: a
    - name: b
      useHeaderRoutes: true
example.com/other:
  anything: [1, 2]
"#;
        let plugins: TrafficRoutingPlugins = serde_saphyr::from_str(yaml).unwrap();
        assert_eq!(
            plugins.gateway_api.as_ref().unwrap().http_route_names(),
            vec!["a", "b"]
        );
        assert_eq!(
            plugins.other["example.com/other"],
            json!({"anything": [1, 2]})
        );
        let generic: Value = serde_saphyr::from_str(yaml).unwrap();
        assert_eq!(serde_json::to_value(&plugins).unwrap(), generic);
    }

    #[test]
    fn nginx_ingresses_and_canary_annotations_are_checked_as_argo() {
        let with = |edit: &dyn Fn(&mut NginxTrafficRouting)| {
            let mut r = parse(CANARY_NGINX);
            let canary = r.spec.strategy.canary.as_mut().unwrap();
            edit(
                canary
                    .traffic_routing
                    .as_mut()
                    .unwrap()
                    .nginx
                    .as_mut()
                    .unwrap(),
            );
            r.spec.validate().map_err(|e| e.to_string())
        };
        let nginx = "spec.strategy.canary.trafficRouting.nginx";
        assert_eq!(with(&|_| ()), Ok(()));
        assert_eq!(
            with(&|n| n.stable_ingresses = Some(vec!["a".into()])),
            Err(format!("{nginx}: {NGINX_BOTH_INGRESSES}"))
        );
        assert_eq!(
            with(&|n| n.stable_ingress.clear()),
            Err(format!("{nginx}: {NGINX_NEITHER_INGRESS}"))
        );
        let several = |n: &mut NginxTrafficRouting, names: &[&str]| {
            n.stable_ingress.clear();
            n.stable_ingresses = Some(names.iter().map(|s| s.to_string()).collect());
        };
        assert_eq!(with(&|n| several(n, &["a", "b"])), Ok(()));
        assert_eq!(
            with(&|n| several(n, &[])),
            Err(format!(
                "{nginx}.stableIngresses: names no Ingress; list at least one"
            ))
        );
        assert_eq!(
            with(&|n| several(n, &["a", ""])),
            Err(format!(
                "{nginx}.stableIngresses[1]: is empty; name an Ingress"
            ))
        );
        let mut n = NginxTrafficRouting::default();
        several(&mut n, &["a", "b", "a"]);
        n.stable_ingress = String::new();
        assert_eq!(n.stable_ingress_names(), ["a", "b"]);

        let annotate = |key: &'static str| {
            move |n: &mut NginxTrafficRouting| {
                n.canary_ingress_annotations
                    .insert(key.to_string(), "v".to_string());
            }
        };
        for good in [
            "my-custom-annotation.mygroup.com/key",
            "plain",
            "a.b/C_d-1.x",
        ] {
            assert_eq!(with(&annotate(good)), Ok(()), "{good}");
        }
        for (bad, reason) in [
            (
                "Bad.Example/key",
                "the prefix must be a lowercase DNS subdomain",
            ),
            ("example.com/", "the name part is empty"),
            (
                "a/b/c",
                "must be alphanumeric, '-', '_' or '.', starting and ending alphanumeric",
            ),
            (
                "-key",
                "must be alphanumeric, '-', '_' or '.', starting and ending alphanumeric",
            ),
        ] {
            assert_eq!(
                with(&annotate(bad)),
                Err(format!(
                    "{nginx}.canaryIngressAnnotations.{bad}: {bad:?} is not a valid annotation key: {reason}"
                )),
                "{bad}"
            );
        }
    }

    #[test]
    fn max_traffic_weight_bounds_set_weight_and_needs_nginx_or_a_plugin() {
        let with = |max: Option<i32>, weights: &[i32], edit: &dyn Fn(&mut TrafficRouting)| {
            let mut r = parse(CANARY_NGINX);
            let canary = r.spec.strategy.canary.as_mut().unwrap();
            canary.steps = weights
                .iter()
                .map(|w| CanaryStep {
                    set_weight: Some(*w),
                    ..Default::default()
                })
                .collect();
            let routing = canary.traffic_routing.as_mut().unwrap();
            routing.max_traffic_weight = max;
            edit(routing);
            assert_eq!(canary.max_traffic_weight(), max.unwrap_or(100));
            r.spec.validate().map_err(|e| e.to_string())
        };
        let keep = |_: &mut TrafficRouting| ();
        assert_eq!(with(None, &[0, 100], &keep), Ok(()));
        assert_eq!(
            with(None, &[10, 101], &keep),
            Err("spec.strategy.canary.steps[1]: setWeight is 101: SetWeight needs to be between 0 and 100".into())
        );
        assert_eq!(with(Some(1000), &[5, 500, 1000], &keep), Ok(()));
        assert_eq!(
            with(Some(1000), &[1001], &keep),
            Err("spec.strategy.canary.steps[0]: setWeight is 1001: SetWeight needs to be between 0 and 1000".into())
        );
        assert_eq!(
            with(Some(0), &[0], &keep),
            Err("spec.strategy.canary.trafficRouting.maxTrafficWeight is 0, must be between 1 and 2147483647".into())
        );
        let istio = |t: &mut TrafficRouting| {
            t.nginx = None;
            t.istio = Some(serde_json::json!({"virtualService": {"name": "vs"}}));
        };
        assert_eq!(
            with(Some(1000), &[5], &istio),
            Err(format!(
                "spec.strategy.canary.trafficRouting.maxTrafficWeight: {MAX_WEIGHT_ROUTERS}"
            ))
        );
        let plugin = |t: &mut TrafficRouting| {
            t.nginx = None;
            t.plugins = Some(TrafficRoutingPlugins {
                gateway_api: Some(GatewayApiTrafficRouting {
                    http_route: Some("r".into()),
                    ..Default::default()
                }),
                other: BTreeMap::new(),
            });
        };
        assert_eq!(with(Some(1000), &[5], &plugin), Ok(()));
    }

    #[test]
    fn nginx_fixture() {
        let r = parse(CANARY_NGINX);
        let nginx = r.spec.canary().unwrap().traffic_routing.as_ref().unwrap();
        let nginx = nginx.nginx.as_ref().unwrap();
        assert_eq!(nginx.stable_ingress, "web");
        assert_eq!(nginx.annotation_prefix(), "custom.nginx.org");
        assert_eq!(
            nginx.additional_ingress_annotations["canary-by-header"],
            "X-Canary"
        );
        let default = NginxTrafficRouting::default();
        assert_eq!(default.annotation_prefix(), DEFAULT_NGINX_ANNOTATION_PREFIX);
    }

    #[test]
    fn blue_green_fixture() {
        let r = parse(BLUE_GREEN);
        let bg = r.spec.blue_green().unwrap();
        assert!(r.spec.canary().is_none());
        assert_eq!(bg.active_service, "web-active");
        assert!(!bg.auto_promotion_enabled());
        assert_eq!(bg.preview_replica_count(r.spec.replicas()), 1);
        let pre = bg.pre_promotion_analysis.as_ref().unwrap();
        assert_eq!(pre.templates[0].template_name, "smoke-tests");
        assert!(pre.templates[0].cluster_scope());
        let post = bg.post_promotion_analysis.as_ref().unwrap();
        assert_eq!(post.dry_run[0].metric_name, "latency");
        assert_eq!(post.measurement_retention[0].limit, 20);
        assert_eq!(
            post.args[1].value_from.as_ref().unwrap().field_ref,
            Some(FieldRef {
                field_path: "metadata.labels['app']".to_string()
            })
        );
    }

    #[test]
    fn workload_ref_fixture() {
        let r = parse(WORKLOAD_REF);
        assert!(r.spec.template.is_none());
        let wr = r.spec.workload_ref.as_ref().unwrap();
        assert_eq!(wr.kind, "Deployment");
        assert_eq!(wr.scale_down(), ScaleDown::Progressively);
        let json = serde_json::to_value(wr).unwrap();
        assert_eq!(json["scaleDown"], json!("progressively"));
        let onsuccess: WorkloadRef = serde_json::from_value(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "x", "scaleDown": "onsuccess"}),
        )
        .unwrap();
        assert_eq!(onsuccess.scale_down(), ScaleDown::OnSuccess);
    }

    #[test]
    fn status_round_trips_with_argo_and_sluice_fields() {
        let r = assert_round_trip("canary-status", WITH_STATUS);
        let status = r.status.as_ref().unwrap();
        assert_eq!(status.phase, Some(RolloutPhase::Paused));
        assert_eq!(status.stable_rs.as_deref(), Some("6c5b7d9f8"));
        assert_eq!(status.observed_generation(), Some(4));
        assert_eq!(status.hpa_replicas, Some(5));
        assert_eq!(status.canary_weight(), 20);
        assert_eq!(
            status.pause_conditions[0].reason,
            PauseReason::CanaryPauseStep
        );
        assert_eq!(
            status.pause_conditions[0].start_time.0.to_string(),
            "2025-03-01T10:02:00Z"
        );
        let step = status
            .canary
            .as_ref()
            .unwrap()
            .current_step_analysis_run_status
            .as_ref()
            .unwrap();
        assert_eq!(step.status, AnalysisPhase::Running);
        assert!(!step.status.is_completed());
        let rev = status.revision_for_hash("7f9d8c6b5").unwrap();
        assert_eq!(rev.revision, 2);
        assert_eq!(rev.application.as_deref(), Some("shop/web"));
        let revert = status.revert.as_ref().unwrap();
        assert_eq!(revert.phase, RevertPhase::Pushed);
        assert_eq!(status.conditions[0].type_, "Progressing");
        assert!(!status.aborted());
        assert!(!status.promote_full());
        assert!(status.controller_pause());
        // Argo's names that are not plain camelCase.
        let json = serde_json::to_value(status).unwrap();
        for key in [
            "HPAReplicas",
            "stableRS",
            "observedGeneration",
            "currentStepIndex",
        ] {
            assert!(json.get(key).is_some(), "status.{key} missing");
        }
        assert_eq!(json["observedGeneration"], json!("4"));
    }

    #[test]
    fn empty_status_and_spec_serialize_to_nothing_extra() {
        assert_eq!(
            serde_json::to_value(RolloutStatus::default()).unwrap(),
            json!({})
        );
        let spec = RolloutSpec {
            strategy: RolloutStrategy {
                canary: Some(CanaryStrategy::default()),
                blue_green: None,
            },
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&spec).unwrap(),
            json!({"strategy": {"canary": {}}})
        );
        // `pause: {}` (wait for promotion) survives.
        let step: CanaryStep = serde_json::from_value(json!({"pause": {}})).unwrap();
        assert_eq!(serde_json::to_value(&step).unwrap(), json!({"pause": {}}));
    }

    #[test]
    fn accessor_defaults_are_argos() {
        let spec = RolloutSpec::default();
        assert_eq!(spec.replicas(), 1);
        assert_eq!(spec.min_ready_seconds(), 0);
        assert_eq!(spec.revision_history_limit(), 10);
        assert_eq!(spec.progress_deadline_seconds(), 600);
        assert!(!spec.progress_deadline_abort());
        assert!(!spec.paused());

        let canary = CanaryStrategy::default();
        assert_eq!(canary.max_surge(), IntOrString::String("25%".to_string()));
        assert_eq!(
            canary.max_unavailable(),
            IntOrString::String("25%".to_string())
        );
        assert_eq!(canary.scale_down_delay_seconds(), 30);
        assert_eq!(canary.abort_scale_down_delay_seconds(), 30);
        assert!(!canary.dynamic_stable_scale());
        assert!(!canary.has_traffic_routing());
        // 25% of 10: surge rounds up, unavailable rounds down.
        assert_eq!(canary.max_surge_for(10), Ok(3));
        assert_eq!(canary.max_unavailable_for(10), Ok(2));
        assert_eq!(canary.max_surge_for(1), Ok(1));
        assert_eq!(canary.max_unavailable_for(1), Ok(0));

        let bg = BlueGreenStrategy::default();
        assert!(bg.auto_promotion_enabled());
        assert_eq!(bg.auto_promotion_seconds(), 0);
        assert_eq!(bg.preview_replica_count(4), 4);
        assert_eq!(bg.scale_down_delay_seconds(), 30);
        assert_eq!(bg.abort_scale_down_delay_seconds(), 30);

        assert_eq!(WorkloadRef::default().scale_down(), ScaleDown::Never);
        assert_eq!(RolloutAnalysisBackground::default().starting_step(), 0);
        assert!(!RolloutAnalysisTemplate::default().cluster_scope());
        assert_eq!(
            SetCanaryScale::default().target(),
            CanaryScale::MatchTrafficWeight
        );
        let both = SetCanaryScale {
            weight: Some(10),
            replicas: Some(3),
            match_traffic_weight: Some(false),
        };
        assert_eq!(both.target(), CanaryScale::Replicas(3));
        let status = RolloutStatus::default();
        assert!(!status.aborted() && !status.promote_full() && !status.controller_pause());
        assert_eq!(status.observed_generation(), None);
        assert_eq!(status.canary_weight(), 0);
    }

    #[test]
    fn durations_parse_like_argo() {
        let ok = [
            (IntOrString::Int(0), 0),
            (IntOrString::Int(30), 30),
            (IntOrString::String("30".into()), 30),
            (IntOrString::String("30s".into()), 30),
            (IntOrString::String("5m".into()), 300),
            (IntOrString::String("1h".into()), 3600),
            (IntOrString::String("1h30m".into()), 5400),
        ];
        for (value, secs) in ok {
            assert_eq!(
                parse_duration(&value),
                Ok(Duration::from_secs(secs)),
                "{value:?}"
            );
        }
        assert_eq!(parse_duration_str("500ms"), Ok(Duration::from_millis(500)));
        for bad in [
            "",
            "  ",
            "abc",
            "5x",
            "-5s",
            "-5",
            "30 seconds please",
            "1h-3m",
        ] {
            let err = parse_duration(&IntOrString::String(bad.into())).unwrap_err();
            assert!(
                matches!(&err, RolloutSpecError::InvalidDuration { value, .. } if value == bad),
                "{bad:?}: {err:?}"
            );
            assert!(err.to_string().contains("invalid duration"), "{err}");
        }
        let err = parse_duration(&IntOrString::Int(-1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid duration \"-1\": negative; expected whole seconds or a duration like 30s, 5m, 1h"
        );
    }

    #[test]
    fn int_or_percent_resolution() {
        let f = "f";
        let s = |v: &str| IntOrString::String(v.to_string());
        assert_eq!(
            resolve_int_or_percent(f, &IntOrString::Int(2), 10, true),
            Ok(2)
        );
        assert_eq!(resolve_int_or_percent(f, &s("0%"), 10, true), Ok(0));
        assert_eq!(resolve_int_or_percent(f, &s("100%"), 7, false), Ok(7));
        assert_eq!(resolve_int_or_percent(f, &s("33%"), 10, true), Ok(4));
        assert_eq!(resolve_int_or_percent(f, &s("33%"), 10, false), Ok(3));
        for bad in [s("25"), s("%"), s("-5%"), s("x%"), IntOrString::Int(-1)] {
            assert!(
                matches!(
                    resolve_int_or_percent(f, &bad, 10, true),
                    Err(RolloutSpecError::InvalidIntOrPercent { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn validate_reports_invalid_specs() {
        let base = parse(CANARY_REPLICAS).spec;

        let mut both = base.clone();
        both.workload_ref = Some(WorkloadRef {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: "web".into(),
            scale_down: None,
        });
        assert_eq!(
            both.validate(),
            Err(RolloutSpecError::TemplateAndWorkloadRef)
        );

        let mut neither = base.clone();
        neither.template = None;
        assert_eq!(neither.validate(), Err(RolloutSpecError::NoTemplate));

        let mut no_selector = base.clone();
        no_selector.selector = None;
        assert_eq!(
            no_selector.validate(),
            Err(RolloutSpecError::MissingSelector)
        );

        let mut two_strategies = base.clone();
        two_strategies.strategy.blue_green = Some(BlueGreenStrategy {
            active_service: "a".into(),
            ..Default::default()
        });
        assert_eq!(two_strategies.validate(), Err(RolloutSpecError::Strategy));
        let mut no_strategy = base.clone();
        no_strategy.strategy = RolloutStrategy::default();
        assert_eq!(no_strategy.validate(), Err(RolloutSpecError::Strategy));

        let with_step = |step: CanaryStep| {
            let mut spec = base.clone();
            if let Some(c) = spec.strategy.canary.as_mut() {
                c.steps.push(step);
            }
            spec.validate()
        };
        let index = base.canary().unwrap().steps.len();
        assert!(matches!(
            with_step(CanaryStep::default()),
            Err(RolloutSpecError::InvalidStep { index: i, .. }) if i == index
        ));
        assert!(matches!(
            with_step(CanaryStep {
                set_weight: Some(10),
                pause: Some(RolloutPause::default()),
                ..Default::default()
            }),
            Err(RolloutSpecError::InvalidStep { .. })
        ));
        assert!(matches!(
            with_step(CanaryStep {
                set_weight: Some(101),
                ..Default::default()
            }),
            Err(RolloutSpecError::InvalidStep { .. })
        ));
        let bad_pause = with_step(CanaryStep {
            pause: Some(RolloutPause {
                duration: Some(IntOrString::String("soon".into())),
            }),
            ..Default::default()
        })
        .unwrap_err();
        assert!(bad_pause.to_string().contains("\"soon\""), "{bad_pause}");

        let analysis_step = |arg: AnalysisRunArgument| {
            with_step(CanaryStep {
                analysis: Some(RolloutAnalysis {
                    templates: vec![RolloutAnalysisTemplate {
                        template_name: "t".into(),
                        cluster_scope: None,
                    }],
                    args: vec![arg],
                    ..Default::default()
                }),
                ..Default::default()
            })
        };
        assert_eq!(
            analysis_step(AnalysisRunArgument {
                name: "a".into(),
                value: Some("v".into()),
                value_from: None,
            }),
            Ok(())
        );
        for bad in [
            AnalysisRunArgument {
                name: "a".into(),
                value: None,
                value_from: None,
            },
            AnalysisRunArgument {
                name: "a".into(),
                value: Some("v".into()),
                value_from: Some(ArgumentValueFrom {
                    pod_template_hash_value: Some(PodTemplateHashValue::Stable),
                    field_ref: None,
                }),
            },
            AnalysisRunArgument {
                name: "a".into(),
                value: None,
                value_from: Some(ArgumentValueFrom::default()),
            },
        ] {
            let err = analysis_step(bad.clone()).unwrap_err();
            assert!(err.to_string().contains("argument \"a\""), "{bad:?}: {err}");
        }
        let mut no_templates = parse(BLUE_GREEN).spec;
        if let Some(bg) = no_templates.strategy.blue_green.as_mut() {
            bg.pre_promotion_analysis = Some(RolloutAnalysis::default());
        }
        assert_eq!(
            no_templates.validate().unwrap_err().to_string(),
            "spec.strategy.blueGreen.prePromotionAnalysis: names no templates"
        );

        let mut negative = base.clone();
        negative.replicas = Some(-1);
        assert!(matches!(
            negative.validate(),
            Err(RolloutSpecError::OutOfRange { .. })
        ));

        let mut zero_zero = base.clone();
        if let Some(c) = zero_zero.strategy.canary.as_mut() {
            c.max_surge = Some(IntOrString::Int(0));
            c.max_unavailable = Some(IntOrString::String("0%".into()));
        }
        assert!(matches!(
            zero_zero.validate(),
            Err(RolloutSpecError::InvalidIntOrPercent { .. })
        ));

        // A surge above 100% is Argo's and Kubernetes' too; no pod can be more than unavailable.
        let budget = |surge: &str, unavailable: &str| {
            let mut spec = base.clone();
            if let Some(c) = spec.strategy.canary.as_mut() {
                c.max_surge = Some(IntOrString::String(surge.into()));
                c.max_unavailable = Some(IntOrString::String(unavailable.into()));
            }
            spec
        };
        let double = budget("200%", "0%");
        assert_eq!(double.validate(), Ok(()));
        let canary = double.strategy.canary.as_ref().expect("canary");
        assert_eq!(canary.max_surge_for(3), Ok(6));
        let too_much = budget("1001%", "0%").validate().unwrap_err().to_string();
        assert!(
            too_much.contains("\"1001% (at most 1000%)\" for spec.strategy.canary.maxSurge"),
            "{too_much}"
        );
        assert!(matches!(
            budget("25%", "101%").validate(),
            Err(RolloutSpecError::InvalidIntOrPercent { .. })
        ));
    }

    fn find_validations(schema: &Value, out: &mut Vec<String>) {
        match schema {
            Value::Object(map) => {
                if let Some(Value::Array(rules)) = map.get("x-kubernetes-validations") {
                    out.extend(
                        rules
                            .iter()
                            .filter_map(|r| r["rule"].as_str().map(str::to_string)),
                    );
                }
                map.values().for_each(|v| find_validations(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| find_validations(v, out)),
            _ => {}
        }
    }

    /// Kubernetes refuses non-structural schemas: no `$ref`, no `oneOf`/`anyOf`/`allOf` carrying
    /// types, every node with a `type` (or int-or-string / preserve-unknown-fields), and no
    /// `properties` next to `additionalProperties`.
    fn assert_structural(path: &str, schema: &Value) {
        let Value::Object(map) = schema else {
            panic!("{path}: not an object schema");
        };
        assert!(!map.contains_key("$ref"), "{path}: $ref");
        for key in ["oneOf", "anyOf", "allOf", "not"] {
            assert!(!map.contains_key(key), "{path}: {key}");
        }
        assert!(
            map.contains_key("type")
                || map.contains_key("x-kubernetes-int-or-string")
                || map.contains_key("x-kubernetes-preserve-unknown-fields"),
            "{path}: no type"
        );
        assert!(
            !(map.contains_key("properties") && map.contains_key("additionalProperties")),
            "{path}: properties and additionalProperties"
        );
        if let Some(Value::Object(props)) = map.get("properties") {
            for (name, sub) in props {
                assert_structural(&format!("{path}.{name}"), sub);
            }
        }
        if let Some(items) = map.get("items") {
            assert_structural(&format!("{path}[]"), items);
        }
        if let Some(additional @ Value::Object(_)) = map.get("additionalProperties") {
            assert_structural(&format!("{path}{{}}"), additional);
        }
    }

    #[test]
    fn crd_has_columns_subresources_rules_and_a_structural_schema() {
        let crd = Rollout::crd();
        let json = serde_json::to_value(&crd).unwrap();
        assert_eq!(json["metadata"]["name"], json!("rollouts.sluice.dev"));
        assert_eq!(json["spec"]["names"]["shortNames"], json!(["ro"]));
        assert_eq!(json["spec"]["scope"], json!("Namespaced"));
        let version = &json["spec"]["versions"][0];
        assert_eq!(version["name"], json!("v1alpha1"));
        assert_eq!(version["subresources"]["status"], json!({}));
        assert_eq!(
            version["subresources"]["scale"],
            json!({
                "specReplicasPath": ".spec.replicas",
                "statusReplicasPath": ".status.HPAReplicas",
                "labelSelectorPath": ".status.selector",
            })
        );
        let columns: Vec<(&str, &str)> = version["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].as_str().unwrap(), c["jsonPath"].as_str().unwrap()))
            .collect();
        assert_eq!(
            columns,
            vec![
                ("Desired", ".spec.replicas"),
                ("Current", ".status.replicas"),
                ("Up-to-date", ".status.updatedReplicas"),
                ("Available", ".status.availableReplicas"),
                ("Phase", ".status.phase"),
                ("Step", ".status.currentStepIndex"),
                ("Weight", ".status.canary.weights.canary.weight"),
                ("Age", ".metadata.creationTimestamp"),
            ]
        );

        let schema = &version["schema"]["openAPIV3Schema"];
        assert_structural("", schema);
        let mut rules = Vec::new();
        find_validations(schema, &mut rules);
        rules.sort();
        rules.dedup();
        let mut expected = vec![
                "has(self.template) != has(self.workloadRef)".to_string(),
                "has(self.workloadRef) || has(self.selector)".to_string(),
                "has(self.canary) != has(self.blueGreen)".to_string(),
                "!(has(self.value) && has(self.valueFrom))".to_string(),
                "has(self.podTemplateHashValue) != has(self.fieldRef)".to_string(),
                "(has(self.setWeight) ? 1 : 0) + (has(self.pause) ? 1 : 0) + (has(self.setCanaryScale) ? 1 : 0) + (has(self.analysis) ? 1 : 0) + (has(self.experiment) ? 1 : 0) + (has(self.plugin) ? 1 : 0) + (has(self.setHeaderRoute) ? 1 : 0) + (has(self.setMirrorRoute) ? 1 : 0) == 1".to_string(),
                "has(self.preferredDuringSchedulingIgnoredDuringExecution) != has(self.requiredDuringSchedulingIgnoredDuringExecution)".to_string(),
                "self.weight >= 1 && self.weight <= 100".to_string(),
                "!(has(self.stableIngress) && self.stableIngress != '' && has(self.stableIngresses))".to_string(),
                "(has(self.stableIngress) && self.stableIngress != '') || has(self.stableIngresses)".to_string(),
                "!has(self.maxTrafficWeight) || has(self.nginx) || has(self.plugins)".to_string(),
                "!has(self.steps) || self.steps.all(s, !has(s.setWeight) || s.setWeight <= (has(self.trafficRouting) && has(self.trafficRouting.maxTrafficWeight) ? self.trafficRouting.maxTrafficWeight : 100))".to_string(),
        ];
        expected.sort();
        assert_eq!(rules, expected);

        let spec = &schema["properties"]["spec"];
        assert_eq!(spec["required"], json!(["strategy"]));
        let canary = &spec["properties"]["strategy"]["properties"]["canary"];
        let step = &canary["properties"]["steps"]["items"]["properties"];
        assert_eq!(step["setWeight"]["minimum"].as_f64(), Some(0.0));
        // Bounded by maxTrafficWeight (the canary strategy's rule), not by 100.
        assert_eq!(step["setWeight"]["maximum"], Value::Null);
        assert_eq!(
            step["pause"]["properties"]["duration"]["x-kubernetes-int-or-string"],
            json!(true)
        );
        assert_eq!(
            canary["properties"]["maxSurge"]["x-kubernetes-int-or-string"],
            json!(true)
        );
        let plugins = &canary["properties"]["trafficRouting"]["properties"]["plugins"];
        assert_eq!(plugins["x-kubernetes-preserve-unknown-fields"], json!(true));
        assert_eq!(
            plugins["properties"]["argoproj-labs/gatewayAPI"]["properties"]["httpRoute"]["type"],
            json!("string")
        );
        let status = &schema["properties"]["status"]["properties"];
        assert_eq!(
            status["phase"]["enum"],
            json!(["Healthy", "Progressing", "Paused", "Degraded"])
        );
        assert_eq!(status["observedGeneration"]["type"], json!("string"));
        assert_eq!(status["HPAReplicas"]["type"], json!("integer"));
        assert_eq!(
            status["revert"]["properties"]["phase"]["enum"],
            json!(["Pending", "Pushed", "Synced", "Failed"])
        );
        assert_eq!(
            spec["properties"]["workloadRef"]["properties"]["scaleDown"]["enum"],
            json!(["never", "onsuccess", "progressively"])
        );
        // Small enough for client-side `kubectl apply` (256 KiB annotation), template still typed.
        let size = serde_json::to_string(&crd).unwrap().len();
        assert!(size < 200_000, "Rollout CRD is {size} bytes");
        let template = &spec["properties"]["template"];
        assert_eq!(template["type"], json!("object"));
        assert_eq!(
            template["properties"]["spec"]["properties"]["containers"]["items"]["properties"]["image"]
                ["type"],
            json!("string")
        );
        assert_eq!(spec["properties"]["selector"]["type"], json!("object"));
        // Defaults live in accessors, not in the schema.
        assert!(
            !serde_json::to_string(schema)
                .unwrap()
                .contains("\"default\"")
        );
        // The CRD serializes to YAML too (what `sluice crdgen` prints).
        assert!(
            serde_saphyr::to_string(&crd)
                .unwrap()
                .contains("kind: CustomResourceDefinition")
        );
    }

    #[test]
    fn replica_progress_threshold_is_argos_replica_progress_threshold_met() {
        let percent = |value| ReplicaProgressThreshold {
            type_: ProgressType::Percent,
            value,
        };
        let pods = |value| ReplicaProgressThreshold {
            type_: ProgressType::Pods,
            value,
        };
        // (threshold, available, desired, met): Argo's own examples and edges.
        let cases = [
            (percent(80), 4, 5, true),
            (percent(80), 3, 5, false),
            (percent(70), 7, 10, true),
            (percent(70), 6, 10, false),
            (percent(34), 1, 3, false),
            (percent(33), 1, 3, true),
            (percent(100), 5, 5, true),
            (percent(50), 0, 0, true),
            (pods(3), 3, 10, true),
            (pods(3), 2, 10, false),
            (pods(1), 1, 0, true),
        ];
        for (threshold, available, desired, met) in cases {
            assert_eq!(
                threshold.met(available, desired),
                met,
                "{threshold:?} {available}/{desired}"
            );
        }
        let parsed: ReplicaProgressThreshold =
            serde_json::from_value(json!({"type": "Percent", "value": 90})).unwrap();
        assert_eq!(parsed, percent(90));
        assert!(
            serde_json::from_value::<ReplicaProgressThreshold>(json!({"type": "Pod", "value": 1}))
                .is_err()
        );
    }
}
