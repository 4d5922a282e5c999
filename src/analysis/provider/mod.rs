//! Measurement providers behind one trait: [`prometheus`] (PromQL over the HTTP API) and [`scrape`]
//! (a Prometheus exposition-format endpoint read directly).

pub mod prometheus;
pub mod scrape;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;

use super::condition::MetricValue;
use crate::api::analysis::{HttpHeader, Metric};

/// What a provider measured, with data about how (e.g. the resolved query, Prometheus warnings).
#[derive(Clone, Debug, PartialEq)]
pub struct Measured {
    pub value: MetricValue,
    pub metadata: BTreeMap<String, String>,
}

/// Why a measurement could not be taken: the measurement is an Error (never Successful).
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("metric {metric:?} has no provider")]
    NoProvider { metric: String },
    #[error(
        "no Prometheus address: set provider.prometheus.address or the controller's --prometheus-url"
    )]
    NoAddress,
    #[error("{what} {url}: {source}")]
    Http {
        what: &'static str,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{what} {url} timed out after {timeout:?}")]
    Timeout {
        what: &'static str,
        url: String,
        timeout: Duration,
    },
    #[error("{url} answered HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("Prometheus {url}: query failed: {error_type}: {error}")]
    Query {
        url: String,
        error_type: String,
        error: String,
    },
    #[error("Prometheus {url}: unexpected response: {reason}")]
    Response { url: String, reason: String },
    #[error("Secret {namespace}/{name}: {reason}")]
    Secret {
        namespace: String,
        name: String,
        reason: String,
    },
    #[error("{field}: {reason}")]
    Spec { field: &'static str, reason: String },
    #[error("scrape {url}: {reason}")]
    Scrape { url: String, reason: String },
}

/// A source of measurements. `metric` has its `{{args.x}}` already resolved.
pub trait Provider: Send + Sync {
    fn measure<'a>(
        &'a self,
        namespace: &'a str,
        metric: &'a Metric,
    ) -> BoxFuture<'a, Result<Measured, ProviderError>>;
}

/// The providers of the controller, dispatching on the metric's provider.
pub struct Providers {
    pub prometheus: prometheus::PrometheusProvider,
    pub scrape: scrape::ScrapeProvider,
}

impl Providers {
    /// Providers with the default Prometheus address (`--prometheus-url`) and, for Secrets, `client`.
    pub fn new(
        default_prometheus_url: Option<String>,
        client: Option<kube::Client>,
    ) -> Result<Self, ProviderError> {
        Ok(Self {
            prometheus: prometheus::PrometheusProvider::new(default_prometheus_url, client)?,
            scrape: scrape::ScrapeProvider::new()?,
        })
    }
}

impl Provider for Providers {
    fn measure<'a>(
        &'a self,
        namespace: &'a str,
        metric: &'a Metric,
    ) -> BoxFuture<'a, Result<Measured, ProviderError>> {
        if metric.provider.prometheus.is_some() {
            self.prometheus.measure(namespace, metric)
        } else if metric.provider.scrape.is_some() {
            self.scrape.measure(namespace, metric)
        } else {
            Box::pin(async move {
                Err(ProviderError::NoProvider {
                    metric: metric.name.clone(),
                })
            })
        }
    }
}

/// Two HTTP clients: one verifying certificates, one for `insecure: true`.
#[derive(Clone)]
pub(crate) struct HttpClients {
    secure: reqwest::Client,
    insecure: reqwest::Client,
}

impl HttpClients {
    pub(crate) fn new() -> Result<Self, ProviderError> {
        crate::tls::install_crypto_provider();
        let build = |insecure: bool| {
            reqwest::Client::builder()
                .tls_danger_accept_invalid_certs(insecure)
                .build()
                .map_err(|source| ProviderError::Http {
                    what: "building the HTTP client for",
                    url: String::new(),
                    source,
                })
        };
        Ok(Self {
            secure: build(false)?,
            insecure: build(true)?,
        })
    }

    pub(crate) fn get(&self, insecure: bool) -> &reqwest::Client {
        if insecure {
            &self.insecure
        } else {
            &self.secure
        }
    }
}

pub(crate) fn with_headers(
    mut request: reqwest::RequestBuilder,
    headers: &[HttpHeader],
) -> reqwest::RequestBuilder {
    for h in headers {
        request = request.header(h.key.as_str(), h.value.as_str());
    }
    request
}

/// Sends `request` with `timeout`, mapping a timeout or a connection failure to a clear error.
pub(crate) async fn send(
    what: &'static str,
    url: &str,
    request: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<(u16, String), ProviderError> {
    let fut = async {
        let response = request.timeout(timeout).send().await?;
        let status = response.status().as_u16();
        let body = response.text().await?;
        Ok::<_, reqwest::Error>((status, body))
    };
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => Err(ProviderError::Timeout {
            what,
            url: url.to_string(),
            timeout,
        }),
        Ok(Err(source)) if source.is_timeout() => Err(ProviderError::Timeout {
            what,
            url: url.to_string(),
            timeout,
        }),
        Ok(Err(source)) => Err(ProviderError::Http {
            what,
            url: url.to_string(),
            source: source.without_url(),
        }),
        Ok(Ok(answer)) => Ok(answer),
    }
}

/// The first `max` characters of `s`, on one line.
pub(crate) fn snippet(s: &str, max: usize) -> String {
    let one_line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &one_line[..i]),
        None => one_line,
    }
}
