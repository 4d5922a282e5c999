//! Repository credentials from Secrets, matched to a repo URL as Argo CD matches its `repo-creds`.
//!
//! A Secret labelled `sluice.dev/secret-type` or Argo CD's `argocd.argoproj.io/secret-type` =
//! `repository` / `repo-creds` holds `url` (a URL prefix) and either `username` + `password` (HTTPS,
//! the password usually being a token) or `sshPrivateKey` (+ optional `knownHosts`, in OpenSSH
//! `known_hosts` format, and `username`, used when the URL names no user), and optionally `project`.
//! Which Secrets may serve an Application is its [`CredentialScope`]; of those, the one with the
//! longest `url` prefix of the repository URL wins. Nothing here logs or prints a secret value:
//! [`Credentials`]' `Debug` redacts them, [`CredentialIdentity`] is a hash of them, and [`scrub_url`] /
//! [`scrub_message`] strip them from text that leaves the process.

use std::fmt;

use k8s_openapi::api::core::v1::Secret;
use thiserror::Error;

/// Label of the Secrets that hold repository credentials.
pub const REPOSITORY_SECRET_LABEL: &str = "sluice.dev/secret-type";
/// Argo CD's label of the same Secrets, read too so that Argo's Secrets work unchanged.
pub const ARGO_SECRET_TYPE_LABEL: &str = "argocd.argoproj.io/secret-type";
/// Both labels: a label selector cannot say "one or the other", so each is watched or listed apart.
pub const SECRET_TYPE_LABELS: [&str; 2] = [REPOSITORY_SECRET_LABEL, ARGO_SECRET_TYPE_LABEL];
/// Value of [`REPOSITORY_SECRET_LABEL`] on a repository credentials Secret.
pub const REPOSITORY_SECRET_TYPE: &str = "repository";
/// Argo CD's name for a credentials template; accepted too so that migrated Secrets keep working.
const REPO_CREDS_SECRET_TYPE: &str = "repo-creds";

const URL_KEY: &str = "url";
const USERNAME_KEY: &str = "username";
const PASSWORD_KEY: &str = "password";
const SSH_PRIVATE_KEY_KEY: &str = "sshPrivateKey";
const KNOWN_HOSTS_KEY: &str = "knownHosts";
/// The project a Secret serves (Argo CD's key); a Secret without one serves every project.
const PROJECT_KEY: &str = "project";
/// `spec.project` when unset or empty.
const DEFAULT_PROJECT: &str = crate::api::application::DEFAULT_PROJECT;
/// The SSH user when neither the Secret nor the URL names one (GitHub, GitLab, Gitea all use it).
const DEFAULT_SSH_USER: &str = "git";
const REDACTED: &str = "***";

/// How to authenticate to a Git server.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// HTTP basic authentication (the password is usually an access token).
    Https { username: String, password: String },
    /// An SSH private key (PEM or OpenSSH format, no passphrase) and the server keys to trust (OpenSSH
    /// `known_hosts` lines); without them libgit2 checks the user's `~/.ssh/known_hosts`.
    Ssh {
        username: String,
        private_key: String,
        known_hosts: Option<String>,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Https { username, .. } => f
                .debug_struct("Https")
                .field("username", username)
                .field("password", &REDACTED)
                .finish(),
            Credentials::Ssh {
                username,
                known_hosts,
                ..
            } => f
                .debug_struct("Ssh")
                .field("username", username)
                .field("private_key", &REDACTED)
                .field("known_hosts", &known_hosts.as_ref().map(|_| "<set>"))
                .finish(),
        }
    }
}

impl Credentials {
    /// The secret strings, for scrubbing them out of messages written by libraries.
    pub fn secrets(&self) -> Vec<&str> {
        match self {
            Credentials::Https { password, .. } => vec![password.as_str()],
            Credentials::Ssh { private_key, .. } => vec![private_key.as_str()],
        }
    }
}

/// Who fetched with which credentials, as a name that reveals nothing of them: `anonymous`, or the
/// SHA-256 of the credential material (every field, each length-prefixed, so no two credentials
/// share an identity). Caches of fetched objects are keyed by it, so that an Application only ever
/// reads what was fetched with the credentials it holds itself; it may appear in paths and logs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CredentialIdentity(String);

impl CredentialIdentity {
    const ANONYMOUS: &'static str = "anonymous";

    pub fn of(creds: Option<&Credentials>) -> Self {
        let Some(creds) = creds else {
            return Self(Self::ANONYMOUS.to_string());
        };
        let fields: Vec<&str> = match creds {
            Credentials::Https { username, password } => vec!["https", username, password],
            Credentials::Ssh {
                username,
                private_key,
                known_hosts,
            } => vec![
                "ssh",
                username,
                private_key,
                known_hosts.as_deref().unwrap_or_default(),
            ],
        };
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        context.update(b"sluice git credentials v1");
        for field in fields {
            context.update(&(field.len() as u64).to_be_bytes());
            context.update(field.as_bytes());
        }
        let hex: String = context
            .finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self(hex)
    }

    /// A short form for directory names: the first 128 bits of the hash (or `anonymous`).
    pub fn short(&self) -> &str {
        self.0.get(..32).unwrap_or(&self.0)
    }
}

impl fmt::Display for CredentialIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short())
    }
}

/// Which repository Secrets may serve an Application (Argo CD's scoping): those of the control
/// namespace that name no `project` or the Application's project, and those of the Application's own
/// namespace (with the same `project` rule). A Secret of any other namespace serves nobody.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialScope {
    pub app_namespace: String,
    /// The controller's namespace; empty when it has none (then only the Application's own
    /// namespace serves it).
    pub control_namespace: String,
    /// `spec.project`, empty meaning `default`.
    pub project: String,
}

impl CredentialScope {
    /// The scope of `app`, whose repository Secrets may also come from `control_namespace`.
    pub fn of(app: &crate::api::application::Application, control_namespace: &str) -> Self {
        Self {
            app_namespace: app.metadata.namespace.clone().unwrap_or_default(),
            control_namespace: control_namespace.to_string(),
            project: app.spec.project().to_string(),
        }
    }

    /// Whether `secret` may serve this scope (whatever its labels and URL).
    pub fn admits(&self, secret: &Secret) -> bool {
        let namespace = secret.metadata.namespace.as_deref().unwrap_or_default();
        let in_scope = !namespace.is_empty()
            && (namespace == self.control_namespace || namespace == self.app_namespace);
        in_scope && self.project_admits(read_string(secret, PROJECT_KEY).as_deref())
    }

    fn project_admits(&self, secret_project: Option<&str>) -> bool {
        let wanted = Some(self.project.trim())
            .filter(|p| !p.is_empty())
            .unwrap_or(DEFAULT_PROJECT);
        match secret_project.map(str::trim).filter(|p| !p.is_empty()) {
            None => true,
            Some(project) => project == wanted,
        }
    }
}

/// The repository Secrets an Application may use, to choose credentials for each URL it fetches
/// (its own repository, an operation's, a rollback's): never the credentials of one URL for another.
pub struct ScopedSecrets {
    secrets: Vec<Secret>,
}

impl ScopedSecrets {
    /// The Secrets of `secrets` that `scope` admits.
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a Secret>, scope: &CredentialScope) -> Self {
        Self {
            secrets: secrets
                .into_iter()
                .filter(|s| scope.admits(s))
                .cloned()
                .collect(),
        }
    }

    /// The credentials for `repo_url` (see [`credentials_for`]).
    pub fn for_url(&self, repo_url: &str) -> Result<Option<Credentials>, CredentialsError> {
        credentials_for(repo_url, self.secrets.iter())
    }

    /// How to reach the Helm chart repository or OCI registry `repo_url` (see [`chart_access_for`]).
    pub fn chart_access(&self, repo_url: &str) -> Result<ChartAccess, CredentialsError> {
        chart_access_for(repo_url, self.secrets.iter())
    }
}

/// What a repository Secret says about a Helm chart repository or OCI registry (Argo CD's
/// repository Secret of `type: helm`): optional basic credentials, `enableOCI` and
/// `insecureOCIForceHttp`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ChartAccess {
    /// `username` and `password`, when the Secret has them.
    pub basic: Option<(String, String)>,
    /// `enableOCI: "true"`: a repoURL without a scheme is an OCI registry.
    pub enable_oci: bool,
    /// `insecureOCIForceHttp: "true"`: the registry speaks plain HTTP.
    pub force_http: bool,
}

impl fmt::Debug for ChartAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChartAccess")
            .field("username", &self.basic.as_ref().map(|(user, _)| user))
            .field("enable_oci", &self.enable_oci)
            .field("force_http", &self.force_http)
            .finish()
    }
}

impl ChartAccess {
    /// The credentials as Git's [`Credentials`], to key caches by [`CredentialIdentity`].
    pub fn as_credentials(&self) -> Option<Credentials> {
        self.basic
            .as_ref()
            .map(|(username, password)| Credentials::Https {
                username: username.clone(),
                password: password.clone(),
            })
    }
}

const ENABLE_OCI_KEY: &str = "enableOCI";
const FORCE_HTTP_KEY: &str = "insecureOCIForceHttp";

/// The [`ChartAccess`] of the Secret whose `url` is the longest prefix of `repo_url` (with or without
/// `oci://` on either side), or anonymous access when none matches. A username without a password
/// (or the reverse) is an error naming the Secret.
pub fn chart_access_for<'a>(
    repo_url: &str,
    secrets: impl IntoIterator<Item = &'a Secret>,
) -> Result<ChartAccess, CredentialsError> {
    let Some(secret) = best_match(repo_url, secrets) else {
        return Ok(ChartAccess::default());
    };
    let data = SecretData {
        secret,
        name: secret_name(secret),
    };
    let flag = |key: &'static str| {
        data.optional(key)
            .map(|v| v.is_some_and(|v| v.trim().eq_ignore_ascii_case("true")))
    };
    const WHY: &str = "a chart repository takes both username and password, or neither";
    let basic = match (data.optional(USERNAME_KEY)?, data.optional(PASSWORD_KEY)?) {
        (Some(user), Some(password)) => Some((user, password)),
        (None, None) => None,
        (Some(_), None) => return Err(data.missing(PASSWORD_KEY, WHY)),
        (None, Some(_)) => return Err(data.missing(USERNAME_KEY, WHY)),
    };
    Ok(ChartAccess {
        basic,
        enable_oci: flag(ENABLE_OCI_KEY)?,
        force_http: flag(FORCE_HTTP_KEY)?,
    })
}

/// A credentials Secret that matches the repository but cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CredentialsError {
    #[error("Secret {secret}: key {key} is missing ({why})")]
    MissingKey {
        secret: String,
        key: &'static str,
        why: &'static str,
    },
    #[error("Secret {secret}: key {key} is not valid UTF-8")]
    NotUtf8 { secret: String, key: &'static str },
}

/// Which kind of credentials a repository URL takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Https,
    Ssh,
    /// `git://`, `file://`, local paths: no authentication.
    Anonymous,
}

fn transport(url: &str) -> Transport {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        Transport::Https
    } else if lower.starts_with("ssh://") || lower.starts_with("git+ssh://") || is_scp_like(url) {
        Transport::Ssh
    } else {
        Transport::Anonymous
    }
}

/// Why a credential callback refused to answer a server.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum OriginError {
    #[error(
        "{asked} asks for the credentials chosen for {chosen}: refused, they are only sent to the scheme, host and port they were chosen for (a redirect to another server?)"
    )]
    Mismatch { chosen: String, asked: String },
    #[error("refusing to send credentials to {url}: its scheme, host or port cannot be read")]
    Unreadable { url: String },
}

/// Where a URL points: what must not change between the URL credentials were chosen for and the
/// server asking for them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// Whether the server at `asked_by` (the URL libgit2 is talking to, after any redirect) may be
/// answered with credentials chosen for `chosen_for`: only when scheme, host and port are the
/// same (default ports filled in, host case-insensitive, user and path ignored).
pub fn check_credential_origin(chosen_for: &str, asked_by: &str) -> Result<(), OriginError> {
    let unreadable = |url: &str| OriginError::Unreadable {
        url: scrub_url(url),
    };
    let chosen = origin(chosen_for).ok_or_else(|| unreadable(chosen_for))?;
    let asked = origin(asked_by).ok_or_else(|| unreadable(asked_by))?;
    if chosen == asked {
        Ok(())
    } else {
        Err(OriginError::Mismatch {
            chosen: chosen.to_string(),
            asked: asked.to_string(),
        })
    }
}

fn origin(url: &str) -> Option<Origin> {
    let url = url.trim();
    let Some((scheme, rest)) = url.split_once("://") else {
        // scp syntax, `user@host:path`.
        if !is_scp_like(url) {
            return None;
        }
        let (user_host, _) = url.split_once(':')?;
        let host = user_host.rsplit_once('@').map_or(user_host, |(_, h)| h);
        return (!host.is_empty()).then(|| Origin {
            scheme: "ssh".into(),
            host: host.to_ascii_lowercase(),
            port: 22,
        });
    };
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "git+ssh" | "ssh+git" => "ssh".to_string(),
        other => other.to_string(),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']')?;
            (host, after.strip_prefix(':'))
        }
        None => match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    if host.is_empty() {
        return None;
    }
    let port = match port.filter(|p| !p.is_empty()) {
        Some(port) => port.parse().ok()?,
        None => default_port(&scheme)?,
    };
    Some(Origin {
        scheme,
        host: host.to_ascii_lowercase(),
        port,
    })
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        "ssh" => Some(22),
        "git" => Some(9418),
        _ => None,
    }
}

/// `user@host:path` (scp syntax), which git reads as SSH.
fn is_scp_like(url: &str) -> bool {
    !url.contains("://")
        && url
            .split_once(':')
            .is_some_and(|(host, _)| host.contains('@') && !host.contains('/'))
}

/// Picks the Secret whose `url` is the longest prefix of `repo_url` (Argo CD's `repo-creds` matching;
/// the prefix must end at a path boundary, so `https://git.example.com/team` does not match
/// `https://git.example.com/team-other/app.git`) and reads the credentials the URL's transport needs:
/// `username` + `password` for HTTP(S), `sshPrivateKey` (+ `knownHosts`) for SSH, logging in as the
/// URL's user, else the Secret's `username`, else `git`. Secrets without a repository label are
/// ignored, so a caller may pass every Secret of a namespace; which Secrets an Application may use
/// at all is [`ScopedSecrets`]' business. `git://` and `file://` URLs take no credentials.
pub fn credentials_for<'a>(
    repo_url: &str,
    secrets: impl IntoIterator<Item = &'a Secret>,
) -> Result<Option<Credentials>, CredentialsError> {
    let transport = transport(repo_url);
    if transport == Transport::Anonymous {
        return Ok(None);
    }
    let Some(secret) = best_match(repo_url, secrets) else {
        return Ok(None);
    };
    let data = SecretData {
        secret,
        name: secret_name(secret),
    };
    match transport {
        Transport::Https => https_credentials(&data).map(Some),
        Transport::Ssh => ssh_credentials(&data, repo_url).map(Some),
        Transport::Anonymous => Ok(None),
    }
}

fn best_match<'a>(
    repo_url: &str,
    secrets: impl IntoIterator<Item = &'a Secret>,
) -> Option<&'a Secret> {
    let wanted = normalize_url(repo_url);
    secrets
        .into_iter()
        .filter(|s| is_repository_secret(s))
        .filter_map(|s| {
            let prefix = normalize_url(&read_string(s, URL_KEY)?);
            is_path_prefix(&prefix, &wanted).then_some((prefix.len(), s))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, s)| s)
}

fn is_repository_secret(secret: &Secret) -> bool {
    let Some(labels) = secret.metadata.labels.as_ref() else {
        return false;
    };
    SECRET_TYPE_LABELS
        .iter()
        .filter_map(|label| labels.get(*label))
        .any(|v| v == REPOSITORY_SECRET_TYPE || v == REPO_CREDS_SECRET_TYPE)
}

/// Lower-cased, without a trailing `/` or `.git`, as Argo CD's `NormalizeGitURL` compares them; an
/// OCI registry's `oci://` is dropped (Argo CD's Secrets name registries without it).
fn normalize_url(url: &str) -> String {
    let lower = url.trim().to_ascii_lowercase();
    let lower = lower.strip_prefix("oci://").unwrap_or(&lower).to_string();
    let trimmed = lower.trim_end_matches('/');
    trimmed.strip_suffix(".git").unwrap_or(trimmed).to_string()
}

fn is_path_prefix(prefix: &str, url: &str) -> bool {
    if prefix.is_empty() {
        return false;
    }
    match url.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.ends_with(':'),
        None => false,
    }
}

fn secret_name(secret: &Secret) -> String {
    format!(
        "{}/{}",
        secret.metadata.namespace.as_deref().unwrap_or_default(),
        secret.metadata.name.as_deref().unwrap_or_default()
    )
}

/// One Secret's data, with its name for error messages.
struct SecretData<'a> {
    secret: &'a Secret,
    name: String,
}

impl SecretData<'_> {
    fn optional(&self, key: &'static str) -> Result<Option<String>, CredentialsError> {
        match raw_value(self.secret, key) {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes)
                .map(|s| Some(s).filter(|s| !s.is_empty()))
                .map_err(|_| CredentialsError::NotUtf8 {
                    secret: self.name.clone(),
                    key,
                }),
        }
    }

    fn required(&self, key: &'static str, why: &'static str) -> Result<String, CredentialsError> {
        self.optional(key)?.ok_or_else(|| self.missing(key, why))
    }

    fn missing(&self, key: &'static str, why: &'static str) -> CredentialsError {
        CredentialsError::MissingKey {
            secret: self.name.clone(),
            key,
            why,
        }
    }
}

fn https_credentials(data: &SecretData<'_>) -> Result<Credentials, CredentialsError> {
    const WHY: &str = "an HTTPS repository needs username and password (or token)";
    Ok(Credentials::Https {
        username: data.required(USERNAME_KEY, WHY)?,
        password: data.required(PASSWORD_KEY, WHY)?,
    })
}

fn ssh_credentials(data: &SecretData<'_>, repo_url: &str) -> Result<Credentials, CredentialsError> {
    let private_key =
        data.required(SSH_PRIVATE_KEY_KEY, "an SSH repository needs a private key")?;
    // libgit2 logs in as the URL's user whatever the credential says (and refuses a credential naming
    // another), so the Secret's `username` only counts for a URL without one.
    let username = match (url_username(repo_url), data.optional(USERNAME_KEY)?) {
        (Some(user), _) | (None, Some(user)) => user,
        (None, None) => DEFAULT_SSH_USER.to_string(),
    };
    Ok(Credentials::Ssh {
        username,
        private_key,
        known_hosts: data.optional(KNOWN_HOSTS_KEY)?,
    })
}

/// The user of `ssh://user@host/...` or `user@host:path`.
pub(crate) fn url_username(url: &str) -> Option<String> {
    let authority = match url.split_once("://") {
        Some((_, rest)) => rest.split('/').next().unwrap_or_default(),
        None => url.split(':').next().unwrap_or_default(),
    };
    let (userinfo, _) = authority.rsplit_once('@')?;
    let user = userinfo.split(':').next().unwrap_or_default();
    (!user.is_empty()).then(|| user.to_string())
}

/// `data` (base64-decoded by the API) wins over `stringData` only because a Secret read back from the
/// API server has only `data`; `stringData` appears on objects built in memory (tests, manifests).
fn raw_value(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    if let Some(value) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return Some(value.0.clone());
    }
    secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|s| s.clone().into_bytes())
}

fn read_string(secret: &Secret, key: &str) -> Option<String> {
    raw_value(secret, key).and_then(|b| String::from_utf8(b).ok())
}

/// `url` without its userinfo (`https://user:token@host/x` → `https://host/x`): the whole userinfo goes,
/// since a token alone is often written as the user name.
pub fn scrub_url(url: &str) -> String {
    scrub_message(url, &[])
}

/// `message` with the userinfo of every `scheme://userinfo@host` URL removed and each of `secrets`
/// replaced by `***`: libgit2 and the rendering tools echo URLs (and so tokens written into them) in
/// their errors, which end up in conditions and logs.
pub fn scrub_message(message: &str, secrets: &[&str]) -> String {
    let mut out = strip_userinfo(message);
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(secret, REDACTED);
    }
    out
}

fn strip_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| {
                c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == '\'' || c == '"'
            })
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match authority.rfind('@') {
            Some(at) => out.push_str(&authority[at + 1..]),
            None => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;
    use serde_json::json;

    use super::*;

    fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
        let mut s: Secret = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "sluice",
                "labels": {REPOSITORY_SECRET_LABEL: REPOSITORY_SECRET_TYPE}}
        }))
        .unwrap();
        s.data = Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect::<BTreeMap<_, _>>(),
        );
        s
    }

    fn https(user: &str, pass: &str) -> Option<Credentials> {
        Some(Credentials::Https {
            username: user.into(),
            password: pass.into(),
        })
    }

    #[test]
    fn chart_repositories_read_basic_credentials_and_oci_flags() {
        let secrets = [
            secret(
                "charts",
                &[
                    ("url", "https://charts.example.com"),
                    ("type", "helm"),
                    ("username", "u"),
                    ("password", "p"),
                ],
            ),
            secret(
                "registry",
                &[
                    ("url", "127.0.0.1:5000/charts"),
                    ("enableOCI", "true"),
                    ("insecureOCIForceHttp", "TRUE"),
                ],
            ),
            secret(
                "half",
                &[("url", "https://half.example.com"), ("username", "u")],
            ),
        ];
        let access = chart_access_for("https://charts.example.com/stable", &secrets).unwrap();
        assert_eq!(access.basic, Some(("u".into(), "p".into())));
        assert!(!access.enable_oci);
        assert_eq!(access.as_credentials(), https("u", "p"));
        assert!(!format!("{access:?}").contains("\"p\""), "{access:?}");
        for url in ["oci://127.0.0.1:5000/charts", "127.0.0.1:5000/charts/"] {
            let access = chart_access_for(url, &secrets).unwrap();
            assert!(access.enable_oci && access.force_http, "{url}");
            assert_eq!(access.basic, None);
        }
        assert_eq!(
            chart_access_for("https://unknown.example.com", &secrets).unwrap(),
            ChartAccess::default()
        );
        let error = chart_access_for("https://half.example.com", &secrets).unwrap_err();
        assert!(
            error.to_string().contains("key password is missing"),
            "{error}"
        );
    }

    #[test]
    fn longest_prefix_wins() {
        let secrets = [
            secret(
                "host",
                &[
                    ("url", "https://git.example.com"),
                    ("username", "a"),
                    ("password", "1"),
                ],
            ),
            secret(
                "org",
                &[
                    ("url", "https://git.example.com/shop/"),
                    ("username", "b"),
                    ("password", "2"),
                ],
            ),
            secret(
                "repo",
                &[
                    ("url", "https://git.example.com/shop/api.git"),
                    ("username", "c"),
                    ("password", "3"),
                ],
            ),
            secret(
                "other",
                &[
                    ("url", "https://other.example.com"),
                    ("username", "d"),
                    ("password", "4"),
                ],
            ),
        ];
        let cases = [
            ("https://git.example.com/shop/api.git", https("c", "3")),
            ("https://git.example.com/shop/api", https("c", "3")),
            ("https://GIT.example.com/shop/web.git", https("b", "2")),
            ("https://git.example.com/infra/web.git", https("a", "1")),
            (
                "https://git.example.com/shop-legacy/web.git",
                https("a", "1"),
            ),
            ("https://unknown.example.com/x.git", None),
            ("https://git.example.community/x.git", None),
        ];
        for (url, want) in cases {
            assert_eq!(credentials_for(url, &secrets).unwrap(), want, "{url}");
        }
    }

    #[test]
    fn ssh_urls_take_the_private_key() {
        let secrets = [
            secret(
                "ssh",
                &[
                    ("url", "git@github.com:shop"),
                    ("sshPrivateKey", "KEY"),
                    ("knownHosts", "github.com ssh-ed25519 AAAA"),
                ],
            ),
            secret(
                "ssh-url",
                &[
                    ("url", "ssh://deploy@git.example.com"),
                    ("sshPrivateKey", "KEY2"),
                ],
            ),
        ];
        assert_eq!(
            credentials_for("git@github.com:shop/api.git", &secrets).unwrap(),
            Some(Credentials::Ssh {
                username: "git".into(),
                private_key: "KEY".into(),
                known_hosts: Some("github.com ssh-ed25519 AAAA".into()),
            })
        );
        assert_eq!(
            credentials_for("ssh://deploy@git.example.com/shop/api.git", &secrets).unwrap(),
            Some(Credentials::Ssh {
                username: "deploy".into(),
                private_key: "KEY2".into(),
                known_hosts: None,
            })
        );
    }

    #[test]
    fn the_ssh_user_is_the_urls_then_the_secrets_then_git() {
        let secrets = [
            secret(
                "with-url-user",
                &[
                    ("url", "ssh://deploy@git.example.com"),
                    ("username", "bot"),
                    ("sshPrivateKey", "KEY"),
                ],
            ),
            secret(
                "host",
                &[
                    ("url", "ssh://git.example.com"),
                    ("username", "bot"),
                    ("sshPrivateKey", "KEY"),
                ],
            ),
        ];
        let user = |url: &str| match credentials_for(url, &secrets).unwrap() {
            Some(Credentials::Ssh { username, .. }) => username,
            other => panic!("{url}: {other:?}"),
        };
        assert_eq!(user("ssh://deploy@git.example.com/shop/api.git"), "deploy");
        assert_eq!(user("ssh://git.example.com/shop/api.git"), "bot");
        let unnamed = [secret(
            "unnamed",
            &[("url", "ssh://git.example.com"), ("sshPrivateKey", "KEY")],
        )];
        assert_eq!(
            credentials_for("ssh://git.example.com/shop/api.git", &unnamed).unwrap(),
            Some(Credentials::Ssh {
                username: "git".into(),
                private_key: "KEY".into(),
                known_hosts: None,
            })
        );
    }

    #[test]
    fn transport_decides_which_keys_are_needed() {
        let both = [secret(
            "both",
            &[
                ("url", "https://git.example.com"),
                ("username", "u"),
                ("password", "p"),
                ("sshPrivateKey", "K"),
            ],
        )];
        assert_eq!(
            credentials_for("https://git.example.com/a.git", &both).unwrap(),
            https("u", "p")
        );
        let ssh_only = [secret(
            "ssh",
            &[("url", "https://git.example.com"), ("sshPrivateKey", "K")],
        )];
        assert_eq!(
            credentials_for("https://git.example.com/a.git", &ssh_only).unwrap_err(),
            CredentialsError::MissingKey {
                secret: "sluice/ssh".into(),
                key: "username",
                why: "an HTTPS repository needs username and password (or token)",
            }
        );
        let token_only = [secret(
            "tok",
            &[("url", "ssh://git.example.com"), ("password", "p")],
        )];
        let err = credentials_for("ssh://git.example.com/a.git", &token_only).unwrap_err();
        assert!(
            matches!(
                err,
                CredentialsError::MissingKey {
                    key: "sshPrivateKey",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            credentials_for("git://git.example.com/a.git", &both).unwrap(),
            None
        );
        assert_eq!(
            credentials_for("file:///srv/git/a.git", &both).unwrap(),
            None
        );
    }

    #[test]
    fn missing_password_is_an_error_naming_the_secret() {
        let secrets = [secret(
            "half",
            &[("url", "https://git.example.com"), ("username", "u")],
        )];
        let err = credentials_for("https://git.example.com/a.git", &secrets).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Secret sluice/half: key password is missing (an HTTPS repository needs username and password (or token))"
        );
    }

    #[test]
    fn unlabelled_secrets_and_string_data() {
        let mut unlabelled = secret(
            "plain",
            &[
                ("url", "https://git.example.com"),
                ("username", "u"),
                ("password", "p"),
            ],
        );
        unlabelled.metadata.labels = None;
        assert_eq!(
            credentials_for("https://git.example.com/a.git", &[unlabelled]).unwrap(),
            None
        );

        let mut string_data = secret("sd", &[]);
        string_data.data = None;
        string_data.string_data = Some(
            [
                ("url", "https://git.example.com"),
                ("username", "u"),
                ("password", "p"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        assert_eq!(
            credentials_for("https://git.example.com/a.git", &[string_data]).unwrap(),
            https("u", "p")
        );
    }

    fn in_namespace(mut s: Secret, namespace: &str, project: Option<&str>) -> Secret {
        s.metadata.namespace = Some(namespace.into());
        if let Some(project) = project {
            s.data
                .get_or_insert_with(BTreeMap::new)
                .insert("project".into(), ByteString(project.as_bytes().to_vec()));
        }
        s
    }

    fn scope(app_namespace: &str, project: &str) -> CredentialScope {
        CredentialScope {
            app_namespace: app_namespace.into(),
            control_namespace: "sluice".into(),
            project: project.into(),
        }
    }

    fn token(name: &str, password: &str) -> Secret {
        secret(
            name,
            &[
                ("url", "https://git.example.com/shop"),
                ("username", "bot"),
                ("password", password),
            ],
        )
    }

    #[test]
    fn control_namespace_secrets_serve_every_project_or_the_one_they_name() {
        let url = "https://git.example.com/shop/api.git";
        let unscoped = in_namespace(token("any", "p-any"), "sluice", None);
        let team_a = in_namespace(token("a", "p-a"), "sluice", Some("team-a"));
        let empty_project = in_namespace(token("e", "p-e"), "sluice", Some(""));
        let default_project = in_namespace(token("d", "p-d"), "sluice", Some("default"));
        let creds = |secret: &Secret, scope: &CredentialScope| {
            ScopedSecrets::new([secret], scope).for_url(url).unwrap()
        };
        for scope in [scope("sluice", "team-b"), scope("team-b-ns", "")] {
            assert_eq!(creds(&unscoped, &scope), https("bot", "p-any"), "{scope:?}");
            assert_eq!(
                creds(&empty_project, &scope),
                https("bot", "p-e"),
                "{scope:?}"
            );
        }
        assert_eq!(
            creds(&team_a, &scope("sluice", "team-a")),
            https("bot", "p-a")
        );
        assert_eq!(
            creds(&team_a, &scope("apps-a", "team-a")),
            https("bot", "p-a")
        );
        assert_eq!(creds(&team_a, &scope("sluice", "team-b")), None);
        assert_eq!(creds(&team_a, &scope("sluice", "")), None);
        assert_eq!(creds(&team_a, &scope("sluice", "team-a-2")), None);
        // An Application without a project is in `default`.
        assert_eq!(
            creds(&default_project, &scope("sluice", "")),
            https("bot", "p-d")
        );
        assert_eq!(creds(&default_project, &scope("sluice", "team-a")), None);
    }

    #[test]
    fn other_namespaces_secrets_serve_only_their_own_namespace() {
        let url = "https://git.example.com/shop/api.git";
        let in_a = in_namespace(token("a", "p-a"), "apps-a", None);
        let creds =
            |scope: &CredentialScope| ScopedSecrets::new([&in_a], scope).for_url(url).unwrap();
        assert_eq!(creds(&scope("apps-a", "team-a")), https("bot", "p-a"));
        assert_eq!(creds(&scope("apps-b", "team-a")), None);
        assert_eq!(creds(&scope("sluice", "team-a")), None);
        // It may name a project as well.
        let named = in_namespace(token("n", "p-n"), "apps-a", Some("team-a"));
        let scoped =
            |scope: &CredentialScope| ScopedSecrets::new([&named], scope).for_url(url).unwrap();
        assert_eq!(scoped(&scope("apps-a", "team-a")), https("bot", "p-n"));
        assert_eq!(scoped(&scope("apps-a", "team-x")), None);
        // Without a control namespace only the Application's own serves.
        let no_control = CredentialScope {
            app_namespace: "apps-b".into(),
            control_namespace: String::new(),
            project: String::new(),
        };
        let control = in_namespace(token("c", "p-c"), "sluice", None);
        assert_eq!(
            ScopedSecrets::new([&control], &no_control)
                .for_url(url)
                .unwrap(),
            None
        );
        let mut nameless = token("x", "p-x");
        nameless.metadata.namespace = None;
        assert!(!no_control.admits(&nameless));
    }

    #[test]
    fn the_longest_prefix_wins_among_the_secrets_in_scope_only() {
        let url = "https://git.example.com/shop/api.git";
        let broad = in_namespace(
            secret(
                "broad",
                &[
                    ("url", "https://git.example.com"),
                    ("username", "bot"),
                    ("password", "broad"),
                ],
            ),
            "sluice",
            None,
        );
        let precise_of_a = in_namespace(
            secret(
                "precise",
                &[("url", url), ("username", "bot"), ("password", "team-a")],
            ),
            "sluice",
            Some("team-a"),
        );
        let all = [broad, precise_of_a];
        let pick = |project: &str| {
            ScopedSecrets::new(&all, &scope("sluice", project))
                .for_url(url)
                .unwrap()
        };
        assert_eq!(pick("team-a"), https("bot", "team-a"));
        assert_eq!(pick("team-b"), https("bot", "broad"));
    }

    #[test]
    fn argo_cd_labels_are_read_as_well() {
        let url = "https://git.example.com/shop/api.git";
        for (label, value, found) in [
            ("argocd.argoproj.io/secret-type", "repository", true),
            ("argocd.argoproj.io/secret-type", "repo-creds", true),
            ("argocd.argoproj.io/secret-type", "cluster", false),
            ("sluice.dev/secret-type", "repo-creds", true),
            ("sluice.dev/secret-type", "cluster", false),
            ("example.com/secret-type", "repository", false),
        ] {
            let mut s = token("t", "p");
            s.metadata.labels = Some([(label.to_string(), value.to_string())].into());
            let want = found.then(|| https("bot", "p")).flatten();
            assert_eq!(credentials_for(url, [&s]).unwrap(), want, "{label}={value}");
        }
    }

    #[test]
    fn credentials_are_answered_only_to_the_origin_they_were_chosen_for() {
        let same = [
            (
                "https://git.example.com/shop/api.git",
                "https://git.example.com/shop/api.git/info/refs?service=git-upload-pack",
            ),
            (
                "https://git.example.com/a.git",
                "https://GIT.Example.com:443/b.git",
            ),
            (
                "https://bot:tok@git.example.com/a.git",
                "https://git.example.com/a.git",
            ),
            (
                "http://127.0.0.1:8080/a.git",
                "http://127.0.0.1:8080/a.git/info/refs",
            ),
            (
                "git@github.com:shop/api.git",
                "ssh://git@github.com/shop/api.git",
            ),
            (
                "ssh://deploy@git.example.com:2222/a.git",
                "ssh://deploy@git.example.com:2222/a.git",
            ),
            (
                "git+ssh://git.example.com/a.git",
                "ssh://git.example.com:22/a.git",
            ),
            ("https://[::1]:8443/a.git", "https://[::1]:8443/b.git"),
        ];
        for (chosen, asked) in same {
            assert_eq!(
                check_credential_origin(chosen, asked),
                Ok(()),
                "{chosen} → {asked}"
            );
        }
        let refused = [
            // Another host (a redirect to a server of the attacker's).
            (
                "https://git.example.com/a.git",
                "https://evil.example.net/a.git",
                "https://evil.example.net:443",
            ),
            (
                "https://git.example.com/a.git",
                "https://git.example.com.evil.net/a.git",
                "https://git.example.com.evil.net:443",
            ),
            // Another port of the same host.
            (
                "http://127.0.0.1:8080/a.git",
                "http://127.0.0.1:9090/a.git",
                "http://127.0.0.1:9090",
            ),
            (
                "https://git.example.com/a.git",
                "https://git.example.com:8443/a.git",
                "https://git.example.com:8443",
            ),
            // A downgrade to plain HTTP.
            (
                "https://git.example.com/a.git",
                "http://git.example.com/a.git",
                "http://git.example.com:80",
            ),
            (
                "git@github.com:shop/api.git",
                "ssh://git@gitlab.com/shop/api.git",
                "ssh://gitlab.com:22",
            ),
        ];
        for (chosen, asked, named) in refused {
            let err = check_credential_origin(chosen, asked).unwrap_err();
            assert!(
                matches!(err, OriginError::Mismatch { .. }),
                "{chosen} → {asked}: {err}"
            );
            assert!(err.to_string().starts_with(named), "{err}");
        }
        let err = check_credential_origin("https://git.example.com/a.git", "https://bot:tok@/x")
            .unwrap_err();
        assert!(matches!(err, OriginError::Unreadable { .. }), "{err}");
        assert!(!err.to_string().contains("tok"), "{err}");
        assert!(check_credential_origin("https://h/a.git", "ftp://h/a.git").is_err());
        assert!(check_credential_origin("https://h/a.git", "https://h:notaport/a.git").is_err());
    }

    #[test]
    fn credential_identities_name_nothing_secret_and_tell_credentials_apart() {
        let anonymous = CredentialIdentity::of(None);
        assert_eq!(anonymous.to_string(), "anonymous");
        let a = Credentials::Https {
            username: "bot".into(),
            password: "ghp_SECRET".into(),
        };
        let id = CredentialIdentity::of(Some(&a));
        assert_eq!(id, CredentialIdentity::of(Some(&a.clone())));
        assert_eq!(id.short().len(), 32);
        assert!(id.short().bytes().all(|b| b.is_ascii_hexdigit()));
        let text = format!("{id} {id:?}");
        assert!(
            !text.contains("ghp_SECRET") && !text.contains("bot"),
            "{text}"
        );
        let other_token = Credentials::Https {
            username: "bot".into(),
            password: "ghp_OTHER".into(),
        };
        // Fields are length-prefixed: moving a character from one to the other is another identity.
        let shifted = Credentials::Https {
            username: "botg".into(),
            password: "hp_SECRET".into(),
        };
        let ssh = Credentials::Ssh {
            username: "bot".into(),
            private_key: "ghp_SECRET".into(),
            known_hosts: None,
        };
        for other in [other_token, shifted, ssh] {
            assert_ne!(CredentialIdentity::of(Some(&other)), id, "{other:?}");
        }
        assert_ne!(id, anonymous);
    }

    #[test]
    fn debug_redacts_secrets() {
        let https = format!(
            "{:?}",
            Credentials::Https {
                username: "bot".into(),
                password: "ghp_TOKEN".into()
            }
        );
        assert!(!https.contains("ghp_TOKEN"), "{https}");
        assert!(https.contains("bot"));
        let ssh = format!(
            "{:?}",
            Credentials::Ssh {
                username: "git".into(),
                private_key: "-----BEGIN OPENSSH PRIVATE KEY-----".into(),
                known_hosts: Some("host ssh-ed25519 AAAA".into()),
            }
        );
        assert!(
            !ssh.contains("PRIVATE KEY") && !ssh.contains("AAAA"),
            "{ssh}"
        );
    }

    #[test]
    fn scrubbing_removes_userinfo_and_secrets() {
        assert_eq!(
            scrub_url("https://bot:ghp_TOKEN@git.example.com/shop.git"),
            "https://git.example.com/shop.git"
        );
        assert_eq!(
            scrub_url("https://git.example.com/a@b.git"),
            "https://git.example.com/a@b.git"
        );
        assert_eq!(
            scrub_message(
                "failed to fetch 'https://ghp_TOKEN@h/x.git': auth ghp_TOKEN rejected; see http://h2/y",
                &["ghp_TOKEN"]
            ),
            "failed to fetch 'https://h/x.git': auth *** rejected; see http://h2/y"
        );
    }

    #[test]
    fn url_usernames() {
        assert_eq!(
            url_username("ssh://deploy@h/x.git").as_deref(),
            Some("deploy")
        );
        assert_eq!(
            url_username("git@github.com:o/r.git").as_deref(),
            Some("git")
        );
        assert_eq!(url_username("https://u:p@h/x").as_deref(), Some("u"));
        assert_eq!(url_username("https://h/x"), None);
    }
}
