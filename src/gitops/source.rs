//! Git sources: one bare cache repository per repo URL, fetched at most once per `max_age` however many
//! Applications use it (SCENARIOS G14), revisions resolved to commits, and commit trees extracted once
//! for the renderers.
//!
//! The cache is only a cache: losing it costs a fetch, nothing else. Everything git2 does is blocking,
//! so it runs on tokio's blocking pool. Credentials are passed in per call (they come from Secrets that
//! may change) and never written to disk or to a message: errors are scrubbed of URL userinfo and of
//! the secret values themselves (SCENARIOS G13).

mod git;
mod known_hosts;
mod requests;
mod tree;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use jiff::Timestamp;
use thiserror::Error;
use tracing::{debug, warn};

use super::credentials::{Credentials, scrub_message, scrub_url};
pub use git::{network_error_message, remote_callbacks};
pub use requests::{GitRequest, GitRequestMetrics};
pub(crate) use tree::stays_inside as tree_path_stays_inside;

/// Why a source could not be fetched, resolved or checked out. Messages never hold credentials.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SourceError {
    #[error("cannot fetch {url}: {message}")]
    Fetch { url: String, message: String },
    #[error("{url}: revision {revision:?} is not a branch, tag or commit of the repository")]
    UnknownRevision { url: String, revision: String },
    #[error("{url}: {message}")]
    Git { url: String, message: String },
    #[error("{sha:?} is not a full 40-hex commit sha")]
    InvalidSha { sha: String },
    #[error("{url}: commit {sha} is not in the cache (resolve a revision first): {message}")]
    UnknownCommit {
        url: String,
        sha: String,
        message: String,
    },
    #[error("commit {sha}: {path}: {message}")]
    Tree {
        sha: String,
        path: String,
        message: String,
    },
    #[error("git cache {path}: {message}")]
    Cache { path: PathBuf, message: String },
    #[error("git worker failed: {0}")]
    Worker(String),
}

/// Bare cache repositories under `<cache_dir>/repos/<sha1 of url>.git` and extracted trees under
/// `<cache_dir>/trees/<commit sha>`. Cheap to clone (an `Arc` inside); share one per process.
#[derive(Clone)]
pub struct RepoCache {
    inner: Arc<Inner>,
}

struct Inner {
    cache_dir: PathBuf,
    repos: Mutex<HashMap<String, Arc<RepoState>>>,
    requests: GitRequestMetrics,
}

/// Per-URL fetch bookkeeping; the async mutex makes concurrent callers wait for one fetch.
#[derive(Default)]
struct RepoState {
    last_fetch: tokio::sync::Mutex<Option<FetchOutcome>>,
    fetches: AtomicU64,
}

/// The last fetch of a repository: when it started and, if it failed, why (already scrubbed).
struct FetchOutcome {
    started: Timestamp,
    error: Option<String>,
}

impl RepoCache {
    /// A cache under `cache_dir` whose fetches are counted and timed in `requests`.
    pub fn new(cache_dir: PathBuf, requests: GitRequestMetrics) -> Self {
        Self {
            inner: Arc::new(Inner {
                cache_dir,
                repos: Mutex::new(HashMap::new()),
                requests,
            }),
        }
    }

    /// The directory holding the cache.
    pub fn cache_dir(&self) -> &Path {
        &self.inner.cache_dir
    }

    /// Fetches `url` (all branches and tags, pruning) unless a fetch of it started at or after
    /// `fresh_since`, then resolves `revision` (branch, tag, full or short sha, `HEAD` or empty = the
    /// remote's HEAD) to a full 40-hex commit sha. `fresh_since` is a point in time, not an age, so a
    /// caller that waited behind another caller's fetch still shares it: every Application of a repo
    /// asking "fetched since the last tick?" costs one fetch per tick, and a webhook push asks "fetched
    /// since now?". A failed fetch counts as a fetch too, so a broken repository costs one attempt per
    /// tick.
    pub async fn resolve(
        &self,
        url: &str,
        revision: &str,
        creds: Option<&Credentials>,
        fresh_since: Timestamp,
    ) -> Result<String, SourceError> {
        self.fetch_if_stale(url, creds, fresh_since).await?;
        let git_dir = self.git_dir(url);
        let (url, revision) = (url.to_string(), revision.to_string());
        run_blocking(move || git::resolve(&git_dir, &url, &revision)).await
    }

    /// A directory holding the tree of commit `sha` of `url` (extracted once per sha under
    /// `<cache_dir>/trees/`, written to a temporary directory and renamed into place, so a crash never
    /// leaves a half tree). Shared by every caller: use it read-only.
    pub async fn checkout(&self, url: &str, sha: &str) -> Result<PathBuf, SourceError> {
        if !is_full_sha(sha) {
            return Err(SourceError::InvalidSha {
                sha: sha.to_string(),
            });
        }
        let dest = self.inner.cache_dir.join("trees").join(sha);
        if dest.is_dir() {
            return Ok(dest);
        }
        let git_dir = self.git_dir(url);
        let (url, sha) = (url.to_string(), sha.to_string());
        run_blocking(move || tree::extract(&git_dir, &url, &sha, &dest).map(|()| dest)).await
    }

    /// How many network fetches were made for `url`.
    pub fn fetch_count(&self, url: &str) -> u64 {
        self.state(url).fetches.load(Ordering::Relaxed)
    }

    async fn fetch_if_stale(
        &self,
        url: &str,
        creds: Option<&Credentials>,
        fresh_since: Timestamp,
    ) -> Result<(), SourceError> {
        let state = self.state(url);
        let mut last = state.last_fetch.lock().await;
        if let Some(outcome) = last.as_ref()
            && outcome.started >= fresh_since
        {
            return outcome.result(url);
        }
        state.fetches.fetch_add(1, Ordering::Relaxed);
        let (started, clock) = (Timestamp::now(), Instant::now());
        let git_dir = self.git_dir(url);
        let (owned_url, owned_creds) = (url.to_string(), creds.cloned());
        let requests = self.inner.requests.clone();
        let result = run_blocking(move || {
            requests.record(GitRequest::Fetch, || {
                git::fetch(&git_dir, &owned_url, owned_creds.as_ref())
            })
        })
        .await;
        let error = result.err().map(|e| {
            let secrets = creds.map(Credentials::secrets).unwrap_or_default();
            scrub_message(&fetch_message(e), &secrets)
        });
        match &error {
            Some(message) => warn!(url = %scrub_url(url), %message, "git fetch failed"),
            None => debug!(url = %scrub_url(url), elapsed = ?clock.elapsed(), "git fetch done"),
        }
        let outcome = FetchOutcome { started, error };
        let result = outcome.result(url);
        *last = Some(outcome);
        result
    }

    fn state(&self, url: &str) -> Arc<RepoState> {
        let mut repos = self
            .inner
            .repos
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        repos.entry(url.to_string()).or_default().clone()
    }

    fn git_dir(&self, url: &str) -> PathBuf {
        self.inner
            .cache_dir
            .join("repos")
            .join(format!("{}.git", url_hash(url)))
    }
}

impl FetchOutcome {
    fn result(&self, url: &str) -> Result<(), SourceError> {
        match &self.error {
            None => Ok(()),
            Some(message) => Err(SourceError::Fetch {
                url: scrub_url(url),
                message: message.clone(),
            }),
        }
    }
}

/// The message of a fetch error without the `cannot fetch <url>` prefix the outcome adds again.
fn fetch_message(error: SourceError) -> String {
    match error {
        SourceError::Fetch { message, .. } | SourceError::Git { message, .. } => message,
        other => other.to_string(),
    }
}

/// SHA-1 of the URL (git's own hash, so no extra crate): stable across processes and versions, so a
/// restarted controller finds its cache again.
fn url_hash(url: &str) -> String {
    git2::Oid::hash_object(git2::ObjectType::Blob, url.as_bytes())
        .map(|oid| oid.to_string())
        // Hashing a byte slice cannot fail in libgit2; a fixed fallback keeps the path valid anyway.
        .unwrap_or_else(|_| scrub_url(url).replace(|c: char| !c.is_ascii_alphanumeric(), "_"))
}

pub(crate) fn is_full_sha(sha: &str) -> bool {
    sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit())
}

async fn run_blocking<T, F>(work: F) -> Result<T, SourceError>
where
    F: FnOnce() -> Result<T, SourceError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| SourceError::Worker(e.to_string()))?
}

#[cfg(test)]
mod tests;
