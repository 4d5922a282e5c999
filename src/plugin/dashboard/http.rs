//! The dashboard's HTTP surface: the embedded page, JSON views, a server-sent event stream of
//! changes, and the Rollout actions. Only requests addressed to the loopback listener by name
//! (`Host`) are served, and actions need the page's token, so neither another web site open in
//! the browser nor a DNS-rebinding name can drive the caller's credentials.

use std::convert::Infallible;
use std::time::Duration;
use subtle::ConstantTimeEq;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::{FutureExt, Stream};
use serde_json::{Value, json};

use super::cache::{Cache, Scope, all, find};
use super::views;
use crate::plugin::actions;
use crate::plugin::cli::{AbortArgs, PromoteArgs};
use crate::plugin::client::Kube;
use crate::plugin::control;
use crate::plugin::error::PluginError;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
/// The header an action must carry, with the token of the page this process served.
pub const TOKEN_HEADER: &str = "x-sluice-dashboard-token";
/// Changes closer together than this reach the browser as one event (a step touches many objects).
const SETTLE: Duration = Duration::from_millis(200);
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

#[derive(Clone)]
pub struct Dashboard {
    pub kube: Kube,
    pub scope: Scope,
    pub cache: Cache,
    /// A random value per process, put in the page and required on every action.
    pub token: String,
    /// The `Host` values this listener answers to: `127.0.0.1:PORT`, `localhost:PORT`.
    pub hosts: Vec<String>,
}

pub fn router(dashboard: Dashboard) -> Router {
    Router::new()
        .route("/", get(index))
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route("/api/overview", get(overview))
        .route("/api/applications/{namespace}/{name}", get(application))
        .route("/api/rollouts/{namespace}/{name}", get(rollout))
        .route("/api/events", get(events))
        .route("/api/stream", get(stream))
        .route("/api/rollouts/{namespace}/{name}/{action}", post(action))
        .layer(middleware::from_fn_with_state(dashboard.clone(), guard))
        .with_state(dashboard)
}

/// Refuses requests not addressed to this listener by its own name, and actions without the
/// page's token or from another origin; sets the headers that keep the page self-contained.
async fn guard(
    State(d): State<Dashboard>,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !d.hosts.iter().any(|h| h == host) {
        return refuse(StatusCode::MISDIRECTED_REQUEST, "unknown Host");
    }
    if request.method() != axum::http::Method::GET
        && let Err(why) = check_action_headers(headers, host, &d.token)
    {
        return refuse(StatusCode::FORBIDDEN, why);
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// An action must carry the token, and, when the browser names an origin, come from this page's.
pub fn check_action_headers(
    headers: &HeaderMap,
    host: &str,
    token: &str,
) -> Result<(), &'static str> {
    let given = headers
        .get(TOKEN_HEADER)
        .and_then(|t| t.to_str().ok())
        .unwrap_or_default();
    if !bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        return Err("missing or wrong dashboard token");
    }
    match headers.get(header::ORIGIN).map(|o| o.to_str()) {
        None => Ok(()),
        Some(Ok(origin)) if origin == format!("http://{host}") => Ok(()),
        Some(_) => Err("cross-origin request"),
    }
}

fn refuse(status: StatusCode, why: &str) -> Response {
    json_response(status, &json!({"error": why}))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn index(State(d): State<Dashboard>) -> Response {
    let scope = match &d.scope {
        Scope::Namespace(ns) => ns.clone(),
        Scope::All => String::new(),
    };
    let page = INDEX_HTML
        .replace("{{token}}", &d.token)
        .replace("{{scope}}", &html_attribute(&scope));
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        page,
    )
        .into_response()
}

/// A namespace name is a DNS label, but the page's attribute is escaped anyway.
fn html_attribute(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

async fn overview(State(d): State<Dashboard>) -> Response {
    let cache = &d.cache;
    let loading: Vec<&str> = [
        ("Application", ready(&cache.applications)),
        ("Rollout", ready(&cache.rollouts)),
    ]
    .into_iter()
    .filter(|(_, ready)| !ready)
    .map(|(kind, _)| kind)
    .collect();
    ok(json!({
        "scope": match &d.scope { Scope::Namespace(ns) => json!(ns), Scope::All => Value::Null },
        "applications": all(&cache.applications).iter().map(views::application_summary).collect::<Vec<_>>(),
        "rollouts": all(&cache.rollouts).iter().map(views::rollout_summary).collect::<Vec<_>>(),
        "loading": loading,
        "errors": cache.errors(),
    }))
}

fn ok(body: Value) -> Response {
    json_response(StatusCode::OK, &body)
}

/// A JSON body (axum's `Json` would need another feature of the crate for this one use).
fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

fn ready<K: kube::Resource + Clone>(store: &kube::runtime::reflector::Store<K>) -> bool
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store.wait_until_ready().now_or_never().is_some()
}

async fn application(
    State(d): State<Dashboard>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    match find(&d.cache.applications, &namespace, &name) {
        Some(app) => ok(views::application_detail(
            &app,
            &all(&d.cache.replica_sets),
            &all(&d.cache.pods),
        )),
        None => not_found("Application", &namespace, &name),
    }
}

async fn rollout(
    State(d): State<Dashboard>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    match d.cache.rollout_objects(&namespace, &name) {
        Some(objects) => ok(views::rollout_detail(&objects)),
        None => not_found("Rollout", &namespace, &name),
    }
}

fn not_found(kind: &str, namespace: &str, name: &str) -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"error": format!("{kind} {namespace}/{name} not found")}),
    )
}

async fn events(State(d): State<Dashboard>) -> Response {
    ok(json!({"events": views::timeline(&all(&d.cache.events))}))
}

/// One `change` event each time the watched objects change (settled), so a page re-reads its view
/// only when there is something new; a keep-alive comment keeps idle connections open.
async fn stream(
    State(d): State<Dashboard>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let changes = d.cache.changes();
    let stream = futures::stream::unfold(changes, |mut changes| async move {
        changes.changed().await.ok()?;
        tokio::time::sleep(SETTLE).await;
        let generation = *changes.borrow_and_update();
        Some((
            Ok(SseEvent::default()
                .event("change")
                .data(generation.to_string())),
            changes,
        ))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// The Rollout actions, each exactly the plugin command of the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Promote,
    PromoteFull,
    Abort,
    AbortAndRevert,
    Retry,
    Pause,
    Resume,
    Restart,
}

impl Action {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "promote" => Action::Promote,
            "promote-full" => Action::PromoteFull,
            "abort" => Action::Abort,
            "abort-revert" => Action::AbortAndRevert,
            "retry" => Action::Retry,
            "pause" => Action::Pause,
            "resume" => Action::Resume,
            "restart" => Action::Restart,
            _ => return None,
        })
    }

    async fn run(self, kube: &Kube, name: &str, out: &mut Vec<u8>) -> Result<u8, PluginError> {
        let name = name.to_string();
        match self {
            Action::Promote | Action::PromoteFull => {
                let args = PromoteArgs {
                    name,
                    full: self == Action::PromoteFull,
                };
                control::promote(kube, &args, out).await
            }
            Action::Abort | Action::AbortAndRevert => {
                let args = AbortArgs {
                    name,
                    revert: self == Action::AbortAndRevert,
                };
                control::abort(kube, &args, out).await
            }
            Action::Retry => control::simple(kube, &name, actions::retry(), "retried", out).await,
            Action::Pause => control::simple(kube, &name, actions::pause(), "paused", out).await,
            Action::Resume => control::simple(kube, &name, actions::resume(), "resumed", out).await,
            Action::Restart => control::restart(kube, &name, out).await,
        }
    }
}

async fn action(
    State(d): State<Dashboard>,
    Path((namespace, name, action)): Path<(String, String, String)>,
) -> Response {
    let Some(action) = Action::parse(&action) else {
        return refuse(StatusCode::NOT_FOUND, "unknown action");
    };
    if !d.scope.contains(&namespace) {
        return not_found("Rollout", &namespace, &name);
    }
    let kube = Kube {
        namespace,
        ..d.kube.clone()
    };
    let mut out = Vec::new();
    match action.run(&kube, &name, &mut out).await {
        Ok(_) => ok(json!({"message": String::from_utf8_lossy(&out).trim()})),
        Err(e) => json_response(error_status(&e), &json!({"error": e.one_line()})),
    }
}

fn error_status(e: &PluginError) -> StatusCode {
    match e {
        PluginError::NotFound { .. } | PluginError::WrongKind { .. } => StatusCode::NOT_FOUND,
        PluginError::Forbidden(_) | PluginError::Unauthorized { .. } => StatusCode::FORBIDDEN,
        PluginError::Conflict { .. } => StatusCode::CONFLICT,
        PluginError::Invalid(_) | PluginError::Unsupported(_) => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::BAD_GATEWAY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (key, value) in pairs {
            map.insert(*key, HeaderValue::from_str(value).expect("header"));
        }
        map
    }

    #[test]
    fn actions_need_the_token_and_this_origin() {
        let host = "127.0.0.1:3100";
        let token = "0123abcd";
        type Headers<'a> = &'a [(&'static str, &'a str)];
        let cases: [(Headers, Result<(), &str>); 6] = [
            (&[(TOKEN_HEADER, token)], Ok(())),
            (
                &[(TOKEN_HEADER, token), ("origin", "http://127.0.0.1:3100")],
                Ok(()),
            ),
            (&[], Err("missing or wrong dashboard token")),
            (
                &[(TOKEN_HEADER, "0123abce")],
                Err("missing or wrong dashboard token"),
            ),
            (
                &[(TOKEN_HEADER, token), ("origin", "http://evil.example")],
                Err("cross-origin request"),
            ),
            (
                &[(TOKEN_HEADER, token), ("origin", "null")],
                Err("cross-origin request"),
            ),
        ];
        for (given, expected) in cases {
            assert_eq!(
                check_action_headers(&headers(given), host, token),
                expected,
                "{given:?}"
            );
        }
    }

    #[test]
    fn the_buttons_are_the_plugin_commands() {
        let names = [
            "promote",
            "promote-full",
            "abort",
            "abort-revert",
            "retry",
            "pause",
            "resume",
            "restart",
        ];
        for name in names {
            assert!(Action::parse(name).is_some(), "{name}");
        }
        assert_eq!(Action::parse("delete"), None);
        assert_eq!(Action::parse(""), None);
    }
}
