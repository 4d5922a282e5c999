//! Property tests of the planner over hostile Rollouts: any spec the API could store (and some it
//! refuses, for objects stored before a schema change), any status a user could write through the
//! status subresource, any ReplicaSet counts. The planner never panics, every count it asks for is
//! a pod count, every weight a percentage, and a canary without a router grows only within
//! `replicas + maxSurge` pods.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use proptest::prelude::*;

use crate::api::rollout::{CanaryStep, RolloutPause, SetCanaryScale, resolve_int_or_percent};
use crate::rollout::action::{Action, Plan};
use crate::rollout::basic_canary::{Budget, Counts, basic_canary_counts, weighted_counts};
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

    /// C1 with any counts, even hand-written ones: targets are pod counts, and whatever grows
    /// stays within `replicas + maxSurge` pods in all.
    #[test]
    fn basic_canary_counts_stay_within_the_surge_for_any_counts(
        replicas in count(), surge in count(), unavailable in count(), weight in count(),
        stable in proptest::option::of((count(), count())), new in (count(), count()), others in count(),
    ) {
        let counts = |(spec, available): (i32, i32)| Counts { spec, available };
        let (stable, new) = (stable.map(counts), counts(new));
        let budget = Budget { replicas, max_surge: surge, max_unavailable: unavailable };
        let (stable_target, canary_target) = basic_canary_counts(budget, weight, stable, new, others);
        prop_assert!(stable_target >= 0 && canary_target >= 0);
        let spec = |c: Counts| i64::from(c.spec.max(0));
        let stable_spec = stable.map_or(0, spec);
        let grows = i64::from(canary_target) > spec(new) || i64::from(stable_target) > stable_spec;
        if grows {
            let max_total = i64::from(replicas.max(0)) + i64::from(surge.max(0));
            let total = i64::from(stable_target) + i64::from(canary_target) + i64::from(others.max(0));
            prop_assert!(total <= max_total, "{total} pods > {max_total}");
        }
    }

    /// C1 from consistent pods (available ≤ spec, the ReplicaSet controller removing unavailable
    /// pods first): never more than `replicas + maxSurge` pods, never fewer than
    /// `replicas − maxUnavailable` available while stable and canary both exist (unless already
    /// fewer), and, pods turning available between reconciles, the counts reach Argo's split of
    /// the weight.
    #[test]
    fn basic_canary_counts_keep_the_budget_and_converge_to_the_weight(
        replicas in 1..40i32, weight in 0..=100i32, surge in 0..6i32, unavailable in 0..6i32,
        stable in (0..45i32, 0..45i32), new in (0..45i32, 0..45i32),
    ) {
        let budget = Budget { replicas, max_surge: surge, max_unavailable: unavailable };
        let max_total = i64::from(replicas + surge);
        let floor = i64::from(replicas - unavailable.min(replicas).max(i32::from(surge == 0)));
        let (mut stable, mut new) = (
            Counts { spec: stable.0, available: stable.1.min(stable.0) },
            Counts { spec: new.0, available: new.1.min(new.0) },
        );
        let mut settled = false;
        for _ in 0..200 {
            let (s, c) = basic_canary_counts(budget, weight, Some(stable), new, 0);
            let before = i64::from(stable.spec + new.spec);
            let after = i64::from(s + c);
            if s > stable.spec || c > new.spec {
                prop_assert!(after <= max_total.max(before), "{s}+{c} pods from {stable:?} {new:?}");
            }
            let available_before = i64::from(stable.available + new.available);
            let available_after = i64::from(s.min(stable.available) + c.min(new.available));
            prop_assert!(
                available_after >= floor.min(available_before),
                "{available_after} available after {s}+{c} from {stable:?} {new:?}"
            );
            if (s, c) == (stable.spec, new.spec) && stable.available == s && new.available == c {
                settled = true;
                break;
            }
            stable = Counts { spec: s, available: s };
            new = Counts { spec: c, available: c };
        }
        prop_assert!(settled, "no fixed point");
        let (want_canary, want_stable) =
            weighted_counts(i64::from(replicas), i64::from(weight), i64::from(surge));
        prop_assert_eq!((i64::from(stable.spec), i64::from(new.spec)), (want_stable, want_canary));
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
