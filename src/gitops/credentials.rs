//! Repository credentials from Secrets, matched to a repo URL as Argo CD matches its `repo-creds`.
//!
//! A Secret labelled `sluice.dev/secret-type: repository` holds `url` (a URL prefix) and either
//! `username` + `password` (HTTPS, the password usually being a token) or `sshPrivateKey` (+ optional
//! `knownHosts`, in OpenSSH `known_hosts` format, and `username`, used when the URL names no user).
//! The Secret with the longest `url` prefix of the repository URL wins. Nothing here logs or prints a
//! secret value: [`Credentials`]' `Debug` redacts them, and [`scrub_url`] / [`scrub_message`] strip them
//! from text that leaves the process.

use std::fmt;

use k8s_openapi::api::core::v1::Secret;
use thiserror::Error;

/// Label of the Secrets that hold repository credentials.
pub const REPOSITORY_SECRET_LABEL: &str = "sluice.dev/secret-type";
/// Value of [`REPOSITORY_SECRET_LABEL`] on a repository credentials Secret.
pub const REPOSITORY_SECRET_TYPE: &str = "repository";
/// Argo CD's name for a credentials template; accepted too so that migrated Secrets keep working.
const REPO_CREDS_SECRET_TYPE: &str = "repo-creds";

const URL_KEY: &str = "url";
const USERNAME_KEY: &str = "username";
const PASSWORD_KEY: &str = "password";
const SSH_PRIVATE_KEY_KEY: &str = "sshPrivateKey";
const KNOWN_HOSTS_KEY: &str = "knownHosts";
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
/// URL's user, else the Secret's `username`, else `git`. Secrets without the repository label are
/// ignored, so a caller may pass every Secret of a namespace. `git://` and `file://` URLs take no
/// credentials.
pub fn credentials_for(
    repo_url: &str,
    secrets: &[Secret],
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

fn best_match<'a>(repo_url: &str, secrets: &'a [Secret]) -> Option<&'a Secret> {
    let wanted = normalize_url(repo_url);
    secrets
        .iter()
        .filter(|s| is_repository_secret(s))
        .filter_map(|s| {
            let prefix = normalize_url(&read_string(s, URL_KEY)?);
            is_path_prefix(&prefix, &wanted).then_some((prefix.len(), s))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, s)| s)
}

fn is_repository_secret(secret: &Secret) -> bool {
    secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REPOSITORY_SECRET_LABEL))
        .is_some_and(|v| v == REPOSITORY_SECRET_TYPE || v == REPO_CREDS_SECRET_TYPE)
}

/// Lower-cased, without a trailing `/` or `.git`, as Argo CD's `NormalizeGitURL` compares them.
fn normalize_url(url: &str) -> String {
    let lower = url.trim().to_ascii_lowercase();
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
        self.optional(key)?
            .ok_or_else(|| CredentialsError::MissingKey {
                secret: self.name.clone(),
                key,
                why,
            })
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
