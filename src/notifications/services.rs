//! Destinations: what a template becomes for a service ([`build`], PURE) and its delivery over
//! HTTP ([`Sender`]), with a timeout, bounded bodies and bounded retries with backoff.
//!
//! Secret references (`$key`) are substituted only here, just before the request is made, and the
//! errors never carry a URL (a Slack incoming-webhook URL *is* a credential) or a header value.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value, json};
use thiserror::Error;

use super::config::{MissingSecret, NotificationTemplate, SLACK_API_URL, Service, resolve_secrets};

/// The largest request body sent.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// The most of an answer read (Slack's `{"ok": ...}`; other answers are not read at all).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// One request to make, before secrets are substituted.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Webhook {
        method: String,
        /// Appended to the service's URL (Argo's `path`).
        path: String,
        body: String,
        /// `application/json` for the built-in JSON body; a template's own body is sent with the
        /// service's headers only, as Argo does.
        json: bool,
    },
    Slack {
        body: Value,
    },
}

/// Why a template cannot become a request for a service.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BuildError {
    #[error("slack.{field} is not a JSON list once rendered: {message}")]
    SlackJson {
        field: &'static str,
        message: String,
    },
    #[error("a Slack service with a token needs a channel as recipient")]
    NoChannel,
    #[error("the rendered body is {len} bytes, more than the {MAX_BODY_BYTES} allowed")]
    TooLarge { len: usize },
}

/// The request for `template` rendered with `ctx`, for the service `name`.
pub fn build(
    name: &str,
    service: &Service,
    template: &NotificationTemplate,
    ctx: &Value,
    recipient: &str,
) -> Result<Payload, BuildError> {
    let payload = match service {
        Service::Webhook(_) => webhook_payload(name, template, ctx),
        Service::Slack(slack) => {
            let mut body = slack_body(template, ctx)?;
            if slack.token.is_some() {
                if recipient.is_empty() {
                    return Err(BuildError::NoChannel);
                }
                body["channel"] = recipient.into();
            }
            if let Some(username) = &slack.username {
                body["username"] = username.as_str().into();
            }
            if let Some(icon) = &slack.icon {
                let key = if icon.starts_with(':') {
                    "icon_emoji"
                } else {
                    "icon_url"
                };
                body[key] = icon.as_str().into();
            }
            Payload::Slack { body }
        }
    };
    let len = match &payload {
        Payload::Webhook { body, .. } => body.len(),
        Payload::Slack { body } => body.to_string().len(),
    };
    if len > MAX_BODY_BYTES {
        return Err(BuildError::TooLarge { len });
    }
    Ok(payload)
}

/// The template's own `webhook.<name>` entry, else a JSON body naming the object (Sluice's
/// built-in form, for every template): `trigger`, `kind`, `namespace`, `name`, the template's
/// fields, `title` and `message`.
fn webhook_payload(name: &str, template: &NotificationTemplate, ctx: &Value) -> Payload {
    if let Some(own) = template.webhook.get(name) {
        return Payload::Webhook {
            method: own.method.clone(),
            path: own.path.render(ctx),
            body: own.body.render(ctx),
            json: false,
        };
    }
    let mut body = Map::new();
    for key in ["trigger", "kind", "namespace", "name"] {
        body.insert(key.to_string(), ctx[key].clone());
    }
    for (key, value) in &template.fields {
        body.insert(key.clone(), value.render(ctx).into());
    }
    if !template.title.is_empty() {
        body.insert("title".to_string(), template.title.render(ctx).into());
    }
    body.insert("message".to_string(), template.message.render(ctx).into());
    Payload::Webhook {
        method: "POST".to_string(),
        path: String::new(),
        body: Value::Object(body).to_string(),
        json: true,
    }
}

/// Slack's message JSON (`text`, `attachments`, `blocks`), the form both incoming webhooks and
/// `chat.postMessage` take.
fn slack_body(template: &NotificationTemplate, ctx: &Value) -> Result<Value, BuildError> {
    let mut body = json!({"text": template.message.render(ctx)});
    if !template.slack.attachments.is_empty() {
        body["attachments"] = json_list("attachments", &template.slack.attachments.render(ctx))?;
    } else if !template.fields.is_empty() {
        let fields: Vec<Value> = template
            .fields
            .iter()
            .map(|(title, value)| (title, value.render(ctx)))
            .filter(|(_, value)| !value.is_empty())
            .map(|(title, value)| json!({"title": title, "value": value, "short": true}))
            .collect();
        let mut attachment = json!({"title": template.title.render(ctx), "fields": fields});
        if let Some(color) = &template.color {
            attachment["color"] = color.as_str().into();
        }
        body["attachments"] = json!([attachment]);
    }
    if !template.slack.blocks.is_empty() {
        body["blocks"] = json_list("blocks", &template.slack.blocks.render(ctx))?;
    }
    Ok(body)
}

fn json_list(field: &'static str, text: &str) -> Result<Value, BuildError> {
    let error = |message: String| BuildError::SlackJson {
        field,
        message: crate::reconcile_guard::truncate(&message, 200),
    };
    match serde_json::from_str::<Value>(text) {
        Ok(list @ Value::Array(_)) => Ok(list),
        Ok(other) => Err(error(format!("got {}", json_kind(&other)))),
        Err(e) => Err(error(e.to_string())),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Why a delivery failed. Never carries a URL, header or secret.
#[derive(Debug, Error)]
pub enum SendError {
    #[error("the {what} is not an http(s) URL")]
    BadUrl { what: &'static str },
    #[error("the payload does not fit the service (a {service} payload for a {payload} service)")]
    Mismatch {
        service: &'static str,
        payload: &'static str,
    },
    #[error("answered HTTP {status}")]
    Status { status: u16 },
    #[error("Slack answered ok=false: {error}")]
    Slack { error: String },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Transport(String),
    #[error("cannot build the request: {0}")]
    Request(String),
}

impl SendError {
    /// Whether another attempt may succeed (network trouble, 5xx, 429), rather than repeat a
    /// refusal.
    fn retryable(&self) -> bool {
        match self {
            SendError::Status { status } => *status >= 500 || *status == 429,
            SendError::Timeout(_) | SendError::Transport(_) => true,
            SendError::Slack { error } => error == "ratelimited",
            _ => false,
        }
    }
}

/// Attempts and delays of one delivery.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    /// Doubled after each failed attempt.
    pub first_delay: Duration,
    /// Of each attempt, the answer included.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            first_delay: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Sends payloads; cheap to clone.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    retry: RetryPolicy,
}

/// A request ready to go, secrets substituted.
struct Prepared {
    method: reqwest::Method,
    url: String,
    headers: Vec<(String, String)>,
    body: String,
    /// Slack's Web API answers 200 with `{"ok": false}` on refusal.
    slack_api: bool,
}

impl Sender {
    pub fn new(retry: RetryPolicy) -> Result<Self, SendError> {
        crate::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            // A redirect could carry the request (and its headers) to another host.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SendError::Request(e.without_url().to_string()))?;
        Ok(Self { client, retry })
    }

    /// Delivers `payload` through `service`, trying up to `attempts` times with a doubling delay.
    /// `missing` collects the `$key` references the Secret lacks.
    pub async fn send(
        &self,
        service: &Service,
        payload: &Payload,
        secret: &BTreeMap<String, String>,
        missing: &mut Vec<MissingSecret>,
    ) -> Result<(), SendError> {
        let prepared = prepare(service, payload, secret, missing)?;
        let mut delay = self.retry.first_delay;
        let mut attempt = 1;
        loop {
            match self.attempt(&prepared).await {
                Ok(()) => return Ok(()),
                Err(e) if e.retryable() && attempt < self.retry.attempts => {
                    tracing::debug!(attempt, error = %e, "notification not delivered; retrying");
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn attempt(&self, request: &Prepared) -> Result<(), SendError> {
        let mut builder = self
            .client
            .request(request.method.clone(), &request.url)
            .timeout(self.retry.timeout)
            .body(request.body.clone());
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let exchange = async {
            let response = builder.send().await?;
            let status = response.status().as_u16();
            let answer = if request.slack_api {
                read_bounded(response).await?
            } else {
                String::new()
            };
            Ok::<_, reqwest::Error>((status, answer))
        };
        let (status, answer) = match tokio::time::timeout(self.retry.timeout, exchange).await {
            Err(_) => return Err(SendError::Timeout(self.retry.timeout)),
            Ok(Err(e)) if e.is_timeout() => return Err(SendError::Timeout(self.retry.timeout)),
            Ok(Err(e)) => return Err(SendError::Transport(transport_message(e))),
            Ok(Ok(answer)) => answer,
        };
        if !(200..300).contains(&status) {
            return Err(SendError::Status { status });
        }
        if request.slack_api {
            return slack_answer(&answer);
        }
        Ok(())
    }
}

/// A transport error without its URL, with its causes (e.g. "connection refused").
fn transport_message(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    crate::reconcile_guard::truncate(&message, 300)
}

async fn read_bounded(mut response: reqwest::Response) -> Result<String, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_ANSWER_BYTES.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_ANSWER_BYTES {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn slack_answer(answer: &str) -> Result<(), SendError> {
    let parsed: Value = serde_json::from_str(answer).unwrap_or(Value::Null);
    if parsed["ok"] == true {
        return Ok(());
    }
    let error = parsed["error"].as_str().unwrap_or("unreadable answer");
    Err(SendError::Slack {
        error: crate::reconcile_guard::truncate(error, 100),
    })
}

fn prepare(
    service: &Service,
    payload: &Payload,
    secret: &BTreeMap<String, String>,
    missing: &mut Vec<MissingSecret>,
) -> Result<Prepared, SendError> {
    match (service, payload) {
        (
            Service::Webhook(hook),
            Payload::Webhook {
                method,
                path,
                body,
                json,
            },
        ) => {
            let base = resolve_secrets(&hook.url, secret, missing);
            let url = format!("{}{path}", base);
            check_url(&url, "webhook URL")?;
            let mut headers: Vec<(String, String)> = hook
                .headers
                .iter()
                .map(|h| (h.name.clone(), resolve_secrets(&h.value, secret, missing)))
                .collect();
            if *json
                && !headers
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            {
                headers.push(("Content-Type".to_string(), "application/json".to_string()));
            }
            let method = reqwest::Method::from_bytes(method.as_bytes())
                .map_err(|_| SendError::Request(format!("bad method {method:?}")))?;
            Ok(Prepared {
                method,
                url,
                headers,
                body: body.clone(),
                slack_api: false,
            })
        }
        (Service::Slack(slack), Payload::Slack { body }) => {
            let mut headers = vec![(
                "Content-Type".to_string(),
                "application/json; charset=utf-8".to_string(),
            )];
            let (url, slack_api) = match (&slack.webhook_url, &slack.token) {
                (Some(hook), _) => (resolve_secrets(hook, secret, missing), false),
                (None, Some(token)) => {
                    let token = resolve_secrets(token, secret, missing);
                    headers.push(("Authorization".to_string(), format!("Bearer {token}")));
                    let api = slack.api_url.as_deref().unwrap_or(SLACK_API_URL);
                    let api = resolve_secrets(api, secret, missing);
                    (
                        format!("{}/chat.postMessage", api.trim_end_matches('/')),
                        true,
                    )
                }
                (None, None) => return Err(SendError::BadUrl { what: "Slack URL" }),
            };
            check_url(&url, "Slack URL")?;
            Ok(Prepared {
                method: reqwest::Method::POST,
                url,
                headers,
                body: body.to_string(),
                slack_api,
            })
        }
        (service, payload) => Err(SendError::Mismatch {
            service: service.kind(),
            payload: match payload {
                Payload::Webhook { .. } => "webhook",
                Payload::Slack { .. } => "slack",
            },
        }),
    }
}

fn check_url(url: &str, what: &'static str) -> Result<(), SendError> {
    match reqwest::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => Ok(()),
        _ => Err(SendError::BadUrl { what }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notifications::config::{SlackService, WebhookService, parse};
    use crate::notifications::template::Template;

    fn template(message: &str) -> NotificationTemplate {
        NotificationTemplate {
            message: Template::parse(message).unwrap(),
            ..NotificationTemplate::default()
        }
    }

    fn ctx() -> Value {
        json!({"trigger": "on-x", "kind": "Rollout", "namespace": "shop", "name": "web",
               "rollout": {"metadata": {"name": "web"}}})
    }

    fn webhook() -> Service {
        Service::Webhook(WebhookService {
            url: "http://127.0.0.1:1/hook".to_string(),
            headers: vec![],
        })
    }

    #[test]
    fn a_template_without_its_own_webhook_entry_posts_json_naming_the_object() {
        let mut t = template("Rollout {{.name}} done");
        t.fields = vec![("revision".to_string(), Template::parse("abc").unwrap())];
        let Payload::Webhook {
            method,
            path,
            body,
            json,
        } = build("ops", &webhook(), &t, &ctx(), "").unwrap()
        else {
            panic!("webhook")
        };
        assert_eq!((method.as_str(), path.as_str(), json), ("POST", "", true));
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            body,
            json!({"trigger": "on-x", "kind": "Rollout", "namespace": "shop", "name": "web",
                   "revision": "abc", "message": "Rollout web done"})
        );
    }

    #[test]
    fn a_templates_own_webhook_entry_is_sent_as_written() {
        let (config, problems) = parse(&BTreeMap::from([(
            "template.t".to_string(),
            "webhook:\n  ops:\n    method: PUT\n    path: /r/{{.name}}\n    body: 'name={{.name}}'\n"
                .to_string(),
        )]));
        assert!(problems.is_empty(), "{problems:?}");
        let payload = build("ops", &webhook(), &config.templates["t"], &ctx(), "").unwrap();
        assert_eq!(
            payload,
            Payload::Webhook {
                method: "PUT".to_string(),
                path: "/r/web".to_string(),
                body: "name=web".to_string(),
                json: false
            }
        );
        // Another webhook service of the same template gets the JSON form.
        let other = build("audit", &webhook(), &config.templates["t"], &ctx(), "").unwrap();
        assert!(matches!(other, Payload::Webhook { json: true, .. }));
    }

    /// Slack's incoming-webhook JSON: `text`, and `attachments` / `blocks` as lists.
    #[test]
    fn slack_payloads_are_slack_message_json() {
        let hook = Service::Slack(SlackService {
            webhook_url: Some("$url".to_string()),
            ..SlackService::default()
        });
        let mut t = template("Rollout {{.name}} aborted");
        t.title = Template::parse("Rollout shop/{{.name}}").unwrap();
        t.color = Some("danger".to_string());
        t.fields = vec![
            ("revision".to_string(), Template::parse("def").unwrap()),
            ("empty".to_string(), Template::parse("").unwrap()),
        ];
        let Payload::Slack { body } = build("slack", &hook, &t, &ctx(), "").unwrap() else {
            panic!("slack")
        };
        assert_eq!(
            body,
            json!({"text": "Rollout web aborted", "attachments": [{"title": "Rollout shop/web",
                "color": "danger", "fields": [{"title": "revision", "value": "def", "short": true}]}]})
        );

        let mut own = template("hi");
        own.slack.attachments = Template::parse(r#"[{"title": "{{.name}}"}]"#).unwrap();
        own.slack.blocks = Template::parse(
            r#"[{"type": "section", "text": {"type": "mrkdwn", "text": "*{{.name}}*"}}]"#,
        )
        .unwrap();
        let Payload::Slack { body } = build("slack", &hook, &own, &ctx(), "").unwrap() else {
            panic!("slack")
        };
        assert_eq!(body["attachments"], json!([{"title": "web"}]));
        assert_eq!(body["blocks"][0]["text"]["text"], "*web*");

        own.slack.blocks = Template::parse(r#"{"not": "a list"}"#).unwrap();
        assert_eq!(
            build("slack", &hook, &own, &ctx(), ""),
            Err(BuildError::SlackJson {
                field: "blocks",
                message: "got an object".to_string()
            })
        );
    }

    #[test]
    fn a_slack_token_posts_to_the_recipient_channel() {
        let bot = Service::Slack(SlackService {
            token: Some("$t".to_string()),
            username: Some("sluice".to_string()),
            icon: Some(":rocket:".to_string()),
            ..SlackService::default()
        });
        let t = template("hi");
        assert_eq!(
            build("slack", &bot, &t, &ctx(), ""),
            Err(BuildError::NoChannel)
        );
        let Payload::Slack { body } = build("slack", &bot, &t, &ctx(), "#deploys").unwrap() else {
            panic!("slack")
        };
        assert_eq!(
            body,
            json!({"text": "hi", "channel": "#deploys", "username": "sluice", "icon_emoji": ":rocket:"})
        );
        let secret = BTreeMap::from([("t".to_string(), "xoxb-1".to_string())]);
        let prepared = prepare(&bot, &Payload::Slack { body }, &secret, &mut Vec::new()).unwrap();
        assert_eq!(prepared.url, "https://slack.com/api/chat.postMessage");
        assert!(prepared.slack_api);
        assert!(
            prepared
                .headers
                .contains(&("Authorization".to_string(), "Bearer xoxb-1".to_string()))
        );
    }

    #[test]
    fn secrets_are_substituted_into_url_and_headers_only_when_sending() {
        let service = Service::Webhook(WebhookService {
            url: "$base".to_string(),
            headers: vec![crate::notifications::config::Header {
                name: "Authorization".to_string(),
                value: "Bearer $token".to_string(),
            }],
        });
        let secret = BTreeMap::from([
            ("base".to_string(), "http://127.0.0.1:9/api".to_string()),
            ("token".to_string(), "s3cr3t".to_string()),
        ]);
        let payload = Payload::Webhook {
            method: "POST".to_string(),
            path: "/x".to_string(),
            body: "{}".to_string(),
            json: true,
        };
        let prepared = prepare(&service, &payload, &secret, &mut Vec::new()).unwrap();
        assert_eq!(prepared.url, "http://127.0.0.1:9/api/x");
        assert_eq!(
            prepared.headers,
            vec![
                ("Authorization".to_string(), "Bearer s3cr3t".to_string()),
                ("Content-Type".to_string(), "application/json".to_string())
            ]
        );
        // Without the Secret the URL is no URL: refused, and the message names no value.
        let mut missing = Vec::new();
        let err = prepare(&service, &payload, &BTreeMap::new(), &mut missing)
            .err()
            .unwrap();
        assert_eq!(err.to_string(), "the webhook URL is not an http(s) URL");
        assert_eq!(missing, vec![MissingSecret("base".to_string())]);
    }

    #[test]
    fn only_transient_failures_are_retried() {
        assert!(SendError::Status { status: 503 }.retryable());
        assert!(SendError::Status { status: 429 }.retryable());
        assert!(!SendError::Status { status: 404 }.retryable());
        assert!(SendError::Timeout(Duration::from_secs(1)).retryable());
        assert!(!SendError::BadUrl { what: "x" }.retryable());
        assert!(slack_answer(r#"{"ok": true}"#).is_ok());
        assert_eq!(
            slack_answer(r#"{"ok": false, "error": "channel_not_found"}"#)
                .unwrap_err()
                .to_string(),
            "Slack answered ok=false: channel_not_found"
        );
    }

    /// A receiver on 127.0.0.1 answering each request with the next status of `statuses` and no
    /// body; returns its URL and the requests it got (head and body).
    async fn receiver(
        statuses: Vec<u16>,
    ) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        answering(statuses.into_iter().map(|s| (s, String::new())).collect()).await
    }

    /// [`receiver`] answering each request with the next status and body of `answers`.
    async fn answering(
        answers: Vec<(u16, String)>,
    ) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = got.clone();
        tokio::spawn(async move {
            for (status, body) in answers {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // Head, then as many body bytes as Content-Length says.
                loop {
                    let n = socket.read(&mut buf).await.unwrap();
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if request.len() >= end + 4 + len || n == 0 {
                            break;
                        }
                    }
                }
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&request).to_string());
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                socket.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        (url, got)
    }

    fn quick() -> Sender {
        Sender::new(RetryPolicy {
            attempts: 3,
            first_delay: Duration::from_millis(10),
            timeout: Duration::from_secs(5),
        })
        .unwrap()
    }

    fn hook(url: &str) -> Service {
        Service::Webhook(WebhookService {
            url: url.to_string(),
            headers: vec![crate::notifications::config::Header {
                name: "X-Token".to_string(),
                value: "$token".to_string(),
            }],
        })
    }

    fn post(body: &str) -> Payload {
        Payload::Webhook {
            method: "POST".to_string(),
            path: "/hook".to_string(),
            body: body.to_string(),
            json: true,
        }
    }

    #[tokio::test]
    async fn a_transient_failure_is_retried_until_delivered() {
        let (url, got) = receiver(vec![503, 500, 204]).await;
        let secret = BTreeMap::from([("token".to_string(), "t0k".to_string())]);
        quick()
            .send(&hook(&url), &post(r#"{"a":1}"#), &secret, &mut Vec::new())
            .await
            .unwrap();
        let got = got.lock().unwrap();
        assert_eq!(got.len(), 3);
        assert!(got[2].starts_with("POST /hook HTTP/1.1"), "{}", got[2]);
        assert!(
            got[2].to_ascii_lowercase().contains("x-token: t0k"),
            "{}",
            got[2]
        );
        assert!(
            got[2]
                .to_ascii_lowercase()
                .contains("content-type: application/json")
        );
        assert!(got[2].ends_with(r#"{"a":1}"#), "{}", got[2]);
    }

    #[tokio::test]
    async fn retries_are_bounded_and_refusals_are_not_retried() {
        let (url, got) = receiver(vec![500, 500, 500, 500]).await;
        let err = quick()
            .send(&hook(&url), &post("{}"), &BTreeMap::new(), &mut Vec::new())
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "answered HTTP 500");
        assert_eq!(got.lock().unwrap().len(), 3);

        let (url, got) = receiver(vec![404, 204]).await;
        let err = quick()
            .send(&hook(&url), &post("{}"), &BTreeMap::new(), &mut Vec::new())
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "answered HTTP 404");
        assert_eq!(got.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn transport_errors_name_no_url() {
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/secret-path-token");
        let sender = Sender::new(RetryPolicy {
            attempts: 1,
            first_delay: Duration::from_millis(1),
            timeout: Duration::from_secs(2),
        })
        .unwrap();
        let err = sender
            .send(&hook(&url), &post("{}"), &BTreeMap::new(), &mut Vec::new())
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, SendError::Transport(_)), "{text}");
        assert!(
            !text.contains("secret-path-token") && !text.contains("127.0.0.1"),
            "{text}"
        );
    }

    /// Slack's Web API with a token: the bearer token from the Secret, the channel from the
    /// recipient, and `{"ok": false}` (which Slack answers with HTTP 200) is a failure.
    #[tokio::test]
    async fn a_slack_token_posts_to_chat_post_message_and_reads_its_answer() {
        let (url, got) = answering(vec![
            (200, r#"{"ok": true, "ts": "1.2"}"#.to_string()),
            (
                200,
                r#"{"ok": false, "error": "channel_not_found"}"#.to_string(),
            ),
        ])
        .await;
        let bot = Service::Slack(SlackService {
            token: Some("$slack-token".to_string()),
            api_url: Some(format!("{url}/api/")),
            ..SlackService::default()
        });
        let secret = BTreeMap::from([("slack-token".to_string(), "xoxb-123".to_string())]);
        let payload = build("slack", &bot, &template("hi {{.name}}"), &ctx(), "#deploys").unwrap();
        quick()
            .send(&bot, &payload, &secret, &mut Vec::new())
            .await
            .unwrap();
        let err = quick()
            .send(&bot, &payload, &secret, &mut Vec::new())
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Slack answered ok=false: channel_not_found"
        );
        let got = got.lock().unwrap();
        assert_eq!(got.len(), 2, "a refusal is not retried");
        let request = &got[0];
        assert!(
            request.starts_with("POST /api/chat.postMessage HTTP/1.1"),
            "{request}"
        );
        assert!(
            request
                .to_ascii_lowercase()
                .contains("authorization: bearer xoxb-123")
        );
        let body: Value = serde_json::from_str(request.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body, json!({"text": "hi web", "channel": "#deploys"}));
    }
}
