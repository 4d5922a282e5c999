//! The pure planner of the Experiment controller (Argo's `experimentContext.reconcile`): per
//! template, its ReplicaSet created, kept at `replicas` and scaled down after
//! `scaleDownDelaySeconds` once the Experiment is ending; per analysis, its AnalysisRun created once
//! every template is available and followed; then the phase.
//!
//! Whether the Experiment is ending is decided from the status as last written (as Argo's
//! `IsTerminating`), so an ending takes effect on the reconcile after the one that decided it: the
//! status write of the first triggers the second. No clock: `observed.now`.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::analysis::{AnalysisPhase, AnalysisRunSpec};
use crate::api::common::Condition;
use crate::api::experiment::{
    ExperimentAnalysisRunStatus, ExperimentSpec, ExperimentStatus, ExperimentTemplate,
    TemplateStatus, TemplateStatusCode,
};
use crate::api::unsupported;
use crate::experiment::observe::{Observed, ObservedReplicaSet};
use crate::rollout::hash::pod_template_hash;

/// The message of an Experiment ended by its required analyses (Argo's).
pub const REQUIRED_ANALYSIS_COMPLETED: &str = "Required AnalysisRuns completed";
const INVALID_SPEC: &str = "InvalidSpec";

/// One change to make in the cluster.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Create the ReplicaSet `name` of `template`, labelled with `hash`, at `replicas` pods.
    CreateReplicaSet {
        template: String,
        name: String,
        hash: String,
        replicas: i32,
    },
    /// Set a ReplicaSet's `spec.replicas`.
    ScaleReplicaSet { name: String, replicas: i32 },
    /// Set (or with `None` remove) a ReplicaSet's scale-down deadline annotation.
    SetScaleDownDeadline { name: String, at: Option<Timestamp> },
    /// Create the AnalysisRun `name` of `analysis` (deterministic, so a repeat meets
    /// `AlreadyExists`).
    CreateAnalysisRun {
        name: String,
        analysis: String,
        spec: Box<AnalysisRunSpec>,
    },
    /// Terminate a running AnalysisRun.
    TerminateAnalysisRun { name: String },
    /// Create the Service `name` of `template`, selecting its ReplicaSet's pods.
    CreateService {
        template: String,
        name: String,
        hash: String,
    },
    /// Delete a template's Service (its pods are gone).
    DeleteService { name: String },
    /// Record an Event on the Experiment.
    RecordEvent {
        warning: bool,
        reason: String,
        message: String,
    },
}

/// The outcome of planning one reconcile.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// The complete desired status, written when it differs.
    pub status: ExperimentStatus,
    /// Reconcile again after this long (duration end, progress deadline, scale-down delay).
    pub requeue_after: Option<Duration>,
}

impl Plan {
    /// The actions that change the cluster (everything but Events).
    pub fn changes(&self) -> impl Iterator<Item = &Action> {
        self.actions
            .iter()
            .filter(|a| !matches!(a, Action::RecordEvent { .. }))
    }
}

/// Plans one reconcile of an Experiment.
pub fn plan(obs: &Observed) -> Plan {
    let old = obs.experiment.status.clone().unwrap_or_default();
    let spec = &obs.experiment.spec;
    let mut ctx = Ctx {
        obs,
        spec,
        terminating: is_terminating(spec, &old),
        status: old.clone(),
        old,
        actions: Vec::new(),
        requeue: None,
    };
    if let Err(reason) = validate(spec) {
        ctx.invalid_spec(reason);
        return ctx.finish();
    }
    ctx.clear_invalid_spec();
    for template in &spec.templates {
        ctx.reconcile_template(template);
    }
    for analysis in &spec.analyses {
        ctx.reconcile_analysis(analysis);
    }
    ctx.calculate_phase();
    ctx.progressing_condition();
    ctx.requeue_for_deadlines();
    ctx.finish()
}

/// What Argo refuses, and the Argo fields Sluice does not implement (named by path).
fn validate(spec: &ExperimentSpec) -> Result<(), String> {
    let unsupported = spec.unsupported_fields();
    if !unsupported.is_empty() {
        return Err(unsupported::message(&unsupported));
    }
    if spec.templates.is_empty() {
        return Err("spec.templates must have at least one template".to_string());
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, template) in spec.templates.iter().enumerate() {
        if template.name.is_empty() || !names.insert(template.name.as_str()) {
            return Err(format!(
                "spec.templates[{i}].name {:?} must be set and unique",
                template.name
            ));
        }
        let selects_all = template
            .selector
            .match_labels
            .as_ref()
            .is_none_or(|m| m.is_empty())
            && template
                .selector
                .match_expressions
                .as_ref()
                .is_none_or(|e| e.is_empty());
        if selects_all {
            return Err(format!(
                "spec.templates[{i}].selector selects every pod: a non-empty selector is required"
            ));
        }
        if template.min_ready_seconds.unwrap_or(0) > spec.progress_deadline_seconds() {
            return Err(format!(
                "spec.templates[{i}].minReadySeconds cannot be longer than progressDeadlineSeconds"
            ));
        }
    }
    let mut analyses = std::collections::BTreeSet::new();
    for (i, analysis) in spec.analyses.iter().enumerate() {
        if !analyses.insert(analysis.name.as_str()) {
            return Err(format!(
                "spec.analyses[{i}].name {:?} is used twice",
                analysis.name
            ));
        }
    }
    spec.duration()
        .map(drop)
        .map_err(|e| format!("spec.duration: {e}"))
}

/// Argo's `IsTerminating`: terminated by the user, finished, a template failed, an analysis
/// failed, errored or was inconclusive, or every required analysis succeeded.
fn is_terminating(spec: &ExperimentSpec, status: &ExperimentStatus) -> bool {
    spec.terminate()
        || status.phase.is_some_and(AnalysisPhase::is_completed)
        || status.template_statuses.iter().any(|t| {
            matches!(
                t.status,
                Some(TemplateStatusCode::Failed | TemplateStatusCode::Error)
            )
        })
        || status.analysis_runs.iter().any(|r| {
            matches!(
                r.phase,
                AnalysisPhase::Failed | AnalysisPhase::Error | AnalysisPhase::Inconclusive
            )
        })
        || required_runs_successful(spec, status)
}

/// There is a `requiredForCompletion` analysis and every such one is Successful.
pub(super) fn required_runs_successful(spec: &ExperimentSpec, status: &ExperimentStatus) -> bool {
    let mut required = spec
        .analyses
        .iter()
        .filter(|a| a.required_for_completion())
        .peekable();
    required.peek().is_some()
        && required.all(|a| {
            run_status(status, &a.name).is_some_and(|r| r.phase == AnalysisPhase::Successful)
        })
}

pub(super) fn run_status<'s>(
    status: &'s ExperimentStatus,
    name: &str,
) -> Option<&'s ExperimentAnalysisRunStatus> {
    status.analysis_runs.iter().find(|r| r.name == name)
}

pub(super) fn template_status<'s>(
    status: &'s ExperimentStatus,
    name: &str,
) -> Option<&'s TemplateStatus> {
    status.template_statuses.iter().find(|t| t.name == name)
}

/// The name of a template's ReplicaSet (Argo v1.10's, without hash).
pub fn replica_set_name(experiment: &str, template: &str) -> String {
    format!("{experiment}-{template}")
}

/// The name of an analysis' AnalysisRun (Argo's).
pub fn analysis_run_name(experiment: &str, analysis: &str) -> String {
    format!("{experiment}-{analysis}")
}

/// The state of one reconcile while it is planned (the analyses' and the phase's parts are in
/// `analyses.rs` and `phase.rs`).
pub(super) struct Ctx<'a> {
    pub(super) obs: &'a Observed,
    pub(super) spec: &'a ExperimentSpec,
    /// Ending, as decided from the status as last written.
    pub(super) terminating: bool,
    pub(super) old: ExperimentStatus,
    pub(super) status: ExperimentStatus,
    pub(super) actions: Vec<Action>,
    pub(super) requeue: Option<Duration>,
}

impl Ctx<'_> {
    pub(super) fn finish(self) -> Plan {
        Plan {
            actions: self.actions,
            status: self.status,
            requeue_after: self.requeue,
        }
    }

    pub(super) fn now(&self) -> Timestamp {
        self.obs.now
    }

    pub(super) fn name(&self) -> &str {
        self.obs
            .experiment
            .metadata
            .name
            .as_deref()
            .unwrap_or_default()
    }

    pub(super) fn event(
        &mut self,
        warning: bool,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.actions.push(Action::RecordEvent {
            warning,
            reason: reason.into(),
            message: message.into(),
        });
    }

    pub(super) fn requeue_within(&mut self, after: Duration) {
        let after = after.max(Duration::from_millis(100));
        self.requeue = Some(self.requeue.map_or(after, |r| r.min(after)));
    }

    /// An invalid spec: phase Error with an `InvalidSpec` condition naming why; nothing is
    /// created, and what runs is scaled down.
    fn invalid_spec(&mut self, reason: String) {
        let already = self
            .old
            .conditions
            .iter()
            .any(|c| c.type_ == INVALID_SPEC && c.message.as_deref() == Some(reason.as_str()));
        if !already {
            self.event(true, INVALID_SPEC, reason.clone());
            self.status.conditions.retain(|c| c.type_ != INVALID_SPEC);
            self.status.conditions.push(Condition {
                type_: INVALID_SPEC.to_string(),
                status: Some("True".to_string()),
                reason: Some(INVALID_SPEC.to_string()),
                message: Some(reason.clone()),
                last_transition_time: Some(Time(self.now())),
                last_update_time: Some(Time(self.now())),
            });
        }
        self.status.phase = Some(AnalysisPhase::Error);
        self.status.message = Some(format!("{INVALID_SPEC}: {reason}"));
        for rs in self.obs.replica_sets.values() {
            if rs.spec_replicas > 0 {
                self.actions.push(Action::ScaleReplicaSet {
                    name: rs.name.clone(),
                    replicas: 0,
                });
            }
        }
    }

    fn clear_invalid_spec(&mut self) {
        self.status.conditions.retain(|c| c.type_ != INVALID_SPEC);
    }

    /// Whether `duration` has passed since every template became available.
    fn passed_duration(&self) -> bool {
        self.duration_end().is_some_and(|end| self.now() >= end)
    }

    fn duration_end(&self) -> Option<Timestamp> {
        let available = self.old.available_at.as_ref()?.0;
        let duration = self.spec.duration().ok().flatten()?;
        let duration = SignedDuration::try_from(duration).ok()?;
        available.checked_add(duration).ok()
    }

    fn reconcile_template(&mut self, template: &ExperimentTemplate) {
        let prev = template_status(&self.old, &template.name)
            .cloned()
            .unwrap_or_else(|| TemplateStatus {
                name: template.name.clone(),
                ..TemplateStatus::default()
            });
        let mut status = prev.clone();
        let completed = prev.status.is_some_and(TemplateStatusCode::is_completed);
        let desired = if self.terminating || completed {
            0
        } else {
            template.replicas()
        };
        let now = Time(self.now());
        let rs = self.obs.replica_sets.get(&template.name);
        match rs {
            None if desired > 0 => {
                let hash = pod_template_hash(&template.template, prev.collision_count);
                let name = replica_set_name(self.name(), &template.name);
                // The status already naming the hash means an earlier reconcile created it and
                // the cache has not seen it yet: the create is repeated (a no-op), not reported.
                if prev.pod_template_hash.is_none() {
                    self.event(
                        false,
                        "NewReplicaSetCreated",
                        format!("Created ReplicaSet {name} with size {desired}"),
                    );
                    status.last_transition_time = Some(now.clone());
                }
                self.actions.push(Action::CreateReplicaSet {
                    template: template.name.clone(),
                    name,
                    hash: hash.clone(),
                    replicas: desired,
                });
                status.pod_template_hash = Some(hash);
            }
            None => {}
            Some(rs) => {
                status.pod_template_hash = Some(rs.pod_template_hash.clone());
                if self.scale(rs, desired) {
                    status.last_transition_time = Some(now.clone());
                }
            }
        }
        let counts = rs.map_or((0, 0, 0), |rs| {
            (rs.replicas, rs.ready_replicas, rs.available_replicas)
        });
        status.replicas = counts.0;
        status.updated_replicas = counts.0;
        status.ready_replicas = counts.1;
        status.available_replicas = counts.2;
        if (prev.replicas, prev.ready_replicas, prev.available_replicas) != counts {
            status.last_transition_time = Some(now);
        }
        self.reconcile_service(template, rs, desired, &mut status);
        if !completed {
            self.assess_template(template, &mut status, desired);
        }
        if prev.status != status.status {
            self.template_event(&prev, &status);
        }
        match self
            .status
            .template_statuses
            .iter_mut()
            .find(|t| t.name == status.name)
        {
            Some(slot) => *slot = status,
            None => self.status.template_statuses.push(status),
        }
    }

    /// `templates[].service` (Argo's `createTemplateService`): a Service selecting the template's
    /// pods while it runs (when its containers declare ports), deleted once its pods are gone.
    fn reconcile_service(
        &mut self,
        template: &ExperimentTemplate,
        rs: Option<&ObservedReplicaSet>,
        desired: i32,
        status: &mut TemplateStatus,
    ) {
        let Some(service) = &template.service else {
            return;
        };
        let Some(rs) = rs else {
            return;
        };
        let existing = self.obs.services.get(&template.name);
        if desired > 0 {
            let name = service
                .name
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| rs.name.clone());
            if existing.is_none() && has_ports(template) {
                self.actions.push(Action::CreateService {
                    template: template.name.clone(),
                    name: name.clone(),
                    hash: rs.pod_template_hash.clone(),
                });
            }
            if existing.is_some() || has_ports(template) {
                status.service_name = Some(existing.cloned().unwrap_or(name));
            }
        } else if rs.available_replicas == 0 {
            if let Some(name) = existing {
                self.actions
                    .push(Action::DeleteService { name: name.clone() });
            }
            status.service_name = None;
        }
    }

    /// Brings a template's ReplicaSet to `desired`; scaling down waits for the scale-down delay
    /// (recorded on the ReplicaSet). Returns whether it scaled.
    fn scale(&mut self, rs: &ObservedReplicaSet, desired: i32) -> bool {
        if rs.spec_replicas == desired {
            return false;
        }
        if desired > 0 {
            if rs.scale_down_deadline.is_some() {
                self.actions.push(Action::SetScaleDownDeadline {
                    name: rs.name.clone(),
                    at: None,
                });
            }
            self.actions.push(Action::ScaleReplicaSet {
                name: rs.name.clone(),
                replicas: desired,
            });
            return true;
        }
        let delay = self.spec.scale_down_delay_seconds();
        match rs.scale_down_deadline {
            None if delay > 0 => {
                let at = self.now() + SignedDuration::from_secs(i64::from(delay));
                self.actions.push(Action::SetScaleDownDeadline {
                    name: rs.name.clone(),
                    at: Some(at),
                });
                self.requeue_within(Duration::from_secs(u64::try_from(delay).unwrap_or(0)));
                false
            }
            Some(at) if at > self.now() => {
                self.requeue_within(until(self.now(), at));
                false
            }
            _ => {
                self.actions.push(Action::ScaleReplicaSet {
                    name: rs.name.clone(),
                    replicas: 0,
                });
                true
            }
        }
    }

    /// A template not yet completed: Running once all its pods are available, Successful when the
    /// duration passed or the Experiment is ending, Failed past the progress deadline.
    fn assess_template(
        &self,
        template: &ExperimentTemplate,
        status: &mut TemplateStatus,
        desired: i32,
    ) {
        let code = if desired == status.available_replicas {
            if self.passed_duration() || self.terminating {
                TemplateStatusCode::Successful
            } else {
                TemplateStatusCode::Running
            }
        } else if self.terminating {
            // Scaling down (or waiting to): an ending Experiment never fails a template for that.
            TemplateStatusCode::Successful
        } else {
            let from = status
                .last_transition_time
                .as_ref()
                .map_or(self.now(), |t| t.0);
            let deadline = self.spec.progress_deadline_seconds();
            if self.now() > from + SignedDuration::from_secs(i64::from(deadline)) {
                status.message = Some(format!(
                    "Template '{}' exceeded its progressDeadlineSeconds ({deadline})",
                    template.name
                ));
                TemplateStatusCode::Failed
            } else {
                TemplateStatusCode::Progressing
            }
        };
        status.status = Some(code);
    }

    fn template_event(&mut self, prev: &TemplateStatus, status: &TemplateStatus) {
        let Some(code) = status.status else {
            return;
        };
        let from = prev.status.map_or("", TemplateStatusCode::as_str);
        let mut message = format!(
            "Template '{}' transitioned from {from} -> {code}",
            status.name
        );
        if let Some(m) = &status.message {
            message.push_str(": ");
            message.push_str(m);
        }
        let warning = matches!(code, TemplateStatusCode::Failed | TemplateStatusCode::Error);
        self.event(warning, format!("Template{code}"), message);
    }

    /// Reconcile again when the duration ends or a template's progress deadline passes.
    fn requeue_for_deadlines(&mut self) {
        if is_terminating(self.spec, &self.status) {
            return;
        }
        let now = self.now();
        if let Some(end) = self.status.available_at.as_ref().and_then(|available| {
            let duration = self.spec.duration().ok().flatten()?;
            available
                .0
                .checked_add(SignedDuration::try_from(duration).ok()?)
                .ok()
        }) && end > now
        {
            self.requeue_within(until(now, end));
        }
        let deadline = SignedDuration::from_secs(i64::from(self.spec.progress_deadline_seconds()));
        let pending: Vec<Timestamp> = self
            .spec
            .templates
            .iter()
            .filter_map(|t| {
                let status = template_status(&self.status, &t.name)?;
                let progressing = matches!(
                    status.status,
                    Some(TemplateStatusCode::Progressing | TemplateStatusCode::Running)
                );
                (progressing && status.available_replicas != t.replicas())
                    .then(|| status.last_transition_time.as_ref().map(|t| t.0 + deadline))
                    .flatten()
            })
            .collect();
        for at in pending {
            self.requeue_within(until(now, at));
        }
    }
}

/// Whether the template's containers declare ports (a Service needs one).
fn has_ports(template: &ExperimentTemplate) -> bool {
    template.template.spec.as_ref().is_some_and(|spec| {
        spec.containers
            .iter()
            .any(|c| c.ports.as_ref().is_some_and(|p| !p.is_empty()))
    })
}

/// How long from `now` until `at` (zero when past), plus a second so the deadline has passed.
fn until(now: Timestamp, at: Timestamp) -> Duration {
    let left = at.duration_since(now);
    Duration::try_from(left).unwrap_or(Duration::ZERO) + Duration::from_secs(1)
}

/// Label values of the runs, for the act step: the user's `analysisRunMetadata` labels.
pub fn run_labels(spec: &ExperimentSpec) -> BTreeMap<String, String> {
    spec.analysis_run_metadata
        .as_ref()
        .map(|m| m.labels.clone())
        .unwrap_or_default()
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
