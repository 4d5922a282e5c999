//! The observe step of the Experiment controller: the Experiment and what it owns, read from the
//! watch caches, as the plain [`Observed`] snapshot the planner takes. Pure.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;

use crate::api::analysis::{AnalysisPhase, AnalysisRun};
use crate::api::experiment::{EXPERIMENT_NAME_ANNOTATION, Experiment, TEMPLATE_NAME_ANNOTATION};
use crate::rollout::observe::controls;
use crate::rollout::replicasets::{replica_counts, replica_set_hash, scale_down_deadline};
use crate::rollout::templates::{ResolvedTemplates, TemplateRef};

/// Everything [`crate::experiment::plan::plan`] looks at.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub experiment: Experiment,
    /// The ReplicaSet of each template, by template name.
    pub replica_sets: BTreeMap<String, ObservedReplicaSet>,
    /// The AnalysisRuns the Experiment owns, by name.
    pub analysis_runs: BTreeMap<String, ObservedRun>,
    /// The name of each template's Service (`templates[].service`), by template name.
    pub services: BTreeMap<String, String>,
    /// The AnalysisTemplates and ClusterAnalysisTemplates its analyses name that exist.
    pub templates: ResolvedTemplates,
    /// The time of this reconcile; the planner reads no clock.
    pub now: Timestamp,
}

/// The ReplicaSet of one template.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedReplicaSet {
    pub name: String,
    /// Its `rollouts-pod-template-hash` label.
    pub pod_template_hash: String,
    pub spec_replicas: i32,
    pub replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    /// When it is to be scaled down (the scale-down-deadline annotation).
    pub scale_down_deadline: Option<Timestamp>,
}

/// An AnalysisRun of the Experiment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedRun {
    pub phase: AnalysisPhase,
    pub message: Option<String>,
    /// `spec.terminate` is set.
    pub terminating: bool,
}

/// The templates an Experiment's analyses name.
pub fn template_references(experiment: &Experiment) -> Vec<TemplateRef> {
    experiment
        .spec
        .analyses
        .iter()
        .map(|a| TemplateRef {
            name: a.template_name.clone(),
            cluster_scope: a.cluster_scope(),
        })
        .collect()
}

/// Builds the snapshot. ReplicaSets and runs not controlled by `experiment` are ignored; a
/// ReplicaSet is a template's when its annotations name the Experiment and the template (Argo's).
/// What one reconcile read from the caches, besides the Experiment and its templates.
pub struct Reads<'a> {
    pub replica_sets: &'a [ReplicaSet],
    pub analysis_runs: &'a [AnalysisRun],
    pub services: &'a [Service],
}

pub fn observe(
    experiment: &Experiment,
    reads: &Reads<'_>,
    templates: ResolvedTemplates,
    now: Timestamp,
) -> Observed {
    let Reads {
        replica_sets,
        analysis_runs,
        services,
    } = reads;
    let name = experiment.name_any();
    let replica_sets = replica_sets
        .iter()
        .filter(|rs| controls(*rs, experiment) && rs.metadata.deletion_timestamp.is_none())
        .filter(|rs| rs.annotations().get(EXPERIMENT_NAME_ANNOTATION) == Some(&name))
        .filter_map(|rs| {
            let template = rs.annotations().get(TEMPLATE_NAME_ANNOTATION)?.clone();
            Some((template, observe_replica_set(rs)))
        })
        .collect();
    let analysis_runs = analysis_runs
        .iter()
        .filter(|run| controls(*run, experiment))
        .map(|run| {
            let status = run.status.as_ref();
            (
                run.name_any(),
                ObservedRun {
                    phase: status.and_then(|s| s.phase).unwrap_or_default(),
                    message: status.and_then(|s| s.message.clone()),
                    terminating: run.spec.terminate.unwrap_or(false),
                },
            )
        })
        .collect();
    let services = services
        .iter()
        .filter(|svc| controls(*svc, experiment) && svc.metadata.deletion_timestamp.is_none())
        .filter_map(|svc| {
            let template = svc.annotations().get(TEMPLATE_NAME_ANNOTATION)?.clone();
            Some((template, svc.name_any()))
        })
        .collect();
    Observed {
        experiment: experiment.clone(),
        replica_sets,
        analysis_runs,
        services,
        templates,
        now,
    }
}

fn observe_replica_set(rs: &ReplicaSet) -> ObservedReplicaSet {
    let counts = replica_counts(rs);
    ObservedReplicaSet {
        name: rs.name_any(),
        pod_template_hash: replica_set_hash(rs).unwrap_or_default().to_string(),
        spec_replicas: counts.desired,
        replicas: counts.current,
        ready_replicas: counts.ready,
        available_replicas: counts.available,
        // A malformed deadline is treated as none: the planner then sets a fresh one.
        scale_down_deadline: scale_down_deadline(rs).ok().flatten(),
    }
}
