//! What the revert loop does for one Rollout now (PURE): nothing, revert the commit behind the
//! aborted revision, or note that the Application has synced the revert.
//!
//! A revert is due when the Rollout is aborted on a revision that an Application applied from
//! commit X, and either an analysis failed (or `progressDeadlineAbort` fired) with the Application's
//! `syncPolicy.rollback.gitRevert` on [default], or a person asked for it (`kubectl sluice abort
//! --revert` writes `status.revert: {sha: X, phase: Pending}`). A manual abort alone never reverts
//! (L5). Everything is read from the two objects' status, so a restart resumes a Pending revert, and
//! the push itself finds an earlier revert of X by its trailer (at most one revert commit).

use crate::api::analysis::AnalysisPhase;
use crate::api::application::Application;
use crate::api::rollout::{RevertPhase, RevisionRecord, Rollout, RolloutStatus};
use crate::revert::message::RevertReason;
use crate::rollout::phase::PROGRESS_DEADLINE_EXCEEDED;
use crate::rollout::plan::RunSlot;

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
}

/// The commit and Application behind the Rollout's current revision.
pub fn current_record(status: &RolloutStatus) -> Option<&RevisionRecord> {
    let hash = status.current_pod_hash.as_deref()?;
    status
        .revisions
        .iter()
        .find(|r| r.pod_template_hash == hash)
}

/// Decides for `rollout`; `application` is the one its current revision names, if it exists.
pub fn decide(rollout: &Rollout, application: Option<&Application>) -> Decision {
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
    let enabled = app
        .spec
        .sync_policy
        .as_ref()
        .and_then(|p| p.rollback.as_ref())
        .and_then(|r| r.git_revert)
        .unwrap_or(true);
    if !enabled && !requested {
        return Decision::Nothing;
    }
    let (analysis_run, detail) = cause.unwrap_or((None, String::new()));
    Decision::Revert(Revert {
        sha,
        application: (namespace, name),
        reason: RevertReason {
            rollout: format!(
                "{}/{}",
                rollout.metadata.namespace.clone().unwrap_or_default(),
                rollout.metadata.name.clone().unwrap_or_default()
            ),
            analysis_run,
            detail,
        },
        requested,
    })
}

/// Why the engine aborted by itself: a failed or errored analysis (its run and message), or the
/// progress deadline with `progressDeadlineAbort`.
fn automatic_cause(status: &RolloutStatus) -> Option<(Option<String>, String)> {
    let failed = RunSlot::ALL.iter().find_map(|slot| {
        slot.get(status)
            .filter(|r| matches!(r.status, AnalysisPhase::Failed | AnalysisPhase::Error))
    });
    if let Some(run) = failed {
        return Some((
            Some(run.name.clone()),
            run.message.clone().unwrap_or_default(),
        ));
    }
    status
        .conditions
        .iter()
        .find(|c| c.reason.as_deref() == Some(PROGRESS_DEADLINE_EXCEEDED))
        .map(|c| (None, c.message.clone().unwrap_or_default()))
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

    fn app(spec_extra: serde_json::Value, status: serde_json::Value) -> Application {
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

    fn revert_of_x(requested: bool, run: Option<&str>, detail: &str) -> Decision {
        Decision::Revert(Revert {
            sha: X.into(),
            application: ("shop".into(), "app".into()),
            reason: RevertReason {
                rollout: "shop/web".into(),
                analysis_run: run.map(Into::into),
                detail: detail.into(),
            },
            requested,
        })
    }

    #[test]
    fn l1_l5_when_a_revert_is_due() {
        let default_app = app(json!({}), json!({}));
        let disabled = app(
            json!({"syncPolicy": {"rollback": {"gitRevert": false}}}),
            json!({}),
        );
        let manual_request = json!({"abort": true, "revert": {"sha": X, "phase": "Pending"}});
        let deadline = json!({"abort": true, "conditions": [{"type": "Progressing", "status": "False",
            "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet \"web-h2\" has timed out progressing."}]});
        let errored = json!({"abort": true, "blueGreen": {"prePromotionAnalysisRunStatus": {
            "name": "web-h2-2-pre", "status": "Error", "message": "no data"}}});
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
                "errored pre-promotion analysis",
                rollout(errored),
                Some(&default_app),
                revert_of_x(false, Some("web-h2-2-pre"), "no data"),
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
            assert_eq!(decide(&r, a), expected, "{name}");
        }
    }

    #[test]
    fn not_from_git_never_reverts() {
        let mut r = rollout(failed_step_analysis());
        if let Some(s) = r.status.as_mut() {
            s.revisions[1].git_revision = None;
        }
        assert_eq!(
            decide(&r, Some(&app(json!({}), json!({})))),
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
            decide(&rollout(pending), Some(&a)),
            Decision::Revert(_)
        ));
        for phase in ["Synced", "Failed"] {
            let mut done = failed_step_analysis();
            done["revert"] = json!({"sha": X, "phase": phase, "revertCommit": R});
            assert_eq!(
                decide(&rollout(done), Some(&a)),
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
            decide(&rollout(pushed.clone()), Some(&waiting)),
            Decision::Nothing
        );
        let done = Decision::Synced {
            sha: X.into(),
            revert_commit: R.into(),
        };
        assert_eq!(decide(&rollout(pushed.clone()), Some(&synced)), done);
        // The Rollout went back to the stable template (its current revision is not X's).
        let mut moved = pushed;
        moved["currentPodHash"] = json!("h1");
        assert_eq!(decide(&rollout(moved), Some(&waiting)), done);
    }
}
