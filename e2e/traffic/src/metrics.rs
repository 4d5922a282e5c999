//! The Prometheus registry of emulated requests and the HTTP server exposing it.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::behaviour;

/// Histogram buckets (seconds), suited to 5 ms – 2 s.
pub const BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0,
];

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Errors of the metrics endpoint.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The registry could not be encoded.
    #[error("encoding metrics: {0}")]
    Encode(#[from] std::fmt::Error),
    /// The HTTP server failed.
    #[error("serving metrics: {0}")]
    Serve(#[from] std::io::Error),
}

/// Labels of `http_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Rollout namespace.
    pub namespace: String,
    /// Service the request went through (the Rollout's name without a router).
    pub service: String,
    /// Rollout name.
    pub rollout: String,
    /// Pod-template-hash that answered (empty when none did).
    pub revision: String,
    /// HTTP status code.
    pub code: String,
    /// Which traffic it was: `plain`, `header` (it carried the emulated header) or `mirror` (a
    /// copy made by a mirror route, its answer dropped).
    pub traffic: String,
}

/// Labels of `http_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DurationLabels {
    /// Rollout namespace.
    pub namespace: String,
    /// Service the request went through.
    pub service: String,
    /// Rollout name.
    pub rollout: String,
    /// Pod-template-hash that answered (empty when none did).
    pub revision: String,
}

/// One emulated request, as recorded.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Rollout namespace.
    pub namespace: &'a str,
    /// Service the request went through.
    pub service: &'a str,
    /// Rollout name.
    pub rollout: &'a str,
    /// Pod-template-hash that answered (empty when none did).
    pub revision: &'a str,
    /// HTTP status code.
    pub code: u16,
    /// Time the request took.
    pub latency: Duration,
    /// [`RequestLabels::traffic`].
    pub traffic: &'a str,
}

fn new_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The registry. Series are never removed, so counters only grow while the process runs.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<DurationLabels, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with `http_requests_total` and `http_request_duration_seconds`.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let durations =
            Family::<DurationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                new_histogram,
            );
        registry.register(
            "http_requests",
            "Emulated HTTP requests by Rollout, Service, revision and status code",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Emulated HTTP request latency by Rollout, Service and revision",
            durations.clone(),
        );
        Self {
            registry,
            requests,
            durations,
        }
    }

    /// Count one request and observe its latency.
    pub fn record(&self, request: &Request<'_>) {
        let durations = DurationLabels {
            namespace: request.namespace.to_owned(),
            service: request.service.to_owned(),
            rollout: request.rollout.to_owned(),
            revision: request.revision.to_owned(),
        };
        let requests = RequestLabels {
            namespace: durations.namespace.clone(),
            service: durations.service.clone(),
            rollout: durations.rollout.clone(),
            revision: durations.revision.clone(),
            code: request.code.to_string(),
            traffic: request.traffic.to_owned(),
        };
        // Every code a revision can answer gets its series at 0 with the first request: a series
        // that first appears with a value already above 0 loses that value to rate(), so a canary's
        // first errors would be missing from its error rate.
        for code in behaviour::ANSWER_CODES {
            let _ = self.requests.get_or_create(&RequestLabels {
                code: code.to_string(),
                ..requests.clone()
            });
        }
        self.requests.get_or_create(&requests).inc();
        self.durations
            .get_or_create(&durations)
            .observe(request.latency.as_secs_f64());
    }

    /// The registry in OpenMetrics text format.
    ///
    /// # Errors
    /// When encoding fails.
    pub fn encode(&self) -> Result<String, MetricsError> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

async fn metrics(State(metrics): State<Arc<Metrics>>) -> Response {
    match metrics.encode() {
        Ok(body) => ([(header::CONTENT_TYPE, OPENMETRICS)], body).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "encoding metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response()
        }
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// The HTTP routes: `/metrics` and `/healthz`.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(self::metrics))
        .route("/healthz", get(healthz))
        .with_state(metrics)
}

/// Serve the routes on `listener` until the process ends.
///
/// # Errors
/// When the server fails.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) -> Result<(), MetricsError> {
    axum::serve(listener, router(metrics)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn request(code: u16, latency_ms: u64) -> Request<'static> {
        Request {
            namespace: "apps",
            service: "demo-canary",
            rollout: "demo",
            revision: "bbb",
            code,
            latency: Duration::from_millis(latency_ms),
            traffic: "plain",
        }
    }

    #[test]
    fn counts_and_latencies_are_encoded() {
        let metrics = Metrics::new();
        metrics.record(&request(200, 20));
        metrics.record(&request(200, 30));
        metrics.record(&request(500, 600));
        let text = metrics.encode().unwrap();
        assert!(text.contains("# TYPE http_requests counter"), "{text}");
        assert!(
            text.contains(
                r#"http_requests_total{namespace="apps",service="demo-canary",rollout="demo",revision="bbb",code="200",traffic="plain"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"http_requests_total{namespace="apps",service="demo-canary",rollout="demo",revision="bbb",code="500",traffic="plain"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains("# TYPE http_request_duration_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains(
                r#"http_request_duration_seconds_count{namespace="apps",service="demo-canary",rollout="demo",revision="bbb"} 3"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"http_request_duration_seconds_bucket{le="0.05",namespace="apps",service="demo-canary",rollout="demo",revision="bbb"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"http_request_duration_seconds_bucket{le="0.75",namespace="apps",service="demo-canary",rollout="demo",revision="bbb"} 3"#
            ),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn a_revisions_error_series_exists_at_zero_from_its_first_request() {
        let metrics = Metrics::new();
        metrics.record(&request(200, 20));
        let text = metrics.encode().unwrap();
        for (code, value) in [("200", 1), ("500", 0), ("503", 0)] {
            let line = format!(
                r#"http_requests_total{{namespace="apps",service="demo-canary",rollout="demo",revision="bbb",code="{code}",traffic="plain"}} {value}"#
            );
            assert!(text.contains(&line), "{line} missing from:\n{text}");
        }
    }

    #[test]
    fn counters_only_grow() {
        let metrics = Metrics::new();
        let line = r#"http_requests_total{namespace="apps",service="demo-canary",rollout="demo",revision="bbb",code="200",traffic="plain"}"#;
        let value = |text: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(line))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        let mut last = 0;
        for _ in 0..5 {
            metrics.record(&request(200, 10));
            let now = value(&metrics.encode().unwrap());
            assert!(now > last);
            last = now;
        }
        assert_eq!(last, 5);
    }

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn serves_metrics_and_health() {
        let metrics = Arc::new(Metrics::new());
        metrics.record(&request(503, 2));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, metrics));

        let health = get(addr, "/healthz").await;
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        assert!(health.ends_with("ok\n"), "{health}");

        let scraped = get(addr, "/metrics").await;
        assert!(scraped.starts_with("HTTP/1.1 200"), "{scraped}");
        assert!(
            scraped
                .to_ascii_lowercase()
                .contains("content-type: application/openmetrics-text"),
            "{scraped}"
        );
        assert!(
            scraped.contains(r#"code="503",traffic="plain"} 1"#),
            "{scraped}"
        );

        let missing = get(addr, "/nope").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        server.abort();
    }
}
