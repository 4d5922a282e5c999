//! The `sluice-notifications` ConfigMap (PURE): Argo notifications' keys, read one key at a time so
//! that a bad key is reported and skipped while the others keep working.
//!
//! - `service.webhook.<name>`: `url`, `headers: [{name, value}]`;
//! - `service.slack` (service `slack`) or `service.slack.<name>`: `token` (Slack's Web API,
//!   `chat.postMessage`, at `apiURL`, default `https://slack.com/api`) or `webhookUrl` / `url` (an
//!   incoming webhook), optional `username`, `icon`;
//! - `template.<name>`: `message`, `title`, `webhook.<service>: {method, path, body}`,
//!   `slack: {attachments, blocks}`;
//! - `trigger.<name>`: a list of `{when, send: [templates], oncePer}`;
//! - `context`: extra values templates read as `{{ .context.<key> }}`.
//!
//! Service values may name keys of the Secret `sluice-notifications` as `$key` (Argo's
//! `argocd-notifications-secret` convention); they are substituted only when a message is sent
//! ([`resolve_secrets`]), so the parsed configuration never holds a secret value.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use super::template::{Template, TemplateError};

/// Name of the ConfigMap and of the Secret, in the control namespace.
pub const CONFIG_NAME: &str = "sluice-notifications";
/// The Slack Web API used with a `token` when the service names no `apiURL`.
pub const SLACK_API_URL: &str = "https://slack.com/api";
/// Conditions per trigger (each is evaluated on every change of every subscribed object).
const MAX_CONDITIONS: usize = 16;

/// A key of the ConfigMap that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Everything the ConfigMap defines that could be read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NotificationsConfig {
    pub services: BTreeMap<String, Service>,
    pub templates: BTreeMap<String, NotificationTemplate>,
    pub triggers: BTreeMap<String, Vec<TriggerCondition>>,
    /// The `context` key: values templates read as `.context.<key>`.
    pub context: BTreeMap<String, String>,
}

/// A destination kind. Values still hold `$secret-key` references (see [`resolve_secrets`]).
#[derive(Clone, PartialEq)]
pub enum Service {
    Webhook(WebhookService),
    Slack(SlackService),
}

impl Service {
    /// `webhook` or `slack`, as in the metric and the logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Service::Webhook(_) => "webhook",
            Service::Slack(_) => "slack",
        }
    }
}

/// Only the kind: URLs and headers may carry tokens and are never printed.
impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Service::{}(..)", self.kind())
    }
}

#[derive(Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookService {
    pub url: String,
    #[serde(default)]
    pub headers: Vec<Header>,
}

#[derive(Clone, PartialEq, Deserialize)]
pub struct Header {
    pub name: String,
    pub value: String,
}

#[derive(Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlackService {
    /// A bot token for `chat.postMessage`; the recipient is the channel.
    #[serde(default)]
    pub token: Option<String>,
    /// An incoming webhook URL (Slack's `hooks.slack.com/services/...`); `url` is accepted too.
    #[serde(default, alias = "url")]
    pub webhook_url: Option<String>,
    /// Argo's `apiURL`, for a token.
    #[serde(default, rename = "apiURL")]
    pub api_url: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub icon: Option<String>,
}

/// A template: the message, and what each service kind sends.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NotificationTemplate {
    pub message: Template,
    pub title: Template,
    /// Per webhook service name.
    pub webhook: BTreeMap<String, WebhookTemplate>,
    pub slack: SlackTemplate,
    /// Named facts of a built-in template: the JSON body of a webhook without its own
    /// `webhook.<service>` entry, and the fields of the Slack attachment. Empty in the ConfigMap's.
    pub fields: Vec<(String, Template)>,
    /// The Slack attachment's colour of a built-in template.
    pub color: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct WebhookTemplate {
    /// Argo's default is GET.
    pub method: String,
    pub path: Template,
    pub body: Template,
}

/// Slack's `attachments` and `blocks`, as JSON text templates (Argo's form).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SlackTemplate {
    pub attachments: Template,
    pub blocks: Template,
}

/// One condition of a trigger.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TriggerCondition {
    /// An expression over the object (`rollout`, `app` or `analysisRun`) that gives a bool.
    pub when: String,
    /// Template names.
    pub send: Vec<String>,
    /// An expression whose value makes each notification once per distinct value.
    #[serde(default)]
    pub once_per: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Built-in triggers only: see [`Freshness`].
    #[serde(skip)]
    pub fresh_within: Option<Freshness>,
}

/// A condition about a past event is news only for a while: when the object's timestamp at
/// `pointer` (a JSON pointer, e.g. `/status/completedAt`) is older than `max_age_secs`, it sends
/// nothing. Argo Rollouts sends its analysis notifications on the event; without this, subscribing
/// a Rollout would tell of every failed AnalysisRun it still keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    pub pointer: &'static str,
    pub max_age_secs: i64,
}

impl Freshness {
    /// Whether `object` is too old to tell of at `now` (unix seconds); an object without the
    /// timestamp is not.
    pub fn is_stale(&self, object: &serde_json::Value, now: i64) -> bool {
        object
            .pointer(self.pointer)
            .and_then(serde_json::Value::as_str)
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .is_some_and(|t| now.saturating_sub(t.as_second()) > self.max_age_secs)
    }
}

/// Reads every key of the ConfigMap's `data`; what cannot be read is returned as problems.
pub fn parse(data: &BTreeMap<String, String>) -> (NotificationsConfig, Vec<ConfigProblem>) {
    let mut config = NotificationsConfig::default();
    let mut problems = Vec::new();
    for (key, value) in data {
        let parsed = parse_key(&mut config, key, value);
        if let Err(message) = parsed {
            problems.push(ConfigProblem {
                key: key.clone(),
                message,
            });
        }
    }
    (config, problems)
}

fn parse_key(config: &mut NotificationsConfig, key: &str, value: &str) -> Result<(), String> {
    if let Some(rest) = key.strip_prefix("service.") {
        let (name, service) = parse_service(rest, value)?;
        config.services.insert(name, service);
    } else if let Some(name) = key.strip_prefix("template.") {
        check_name(name)?;
        config
            .templates
            .insert(name.to_string(), parse_template(value)?);
    } else if let Some(name) = key.strip_prefix("trigger.") {
        check_name(name)?;
        config
            .triggers
            .insert(name.to_string(), parse_trigger(value)?);
    } else if key == "context" {
        config.context = yaml::<BTreeMap<String, String>>(value)?;
    }
    // Other keys (`defaultTriggers`, `subscriptions`, ...) are Argo's and not read here.
    Ok(())
}

fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "the name {:?} must be letters, digits, `-`, `_` or `.`",
            crate::reconcile_guard::truncate(name, 80)
        ))
    }
}

/// The value as YAML; an error is told by its first line (position and reason): the parser's
/// further lines quote the source.
fn yaml<T: serde::de::DeserializeOwned>(value: &str) -> Result<T, String> {
    serde_saphyr::from_str(value).map_err(|e| {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or_default();
        format!(
            "cannot read the YAML: {}",
            crate::reconcile_guard::truncate(first, 300)
        )
    })
}

/// A service may hold a URL or token written in the ConfigMap itself: its YAML errors are told
/// without the values they quote.
fn service_yaml<T: serde::de::DeserializeOwned>(value: &str) -> Result<T, String> {
    yaml(value).map_err(|e| without_quoted(&e))
}

/// `message` with each `"..."` and `'...'` replaced by `"…"`.
fn without_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quote: Option<char> = None;
    for c in message.chars() {
        match quote {
            Some(q) if c == q => {
                out.push('…');
                out.push(c);
                quote = None;
            }
            Some(_) => {}
            None => {
                out.push(c);
                if c == '"' || c == '\'' {
                    quote = Some(c);
                }
            }
        }
    }
    if quote.is_some() {
        out.push('…');
    }
    out
}

/// `webhook.<name>`, `slack`, `slack.<name>`.
fn parse_service(rest: &str, value: &str) -> Result<(String, Service), String> {
    let (kind, name) = match rest.split_once('.') {
        Some((kind, name)) => (kind, name),
        None => (rest, rest),
    };
    check_name(name)?;
    match kind {
        "webhook" if name != kind => {
            let service: WebhookService = service_yaml(value)?;
            if service.url.trim().is_empty() {
                return Err("a webhook service needs a `url`".to_string());
            }
            Ok((name.to_string(), Service::Webhook(service)))
        }
        "webhook" => Err("name the webhook: `service.webhook.<name>`".to_string()),
        "slack" => {
            let service: SlackService = service_yaml(value)?;
            if service.token.is_none() && service.webhook_url.is_none() {
                return Err(
                    "a slack service needs a `token` or an incoming `webhookUrl`".to_string(),
                );
            }
            Ok((name.to_string(), Service::Slack(service)))
        }
        other => Err(format!(
            "unknown service type {:?}: Sluice sends to `webhook` and `slack`",
            crate::reconcile_guard::truncate(other, 80)
        )),
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawTemplate {
    #[serde(default)]
    message: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    webhook: BTreeMap<String, RawWebhookTemplate>,
    #[serde(default)]
    slack: Option<RawSlackTemplate>,
}

#[derive(Deserialize, Default)]
struct RawWebhookTemplate {
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    path: String,
    #[serde(default)]
    body: String,
}

#[derive(Deserialize, Default)]
struct RawSlackTemplate {
    #[serde(default)]
    attachments: String,
    #[serde(default)]
    blocks: String,
}

fn compile(field: &str, source: &str) -> Result<Template, String> {
    Template::parse(source).map_err(|e: TemplateError| format!("{field}: {e}"))
}

fn parse_template(value: &str) -> Result<NotificationTemplate, String> {
    let raw: RawTemplate = yaml(value)?;
    let mut webhook = BTreeMap::new();
    for (service, w) in raw.webhook {
        let method = w.method.unwrap_or_else(|| "GET".to_string()).to_uppercase();
        if !matches!(method.as_str(), "GET" | "POST" | "PUT" | "PATCH" | "DELETE") {
            return Err(format!(
                "webhook.{service}.method: {method:?} is not an HTTP method Sluice sends"
            ));
        }
        let template = WebhookTemplate {
            method,
            path: compile(&format!("webhook.{service}.path"), &w.path)?,
            body: compile(&format!("webhook.{service}.body"), &w.body)?,
        };
        webhook.insert(service, template);
    }
    let slack = raw.slack.unwrap_or_default();
    Ok(NotificationTemplate {
        message: compile("message", &raw.message)?,
        title: compile("title", &raw.title)?,
        webhook,
        slack: SlackTemplate {
            attachments: compile("slack.attachments", &slack.attachments)?,
            blocks: compile("slack.blocks", &slack.blocks)?,
        },
        fields: Vec::new(),
        color: None,
    })
}

fn parse_trigger(value: &str) -> Result<Vec<TriggerCondition>, String> {
    let conditions: Vec<TriggerCondition> = yaml(value)?;
    if conditions.is_empty() {
        return Err("a trigger needs at least one condition".to_string());
    }
    if conditions.len() > MAX_CONDITIONS {
        return Err(format!("more than {MAX_CONDITIONS} conditions"));
    }
    for (i, condition) in conditions.iter().enumerate() {
        if condition.send.is_empty() {
            return Err(format!("[{i}]: `send` names no template"));
        }
        crate::analysis::condition::check_syntax(&condition.when)
            .map_err(|e| format!("[{i}].when: {e}"))?;
        if let Some(once_per) = &condition.once_per {
            crate::analysis::condition::check_syntax(once_per)
                .map_err(|e| format!("[{i}].oncePer: {e}"))?;
        }
    }
    Ok(conditions)
}

/// A `$key` whose key is not in the Secret (its name only, never a value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingSecret(pub String);

/// Replaces each `$key` in `value` by the Secret's value for `key` (Argo's convention: keys are
/// letters, digits, `-`, `_` and `.`). A `$key` the Secret lacks stays as written and is reported.
pub fn resolve_secrets(
    value: &str,
    secret: &BTreeMap<String, String>,
    missing: &mut Vec<MissingSecret>,
) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
            .unwrap_or(after.len());
        // A trailing dot ends a sentence rather than a key.
        let key = after[..len].trim_end_matches('.');
        match secret.get(key) {
            Some(secret_value) if !key.is_empty() => out.push_str(secret_value),
            _ => {
                if !key.is_empty() {
                    missing.push(MissingSecret(key.to_string()));
                }
                out.push('$');
                out.push_str(key);
            }
        }
        rest = &after[key.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn argo_style_configmap_is_read() {
        let (config, problems) = parse(&data(&[
            (
                "service.webhook.ops",
                "url: https://ops.example/hook\nheaders:\n- name: Authorization\n  value: Bearer $ops-token\n",
            ),
            ("service.slack", "token: $slack-token\nusername: sluice\n"),
            ("service.slack.team", "webhookUrl: $slack-webhook-url\n"),
            (
                "template.my-aborted",
                "message: Rollout {{.rollout.metadata.name}} aborted\nwebhook:\n  ops:\n    method: POST\n    path: /rollouts/{{.rollout.metadata.name}}\n    body: |\n      {\"name\": \"{{.rollout.metadata.name}}\"}\nslack:\n  attachments: |\n    [{\"title\": \"{{.rollout.metadata.name}}\"}]\nemail:\n  subject: ignored\n",
            ),
            (
                "trigger.on-aborted",
                "- description: aborted\n  when: rollout.status.abort == true\n  oncePer: rollout.status.currentPodHash\n  send: [my-aborted]\n",
            ),
            ("context", "environment: production\n"),
            ("defaultTriggers", "- on-aborted\n"),
        ]));
        assert_eq!(problems, vec![]);
        let Service::Webhook(ops) = &config.services["ops"] else {
            panic!("webhook")
        };
        assert_eq!(ops.url, "https://ops.example/hook");
        assert_eq!(ops.headers[0].name, "Authorization");
        assert_eq!(ops.headers[0].value, "Bearer $ops-token");
        let Service::Slack(slack) = &config.services["slack"] else {
            panic!("slack")
        };
        assert_eq!(slack.token.as_deref(), Some("$slack-token"));
        assert_eq!(slack.username.as_deref(), Some("sluice"));
        let Service::Slack(team) = &config.services["team"] else {
            panic!("slack team")
        };
        assert_eq!(team.webhook_url.as_deref(), Some("$slack-webhook-url"));
        let template = &config.templates["my-aborted"];
        let ctx = json!({"rollout": {"metadata": {"name": "web"}}});
        assert_eq!(template.message.render(&ctx), "Rollout web aborted");
        assert_eq!(template.webhook["ops"].method, "POST");
        assert_eq!(template.webhook["ops"].path.render(&ctx), "/rollouts/web");
        assert_eq!(
            template.webhook["ops"].body.render(&ctx).trim(),
            r#"{"name": "web"}"#
        );
        assert_eq!(
            template.slack.attachments.render(&ctx).trim(),
            r#"[{"title": "web"}]"#
        );
        let trigger = &config.triggers["on-aborted"];
        assert_eq!(trigger[0].when, "rollout.status.abort == true");
        assert_eq!(
            trigger[0].once_per.as_deref(),
            Some("rollout.status.currentPodHash")
        );
        assert_eq!(trigger[0].send, vec!["my-aborted"]);
        assert_eq!(config.context["environment"], "production");
    }

    #[test]
    fn a_bad_key_is_reported_and_the_others_still_work() {
        let (config, problems) = parse(&data(&[
            ("service.webhook.good", "url: http://127.0.0.1:1/x\n"),
            ("service.webhook.broken", "url: [unclosed\n"),
            ("service.webhook.nourl", "headers: []\n"),
            ("service.webhook", "url: http://x\n"),
            ("service.pagerduty", "token: x\n"),
            ("service.slack.empty", "username: x\n"),
            ("template.good", "message: hi\n"),
            ("template.bad", "message: \"{{range .items}}x{{end}}\"\n"),
            (
                "template.badmethod",
                "webhook:\n  good:\n    method: TRACE\n",
            ),
            (
                "trigger.good",
                "- when: rollout.status.abort == true\n  send: [good]\n",
            ),
            ("trigger.nosend", "- when: 'true'\n  send: []\n"),
            (
                "trigger.badexpr",
                "- when: rollout.status.phase ==\n  send: [good]\n",
            ),
            ("trigger.notalist", "when: x\n"),
            ("trigger.bad name!", "- when: 'true'\n  send: [good]\n"),
        ]));
        assert_eq!(
            config.services.keys().collect::<Vec<_>>(),
            vec!["good"],
            "{problems:?}"
        );
        assert_eq!(config.templates.keys().collect::<Vec<_>>(), vec!["good"]);
        assert_eq!(config.triggers.keys().collect::<Vec<_>>(), vec!["good"]);
        let by_key: BTreeMap<&str, &str> = problems
            .iter()
            .map(|p| (p.key.as_str(), p.message.as_str()))
            .collect();
        assert_eq!(by_key.len(), 11, "{problems:#?}");
        assert!(by_key["service.webhook.broken"].contains("cannot read the YAML"));
        assert!(by_key["service.webhook.nourl"].contains("url"));
        assert!(by_key["service.webhook"].contains("name the webhook"));
        assert!(by_key["service.pagerduty"].contains("unknown service type \"pagerduty\""));
        assert!(by_key["service.slack.empty"].contains("token"));
        assert!(by_key["template.bad"].contains("message: unsupported placeholder"));
        assert!(by_key["template.badmethod"].contains("TRACE"));
        assert!(by_key["trigger.nosend"].contains("[0]: `send` names no template"));
        assert!(by_key["trigger.badexpr"].contains("[0].when"));
        assert!(by_key["trigger.notalist"].contains("cannot read the YAML"));
        assert!(by_key["trigger.bad name!"].contains("must be letters"));
    }

    #[test]
    fn service_errors_do_not_quote_values() {
        assert_eq!(
            without_quoted(r#"invalid type: string "https://x/T1/secret", expected a sequence"#),
            r#"invalid type: string "…", expected a sequence"#
        );
        assert_eq!(without_quoted("an 'open quote"), "an '…");
        let (_, problems) = parse(&data(&[(
            "service.webhook.ops",
            "url: https://hooks.example/T1/B2/s3cr3t\nheaders: \"Bearer s3cr3t\"\n",
        )]));
        assert_eq!(problems.len(), 1);
        assert!(!problems[0].message.contains("s3cr3t"), "{problems:?}");
    }

    #[test]
    fn services_never_print_their_urls_or_headers() {
        let (config, _) = parse(&data(&[(
            "service.webhook.ops",
            "url: https://user:pw@ops.example/hook?token=abc\n",
        )]));
        let shown = format!("{config:?}");
        assert!(!shown.contains("abc") && !shown.contains("pw"), "{shown}");
        assert!(shown.contains("Service::webhook"), "{shown}");
    }

    #[test]
    fn secret_references_are_replaced_as_argo_does() {
        let secret: BTreeMap<String, String> = [
            ("slack-webhook-url", "https://hooks.example/T1/B2/x"),
            ("token", "s3cr3t"),
            ("a.b", "dotted"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut missing = Vec::new();
        assert_eq!(
            resolve_secrets("$slack-webhook-url", &secret, &mut missing),
            "https://hooks.example/T1/B2/x"
        );
        assert_eq!(
            resolve_secrets("Bearer $token", &secret, &mut missing),
            "Bearer s3cr3t"
        );
        assert_eq!(
            resolve_secrets("$a.b/$token.", &secret, &mut missing),
            "dotted/s3cr3t."
        );
        assert_eq!(
            resolve_secrets("costs $ 5", &secret, &mut missing),
            "costs $ 5"
        );
        assert!(missing.is_empty(), "{missing:?}");
        assert_eq!(
            resolve_secrets("Bearer $absent", &secret, &mut missing),
            "Bearer $absent"
        );
        assert_eq!(missing, vec![MissingSecret("absent".to_string())]);
    }

    /// The README's example reads without problems and does what it says.
    #[test]
    fn the_readme_example_is_valid() {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("### Notifications")
            .expect("the README's Notifications section");
        let section = &readme[start..];
        let yaml_start = section.find("```yaml\n").expect("its example") + "```yaml\n".len();
        let yaml_end = yaml_start + section[yaml_start..].find("```").expect("its end");
        let docs: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(&section[yaml_start..yaml_end]).expect("YAML");
        let config_map = docs
            .iter()
            .find(|d| d["kind"] == "ConfigMap")
            .expect("the ConfigMap");
        let data: BTreeMap<String, String> =
            serde_json::from_value(config_map["data"].clone()).expect("string data");
        let (config, problems) = parse(&data);
        assert_eq!(problems, vec![]);
        assert_eq!(config.services.len(), 2);
        let ctx = json!({"rollout": {"metadata": {"name": "web"}, "status": {"currentStepIndex": 1}},
                         "context": {"env": "production"}});
        assert_eq!(
            config.templates["paused"].message.render(&ctx),
            "Rollout web waits at step 1 (production)"
        );
        let secret = docs
            .iter()
            .find(|d| d["kind"] == "Secret")
            .expect("the Secret");
        for key in ["ops-url", "ops-token", "slack-webhook-url"] {
            assert!(secret["stringData"][key].is_string(), "{key}");
        }
    }
}
