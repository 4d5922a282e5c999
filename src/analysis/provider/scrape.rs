//! The scrape provider: reads a Prometheus exposition-format endpoint directly (`prometheus-parse`) and
//! takes the samples of one series name whose labels include the given ones. `result` is the list of
//! their values (`[]` when none match). Histogram and summary families are grouped by the parser under
//! their base name; select their `_sum` / `_count` series, which are plain numbers.

use std::collections::BTreeMap;

use futures::future::BoxFuture;

use super::{HttpClients, Measured, Provider, ProviderError, send, snippet, with_headers};
use crate::analysis::condition::MetricValue;
use crate::api::analysis::{Metric, ScrapeMetric};

pub const METADATA_URL: &str = "url";
pub const METADATA_SAMPLES: &str = "samples";

pub struct ScrapeProvider {
    http: HttpClients,
}

impl ScrapeProvider {
    pub fn new() -> Result<Self, ProviderError> {
        Ok(Self {
            http: HttpClients::new()?,
        })
    }

    async fn scrape(&self, scrape: &ScrapeMetric) -> Result<Measured, ProviderError> {
        let request = with_headers(
            self.http.get(scrape.insecure()).get(&scrape.url),
            &scrape.headers,
        );
        let (status, body) = send("scrape", &scrape.url, request, scrape.timeout()).await?;
        if !(200..300).contains(&status) {
            return Err(ProviderError::Status {
                url: scrape.url.clone(),
                status,
                body: snippet(&body, 200),
            });
        }
        select(scrape, &body)
    }
}

impl Provider for ScrapeProvider {
    fn measure<'a>(
        &'a self,
        _namespace: &'a str,
        metric: &'a Metric,
    ) -> BoxFuture<'a, Result<Measured, ProviderError>> {
        Box::pin(async move {
            let scrape =
                metric
                    .provider
                    .scrape
                    .as_ref()
                    .ok_or_else(|| ProviderError::NoProvider {
                        metric: metric.name.clone(),
                    })?;
            self.scrape(scrape).await
        })
    }
}

/// The values of the samples named `scrape.metric` whose labels include `scrape.labels`.
pub fn select(scrape: &ScrapeMetric, body: &str) -> Result<Measured, ProviderError> {
    let parsed =
        prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).map_err(|e| {
            ProviderError::Scrape {
                url: scrape.url.clone(),
                reason: e.to_string(),
            }
        })?;
    let values: Vec<f64> = parsed
        .samples
        .iter()
        .filter(|s| s.metric == scrape.metric)
        .filter(|s| {
            scrape
                .labels
                .iter()
                .all(|(k, v)| s.labels.get(k) == Some(v.as_str()))
        })
        .filter_map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some(v),
            prometheus_parse::Value::Histogram(_) | prometheus_parse::Value::Summary(_) => None,
        })
        .collect();
    let mut metadata = BTreeMap::new();
    metadata.insert(METADATA_URL.to_string(), scrape.url.clone());
    metadata.insert(METADATA_SAMPLES.to_string(), values.len().to_string());
    Ok(Measured {
        value: MetricValue::List(values),
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "\
# HELP http_requests_total Requests.
# TYPE http_requests_total counter
http_requests_total{service=\"web\",code=\"200\"} 90
http_requests_total{service=\"web\",code=\"500\"} 10
http_requests_total{service=\"api\",code=\"200\"} 5
# TYPE queue_depth gauge
queue_depth 3.5
# TYPE latency_seconds histogram
latency_seconds_bucket{le=\"0.1\"} 1
latency_seconds_bucket{le=\"+Inf\"} 2
latency_seconds_sum 0.3
latency_seconds_count 2
";

    fn scrape(metric: &str, labels: &[(&str, &str)]) -> ScrapeMetric {
        ScrapeMetric {
            url: "http://127.0.0.1:1/metrics".into(),
            metric: metric.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..ScrapeMetric::default()
        }
    }

    #[test]
    fn selects_series_by_name_and_labels() {
        let all = select(&scrape("http_requests_total", &[("service", "web")]), BODY).unwrap();
        assert_eq!(all.value, MetricValue::List(vec![90.0, 10.0]));
        assert_eq!(all.metadata[METADATA_SAMPLES], "2");
        let one = select(
            &scrape(
                "http_requests_total",
                &[("service", "web"), ("code", "500")],
            ),
            BODY,
        )
        .unwrap();
        assert_eq!(one.value, MetricValue::List(vec![10.0]));
        let gauge = select(&scrape("queue_depth", &[]), BODY).unwrap();
        assert_eq!(gauge.value, MetricValue::List(vec![3.5]));
        let count = select(&scrape("latency_seconds_count", &[]), BODY).unwrap();
        assert_eq!(count.value, MetricValue::List(vec![2.0]));
        let none = select(&scrape("nope", &[]), BODY).unwrap();
        assert_eq!(none.value, MetricValue::List(vec![]));
    }

    #[tokio::test]
    async fn reads_a_live_endpoint_and_reports_http_errors() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for status in ["200 OK", "503 Service Unavailable"] {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 2048];
                let _ = socket.read(&mut buf).await;
                let body = if status.starts_with("200") {
                    BODY
                } else {
                    "down"
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                socket.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        let provider = ScrapeProvider::new().unwrap();
        let mut s = scrape("queue_depth", &[]);
        s.url = format!("http://{addr}/metrics");
        let metric = Metric {
            name: "q".into(),
            provider: crate::api::analysis::MetricProvider {
                scrape: Some(s),
                ..Default::default()
            },
            ..Metric::default()
        };
        let ok = provider.measure("ns", &metric).await.unwrap();
        assert_eq!(ok.value, MetricValue::List(vec![3.5]));
        let err = provider.measure("ns", &metric).await.unwrap_err();
        assert!(err.to_string().contains("HTTP 503"), "{err}");
    }

    fn cases() -> proptest::prelude::ProptestConfig {
        crate::proptest_config()
    }

    proptest::proptest! {
        #![proptest_config(cases())]

        #[test]
        fn any_exposition_text_gives_values_or_an_error(
            body in "(\\PC|[{}=\",# \n]|queue_depth|[0-9]|e|\\+Inf|NaN|# TYPE queue_depth (gauge|histogram|summary)\n){0,60}"
        ) {
            if let Ok(measured) = select(&scrape("queue_depth", &[]), &body) {
                let MetricValue::List(values) = measured.value else {
                    return Err(proptest::test_runner::TestCaseError::fail("a list"));
                };
                proptest::prop_assert_eq!(measured.metadata[METADATA_SAMPLES].clone(), values.len().to_string());
            }
        }
    }
}
