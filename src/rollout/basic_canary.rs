//! C1: the replica arithmetic of a canary without a traffic router, where the share of pods *is*
//! the share of traffic. It is Argo Rollouts' (v1.10 `utils/replicaset/canary.go`:
//! `CalculateReplicaCountsForBasicCanary`, `approximateWeightedCanaryStableReplicaCounts`,
//! `calculateScaleDownReplicaCount`, `adjustReplicaWithinLimits`, and `rollout/canary.go`:
//! `scaleDownOldReplicaSetsForCanary`), so that a manifest moved from Argo runs the same pods at
//! every step. Argo computes in int32 and float64; here everything is i64 (or i128 for products)
//! and the weight comparison is exact, which picks the same counts (checked against a float
//! transcription for every weight and up to 20 000 replicas) without overflowing for counts the API
//! accepts.

/// Spec and available pods of one ReplicaSet (zero when it does not exist yet).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub spec: i32,
    pub available: i32,
}

/// `spec.replicas` and the resolved `maxSurge` / `maxUnavailable` pod counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Budget {
    pub replicas: i32,
    pub max_surge: i32,
    pub max_unavailable: i32,
}

/// The weight Argo's basic canary measures against (`MaxTrafficWeight` without a router).
const MAX_WEIGHT: i64 = 100;

impl Budget {
    fn replicas(self) -> i64 {
        i64::from(self.replicas.max(0))
    }

    fn surge(self) -> i64 {
        i64::from(self.max_surge.max(0))
    }

    /// Argo's `MaxUnavailable`: 0 for 0 replicas, at most `replicas`, and 1 when both `maxSurge` and
    /// `maxUnavailable` resolve to 0 (`resolveFenceposts`: percentages round `maxUnavailable` down,
    /// and an update that may neither add nor remove a pod could never move).
    fn unavailable(self) -> i64 {
        let replicas = self.replicas();
        if replicas == 0 {
            return 0;
        }
        let unavailable = i64::from(self.max_unavailable.max(0));
        let unavailable = if self.surge() == 0 && unavailable == 0 {
            1
        } else {
            unavailable
        };
        unavailable.min(replicas)
    }

    /// Pods that must stay available while pods are removed.
    fn min_available(self) -> i64 {
        self.replicas() - self.unavailable()
    }

    fn max_total(self) -> i64 {
        self.replicas() + self.surge()
    }
}

/// [`Counts`] widened to i64; negative counts (which only a hand-written status could hold) count
/// as 0.
#[derive(Clone, Copy, Debug)]
struct Wide {
    spec: i64,
    available: i64,
}

impl From<Counts> for Wide {
    fn from(c: Counts) -> Self {
        Wide {
            spec: i64::from(c.spec.max(0)),
            available: i64::from(c.available.max(0)),
        }
    }
}

fn narrow(n: i64) -> i32 {
    i32::try_from(n.max(0)).unwrap_or(i32::MAX)
}

/// Argo's `approximateWeightedCanaryStableReplicaCounts`: the (canary, stable) pair whose pod
/// ratio is closest to `weight`. Candidates are the floor and ceiling of `replicas × weight` over
/// `replicas` pods and, when `maxSurge` allows, over `replicas + 1` pods (so 1 replica at 50 % runs
/// 1 + 1, and 3 replicas at 20 % run 1 + 3). A weight strictly between 0 and 100 never rounds the
/// canary to 0 pods (nor, through the candidate list, the stable), except for 1 replica without
/// surge. Equally close candidates: the first in that order wins, and a floor exactly as close as
/// its ceiling is not a candidate (the larger canary wins).
pub(crate) fn weighted_counts(replicas: i64, weight: i64, max_surge: i64) -> (i64, i64) {
    if replicas <= 0 {
        return (0, 0);
    }
    let weight = weight.clamp(0, MAX_WEIGHT);
    let product = replicas * weight;
    let floor = product / MAX_WEIGHT;
    let ceil = floor + i64::from(product % MAX_WEIGHT != 0);
    // `total × weight / 100` lies exactly halfway between two counts.
    let tied = |total: i64| 2 * (total * weight % MAX_WEIGHT) == MAX_WEIGHT;
    let zero_allowed = weight == MAX_WEIGHT || weight == 0 || (replicas == 1 && max_surge == 0);

    let mut candidates: Vec<(i64, i64)> = Vec::with_capacity(4);
    if ceil < replicas || zero_allowed {
        candidates.push((ceil, replicas));
    }
    if !tied(replicas) && (floor != 0 || zero_allowed) {
        candidates.push((floor, replicas));
    }
    if max_surge > 0 {
        candidates.push((ceil, replicas + 1));
        if !tied(replicas + 1) && (floor != 0 || zero_allowed) {
            candidates.push((floor, replicas + 1));
        }
    }
    let Some(&first) = candidates.first() else {
        // Unreachable for 1 ≤ weight ≤ 99 with replicas ≥ 1 (Argo's fallback, kept for safety).
        return (0, replicas);
    };
    let best = candidates.iter().skip(1).fold(first, |best, &candidate| {
        if closer(weight, candidate, best) {
            candidate
        } else {
            best
        }
    });
    (best.0, best.1 - best.0)
}

/// Whether `a = (canary, total)` is strictly closer to `weight` than `b`:
/// |100·c₁/t₁ − w| < |100·c₂/t₂ − w|, compared exactly by cross-multiplying.
fn closer(weight: i64, a: (i64, i64), b: (i64, i64)) -> bool {
    let distance = |(canary, total): (i64, i64)| {
        (i128::from(canary) * i128::from(MAX_WEIGHT) - i128::from(weight) * i128::from(total)).abs()
    };
    distance(a) * i128::from(b.1) < distance(b) * i128::from(a.1)
}

/// Argo's `GetReplicasForScaleDown`: the pods of a ReplicaSet that count as available for removal.
/// Pods above `spec` are already leaving; `ignore_availability` counts the ReplicaSet as if all its
/// pods were available, so that one stuck unavailable (CrashLoopBackOff) can still be scaled down.
fn for_scale_down(rs: Wide, ignore_availability: bool) -> i64 {
    if rs.spec < rs.available || ignore_availability {
        rs.spec
    } else {
        rs.available
    }
}

/// C1: the next (stable, canary) pod counts on the way to `weight` without a traffic router
/// (Argo's `CalculateReplicaCountsForBasicCanary`). `stable` is `None` when there is no stable
/// ReplicaSet other than the canary (first deploy, a promoted or rolled-back Rollout): then the
/// canary goes to `replicas`. `others` is the `spec.replicas` sum of every other revision.
///
/// Rules, in Argo's order:
/// 1. targets from [`weighted_counts`];
/// 2. scale up within `replicas + maxSurge` pods in all, the stable first;
/// 3. while another revision still has pods, nothing is scaled down (those go first);
/// 4. otherwise scale down as far as keeping `replicas − maxUnavailable` pods available allows: the
///    stable when the canary is growing (its own availability ignored), the canary when it is
///    shrinking (an abort or a lower weight); then the other one is kept within the surge and the
///    availability floor.
pub(crate) fn basic_canary_counts(
    budget: Budget,
    weight: i32,
    stable: Option<Counts>,
    canary: Counts,
    others: i32,
) -> (i32, i32) {
    let replicas = budget.replicas();
    let (mut want_canary, mut want_stable) =
        weighted_counts(replicas, i64::from(weight), budget.surge());
    let canary = Wide::from(canary);
    let stable = stable.map(Wide::from);
    let others = i64::from(others.max(0));
    if stable.is_none() {
        want_canary = replicas;
        want_stable = 0;
    }
    let mut canary_count = canary.spec;
    let mut stable_count = stable.map_or(0, |s| s.spec);

    let max_total = budget.max_total();
    let mut room = max_total - (others + canary.spec + stable_count);
    if let Some(stable) = stable
        && stable.spec < want_stable
        && room > 0
    {
        let grow = (want_stable - stable.spec).min(room);
        stable_count = stable.spec + grow;
        room -= grow;
    }
    if canary.spec < want_canary && room > 0 {
        canary_count = want_canary.min(canary.spec + room);
    }
    if others > 0 {
        return (narrow(stable_count), narrow(canary_count));
    }

    let min_available = budget.min_available();
    let increasing = want_canary >= canary.spec;
    let removable =
        for_scale_down(canary, !increasing) + stable.map_or(0, |s| for_scale_down(s, increasing));
    if removable <= min_available {
        return (narrow(stable_count), narrow(canary_count));
    }
    let scale_down = removable - min_available;
    if !increasing {
        canary_count = shrink(canary, want_canary, scale_down, canary_count);
        (canary_count, stable_count) = within_limits(
            (canary, canary_count),
            stable.map(|s| (s, stable_count)),
            max_total,
            min_available,
        );
    } else if let Some(stable) = stable {
        stable_count = shrink(stable, want_stable, scale_down, stable_count);
        (stable_count, canary_count) = within_limits(
            (stable, stable_count),
            Some((canary, canary_count)),
            max_total,
            min_available,
        );
    }
    (narrow(stable_count), narrow(canary_count))
}

/// Argo's `calculateScaleDownReplicaCount`: towards `want`, by at most `scale_down` pods.
fn shrink(rs: Wide, want: i64, scale_down: i64, current: i64) -> i64 {
    if rs.spec > want {
        want.max(rs.spec - scale_down)
    } else {
        current
    }
}

/// Argo's `adjustReplicaWithinLimits`. `drain` is the ReplicaSet being scaled down (its availability
/// was ignored), `adjust` the other one: first `adjust` gives back what exceeds `replicas + maxSurge`,
/// then regains as many of its available pods as keeping `min_available` needs, and whatever then
/// exceeds the surge comes off `drain`. Returns (drain, adjust) counts.
fn within_limits(
    (drain, mut drain_count): (Wide, i64),
    adjust: Option<(Wide, i64)>,
    max_total: i64,
    min_available: i64,
) -> (i64, i64) {
    let Some((adjust, mut adjust_count)) = adjust else {
        return (drain_count, 0);
    };
    let over = (adjust_count + drain_count - max_total).max(0);
    adjust_count -= over;
    let available = drain.available.min(drain_count) + adjust.available.min(adjust_count);
    let lost_available = (adjust.available - adjust_count).max(0);
    let missing = (min_available - available).max(0);
    adjust_count += lost_available.min(missing);
    drain_count -= (adjust_count + drain_count - max_total).max(0);
    (drain_count, adjust_count)
}

/// How far each older revision is scaled down now, newest first (Argo's
/// `scaleDownOldReplicaSetsForCanary` without a router: every pod of theirs takes traffic, so they
/// all go). Unavailable pods go at once (`cleanupUnhealthyReplicas`); available ones only as far as
/// keeping `replicas − maxUnavailable` pods available (counting every revision) allows. `others`
/// is newest revision first; `available` counts every ReplicaSet of the Rollout. Argo refuses
/// (and retries on the next reconcile) while a ReplicaSet reports more available pods than it
/// asks for; so does this: the counts come back unchanged.
pub(crate) fn older_replica_set_counts(
    budget: Budget,
    available: i64,
    others: &[Counts],
) -> Vec<i32> {
    let wide: Vec<Wide> = others.iter().copied().map(Wide::from).collect();
    if wide.iter().any(|rs| rs.spec > 0 && rs.available > rs.spec) {
        return wide.iter().map(|rs| narrow(rs.spec)).collect();
    }
    let mut removable = available.max(0) - budget.min_available();
    wide.iter()
        .map(|rs| {
            let healthy = rs.spec.min(rs.available);
            if removable <= 0 || healthy == 0 {
                return narrow(healthy);
            }
            let target = (healthy - removable).max(0);
            removable -= healthy - target;
            narrow(target)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    // Where each expected value of the tables below comes from. Argo Rollouts v1.10,
    // `utils/replicaset/canary.go` unless named otherwise; every row was worked out by hand from
    // these rules (and cross-checked with a transcription of Argo's Go code), not taken from Argo.
    /// Weight 0 or 100: all pods on one side (`zeroAllowed` for 0 and `maxWeight`).
    const ENDS: &str = "0/100: one side gets every pod";
    /// replicas × weight / 100 is whole: that many canary pods over `replicas` (delta 0 wins).
    const EXACT: &str = "weight × replicas / 100 is whole";
    /// A surge allows `replicas + 1` pods in all, and canary/(replicas + 1) is strictly closer to
    /// the weight than any split of `replicas` (`approximateWeightedCanaryStableReplicaCounts`).
    const SURGE_ONE_MORE: &str = "replicas + 1 pods are closer to the weight";
    /// Floor and ceiling equally close: the floor is no candidate, the larger canary wins
    /// (`floorCeilingTied`).
    const TIE_UP: &str = "halfway: the larger canary";
    /// 1..99 % never rounds the canary to 0 pods (`zeroAllowed` is false), nor — the ceiling over
    /// `replicas` being no candidate when it equals `replicas` — the stable.
    const NEVER_ZERO: &str = "1..99 % keeps a pod on each side";
    /// 1 replica without surge: the only case where 1..99 % may round to 0 canary pods (or 0
    /// stable pods), by nearest ratio (`zeroAllowed` for `specReplicas == 1 && maxSurge == 0`).
    const ONE_NO_SURGE: &str = "1 replica, no surge: nearest of 0 % and 100 %";
    /// Otherwise the nearest of floor and ceiling over `replicas` pods (first candidate on equal
    /// distance).
    const NEAREST: &str = "nearest split of replicas";

    fn full(n: i32) -> Counts {
        Counts {
            spec: n,
            available: n,
        }
    }

    /// Runs the arithmetic from a stable of `replicas` available pods, pods turning available
    /// between reconciles, until it asks for nothing new; checks the budget on every step.
    fn settle(budget: Budget, weight: i32) -> (i32, i32) {
        let (mut stable, mut canary) = (budget.replicas, 0);
        let max_total = budget.max_total();
        let min_available = budget.min_available();
        for _ in 0..(4 * budget.replicas + 20) {
            let (next_stable, next_canary) =
                basic_canary_counts(budget, weight, Some(full(stable)), full(canary), 0);
            if (next_stable, next_canary) == (stable, canary) {
                return (canary, stable);
            }
            let total = i64::from(next_stable + next_canary);
            assert!(
                total <= max_total.max(i64::from(stable + canary)),
                "{budget:?} {weight}%: {next_stable}+{next_canary} pods exceed the surge"
            );
            let available = i64::from(next_stable.min(stable) + next_canary.min(canary));
            assert!(
                available >= min_available,
                "{budget:?} {weight}%: {available} available pods left"
            );
            (stable, canary) = (next_stable, next_canary);
        }
        panic!("{budget:?} {weight}%: no fixed point");
    }

    /// (replicas, weight, maxSurge, maxUnavailable) → (canary, stable) where the step settles.
    #[test]
    fn c1_pod_counts_at_each_weight_are_argos() {
        #[rustfmt::skip]
        let rows: [(i32, i32, i32, i32, i32, i32, &str); 208] = [
            (1, 0, 1, 0, 0, 1, ENDS),
            (1, 0, 0, 1, 0, 1, ENDS),
            (1, 1, 1, 0, 1, 1, SURGE_ONE_MORE),
            (1, 1, 0, 1, 0, 1, ONE_NO_SURGE),
            (1, 10, 1, 0, 1, 1, SURGE_ONE_MORE),
            (1, 10, 0, 1, 0, 1, ONE_NO_SURGE),
            (1, 20, 1, 0, 1, 1, SURGE_ONE_MORE),
            (1, 20, 0, 1, 0, 1, ONE_NO_SURGE),
            (1, 25, 1, 0, 1, 1, SURGE_ONE_MORE),
            (1, 25, 0, 1, 0, 1, ONE_NO_SURGE),
            (1, 33, 1, 0, 1, 1, SURGE_ONE_MORE),
            (1, 33, 0, 1, 0, 1, ONE_NO_SURGE),
            (1, 50, 1, 0, 1, 1, SURGE_ONE_MORE),
            (1, 50, 0, 1, 1, 0, ONE_NO_SURGE),
            (1, 66, 1, 0, 1, 1, SURGE_ONE_MORE),
            (1, 66, 0, 1, 1, 0, ONE_NO_SURGE),
            (1, 75, 1, 0, 1, 1, SURGE_ONE_MORE),
            (1, 75, 0, 1, 1, 0, ONE_NO_SURGE),
            (1, 90, 1, 0, 1, 1, SURGE_ONE_MORE),
            (1, 90, 0, 1, 1, 0, ONE_NO_SURGE),
            (1, 99, 1, 0, 1, 1, SURGE_ONE_MORE),
            (1, 99, 0, 1, 1, 0, ONE_NO_SURGE),
            (1, 100, 1, 0, 1, 0, ENDS),
            (1, 100, 0, 1, 1, 0, ENDS),
            (2, 0, 1, 0, 0, 2, ENDS),
            (2, 0, 0, 1, 0, 2, ENDS),
            (2, 1, 1, 0, 1, 2, SURGE_ONE_MORE),
            (2, 1, 0, 1, 1, 1, NEVER_ZERO),
            (2, 10, 1, 0, 1, 2, SURGE_ONE_MORE),
            (2, 10, 0, 1, 1, 1, NEVER_ZERO),
            (2, 20, 1, 0, 1, 2, SURGE_ONE_MORE),
            (2, 20, 0, 1, 1, 1, NEVER_ZERO),
            (2, 25, 1, 0, 1, 2, SURGE_ONE_MORE),
            (2, 25, 0, 1, 1, 1, TIE_UP),
            (2, 33, 1, 0, 1, 2, SURGE_ONE_MORE),
            (2, 33, 0, 1, 1, 1, NEVER_ZERO),
            (2, 50, 1, 0, 1, 1, EXACT),
            (2, 50, 0, 1, 1, 1, EXACT),
            (2, 66, 1, 0, 2, 1, SURGE_ONE_MORE),
            (2, 66, 0, 1, 1, 1, NEAREST),
            (2, 75, 1, 0, 2, 1, SURGE_ONE_MORE),
            (2, 75, 0, 1, 0, 2, NEAREST),
            (2, 90, 1, 0, 2, 1, SURGE_ONE_MORE),
            (2, 90, 0, 1, 1, 1, NEAREST),
            (2, 99, 1, 0, 2, 1, SURGE_ONE_MORE),
            (2, 99, 0, 1, 1, 1, NEAREST),
            (2, 100, 1, 0, 2, 0, ENDS),
            (2, 100, 0, 1, 2, 0, ENDS),
            (3, 0, 1, 0, 0, 3, ENDS),
            (3, 0, 0, 1, 0, 3, ENDS),
            (3, 1, 1, 0, 1, 3, SURGE_ONE_MORE),
            (3, 1, 0, 1, 1, 2, NEVER_ZERO),
            (3, 10, 1, 0, 1, 3, SURGE_ONE_MORE),
            (3, 10, 0, 1, 1, 2, NEVER_ZERO),
            (3, 20, 1, 0, 1, 3, SURGE_ONE_MORE),
            (3, 20, 0, 1, 1, 2, NEVER_ZERO),
            (3, 25, 1, 0, 1, 3, SURGE_ONE_MORE),
            (3, 25, 0, 1, 1, 2, NEVER_ZERO),
            (3, 33, 1, 0, 1, 2, NEVER_ZERO),
            (3, 33, 0, 1, 1, 2, NEVER_ZERO),
            (3, 50, 1, 0, 2, 2, SURGE_ONE_MORE),
            (3, 50, 0, 1, 2, 1, TIE_UP),
            (3, 66, 1, 0, 2, 1, NEAREST),
            (3, 66, 0, 1, 2, 1, NEAREST),
            (3, 75, 1, 0, 3, 1, SURGE_ONE_MORE),
            (3, 75, 0, 1, 2, 1, NEAREST),
            (3, 90, 1, 0, 3, 1, SURGE_ONE_MORE),
            (3, 90, 0, 1, 2, 1, NEAREST),
            (3, 99, 1, 0, 3, 1, SURGE_ONE_MORE),
            (3, 99, 0, 1, 2, 1, NEAREST),
            (3, 100, 1, 0, 3, 0, ENDS),
            (3, 100, 0, 1, 3, 0, ENDS),
            (4, 0, 1, 0, 0, 4, ENDS),
            (4, 0, 0, 1, 0, 4, ENDS),
            (4, 1, 1, 0, 1, 4, SURGE_ONE_MORE),
            (4, 1, 0, 1, 1, 3, NEVER_ZERO),
            (4, 10, 1, 0, 1, 4, SURGE_ONE_MORE),
            (4, 10, 0, 1, 1, 3, NEVER_ZERO),
            (4, 20, 1, 0, 1, 4, SURGE_ONE_MORE),
            (4, 20, 0, 1, 1, 3, NEVER_ZERO),
            (4, 25, 1, 0, 1, 3, EXACT),
            (4, 25, 0, 1, 1, 3, EXACT),
            (4, 33, 1, 0, 2, 3, SURGE_ONE_MORE),
            (4, 33, 0, 1, 1, 3, NEAREST),
            (4, 50, 1, 0, 2, 2, EXACT),
            (4, 50, 0, 1, 2, 2, EXACT),
            (4, 66, 1, 0, 3, 2, SURGE_ONE_MORE),
            (4, 66, 0, 1, 3, 1, NEAREST),
            (4, 75, 1, 0, 3, 1, EXACT),
            (4, 75, 0, 1, 3, 1, EXACT),
            (4, 90, 1, 0, 4, 1, SURGE_ONE_MORE),
            (4, 90, 0, 1, 3, 1, NEAREST),
            (4, 99, 1, 0, 4, 1, SURGE_ONE_MORE),
            (4, 99, 0, 1, 3, 1, NEAREST),
            (4, 100, 1, 0, 4, 0, ENDS),
            (4, 100, 0, 1, 4, 0, ENDS),
            (5, 0, 1, 0, 0, 5, ENDS),
            (5, 0, 0, 1, 0, 5, ENDS),
            (5, 1, 1, 0, 1, 5, SURGE_ONE_MORE),
            (5, 1, 0, 1, 1, 4, NEVER_ZERO),
            (5, 10, 1, 0, 1, 5, SURGE_ONE_MORE),
            (5, 10, 0, 1, 1, 4, TIE_UP),
            (5, 20, 1, 0, 1, 4, EXACT),
            (5, 20, 0, 1, 1, 4, EXACT),
            (5, 25, 1, 0, 1, 4, NEAREST),
            (5, 25, 0, 1, 1, 4, NEAREST),
            (5, 33, 1, 0, 2, 4, SURGE_ONE_MORE),
            (5, 33, 0, 1, 2, 3, NEAREST),
            (5, 50, 1, 0, 3, 3, SURGE_ONE_MORE),
            (5, 50, 0, 1, 3, 2, TIE_UP),
            (5, 66, 1, 0, 4, 2, SURGE_ONE_MORE),
            (5, 66, 0, 1, 3, 2, NEAREST),
            (5, 75, 1, 0, 4, 1, NEAREST),
            (5, 75, 0, 1, 4, 1, NEAREST),
            (5, 90, 1, 0, 5, 1, SURGE_ONE_MORE),
            (5, 90, 0, 1, 0, 5, NEAREST),
            (5, 99, 1, 0, 5, 1, SURGE_ONE_MORE),
            (5, 99, 0, 1, 4, 1, NEAREST),
            (5, 100, 1, 0, 5, 0, ENDS),
            (5, 100, 0, 1, 5, 0, ENDS),
            (10, 0, 1, 0, 0, 10, ENDS),
            (10, 0, 0, 1, 0, 10, ENDS),
            (10, 1, 1, 0, 1, 10, SURGE_ONE_MORE),
            (10, 1, 0, 1, 1, 9, NEVER_ZERO),
            (10, 10, 1, 0, 1, 9, EXACT),
            (10, 10, 0, 1, 1, 9, EXACT),
            (10, 20, 1, 0, 2, 8, EXACT),
            (10, 20, 0, 1, 2, 8, EXACT),
            (10, 25, 1, 0, 3, 8, SURGE_ONE_MORE),
            (10, 25, 0, 1, 3, 7, TIE_UP),
            (10, 33, 1, 0, 3, 7, NEAREST),
            (10, 33, 0, 1, 3, 7, NEAREST),
            (10, 50, 1, 0, 5, 5, EXACT),
            (10, 50, 0, 1, 5, 5, EXACT),
            (10, 66, 1, 0, 7, 4, SURGE_ONE_MORE),
            (10, 66, 0, 1, 7, 3, NEAREST),
            (10, 75, 1, 0, 8, 3, SURGE_ONE_MORE),
            (10, 75, 0, 1, 8, 2, TIE_UP),
            (10, 90, 1, 0, 9, 1, EXACT),
            (10, 90, 0, 1, 9, 1, EXACT),
            (10, 99, 1, 0, 10, 1, SURGE_ONE_MORE),
            (10, 99, 0, 1, 9, 1, NEAREST),
            (10, 100, 1, 0, 10, 0, ENDS),
            (10, 100, 0, 1, 10, 0, ENDS),
            (7, 5, 2, 0, 1, 7, SURGE_ONE_MORE),
            (7, 5, 0, 2, 1, 6, NEVER_ZERO),
            (7, 15, 2, 0, 1, 6, NEAREST),
            (7, 15, 0, 2, 1, 6, NEAREST),
            (7, 30, 2, 0, 2, 5, NEAREST),
            (7, 30, 0, 2, 2, 5, NEAREST),
            (7, 45, 2, 0, 3, 4, NEAREST),
            (7, 45, 0, 2, 3, 4, NEAREST),
            (7, 60, 2, 0, 5, 3, SURGE_ONE_MORE),
            (7, 60, 0, 2, 4, 3, NEAREST),
            (7, 85, 2, 0, 6, 1, NEAREST),
            (7, 85, 0, 2, 6, 1, NEAREST),
            (20, 5, 2, 0, 1, 19, EXACT),
            (20, 5, 0, 2, 1, 19, EXACT),
            (20, 15, 2, 0, 3, 17, EXACT),
            (20, 15, 0, 2, 3, 17, EXACT),
            (20, 30, 2, 0, 6, 14, EXACT),
            (20, 30, 0, 2, 6, 14, EXACT),
            (20, 45, 2, 0, 9, 11, EXACT),
            (20, 45, 0, 2, 9, 11, EXACT),
            (20, 60, 2, 0, 12, 8, EXACT),
            (20, 60, 0, 2, 12, 8, EXACT),
            (20, 85, 2, 0, 17, 3, EXACT),
            (20, 85, 0, 2, 17, 3, EXACT),
            (6, 12, 3, 1, 1, 6, SURGE_ONE_MORE),
            (6, 12, 1, 3, 1, 6, SURGE_ONE_MORE),
            (6, 40, 3, 1, 3, 4, SURGE_ONE_MORE),
            (6, 40, 1, 3, 3, 4, SURGE_ONE_MORE),
            (6, 55, 3, 1, 4, 3, SURGE_ONE_MORE),
            (6, 55, 1, 3, 4, 3, SURGE_ONE_MORE),
            (6, 80, 3, 1, 5, 1, NEAREST),
            (6, 80, 1, 3, 5, 1, NEAREST),
            (8, 12, 3, 1, 1, 7, NEVER_ZERO),
            (8, 12, 1, 3, 1, 7, NEVER_ZERO),
            (8, 40, 3, 1, 3, 5, NEAREST),
            (8, 40, 1, 3, 3, 5, NEAREST),
            (8, 55, 3, 1, 5, 4, SURGE_ONE_MORE),
            (8, 55, 1, 3, 5, 4, SURGE_ONE_MORE),
            (8, 80, 3, 1, 7, 2, SURGE_ONE_MORE),
            (8, 80, 1, 3, 7, 2, SURGE_ONE_MORE),
            (9, 12, 3, 1, 1, 8, NEAREST),
            (9, 12, 1, 3, 1, 8, NEAREST),
            (9, 40, 3, 1, 4, 6, SURGE_ONE_MORE),
            (9, 40, 1, 3, 4, 6, SURGE_ONE_MORE),
            (9, 55, 3, 1, 5, 4, NEAREST),
            (9, 55, 1, 3, 5, 4, NEAREST),
            (9, 80, 3, 1, 8, 2, SURGE_ONE_MORE),
            (9, 80, 1, 3, 8, 2, SURGE_ONE_MORE),
            (100, 1, 25, 25, 1, 99, EXACT),
            (100, 1, 0, 10, 1, 99, EXACT),
            (100, 17, 25, 25, 17, 83, EXACT),
            (100, 17, 0, 10, 17, 83, EXACT),
            (100, 50, 25, 25, 50, 50, EXACT),
            (100, 50, 0, 10, 50, 50, EXACT),
            (100, 83, 25, 25, 83, 17, EXACT),
            (100, 83, 0, 10, 83, 17, EXACT),
            (33, 1, 25, 25, 1, 33, SURGE_ONE_MORE),
            (33, 1, 0, 10, 1, 32, NEVER_ZERO),
            (33, 17, 25, 25, 6, 28, SURGE_ONE_MORE),
            (33, 17, 0, 10, 6, 27, NEAREST),
            (33, 50, 25, 25, 17, 17, SURGE_ONE_MORE),
            (33, 50, 0, 10, 17, 16, TIE_UP),
            (33, 83, 25, 25, 28, 6, SURGE_ONE_MORE),
            (33, 83, 0, 10, 27, 6, NEAREST),
        ];
        for (replicas, weight, max_surge, max_unavailable, canary, stable, rule) in rows {
            let budget = Budget {
                replicas,
                max_surge,
                max_unavailable,
            };
            assert_eq!(
                settle(budget, weight),
                (canary, stable),
                "{replicas} replicas at {weight}% (surge {max_surge}, unavailable \
                 {max_unavailable}): {rule}"
            );
        }
    }

    /// (replicas, weight, surge, unavailable, stable, canary, others) → (stable, canary); why.
    type StepRow = (
        i32,
        i32,
        i32,
        i32,
        Option<Counts>,
        Counts,
        i32,
        (i32, i32),
        &'static str,
    );

    /// The next counts from observed pods (spec, available), one reconcile at a time.
    #[test]
    fn c1_next_counts_from_observed_pods_follow_argos_order() {
        let none = Counts::default();
        let part = |spec, available| Counts { spec, available };
        #[rustfmt::skip]
        let rows: [StepRow; 40] = [
            (10, 20, 2, 0, Some(full(10)), none, 0, (10, 2), "scale up within the surge first"),
            (10, 20, 2, 0, Some(full(10)), full(2), 0, (8, 2), "canary available: stable down to its share"),
            (10, 20, 0, 2, Some(full(10)), none, 0, (8, 0), "no surge: make room within maxUnavailable first"),
            (10, 20, 0, 2, Some(full(8)), none, 0, (8, 2), "then the canary fills the room"),
            (10, 50, 2, 1, Some(full(10)), none, 0, (9, 2), "surge and unavailable in one step"),
            (10, 0, 1, 1, Some(full(10)), full(1), 0, (10, 0), "weight 0: the canary goes"),
            (10, 100, 1, 1, Some(full(1)), full(10), 0, (0, 10), "weight 100: the stable goes"),
            (4, 100, 1, 0, Some(part(4, 1)), none, 0, (4, 1), "an unavailable stable does not widen the surge"),
            (4, 100, 1, 0, Some(part(4, 1)), full(1), 0, (3, 1), "nor the unavailable budget: one stable pod per step"),
            (4, 0, 1, 0, Some(none), full(4), 0, (1, 4), "lowering the weight: the stable grows before the canary shrinks"),
            (4, 0, 1, 0, Some(part(1, 0)), full(4), 0, (1, 4), "…and the canary waits for the stable to be available"),
            (4, 0, 1, 0, Some(full(1)), full(4), 0, (1, 3), "…then shrinks by what stays available"),
            (4, 0, 0, 1, Some(full(3)), full(1), 0, (3, 0), "abort without surge: canary out first"),
            (3, 0, 2, 0, Some(none), full(3), 0, (2, 3), "Argo e2e TestReduceWeightAndHonorMaxUnavailable: 3 canary + 2 stable"),
            (10, 30, 1, 0, Some(full(1)), none, 3, (7, 1), "older pods count against the surge; the stable grows first"),
            (10, 30, 0, 1, Some(part(8, 6)), part(4, 2), 3, (8, 4), "nothing shrinks while an older revision has pods"),
            (10, 20, 2, 0, Some(full(10)), none, 5, (10, 0), "older pods fill the surge: the canary waits"),
            (10, 5, 0, 1, Some(full(10)), none, 0, (9, 0), "5% of 10 without surge: room first"),
            (10, 5, 0, 1, Some(full(9)), none, 0, (9, 1), "…then 1 canary pod (never 0 for 1..99%)"),
            (10, 10, 0, 0, Some(full(10)), none, 0, (9, 0), "surge and unavailable both 0: 1 unavailable allowed"),
            (3, 99, 0, 2, Some(full(3)), none, 0, (1, 0), "no surge: the stable shrinks within maxUnavailable"),
            (3, 99, 0, 2, Some(full(1)), none, 0, (1, 2), "…the canary then fills up to replicas"),
            (10, 100, 3, 0, Some(part(7, 8)), part(6, 3), 0, (7, 6), "pods above spec are already leaving: not counted twice"),
            (1, 51, 0, 1, Some(full(1)), none, 0, (0, 0), "1 replica, no surge, 51%: the stable goes first"),
            (1, 51, 0, 1, Some(none), none, 0, (0, 1), "…then the canary takes the only pod"),
            (1, 50, 1, 0, Some(full(1)), none, 0, (1, 1), "Argo e2e rollout-basic.yaml: 1 stable + 1 canary"),
            (3, 20, 1, 0, Some(full(3)), none, 0, (3, 1), "Argo e2e rollout-canary-with-pause.yaml: 3 stable + 1 canary"),
            (3, 20, 1, 0, Some(full(3)), none, 1, (3, 0), "…while revision 2 still has its pod, revision 3 waits"),
            (3, 20, 1, 0, Some(full(3)), part(1, 0), 0, (3, 1), "…an unready canary keeps the stable whole"),
            (4, 20, 1, 1, None, none, 2, (0, 3), "no stable: the current revision grows to replicas within the surge"),
            (4, 20, 1, 1, None, full(4), 0, (0, 4), "no stable: the weight is ignored"),
            (4, 100, 4, 1, Some(full(4)), none, 0, (3, 4), "Argo e2e TestRolloutWithMaxSurgeScalingDuringUpdate: 4 + 3"),
            (4, 100, 2, 0, Some(full(4)), none, 0, (4, 2), "Argo e2e TestRolloutScalingDuringUpdate: 2 + 4"),
            (8, 100, 2, 0, Some(full(4)), part(2, 0), 0, (4, 6), "…scaled to 8 with a failing canary: 6 + 4"),
            (4, 100, 2, 0, Some(full(4)), part(6, 0), 0, (4, 2), "…and back to 4: 2 + 4"),
            (8, 25, 2, 2, Some(full(1)), full(1), 0, (6, 2), "Argo e2e TestRolloutScalingWhenPaused: 8 replicas at 25%: 2 + 6"),
            (4, 25, 1, 1, Some(full(6)), full(2), 0, (4, 1), "…back to 4: towards 1 + 3"),
            (10, 20, 3, 0, Some(full(10)), part(2, 0), 0, (10, 2), "canary pods not available: the stable may not shrink"),
            (5, 40, 1, 1, Some(full(2)), full(4), 0, (2, 2), "lower weight: canary down within the budget"),
            (4, 50, 1, 1, Some(full(4)), full(4), 0, (3, 2), "over the surge: both shrink, the canary first"),
        ];
        for (replicas, weight, max_surge, max_unavailable, stable, canary, others, expected, why) in
            rows
        {
            let budget = Budget {
                replicas,
                max_surge,
                max_unavailable,
            };
            assert_eq!(
                basic_canary_counts(budget, weight, stable, canary, others),
                expected,
                "{replicas} replicas at {weight}% (surge {max_surge}, unavailable \
                 {max_unavailable}), stable {stable:?}, canary {canary:?}, others {others}: {why}"
            );
        }
    }

    /// Issue 18: Argo's rollout-basic.yaml (1 replica, default 25% surge → 1 pod) at setWeight 50
    /// runs 1 stable + 1 canary, never the canary alone.
    #[test]
    fn c1_one_replica_at_weight_50_keeps_the_stable_pod_beside_the_canary() {
        let budget = Budget {
            replicas: 1,
            max_surge: 1,
            max_unavailable: 0,
        };
        assert_eq!(settle(budget, 50), (1, 1));
    }

    /// Issue 18: Argo's rollout-canary-with-pause.yaml (3 replicas, 25% surge → 1, 25% unavailable
    /// → 0) at setWeight 20 runs 3 stable + 1 canary (25% of pods), not 2 + 1.
    #[test]
    fn c1_three_replicas_at_weight_20_run_three_stable_and_one_canary() {
        let budget = Budget {
            replicas: 3,
            max_surge: 1,
            max_unavailable: 0,
        };
        assert_eq!(settle(budget, 20), (1, 3));
    }

    /// Older revisions without a router: unavailable pods go at once, available ones newest first
    /// as far as `replicas − maxUnavailable` available pods allow.
    #[test]
    fn c1_older_revisions_go_within_the_availability_budget_newest_first() {
        let budget = Budget {
            replicas: 10,
            max_surge: 1,
            max_unavailable: 1,
        };
        let part = |spec, available| Counts { spec, available };
        // (available pods of all revisions, older revisions newest first) → their counts; why.
        let rows: [(i64, Vec<Counts>, Vec<i32>, &str); 6] = [
            (12, vec![full(2)], vec![0], "3 removable pods: all of it"),
            (
                10,
                vec![full(2), full(3)],
                vec![1, 3],
                "1 removable pod: from the newest",
            ),
            (
                12,
                vec![full(2), full(3)],
                vec![0, 2],
                "3 removable: the newest, then the next",
            ),
            (
                9,
                vec![part(3, 1)],
                vec![1],
                "no budget: only the unavailable pods go",
            ),
            (
                9,
                vec![part(2, 3)],
                vec![2],
                "more available than asked for: wait (Argo refuses too)",
            ),
            (
                20,
                vec![full(0), part(4, 0)],
                vec![0, 0],
                "nothing available: nothing to keep",
            ),
        ];
        for (available, others, expected, why) in rows {
            assert_eq!(
                older_replica_set_counts(budget, available, &others),
                expected,
                "{why}"
            );
        }
    }

    #[test]
    fn weighted_counts_never_overflow_for_the_largest_counts() {
        let replicas = i64::from(i32::MAX);
        assert_eq!(
            weighted_counts(replicas, 50, replicas),
            (1_073_741_824, 1_073_741_824)
        );
        assert_eq!(weighted_counts(replicas, 100, 0), (replicas, 0));
        assert_eq!(weighted_counts(0, 50, 1), (0, 0));
    }
}
