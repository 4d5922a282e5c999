//! The web provider, Argo Rollouts' `web` metric: one HTTP request (GET, POST or PUT) whose answer is
//! the `result` the conditions judge. A JSON answer is read through `jsonPath` (k8s JSONPath such as
//! `{$.data.ok}`, default `{$}`: the whole document) and `result` is the first value it selects, as
//! Argo takes it; an answer that is not JSON is `result` as text (Argo's plain-text responses).
//!
//! Argo's `jsonPath` is k8s JSONPath; it is translated here ([`rfc9535_path`]) to RFC 9535 JSONPath,
//! which `jsonpath-rust` evaluates: the braces are dropped, a path starting with `.` or `[` gets its
//! `$`, and a member name RFC 9535 does not allow in dot notation (`.app-name`) is written as
//! `['app-name']`. Filters (`[?(@.status=="ok")]`), wildcards, slices, unions and `..` are the same
//! in both. k8s templates (`{range}...{end}`, text around the braces) are refused with a clear error.
//!
//! Everything is bounded: the answer to [`MAX_WEB_RESPONSE_BYTES`], the whole measurement (OAuth2
//! token included, bodies included) to `timeoutSeconds` (default 10, at most 300), redirects to 10
//! (Go's and reqwest's limit), the path's length (CRD) and nesting ([`MAX_PATH_NESTING`]), the
//! JSON's depth (serde_json's 128).
//!
//! `authentication.oauth2` runs the client-credentials flow before each measurement (as Argo, which
//! builds a new client per measurement); `sigv4` and `basicAuth` are refused by the CRD and again here.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use jsonpath_rust::parser::model::JpQuery;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use super::{HttpClients, Measured, Provider, ProviderError, send_bounded, snippet};
use crate::analysis::condition::MetricValue;
use crate::api::analysis::{HttpHeader, Metric, OAuth2Config, WebMetric, WebMetricMethod};

/// The largest answer read; a larger one is an Error measurement.
pub const MAX_WEB_RESPONSE_BYTES: usize = 1 << 20;
/// The largest answer of an OAuth2 token endpoint read.
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 << 10;
/// The longest URL sent (also after `{{args}}` substitution).
pub const MAX_URL_BYTES: usize = 8192;
/// Deepest nesting of brackets in a `jsonPath`: the parser recurses per level.
pub const MAX_PATH_NESTING: usize = 16;
/// `jsonPath` when none is given: the whole document.
pub const DEFAULT_JSON_PATH: &str = "{$}";

/// Metadata keys of a web measurement.
pub const METADATA_URL: &str = "url";
pub const METADATA_METHOD: &str = "method";

/// Why a web metric cannot be measured, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebError {
    #[error("provider.web.url {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("provider.web: set body or jsonBody, not both")]
    BodyAndJsonBody,
    #[error("provider.web.{field} needs method POST or PUT (the method is GET)")]
    BodyWithGet { field: &'static str },
    #[error("provider.web.jsonBody cannot be sent: {reason}")]
    JsonBody { reason: String },
    #[error("provider.web.headers[{index}] ({key:?}): {reason}")]
    Header {
        index: usize,
        key: String,
        reason: &'static str,
    },
    #[error("provider.web.jsonPath {path:?}: {reason}")]
    JsonPath { path: String, reason: String },
    #[error("provider.web.jsonPath {path:?} selected nothing in the answer")]
    NoValue { path: String },
    #[error("provider.web.authentication.{method} is not supported by Sluice{hint}")]
    UnsupportedAuthentication {
        method: &'static str,
        hint: &'static str,
    },
    #[error("{field}: {reason}")]
    OAuth2 { field: &'static str, reason: String },
    #[error("OAuth2 token endpoint {url}: {reason}")]
    Token { url: String, reason: String },
}

/// A web metric checked and ready to send (PURE to build: [`prepare`]).
#[derive(Debug)]
pub struct PreparedRequest {
    pub method: reqwest::Method,
    pub url: reqwest::Url,
    pub headers: HeaderMap,
    pub body: Option<Vec<u8>>,
    /// The `jsonPath` as written (for messages) and compiled from its RFC 9535 form.
    pub json_path: String,
    pub query: JpQuery,
    pub oauth2: Option<OAuth2Request>,
}

/// The client-credentials request of `authentication.oauth2`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuth2Request {
    pub token_url: reqwest::Url,
    pub client_id: String,
    pub client_secret: String,
    pub scopes: Vec<String>,
}

/// Checks a web metric (its `{{args}}` already replaced) and turns it into a request: the URL, the
/// method's body rules (Argo's: a body needs POST or PUT, and only one of `body` / `jsonBody`), the
/// headers, the JSONPath and the authentication.
pub fn prepare(web: &WebMetric) -> Result<PreparedRequest, WebError> {
    let url = parse_url(&web.url)?;
    let body = request_body(web)?;
    let mut headers = request_headers(&web.headers)?;
    if web.json_body.is_some() {
        // Argo sets it after the user's headers: a jsonBody is always sent as JSON.
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    let json_path = web
        .json_path
        .as_deref()
        .filter(|p| !p.trim().is_empty())
        .unwrap_or(DEFAULT_JSON_PATH)
        .to_string();
    let query = compile(&rfc9535_path(Some(&json_path))?, &json_path)?;
    Ok(PreparedRequest {
        method: match web.method() {
            WebMetricMethod::Get => reqwest::Method::GET,
            WebMetricMethod::Post => reqwest::Method::POST,
            WebMetricMethod::Put => reqwest::Method::PUT,
        },
        url,
        headers,
        body,
        json_path,
        query,
        oauth2: {
            unsupported_authentication(web)?;
            oauth2_request(
                web.authentication.as_ref().and_then(|a| a.oauth2.as_ref()),
                "provider.web.authentication.oauth2",
            )?
        },
    })
}

/// The problems of a web metric as written in a template, by field, for `kubectl sluice lint`:
/// fields holding `{{args}}` are only known when the run is created and are skipped.
pub fn lint(web: &WebMetric) -> Vec<(&'static str, String)> {
    let templated = |s: &str| s.contains("{{");
    let mut problems = Vec::new();
    if !templated(&web.url)
        && let Err(e) = parse_url(&web.url)
    {
        problems.push(("provider.web.url", e.to_string()));
    }
    if let Err(e) = request_body(web) {
        problems.push(("provider.web", e.to_string()));
    }
    let literal_headers: Vec<HttpHeader> = web
        .headers
        .iter()
        .map(|h| HttpHeader {
            key: h.key.clone(),
            // A value that is only known later is checked then.
            value: if templated(&h.value) {
                String::new()
            } else {
                h.value.clone()
            },
        })
        .collect();
    if let Err(e) = request_headers(&literal_headers) {
        problems.push(("provider.web.headers", e.to_string()));
    }
    if let Some(path) = web.json_path.as_deref().filter(|p| !templated(p))
        && let Err(e) = rfc9535_path(Some(path)).and_then(|p| compile(&p, path))
    {
        problems.push(("provider.web.jsonPath", e.to_string()));
    }
    if let Err(e) = unsupported_authentication(web) {
        problems.push(("provider.web.authentication", e.to_string()));
    }
    problems
}

fn parse_url(url: &str) -> Result<reqwest::Url, WebError> {
    let bad = |reason: String| WebError::Url {
        url: snippet(url, 200),
        reason,
    };
    if url.len() > MAX_URL_BYTES {
        return Err(bad(format!("longer than {MAX_URL_BYTES} bytes")));
    }
    let parsed = reqwest::Url::parse(url.trim()).map_err(|e| bad(e.to_string()))?;
    match parsed.scheme() {
        "http" | "https" => Ok(parsed),
        other => Err(bad(format!(
            "scheme {other:?} is not supported: use http or https"
        ))),
    }
}

fn request_body(web: &WebMetric) -> Result<Option<Vec<u8>>, WebError> {
    let text = web.body.as_deref().filter(|b| !b.is_empty());
    match (text, &web.json_body, web.method()) {
        (Some(_), Some(_), _) => Err(WebError::BodyAndJsonBody),
        (Some(_), None, WebMetricMethod::Get) => Err(WebError::BodyWithGet { field: "body" }),
        (None, Some(_), WebMetricMethod::Get) => Err(WebError::BodyWithGet { field: "jsonBody" }),
        (Some(text), None, _) => Ok(Some(text.as_bytes().to_vec())),
        (None, Some(json), _) => {
            serde_json::to_vec(json)
                .map(Some)
                .map_err(|e| WebError::JsonBody {
                    reason: e.to_string(),
                })
        }
        (None, None, _) => Ok(None),
    }
}

/// The headers as Go's `Header.Set` leaves them: a later header of the same name replaces an
/// earlier one. A value is never quoted in an error (it may be a credential).
fn request_headers(headers: &[HttpHeader]) -> Result<HeaderMap, WebError> {
    let mut map = HeaderMap::new();
    for (index, h) in headers.iter().enumerate() {
        let bad = |reason: &'static str| WebError::Header {
            index,
            key: snippet(&h.key, 100),
            reason,
        };
        let name = HeaderName::from_bytes(h.key.trim().as_bytes())
            .map_err(|_| bad("not a valid header name"))?;
        let value = HeaderValue::from_str(&h.value).map_err(|_| {
            bad("the value has characters a header cannot carry (such as a line break)")
        })?;
        map.insert(name, value);
    }
    Ok(map)
}

fn unsupported_authentication(web: &WebMetric) -> Result<(), WebError> {
    let Some(auth) = &web.authentication else {
        return Ok(());
    };
    let set = |values: &[&Option<String>]| values.iter().any(|v| v.is_some());
    if auth
        .sigv4
        .as_ref()
        .is_some_and(|s| set(&[&s.region, &s.profile, &s.role_arn]))
    {
        return Err(WebError::UnsupportedAuthentication {
            method: "sigv4",
            hint: "; use oauth2 or headers",
        });
    }
    if auth
        .basic_auth
        .as_ref()
        .is_some_and(|b| set(&[&b.username, &b.password]))
    {
        return Err(WebError::UnsupportedAuthentication {
            method: "basicAuth",
            hint: " for web metrics (Argo ignores it); send an Authorization header",
        });
    }
    Ok(())
}

/// The OAuth2 request of `oauth2` (written at `field`) when its `tokenUrl` is set (Argo runs the
/// flow only then); its client ID and secret are then mandatory. Web and Prometheus metrics alike.
pub(super) fn oauth2_request(
    oauth2: Option<&OAuth2Config>,
    field: &'static str,
) -> Result<Option<OAuth2Request>, WebError> {
    let Some(oauth2) = oauth2 else {
        return Ok(None);
    };
    let OAuth2Config {
        token_url,
        client_id,
        client_secret,
        scopes,
    } = oauth2;
    let Some(token_url) = token_url.as_deref().filter(|u| !u.trim().is_empty()) else {
        return Ok(None);
    };
    let non_empty = |v: &Option<String>, name: &str| {
        v.clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| WebError::OAuth2 {
                field,
                reason: format!("{name} is required with tokenUrl"),
            })
    };
    let token_url = parse_url(token_url).map_err(|e| WebError::OAuth2 {
        field,
        reason: format!("tokenUrl: {e}"),
    })?;
    Ok(Some(OAuth2Request {
        token_url,
        client_id: non_empty(client_id, "clientId")?,
        client_secret: non_empty(client_secret, "clientSecret")?,
        scopes: scopes.clone(),
    }))
}

/// Argo's k8s JSONPath (`{$.data.ok}`, `{.items[*].name}`, default `{$}`) as RFC 9535 JSONPath
/// (`$.data.ok`, `$.items[*].name`). See the module documentation for what is translated.
pub fn rfc9535_path(json_path: Option<&str>) -> Result<String, WebError> {
    let written = json_path
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .unwrap_or(DEFAULT_JSON_PATH);
    let bad = |reason: &str| WebError::JsonPath {
        path: snippet(written, 200),
        reason: reason.to_string(),
    };
    let inner = match written.strip_prefix('{') {
        Some(rest) => rest
            .strip_suffix('}')
            .ok_or_else(|| bad("an opening { without its closing }"))?,
        // Not k8s syntax (k8s would return the text itself), but unambiguous: taken as a path.
        None => written,
    };
    if inner.contains(['{', '}']) {
        return Err(bad(
            "only one {...} expression is supported (no {range}/{end} templates or text around it)",
        ));
    }
    let inner = inner.trim();
    let mut out = String::with_capacity(inner.len() + 8);
    let rest = if let Some(rest) = inner.strip_prefix(['$', '@']) {
        rest
    } else if inner.starts_with(['.', '[']) {
        inner
    } else if inner.is_empty() {
        return Err(bad("the expression is empty"));
    } else {
        return Err(bad("a path starts with $, @, . or ["));
    };
    out.push('$');
    translate_segments(rest, &mut out).map_err(|reason| bad(&reason))?;
    Ok(out)
}

/// Copies `path` (after its root) to `out`, rewriting dot-notation member names that RFC 9535 does
/// not accept in that form as `['name']`. Quoted strings are copied as they are; a dot counts as a
/// path dot only right after something a path segment can follow (the root, a name, `]`, `*`), so
/// the dot of a number in a filter (`@.ratio > 0.5`) is left alone.
fn translate_segments(path: &str, out: &mut String) -> Result<(), String> {
    let chars: Vec<char> = path.chars().collect();
    let mut i = 0;
    // Whether the text so far ends with something a `.name` segment can follow.
    let mut after_segment = true;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\'' | '"' => {
                let start = i;
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                if i >= chars.len() {
                    return Err("a quoted string is not closed".to_string());
                }
                out.extend(&chars[start..=i]);
                i += 1;
                after_segment = false;
            }
            '.' if after_segment => {
                let recursive = chars.get(i + 1) == Some(&'.');
                i += if recursive { 2 } else { 1 };
                let start = i;
                while i < chars.len() && !ends_name(chars[i]) {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                out.push_str(if recursive { ".." } else { "" });
                match name.as_str() {
                    // `.[0]` (k8s accepts it) is `[0]`; `..[0]` stays.
                    "" if chars.get(i) == Some(&'[') => {}
                    "" => return Err("a '.' is not followed by a name".to_string()),
                    "*" => out.push_str(if recursive { "*" } else { ".*" }),
                    _ if is_shorthand_name(&name) => {
                        if !recursive {
                            out.push('.');
                        }
                        out.push_str(&name);
                    }
                    _ => {
                        out.push_str("['");
                        out.push_str(&name.replace('\\', "\\\\").replace('\'', "\\'"));
                        out.push_str("']");
                    }
                }
                after_segment = true;
            }
            '$' | '@' | ']' => {
                out.push(c);
                i += 1;
                after_segment = true;
            }
            _ => {
                out.push(c);
                i += 1;
                after_segment = false;
            }
        }
    }
    Ok(())
}

fn ends_name(c: char) -> bool {
    c.is_whitespace() || ".[]()'\"=<>!&|,".contains(c)
}

/// RFC 9535 `member-name-shorthand`: a letter, `_` or non-ASCII first, then also digits.
fn is_shorthand_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || !c.is_ascii())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || !c.is_ascii())
}

fn compile(rfc_path: &str, written: &str) -> Result<JpQuery, WebError> {
    let bad = |reason: String| WebError::JsonPath {
        path: snippet(written, 200),
        reason,
    };
    let mut depth = 0usize;
    for c in rfc_path.chars() {
        match c {
            '(' | '[' => {
                depth += 1;
                if depth > MAX_PATH_NESTING {
                    return Err(bad(format!(
                        "brackets nested more than {MAX_PATH_NESTING} deep"
                    )));
                }
            }
            ')' | ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    jsonpath_rust::parser::parse_json_path(rfc_path).map_err(|e| bad(snippet(&e.to_string(), 300)))
}

/// `result` from an answer (PURE): a JSON body read through the path (the first value it selects,
/// as Argo), any other body as text (an empty body is `""`).
pub fn result_of(query: &JpQuery, written_path: &str, body: &str) -> Result<MetricValue, WebError> {
    let Ok(document) = serde_json::from_str::<Value>(body) else {
        return Ok(MetricValue::Text(body.to_string()));
    };
    let selected = jsonpath_rust::query::js_path_process(query, &document).map_err(|e| {
        WebError::JsonPath {
            path: snippet(written_path, 200),
            reason: snippet(&e.to_string(), 300),
        }
    })?;
    selected
        .into_iter()
        .next()
        .map(|r| MetricValue::Json(r.val().clone()))
        .ok_or_else(|| WebError::NoValue {
            path: snippet(written_path, 200),
        })
}

pub struct WebProvider {
    http: HttpClients,
}

impl WebProvider {
    pub fn new() -> Result<Self, ProviderError> {
        Ok(Self {
            http: HttpClients::new()?,
        })
    }

    async fn request(&self, web: &WebMetric) -> Result<Measured, ProviderError> {
        let prepared = prepare(web)?;
        let timeout = web.timeout();
        let client = self.http.get(web.insecure());
        let mut headers = prepared.headers;
        if let Some(oauth2) = &prepared.oauth2 {
            let token = fetch_token(client, oauth2, timeout).await?;
            let value = HeaderValue::from_str(&token).map_err(|_| WebError::Token {
                url: oauth2.token_url.to_string(),
                reason: "the access token cannot be sent in a header".to_string(),
            })?;
            headers.insert(AUTHORIZATION, value);
        }
        let url = prepared.url.to_string();
        let mut request = client
            .request(prepared.method.clone(), prepared.url)
            .headers(headers);
        if let Some(body) = prepared.body {
            request = request.body(body);
        }
        let (status, body) =
            send_bounded("web metric", &url, request, timeout, MAX_WEB_RESPONSE_BYTES).await?;
        if !(200..300).contains(&status) {
            return Err(ProviderError::Status {
                url,
                status,
                body: snippet(&body, 200),
            });
        }
        let value = result_of(&prepared.query, &prepared.json_path, &body)?;
        let mut metadata = BTreeMap::new();
        metadata.insert(METADATA_URL.to_string(), url);
        metadata.insert(METADATA_METHOD.to_string(), prepared.method.to_string());
        Ok(Measured { value, metadata })
    }
}

impl Provider for WebProvider {
    fn measure<'a>(
        &'a self,
        _namespace: &'a str,
        metric: &'a Metric,
    ) -> BoxFuture<'a, Result<Measured, ProviderError>> {
        Box::pin(async move {
            let web = metric
                .provider
                .web
                .as_ref()
                .ok_or_else(|| ProviderError::NoProvider {
                    metric: metric.name.clone(),
                })?;
            // One deadline for the token requests and the call together: a reconcile waits
            // for its measurements.
            let timeout = web.timeout();
            tokio::time::timeout(timeout, self.request(web))
                .await
                .unwrap_or_else(|_| {
                    Err(ProviderError::Timeout {
                        what: "web metric",
                        url: snippet(&web.url, 200),
                        timeout,
                    })
                })
        })
    }
}

/// The access token of the client-credentials flow, as `Authorization` header value (`Bearer
/// TOKEN`). As Go's `clientcredentials` (auto-detected auth style): the client's credentials in a
/// basic `Authorization` header first, and in the form body when the server refuses that.
pub(super) async fn fetch_token(
    client: &reqwest::Client,
    oauth2: &OAuth2Request,
    timeout: Duration,
) -> Result<String, ProviderError> {
    let url = oauth2.token_url.to_string();
    let mut form = vec![("grant_type", "client_credentials".to_string())];
    if !oauth2.scopes.is_empty() {
        form.push(("scope", oauth2.scopes.join(" ")));
    }
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!(
            "{}:{}",
            form_encode(&oauth2.client_id),
            form_encode(&oauth2.client_secret)
        ),
    );
    let in_header = client
        .post(oauth2.token_url.clone())
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(AUTHORIZATION, format!("Basic {basic}"))
        .body(form_body(&form));
    let (mut status, mut body) = send_bounded(
        "OAuth2 token endpoint",
        &url,
        in_header,
        timeout,
        MAX_TOKEN_RESPONSE_BYTES,
    )
    .await?;
    if !(200..300).contains(&status) {
        form.push(("client_id", oauth2.client_id.clone()));
        form.push(("client_secret", oauth2.client_secret.clone()));
        let in_params = client
            .post(oauth2.token_url.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form_body(&form));
        (status, body) = send_bounded(
            "OAuth2 token endpoint",
            &url,
            in_params,
            timeout,
            MAX_TOKEN_RESPONSE_BYTES,
        )
        .await?;
    }
    if !(200..300).contains(&status) {
        return Err(WebError::Token {
            url,
            reason: format!("HTTP {status}: {}", snippet(&body, 200)),
        }
        .into());
    }
    token_header(&url, &body).map_err(ProviderError::from)
}

/// `Authorization` value from a token endpoint's JSON answer (PURE): `access_token` with its
/// `token_type` (default `Bearer`, with Go's capitalisation of the usual types).
pub fn token_header(url: &str, body: &str) -> Result<String, WebError> {
    let bad = |reason: &str| WebError::Token {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let answer: Value =
        serde_json::from_str(body).map_err(|_| bad("the answer is not a JSON token response"))?;
    let token = answer
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("the answer has no access_token"))?;
    let kind = match answer.get("token_type").and_then(Value::as_str) {
        None | Some("") => "Bearer".to_string(),
        Some(t) if t.eq_ignore_ascii_case("bearer") => "Bearer".to_string(),
        Some(t) if t.eq_ignore_ascii_case("mac") => "MAC".to_string(),
        Some(t) if t.eq_ignore_ascii_case("basic") => "Basic".to_string(),
        Some(t) => t.to_string(),
    };
    Ok(format!("{kind} {token}"))
}

fn form_body(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `application/x-www-form-urlencoded` encoding (Go's `url.QueryEscape`).
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::args::{ArgContext, resolve_args, resolve_metric};
    use crate::analysis::condition;
    use crate::analysis::provider::test_server::{Reply, serve};
    use crate::api::analysis::{AnalysisPhase, Argument, MetricProvider};
    use serde_json::json;

    fn web(value: Value) -> WebMetric {
        serde_json::from_value(value).unwrap()
    }

    fn metric(w: WebMetric) -> Metric {
        Metric {
            name: "web".into(),
            provider: MetricProvider {
                web: Some(w),
                ..MetricProvider::default()
            },
            ..Metric::default()
        }
    }

    #[test]
    fn k8s_json_paths_become_rfc9535_paths() {
        let cases = [
            (None, "$"),
            (Some(""), "$"),
            (Some("{$}"), "$"),
            (Some("{$.data.ok}"), "$.data.ok"),
            (Some(" { .data.ok } "), "$.data.ok"),
            (Some("{.data.ok}"), "$.data.ok"),
            (Some("{@.data}"), "$.data"),
            (Some("{$.key[0].key2.value}"), "$.key[0].key2.value"),
            (Some("{.items[*].name}"), "$.items[*].name"),
            (Some("{.items.*}"), "$.items.*"),
            (Some("{..name}"), "$..name"),
            (Some("{..*}"), "$..*"),
            (Some("{$.items[-1:]}"), "$.items[-1:]"),
            (Some("{.items.[0]}"), "$.items[0]"),
            (
                Some("{.metadata.labels.app-name}"),
                "$.metadata.labels['app-name']",
            ),
            (Some("{.a.b2._c}"), "$.a.b2._c"),
            (Some("{.a.1x}"), "$.a['1x']"),
            (Some("{.a.b:c/d}"), "$.a['b:c/d']"),
            (Some(r"{.a.b\c}"), r"$.a['b\\c']"),
            (
                Some(r#"{.items[?(@.status=="ok")].value}"#),
                r#"$.items[?(@.status=="ok")].value"#,
            ),
            (
                Some("{.items[?(@.ratio > 0.5 && @.kind-x == 'a.b')].name}"),
                "$.items[?(@.ratio > 0.5 && @['kind-x'] == 'a.b')].name",
            ),
            (Some("$.data.ok"), "$.data.ok"),
            (Some(".data"), "$.data"),
        ];
        for (written, want) in cases {
            assert_eq!(rfc9535_path(written).as_deref(), Ok(want), "{written:?}");
            // Every translation is a path the engine accepts.
            compile(want, want).unwrap_or_else(|e| panic!("{want}: {e}"));
        }
        for (written, reason) in [
            ("{range .items[*]}{.name}{end}", "only one {...} expression"),
            ("{.a}{.b}", "only one {...} expression"),
            ("value: {.a}", "only one {...} expression"),
            ("{.a", "without its closing"),
            ("{}", "empty"),
            ("{data}", "starts with $, @, . or ["),
            ("{.a.}", "not followed by a name"),
            ("{.a['b}", "not closed"),
        ] {
            let err = rfc9535_path(Some(written)).unwrap_err();
            assert!(
                err.to_string().contains(reason)
                    && err.to_string().contains("provider.web.jsonPath"),
                "{written}: {err}"
            );
        }
        let deep = format!("{{$.a{}{}}}", "[?(@".repeat(20), ")]".repeat(20));
        let err = prepare(&web(
            json!({"url": "http://127.0.0.1:1/", "jsonPath": deep}),
        ))
        .unwrap_err();
        assert!(err.to_string().contains("nested more than"), "{err}");
        let err = prepare(&web(
            json!({"url": "http://127.0.0.1:1/", "jsonPath": "{$.a[}"}),
        ))
        .unwrap_err();
        assert!(matches!(err, WebError::JsonPath { .. }), "{err}");
    }

    /// Argo's own webmetric_test.go cases: answer, jsonPath, condition → stored value and phase.
    #[test]
    fn answers_become_result_as_argo_reads_them() {
        use AnalysisPhase::*;
        let cases: &[(&str, Option<&str>, &str, &str, AnalysisPhase)] = &[
            (
                r#"{"a": 1, "b": true, "c": [1, 2, 3, 4], "d": null}"#,
                None,
                "result.a > 0 && result.b && all(result.c, {# < 5}) && result.d == nil",
                r#"{"a":1,"b":true,"c":[1,2,3,4],"d":null}"#,
                Successful,
            ),
            (
                r#"{"key": [{"key2": {"value": "1"}}]}"#,
                Some("{$.key[0].key2.value}"),
                "asInt(result) > 0",
                r#""1""#,
                Successful,
            ),
            (
                r#"{"key": [{"key2": {"value": "0"}}]}"#,
                Some("{$.key[0].key2.value}"),
                "asInt(result) > 0",
                r#""0""#,
                Failed,
            ),
            (
                r#"{"key": [{"key2": {"value": "1.2"}}]}"#,
                Some("{$.key[0].key2.value}"),
                "asFloat(result) > 1.1",
                r#""1.2""#,
                Successful,
            ),
            (
                r#"{"key": [{"key2": {"value": 1}}]}"#,
                Some("{$.key[0].key2.value}"),
                "result > 0",
                "1",
                Successful,
            ),
            (
                r#"{"key": [{"key2": {"value": 1}}]}"#,
                Some("{$.key[0].key2.value}"),
                "result == 1.0",
                "1",
                Successful,
            ),
            (
                r#"{"key": [{"key2": {"value": 1.0}}]}"#,
                Some("{$.key[0].key2.value}"),
                "result == 1",
                "1.0",
                Successful,
            ),
            (
                r#"{"key": [{"key2": {"value": -1.1}}]}"#,
                Some("{$.key[0].key2.value}"),
                "result > 0",
                "-1.1",
                Failed,
            ),
            (
                r#"{"key": [{"key2": {"value": "true"}}]}"#,
                Some("{$.key[0].key2.value}"),
                r#"result == "true""#,
                r#""true""#,
                Successful,
            ),
            (
                r#"{"key": [{"key2": {"value": false}}]}"#,
                Some("{$.key[0].key2.value}"),
                "result == true",
                "false",
                Failed,
            ),
            (
                r#"{"key": [1, 2, 3, 4, 5, 6]}"#,
                Some("{$.key}"),
                "any(result, {# > 5})",
                "[1,2,3,4,5,6]",
                Successful,
            ),
            (
                r#"{"key":{"num":1.2, "bool":true, "mapfield":{"foo":"bar"}}}"#,
                Some("{$.key}"),
                r#"result.num > 1.1 && result.bool && result.mapfield.foo == "bar""#,
                // Keys sorted, as Go's json.Marshal writes a map.
                r#"{"bool":true,"mapfield":{"foo":"bar"},"num":1.2}"#,
                Successful,
            ),
            // The first value a wildcard selects, as Argo's getValue.
            (
                r#"{"items": [{"ok": false}, {"ok": true}]}"#,
                Some("{.items[*].ok}"),
                "result == false",
                "false",
                Successful,
            ),
            (
                r#"{"items": [{"s": "a", "v": 1}, {"s": "b", "v": 2}]}"#,
                Some(r#"{.items[?(@.s=="b")].v}"#),
                "result == 2",
                "2",
                Successful,
            ),
            // Plain text and empty answers are `result` as text, whatever the path.
            ("", Some("{$.key}"), r#"result == """#, "", Successful),
            (
                "test: notJson",
                Some("{$.key[0].key2.value}"),
                "result == 'test: notJson'",
                "test: notJson",
                Successful,
            ),
            ("OK", None, "result == 'fail123'", "OK", Failed),
        ];
        for (body, path, success, want_value, want_phase) in cases {
            let prepared = prepare(&web(json!({
                "url": "http://127.0.0.1:1/",
                "jsonPath": path,
            })))
            .unwrap();
            let value = result_of(&prepared.query, &prepared.json_path, body).unwrap();
            assert_eq!(value.to_string(), *want_value, "{body} {path:?}");
            assert_eq!(
                condition::evaluate(Some(success), None, &value),
                Ok(*want_phase),
                "{body} {path:?} {success}"
            );
        }
        let prepared =
            prepare(&web(json!({"url": "http://x/", "jsonPath": "{$.missing}"}))).unwrap();
        let err = result_of(&prepared.query, &prepared.json_path, r#"{"a":1}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "provider.web.jsonPath \"{$.missing}\" selected nothing in the answer"
        );
    }

    #[test]
    fn a_large_result_is_stored_cut_but_judged_whole() {
        let items: Vec<u32> = (0..5000).collect();
        let value = MetricValue::Json(json!({ "items": items }));
        assert!(value.to_string().len() <= condition::MAX_JSON_VALUE_CHARS + 3);
        assert_eq!(
            condition::evaluate(Some("len(result.items) == 5000"), None, &value),
            Ok(AnalysisPhase::Successful)
        );
    }

    #[test]
    fn requests_follow_argos_method_body_and_header_rules() {
        let url = "http://127.0.0.1:1/m";
        let get = prepare(&web(json!({"url": url}))).unwrap();
        assert_eq!((get.method.as_str(), get.body.is_none()), ("GET", true));
        assert!(get.oauth2.is_none());
        assert_eq!(
            prepare(&web(json!({"url": url, "body": "x"}))).unwrap_err(),
            WebError::BodyWithGet { field: "body" }
        );
        assert_eq!(
            prepare(&web(
                json!({"url": url, "method": "GET", "jsonBody": {"a": 1}})
            ))
            .unwrap_err(),
            WebError::BodyWithGet { field: "jsonBody" }
        );
        assert_eq!(
            prepare(&web(
                json!({"url": url, "method": "POST", "body": "x", "jsonBody": {}})
            ))
            .unwrap_err(),
            WebError::BodyAndJsonBody
        );
        let post = prepare(&web(json!({
            "url": url, "method": "POST", "body": "a=1",
            "headers": [{"key": "X-A", "value": "1"}, {"key": "x-a", "value": "2"}],
        })))
        .unwrap();
        assert_eq!(post.body.as_deref(), Some(&b"a=1"[..]));
        assert_eq!(post.headers.get_all("x-a").iter().count(), 1);
        assert_eq!(post.headers["x-a"], "2");
        assert!(post.headers.get(CONTENT_TYPE).is_none());
        let put = prepare(&web(json!({
            "url": url, "method": "PUT", "jsonBody": {"k": [1, "two"]},
            "headers": [{"key": "Content-Type", "value": "text/plain"}],
        })))
        .unwrap();
        assert_eq!(put.method, reqwest::Method::PUT);
        assert_eq!(put.body.as_deref(), Some(&br#"{"k":[1,"two"]}"#[..]));
        assert_eq!(put.headers[CONTENT_TYPE], "application/json");
        for (url, reason) in [
            ("file:///etc/passwd", "scheme \"file\""),
            ("not a url", "relative URL"),
            ("", "relative URL"),
        ] {
            let err = prepare(&web(json!({ "url": url }))).unwrap_err();
            assert!(matches!(err, WebError::Url { .. }), "{err}");
            assert!(err.to_string().contains(reason), "{url}: {err}");
        }
        let long = format!("http://127.0.0.1/{}", "a".repeat(MAX_URL_BYTES));
        assert!(prepare(&web(json!({ "url": long }))).is_err());
        let secret = "line\nbreak-secret";
        let err = prepare(&web(json!({
            "url": url, "headers": [{"key": "Authorization", "value": secret}],
        })))
        .unwrap_err();
        assert!(matches!(err, WebError::Header { index: 0, .. }), "{err}");
        assert!(!err.to_string().contains("secret"), "{err}");
        let err = prepare(&web(
            json!({"url": url, "headers": [{"key": "bad key", "value": "v"}]}),
        ))
        .unwrap_err();
        assert!(err.to_string().contains("headers[0]"), "{err}");
    }

    #[test]
    fn unsupported_authentication_is_refused_and_oauth2_needs_its_fields() {
        let url = "http://127.0.0.1:1/m";
        let err = prepare(&web(json!({
            "url": url, "authentication": {"sigv4": {"region": "eu-west-1"}},
        })))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "provider.web.authentication.sigv4 is not supported by Sluice; use oauth2 or headers"
        );
        let err = prepare(&web(json!({
            "url": url, "authentication": {"basicAuth": {"username": "u", "password": "p"}},
        })))
        .unwrap_err();
        assert!(err.to_string().contains("basicAuth"), "{err}");
        // Empty sections (what Go's non-pointer structs serialise) are no setting.
        let ok = prepare(&web(json!({
            "url": url, "authentication": {"sigv4": {}, "basicAuth": {}, "oauth2": {}},
        })))
        .unwrap();
        assert!(ok.oauth2.is_none());
        let err = prepare(&web(json!({
            "url": url,
            "authentication": {"oauth2": {"tokenUrl": "http://127.0.0.1:1/t", "clientId": "id"}},
        })))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "provider.web.authentication.oauth2: clientSecret is required with tokenUrl"
        );
        let oauth2 = prepare(&web(json!({
            "url": url,
            "authentication": {"oauth2": {
                "tokenUrl": "http://127.0.0.1:1/t", "clientId": "id", "clientSecret": "s",
                "scopes": ["a", "b"],
            }},
        })))
        .unwrap()
        .oauth2
        .unwrap();
        assert_eq!(oauth2.scopes, ["a", "b"]);
        assert_eq!(
            token_header("u", r#"{"access_token":"tok","token_type":"bearer"}"#),
            Ok("Bearer tok".to_string())
        );
        assert_eq!(
            token_header("u", r#"{"access_token":"tok"}"#),
            Ok("Bearer tok".to_string())
        );
        assert!(token_header("u", r#"{"error":"invalid_client"}"#).is_err());
        assert!(token_header("u", "access_token=tok").is_err());
        assert_eq!(form_encode("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
    }

    #[test]
    fn args_are_substituted_into_url_headers_bodies_and_credentials() {
        let m = metric(web(json!({
            "url": "http://127.0.0.1:1/m?service={{ args.service }}",
            "method": "POST",
            "headers": [{"key": "Authorization", "value": "Bearer {{args.token}}"}],
            "jsonBody": {"svc": "{{args.service}}", "nested": {"list": ["{{args.service}}"]}},
            "authentication": {"oauth2": {
                "tokenUrl": "http://127.0.0.1:1/t", "clientId": "id",
                "clientSecret": "{{args.token}}",
            }},
            "jsonPath": "{$.data.ok}",
        })));
        let args: Vec<Argument> = serde_json::from_value(json!([
            {"name": "service", "value": "check\"out"},
            {"name": "token", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        ]))
        .unwrap();
        let mut ctx = ArgContext::default();
        ctx.secrets.insert(("s".into(), "k".into()), "t0ken".into());
        let resolved = resolve_args(&args, &ctx).unwrap();
        let m = resolve_metric(&m, &resolved).unwrap();
        let w = m.provider.web.as_ref().unwrap();
        let prepared = prepare(w).unwrap();
        assert_eq!(
            prepared.url.as_str(),
            "http://127.0.0.1:1/m?service=check%22out"
        );
        assert_eq!(prepared.headers[AUTHORIZATION], "Bearer t0ken");
        assert_eq!(
            serde_json::from_slice::<Value>(prepared.body.as_deref().unwrap()).unwrap(),
            json!({"svc": "check\"out", "nested": {"list": ["check\"out"]}})
        );
        assert_eq!(prepared.oauth2.unwrap().client_secret, "t0ken");
        assert_eq!(resolved.mask("Bearer t0ken"), "Bearer *****");
    }

    #[test]
    fn lint_names_the_bad_fields_and_skips_templated_ones() {
        let good = web(json!({
            "url": "{{args.url}}",
            "headers": [{"key": "Authorization", "value": "Bearer {{args.token}}"}],
            "jsonPath": "{$.data.ok}",
        }));
        assert_eq!(lint(&good), vec![]);
        let bad = web(json!({
            "url": "ftp://example",
            "body": "x",
            "headers": [{"key": "bad key", "value": "v"}],
            "jsonPath": "{range .items[*]}{.n}{end}",
            "authentication": {"sigv4": {"region": "r"}},
        }));
        let fields: Vec<&str> = lint(&bad).into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "provider.web.url",
                "provider.web",
                "provider.web.headers",
                "provider.web.jsonPath",
                "provider.web.authentication"
            ]
        );
    }

    #[tokio::test]
    async fn measures_a_live_endpoint_and_sends_what_the_metric_says() {
        let (base, mut requests) = serve(vec![
            Reply::Json(200, r#"{"data": {"ok": true, "successPercent": 0.95}}"#),
            Reply::Json(503, "down for maintenance"),
        ])
        .await;
        let provider = WebProvider::new().unwrap();
        let m = metric(web(json!({
            "url": format!("{base}/api/v1/measurement?service=checkout"),
            "method": "POST",
            "headers": [{"key": "X-Api-Key", "value": "k1"}],
            "jsonBody": {"service": "checkout"},
            "jsonPath": "{$.data}",
        })));
        let measured = provider.measure("ns", &m).await.unwrap();
        assert_eq!(
            condition::evaluate(
                Some("result.ok && result.successPercent >= 0.90"),
                None,
                &measured.value
            ),
            Ok(AnalysisPhase::Successful)
        );
        assert_eq!(measured.metadata[METADATA_METHOD], "POST");
        let request = requests.recv().await.unwrap().to_ascii_lowercase();
        assert!(
            request.starts_with("post /api/v1/measurement?service=checkout http/1.1"),
            "{request}"
        );
        assert!(request.contains("x-api-key: k1"), "{request}");
        assert!(
            request.contains("content-type: application/json"),
            "{request}"
        );
        assert!(request.ends_with(r#"{"service":"checkout"}"#), "{request}");
        let err = provider.measure("ns", &m).await.unwrap_err();
        assert!(
            matches!(err, ProviderError::Status { status: 503, .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("HTTP 503: down for maintenance"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn oversized_slow_and_unreachable_answers_are_errors() {
        let huge = "x".repeat(MAX_WEB_RESPONSE_BYTES + 1);
        let (base, _requests) = serve(vec![
            Reply::Raw(format!(
                "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n{huge}"
            )),
            Reply::Silent,
        ])
        .await;
        let provider = WebProvider::new().unwrap();
        let m = metric(web(
            json!({"url": format!("{base}/big"), "timeoutSeconds": 1}),
        ));
        let err = provider.measure("ns", &m).await.unwrap_err();
        assert!(
            matches!(err, ProviderError::TooLarge { limit, .. } if limit == MAX_WEB_RESPONSE_BYTES),
            "{err}"
        );
        let started = std::time::Instant::now();
        let err = provider.measure("ns", &m).await.unwrap_err();
        assert!(
            matches!(err, ProviderError::Timeout { timeout, .. } if timeout == Duration::from_secs(1)),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        // Nothing listens there any more: a connection error, never a result.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let m = metric(web(json!({ "url": format!("http://{addr}/") })));
        let err = provider.measure("ns", &m).await.unwrap_err();
        assert!(matches!(err, ProviderError::Http { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_silent_token_endpoint_times_the_measurement_out() {
        let (base, _requests) = serve(vec![Reply::Silent]).await;
        let m = metric(web(json!({
            "url": format!("{base}/check"),
            "timeoutSeconds": 1,
            "authentication": {"oauth2": {
                "tokenUrl": format!("{base}/token"), "clientId": "id", "clientSecret": "s",
            }},
        })));
        let started = std::time::Instant::now();
        let err = WebProvider::new()
            .unwrap()
            .measure("ns", &m)
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn oauth2_fetches_a_token_then_sends_it_as_bearer() {
        let (base, mut requests) = serve(vec![
            // Credentials in the Authorization header are refused: Go's auto-detection then
            // sends them in the form.
            Reply::Json(401, r#"{"error":"invalid_client"}"#),
            Reply::Json(
                200,
                r#"{"access_token":"tok-123","token_type":"bearer","expires_in":60}"#,
            ),
            Reply::Json(200, r#"{"data":{"ok":true}}"#),
        ])
        .await;
        let provider = WebProvider::new().unwrap();
        let m = metric(web(json!({
            "url": format!("{base}/check"),
            "jsonPath": "{$.data.ok}",
            "authentication": {"oauth2": {
                "tokenUrl": format!("{base}/token"), "clientId": "my id",
                "clientSecret": "s3cret", "scopes": ["read", "write"],
            }},
        })));
        let measured = provider.measure("ns", &m).await.unwrap();
        assert_eq!(measured.value, MetricValue::Json(json!(true)));
        let in_header = requests.recv().await.unwrap();
        assert!(in_header.starts_with("POST /token "), "{in_header}");
        let basic =
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "my+id:s3cret");
        assert!(
            in_header.contains(&format!("authorization: Basic {basic}")),
            "{in_header}"
        );
        assert!(
            in_header.ends_with("grant_type=client_credentials&scope=read+write"),
            "{in_header}"
        );
        let in_form = requests.recv().await.unwrap();
        assert!(
            in_form.ends_with("grant_type=client_credentials&scope=read+write&client_id=my+id&client_secret=s3cret"),
            "{in_form}"
        );
        let call = requests.recv().await.unwrap();
        assert!(call.starts_with("GET /check "), "{call}");
        assert!(call.contains("authorization: Bearer tok-123"), "{call}");
    }
}
