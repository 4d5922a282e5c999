//! Verifying and reading a push event of each Git provider Argo CD takes webhooks from. The
//! provider is told by its headers, and a request is verified the way that provider signs:
//!
//! | provider | told by | verified by | environment variable |
//! | --- | --- | --- | --- |
//! | GitHub | `X-GitHub-Event` | `X-Hub-Signature-256` (HMAC-SHA256 of the body) | `SLUICE_WEBHOOK_GITHUB_SECRET` |
//! | GitLab | `X-Gitlab-Event` | `X-Gitlab-Token` (the secret itself) | `SLUICE_WEBHOOK_GITLAB_SECRET` |
//! | Gitea, Forgejo | `X-Gitea-Event` / `X-Forgejo-Event` | `X-Gitea-Signature` / `X-Forgejo-Signature` (hex HMAC-SHA256) | `SLUICE_WEBHOOK_GITEA_SECRET` |
//! | Bitbucket Cloud | `X-Event-Key` with `X-Hook-UUID` | the webhook's UUID in `X-Hook-UUID` | `SLUICE_WEBHOOK_BITBUCKET_UUID` |
//! | Bitbucket Server / Data Center | `X-Event-Key` without `X-Hook-UUID` | `X-Hub-Signature` (`sha256=` HMAC) | `SLUICE_WEBHOOK_BITBUCKET_SERVER_SECRET` |
//! | Azure DevOps | `X-Vss-ActivityId` | HTTP basic authentication | `SLUICE_WEBHOOK_AZURE_DEVOPS_USERNAME`, `..._PASSWORD` |
//!
//! Gitea and Forgejo also send GitHub's headers, so they are told first. A provider whose
//! variable is unset is refused with 403, unless the controller runs with `--webhook-insecure`.

use axum::http::HeaderMap;
use serde_json::Value;
use subtle::ConstantTimeEq;
use thiserror::Error;

/// Environment variable holding the GitHub webhook secret.
pub const GITHUB_SECRET_ENV: &str = "SLUICE_WEBHOOK_GITHUB_SECRET";
/// Environment variable holding the GitLab secret token.
pub const GITLAB_SECRET_ENV: &str = "SLUICE_WEBHOOK_GITLAB_SECRET";
/// Environment variable holding the Gitea (and Forgejo) webhook secret.
pub const GITEA_SECRET_ENV: &str = "SLUICE_WEBHOOK_GITEA_SECRET";
/// Environment variable holding the Bitbucket Cloud webhook's UUID.
pub const BITBUCKET_UUID_ENV: &str = "SLUICE_WEBHOOK_BITBUCKET_UUID";
/// Environment variable holding the Bitbucket Server webhook secret.
pub const BITBUCKET_SERVER_SECRET_ENV: &str = "SLUICE_WEBHOOK_BITBUCKET_SERVER_SECRET";
/// Environment variables holding the basic credentials Azure DevOps service hooks send.
pub const AZURE_DEVOPS_USERNAME_ENV: &str = "SLUICE_WEBHOOK_AZURE_DEVOPS_USERNAME";
pub const AZURE_DEVOPS_PASSWORD_ENV: &str = "SLUICE_WEBHOOK_AZURE_DEVOPS_PASSWORD";

/// The configured secrets; a provider without one is refused unless `insecure`.
#[derive(Clone, Default)]
pub struct WebhookSecrets {
    pub github: Option<String>,
    pub gitlab: Option<String>,
    pub gitea: Option<String>,
    pub bitbucket_uuid: Option<String>,
    pub bitbucket_server: Option<String>,
    /// Username and password.
    pub azure_devops: Option<(String, String)>,
    /// `--webhook-insecure`: take the events of a provider without a secret unverified.
    pub insecure: bool,
}

impl std::fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |s: bool| if s { "<set>" } else { "<unset>" };
        f.debug_struct("WebhookSecrets")
            .field("github", &set(self.github.is_some()))
            .field("gitlab", &set(self.gitlab.is_some()))
            .field("gitea", &set(self.gitea.is_some()))
            .field("bitbucket_uuid", &set(self.bitbucket_uuid.is_some()))
            .field("bitbucket_server", &set(self.bitbucket_server.is_some()))
            .field("azure_devops", &set(self.azure_devops.is_some()))
            .field("insecure", &self.insecure)
            .finish()
    }
}

impl WebhookSecrets {
    /// Reads the providers' variables; `insecure` is `--webhook-insecure`.
    pub fn from_env(insecure: bool) -> Self {
        let read = |key: &str| std::env::var(key).ok().filter(|s| !s.is_empty());
        Self {
            github: read(GITHUB_SECRET_ENV),
            gitlab: read(GITLAB_SECRET_ENV),
            gitea: read(GITEA_SECRET_ENV),
            bitbucket_uuid: read(BITBUCKET_UUID_ENV),
            bitbucket_server: read(BITBUCKET_SERVER_SECRET_ENV),
            azure_devops: read(AZURE_DEVOPS_USERNAME_ENV).zip(read(AZURE_DEVOPS_PASSWORD_ENV)),
            insecure,
        }
    }

    /// The providers without a secret.
    pub fn unconfigured(&self) -> Vec<Provider> {
        [
            (Provider::GitHub, self.github.is_some()),
            (Provider::GitLab, self.gitlab.is_some()),
            (Provider::Gitea, self.gitea.is_some()),
            (Provider::BitbucketCloud, self.bitbucket_uuid.is_some()),
            (Provider::BitbucketServer, self.bitbucket_server.is_some()),
            (Provider::AzureDevOps, self.azure_devops.is_some()),
        ]
        .into_iter()
        .filter(|(_, configured)| !configured)
        .map(|(provider, _)| provider)
        .collect()
    }

    /// `secret` of `provider`; `Ok(None)` when it has none and unverified events are allowed.
    fn required<T>(
        &self,
        secret: Option<T>,
        provider: Provider,
    ) -> Result<Option<T>, WebhookError> {
        match secret {
            Some(secret) => Ok(Some(secret)),
            None if self.insecure => Ok(None),
            None => Err(WebhookError::NotConfigured(provider)),
        }
    }
}

/// The sender a request claims to come from (by its headers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    GitHub,
    GitLab,
    Gitea,
    BitbucketCloud,
    BitbucketServer,
    AzureDevOps,
}

impl Provider {
    fn secret_env(self) -> &'static str {
        match self {
            Self::GitHub => GITHUB_SECRET_ENV,
            Self::GitLab => GITLAB_SECRET_ENV,
            Self::Gitea => GITEA_SECRET_ENV,
            Self::BitbucketCloud => BITBUCKET_UUID_ENV,
            Self::BitbucketServer => BITBUCKET_SERVER_SECRET_ENV,
            Self::AzureDevOps => "SLUICE_WEBHOOK_AZURE_DEVOPS_USERNAME and _PASSWORD",
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::GitHub => "GitHub",
            Self::GitLab => "GitLab",
            Self::Gitea => "Gitea",
            Self::BitbucketCloud => "Bitbucket Cloud",
            Self::BitbucketServer => "Bitbucket Server",
            Self::AzureDevOps => "Azure DevOps",
        })
    }
}

/// Why a webhook request was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("signature check failed: {0}")]
    Unauthorized(&'static str),
    #[error(
        "{0} events are refused: no secret is configured for them (set {env}, or run with --webhook-insecure)",
        env = .0.secret_env()
    )]
    NotConfigured(Provider),
    #[error("{0}")]
    BadRequest(String),
}

impl WebhookError {
    pub(crate) fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::NotConfigured(_) => StatusCode::FORBIDDEN,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
        }
    }
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

/// The provider whose headers the request carries.
fn provider_of(headers: &HeaderMap) -> Option<Provider> {
    let has = |name: &str| headers.contains_key(name);
    if has("x-gitea-event") || has("x-forgejo-event") {
        Some(Provider::Gitea)
    } else if has("x-github-event") {
        Some(Provider::GitHub)
    } else if has("x-gitlab-event") {
        Some(Provider::GitLab)
    } else if has("x-event-key") && has("x-hook-uuid") {
        Some(Provider::BitbucketCloud)
    } else if has("x-event-key") {
        Some(Provider::BitbucketServer)
    } else if has("x-vss-activityid") {
        Some(Provider::AzureDevOps)
    } else {
        None
    }
}

/// Verifies and parses a webhook request; `Ok(None)` for events that are not pushes (e.g. `ping`).
pub fn parse_push(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &WebhookSecrets,
) -> Result<Option<PushEvent>, WebhookError> {
    let provider = provider_of(headers).ok_or_else(|| {
        WebhookError::BadRequest(
            "not a push event of a known provider (no X-GitHub-Event, X-Gitlab-Event, X-Gitea-Event, X-Forgejo-Event, X-Event-Key or X-Vss-ActivityId header)".into(),
        )
    })?;
    match provider {
        Provider::GitHub => github(headers, body, secrets),
        Provider::GitLab => gitlab(headers, body, secrets),
        Provider::Gitea => gitea(headers, body, secrets),
        Provider::BitbucketCloud => bitbucket_cloud(headers, body, secrets),
        Provider::BitbucketServer => bitbucket_server(headers, body, secrets),
        Provider::AzureDevOps => azure_devops(headers, body, secrets),
    }
}

fn github(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &WebhookSecrets,
) -> Result<Option<PushEvent>, WebhookError> {
    if let Some(secret) = secrets.required(secrets.github.as_deref(), Provider::GitHub)? {
        let signature = header(headers, "x-hub-signature-256")
            .ok_or(WebhookError::Unauthorized("X-Hub-Signature-256 is missing"))?;
        let hex = signature
            .strip_prefix("sha256=")
            .ok_or(WebhookError::Unauthorized(
                "X-Hub-Signature-256 is not sha256=<hex>",
            ))?;
        verify_hmac(hex, body, secret, "X-Hub-Signature-256")?;
    }
    if header(headers, "x-github-event") != Some("push") {
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
    Ok(Some(push(urls, ref_at(&payload, "/ref"))))
}

fn gitlab(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &WebhookSecrets,
) -> Result<Option<PushEvent>, WebhookError> {
    if let Some(secret) = secrets.required(secrets.gitlab.as_deref(), Provider::GitLab)? {
        let token = header(headers, "x-gitlab-token")
            .ok_or(WebhookError::Unauthorized("X-Gitlab-Token is missing"))?;
        if !bool::from(token.as_bytes().ct_eq(secret.as_bytes())) {
            return Err(WebhookError::Unauthorized("X-Gitlab-Token does not match"));
        }
    }
    if !matches!(
        header(headers, "x-gitlab-event"),
        Some("Push Hook" | "Tag Push Hook")
    ) {
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
    Ok(Some(push(urls, ref_at(&payload, "/ref"))))
}

fn gitea(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &WebhookSecrets,
) -> Result<Option<PushEvent>, WebhookError> {
    if let Some(secret) = secrets.required(secrets.gitea.as_deref(), Provider::Gitea)? {
        let signature = header(headers, "x-gitea-signature")
            .or_else(|| header(headers, "x-forgejo-signature"))
            .ok_or(WebhookError::Unauthorized(
                "X-Gitea-Signature (or X-Forgejo-Signature) is missing",
            ))?;
        verify_hmac(signature, body, secret, "X-Gitea-Signature")?;
    }
    let event = header(headers, "x-gitea-event").or_else(|| header(headers, "x-forgejo-event"));
    if event != Some("push") {
        return Ok(None);
    }
    let payload = json_payload(body)?;
    let urls = urls_at(
        &payload,
        "/repository",
        &["html_url", "clone_url", "ssh_url"],
    );
    Ok(Some(push(urls, ref_at(&payload, "/ref"))))
}

fn bitbucket_cloud(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &WebhookSecrets,
) -> Result<Option<PushEvent>, WebhookError> {
    let uuid = secrets.bitbucket_uuid.as_deref();
    if let Some(expected) = secrets.required(uuid, Provider::BitbucketCloud)? {
        let sent = header(headers, "x-hook-uuid").unwrap_or_default();
        let bare = |u: &str| u.trim().trim_matches(['{', '}']).to_ascii_lowercase();
        if !bool::from(bare(sent).as_bytes().ct_eq(bare(expected).as_bytes())) {
            return Err(WebhookError::Unauthorized(
                "X-Hook-UUID is not the configured webhook's",
            ));
        }
    }
    if header(headers, "x-event-key") != Some("repo:push") {
        return Ok(None);
    }
    let payload = json_payload(body)?;
    let mut urls = Vec::new();
    if let Some(html) = payload
        .pointer("/repository/links/html/href")
        .and_then(Value::as_str)
    {
        urls.push(html.to_string());
    }
    if let Some(full_name) = payload
        .pointer("/repository/full_name")
        .and_then(Value::as_str)
    {
        urls.push(format!("https://bitbucket.org/{full_name}"));
    }
    let branch = payload
        .pointer("/push/changes/0/new")
        .filter(|new| new.get("type").and_then(Value::as_str) == Some("branch"))
        .and_then(|new| new.get("name"))
        .and_then(Value::as_str)
        .map(|name| format!("refs/heads/{name}"));
    Ok(Some(push(urls, branch)))
}

fn bitbucket_server(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &WebhookSecrets,
) -> Result<Option<PushEvent>, WebhookError> {
    let secret = secrets.bitbucket_server.as_deref();
    if let Some(secret) = secrets.required(secret, Provider::BitbucketServer)? {
        let signature = header(headers, "x-hub-signature")
            .ok_or(WebhookError::Unauthorized("X-Hub-Signature is missing"))?;
        let hex = signature
            .strip_prefix("sha256=")
            .ok_or(WebhookError::Unauthorized(
                "X-Hub-Signature is not sha256=<hex>",
            ))?;
        verify_hmac(hex, body, secret, "X-Hub-Signature")?;
    }
    if header(headers, "x-event-key") != Some("repo:refs_changed") {
        return Ok(None);
    }
    let payload = json_payload(body)?;
    let mut urls = Vec::new();
    for list in ["/repository/links/clone", "/repository/links/self"] {
        let links = payload.pointer(list).and_then(Value::as_array);
        urls.extend(
            links
                .into_iter()
                .flatten()
                .filter_map(|link| link.get("href").and_then(Value::as_str))
                .map(String::from),
        );
    }
    Ok(Some(push(urls, ref_at(&payload, "/changes/0/ref/id"))))
}

fn azure_devops(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &WebhookSecrets,
) -> Result<Option<PushEvent>, WebhookError> {
    let configured = secrets.azure_devops.as_ref();
    if let Some((username, password)) = secrets.required(configured, Provider::AzureDevOps)? {
        let sent = header(headers, "authorization")
            .and_then(|a| a.strip_prefix("Basic "))
            .ok_or(WebhookError::Unauthorized(
                "the basic credentials Azure DevOps sends are missing",
            ))?;
        let expected = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{username}:{password}"),
        );
        if !bool::from(sent.trim().as_bytes().ct_eq(expected.as_bytes())) {
            return Err(WebhookError::Unauthorized(
                "the basic credentials do not match",
            ));
        }
    }
    let payload = json_payload(body)?;
    if payload.get("eventType").and_then(Value::as_str) != Some("git.push") {
        return Ok(None);
    }
    let urls = urls_at(&payload, "/resource/repository", &["remoteUrl", "url"]);
    Ok(Some(push(
        urls,
        ref_at(&payload, "/resource/refUpdates/0/name"),
    )))
}

fn push(repo_urls: Vec<String>, git_ref: Option<String>) -> PushEvent {
    PushEvent { repo_urls, git_ref }
}

fn ref_at(payload: &Value, pointer: &str) -> Option<String> {
    payload
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(String::from)
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

/// Checks that `hex` is the HMAC-SHA256 of `body` keyed by `secret`.
fn verify_hmac(
    hex: &str,
    body: &[u8],
    secret: &str,
    header_name: &'static str,
) -> Result<(), WebhookError> {
    let tag = decode_hex(hex.trim()).ok_or(WebhookError::Unauthorized(
        "the signature is not hexadecimal",
    ))?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    ring::hmac::verify(&key, body, &tag).map_err(|_| {
        WebhookError::Unauthorized(match header_name {
            "X-Hub-Signature-256" => "X-Hub-Signature-256 does not match the body",
            "X-Hub-Signature" => "X-Hub-Signature does not match the body",
            _ => "X-Gitea-Signature does not match the body",
        })
    })
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

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use serde_json::json;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn hmac_hex(secret: &str, body: &[u8]) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        ring::hmac::sign(&key, body)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn configured() -> WebhookSecrets {
        WebhookSecrets {
            gitea: Some("gitea-s3cret".into()),
            bitbucket_uuid: Some("{0d5e0c4e-1111-2222-3333-444455556666}".into()),
            bitbucket_server: Some("bbs-s3cret".into()),
            azure_devops: Some(("hook".into(), "pa55".into())),
            ..WebhookSecrets::default()
        }
    }

    fn urls(event: Result<Option<PushEvent>, WebhookError>) -> (Vec<String>, Option<String>) {
        let event = event.unwrap().unwrap();
        (event.repo_urls, event.git_ref)
    }

    #[test]
    fn gitea_and_forgejo_pushes_are_verified_by_their_signature() {
        let body = json!({"ref": "refs/heads/main", "repository": {
            "html_url": "https://gitea.example.com/team/shop",
            "clone_url": "https://gitea.example.com/team/shop.git"}})
        .to_string();
        let signature = hmac_hex("gitea-s3cret", body.as_bytes());
        // Gitea also sends GitHub's event header: its own headers decide.
        let gitea = headers(&[
            ("x-gitea-event", "push"),
            ("x-github-event", "push"),
            ("x-gitea-signature", &signature),
        ]);
        let (found, git_ref) = urls(parse_push(&gitea, body.as_bytes(), &configured()));
        assert_eq!(found[1], "https://gitea.example.com/team/shop.git");
        assert_eq!(git_ref.as_deref(), Some("refs/heads/main"));
        let forgejo = headers(&[
            ("x-forgejo-event", "push"),
            ("x-forgejo-signature", &signature),
        ]);
        assert!(parse_push(&forgejo, body.as_bytes(), &configured()).is_ok());
        let forged = headers(&[
            ("x-gitea-event", "push"),
            ("x-gitea-signature", &"ab".repeat(32)),
        ]);
        assert_eq!(
            parse_push(&forged, body.as_bytes(), &configured()),
            Err(WebhookError::Unauthorized(
                "X-Gitea-Signature does not match the body"
            ))
        );
    }

    #[test]
    fn bitbucket_cloud_pushes_are_verified_by_the_hook_uuid() {
        let body = json!({"repository": {"full_name": "team/shop",
            "links": {"html": {"href": "https://bitbucket.org/team/shop"}}},
            "push": {"changes": [{"new": {"type": "branch", "name": "main"}}]}})
        .to_string();
        let ok = headers(&[
            ("x-event-key", "repo:push"),
            ("x-hook-uuid", "0d5e0c4e-1111-2222-3333-444455556666"),
        ]);
        let (found, git_ref) = urls(parse_push(&ok, body.as_bytes(), &configured()));
        assert_eq!(
            found,
            [
                "https://bitbucket.org/team/shop",
                "https://bitbucket.org/team/shop"
            ]
        );
        assert_eq!(git_ref.as_deref(), Some("refs/heads/main"));
        let forged = headers(&[("x-event-key", "repo:push"), ("x-hook-uuid", "{deadbeef}")]);
        assert!(matches!(
            parse_push(&forged, body.as_bytes(), &configured()),
            Err(WebhookError::Unauthorized(_))
        ));
    }

    #[test]
    fn bitbucket_server_pushes_are_verified_by_their_signature() {
        let body = json!({"repository": {"links": {
            "clone": [{"href": "ssh://git@bitbucket.example.com:7999/team/shop.git", "name": "ssh"},
                      {"href": "https://bitbucket.example.com/scm/team/shop.git", "name": "http"}],
            "self": [{"href": "https://bitbucket.example.com/projects/TEAM/repos/shop/browse"}]}},
            "changes": [{"ref": {"id": "refs/heads/main"}}]})
        .to_string();
        let signature = format!("sha256={}", hmac_hex("bbs-s3cret", body.as_bytes()));
        let ok = headers(&[
            ("x-event-key", "repo:refs_changed"),
            ("x-hub-signature", &signature),
        ]);
        let (found, git_ref) = urls(parse_push(&ok, body.as_bytes(), &configured()));
        assert_eq!(found.len(), 3);
        assert_eq!(found[1], "https://bitbucket.example.com/scm/team/shop.git");
        assert_eq!(git_ref.as_deref(), Some("refs/heads/main"));
        let ping = headers(&[
            ("x-event-key", "diagnostics:ping"),
            (
                "x-hub-signature",
                &format!("sha256={}", hmac_hex("bbs-s3cret", b"{}")),
            ),
        ]);
        assert_eq!(parse_push(&ping, b"{}", &configured()), Ok(None));
        let unsigned = headers(&[("x-event-key", "repo:refs_changed")]);
        assert_eq!(
            parse_push(&unsigned, body.as_bytes(), &configured()),
            Err(WebhookError::Unauthorized("X-Hub-Signature is missing"))
        );
    }

    #[test]
    fn azure_devops_pushes_are_verified_by_basic_credentials() {
        let body = json!({"eventType": "git.push", "resource": {
            "repository": {"remoteUrl": "https://dev.azure.com/org/project/_git/shop"},
            "refUpdates": [{"name": "refs/heads/main"}]}})
        .to_string();
        let basic = |user: &str, password: &str| {
            format!(
                "Basic {}",
                base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    format!("{user}:{password}")
                )
            )
        };
        let ok = headers(&[
            ("x-vss-activityid", "1"),
            ("authorization", &basic("hook", "pa55")),
        ]);
        let (found, git_ref) = urls(parse_push(&ok, body.as_bytes(), &configured()));
        assert_eq!(found, ["https://dev.azure.com/org/project/_git/shop"]);
        assert_eq!(git_ref.as_deref(), Some("refs/heads/main"));
        let wrong = headers(&[
            ("x-vss-activityid", "1"),
            ("authorization", &basic("hook", "x")),
        ]);
        assert!(matches!(
            parse_push(&wrong, body.as_bytes(), &configured()),
            Err(WebhookError::Unauthorized(_))
        ));
        let other = json!({"eventType": "git.pullrequest.created"}).to_string();
        assert_eq!(parse_push(&ok, other.as_bytes(), &configured()), Ok(None));
    }

    #[test]
    fn each_new_provider_without_its_secret_is_refused_with_403() {
        let none = WebhookSecrets::default();
        for (pairs, provider, env) in [
            (
                vec![("x-gitea-event", "push")],
                Provider::Gitea,
                GITEA_SECRET_ENV,
            ),
            (
                vec![("x-event-key", "repo:push"), ("x-hook-uuid", "x")],
                Provider::BitbucketCloud,
                BITBUCKET_UUID_ENV,
            ),
            (
                vec![("x-event-key", "repo:refs_changed")],
                Provider::BitbucketServer,
                BITBUCKET_SERVER_SECRET_ENV,
            ),
            (
                vec![("x-vss-activityid", "1")],
                Provider::AzureDevOps,
                "AZURE_DEVOPS",
            ),
        ] {
            let refused = parse_push(&headers(&pairs), b"{}", &none).unwrap_err();
            assert_eq!(refused, WebhookError::NotConfigured(provider));
            assert_eq!(refused.status(), axum::http::StatusCode::FORBIDDEN);
            assert!(refused.to_string().contains(env), "{refused}");
        }
    }
}
