//! The revert against real repositories (file:// remotes, the git CLI playing the people).

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use super::git::{
    RevertError, RevertJob, RevertOutcome, revert_and_push, revert_and_push_observed,
};
use super::message::{REVERTS_TRAILER, RevertReason};
use crate::cli::GitAuthor;
use crate::gitops::source::GitRequestMetrics;

/// A bare "server" repository and a person's clone of it.
struct Remote {
    _dir: TempDir,
    url: String,
    bare: PathBuf,
    person: PathBuf,
    work: PathBuf,
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Dev")
        .env("GIT_AUTHOR_EMAIL", "dev@example.test")
        .env("GIT_COMMITTER_NAME", "Dev")
        .env("GIT_COMMITTER_EMAIL", "dev@example.test")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Remote {
    fn new() -> Self {
        let dir = TempDir::new().expect("temp dir");
        let bare = dir.path().join("app.git");
        git(
            dir.path(),
            &[
                "init",
                "--quiet",
                "--bare",
                "--initial-branch=main",
                "app.git",
            ],
        );
        let url = format!("file://{}", bare.display());
        git(dir.path(), &["clone", "--quiet", &url, "person"]);
        let person = dir.path().join("person");
        let work = dir.path().join("sluice-work.git");
        Self {
            _dir: dir,
            url,
            bare,
            person,
            work,
        }
    }

    /// A commit by the person writing `files`, pushed to main; returns its sha.
    fn push_commit(&self, files: &[(&str, &str)], message: &str) -> String {
        if !git(&self.person, &["ls-remote", "--heads", "origin", "main"]).is_empty() {
            git(
                &self.person,
                &["pull", "--quiet", "--rebase", "origin", "main"],
            );
        }
        for (path, content) in files {
            std::fs::write(self.person.join(path), content).expect("write file");
            git(&self.person, &["add", path]);
        }
        git(&self.person, &["commit", "--quiet", "-m", message]);
        git(&self.person, &["push", "--quiet", "origin", "HEAD:main"]);
        git(&self.person, &["rev-parse", "HEAD"])
    }

    fn head(&self) -> String {
        git(&self.bare, &["rev-parse", "main"])
    }

    fn show(&self, rev: &str, path: &str) -> String {
        git(&self.bare, &["show", &format!("{rev}:{path}")])
    }
}

/// Base `image: v1`, then the bad commit `image: bad`; returns the bad sha.
fn with_bad_commit(remote: &Remote) -> String {
    remote.push_commit(
        &[("app.yaml", "image: v1\n"), ("other.yaml", "a: 1\n")],
        "base",
    );
    remote.push_commit(&[("app.yaml", "image: bad\n")], "release bad")
}

fn reason() -> RevertReason {
    RevertReason {
        rollout: "shop/web".into(),
        analysis_run: Some("web-abc-2-step".into()),
        detail: "metric \"success-rate\" assessed Failed".into(),
    }
}

fn author() -> GitAuthor {
    GitAuthor {
        name: "Sluice".into(),
        email: "sluice@localhost".into(),
    }
}

fn run(remote: &Remote, sha: &str, attempts: u32) -> Result<RevertOutcome, RevertError> {
    let reason = reason();
    let author = author();
    let job = RevertJob {
        url: &remote.url,
        branch: "main",
        sha,
        reason: &reason,
        author: &author,
        creds: None,
        requests: &GitRequestMetrics::default(),
    };
    revert_and_push(&remote.work, &job, attempts)
}

fn already_reverted(outcome: Result<RevertOutcome, RevertError>) -> String {
    match outcome {
        Ok(RevertOutcome::AlreadyReverted { revert_commit, .. }) => revert_commit,
        other => panic!("expected an existing revert: {other:?}"),
    }
}

fn pushed(outcome: Result<RevertOutcome, RevertError>) -> String {
    match outcome {
        Ok(RevertOutcome::Pushed {
            revert_commit,
            message,
        }) => {
            assert!(message.contains(REVERTS_TRAILER), "{message}");
            revert_commit
        }
        other => panic!("expected a pushed revert: {other:?}"),
    }
}

#[test]
fn l1_reverts_the_commit_and_pushes_it_with_the_trailers_and_author() {
    let remote = Remote::new();
    let bad = with_bad_commit(&remote);
    let revert = pushed(run(&remote, &bad, 3));
    assert_eq!(remote.head(), revert);
    assert_eq!(git(&remote.bare, &["rev-parse", "main^"]), bad);
    assert_eq!(remote.show("main", "app.yaml"), "image: v1");
    let message = git(&remote.bare, &["log", "-1", "--format=%B", "main"]);
    assert!(message.starts_with("Revert \"release bad\""), "{message}");
    assert!(
        message.contains(&format!("Sluice-Reverts: {bad}")),
        "{message}"
    );
    assert!(message.contains("Sluice-Rollout: shop/web"), "{message}");
    assert_eq!(
        git(
            &remote.bare,
            &["log", "-1", "--format=%an <%ae>|%cn <%ce>", "main"]
        ),
        "Sluice <sluice@localhost>|Sluice <sluice@localhost>"
    );
}

#[test]
fn l4_a_second_attempt_finds_the_first_revert_and_pushes_nothing() {
    let remote = Remote::new();
    let bad = with_bad_commit(&remote);
    let revert = pushed(run(&remote, &bad, 3));
    // Even after more commits landed on top.
    remote.push_commit(&[("other.yaml", "a: 2\n")], "later");
    let head = remote.head();
    assert_eq!(already_reverted(run(&remote, &bad, 3)), revert);
    assert_eq!(remote.head(), head);
}

#[test]
fn l4_a_revert_made_by_a_person_counts() {
    let remote = Remote::new();
    let bad = with_bad_commit(&remote);
    git(&remote.person, &["revert", "--no-edit", &bad]);
    git(&remote.person, &["push", "--quiet", "origin", "HEAD:main"]);
    let by_person = remote.head();
    assert_eq!(already_reverted(run(&remote, &bad, 3)), by_person);
    assert_eq!(remote.head(), by_person);
}

#[test]
fn l1_someone_elses_commit_after_the_bad_one_is_kept() {
    let remote = Remote::new();
    let bad = with_bad_commit(&remote);
    let theirs = remote.push_commit(&[("other.yaml", "a: 2\n")], "unrelated change");
    let revert = pushed(run(&remote, &bad, 3));
    assert_eq!(
        git(&remote.bare, &["rev-parse", &format!("{revert}^")]),
        theirs
    );
    assert_eq!(remote.show("main", "app.yaml"), "image: v1");
    assert_eq!(remote.show("main", "other.yaml"), "a: 2");
}

#[test]
fn l3_a_conflicting_later_commit_stops_the_revert_and_pushes_nothing() {
    let remote = Remote::new();
    let bad = with_bad_commit(&remote);
    remote.push_commit(&[("app.yaml", "image: bad2\n")], "another release");
    let head = remote.head();
    assert_eq!(
        run(&remote, &bad, 3),
        Ok(RevertOutcome::Conflict {
            paths: vec!["app.yaml".to_string()]
        })
    );
    assert_eq!(remote.head(), head);
}

#[test]
fn l1_a_push_landing_between_fetch_and_push_is_retried_on_the_new_head() {
    let remote = Remote::new();
    let bad = with_bad_commit(&remote);
    let reason = reason();
    let author = author();
    let job = RevertJob {
        url: &remote.url,
        branch: "main",
        sha: &bad,
        reason: &reason,
        author: &author,
        creds: None,
        requests: &GitRequestMetrics::default(),
    };
    let mut racing = None;
    let outcome = revert_and_push_observed(&remote.work, &job, 3, |attempt| {
        if attempt == 1 {
            racing = Some(remote.push_commit(&[("other.yaml", "a: 3\n")], "racing push"));
        }
    });
    let revert = pushed(outcome);
    let racing = racing.expect("the racing push happened");
    assert_eq!(
        git(&remote.bare, &["rev-parse", &format!("{revert}^")]),
        racing
    );
    assert_eq!(remote.show("main", "other.yaml"), "a: 3");
    assert_eq!(remote.show("main", "app.yaml"), "image: v1");
}

#[test]
fn l1_refused_every_time_gives_up_after_the_attempts_without_forcing() {
    let remote = Remote::new();
    let bad = with_bad_commit(&remote);
    let reason = reason();
    let author = author();
    let job = RevertJob {
        url: &remote.url,
        branch: "main",
        sha: &bad,
        reason: &reason,
        author: &author,
        creds: None,
        requests: &GitRequestMetrics::default(),
    };
    let mut n = 0;
    let outcome = revert_and_push_observed(&remote.work, &job, 2, |_| {
        n += 1;
        remote.push_commit(
            &[("other.yaml", &format!("a: {}\n", 10 + n))],
            "racing again",
        );
    });
    assert!(
        matches!(outcome, Err(RevertError::Rejected { attempts: 2, .. })),
        "{outcome:?}"
    );
    assert_eq!(remote.show("main", "app.yaml"), "image: bad");
    assert_eq!(
        git(&remote.bare, &["log", "-1", "--format=%s", "main"]),
        "racing again"
    );
}

#[test]
fn a_commit_not_on_the_branch_is_a_clear_error() {
    let remote = Remote::new();
    with_bad_commit(&remote);
    let stray = "0123456789abcdef0123456789abcdef01234567";
    let outcome = run(&remote, stray, 3);
    assert!(
        matches!(
            &outcome,
            Err(RevertError::Git { .. } | RevertError::NotOnBranch { .. })
        ),
        "{outcome:?}"
    );
    git(&remote.person, &["checkout", "--quiet", "-b", "side"]);
    std::fs::write(remote.person.join("side.yaml"), "s: 1\n").expect("write");
    git(&remote.person, &["add", "side.yaml"]);
    git(&remote.person, &["commit", "--quiet", "-m", "side"]);
    git(&remote.person, &["push", "--quiet", "origin", "side"]);
    let side = git(&remote.person, &["rev-parse", "HEAD"]);
    assert_eq!(
        run(&remote, &side, 3),
        Err(RevertError::NotOnBranch {
            sha: side.clone(),
            branch: "main".into(),
            url: remote.url.clone(),
        })
    );
}

#[test]
fn sluice_does_not_revert_its_own_revert() {
    let remote = Remote::new();
    let bad = with_bad_commit(&remote);
    let revert = pushed(run(&remote, &bad, 3));
    // The stable revision failed too (say): its commit is Sluice's revert, which stays.
    let outcome = run(&remote, &revert, 3);
    let Err(RevertError::RevertOfRevert(message)) = &outcome else {
        panic!("{outcome:?}");
    };
    assert!(
        message.contains(&revert) && message.contains(&bad),
        "{message}"
    );
    assert_eq!(remote.head(), revert, "nothing was pushed");
}

#[test]
fn a_target_revision_that_is_a_tag_fails_at_once() {
    let remote = Remote::new();
    let bad = with_bad_commit(&remote);
    git(&remote.person, &["tag", "v1.0", &bad]);
    git(&remote.person, &["push", "--quiet", "origin", "v1.0"]);
    let reason = reason();
    let author = author();
    let job = RevertJob {
        url: &remote.url,
        branch: "v1.0",
        sha: &bad,
        reason: &reason,
        author: &author,
        creds: None,
        requests: &GitRequestMetrics::default(),
    };
    assert_eq!(
        revert_and_push(&remote.work, &job, 3),
        Err(RevertError::NoSuchBranch {
            branch: "v1.0".into(),
            url: remote.url.clone(),
        })
    );
}
