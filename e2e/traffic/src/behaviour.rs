//! How an emulated revision answers one request, decided by its container image tag.
//!
//! | image tag      | answer                                                        |
//! |----------------|---------------------------------------------------------------|
//! | `…:bad`        | 30 % HTTP 500, else 200; 10–50 ms                             |
//! | `…:slow`       | 200; 10–50 ms plus 300–600 ms (p99 ≈ 640 ms)                  |
//! | anything else  | 200; 10–50 ms                                                 |
//! | no endpoints   | 503; 1–5 ms (Service without hash selector, no ready pods)    |

use std::time::Duration;

use rand::Rng;

/// Every status code [`respond`] can answer.
pub const ANSWER_CODES: [u16; 3] = [200, 500, 503];

/// Share of requests a `:bad` revision answers with HTTP 500.
pub const BAD_ERROR_RATE: f64 = 0.30;

/// The behaviour a revision emulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// 200 with base latency.
    Healthy,
    /// 30 % HTTP 500.
    Bad,
    /// 200 with several hundred milliseconds of extra latency.
    Slow,
}

/// The emulated answer to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// HTTP status code.
    pub code: u16,
    /// Time the request took.
    pub latency: Duration,
}

/// The tag of a container image reference: `registry:5000/app:v2@sha256:…` → `v2`.
/// `None` when the reference has no tag (only a digest, or nothing).
#[must_use]
pub fn image_tag(image: &str) -> Option<&str> {
    let without_digest = image.split_once('@').map_or(image, |(name, _)| name);
    let last_segment = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last_segment
        .rsplit_once(':')
        .map(|(_, tag)| tag)
        .filter(|tag| !tag.is_empty())
}

/// The behaviour an image emulates, from its tag.
#[must_use]
pub fn profile(image: &str) -> Profile {
    match image_tag(image) {
        Some("bad") => Profile::Bad,
        Some("slow") => Profile::Slow,
        _ => Profile::Healthy,
    }
}

/// Answer one request. `image` is the serving revision's first container image, or `None` when the
/// request found no endpoints (answered 503).
pub fn respond<R: Rng + ?Sized>(image: Option<&str>, rng: &mut R) -> Outcome {
    let Some(image) = image else {
        return Outcome {
            code: 503,
            latency: millis(rng.random_range(1.0..5.0)),
        };
    };
    let base = rng.random_range(10.0..50.0);
    match profile(image) {
        Profile::Healthy => Outcome {
            code: 200,
            latency: millis(base),
        },
        Profile::Bad => Outcome {
            code: if rng.random_bool(BAD_ERROR_RATE) {
                500
            } else {
                200
            },
            latency: millis(base),
        },
        Profile::Slow => Outcome {
            code: 200,
            latency: millis(base + rng.random_range(300.0..600.0)),
        },
    }
}

fn millis(ms: f64) -> Duration {
    Duration::from_secs_f64(ms / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const SAMPLES: usize = 10_000;

    fn sample(image: Option<&str>, seed: u64) -> Vec<Outcome> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..SAMPLES).map(|_| respond(image, &mut rng)).collect()
    }

    fn quantile(outcomes: &[Outcome], q: f64) -> Duration {
        let mut latencies: Vec<Duration> = outcomes.iter().map(|o| o.latency).collect();
        latencies.sort();
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let index = ((latencies.len() as f64 * q) as usize).min(latencies.len() - 1);
        latencies[index]
    }

    #[allow(clippy::cast_precision_loss)]
    fn error_rate(outcomes: &[Outcome]) -> f64 {
        outcomes.iter().filter(|o| o.code >= 500).count() as f64 / outcomes.len() as f64
    }

    #[test]
    fn tags_are_parsed_from_image_references() {
        let cases = [
            ("demo:bad", Some("bad")),
            ("registry.local:5000/team/demo:slow", Some("slow")),
            ("registry.local:5000/team/demo", None),
            ("demo:v2@sha256:abcd", Some("v2")),
            ("demo@sha256:abcd", None),
            ("demo:", None),
            ("", None),
        ];
        for (image, tag) in cases {
            assert_eq!(image_tag(image), tag, "{image}");
        }
    }

    #[test]
    fn profiles_follow_the_tag_only() {
        let cases = [
            ("demo:bad", Profile::Bad),
            ("example.com/demo:slow", Profile::Slow),
            ("demo:v1", Profile::Healthy),
            ("bad/demo:v1", Profile::Healthy),
            ("demo:badly", Profile::Healthy),
            ("registry:5000/demo", Profile::Healthy),
        ];
        for (image, expected) in cases {
            assert_eq!(profile(image), expected, "{image}");
        }
    }

    #[test]
    fn bad_answers_about_thirty_percent_500() {
        for seed in [1, 2, 3] {
            let outcomes = sample(Some("demo:bad"), seed);
            let rate = error_rate(&outcomes);
            assert!(
                (0.25..=0.35).contains(&rate),
                "seed {seed}: error rate {rate}"
            );
            assert!(outcomes.iter().all(|o| o.code == 200 || o.code == 500));
            assert!(quantile(&outcomes, 0.99) < Duration::from_millis(50));
        }
    }

    #[test]
    fn healthy_answers_200_fast() {
        let outcomes = sample(Some("demo:v1"), 7);
        assert!(outcomes.iter().all(|o| o.code == 200));
        assert!(outcomes.iter().all(
            |o| o.latency >= Duration::from_millis(10) && o.latency < Duration::from_millis(50)
        ));
    }

    #[test]
    fn slow_adds_about_half_a_second_at_p99() {
        let outcomes = sample(Some("demo:slow"), 11);
        assert!(outcomes.iter().all(|o| o.code == 200));
        let p99 = quantile(&outcomes, 0.99);
        let p50 = quantile(&outcomes, 0.50);
        assert!(
            p99 >= Duration::from_millis(500) && p99 < Duration::from_millis(700),
            "p99 {p99:?}"
        );
        assert!(p50 >= Duration::from_millis(300), "p50 {p50:?}");
        let healthy_p99 = quantile(&sample(Some("demo:v1"), 11), 0.99);
        assert!(p99 - healthy_p99 >= Duration::from_millis(450));
    }

    #[test]
    fn no_endpoints_answers_503() {
        let outcomes = sample(None, 5);
        assert!(outcomes.iter().all(|o| o.code == 503));
        assert!((error_rate(&outcomes) - 1.0).abs() < f64::EPSILON);
        assert!(quantile(&outcomes, 1.0) < Duration::from_millis(5));
    }

    #[test]
    fn same_seed_same_outcomes() {
        assert_eq!(sample(Some("demo:bad"), 42), sample(Some("demo:bad"), 42));
    }
}
