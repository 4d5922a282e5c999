//! When an Application is compared with Git again (docs/behaviour.md G2, G14).
//!
//! Time is cut into ticks of `--repo-poll-interval`, aligned on the Unix epoch so every Application
//! shares them. Each Application has its own slot in the tick (a jitter derived from its name, so
//! restarts keep it), and asks for a fetch that started after the tick began: the first Application
//! of a repository in a tick fetches, the others reuse that fetch (one fetch per repository per tick
//! however many Applications share it). A webhook push asks for a fetch that started after the push.
//! `status.reconciledAt` (whole seconds, as it is stored) records the last comparison, so the
//! schedule survives restarts.

use std::time::Duration;

use jiff::Timestamp;

use crate::api::application::RefreshType;

/// What the last comparison of the Application was and what is asked of this one.
#[derive(Clone, Debug, PartialEq)]
pub struct RefreshInput {
    /// `status.reconciledAt`.
    pub reconciled_at: Option<Timestamp>,
    /// Whether `status.sync` holds a revision compared with the current `spec.source`.
    pub has_current_comparison: bool,
    /// The last webhook push of the Application's repository seen by this process.
    pub pushed_at: Option<Timestamp>,
    /// A refresh asked through the annotation or the `operation`.
    pub requested: Option<RefreshType>,
    /// Seed of the Application's slot in the tick.
    pub jitter_seed: u64,
}

/// Whether to resolve the revision from Git now, and when the next comparison is due.
#[derive(Clone, Debug, PartialEq)]
pub struct RefreshDecision {
    /// `Some(t)`: resolve with a fetch that started at `t` or later, however long the reconcile
    /// took to get to the fetch.
    /// `None`: reuse `status.sync.revision`.
    pub fetched_since: Option<Timestamp>,
    /// Render again rather than use the cached rendering.
    pub hard: bool,
    /// Time from `now` until the next slot.
    pub next_in: Duration,
}

/// The largest slot offset, as a fraction of the interval: slots spread over the whole tick, so
/// 200 Applications polled every 10 s come due 20 a second rather than 80 in the first 2.5 s (which
/// kept the reconcile queue full, and the queue serves waiting Applications in a fixed order: the
/// same few waited minutes). A commit is still seen within one interval: every slot of a tick reuses
/// the tick's first fetch.
const JITTER_FRACTION: u64 = 1;

/// The seed of an Application's slot: FNV-1a of `<namespace>/<name>` (stable across processes).
pub fn jitter_seed(namespace: &str, name: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in namespace.bytes().chain([b'/']).chain(name.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Decides the refresh at `now` for polls every `interval` (whole seconds, at least 1).
pub fn decide(input: &RefreshInput, now: Timestamp, interval: Duration) -> RefreshDecision {
    let interval_s = i64::try_from(interval.as_secs().max(1)).unwrap_or(i64::MAX);
    let jitter_range = u64::try_from(interval_s).unwrap_or(1) / JITTER_FRACTION;
    let jitter = i64::try_from(input.jitter_seed % jitter_range.max(1)).unwrap_or(0);
    let now_s = now.as_second();
    // The latest slot at or before now, and the tick it belongs to.
    let slot = (now_s - jitter).div_euclid(interval_s) * interval_s + jitter;
    let tick_start = slot - jitter;
    let next_in = secs(slot + interval_s - now_s).saturating_sub(Duration::from_nanos(u64::from(
        now.subsec_nanosecond().unsigned_abs(),
    )));
    let reconciled_s = input.reconciled_at.map(Timestamp::as_second);
    // Same second counts as before the push: `reconciledAt` is truncated to whole seconds.
    let pushed_since_last = input
        .pushed_at
        .is_some_and(|p| reconciled_s.is_none_or(|r| r <= p.as_second()));
    let fetched_since = if input.requested.is_some() {
        Some(now)
    } else if pushed_since_last {
        input.pushed_at
    } else if !input.has_current_comparison || reconciled_s.is_none_or(|r| r < slot) {
        Some(Timestamp::from_second(tick_start).unwrap_or(now))
    } else {
        None
    };
    RefreshDecision {
        fetched_since,
        hard: input.requested == Some(RefreshType::Hard),
        next_in,
    }
}

fn secs(s: i64) -> Duration {
    Duration::from_secs(u64::try_from(s).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn input(reconciled: Option<i64>) -> RefreshInput {
        RefreshInput {
            reconciled_at: reconciled.map(at),
            has_current_comparison: true,
            pushed_at: None,
            requested: None,
            jitter_seed: 7,
        }
    }

    const MINUTE: Duration = Duration::from_secs(60);

    // 1_000_020 is a multiple of 60: a tick starts there; seed 7 puts the slot 7 s into the tick.
    #[test]
    fn g2_poll_once_per_slot_reusing_the_ticks_fetch() {
        let d = decide(&input(Some(1_000_027)), at(1_000_030), MINUTE);
        assert_eq!(d.fetched_since, None);
        assert_eq!(d.next_in, Duration::from_secs(57));
        // Past the slot of the next tick: due, with a fetch no older than the tick's start.
        let d = decide(&input(Some(1_000_027)), at(1_000_089), MINUTE);
        assert_eq!(d.fetched_since, Some(at(1_000_080)));
        assert_eq!(d.next_in, Duration::from_secs(58));
        // Reconciled in this slot already (whole seconds): not due again.
        let d = decide(&input(Some(1_000_087)), at(1_000_089), MINUTE);
        assert_eq!(d.fetched_since, None);
    }

    #[test]
    fn g14_every_application_of_a_tick_accepts_the_same_fetch() {
        // Different slots of the tick starting at 1_000_080 all accept a fetch made since then.
        for seed in [0, 3, 11, 14] {
            let i = RefreshInput {
                jitter_seed: seed,
                ..input(Some(1_000_000))
            };
            let d = decide(&i, at(1_000_100), MINUTE);
            assert_eq!(d.fetched_since, Some(at(1_000_080)), "seed {seed}");
        }
    }

    #[test]
    fn first_comparison_webhook_pushes_and_requests_resolve_now() {
        let mut i = input(None);
        i.has_current_comparison = false;
        assert!(decide(&i, at(1_000_030), MINUTE).fetched_since.is_some());

        let mut i = input(Some(1_000_027));
        i.has_current_comparison = false;
        assert!(decide(&i, at(1_000_030), MINUTE).fetched_since.is_some());

        let mut i = input(Some(1_000_027));
        i.pushed_at = Some(Timestamp::new(1_000_029, 500_000_000).unwrap());
        let d = decide(&i, at(1_000_030), MINUTE);
        assert_eq!(d.fetched_since, i.pushed_at);
        // Once reconciled after the push, the push is done with.
        i.reconciled_at = Some(at(1_000_030));
        assert_eq!(decide(&i, at(1_000_031), MINUTE).fetched_since, None);

        let mut i = input(Some(1_000_029));
        i.requested = Some(RefreshType::Hard);
        let d = decide(&i, at(1_000_030), MINUTE);
        assert_eq!(d.fetched_since, Some(at(1_000_030)));
        assert!(d.hard);
    }

    #[test]
    fn slots_are_stable_per_application_and_spread() {
        assert_eq!(jitter_seed("a", "b"), jitter_seed("a", "b"));
        assert_ne!(jitter_seed("a", "b"), jitter_seed("a", "c"));
        assert_ne!(jitter_seed("ab", "c"), jitter_seed("a", "bc"));
    }
}
