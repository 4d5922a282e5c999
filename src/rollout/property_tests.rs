//! Property tests of the planner over hostile Rollouts: any spec the API could store (and some it
//! refuses, for objects stored before a schema change), any status a user could write through the
//! status subresource, any ReplicaSet counts. The planner never panics, every count it asks for is
//! a pod count, every weight a percentage, and a canary without a router grows only within
//! `replicas + maxSurge` pods.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use proptest::prelude::*;

use crate::api::rollout::{CanaryStep, RolloutPause, SetCanaryScale, resolve_int_or_percent};
use crate::rollout::action::{Action, Plan};
use crate::rollout::canary::{Budget, Counts, basic_canary_counts};
use crate::rollout::plan::plan;
use crate::rollout::simulate::*;

fn cases() -> ProptestConfig {
    crate::proptest_config()
}

/// Counts as users write them, and as attackers do.
fn count() -> impl Strategy<Value = i32> {
    prop_oneof![0..12i32, any::<i32>(), Just(i32::MAX), Just(i32::MIN)]
}

fn int_or_percent() -> impl Strategy<Value = IntOrString> {
    prop_oneof![
        count().prop_map(IntOrString::Int),
        (0..=200u32).prop_map(|p| IntOrString::String(format!("{p}%"))),
        "[0-9]{1,25}%".prop_map(IntOrString::String),
        "\\PC{0,8}".prop_map(IntOrString::String),
    ]
}

fn pause_duration() -> impl Strategy<Value = Option<IntOrString>> {
    prop_oneof![
        Just(None),
        count().prop_map(|n| Some(IntOrString::Int(n))),
        prop::sample::select(vec![
            "30s",
            "0",
            "1h",
            "inf",
            "1e30",
            "99999999999h",
            "-5s",
            "é",
            "2562047h47m16.854775807s"
        ])
        .prop_map(|s| Some(IntOrString::String(s.to_string()))),
        "\\PC{0,12}".prop_map(|s| Some(IntOrString::String(s))),
    ]
}

fn canary_step() -> impl Strategy<Value = CanaryStep> {
    prop_oneof![
        prop_oneof![0..=100i32, count()].prop_map(weight),
        pause_duration().prop_map(|duration| CanaryStep {
            pause: Some(RolloutPause { duration }),
            ..CanaryStep::default()
        }),
        (
            proptest::option::of(count()),
            proptest::option::of(count()),
            proptest::option::of(any::<bool>())
        )
            .prop_map(|(weight, replicas, match_traffic_weight)| {
                canary_scale(SetCanaryScale {
                    weight,
                    replicas,
                    match_traffic_weight,
                })
            }),
        Just(pause()),
    ]
}

/// The (spec) knobs of a canary Rollout.
#[derive(Clone, Debug)]
struct CanaryKnobs {
    replicas: i32,
    steps: Vec<CanaryStep>,
    router: bool,
    max_surge: Option<IntOrString>,
    max_unavailable: Option<IntOrString>,
    dynamic_stable_scale: bool,
}

fn canary_knobs() -> impl Strategy<Value = CanaryKnobs> {
    (
        count(),
        proptest::collection::vec(canary_step(), 0..6),
        any::<bool>(),
        proptest::option::of(int_or_percent()),
        proptest::option::of(int_or_percent()),
        any::<bool>(),
    )
        .prop_map(
            |(replicas, steps, router, max_surge, max_unavailable, dynamic_stable_scale)| {
                CanaryKnobs {
                    replicas,
                    steps,
                    router,
                    max_surge,
                    max_unavailable,
                    dynamic_stable_scale,
                }
            },
        )
}

fn build(knobs: &CanaryKnobs) -> crate::api::rollout::Rollout {
    let mut r = if knobs.router {
        canary_with_router(knobs.replicas, knobs.steps.clone())
    } else {
        canary(knobs.replicas, knobs.steps.clone())
    };
    let c = canary_spec(&mut r);
    c.max_surge = knobs.max_surge.clone();
    c.max_unavailable = knobs.max_unavailable.clone();
    c.dynamic_stable_scale = Some(knobs.dynamic_stable_scale);
    r
}

/// What every plan must respect, whatever it was given.
fn check_plan(plan: &Plan) -> Result<(), TestCaseError> {
    for action in &plan.actions {
        match action {
            Action::CreateReplicaSet { replicas, .. }
            | Action::ScaleReplicaSet { replicas, .. }
            | Action::ScaleWorkload { replicas, .. } => {
                prop_assert!(*replicas >= 0, "{action:?}");
            }
            Action::SetCanaryWeight { weight } => {
                prop_assert!((0..=100).contains(weight), "{action:?}");
            }
            _ => {}
        }
    }
    if let Some(weights) = plan.status.canary.as_ref().and_then(|c| c.weights.as_ref()) {
        prop_assert!((0..=100).contains(&weights.canary.weight), "{weights:?}");
        prop_assert_eq!(weights.canary.weight + weights.stable.weight, 100);
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases())]

    /// C1 with any counts: targets are pod counts, the canary grows only towards its share and
    /// only within `replicas + maxSurge` pods in all, the stable never above `replicas`.
    #[test]
    fn basic_canary_counts_stay_within_the_budget(
        replicas in count(), surge in count(), unavailable in count(), weight in count(),
        stable in (count(), count()), new in (count(), count()), others in (count(), count()),
    ) {
        let counts = |(spec, available): (i32, i32)| Counts { spec, available };
        let (stable, new, others) = (counts(stable), counts(new), counts(others));
        let budget = Budget { replicas, max_surge: surge, max_unavailable: unavailable };
        let (stable_target, canary_target) = basic_canary_counts(budget, weight, stable, new, others);
        prop_assert!(stable_target >= 0 && canary_target >= 0);
        let replicas = i64::from(replicas.max(0));
        let max_total = replicas + i64::from(surge.max(0));
        let spec = |c: Counts| i64::from(c.spec.max(0));
        if i64::from(canary_target) > spec(new) {
            prop_assert!(i64::from(canary_target) <= replicas);
            let total_after = spec(stable) + i64::from(canary_target) + spec(others);
            prop_assert!(total_after <= max_total.max(spec(stable) + spec(new) + spec(others)));
        }
        if i64::from(stable_target) > spec(stable) {
            prop_assert!(i64::from(stable_target) <= replicas);
        }
    }

    /// Percentages and counts of any size resolve to a count or a clear error, never a panic;
    /// a percentage up to 100% is at most the total.
    #[test]
    fn int_or_percent_resolves_or_refuses(value in int_or_percent(), total in count(), up in any::<bool>()) {
        match resolve_int_or_percent("f", &value, total, up) {
            Ok(n) => {
                prop_assert!(n >= 0);
                if let IntOrString::String(s) = &value
                    && let Some(p) = s.strip_suffix('%').and_then(|p| p.parse::<u32>().ok())
                    && p <= 100
                {
                    prop_assert!(n <= total.max(0));
                }
            }
            Err(e) => prop_assert!(e.to_string().contains("\"f\"") || e.to_string().contains(" f")),
        }
    }

    /// A new canary Rollout of any spec, driven to its end and through an update with pods
    /// becoming ready: no panic, and only valid counts and weights.
    #[test]
    fn canary_rollouts_of_any_spec_plan_valid_actions(knobs in canary_knobs(), ticks in 1..8usize) {
        let mut obs = observed(build(&knobs));
        for _ in 0..ticks {
            let plan = step(&mut obs);
            check_plan(&plan)?;
            pods_ready(&mut obs);
        }
        update(&mut obs, "h2");
        for _ in 0..ticks {
            let plan = step(&mut obs);
            check_plan(&plan)?;
            pods_ready(&mut obs);
            advance(&mut obs, 3600);
        }
    }

    /// A sane canary without a router never runs more than `replicas + maxSurge` pods during an
    /// update (the issue's `maxSurge` overflow gave wrong counts).
    #[test]
    fn an_update_without_router_stays_within_the_surge(
        replicas in 1..20i32,
        steps in proptest::collection::vec((0..=100i32).prop_map(weight), 1..5),
        surge in 0..5i32,
        unavailable in 0..5i32,
    ) {
        prop_assume!(surge + unavailable > 0);
        let mut r = canary(replicas, steps);
        let c = canary_spec(&mut r);
        c.max_surge = Some(IntOrString::Int(surge));
        c.max_unavailable = Some(IntOrString::Int(unavailable));
        let mut obs = deployed(r);
        update(&mut obs, "h2");
        for _ in 0..12 {
            let plan = step(&mut obs);
            check_plan(&plan)?;
            let total: i64 = obs.replica_sets.iter().map(|rs| i64::from(rs.spec_replicas)).sum();
            prop_assert!(total <= i64::from(replicas + surge), "{total} pods: {:?}", obs.replica_sets);
            pods_ready(&mut obs);
        }
    }

    /// Whatever a user writes into the status subresource (step index, weights, abort, a
    /// revision annotation), planning goes on without a panic.
    #[test]
    fn hostile_status_and_replica_sets_never_panic_the_planner(
        knobs in canary_knobs(),
        step_index in proptest::option::of(count()),
        weight in count(),
        abort in any::<bool>(),
        revision in any::<i64>(),
        counts in proptest::collection::vec((count(), count(), count()), 0..3),
    ) {
        let mut obs = observed(build(&knobs));
        step(&mut obs);
        for (i, (spec, ready, available)) in counts.into_iter().enumerate() {
            obs.replica_sets.push(crate::rollout::observed::ObservedReplicaSet {
                name: format!("web-x{i}"),
                pod_template_hash: format!("x{i}"),
                revision,
                spec_replicas: spec,
                replicas: spec,
                ready_replicas: ready,
                available_replicas: available,
                created: t0(),
                ..Default::default()
            });
        }
        edit_status(&mut obs, |s| {
            s.current_step_index = step_index;
            s.abort = Some(abort);
            s.available_replicas = Some(weight);
            if let Some(w) = s.canary.as_mut().and_then(|c| c.weights.as_mut()) {
                w.canary.weight = weight;
            }
        });
        update(&mut obs, "h2");
        check_plan(&plan(&obs))?;
    }
}
