//! `sluice_git_requests_total{type}` and `sluice_git_request_duration_seconds{type}`: every network
//! request Sluice makes to a Git server — the sync cache's fetches and the revert loop's fetches and
//! pushes — counted and timed where it is made, so the figures cannot drift from what happened.
//! `type` is `fetch` or `push`: a bounded label set, whatever the number of repositories.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::metrics::Metrics;

/// The kinds of network request made to a Git server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GitRequest {
    Fetch,
    Push,
}

impl GitRequest {
    fn label(self) -> &'static str {
        match self {
            Self::Fetch => "fetch",
            Self::Push => "push",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabels {
    r#type: &'static str,
}

type DurationFamily = Family<TypeLabels, Histogram, fn() -> Histogram>;

/// Git request counters and durations, cheap to clone. `Default` gives unregistered families
/// (tests and tools that expose no metrics).
#[derive(Clone, Debug)]
pub struct GitRequestMetrics {
    requests: Family<TypeLabels, Counter>,
    durations: DurationFamily,
}

/// 5 ms to about 50 s: a local fetch takes milliseconds, a large clone over the internet tens of
/// seconds.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.5, 11))
}

impl Default for GitRequestMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            durations: Family::new_with_constructor(duration_histogram),
        }
    }
}

impl GitRequestMetrics {
    /// Registers both families on `metrics`; register once per process and share the clones.
    pub fn register(metrics: &Metrics) -> Self {
        let me = Self::default();
        metrics.register(|r| {
            r.register(
                "git_requests",
                "Network requests to Git servers by type (fetch, push)",
                me.requests.clone(),
            );
            r.register(
                "git_request_duration_seconds",
                "Duration of network requests to Git servers by type (fetch, push)",
                me.durations.clone(),
            );
        });
        me
    }

    /// Runs `request` (blocking git2 work), counting and timing it whether it succeeds or not.
    pub fn record<T>(&self, kind: GitRequest, request: impl FnOnce() -> T) -> T {
        let labels = TypeLabels {
            r#type: kind.label(),
        };
        let started = Instant::now();
        let result = request();
        // Counted once done, next to its duration, so that the two families agree in a scrape.
        self.requests.get_or_create(&labels).inc();
        self.durations
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_and_timed_by_type() {
        let metrics = Metrics::new();
        let git = GitRequestMetrics::register(&metrics);
        assert_eq!(git.record(GitRequest::Fetch, || 7), 7);
        git.record(GitRequest::Fetch, || ());
        let failed: Result<(), &str> = git.record(GitRequest::Push, || Err("refused"));
        assert!(failed.is_err());

        let text = metrics.encode().unwrap();
        for line in [
            r#"sluice_git_requests_total{type="fetch"} 2"#,
            r#"sluice_git_requests_total{type="push"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(
            text.contains(r#"sluice_git_request_duration_seconds_count{type="fetch"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sluice_git_request_duration_seconds_count{type="push"} 1"#),
            "{text}"
        );
    }
}
