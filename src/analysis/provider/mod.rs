//! Measurement providers behind one trait: [`prometheus`] (PromQL over the HTTP API), [`scrape`]
//! (a Prometheus exposition-format endpoint read directly) and [`web`] (Argo's HTTP/JSON provider).
//! [`job`] (Argo's Job provider) is not behind the trait: its measurements span reconciles, so the
//! controller starts, resumes and terminates them itself.

pub mod job;
pub mod prometheus;
pub mod scrape;
#[cfg(test)]
mod test_server;
pub mod web;

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
    #[error("{what} {url}: the answer is larger than {limit} bytes; narrow the query")]
    TooLarge {
        what: &'static str,
        url: String,
        limit: usize,
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
    #[error("credentials: {0}")]
    Credentials(#[source] crate::analysis::secrets::SecretError),
    #[error("{field}: {reason}")]
    Spec { field: &'static str, reason: String },
    #[error("scrape {url}: {reason}")]
    Scrape { url: String, reason: String },
    #[error(transparent)]
    Web(#[from] web::WebError),
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
    pub web: web::WebProvider,
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
            web: web::WebProvider::new()?,
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
        } else if metric.provider.web.is_some() {
            self.web.measure(namespace, metric)
        } else if metric.provider.job.is_some() {
            Box::pin(async move {
                Err(ProviderError::Spec {
                    field: "provider.job",
                    reason: "a Job measurement is started by the analysis controller, not measured"
                        .into(),
                })
            })
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

/// The largest response body a provider reads (a Prometheus answer, a scraped page); a larger
/// one is an Error measurement, and reading stops there.
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// Why reading an answer stopped.
enum ReadError {
    Http(reqwest::Error),
    TooLarge,
}

impl From<reqwest::Error> for ReadError {
    fn from(e: reqwest::Error) -> Self {
        ReadError::Http(e)
    }
}

/// The body of `response`, read chunk by chunk up to `limit` bytes (also when the server sends no
/// or a false `Content-Length`); not UTF-8 bytes are replaced.
async fn read_bounded(mut response: reqwest::Response, limit: usize) -> Result<String, ReadError> {
    if response
        .content_length()
        .is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX))
    {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Sends `request` with `timeout` (for the whole exchange, body included), mapping a timeout, a
/// connection failure or an oversized body to a clear error.
pub(crate) async fn send(
    what: &'static str,
    url: &str,
    request: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<(u16, String), ProviderError> {
    send_bounded(what, url, request, timeout, MAX_RESPONSE_BYTES).await
}

/// [`send`] with a byte cap of the caller's.
pub(crate) async fn send_bounded(
    what: &'static str,
    url: &str,
    request: reqwest::RequestBuilder,
    timeout: Duration,
    limit: usize,
) -> Result<(u16, String), ProviderError> {
    let fut = async {
        let response = request.timeout(timeout).send().await?;
        let status = response.status().as_u16();
        let body = read_bounded(response, limit).await?;
        Ok::<_, ReadError>((status, body))
    };
    let timed_out = || ProviderError::Timeout {
        what,
        url: url.to_string(),
        timeout,
    };
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => Err(timed_out()),
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(ReadError::TooLarge)) => Err(ProviderError::TooLarge {
            what,
            url: url.to_string(),
            limit,
        }),
        Ok(Err(ReadError::Http(source))) if source.is_timeout() => Err(timed_out()),
        Ok(Err(ReadError::Http(source))) => Err(ProviderError::Http {
            what,
            url: url.to_string(),
            source: source.without_url(),
        }),
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A 127.0.0.1 server answering every connection with `head` and then `body_chunks` chunks of
    /// `chunk` bytes, `pause` apart, and closing.
    async fn server(
        head: &'static str,
        chunk: usize,
        body_chunks: usize,
        pause: Duration,
    ) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = socket.read(&mut request).await;
                    let _ = socket.write_all(head.as_bytes()).await;
                    for _ in 0..body_chunks {
                        if socket.write_all(&vec![b'x'; chunk]).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(pause).await;
                    }
                });
            }
        });
        format!("http://{addr}/metrics")
    }

    async fn get(
        url: &str,
        timeout: Duration,
        limit: usize,
    ) -> Result<(u16, String), ProviderError> {
        let client = HttpClients::new().unwrap();
        send_bounded("scrape", url, client.get(false).get(url), timeout, limit).await
    }

    #[tokio::test]
    async fn an_endless_body_stops_at_the_byte_cap() {
        // No Content-Length: the cap is found while reading.
        let url = server(
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
            4096,
            1000,
            Duration::ZERO,
        )
        .await;
        let err = get(&url, Duration::from_secs(10), 64 << 10)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ProviderError::TooLarge { limit, .. } if limit == 64 << 10),
            "{err}"
        );
        assert!(err.to_string().contains("larger than 65536 bytes"), "{err}");
        // A declared length over the cap is refused before reading.
        let url = server(
            "HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\n",
            1,
            1,
            Duration::ZERO,
        )
        .await;
        let err = get(&url, Duration::from_secs(10), 64 << 10)
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::TooLarge { .. }), "{err}");
        // Within the cap, the body is read whole.
        let url = server(
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
            1000,
            3,
            Duration::ZERO,
        )
        .await;
        let (status, body) = get(&url, Duration::from_secs(10), 64 << 10).await.unwrap();
        assert_eq!((status, body.len()), (200, 3000));
    }

    #[tokio::test]
    async fn a_body_dripping_slowly_times_out_as_a_whole() {
        let url = server(
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
            1,
            100,
            Duration::from_millis(100),
        )
        .await;
        let started = std::time::Instant::now();
        let err = get(&url, Duration::from_secs(1), 64 << 10)
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
