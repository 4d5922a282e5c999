//! `spec.restartAt` (Argo's restart): when it is set, later than `status.restartedAt` and not in
//! the future, the pods of the stable and current ReplicaSets created before it are evicted, as
//! many at a time as `maxUnavailable` allows (at least one, as Argo does, so that a strategy with
//! `maxUnavailable: 0` can restart at all), and their ReplicaSets replace them. Once no such pod is
//! left, `status.restartedAt` is set to `restartAt`.
//!
//! Everything is decided from the snapshot (pods per ReplicaSet, with their creation time and
//! readiness), so a restarted controller continues the restart where it was.

use std::time::Duration;

use crate::rollout::action::Action;
use crate::rollout::observed::{ObservedPod, ObservedReplicaSet};
use crate::rollout::plan::{Ctx, until};

/// How soon a restart in progress is looked at again when no watch event comes first.
const RESTART_RECHECK: Duration = Duration::from_secs(5);

/// Plans the next part of a restart, if one is due.
pub(crate) fn plan_restart(ctx: &mut Ctx<'_>) {
    let Some(restart_at) = ctx.spec().restart_at.as_ref().map(|t| t.0) else {
        return;
    };
    if ctx
        .status
        .restarted_at
        .as_ref()
        .is_some_and(|done| done.0 >= restart_at)
    {
        return;
    }
    let now = ctx.now();
    if restart_at > now {
        ctx.requeue_within(until(now, restart_at));
        return;
    }
    let sets = restarted_sets(ctx);
    // Pods of a ReplicaSet this plan creates or scales are not settled: wait for the next reconcile.
    let changing = sets.iter().any(|rs| {
        ctx.actions.iter().any(|a| match a {
            Action::ScaleReplicaSet { name, .. } | Action::SetScaleDownDeadline { name, .. } => {
                *name == rs.name
            }
            _ => false,
        })
    }) || ctx
        .actions
        .iter()
        .any(|a| matches!(a, Action::CreateReplicaSet { .. }));
    if changing {
        ctx.requeue_within(RESTART_RECHECK);
        return;
    }
    let old: Vec<&ObservedPod> = {
        let mut old: Vec<&ObservedPod> = sets
            .iter()
            .flat_map(|rs| &rs.pods)
            .filter(|pod| !pod.deleting && pod.created < restart_at)
            .collect();
        // Pods that are not ready cost no availability: they go first; then the oldest.
        old.sort_by(|a, b| (a.ready, a.created, &a.name).cmp(&(b.ready, b.created, &b.name)));
        old
    };
    let settled = sets.iter().all(|rs| live_pods(rs) == rs.spec_replicas);
    if old.is_empty() {
        if settled {
            ctx.status.restarted_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                restart_at,
            ));
        } else {
            ctx.requeue_within(RESTART_RECHECK);
        }
        return;
    }
    let unavailable = sets
        .iter()
        .map(|rs| unavailable(rs))
        .fold(0i32, i32::saturating_add);
    let mut allowed = max_unavailable(ctx).saturating_sub(unavailable).max(0);
    for pod in old {
        if pod.ready {
            if allowed == 0 {
                break;
            }
            allowed -= 1;
        }
        ctx.actions.push(Action::EvictPod {
            name: pod.name.clone(),
        });
    }
    ctx.requeue_within(RESTART_RECHECK);
}

/// The stable and current ReplicaSets (blue-green: also the active one), those that run pods.
fn restarted_sets<'a>(ctx: &Ctx<'a>) -> Vec<&'a ObservedReplicaSet> {
    let mut hashes: Vec<String> = vec![ctx.new_hash().to_string()];
    hashes.extend(ctx.status.stable_rs.clone());
    hashes.extend(
        ctx.status
            .blue_green
            .as_ref()
            .and_then(|b| b.active_selector.clone()),
    );
    hashes.sort();
    hashes.dedup();
    let obs = ctx.obs;
    hashes
        .iter()
        .filter_map(|hash| obs.replica_set(hash))
        .filter(|rs| rs.spec_replicas > 0)
        .collect()
}

fn live_pods(rs: &ObservedReplicaSet) -> i32 {
    let live = rs.pods.iter().filter(|p| !p.deleting).count();
    i32::try_from(live).unwrap_or(i32::MAX)
}

/// Pods of `rs` that are missing, not ready, terminating, or not yet available per its status:
/// whichever view (the pods or the ReplicaSet's status) sees more.
fn unavailable(rs: &ObservedReplicaSet) -> i32 {
    let ready_live = rs.pods.iter().filter(|p| p.ready && !p.deleting).count();
    let ready_live = i32::try_from(ready_live).unwrap_or(i32::MAX);
    let spec = rs.spec_replicas.max(0);
    spec.saturating_sub(rs.available_replicas.max(0))
        .max(spec.saturating_sub(ready_live))
        .max(0)
}

/// Pods that may be unavailable at once: the strategy's `maxUnavailable` (25% by default), at
/// least 1 (Argo: a restart must be able to replace a pod).
fn max_unavailable(ctx: &Ctx<'_>) -> i32 {
    let spec = ctx.spec();
    let replicas = ctx.replicas();
    let resolved = match (spec.canary(), spec.blue_green()) {
        (Some(canary), _) => canary.max_unavailable_for(replicas).ok(),
        (None, Some(blue_green)) => blue_green.max_unavailable_for(replicas).ok(),
        (None, None) => None,
    };
    resolved.unwrap_or(1).max(1)
}

#[cfg(test)]
mod tests {
    use jiff::{SignedDuration, Timestamp};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use pretty_assertions::assert_eq;

    use super::*;
    use crate::api::rollout::RolloutPhase;
    use crate::rollout::action::Plan;
    use crate::rollout::observed::Observed;
    use crate::rollout::plan::plan;
    use crate::rollout::plan::testkit::*;

    /// Every ReplicaSet gets its pods, ready, created a minute before T0.
    fn with_pods(obs: &mut Observed) {
        let created = t0() - SignedDuration::from_secs(60);
        for rs in &mut obs.replica_sets {
            rs.pods = (0..rs.spec_replicas)
                .map(|n| ObservedPod {
                    name: format!("{}-old{n}", rs.name),
                    created,
                    ready: true,
                    ..Default::default()
                })
                .collect();
        }
    }

    /// The ReplicaSet controller: evicted pods go, missing ones are created (not ready yet).
    fn replace_pods(obs: &mut Observed, serial: &mut u32) {
        let now = obs.now;
        for rs in &mut obs.replica_sets {
            rs.pods.retain(|p| !p.deleting);
            while live_pods(rs) < rs.spec_replicas {
                *serial += 1;
                rs.pods.push(ObservedPod {
                    name: format!("{}-new{serial}", rs.name),
                    created: now,
                    ready: false,
                    ..Default::default()
                });
            }
            count(rs);
        }
    }

    fn pods_become_ready(obs: &mut Observed) {
        for rs in &mut obs.replica_sets {
            rs.pods.iter_mut().for_each(|p| p.ready = true);
            count(rs);
        }
    }

    fn count(rs: &mut ObservedReplicaSet) {
        let ready = rs.pods.iter().filter(|p| p.ready).count() as i32;
        rs.replicas = rs.pods.len() as i32;
        rs.ready_replicas = ready;
        rs.available_replicas = ready;
    }

    fn evictions(plan: &Plan) -> Vec<&str> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                Action::EvictPod { name } => Some(name.as_str()),
                _ => None,
            })
            .collect()
    }

    fn restart_at(obs: &mut Observed, at: Timestamp) {
        obs.rollout.spec.restart_at = Some(Time(at));
        obs.rollout.metadata.generation = Some(obs.generation() + 1);
    }

    fn unavailable_pods(obs: &Observed) -> i32 {
        obs.replica_sets.iter().map(unavailable).sum()
    }

    /// Runs the restart to its end; returns the evictions of each reconcile and the most pods
    /// seen unavailable at once.
    fn run_restart(obs: &mut Observed) -> (Vec<usize>, i32) {
        let mut serial = 0;
        let mut per_reconcile = Vec::new();
        let mut worst = 0;
        for _ in 0..40 {
            let p = step(obs);
            per_reconcile.push(evictions(&p).len());
            replace_pods(obs, &mut serial);
            worst = worst.max(unavailable_pods(obs));
            pods_become_ready(obs);
            if obs.status().restarted_at.is_some() {
                return (per_reconcile, worst);
            }
            advance(obs, 1);
        }
        panic!("restart did not finish: {:#?}", obs.replica_sets);
    }

    #[test]
    fn restart_at_replaces_every_old_pod_within_max_unavailable_then_sets_restarted_at() {
        // (strategy, replicas, maxUnavailable, evictions per reconcile, most unavailable at once)
        let cases: Vec<(&str, i32, Option<IntOrString>, usize, i32)> = vec![
            ("canary 25% of 3 rounds to 0: one at a time", 3, None, 1, 1),
            (
                "canary maxUnavailable 0: still one at a time",
                3,
                Some(IntOrString::Int(0)),
                1,
                1,
            ),
            (
                "canary maxUnavailable 2: two at a time",
                4,
                Some(IntOrString::Int(2)),
                2,
                2,
            ),
            (
                "canary 50% of 4: two at a time",
                4,
                Some(IntOrString::String("50%".into())),
                2,
                2,
            ),
            (
                "blue-green 25% of 3 rounds to 0: one at a time",
                3,
                None,
                1,
                1,
            ),
            ("blue-green 25% of 8: two at a time", 8, None, 2, 2),
            (
                "blue-green maxUnavailable 3: three at a time",
                6,
                Some(IntOrString::Int(3)),
                3,
                3,
            ),
        ];
        for (name, replicas, max_unavailable, per_reconcile, most) in cases {
            let rollout = if name.starts_with("blue-green") {
                let mut r = blue_green(replicas);
                bg_spec(&mut r).max_unavailable = max_unavailable.clone();
                r
            } else {
                let mut r = canary(replicas, vec![weight(50), pause()]);
                canary_spec(&mut r).max_unavailable = max_unavailable;
                r
            };
            let mut obs = deployed(rollout);
            with_pods(&mut obs);
            restart_at(&mut obs, t0());
            let (evicted, worst) = run_restart(&mut obs);
            assert_eq!(evicted.iter().copied().max(), Some(per_reconcile), "{name}");
            assert_eq!(
                evicted.iter().sum::<usize>(),
                replicas as usize,
                "{name}: every old pod once"
            );
            assert_eq!(worst, most, "{name}");
            let s = obs.status();
            assert_eq!(s.restarted_at, Some(Time(t0())), "{name}");
            let pods: Vec<&ObservedPod> = obs.replica_sets.iter().flat_map(|rs| &rs.pods).collect();
            assert_eq!(pods.len(), replicas as usize, "{name}");
            assert!(pods.iter().all(|p| p.created >= t0() && p.ready), "{name}");
            // Done: nothing more to restart, no churn.
            let again = plan(&obs);
            assert!(evictions(&again).is_empty(), "{name}");
            assert_eq!(again.status.restarted_at, Some(Time(t0())));
            assert_eq!(again.status.phase, Some(RolloutPhase::Healthy), "{name}");
        }
    }

    #[test]
    fn restart_at_is_only_acted_on_when_due() {
        let future = t0() + SignedDuration::from_secs(30);
        let past = t0() - SignedDuration::from_secs(30);
        // (case, restartAt, status.restartedAt, evictions, requeue within 30 s)
        type Case = (
            &'static str,
            Option<Timestamp>,
            Option<Timestamp>,
            usize,
            bool,
        );
        let cases: Vec<Case> = vec![
            ("unset", None, None, 0, false),
            ("in the future: waits for it", Some(future), None, 0, true),
            ("due, never restarted", Some(t0()), None, 1, true),
            ("due, restarted before", Some(t0()), Some(past), 1, true),
            ("already done", Some(t0()), Some(t0()), 0, false),
            ("done later than asked", Some(past), Some(t0()), 0, false),
        ];
        for (name, at, done, evicted, requeue) in cases {
            let mut obs = deployed(canary(3, vec![]));
            with_pods(&mut obs);
            obs.rollout.spec.restart_at = at.map(Time);
            edit_status(&mut obs, |s| s.restarted_at = done.map(Time));
            let p = plan(&obs);
            assert_eq!(evictions(&p).len(), evicted, "{name}");
            assert_eq!(
                p.requeue_after
                    .is_some_and(|r| r <= std::time::Duration::from_secs(30)),
                requeue,
                "{name}: {:?}",
                p.requeue_after
            );
            assert_eq!(p.status.restarted_at, done.map(Time), "{name}");
        }
    }

    #[test]
    fn restart_at_keeps_pods_created_after_it_and_evicts_unready_old_pods_first() {
        let mut obs = deployed(canary(3, vec![]));
        with_pods(&mut obs);
        let rs = &mut obs.replica_sets[0];
        rs.pods[0].created = t0() + SignedDuration::from_secs(1);
        rs.pods[2].ready = false;
        count(rs);
        restart_at(&mut obs, t0());
        advance(&mut obs, 5);
        // One pod is already unavailable: the budget of 1 is used up, but evicting that pod costs
        // nothing; the ready old one waits.
        let p = plan(&obs);
        assert_eq!(evictions(&p), vec!["web-h1-old2"]);
        let (_, worst) = run_restart(&mut obs);
        assert_eq!(worst, 1);
        let names: Vec<&str> = obs.replica_sets[0]
            .pods
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert!(
            names.contains(&"web-h1-old0"),
            "created after restartAt: kept"
        );
        assert!(!names.contains(&"web-h1-old1"));
    }

    #[test]
    fn restart_at_waits_for_pods_the_cache_has_not_seen() {
        // The ReplicaSet runs 3 pods but the Pod cache shows none yet: that is not "all restarted".
        let mut obs = deployed(canary(3, vec![]));
        restart_at(&mut obs, t0());
        let p = plan(&obs);
        assert!(evictions(&p).is_empty());
        assert_eq!(p.status.restarted_at, None);
        assert!(p.requeue_after.is_some());
    }

    #[test]
    fn restart_at_restarts_stable_and_canary_pods_during_an_update() {
        let mut obs = deployed(canary(4, vec![weight(50), pause()]));
        update(&mut obs, "h2");
        settle(&mut obs);
        assert_eq!(phase(&obs), RolloutPhase::Paused);
        with_pods(&mut obs);
        restart_at(&mut obs, t0());
        let (evicted, worst) = run_restart(&mut obs);
        assert_eq!(evicted.iter().sum::<usize>(), 4);
        assert_eq!(worst, 1);
        for rs in &obs.replica_sets {
            assert!(rs.pods.iter().all(|p| p.created >= t0()), "{}", rs.name);
        }
        assert_eq!(
            phase(&obs),
            RolloutPhase::Paused,
            "the update stays where it was"
        );
        assert_eq!(obs.status().current_step_index, Some(1));
    }
}
