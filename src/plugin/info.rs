//! What `get rollout` shows, computed from the objects read (pure): the Rollout's phase, step and
//! weights as Argo's plugin computes them, and its revisions with their roles, Git commits,
//! ReplicaSets, pods and analysis runs.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::api::analysis::{AnalysisPhase, AnalysisRun, MetricResult};
use crate::api::rollout::{CanaryStrategy, POD_TEMPLATE_HASH_LABEL, RevertStatus, Rollout};
use crate::rollout::observe::ROLLOUT_LABEL;
use crate::rollout::phase::observed_phase;
use crate::rollout::replicasets::{
    git_provenance, is_owned_by, replica_counts, replica_set_hash, replica_set_revision,
    scale_down_deadline,
};

/// Everything `get rollout` reads: the Rollout and the objects of its namespace (those it does not
/// own are ignored).
#[derive(Clone, Debug)]
pub struct RolloutObjects {
    pub rollout: Rollout,
    pub replica_sets: Vec<ReplicaSet>,
    pub pods: Vec<Pod>,
    pub analysis_runs: Vec<AnalysisRun>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RolloutInfo {
    pub name: String,
    pub namespace: String,
    pub created: Option<Time>,
    pub status: String,
    pub message: String,
    pub strategy: StrategyInfo,
    pub images: Vec<ImageInfo>,
    pub replicas: ReplicaInfo,
    pub revert: Option<RevertStatus>,
    /// The Experiment the current experiment step runs (`status.canary.currentExperiment`).
    pub experiment: Option<String>,
    /// Newest first.
    pub revisions: Vec<RevisionInfo>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StrategyInfo {
    /// `step` is `i/n` (`-` without steps); weights are Argo's `SetWeight` and `ActualWeight`.
    Canary {
        step: String,
        set_weight: i32,
        actual_weight: i32,
    },
    BlueGreen,
}

/// The role a revision plays, as Argo tags it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Stable,
    Canary,
    Active,
    Preview,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Stable => "stable",
            Role::Canary => "canary",
            Role::Active => "active",
            Role::Preview => "preview",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    pub image: String,
    pub roles: Vec<Role>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicaInfo {
    pub desired: i32,
    pub current: i32,
    pub updated: i32,
    pub ready: i32,
    pub available: i32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RevisionInfo {
    pub revision: i64,
    pub roles: Vec<Role>,
    pub images: Vec<String>,
    /// The commit that introduced the revision, when it came from Git.
    pub git_revision: Option<String>,
    /// The Application (`<namespace>/<name>`) that applied it.
    pub application: Option<String>,
    pub replica_sets: Vec<ReplicaSetInfo>,
    pub analysis_runs: Vec<AnalysisRunInfo>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ReplicaSetInfo {
    pub name: String,
    pub status: String,
    pub created: Option<Time>,
    pub desired: i32,
    pub ready: i32,
    /// When a ReplicaSet kept after promotion or abort is scaled down.
    pub scale_down_deadline: Option<jiff::Timestamp>,
    pub pods: Vec<PodInfo>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PodInfo {
    pub name: String,
    pub status: String,
    pub created: Option<Time>,
    pub ready_containers: usize,
    pub containers: usize,
    pub restarts: i32,
}

impl PodInfo {
    /// Running but not ready reads as still progressing.
    pub fn display_status(&self) -> &str {
        if self.status == "Running" && self.ready_containers < self.containers {
            "Progressing"
        } else {
            &self.status
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct AnalysisRunInfo {
    pub name: String,
    pub phase: AnalysisPhase,
    pub created: Option<Time>,
    pub successful: i32,
    pub failed: i32,
    pub inconclusive: i32,
    pub error: i32,
    pub metrics: Vec<MetricInfo>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MetricInfo {
    pub name: String,
    pub phase: AnalysisPhase,
    /// The last measured values, oldest first (at most [`LAST_VALUES`]).
    pub values: Vec<String>,
    pub dry_run: bool,
    /// Why the last measurement has no value (an error), when it has none.
    pub error: Option<String>,
}

/// How many of a metric's measured values are shown.
pub const LAST_VALUES: usize = 3;

impl RolloutObjects {
    /// The Rollout alone (its status is enough for the header lines and `list`).
    pub fn rollout_only(rollout: Rollout) -> Self {
        Self {
            rollout,
            replica_sets: Vec::new(),
            pods: Vec::new(),
            analysis_runs: Vec::new(),
        }
    }
}

/// Builds the view of a Rollout.
pub fn rollout_info(objects: &RolloutObjects) -> RolloutInfo {
    let rollout = &objects.rollout;
    let status = rollout.status.clone().unwrap_or_default();
    let (phase, message) = observed_phase(rollout);
    let replica_sets: Vec<&ReplicaSet> = objects
        .replica_sets
        .iter()
        .filter(|rs| is_owned_by(rs, rollout) && rs.metadata.deletion_timestamp.is_none())
        .collect();
    let roles = roles_by_hash(rollout);
    let revisions = revisions(objects, &replica_sets, &roles);
    RolloutInfo {
        name: rollout.name_any(),
        namespace: rollout.namespace().unwrap_or_default(),
        created: rollout.metadata.creation_timestamp.clone(),
        status: phase.to_string(),
        message,
        strategy: strategy_info(rollout, &replica_sets),
        images: images(&revisions),
        replicas: ReplicaInfo {
            desired: rollout.spec.replicas(),
            current: status.replicas.unwrap_or(0),
            updated: status.updated_replicas.unwrap_or(0),
            ready: status.ready_replicas.unwrap_or(0),
            available: status.available_replicas.unwrap_or(0),
        },
        experiment: status
            .canary
            .as_ref()
            .and_then(|c| c.current_experiment.clone()),
        revert: status.revert,
        revisions,
    }
}

/// Argo's `Step`, `SetWeight` and `ActualWeight`.
fn strategy_info(rollout: &Rollout, replica_sets: &[&ReplicaSet]) -> StrategyInfo {
    let Some(canary) = rollout.spec.canary() else {
        return StrategyInfo::BlueGreen;
    };
    let status = rollout.status.clone().unwrap_or_default();
    let steps = canary.steps.len();
    let step = match status.current_step_index {
        Some(index) if steps > 0 => format!("{index}/{steps}"),
        _ => "-".to_string(),
    };
    let current = current_step(canary, status.current_step_index);
    let set_weight = set_weight(canary, current, status.aborted());
    let actual_weight = match current {
        None => canary.max_traffic_weight(),
        Some(_) if status.available_replicas.unwrap_or(0) <= 0 => 0,
        Some(_) if canary.has_traffic_routing() => status
            .canary
            .as_ref()
            .and_then(|c| c.weights.as_ref())
            .map_or(set_weight, |w| w.canary.weight),
        Some(_) => replica_weight(rollout, replica_sets),
    };
    StrategyInfo::Canary {
        step,
        set_weight,
        actual_weight,
    }
}

/// The index of the step being run, `None` when there are no steps or all are done (Argo's
/// `GetCurrentCanaryStep`).
fn current_step(canary: &CanaryStrategy, index: Option<i32>) -> Option<usize> {
    let index = usize::try_from(index.unwrap_or(0)).unwrap_or(0);
    (index < canary.steps.len()).then_some(index)
}

/// Argo's `GetCurrentSetWeight`: 0 when aborted, `maxTrafficWeight` (100 unless set) when the
/// steps are done, else the last `setWeight` at or before the current step.
fn set_weight(canary: &CanaryStrategy, current: Option<usize>, aborted: bool) -> i32 {
    if aborted {
        return 0;
    }
    let Some(index) = current else {
        return canary.max_traffic_weight();
    };
    canary.steps[..=index]
        .iter()
        .rev()
        .find_map(|s| s.set_weight)
        .unwrap_or(0)
}

/// Without a traffic router the weight is the canary's share of the available pods.
fn replica_weight(rollout: &Rollout, replica_sets: &[&ReplicaSet]) -> i32 {
    let status = rollout.status.clone().unwrap_or_default();
    let available = status.available_replicas.unwrap_or(0);
    let current = status.current_pod_hash.as_deref();
    if available <= 0 || current.is_none() || current == status.stable_rs.as_deref() {
        return 0;
    }
    replica_sets
        .iter()
        .find(|rs| replica_set_hash(rs) == current)
        .map_or(0, |rs| replica_counts(rs).available * 100 / available)
}

/// Roles per pod template hash: stable and canary, or active and preview.
fn roles_by_hash(rollout: &Rollout) -> BTreeMap<String, Vec<Role>> {
    let status = rollout.status.clone().unwrap_or_default();
    let mut roles: BTreeMap<String, Vec<Role>> = BTreeMap::new();
    let mut add = |hash: Option<String>, role: Role| {
        if let Some(hash) = hash.filter(|h| !h.is_empty()) {
            roles.entry(hash).or_default().push(role);
        }
    };
    add(status.stable_rs.clone(), Role::Stable);
    if rollout.spec.canary().is_some() && status.current_pod_hash != status.stable_rs {
        add(status.current_pod_hash.clone(), Role::Canary);
    }
    if let Some(blue_green) = status.blue_green.as_ref() {
        add(blue_green.active_selector.clone(), Role::Active);
        if blue_green.preview_selector != blue_green.active_selector {
            add(blue_green.preview_selector.clone(), Role::Preview);
        }
    }
    roles
}

fn revisions(
    objects: &RolloutObjects,
    replica_sets: &[&ReplicaSet],
    roles: &BTreeMap<String, Vec<Role>>,
) -> Vec<RevisionInfo> {
    let rollout = &objects.rollout;
    let status = rollout.status.clone().unwrap_or_default();
    let mut by_revision: BTreeMap<i64, RevisionInfo> = BTreeMap::new();
    for rs in replica_sets {
        let revision = replica_set_revision(rs).unwrap_or(0);
        let hash = replica_set_hash(rs).unwrap_or_default();
        let provenance = git_provenance(rs);
        let record = status.revision_for_hash(hash);
        let entry = by_revision
            .entry(revision)
            .or_insert_with(|| empty_revision(revision));
        entry
            .roles
            .extend(roles.get(hash).into_iter().flatten().copied());
        entry.images.extend(images_of(rs));
        entry.git_revision = record
            .and_then(|r| r.git_revision.clone())
            .or(provenance.revision)
            .or(entry.git_revision.take());
        entry.application = record
            .and_then(|r| r.application.clone())
            .or(provenance.application)
            .or(entry.application.take());
        entry.replica_sets.push(replica_set_info(rs, &objects.pods));
    }
    let hash_revisions: BTreeMap<&str, i64> = replica_sets
        .iter()
        .filter_map(|rs| Some((replica_set_hash(rs)?, replica_set_revision(rs).unwrap_or(0))))
        .chain(
            status
                .revisions
                .iter()
                .map(|r| (r.pod_template_hash.as_str(), r.revision)),
        )
        .collect();
    for run in objects
        .analysis_runs
        .iter()
        .filter(|run| belongs_to(run, rollout))
    {
        let hash = run
            .labels()
            .get(POD_TEMPLATE_HASH_LABEL)
            .map(String::as_str)
            .unwrap_or_default();
        let revision = hash_revisions.get(hash).copied().unwrap_or(0);
        by_revision
            .entry(revision)
            .or_insert_with(|| empty_revision(revision))
            .analysis_runs
            .push(analysis_run_info(run));
    }
    let mut revisions: Vec<RevisionInfo> = by_revision.into_values().rev().collect();
    for revision in &mut revisions {
        revision.roles.sort();
        revision.roles.dedup();
        revision.images.sort();
        revision.images.dedup();
        revision.replica_sets.sort_by(|a, b| a.name.cmp(&b.name));
        revision.analysis_runs.sort_by(|a, b| {
            (a.created.as_ref().map(|t| t.0), &a.name)
                .cmp(&(b.created.as_ref().map(|t| t.0), &b.name))
        });
    }
    revisions
}

fn empty_revision(revision: i64) -> RevisionInfo {
    RevisionInfo {
        revision,
        roles: Vec::new(),
        images: Vec::new(),
        git_revision: None,
        application: None,
        replica_sets: Vec::new(),
        analysis_runs: Vec::new(),
    }
}

/// An AnalysisRun of this Rollout: controlled by it, or (when it has no owner) labelled with it.
fn belongs_to(run: &AnalysisRun, rollout: &Rollout) -> bool {
    let owners = run.owner_references();
    match rollout.metadata.uid.as_deref() {
        Some(uid) if !owners.is_empty() => owners
            .iter()
            .any(|o| o.uid == uid && o.controller == Some(true)),
        _ => run.labels().get(ROLLOUT_LABEL) == Some(&rollout.name_any()),
    }
}

fn images_of(rs: &ReplicaSet) -> Vec<String> {
    rs.spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.spec.as_ref())
        .map(|p| {
            p.containers
                .iter()
                .filter_map(|c| c.image.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// The images that run (revisions with pods), with their roles, sorted by image.
fn images(revisions: &[RevisionInfo]) -> Vec<ImageInfo> {
    let mut images: BTreeMap<String, Vec<Role>> = BTreeMap::new();
    for revision in revisions {
        if revision.replica_sets.iter().all(|rs| rs.desired == 0) {
            continue;
        }
        for image in &revision.images {
            images
                .entry(image.clone())
                .or_default()
                .extend(revision.roles.iter().copied());
        }
    }
    images
        .into_iter()
        .map(|(image, mut roles)| {
            roles.sort();
            roles.dedup();
            ImageInfo { image, roles }
        })
        .collect()
}

fn replica_set_info(rs: &ReplicaSet, pods: &[Pod]) -> ReplicaSetInfo {
    let counts = replica_counts(rs);
    let status = if counts.desired == 0 {
        "ScaledDown"
    } else if counts.available >= counts.desired {
        "Healthy"
    } else {
        "Progressing"
    };
    let uid = rs.metadata.uid.as_deref();
    let mut owned: Vec<PodInfo> = pods
        .iter()
        .filter(|pod| uid.is_some() && controller_uid(pod) == uid)
        .map(pod_info)
        .collect();
    owned.sort_by(|a, b| a.name.cmp(&b.name));
    ReplicaSetInfo {
        name: rs.name_any(),
        status: status.to_string(),
        created: rs.metadata.creation_timestamp.clone(),
        desired: counts.desired,
        ready: counts.ready,
        scale_down_deadline: scale_down_deadline(rs).ok().flatten(),
        pods: owned,
    }
}

fn controller_uid(pod: &Pod) -> Option<&str> {
    pod.owner_references()
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.as_str())
}

/// A pod's status as `kubectl get pods` shows it: Terminating, else the reason a container waits
/// (e.g. `CrashLoopBackOff`), else the phase.
fn pod_info(pod: &Pod) -> PodInfo {
    let status = pod.status.as_ref();
    let containers = status
        .and_then(|s| s.container_statuses.as_ref())
        .cloned()
        .unwrap_or_default();
    let waiting = containers
        .iter()
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
        .next();
    let phase = status
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Unknown".to_string());
    let shown = if pod.metadata.deletion_timestamp.is_some() {
        "Terminating".to_string()
    } else {
        waiting.unwrap_or(phase)
    };
    let declared = pod.spec.as_ref().map_or(0, |s| s.containers.len());
    PodInfo {
        name: pod.name_any(),
        status: shown,
        created: pod.metadata.creation_timestamp.clone(),
        ready_containers: containers.iter().filter(|c| c.ready).count(),
        containers: declared.max(containers.len()),
        restarts: containers.iter().map(|c| c.restart_count).sum(),
    }
}

fn analysis_run_info(run: &AnalysisRun) -> AnalysisRunInfo {
    let status = run.status.clone().unwrap_or_default();
    let count = |phase: AnalysisPhase| {
        status
            .metric_results
            .iter()
            .filter(|m| !m.dry_run)
            .map(|m| match phase {
                AnalysisPhase::Successful => m.successful,
                AnalysisPhase::Failed => m.failed,
                AnalysisPhase::Inconclusive => m.inconclusive,
                _ => m.error,
            })
            .sum()
    };
    let metrics = run
        .spec
        .metrics
        .iter()
        .map(|metric| match status.metric_result(&metric.name) {
            Some(result) => metric_info(result),
            None => MetricInfo {
                name: metric.name.clone(),
                phase: AnalysisPhase::Pending,
                values: Vec::new(),
                dry_run: run.spec.is_dry_run(&metric.name),
                error: None,
            },
        })
        .collect();
    AnalysisRunInfo {
        name: run.name_any(),
        phase: status.phase(),
        created: run.metadata.creation_timestamp.clone(),
        successful: count(AnalysisPhase::Successful),
        failed: count(AnalysisPhase::Failed),
        inconclusive: count(AnalysisPhase::Inconclusive),
        error: count(AnalysisPhase::Error),
        metrics,
    }
}

fn metric_info(result: &MetricResult) -> MetricInfo {
    let values: Vec<String> = result
        .measurements
        .iter()
        .filter_map(|m| m.value.clone())
        .collect();
    let last = result.measurements.last();
    let error = last
        .filter(|m| m.value.is_none())
        .and_then(|m| m.message.clone());
    MetricInfo {
        name: result.name.clone(),
        phase: result.phase,
        values: values[values.len().saturating_sub(LAST_VALUES)..].to_vec(),
        dry_run: result.dry_run,
        error,
    }
}
