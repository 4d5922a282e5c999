//! The pure planner of the Rollout engine: [`plan`] turns an [`Observed`] snapshot into a [`Plan`].
//!
//! No client, no clock (`observed.now`), no randomness. Everything the planner must remember between
//! reconciles is in the status it returns (and in ReplicaSet annotations such as the scale-down
//! deadline), so planning the same observation twice gives the same plan, and planning again after
//! the plan was applied creates nothing twice (docs/behaviour.md R10).
//!
//! This module holds the lifecycle rules shared by both strategies (R1–R8) and the helpers the
//! strategies use ([`Ctx`]); `canary.rs` and `bluegreen.rs` hold the strategy rules and `phase.rs` the
//! phase, message and conditions.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use thiserror::Error;

use crate::api::analysis::AnalysisPhase;
use crate::api::rollout::{
    AnalysisRunStrategy, POD_TEMPLATE_HASH_LABEL, PauseCondition, PauseReason, RevisionRecord,
    RolloutAnalysis, RolloutAnalysisRunStatus, RolloutPhase, RolloutSpec, RolloutStatus, ScaleDown,
};
use crate::rollout::action::{Action, Event, EventReason, Plan};
use crate::rollout::observed::{AnalysisType, Observed, ObservedAnalysisRun, ObservedReplicaSet};
use crate::rollout::{anti_affinity, bluegreen, canary, phase, pod_metadata, restart, templates};

use crate::api::keys::{APPLICATION_ANNOTATION, GIT_REVISION_ANNOTATION};

/// A pod template value the API server would refuse when the ReplicaSet is created (R1b): it is
/// reported as `InvalidSpec` rather than failing the create on every reconcile.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// A resource quantity that is not a Kubernetes quantity.
    #[error(
        "spec.template.spec.{containers}[{container}].resources.{kind}.{resource}: invalid quantity {value:?}"
    )]
    InvalidQuantity {
        /// `containers` or `initContainers`.
        containers: &'static str,
        /// The container's name.
        container: String,
        /// `requests` or `limits`.
        kind: &'static str,
        /// The resource, e.g. `memory`.
        resource: String,
        /// The value as written.
        value: String,
    },
}

/// Plans one reconcile of a Rollout. See the module documentation.
pub fn plan(observed: &Observed) -> Plan {
    if let Err(error) = observed.spec().validate() {
        return phase::invalid_spec_plan(observed, &error.to_string());
    }
    if let Err(error) = validate_template(observed.spec()) {
        return phase::invalid_spec_plan(observed, &error.to_string());
    }
    if let Err(error) = pod_metadata::validate(observed.spec()) {
        return phase::invalid_spec_plan(observed, &error.to_string());
    }
    if let Err(message) = templates::check(observed.spec(), &observed.templates) {
        return phase::invalid_spec_plan(observed, &message);
    }
    let first = plan_valid(observed);
    // R6: with `progressDeadlineAbort`, an exceeded deadline aborts; plan again as aborted so the
    // abort takes effect in this reconcile instead of the next one.
    if first.deadline_exceeded && observed.spec().progress_deadline_abort() && !first.aborted {
        let mut aborted = observed.clone();
        let mut status = aborted.status();
        status.abort = Some(true);
        aborted.rollout.status = Some(status);
        return plan_valid(&aborted).plan;
    }
    first.plan
}

struct Planned {
    plan: Plan,
    deadline_exceeded: bool,
    aborted: bool,
}

fn plan_valid(observed: &Observed) -> Planned {
    let mut ctx = Ctx::new(observed);
    ctx.reset_on_new_template();
    ctx.acknowledge_retry();
    ctx.bump_rolled_back_revision();
    if let Some(canary) = observed.spec().canary() {
        canary::plan_canary(&mut ctx, canary);
    } else if let Some(blue_green) = observed.spec().blue_green() {
        bluegreen::plan_blue_green(&mut ctx, blue_green);
    }
    crate::rollout::experiment_step::terminate_others(&mut ctx, observed.spec().canary());
    ctx.delete_beyond_history_limit();
    ctx.delete_old_analysis_runs();
    pod_metadata::plan_pod_metadata(&mut ctx);
    anti_affinity::plan_anti_affinity(&mut ctx);
    restart::plan_restart(&mut ctx);
    ctx.record_revision();
    ctx.fill_counts();
    let outcome = phase::finish(&mut ctx);
    ctx.scale_down_workload();
    let aborted = ctx.status.aborted();
    Planned {
        plan: Plan {
            actions: ctx.actions,
            status: ctx.status,
            requeue_after: ctx.requeue,
        },
        deadline_exceeded: outcome.deadline_exceeded,
        aborted,
    }
}

/// The AnalysisRuns a status points at (current step, background, pre- and post-promotion).
fn current_run_names(status: &RolloutStatus) -> Vec<String> {
    let canary = status.canary.as_ref();
    let blue_green = status.blue_green.as_ref();
    [
        canary.and_then(|c| c.current_step_analysis_run_status.as_ref()),
        canary.and_then(|c| c.current_background_analysis_run_status.as_ref()),
        blue_green.and_then(|b| b.pre_promotion_analysis_run_status.as_ref()),
        blue_green.and_then(|b| b.post_promotion_analysis_run_status.as_ref()),
    ]
    .into_iter()
    .flatten()
    .map(|run| run.name.clone())
    .collect()
}

/// What a gate (pause, analysis) says about going on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Wait here.
    Wait,
    /// Go on.
    Pass,
}

/// The verdict of an analysis the Rollout waits on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not finished.
    Running,
    /// Finished Successful.
    Successful,
    /// Finished Failed or Error: the Rollout aborts.
    Failed,
    /// Finished Inconclusive: the Rollout pauses.
    Inconclusive,
}

/// Where in the status an analysis run is tracked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RunSlot {
    CanaryStep,
    CanaryBackground,
    PrePromotion,
    PostPromotion,
}

impl RunSlot {
    fn analysis_type(self) -> AnalysisType {
        match self {
            RunSlot::CanaryStep => AnalysisType::Step,
            RunSlot::CanaryBackground => AnalysisType::Background,
            RunSlot::PrePromotion => AnalysisType::PrePromotion,
            RunSlot::PostPromotion => AnalysisType::PostPromotion,
        }
    }

    pub(crate) fn get(self, status: &RolloutStatus) -> Option<&RolloutAnalysisRunStatus> {
        match self {
            RunSlot::CanaryStep => status
                .canary
                .as_ref()?
                .current_step_analysis_run_status
                .as_ref(),
            RunSlot::CanaryBackground => status
                .canary
                .as_ref()?
                .current_background_analysis_run_status
                .as_ref(),
            RunSlot::PrePromotion => status
                .blue_green
                .as_ref()?
                .pre_promotion_analysis_run_status
                .as_ref(),
            RunSlot::PostPromotion => status
                .blue_green
                .as_ref()?
                .post_promotion_analysis_run_status
                .as_ref(),
        }
    }

    pub(crate) fn set(self, status: &mut RolloutStatus, value: Option<RolloutAnalysisRunStatus>) {
        match self {
            RunSlot::CanaryStep => {
                status
                    .canary
                    .get_or_insert_with(Default::default)
                    .current_step_analysis_run_status = value;
            }
            RunSlot::CanaryBackground => {
                status
                    .canary
                    .get_or_insert_with(Default::default)
                    .current_background_analysis_run_status = value;
            }
            RunSlot::PrePromotion => {
                status
                    .blue_green
                    .get_or_insert_with(Default::default)
                    .pre_promotion_analysis_run_status = value;
            }
            RunSlot::PostPromotion => {
                status
                    .blue_green
                    .get_or_insert_with(Default::default)
                    .post_promotion_analysis_run_status = value;
            }
        }
    }

    pub(crate) const ALL: [RunSlot; 4] = [
        RunSlot::CanaryStep,
        RunSlot::CanaryBackground,
        RunSlot::PrePromotion,
        RunSlot::PostPromotion,
    ];
}

/// The state of one reconcile while it is planned: what was observed, the status being built and
/// the actions decided so far.
pub(crate) struct Ctx<'a> {
    pub obs: &'a Observed,
    /// The status as last written.
    pub old: RolloutStatus,
    /// The status being built, starting from `old`.
    pub status: RolloutStatus,
    pub actions: Vec<Action>,
    pub requeue: Option<Duration>,
    /// A ReplicaSet was created or scaled, or a step completed: progress for R6.
    pub progressed: bool,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(obs: &'a Observed) -> Self {
        let old = obs.status();
        Ctx {
            obs,
            status: old.clone(),
            old,
            actions: Vec::new(),
            requeue: None,
            progressed: false,
        }
    }

    /// Argo's fast-track rollback: the new revision is older than the stable one, with fewer than
    /// `rollbackWindow.revisions` revisions created in between; its steps, pauses and analysis
    /// are skipped.
    pub(crate) fn rollback_within_window(&self) -> bool {
        let Some(revisions) = self
            .spec()
            .rollback_window
            .as_ref()
            .and_then(|w| w.revisions)
            .filter(|r| *r > 0)
        else {
            return false;
        };
        let stable = self
            .status
            .stable_rs
            .as_deref()
            .and_then(|hash| self.obs.replica_set(hash));
        let (Some(new), Some(stable)) = (self.obs.new_replica_set(), stable) else {
            return false;
        };
        if new.name == stable.name || new.created >= stable.created {
            return false;
        }
        let between = self
            .obs
            .replica_sets
            .iter()
            .filter(|rs| new.created < rs.created && rs.created < stable.created)
            .count();
        i32::try_from(between).is_ok_and(|n| n < revisions)
    }

    pub(crate) fn spec(&self) -> &'a RolloutSpec {
        self.obs.spec()
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.obs.now
    }

    pub(crate) fn new_hash(&self) -> &'a str {
        &self.obs.new_template_hash
    }

    pub(crate) fn replicas(&self) -> i32 {
        self.spec().replicas()
    }

    pub(crate) fn event(&mut self, reason: EventReason, message: impl Into<String>) {
        self.actions.push(Action::RecordEvent(Event {
            type_: reason.event_type(),
            reason,
            message: message.into(),
        }));
    }

    /// Asks to be reconciled again within `after`, keeping the soonest request.
    pub(crate) fn requeue_within(&mut self, after: Duration) {
        self.requeue = Some(self.requeue.map_or(after, |r| r.min(after)));
    }

    /// The revision number of the current template's ReplicaSet (the next one when it is still to
    /// be created).
    pub(crate) fn new_revision(&self) -> i64 {
        match self.obs.new_replica_set() {
            Some(rs) if !self.rolled_back_to(rs) => rs.revision,
            _ => self.obs.max_revision().saturating_add(1),
        }
    }

    /// Undo: the template went back to an older ReplicaSet that is not the stable one, so that
    /// ReplicaSet becomes the newest revision again (Argo does the same).
    fn rolled_back_to(&self, rs: &ObservedReplicaSet) -> bool {
        rs.revision < self.obs.max_revision()
            && self.old.stable_rs.as_deref() != Some(rs.pod_template_hash.as_str())
    }

    /// Writes the next revision number on the ReplicaSet an undo went back to.
    fn bump_rolled_back_revision(&mut self) {
        let Some(rs) = self.obs.new_replica_set() else {
            return;
        };
        if self.rolled_back_to(rs) {
            self.actions.push(Action::SetReplicaSetRevision {
                name: rs.name.clone(),
                revision: self.new_revision(),
            });
        }
    }

    /// The step an update starts at: 0 for a canary; blue-green has no steps (Argo leaves
    /// `currentStepIndex` unset).
    fn first_step(&self) -> Option<i32> {
        self.spec().canary().map(|_| 0)
    }

    /// R2: a Rollout that never had a stable revision takes the current one as stable at once,
    /// without steps or analysis.
    pub(crate) fn adopt_first_revision_as_stable(&mut self) {
        if self.status.stable_rs.is_none() {
            self.status.stable_rs = Some(self.new_hash().to_string());
        }
    }

    /// R3/R8: a template that differs from the one last seen starts a new update: per-update state
    /// (abort, pauses, step, promote-full, analysis runs) is reset, as Argo's `resetRolloutStatus`
    /// does. This is also what lets a Git revert to the stable template end an aborted update.
    fn reset_on_new_template(&mut self) {
        let new_hash = self.new_hash().to_string();
        if self.old.current_pod_hash.as_deref() == Some(new_hash.as_str()) {
            return;
        }
        if self.old.current_pod_hash.is_some() {
            self.event(
                EventReason::RolloutUpdated,
                format!(
                    "Rollout updated to revision {} ({new_hash})",
                    self.new_revision()
                ),
            );
        }
        let first_step = self.first_step();
        let status = &mut self.status;
        status.current_pod_hash = Some(new_hash);
        status.abort = None;
        status.aborted_at = None;
        status.pause_conditions.clear();
        status.controller_pause = None;
        status.promote_full = None;
        status.current_step_index = first_step;
        if let Some(blue_green) = status.blue_green.as_mut() {
            blue_green.scale_up_preview_check_point = None;
        }
        for slot in RunSlot::ALL {
            if slot.get(status).is_some() {
                slot.set(status, None);
            }
        }
        crate::rollout::experiment_step::set_current(status, None);
        self.progressed = true;
    }

    /// Retry (`status.abort: false` after an abort) resumes the update from its first step with
    /// fresh analysis runs.
    fn acknowledge_retry(&mut self) {
        if self.status.aborted() || self.status.aborted_at.is_none() {
            return;
        }
        self.status.aborted_at = None;
        self.status.abort = None;
        self.status.current_step_index = self.first_step();
        for slot in RunSlot::ALL {
            if slot.get(&self.status).is_some() {
                slot.set(&mut self.status, None);
            }
        }
        crate::rollout::experiment_step::set_current(&mut self.status, None);
        self.event(EventReason::RolloutResumed, "Rollout is resumed (retry)");
        self.progressed = true;
    }

    /// Records the abort the first time it is seen: clears pauses, restarts the step counter (as
    /// Argo does, so a retry restarts the steps), stops running analysis.
    pub(crate) fn acknowledge_abort(&mut self) {
        if self.status.aborted_at.is_none() {
            self.status.aborted_at = Some(Time(self.now()));
            let message = format!("Rollout aborted update to revision {}", self.new_revision());
            self.event(EventReason::RolloutAborted, message);
            self.progressed = true;
        }
        self.status.pause_conditions.clear();
        self.status.controller_pause = None;
        self.status.promote_full = None;
        self.status.current_step_index = self.first_step();
        self.terminate_running_runs(|_| true);
    }

    /// Terminates every AnalysisRun still running that `stale` selects.
    pub(crate) fn terminate_running_runs(&mut self, stale: impl Fn(&AnalysisType) -> bool) {
        let names: Vec<String> = self
            .obs
            .analysis_runs
            .iter()
            .filter(|r| !r.phase.is_completed() && stale(&r.analysis_type))
            .map(|r| r.name.clone())
            .collect();
        names.into_iter().for_each(|name| self.terminate(name));
    }

    /// Terminates running AnalysisRuns of other revisions (an update replaced them).
    pub(crate) fn terminate_runs_of_other_revisions(&mut self) {
        let new_hash = self.new_hash();
        let names: Vec<String> = self
            .obs
            .analysis_runs
            .iter()
            .filter(|r| !r.phase.is_completed() && r.pod_template_hash != new_hash)
            .map(|r| r.name.clone())
            .collect();
        names.into_iter().for_each(|name| self.terminate(name));
    }

    fn terminate(&mut self, name: String) {
        let terminate = Action::TerminateAnalysisRun { name };
        if !self.actions.contains(&terminate) {
            self.actions.push(terminate);
        }
    }

    /// Brings the ReplicaSet of `hash` to `replicas` pods: creates it when it does not exist (only
    /// the current template's ReplicaSet is ever created), scales it otherwise, and removes a
    /// scale-down deadline it no longer needs.
    pub(crate) fn scale_to(&mut self, hash: &str, replicas: i32) {
        match self.obs.replica_set(hash) {
            Some(rs) => {
                if rs.scale_down_deadline.is_some() && replicas > 0 {
                    self.actions.push(Action::SetScaleDownDeadline {
                        name: rs.name.clone(),
                        at: None,
                    });
                }
                self.scale_existing(rs, replicas);
            }
            None if hash == self.new_hash() => self.create_new_replica_set(replicas),
            None => {}
        }
    }

    pub(crate) fn scale_existing(&mut self, rs: &ObservedReplicaSet, replicas: i32) {
        let scaling = Action::ScaleReplicaSet {
            name: rs.name.clone(),
            replicas,
        };
        if rs.spec_replicas == replicas || self.actions.contains(&scaling) {
            return;
        }
        self.actions.push(scaling);
        self.event(
            EventReason::ScalingReplicaSet,
            format!(
                "Scaled ReplicaSet {} (revision {}) from {} to {replicas}",
                rs.name, rs.revision, rs.spec_replicas
            ),
        );
        self.progressed = true;
    }

    fn create_new_replica_set(&mut self, replicas: i32) {
        let hash = self.new_hash().to_string();
        let name = format!("{}-{hash}", self.obs.name());
        let revision = self.new_revision();
        let ephemeral_metadata = pod_metadata::for_new_replica_set(self);
        let anti_affinity = anti_affinity::for_new_replica_set(self);
        self.actions.push(Action::CreateReplicaSet {
            name: name.clone(),
            hash,
            revision,
            replicas,
            ephemeral_metadata,
            anti_affinity,
        });
        self.event(
            EventReason::NewReplicaSetCreated,
            format!("Created ReplicaSet {name} (revision {revision}) with size {replicas}"),
        );
        if replicas > 0 {
            self.event(
                EventReason::ScalingReplicaSet,
                format!("Scaled up ReplicaSet {name} (revision {revision}) from 0 to {replicas}"),
            );
        }
        self.progressed = true;
    }

    /// Scales an old ReplicaSet down once `delay_seconds` have passed, keeping the deadline in the
    /// ReplicaSet's annotation so that a restarted controller waits the same time. `None` keeps it
    /// running (an `abortScaleDownDelaySeconds` of 0); `Some(0)` scales it down at once.
    pub(crate) fn scale_down_after(&mut self, rs: &ObservedReplicaSet, delay_seconds: Option<i32>) {
        let Some(delay_seconds) = delay_seconds else {
            return;
        };
        if rs.spec_replicas == 0 {
            if rs.scale_down_deadline.is_some() {
                self.actions.push(Action::SetScaleDownDeadline {
                    name: rs.name.clone(),
                    at: None,
                });
            }
            return;
        }
        let delay = Duration::from_secs(u64::try_from(delay_seconds).unwrap_or(0));
        if delay.is_zero() {
            self.scale_existing(rs, 0);
            return;
        }
        let now = self.now();
        match rs.scale_down_deadline {
            None => {
                let at = now.checked_add(delay).unwrap_or(now);
                self.actions.push(Action::SetScaleDownDeadline {
                    name: rs.name.clone(),
                    at: Some(at),
                });
                self.requeue_within(delay);
            }
            Some(at) if now >= at => {
                self.scale_existing(rs, 0);
                self.actions.push(Action::SetScaleDownDeadline {
                    name: rs.name.clone(),
                    at: None,
                });
            }
            Some(at) => self.requeue_within(until(now, at)),
        }
    }

    /// Every revision but `keep` scaled down: one already waiting for its scale-down deadline
    /// keeps waiting, others wait `delay_seconds` from now (0: go at once); but at most the spec's
    /// `scaleDownDelayRevisionLimit` of them (the newest) wait at once, older ones go now. This is
    /// Argo's `scaleDownDelayHelper`.
    pub(crate) fn scale_down_others_after(&mut self, keep: &[&str], delay_seconds: i32) {
        let limit = self.spec().scale_down_delay_revision_limit();
        let mut waiting = 0;
        // Newest first.
        for rs in self.other_replica_sets(keep) {
            let waits =
                rs.spec_replicas > 0 && (rs.scale_down_deadline.is_some() || delay_seconds > 0);
            if waits {
                waiting += 1;
            }
            let over_limit = limit.is_some_and(|limit| waiting > limit);
            if waits && !over_limit {
                // Its deadline, once set, is kept whatever the delay now.
                self.scale_down_after(rs, Some(delay_seconds.max(1)));
            } else {
                self.scale_down_after(rs, Some(0));
            }
        }
    }

    /// Points `service` at `hash` when it does not already, and only when that revision has ready
    /// pods: a Service never selects a revision that cannot serve.
    pub(crate) fn select(&mut self, service: Option<&str>, hash: &str) {
        let Some(service) = service else {
            return;
        };
        let switching = Action::SetServiceSelector {
            service: service.to_string(),
            hash: hash.to_string(),
        };
        if self.obs.service_hash(service) == Some(hash) || self.actions.contains(&switching) {
            return;
        }
        let ready = self
            .obs
            .replica_set(hash)
            .is_some_and(|rs| rs.ready_replicas > 0);
        if ready {
            self.actions.push(switching);
        }
    }

    /// ReplicaSets of neither `keep` hash.
    pub(crate) fn other_replica_sets(&self, keep: &[&str]) -> Vec<&'a ObservedReplicaSet> {
        let mut others: Vec<&ObservedReplicaSet> = self
            .obs
            .replica_sets
            .iter()
            .filter(|rs| !keep.contains(&rs.pod_template_hash.as_str()))
            .collect();
        others.sort_by_key(|rs| std::cmp::Reverse(rs.revision));
        others
    }

    /// A pause the controller holds until `duration` has passed (when given) or until the user
    /// promotes (clears `pauseConditions` while `controllerPause` is set).
    pub(crate) fn pause_gate(&mut self, reason: PauseReason, duration: Option<Duration>) -> Gate {
        let now = self.now();
        if let Some(condition) = self
            .status
            .pause_conditions
            .iter()
            .find(|c| c.reason == reason)
        {
            let Some(duration) = duration else {
                return Gate::Wait;
            };
            // A pause too long to represent (or starting at a hand-written time near the end of
            // time) lasts until promoted; it never ends at once.
            let ends = condition
                .start_time
                .0
                .checked_add(duration)
                .unwrap_or(Timestamp::MAX);
            if now < ends {
                self.requeue_within(until(now, ends));
                return Gate::Wait;
            }
            self.status.pause_conditions.retain(|c| c.reason != reason);
            if self.status.pause_conditions.is_empty() {
                self.status.controller_pause = None;
            }
            self.event(
                EventReason::RolloutResumed,
                "Rollout is resumed (pause ended)",
            );
            return Gate::Pass;
        }
        if self.status.controller_pause() && self.status.pause_conditions.is_empty() {
            // The user promoted: the condition the controller added is gone.
            self.status.controller_pause = None;
            self.event(EventReason::RolloutResumed, "Rollout is resumed (promoted)");
            return Gate::Pass;
        }
        self.status.pause_conditions.push(PauseCondition {
            reason,
            start_time: Time(now),
        });
        self.status.controller_pause = Some(true);
        self.event(
            EventReason::RolloutPaused,
            format!("Rollout is paused ({reason:?})"),
        );
        if let Some(duration) = duration {
            self.requeue_within(duration);
        }
        Gate::Wait
    }

    /// Runs (or keeps waiting on) the analysis tracked in `slot` for the current revision. The run
    /// is created once: the status records its name, and a run of this revision, type and step
    /// that is still running is adopted rather than duplicated (R10).
    pub(crate) fn analysis_gate(
        &mut self,
        slot: RunSlot,
        step_index: Option<i32>,
        analysis: &RolloutAnalysis,
    ) -> Verdict {
        let analysis_type = slot.analysis_type();
        let new_hash = self.new_hash();
        let matches = |r: &&crate::rollout::observed::ObservedAnalysisRun| {
            r.analysis_type == analysis_type
                && r.step_index == step_index
                && r.pod_template_hash == new_hash
        };
        let tracked = slot.get(&self.status).map(|s| s.name.clone());
        let observed = match &tracked {
            Some(name) => self.obs.analysis_run(name).filter(matches),
            None => self
                .obs
                .analysis_runs
                .iter()
                .filter(matches)
                .find(|r| !r.phase.is_completed()),
        };
        if let Some(run) = observed {
            slot.set(
                &mut self.status,
                Some(RolloutAnalysisRunStatus {
                    name: run.name.clone(),
                    status: run.phase,
                    message: run.message.clone(),
                }),
            );
            return verdict(run.phase);
        }
        let name = match &tracked {
            // Named by the status an earlier reconcile wrote, and not in the cache: either not
            // there yet or its create failed after that write; creating it again is a no-op in
            // the first case and heals the second.
            Some(name) if self.obs.analysis_run(name).is_none() => name.clone(),
            _ => self.free_run_name(analysis_type, step_index),
        };
        let created = tracked.as_deref() != Some(name.as_str());
        self.actions.push(Action::CreateAnalysisRun {
            name: name.clone(),
            analysis_type,
            step_index,
            analysis: analysis.clone(),
            pod_template_hash: new_hash.to_string(),
        });
        if created {
            self.event(
                EventReason::AnalysisRunCreated,
                format!("Created {} AnalysisRun {name}", analysis_type.label()),
            );
        }
        slot.set(
            &mut self.status,
            Some(RolloutAnalysisRunStatus {
                name,
                status: AnalysisPhase::Pending,
                message: None,
            }),
        );
        Verdict::Running
    }

    /// Argo's AnalysisRun names (`<rollout>-<hash>-<revision>[-<step>|-pre|-post]`), with a `.N`
    /// suffix when an earlier attempt (before a retry) holds the name.
    fn free_run_name(&self, analysis_type: AnalysisType, step_index: Option<i32>) -> String {
        let suffix = match (analysis_type, step_index) {
            (AnalysisType::Step, Some(i)) => format!("-{i}"),
            (AnalysisType::PrePromotion, _) => "-pre".to_string(),
            (AnalysisType::PostPromotion, _) => "-post".to_string(),
            _ => String::new(),
        };
        let base = format!(
            "{}-{}-{}{suffix}",
            self.obs.name(),
            self.new_hash(),
            self.new_revision()
        );
        let taken = |name: &str| self.obs.analysis_runs.iter().any(|r| r.name == name);
        if !taken(&base) {
            return base;
        }
        (1..)
            .map(|n| format!("{base}.{n}"))
            .find(|name| !taken(name))
            .unwrap_or(base)
    }

    /// R5: old ReplicaSets at 0 replicas beyond `revisionHistoryLimit` are deleted, oldest first.
    fn delete_beyond_history_limit(&mut self) {
        let limit = usize::try_from(self.spec().revision_history_limit()).unwrap_or(0);
        let mut keep: Vec<&str> = vec![self.new_hash()];
        if let Some(stable) = self.status.stable_rs.as_deref() {
            keep.push(stable);
        }
        if let Some(active) = self
            .status
            .blue_green
            .as_ref()
            .and_then(|b| b.active_selector.as_deref())
        {
            keep.push(active);
        }
        let idle: Vec<&ObservedReplicaSet> = self
            .other_replica_sets(&keep)
            .into_iter()
            .filter(|rs| rs.spec_replicas == 0 && rs.replicas == 0)
            .collect();
        let scaling_now: Vec<String> = self
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::ScaleReplicaSet { name, .. } => Some(name.clone()),
                _ => None,
            })
            .collect();
        for rs in idle.into_iter().skip(limit) {
            if !scaling_now.contains(&rs.name) {
                self.actions.push(Action::DeleteReplicaSet {
                    name: rs.name.clone(),
                });
            }
        }
    }

    /// Argo's AnalysisRun history (`spec.analysis`): of the finished runs the status no longer
    /// points at, the newest `successfulRunHistoryLimit` Successful and `unsuccessfulRunHistoryLimit`
    /// Failed/Error/Inconclusive ones are kept; older ones, and those of a revision whose ReplicaSet
    /// is gone, are deleted. Runs still measuring are never deleted here.
    fn delete_old_analysis_runs(&mut self) {
        let (mut successful, mut unsuccessful) =
            AnalysisRunStrategy::limits(self.spec().analysis.as_ref());
        let current = [&self.status, &self.old]
            .into_iter()
            .flat_map(current_run_names)
            .collect::<Vec<String>>();
        let mut finished: Vec<&ObservedAnalysisRun> = self
            .obs
            .analysis_runs
            .iter()
            .filter(|run| run.phase.is_completed() && !current.contains(&run.name))
            .collect();
        // Newest first; the name breaks ties so the plan does not depend on the cache's order.
        finished.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.name.cmp(&b.name)));
        let mut delete = Vec::new();
        for run in finished {
            let revision_gone = self.obs.replica_set(&run.pod_template_hash).is_none();
            let budget = match run.phase {
                AnalysisPhase::Successful => &mut successful,
                _ => &mut unsuccessful,
            };
            if revision_gone || *budget == 0 {
                delete.push(run.name.clone());
            } else {
                *budget -= 1;
            }
        }
        self.actions.extend(
            delete
                .into_iter()
                .map(|name| Action::DeleteAnalysisRun { name }),
        );
    }

    /// The hand-off: records the Git commit that introduced the current revision, and forgets
    /// revisions whose ReplicaSet is gone.
    fn record_revision(&mut self) {
        let hash = self.new_hash().to_string();
        let deleted: Vec<String> = self
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::DeleteReplicaSet { name } => Some(name.clone()),
                _ => None,
            })
            .collect();
        let obs = self.obs;
        self.status.revisions.retain(|r| {
            r.pod_template_hash == hash
                || obs
                    .replica_set(&r.pod_template_hash)
                    .is_some_and(|rs| !deleted.contains(&rs.name))
        });
        let revision = self.new_revision();
        if let Some(record) = self
            .status
            .revisions
            .iter_mut()
            .find(|r| r.pod_template_hash == hash)
        {
            if record.revision != revision {
                record.revision = revision;
                self.status.revisions.sort_by_key(|r| r.revision);
            }
            return;
        }
        // The GitOps apply stamps annotations (`<ns>/<name>` is no valid label value); labels
        // are read too, for Rollouts applied by other tools that label them.
        let meta = &self.obs.rollout.metadata;
        let stamp = |key: &str| {
            meta.annotations
                .as_ref()
                .and_then(|a| a.get(key))
                .or_else(|| meta.labels.as_ref().and_then(|l| l.get(key)))
                .cloned()
        };
        self.status.revisions.push(RevisionRecord {
            pod_template_hash: hash,
            revision: self.new_revision(),
            git_revision: stamp(GIT_REVISION_ANNOTATION),
            application: stamp(APPLICATION_ANNOTATION),
        });
        self.status.revisions.sort_by_key(|r| r.revision);
    }

    /// R9: the Deployment a `workloadRef` names is scaled down per `scaleDown`: `never` leaves it,
    /// `onsuccess` scales it to 0 once the Rollout is Healthy, `progressively` takes away one of its
    /// pods for each available pod of the Rollout.
    fn scale_down_workload(&mut self) {
        let (Some(workload_ref), Some(workload)) = (
            self.spec().workload_ref.as_ref(),
            self.obs.workload.as_ref(),
        ) else {
            return;
        };
        let target = match workload_ref.scale_down() {
            ScaleDown::Never => return,
            ScaleDown::OnSuccess if self.status.phase == Some(RolloutPhase::Healthy) => 0,
            ScaleDown::OnSuccess => return,
            ScaleDown::Progressively => {
                let available = self.status.available_replicas.unwrap_or(0);
                (self.replicas().saturating_sub(available)).clamp(0, workload.spec_replicas.max(0))
            }
        };
        if target != workload.spec_replicas {
            self.actions.push(Action::ScaleWorkload {
                name: workload.name.clone(),
                replicas: target,
            });
        }
    }

    /// Pod counts, from the ReplicaSets as observed.
    fn fill_counts(&mut self) {
        let sets = &self.obs.replica_sets;
        // Saturating: two revisions of `replicas: 2147483647` overflow an i32 sum.
        let sum = |f: fn(&ObservedReplicaSet) -> i32| {
            sets.iter()
                .map(|rs| f(rs).max(0))
                .fold(0i32, i32::saturating_add)
        };
        let new = self.obs.new_replica_set();
        self.status.replicas = Some(sum(|rs| rs.replicas));
        self.status.updated_replicas = Some(new.map_or(0, |rs| rs.replicas));
        self.status.ready_replicas = Some(sum(|rs| rs.ready_replicas));
        self.status.available_replicas = Some(sum(|rs| rs.available_replicas));
        self.fill_scale_status();
        self.status.observed_generation = Some(self.obs.generation().to_string());
    }

    /// `status.HPAReplicas` and `status.selector`, the scale subresource (as Argo): a canary counts
    /// every pod of the Rollout's selector; a blue-green Rollout only the pods of the active
    /// revision, once there is one.
    fn fill_scale_status(&mut self) {
        let selector = self.spec().selector.as_ref();
        let active = self
            .spec()
            .blue_green()
            .and(self.status.blue_green.as_ref())
            .and_then(|b| b.active_selector.as_deref())
            .and_then(|hash| self.obs.replica_set(hash));
        match active {
            Some(rs) => {
                let mut labels = selector
                    .and_then(|s| s.match_labels.clone())
                    .unwrap_or_default();
                labels.insert(
                    POD_TEMPLATE_HASH_LABEL.to_string(),
                    rs.pod_template_hash.clone(),
                );
                let with_hash = LabelSelector {
                    match_labels: Some(labels),
                    match_expressions: selector.and_then(|s| s.match_expressions.clone()),
                };
                self.status.hpa_replicas = Some(rs.replicas);
                self.status.selector = Some(format_label_selector(&with_hash));
            }
            None => {
                self.status.hpa_replicas = self.status.replicas;
                self.status.selector = selector.map(format_label_selector);
            }
        }
    }
}

/// A label selector in the string form `kubectl` and the HPA read (Kubernetes'
/// `metav1.FormatLabelSelector`): requirements sorted by key, `key=value`, `key in (a,b)`,
/// `key notin (a,b)`, `key`, `!key`; `<none>` for a selector without requirements.
pub fn format_label_selector(selector: &LabelSelector) -> String {
    let mut requirements: Vec<(String, String)> = Vec::new();
    for (key, value) in selector.match_labels.iter().flatten() {
        requirements.push((key.clone(), format!("{key}={value}")));
    }
    for expression in selector.match_expressions.iter().flatten() {
        let key = &expression.key;
        let mut values = expression.values.clone().unwrap_or_default();
        values.sort();
        values.dedup();
        let text = match expression.operator.as_str() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.clone(),
            "DoesNotExist" => format!("!{key}"),
            other => format!("{key} {other} ({})", values.join(",")),
        };
        requirements.push((key.clone(), text));
    }
    // Stable, as Kubernetes' sort by key.
    requirements.sort_by(|a, b| a.0.cmp(&b.0));
    if requirements.is_empty() {
        return "<none>".to_string();
    }
    requirements
        .into_iter()
        .map(|(_, text)| text)
        .collect::<Vec<_>>()
        .join(",")
}

/// R1b: checks what the API server checks in a pod template and the CRD schema cannot (resource
/// quantities are plain strings to the schema).
pub fn validate_template(spec: &RolloutSpec) -> Result<(), TemplateError> {
    let Some(pod) = spec.template.as_ref().and_then(|t| t.spec.as_ref()) else {
        return Ok(());
    };
    let groups = [
        ("containers", pod.containers.as_slice()),
        (
            "initContainers",
            pod.init_containers.as_deref().unwrap_or_default(),
        ),
    ];
    for (containers, list) in groups {
        for container in list {
            let Some(resources) = &container.resources else {
                continue;
            };
            for (kind, values) in [
                ("requests", &resources.requests),
                ("limits", &resources.limits),
            ] {
                for (resource, quantity) in values.iter().flatten() {
                    if !is_quantity(&quantity.0) {
                        return Err(TemplateError::InvalidQuantity {
                            containers,
                            container: container.name.clone(),
                            kind,
                            resource: resource.clone(),
                            value: quantity.0.clone(),
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

/// Kubernetes' quantity grammar: a signed decimal number, then an optional binary suffix (`Ki` …
/// `Ei`), decimal suffix (`n`, `u`, `m`, `k`, `M` … `E`) or exponent (`e3`, `E-2`).
fn is_quantity(text: &str) -> bool {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let number_end = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(number_end);
    let digits = number.chars().filter(char::is_ascii_digit).count();
    let valid_number = digits > 0 && number.matches('.').count() <= 1;
    const SUFFIXES: [&str; 15] = [
        "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P",
    ];
    let valid_suffix = SUFFIXES.contains(&suffix) || suffix == "E" || is_exponent(suffix);
    valid_number && valid_suffix
}

fn is_exponent(suffix: &str) -> bool {
    let Some(rest) = suffix.strip_prefix(['e', 'E']) else {
        return false;
    };
    let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn verdict(phase: AnalysisPhase) -> Verdict {
    match phase {
        AnalysisPhase::Successful => Verdict::Successful,
        AnalysisPhase::Failed | AnalysisPhase::Error => Verdict::Failed,
        AnalysisPhase::Inconclusive => Verdict::Inconclusive,
        AnalysisPhase::Pending | AnalysisPhase::Running => Verdict::Running,
    }
}

/// Time from `now` to `at`, zero when `at` has passed.
pub(crate) fn until(now: Timestamp, at: Timestamp) -> Duration {
    let millis = at.as_millisecond().saturating_sub(now.as_millisecond());
    Duration::from_millis(u64::try_from(millis).unwrap_or(0))
}

/// The planner's tests use the simulator under their old name.
#[cfg(test)]
pub(crate) mod testkit {
    pub use crate::rollout::simulate::*;
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::testkit::*;
    use super::*;
    use crate::api::rollout::{RolloutAnalysisBackground, RolloutPhase, WorkloadRef};
    use crate::rollout::action::Action;
    use crate::rollout::phase::{PROGRESS_DEADLINE_EXCEEDED, PROGRESSING};

    fn condition<'s>(status: &'s RolloutStatus, type_: &str) -> &'s crate::api::common::Condition {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap_or_else(|| panic!("no {type_} condition in {:#?}", status.conditions))
    }

    #[test]
    fn r1_a_missing_template_is_invalid_spec_until_it_exists_then_the_rollout_deploys() {
        let mut obs = observed(canary(2, vec![weight(50), analysis_step("later")]));
        obs.templates.clear();
        let p = plan(&obs);
        assert_eq!(p.changes().count(), 0);
        assert_eq!(p.status.phase, Some(RolloutPhase::Degraded));
        let invalid = condition(&p.status, "InvalidSpec");
        assert_eq!(
            invalid.message.as_deref(),
            Some(
                "spec.strategy.canary.steps[1].analysis.templates[0].templateName: \
                 AnalysisTemplate \"later\" not found"
            )
        );
        apply(&mut obs, &p);
        settle(&mut obs);
        assert_eq!(phase(&obs), RolloutPhase::Healthy);
        assert!(
            !status(&obs)
                .conditions
                .iter()
                .any(|c| c.type_ == "InvalidSpec")
        );
    }

    #[test]
    fn r1_an_unimplemented_argo_field_is_invalid_spec_naming_it() {
        let mut rollout = canary(2, vec![weight(50)]);
        canary_spec(&mut rollout).traffic_routing = Some(crate::api::rollout::TrafficRouting {
            alb: Some(serde_json::json!({"ingress": "web", "servicePort": 80})),
            ..Default::default()
        });
        let p = plan(&observed(rollout));
        assert_eq!(p.changes().count(), 0);
        assert_eq!(
            condition(&p.status, "InvalidSpec").message.as_deref(),
            Some(
                "spec.strategy.canary.trafficRouting.alb is not supported by Sluice \
                 (an Argo field it does not implement)"
            )
        );
    }

    #[test]
    fn r5_finished_analysis_runs_beyond_the_history_limits_are_deleted_newest_kept() {
        let mut rollout = canary(2, vec![analysis_step("t"), weight(50)]);
        rollout.spec.analysis = Some(crate::api::rollout::AnalysisRunStrategy {
            successful_run_history_limit: Some(1),
            unsuccessful_run_history_limit: Some(0),
        });
        let mut obs = deployed(rollout);
        let mut runs = Vec::new();
        for hash in ["h2", "h3", "h4"] {
            update(&mut obs, hash);
            settle(&mut obs);
            runs.push(obs.analysis_runs.last().unwrap().name.clone());
            advance(&mut obs, 10);
            finish_run(&mut obs, AnalysisType::Step, AnalysisPhase::Successful);
            settle(&mut obs);
            assert_eq!(phase(&obs), RolloutPhase::Healthy, "{hash}");
        }
        // h2's and h3's ReplicaSets are kept (revisionHistoryLimit 10): only the limit removes runs;
        // the newest finished run the status no longer points at stays.
        let names: Vec<&str> = obs.analysis_runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, vec![runs[2].as_str()], "{runs:?}");

        // A failed run the status points at is kept even with a limit of 0; a newer update with
        // the failed revision's ReplicaSet gone removes it.
        update(&mut obs, "h5");
        settle(&mut obs);
        finish_run(&mut obs, AnalysisType::Step, AnalysisPhase::Failed);
        settle(&mut obs);
        assert_eq!(phase(&obs), RolloutPhase::Degraded);
        let failed = obs
            .analysis_runs
            .iter()
            .find(|r| r.phase == AnalysisPhase::Failed)
            .map(|r| r.name.clone())
            .unwrap();
        assert!(plan(&obs).changes().all(|a| *a
            != Action::DeleteAnalysisRun {
                name: failed.clone()
            }));
    }

    #[test]
    fn r1_template_and_workload_ref_both_set_is_invalid_spec_degraded_and_nothing_scaled() {
        let mut rollout = canary(3, vec![weight(50)]);
        rollout.spec.workload_ref = Some(WorkloadRef {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: "web".into(),
            scale_down: None,
        });
        let mut obs = observed(rollout);
        let p = step(&mut obs);
        assert_eq!(p.changes().count(), 0);
        assert_eq!(p.event_reasons(), vec![EventReason::InvalidSpec]);
        assert_eq!(p.status.phase, Some(RolloutPhase::Degraded));
        assert!(
            p.status
                .message
                .as_deref()
                .unwrap()
                .starts_with("InvalidSpec: ")
        );
        let invalid = condition(&p.status, "InvalidSpec");
        assert_eq!(invalid.status.as_deref(), Some("True"));
        assert!(invalid.message.as_deref().unwrap().contains("workloadRef"));
        // Reported once, and the status does not churn.
        advance(&mut obs, 60);
        let again = plan(&obs);
        assert!(again.actions.is_empty());
        assert_eq!(again.status, p.status);
    }

    #[test]
    fn r1b_a_pod_template_the_api_server_would_refuse_is_invalid_spec_with_the_reason() {
        use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements};
        use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
        for (value, valid) in [
            ("invalid", false),
            ("1.2.3", false),
            ("Mi", false),
            ("128Mi", true),
            ("0.5", true),
            ("500m", true),
            ("1e3", true),
            ("2G", true),
            ("-1", true),
        ] {
            let mut rollout = canary(1, vec![]);
            rollout.spec.template.as_mut().unwrap().spec = Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    resources: Some(ResourceRequirements {
                        requests: Some([("memory".to_string(), Quantity(value.into()))].into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            });
            let p = plan(&observed(rollout));
            if valid {
                assert_eq!(p.status.phase, Some(RolloutPhase::Progressing), "{value}");
                continue;
            }
            assert_eq!(p.changes().count(), 0, "{value}");
            assert_eq!(p.status.phase, Some(RolloutPhase::Degraded));
            assert_eq!(
                p.status.message.as_deref(),
                Some(
                    format!(
                        "InvalidSpec: spec.template.spec.containers[app].resources.requests.memory: \
                         invalid quantity {value:?}"
                    )
                    .as_str()
                ),
            );
        }
    }

    #[test]
    fn r2_first_deploy_has_no_steps_or_analysis_and_scales_stable_to_replicas() {
        let mut rollout = canary(3, vec![weight(20), analysis_step("t"), pause()]);
        canary_spec(&mut rollout).analysis = Some(RolloutAnalysisBackground {
            analysis: analysis("t"),
            starting_step: None,
        });
        let mut obs = observed(rollout);
        let plans = settle(&mut obs);
        assert_eq!(
            plans[0].actions[0],
            Action::CreateReplicaSet {
                name: "web-h1".into(),
                hash: "h1".into(),
                revision: 1,
                replicas: 3,
                ephemeral_metadata: None,
                anti_affinity: None,
            }
        );
        assert_eq!(creates(&plans).len(), 1, "no AnalysisRun");
        let s = status(&obs);
        assert_eq!(s.phase, Some(RolloutPhase::Healthy));
        assert_eq!(s.stable_rs.as_deref(), Some("h1"));
        assert_eq!(s.current_step_index, Some(3));
        assert!(s.pause_conditions.is_empty());
        assert_eq!(s.observed_generation.as_deref(), Some("1"));
        assert_eq!(s.available_replicas, Some(3));
    }

    #[test]
    fn r2_first_deploy_defaults_to_one_replica_and_blue_green_too() {
        let mut rollout = canary(1, vec![]);
        rollout.spec.replicas = None;
        let obs = deployed(rollout);
        assert_eq!(spec_replicas(&obs, "h1"), 1);
        let obs = deployed(blue_green(2));
        assert_eq!(spec_replicas(&obs, "h1"), 2);
        assert_eq!(obs.service_hash("web-active"), Some("h1"));
    }

    #[test]
    fn r3_a_template_change_creates_exactly_one_replica_set_with_the_next_revision() {
        let mut obs = deployed(canary(2, vec![weight(50), pause()]));
        update(&mut obs, "h2");
        let p = step(&mut obs);
        let created: Vec<_> = creates(std::slice::from_ref(&p));
        assert_eq!(
            created,
            vec![&Action::CreateReplicaSet {
                name: "web-h2".into(),
                hash: "h2".into(),
                revision: 2,
                replicas: 1,
                ephemeral_metadata: None,
                anti_affinity: None,
            }]
        );
        assert_eq!(
            p.event_reasons()[..2],
            [
                EventReason::RolloutUpdated,
                EventReason::NewReplicaSetCreated
            ]
        );
        // Planning again after the create, before and after pods are ready: no second create.
        assert!(creates(&[plan(&obs)]).is_empty());
        pods_ready(&mut obs);
        assert!(creates(&settle(&mut obs)).is_empty());
        let record = status(&obs).revision_for_hash("h2").cloned().unwrap();
        assert_eq!(record.revision, 2);
    }

    #[test]
    fn r3_revision_records_the_git_commit_of_the_rollout() {
        let mut rollout = canary(1, vec![]);
        rollout.metadata.labels = Some(
            [
                (GIT_REVISION_ANNOTATION.to_string(), "a".repeat(40)),
                (APPLICATION_ANNOTATION.to_string(), "shop/web".to_string()),
            ]
            .into(),
        );
        let obs = deployed(rollout);
        let record = status(&obs).revision_for_hash("h1").cloned().unwrap();
        assert_eq!(record.git_revision, Some("a".repeat(40)));
        assert_eq!(record.application.as_deref(), Some("shop/web"));
    }

    #[test]
    fn r5_old_replica_sets_kept_at_zero_up_to_the_history_limit_older_deleted() {
        let mut rollout = canary(2, vec![]);
        rollout.spec.revision_history_limit = Some(1);
        let mut obs = deployed(rollout);
        for hash in ["h2", "h3", "h4"] {
            update(&mut obs, hash);
            settle(&mut obs);
        }
        let mut left: Vec<(&str, i32)> = obs
            .replica_sets
            .iter()
            .map(|rs| (rs.pod_template_hash.as_str(), rs.spec_replicas))
            .collect();
        left.sort();
        assert_eq!(left, vec![("h3", 0), ("h4", 2)]);
        let hashes: Vec<_> = status(&obs)
            .revisions
            .iter()
            .map(|r| r.pod_template_hash.clone())
            .collect();
        assert_eq!(hashes, vec!["h3", "h4"]);
    }

    #[test]
    fn r6_progress_deadline_exceeded_sets_the_condition_and_degraded() {
        let mut obs = deployed(canary(2, vec![weight(50), pause()]));
        update(&mut obs, "h2");
        step(&mut obs);
        step(&mut obs); // the new ReplicaSet is observed; its pods never become ready
        advance(&mut obs, 600);
        assert_eq!(step(&mut obs).status.phase, Some(RolloutPhase::Progressing));
        advance(&mut obs, 1);
        let p = step(&mut obs);
        assert_eq!(p.status.phase, Some(RolloutPhase::Degraded));
        let progressing = condition(&p.status, PROGRESSING);
        assert_eq!(
            progressing.reason.as_deref(),
            Some(PROGRESS_DEADLINE_EXCEEDED)
        );
        assert_eq!(progressing.status.as_deref(), Some("False"));
        assert!(
            p.event_reasons()
                .contains(&EventReason::ProgressDeadlineExceeded)
        );
        assert!(
            !p.status.aborted(),
            "no abort without progressDeadlineAbort"
        );
        // It stays exceeded without churn, and clears on progress.
        advance(&mut obs, 10);
        let again = plan(&obs);
        assert_eq!(again.status.phase, Some(RolloutPhase::Degraded));
        assert!(again.event_reasons().is_empty());
        pods_ready(&mut obs);
        assert_eq!(plan(&obs).status.phase, Some(RolloutPhase::Progressing));
    }

    #[test]
    fn r6_progress_deadline_is_not_counted_while_paused() {
        let mut obs = deployed(canary(2, vec![weight(50), pause(), weight(100)]));
        update(&mut obs, "h2");
        settle(&mut obs);
        assert_eq!(phase(&obs), RolloutPhase::Paused);
        advance(&mut obs, 3600);
        assert_eq!(plan(&obs).status.phase, Some(RolloutPhase::Paused));
        user_promotes(&mut obs);
        step(&mut obs); // resumed: the clock starts now
        advance(&mut obs, 599);
        assert_eq!(step(&mut obs).status.phase, Some(RolloutPhase::Progressing));
    }

    #[test]
    fn r6_progress_deadline_is_not_counted_while_a_step_analysis_runs() {
        let mut obs = deployed(canary(2, vec![weight(50), analysis_step("t"), pause()]));
        update(&mut obs, "h2");
        settle(&mut obs);
        assert_eq!(status(&obs).current_step_index, Some(1));
        advance(&mut obs, 3600);
        let p = step(&mut obs);
        assert_eq!(p.status.phase, Some(RolloutPhase::Progressing));
        finish_run(
            &mut obs,
            AnalysisType::Step,
            crate::api::analysis::AnalysisPhase::Successful,
        );
        settle(&mut obs);
        assert_eq!(phase(&obs), RolloutPhase::Paused);
    }

    #[test]
    fn r6_progress_deadline_abort_aborts() {
        let mut rollout = canary_with_router(2, vec![weight(50), pause()]);
        rollout.spec.progress_deadline_abort = Some(true);
        rollout.spec.progress_deadline_seconds = Some(60);
        let mut obs = deployed(rollout);
        update(&mut obs, "h2");
        step(&mut obs);
        step(&mut obs);
        advance(&mut obs, 61);
        let p = step(&mut obs);
        assert!(p.status.aborted());
        assert_eq!(p.status.phase, Some(RolloutPhase::Degraded));
        assert!(p.event_reasons().contains(&EventReason::RolloutAborted));
    }

    #[test]
    fn r7_template_back_to_stable_is_healthy_at_once_without_steps_or_analysis() {
        for abort_first in [false, true] {
            let mut obs = deployed(canary_with_router(
                2,
                vec![weight(50), analysis_step("t"), pause()],
            ));
            update(&mut obs, "h2");
            settle(&mut obs);
            if abort_first {
                edit_status(&mut obs, |s| s.abort = Some(true));
                settle(&mut obs);
            }
            let runs_before = obs.analysis_runs.len();
            update(&mut obs, "h1");
            let p = step(&mut obs);
            assert_eq!(
                p.status.phase,
                Some(RolloutPhase::Healthy),
                "abort first: {abort_first}"
            );
            assert_eq!(p.status.current_step_index, Some(3));
            assert!(!p.status.aborted());
            assert!(creates(std::slice::from_ref(&p)).is_empty());
            let plans = settle(&mut obs);
            assert!(creates(&plans).is_empty());
            assert_eq!(obs.analysis_runs.len(), runs_before);
            assert_eq!(phase(&obs), RolloutPhase::Healthy);
            assert_eq!(obs.service_hash("web-canary"), Some("h1"));
        }
    }

    #[test]
    fn r8_update_during_a_paused_canary_scales_the_in_between_down_and_restarts_steps() {
        let mut obs = deployed(canary_with_router(
            4,
            vec![weight(25), pause(), weight(50), pause()],
        ));
        update(&mut obs, "h2");
        settle(&mut obs);
        user_promotes(&mut obs);
        settle(&mut obs);
        assert_eq!(status(&obs).current_step_index, Some(3));
        update(&mut obs, "h3");
        let p = step(&mut obs);
        assert_eq!(p.status.current_step_index, Some(0));
        assert!(p.status.pause_conditions.is_empty() || p.status.pause_conditions.len() == 1);
        assert_eq!(
            weight_action(&p),
            Some(0),
            "no traffic to the replaced revision"
        );
        assert_eq!(spec_replicas(&obs, "h2"), 0);
        assert_eq!(obs.service_hash("web-canary"), Some("h1"));
        settle(&mut obs);
        let s = status(&obs);
        assert_eq!(s.current_step_index, Some(1));
        assert_eq!(spec_replicas(&obs, "h3"), 1);
        assert_eq!(s.stable_rs.as_deref(), Some("h1"));
    }

    #[test]
    fn r9_workload_ref_scale_down_never_onsuccess_progressively() {
        use crate::api::rollout::ScaleDown;
        use crate::rollout::observed::ObservedWorkload;
        let run = |scale_down: ScaleDown| {
            let mut rollout = canary(4, vec![]);
            rollout.spec.template = None;
            rollout.spec.workload_ref = Some(WorkloadRef {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name: "web".into(),
                scale_down: Some(scale_down),
            });
            let mut obs = observed(rollout);
            obs.workload = Some(ObservedWorkload {
                name: "web".into(),
                spec_replicas: 4,
            });
            let first = step(&mut obs);
            let during: Vec<i32> = first
                .actions
                .iter()
                .filter_map(|a| match a {
                    Action::ScaleWorkload { replicas, .. } => Some(*replicas),
                    _ => None,
                })
                .collect();
            pods_ready(&mut obs);
            obs.replica_sets[0].available_replicas = 3;
            let partly = step(&mut obs);
            let partly = partly.actions.iter().find_map(|a| match a {
                Action::ScaleWorkload { replicas, .. } => Some(*replicas),
                _ => None,
            });
            pods_ready(&mut obs);
            settle(&mut obs);
            assert_eq!(phase(&obs), RolloutPhase::Healthy);
            (during, partly, obs.workload.unwrap().spec_replicas)
        };
        assert_eq!(run(ScaleDown::Never), (vec![], None, 4));
        assert_eq!(run(ScaleDown::OnSuccess), (vec![], None, 0));
        assert_eq!(run(ScaleDown::Progressively), (vec![], Some(1), 0));
    }

    #[test]
    fn r10_restart_at_any_point_replans_the_same_step_without_duplicates() {
        let mut rollout =
            canary_with_router(4, vec![weight(25), analysis_step("t"), pause(), weight(50)]);
        canary_spec(&mut rollout).analysis = Some(RolloutAnalysisBackground {
            analysis: analysis("bg"),
            starting_step: Some(1),
        });
        let mut obs = deployed(rollout);
        update(&mut obs, "h2");
        // Walk step by step; at each point a "restarted controller" (a fresh plan from the same
        // observation) must agree with the one that just ran, and after apply create nothing new.
        for _ in 0..12 {
            let p = step(&mut obs);
            let after = plan(&obs);
            assert!(
                creates(std::slice::from_ref(&after)).is_empty(),
                "{:#?}",
                after.actions
            );
            pods_ready(&mut obs);
            if p.status.current_step_index == Some(1)
                && obs
                    .analysis_runs
                    .iter()
                    .any(|r| r.analysis_type == AnalysisType::Step)
            {
                finish_run(
                    &mut obs,
                    AnalysisType::Step,
                    crate::api::analysis::AnalysisPhase::Successful,
                );
            }
        }
        assert_eq!(status(&obs).current_step_index, Some(2));
        assert_eq!(obs.analysis_runs.len(), 2, "{:#?}", obs.analysis_runs);
    }

    #[test]
    fn r10_a_run_recorded_in_status_but_not_in_the_cache_is_created_again_under_its_name() {
        let mut obs = deployed(canary(2, vec![analysis_step("t"), pause()]));
        update(&mut obs, "h2");
        let p = plan(&obs);
        assert_eq!(creates(std::slice::from_ref(&p)).len(), 2);
        let first = run_names(&p);
        // The status naming the run was written, but the watch cache has not seen the run (or
        // its create failed after the status write): the same name again, idempotent, no Event.
        apply(&mut obs, &p);
        obs.analysis_runs.clear();
        let again = plan(&obs);
        assert_eq!(run_names(&again), first);
        assert!(
            !again
                .event_reasons()
                .contains(&EventReason::AnalysisRunCreated)
        );
        assert_eq!(again.status, status(&obs));
    }

    #[test]
    fn r10_a_plan_from_a_status_the_cache_has_not_seen_yet_names_a_new_run_only_with_a_newer_status()
     {
        // The race the act step closes: the run finished before the Rollout status naming it
        // reached the cache. The plan from the stale status would create `<name>.1`; it must
        // carry a status change, whose write (with the stale resourceVersion) then conflicts
        // before any run is created (act creates runs after the status write).
        let mut obs = deployed(canary(2, vec![analysis_step("t"), pause()]));
        update(&mut obs, "h2");
        let stale = obs.rollout.clone();
        let p = step(&mut obs);
        assert_eq!(run_names(&p).len(), 1);
        finish_run(
            &mut obs,
            AnalysisType::Step,
            crate::api::analysis::AnalysisPhase::Successful,
        );
        obs.rollout = stale;
        let racing = plan(&obs);
        assert_eq!(run_names(&racing).len(), 1, "{:#?}", racing.actions);
        assert_ne!(Some(&racing.status), obs.rollout.status.as_ref());
    }

    fn run_names(p: &Plan) -> Vec<String> {
        p.actions
            .iter()
            .filter_map(|a| match a {
                Action::CreateAnalysisRun { name, .. } => Some(name.clone()),
                _ => None,
            })
            .collect()
    }
}
