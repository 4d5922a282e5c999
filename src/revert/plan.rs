//! What the revert loop does for one Rollout now (PURE): nothing, revert the commit behind the
//! aborted revision, skip it, wait before retrying, or note that the Application has synced the
//! revert.
//!
//! A revert is due when the Rollout is aborted on a revision that an Application applied from
//! commit X, and either an analysis failed (or `progressDeadlineAbort` fired) with the Application's
//! `syncPolicy.rollback.gitRevert` on [default], or a person asked for it (`kubectl sluice abort
//! --revert` writes `status.revert: {sha: X, phase: Pending}`). A manual abort alone never reverts
//! (L5). An analysis that ended in *Error* (no verdict: its provider was unreachable, say) says
//! nothing about the commit: it reverts only with `gitRevert.onError: true`, otherwise the revert
//! is recorded as Skipped (traffic is on stable already, Git stays). A `targetRevision` that is no
//! branch fails at once; a revert that failed on a Git or network error is retried with a growing
//! delay. Everything is read from the two objects' status, so a restart resumes a Pending revert,
//! and the push itself finds an earlier revert of X by its trailer (at most one revert commit).
//!
//! The Rollout's `sluice.dev/application` and `sluice.dev/revision` annotations are written by
//! whoever may write the Rollout, so they only name a candidate: nothing is written to an
//! Application nor pushed to its branch unless the Application itself vouches for the Rollout (it
//! lists it in `status.resources`, its project permits the Rollout's namespace, and the commit is in
//! its `status.history`). Otherwise the revert is refused, once, on the Rollout alone.

use std::time::Duration;

use jiff::Timestamp;
use thiserror::Error;

use crate::api::analysis::AnalysisPhase;
use crate::api::application::{
    Application, ApplicationSource, ApplicationStatus, RevertPhase as AppRevertPhase,
};
use crate::api::project::AppProject;
use crate::api::rollout::{RevertPhase, RevisionRecord, Rollout, RolloutStatus};
use crate::gitops::project::in_cluster_destination;
use crate::gitops::projects::{ProjectError, as_rules};
use crate::gitops::semver_range::is_range;
use crate::revert::message::{RevertReason, reverted_sha};
use crate::rollout::phase::PROGRESS_DEADLINE_EXCEEDED;
use crate::rollout::plan::RunSlot;

/// The delay before the first retry of a revert that failed on a Git or network error.
const FIRST_RETRY: Duration = Duration::from_secs(10);
/// The longest delay between retries.
const MAX_RETRY: Duration = Duration::from_secs(600);

/// The revert to make (or resume).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revert {
    /// The commit to revert (full sha).
    pub sha: String,
    /// The Application (`namespace`, `name`) whose branch gets the revert.
    pub application: (String, String),
    pub reason: RevertReason,
    /// A person asked for it (it goes ahead even with `gitRevert: false`).
    pub requested: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Nothing,
    /// Record Pending and quarantine the sha (unless done), then revert and push.
    Revert(Revert),
    /// The Application synced the revert commit (or the Rollout moved past the failed revision).
    Synced {
        sha: String,
        revert_commit: String,
    },
    /// The revert cannot be made; record why.
    Fail {
        sha: String,
        message: String,
    },
    /// The analysis ended in Error and the Application did not opt in to reverting then: record
    /// `RevertSkipped` with `message`; Git stays.
    Skip {
        sha: String,
        reason: RevertReason,
        message: String,
    },
    /// An earlier attempt failed on a Git or network error: look again after this long.
    Wait(Duration),
    /// The Application the Rollout names does not vouch for it: record why on the Rollout only;
    /// nothing is pushed nor written to the Application.
    Refuse {
        sha: String,
        refusal: Refusal,
    },
}

impl Decision {
    /// The commit whose revert this decision writes to the Application (or its branch), if any.
    fn touches_application(&self) -> Option<&str> {
        match self {
            Decision::Revert(revert) => Some(&revert.sha),
            Decision::Synced { sha, .. }
            | Decision::Fail { sha, .. }
            | Decision::Skip { sha, .. } => Some(sha),
            Decision::Nothing | Decision::Wait(_) | Decision::Refuse { .. } => None,
        }
    }
}

/// The Application a Rollout's revision names, with its project as the controller found it.
#[derive(Clone, Copy, Debug)]
pub struct Owner<'a> {
    pub app: &'a Application,
    /// The Application's project, or why the Application may not use it.
    pub project: Result<&'a AppProject, &'a ProjectError>,
}

/// Why an Application does not vouch for a Rollout's failed revision.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum Refusal {
    #[error("Application {application} does not list Rollout {rollout} in status.resources")]
    NotListed {
        application: String,
        rollout: String,
    },
    #[error("Application {application} may not deploy to namespace {namespace}: {source}")]
    Project {
        application: String,
        namespace: String,
        #[source]
        source: ProjectError,
    },
    #[error(
        "commit {sha} is not in status.history of Application {application} (not a revision it deployed)"
    )]
    NotDeployed { application: String, sha: String },
    /// The Rollout engine watches the controller's own cluster; an Application deploying to
    /// another one lists objects of that cluster, not this Rollout.
    #[error(
        "Application {application} deploys to another cluster ({destination}), not to the one this Rollout runs in"
    )]
    OtherCluster {
        application: String,
        destination: String,
    },
}

/// The message of a refused revert (the Rollout's status and its Event).
pub fn refusal_message(sha: &str, refusal: &Refusal) -> String {
    format!(
        "not reverting {sha} in Git: {refusal}; a Rollout's sluice.dev/application and sluice.dev/revision annotations alone are not trusted"
    )
}

/// The commit and Application behind the Rollout's current revision.
pub fn current_record(status: &RolloutStatus) -> Option<&RevisionRecord> {
    let hash = status.current_pod_hash.as_deref()?;
    status
        .revisions
        .iter()
        .find(|r| r.pod_template_hash == hash)
}

/// Decides for `rollout` at `now`; `owner` is the Application its current revision names (if it
/// exists) and that Application's project. Whatever would write to the Application or its branch is
/// refused unless the Application vouches for the Rollout and the commit.
pub fn decide(rollout: &Rollout, owner: Option<&Owner<'_>>, now: Timestamp) -> Decision {
    let decision = decide_for_trusted(rollout, owner.map(|o| o.app), now);
    let refused = owner
        .zip(decision.touches_application())
        .and_then(|(owner, sha)| {
            refusal(rollout, owner, sha).map(|refusal| Decision::Refuse {
                sha: sha.to_owned(),
                refusal,
            })
        });
    refused.unwrap_or(decision)
}

/// Why `owner`'s Application does not vouch for `rollout` running commit `sha`, if it does not. It
/// vouches when it lists the Rollout among its resources, its project (which it may use) permits
/// the Rollout's namespace, and it deployed `sha`.
pub fn refusal(rollout: &Rollout, owner: &Owner<'_>, sha: &str) -> Option<Refusal> {
    let app = owner.app;
    let application = format!(
        "{}/{}",
        app.metadata.namespace.as_deref().unwrap_or_default(),
        app.metadata.name.as_deref().unwrap_or_default()
    );
    let namespace = rollout.metadata.namespace.as_deref().unwrap_or_default();
    let name = rollout.metadata.name.as_deref().unwrap_or_default();
    let status = app.status.as_ref();
    let destination = &app.spec.destination;
    if !destination.is_in_cluster() {
        return Some(Refusal::OtherCluster {
            application,
            destination: destination
                .name
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| destination.server().to_owned()),
        });
    }
    if !status.is_some_and(|s| lists_rollout(s, namespace, name)) {
        return Some(Refusal::NotListed {
            application,
            rollout: format!("{namespace}/{name}"),
        });
    }
    let permitted = owner.project.map_err(Clone::clone).and_then(|project| {
        as_rules(project)
            .check_destination(in_cluster_destination(namespace))
            .map_err(ProjectError::from)
    });
    if let Err(source) = permitted {
        return Some(Refusal::Project {
            application,
            namespace: namespace.to_owned(),
            source,
        });
    }
    if !status.is_some_and(|s| s.history.iter().any(|h| h.revision == sha)) {
        return Some(Refusal::NotDeployed {
            application,
            sha: sha.to_owned(),
        });
    }
    None
}

fn lists_rollout(status: &ApplicationStatus, namespace: &str, name: &str) -> bool {
    status.resources.iter().any(|r| {
        r.group == "sluice.dev" && r.kind == "Rollout" && r.namespace == namespace && r.name == name
    })
}

/// What is due for `rollout` when its Application (if any) vouches for it.
fn decide_for_trusted(
    rollout: &Rollout,
    application: Option<&Application>,
    now: Timestamp,
) -> Decision {
    let Some(status) = rollout.status.as_ref() else {
        return Decision::Nothing;
    };
    let record = current_record(status);
    if let Some(revert) = &status.revert {
        match revert.phase {
            RevertPhase::Pushed => {
                let commit = revert.revert_commit.clone().unwrap_or_default();
                let app_synced = application
                    .and_then(|a| a.status.as_ref())
                    .and_then(|s| s.sync.as_ref())
                    .is_some_and(|s| s.revision.as_deref() == Some(commit.as_str()));
                let moved_on =
                    record.and_then(|r| r.git_revision.as_deref()) != Some(revert.sha.as_str());
                return if app_synced || moved_on {
                    Decision::Synced {
                        sha: revert.sha.clone(),
                        revert_commit: commit,
                    }
                } else {
                    Decision::Nothing
                };
            }
            RevertPhase::Synced | RevertPhase::Failed
                if record.and_then(|r| r.git_revision.as_deref()) == Some(revert.sha.as_str()) =>
            {
                return Decision::Nothing;
            }
            _ => {}
        }
    }
    if status.abort != Some(true) {
        return Decision::Nothing;
    }
    let Some((sha, app_ref)) =
        record.and_then(|r| Some((r.git_revision.clone()?, r.application.clone()?)))
    else {
        return Decision::Nothing;
    };
    let requested = status
        .revert
        .as_ref()
        .is_some_and(|r| r.phase == RevertPhase::Pending && r.sha == sha);
    let cause = automatic_cause(status);
    if !requested && cause.is_none() {
        return Decision::Nothing;
    }
    let Some((namespace, name)) = split_application(&app_ref, rollout) else {
        return Decision::Fail {
            sha,
            message: format!(
                "the revision names Application {app_ref:?}, expected <namespace>/<name>"
            ),
        };
    };
    let Some(app) = application else {
        return Decision::Fail {
            sha,
            message: format!(
                "Application {namespace}/{name}, which applied this revision, was not found"
            ),
        };
    };
    if let Some(message) = app.spec.git_revert_error() {
        return Decision::Fail { sha, message };
    }
    if !app.spec.git_revert() && !requested {
        return Decision::Nothing;
    }
    let cause = cause.unwrap_or_default();
    let reason = RevertReason {
        rollout: format!(
            "{}/{}",
            rollout.metadata.namespace.clone().unwrap_or_default(),
            rollout.metadata.name.clone().unwrap_or_default()
        ),
        analysis_run: cause.analysis_run,
        detail: cause.detail,
    };
    if cause.errored && !requested && !app.spec.git_revert_on_error() {
        let recorded = app_revert_of(app, &sha).is_some_and(|r| r.phase == AppRevertPhase::Skipped);
        if recorded {
            return Decision::Nothing;
        }
        let message = skip_message(&sha, &reason);
        return Decision::Skip {
            sha,
            reason,
            message,
        };
    }
    if let Some(message) = not_revertible(&app.spec.source) {
        return Decision::Fail { sha, message };
    }
    if let Some(wait) = retry_wait(app, &sha, now) {
        return Decision::Wait(wait);
    }
    Decision::Revert(Revert {
        sha,
        application: (namespace, name),
        reason,
        requested,
    })
}

fn app_revert_of<'a>(
    app: &'a Application,
    sha: &str,
) -> Option<&'a crate::api::application::RevertStatus> {
    app.status
        .as_ref()?
        .revert
        .as_ref()
        .filter(|r| r.sha == sha)
}

fn skip_message(sha: &str, reason: &RevertReason) -> String {
    let run = reason.analysis_run.as_deref().map_or_else(
        || "the analysis".to_string(),
        |r| format!("AnalysisRun {r}"),
    );
    let detail = reason.detail.trim();
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    };
    format!(
        "{run} ended in Error{detail}: no verdict on commit {sha}, so it is not reverted in Git; \
         {rollout} is back on its stable revision. Set syncPolicy.rollback.gitRevert.onError: true \
         to revert on Error too",
        rollout = reason.rollout
    )
}

/// Why the source cannot take a revert, when that shows without asking the server (a name that is
/// not a branch there fails at the fetch): a chart of a chart repository has no commit to revert,
/// and a revert is pushed to a branch.
pub fn not_revertible(source: &ApplicationSource) -> Option<String> {
    if let Some(chart) = source.chart.as_deref().filter(|c| !c.is_empty()) {
        return Some(format!(
            "cannot revert: spec.source is chart {chart:?} of a chart repository, not a Git commit; pin the last good version in spec.source.targetRevision instead"
        ));
    }
    let revision = source
        .target_revision
        .as_deref()
        .map(str::trim)
        .unwrap_or_default();
    let why = if revision.is_empty() || revision == "HEAD" {
        "is HEAD (or unset)"
    } else if revision.starts_with("refs/tags/") {
        "is a tag"
    } else if revision.starts_with("refs/") && !revision.starts_with("refs/heads/") {
        "is not a branch ref"
    } else if matches!(revision.len(), 40 | 64) && revision.bytes().all(|b| b.is_ascii_hexdigit()) {
        "is a commit sha"
    } else if is_range(revision) {
        "is a semver range of tags"
    } else {
        return None;
    };
    Some(format!(
        "cannot revert: spec.source.targetRevision {revision:?} {why}; a revert is pushed to a branch, so name one (or revert by hand)"
    ))
}

/// Why the commit must not be reverted, from its message: Sluice never reverts its own revert
/// (that would bring back the release it rolled back).
pub fn refuse_to_revert(sha: &str, message: &str) -> Option<String> {
    let reverted = reverted_sha(message)?;
    Some(format!(
        "commit {sha} is Sluice's revert of {reverted} (Sluice-Reverts trailer): a revert is never reverted; fix forward in Git"
    ))
}

/// The delay before retry `attempts + 1`, after `attempts` failures: doubling from 10 s, at most
/// 10 min.
pub fn retry_delay(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    FIRST_RETRY.saturating_mul(1 << doublings).min(MAX_RETRY)
}

/// The failed attempts the Application records for the revert of `sha` (0 when none).
pub fn failed_attempts(app: &Application, sha: &str) -> u32 {
    app_revert_of(app, sha)
        .and_then(|r| r.attempts)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0)
}

/// How long to wait before retrying the revert of `sha`, when an attempt failed recently.
fn retry_wait(app: &Application, sha: &str, now: Timestamp) -> Option<Duration> {
    let revert = app_revert_of(app, sha).filter(|r| r.phase == AppRevertPhase::Pending)?;
    let attempts = Some(failed_attempts(app, sha)).filter(|n| *n > 0)?;
    let last = revert.last_attempt_at.as_ref()?.0;
    let due = last.checked_add(retry_delay(attempts)).ok()?;
    let wait = Duration::try_from(now.duration_until(due)).ok()?;
    (!wait.is_zero()).then_some(wait)
}

/// Why the engine aborted by itself.
#[derive(Debug, Default)]
struct Cause {
    analysis_run: Option<String>,
    detail: String,
    /// The analysis ended in Error (no verdict), not Failed.
    errored: bool,
}

/// Why the engine aborted by itself: a failed analysis, else an errored one (its run and
/// message), else the progress deadline with `progressDeadlineAbort`.
fn automatic_cause(status: &RolloutStatus) -> Option<Cause> {
    let run_in = |phase: AnalysisPhase| {
        RunSlot::ALL
            .iter()
            .find_map(|slot| slot.get(status).filter(|r| r.status == phase))
    };
    for (phase, errored) in [(AnalysisPhase::Failed, false), (AnalysisPhase::Error, true)] {
        if let Some(run) = run_in(phase) {
            return Some(Cause {
                analysis_run: Some(run.name.clone()),
                detail: run.message.clone().unwrap_or_default(),
                errored,
            });
        }
    }
    status
        .conditions
        .iter()
        .find(|c| c.reason.as_deref() == Some(PROGRESS_DEADLINE_EXCEEDED))
        .map(|c| Cause {
            detail: c.message.clone().unwrap_or_default(),
            ..Cause::default()
        })
}

/// `<namespace>/<name>`, or a bare name in the Rollout's namespace.
fn split_application(value: &str, rollout: &Rollout) -> Option<(String, String)> {
    match value.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Some((ns.to_string(), name.to_string()))
        }
        None if !value.is_empty() => Some((rollout.metadata.namespace.clone()?, value.to_string())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const X: &str = "1111111111111111111111111111111111111111";
    const R: &str = "2222222222222222222222222222222222222222";

    /// The Rollout `shop/web` on revision `h2` applied from commit X by Application `shop/app`,
    /// with `status` merged in.
    fn rollout(status: serde_json::Value) -> Rollout {
        let mut base = json!({
            "currentPodHash": "h2", "stableRS": "h1",
            "revisions": [
                {"podTemplateHash": "h1", "revision": 1, "gitRevision": "0".repeat(40), "application": "shop/app"},
                {"podTemplateHash": "h2", "revision": 2, "gitRevision": X, "application": "shop/app"}
            ]
        });
        if let (Some(base), Some(extra)) = (base.as_object_mut(), status.as_object()) {
            base.extend(extra.clone());
        }
        serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"strategy": {"canary": {}}},
            "status": base
        }))
        .unwrap()
    }

    fn failed_step_analysis() -> serde_json::Value {
        json!({"abort": true, "canary": {"currentStepAnalysisRunStatus": {
            "name": "web-h2-2-step", "status": "Failed", "message": "metric \"success-rate\" assessed Failed"
        }}})
    }

    /// The Application `shop/app`, which lists the Rollout `shop/web` and deployed X, with `status`
    /// merged in.
    fn app(spec_extra: serde_json::Value, status: serde_json::Value) -> Application {
        let mut vouching = json!({
            "resources": [{"group": "sluice.dev", "version": "v1alpha1", "kind": "Rollout",
                           "namespace": "shop", "name": "web"}],
            "history": [{"id": 0, "revision": X, "deployedAt": "2027-01-15T08:00:00Z"}]
        });
        if let (Some(base), Some(extra)) = (vouching.as_object_mut(), status.as_object()) {
            base.extend(extra.clone());
        }
        let status = vouching;
        let mut spec = json!({
            "source": {"repoURL": "git://127.0.0.1/app.git", "targetRevision": "main", "path": "."},
            "destination": {"namespace": "shop"}
        });
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
            spec.extend(extra.clone());
        }
        serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Application",
            "metadata": {"name": "app", "namespace": "shop"},
            "spec": spec, "status": status
        }))
        .unwrap()
    }

    fn project(spec: serde_json::Value) -> AppProject {
        serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "AppProject",
            "metadata": {"name": "shop", "namespace": "sluice"}, "spec": spec
        }))
        .unwrap()
    }

    /// A project permitting any namespace, as the `default` project does.
    static ANYWHERE: std::sync::LazyLock<AppProject> = std::sync::LazyLock::new(|| {
        project(serde_json::to_value(crate::gitops::projects::default_project_spec()).unwrap())
    });

    /// [`decide`] with `app` (if any) of a project that permits any namespace.
    fn decide_with(r: &Rollout, app: Option<&Application>, now: Timestamp) -> Decision {
        let owner = app.map(|app| Owner {
            app,
            project: Ok(&ANYWHERE),
        });
        decide(r, owner.as_ref(), now)
    }

    fn reason(run: Option<&str>, detail: &str) -> RevertReason {
        RevertReason {
            rollout: "shop/web".into(),
            analysis_run: run.map(Into::into),
            detail: detail.into(),
        }
    }

    fn revert_of_x(requested: bool, run: Option<&str>, detail: &str) -> Decision {
        Decision::Revert(Revert {
            sha: X.into(),
            application: ("shop".into(), "app".into()),
            reason: reason(run, detail),
            requested,
        })
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    #[test]
    fn l1_l5_when_a_revert_is_due() {
        let default_app = app(json!({}), json!({}));
        let disabled = app(
            json!({"syncPolicy": {"rollback": {"gitRevert": false}}}),
            json!({}),
        );
        let on_error = app(
            json!({"syncPolicy": {"rollback": {"gitRevert": {"onError": true}}}}),
            json!({}),
        );
        let on_error_disabled = app(
            json!({"syncPolicy": {"rollback": {"gitRevert": {"enabled": false, "onError": true}}}}),
            json!({}),
        );
        let misspelt = app(
            json!({"syncPolicy": {"rollback": {"gitRevert": {"onErorr": true}}}}),
            json!({}),
        );
        let skipped_app = app(json!({}), json!({"revert": {"sha": X, "phase": "Skipped"}}));
        let manual_request = json!({"abort": true, "revert": {"sha": X, "phase": "Pending"}});
        let deadline = json!({"abort": true, "conditions": [{"type": "Progressing", "status": "False",
            "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet \"web-h2\" has timed out progressing."}]});
        let errored = json!({"abort": true, "blueGreen": {"prePromotionAnalysisRunStatus": {
            "name": "web-h2-2-pre", "status": "Error", "message": "no data"}}});
        let mut errored_and_requested = errored.clone();
        errored_and_requested["revert"] = json!({"sha": X, "phase": "Pending"});
        let mut failed_and_errored = failed_step_analysis();
        failed_and_errored["blueGreen"] = errored["blueGreen"].clone();
        let analysis = revert_of_x(
            false,
            Some("web-h2-2-step"),
            "metric \"success-rate\" assessed Failed",
        );
        let cases: Vec<(&str, Rollout, Option<&Application>, Decision)> = vec![
            (
                "failed step analysis",
                rollout(failed_step_analysis()),
                Some(&default_app),
                analysis.clone(),
            ),
            (
                "errored pre-promotion analysis, no onError: skipped",
                rollout(errored.clone()),
                Some(&default_app),
                Decision::Skip {
                    sha: X.into(),
                    reason: reason(Some("web-h2-2-pre"), "no data"),
                    message: format!(
                        "AnalysisRun web-h2-2-pre ended in Error (no data): no verdict on commit {X}, so it is not reverted in Git; shop/web is back on its stable revision. Set syncPolicy.rollback.gitRevert.onError: true to revert on Error too"
                    ),
                },
            ),
            (
                "errored analysis, skip already recorded",
                rollout(errored.clone()),
                Some(&skipped_app),
                Decision::Nothing,
            ),
            (
                "errored analysis with onError",
                rollout(errored.clone()),
                Some(&on_error),
                revert_of_x(false, Some("web-h2-2-pre"), "no data"),
            ),
            (
                "errored analysis, onError but gitRevert disabled",
                rollout(errored.clone()),
                Some(&on_error_disabled),
                Decision::Nothing,
            ),
            (
                "errored analysis, asked by a person",
                rollout(errored_and_requested),
                Some(&default_app),
                revert_of_x(true, Some("web-h2-2-pre"), "no data"),
            ),
            (
                "a failed run beside an errored one: Failed counts",
                rollout(failed_and_errored),
                Some(&default_app),
                analysis.clone(),
            ),
            (
                "progress deadline abort",
                rollout(deadline),
                Some(&default_app),
                revert_of_x(
                    false,
                    None,
                    "ReplicaSet \"web-h2\" has timed out progressing.",
                ),
            ),
            (
                "L5: a manual abort alone",
                rollout(json!({"abort": true})),
                Some(&default_app),
                Decision::Nothing,
            ),
            (
                "L5: a manual abort with --revert",
                rollout(manual_request.clone()),
                Some(&default_app),
                revert_of_x(true, None, ""),
            ),
            (
                "gitRevert: false",
                rollout(failed_step_analysis()),
                Some(&disabled),
                Decision::Nothing,
            ),
            (
                "gitRevert: false, asked by a person",
                rollout(manual_request),
                Some(&disabled),
                revert_of_x(true, None, ""),
            ),
            (
                "gitRevert of neither shape",
                rollout(failed_step_analysis()),
                Some(&misspelt),
                Decision::Fail {
                    sha: X.into(),
                    message: "spec.syncPolicy.rollback.gitRevert must be true, false or {enabled: <bool>, onError: <bool>}, not {\"onErorr\":true}".into(),
                },
            ),
            (
                "not aborted",
                rollout(json!({})),
                Some(&default_app),
                Decision::Nothing,
            ),
            (
                "Application gone",
                rollout(failed_step_analysis()),
                None,
                Decision::Fail {
                    sha: X.into(),
                    message: "Application shop/app, which applied this revision, was not found"
                        .into(),
                },
            ),
        ];
        for (name, r, a, expected) in cases {
            assert_eq!(decide_with(&r, a, now()), expected, "{name}");
        }
    }

    #[test]
    fn not_from_git_never_reverts() {
        let mut r = rollout(failed_step_analysis());
        if let Some(s) = r.status.as_mut() {
            s.revisions[1].git_revision = None;
        }
        assert_eq!(
            decide_with(&r, Some(&app(json!({}), json!({}))), now()),
            Decision::Nothing
        );
    }

    #[test]
    fn l4_a_pending_revert_resumes_and_a_finished_one_is_not_redone() {
        let a = app(json!({}), json!({}));
        // Pending after a restart (automatic cause still there): revert again; the push finds an
        // existing revert commit by its trailer.
        let mut pending = failed_step_analysis();
        pending["revert"] = json!({"sha": X, "phase": "Pending"});
        assert!(matches!(
            decide_with(&rollout(pending), Some(&a), now()),
            Decision::Revert(_)
        ));
        for phase in ["Synced", "Failed"] {
            let mut done = failed_step_analysis();
            done["revert"] = json!({"sha": X, "phase": phase, "revertCommit": R});
            assert_eq!(
                decide_with(&rollout(done), Some(&a), now()),
                Decision::Nothing,
                "{phase}"
            );
        }
    }

    #[test]
    fn pushed_becomes_synced_when_the_application_syncs_the_revert() {
        let mut pushed = failed_step_analysis();
        pushed["revert"] = json!({"sha": X, "phase": "Pushed", "revertCommit": R});
        let waiting = app(
            json!({}),
            json!({"sync": {"status": "OutOfSync", "revision": X}}),
        );
        let synced = app(
            json!({}),
            json!({"sync": {"status": "Synced", "revision": R}}),
        );
        assert_eq!(
            decide_with(&rollout(pushed.clone()), Some(&waiting), now()),
            Decision::Nothing
        );
        let done = Decision::Synced {
            sha: X.into(),
            revert_commit: R.into(),
        };
        assert_eq!(
            decide_with(&rollout(pushed.clone()), Some(&synced), now()),
            done
        );
        // The Rollout went back to the stable template (its current revision is not X's).
        let mut moved = pushed;
        moved["currentPodHash"] = json!("h1");
        assert_eq!(decide_with(&rollout(moved), Some(&waiting), now()), done);
    }

    #[test]
    fn a_target_revision_that_is_no_branch_fails_at_once() {
        let with_target = |target: serde_json::Value| {
            app(
                json!({"source": {"repoURL": "git://127.0.0.1/app.git", "targetRevision": target, "path": "."}}),
                json!({}),
            )
        };
        for (target, why) in [
            (json!(X), "is a commit sha"),
            (json!("refs/tags/v1.0"), "is a tag"),
            (json!("refs/pull/7/head"), "is not a branch ref"),
            (json!("HEAD"), "is HEAD (or unset)"),
            (json!(""), "is HEAD (or unset)"),
            (json!("^1.2"), "is a semver range of tags"),
        ] {
            let decision = decide_with(
                &rollout(failed_step_analysis()),
                Some(&with_target(target.clone())),
                now(),
            );
            let Decision::Fail { sha, message } = decision else {
                panic!("{target}: {decision:?}");
            };
            assert_eq!(sha, X);
            assert!(
                message.contains("spec.source.targetRevision") && message.contains(why),
                "{target}: {message}"
            );
        }
        for branch in ["main", "refs/heads/release/1.x", "v1.0", "abc1234"] {
            assert!(
                matches!(
                    decide_with(
                        &rollout(failed_step_analysis()),
                        Some(&with_target(json!(branch))),
                        now()
                    ),
                    Decision::Revert(_)
                ),
                "{branch}: may be a branch; the fetch tells"
            );
        }
        let chart = app(
            json!({"source": {"repoURL": "https://charts.example.com", "chart": "shop", "targetRevision": "1.2.0"}}),
            json!({}),
        );
        match decide_with(&rollout(failed_step_analysis()), Some(&chart), now()) {
            Decision::Fail { message, .. } => assert!(
                message.contains("chart \"shop\" of a chart repository, not a Git commit"),
                "{message}"
            ),
            other => panic!("a chart source: {other:?}"),
        }
    }

    #[test]
    fn sluice_never_reverts_its_own_revert() {
        let revert = crate::revert::message::revert_message(
            X,
            "web: bad",
            &reason(Some("web-h2-2-step"), ""),
        );
        let refusal = refuse_to_revert(R, &revert).unwrap();
        assert!(
            refusal.contains(R) && refusal.contains(X) && refusal.contains("Sluice-Reverts"),
            "{refusal}"
        );
        assert_eq!(
            refuse_to_revert(R, "web: v2\n\nSigned-off-by: a <a@b>\n"),
            None
        );
        // Quoting the trailer in a body paragraph is not carrying it.
        assert_eq!(
            refuse_to_revert(R, &format!("fix\n\nSluice-Reverts: {X} was wrong\n\nx: y")),
            None
        );
    }

    #[test]
    fn failed_attempts_back_off() {
        assert_eq!(retry_delay(1), Duration::from_secs(10));
        assert_eq!(retry_delay(2), Duration::from_secs(20));
        assert_eq!(retry_delay(4), Duration::from_secs(80));
        assert_eq!(retry_delay(7), Duration::from_secs(600));
        assert_eq!(retry_delay(u32::MAX), Duration::from_secs(600));

        let pending = |attempts: u32, seconds_ago: i64| {
            let last = now()
                .checked_sub(jiff::SignedDuration::from_secs(seconds_ago))
                .unwrap();
            app(
                json!({}),
                json!({"revert": {"sha": X, "phase": "Pending", "attempts": attempts,
                                  "lastAttemptAt": last.to_string()}}),
            )
        };
        let r = rollout(failed_step_analysis());
        assert_eq!(
            decide_with(&r, Some(&pending(3, 15)), now()),
            Decision::Wait(Duration::from_secs(25))
        );
        assert!(matches!(
            decide_with(&r, Some(&pending(3, 40)), now()),
            Decision::Revert(_)
        ));
        assert!(matches!(
            decide_with(&r, Some(&pending(0, 0)), now()),
            Decision::Revert(_)
        ));
        // Attempts of another commit's revert do not hold this one back.
        let other = app(
            json!({}),
            json!({"revert": {"sha": R, "phase": "Pending", "attempts": 9,
                              "lastAttemptAt": now().to_string()}}),
        );
        assert!(matches!(
            decide_with(&r, Some(&other), now()),
            Decision::Revert(_)
        ));
    }

    /// The Rollout `shop/web` of [`rollout`], moved to `namespace` (with the same annotations).
    fn rollout_in(namespace: &str, status: serde_json::Value) -> Rollout {
        let mut r = rollout(status);
        r.metadata.namespace = Some(namespace.into());
        r
    }

    fn refused(refusal: Refusal) -> Decision {
        Decision::Refuse {
            sha: X.into(),
            refusal,
        }
    }

    #[test]
    fn a_forged_rollout_in_another_namespace_is_refused_whatever_it_asks() {
        let a = app(json!({}), json!({}));
        let not_listed = refused(Refusal::NotListed {
            application: "shop/app".into(),
            rollout: "team-b/web".into(),
        });
        let mut requested = json!({"abort": true, "revert": {"sha": X, "phase": "Pending"}});
        let mut pushed = failed_step_analysis();
        pushed["revert"] = json!({"sha": X, "phase": "Pushed", "revertCommit": R});
        let misspelt = app(
            json!({"syncPolicy": {"rollback": {"gitRevert": {"onErorr": true}}}}),
            json!({}),
        );
        let synced_at_r = app(
            json!({}),
            json!({"sync": {"status": "Synced", "revision": R}}),
        );
        let errored = json!({"abort": true, "canary": {"currentStepAnalysisRunStatus": {
            "name": "web-h2-2-step", "status": "Error", "message": "no data"}}});
        let cases = [
            ("failed analysis: no push", failed_step_analysis(), &a),
            (
                "kubectl sluice abort --revert: no push",
                requested.take(),
                &a,
            ),
            (
                "a forged Pushed phase: nothing marked on the Application",
                pushed,
                &synced_at_r,
            ),
            (
                "an invalid gitRevert: no condition on the Application",
                failed_step_analysis(),
                &misspelt,
            ),
            (
                "an errored analysis: no RevertSkipped on the Application",
                errored,
                &a,
            ),
        ];
        for (name, status, app) in cases {
            assert_eq!(
                decide_with(&rollout_in("team-b", status), Some(app), now()),
                not_listed,
                "{name}"
            );
        }
        let message = refusal_message(
            X,
            &Refusal::NotListed {
                application: "shop/app".into(),
                rollout: "team-b/web".into(),
            },
        );
        assert_eq!(
            message,
            format!(
                "not reverting {X} in Git: Application shop/app does not list Rollout team-b/web in status.resources; a Rollout's sluice.dev/application and sluice.dev/revision annotations alone are not trusted"
            )
        );
    }

    #[test]
    fn a_forged_rollout_that_is_not_aborted_is_left_alone() {
        let r = rollout_in("team-b", json!({}));
        assert_eq!(
            decide_with(&r, Some(&app(json!({}), json!({}))), now()),
            Decision::Nothing
        );
    }

    #[test]
    fn a_listed_rollout_in_a_namespace_the_project_does_not_permit_is_refused() {
        let a = app(json!({}), json!({}));
        let team_only = project(json!({"destinations": [
            {"server": "https://kubernetes.default.svc", "namespace": "team-*"}]}));
        let owner = Owner {
            app: &a,
            project: Ok(&team_only),
        };
        let Decision::Refuse { sha, refusal } =
            decide(&rollout(failed_step_analysis()), Some(&owner), now())
        else {
            panic!("not refused");
        };
        assert_eq!(sha, X);
        assert!(
            matches!(&refusal, Refusal::Project { namespace, source: ProjectError::Violation(_), .. } if namespace == "shop"),
            "{refusal:?}"
        );
        assert!(
            refusal.to_string().contains("project shop's destinations"),
            "{refusal}"
        );
    }

    #[test]
    fn an_application_deploying_to_another_cluster_vouches_for_no_local_rollout() {
        let a = app(
            json!({"destination": {"name": "prod", "namespace": "shop"}}),
            json!({}),
        );
        let anything = project(json!({"destinations": [{"server": "*", "namespace": "*"}]}));
        let owner = Owner {
            app: &a,
            project: Ok(&anything),
        };
        let Decision::Refuse { refusal, .. } =
            decide(&rollout(failed_step_analysis()), Some(&owner), now())
        else {
            panic!("not refused");
        };
        assert_eq!(
            refusal.to_string(),
            "Application shop/app deploys to another cluster (prod), not to the one this Rollout runs in"
        );
    }

    #[test]
    fn an_application_that_may_not_use_its_project_vouches_for_nothing() {
        let a = app(json!({}), json!({}));
        let missing = ProjectError::Missing {
            project: "shop".into(),
            namespace: "sluice".into(),
        };
        let owner = Owner {
            app: &a,
            project: Err(&missing),
        };
        assert_eq!(
            decide(&rollout(failed_step_analysis()), Some(&owner), now()),
            refused(Refusal::Project {
                application: "shop/app".into(),
                namespace: "shop".into(),
                source: missing.clone(),
            })
        );
    }

    #[test]
    fn a_commit_the_application_never_deployed_is_refused() {
        let other_history = app(
            json!({}),
            json!({"history": [{"id": 0, "revision": R, "deployedAt": "2027-01-15T08:00:00Z"}]}),
        );
        assert_eq!(
            decide_with(
                &rollout(failed_step_analysis()),
                Some(&other_history),
                now()
            ),
            refused(Refusal::NotDeployed {
                application: "shop/app".into(),
                sha: X.into(),
            })
        );
    }

    #[test]
    fn a_refused_revert_is_recorded_once() {
        // The controller records a refusal as the Rollout's revert Failed: not decided again.
        let mut recorded = failed_step_analysis();
        recorded["revert"] = json!({"sha": X, "phase": "Failed", "message": "not reverting"});
        assert_eq!(
            decide_with(
                &rollout_in("team-b", recorded),
                Some(&app(json!({}), json!({}))),
                now()
            ),
            Decision::Nothing
        );
    }

    #[test]
    fn without_an_application_nothing_is_vouched_and_only_the_rollout_is_told() {
        // No Application: only the Rollout records the failure (nothing of another team is written).
        assert!(matches!(
            decide_with(&rollout_in("team-b", failed_step_analysis()), None, now()),
            Decision::Fail { .. }
        ));
    }
}
