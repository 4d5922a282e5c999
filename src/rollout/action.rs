//! What a reconcile of a Rollout decides to do: a [`Plan`] of [`Action`]s plus the complete desired
//! status. The act step applies the actions in order, then writes the status when it differs.

use std::time::Duration;

use jiff::Timestamp;

use crate::api::rollout::{
    PodTemplateMetadata, RolloutAnalysis, RolloutExperimentStep, RolloutStatus,
};
use crate::rollout::anti_affinity::InjectedAntiAffinity;
use crate::rollout::observed::AnalysisType;
use crate::rollout::pod_metadata::{PodMetadataChange, TemplateMetadataChange};

/// One change to make in the cluster.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Create the ReplicaSet of the current template, named `name`, labelled with `hash`, annotated
    /// with `revision`, at `replicas` pods, its pods born with the `ephemeral_metadata` of the role
    /// it starts in (`canaryMetadata`, `stableMetadata`, ...) and the `anti_affinity` against the
    /// stable revision's pods.
    CreateReplicaSet {
        name: String,
        hash: String,
        revision: i64,
        replicas: i32,
        ephemeral_metadata: Option<PodTemplateMetadata>,
        anti_affinity: Option<InjectedAntiAffinity>,
    },
    /// Set the anti-affinity term against the stable revision in a ReplicaSet's pod template (and
    /// its record), or take it off with `None`.
    SetAntiAffinity {
        replica_set: String,
        injected: Option<InjectedAntiAffinity>,
    },
    /// Bring a ReplicaSet's ephemeral pod metadata to the role it plays now: change its pod
    /// template (and the record of what is injected) when `template` is set, then its live `pods`
    /// in place.
    SyncEphemeralMetadata {
        replica_set: String,
        template: Option<TemplateMetadataChange>,
        pods: Vec<PodMetadataChange>,
    },
    /// Set a ReplicaSet's `spec.replicas`.
    ScaleReplicaSet { name: String, replicas: i32 },
    /// Set (or, with `None`, remove) the scale-down deadline annotation of a ReplicaSet.
    SetScaleDownDeadline { name: String, at: Option<Timestamp> },
    /// Delete an old ReplicaSet beyond `revisionHistoryLimit`.
    DeleteReplicaSet { name: String },
    /// Set a ReplicaSet's revision annotations (`rollout.sluice.dev/revision` and Argo's): a
    /// rollback to an older revision makes it the newest one again.
    SetReplicaSetRevision { name: String, revision: i64 },
    /// Evict a pod for `spec.restartAt` (its ReplicaSet replaces it); a pod already gone is fine.
    EvictPod { name: String },
    /// Point a Service's `rollouts-pod-template-hash` selector at a revision.
    SetServiceSelector { service: String, hash: String },
    /// Set the `spec.replicas` of the Deployment `spec.workloadRef` names (its `scaleDown`).
    ScaleWorkload { name: String, replicas: i32 },
    /// Set the canary's traffic weight (percent) on the traffic router; the stable gets the rest.
    SetCanaryWeight { weight: i32 },
    /// Bring the router's managed routes (header and mirror routes) to exactly `routes`, in
    /// precedence order; an empty list removes them all.
    SetManagedRoutes {
        routes: Vec<crate::rollout::managed_routes::ActiveRoute>,
    },
    /// Create an AnalysisRun. `name` is deterministic so that a create repeated after a crash
    /// meets `AlreadyExists` instead of making a second run. `pod_template_hash` is the revision
    /// analysed (`podTemplateHashValue: Latest`); the stable one (`Stable`) is the plan's
    /// `status.stableRS`.
    CreateAnalysisRun {
        name: String,
        analysis_type: AnalysisType,
        step_index: Option<i32>,
        analysis: RolloutAnalysis,
        pod_template_hash: String,
    },
    /// Terminate a running AnalysisRun (`spec.terminate: true`).
    TerminateAnalysisRun { name: String },
    /// Delete a finished AnalysisRun beyond `spec.analysis`'s history limits.
    DeleteAnalysisRun { name: String },
    /// Create the Experiment of an experiment step, named `name` (deterministic, so a repeated
    /// create meets `AlreadyExists`), from the step, the stable revision `stable_hash` and the
    /// current one `pod_template_hash`.
    CreateExperiment {
        name: String,
        step_index: i32,
        step: RolloutExperimentStep,
        stable_hash: String,
        pod_template_hash: String,
        revision: i64,
    },
    /// End an Experiment (`spec.terminate: true`): its ReplicaSets are scaled down and its runs
    /// terminated by the Experiment controller.
    TerminateExperiment { name: String },
    /// Record a Kubernetes Event on the Rollout.
    RecordEvent(Event),
}

/// A Kubernetes Event to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub type_: EventType,
    pub reason: EventReason,
    pub message: String,
}

/// Event `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    /// As written in the Event.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Event `reason`s, Argo Rollouts' names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventReason {
    RolloutUpdated,
    NewReplicaSetCreated,
    ScalingReplicaSet,
    RolloutStepCompleted,
    RolloutPaused,
    RolloutAborted,
    RolloutResumed,
    RolloutCompleted,
    SwitchService,
    AnalysisRunCreated,
    ExperimentCreated,
    InvalidSpec,
    ProgressDeadlineExceeded,
}

impl EventReason {
    /// As written in the Event.
    pub fn as_str(self) -> &'static str {
        match self {
            EventReason::RolloutUpdated => "RolloutUpdated",
            EventReason::NewReplicaSetCreated => "NewReplicaSetCreated",
            EventReason::ScalingReplicaSet => "ScalingReplicaSet",
            EventReason::RolloutStepCompleted => "RolloutStepCompleted",
            EventReason::RolloutPaused => "RolloutPaused",
            EventReason::RolloutAborted => "RolloutAborted",
            EventReason::RolloutResumed => "RolloutResumed",
            EventReason::RolloutCompleted => "RolloutCompleted",
            EventReason::SwitchService => "SwitchService",
            EventReason::AnalysisRunCreated => "AnalysisRunCreated",
            EventReason::ExperimentCreated => "ExperimentCreated",
            EventReason::InvalidSpec => "InvalidSpec",
            EventReason::ProgressDeadlineExceeded => "ProgressDeadlineExceeded",
        }
    }

    /// Whether the Event is a `Warning`.
    pub fn event_type(self) -> EventType {
        match self {
            EventReason::RolloutAborted
            | EventReason::InvalidSpec
            | EventReason::ProgressDeadlineExceeded => EventType::Warning,
            _ => EventType::Normal,
        }
    }
}

/// The outcome of planning one reconcile.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Changes to apply, in order (e.g. a Service is switched before the weight that relies on it).
    pub actions: Vec<Action>,
    /// The complete desired status; the act step writes it only when it differs from the current.
    pub status: RolloutStatus,
    /// Reconcile again after this long even if nothing changes (timed pauses, scale-down delays,
    /// the progress deadline).
    pub requeue_after: Option<Duration>,
}

impl Plan {
    /// The reasons of the Events in this plan, in order.
    pub fn event_reasons(&self) -> Vec<EventReason> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::RecordEvent(e) => Some(e.reason),
                _ => None,
            })
            .collect()
    }

    /// The actions that change the cluster (everything but Events).
    pub fn changes(&self) -> impl Iterator<Item = &Action> {
        self.actions
            .iter()
            .filter(|a| !matches!(a, Action::RecordEvent(_)))
    }
}
