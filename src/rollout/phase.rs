//! Phase, message and conditions of a Rollout (docs/behaviour.md R4, R6), pure.
//!
//! Conditions keep `lastTransitionTime` while their status stays the same and `lastUpdateTime` while
//! nothing about them changes, so a reconcile that changes nothing writes nothing. The one exception
//! is on purpose: `Progressing`'s `lastUpdateTime` is the start of the progress-deadline clock and
//! moves whenever the update makes progress (as in Argo).

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::analysis::AnalysisPhase;
use crate::api::common::Condition;
use crate::api::rollout::{Rollout, RolloutPhase, RolloutSpec, RolloutStatus};
use crate::rollout::action::{Action, Event, EventReason, Plan};
use crate::rollout::observed::Observed;
use crate::rollout::plan::{Ctx, RunSlot, until};

/// Condition types.
pub const PROGRESSING: &str = "Progressing";
pub const AVAILABLE: &str = "Available";
pub const PAUSED: &str = "Paused";
pub const HEALTHY: &str = "Healthy";
pub const COMPLETED: &str = "Completed";
pub const INVALID_SPEC: &str = "InvalidSpec";
/// Set when a reconcile of the Rollout panicked (a bug in Sluice); the next reconcile that plans
/// removes it.
pub const RECONCILE_ERROR: &str = "ReconcileError";
/// The `Progressing` reason (and Event reason) once the progress deadline has passed.
pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";

const REPLICA_SET_UPDATED: &str = "ReplicaSetUpdated";
const NEW_REPLICA_SET_AVAILABLE: &str = "NewReplicaSetAvailable";
const ROLLOUT_PAUSED: &str = "RolloutPaused";
const ROLLOUT_ABORTED: &str = "RolloutAborted";

/// What the phase rules need beyond the spec and status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PhaseFacts {
    /// Why the spec is invalid, when it is.
    pub invalid_spec: Option<String>,
    /// The progress deadline has passed (R6).
    pub deadline_exceeded: bool,
    /// Revision number of the current template's ReplicaSet, for messages.
    pub new_revision: i64,
    /// Name of the current template's ReplicaSet, for messages.
    pub new_replica_set: String,
    /// What aborted the update when it was not an AnalysisRun (a failed Experiment), for messages.
    pub aborted_by: Option<String>,
}

/// R4: the phase and message, by the first rule that applies: invalid spec, abort or progress
/// deadline → Degraded; any pause → Paused; pods not yet updated or available, canary steps not
/// done, blue-green not switched → Progressing; else Healthy.
pub fn rollout_phase(
    spec: &RolloutSpec,
    status: &RolloutStatus,
    facts: &PhaseFacts,
) -> (RolloutPhase, String) {
    if let Some(reason) = &facts.invalid_spec {
        return (RolloutPhase::Degraded, format!("InvalidSpec: {reason}"));
    }
    if status.aborted() {
        return (
            RolloutPhase::Degraded,
            format!("RolloutAborted: {}", abort_message(status, facts)),
        );
    }
    if facts.deadline_exceeded {
        return (
            RolloutPhase::Degraded,
            format!(
                "{PROGRESS_DEADLINE_EXCEEDED}: ReplicaSet \"{}\" has timed out progressing.",
                facts.new_replica_set
            ),
        );
    }
    if spec.paused() {
        return (RolloutPhase::Paused, "manually paused".to_string());
    }
    if let Some(pause) = status.pause_conditions.first() {
        return (RolloutPhase::Paused, format!("{:?}", pause.reason));
    }
    progressing_message(spec, status).map_or_else(
        || (RolloutPhase::Healthy, String::new()),
        |message| (RolloutPhase::Progressing, message.to_string()),
    )
}

fn progressing_message(spec: &RolloutSpec, status: &RolloutStatus) -> Option<&'static str> {
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < spec.replicas() {
        return Some("more replicas need to be updated");
    }
    if available < updated {
        return Some("updated replicas are still becoming available");
    }
    let current = status.current_pod_hash.as_deref();
    if let Some(canary) = spec.canary() {
        if status.stable_rs.as_deref() != current {
            return Some("waiting for all steps to complete");
        }
        if !canary.has_traffic_routing() && status.replicas.unwrap_or(0) > updated {
            return Some("old replicas are pending termination");
        }
    }
    if spec.blue_green().is_some() {
        let active = status
            .blue_green
            .as_ref()
            .and_then(|b| b.active_selector.as_deref());
        if active != current || status.stable_rs.as_deref() != current {
            return Some("active service cutover pending");
        }
    }
    None
}

/// "Rollout aborted update to revision N", with the failed analysis' message when an analysis
/// caused it (A12: it names the metric).
fn abort_message(status: &RolloutStatus, facts: &PhaseFacts) -> String {
    let base = format!("Rollout aborted update to revision {}", facts.new_revision);
    let failed = RunSlot::ALL.iter().find_map(|slot| {
        slot.get(status)
            .filter(|r| matches!(r.status, AnalysisPhase::Failed | AnalysisPhase::Error))
    });
    match failed {
        Some(run) => format!(
            "{base}: AnalysisRun \"{}\" {}{}",
            run.name,
            run.status.as_str(),
            run.message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        ),
        None => match &facts.aborted_by {
            Some(cause) => format!("{base}: {cause}"),
            None => base,
        },
    }
}

/// The phase a reader should believe: the status phase only counts once the controller has seen
/// the current generation.
pub fn observed_phase(rollout: &Rollout) -> (RolloutPhase, String) {
    let status = rollout.status.clone().unwrap_or_default();
    let current = rollout.metadata.generation;
    match (status.phase, status.observed_generation()) {
        (Some(phase), Some(seen)) if Some(seen) == current => {
            (phase, status.message.unwrap_or_default())
        }
        _ => (
            RolloutPhase::Progressing,
            "waiting for rollout spec update to be observed".to_string(),
        ),
    }
}

/// The status patch recording a contained reconcile panic (see [`crate::reconcile_guard`]): phase
/// Degraded, the message, and a `ReconcileError` condition naming the panic.
pub fn panic_status(
    rollout: &Rollout,
    panic: &crate::reconcile_guard::Panicked,
    now: Timestamp,
) -> Option<serde_json::Value> {
    let mut conditions = rollout
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let message = panic.to_string();
    set_condition(
        &mut conditions,
        condition(RECONCILE_ERROR, true, "ReconcilePanicked", message.clone()),
        now,
    );
    Some(serde_json::json!({"status": {
        "phase": RolloutPhase::Degraded,
        "message": format!("ReconcileError: {message}"),
        "conditions": conditions,
    }}))
}

/// Sets (or replaces) a condition, keeping its times when nothing changed.
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition, now: Timestamp) {
    let old = conditions.iter().position(|c| c.type_ == new.type_);
    let old_condition = old.map(|i| conditions.remove(i));
    match old_condition {
        Some(old) if old.status == new.status => {
            new.last_transition_time = old.last_transition_time.clone();
            let unchanged = old.reason == new.reason && old.message == new.message;
            if new.last_update_time.is_none() {
                new.last_update_time = if unchanged {
                    old.last_update_time
                } else {
                    Some(Time(now))
                };
            }
        }
        _ => {
            new.last_transition_time = Some(Time(now));
            new.last_update_time = new.last_update_time.or(Some(Time(now)));
        }
    }
    let index = old.unwrap_or(conditions.len()).min(conditions.len());
    conditions.insert(index, new);
}

fn condition(type_: &str, status: bool, reason: &str, message: String) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: Some(if status { "True" } else { "False" }.to_string()),
        reason: Some(reason.to_string()),
        message: Some(message),
        last_transition_time: None,
        last_update_time: None,
    }
}

/// R1: an invalid spec is reported and nothing else is done.
pub(crate) fn invalid_spec_plan(observed: &Observed, reason: &str) -> Plan {
    let mut status = observed.status();
    let already_reported = status
        .conditions
        .iter()
        .any(|c| c.type_ == INVALID_SPEC && c.message.as_deref() == Some(reason));
    let now = observed.now;
    set_condition(
        &mut status.conditions,
        condition(INVALID_SPEC, true, INVALID_SPEC, reason.to_string()),
        now,
    );
    set_condition(
        &mut status.conditions,
        condition(
            HEALTHY,
            false,
            "RolloutHealthy",
            "Rollout is not healthy".to_string(),
        ),
        now,
    );
    let facts = PhaseFacts {
        invalid_spec: Some(reason.to_string()),
        ..PhaseFacts::default()
    };
    let (phase, message) = rollout_phase(observed.spec(), &status, &facts);
    status.phase = Some(phase);
    status.message = Some(message);
    status.observed_generation = Some(observed.generation().to_string());
    let actions = if already_reported {
        Vec::new()
    } else {
        vec![Action::RecordEvent(Event {
            type_: EventReason::InvalidSpec.event_type(),
            reason: EventReason::InvalidSpec,
            message: reason.to_string(),
        })]
    };
    Plan {
        actions,
        status,
        requeue_after: None,
    }
}

/// What [`finish`] found.
pub(crate) struct Finished {
    pub deadline_exceeded: bool,
}

/// Last step of a plan: progress deadline (R6), phase and message (R4), conditions.
pub(crate) fn finish(ctx: &mut Ctx<'_>) -> Finished {
    let spec = ctx.spec();
    let now = ctx.now();
    let mut facts = PhaseFacts {
        invalid_spec: None,
        deadline_exceeded: false,
        new_revision: ctx.new_revision(),
        new_replica_set: format!("{}-{}", ctx.obs.name(), ctx.new_hash()),
        aborted_by: crate::rollout::experiment_step::failure(ctx),
    };
    let (phase, _) = rollout_phase(spec, &ctx.status, &facts);
    let progressing = progressing_condition(ctx, phase, &facts);
    facts.deadline_exceeded = progressing.exceeded;
    let (phase, message) = rollout_phase(spec, &ctx.status, &facts);
    if progressing.exceeded && !progressing.was_exceeded {
        ctx.event(
            EventReason::ProgressDeadlineExceeded,
            format!(
                "ReplicaSet \"{}\" has timed out progressing",
                facts.new_replica_set
            ),
        );
    }
    let mut conditions = std::mem::take(&mut ctx.status.conditions);
    conditions.retain(|c| c.type_ != INVALID_SPEC && c.type_ != RECONCILE_ERROR);
    set_condition(&mut conditions, progressing.condition, now);
    set_condition(&mut conditions, available_condition(spec, &ctx.status), now);
    let paused = phase == RolloutPhase::Paused;
    if paused || conditions.iter().any(|c| c.type_ == PAUSED) {
        let reason = if paused {
            ROLLOUT_PAUSED
        } else {
            "RolloutResumed"
        };
        let message = if paused {
            "Rollout is paused"
        } else {
            "Rollout is resumed"
        };
        set_condition(
            &mut conditions,
            condition(PAUSED, paused, reason, message.to_string()),
            now,
        );
    }
    let completed =
        ctx.status.stable_rs.is_some() && ctx.status.stable_rs == ctx.status.current_pod_hash;
    let completed_message = if completed {
        "Rollout completed update to revision"
    } else {
        "Rollout is updating"
    };
    set_condition(
        &mut conditions,
        condition(
            COMPLETED,
            completed,
            "RolloutCompleted",
            format!("{completed_message} {}", facts.new_revision),
        ),
        now,
    );
    let healthy = phase == RolloutPhase::Healthy;
    let healthy_message = if healthy {
        "Rollout is healthy"
    } else {
        "Rollout is not healthy"
    };
    set_condition(
        &mut conditions,
        condition(
            HEALTHY,
            healthy,
            "RolloutHealthy",
            healthy_message.to_string(),
        ),
        now,
    );
    ctx.status.conditions = conditions;
    ctx.status.phase = Some(phase);
    ctx.status.message = (!message.is_empty()).then_some(message);
    Finished {
        deadline_exceeded: progressing.exceeded,
    }
}

struct ProgressingOutcome {
    condition: Condition,
    exceeded: bool,
    was_exceeded: bool,
}

/// The `Progressing` condition and whether the progress deadline has passed. The deadline clock
/// (the condition's `lastUpdateTime`) restarts on progress and whenever the Rollout starts
/// progressing again (after a pause, an abort, or being healthy), so time spent paused does not
/// count (R6).
fn progressing_condition(
    ctx: &mut Ctx<'_>,
    phase: RolloutPhase,
    facts: &PhaseFacts,
) -> ProgressingOutcome {
    let now = ctx.now();
    let old = ctx
        .old
        .conditions
        .iter()
        .find(|c| c.type_ == PROGRESSING)
        .cloned();
    let old_reason = old
        .as_ref()
        .and_then(|c| c.reason.clone())
        .unwrap_or_default();
    let was_exceeded = old_reason == PROGRESS_DEADLINE_EXCEEDED;
    let rs = &facts.new_replica_set;
    let outcome = |condition: Condition, exceeded: bool| ProgressingOutcome {
        condition,
        exceeded,
        was_exceeded,
    };
    if ctx.status.aborted() {
        let message = format!("Rollout aborted update to revision {}", facts.new_revision);
        return outcome(
            condition(PROGRESSING, false, ROLLOUT_ABORTED, message),
            false,
        );
    }
    match phase {
        RolloutPhase::Healthy => {
            let message = format!("ReplicaSet \"{rs}\" has successfully progressed.");
            return outcome(
                condition(PROGRESSING, true, NEW_REPLICA_SET_AVAILABLE, message),
                false,
            );
        }
        RolloutPhase::Paused => {
            let mut paused = condition(
                PROGRESSING,
                false,
                ROLLOUT_PAUSED,
                "Rollout is paused".to_string(),
            );
            paused.status = Some("Unknown".to_string());
            return outcome(paused, false);
        }
        _ => {}
    }
    let progressed = ctx.progressed || counts_changed(&ctx.old, &ctx.status);
    let clock_running = old_reason == REPLICA_SET_UPDATED || was_exceeded;
    let started = match old.as_ref().and_then(|c| c.last_update_time.as_ref()) {
        Some(at) if clock_running && !progressed => at.0,
        _ => now,
    };
    let deadline =
        Duration::from_secs(u64::try_from(ctx.spec().progress_deadline_seconds()).unwrap_or(0));
    let ends = started.checked_add(deadline).unwrap_or(now);
    // Waiting on an analysis the steps depend on is a hold, like a pause: a long analysis is not a
    // stuck update.
    let holding = waiting_on_analysis(&ctx.status);
    let exceeded = !holding && ((was_exceeded && !progressed) || now > ends);
    let mut progressing = if exceeded {
        let message = format!("ReplicaSet \"{rs}\" has timed out progressing.");
        condition(PROGRESSING, false, PROGRESS_DEADLINE_EXCEEDED, message)
    } else {
        if !holding {
            // Come back when the deadline would pass, in case nothing else happens by then.
            ctx.requeue_within(until(now, ends) + Duration::from_secs(1));
        }
        let message = format!("ReplicaSet \"{rs}\" is progressing.");
        condition(PROGRESSING, true, REPLICA_SET_UPDATED, message)
    };
    progressing.last_update_time = Some(Time(started));
    outcome(progressing, exceeded)
}

/// A step, pre- or post-promotion analysis is still running (background analysis runs beside the
/// steps and holds nothing).
fn waiting_on_analysis(status: &RolloutStatus) -> bool {
    [
        RunSlot::CanaryStep,
        RunSlot::PrePromotion,
        RunSlot::PostPromotion,
    ]
    .iter()
    .any(|slot| slot.get(status).is_some_and(|r| !r.status.is_completed()))
}

fn counts_changed(old: &RolloutStatus, new: &RolloutStatus) -> bool {
    let counts = |s: &RolloutStatus| {
        (
            s.replicas,
            s.updated_replicas,
            s.ready_replicas,
            s.available_replicas,
        )
    };
    counts(old) != counts(new)
}

/// `Available`: at least `replicas - maxUnavailable` pods available (all of them for blue-green).
fn available_condition(spec: &RolloutSpec, status: &RolloutStatus) -> Condition {
    let replicas = spec.replicas();
    let max_unavailable = spec
        .canary()
        .and_then(|c| c.max_unavailable_for(replicas).ok())
        .unwrap_or(0);
    let available =
        status.available_replicas.unwrap_or(0) >= replicas.saturating_sub(max_unavailable);
    let message = if available {
        "Rollout has minimum availability"
    } else {
        "Rollout does not have minimum availability"
    };
    condition(AVAILABLE, available, "AvailableReason", message.to_string())
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;
    use crate::api::rollout::{
        BlueGreenStatus, PauseCondition, PauseReason, RolloutAnalysisRunStatus,
    };
    use crate::rollout::plan::testkit::{self, t0};

    fn healthy_canary_status() -> RolloutStatus {
        RolloutStatus {
            current_pod_hash: Some("h2".into()),
            stable_rs: Some("h2".into()),
            replicas: Some(4),
            updated_replicas: Some(4),
            available_replicas: Some(4),
            ..Default::default()
        }
    }

    #[test]
    fn r4_phase_rules_apply_in_order() {
        let spec = testkit::canary(4, vec![]).spec;
        let mut paused_spec = spec.clone();
        paused_spec.paused = Some(true);
        let facts = PhaseFacts {
            new_revision: 2,
            new_replica_set: "web-h2".into(),
            ..Default::default()
        };
        let invalid = PhaseFacts {
            invalid_spec: Some("bad".into()),
            ..facts.clone()
        };
        let exceeded = PhaseFacts {
            deadline_exceeded: true,
            ..facts.clone()
        };
        let healthy = healthy_canary_status();
        let with = |edit: fn(&mut RolloutStatus)| {
            let mut s = healthy.clone();
            edit(&mut s);
            s
        };
        let aborted = with(|s| s.abort = Some(true));
        let paused = with(|s| {
            s.pause_conditions.push(PauseCondition {
                reason: PauseReason::CanaryPauseStep,
                start_time: Time(t0()),
            })
        });
        let cases: Vec<(
            &str,
            &RolloutSpec,
            RolloutStatus,
            &PhaseFacts,
            RolloutPhase,
            &str,
        )> = vec![
            (
                "invalid beats abort",
                &spec,
                aborted.clone(),
                &invalid,
                RolloutPhase::Degraded,
                "InvalidSpec: bad",
            ),
            (
                "abort beats deadline",
                &spec,
                aborted.clone(),
                &exceeded,
                RolloutPhase::Degraded,
                "RolloutAborted: Rollout aborted update to revision 2",
            ),
            (
                "deadline beats pause",
                &spec,
                paused.clone(),
                &exceeded,
                RolloutPhase::Degraded,
                "ProgressDeadlineExceeded: ReplicaSet \"web-h2\" has timed out progressing.",
            ),
            (
                "pause condition",
                &spec,
                paused.clone(),
                &facts,
                RolloutPhase::Paused,
                "CanaryPauseStep",
            ),
            (
                "spec.paused",
                &paused_spec,
                healthy.clone(),
                &facts,
                RolloutPhase::Paused,
                "manually paused",
            ),
            (
                "not updated",
                &spec,
                with(|s| s.updated_replicas = Some(2)),
                &facts,
                RolloutPhase::Progressing,
                "more replicas need to be updated",
            ),
            (
                "not available",
                &spec,
                with(|s| s.available_replicas = Some(3)),
                &facts,
                RolloutPhase::Progressing,
                "updated replicas are still becoming available",
            ),
            (
                "steps not done",
                &spec,
                with(|s| s.stable_rs = Some("h1".into())),
                &facts,
                RolloutPhase::Progressing,
                "waiting for all steps to complete",
            ),
            (
                "old pods left",
                &spec,
                with(|s| s.replicas = Some(5)),
                &facts,
                RolloutPhase::Progressing,
                "old replicas are pending termination",
            ),
            (
                "healthy",
                &spec,
                healthy.clone(),
                &facts,
                RolloutPhase::Healthy,
                "",
            ),
        ];
        for (name, spec, status, facts, phase, message) in cases {
            assert_eq!(
                rollout_phase(spec, &status, facts),
                (phase, message.to_string()),
                "{name}"
            );
        }
    }

    #[test]
    fn r4_blue_green_is_progressing_until_the_active_selector_is_current() {
        let spec = testkit::blue_green(4).spec;
        let mut status = healthy_canary_status();
        status.blue_green = Some(BlueGreenStatus {
            active_selector: Some("h1".into()),
            ..Default::default()
        });
        let facts = PhaseFacts::default();
        assert_eq!(
            rollout_phase(&spec, &status, &facts),
            (
                RolloutPhase::Progressing,
                "active service cutover pending".to_string()
            )
        );
        status.blue_green.as_mut().unwrap().active_selector = Some("h2".into());
        assert_eq!(
            rollout_phase(&spec, &status, &facts).0,
            RolloutPhase::Healthy
        );
    }

    #[test]
    fn a12_abort_message_names_the_failed_run_and_metric() {
        let mut status = healthy_canary_status();
        status.abort = Some(true);
        status.canary = Some(crate::api::rollout::CanaryStatus {
            current_step_analysis_run_status: Some(RolloutAnalysisRunStatus {
                name: "web-h2-2-1".into(),
                status: AnalysisPhase::Failed,
                message: Some(
                    "Metric \"success-rate\" assessed Failed due to failed (1) > failureLimit (0)"
                        .into(),
                ),
            }),
            ..Default::default()
        });
        let facts = PhaseFacts {
            new_revision: 2,
            ..Default::default()
        };
        let (_, message) = rollout_phase(&testkit::canary(1, vec![]).spec, &status, &facts);
        assert_eq!(
            message,
            "RolloutAborted: Rollout aborted update to revision 2: AnalysisRun \"web-h2-2-1\" Failed: \
             Metric \"success-rate\" assessed Failed due to failed (1) > failureLimit (0)"
        );
    }

    #[test]
    fn r4_phase_only_counts_when_the_generation_is_observed() {
        let mut rollout = testkit::canary(1, vec![]);
        rollout.metadata.generation = Some(3);
        rollout.status = Some(RolloutStatus {
            phase: Some(RolloutPhase::Healthy),
            observed_generation: Some("2".into()),
            ..Default::default()
        });
        assert_eq!(
            observed_phase(&rollout),
            (
                RolloutPhase::Progressing,
                "waiting for rollout spec update to be observed".to_string()
            )
        );
        if let Some(s) = rollout.status.as_mut() {
            s.observed_generation = Some("3".into());
        }
        assert_eq!(observed_phase(&rollout).0, RolloutPhase::Healthy);
    }

    #[test]
    fn conditions_keep_their_times_when_nothing_changed() {
        let t1 = t0() + jiff::SignedDuration::from_secs(60);
        let t2 = t1 + jiff::SignedDuration::from_secs(60);
        let mut conditions = Vec::new();
        let healthy =
            |ok: bool, msg: &str| condition(HEALTHY, ok, "RolloutHealthy", msg.to_string());
        set_condition(&mut conditions, healthy(true, "a"), t0());
        set_condition(&mut conditions, healthy(true, "a"), t1);
        assert_eq!(conditions[0].last_transition_time, Some(Time(t0())));
        assert_eq!(conditions[0].last_update_time, Some(Time(t0())));
        set_condition(&mut conditions, healthy(true, "b"), t1);
        assert_eq!(conditions[0].last_transition_time, Some(Time(t0())));
        assert_eq!(conditions[0].last_update_time, Some(Time(t1)));
        set_condition(&mut conditions, healthy(false, "b"), t2);
        assert_eq!(conditions[0].last_transition_time, Some(Time(t2)));
        assert_eq!(conditions.len(), 1);
    }

    #[test]
    fn a_settled_rollout_replans_to_the_same_status_later() {
        let rollouts = [
            testkit::canary(2, vec![testkit::weight(50)]),
            testkit::canary_with_router(2, vec![testkit::weight(50)]),
            testkit::blue_green(2),
        ];
        for rollout in rollouts {
            let mut obs = testkit::deployed(rollout);
            testkit::update(&mut obs, "h2");
            testkit::settle(&mut obs);
            testkit::advance(&mut obs, 3600);
            testkit::settle(&mut obs);
            let before = obs.status();
            assert_eq!(before.phase, Some(RolloutPhase::Healthy));
            testkit::advance(&mut obs, 3600);
            let plan = crate::rollout::plan::plan(&obs);
            assert_eq!(plan.status, before, "no write churn");
            assert!(plan.actions.is_empty(), "{:?}", plan.actions);
            let kinds: Vec<&str> = before.conditions.iter().map(|c| c.type_.as_str()).collect();
            assert_eq!(kinds, vec![PROGRESSING, AVAILABLE, COMPLETED, HEALTHY]);
        }
    }

    /// A contained panic shows on the Rollout (Degraded, a ReconcileError condition naming it);
    /// the next reconcile that plans removes the condition.
    #[test]
    fn a_reconcile_panic_shows_until_a_plan_succeeds() {
        let obs = testkit::deployed(testkit::canary(2, vec![testkit::weight(50)]));
        let panic = crate::reconcile_guard::Panicked {
            message: "index out of bounds".into(),
        };
        let patch = panic_status(&obs.rollout, &panic, t0()).expect("a status patch");
        assert_eq!(patch["status"]["phase"], "Degraded");
        let status: RolloutStatus =
            serde_json::from_value(patch["status"].clone()).expect("a status");
        let condition = status
            .conditions
            .iter()
            .find(|c| c.type_ == RECONCILE_ERROR)
            .expect("the ReconcileError condition");
        assert_eq!(condition.status.as_deref(), Some("True"));
        assert!(
            condition
                .message
                .as_deref()
                .is_some_and(|m| m.contains("index out of bounds")),
            "{condition:?}"
        );
        // The other conditions are kept.
        assert!(status.conditions.iter().any(|c| c.type_ == HEALTHY));

        let mut after = obs.clone();
        testkit::edit_status(&mut after, |s| s.conditions = status.conditions.clone());
        let planned = crate::rollout::plan::plan(&after);
        assert!(
            planned
                .status
                .conditions
                .iter()
                .all(|c| c.type_ != RECONCILE_ERROR)
        );
        assert_eq!(planned.status.phase, Some(RolloutPhase::Healthy));
    }
}
