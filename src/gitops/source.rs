//! Git sources: one bare cache repository per repo URL and credentials, fetched at most once per
//! `max_age` however many Applications use it (docs/behaviour.md G14), revisions resolved to
//! commits, and commit trees extracted once for the renderers.
//!
//! Everything is kept apart by URL *and* [`CredentialIdentity`] (the fetch state, the bare
//! repository, the extracted trees): an Application reads only objects fetched with the credentials
//! it holds itself, so a team without credentials never reads another team's private repository out
//! of the cache, and one team's wrong token never fails another team's fetches.
//!
//! The cache is only a cache: losing it costs a fetch, nothing else. Everything git2 does is blocking,
//! so it runs on tokio's blocking pool. Credentials are passed in per call (they come from Secrets that
//! may change) and never written to disk or to a message: errors are scrubbed of URL userinfo and of
//! the secret values themselves (docs/behaviour.md G13).
//!
//! Servers and repositories may be hostile ([`GitLimits`]): only remote transports are fetched, a
//! fetch is bounded in time, bytes and objects, an extracted tree in files and bytes, and a fetch
//! that hangs holds neither the reconcile that started it nor any other repository's fetch.
//! Extracted trees no checkout asked for during `tree_ttl` are removed.

mod git;
mod known_hosts;
mod limits;
mod requests;
mod tree;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use jiff::Timestamp;
use thiserror::Error;
use tracing::{debug, warn};

use super::credentials::{CredentialIdentity, Credentials, scrub_message, scrub_url};
pub use git::{network_error_message, remote_callbacks, set_process_limits};
pub use limits::{GitLimits, UrlError, check_repo_url};
pub use requests::{GitRequest, GitRequestMetrics};
pub(crate) use tree::stays_inside as tree_path_stays_inside;
pub(crate) use tree::{mark_used, remove_unused};

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
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error(
        "fetch of {url} in progress for {seconds}s: its server is slow or not answering (it is stopped after --git-fetch-timeout)"
    )]
    FetchInProgress { url: String, seconds: u64 },
}

/// How often extracted trees are looked through for ones no longer used.
const TREE_GC_INTERVAL: Duration = Duration::from_secs(600);
/// Refused commits remembered (forgotten all at once beyond this: they are only walked again).
const MAX_REFUSED_TREES: usize = 1024;

/// Bare cache repositories under `<cache_dir>/repos/<sha1 of url>-<credential identity>.git` and
/// extracted trees under `<cache_dir>/trees/<sha1 of url>-<credential identity>-<commit sha>`. Cheap
/// to clone (an `Arc` inside); share one per process.
#[derive(Clone)]
pub struct RepoCache {
    inner: Arc<Inner>,
}

struct Inner {
    cache_dir: PathBuf,
    repos: Mutex<HashMap<RepoKey, Arc<RepoState>>>,
    requests: GitRequestMetrics,
    limits: GitLimits,
    /// Unit tests fetch `file://` upstreams; the controller never does.
    allow_local: bool,
    last_tree_gc: Mutex<Option<Instant>>,
    /// Trees (by directory name) that could not be extracted (over a limit, a path out of the
    /// tree), and why: a commit never changes, so neither does the answer, and a git bomb is walked
    /// only once.
    refused_trees: Mutex<HashMap<String, SourceError>>,
}

/// One cache repository: a URL fetched with one set of credentials.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct RepoKey {
    url: String,
    identity: CredentialIdentity,
}

impl RepoKey {
    fn new(url: &str, creds: Option<&Credentials>) -> Self {
        Self {
            url: url.to_string(),
            identity: CredentialIdentity::of(creds),
        }
    }

    /// A file name for the key: hashes only, never the URL's userinfo or the credentials.
    fn dir_name(&self) -> String {
        format!("{}-{}", url_hash(&self.url), self.identity.short())
    }
}

/// Per-URL fetch bookkeeping. The task running a fetch holds `running` until the fetch ends, so
/// there is at most one fetch (and one blocking thread) per repository however long a server
/// stalls; callers wait for it only within `fetch_wait` of its start, never behind it for longer.
#[derive(Default)]
struct RepoState {
    running: Arc<tokio::sync::Mutex<()>>,
    record: Mutex<FetchRecord>,
    fetches: AtomicU64,
}

#[derive(Default)]
struct FetchRecord {
    /// When the running fetch started; `None` when none runs.
    running_since: Option<Instant>,
    /// The last fetch that ended.
    last: Option<FetchOutcome>,
}

/// A fetch that ended: when it started, whether it outlasted `fetch_wait` and, if it failed, why
/// (already scrubbed).
#[derive(Clone)]
struct FetchOutcome {
    started: Timestamp,
    slow: bool,
    error: Option<String>,
}

impl std::fmt::Debug for RepoCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoCache")
            .field("cache_dir", &self.inner.cache_dir)
            .finish_non_exhaustive()
    }
}

impl RepoCache {
    /// A cache under `cache_dir` whose fetches are counted and timed in `requests`, with the
    /// default [`GitLimits`].
    pub fn new(cache_dir: PathBuf, requests: GitRequestMetrics) -> Self {
        Self {
            inner: Arc::new(Inner {
                cache_dir,
                repos: Mutex::new(HashMap::new()),
                requests,
                limits: GitLimits::default(),
                allow_local: false,
                last_tree_gc: Mutex::new(None),
                refused_trees: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The same cache with `limits` (set before first use: the cache is not shared yet).
    pub fn with_limits(self, limits: GitLimits) -> Self {
        self.rebuild(|inner| inner.limits = limits)
    }

    /// Lets unit tests fetch upstream repositories over `file://`.
    #[cfg(test)]
    pub(crate) fn allowing_local_repositories(self) -> Self {
        self.rebuild(|inner| inner.allow_local = true)
    }

    fn rebuild(self, change: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Arc::try_unwrap(self.inner).unwrap_or_else(|shared| Inner {
            cache_dir: shared.cache_dir.clone(),
            repos: Mutex::new(HashMap::new()),
            requests: shared.requests.clone(),
            limits: shared.limits.clone(),
            allow_local: shared.allow_local,
            last_tree_gc: Mutex::new(None),
            refused_trees: Mutex::new(HashMap::new()),
        });
        change(&mut inner);
        Self {
            inner: Arc::new(inner),
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
        let key = RepoKey::new(url, creds);
        self.fetch_if_stale(&key, creds, fresh_since).await?;
        let git_dir = self.git_dir(&key);
        let (url, revision) = (url.to_string(), revision.to_string());
        run_blocking(move || git::resolve(&git_dir, &url, &revision)).await
    }

    /// A directory holding the tree of commit `sha` of `url` as fetched with `creds` (extracted
    /// once per repository and sha under `<cache_dir>/trees/`, written to a temporary directory and
    /// renamed into place, so a crash never leaves a half tree): only a commit that a fetch with
    /// these very credentials brought is found. Shared by every caller: use it read-only.
    pub async fn checkout(
        &self,
        url: &str,
        creds: Option<&Credentials>,
        sha: &str,
    ) -> Result<PathBuf, SourceError> {
        if !is_full_sha(sha) {
            return Err(SourceError::InvalidSha {
                sha: sha.to_string(),
            });
        }
        self.collect_unused_trees();
        let key = RepoKey::new(url, creds);
        let tree_name = format!("{}-{}", key.dir_name(), sha.to_ascii_lowercase());
        if let Some(refused) = self.refused_trees().get(&tree_name) {
            return Err(refused.clone());
        }
        let dest = self.trees_dir().join(&tree_name);
        // Marked first: a collection between the check and the mark would remove a tree in use.
        if tree::mark_used(&dest, SystemTime::now()).is_ok() && dest.is_dir() {
            return Ok(dest);
        }
        let git_dir = self.git_dir(&key);
        let (owned_url, owned_sha) = (url.to_string(), sha.to_string());
        let limits = tree::TreeLimits {
            max_entries: self.inner.limits.max_tree_files,
            max_bytes: self.inner.limits.max_tree_bytes,
        };
        let extracted = run_blocking(move || {
            tree::extract(&git_dir, &owned_url, &owned_sha, &dest, limits).map(|()| dest)
        })
        .await;
        if let Err(refused @ SourceError::Tree { .. }) = &extracted {
            let mut refused_trees = self.refused_trees();
            if refused_trees.len() >= MAX_REFUSED_TREES {
                refused_trees.clear();
            }
            refused_trees.insert(tree_name, refused.clone());
        }
        extracted
    }

    fn refused_trees(&self) -> std::sync::MutexGuard<'_, HashMap<String, SourceError>> {
        self.inner
            .refused_trees
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn trees_dir(&self) -> PathBuf {
        self.inner.cache_dir.join("trees")
    }

    /// Every [`TREE_GC_INTERVAL`], removes (in the background) the extracted trees no checkout
    /// asked for during `tree_ttl`: the trees of revisions no Application tracks any more.
    fn collect_unused_trees(&self) {
        {
            let mut last = self
                .inner
                .last_tree_gc
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|at| at.elapsed() < TREE_GC_INTERVAL) {
                return;
            }
            *last = Some(Instant::now());
        }
        let (trees, ttl) = (self.trees_dir(), self.inner.limits.tree_ttl);
        tokio::task::spawn_blocking(move || {
            let removed = tree::remove_unused(&trees, SystemTime::now(), ttl);
            if removed > 0 {
                debug!(removed, "unused extracted trees removed");
            }
        });
    }

    /// How many network fetches were made for `url`, with any credentials.
    pub fn fetch_count(&self, url: &str) -> u64 {
        self.repos()
            .iter()
            .filter(|(key, _)| key.url == url)
            .map(|(_, state)| state.fetches.load(Ordering::Relaxed))
            .sum()
    }

    async fn fetch_if_stale(
        &self,
        key: &RepoKey,
        creds: Option<&Credentials>,
        fresh_since: Timestamp,
    ) -> Result<(), SourceError> {
        let url = key.url.as_str();
        check_repo_url(&scrub_url(url), self.inner.limits.allow_insecure_http).or_else(
            |e| match e {
                UrlError::Local { .. } if self.inner.allow_local => Ok(()),
                e => Err(e),
            },
        )?;
        let state = self.state(key);
        if let Some(result) = state.fresh_result(url, fresh_since) {
            return result;
        }
        let fetch_wait = state.fetch_wait(self.inner.limits.fetch_wait);
        let wait = state.wait_left(fetch_wait);
        let Ok(running) = tokio::time::timeout(wait, state.running.clone().lock_owned()).await
        else {
            return state.in_progress(url);
        };
        // A fetch that ended while this caller waited may be fresh enough.
        if let Some(result) = state.fresh_result(url, fresh_since) {
            return result;
        }
        let fetch = self.start_fetch(key, creds, &state, running);
        match tokio::time::timeout(fetch_wait, fetch).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(SourceError::Worker(e.to_string())),
            Err(_) => state.in_progress(url),
        }
    }

    /// Runs a fetch of `url` in a task of its own that holds `running` until the fetch ends and
    /// then records its outcome, whether or not a caller still waits for it.
    fn start_fetch(
        &self,
        key: &RepoKey,
        creds: Option<&Credentials>,
        state: &Arc<RepoState>,
        running: tokio::sync::OwnedMutexGuard<()>,
    ) -> tokio::task::JoinHandle<Result<(), SourceError>> {
        state.fetches.fetch_add(1, Ordering::Relaxed);
        let (started, clock) = (Timestamp::now(), Instant::now());
        state.record().running_since = Some(clock);
        let git_dir = self.git_dir(key);
        let identity = key.identity.clone();
        let (url, creds) = (key.url.clone(), creds.cloned());
        let (requests, limits) = (self.inner.requests.clone(), self.inner.limits.clone());
        let fetch_wait = limits.fetch_wait;
        let state = Arc::clone(state);
        tokio::spawn(async move {
            let result = {
                let (url, creds) = (url.clone(), creds.clone());
                run_blocking(move || {
                    requests.record(GitRequest::Fetch, || {
                        git::fetch(&git_dir, &url, creds.as_ref(), &limits)
                    })
                })
                .await
            };
            let error = result.err().map(|e| {
                let secrets = creds.as_ref().map(Credentials::secrets).unwrap_or_default();
                scrub_message(&fetch_message(e), &secrets)
            });
            match &error {
                Some(message) => {
                    warn!(url = %scrub_url(&url), credentials = %identity, %message, "git fetch failed");
                }
                None => {
                    debug!(url = %scrub_url(&url), credentials = %identity, elapsed = ?clock.elapsed(), "git fetch done");
                }
            }
            let slow = clock.elapsed() > fetch_wait;
            let outcome = FetchOutcome {
                started,
                slow,
                error,
            };
            let result = outcome.result(&url);
            {
                let mut record = state.record();
                record.last = Some(outcome);
                record.running_since = None;
            }
            drop(running);
            result
        })
    }

    fn repos(&self) -> std::sync::MutexGuard<'_, HashMap<RepoKey, Arc<RepoState>>> {
        self.inner
            .repos
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn state(&self, key: &RepoKey) -> Arc<RepoState> {
        self.repos().entry(key.clone()).or_default().clone()
    }

    fn git_dir(&self, key: &RepoKey) -> PathBuf {
        self.inner
            .cache_dir
            .join("repos")
            .join(format!("{}.git", key.dir_name()))
    }
}

impl RepoState {
    fn record(&self) -> std::sync::MutexGuard<'_, FetchRecord> {
        self.record.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The outcome of the last fetch if it started at or after `fresh_since`.
    fn fresh_result(&self, url: &str, fresh_since: Timestamp) -> Option<Result<(), SourceError>> {
        let record = self.record();
        let last = record.last.as_ref()?;
        (last.started >= fresh_since).then(|| last.result(url))
    }

    /// How long callers wait for a fetch: not at all when the last one outlasted `fetch_wait`
    /// (the server is slow or stuck, and waiting for it again would hold a reconcile slot per
    /// Application for nothing); they get the last result while the new fetch runs.
    fn fetch_wait(&self, fetch_wait: Duration) -> Duration {
        match &self.record().last {
            Some(last) if last.slow => Duration::ZERO,
            _ => fetch_wait,
        }
    }

    /// How long a caller may still wait for the running fetch: what is left of `fetch_wait`
    /// since it started (all of it when none runs).
    fn wait_left(&self, fetch_wait: Duration) -> Duration {
        match self.record().running_since {
            Some(since) => fetch_wait.saturating_sub(since.elapsed()),
            None => fetch_wait,
        }
    }

    /// The answer to a caller that will not wait longer for the running fetch: the cache as the
    /// last fetch left it when that one succeeded (one tick old at most, and no flapping
    /// condition for a repository that is merely slow), else the last failure, else that a first
    /// fetch is still under way.
    fn in_progress(&self, url: &str) -> Result<(), SourceError> {
        let record = self.record();
        match (&record.last, record.running_since) {
            (Some(last), _) => {
                if last.error.is_none() {
                    debug!(url = %scrub_url(url), "fetch in progress: using the previous fetch");
                }
                last.result(url)
            }
            (None, since) => Err(SourceError::FetchInProgress {
                url: scrub_url(url),
                seconds: since.map_or(0, |s| s.elapsed().as_secs()),
            }),
        }
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
