//! Turns observed splits into emulated requests at a steady rate, and logs what changes.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use rand::Rng;

use crate::behaviour;
use crate::metrics::{Metrics, Request};
use crate::observe::{Observation, ObserveError};
use crate::split::{self, Backend, Mirror, Split};

/// Longest stretch of time one tick makes up for (after a slow or failed read of the cluster).
const MAX_CATCH_UP: Duration = Duration::from_secs(5);

/// Sends emulated requests for every observed Rollout.
#[derive(Debug)]
pub struct Engine<R> {
    rate: f64,
    preview_rate: f64,
    /// Share (0..=1) of the user-facing requests that carry the emulated header.
    header_share: f64,
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
            header_share: 0.0,
            rng,
            carry: HashMap::new(),
            splits: HashMap::new(),
            errors: HashMap::new(),
        }
    }

    /// A share (clamped to 0..=1) of the user-facing requests carries the emulated header; they
    /// follow the split's header route when it has one, and are counted as `traffic="header"`.
    #[must_use]
    pub fn with_header_share(mut self, share: f64) -> Self {
        self.header_share = if share.is_finite() {
            share.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// Emulate the requests due for `elapsed` time. Returns how many were sent (mirrored copies
    /// not included).
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
            let target = Target {
                namespace: &observation.namespace,
                rollout: &observation.name,
            };
            sent += self.send_user_traffic(target, &split, due, metrics);
            if let Some(preview) = &split.preview {
                let due = self.due(&format!("{key}#preview"), self.preview_rate * seconds);
                let lane = Lane {
                    backends: std::slice::from_ref(preview),
                    mirrors: &[],
                    traffic: PLAIN,
                };
                for _ in 0..due {
                    if !self.send_one(target, &lane, metrics) {
                        break;
                    }
                    sent += 1;
                }
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

    /// `count` user-facing requests: each carries the header with `header_share` probability and
    /// takes the header lane when the split has one, the weighted backends otherwise.
    fn send_user_traffic(
        &mut self,
        target: Target<'_>,
        split: &Split,
        count: u64,
        metrics: &Metrics,
    ) -> u64 {
        let plain = Lane {
            backends: &split.backends,
            mirrors: &split.mirrors,
            traffic: PLAIN,
        };
        let header = Lane {
            traffic: HEADER,
            ..split.header.as_ref().map_or(plain, |lane| Lane {
                backends: &lane.backends,
                mirrors: &lane.mirrors,
                traffic: HEADER,
            })
        };
        let mut sent = 0;
        for _ in 0..count {
            let carries_header = self.header_share > 0.0 && self.rng.random_bool(self.header_share);
            let lane = if carries_header { &header } else { &plain };
            if !self.send_one(target, lane, metrics) {
                break;
            }
            sent += 1;
        }
        sent
    }

    /// One request along `lane`, and its mirrored copies; false when no backend takes traffic.
    fn send_one(&mut self, target: Target<'_>, lane: &Lane<'_>, metrics: &Metrics) -> bool {
        let Some(backend) = split::pick(lane.backends, &mut self.rng) else {
            return false;
        };
        self.record(target, backend, lane.traffic, metrics);
        for mirror in lane.mirrors {
            let copied = mirror.percent >= 100
                || (mirror.percent > 0 && self.rng.random_ratio(mirror.percent, 100));
            if copied {
                self.record(target, &mirror.backend, MIRROR, metrics);
            }
        }
        true
    }

    fn record(&mut self, target: Target<'_>, backend: &Backend, traffic: &str, metrics: &Metrics) {
        let outcome = behaviour::respond(backend.image.as_deref(), &mut self.rng);
        metrics.record(&Request {
            namespace: target.namespace,
            service: &backend.service,
            rollout: target.rollout,
            revision: backend.hash.as_deref().unwrap_or(""),
            code: outcome.code,
            latency: outcome.latency,
            traffic,
        });
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

/// The `traffic` label of plain user-facing requests.
pub const PLAIN: &str = "plain";
/// The `traffic` label of requests carrying the emulated header.
pub const HEADER: &str = "header";
/// The `traffic` label of copies made by a mirror route.
pub const MIRROR: &str = "mirror";

/// The Rollout requests are sent for.
#[derive(Debug, Clone, Copy)]
struct Target<'a> {
    namespace: &'a str,
    rollout: &'a str,
}

/// Where one kind of request goes.
#[derive(Debug, Clone, Copy)]
struct Lane<'a> {
    backends: &'a [Backend],
    mirrors: &'a [Mirror],
    traffic: &'static str,
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
    for mirror in &split.mirrors {
        let _ = write!(out, " mirror {}%→", mirror.percent);
        one(&mut out, &mirror.backend);
    }
    if let Some(header) = &split.header {
        out.push_str(" | header ");
        for (i, backend) in header.backends.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            one(&mut out, backend);
        }
        for mirror in &header.mirrors {
            let _ = write!(out, " mirror {}%→", mirror.percent);
            one(&mut out, &mirror.backend);
        }
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
            ..Split::default()
        }
    }

    fn count(text: &str, prefix: &str) -> u64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// Requests counted under `traffic` for `service`.
    fn traffic(text: &str, service: &str, traffic: &str) -> u64 {
        text.lines()
            .filter(|l| {
                l.starts_with(&format!(
                    r#"http_requests_total{{namespace="apps",service="{service}""#
                ))
            })
            .filter(|l| l.contains(&format!(r#"traffic="{traffic}"}}"#)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    #[test]
    fn header_requests_take_the_header_lane_and_mirrors_are_counted_apart() {
        let metrics = Metrics::new();
        let mut engine =
            Engine::new(1_000.0, 0.0, StdRng::seed_from_u64(9)).with_header_share(0.25);
        let split = Split {
            mirrors: vec![Mirror {
                backend: backend("demo-canary", "bbb", 1, "demo:v2"),
                percent: 40,
            }],
            header: Some(crate::split::HeaderLane {
                backends: vec![backend("demo-canary", "bbb", 1, "demo:v2")],
                mirrors: Vec::new(),
            }),
            ..canary_split()
        };
        for _ in 0..10 {
            let sent = engine.tick(
                Ok(vec![observation("demo", Ok(split.clone()))]),
                Duration::from_secs(1),
                &metrics,
            );
            assert_eq!(sent, 1_000, "mirrored copies are not sent requests");
        }
        let text = metrics.encode().unwrap();
        let header_canary = traffic(&text, "demo-canary", "header");
        assert_eq!(traffic(&text, "demo-stable", "header"), 0);
        assert!((2_300..=2_700).contains(&header_canary), "{header_canary}");
        let plain = traffic(&text, "demo-canary", "plain") + traffic(&text, "demo-stable", "plain");
        assert_eq!(plain + header_canary, 10_000);
        // 40 % of the plain requests are mirrored; the header lane has no mirror.
        let mirrored = traffic(&text, "demo-canary", "mirror");
        #[allow(clippy::cast_precision_loss)]
        let share = mirrored as f64 / plain as f64;
        assert!((0.37..=0.43).contains(&share), "{share}");
        assert_eq!(traffic(&text, "demo-stable", "mirror"), 0);
        assert!(
            summarize(&split).contains("mirror 40%→demo-canary(bbb)=1 | header demo-canary(bbb)=1")
        );
    }

    #[test]
    fn without_a_header_lane_header_requests_follow_the_weights() {
        let metrics = Metrics::new();
        let mut engine = Engine::new(1_000.0, 0.0, StdRng::seed_from_u64(3)).with_header_share(0.5);
        for _ in 0..4 {
            engine.tick(
                Ok(vec![observation("demo", Ok(canary_split()))]),
                Duration::from_secs(1),
                &metrics,
            );
        }
        let text = metrics.encode().unwrap();
        let header_stable = traffic(&text, "demo-stable", "header");
        let header_canary = traffic(&text, "demo-canary", "header");
        #[allow(clippy::cast_precision_loss)]
        let canary_share = header_canary as f64 / (header_stable + header_canary) as f64;
        assert!((0.16..=0.24).contains(&canary_share), "{canary_share}");
        assert_eq!(traffic(&text, "demo-canary", "mirror"), 0);
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
            r#"http_requests_total{namespace="apps",service="demo-canary",rollout="demo",revision="bbb",code="500""#,
        );
        let stable = count(
            &text,
            r#"http_requests_total{namespace="apps",service="demo-stable""#,
        );
        let stable_errors = count(
            &text,
            r#"http_requests_total{namespace="apps",service="demo-stable",rollout="demo",revision="aaa",code="500""#,
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
            ..Split::default()
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
            ..Split::default()
        };
        engine.tick(
            Ok(vec![observation("demo", Ok(split))]),
            Duration::from_secs(1),
            &metrics,
        );
        assert!(metrics.encode().unwrap().contains(
            r#"http_requests_total{namespace="apps",service="demo",rollout="demo",revision="",code="503",traffic="plain"} 10"#
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
