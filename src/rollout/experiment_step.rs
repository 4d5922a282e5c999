//! The canary `experiment` step (Argo's `reconcileExperiments`): the Rollout creates one Experiment
//! per step and revision, owned by it, waits for it to be Successful, aborts when it Failed or
//! Errored and pauses (`InconclusiveExperiment`) when it was Inconclusive. An Experiment the Rollout
//! no longer waits on (promote --full, abort, a new revision, the end of the update) is terminated,
//! so its ReplicaSets are scaled down.
//!
//! Which Experiment the step waits on is `status.canary.currentExperiment` (Argo's field), so a
//! restarted controller adopts it rather than creating a second one.

use crate::api::analysis::AnalysisPhase;
use crate::api::rollout::{CanaryStrategy, RolloutExperimentStep, RolloutStatus};
use crate::rollout::action::{Action, EventReason};
use crate::rollout::observed::ObservedExperiment;
use crate::rollout::plan::{Ctx, Verdict};

/// The Experiment the current step waits on, as the status records it.
pub(crate) fn current(status: &RolloutStatus) -> Option<String> {
    status.canary.as_ref()?.current_experiment.clone()
}

/// Records (or with `None` forgets) the Experiment the current step waits on.
pub(crate) fn set_current(status: &mut RolloutStatus, name: Option<String>) {
    if name.is_none() && current(status).is_none() {
        return;
    }
    status
        .canary
        .get_or_insert_with(Default::default)
        .current_experiment = name;
}

/// Runs (or keeps waiting on) the Experiment of step `index` for the current revision.
pub(crate) fn gate(ctx: &mut Ctx<'_>, index: i32, step: &RolloutExperimentStep) -> Verdict {
    let new_hash = ctx.new_hash();
    let matches =
        |e: &&ObservedExperiment| e.step_index == Some(index) && e.pod_template_hash == new_hash;
    let tracked = current(&ctx.status);
    let observed = match &tracked {
        Some(name) => ctx.obs.experiment(name).filter(matches),
        None => ctx
            .obs
            .experiments
            .iter()
            .filter(matches)
            .find(|e| !e.is_completed() && !e.terminating),
    };
    if let Some(experiment) = observed {
        set_current(&mut ctx.status, Some(experiment.name.clone()));
        return verdict(experiment.phase);
    }
    let name = match &tracked {
        // Named by an earlier reconcile and not in the cache yet (or its create failed): creating
        // it again is a no-op or heals.
        Some(name) if ctx.obs.experiment(name).is_none() => name.clone(),
        _ => free_name(ctx, index),
    };
    if tracked.as_deref() != Some(name.as_str()) {
        ctx.event(
            EventReason::ExperimentCreated,
            format!("Created Experiment '{name}'"),
        );
    }
    ctx.actions.push(Action::CreateExperiment {
        name: name.clone(),
        step_index: index,
        step: step.clone(),
        stable_hash: ctx.status.stable_rs.clone().unwrap_or_default(),
        pod_template_hash: new_hash.to_string(),
        revision: ctx.new_revision(),
    });
    set_current(&mut ctx.status, Some(name));
    Verdict::Running
}

fn verdict(phase: Option<AnalysisPhase>) -> Verdict {
    match phase {
        Some(AnalysisPhase::Successful) => Verdict::Successful,
        Some(AnalysisPhase::Failed | AnalysisPhase::Error) => Verdict::Failed,
        Some(AnalysisPhase::Inconclusive) => Verdict::Inconclusive,
        _ => Verdict::Running,
    }
}

/// Argo's name `<rollout>-<hash>-<revision>-<step>`, with `-N` when an earlier attempt (before a
/// retry) holds it.
fn free_name(ctx: &Ctx<'_>, index: i32) -> String {
    let base = format!(
        "{}-{}-{}-{index}",
        ctx.obs.name(),
        ctx.new_hash(),
        ctx.new_revision()
    );
    let taken = |name: &str| ctx.obs.experiments.iter().any(|e| e.name == name);
    if !taken(&base) {
        return base;
    }
    (1..)
        .map(|n| format!("{base}-{n}"))
        .find(|name| !taken(name))
        .unwrap_or(base)
}

/// After the steps are planned: forgets the Experiment when the Rollout is no longer at an
/// experiment step (an aborted Rollout keeps it, for its message) and terminates every running
/// Experiment it does not wait on.
pub(crate) fn terminate_others(ctx: &mut Ctx<'_>, canary: Option<&CanaryStrategy>) {
    let at_experiment_step = canary.is_some_and(|c| {
        ctx.status
            .current_step_index
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| c.steps.get(i))
            .is_some_and(|s| s.experiment.is_some())
    });
    let aborted = ctx.status.aborted();
    if !aborted && !at_experiment_step {
        set_current(&mut ctx.status, None);
    }
    let wanted = if aborted { None } else { current(&ctx.status) };
    let stale: Vec<String> = ctx
        .obs
        .experiments
        .iter()
        .filter(|e| Some(&e.name) != wanted.as_ref() && !e.is_completed() && !e.terminating)
        .map(|e| e.name.clone())
        .collect();
    for name in stale {
        ctx.actions.push(Action::TerminateExperiment { name });
    }
}

/// Why the Rollout aborted, when its Experiment failed: `Experiment "x" Failed: message`.
pub(crate) fn failure(ctx: &Ctx<'_>) -> Option<String> {
    let name = current(&ctx.status)?;
    let experiment = ctx.obs.experiment(&name)?;
    let phase = experiment
        .phase
        .filter(|p| matches!(p, AnalysisPhase::Failed | AnalysisPhase::Error))?;
    Some(format!(
        "Experiment \"{name}\" {phase}{}",
        experiment
            .message
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::rollout::PauseReason;
    use crate::rollout::action::Plan;
    use crate::rollout::observed::Observed;
    use crate::rollout::plan::plan;
    use crate::rollout::simulate::{self, deployed};
    use serde_json::json;

    /// A canary Rollout at revision 2 whose first step is an experiment, deployed and updated.
    fn updated() -> Observed {
        let steps = serde_json::from_value(json!([
            {"experiment": {"duration": "1m", "templates": [
                {"name": "baseline", "specRef": "stable"},
                {"name": "canary", "specRef": "canary"}]}},
            {"setWeight": 50}
        ]))
        .unwrap();
        let mut obs = deployed(simulate::canary(3, steps));
        simulate::update(&mut obs, "h2");
        obs
    }

    fn created(plan: &Plan) -> Vec<String> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                Action::CreateExperiment { name, .. } => Some(name.clone()),
                _ => None,
            })
            .collect()
    }

    fn experiment(obs: &Observed, name: &str, phase: AnalysisPhase) -> ObservedExperiment {
        ObservedExperiment {
            name: name.to_string(),
            step_index: Some(0),
            pod_template_hash: obs.new_template_hash.clone(),
            phase: Some(phase),
            message: Some("metric \"m\" assessed Failed".to_string()),
            terminating: false,
        }
    }

    #[test]
    fn experiment_step_creates_one_experiment_named_as_argo_and_waits_for_it() {
        let mut obs = updated();
        let first = plan(&obs);
        let name = format!("web-{}-2-0", obs.new_template_hash);
        assert_eq!(created(&first), vec![name.clone()]);
        assert!(
            first
                .event_reasons()
                .contains(&EventReason::ExperimentCreated)
        );
        assert_eq!(current(&first.status), Some(name.clone()));
        assert_eq!(first.status.current_step_index, Some(0));
        simulate::apply(&mut obs, &first);
        // Not in the cache yet: the same name again, no second event.
        let again = plan(&obs);
        assert_eq!(created(&again), vec![name.clone()]);
        assert!(
            !again
                .event_reasons()
                .contains(&EventReason::ExperimentCreated)
        );
        // Running: nothing created, still at step 0.
        obs.experiments = vec![experiment(&obs, &name, AnalysisPhase::Running)];
        let running = plan(&obs);
        assert!(created(&running).is_empty());
        assert_eq!(running.status.current_step_index, Some(0));
    }

    #[test]
    fn successful_experiment_completes_the_step() {
        let mut obs = updated();
        let name = format!("web-{}-2-0", obs.new_template_hash);
        let first = plan(&obs);
        simulate::apply(&mut obs, &first);
        obs.experiments = vec![experiment(&obs, &name, AnalysisPhase::Successful)];
        let next = plan(&obs);
        assert_eq!(next.status.current_step_index, Some(1));
        assert_eq!(current(&next.status), None);
        assert!(
            !next
                .actions
                .iter()
                .any(|a| matches!(a, Action::TerminateExperiment { .. }))
        );
    }

    #[test]
    fn failed_experiment_aborts_the_rollout_naming_it() {
        let mut obs = updated();
        let name = format!("web-{}-2-0", obs.new_template_hash);
        let first = plan(&obs);
        simulate::apply(&mut obs, &first);
        obs.experiments = vec![experiment(&obs, &name, AnalysisPhase::Failed)];
        let next = plan(&obs);
        assert!(next.status.aborted());
        assert_eq!(
            next.status.phase,
            Some(crate::api::rollout::RolloutPhase::Degraded)
        );
        let message = next.status.message.clone().unwrap_or_default();
        assert!(
            message.contains(&format!("Experiment \"{name}\" Failed")),
            "{message}"
        );
        assert!(next.event_reasons().contains(&EventReason::RolloutAborted));
    }

    #[test]
    fn inconclusive_experiment_pauses_the_rollout() {
        let mut obs = updated();
        let name = format!("web-{}-2-0", obs.new_template_hash);
        let first = plan(&obs);
        simulate::apply(&mut obs, &first);
        obs.experiments = vec![experiment(&obs, &name, AnalysisPhase::Inconclusive)];
        let next = plan(&obs);
        assert!(
            next.status
                .pause_conditions
                .iter()
                .any(|c| c.reason == PauseReason::InconclusiveExperiment)
        );
        assert_eq!(next.status.current_step_index, Some(0));
    }

    #[test]
    fn retry_after_a_failed_experiment_runs_a_new_one_under_a_free_name() {
        let mut obs = updated();
        let name = format!("web-{}-2-0", obs.new_template_hash);
        let first = plan(&obs);
        simulate::apply(&mut obs, &first);
        obs.experiments = vec![experiment(&obs, &name, AnalysisPhase::Failed)];
        let aborted = plan(&obs);
        simulate::apply(&mut obs, &aborted);
        assert!(aborted.status.aborted());
        simulate::edit_status(&mut obs, |s| s.abort = Some(false));
        let retried = plan(&obs);
        assert_eq!(created(&retried), vec![format!("{name}-1")]);
        assert_eq!(current(&retried.status), Some(format!("{name}-1")));
    }

    #[test]
    fn manual_abort_terminates_the_running_experiment() {
        let mut obs = updated();
        let name = format!("web-{}-2-0", obs.new_template_hash);
        let first = plan(&obs);
        simulate::apply(&mut obs, &first);
        obs.experiments = vec![experiment(&obs, &name, AnalysisPhase::Running)];
        simulate::edit_status(&mut obs, |s| s.abort = Some(true));
        let aborted = plan(&obs);
        assert!(
            aborted
                .actions
                .contains(&Action::TerminateExperiment { name: name.clone() })
        );
    }

    #[test]
    fn promote_full_terminates_the_running_experiment() {
        let mut obs = updated();
        let name = format!("web-{}-2-0", obs.new_template_hash);
        let first = plan(&obs);
        simulate::apply(&mut obs, &first);
        obs.experiments = vec![experiment(&obs, &name, AnalysisPhase::Running)];
        let mut status = obs.status();
        status.promote_full = Some(true);
        obs.rollout.status = Some(status);
        let next = plan(&obs);
        assert!(
            next.actions
                .contains(&Action::TerminateExperiment { name: name.clone() })
        );
        assert_eq!(current(&next.status), None);
    }
}
