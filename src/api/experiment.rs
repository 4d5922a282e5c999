//! The `Experiment` kind: ReplicaSets run side by side for a while (a baseline and a canary, say)
//! with AnalysisRuns judging them. Field names and shapes are Argo Rollouts v1.10's
//! (`experiment_types.go`), so an Argo Experiment works with only `apiVersion` changed.
//!
//! Defaults are applied by the accessors here, not by the schema: what a user wrote round-trips.

use std::time::Duration;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::analysis::{AnalysisPhase, Argument, DryRun, MeasurementRetention};
use super::common::Condition;
use super::rollout::AnalysisRunMetadata;
use super::unsupported;
use crate::duration::{DurationError, parse_duration};

/// `progressDeadlineSeconds` when unset (Argo's default).
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;
/// `scaleDownDelaySeconds` when unset (Argo's default: time for endpoints to drop the pods).
pub const DEFAULT_SCALE_DOWN_DELAY_SECONDS: i32 = 30;
/// Annotation of an Experiment's ReplicaSet naming the Experiment (Argo's key).
pub const EXPERIMENT_NAME_ANNOTATION: &str = "experiment.argoproj.io/name";
/// Annotation of an Experiment's ReplicaSet naming its template (Argo's key).
pub const TEMPLATE_NAME_ANNOTATION: &str = "experiment.argoproj.io/template-name";

/// The desired state of an Experiment: Argo's `ExperimentSpec`.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "Experiment",
    namespaced,
    status = "ExperimentStatus",
    shortname = "exp",
    derive = "PartialEq",
    doc = "ReplicaSets run side by side for a duration while AnalysisRuns judge them (Argo Rollouts' Experiment).",
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.phase",
        description = "Experiment status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentSpec {
    /// The ReplicaSets to run, one per template.
    pub templates: Vec<ExperimentTemplate>,
    /// How long to run once every template is available (`30s`, `5m`, `1h`). Unset: until
    /// terminated or an analysis ends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Seconds a template may take to become available [600].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<i32>,
    /// Ends the experiment now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminate: Option<bool>,
    /// AnalysisTemplates run once the templates are available.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analyses: Vec<ExperimentAnalysisTemplateRef>,
    /// Seconds to wait before scaling the templates down once done [30].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_delay_seconds: Option<i32>,
    /// Metrics run in dry-run mode in every AnalysisRun.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<DryRun>,
    /// Measurements kept per metric in every AnalysisRun.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurement_retention: Vec<MeasurementRetention>,
    /// Labels and annotations put on the AnalysisRuns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_run_metadata: Option<AnalysisRunMetadata>,
}

/// One ReplicaSet of an Experiment (Argo's `TemplateSpec`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentTemplate {
    /// Names the template; its ReplicaSet is `<experiment>-<name>`.
    pub name: String,
    /// Pods to run [1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Seconds a new pod must be ready before it counts as available [0].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<i32>,
    /// Selects the template's pods; must match the template's labels.
    pub selector: LabelSelector,
    /// The pods to run.
    #[schemars(schema_with = "super::rollout::pod_template_schema")]
    pub template: PodTemplateSpec,
    /// A Service selecting the template's pods, created while they run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<TemplateService>,
}

/// `templates[].service` (Argo's `TemplateService`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateService {
    /// The Service's name; unset: the ReplicaSet's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// An analysis of an Experiment (Argo's `ExperimentAnalysisTemplateRef`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentAnalysisTemplateRef {
    /// Names the analysis; its AnalysisRun is `<experiment>-<name>`.
    pub name: String,
    /// The AnalysisTemplate (or ClusterAnalysisTemplate with `clusterScope`).
    pub template_name: String,
    /// Look the name up as a ClusterAnalysisTemplate [false].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_scope: Option<bool>,
    /// Argument values for the template. A `value` may say `{{templates.NAME.podTemplateHash}}`
    /// or `{{templates.NAME.replicaset.name}}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Argument>,
    /// The Experiment ends when this analysis completes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_for_completion: Option<bool>,
}

impl ExperimentAnalysisTemplateRef {
    /// Whether the template is a ClusterAnalysisTemplate.
    pub fn cluster_scope(&self) -> bool {
        self.cluster_scope.unwrap_or(false)
    }

    /// Whether the Experiment ends once this analysis completes.
    pub fn required_for_completion(&self) -> bool {
        self.required_for_completion.unwrap_or(false)
    }
}

/// The observed state of an Experiment: Argo's `ExperimentStatus`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentStatus {
    /// `Pending`, `Running`, `Successful`, `Failed`, `Error` or `Inconclusive`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<AnalysisPhase>,
    /// Why the phase is what it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// One per template.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub template_statuses: Vec<TemplateStatus>,
    /// When every template became available: the duration counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_at: Option<Time>,
    /// Conditions (`InvalidSpec`, `Progressing`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// One per analysis.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analysis_runs: Vec<ExperimentAnalysisRunStatus>,
}

/// The state of one template (Argo's `TemplateStatus`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateStatus {
    /// The template's name.
    pub name: String,
    /// Pods of its ReplicaSet.
    pub replicas: i32,
    /// Pods with the template's spec.
    pub updated_replicas: i32,
    /// Ready pods.
    pub ready_replicas: i32,
    /// Available pods.
    pub available_replicas: i32,
    /// Hash collisions met (kept for Argo compatibility; Sluice names ReplicaSets without hash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collision_count: Option<i32>,
    /// `Progressing`, `Running`, `Successful`, `Failed` or `Error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TemplateStatusCode>,
    /// Why the status is what it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the counts or the status last changed: the progress deadline counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// The template's Service, while it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// `rollouts-pod-template-hash` of its ReplicaSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template_hash: Option<String>,
}

/// A template's state (Argo's `TemplateStatusCode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TemplateStatusCode {
    Progressing,
    Running,
    Successful,
    Failed,
    Error,
}

super::common::api_enum_names!(TemplateStatusCode {
    Progressing,
    Running,
    Successful,
    Failed,
    Error
});

impl TemplateStatusCode {
    /// Successful, Failed and Error are final.
    pub fn is_completed(self) -> bool {
        matches!(self, Self::Successful | Self::Failed | Self::Error)
    }

    /// Rank from best to worst (Argo's `templateStatusOrder`).
    pub fn badness(self) -> u8 {
        match self {
            Self::Successful => 0,
            Self::Running => 1,
            Self::Progressing => 2,
            Self::Error => 3,
            Self::Failed => 4,
        }
    }
}

/// The AnalysisRun of one analysis (Argo's `ExperimentAnalysisRunStatus`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentAnalysisRunStatus {
    /// The analysis' name.
    pub name: String,
    /// The AnalysisRun's name (empty until it is created).
    #[serde(default)]
    pub analysis_run: String,
    /// The run's phase.
    pub phase: AnalysisPhase,
    /// The run's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Paths under an Experiment's `spec` that Sluice does not implement (none today; an Argo field
/// added later and not implemented is listed here, and the Experiment is `Error` naming it).
pub const UNSUPPORTED_SPEC: &[&str] = &[];

impl ExperimentSpec {
    /// `duration` parsed; `Ok(None)` when unset.
    pub fn duration(&self) -> Result<Option<Duration>, DurationError> {
        self.duration
            .as_deref()
            .filter(|d| !d.is_empty())
            .map(parse_duration)
            .transpose()
    }

    /// `progressDeadlineSeconds` or its default.
    pub fn progress_deadline_seconds(&self) -> i32 {
        self.progress_deadline_seconds
            .unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS)
    }

    /// `scaleDownDelaySeconds` or its default.
    pub fn scale_down_delay_seconds(&self) -> i32 {
        self.scale_down_delay_seconds
            .unwrap_or(DEFAULT_SCALE_DOWN_DELAY_SECONDS)
            .max(0)
    }

    /// Whether `terminate: true` is set.
    pub fn terminate(&self) -> bool {
        self.terminate.unwrap_or(false)
    }

    /// The unimplemented Argo fields set, as concrete paths (`spec.templates[1].service`).
    pub fn unsupported_fields(&self) -> Vec<String> {
        let Ok(value) = serde_json::to_value(self) else {
            return Vec::new();
        };
        unsupported::set_paths(&value, "spec", UNSUPPORTED_SPEC.iter().copied())
    }
}

impl ExperimentTemplate {
    /// `replicas` or its default 1.
    pub fn replicas(&self) -> i32 {
        self.replicas.unwrap_or(1).max(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;
    use serde_json::json;

    #[test]
    fn argo_experiment_round_trips_with_defaults() {
        let spec: ExperimentSpec = serde_json::from_value(json!({
            "duration": "5m",
            "templates": [
                {"name": "baseline", "selector": {"matchLabels": {"app": "a"}},
                 "template": {"metadata": {"labels": {"app": "a"}}}},
                {"name": "canary", "replicas": 2, "selector": {"matchLabels": {"app": "b"}},
                 "template": {"metadata": {"labels": {"app": "b"}}}, "service": {"name": "svc"}}
            ],
            "analyses": [{"name": "a", "templateName": "t", "requiredForCompletion": true,
                          "args": [{"name": "x", "value": "1"}]}]
        }))
        .unwrap();
        assert_eq!(spec.duration(), Ok(Some(Duration::from_secs(300))));
        assert_eq!(spec.templates[0].replicas(), 1);
        assert!(spec.analyses[0].required_for_completion());
        assert_eq!(spec.scale_down_delay_seconds(), 30);
        assert_eq!(
            spec.templates[1]
                .service
                .as_ref()
                .and_then(|s| s.name.as_deref()),
            Some("svc")
        );
        assert!(spec.unsupported_fields().is_empty());
    }

    #[test]
    fn crd_names_and_columns() {
        let crd = Experiment::crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("experiments.sluice.dev"));
        assert_eq!(crd.spec.names.short_names, Some(vec!["exp".to_string()]));
    }
}
