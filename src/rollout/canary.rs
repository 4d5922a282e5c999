//! Canary: steps of traffic weight, pauses and analysis, with or without a traffic router
//! (docs/behaviour.md C1–C10, A5, A6).
//!
//! Without a router the weight is approximated by replica counts (C1). With one, the canary's pod
//! count follows the weight or `setCanaryScale`, the stable stays full unless `dynamicStableScale`,
//! and the weight itself is only raised once the canary has the pods to take it.

use crate::api::rollout::{
    CanaryScale, CanaryStepKind, CanaryStrategy, PauseReason, TrafficWeights, WeightDestination,
};
use crate::rollout::action::{Action, EventReason};
use crate::rollout::basic_canary::older_replica_set_counts;
pub(crate) use crate::rollout::basic_canary::{Budget, Counts, basic_canary_counts};
use crate::rollout::managed_routes;
use crate::rollout::observed::ObservedReplicaSet;
use crate::rollout::plan::{Ctx, Gate, RunSlot, Verdict};

/// Plans a canary Rollout.
pub(crate) fn plan_canary(ctx: &mut Ctx<'_>, canary: &CanaryStrategy) {
    ctx.adopt_first_revision_as_stable();
    let stable = ctx.status.stable_rs.clone().unwrap_or_default();
    if stable == ctx.new_hash() {
        plan_steady(ctx, canary);
        return;
    }
    ctx.terminate_runs_of_other_revisions();
    if !ctx.status.aborted() {
        plan_update(ctx, canary, &stable);
    }
    // The update itself may have aborted (a failed analysis).
    if ctx.status.aborted() {
        plan_abort(ctx, canary, &stable);
    }
    scale_down_in_between(ctx, canary, &stable);
}

/// Pods a weight out of `max_weight` (`maxTrafficWeight`) stands for with a router:
/// ceil(weight × replicas / max_weight) (Argo's `trafficWeightToReplicas`; without a router
/// [`basic_canary_counts`] approximates instead).
pub(crate) fn replicas_for_weight(weight: i32, replicas: i32, max_weight: i32) -> i32 {
    let max_weight = i64::from(max_weight.max(1));
    let product = i64::from(weight).clamp(0, max_weight) * i64::from(replicas.max(0));
    i32::try_from((product + max_weight - 1) / max_weight).unwrap_or(replicas)
}

impl Counts {
    fn of(rs: Option<&ObservedReplicaSet>) -> Self {
        rs.map_or_else(Counts::default, |rs| Counts {
            spec: rs.spec_replicas,
            available: rs.available_replicas,
        })
    }
}

/// No update in progress (or a fast rollback to the stable template, R7): the stable runs
/// `replicas`, all traffic and both Services go to it, every other revision is scaled down (after
/// `scaleDownDelaySeconds` with a router; without one as fast as availability allows, C8).
fn plan_steady(ctx: &mut Ctx<'_>, canary: &CanaryStrategy) {
    let stable = ctx.new_hash();
    let steps = i32::try_from(canary.steps.len()).unwrap_or(i32::MAX);
    ctx.status.current_step_index = Some(steps);
    ctx.status.abort = None;
    ctx.status.aborted_at = None;
    ctx.status.promote_full = None;
    ctx.status.pause_conditions.clear();
    ctx.status.controller_pause = None;
    ctx.terminate_running_runs(|_| true);
    let router = canary.has_traffic_routing();
    let target = if router {
        ctx.replicas()
    } else {
        // Older revisions still take traffic: the stable grows within the surge while they
        // shrink within the availability budget (Argo: no stable besides the new ReplicaSet).
        basic_targets(ctx, canary, None, 100).1
    };
    ctx.scale_to(stable, target);
    ctx.select(canary.stable_service.as_deref(), stable);
    ctx.select(canary.canary_service.as_deref(), stable);
    if router {
        set_weight(ctx, canary, 0, stable, stable);
        managed_routes::set_routes(ctx, canary, Vec::new());
        ctx.scale_down_others_after(&[stable], canary.scale_down_delay_seconds());
    } else {
        scale_down_older_without_router(ctx, canary, &[stable]);
    }
}

/// An update in progress: run the steps as far as they go, then bring pods, Services and weight to
/// where the current step wants them; promote once all steps are done and the canary is complete.
fn plan_update(ctx: &mut Ctx<'_>, canary: &CanaryStrategy, stable: &str) {
    let step_count = i32::try_from(canary.steps.len()).unwrap_or(i32::MAX);
    let mut index = ctx
        .status
        .current_step_index
        .unwrap_or(0)
        .clamp(0, step_count);
    if ctx.status.promote_full() || ctx.rollback_within_window() {
        skip_remaining_steps(ctx);
        index = step_count;
    }
    // A background analysis that failed aborts; one that is inconclusive holds the steps.
    let held = background_analysis(ctx, canary, index) == Gate::Wait;
    if ctx.status.aborted() {
        return;
    }
    let started_at = index;
    if !held {
        index = run_steps(ctx, canary, stable, index);
    }
    ctx.status.current_step_index = Some(index);
    if ctx.status.aborted() {
        return;
    }
    if index != started_at {
        // A step boundary may be where the background analysis starts.
        background_analysis(ctx, canary, index);
    }
    if canary.has_traffic_routing() {
        converge_with_router(ctx, canary, stable, index);
    } else {
        converge_without_router(ctx, canary, stable, index);
    }
}

/// `promote --full`: no more pauses or step analysis (C6).
fn skip_remaining_steps(ctx: &mut Ctx<'_>) {
    ctx.status.pause_conditions.clear();
    ctx.status.controller_pause = None;
    ctx.terminate_running_runs(|t| *t == crate::rollout::observed::AnalysisType::Step);
}

/// Runs steps from `index` until one has to wait; returns the index reached. Sets `abort` when a
/// step analysis fails (A5).
fn run_steps(ctx: &mut Ctx<'_>, canary: &CanaryStrategy, stable: &str, mut index: i32) -> i32 {
    let step_count = canary.steps.len();
    while let Some(step) = usize::try_from(index)
        .ok()
        .and_then(|i| canary.steps.get(i))
    {
        if ctx.spec().paused() {
            break;
        }
        let passed = match step.kind() {
            Some(CanaryStepKind::SetWeight(_) | CanaryStepKind::SetCanaryScale(_)) => {
                at_step_targets(ctx, canary, stable, index)
            }
            Some(CanaryStepKind::Pause(pause)) => {
                let duration = pause.duration().ok().flatten();
                ctx.pause_gate(PauseReason::CanaryPauseStep, duration) == Gate::Pass
            }
            Some(CanaryStepKind::Analysis(analysis)) => {
                match ctx.analysis_gate(RunSlot::CanaryStep, Some(index), analysis) {
                    Verdict::Successful => true,
                    Verdict::Running => false,
                    Verdict::Failed => {
                        ctx.status.abort = Some(true);
                        return index;
                    }
                    Verdict::Inconclusive => {
                        ctx.pause_gate(PauseReason::InconclusiveAnalysisRun, None) == Gate::Pass
                    }
                }
            }
            // The route is put in place with the weight (`converge_with_router`), from the steps
            // completed: nothing to wait for (Argo completes these steps at once too).
            Some(CanaryStepKind::SetHeaderRoute(_) | CanaryStepKind::SetMirrorRoute(_)) => true,
            Some(CanaryStepKind::Experiment(experiment)) => {
                match crate::rollout::experiment_step::gate(ctx, index, experiment) {
                    Verdict::Successful => true,
                    Verdict::Running => false,
                    Verdict::Failed => {
                        ctx.status.abort = Some(true);
                        return index;
                    }
                    Verdict::Inconclusive => {
                        ctx.pause_gate(PauseReason::InconclusiveExperiment, None) == Gate::Pass
                    }
                }
            }
            // `validate` refuses such steps; nothing to do for one.
            None => true,
        };
        if !passed {
            break;
        }
        ctx.event(
            EventReason::RolloutStepCompleted,
            format!(
                "Rollout step {}/{step_count} completed ({})",
                index + 1,
                describe(step.kind())
            ),
        );
        RunSlot::CanaryStep.set(&mut ctx.status, None);
        crate::rollout::experiment_step::set_current(&mut ctx.status, None);
        ctx.progressed = true;
        index += 1;
    }
    index
}

/// A step as Argo's events name it, e.g. `setWeight: 20`.
fn describe(kind: Option<CanaryStepKind<'_>>) -> String {
    match kind {
        Some(CanaryStepKind::SetWeight(weight)) => format!("setWeight: {weight}"),
        Some(CanaryStepKind::Pause(pause)) => match &pause.duration {
            Some(duration) => format!("pause: {}", int_or_string(duration)),
            None => "pause".to_string(),
        },
        Some(CanaryStepKind::SetCanaryScale(_)) => "setCanaryScale".to_string(),
        Some(CanaryStepKind::Analysis(_)) => "analysis".to_string(),
        Some(CanaryStepKind::Experiment(_)) => "experiment".to_string(),
        Some(CanaryStepKind::SetHeaderRoute(r)) => format!("setHeaderRoute: {}", r.name),
        Some(CanaryStepKind::SetMirrorRoute(r)) => format!("setMirrorRoute: {}", r.name),
        None => "invalid step".to_string(),
    }
}

fn int_or_string(value: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString) -> String {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    match value {
        IntOrString::Int(n) => n.to_string(),
        IntOrString::String(s) => s.clone(),
    }
}

/// The background analysis (A6): from `startingStep` until promotion. A failure aborts; an
/// inconclusive result pauses, and a resume starts a fresh run. Returns `Wait` when it holds the
/// Rollout (aborted or paused).
fn background_analysis(ctx: &mut Ctx<'_>, canary: &CanaryStrategy, index: i32) -> Gate {
    let Some(background) = &canary.analysis else {
        return Gate::Pass;
    };
    let steps = i32::try_from(canary.steps.len()).unwrap_or(i32::MAX);
    if index < background.starting_step()
        || index >= steps
        || ctx.status.promote_full()
        || ctx.rollback_within_window()
    {
        return Gate::Pass;
    }
    match ctx.analysis_gate(RunSlot::CanaryBackground, None, &background.analysis) {
        Verdict::Running | Verdict::Successful => Gate::Pass,
        Verdict::Failed => {
            ctx.status.abort = Some(true);
            Gate::Wait
        }
        Verdict::Inconclusive => {
            let gate = ctx.pause_gate(PauseReason::InconclusiveAnalysisRun, None);
            if gate == Gate::Pass {
                RunSlot::CanaryBackground.set(&mut ctx.status, None);
            }
            gate
        }
    }
}

/// The traffic weight the steps up to `index` ask for: the last `setWeight` at or before it, all
/// of `maxTrafficWeight` once all steps are done.
fn step_weight(canary: &CanaryStrategy, index: i32) -> i32 {
    let Ok(end) = usize::try_from(index) else {
        return 0;
    };
    if end >= canary.steps.len() {
        return canary.max_traffic_weight();
    }
    last_weight_before(canary, end + 1)
}

/// The last `setWeight` among the first `end` steps, 0 when none.
fn last_weight_before(canary: &CanaryStrategy, end: usize) -> i32 {
    canary.steps[..end.min(canary.steps.len())]
        .iter()
        .rev()
        .find_map(|s| s.set_weight)
        .unwrap_or(0)
}

/// The `setCanaryScale` in force at `index` (the last one at or before it), with a router only.
fn step_canary_scale(canary: &CanaryStrategy, index: i32) -> CanaryScale {
    let Ok(index) = usize::try_from(index) else {
        return CanaryScale::MatchTrafficWeight;
    };
    canary
        .steps
        .get(..=index)
        .unwrap_or_default()
        .iter()
        .rev()
        .find_map(|s| s.set_canary_scale.as_ref().map(|s| s.target()))
        .unwrap_or(CanaryScale::MatchTrafficWeight)
}

/// Canary pods wanted at `index` with a router (C5): an explicit `setCanaryScale.replicas` as
/// written, else the weight's share, at least `minPodsPerReplicaSet` when not 0 (Argo's
/// `CalculateReplicaCountsForTrafficRoutedCanary`).
fn router_canary_replicas(canary: &CanaryStrategy, index: i32, replicas: i32) -> i32 {
    match step_canary_scale(canary, index) {
        CanaryScale::Replicas(n) => n,
        CanaryScale::Weight(w) => at_least_min_pods(
            canary,
            replicas_for_weight(w, replicas, canary.max_traffic_weight()),
        ),
        CanaryScale::MatchTrafficWeight => at_least_min_pods(
            canary,
            replicas_for_weight(
                step_weight(canary, index),
                replicas,
                canary.max_traffic_weight(),
            ),
        ),
    }
}

/// `minPodsPerReplicaSet`: a ReplicaSet of a traffic-routed canary that gets pods gets at least
/// that many (Argo's `CheckMinPodsPerReplicaSet`).
fn at_least_min_pods(canary: &CanaryStrategy, count: i32) -> i32 {
    match canary.min_pods_per_replica_set {
        Some(min) if count > 0 && canary.has_traffic_routing() => count.max(min),
        _ => count,
    }
}

/// Whether the pods are where step `index` wants them, so that the step is complete.
fn at_step_targets(ctx: &Ctx<'_>, canary: &CanaryStrategy, stable: &str, index: i32) -> bool {
    let replicas = ctx.replicas();
    let new = Counts::of(ctx.obs.new_replica_set());
    if canary.has_traffic_routing() {
        let want = router_canary_replicas(canary, index, replicas);
        return new.spec == want && enough_available(canary, new.available, want);
    }
    // Argo's `AtDesiredReplicaCountsForCanary`: the counts it would ask for now are the ones
    // there, the canary's all available, and no other revision serves traffic any more.
    let (want_stable, want_canary) =
        basic_targets(ctx, canary, Some(stable), step_weight(canary, index));
    let stable_there = ctx.obs.replica_set(stable).map_or(want_stable == 0, |rs| {
        rs.spec_replicas == want_stable && rs.replicas == want_stable
    });
    let others_serving = ctx
        .other_replica_sets(&[stable, ctx.new_hash()])
        .iter()
        .any(|rs| rs.available_replicas > 0);
    let canary_there = new.available == want_canary
        || (new.available < want_canary && enough_available(canary, new.available, want_canary));
    new.spec == want_canary && canary_there && stable_there && !others_serving
}

/// Whether `available` of the `desired` canary pods let the rollout go on: all of them, or as many
/// as `replicaProgressThreshold` asks for.
fn enough_available(canary: &CanaryStrategy, available: i32, desired: i32) -> bool {
    available >= desired
        || canary
            .replica_progress_threshold
            .as_ref()
            .is_some_and(|threshold| threshold.met(available, desired))
}

/// C1: the (stable, canary) counts to ask for now on the way to `weight` without a router, from
/// the observed ReplicaSets. `stable` is `None` once the current template is the stable one.
fn basic_targets(
    ctx: &Ctx<'_>,
    canary: &CanaryStrategy,
    stable: Option<&str>,
    weight: i32,
) -> (i32, i32) {
    let keep: Vec<&str> = stable.into_iter().chain([ctx.new_hash()]).collect();
    let others = ctx
        .other_replica_sets(&keep)
        .iter()
        .fold(0i32, |sum, rs| sum.saturating_add(rs.spec_replicas.max(0)));
    basic_canary_counts(
        budget(canary, ctx.replicas()),
        weight,
        stable
            .and_then(|hash| ctx.obs.replica_set(hash))
            .map(|rs| Counts::of(Some(rs))),
        Counts::of(ctx.obs.new_replica_set()),
        others,
    )
}

/// C1: without a router, the replica counts are the weight.
fn converge_without_router(ctx: &mut Ctx<'_>, canary: &CanaryStrategy, stable: &str, index: i32) {
    let replicas = ctx.replicas();
    let new = ctx.obs.new_replica_set();
    if is_complete(canary, index, new, replicas) {
        promote(ctx, canary);
        return;
    }
    let (stable_target, canary_target) =
        basic_targets(ctx, canary, Some(stable), step_weight(canary, index));
    let new_hash = ctx.new_hash();
    ctx.scale_to(new_hash, canary_target);
    point_services(ctx, canary, stable);
    ctx.scale_to(stable, stable_target);
}

fn budget(canary: &CanaryStrategy, replicas: i32) -> Budget {
    // `validate` has accepted both values, so the fallbacks are never used.
    Budget {
        replicas,
        max_surge: canary.max_surge_for(replicas).unwrap_or(1),
        max_unavailable: canary.max_unavailable_for(replicas).unwrap_or(0),
    }
}

/// All steps done and the canary runs every pod, available (or as many as
/// `replicaProgressThreshold` asks for).
fn is_complete(
    canary: &CanaryStrategy,
    index: i32,
    new: Option<&ObservedReplicaSet>,
    replicas: i32,
) -> bool {
    let steps = i32::try_from(canary.steps.len()).unwrap_or(i32::MAX);
    index >= steps
        && new.is_some_and(|rs| {
            rs.spec_replicas == replicas
                && enough_available(canary, rs.available_replicas, replicas)
        })
}

/// C2/C5/C9: with a router the canary's pods follow the step, the weight follows once the canary
/// has those pods available, and the stable stays full unless `dynamicStableScale`.
fn converge_with_router(ctx: &mut Ctx<'_>, canary: &CanaryStrategy, stable: &str, index: i32) {
    let replicas = ctx.replicas();
    let new = ctx.obs.new_replica_set();
    if is_complete(canary, index, new, replicas) {
        promote(ctx, canary);
        return;
    }
    let canary_target = router_canary_replicas(canary, index, replicas);
    let canary_ready = new.is_some_and(|rs| {
        rs.spec_replicas == canary_target
            && enough_available(canary, rs.available_replicas, canary_target)
    });
    let weight = if canary_ready {
        step_weight(canary, index)
    } else {
        // Keep the weight of the previous step until the canary can take more (Argo does too).
        let end = usize::try_from(index).unwrap_or(0);
        last_weight_before(canary, end).min(step_weight(canary, index))
    };
    let new_hash = ctx.new_hash();
    ctx.scale_to(new_hash, canary_target);
    point_services(ctx, canary, stable);
    set_weight(ctx, canary, weight, new_hash, stable);
    managed_routes::set_routes(ctx, canary, routes_in_force(ctx, canary, index));
    let stable_target = if canary.dynamic_stable_scale() {
        at_least_min_pods(
            canary,
            replicas.saturating_sub(replicas_for_weight(
                weight,
                replicas,
                canary.max_traffic_weight(),
            )),
        )
    } else {
        replicas
    };
    ctx.scale_to(stable, stable_target);
}

/// The managed routes of the steps completed before `index`; none (as in Argo) after
/// `promote --full` or a fast rollback, or while the canary has no available pod to answer them.
fn routes_in_force(
    ctx: &Ctx<'_>,
    canary: &CanaryStrategy,
    index: i32,
) -> Vec<managed_routes::ActiveRoute> {
    let canary_available = ctx
        .obs
        .new_replica_set()
        .is_some_and(|rs| rs.available_replicas > 0);
    if !canary_available || ctx.status.promote_full() || ctx.rollback_within_window() {
        return Vec::new();
    }
    managed_routes::routes_after(canary, index)
}

/// The canary Service selects the canary once it has ready pods (the stable until then); the
/// stable Service selects the stable.
fn point_services(ctx: &mut Ctx<'_>, canary: &CanaryStrategy, stable: &str) {
    let new_hash = ctx.new_hash();
    let canary_ready = ctx
        .obs
        .new_replica_set()
        .is_some_and(|rs| rs.ready_replicas > 0);
    let canary_target = if canary_ready { new_hash } else { stable };
    ctx.select(canary.canary_service.as_deref(), canary_target);
    ctx.select(canary.stable_service.as_deref(), stable);
}

/// Records the weight in `status.canary.weights` and asks the router for it when it changed.
fn set_weight(
    ctx: &mut Ctx<'_>,
    canary: &CanaryStrategy,
    weight: i32,
    canary_hash: &str,
    stable: &str,
) {
    // A weight read back from a hand-written status may be anything.
    let max_weight = canary.max_traffic_weight();
    let weight = weight.clamp(0, max_weight);
    let weights = TrafficWeights {
        canary: WeightDestination {
            weight,
            service_name: canary.canary_service.clone(),
            pod_template_hash: Some(canary_hash.to_string()),
        },
        stable: WeightDestination {
            weight: max_weight - weight,
            service_name: canary.stable_service.clone(),
            pod_template_hash: Some(stable.to_string()),
        },
    };
    let applied = ctx
        .old
        .canary
        .as_ref()
        .and_then(|c| c.weights.as_ref())
        .map(|w| w.canary.weight);
    if applied != Some(weight) {
        ctx.actions.push(Action::SetCanaryWeight { weight });
    }
    ctx.status
        .canary
        .get_or_insert_with(Default::default)
        .weights = Some(weights);
}

/// All steps done and the canary complete: it becomes the stable (A6: background analysis is
/// terminated), then the steady-state rules switch Services and weight and retire the old stable.
fn promote(ctx: &mut Ctx<'_>, canary: &CanaryStrategy) {
    let new_hash = ctx.new_hash();
    ctx.status.stable_rs = Some(new_hash.to_string());
    ctx.event(
        EventReason::RolloutCompleted,
        format!(
            "Rollout completed update to revision {} ({new_hash})",
            ctx.new_revision()
        ),
    );
    ctx.progressed = true;
    plan_steady(ctx, canary);
}

/// C7: weight back to 0 at once (C9: with `dynamicStableScale`, only as fast as the stable is
/// available again), canary Service back to the stable, stable to full size; the canary is scaled
/// down after `abortScaleDownDelaySeconds` with a router, at once (within the surge budget)
/// without.
fn plan_abort(ctx: &mut Ctx<'_>, canary: &CanaryStrategy, stable: &str) {
    ctx.acknowledge_abort();
    let replicas = ctx.replicas();
    let new_hash = ctx.new_hash();
    let new = ctx.obs.new_replica_set();
    let stable_counts = Counts::of(ctx.obs.replica_set(stable));
    ctx.select(canary.canary_service.as_deref(), stable);
    ctx.select(canary.stable_service.as_deref(), stable);
    if !canary.has_traffic_routing() {
        let (stable_target, canary_target) = basic_targets(ctx, canary, Some(stable), 0);
        ctx.scale_to(stable, stable_target);
        if let Some(rs) = new {
            ctx.scale_existing(rs, canary_target);
        }
        return;
    }
    let weight = if canary.dynamic_stable_scale() {
        let max_weight = canary.max_traffic_weight();
        let stable_share = i32::try_from(
            i64::from(stable_counts.available) * i64::from(max_weight) / i64::from(replicas.max(1)),
        )
        .unwrap_or(max_weight);
        ctx.old
            .canary_weight()
            .min((max_weight - stable_share).max(0))
    } else {
        0
    };
    set_weight(ctx, canary, weight, new_hash, stable);
    managed_routes::set_routes(ctx, canary, Vec::new());
    ctx.scale_to(stable, replicas);
    if weight == 0
        && let Some(rs) = new
    {
        let delay = canary.abort_scale_down_delay_seconds();
        ctx.scale_down_after(rs, (delay > 0).then_some(delay));
    }
}

/// R8: a revision between the stable and the current one (an update replaced it) is scaled down.
/// With a router at once: it gets no traffic any more (the weight restarted with the steps); one
/// already waiting for its scale-down deadline (an old stable, an aborted canary) waits it out
/// within `scaleDownDelayRevisionLimit`, as in Argo.
/// Without one its pods still take traffic, so (as Argo) they go as fast as availability allows.
fn scale_down_in_between(ctx: &mut Ctx<'_>, canary: &CanaryStrategy, stable: &str) {
    let new_hash = ctx.new_hash();
    if canary.has_traffic_routing() {
        ctx.scale_down_others_after(&[stable, new_hash], 0);
    } else {
        scale_down_older_without_router(ctx, canary, &[stable, new_hash]);
    }
}

/// Every revision but `keep` scaled down within the availability budget, newest first (C1, Argo's
/// `scaleDownOldReplicaSetsForCanary` for a basic canary).
fn scale_down_older_without_router(ctx: &mut Ctx<'_>, canary: &CanaryStrategy, keep: &[&str]) {
    let others = ctx.other_replica_sets(keep);
    let available: i64 = ctx
        .obs
        .replica_sets
        .iter()
        .map(|rs| i64::from(rs.available_replicas.max(0)))
        .sum();
    let counts: Vec<Counts> = others.iter().map(|rs| Counts::of(Some(rs))).collect();
    let targets = older_replica_set_counts(budget(canary, ctx.replicas()), available, &counts);
    for (rs, target) in others.into_iter().zip(targets) {
        if target == 0 {
            ctx.scale_down_after(rs, Some(0));
        } else {
            ctx.scale_existing(rs, target);
        }
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;
    use crate::api::analysis::AnalysisPhase;
    use crate::api::rollout::{RolloutPhase, SetCanaryScale};
    use crate::rollout::action::Plan;
    use crate::rollout::observed::AnalysisType;
    use crate::rollout::plan::plan;
    use crate::rollout::plan::testkit::*;

    fn weights(obs: &crate::rollout::observed::Observed) -> (i32, i32) {
        let w = status(obs).canary.unwrap().weights.unwrap();
        (w.stable.weight, w.canary.weight)
    }

    fn pause_reasons(obs: &crate::rollout::observed::Observed) -> Vec<PauseReason> {
        status(obs)
            .pause_conditions
            .iter()
            .map(|c| c.reason)
            .collect()
    }

    #[test]
    fn c1_set_weight_without_router_runs_the_split_closest_to_the_weight_within_the_surge() {
        let mut obs = deployed(canary(5, vec![weight(30), pause()]));
        update(&mut obs, "h2");
        settle(&mut obs);
        // As Argo: 2 canary pods of 6 (33%, the 25% surge allows a 6th pod) are closer to 30%
        // than 2 of 5 (40%) or 1 of 5 (20%).
        assert_eq!(spec_replicas(&obs, "h2"), 2);
        assert_eq!(spec_replicas(&obs, "h1"), 4);
        assert_eq!(status(&obs).current_step_index, Some(1));
        assert!(status(&obs).canary.and_then(|c| c.weights).is_none());
    }

    /// Issue 18, Argo's rollout-basic.yaml: 1 replica at setWeight 50 runs 1 stable + 1 canary
    /// (half the traffic on the canary), never the canary alone.
    #[test]
    fn c1_one_replica_at_weight_50_runs_one_stable_and_one_canary() {
        let mut obs = deployed(canary(1, vec![weight(50), pause()]));
        update(&mut obs, "h2");
        settle(&mut obs);
        assert_eq!(phase(&obs), RolloutPhase::Paused);
        assert_eq!(
            (spec_replicas(&obs, "h1"), spec_replicas(&obs, "h2")),
            (1, 1)
        );
        user_promotes(&mut obs);
        settle(&mut obs);
        assert_eq!(phase(&obs), RolloutPhase::Healthy);
        assert_eq!(
            (spec_replicas(&obs, "h1"), spec_replicas(&obs, "h2")),
            (0, 1)
        );
    }

    /// Issue 18, Argo's rollout-canary-with-pause.yaml: 3 replicas at setWeight 20 run 3 stable +
    /// 1 canary; an update during the pause scales the replaced revision 2 down and revision 3
    /// gets the canary pod.
    #[test]
    fn c1_three_replicas_at_weight_20_run_three_stable_and_one_canary() {
        let mut obs = deployed(canary(3, vec![weight(20), pause()]));
        update(&mut obs, "h2");
        settle(&mut obs);
        assert_eq!(phase(&obs), RolloutPhase::Paused);
        assert_eq!(
            (spec_replicas(&obs, "h1"), spec_replicas(&obs, "h2")),
            (3, 1)
        );
        update(&mut obs, "h3");
        settle(&mut obs);
        assert_eq!(phase(&obs), RolloutPhase::Paused);
        assert_eq!(
            (
                spec_replicas(&obs, "h1"),
                spec_replicas(&obs, "h2"),
                spec_replicas(&obs, "h3")
            ),
            (3, 0, 1)
        );
    }

    /// R7 without a router, as Argo: going back to the stable template grows the stable within
    /// the surge while the canary's pods (still taking traffic) go as availability allows.
    #[test]
    fn c1_rollback_without_router_moves_pods_within_surge_and_availability() {
        let mut obs = deployed(canary(4, vec![weight(50), pause()]));
        update(&mut obs, "h2");
        settle(&mut obs);
        assert_eq!(
            (spec_replicas(&obs, "h1"), spec_replicas(&obs, "h2")),
            (2, 2)
        );
        update(&mut obs, "h1");
        // 25% of 4: one pod of surge, one unavailable.
        step(&mut obs);
        assert_eq!(
            (spec_replicas(&obs, "h1"), spec_replicas(&obs, "h2")),
            (3, 1)
        );
        pods_ready(&mut obs);
        step(&mut obs);
        assert_eq!(
            (spec_replicas(&obs, "h1"), spec_replicas(&obs, "h2")),
            (4, 0)
        );
        settle(&mut obs);
        assert_eq!(phase(&obs), RolloutPhase::Healthy);
    }

    #[test]
    fn canary_walk_through_update_steps_pause_promote_to_healthy() {
        let mut obs = deployed(canary(
            10,
            vec![weight(20), pause(), weight(60), pause_for("30s")],
        ));
        update(&mut obs, "h2");
        let mut plans = settle(&mut obs);
        assert_eq!(phase(&obs), RolloutPhase::Paused);
        assert_eq!(status(&obs).message.as_deref(), Some("CanaryPauseStep"));
        assert_eq!(status(&obs).current_step_index, Some(1));
        assert_eq!(
            (spec_replicas(&obs, "h1"), spec_replicas(&obs, "h2")),
            (8, 2)
        );

        user_promotes(&mut obs);
        plans.extend(settle(&mut obs));
        assert_eq!(status(&obs).current_step_index, Some(3));
        assert_eq!(pause_reasons(&obs), vec![PauseReason::CanaryPauseStep]);
        assert_eq!(
            (spec_replicas(&obs, "h1"), spec_replicas(&obs, "h2")),
            (4, 6)
        );
        let requeue = plan(&obs).requeue_after.unwrap();
        assert!(requeue <= std::time::Duration::from_secs(30), "{requeue:?}");

        advance(&mut obs, 29);
        assert_eq!(
            plan(&obs).changes().count(),
            0,
            "a timed pause waits its time"
        );
        advance(&mut obs, 1);
        plans.extend(settle(&mut obs));
        let s = status(&obs);
        assert_eq!(phase(&obs), RolloutPhase::Healthy, "{s:#?}");
        assert_eq!(s.stable_rs.as_deref(), Some("h2"));
        assert_eq!(s.current_step_index, Some(4));
        assert_eq!(
            (spec_replicas(&obs, "h1"), spec_replicas(&obs, "h2")),
            (0, 10)
        );
        let created: Vec<_> = creates(&plans);
        assert_eq!(created.len(), 1, "{created:?}");
    }

    #[test]
    fn c2_router_weights_move_per_step_and_services_select_their_hashes() {
        let steps = vec![
            weight(20),
            pause(),
            weight(50),
            pause(),
            weight(100),
            pause(),
        ];
        let mut obs = deployed(canary_with_router(4, steps));
        assert_eq!(weights(&obs), (100, 0));
        update(&mut obs, "h2");
        let mut seen = Vec::new();
        for _ in 0..3 {
            let plans = settle(&mut obs);
            seen.push(weights(&obs));
            assert_eq!(obs.service_hash("web-canary"), Some("h2"));
            assert_eq!(obs.service_hash("web-stable"), Some("h1"));
            assert_eq!(spec_replicas(&obs, "h1"), 4, "the stable stays full");
            assert!(plans.iter().any(|p| weight_action(p).is_some()));
            user_promotes(&mut obs);
        }
        assert_eq!(seen, vec![(80, 20), (50, 50), (0, 100)]);
        settle(&mut obs);
        assert_eq!(phase(&obs), RolloutPhase::Healthy);
        assert_eq!(obs.service_hash("web-stable"), Some("h2"));
        assert_eq!(weights(&obs), (100, 0));
    }

    #[test]
    fn max_traffic_weight_is_the_total_of_weights_and_of_pods_per_weight() {
        let steps = vec![weight(250), pause(), weight(700), pause()];
        let mut rollout = canary_with_router(10, steps);
        canary_spec(&mut rollout)
            .traffic_routing
            .as_mut()
            .unwrap()
            .max_traffic_weight = Some(1000);
        let mut obs = deployed(rollout);
        assert_eq!(weights(&obs), (1000, 0));
        update(&mut obs, "h2");
        let mut seen = Vec::new();
        for _ in 0..2 {
            let plans = settle(&mut obs);
            seen.push((weights(&obs), spec_replicas(&obs, "h2")));
            assert!(plans.iter().any(|p| weight_action(p).is_some()));
            user_promotes(&mut obs);
        }
        // ceil(250 × 10 / 1000) = 3 and ceil(700 × 10 / 1000) = 7 canary pods.
        assert_eq!(seen, vec![((750, 250), 3), ((300, 700), 7)]);
        settle(&mut obs);
        assert_eq!(phase(&obs), RolloutPhase::Healthy);
        assert_eq!(weights(&obs), (1000, 0));
        assert_eq!(replicas_for_weight(1, 10, 1000), 1);
        assert_eq!(replicas_for_weight(1000, 10, 1000), 10);
        assert_eq!(replicas_for_weight(5000, 10, 1000), 10);
        assert_eq!(replicas_for_weight(50, 4, 100), 2);
    }

    #[test]
    fn c2_weight_waits_until_the_canary_has_available_pods() {
        let mut obs = deployed(canary_with_router(4, vec![weight(50), pause()]));
        update(&mut obs, "h2");
        let first = step(&mut obs);
        assert_eq!(weight_action(&first), None);
        assert_eq!(weights(&obs).1, 0);
        assert_eq!(
            obs.service_hash("web-canary"),
            Some("h1"),
            "no ready canary pods"
        );
        pods_ready(&mut obs);
        let second = step(&mut obs);
        assert_eq!(weight_action(&second), Some(50));
        assert_eq!(obs.service_hash("web-canary"), Some("h2"));
    }

    /// The ReplicaSet of `hash` has `available` of its pods available (an HPA-like slow tail).
    fn only_available(obs: &mut crate::rollout::observed::Observed, hash: &str, available: i32) {
        let rs = obs
            .replica_sets
            .iter_mut()
            .find(|rs| rs.pod_template_hash == hash)
            .unwrap();
        rs.replicas = rs.spec_replicas;
        rs.ready_replicas = available;
        rs.available_replicas = available;
    }

    #[test]
    fn replica_progress_threshold_lets_steps_and_promotion_go_on_with_that_many_pods() {
        use crate::api::rollout::{ProgressType, ReplicaProgressThreshold};
        for (threshold, goes_on) in [
            (None, false),
            (Some((ProgressType::Percent, 80)), true),
            (Some((ProgressType::Percent, 81)), false),
            (Some((ProgressType::Pods, 4)), true),
            (Some((ProgressType::Pods, 5)), false),
        ] {
            let mut rollout = canary_with_router(10, vec![weight(50), pause()]);
            canary_spec(&mut rollout).replica_progress_threshold =
                threshold.map(|(type_, value)| ReplicaProgressThreshold { type_, value });
            let mut obs = deployed(rollout);
            update(&mut obs, "h2");
            step(&mut obs);
            assert_eq!(spec_replicas(&obs, "h2"), 5);
            only_available(&mut obs, "h2", 4);
            for _ in 0..5 {
                step(&mut obs);
                only_available(&mut obs, "h2", 4);
            }
            let expected = if goes_on { (50, Some(1)) } else { (0, Some(0)) };
            assert_eq!(
                (weights(&obs).1, status(&obs).current_step_index),
                expected,
                "{threshold:?}"
            );
            if !goes_on {
                continue;
            }
            // The promotion: 8 of the 10 pods is 80 % (and more than 4 pods).
            user_promotes(&mut obs);
            for _ in 0..5 {
                step(&mut obs);
                only_available(&mut obs, "h2", 8);
            }
            assert_eq!(
                status(&obs).stable_rs.as_deref(),
                Some("h2"),
                "{threshold:?}"
            );
        }
    }

    #[test]
    fn c4_pause_without_duration_waits_for_promote_with_reason_canary_pause_step() {
        let mut obs = deployed(canary(2, vec![pause(), weight(50)]));
        update(&mut obs, "h2");
        settle(&mut obs);
        assert_eq!(pause_reasons(&obs), vec![PauseReason::CanaryPauseStep]);
        assert!(status(&obs).controller_pause());
        advance(&mut obs, 3600);
        let p = plan(&obs);
        assert_eq!(p.status.current_step_index, Some(0));
        assert_eq!(p.requeue_after, None);
    }

    #[test]
    fn c4_timed_pause_resumes_by_itself_in_seconds_or_duration_strings() {
        for (duration, seconds) in [("30", 30), ("30s", 30), ("5m", 300), ("1h", 3600)] {
            let mut obs = deployed(canary(2, vec![pause_for(duration), weight(50)]));
            update(&mut obs, "h2");
            let p = step(&mut obs);
            assert_eq!(
                p.requeue_after,
                Some(std::time::Duration::from_secs(seconds)),
                "{duration}"
            );
            advance(&mut obs, i64::try_from(seconds).unwrap() - 1);
            assert_eq!(plan(&obs).status.current_step_index, Some(0), "{duration}");
            advance(&mut obs, 1);
            let p = step(&mut obs);
            assert_eq!(p.status.current_step_index, Some(1), "{duration}");
            assert!(p.status.pause_conditions.is_empty());
        }
    }

    #[test]
    fn c5_set_canary_scale_changes_canary_pods_independently_of_traffic() {
        let steps = vec![
            canary_scale(SetCanaryScale {
                replicas: Some(3),
                ..Default::default()
            }),
            weight(10),
            pause(),
            canary_scale(SetCanaryScale {
                match_traffic_weight: Some(true),
                ..Default::default()
            }),
            pause(),
        ];
        let mut obs = deployed(canary_with_router(10, steps));
        update(&mut obs, "h2");
        settle(&mut obs);
        assert_eq!(status(&obs).current_step_index, Some(2));
        assert_eq!(spec_replicas(&obs, "h2"), 3);
        assert_eq!(weights(&obs), (90, 10));
        user_promotes(&mut obs);
        settle(&mut obs);
        assert_eq!(spec_replicas(&obs, "h2"), 1, "matches the 10% weight again");
        assert_eq!(weights(&obs), (90, 10));
    }

    #[test]
    fn c6_promote_advances_exactly_one_step() {
        let mut obs = deployed(canary(4, vec![pause(), pause(), weight(50)]));
        update(&mut obs, "h2");
        settle(&mut obs);
        user_promotes(&mut obs);
        let p = step(&mut obs);
        assert_eq!(p.status.current_step_index, Some(1));
        assert_eq!(p.status.pause_conditions.len(), 1);
        assert!(p.event_reasons().contains(&EventReason::RolloutResumed));
    }

    #[test]
    fn c6_promote_full_skips_remaining_steps_and_analysis_even_in_a_pause_or_analysis() {
        for first in [pause_for("1h"), analysis_step("success-rate")] {
            let mut obs = deployed(canary(4, vec![first, weight(50), pause()]));
            update(&mut obs, "h2");
            settle(&mut obs);
            edit_status(&mut obs, |s| s.promote_full = Some(true));
            let p = step(&mut obs);
            assert!(p.status.pause_conditions.is_empty());
            pods_ready(&mut obs);
            settle(&mut obs);
            assert_eq!(phase(&obs), RolloutPhase::Healthy);
            assert_eq!(status(&obs).stable_rs.as_deref(), Some("h2"));
            assert_eq!(status(&obs).promote_full, None);
            assert!(
                obs.analysis_runs
                    .iter()
                    .all(|r| r.phase != AnalysisPhase::Running)
            );
        }
    }

    fn aborted_router_canary(abort_delay: Option<i32>) -> crate::rollout::observed::Observed {
        let mut rollout = canary_with_router(4, vec![weight(50), pause()]);
        canary_spec(&mut rollout).abort_scale_down_delay_seconds = abort_delay;
        let mut obs = deployed(rollout);
        update(&mut obs, "h2");
        settle(&mut obs);
        assert_eq!(weights(&obs), (50, 50));
        edit_status(&mut obs, |s| s.abort = Some(true));
        obs
    }

    #[test]
    fn c7_abort_sets_weight_zero_at_once_and_delays_canary_scale_down() {
        let mut obs = aborted_router_canary(None);
        let p = step(&mut obs);
        assert_eq!(weight_action(&p), Some(0));
        assert_eq!(obs.service_hash("web-canary"), Some("h1"));
        assert_eq!(
            spec_replicas(&obs, "h2"),
            2,
            "kept for abortScaleDownDelaySeconds"
        );
        assert_eq!(p.requeue_after, Some(std::time::Duration::from_secs(30)));
        assert_eq!(phase(&obs), RolloutPhase::Degraded);
        assert!(
            status(&obs)
                .message
                .unwrap()
                .starts_with("RolloutAborted: Rollout aborted update to revision 2")
        );
        assert!(p.event_reasons().contains(&EventReason::RolloutAborted));
        // Planning again changes nothing; after 30 s the canary goes.
        assert_eq!(plan(&obs).changes().count(), 0);
        advance(&mut obs, 30);
        step(&mut obs);
        assert_eq!(spec_replicas(&obs, "h2"), 0);
        assert_eq!(obs.replica_set("h2").unwrap().scale_down_deadline, None);
        assert_eq!(phase(&obs), RolloutPhase::Degraded);
    }

    #[test]
    fn c7_abort_scale_down_delay_zero_keeps_the_canary() {
        let mut obs = aborted_router_canary(Some(0));
        step(&mut obs);
        advance(&mut obs, 3600);
        settle(&mut obs);
        assert_eq!(spec_replicas(&obs, "h2"), 2);
        assert_eq!(weights(&obs), (100, 0));
    }

    #[test]
    fn c7_abort_without_router_scales_canary_down_and_stable_up() {
        let mut obs = deployed(canary(4, vec![weight(50), pause()]));
        update(&mut obs, "h2");
        settle(&mut obs);
        edit_status(&mut obs, |s| s.abort = Some(true));
        settle(&mut obs);
        assert_eq!(
            (spec_replicas(&obs, "h1"), spec_replicas(&obs, "h2")),
            (4, 0)
        );
        assert_eq!(phase(&obs), RolloutPhase::Degraded);
    }

    #[test]
    fn c7_retry_restarts_the_steps() {
        let mut obs = aborted_router_canary(None);
        settle(&mut obs);
        assert_eq!(status(&obs).current_step_index, Some(0));
        edit_status(&mut obs, |s| s.abort = Some(false));
        let p = step(&mut obs);
        assert!(p.event_reasons().contains(&EventReason::RolloutResumed));
        assert_eq!(p.status.aborted_at, None);
        settle(&mut obs);
        assert_eq!(status(&obs).current_step_index, Some(1));
        assert_eq!(spec_replicas(&obs, "h2"), 2);
        assert_eq!(weights(&obs), (50, 50));
        assert_eq!(phase(&obs), RolloutPhase::Paused);
    }

    #[test]
    fn c8_old_stable_scaled_down_after_delay_with_router_and_at_once_without() {
        // With a router: the deadline is kept on the ReplicaSet.
        let mut obs = deployed(canary_with_router(2, vec![weight(50)]));
        update(&mut obs, "h2");
        let plans = settle(&mut obs);
        assert_eq!(status(&obs).stable_rs.as_deref(), Some("h2"));
        assert_eq!(spec_replicas(&obs, "h1"), 2);
        let deadline = obs.replica_set("h1").unwrap().scale_down_deadline.unwrap();
        assert!(plans.iter().any(|p| p.requeue_after.is_some()));
        advance(&mut obs, 30);
        assert!(obs.now >= deadline);
        settle(&mut obs);
        assert_eq!(spec_replicas(&obs, "h1"), 0);

        // Without: the old stable is already down when the canary is complete.
        let mut obs = deployed(canary(2, vec![weight(50)]));
        update(&mut obs, "h2");
        settle(&mut obs);
        assert_eq!(status(&obs).stable_rs.as_deref(), Some("h2"));
        assert_eq!(spec_replicas(&obs, "h1"), 0);
    }

    #[test]
    fn c8_scale_down_delay_revision_limit_scales_older_revisions_down_at_once() {
        let mut rollout = canary_with_router(2, vec![weight(50)]);
        canary_spec(&mut rollout).scale_down_delay_revision_limit = Some(1);
        let mut obs = deployed(rollout);
        update(&mut obs, "h2");
        settle(&mut obs);
        assert_eq!(spec_replicas(&obs, "h1"), 2, "within the limit: it waits");
        update(&mut obs, "h3");
        settle(&mut obs);
        assert_eq!(status(&obs).stable_rs.as_deref(), Some("h3"));
        assert_eq!(
            spec_replicas(&obs, "h2"),
            2,
            "the newest old revision waits"
        );
        assert_eq!(spec_replicas(&obs, "h1"), 0, "beyond the limit");

        // Without a router there is no delay to limit: refused, as minPodsPerReplicaSet.
        let mut rollout = canary(2, vec![weight(50)]);
        canary_spec(&mut rollout).scale_down_delay_revision_limit = Some(1);
        assert!(
            rollout
                .spec
                .validate()
                .unwrap_err()
                .to_string()
                .starts_with("spec.strategy.canary.scaleDownDelayRevisionLimit applies only with trafficRouting")
        );
    }

    #[test]
    fn c9_dynamic_stable_scale_shrinks_stable_and_shifts_traffic_back_as_stable_recovers() {
        let mut rollout = canary_with_router(10, vec![weight(40), pause()]);
        canary_spec(&mut rollout).dynamic_stable_scale = Some(true);
        canary_spec(&mut rollout).abort_scale_down_delay_seconds = Some(0);
        let mut obs = deployed(rollout);
        update(&mut obs, "h2");
        settle(&mut obs);
        assert_eq!(
            (spec_replicas(&obs, "h1"), spec_replicas(&obs, "h2")),
            (6, 4)
        );
        assert_eq!(weights(&obs), (60, 40));

        edit_status(&mut obs, |s| s.abort = Some(true));
        let p = step(&mut obs);
        // The stable has 6 of 10 pods available: 40% must stay on the canary for now.
        assert_eq!(weight_action(&p), None);
        assert_eq!(weights(&obs), (60, 40));
        assert_eq!(spec_replicas(&obs, "h1"), 10);
        pods_ready(&mut obs);
        let p = step(&mut obs);
        assert_eq!(weight_action(&p), Some(0));
    }

    #[test]
    fn c11_min_pods_per_replica_set_floors_routed_canary_and_dynamic_stable_pods() {
        // 10 replicas at 5%: ceil(0.5) = 1 canary pod, floored to 3; the weight stays 5%.
        let mut rollout = canary_with_router(10, vec![weight(5), pause(), weight(95), pause()]);
        canary_spec(&mut rollout).min_pods_per_replica_set = Some(3);
        canary_spec(&mut rollout).dynamic_stable_scale = Some(true);
        let mut obs = deployed(rollout);
        update(&mut obs, "h2");
        settle(&mut obs);
        assert_eq!(spec_replicas(&obs, "h2"), 3);
        assert_eq!(weights(&obs), (95, 5));
        // At 95% the dynamic stable keeps 10 - ceil(9.5) = 0 pods: the floor only applies to a
        // ReplicaSet that gets pods (Argo's `count == 0` case).
        user_promotes(&mut obs);
        settle(&mut obs);
        assert_eq!(spec_replicas(&obs, "h2"), 10);
        assert_eq!(weights(&obs), (5, 95));
        assert_eq!(spec_replicas(&obs, "h1"), 0);

        // Without the field the canary has the weight's single pod.
        let mut obs = deployed(canary_with_router(10, vec![weight(5), pause()]));
        update(&mut obs, "h2");
        settle(&mut obs);
        assert_eq!(spec_replicas(&obs, "h2"), 1);
    }

    fn rollback_after_a_full_update(window: Option<i32>) -> crate::rollout::observed::Observed {
        let mut rollout =
            canary_with_router(4, vec![weight(20), analysis_step("t"), pause(), weight(60)]);
        rollout.spec.rollback_window =
            window.map(|revisions| crate::api::rollout::RollbackWindow {
                revisions: Some(revisions),
            });
        let mut obs = deployed(rollout);
        advance(&mut obs, 60);
        update(&mut obs, "h2");
        settle(&mut obs);
        edit_status(&mut obs, |s| s.promote_full = Some(true));
        settle(&mut obs);
        assert_eq!(status(&obs).stable_rs.as_deref(), Some("h2"));
        advance(&mut obs, 60);
        // Back to the first revision's template.
        update(&mut obs, "h1");
        settle(&mut obs);
        obs
    }

    #[test]
    fn c12_a_rollback_within_the_rollback_window_skips_steps_pauses_and_analysis() {
        let obs = rollback_after_a_full_update(Some(1));
        let s = status(&obs);
        assert_eq!(s.stable_rs.as_deref(), Some("h1"), "{s:#?}");
        assert_eq!(s.current_step_index, Some(4));
        assert!(
            obs.analysis_runs
                .iter()
                .all(|r| r.pod_template_hash != "h1")
        );
        assert_eq!(weights(&obs), (100, 0));
        assert_eq!(phase(&obs), RolloutPhase::Healthy);
    }

    #[test]
    fn c12_a_rollback_outside_the_window_or_without_one_runs_the_steps() {
        for window in [None, Some(0)] {
            let obs = rollback_after_a_full_update(window);
            let s = status(&obs);
            assert_eq!(s.stable_rs.as_deref(), Some("h2"), "{window:?}");
            assert_eq!(s.current_step_index, Some(1), "waits on the analysis step");
            assert!(
                obs.analysis_runs
                    .iter()
                    .any(|r| r.pod_template_hash == "h1")
            );
        }
    }

    #[test]
    fn min_pods_per_replica_set_without_a_router_is_invalid_spec() {
        let mut rollout = canary(4, vec![weight(50)]);
        canary_spec(&mut rollout).min_pods_per_replica_set = Some(2);
        let message = rollout.spec.validate().unwrap_err().to_string();
        assert!(
            message.contains("spec.strategy.canary.minPodsPerReplicaSet")
                && message.contains("trafficRouting"),
            "{message}"
        );
    }

    #[test]
    fn c10_event_reasons_in_order_for_update_pause_abort_retry_complete() {
        let mut obs = deployed(canary(2, vec![weight(50), pause()]));
        update(&mut obs, "h2");
        let mut plans: Vec<Plan> = settle(&mut obs);
        edit_status(&mut obs, |s| s.abort = Some(true));
        plans.extend(settle(&mut obs));
        edit_status(&mut obs, |s| s.abort = Some(false));
        plans.extend(settle(&mut obs));
        user_promotes(&mut obs);
        plans.extend(settle(&mut obs));
        let reasons: Vec<EventReason> = plans.iter().flat_map(Plan::event_reasons).collect();
        let order = [
            EventReason::RolloutUpdated,
            EventReason::NewReplicaSetCreated,
            EventReason::ScalingReplicaSet,
            EventReason::RolloutStepCompleted,
            EventReason::RolloutPaused,
            EventReason::RolloutAborted,
            EventReason::RolloutResumed,
            EventReason::RolloutCompleted,
        ];
        let mut from = 0;
        for reason in order {
            let at = reasons[from..]
                .iter()
                .position(|r| *r == reason)
                .unwrap_or_else(|| panic!("{reason:?} missing after {from} in {reasons:?}"));
            from += at + 1;
        }
    }

    #[test]
    fn a5_step_analysis_failed_or_error_aborts_with_the_metric_in_the_message() {
        for failed in [AnalysisPhase::Failed, AnalysisPhase::Error] {
            let mut obs = deployed(canary_with_router(
                2,
                vec![weight(50), analysis_step("success-rate"), pause()],
            ));
            update(&mut obs, "h2");
            settle(&mut obs);
            finish_run(&mut obs, AnalysisType::Step, failed);
            let p = step(&mut obs);
            assert_eq!(weight_action(&p), Some(0));
            assert!(p.status.aborted());
            let message = p.status.message.unwrap();
            assert!(message.starts_with("RolloutAborted:"), "{message}");
            assert!(message.contains("success-rate"), "{message}");
        }
    }

    #[test]
    fn c7_retry_after_a_failed_analysis_runs_a_fresh_analysis() {
        let mut obs = deployed(canary(2, vec![analysis_step("t"), weight(50), pause()]));
        update(&mut obs, "h2");
        settle(&mut obs);
        finish_run(&mut obs, AnalysisType::Step, AnalysisPhase::Failed);
        settle(&mut obs);
        assert_eq!(phase(&obs), RolloutPhase::Degraded);
        edit_status(&mut obs, |s| s.abort = Some(false));
        settle(&mut obs);
        let names: Vec<&str> = obs.analysis_runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, vec!["web-h2-2-0", "web-h2-2-0.1"]);
        assert_eq!(phase(&obs), RolloutPhase::Progressing);
        finish_run(&mut obs, AnalysisType::Step, AnalysisPhase::Successful);
        settle(&mut obs);
        assert_eq!(phase(&obs), RolloutPhase::Paused);
        assert_eq!(status(&obs).current_step_index, Some(2));
    }

    #[test]
    fn a5_inconclusive_step_analysis_pauses_and_promote_continues() {
        let mut obs = deployed(canary(2, vec![analysis_step("t"), weight(50), pause()]));
        update(&mut obs, "h2");
        settle(&mut obs);
        finish_run(&mut obs, AnalysisType::Step, AnalysisPhase::Inconclusive);
        settle(&mut obs);
        assert_eq!(
            pause_reasons(&obs),
            vec![PauseReason::InconclusiveAnalysisRun]
        );
        assert_eq!(phase(&obs), RolloutPhase::Paused);
        user_promotes(&mut obs);
        settle(&mut obs);
        assert_eq!(status(&obs).current_step_index, Some(2));
    }

    #[test]
    fn a6_step_analysis_blocks_the_next_step_until_successful() {
        let mut obs = deployed(canary(2, vec![analysis_step("t"), weight(50), pause()]));
        update(&mut obs, "h2");
        let plans = settle(&mut obs);
        assert_eq!(creates(&plans).len(), 2, "one ReplicaSet, one AnalysisRun");
        assert_eq!(status(&obs).current_step_index, Some(0));
        assert_eq!(spec_replicas(&obs, "h2"), 0);
        let run = &obs.analysis_runs[0];
        assert_eq!(run.name, "web-h2-2-0");
        assert_eq!(run.step_index, Some(0));
        finish_run(&mut obs, AnalysisType::Step, AnalysisPhase::Successful);
        settle(&mut obs);
        assert_eq!(status(&obs).current_step_index, Some(2));
        assert_eq!(spec_replicas(&obs, "h2"), 1);
    }

    #[test]
    fn a6_background_analysis_starts_at_starting_step_not_on_first_deploy_and_ends_at_promotion() {
        let mut rollout = canary(2, vec![weight(50), pause(), weight(100)]);
        canary_spec(&mut rollout).analysis = Some(crate::api::rollout::RolloutAnalysisBackground {
            analysis: analysis("success-rate"),
            starting_step: Some(1),
        });
        let mut obs = deployed(rollout);
        assert!(obs.analysis_runs.is_empty(), "no analysis on first deploy");
        update(&mut obs, "h2");
        let first = step(&mut obs);
        assert_eq!(
            creates(&[first]).len(),
            1,
            "only the ReplicaSet before startingStep"
        );
        settle(&mut obs);
        assert_eq!(status(&obs).current_step_index, Some(1));
        let runs: Vec<_> = obs.analysis_runs.iter().map(|r| r.analysis_type).collect();
        assert_eq!(runs, vec![AnalysisType::Background]);
        user_promotes(&mut obs);
        let plans = settle(&mut obs);
        assert_eq!(phase(&obs), RolloutPhase::Healthy);
        assert!(plans.iter().flat_map(|p| &p.actions).any(|a| matches!(
            a,
            Action::TerminateAnalysisRun { name } if name == "web-h2-2"
        )));
        assert_eq!(obs.analysis_runs[0].phase, AnalysisPhase::Successful);
    }

    #[test]
    fn a5_background_analysis_failure_aborts() {
        let mut rollout = canary_with_router(2, vec![weight(50), pause()]);
        canary_spec(&mut rollout).analysis = Some(crate::api::rollout::RolloutAnalysisBackground {
            analysis: analysis("success-rate"),
            starting_step: None,
        });
        let mut obs = deployed(rollout);
        update(&mut obs, "h2");
        settle(&mut obs);
        finish_run(&mut obs, AnalysisType::Background, AnalysisPhase::Failed);
        let p = step(&mut obs);
        assert!(p.status.aborted());
        assert_eq!(weight_action(&p), Some(0));
    }
}
