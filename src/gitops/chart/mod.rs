//! Helm charts from chart repositories and OCI registries (`spec.source.chart`), as Argo CD reads
//! them: `repoURL` is an HTTP(S) repository (its `index.yaml`), or an OCI registry (`oci://host/path`,
//! or `host/path` with `enableOCI` in its repository Secret); `targetRevision` is a version or a
//! semver range resolved to the highest version it admits; the resolved version is the revision.
//!
//! As with Git ([`crate::gitops::source`]): one listing fetch per repository, chart and credentials
//! per poll tick however many Applications ask ("fetched since?"), a fetch bounded in time and bytes
//! that runs on in the background while a reconcile that waited `fetch_wait` for it moves on, caches
//! kept apart by credentials, archives checked against their digests and unpacked with bounds, and
//! plain HTTP refused unless the controller allows it (`--git-allow-insecure-http`) or the host is
//! the loopback (nothing leaves the machine).

mod archive;
mod fetch;
mod index;
mod oci;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime};

use futures::future::{BoxFuture, FutureExt, Shared};
use jiff::Timestamp;
use thiserror::Error;

use super::credentials::{ChartAccess, CredentialIdentity, scrub_url};
use super::semver_range::{SemverRange, is_range, parse_version};
use super::source::{GitLimits, mark_used, remove_unused};
use archive::{ArchiveLimits, chart_dir_of, unpack_chart};
use index::IndexEntry;
use oci::{OciRepository, Session};

/// Why a chart could not be listed, resolved or unpacked. Messages never hold credentials.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ChartError {
    #[error("{repo}: {message}")]
    Repository { repo: String, message: String },
    #[error(
        "chart {chart} of {repo}: no version matches targetRevision {revision:?} (versions: {known})"
    )]
    NoVersion {
        repo: String,
        chart: String,
        revision: String,
        known: String,
    },
    #[error("chart {chart} {version} of {repo}: {message}")]
    Archive {
        repo: String,
        chart: String,
        version: String,
        message: String,
    },
    #[error(
        "fetch of {repo} in progress for {seconds}s: its server is slow or not answering (it is stopped after --git-fetch-timeout)"
    )]
    InProgress { repo: String, seconds: u64 },
    #[error("chart worker failed: {0}")]
    Worker(String),
}

/// Where a chart is and how to reach it, from the source and its repository Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChartLocation {
    repo_url: String,
    chart: String,
    registry: Registry,
    access: ChartAccess,
    /// `helm.passCredentials`: credentials also go to archive URLs on other hosts.
    pass_credentials: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Registry {
    Http,
    Oci(OciRepository),
}

impl ChartLocation {
    /// Checks `repo_url` and `chart` as the controller allows them (`allow_http`: plain HTTP to
    /// hosts other than the loopback).
    pub fn new(
        repo_url: &str,
        chart: &str,
        access: ChartAccess,
        pass_credentials: bool,
        allow_http: bool,
    ) -> Result<Self, ChartError> {
        let refuse = |message: String| ChartError::Repository {
            repo: scrub_url(repo_url),
            message,
        };
        if chart.is_empty() || chart.contains(['/', '\\']) || chart.starts_with('.') {
            return Err(refuse(format!("{chart:?} is not a chart name")));
        }
        let lower = repo_url.trim().to_ascii_lowercase();
        let registry = if lower.starts_with("oci://")
            || (!lower.contains("://") && access.enable_oci)
        {
            let host = lower.strip_prefix("oci://").unwrap_or(&lower);
            let plain =
                access.force_http || is_loopback(host.split('/').next().unwrap_or_default());
            Registry::Oci(OciRepository::new(repo_url.trim(), chart, plain).map_err(refuse)?)
        } else if lower.starts_with("https://") {
            Registry::Http
        } else if let Some(rest) = lower.strip_prefix("http://") {
            let host = rest.split('/').next().unwrap_or_default();
            if !allow_http && !is_loopback(host) {
                return Err(refuse(
                    "plain http:// chart repositories are refused unless the controller runs with --git-allow-insecure-http".into(),
                ));
            }
            Registry::Http
        } else if !lower.contains("://") {
            return Err(refuse(
                "a chart repository URL needs https:// (or oci:// for an OCI registry, or enableOCI: \"true\" in its repository Secret)".into(),
            ));
        } else {
            return Err(refuse(
                "a chart repository is reached over https://, http:// or oci://".into(),
            ));
        };
        if repo_url.contains('@') && !matches!(registry, Registry::Oci(_)) {
            return Err(refuse(
                "credentials in the URL are refused: put them in a repository Secret".into(),
            ));
        }
        Ok(Self {
            repo_url: repo_url.trim().trim_end_matches('/').to_string(),
            chart: chart.to_string(),
            registry,
            access,
            pass_credentials,
        })
    }

    fn key(&self) -> ListingKey {
        ListingKey {
            repo_url: self.repo_url.clone(),
            chart: self.chart.clone(),
            oci: matches!(self.registry, Registry::Oci(_)),
            identity: CredentialIdentity::of(self.access.as_credentials().as_ref()),
        }
    }

    fn shown(&self) -> String {
        scrub_url(&self.repo_url)
    }
}

/// `127.0.0.0/8`, `::1` and `localhost`, with or without a port.
fn is_loopback(host_port: &str) -> bool {
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host_port.rsplit_once(':').map_or(host_port, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// One listing: a chart of a repository, as seen with one set of credentials.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ListingKey {
    repo_url: String,
    chart: String,
    oci: bool,
    identity: CredentialIdentity,
}

impl ListingKey {
    /// A directory name: hashes only, never the URL's userinfo or the credentials.
    fn dir_name(&self) -> String {
        let digest = fetch::sha256_hex(
            format!("{}\n{}\n{}", self.repo_url, self.chart, self.oci).as_bytes(),
        );
        format!("{}-{}", &digest[..32], self.identity.short())
    }
}

type Versions = Arc<Vec<IndexEntry>>;
type SharedResult<T> = Shared<BoxFuture<'static, Result<T, ChartError>>>;

/// A fetch that started at `started`; finished or not, its result is shared by every caller.
#[derive(Clone)]
struct Flight<T: Clone> {
    started: Timestamp,
    since: Instant,
    result: SharedResult<T>,
}

/// Chart listings and unpacked charts under `<cache_dir>/charts/`. Cheap to clone; share one.
#[derive(Clone)]
pub struct ChartCache {
    inner: Arc<Inner>,
}

struct Inner {
    cache_dir: PathBuf,
    /// The HTTP client, or why it could not be built (every fetch then fails with that).
    client: Result<reqwest::Client, String>,
    limits: GitLimits,
    listings: Mutex<HashMap<ListingKey, Flight<Versions>>>,
    downloads: Mutex<HashMap<PathBuf, Flight<PathBuf>>>,
    fetches: AtomicU64,
    last_gc: Mutex<Option<Instant>>,
}

impl ChartCache {
    pub fn new(cache_dir: PathBuf, limits: GitLimits) -> Self {
        crate::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(limits.connect_timeout)
            .timeout(limits.fetch_timeout)
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .map_err(|e| format!("the HTTP client cannot be built: {e}"));
        Self {
            inner: Arc::new(Inner {
                cache_dir,
                client,
                limits,
                listings: Mutex::new(HashMap::new()),
                downloads: Mutex::new(HashMap::new()),
                fetches: AtomicU64::new(0),
                last_gc: Mutex::new(None),
            }),
        }
    }

    fn client(&self) -> Result<&reqwest::Client, ChartError> {
        self.inner
            .client
            .as_ref()
            .map_err(|e| ChartError::Worker(e.clone()))
    }

    /// Listing fetches made so far (index.yaml or tag lists), for tests and metrics.
    pub fn fetch_count(&self) -> u64 {
        self.inner.fetches.load(Ordering::Relaxed)
    }

    /// The version `revision` names: itself when published, else the highest version a semver
    /// range admits (`""`, `HEAD` and `*` mean the highest release). The listing is fetched
    /// unless a fetch of it started at or after `fresh_since`.
    pub async fn resolve(
        &self,
        location: &ChartLocation,
        revision: &str,
        fresh_since: Timestamp,
    ) -> Result<String, ChartError> {
        let versions = self.listing(location, fresh_since).await?;
        choose_version(location, &versions, revision)
    }

    /// The unpacked chart of `version` (downloaded once per repository, chart, version and
    /// credentials). Shared by every caller: use it read-only.
    pub async fn checkout(
        &self,
        location: &ChartLocation,
        version: &str,
    ) -> Result<PathBuf, ChartError> {
        self.collect_unused();
        let safe_version: String = version
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || ".-+".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let dest = self
            .charts_dir()
            .join(format!("{}-{safe_version}", location.key().dir_name()));
        if let Some(chart_dir) = unpacked(&dest) {
            return Ok(chart_dir);
        }
        let flight = {
            let mut downloads = lock(&self.inner.downloads);
            // Only downloads in flight are joined: a finished one is on disk (or failed, and is
            // tried again).
            downloads.retain(|_, f| f.result.peek().is_none());
            let reusable = downloads.get(&dest);
            match reusable {
                Some(flight) => flight.clone(),
                None => {
                    let flight = self.start(self.clone().download(
                        location.clone(),
                        version.to_string(),
                        dest.clone(),
                    ));
                    downloads.insert(dest, flight.clone());
                    flight
                }
            }
        };
        self.wait(location, flight).await
    }

    async fn listing(
        &self,
        location: &ChartLocation,
        fresh_since: Timestamp,
    ) -> Result<Versions, ChartError> {
        let key = location.key();
        let flight = {
            let mut listings = lock(&self.inner.listings);
            match listings.get(&key).filter(|f| f.started >= fresh_since) {
                Some(flight) => flight.clone(),
                None => {
                    self.inner.fetches.fetch_add(1, Ordering::Relaxed);
                    let flight = self.start(self.clone().fetch_listing(location.clone()));
                    listings.insert(key, flight.clone());
                    flight
                }
            }
        };
        self.wait(location, flight).await
    }

    /// Runs `work` as its own task (it goes on when a caller stops waiting for it).
    fn start<T, F>(&self, work: F) -> Flight<T>
    where
        T: Clone + Send + Sync + 'static,
        F: Future<Output = Result<T, ChartError>> + Send + 'static,
    {
        let task = tokio::spawn(work);
        let result = async move {
            task.await
                .unwrap_or_else(|e| Err(ChartError::Worker(e.to_string())))
        }
        .boxed()
        .shared();
        Flight {
            started: Timestamp::now(),
            since: Instant::now(),
            result,
        }
    }

    /// The flight's result, waiting at most `fetch_wait` from its start.
    async fn wait<T: Clone>(
        &self,
        location: &ChartLocation,
        flight: Flight<T>,
    ) -> Result<T, ChartError> {
        let left = self
            .inner
            .limits
            .fetch_wait
            .saturating_sub(flight.since.elapsed());
        match tokio::time::timeout(left, flight.result).await {
            Ok(result) => result,
            Err(_) => Err(ChartError::InProgress {
                repo: location.shown(),
                seconds: flight.since.elapsed().as_secs(),
            }),
        }
    }

    async fn fetch_listing(self, location: ChartLocation) -> Result<Versions, ChartError> {
        let client = self.client()?;
        let max = self.inner.limits.max_fetch_bytes;
        let repository = |message: String| ChartError::Repository {
            repo: location.shown(),
            message,
        };
        let entries = match &location.registry {
            Registry::Http => {
                let url = format!("{}/index.yaml", location.repo_url);
                let auth = basic_auth(&location.access);
                let body = fetch::get_ok(client, &url, &auth, None, max)
                    .await
                    .map_err(repository)?;
                tokio::task::spawn_blocking({
                    let chart = location.chart.clone();
                    move || index::chart_entries(&body, &chart)
                })
                .await
                .map_err(|e| ChartError::Worker(e.to_string()))?
                .map_err(repository)?
            }
            Registry::Oci(repo) => Session::new(client, repo, location.access.basic.clone())
                .versions()
                .await
                .map_err(repository)?
                .into_iter()
                .map(|version| IndexEntry {
                    version,
                    ..IndexEntry::default()
                })
                .collect(),
        };
        Ok(Arc::new(entries))
    }

    async fn download(
        self,
        location: ChartLocation,
        version: String,
        dest: PathBuf,
    ) -> Result<PathBuf, ChartError> {
        let archive_error = |message: String| ChartError::Archive {
            repo: location.shown(),
            chart: location.chart.clone(),
            version: version.clone(),
            message,
        };
        let client = self.client()?;
        let max = self.inner.limits.max_fetch_bytes;
        let archive = match &location.registry {
            Registry::Http => {
                // The entry's URL and digest: from a listing fetched at any time (versions of a
                // chart repository are immutable, as Helm publishes them).
                let versions = self.listing(&location, Timestamp::UNIX_EPOCH).await?;
                let entry = versions
                    .iter()
                    .find(|e| e.version == version)
                    .ok_or_else(|| archive_error("the repository no longer lists it".into()))?;
                let url = index::archive_url(&location.repo_url, entry).map_err(archive_error)?;
                let auth =
                    if location.pass_credentials || index::same_origin(&location.repo_url, &url) {
                        basic_auth(&location.access)
                    } else {
                        fetch::Auth::Anonymous
                    };
                let body = fetch::get_ok(client, &url, &auth, None, max)
                    .await
                    .map_err(archive_error)?;
                check_digest(entry, &body).map_err(archive_error)?;
                body
            }
            Registry::Oci(repo) => Session::new(client, repo, location.access.basic.clone())
                .chart_archive(&version, max)
                .await
                .map_err(archive_error)?,
        };
        let limits = ArchiveLimits {
            max_entries: self.inner.limits.max_tree_files,
            max_bytes: self.inner.limits.max_tree_bytes,
        };
        tokio::task::spawn_blocking(move || unpack_chart(&archive, &dest, limits))
            .await
            .map_err(|e| ChartError::Worker(e.to_string()))?
            .map_err(archive_error)
    }

    fn charts_dir(&self) -> PathBuf {
        self.inner.cache_dir.join("charts")
    }

    /// Removes (in the background, at most once per hour) unpacked charts unused for the trees' TTL.
    fn collect_unused(&self) {
        {
            let mut last = lock(&self.inner.last_gc);
            if last.is_some_and(|at| at.elapsed() < std::time::Duration::from_secs(3600)) {
                return;
            }
            *last = Some(Instant::now());
        }
        let (dir, ttl) = (self.charts_dir(), self.inner.limits.tree_ttl);
        tokio::task::spawn_blocking(move || remove_unused(&dir, SystemTime::now(), ttl));
    }
}

/// The chart directory of an unpacked chart at `dest`, marked as used.
fn unpacked(dest: &Path) -> Option<PathBuf> {
    mark_used(dest, SystemTime::now()).ok()?;
    chart_dir_of(dest)
}

fn basic_auth(access: &ChartAccess) -> fetch::Auth {
    match &access.basic {
        Some((username, password)) => fetch::Auth::Basic {
            username: username.clone(),
            password: password.clone(),
        },
        None => fetch::Auth::Anonymous,
    }
}

fn check_digest(entry: &IndexEntry, archive: &[u8]) -> Result<(), String> {
    let Some(expected) = entry.digest.as_deref().filter(|d| !d.is_empty()) else {
        return Ok(());
    };
    let expected = expected.strip_prefix("sha256:").unwrap_or(expected);
    let actual = fetch::sha256_hex(archive);
    if actual.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(format!(
            "the archive's SHA-256 is {actual}, the repository's index says {expected}"
        ))
    }
}

/// `revision` as a published version: exact (as written, or the same semantic version), else
/// the highest in its range.
fn choose_version(
    location: &ChartLocation,
    versions: &[IndexEntry],
    revision: &str,
) -> Result<String, ChartError> {
    let revision = revision.trim();
    if let Some(exact) = versions.iter().find(|e| e.version == revision) {
        return Ok(exact.version.clone());
    }
    let wanted = parse_version(revision);
    if let Some(same) = wanted.as_ref().and_then(|wanted| {
        versions
            .iter()
            .find(|e| parse_version(&e.version).as_ref() == Some(wanted))
    }) {
        return Ok(same.version.clone());
    }
    let range = match revision {
        "" | "HEAD" => Some("*"),
        r if is_range(r) => Some(r),
        _ => None,
    };
    let best = range
        .and_then(|r| SemverRange::parse(r).ok())
        .and_then(|range| range.best(versions.iter().map(|e| e.version.as_str())));
    best.map(str::to_string).ok_or_else(|| {
        let mut known: Vec<&str> = versions.iter().map(|e| e.version.as_str()).collect();
        known.sort_by_key(|v| std::cmp::Reverse(parse_version(v)));
        let shown = if known.is_empty() {
            "none".to_string()
        } else {
            known.into_iter().take(10).collect::<Vec<_>>().join(", ")
        };
        ChartError::NoVersion {
            repo: location.shown(),
            chart: location.chart.clone(),
            revision: revision.to_string(),
            known: shown,
        }
    })
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
