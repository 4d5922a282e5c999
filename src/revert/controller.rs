//! The revert loop's reconciler: watches Rollouts, and for one whose failed revision came from Git
//! (see [`plan`](super::plan)) records the revert as Pending and quarantines the commit on the
//! Application, reverts and pushes it (off the async runtime), records the outcome on both objects
//! with an Event and a metric, and asks the Application for a hard refresh so it syncs the revert at
//! once rather than on its next poll. A Rollout whose Application does not vouch for it (see
//! [`plan::vouch`](super::plan::vouch)) gets its revert refused, on the Rollout only.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde_json::json;
use thiserror::Error;

use crate::api::application::{
    Application, ApplicationStatus, RevertPhase as AppRevertPhase, RevertStatus as AppRevertStatus,
};
use crate::api::common::Condition;
use crate::api::project::AppProject;
use crate::api::rollout::{RevertPhase, RevertStatus, Rollout};
use crate::cli::GitAuthor;
use crate::gitops::credentials::{
    CredentialIdentity, CredentialScope, SECRET_TYPE_LABELS, ScopedSecrets, scrub_url,
};
use crate::gitops::observe::REFRESH_ANNOTATION;
use crate::gitops::projects::Projects;
use crate::gitops::source::{GitRequestMetrics, check_repo_url};
use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::revert::git::{RevertError, RevertJob, RevertOutcome, revert_and_push};
use crate::revert::message::RevertReason;
use crate::revert::plan::{
    Decision, Owner, Revert, current_record, decide, failed_attempts, refusal_message, retry_delay,
};

/// Field manager of the revert loop's writes.
pub const FIELD_MANAGER: &str = crate::api::keys::REVERT_FIELD_MANAGER;
/// Application condition set when a revert cannot be made.
pub const REVERT_FAILED: &str = "RevertFailed";
/// Application condition set when an errored analysis does not revert (no `gitRevert.onError`).
pub const REVERT_SKIPPED: &str = "RevertSkipped";
/// Rollout Event reason when the Application its revision names does not vouch for it.
pub const REVERT_REFUSED: &str = "RevertRefused";
/// Pushes tried before a revert is given up as refused.
const PUSH_ATTEMPTS: u32 = 5;
const RETRY: Duration = Duration::from_secs(10);

/// What the revert loop needs from the command line.
#[derive(Clone, Debug)]
pub struct RevertSettings {
    pub namespace: Option<String>,
    /// Where the AppProjects live (`--namespace`, else `$POD_NAMESPACE`, else `default`).
    pub control_namespace: String,
    /// Work repositories live under `<cache_dir>/revert/`.
    pub cache_dir: PathBuf,
    pub author: GitAuthor,
    /// Counts and times the fetches and pushes (shared with the sync cache).
    pub git_requests: GitRequestMetrics,
    /// `--git-allow-insecure-http`: push over plain `http://` too.
    pub allow_insecure_http: bool,
}

#[derive(Debug, Error)]
pub enum ReconcileError {
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("reverting {sha}: {source}")]
    Git {
        sha: String,
        #[source]
        source: RevertError,
    },
    #[error("the revert task stopped: {0}")]
    Task(String),
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

struct Context {
    client: Client,
    settings: RevertSettings,
    recorder: Recorder,
    reverts: Family<ResultLabel, Counter>,
    projects: Projects,
}

/// Runs the revert loop until the process stops.
pub async fn run(client: Client, settings: RevertSettings, metrics: Metrics, readiness: Readiness) {
    let reverts = Family::<ResultLabel, Counter>::default();
    metrics.register(|r| {
        r.register(
            "git_reverts",
            "Git reverts of failed revisions, by result (pushed, already, conflict, failed, refused)",
            reverts.clone(),
        );
    });
    let rollouts: Api<Rollout> = match settings.namespace.as_deref() {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let projects_api: Api<AppProject> =
        Api::namespaced(client.clone(), &settings.control_namespace);
    let (projects, projects_writer) = reflector::store();
    let projects_watch = watcher(projects_api, watcher::Config::default())
        .default_backoff()
        .reflect(projects_writer)
        .for_each(|_| async {});
    let context = Arc::new(Context {
        projects: Projects::new(projects.clone(), settings.control_namespace.clone()),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance: None,
            },
        ),
        client,
        settings,
        reverts,
    });
    let guard = crate::reconcile_guard::ReconcileGuard::new("revert", &metrics).reporting(
        context.client.clone(),
        FIELD_MANAGER,
        None,
    );
    let (cached, changed) = readiness.watch("reverts", rollouts, watcher::Config::default());
    let controller = async {
        // Whether an Application vouches for a Rollout depends on its project: none before the
        // projects are read.
        if projects.wait_until_ready().await.is_err() {
            tracing::error!("the revert loop's AppProject cache stopped before it was ready");
        }
        Controller::for_stream(changed, cached)
            .run(
                guard.reconcile(reconcile),
                guard.error_policy(error_policy),
                context,
            )
            .for_each(crate::reconcile_guard::log_result("revert"))
            .await;
    };
    tokio::join!(controller, projects_watch);
}

fn error_policy(rollout: Arc<Rollout>, error: &ReconcileError, _ctx: Arc<Context>) -> Action {
    tracing::warn!(
        namespace = rollout.namespace().unwrap_or_default(),
        rollout = %rollout.name_any(),
        error = %error,
        "revert loop: will retry"
    );
    Action::requeue(RETRY)
}

async fn reconcile(rollout: Arc<Rollout>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let application = match rollout.status.as_ref().and_then(current_record) {
        Some(record) => match record
            .application
            .as_deref()
            .and_then(|a| a.split_once('/'))
        {
            Some((ns, name)) => Api::<Application>::namespaced(ctx.client.clone(), ns)
                .get_opt(name)
                .await
                .map_err(kube_err(format!("reading Application {ns}/{name}")))?,
            None => None,
        },
        None => None,
    };
    let project = application.as_ref().map(|app| ctx.projects.of(app));
    let owner = application
        .as_ref()
        .zip(project.as_ref())
        .map(|(app, project)| Owner {
            app,
            project: project.as_ref().map(|p| &**p),
        });
    match decide(&rollout, owner.as_ref(), Timestamp::now()) {
        Decision::Nothing => Ok(Action::await_change()),
        Decision::Refuse { sha, refusal } => {
            record_refusal(&ctx, &rollout, &sha, &refusal_message(&sha, &refusal)).await?;
            Ok(Action::await_change())
        }
        Decision::Wait(wait) => Ok(Action::requeue(wait)),
        Decision::Skip {
            sha,
            reason,
            message,
        } => {
            record_skip(
                &ctx,
                &rollout,
                application.as_ref(),
                &sha,
                &reason,
                &message,
            )
            .await?;
            Ok(Action::await_change())
        }
        Decision::Synced { sha, revert_commit } => {
            mark_synced(&ctx, &rollout, application.as_ref(), &sha, &revert_commit).await?;
            Ok(Action::await_change())
        }
        Decision::Fail { sha, message } => {
            record_failure(&ctx, &rollout, application.as_ref(), &sha, &message).await?;
            Ok(Action::await_change())
        }
        Decision::Revert(revert) => {
            let Some(app) = application else {
                return Ok(Action::await_change());
            };
            match revert_now(&ctx, &rollout, &app, &revert).await {
                Ok(()) => Ok(Action::requeue(RETRY)),
                Err(ReconcileError::Git { sha, source }) => {
                    let attempts = record_attempt(&ctx, &app, &sha, &source).await?;
                    Ok(Action::requeue(retry_delay(attempts)))
                }
                Err(other) => Err(other),
            }
        }
    }
}

fn kube_err(what: String) -> impl FnOnce(kube::Error) -> ReconcileError {
    move |source| ReconcileError::Kube { what, source }
}

async fn revert_now(
    ctx: &Context,
    rollout: &Rollout,
    app: &Application,
    revert: &Revert,
) -> Result<(), ReconcileError> {
    let ns = rollout.namespace().unwrap_or_default();
    let name = rollout.name_any();
    tracing::info!(namespace = %ns, rollout = %name, sha = %revert.sha, "reverting the commit of the failed revision");
    let pending = RevertStatus {
        sha: revert.sha.clone(),
        revert_commit: None,
        phase: RevertPhase::Pending,
        message: None,
    };
    set_rollout_revert(ctx, rollout, &pending).await?;
    // The Application with its Pending record: `mark_pushed` and the failures below edit that
    // record (on the copy read before it, they would find none and record nothing).
    let app = &quarantine(ctx, app, revert).await?;

    let url = app.spec.source.repo_url.clone();
    // The same transports the sync fetches from: never a local path or `file://`, whatever a
    // Rollout's annotations point at.
    if let Err(refused) = check_repo_url(&scrub_url(&url), ctx.settings.allow_insecure_http) {
        count(ctx, "failed");
        let message = format!("cannot revert {}: {refused}", revert.sha);
        return record_failure(ctx, rollout, Some(app), &revert.sha, &message).await;
    }
    // The plan refused what is plainly no branch; a name the server lacks fails at the fetch.
    let branch = app.spec.source.target_revision.clone().unwrap_or_default();
    let branch = branch.trim_start_matches("refs/heads/").to_string();
    let secrets = repository_secrets(ctx, app).await?;
    let creds = secrets
        .for_url(&url)
        .map_err(|e| ReconcileError::Task(e.to_string()))?;
    // Per URL and credentials, as the sync cache: never a work repository fetched with
    // credentials this Application does not hold.
    let work_dir = ctx.settings.cache_dir.join("revert").join(format!(
        "{:016x}-{}",
        url_key(&url),
        CredentialIdentity::of(creds.as_ref()).short()
    ));
    let author = ctx.settings.author.clone();
    let requests = ctx.settings.git_requests.clone();
    let job_revert = revert.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let job = RevertJob {
            url: &url,
            branch: &branch,
            sha: &job_revert.sha,
            reason: &job_revert.reason,
            author: &author,
            creds: creds.as_ref(),
            requests: &requests,
        };
        revert_and_push(&work_dir, &job, PUSH_ATTEMPTS)
    })
    .await
    .map_err(|e| ReconcileError::Task(e.to_string()))?;

    match outcome {
        Ok(RevertOutcome::Pushed {
            revert_commit,
            message,
        }) => {
            count(ctx, "pushed");
            mark_pushed(ctx, rollout, app, revert, &revert_commit, &message).await
        }
        Ok(RevertOutcome::AlreadyReverted {
            revert_commit,
            message,
        }) => {
            count(ctx, "already");
            mark_pushed(ctx, rollout, app, revert, &revert_commit, &message).await
        }
        Ok(RevertOutcome::Conflict { paths }) => {
            count(ctx, "conflict");
            let message = format!(
                "the revert of {} conflicts with later commits in {}; nothing was pushed and traffic stays on the stable revision: revert it by hand",
                revert.sha,
                paths.join(", ")
            );
            record_failure(ctx, rollout, Some(app), &revert.sha, &message).await
        }
        Err(
            e @ (RevertError::NotOnBranch { .. }
            | RevertError::Rejected { .. }
            | RevertError::NoSuchBranch { .. }
            | RevertError::RevertOfRevert(_)),
        ) => {
            count(ctx, "failed");
            record_failure(ctx, rollout, Some(app), &revert.sha, &e.to_string()).await
        }
        // Network or server trouble: stays Pending and is retried.
        Err(source) => Err(ReconcileError::Git {
            sha: revert.sha.clone(),
            source,
        }),
    }
}

fn count(ctx: &Context, result: &str) {
    ctx.reverts
        .get_or_create(&ResultLabel {
            result: result.to_string(),
        })
        .inc();
}

/// A stable key of the URL for the work repository's directory name.
fn url_key(url: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    url.hash(&mut hasher);
    hasher.finish()
}

/// The repository Secrets `app` may use ([`CredentialScope`]), listed by each secret-type label.
async fn repository_secrets(
    ctx: &Context,
    app: &Application,
) -> Result<ScopedSecrets, ReconcileError> {
    let control_namespace = ctx.settings.control_namespace.clone();
    let scope = CredentialScope::of(app, &control_namespace);
    let mut namespaces = vec![scope.app_namespace.clone()];
    namespaces.extend(Some(control_namespace).filter(|ns| !ns.is_empty()));
    namespaces.dedup();
    let mut secrets = Vec::new();
    for ns in namespaces {
        for label in SECRET_TYPE_LABELS {
            let list = Api::<Secret>::namespaced(ctx.client.clone(), &ns)
                .list(&ListParams::default().labels(label))
                .await
                .map_err(kube_err(format!("listing repository Secrets in {ns}")))?;
            secrets.extend(list.items);
        }
    }
    Ok(ScopedSecrets::new(&secrets, &scope))
}

async fn set_rollout_revert(
    ctx: &Context,
    rollout: &Rollout,
    revert: &RevertStatus,
) -> Result<(), ReconcileError> {
    if rollout.status.as_ref().and_then(|s| s.revert.as_ref()) == Some(revert) {
        return Ok(());
    }
    let api: Api<Rollout> =
        Api::namespaced(ctx.client.clone(), &rollout.namespace().unwrap_or_default());
    api.patch_status(
        &rollout.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"revert": revert}})),
    )
    .await
    .map(drop)
    .map_err(kube_err(format!(
        "recording the revert on Rollout {}",
        rollout.name_any()
    )))
}

/// Applies `edit` to the Application's status fields of the revert loop (`revert`,
/// `quarantinedRevisions`, its `RevertFailed` condition), with optimistic concurrency. Returns the
/// Application as written (or as it was, when the edit changed nothing), for later edits of the
/// same reconcile: those on the copy read before this one would find no revert record.
async fn edit_app_status(
    ctx: &Context,
    app: &Application,
    edit: impl Fn(&mut ApplicationStatus),
) -> Result<Application, ReconcileError> {
    let ns = app.namespace().unwrap_or_default();
    let name = app.name_any();
    let api: Api<Application> = Api::namespaced(ctx.client.clone(), &ns);
    let mut current = app.clone();
    for _ in 0..3 {
        let before = current.status.clone().unwrap_or_default();
        let mut after = before.clone();
        edit(&mut after);
        if after == before {
            return Ok(current);
        }
        let patch = json!({
            "metadata": {"resourceVersion": current.resource_version()},
            "status": {
                "revert": after.revert,
                "quarantinedRevisions": after.quarantined_revisions,
                "conditions": after.conditions,
            }
        });
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(written) => return Ok(written),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                current = api
                    .get(&name)
                    .await
                    .map_err(kube_err(format!("reading Application {ns}/{name}")))?;
            }
            Err(source) => {
                return Err(ReconcileError::Kube {
                    what: format!("recording the revert on Application {ns}/{name}"),
                    source,
                });
            }
        }
    }
    Err(ReconcileError::Task(format!(
        "Application {ns}/{name} kept changing while the revert was recorded"
    )))
}

async fn quarantine(
    ctx: &Context,
    app: &Application,
    revert: &Revert,
) -> Result<Application, ReconcileError> {
    let now = Time(Timestamp::now());
    edit_app_status(ctx, app, |status| {
        if !status.is_quarantined(&revert.sha) {
            status.quarantined_revisions.push(revert.sha.clone());
        }
        let same = status.revert.as_ref().is_some_and(|r| r.sha == revert.sha);
        if !same {
            status.revert = Some(AppRevertStatus {
                sha: revert.sha.clone(),
                revert_commit: None,
                commit_message: None,
                phase: AppRevertPhase::Pending,
                message: None,
                rollout: Some(revert.reason.rollout.clone()),
                analysis_run: revert.reason.analysis_run.clone(),
                started_at: Some(now.clone()),
                attempts: None,
                last_attempt_at: None,
            });
        }
    })
    .await
}

/// An Event of the revert loop on the Rollout.
struct Note {
    type_: EventType,
    reason: &'static str,
    text: String,
}

/// Records an outcome on the Application (when there is one), on the Rollout, then as an Event.
async fn record(
    ctx: &Context,
    rollout: &Rollout,
    app: Option<&Application>,
    edit_app: impl Fn(&mut ApplicationStatus),
    revert: RevertStatus,
    note: Note,
) -> Result<(), ReconcileError> {
    if let Some(app) = app {
        edit_app_status(ctx, app, edit_app).await?;
    }
    set_rollout_revert(ctx, rollout, &revert).await?;
    publish(ctx, rollout, note.type_, note.reason, note.text).await;
    Ok(())
}

async fn mark_pushed(
    ctx: &Context,
    rollout: &Rollout,
    app: &Application,
    revert: &Revert,
    revert_commit: &str,
    commit_message: &str,
) -> Result<(), ReconcileError> {
    record(
        ctx,
        rollout,
        Some(app),
        |status| {
            if let Some(r) = status.revert.as_mut().filter(|r| r.sha == revert.sha) {
                r.phase = AppRevertPhase::Pushed;
                r.revert_commit = Some(revert_commit.to_string());
                r.commit_message = Some(commit_message.to_string()).filter(|m| !m.is_empty());
                r.message = Some(format!("revert commit {revert_commit} pushed"));
            }
        },
        RevertStatus {
            sha: revert.sha.clone(),
            revert_commit: Some(revert_commit.to_string()),
            phase: RevertPhase::Pushed,
            message: None,
        },
        Note {
            type_: EventType::Normal,
            reason: "GitRevertPushed",
            text: format!("Reverted {} in Git with {revert_commit}", revert.sha),
        },
    )
    .await?;
    // A hard refresh fetches at once: the Application syncs the revert without waiting for a poll.
    Api::<Application>::namespaced(ctx.client.clone(), &app.namespace().unwrap_or_default())
        .patch(
            &app.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {REFRESH_ANNOTATION: "hard"}}})),
        )
        .await
        .map(drop)
        .map_err(kube_err(format!(
            "asking Application {} to refresh",
            app.name_any()
        )))
}

async fn mark_synced(
    ctx: &Context,
    rollout: &Rollout,
    app: Option<&Application>,
    sha: &str,
    revert_commit: &str,
) -> Result<(), ReconcileError> {
    record(
        ctx,
        rollout,
        app,
        |status| {
            if let Some(r) = status.revert.as_mut().filter(|r| r.sha == sha) {
                r.phase = AppRevertPhase::Completed;
            }
        },
        RevertStatus {
            sha: sha.to_string(),
            revert_commit: Some(revert_commit.to_string()),
            phase: RevertPhase::Synced,
            message: None,
        },
        Note {
            type_: EventType::Normal,
            reason: "GitRevertSynced",
            text: format!("The revert {revert_commit} of {sha} is synced"),
        },
    )
    .await
}

async fn record_failure(
    ctx: &Context,
    rollout: &Rollout,
    app: Option<&Application>,
    sha: &str,
    message: &str,
) -> Result<(), ReconcileError> {
    tracing::warn!(namespace = rollout.namespace().unwrap_or_default(), rollout = %rollout.name_any(), sha, message, "revert failed");
    let now = Time(Timestamp::now());
    record(
        ctx,
        rollout,
        app,
        |status| {
            if let Some(r) = status.revert.as_mut().filter(|r| r.sha == sha) {
                r.phase = AppRevertPhase::Failed;
                r.message = Some(message.to_string());
            }
            set_condition(status, REVERT_FAILED, message, &now);
        },
        RevertStatus {
            sha: sha.to_string(),
            revert_commit: None,
            phase: RevertPhase::Failed,
            message: Some(message.to_string()),
        },
        Note {
            type_: EventType::Warning,
            reason: REVERT_FAILED,
            text: message.to_string(),
        },
    )
    .await
}

/// Records on the Rollout alone (its revert Failed, a Warning Event) that its revert is refused:
/// the Application it names does not vouch for it. Recorded once: the plan does not decide a Failed
/// revert of the same commit again.
async fn record_refusal(
    ctx: &Context,
    rollout: &Rollout,
    sha: &str,
    message: &str,
) -> Result<(), ReconcileError> {
    tracing::warn!(namespace = rollout.namespace().unwrap_or_default(), rollout = %rollout.name_any(), sha, message, "revert refused");
    count(ctx, "refused");
    record(
        ctx,
        rollout,
        None,
        |_| {},
        RevertStatus {
            sha: sha.to_string(),
            revert_commit: None,
            phase: RevertPhase::Failed,
            message: Some(message.to_string()),
        },
        Note {
            type_: EventType::Warning,
            reason: REVERT_REFUSED,
            text: message.to_string(),
        },
    )
    .await
}

/// Records a failed attempt on the Application (its count drives the retry delay); the count.
async fn record_attempt(
    ctx: &Context,
    app: &Application,
    sha: &str,
    error: &RevertError,
) -> Result<u32, ReconcileError> {
    tracing::warn!(namespace = app.namespace().unwrap_or_default(), application = %app.name_any(), sha, error = %error, "revert attempt failed; will retry");
    let attempts = failed_attempts(app, sha)
        .saturating_add(1)
        .min(i32::MAX.unsigned_abs());
    let now = Time(Timestamp::now());
    let message = format!(
        "attempt {attempts} failed, retried in {}s: {error}",
        retry_delay(attempts).as_secs()
    );
    edit_app_status(ctx, app, |status| {
        if let Some(r) = status.revert.as_mut().filter(|r| r.sha == sha) {
            r.attempts = i32::try_from(attempts).ok();
            r.last_attempt_at = Some(now.clone());
            r.message = Some(message.clone());
        }
    })
    .await?;
    Ok(attempts)
}

/// Records on the Application that the commit is not reverted, and why (condition
/// `RevertSkipped`), with an Event on the Rollout.
async fn record_skip(
    ctx: &Context,
    rollout: &Rollout,
    app: Option<&Application>,
    sha: &str,
    reason: &RevertReason,
    message: &str,
) -> Result<(), ReconcileError> {
    tracing::info!(namespace = rollout.namespace().unwrap_or_default(), rollout = %rollout.name_any(), sha, message, "revert skipped");
    let now = Time(Timestamp::now());
    if let Some(app) = app {
        edit_app_status(ctx, app, |status| {
            status.revert = Some(AppRevertStatus {
                sha: sha.to_string(),
                revert_commit: None,
                commit_message: None,
                phase: AppRevertPhase::Skipped,
                message: Some(message.to_string()),
                rollout: Some(reason.rollout.clone()),
                analysis_run: reason.analysis_run.clone(),
                started_at: Some(now.clone()),
                attempts: None,
                last_attempt_at: None,
            });
            set_condition(status, REVERT_SKIPPED, message, &now);
        })
        .await?;
    }
    publish(
        ctx,
        rollout,
        EventType::Warning,
        REVERT_SKIPPED,
        message.to_string(),
    )
    .await;
    Ok(())
}

/// Sets the condition `type_` (True) with `message`, keeping its transition time when unchanged.
fn set_condition(status: &mut ApplicationStatus, type_: &str, message: &str, now: &Time) {
    let condition = Condition {
        type_: type_.to_string(),
        status: Some("True".to_string()),
        reason: Some(type_.to_string()),
        message: Some(message.to_string()),
        last_transition_time: Some(now.clone()),
        ..Default::default()
    };
    match status.conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if c.message == condition.message => {}
        Some(c) => *c = condition,
        None => status.conditions.push(condition),
    }
}

async fn publish(ctx: &Context, rollout: &Rollout, type_: EventType, reason: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "GitRevert".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &rollout.object_ref(&())).await {
        tracing::debug!(error = %e, "revert event not recorded");
    }
}
