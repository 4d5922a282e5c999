//! Git push webhooks (SCENARIOS G2): `POST /api/webhook` on `--webhook-addr` takes GitHub and GitLab
//! push events and refreshes at once the Applications whose `repoURL` is the pushed repository
//! (compared without scheme, user, port, `.git` suffix and trailing slash, as Argo CD does).
//!
//! Authentication, configured by environment variables (in a pod, set them from a Secret with
//! `valueFrom.secretKeyRef`):
//! - `SLUICE_WEBHOOK_GITHUB_SECRET`: GitHub's webhook secret; events must carry a valid
//!   `X-Hub-Signature-256` (HMAC-SHA256 of the body).
//! - `SLUICE_WEBHOOK_GITLAB_SECRET`: GitLab's secret token; events must carry it in `X-Gitlab-Token`.
//!
//! A provider whose variable is unset or empty is accepted without verification (a warning is
//! logged at start-up): a push event only triggers a refresh, the revision still comes from Git.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::channel::mpsc::UnboundedSender;
use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::Value;
use thiserror::Error;

use crate::api::application::Application;

/// Environment variable holding the GitHub webhook secret.
pub const GITHUB_SECRET_ENV: &str = "SLUICE_WEBHOOK_GITHUB_SECRET";
/// Environment variable holding the GitLab secret token.
pub const GITLAB_SECRET_ENV: &str = "SLUICE_WEBHOOK_GITLAB_SECRET";
/// The webhook's path.
pub const WEBHOOK_PATH: &str = "/api/webhook";

/// The configured secrets; `None` accepts that provider's events unverified.
#[derive(Clone, Default)]
pub struct WebhookSecrets {
    pub github: Option<String>,
    pub gitlab: Option<String>,
}

impl std::fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSecrets")
            .field("github", &self.github.as_ref().map(|_| "<set>"))
            .field("gitlab", &self.gitlab.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl WebhookSecrets {
    /// Reads [`GITHUB_SECRET_ENV`] and [`GITLAB_SECRET_ENV`].
    pub fn from_env() -> Self {
        let read = |key: &str| std::env::var(key).ok().filter(|s| !s.is_empty());
        Self {
            github: read(GITHUB_SECRET_ENV),
            gitlab: read(GITLAB_SECRET_ENV),
        }
    }
}

/// Why a webhook request was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("signature check failed: {0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    BadRequest(String),
}

/// A push to a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushEvent {
    /// Every URL the payload gives for the repository.
    pub repo_urls: Vec<String>,
    /// The pushed ref, e.g. `refs/heads/main`.
    pub git_ref: Option<String>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Verifies and parses a webhook request; `Ok(None)` for events that are not pushes (e.g. `ping`).
pub fn parse_push(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &WebhookSecrets,
) -> Result<Option<PushEvent>, WebhookError> {
    if let Some(event) = header(headers, "x-github-event") {
        if let Some(secret) = &secrets.github {
            verify_github(header(headers, "x-hub-signature-256"), body, secret)?;
        }
        if event != "push" {
            return Ok(None);
        }
        let payload = json_payload(body)?;
        let urls = urls_at(
            &payload,
            "/repository",
            &[
                "html_url",
                "clone_url",
                "ssh_url",
                "git_url",
                "url",
                "svn_url",
            ],
        );
        return Ok(Some(push(urls, &payload)));
    }
    if let Some(event) = header(headers, "x-gitlab-event") {
        if let Some(secret) = &secrets.gitlab {
            let token = header(headers, "x-gitlab-token")
                .ok_or(WebhookError::Unauthorized("X-Gitlab-Token is missing"))?;
            if !constant_time_eq(token.as_bytes(), secret.as_bytes()) {
                return Err(WebhookError::Unauthorized("X-Gitlab-Token does not match"));
            }
        }
        if !matches!(event, "Push Hook" | "Tag Push Hook") {
            return Ok(None);
        }
        let payload = json_payload(body)?;
        let mut urls = urls_at(
            &payload,
            "/project",
            &[
                "web_url",
                "git_http_url",
                "git_ssh_url",
                "http_url",
                "ssh_url",
            ],
        );
        urls.extend(urls_at(
            &payload,
            "/repository",
            &["url", "homepage", "git_http_url", "git_ssh_url"],
        ));
        return Ok(Some(push(urls, &payload)));
    }
    Err(WebhookError::BadRequest(
        "not a GitHub or GitLab event (no X-GitHub-Event or X-Gitlab-Event header)".into(),
    ))
}

fn push(repo_urls: Vec<String>, payload: &Value) -> PushEvent {
    PushEvent {
        repo_urls,
        git_ref: payload.get("ref").and_then(Value::as_str).map(String::from),
    }
}

fn urls_at(payload: &Value, pointer: &str, keys: &[&str]) -> Vec<String> {
    let Some(object) = payload.pointer(pointer) else {
        return Vec::new();
    };
    keys.iter()
        .filter_map(|k| object.get(*k).and_then(Value::as_str))
        .filter(|u| !u.is_empty())
        .map(String::from)
        .collect()
}

/// The JSON payload: the body, or GitHub's form encoding `payload=<url-encoded JSON>`.
fn json_payload(body: &[u8]) -> Result<Value, WebhookError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| WebhookError::BadRequest("the body is not UTF-8".into()))?;
    let json = match text.strip_prefix("payload=") {
        Some(encoded) => percent_decode(encoded)
            .ok_or_else(|| WebhookError::BadRequest("bad form encoding".into()))?,
        None => text.to_string(),
    };
    serde_json::from_str(&json)
        .map_err(|e| WebhookError::BadRequest(format!("the payload is not JSON: {e}")))
}

fn percent_decode(text: &str) -> Option<String> {
    let mut out = Vec::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn verify_github(signature: Option<&str>, body: &[u8], secret: &str) -> Result<(), WebhookError> {
    let signature =
        signature.ok_or(WebhookError::Unauthorized("X-Hub-Signature-256 is missing"))?;
    let hex = signature
        .strip_prefix("sha256=")
        .ok_or(WebhookError::Unauthorized(
            "X-Hub-Signature-256 is not sha256=<hex>",
        ))?;
    let tag = decode_hex(hex).ok_or(WebhookError::Unauthorized(
        "X-Hub-Signature-256 is not hexadecimal",
    ))?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    ring::hmac::verify(&key, body, &tag)
        .map_err(|_| WebhookError::Unauthorized("X-Hub-Signature-256 does not match the body"))
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A repository URL reduced to `host/path`, lower-case: scheme, user, port, `www.`, trailing
/// slash and `.git` removed, scp syntax (`git@host:org/repo`) read as a path.
pub fn normalize_repo_url(url: &str) -> String {
    let url = url.trim().to_ascii_lowercase();
    let (rest, scp_like) = match url.split_once("://") {
        Some((_, rest)) => (rest.to_string(), false),
        None => (url.clone(), true),
    };
    let rest = rest.rsplit_once('@').map_or(rest.as_str(), |(_, r)| r);
    let (host, path) = if scp_like {
        rest.split_once(':').unwrap_or((rest, ""))
    } else {
        rest.split_once('/').unwrap_or((rest, ""))
    };
    let host = host.split(':').next().unwrap_or(host);
    let host = host.strip_prefix("www.").unwrap_or(host);
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    format!("{host}/{}", path.trim_end_matches('/'))
}

/// When each repository (normalised URL) was last pushed, as told by webhooks to this process.
#[derive(Clone, Default)]
pub struct PushLog {
    pushes: Arc<Mutex<HashMap<String, Timestamp>>>,
}

impl PushLog {
    pub fn record(&self, repo_url: &str, at: Timestamp) {
        self.lock().insert(normalize_repo_url(repo_url), at);
    }

    pub fn pushed_at(&self, repo_url: &str) -> Option<Timestamp> {
        self.lock().get(&normalize_repo_url(repo_url)).copied()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Timestamp>> {
        // A poisoned map only means a panic while inserting; its content is still valid.
        self.pushes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the webhook handler needs.
#[derive(Clone)]
pub struct WebhookState {
    pub secrets: WebhookSecrets,
    pub applications: Store<Application>,
    pub pushes: PushLog,
    pub trigger: UnboundedSender<ObjectRef<Application>>,
}

/// The router serving [`WEBHOOK_PATH`].
pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route(WEBHOOK_PATH, post(handle))
        .with_state(state)
}

/// Serves the webhook on `addr` until the future is dropped.
pub async fn serve(addr: SocketAddr, state: WebhookState) -> std::io::Result<()> {
    if state.secrets.github.is_none() || state.secrets.gitlab.is_none() {
        tracing::warn!(
            github_verified = state.secrets.github.is_some(),
            gitlab_verified = state.secrets.gitlab.is_some(),
            "webhook events of a provider without a secret are accepted unverified (set {GITHUB_SECRET_ENV} / {GITLAB_SECRET_ENV})"
        );
    }
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, path = WEBHOOK_PATH, "serving the Git webhook");
    axum::serve(listener, router(state)).await
}

async fn handle(State(state): State<WebhookState>, headers: HeaderMap, body: Bytes) -> Response {
    let event = match parse_push(&headers, &body, &state.secrets) {
        Ok(Some(event)) => event,
        Ok(None) => return (StatusCode::OK, "ignored: not a push event").into_response(),
        Err(e @ WebhookError::Unauthorized(_)) => {
            tracing::warn!(error = %e, "webhook refused");
            return (StatusCode::UNAUTHORIZED, e.to_string()).into_response();
        }
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let pushed: Vec<String> = event
        .repo_urls
        .iter()
        .map(|u| normalize_repo_url(u))
        .collect();
    let now = Timestamp::now();
    let mut refreshed = 0;
    for app in state.applications.state() {
        let repo = &app.spec.source.repo_url;
        if !pushed.contains(&normalize_repo_url(repo)) {
            continue;
        }
        state.pushes.record(repo, now);
        if state
            .trigger
            .unbounded_send(ObjectRef::from_obj(app.as_ref()))
            .is_ok()
        {
            refreshed += 1;
        }
        tracing::info!(
            namespace = app.namespace().unwrap_or_default(),
            application = %app.name_any(),
            git_ref = event.git_ref.as_deref().unwrap_or_default(),
            "push event: refreshing"
        );
    }
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        serde_json::json!({"refreshed": refreshed}).to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde_json::json;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn github_body() -> Vec<u8> {
        json!({"ref": "refs/heads/main", "repository": {
            "html_url": "https://github.com/Org/Shop",
            "clone_url": "https://github.com/Org/Shop.git",
            "ssh_url": "git@github.com:Org/Shop.git"}})
        .to_string()
        .into_bytes()
    }

    fn sign(secret: &str, body: &[u8]) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        let tag = ring::hmac::sign(&key, body);
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256={hex}")
    }

    #[test]
    fn g2_github_push_with_a_valid_signature() {
        let body = github_body();
        let secrets = WebhookSecrets {
            github: Some("s3cret".into()),
            gitlab: None,
        };
        let signed = headers(&[
            ("x-github-event", "push"),
            ("x-hub-signature-256", &sign("s3cret", &body)),
        ]);
        let event = parse_push(&signed, &body, &secrets).unwrap().unwrap();
        assert_eq!(event.git_ref.as_deref(), Some("refs/heads/main"));
        assert_eq!(event.repo_urls.len(), 3);

        for bad in [sign("other", &body), "sha256=zz".into(), "md5=00".into()] {
            let h = headers(&[("x-github-event", "push"), ("x-hub-signature-256", &bad)]);
            assert!(matches!(
                parse_push(&h, &body, &secrets),
                Err(WebhookError::Unauthorized(_))
            ));
        }
        let unsigned = headers(&[("x-github-event", "push")]);
        assert_eq!(
            parse_push(&unsigned, &body, &secrets),
            Err(WebhookError::Unauthorized("X-Hub-Signature-256 is missing"))
        );
        // Without a configured secret, events are taken as they come.
        assert!(
            parse_push(&unsigned, &body, &WebhookSecrets::default())
                .unwrap()
                .is_some()
        );
        let ping = headers(&[("x-github-event", "ping")]);
        assert_eq!(
            parse_push(&ping, b"{}", &WebhookSecrets::default()),
            Ok(None)
        );
    }

    #[test]
    fn g2_github_form_encoded_payload() {
        let body = format!(
            "payload={}",
            "%7B%22repository%22%3A%7B%22clone_url%22%3A%22https%3A%2F%2Fgit.example%2Fa.git%22%7D%7D"
        );
        let h = headers(&[("x-github-event", "push")]);
        let event = parse_push(&h, body.as_bytes(), &WebhookSecrets::default())
            .unwrap()
            .unwrap();
        assert_eq!(event.repo_urls, ["https://git.example/a.git"]);
    }

    #[test]
    fn g2_gitlab_push_with_its_token() {
        let body = json!({"ref": "refs/heads/main",
            "project": {"web_url": "https://gitlab.example.com/team/shop",
                        "git_ssh_url": "git@gitlab.example.com:team/shop.git"}})
        .to_string();
        let secrets = WebhookSecrets {
            github: None,
            gitlab: Some("tok".into()),
        };
        let ok = headers(&[("x-gitlab-event", "Push Hook"), ("x-gitlab-token", "tok")]);
        let event = parse_push(&ok, body.as_bytes(), &secrets).unwrap().unwrap();
        assert_eq!(event.repo_urls.len(), 2);
        let wrong = headers(&[("x-gitlab-event", "Push Hook"), ("x-gitlab-token", "nope")]);
        assert!(parse_push(&wrong, body.as_bytes(), &secrets).is_err());
        let missing = headers(&[("x-gitlab-event", "Push Hook")]);
        assert!(parse_push(&missing, body.as_bytes(), &secrets).is_err());
        let other = headers(&[("x-gitlab-event", "Issue Hook"), ("x-gitlab-token", "tok")]);
        assert_eq!(parse_push(&other, b"{}", &secrets), Ok(None));
    }

    #[test]
    fn unknown_senders_and_bad_payloads_are_bad_requests() {
        assert!(matches!(
            parse_push(&HeaderMap::new(), b"{}", &WebhookSecrets::default()),
            Err(WebhookError::BadRequest(_))
        ));
        let h = headers(&[("x-github-event", "push")]);
        assert!(matches!(
            parse_push(&h, b"not json", &WebhookSecrets::default()),
            Err(WebhookError::BadRequest(_))
        ));
    }

    #[test]
    fn repo_urls_match_across_schemes_users_ports_and_suffixes() {
        let same = [
            "https://github.com/Org/Shop",
            "https://github.com/org/shop.git",
            "https://www.github.com/org/shop/",
            "git@github.com:org/shop.git",
            "ssh://git@github.com:22/org/shop.git",
            "http://user:token@github.com/org/shop",
        ];
        for url in same {
            assert_eq!(normalize_repo_url(url), "github.com/org/shop", "{url}");
        }
        assert_eq!(
            normalize_repo_url("git://127.0.0.1:9418/shop.git"),
            "127.0.0.1/shop"
        );
        assert_ne!(
            normalize_repo_url("https://github.com/org/shop"),
            normalize_repo_url("https://github.com/org/shop-api")
        );
    }

    #[test]
    fn push_log_is_keyed_by_normalised_url() {
        let log = PushLog::default();
        let at = Timestamp::from_second(1_000).unwrap();
        log.record("https://github.com/org/shop.git", at);
        assert_eq!(log.pushed_at("git@github.com:org/shop"), Some(at));
        assert_eq!(log.pushed_at("https://github.com/org/other"), None);
    }
}
