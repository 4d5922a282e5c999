//! Turns observed splits into emulated requests at a steady rate, and logs what changes.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use rand::Rng;

use crate::behaviour;
use crate::metrics::{Metrics, Request};
use crate::observe::{Observation, ObserveError};
use crate::split::{self, Backend, Split};

/// Longest stretch of time one tick makes up for (after a slow or failed read of the cluster).
const MAX_CATCH_UP: Duration = Duration::from_secs(5);

/// Sends emulated requests for every observed Rollout.
#[derive(Debug)]
pub struct Engine<R> {
    rate: f64,
    preview_rate: f64,
    rng: R,
    /// Fractional requests carried to the next tick, per Rollout (and per Rollout preview).
    carry: HashMap<String, f64>,
    /// Last logged split summary per Rollout.
    splits: HashMap<String, String>,
    /// Last logged error per Rollout, or for the whole tick (key "").
    errors: HashMap<String, String>,
}

impl<R: Rng> Engine<R> {
    /// `rate` requests per second per Rollout, `preview_rate` per blue-green preview Service.
    pub fn new(rate: f64, preview_rate: f64, rng: R) -> Self {
        Self {
            rate: rate.max(0.0),
            preview_rate: preview_rate.max(0.0),
            rng,
            carry: HashMap::new(),
            splits: HashMap::new(),
            errors: HashMap::new(),
        }
    }

    /// Emulate the requests due for `elapsed` time. Returns how many were sent.
    pub fn tick(
        &mut self,
        observed: Result<Vec<Observation>, ObserveError>,
        elapsed: Duration,
        metrics: &Metrics,
    ) -> u64 {
        let observations = match observed {
            Ok(observations) => {
                self.clear_error("");
                observations
            }
            Err(err) => {
                self.note_error("", &err.to_string());
                return 0;
            }
        };
        let seconds = elapsed.min(MAX_CATCH_UP).as_secs_f64();
        let mut sent = 0;
        let mut seen = Vec::with_capacity(observations.len());
        for observation in observations {
            let key = format!("{}/{}", observation.namespace, observation.name);
            seen.push(key.clone());
            let split = match observation.split {
                Ok(split) => {
                    self.clear_error(&key);
                    split
                }
                Err(err) => {
                    self.note_error(&key, &err.to_string());
                    // Log the split again once it is readable.
                    self.splits.remove(&key);
                    continue;
                }
            };
            self.note_split(&key, &split);
            let due = self.due(&key, self.rate * seconds);
            sent += self.send(
                &observation.namespace,
                &observation.name,
                &split.backends,
                due,
                metrics,
            );
            if let Some(preview) = &split.preview {
                let due = self.due(&format!("{key}#preview"), self.preview_rate * seconds);
                sent += self.send(
                    &observation.namespace,
                    &observation.name,
                    std::slice::from_ref(preview),
                    due,
                    metrics,
                );
            }
        }
        self.forget_all_but(&seen);
        sent
    }

    /// Whole requests due now for `key`, carrying the fraction over.
    fn due(&mut self, key: &str, requests: f64) -> u64 {
        let carry = self.carry.entry(key.to_owned()).or_insert(0.0);
        *carry += requests;
        let whole = carry.floor();
        *carry -= whole;
        // `whole` is a small non-negative integer (rate × at most MAX_CATCH_UP seconds).
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let whole = whole as u64;
        whole
    }

    fn send(
        &mut self,
        namespace: &str,
        rollout: &str,
        backends: &[Backend],
        count: u64,
        metrics: &Metrics,
    ) -> u64 {
        let mut sent = 0;
        for _ in 0..count {
            let Some(backend) = split::pick(backends, &mut self.rng) else {
                break;
            };
            let outcome = behaviour::respond(backend.image.as_deref(), &mut self.rng);
            metrics.record(&Request {
                namespace,
                service: &backend.service,
                rollout,
                revision: backend.hash.as_deref().unwrap_or(""),
                code: outcome.code,
                latency: outcome.latency,
            });
            sent += 1;
        }
        sent
    }

    fn note_split(&mut self, key: &str, split: &Split) {
        let summary = summarize(split);
        if self.splits.get(key) != Some(&summary) {
            tracing::info!(rollout = key, split = %summary, "traffic split");
            self.splits.insert(key.to_owned(), summary);
        }
    }

    fn note_error(&mut self, key: &str, message: &str) {
        let scope = if key.is_empty() { "cluster" } else { key };
        if self.errors.get(key).map(String::as_str) == Some(message) {
            tracing::debug!(scope, error = message, "still failing");
        } else {
            tracing::warn!(scope, error = message, "cannot determine traffic split");
            self.errors.insert(key.to_owned(), message.to_owned());
        }
    }

    fn clear_error(&mut self, key: &str) {
        if self.errors.remove(key).is_some() {
            let scope = if key.is_empty() { "cluster" } else { key };
            tracing::info!(scope, "traffic split readable again");
        }
    }

    fn forget_all_but(&mut self, seen: &[String]) {
        let keep = |key: &String| {
            let rollout = key
                .split_once('#')
                .map_or(key.as_str(), |(rollout, _)| rollout);
            rollout.is_empty() || seen.iter().any(|s| s == rollout)
        };
        for key in self.splits.keys().filter(|k| !keep(k)) {
            tracing::info!(rollout = key.as_str(), "rollout gone; no more traffic");
        }
        self.splits.retain(|k, _| keep(k));
        self.carry.retain(|k, _| keep(k));
        self.errors.retain(|k, _| keep(k));
    }
}

/// `demo-stable(aaa)=80 demo-canary(bbb,no endpoints)=20 | preview demo-preview(bbb)`.
fn summarize(split: &Split) -> String {
    fn one(out: &mut String, backend: &Backend) {
        let hash = backend.hash.as_deref().unwrap_or("no hash");
        let endpoints = if backend.image.is_some() {
            ""
        } else {
            ",no endpoints"
        };
        let _ = write!(
            out,
            "{}({hash}{endpoints})={}",
            backend.service, backend.weight
        );
    }
    let mut out = String::new();
    for (i, backend) in split.backends.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        one(&mut out, backend);
    }
    if split.backends.is_empty() {
        out.push_str("no backends");
    }
    if let Some(preview) = &split.preview {
        out.push_str(" | preview ");
        one(&mut out, preview);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::split::SplitError;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn backend(service: &str, hash: &str, weight: u32, image: &str) -> Backend {
        Backend {
            service: service.into(),
            hash: Some(hash.into()),
            weight,
            image: Some(image.into()),
        }
    }

    fn observation(name: &str, split: Result<Split, ObserveError>) -> Observation {
        Observation {
            namespace: "apps".into(),
            name: name.into(),
            split,
        }
    }

    fn canary_split() -> Split {
        Split {
            backends: vec![
                backend("demo-stable", "aaa", 80, "demo:v1"),
                backend("demo-canary", "bbb", 20, "demo:bad"),
            ],
            preview: None,
        }
    }

    fn count(text: &str, prefix: &str) -> u64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    #[test]
    fn rate_is_kept_across_ticks_with_fractions() {
        let metrics = Metrics::new();
        let mut engine = Engine::new(20.0, 0.0, StdRng::seed_from_u64(1));
        let mut sent = 0;
        // 40 ticks of 125 ms = 5 s: 2.5 requests per tick on average.
        for _ in 0..40 {
            sent += engine.tick(
                Ok(vec![observation("demo", Ok(canary_split()))]),
                Duration::from_millis(125),
                &metrics,
            );
        }
        assert!((99..=100).contains(&sent), "{sent}");
    }

    #[test]
    fn requests_follow_weights_and_behaviour() {
        let metrics = Metrics::new();
        let mut engine = Engine::new(1_000.0, 0.0, StdRng::seed_from_u64(2));
        for _ in 0..10 {
            engine.tick(
                Ok(vec![observation("demo", Ok(canary_split()))]),
                Duration::from_secs(1),
                &metrics,
            );
        }
        let text = metrics.encode().unwrap();
        let canary = count(
            &text,
            r#"http_requests_total{namespace="apps",service="demo-canary""#,
        );
        let canary_errors = count(
            &text,
            r#"http_requests_total{namespace="apps",service="demo-canary",rollout="demo",revision="bbb",code="500"}"#,
        );
        let stable = count(
            &text,
            r#"http_requests_total{namespace="apps",service="demo-stable""#,
        );
        let stable_errors = count(
            &text,
            r#"http_requests_total{namespace="apps",service="demo-stable",rollout="demo",revision="aaa",code="500"}"#,
        );
        assert_eq!(canary + stable, 10_000);
        assert!((1_800..=2_200).contains(&canary), "{canary}");
        #[allow(clippy::cast_precision_loss)]
        let rate = canary_errors as f64 / canary as f64;
        assert!((0.25..=0.35).contains(&rate), "{rate}");
        assert_eq!(stable_errors, 0);
    }

    #[test]
    fn elapsed_time_is_capped() {
        let metrics = Metrics::new();
        let mut engine = Engine::new(10.0, 0.0, StdRng::seed_from_u64(3));
        let sent = engine.tick(
            Ok(vec![observation("demo", Ok(canary_split()))]),
            Duration::from_secs(600),
            &metrics,
        );
        assert_eq!(sent, 50);
    }

    #[test]
    fn preview_gets_its_own_rate() {
        let metrics = Metrics::new();
        let mut engine = Engine::new(10.0, 4.0, StdRng::seed_from_u64(4));
        let split = Split {
            backends: vec![backend("demo-active", "aaa", 1, "demo:v1")],
            preview: Some(backend("demo-preview", "bbb", 1, "demo:slow")),
        };
        let sent = engine.tick(
            Ok(vec![observation("bg", Ok(split))]),
            Duration::from_secs(1),
            &metrics,
        );
        assert_eq!(sent, 14);
        let text = metrics.encode().unwrap();
        assert_eq!(
            count(
                &text,
                r#"http_requests_total{namespace="apps",service="demo-preview""#
            ),
            4
        );
        assert_eq!(
            count(
                &text,
                r#"http_requests_total{namespace="apps",service="demo-active""#
            ),
            10
        );
    }

    #[test]
    fn errors_send_nothing_and_others_continue() {
        let metrics = Metrics::new();
        let mut engine = Engine::new(10.0, 0.0, StdRng::seed_from_u64(5));
        let failed = engine.tick(
            Err(ObserveError::Read {
                what: "rollouts".into(),
                message: "connection refused".into(),
            }),
            Duration::from_secs(1),
            &metrics,
        );
        assert_eq!(failed, 0);
        let sent = engine.tick(
            Ok(vec![
                observation(
                    "broken",
                    Err(SplitError::MissingField("metadata.uid").into()),
                ),
                observation("demo", Ok(canary_split())),
            ]),
            Duration::from_secs(1),
            &metrics,
        );
        assert_eq!(sent, 10);
        assert!(!metrics.encode().unwrap().contains(r#"rollout="broken""#));
    }

    #[test]
    fn no_endpoints_are_counted_as_503_without_revision() {
        let metrics = Metrics::new();
        let mut engine = Engine::new(10.0, 0.0, StdRng::seed_from_u64(6));
        let split = Split {
            backends: vec![Backend {
                service: "demo".into(),
                hash: None,
                weight: 1,
                image: None,
            }],
            preview: None,
        };
        engine.tick(
            Ok(vec![observation("demo", Ok(split))]),
            Duration::from_secs(1),
            &metrics,
        );
        assert!(metrics.encode().unwrap().contains(
            r#"http_requests_total{namespace="apps",service="demo",rollout="demo",revision="",code="503"} 10"#
        ));
    }

    #[test]
    fn vanished_rollouts_are_forgotten() {
        let metrics = Metrics::new();
        let mut engine = Engine::new(3.0, 0.0, StdRng::seed_from_u64(7));
        engine.tick(
            Ok(vec![observation("demo", Ok(canary_split()))]),
            Duration::from_millis(100),
            &metrics,
        );
        assert!(engine.carry.contains_key("apps/demo"));
        engine.tick(Ok(vec![]), Duration::from_millis(100), &metrics);
        assert!(engine.carry.is_empty());
        assert!(engine.splits.is_empty());
    }

    #[test]
    fn summaries_are_readable() {
        let mut split = canary_split();
        split.backends[1].image = None;
        split.preview = Some(backend("demo-preview", "ccc", 1, "demo:v3"));
        assert_eq!(
            summarize(&split),
            "demo-stable(aaa)=80 demo-canary(bbb,no endpoints)=20 | preview demo-preview(ccc)=1"
        );
        assert_eq!(summarize(&Split::default()), "no backends");
    }
}
