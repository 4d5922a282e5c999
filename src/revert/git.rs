//! The Git write-back (blocking; run it in `spawn_blocking`): revert one commit on a branch and
//! push it, never forcing. A push the server refuses (non-fast-forward because someone pushed
//! meanwhile, or a hook's rejection reported through `push_update_reference` while `push()` itself
//! returns Ok) is retried on the new head, a bounded number of times. A revert already on the branch
//! (Sluice's trailer, or git's own "This reverts commit <sha>.") is found and not made twice.

use std::cell::RefCell;
use std::path::Path;

use git2::{ErrorCode, FetchOptions, Oid, PushOptions, Repository, Revwalk, Signature, Sort};
use thiserror::Error;

use crate::cli::GitAuthor;
use crate::gitops::credentials::{Credentials, scrub_message, scrub_url};
use crate::gitops::source::{
    GitRequest, GitRequestMetrics, network_error_message, remote_callbacks,
};
use crate::revert::message::{RevertReason, revert_message, reverted_sha};
use crate::revert::plan::refuse_to_revert;

const REMOTE: &str = "origin";
/// How far back from the branch head an existing revert is looked for.
const MAX_WALK: usize = 10_000;

/// What to revert, where, as whom.
pub struct RevertJob<'a> {
    pub url: &'a str,
    pub branch: &'a str,
    /// The commit to revert (full sha).
    pub sha: &'a str,
    pub reason: &'a RevertReason,
    pub author: &'a GitAuthor,
    pub creds: Option<&'a Credentials>,
    /// Counts and times the fetches and pushes.
    pub requests: &'a GitRequestMetrics,
}

/// How a revert ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevertOutcome {
    /// The revert commit is on the branch now; `message` is its commit message (bounded).
    Pushed {
        revert_commit: String,
        message: String,
    },
    /// A revert of the commit was already on the branch (an earlier attempt, or a person).
    AlreadyReverted {
        revert_commit: String,
        message: String,
    },
    /// The revert does not apply to the branch head; nothing was pushed.
    Conflict { paths: Vec<String> },
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RevertError {
    #[error("{action} {url}: {message}")]
    Git {
        action: &'static str,
        url: String,
        message: String,
    },
    #[error("commit {sha} is not on branch {branch} of {url}: nothing to revert there")]
    NotOnBranch {
        sha: String,
        branch: String,
        url: String,
    },
    #[error(
        "branch {branch:?} does not exist in {url} (spec.source.targetRevision must name a branch to revert on)"
    )]
    NoSuchBranch { branch: String, url: String },
    #[error("{0}")]
    RevertOfRevert(String),
    #[error("{url} refused the revert push {attempts} times; last: {message}")]
    Rejected {
        url: String,
        attempts: u32,
        message: String,
    },
}

/// Reverts `job.sha` on `job.branch` and pushes it, with up to `attempts` tries.
pub fn revert_and_push(
    work_dir: &Path,
    job: &RevertJob<'_>,
    attempts: u32,
) -> Result<RevertOutcome, RevertError> {
    revert_and_push_observed(work_dir, job, attempts, |_| {})
}

/// As [`revert_and_push`]; `before_push(attempt)` runs after each fetch, right before the push
/// (tests use it to land a concurrent push at the worst moment).
pub fn revert_and_push_observed(
    work_dir: &Path,
    job: &RevertJob<'_>,
    attempts: u32,
    mut before_push: impl FnMut(u32),
) -> Result<RevertOutcome, RevertError> {
    let git = GitErrors::new(job);
    let repo =
        open_work_repo(work_dir, job.url).map_err(git.err("opening the work repository for"))?;
    let mut last_refusal = String::new();
    for attempt in 1..=attempts.max(1) {
        let head = fetch_branch(&repo, job)
            .map_err(git.err("fetching"))?
            .ok_or_else(|| RevertError::NoSuchBranch {
                branch: job.branch.to_string(),
                url: scrub_url(job.url),
            })?;
        if let Some(existing) = find_existing_revert(&repo, head, job)? {
            return Ok(RevertOutcome::AlreadyReverted {
                revert_commit: existing.to_string(),
                message: bounded_message(&repo, existing),
            });
        }
        refuse_a_revert_of_a_revert(&repo, job)?;
        let revert = match make_revert_commit(&repo, head, job).map_err(git.err("reverting on"))? {
            Ok(oid) => oid,
            Err(paths) => return Ok(RevertOutcome::Conflict { paths }),
        };
        before_push(attempt);
        match push(&repo, revert, job) {
            Ok(()) => {
                return Ok(RevertOutcome::Pushed {
                    revert_commit: revert.to_string(),
                    message: bounded_message(&repo, revert),
                });
            }
            Err(Push::Refused(message)) => {
                tracing::info!(url = %scrub_url(job.url), attempt, reason = %message, "revert push refused; retrying on the new head");
                last_refusal = message;
            }
            Err(Push::Failed(e)) => return Err(git.err("pushing to")(e)),
        }
    }
    Err(RevertError::Rejected {
        url: scrub_url(job.url),
        attempts,
        message: git.scrub(&last_refusal),
    })
}

/// Turns git2 errors into [`RevertError::Git`] with the URL and secrets scrubbed.
struct GitErrors<'a> {
    url: &'a str,
    creds: Option<&'a Credentials>,
}

impl<'a> GitErrors<'a> {
    fn new(job: &RevertJob<'a>) -> Self {
        Self {
            url: job.url,
            creds: job.creds,
        }
    }

    fn scrub(&self, message: &str) -> String {
        scrub_message(
            message,
            &self.creds.map(Credentials::secrets).unwrap_or_default(),
        )
    }

    fn err(&self, action: &'static str) -> impl Fn(git2::Error) -> RevertError + '_ {
        move |e| RevertError::Git {
            action,
            url: scrub_url(self.url),
            message: network_error_message(&e, self.creds),
        }
    }
}

/// A bare repository of its own (not the sync cache, which fetches concurrently), remote `origin`.
fn open_work_repo(work_dir: &Path, url: &str) -> Result<Repository, git2::Error> {
    let repo = match Repository::open_bare(work_dir) {
        Ok(repo) => repo,
        Err(_) => Repository::init_bare(work_dir)?,
    };
    match repo.find_remote(REMOTE) {
        Ok(remote) if remote.url().ok() == Some(url) => {}
        Ok(_) => repo.remote_set_url(REMOTE, url)?,
        Err(_) => {
            repo.remote_with_fetch(REMOTE, url, "+refs/heads/*:refs/remotes/origin/*")?;
        }
    }
    Ok(repo)
}

fn tracking_ref(branch: &str) -> String {
    format!("refs/remotes/{REMOTE}/{branch}")
}

/// Fetches the branch and returns its head; `None` when the server has no such branch (a tag or
/// a commit named as `targetRevision`).
fn fetch_branch(repo: &Repository, job: &RevertJob<'_>) -> Result<Option<Oid>, git2::Error> {
    let mut remote = repo.find_remote(REMOTE)?;
    let refspec = format!("+refs/heads/{}:{}", job.branch, tracking_ref(job.branch));
    let mut options = FetchOptions::new();
    options.remote_callbacks(remote_callbacks(job.creds, job.url));
    job.requests.record(GitRequest::Fetch, || {
        remote.fetch(
            &[refspec.as_str()],
            Some(&mut options),
            Some("sluice: revert fetch"),
        )
    })?;
    match repo.refname_to_id(&tracking_ref(job.branch)) {
        Ok(head) => Ok(Some(head)),
        Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Sluice's own revert commits are never reverted (see [`refuse_to_revert`]).
fn refuse_a_revert_of_a_revert(repo: &Repository, job: &RevertJob<'_>) -> Result<(), RevertError> {
    let git = GitErrors::new(job);
    let commit = Oid::from_str(job.sha)
        .and_then(|oid| repo.find_commit(oid))
        .map_err(git.err("reading the commit to revert from"))?;
    match refuse_to_revert(job.sha, &String::from_utf8_lossy(commit.message_bytes())) {
        Some(message) => Err(RevertError::RevertOfRevert(message)),
        None => Ok(()),
    }
}

/// The commits after `job.sha` on the branch, newest first; errors when `job.sha` is not on it.
fn commits_since<'r>(
    repo: &'r Repository,
    head: Oid,
    job: &RevertJob<'_>,
) -> Result<Revwalk<'r>, RevertError> {
    let git = GitErrors::new(job);
    let target = Oid::from_str(job.sha).map_err(git.err("reading the commit to revert from"))?;
    // Only the branch is fetched: a commit missing from the repository is not on it.
    let fetched = repo
        .odb()
        .map(|odb| odb.exists(target))
        .map_err(git.err("reading the objects of"))?;
    let on_branch = fetched
        && (head == target
            || repo
                .graph_descendant_of(head, target)
                .map_err(git.err("walking the history of"))?);
    if !on_branch {
        return Err(RevertError::NotOnBranch {
            sha: job.sha.to_string(),
            branch: job.branch.to_string(),
            url: scrub_url(job.url),
        });
    }
    let mut walk = repo.revwalk().map_err(git.err("walking the history of"))?;
    walk.set_sorting(Sort::TOPOLOGICAL)
        .and_then(|()| walk.push(head))
        .and_then(|()| walk.hide(target))
        .map_err(git.err("walking the history of"))?;
    Ok(walk)
}

/// A commit after `job.sha` whose message says it reverts it.
/// What status keeps of a revert commit's message, so people read why without Git access.
pub const MAX_RECORDED_MESSAGE: usize = 4096;

/// The commit's message, cut at [`MAX_RECORDED_MESSAGE`] bytes (at a character boundary).
fn bounded_message(repo: &Repository, oid: Oid) -> String {
    let Ok(commit) = repo.find_commit(oid) else {
        return String::new();
    };
    let message = String::from_utf8_lossy(commit.message_bytes());
    let mut end = message.len().min(MAX_RECORDED_MESSAGE);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message[..end].to_string()
}

fn find_existing_revert(
    repo: &Repository,
    head: Oid,
    job: &RevertJob<'_>,
) -> Result<Option<Oid>, RevertError> {
    let git_says = format!("This reverts commit {}.", job.sha);
    for oid in commits_since(repo, head, job)?.take(MAX_WALK) {
        let oid = oid.map_err(GitErrors::new(job).err("walking the history of"))?;
        let Ok(commit) = repo.find_commit(oid) else {
            continue;
        };
        let message = commit.message().unwrap_or_default();
        if reverted_sha(message) == Some(job.sha) || message.contains(&git_says) {
            return Ok(Some(oid));
        }
    }
    Ok(None)
}

/// The revert commit on top of `head` (not on any branch yet), or the conflicting paths.
fn make_revert_commit(
    repo: &Repository,
    head: Oid,
    job: &RevertJob<'_>,
) -> Result<Result<Oid, Vec<String>>, git2::Error> {
    let target = repo.find_commit(Oid::from_str(job.sha)?)?;
    let head_commit = repo.find_commit(head)?;
    // A merge is reverted against its first parent, as `git revert -m 1`.
    let mainline = if target.parent_count() > 1 { 1 } else { 0 };
    let mut index = repo.revert_commit(&target, &head_commit, mainline, None)?;
    if index.has_conflicts() {
        let mut paths: Vec<String> = index
            .conflicts()?
            .filter_map(Result::ok)
            .filter_map(|c| c.our.or(c.their).or(c.ancestor))
            .map(|entry| String::from_utf8_lossy(&entry.path).into_owned())
            .collect();
        paths.sort();
        paths.dedup();
        return Ok(Err(paths));
    }
    let tree = repo.find_tree(index.write_tree_to(repo)?)?;
    let who = Signature::now(&job.author.name, &job.author.email)?;
    let summary = target
        .summary()
        .ok()
        .flatten()
        .unwrap_or_default()
        .to_string();
    let message = revert_message(job.sha, &summary, job.reason);
    repo.commit(None, &who, &who, &message, &tree, &[&head_commit])
        .map(Ok)
}

enum Push {
    /// The server refused the update (non-fast-forward, a hook): fetch and try again.
    Refused(String),
    Failed(git2::Error),
}

/// Pushes `revert` to the branch without force; a refusal reported per reference counts as one.
fn push(repo: &Repository, revert: Oid, job: &RevertJob<'_>) -> Result<(), Push> {
    let local = format!("refs/sluice/revert/{}", job.branch);
    repo.reference(&local, revert, true, "sluice: revert to push")
        .map_err(Push::Failed)?;
    let refusal = RefCell::new(None::<String>);
    let mut callbacks = remote_callbacks(job.creds, job.url);
    callbacks.push_update_reference(|_refname, status| {
        if let Some(status) = status {
            *refusal.borrow_mut() = Some(status.to_string());
        }
        Ok(())
    });
    let mut options = PushOptions::new();
    options.remote_callbacks(callbacks);
    let refspec = format!("{local}:refs/heads/{}", job.branch);
    let mut remote = repo.find_remote(REMOTE).map_err(Push::Failed)?;
    let pushed = job.requests.record(GitRequest::Push, || {
        remote.push(&[refspec.as_str()], Some(&mut options))
    });
    drop(options);
    match (pushed, refusal.into_inner()) {
        (Ok(()), None) => Ok(()),
        (Ok(()), Some(message)) => Err(Push::Refused(message)),
        (Err(e), _) if e.code() == ErrorCode::NotFastForward => {
            Err(Push::Refused(e.message().to_string()))
        }
        (Err(e), Some(message)) => Err(Push::Refused(format!("{message} ({})", e.message()))),
        (Err(e), None) => Err(Push::Failed(e)),
    }
}
