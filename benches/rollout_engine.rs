//! `make bench`, Rollout engine: the planner's time per reconcile, and the API writes the engine
//! makes per canary step. Both come from the pure planner driven by the act-step simulator, so the
//! figures are the engine's own cost, free of API-server latency.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sluice::api::rollout::RolloutPhase;
use sluice::rollout::action::{Action, Plan};
use sluice::rollout::observed::Observed;
use sluice::rollout::plan::plan;
use sluice::rollout::simulate::{
    advance, blue_green, canary_with_router, deployed, pause, pause_for, phase, pods_ready, settle,
    step, update, user_promotes, weight,
};

/// How long each planner scenario is timed.
const MEASURE_FOR: Duration = Duration::from_secs(1);

fn main() {
    println!("== Rollout engine: planner time per reconcile ==");
    for (name, observed) in planner_scenarios() {
        report_plan_time(&name, &observed);
    }
    println!();
    println!("== Rollout engine: API writes per canary step (HTTPRoute, 10 replicas) ==");
    report_writes_per_step();
}

fn steps() -> Vec<sluice::api::rollout::CanaryStep> {
    vec![
        weight(20),
        pause(),
        weight(50),
        pause_for("10s"),
        weight(80),
        pause_for("10s"),
    ]
}

/// The states a reconcile meets most: steady, mid-update with history, and waiting for promotion.
fn planner_scenarios() -> Vec<(String, Observed)> {
    let steady = deployed(canary_with_router(10, steps()));

    let mut with_history = deployed(canary_with_router(10, steps()));
    for n in 2..=11 {
        update(&mut with_history, &format!("h{n}"));
        drive_to_healthy(&mut with_history);
    }
    update(&mut with_history, "h12");
    settle(&mut with_history);

    let mut blue_green_waiting = deployed({
        let mut r = blue_green(10);
        if let Some(bg) = r.spec.strategy.blue_green.as_mut() {
            bg.auto_promotion_enabled = Some(false);
        }
        r
    });
    update(&mut blue_green_waiting, "h2");
    settle(&mut blue_green_waiting);

    vec![
        ("canary, Healthy, nothing to do".to_string(), steady),
        (
            format!(
                "canary, paused at step {} of a new revision, {} old ReplicaSets",
                step_index(&with_history),
                with_history.replica_sets.len() - 1
            ),
            with_history,
        ),
        (
            format!(
                "blue-green, {:?}, awaiting promotion",
                phase(&blue_green_waiting)
            ),
            blue_green_waiting,
        ),
    ]
}

fn step_index(obs: &Observed) -> i32 {
    obs.status().current_step_index.unwrap_or(0)
}

/// Promotes through every pause (timed ones by advancing the clock) until the update is done.
fn drive_to_healthy(obs: &mut Observed) {
    for _ in 0..100 {
        settle(obs);
        match phase(obs) {
            RolloutPhase::Healthy => return,
            RolloutPhase::Paused => user_promotes(obs),
            _ => advance(obs, 11),
        }
    }
    panic!("the rollout did not finish: {:#?}", obs.rollout.status);
}

fn report_plan_time(name: &str, obs: &Observed) {
    for _ in 0..100 {
        black_box(plan(black_box(obs)));
    }
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < MEASURE_FOR {
        let t = Instant::now();
        black_box(plan(black_box(obs)));
        samples.push(t.elapsed());
    }
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / u32::try_from(samples.len()).unwrap_or(u32::MAX);
    let p99 = samples[samples.len() * 99 / 100];
    println!(
        "{name}: mean {:.1} µs, p99 {:.1} µs per reconcile ({} reconciles)",
        micros(mean),
        micros(p99),
        samples.len()
    );
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Drives an update through every step the way the cluster would (pods become ready, the user
/// promotes the indefinite pause, time passes for the timed ones) and counts what the engine writes
/// while at each step: one write per cluster-changing action, plus the status when it changed.
fn report_writes_per_step() {
    let mut obs = deployed(canary_with_router(10, steps()));
    update(&mut obs, "h2");
    let mut per_step: BTreeMap<i32, BTreeMap<&'static str, usize>> = BTreeMap::new();
    let mut reconciles = 0;
    for _ in 0..200 {
        let before = obs.status();
        let planned = step(&mut obs);
        pods_ready(&mut obs);
        reconciles += 1;
        let writes = per_step.entry(step_index_of(&planned)).or_default();
        for action in planned.changes() {
            *writes.entry(kind(action)).or_default() += 1;
        }
        if planned.status != before {
            *writes.entry("status").or_default() += 1;
        }
        let idle = planned.changes().next().is_none() && planned.status == before;
        let done = obs.status().stable_rs.as_deref() == Some("h2");
        match phase(&obs) {
            RolloutPhase::Healthy if done => break,
            RolloutPhase::Paused if idle && !is_timed_pause(&obs) => user_promotes(&mut obs),
            _ if idle => advance(&mut obs, 1),
            _ => {}
        }
    }
    let descriptions = steps();
    let mut total = 0;
    for (index, writes) in &per_step {
        let count: usize = writes.values().sum();
        total += count;
        let what = usize::try_from(*index)
            .ok()
            .and_then(|i| descriptions.get(i))
            .map_or("(done)".to_string(), describe);
        println!("step {index} {what}: {count} writes {writes:?}");
    }
    println!("total: {total} writes over {reconciles} reconciles for a 6-step canary");
}

fn is_timed_pause(obs: &Observed) -> bool {
    let steps = steps();
    usize::try_from(step_index(obs))
        .ok()
        .and_then(|i| steps.get(i))
        .and_then(|s| s.pause.as_ref())
        .is_some_and(|p| p.duration.is_some())
}

fn step_index_of(planned: &Plan) -> i32 {
    planned.status.current_step_index.unwrap_or(0)
}

fn describe(step: &sluice::api::rollout::CanaryStep) -> String {
    match (&step.set_weight, &step.pause) {
        (Some(w), _) => format!("setWeight {w}"),
        (None, Some(p)) => match &p.duration {
            Some(IntOrString::String(d)) => format!("pause {d}"),
            Some(IntOrString::Int(d)) => format!("pause {d}s"),
            None => "pause {}".to_string(),
        },
        _ => "other".to_string(),
    }
}

fn kind(action: &Action) -> &'static str {
    match action {
        Action::CreateReplicaSet { .. } => "createReplicaSet",
        Action::ScaleReplicaSet { .. } => "scaleReplicaSet",
        Action::SetCanaryWeight { .. } => "setCanaryWeight",
        Action::SetServiceSelector { .. } => "setServiceSelector",
        _ => "other",
    }
}
