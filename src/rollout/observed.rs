//! The snapshot one reconcile of a Rollout reads: the Rollout itself, the ReplicaSets, Services and
//! AnalysisRuns it owns, and the time. Built by the observe step from the watch cache; no I/O here, so
//! the planner stays a pure function of this value.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;

use crate::api::analysis::AnalysisPhase;
use crate::api::rollout::{PodTemplateMetadata, Rollout, RolloutSpec, RolloutStatus};
use crate::rollout::anti_affinity::InjectedAntiAffinity;
use crate::rollout::templates::ResolvedTemplates;

/// Everything [`crate::rollout::plan::plan`] looks at.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// The Rollout: spec, status (defaulted when absent) and `metadata.generation`.
    pub rollout: Rollout,
    /// The ReplicaSets the Rollout owns, in any order.
    pub replica_sets: Vec<ObservedReplicaSet>,
    /// `rollouts-pod-template-hash` of the Rollout's current pod template (computed by the observe
    /// step, which owns the hashing).
    pub new_template_hash: String,
    /// The Services the strategy names (stable/canary, active/preview), by name. A Service missing
    /// here is treated as selecting nothing.
    pub services: BTreeMap<String, ObservedService>,
    /// The AnalysisRuns the Rollout owns.
    pub analysis_runs: Vec<ObservedAnalysisRun>,
    /// The Deployment `spec.workloadRef` names, when it is set and exists (its template is
    /// already resolved into `new_template_hash` by the observe step).
    pub workload: Option<ObservedWorkload>,
    /// The Experiments the Rollout owns (its experiment steps).
    pub experiments: Vec<ObservedExperiment>,
    /// The AnalysisTemplates and ClusterAnalysisTemplates the spec names that exist.
    pub templates: ResolvedTemplates,
    /// The time of this reconcile; the planner reads no clock.
    pub now: Timestamp,
}

/// The Deployment a Rollout's `workloadRef` names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedWorkload {
    /// `metadata.name`.
    pub name: String,
    /// `spec.replicas`.
    pub spec_replicas: i32,
}

/// One ReplicaSet owned by the Rollout.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedReplicaSet {
    /// `metadata.name`.
    pub name: String,
    /// Its `rollouts-pod-template-hash` label.
    pub pod_template_hash: String,
    /// Its `rollout.argoproj.io/revision` annotation.
    pub revision: i64,
    /// `spec.replicas`.
    pub spec_replicas: i32,
    /// `status.replicas`: pods that exist (some may be terminating towards `spec_replicas`).
    pub replicas: i32,
    /// `status.readyReplicas`.
    pub ready_replicas: i32,
    /// `status.availableReplicas`.
    pub available_replicas: i32,
    /// `metadata.creationTimestamp`.
    pub created: Timestamp,
    /// When it is to be scaled down (Argo keeps this in the `scale-down-deadline` annotation).
    pub scale_down_deadline: Option<Timestamp>,
    /// The pods it controls (from the Pod cache), for `spec.restartAt` and ephemeral metadata.
    pub pods: Vec<ObservedPod>,
    /// The labels of its pod template (`spec.template.metadata.labels`).
    pub template_labels: BTreeMap<String, String>,
    /// The annotations of its pod template.
    pub template_annotations: BTreeMap<String, String>,
    /// The ephemeral metadata (`canaryMetadata`, `stableMetadata`, ...) injected into its pod
    /// template, as recorded in its annotation; `None` when none is (or the record is unreadable).
    pub ephemeral_metadata: Option<PodTemplateMetadata>,
    /// The label keys of its `spec.selector`: its pods must keep them, so ephemeral metadata never
    /// touches them.
    pub selector_keys: BTreeSet<String>,
    /// The anti-affinity injected into its pod template, as recorded in its annotation.
    pub anti_affinity: Option<InjectedAntiAffinity>,
}

/// A pod of an owned ReplicaSet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedPod {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.creationTimestamp`.
    pub created: Timestamp,
    /// Its `Ready` condition is `True`.
    pub ready: bool,
    /// `metadata.deletionTimestamp` is set: it is terminating.
    pub deleting: bool,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
}

/// A Service the strategy names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedService {
    /// The value of `rollouts-pod-template-hash` in its selector, when it has one.
    pub selector_hash: Option<String>,
}

/// Why an AnalysisRun was created (its `sluice.dev/analysis-type` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AnalysisType {
    /// An `analysis` canary step.
    Step,
    /// The canary's background analysis.
    Background,
    /// Blue-green pre-promotion analysis.
    PrePromotion,
    /// Blue-green post-promotion analysis.
    PostPromotion,
}

impl AnalysisType {
    /// The value of the `sluice.dev/analysis-type` label.
    pub fn label(self) -> &'static str {
        match self {
            AnalysisType::Step => "step",
            AnalysisType::Background => "background",
            AnalysisType::PrePromotion => "prePromotion",
            AnalysisType::PostPromotion => "postPromotion",
        }
    }
}

/// An AnalysisRun owned by the Rollout.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedAnalysisRun {
    /// `metadata.name`.
    pub name: String,
    /// From the `sluice.dev/analysis-type` label.
    pub analysis_type: AnalysisType,
    /// For step analysis, the index of the step that created it.
    pub step_index: Option<i32>,
    /// From the `rollouts-pod-template-hash` label: the revision it analyses.
    pub pod_template_hash: String,
    /// `status.phase`.
    pub phase: AnalysisPhase,
    /// `status.message` (names the failed metric).
    pub message: Option<String>,
    /// `metadata.creationTimestamp`.
    pub created: Option<Timestamp>,
}

/// An Experiment owned by the Rollout.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedExperiment {
    /// `metadata.name`.
    pub name: String,
    /// From the `sluice.dev/step-index` label: the step that created it.
    pub step_index: Option<i32>,
    /// From the `rollouts-pod-template-hash` label: the revision it was created for.
    pub pod_template_hash: String,
    /// `status.phase`; `None` before the Experiment controller has seen it.
    pub phase: Option<AnalysisPhase>,
    /// `status.message`.
    pub message: Option<String>,
    /// `spec.terminate` is set.
    pub terminating: bool,
}

impl ObservedExperiment {
    /// Whether it has ended (Successful, Failed, Error or Inconclusive).
    pub fn is_completed(&self) -> bool {
        self.phase.is_some_and(AnalysisPhase::is_completed)
    }
}

impl Observed {
    /// The Experiment with this name.
    pub fn experiment(&self, name: &str) -> Option<&ObservedExperiment> {
        self.experiments.iter().find(|e| e.name == name)
    }

    /// The Rollout's spec.
    pub fn spec(&self) -> &RolloutSpec {
        &self.rollout.spec
    }

    /// The Rollout's status as last written, or an empty one for a new Rollout.
    pub fn status(&self) -> RolloutStatus {
        self.rollout.status.clone().unwrap_or_default()
    }

    /// `metadata.generation`, 0 when unset.
    pub fn generation(&self) -> i64 {
        self.rollout.metadata.generation.unwrap_or(0)
    }

    /// `metadata.name`, empty when unset.
    pub fn name(&self) -> &str {
        self.rollout.metadata.name.as_deref().unwrap_or_default()
    }

    /// The ReplicaSet with this pod template hash.
    pub fn replica_set(&self, hash: &str) -> Option<&ObservedReplicaSet> {
        self.replica_sets
            .iter()
            .find(|rs| rs.pod_template_hash == hash)
    }

    /// The ReplicaSet running the current template, when it exists yet.
    pub fn new_replica_set(&self) -> Option<&ObservedReplicaSet> {
        self.replica_set(&self.new_template_hash)
    }

    /// The hash a Service selects, `None` when the Service is missing or selects no revision.
    pub fn service_hash(&self, service: &str) -> Option<&str> {
        self.services
            .get(service)
            .and_then(|s| s.selector_hash.as_deref())
    }

    /// The AnalysisRun with this name.
    pub fn analysis_run(&self, name: &str) -> Option<&ObservedAnalysisRun> {
        self.analysis_runs.iter().find(|r| r.name == name)
    }

    /// The highest revision among the ReplicaSets, 0 when there are none.
    pub fn max_revision(&self) -> i64 {
        self.replica_sets
            .iter()
            .map(|rs| rs.revision)
            .max()
            .unwrap_or(0)
    }
}
