//! Blocking git2 work on a bare cache repository: fetch and revision resolution.

use std::cell::Cell;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

use git2::{
    AutotagOption, CertificateCheckStatus, Cred, CredentialType, ErrorClass, ErrorCode,
    FetchOptions, FetchPrune, Oid, RemoteCallbacks, Repository,
};

use super::known_hosts::KnownHosts;
use super::limits::{FetchBudget, FetchLimit, GitLimits, set_network_timeouts};
use super::{SourceError, is_full_sha};
use crate::gitops::credentials::{Credentials, check_credential_origin, scrub_message, scrub_url};
use crate::gitops::semver_range::{SemverRange, is_range};

const REMOTE: &str = "origin";
/// Every branch, every tag, and the remote's HEAD (its default branch) as a plain ref, so `HEAD`
/// resolves without another connection.
const REFSPECS: [&str; 3] = [
    "+refs/heads/*:refs/remotes/origin/*",
    "+refs/tags/*:refs/tags/*",
    "+HEAD:refs/remotes/origin/HEAD",
];
/// libgit2 calls the credentials callback again and again while the server refuses them.
const MAX_CREDENTIAL_ATTEMPTS: u32 = 3;
/// libgit2's message whenever an SSH host key is not trusted. It overwrites the error the certificate
/// callback returned, so [`network_error_message`] puts the reason back.
const LIBGIT2_UNTRUSTED_HOST_KEY: &str = "invalid or unknown remote ssh hostkey";

/// Fetches `url` into the bare repository `git_dir`, creating it on first use, within `limits`:
/// a fetch that receives too many bytes or objects, or runs past `--git-fetch-timeout`, is aborted
/// with a message naming the limit.
pub(super) fn fetch(
    git_dir: &Path,
    url: &str,
    creds: Option<&Credentials>,
    limits: &GitLimits,
) -> Result<(), SourceError> {
    let fetch_error = |e: git2::Error| SourceError::Fetch {
        url: scrub_url(url),
        message: network_error_message(&e, creds),
    };
    let repo = open_or_init(git_dir, url)?;
    let mut remote = repo.find_remote(REMOTE).map_err(fetch_error)?;
    let mut options = FetchOptions::new();
    options
        .remote_callbacks(remote_callbacks_within(creds, url, limits))
        .prune(FetchPrune::On)
        .download_tags(AutotagOption::All);
    remote
        .fetch(&[] as &[&str], Some(&mut options), Some("sluice: fetch"))
        .map_err(fetch_error)
}

/// The limits of the process (`--git-*` flags), for network operations made outside the cache
/// (the revert loop's fetches and pushes).
static PROCESS_LIMITS: OnceLock<GitLimits> = OnceLock::new();

thread_local! {
    /// The limit the last transfer started on this thread ran into. git2 runs the callbacks on
    /// the calling thread, and a callback can only say "abort", so the reason waits here for
    /// [`network_error_message`].
    static EXCEEDED: Cell<Option<FetchLimit>> = const { Cell::new(None) };
}

/// Applies `limits` to every later network operation of the process: libgit2's connect and server
/// timeouts (its git://, smart HTTP(S) and SSH transports), and the fetch budget of
/// [`remote_callbacks`]. Call once at start-up, before any Git operation.
pub fn set_process_limits(limits: &GitLimits) -> Result<(), git2::Error> {
    set_network_timeouts(limits.connect_timeout, limits.server_timeout)?;
    // Set once; a second call keeps the first limits (the timeouts above are global anyway).
    let _ = PROCESS_LIMITS.set(limits.clone());
    Ok(())
}

/// Callbacks authenticating with `creds`, chosen for `url` (HTTPS user + password/token, or an SSH
/// key checked against the Secret's `knownHosts`), only to a server at the scheme, host and port of
/// `url` (never to one a redirect leads to), giving up after a few refusals instead of letting
/// libgit2 retry the same credentials forever, and aborting a transfer over the process's fetch
/// limits. For every git2 network operation on a repository (the revert's fetch and push too).
pub fn remote_callbacks<'a>(creds: Option<&'a Credentials>, url: &'a str) -> RemoteCallbacks<'a> {
    let defaults = GitLimits::default();
    remote_callbacks_within(creds, url, PROCESS_LIMITS.get().unwrap_or(&defaults))
}

/// [`remote_callbacks`] with the fetch budget of `limits`, counted from now.
fn remote_callbacks_within<'a>(
    creds: Option<&'a Credentials>,
    url: &'a str,
    limits: &GitLimits,
) -> RemoteCallbacks<'a> {
    let mut callbacks = authenticating_callbacks(creds, url);
    EXCEEDED.set(None);
    let budget = FetchBudget::new(limits, Instant::now());
    callbacks.transfer_progress(move |progress| {
        let bytes = progress.received_bytes() as u64;
        let objects = progress.total_objects().max(progress.received_objects()) as u64;
        within_budget(budget.exceeded(bytes, objects, Instant::now()))
    });
    // Sideband messages arrive while the server prepares the pack: a server that talks forever
    // is stopped at the deadline too. A silent one is stopped by libgit2's server timeout.
    callbacks.sideband_progress(move |_| within_budget(budget.exceeded(0, 0, Instant::now())));
    callbacks
}

/// `true` (go on) unless a limit was passed, which is kept for [`network_error_message`].
fn within_budget(limit: Option<FetchLimit>) -> bool {
    if limit.is_some() {
        EXCEEDED.set(limit);
    }
    limit.is_none()
}

/// Opens the cache repository, or (re)creates it when it is missing or unreadable: the cache holds
/// nothing that a fetch cannot bring back.
fn open_or_init(git_dir: &Path, url: &str) -> Result<Repository, SourceError> {
    if let Ok(repo) = Repository::open_bare(git_dir)
        && repo.find_remote(REMOTE).is_ok()
    {
        return Ok(repo);
    }
    let cache_error = |message: String| SourceError::Cache {
        path: git_dir.to_path_buf(),
        message,
    };
    if git_dir.exists() {
        std::fs::remove_dir_all(git_dir).map_err(|e| cache_error(e.to_string()))?;
    }
    let repo = Repository::init_bare(git_dir).map_err(|e| cache_error(e.message().to_string()))?;
    {
        let [first, rest @ ..] = REFSPECS;
        repo.remote_with_fetch(REMOTE, url, first)
            .map_err(|e| cache_error(scrub_message(e.message(), &[])))?;
        for refspec in rest {
            repo.remote_add_fetch(REMOTE, refspec)
                .map_err(|e| cache_error(e.message().to_string()))?;
        }
    }
    Ok(repo)
}

fn authenticating_callbacks<'a>(
    creds: Option<&'a Credentials>,
    chosen_for: &'a str,
) -> RemoteCallbacks<'a> {
    let mut callbacks = RemoteCallbacks::new();
    let mut attempts = 0;
    callbacks.credentials(move |asked_by, user_from_url, allowed| {
        attempts += 1;
        if attempts > MAX_CREDENTIAL_ATTEMPTS {
            return Err(git2::Error::from_str(
                "authentication failed: the server rejected the credentials",
            ));
        }
        if creds.is_some() {
            check_credential_origin(chosen_for, asked_by)
                .map_err(|refused| git2::Error::from_str(&refused.to_string()))?;
        }
        credential(creds, user_from_url, allowed)
    });
    if let Some(Credentials::Ssh {
        known_hosts: Some(known_hosts),
        ..
    }) = creds
    {
        let known_hosts = KnownHosts::parse(known_hosts);
        callbacks.certificate_check(move |cert, host| match cert.as_hostkey() {
            Some(key) if known_hosts.accepts(host, key) => {
                Ok(CertificateCheckStatus::CertificateOk)
            }
            // libgit2 replaces this message with its own (see network_error_message).
            Some(_) => Err(git2::Error::from_str(&format!(
                "the SSH host key of {host} is not in the credentials Secret's knownHosts"
            ))),
            None => Ok(CertificateCheckStatus::CertificatePassthrough),
        });
    }
    callbacks
}

/// The message of a git2 error from a network operation with `creds`, scrubbed of their secrets. An
/// untrusted SSH host key gets a message saying where the key was looked for, instead of libgit2's
/// generic one.
pub fn network_error_message(error: &git2::Error, creds: Option<&Credentials>) -> String {
    if let Some(limit) = EXCEEDED.take() {
        return limit.message();
    }
    let secrets = creds.map(Credentials::secrets).unwrap_or_default();
    if is_timeout(error) {
        return format!(
            "{} ({})",
            scrub_message(error.message(), &secrets),
            timeout_hint(error)
        );
    }
    if error.class() == ErrorClass::Ssh && error.message() == LIBGIT2_UNTRUSTED_HOST_KEY {
        return untrusted_host_key_message(creds).to_string();
    }
    scrub_message(error.message(), &secrets)
}

fn is_timeout(error: &git2::Error) -> bool {
    error.code() == ErrorCode::Timeout || error.message().contains("timed out")
}

/// Which bound a timed-out request ran into, with the flag that sets it.
fn timeout_hint(error: &git2::Error) -> String {
    let defaults = GitLimits::default();
    let limits = PROCESS_LIMITS.get().unwrap_or(&defaults);
    if error.message().contains("failed to connect") {
        format!(
            "the server did not accept a connection within {}s: --git-connect-timeout",
            limits.connect_timeout.as_secs()
        )
    } else {
        format!(
            "the server did not answer for {}s: --git-timeout",
            limits.server_timeout.as_secs()
        )
    }
}

fn untrusted_host_key_message(creds: Option<&Credentials>) -> &'static str {
    match creds {
        Some(Credentials::Ssh {
            known_hosts: Some(_),
            ..
        }) => {
            "the server's SSH host key is not trusted: it is not in the knownHosts of the \
             credentials Secret"
        }
        Some(Credentials::Ssh {
            known_hosts: None, ..
        }) => {
            "the server's SSH host key is not trusted: the credentials Secret has no knownHosts \
             and the controller's ~/.ssh/known_hosts does not list it"
        }
        _ => {
            "the server's SSH host key is not trusted and no Secret labelled \
             sluice.dev/secret-type=repository matches the URL (one with sshPrivateKey and \
             knownHosts is needed)"
        }
    }
}

/// The user to log in as over SSH. libgit2 refuses a credential whose user differs from the URL's
/// ("username does not match previous request"), so a user written in the URL wins over the Secret's.
fn ssh_user<'a>(user_from_url: Option<&'a str>, secret_user: &'a str) -> &'a str {
    user_from_url
        .filter(|u| !u.is_empty())
        .unwrap_or(secret_user)
}

fn credential(
    creds: Option<&Credentials>,
    user_from_url: Option<&str>,
    allowed: CredentialType,
) -> Result<Cred, git2::Error> {
    match creds {
        None => Err(git2::Error::from_str(
            "the repository requires authentication and no Secret labelled \
             sluice.dev/secret-type=repository matches its URL",
        )),
        Some(Credentials::Https { username, password })
            if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) =>
        {
            Cred::userpass_plaintext(username, password)
        }
        Some(Credentials::Ssh { username, .. }) if allowed.contains(CredentialType::USERNAME) => {
            Cred::username(ssh_user(user_from_url, username))
        }
        Some(Credentials::Ssh {
            username,
            private_key,
            ..
        }) if allowed.intersects(CredentialType::SSH_KEY | CredentialType::SSH_MEMORY) => {
            Cred::ssh_key_from_memory(ssh_user(user_from_url, username), None, private_key, None)
        }
        Some(_) => Err(git2::Error::from_str(&format!(
            "the server asks for {allowed:?} credentials, which the matching Secret does not hold"
        ))),
    }
}

/// Resolves `revision` in the cache repository `git_dir` to a full commit sha.
pub(super) fn resolve(git_dir: &Path, url: &str, revision: &str) -> Result<String, SourceError> {
    let git_error = |e: git2::Error| SourceError::Git {
        url: scrub_url(url),
        message: scrub_message(e.message(), &[]),
    };
    let repo = Repository::open_bare(git_dir).map_err(git_error)?;
    let found = match find_commit(&repo, revision.trim()).map_err(git_error)? {
        Some(oid) => Some(oid),
        None if is_range(revision) => highest_tag_in(&repo, revision.trim()).map_err(git_error)?,
        None => None,
    };
    match found {
        Some(oid) => Ok(oid.to_string()),
        None => Err(SourceError::UnknownRevision {
            url: scrub_url(url),
            revision: revision.to_string(),
        }),
    }
}

/// The commit of the highest tag whose name is a version `range` admits (`v1.2.3` and `1.2.3`
/// alike), as Argo CD resolves a semver `targetRevision` against a repository's tags.
fn highest_tag_in(repo: &Repository, range: &str) -> Result<Option<Oid>, git2::Error> {
    let Ok(range) = SemverRange::parse(range) else {
        return Ok(None);
    };
    let tags = repo.tag_names(None)?;
    let Some(best) = range.best(tags.iter().flatten().flatten()) else {
        return Ok(None);
    };
    repo.find_reference(&format!("refs/tags/{best}"))?
        .peel_to_commit()
        .map(|c| Some(c.id()))
}

/// As Argo CD: `HEAD`/empty is the remote's default branch; then a branch, then a tag (annotated tags
/// peeled); then a full or abbreviated commit sha known to the cache.
fn find_commit(repo: &Repository, revision: &str) -> Result<Option<Oid>, git2::Error> {
    for name in ref_candidates(revision) {
        if let Ok(reference) = repo.find_reference(&name) {
            return reference.peel_to_commit().map(|c| Some(c.id()));
        }
    }
    if !is_abbreviated_sha(revision) {
        return Ok(None);
    }
    match repo.revparse_single(revision) {
        Ok(object) => object.peel_to_commit().map(|c| Some(c.id())),
        Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn ref_candidates(revision: &str) -> Vec<String> {
    if revision.is_empty() || revision == "HEAD" {
        return vec![format!("refs/remotes/{REMOTE}/HEAD")];
    }
    if let Some(branch) = revision.strip_prefix("refs/heads/") {
        return vec![format!("refs/remotes/{REMOTE}/{branch}")];
    }
    if revision.starts_with("refs/tags/") {
        return vec![revision.to_string()];
    }
    if is_full_sha(revision) {
        return Vec::new();
    }
    vec![
        format!("refs/remotes/{REMOTE}/{revision}"),
        format!("refs/tags/{revision}"),
    ]
}

fn is_abbreviated_sha(revision: &str) -> bool {
    (4..=40).contains(&revision.len()) && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_map_to_refs_as_argo_cd() {
        assert_eq!(ref_candidates(""), ["refs/remotes/origin/HEAD"]);
        assert_eq!(ref_candidates("HEAD"), ["refs/remotes/origin/HEAD"]);
        assert_eq!(
            ref_candidates("main"),
            ["refs/remotes/origin/main", "refs/tags/main"]
        );
        assert_eq!(
            ref_candidates("refs/heads/dev"),
            ["refs/remotes/origin/dev"]
        );
        assert_eq!(ref_candidates("refs/tags/v1"), ["refs/tags/v1"]);
        assert!(ref_candidates(&"a".repeat(40)).is_empty());
        assert!(is_abbreviated_sha("abc1234"));
        assert!(!is_abbreviated_sha("abc"));
        assert!(!is_abbreviated_sha("v1.2.3"));
    }

    #[test]
    fn the_url_user_wins_over_the_secret_user_over_ssh() {
        assert_eq!(ssh_user(Some("deploy"), "git"), "deploy");
        assert_eq!(ssh_user(None, "git"), "git");
        assert_eq!(ssh_user(Some(""), "git"), "git");
    }

    #[test]
    fn an_untrusted_host_key_says_where_it_was_looked_for() {
        let untrusted = git2::Error::new(
            git2::ErrorCode::Certificate,
            ErrorClass::Ssh,
            LIBGIT2_UNTRUSTED_HOST_KEY,
        );
        let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE\n";
        let ssh = |known_hosts: Option<&str>| Credentials::Ssh {
            username: "git".into(),
            private_key: key.into(),
            known_hosts: known_hosts.map(str::to_string),
        };
        let with_known_hosts = network_error_message(&untrusted, Some(&ssh(Some("h k AAAA"))));
        assert!(
            with_known_hosts.contains("not in the knownHosts of the credentials Secret"),
            "{with_known_hosts}"
        );
        let without = network_error_message(&untrusted, Some(&ssh(None)));
        assert!(without.contains("~/.ssh/known_hosts"), "{without}");
        let no_secret = network_error_message(&untrusted, None);
        assert!(
            no_secret.contains("no Secret labelled sluice.dev/secret-type=repository"),
            "{no_secret}"
        );

        let echoing = git2::Error::new(
            git2::ErrorCode::Auth,
            ErrorClass::Ssh,
            format!("bad key {key}"),
        );
        let scrubbed = network_error_message(&echoing, Some(&ssh(None)));
        assert!(!scrubbed.contains("b3BlbnNzaC1rZXktdjE"), "{scrubbed}");
    }
}
