//! What a Git server or a repository's content may cost the controller: which URLs are fetched at
//! all, how long a server may keep a fetch waiting, how much one fetch may bring, and how much one
//! extracted tree may write to disk. Every bound has a flag (see `crate::cli`) and a default that
//! no ordinary repository reaches.

use std::time::{Duration, Instant};

use thiserror::Error;

/// Bounds on Git network work and on extracted trees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitLimits {
    /// Connecting to a Git server (`--git-connect-timeout`).
    pub connect_timeout: Duration,
    /// A server that sends or accepts nothing for this long fails the request (`--git-timeout`).
    pub server_timeout: Duration,
    /// One fetch as a whole, however steadily the server trickles data (`--git-fetch-timeout`).
    pub fetch_timeout: Duration,
    /// Bytes received by one fetch (`--git-max-fetch-bytes`).
    pub max_fetch_bytes: u64,
    /// Objects received by one fetch (`--git-max-fetch-objects`).
    pub max_fetch_objects: u64,
    /// Files, directories and links of one extracted tree (`--git-max-tree-files`).
    pub max_tree_files: u64,
    /// Bytes of file content of one extracted tree (`--git-max-tree-bytes`).
    pub max_tree_bytes: u64,
    /// Accept plain `http://` repository URLs (`--git-allow-insecure-http`).
    pub allow_insecure_http: bool,
    /// How long a reconcile waits for a running fetch of its repository before it reports the
    /// fetch as in progress (and frees its reconcile slot); the fetch itself goes on.
    pub fetch_wait: Duration,
    /// Extracted trees not checked out for this long are removed.
    pub tree_ttl: Duration,
}

pub const MIB: u64 = 1024 * 1024;

impl Default for GitLimits {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(15),
            server_timeout: Duration::from_secs(60),
            fetch_timeout: Duration::from_secs(300),
            max_fetch_bytes: 512 * MIB,
            max_fetch_objects: 2_000_000,
            max_tree_files: 50_000,
            max_tree_bytes: 256 * MIB,
            allow_insecure_http: false,
            fetch_wait: Duration::from_secs(10),
            tree_ttl: Duration::from_secs(3600),
        }
    }
}

/// Makes libgit2's own transports (git://, smart HTTP(S), and SSH through libssh2's session
/// timeout) give up on a server that does not connect within `connect` or stays silent for
/// `server`. Process-wide: the revert loop's fetches and pushes get the same bounds.
pub fn set_network_timeouts(connect: Duration, server: Duration) -> Result<(), git2::Error> {
    let millis = |d: Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX).max(1);
    // SAFETY: libgit2 reads these two integers when it opens a connection; they are set once at
    // start-up, before any controller (and so any Git operation) runs.
    unsafe {
        git2::opts::set_server_connect_timeout_in_milliseconds(millis(connect))?;
        git2::opts::set_server_timeout_in_milliseconds(millis(server))?;
    }
    Ok(())
}

/// Why a repository URL is refused.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum UrlError {
    #[error(
        "repoURL {url:?} is refused: {scheme}:// is not a supported transport (use https://, ssh://, git:// or user@host:path)"
    )]
    Scheme { url: String, scheme: String },
    #[error(
        "repoURL {url:?} is refused: plain http:// is accepted only when the controller runs with --git-allow-insecure-http (use https://)"
    )]
    InsecureHttp { url: String },
    #[error(
        "repoURL {url:?} is refused: local paths and file:// are never fetched (use https://, ssh://, git:// or user@host:path)"
    )]
    Local { url: String },
    #[error("repoURL {url:?} is refused: {reason}")]
    Malformed { url: String, reason: &'static str },
}

/// Accepts `https://`, `ssh://` (also `git+ssh://`, `ssh+git://`), `git://`, scp-like
/// `[user@]host:path`, and `http://` only when `allow_http`; never `file://`, a local path or
/// another transport. `url` is the scrubbed URL (no credentials), as the messages quote it.
pub fn check_repo_url(url: &str, allow_http: bool) -> Result<(), UrlError> {
    let malformed = |reason| UrlError::Malformed {
        url: url.to_string(),
        reason,
    };
    if url.is_empty() {
        return Err(malformed("it is empty"));
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(malformed("it contains whitespace or control characters"));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return check_scp_like(url);
    };
    match scheme.to_ascii_lowercase().as_str() {
        "https" | "ssh" | "git+ssh" | "ssh+git" | "git" => {}
        "http" if allow_http => {}
        "http" => {
            return Err(UrlError::InsecureHttp {
                url: url.to_string(),
            });
        }
        "file" => {
            return Err(UrlError::Local {
                url: url.to_string(),
            });
        }
        other => {
            return Err(UrlError::Scheme {
                url: url.to_string(),
                scheme: other.to_string(),
            });
        }
    }
    let authority = rest.split('/').next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Err(malformed("it names no host"));
    }
    if host.starts_with('-') {
        return Err(malformed("the host starts with '-'"));
    }
    Ok(())
}

/// `[user@]host:path`, the form libgit2 sends over SSH; anything else without `://` is a path.
fn check_scp_like(url: &str) -> Result<(), UrlError> {
    let local = || UrlError::Local {
        url: url.to_string(),
    };
    let (authority, path) = url.split_once(':').ok_or_else(local)?;
    // git itself reads `a/b:c` as a path: a slash before the first colon.
    if authority.contains('/') {
        return Err(local());
    }
    let host = authority.rsplit('@').next().unwrap_or_default();
    if host.is_empty() || path.is_empty() {
        return Err(local());
    }
    if host.starts_with('-') {
        return Err(UrlError::Malformed {
            url: url.to_string(),
            reason: "the host starts with '-'",
        });
    }
    Ok(())
}

/// A limit one fetch ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchLimit {
    Bytes(u64),
    Objects(u64),
    Deadline(Duration),
}

impl FetchLimit {
    /// What the user reads in the Application's condition: the limit and the flag that sets it.
    pub fn message(self) -> String {
        match self {
            Self::Bytes(max) => format!(
                "the fetch was stopped: the repository sends more than {} (--git-max-fetch-bytes)",
                human_bytes(max)
            ),
            Self::Objects(max) => format!(
                "the fetch was stopped: the repository sends more than {max} objects (--git-max-fetch-objects)"
            ),
            Self::Deadline(after) => format!(
                "the fetch was stopped: not done after {}s (--git-fetch-timeout)",
                after.as_secs()
            ),
        }
    }
}

/// Checks a running fetch against the byte, object and time limits.
#[derive(Clone, Copy, Debug)]
pub struct FetchBudget {
    max_bytes: u64,
    max_objects: u64,
    timeout: Duration,
    deadline: Instant,
}

impl FetchBudget {
    /// A budget for a fetch starting at `started`.
    pub fn new(limits: &GitLimits, started: Instant) -> Self {
        Self {
            max_bytes: limits.max_fetch_bytes,
            max_objects: limits.max_fetch_objects,
            timeout: limits.fetch_timeout,
            deadline: started + limits.fetch_timeout,
        }
    }

    /// The first limit exceeded by a fetch that has received `bytes` and announced `objects`
    /// objects, at `now`.
    pub fn exceeded(&self, bytes: u64, objects: u64, now: Instant) -> Option<FetchLimit> {
        if bytes > self.max_bytes {
            Some(FetchLimit::Bytes(self.max_bytes))
        } else if objects > self.max_objects {
            Some(FetchLimit::Objects(self.max_objects))
        } else if now >= self.deadline {
            Some(FetchLimit::Deadline(self.timeout))
        } else {
            None
        }
    }
}

/// `512Mi`, `3Ki`, `100` (bytes): how the flags are written.
pub fn human_bytes(bytes: u64) -> String {
    for (unit, size) in [("Gi", 1024 * MIB), ("Mi", MIB), ("Ki", 1024)] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    format!("{bytes} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_transports_are_accepted() {
        for url in [
            "https://github.com/org/repo.git",
            "HTTPS://github.com/org/repo",
            "ssh://git@github.com:22/org/repo.git",
            "git+ssh://git@host/repo",
            "git://127.0.0.1:9418/repo.git",
            "git@github.com:org/repo.git",
            "host:repo.git",
            "https://user@host/repo",
        ] {
            assert_eq!(check_repo_url(url, false), Ok(()), "{url}");
        }
        assert_eq!(check_repo_url("http://127.0.0.1/r.git", true), Ok(()));
    }

    #[test]
    fn local_paths_and_other_transports_are_refused_with_a_reason() {
        let refused = |url: &str| check_repo_url(url, true).unwrap_err().to_string();
        for url in [
            "file:///etc",
            "FILE:///srv/repo.git",
            "/var/lib/repo.git",
            "./repo",
            "../../etc",
            "repo.git",
            "a/b:c",
        ] {
            let message = refused(url);
            assert!(
                message.contains("local paths and file:// are never fetched"),
                "{url}: {message}"
            );
        }
        let ext = refused("ext::sh -c touch% /tmp/pwned");
        assert!(ext.contains("whitespace"), "{ext}");
        let ftp = refused("ftp://host/repo");
        assert!(ftp.contains("ftp:// is not a supported transport"), "{ftp}");
        assert!(refused("https:///repo").contains("names no host"));
        assert!(refused("ssh://-oProxyCommand=x/repo").contains("starts with '-'"));
        assert!(refused("-oProxyCommand=x:repo").contains("starts with '-'"));
        assert!(refused("").contains("empty"));
    }

    #[test]
    fn plain_http_needs_the_flag() {
        let err = check_repo_url("http://127.0.0.1:8080/r.git", false).unwrap_err();
        assert_eq!(
            err,
            UrlError::InsecureHttp {
                url: "http://127.0.0.1:8080/r.git".into()
            }
        );
        assert!(err.to_string().contains("--git-allow-insecure-http"));
    }

    #[test]
    fn the_fetch_budget_names_the_first_limit_reached() {
        let limits = GitLimits {
            max_fetch_bytes: 100,
            max_fetch_objects: 10,
            fetch_timeout: Duration::from_secs(5),
            ..GitLimits::default()
        };
        let start = Instant::now();
        let budget = FetchBudget::new(&limits, start);
        assert_eq!(budget.exceeded(100, 10, start), None);
        assert_eq!(budget.exceeded(101, 0, start), Some(FetchLimit::Bytes(100)));
        assert_eq!(budget.exceeded(0, 11, start), Some(FetchLimit::Objects(10)));
        let late = start + Duration::from_secs(5);
        assert_eq!(
            budget.exceeded(0, 0, late),
            Some(FetchLimit::Deadline(Duration::from_secs(5)))
        );
        assert!(
            FetchLimit::Bytes(512 * MIB)
                .message()
                .contains("more than 512Mi (--git-max-fetch-bytes)")
        );
    }

    #[test]
    fn byte_sizes_read_as_the_flags_are_written() {
        assert_eq!(human_bytes(512 * MIB), "512Mi");
        assert_eq!(human_bytes(2 * 1024 * MIB), "2Gi");
        assert_eq!(human_bytes(3 * 1024), "3Ki");
        assert_eq!(human_bytes(1000), "1000 bytes");
    }
}
