//! Leader election on the `coordination.k8s.io` Lease `sluice-controller`, so that of several replicas
//! only one reconciles and writes.
//!
//! The decision is pure ([`decide`]); [`LeaderElector`] does the I/O with optimistic concurrency
//! (`replace` with the observed `resourceVersion`), so two candidates can never both win one round.
//! A leader that cannot renew within [`Timings::renew_deadline`], or that finds another holder, has lost
//! the lease: [`LeaderElector::run`] returns [`LeaderError::Lost`] and the process exits, so it stops
//! writing at once (Argo Rollouts #2117) and its pod restarts as a standby.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use rand::Rng;
use thiserror::Error;
use tokio::sync::watch;

/// The Lease's name (the public contract).
pub const LEASE_NAME: &str = "sluice-controller";

#[derive(Debug, Error)]
pub enum LeaderError {
    #[error("lost the leader lease {namespace}/{LEASE_NAME}: {reason}")]
    Lost { namespace: String, reason: String },
}

/// client-go's defaults: a standby takes over within `lease_duration` of the leader's last renewal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What a candidate does with the Lease it observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No Lease yet: create it, holding it.
    Create,
    /// We hold it: write a new renew time.
    Renew,
    /// Free or expired: take it over (a new transition).
    TakeOver,
    /// Someone else holds a live lease: wait.
    Follow { holder: String },
}

/// Decides from the observed Lease, our identity and the time.
pub fn decide(lease: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Decision {
    let Some(spec) = lease else {
        return Decision::Create;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder == me {
        return Decision::Renew;
    }
    if holder.is_empty() || is_expired(spec, now) {
        return Decision::TakeOver;
    }
    Decision::Follow {
        holder: holder.to_string(),
    }
}

fn is_expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return true;
    };
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    renewed
        .0
        .saturating_add(duration)
        .is_ok_and(|end| end <= now)
}

/// The spec to write for a decision (`None` when following).
pub fn next_spec(
    current: Option<&LeaseSpec>,
    decision: &Decision,
    me: &str,
    timings: Timings,
    now: Timestamp,
) -> Option<LeaseSpec> {
    let duration_seconds = i32::try_from(timings.lease_duration.as_secs()).unwrap_or(i32::MAX);
    let mut spec = current.cloned().unwrap_or_default();
    match decision {
        Decision::Follow { .. } => return None,
        Decision::Renew => {}
        Decision::Create | Decision::TakeOver => {
            let transitions = current.and_then(|s| s.lease_transitions).unwrap_or(0);
            spec.lease_transitions = Some(match decision {
                Decision::Create => 0,
                _ => transitions.saturating_add(1),
            });
            spec.acquire_time = Some(MicroTime(now));
        }
    }
    spec.holder_identity = Some(me.to_string());
    spec.lease_duration_seconds = Some(duration_seconds);
    spec.renew_time = Some(MicroTime(now));
    Some(spec)
}

/// `<hostname>_<random>`: unique per process, readable in `kubectl get lease`.
pub fn holder_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "sluice".to_string());
    let suffix: u64 = rand::rng().random();
    format!("{host}_{suffix:016x}")
}

/// Runs the election for one process.
pub struct LeaderElector {
    leases: Api<Lease>,
    namespace: String,
    identity: String,
    timings: Timings,
    leading: watch::Sender<bool>,
}

impl LeaderElector {
    pub fn new(client: Client, namespace: &str, identity: String, timings: Timings) -> Self {
        let (leading, _) = watch::channel(false);
        Self {
            leases: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            identity,
            timings,
            leading,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Becomes `true` when this process leads; it never goes back to `false` (losing ends the run).
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    /// Campaigns and renews until the lease is lost; never returns while leading.
    pub async fn run(&self) -> Result<(), LeaderError> {
        let mut last_renewal: Option<tokio::time::Instant> = None;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    if last_renewal.is_none() {
                        tracing::info!(identity = %self.identity, namespace = %self.namespace, "became the leader");
                        self.leading.send_replace(true);
                    }
                    last_renewal = Some(tokio::time::Instant::now());
                }
                Ok(false) if last_renewal.is_some() => {
                    return Err(self.lost("another process holds the lease"));
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, namespace = %self.namespace, "leader lease round failed");
                    if last_renewal.is_some_and(|t| t.elapsed() >= self.timings.renew_deadline) {
                        return Err(self.lost(&format!("no renewal within the deadline: {e}")));
                    }
                }
            }
            tokio::time::sleep(self.timings.retry_period).await;
        }
    }

    /// Gives the lease up on shutdown so a standby takes over at once instead of after it expires.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.leases.get_opt(LEASE_NAME).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        spec.acquire_time = None;
        if let Err(e) = self
            .leases
            .replace(LEASE_NAME, &PostParams::default(), &lease)
            .await
        {
            tracing::warn!(error = %e, "could not release the leader lease");
        }
    }

    /// One round: `Ok(true)` when we hold the lease after it.
    async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let current = self.leases.get_opt(LEASE_NAME).await?;
        let now = Timestamp::now();
        let current_spec = current.as_ref().and_then(|l| l.spec.as_ref());
        let decision = decide(current_spec, &self.identity, now);
        let Some(spec) = next_spec(current_spec, &decision, &self.identity, self.timings, now)
        else {
            return Ok(false);
        };
        let result = match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(LEASE_NAME.to_string()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                self.leases.create(&PostParams::default(), &lease).await
            }
            Some(mut lease) => {
                // `replace` carries the observed resourceVersion: a concurrent writer makes it fail
                // with 409 instead of both candidates believing they won.
                lease.spec = Some(spec);
                self.leases
                    .replace(LEASE_NAME, &PostParams::default(), &lease)
                    .await
            }
        };
        match result {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn lost(&self, reason: &str) -> LeaderError {
        LeaderError::Lost {
            namespace: self.namespace.clone(),
            reason: reason.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn held_by(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_string()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(MicroTime(at(0))),
            renew_time: Some(MicroTime(at(renewed))),
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn decisions_follow_holder_and_expiry() {
        let cases: Vec<(&str, Option<LeaseSpec>, i64, Decision)> = vec![
            ("no lease", None, 0, Decision::Create),
            ("we hold it", Some(held_by("me", 0)), 100, Decision::Renew),
            (
                "other holder, live",
                Some(held_by("other", 10)),
                24,
                Decision::Follow {
                    holder: "other".into(),
                },
            ),
            (
                "other holder, expired exactly",
                Some(held_by("other", 10)),
                25,
                Decision::TakeOver,
            ),
            (
                "released (no holder)",
                Some(LeaseSpec::default()),
                0,
                Decision::TakeOver,
            ),
            (
                "no renew time falls back to acquire time",
                Some(LeaseSpec {
                    renew_time: None,
                    ..held_by("other", 0)
                }),
                16,
                Decision::TakeOver,
            ),
        ];
        for (name, lease, now, expected) in cases {
            assert_eq!(decide(lease.as_ref(), "me", at(now)), expected, "{name}");
        }
    }

    #[test]
    fn take_over_counts_a_transition_and_renew_keeps_acquire_time() {
        let timings = Timings::default();
        let old = held_by("other", 0);
        let taken = next_spec(Some(&old), &Decision::TakeOver, "me", timings, at(30)).unwrap();
        assert_eq!(taken.holder_identity.as_deref(), Some("me"));
        assert_eq!(taken.lease_transitions, Some(4));
        assert_eq!(taken.acquire_time, Some(MicroTime(at(30))));
        assert_eq!(taken.lease_duration_seconds, Some(15));

        let renewed = next_spec(Some(&taken), &Decision::Renew, "me", timings, at(32)).unwrap();
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(30))));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(32))));
        assert_eq!(renewed.lease_transitions, Some(4));

        let created = next_spec(None, &Decision::Create, "me", timings, at(1)).unwrap();
        assert_eq!(created.lease_transitions, Some(0));

        let follow = Decision::Follow {
            holder: "other".into(),
        };
        assert_eq!(next_spec(Some(&old), &follow, "me", timings, at(1)), None);
    }

    #[test]
    fn identities_are_unique_per_process_and_name_the_host() {
        let a = holder_identity();
        let b = holder_identity();
        assert_ne!(a, b);
        let (host, random) = a.rsplit_once('_').unwrap();
        assert!(!host.is_empty());
        assert_eq!(random.len(), 16);
    }
}
