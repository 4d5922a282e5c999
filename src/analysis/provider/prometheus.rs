//! The Prometheus provider: PromQL over the HTTP API (`/api/v1/query`, `/api/v1/query_range` for a
//! `rangeQuery`). `result` is a number for a scalar, a list for a vector (`[]` when empty) and a flat
//! list for a matrix (A8). Unreachable or timing out [30 s] is an error, never a success (A11).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::analysis::secrets;
use futures::future::BoxFuture;
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde_json::Value;

use super::{HttpClients, Measured, Provider, ProviderError, send, snippet, with_headers};
use crate::analysis::condition::MetricValue;
use crate::api::analysis::{Metric, PrometheusMetric, PrometheusRangeQuery, SecretKeyRef};
use crate::duration::parse_duration;

/// Metadata keys of a Prometheus measurement.
pub const METADATA_QUERY: &str = "query";
pub const METADATA_RESULT_TYPE: &str = "resultType";
pub const METADATA_WARNINGS: &str = "warnings";
pub const METADATA_ADDRESS: &str = "address";

/// Range query defaults when `rangeQuery` leaves a field out: the last 5 minutes in 1-minute steps.
const DEFAULT_RANGE: Duration = Duration::from_secs(300);
const DEFAULT_STEP: Duration = Duration::from_secs(60);
/// Bounds of `rangeQuery.step`: finer or coarser steps are mistakes (Prometheus refuses more than
/// 11,000 points per series anyway).
const MIN_STEP: Duration = Duration::from_millis(1);
const MAX_STEP: Duration = Duration::from_secs(366 * 24 * 3600);

pub struct PrometheusProvider {
    default_address: Option<String>,
    client: Option<kube::Client>,
    http: HttpClients,
}

impl PrometheusProvider {
    /// `default_address` serves templates that give none; `client` reads auth Secrets.
    pub fn new(
        default_address: Option<String>,
        client: Option<kube::Client>,
    ) -> Result<Self, ProviderError> {
        Ok(Self {
            default_address: default_address.filter(|a| !a.trim().is_empty()),
            client,
            http: HttpClients::new()?,
        })
    }

    /// A credential from a Secret labelled for analysis (see [`crate::analysis::secrets`]).
    async fn secret(&self, namespace: &str, r: &SecretKeyRef) -> Result<String, ProviderError> {
        let client = self.client.as_ref().ok_or_else(|| ProviderError::Secret {
            namespace: namespace.to_string(),
            name: r.name.clone(),
            reason: "no Kubernetes client to read it".into(),
        })?;
        secrets::read(client, namespace, &r.name, &r.key)
            .await
            .map_err(ProviderError::Credentials)
    }

    async fn query(
        &self,
        namespace: &str,
        prom: &PrometheusMetric,
    ) -> Result<Measured, ProviderError> {
        let address = prom
            .address
            .as_deref()
            .filter(|a| !a.trim().is_empty())
            .or(self.default_address.as_deref())
            .ok_or(ProviderError::NoAddress)?
            .trim_end_matches('/');
        let (url, params) = match &prom.range_query {
            None => (
                format!("{address}/api/v1/query"),
                vec![("query", prom.query.clone())],
            ),
            Some(range) => {
                let (start, end, step) = range_params(range, Timestamp::now())?;
                (
                    format!("{address}/api/v1/query_range"),
                    vec![
                        ("query", prom.query.clone()),
                        ("start", start),
                        ("end", end),
                        ("step", step),
                    ],
                )
            }
        };
        let mut request = self.http.get(prom.insecure()).get(&url).query(&params);
        request = with_headers(request, &prom.headers);
        if let Some(auth) = &prom.authentication {
            if let Some(basic) = &auth.basic_auth {
                let password = match (&basic.password, &basic.password_secret_ref) {
                    (Some(password), _) => password.clone(),
                    (None, Some(secret)) => self.secret(namespace, secret).await?,
                    (None, None) => String::new(),
                };
                request = request.basic_auth(&basic.username, Some(password));
            } else if let Some(bearer) = &auth.bearer {
                let token = self.secret(namespace, &bearer.token_secret_ref).await?;
                request = request.bearer_auth(token);
            } else if let Some(oauth2) = super::web::oauth2_request(
                auth.oauth2.as_ref(),
                "provider.prometheus.authentication.oauth2",
            )? {
                let client = self.http.get(prom.insecure());
                let token = super::web::fetch_token(client, &oauth2, prom.timeout()).await?;
                request = request.header(reqwest::header::AUTHORIZATION, token);
            }
        }
        let (status, body) = send("Prometheus", &url, request, prom.timeout()).await?;
        let mut measured = parse_response(&url, status, &body)?;
        measured
            .metadata
            .insert(METADATA_QUERY.into(), prom.query.clone());
        measured
            .metadata
            .insert(METADATA_ADDRESS.into(), address.to_string());
        Ok(measured)
    }
}

impl Provider for PrometheusProvider {
    fn measure<'a>(
        &'a self,
        namespace: &'a str,
        metric: &'a Metric,
    ) -> BoxFuture<'a, Result<Measured, ProviderError>> {
        Box::pin(async move {
            let prom =
                metric
                    .provider
                    .prometheus
                    .as_ref()
                    .ok_or_else(|| ProviderError::NoProvider {
                        metric: metric.name.clone(),
                    })?;
            self.query(namespace, prom).await
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiData {
    result_type: String,
    result: Value,
}

/// Turns an HTTP answer of the Prometheus API into a value (A8) with `resultType` and `warnings` in the
/// metadata.
pub fn parse_response(url: &str, status: u16, body: &str) -> Result<Measured, ProviderError> {
    let response: ApiResponse = match serde_json::from_str(body) {
        Ok(r) => r,
        Err(_) if !(200..300).contains(&status) => {
            return Err(ProviderError::Status {
                url: url.to_string(),
                status,
                body: snippet(body, 200),
            });
        }
        Err(e) => {
            return Err(ProviderError::Response {
                url: url.to_string(),
                reason: format!("not JSON: {e}"),
            });
        }
    };
    if response.status != "success" {
        return Err(ProviderError::Query {
            url: url.to_string(),
            error_type: response
                .error_type
                .unwrap_or_else(|| format!("HTTP {status}")),
            error: response.error.unwrap_or_default(),
        });
    }
    let bad = |reason: String| ProviderError::Response {
        url: url.to_string(),
        reason,
    };
    let data = response.data.ok_or_else(|| bad("no data".into()))?;
    let value = match data.result_type.as_str() {
        "scalar" => MetricValue::Scalar(sample(&data.result).map_err(bad)?),
        "vector" => MetricValue::List(
            as_array(&data.result)
                .map_err(bad)?
                .iter()
                .map(|s| sample(&s["value"]))
                .collect::<Result<_, _>>()
                .map_err(bad)?,
        ),
        "matrix" => {
            let mut values = Vec::new();
            for series in as_array(&data.result).map_err(bad)? {
                for s in as_array(&series["values"]).map_err(bad)? {
                    values.push(sample(s).map_err(bad)?);
                }
            }
            MetricValue::List(values)
        }
        other => return Err(bad(format!("result type {other:?} is not a number"))),
    };
    let mut metadata = BTreeMap::new();
    metadata.insert(METADATA_RESULT_TYPE.to_string(), data.result_type);
    if !response.warnings.is_empty() {
        metadata.insert(METADATA_WARNINGS.to_string(), response.warnings.join("; "));
    }
    Ok(Measured { value, metadata })
}

fn as_array(v: &Value) -> Result<&Vec<Value>, String> {
    v.as_array()
        .ok_or_else(|| format!("expected a list, got {v}"))
}

/// A `[timestamp, "value"]` pair's value; Prometheus writes `NaN`, `+Inf`, `-Inf` as such.
fn sample(pair: &Value) -> Result<f64, String> {
    let text = pair
        .get(1)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("expected [time, \"value\"], got {pair}"))?;
    text.parse::<f64>()
        .map_err(|_| format!("sample value {text:?} is not a number"))
}

/// `start`, `end` and `step` of a range query. `start`/`end` accept `now()`, `now() - duration("5m")`
/// (Argo's forms, which Argo evaluates with expr), RFC 3339 times and Unix seconds; `step` a duration
/// (`30s`, `1m`) or seconds. Defaults: `end` now, `start` 5 minutes before `end`, `step` 1 minute.
pub fn range_params(
    range: &PrometheusRangeQuery,
    now: Timestamp,
) -> Result<(String, String, String), ProviderError> {
    let end = match range.end.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(e) => time_expr("rangeQuery.end", e, now)?,
        None => now,
    };
    let start = match range.start.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(s) => time_expr("rangeQuery.start", s, now)?,
        None => end
            .checked_sub(SignedDuration::from_secs(DEFAULT_RANGE.as_secs() as i64))
            .map_err(|e| ProviderError::Spec {
                field: "rangeQuery.start",
                reason: e.to_string(),
            })?,
    };
    let step = match range
        .step
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => DEFAULT_STEP,
        Some(s) => step_duration(s)?,
    };
    let secs = |t: Timestamp| format!("{:.3}", t.as_millisecond() as f64 / 1000.0);
    Ok((secs(start), secs(end), format!("{}", step.as_secs_f64())))
}

/// `rangeQuery.step`: seconds (`15`, `0.5`) or a duration (`30s`), within
/// [`MIN_STEP`]..=[`MAX_STEP`]. Infinite, NaN, negative or huge numbers are refused.
fn step_duration(text: &str) -> Result<Duration, ProviderError> {
    let err = |reason: String| ProviderError::Spec {
        field: "rangeQuery.step",
        reason,
    };
    let step = match text.parse::<f64>() {
        Ok(secs) => Duration::try_from_secs_f64(secs).map_err(|_| {
            err(format!(
                "{text:?} seconds is negative, infinite or too large"
            ))
        })?,
        Err(_) => parse_duration(text).map_err(|e| err(e.to_string()))?,
    };
    if !(MIN_STEP..=MAX_STEP).contains(&step) {
        return Err(err(format!(
            "{text:?} is out of range: give between {}ms and {}s",
            MIN_STEP.as_millis(),
            MAX_STEP.as_secs()
        )));
    }
    Ok(step)
}

fn time_expr(field: &'static str, text: &str, now: Timestamp) -> Result<Timestamp, ProviderError> {
    let err = |reason: String| ProviderError::Spec { field, reason };
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if let Some(rest) = compact.strip_prefix("now()") {
        if rest.is_empty() {
            return Ok(now);
        }
        // By character, not by byte: the input may start with any character.
        let (sign, rest) = if let Some(r) = rest.strip_prefix('-') {
            (-1, r)
        } else if let Some(r) = rest.strip_prefix('+') {
            (1, r)
        } else {
            return Err(err(format!("unsupported time expression {text:?}")));
        };
        let d = rest
            .strip_prefix("duration(")
            .and_then(|r| r.strip_suffix(')'))
            .map(|r| r.trim_matches(|c| c == '"' || c == '\''))
            .ok_or_else(|| err(format!("unsupported time expression {text:?}")))?;
        let d = parse_duration(d).map_err(|e| err(e.to_string()))?;
        let d = SignedDuration::try_from(d).map_err(|e| err(e.to_string()))?;
        return now
            .checked_add(if sign < 0 { -d } else { d })
            .map_err(|e| err(e.to_string()));
    }
    if let Ok(t) = compact.parse::<Timestamp>() {
        return Ok(t);
    }
    if let Ok(secs) = compact.parse::<f64>()
        && secs.is_finite()
    {
        return Timestamp::from_millisecond((secs * 1000.0) as i64).map_err(|e| err(e.to_string()));
    }
    Err(err(format!(
        "unsupported time expression {text:?} (use now(), now() - duration(\"5m\"), RFC 3339 or Unix seconds)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(body: Value) -> Result<Measured, ProviderError> {
        parse_response("http://p/api/v1/query", 200, &body.to_string())
    }

    #[test]
    fn a8_scalar_vector_matrix_and_empty() {
        let scalar = parse(
            json!({"status": "success", "data": {"resultType": "scalar", "result": [1.5, "0.97"]}}),
        )
        .unwrap();
        assert_eq!(scalar.value, MetricValue::Scalar(0.97));
        assert_eq!(scalar.metadata[METADATA_RESULT_TYPE], "scalar");

        let vector = parse(
            json!({"status": "success", "data": {"resultType": "vector", "result": [
                {"metric": {"a": "1"}, "value": [1.5, "0.5"]},
                {"metric": {"a": "2"}, "value": [1.5, "NaN"]},
                {"metric": {"a": "3"}, "value": [1.5, "+Inf"]}
            ]}}),
        )
        .unwrap();
        let MetricValue::List(v) = vector.value else {
            panic!()
        };
        assert_eq!(v[0], 0.5);
        assert!(v[1].is_nan());
        assert_eq!(v[2], f64::INFINITY);

        let empty =
            parse(json!({"status": "success", "data": {"resultType": "vector", "result": []}}))
                .unwrap();
        assert_eq!(empty.value, MetricValue::List(vec![]));
        assert_eq!(empty.value.to_string(), "[]");

        let matrix = parse(
            json!({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {}, "values": [[1, "1"], [2, "2"]]},
            {"metric": {}, "values": [[1, "3"]]}
        ]}, "warnings": ["w1", "w2"]}),
        )
        .unwrap();
        assert_eq!(matrix.value, MetricValue::List(vec![1.0, 2.0, 3.0]));
        assert_eq!(matrix.metadata[METADATA_WARNINGS], "w1; w2");
    }

    #[test]
    fn errors_are_errors() {
        let bad_query = parse_response(
            "u",
            400,
            r#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#,
        )
        .unwrap_err();
        assert_eq!(
            bad_query.to_string(),
            "Prometheus u: query failed: bad_data: parse error at char 3"
        );
        let html = parse_response("u", 502, "<html>bad gateway</html>").unwrap_err();
        assert_eq!(
            html.to_string(),
            "u answered HTTP 502: <html>bad gateway</html>"
        );
        assert!(
            parse(
                json!({"status": "success", "data": {"resultType": "string", "result": [1, "x"]}})
            )
            .is_err()
        );
        assert!(parse(json!({"status": "success", "data": {"resultType": "vector", "result": [{"value": [1, "x"]}]}})).is_err());
    }

    #[test]
    fn range_query_params() {
        let now = Timestamp::from_second(10_000).unwrap();
        let r = PrometheusRangeQuery {
            start: Some("now() - duration(\"10m\")".into()),
            end: Some("now()".into()),
            step: Some("30s".into()),
        };
        assert_eq!(
            range_params(&r, now).unwrap(),
            ("9400.000".into(), "10000.000".into(), "30".into())
        );
        let defaults = range_params(&PrometheusRangeQuery::default(), now).unwrap();
        assert_eq!(
            defaults,
            ("9700.000".into(), "10000.000".into(), "60".into())
        );
        let bad = PrometheusRangeQuery {
            start: Some("yesterday".into()),
            ..PrometheusRangeQuery::default()
        };
        assert!(range_params(&bad, now).is_err());
        let rfc = PrometheusRangeQuery {
            start: Some("1970-01-01T02:00:00Z".into()),
            end: Some("9000".into()),
            step: Some("15".into()),
        };
        assert_eq!(
            range_params(&rfc, now).unwrap(),
            ("7200.000".into(), "9000.000".into(), "15".into())
        );
    }

    #[test]
    fn hostile_range_queries_are_spec_errors_not_panics() {
        let now = Timestamp::from_second(10_000).unwrap();
        let with = |start: Option<&str>, step: Option<&str>| PrometheusRangeQuery {
            start: start.map(str::to_string),
            end: None,
            step: step.map(str::to_string),
        };
        for start in [
            "now()é",
            "now()ééé",
            "now()-",
            "now()+duration(\"1x\")",
            "NaN",
            "inf",
        ] {
            let err = range_params(&with(Some(start), None), now).unwrap_err();
            assert!(
                matches!(
                    err,
                    ProviderError::Spec {
                        field: "rangeQuery.start",
                        ..
                    }
                ),
                "{start}: {err}"
            );
        }
        for step in [
            "inf",
            "1e30",
            "-1",
            "NaN",
            "0",
            "0s",
            "1e-9",
            "400d",
            "99999999999h",
        ] {
            let err = range_params(&with(None, Some(step)), now).unwrap_err();
            assert!(
                matches!(
                    err,
                    ProviderError::Spec {
                        field: "rangeQuery.step",
                        ..
                    }
                ),
                "{step}: {err}"
            );
        }
        assert_eq!(
            range_params(&with(Some("now()+duration('1m')"), Some("0.5")), now).unwrap(),
            ("10060.000".into(), "10000.000".into(), "0.5".into())
        );
    }

    /// A11: a closed port on 127.0.0.1 is an error, quickly.
    #[tokio::test]
    async fn a11_unreachable_is_an_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let provider =
            PrometheusProvider::new(Some(format!("http://127.0.0.1:{port}")), None).unwrap();
        let metric: Metric = serde_json::from_value(json!({
            "name": "m", "provider": {"prometheus": {"query": "up"}}
        }))
        .unwrap();
        let err = provider.measure("ns", &metric).await.unwrap_err();
        assert!(matches!(err, ProviderError::Http { .. }), "{err}");
        let none = PrometheusProvider::new(None, None).unwrap();
        assert!(matches!(
            none.measure("ns", &metric).await.unwrap_err(),
            ProviderError::NoAddress
        ));
    }

    /// A11: a server that never answers times out after `timeout`.
    #[tokio::test]
    async fn a11_timeout_is_an_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let provider = PrometheusProvider::new(None, None).unwrap();
        let metric: Metric = serde_json::from_value(json!({
            "name": "m", "provider": {"prometheus": {"query": "up", "timeout": 1, "address": format!("http://{addr}")}}
        }))
        .unwrap();
        let started = std::time::Instant::now();
        let err = provider.measure("ns", &metric).await.unwrap_err();
        assert!(matches!(err, ProviderError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// Argo's `authentication.oauth2`: a client-credentials token fetched first, then sent with
    /// the query.
    #[tokio::test]
    async fn oauth2_client_credentials_token_is_sent_with_the_query() {
        use crate::analysis::provider::test_server::{Reply, serve};
        let (base, mut requests) = serve(vec![
            Reply::Json(200, r#"{"access_token": "tok-123", "token_type": "bearer"}"#),
            Reply::Json(
                200,
                r#"{"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "0.99"]}]}}"#,
            ),
        ])
        .await;
        let provider = PrometheusProvider::new(None, None).unwrap();
        let metric: Metric = serde_json::from_value(json!({
            "name": "m", "provider": {"prometheus": {"query": "up", "address": base,
                "authentication": {"oauth2": {"tokenUrl": format!("{base}/token"),
                    "clientId": "sluice", "clientSecret": "s3cret", "scopes": ["read"]}}}}
        }))
        .unwrap();
        let measured = provider.measure("ns", &metric).await.unwrap();
        assert_eq!(
            measured.value,
            crate::analysis::condition::MetricValue::List(vec![0.99])
        );
        let token_request = requests.recv().await.unwrap();
        assert!(token_request.starts_with("POST /token"), "{token_request}");
        assert!(
            token_request.contains("grant_type=client_credentials"),
            "{token_request}"
        );
        let query = requests.recv().await.unwrap();
        assert!(query.starts_with("GET /api/v1/query"), "{query}");
        assert!(
            query
                .to_lowercase()
                .contains("authorization: bearer tok-123"),
            "{query}"
        );

        let missing: Metric = serde_json::from_value(json!({
            "name": "m", "provider": {"prometheus": {"query": "up", "address": base,
                "authentication": {"oauth2": {"tokenUrl": format!("{base}/token")}}}}
        }))
        .unwrap();
        let err = provider
            .measure("ns", &missing)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("provider.prometheus.authentication.oauth2") && err.contains("clientId"),
            "{err}"
        );
    }
}
