//! Git push webhooks (docs/behaviour.md G2): `POST /api/webhook` on `--webhook-addr` takes the push
//! events of GitHub, GitLab, Gitea/Forgejo, Bitbucket Cloud and Server, and Azure DevOps, and
//! refreshes at once the Applications whose `repoURL` is the pushed repository (compared without
//! scheme, user, port, `.git` suffix and trailing slash, as Argo CD does).
//!
//! Authentication ([`push`]), one environment variable per provider (in a pod, set them from a
//! Secret with `valueFrom.secretKeyRef`). The provider a request claims (its headers) is never
//! trusted on its own: the request is verified with that provider's secret, and a provider whose
//! variable is unset or empty is refused with 403, unless the controller runs with
//! `--webhook-insecure` (then its events are taken unverified: a push only triggers a refresh, the
//! revision still comes from Git).
//!
//! Bounds: a body over [`MAX_BODY_BYTES`] gets 413; a request not handled within
//! [`REQUEST_TIMEOUT`] gets 408; a connection lives at most [`CONNECTION_LIFETIME`] (headers that
//! trickle in are cut off); pushes of one repository start at most one fetch per
//! [`PUSH_DEBOUNCE`]: a push within it is served by one fetch at its end.

use std::collections::HashMap;
use std::future::Future as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::channel::mpsc::UnboundedSender;
use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::api::application::Application;

mod push;
pub use push::{
    AZURE_DEVOPS_PASSWORD_ENV, AZURE_DEVOPS_USERNAME_ENV, BITBUCKET_SERVER_SECRET_ENV,
    BITBUCKET_UUID_ENV, GITEA_SECRET_ENV, GITHUB_SECRET_ENV, GITLAB_SECRET_ENV, Provider,
    PushEvent, WebhookError, WebhookSecrets, parse_push,
};

/// The webhook's path.
pub const WEBHOOK_PATH: &str = "/api/webhook";
/// The largest body taken (GitHub caps its payloads at 25 MB, but a push of a few commits is a few
/// KiB; larger ones are refused with 413 before they are buffered).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How long reading the body and handling one request may take (408 after).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may stay open at all, headers and keep-alive included.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
/// Pushes of one repository start at most one fetch per this interval.
pub const PUSH_DEBOUNCE: Duration = Duration::from_secs(3);

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

/// When a repository's pushes may start a fetch, per [`PUSH_DEBOUNCE`] (PURE: `now` is given).
#[derive(Clone, Debug, Default)]
pub struct PushDebounce {
    repos: HashMap<String, DebounceState>,
}

#[derive(Clone, Copy, Debug)]
struct DebounceState {
    /// When pushes of the repository last started a refresh.
    last_fired: Timestamp,
    /// Whether a refresh is scheduled at the end of the interval (it serves every push until then).
    scheduled: bool,
}

/// What to do with a push.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushAdmission {
    /// Refresh now.
    Now,
    /// Refresh at this instant (the end of the interval); call [`PushDebounce::fire`] then.
    At(Timestamp),
    /// A refresh is already scheduled, and it fetches after this push.
    Covered,
}

impl PushDebounce {
    /// Decides for a push of `repo` (a normalised URL) at `now`.
    pub fn admit(&mut self, repo: &str, now: Timestamp, interval: Duration) -> PushAdmission {
        let Some(state) = self.repos.get_mut(repo) else {
            self.repos.insert(
                repo.to_string(),
                DebounceState {
                    last_fired: now,
                    scheduled: false,
                },
            );
            return PushAdmission::Now;
        };
        if state.scheduled {
            return PushAdmission::Covered;
        }
        let end = state.last_fired.checked_add(interval).unwrap_or(now);
        if now >= end {
            state.last_fired = now;
            PushAdmission::Now
        } else {
            state.scheduled = true;
            PushAdmission::At(end)
        }
    }

    /// Records the scheduled refresh of `repo` as started at `now`.
    pub fn fire(&mut self, repo: &str, now: Timestamp) {
        self.repos.insert(
            repo.to_string(),
            DebounceState {
                last_fired: now,
                scheduled: false,
            },
        );
    }
}

/// A pushed repository's Applications.
struct PushedRepo {
    /// The repository URL as one of them spells it.
    repo_url: String,
    applications: Vec<ObjectRef<Application>>,
}

/// What the webhook handler needs.
#[derive(Clone)]
pub struct WebhookState {
    pub secrets: WebhookSecrets,
    pub applications: Store<Application>,
    pub pushes: PushLog,
    pub trigger: UnboundedSender<ObjectRef<Application>>,
    /// Shared by every request; holds only repositories some Application tracks.
    pub debounce: Arc<Mutex<PushDebounce>>,
}

impl WebhookState {
    pub fn new(
        secrets: WebhookSecrets,
        applications: Store<Application>,
        pushes: PushLog,
        trigger: UnboundedSender<ObjectRef<Application>>,
    ) -> Self {
        Self {
            secrets,
            applications,
            pushes,
            trigger,
            debounce: Arc::default(),
        }
    }

    fn debounce(&self) -> std::sync::MutexGuard<'_, PushDebounce> {
        // Plain values; a panic elsewhere leaves them usable.
        self.debounce.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the push of the repository at `at` and queues its Applications; how many were
    /// queued.
    fn refresh(&self, pushed: &PushedRepo, at: Timestamp) -> usize {
        // Recorded under an Application's own URL: the log normalises what it is given.
        self.pushes.record(&pushed.repo_url, at);
        let apps = &pushed.applications;
        apps.iter()
            .filter(|app| self.trigger.unbounded_send((*app).clone()).is_ok())
            .count()
    }
}

/// The router serving [`WEBHOOK_PATH`], with its body limit and request timeout.
pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route(WEBHOOK_PATH, post(handle))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(within_request_timeout))
        .with_state(state)
}

async fn within_request_timeout(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_elapsed) => (
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request was not read within {}s",
                REQUEST_TIMEOUT.as_secs()
            ),
        )
            .into_response(),
    }
}

/// Serves the webhook on `addr` until the future is dropped.
pub async fn serve(addr: SocketAddr, state: WebhookState) -> std::io::Result<()> {
    let unverified = state.secrets.unconfigured();
    if !unverified.is_empty() {
        let unverified: Vec<String> = unverified.iter().map(|p| p.to_string()).collect();
        if state.secrets.insecure {
            tracing::warn!(providers = ?unverified, "--webhook-insecure: webhook events of these providers are accepted unverified");
        } else {
            tracing::info!(providers = ?unverified, "webhook events of these providers are refused (no secret configured for them)");
        }
    }
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, path = WEBHOOK_PATH, "serving the Git webhook");
    axum::serve(
        DeadlineListener {
            inner: listener,
            lifetime: CONNECTION_LIFETIME,
        },
        router(state),
    )
    .await
}

/// A TCP listener whose connections fail their reads and writes after `lifetime`: a client that
/// sends its headers or body a byte at a time cannot hold a connection (and its task) open.
struct DeadlineListener {
    inner: TcpListener,
    lifetime: Duration,
}

impl axum::serve::Listener for DeadlineListener {
    type Io = DeadlineStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        let stream = DeadlineStream {
            inner: stream,
            deadline: Box::pin(tokio::time::sleep(self.lifetime)),
        };
        (stream, addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

struct DeadlineStream {
    inner: TcpStream,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl DeadlineStream {
    fn expired(&mut self, cx: &mut Context<'_>) -> Option<std::io::Error> {
        self.deadline.as_mut().poll(cx).is_ready().then(|| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the webhook connection outlived its deadline",
            )
        })
    }
}

impl AsyncRead for DeadlineStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(e) = self.expired(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for DeadlineStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if let Some(e) = self.expired(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn handle(State(state): State<WebhookState>, headers: HeaderMap, body: Bytes) -> Response {
    let event = match parse_push(&headers, &body, &state.secrets) {
        Ok(Some(event)) => event,
        Ok(None) => return (StatusCode::OK, "ignored: not a push event").into_response(),
        Err(e) => {
            if e.status() != StatusCode::BAD_REQUEST {
                tracing::warn!(error = %e, "webhook refused");
            }
            return (e.status(), e.to_string()).into_response();
        }
    };
    let pushed: Vec<String> = event
        .repo_urls
        .iter()
        .map(|u| normalize_repo_url(u))
        .collect();
    // The Applications of each pushed repository, by normalised URL.
    let mut by_repo: HashMap<String, PushedRepo> = HashMap::new();
    for app in state.applications.state() {
        let repo = normalize_repo_url(&app.spec.source.repo_url);
        if !pushed.contains(&repo) {
            continue;
        }
        tracing::info!(
            namespace = app.namespace().unwrap_or_default(),
            application = %app.name_any(),
            git_ref = event.git_ref.as_deref().unwrap_or_default(),
            "push event: refreshing"
        );
        by_repo
            .entry(repo)
            .or_insert_with(|| PushedRepo {
                repo_url: app.spec.source.repo_url.clone(),
                applications: Vec::new(),
            })
            .applications
            .push(ObjectRef::from_obj(app.as_ref()));
    }
    let now = Timestamp::now();
    let (mut refreshed, mut debounced) = (0, 0);
    for (repo, pushed) in by_repo {
        let admission = state.debounce().admit(&repo, now, PUSH_DEBOUNCE);
        match admission {
            PushAdmission::Now => refreshed += state.refresh(&pushed, now),
            PushAdmission::At(at) => {
                debounced += pushed.applications.len();
                schedule_refresh(state.clone(), repo, pushed, at, now);
            }
            PushAdmission::Covered => debounced += pushed.applications.len(),
        }
    }
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        serde_json::json!({"refreshed": refreshed, "debounced": debounced}).to_string(),
    )
        .into_response()
}

/// Refreshes `apps` at `at`: one fetch for every push of the repository until then.
fn schedule_refresh(
    state: WebhookState,
    repo: String,
    pushed: PushedRepo,
    at: Timestamp,
    now: Timestamp,
) {
    let wait = now.duration_until(at).try_into().unwrap_or(Duration::ZERO);
    tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        // Read under the lock: a push admitted as Covered took the lock earlier, so it came
        // before `fired`, and the fetch this asks for (one starting after `fired`) includes it.
        let fired = {
            let mut debounce = state.debounce();
            let fired = Timestamp::now();
            debounce.fire(&repo, fired);
            fired
        };
        state.refresh(&pushed, fired);
    });
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

    fn insecure() -> WebhookSecrets {
        WebhookSecrets {
            insecure: true,
            ..WebhookSecrets::default()
        }
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
            ..WebhookSecrets::default()
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
        let ping = headers(&[("x-github-event", "ping")]);
        assert_eq!(parse_push(&ping, b"{}", &insecure()), Ok(None));
    }

    #[test]
    fn g2_github_form_encoded_payload() {
        let body = format!(
            "payload={}",
            "%7B%22repository%22%3A%7B%22clone_url%22%3A%22https%3A%2F%2Fgit.example%2Fa.git%22%7D%7D"
        );
        let h = headers(&[("x-github-event", "push")]);
        let event = parse_push(&h, body.as_bytes(), &insecure())
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
            gitlab: Some("tok".into()),
            ..WebhookSecrets::default()
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
            parse_push(&HeaderMap::new(), b"{}", &insecure()),
            Err(WebhookError::BadRequest(_))
        ));
        let h = headers(&[("x-github-event", "push")]);
        assert!(matches!(
            parse_push(&h, b"not json", &insecure()),
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

    #[test]
    fn a_provider_without_a_secret_is_refused_unless_insecure() {
        let github_only = WebhookSecrets {
            github: Some("s3cret".into()),
            ..WebhookSecrets::default()
        };
        let body = json!({"ref": "refs/heads/main",
            "project": {"web_url": "https://gitlab.example.com/team/shop"}})
        .to_string();
        // The header picks the provider, but the GitHub secret does not vouch for GitLab events.
        let gitlab = headers(&[("x-gitlab-event", "Push Hook")]);
        let refused = parse_push(&gitlab, body.as_bytes(), &github_only);
        assert_eq!(refused, Err(WebhookError::NotConfigured(Provider::GitLab)));
        let refused = refused.unwrap_err();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert!(
            refused.to_string().contains(GITLAB_SECRET_ENV)
                && refused.to_string().contains("--webhook-insecure"),
            "{refused}"
        );
        // Not even a non-push event of that provider is answered 200.
        let note = headers(&[("x-gitlab-event", "Note Hook")]);
        assert!(parse_push(&note, b"{}", &github_only).is_err());
        let github = headers(&[("x-github-event", "push")]);
        assert_eq!(
            parse_push(&github, &github_body(), &WebhookSecrets::default()),
            Err(WebhookError::NotConfigured(Provider::GitHub))
        );
        // With --webhook-insecure, the unconfigured provider is taken as it comes; the configured
        // one is still verified.
        let insecure_github_only = WebhookSecrets {
            insecure: true,
            ..github_only
        };
        assert!(
            parse_push(&gitlab, body.as_bytes(), &insecure_github_only)
                .unwrap()
                .is_some()
        );
        assert_eq!(
            parse_push(&github, &github_body(), &insecure_github_only),
            Err(WebhookError::Unauthorized("X-Hub-Signature-256 is missing"))
        );
        assert_eq!(
            WebhookError::Unauthorized("x").status(),
            StatusCode::UNAUTHORIZED
        );
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_000_000 + second).unwrap()
    }

    #[test]
    fn a_burst_of_pushes_of_one_repository_fetches_once_per_interval() {
        let interval = Duration::from_secs(3);
        let mut d = PushDebounce::default();
        assert_eq!(d.admit("git/a", at(0), interval), PushAdmission::Now);
        // Another repository is not held back by the first.
        assert_eq!(d.admit("git/b", at(1), interval), PushAdmission::Now);
        // Within the interval: one refresh at its end serves every push until then.
        assert_eq!(d.admit("git/a", at(1), interval), PushAdmission::At(at(3)));
        assert_eq!(d.admit("git/a", at(2), interval), PushAdmission::Covered);
        assert_eq!(d.admit("git/a", at(3), interval), PushAdmission::Covered);
        d.fire("git/a", at(3));
        // After the scheduled refresh, a new interval starts at it.
        assert_eq!(d.admit("git/a", at(4), interval), PushAdmission::At(at(6)));
        d.fire("git/a", at(6));
        assert_eq!(d.admit("git/a", at(9), interval), PushAdmission::Now);
        assert_eq!(d.admit("git/b", at(4), interval), PushAdmission::Now);
    }

    #[tokio::test]
    async fn a_client_trickling_its_headers_is_cut_off_at_the_connection_deadline() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let (applications, _writer) = kube::runtime::reflector::store::<Application>();
        let (trigger, _receiver) = futures::channel::mpsc::unbounded();
        let state = WebhookState::new(
            WebhookSecrets::default(),
            applications,
            PushLog::default(),
            trigger,
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(
                DeadlineListener {
                    inner: listener,
                    lifetime: Duration::from_millis(300),
                },
                router(state),
            )
            .await
        });
        let mut client = TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"POST /api/webhook HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        // The rest of the headers never comes: the server closes the connection, it does not wait.
        let mut rest = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the connection is still open after 5 s");

        // A whole request on a new connection is still served (403: no secret is configured).
        let mut client = TcpStream::connect(addr).await.unwrap();
        client
            .write_all(
                b"POST /api/webhook HTTP/1.1\r\nHost: x\r\nX-Gitlab-Event: Push Hook\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
            )
            .await
            .unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
        server.abort();
    }
}
