//! The planner of an Application reconcile (pure: no client, no clock, no randomness).
//!
//! From what the observe step read ([`Observed`]) it computes the complete status and decides
//! whether to sync, following Argo CD's rules:
//! - a requested `operation` (sync, rollback) runs once and is removed;
//! - automated sync runs only when OutOfSync, never for a quarantined revision, never twice for a
//!   revision whose sync failed unless `retry` allows it (G10); with `selfHeal` it re-applies after
//!   drift with a backoff (G4); without, drift stays OutOfSync;
//! - an automated sync that would delete every object is refused without `allowEmpty` (G5);
//! - a Git or render error is a `ComparisonError` and nothing is applied (G11).
//!
//! [`finish_sync`] folds a sync's outcome into the status (operation state, history G9, SyncError).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::Value;

use super::clusters::ClusterIdentity;
use super::compare::{Comparison, compare, images};
use super::conditions::{
    COMPARISON_ERROR, INVALID_SPEC_ERROR, ORPHANED_RESOURCE_WARNING, SHARED_RESOURCE_WARNING,
    SYNC_ERROR, replace_condition, set_owned_conditions,
};
use super::ignore::keep_live_ignored_fields;
use super::impersonation::SyncIdentity;
use super::object::{APPLICATION_ANNOTATION, ResourceKey, annotation, key_of, tracking_id};
use super::order::sort_for_prune;
use super::sync_options::{self, SyncOptions, effective};
use super::sync_windows;
use crate::api::application::{
    Application, ApplicationSource, ApplicationSourceType, ApplicationSpec, ApplicationStatus,
    ApplicationSummary, ComparedTo, HealthStatus, HookPhase, ManagedNamespaceMetadata, Operation,
    OperationInitiator, OperationPhase, OperationState, ResourceResult, RetryStrategy,
    RevisionHistory, SyncOperation, SyncOperationResource, SyncOperationResult, SyncStatus,
    SyncStatusCode,
};

/// Finalizers that make deleting the Application delete its objects first (Argo CD's and Sluice's).
pub const RESOURCES_FINALIZERS: &[&str] = &[
    crate::api::keys::ARGO_RESOURCES_FINALIZER,
    crate::api::keys::RESOURCES_FINALIZER,
];
/// Self-heal backoff: the first re-apply is immediate, then 2 s × 3ⁿ, at most 5 min (Argo CD's).
const SELF_HEAL_BACKOFF_BASE: Duration = Duration::from_secs(2);
const SELF_HEAL_BACKOFF_FACTOR: u32 = 3;
const SELF_HEAL_BACKOFF_MAX: Duration = Duration::from_secs(300);
/// After this long without self-heal the backoff starts over (Argo CD's cooldown).
const SELF_HEAL_COOLDOWN: Duration = Duration::from_secs(330);
/// Look again soon after a sync, for the health and sync status of what was applied.
const AFTER_SYNC: Duration = Duration::from_secs(2);
/// The message of an operation ended by `terminate-op` (Argo CD's).
pub const TERMINATED: &str = "Operation terminated";

/// The manifests of one revision of a source, ready to compare and apply: namespaces defaulted,
/// tracking annotations set, the Rollout engine's fields carried over, in apply order.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// Full commit sha.
    pub revision: String,
    pub source: ApplicationSource,
    pub source_type: Option<ApplicationSourceType>,
    pub objects: Vec<Value>,
    /// The hooks (see [`super::hooks`]), normalised as `objects` but never compared nor pruned; a
    /// hook may have only a `generateName`, named when a sync creates it.
    pub hooks: Vec<Value>,
    /// Why the project does not permit some of `objects` or `hooks` (object, then rule): a sync
    /// of this revision fails and applies nothing.
    pub not_permitted: Vec<String>,
}

/// Why Git could not be compared with the cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct ComparisonFailure {
    /// The commit, when the revision was resolved.
    pub revision: Option<String>,
    pub message: String,
}

/// Everything a reconcile read.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub app: Application,
    pub now: Timestamp,
    /// The revision was resolved from Git in this reconcile (`status.reconciledAt` = now).
    pub refreshed: bool,
    /// `spec.source` at the tracked revision.
    pub target: Result<Desired, ComparisonFailure>,
    /// What [`operation_request`] asked for, rendered (`None` when nothing was asked).
    pub requested: Option<Result<Desired, ComparisonFailure>>,
    /// Live objects by key, for the keys of `target` and `requested`.
    pub live: BTreeMap<ResourceKey, Value>,
    /// Live objects carrying the Application's tracking annotation, hooks excepted.
    pub tracked: Vec<Value>,
    /// Live hooks carrying the Application's tracking annotation: deleted with the Application,
    /// never compared nor pruned.
    pub tracked_hooks: Vec<Value>,
    /// Until the next poll slot.
    pub next_refresh_in: Duration,
    /// Why the Application's project refuses it (namespace, repository, destination): nothing was
    /// read, nothing may be applied.
    pub invalid_spec: Option<String>,
    /// Who syncs and cascade-deletes: the controller, or the project's ServiceAccount for the
    /// destination (`--sync-impersonation`).
    pub sync_identity: SyncIdentity,
    /// The sync windows of the Application's project.
    pub sync_windows: Vec<crate::api::project::SyncWindow>,
    /// The users' health rules (`sluice-health`).
    pub health_rules: std::sync::Arc<super::health_rules::HealthRules>,
    /// The cluster the destination resolved to (the controller's own when it did not resolve).
    pub cluster: ClusterIdentity,
}

impl Observed {
    /// An Application its project refuses: no revision resolved, nothing rendered; `tracked` is only
    /// read to finish a deletion.
    pub fn refused(
        app: &Application,
        now: Timestamp,
        message: String,
        tracked: Vec<Value>,
        next_refresh_in: Duration,
        sync_identity: SyncIdentity,
    ) -> Self {
        Self {
            app: app.clone(),
            now,
            refreshed: false,
            target: Err(ComparisonFailure {
                revision: None,
                message: message.clone(),
            }),
            requested: None,
            live: BTreeMap::new(),
            tracked,
            tracked_hooks: Vec::new(),
            next_refresh_in,
            invalid_spec: Some(message),
            sync_identity,
            sync_windows: Vec::new(),
            health_rules: std::sync::Arc::default(),
            cluster: ClusterIdentity::in_cluster(),
        }
    }
}

/// The revision and source an operation (or a pending retry) needs rendered.
#[derive(Clone, Debug, PartialEq)]
pub struct OperationRequest {
    /// A commit sha, branch or tag.
    pub revision: String,
    pub source: ApplicationSource,
}

/// What started a sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncKind {
    Automated,
    SelfHeal,
    Retry,
    Manual,
    Rollback,
}

/// A sync to run.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncTask {
    pub kind: SyncKind,
    /// Full commit sha.
    pub revision: String,
    pub source: ApplicationSource,
    /// Objects to apply, in apply order.
    pub apply: Vec<Value>,
    /// The hooks of the revision (every phase), in apply order.
    pub hooks: Vec<Value>,
    /// When the sync was planned (Unix seconds): names the hooks that only have a `generateName`.
    pub started_at: i64,
    /// Live objects to delete, in prune order.
    pub prune: Vec<Value>,
    /// Live objects to delete after every wave is applied and healthy (`PruneLast=true`), in
    /// prune order.
    pub prune_last: Vec<Value>,
    /// Live objects Git no longer declares that are kept (pruning off, or `Prune=false`).
    pub prune_skipped: Vec<Value>,
    /// Declared objects whose live copy another Application tracks: never taken over, so not
    /// applied (SharedResourceWarning), and the sync fails with `FailOnSharedResource=true`.
    pub shared: Vec<Value>,
    /// `FailOnSharedResource=true` (spec or operation).
    pub fail_on_shared: bool,
    /// Declared objects that exist but were not applied by this Application (created by hand, by
    /// another tool): applied without `force`, so fields other managers own are never taken over.
    pub adopted: BTreeSet<ResourceKey>,
    /// Why the project does not permit some declared objects: the sync fails, nothing applied.
    pub not_permitted: Vec<String>,
    /// Create this namespace first (`CreateNamespace=true`).
    pub create_namespace: Option<String>,
    /// Labels and annotations of the namespace created (`syncPolicy.managedNamespaceMetadata`).
    pub namespace_metadata: Option<ManagedNamespaceMetadata>,
    /// The application-level sync options (spec, then the operation's over them); each object's
    /// annotation goes over these ([`effective`]).
    pub options: SyncOptions,
    /// Who applies and prunes (the project's ServiceAccount under `--sync-impersonation`); a
    /// `Missing` one fails the sync before anything is applied.
    pub run_as: SyncIdentity,
    /// As recorded in `status.operationState.operation`.
    pub operation: Operation,
    pub retry: Option<RetryStrategy>,
    /// Retries already made for this operation.
    pub retry_count: i64,
    /// `operation.sync.dryRun`: every object is checked by a server-side dry run, nothing changes.
    pub dry_run: bool,
    /// `operation.sync.resources` named the objects: only those are synced.
    pub selective: bool,
    /// What earlier reconciles of this operation did (`syncResult.resources` of the operation
    /// under way): done again by none of the next steps.
    pub done: Vec<ResourceResult>,
    /// The operation was under way before this reconcile: the namespace and the dry run were
    /// done, and the sync carries on where `done` says.
    pub resumed: bool,
}

impl SyncTask {
    /// A sync that leaves no history entry (Argo CD records only full, real syncs).
    pub fn is_partial(&self) -> bool {
        self.dry_run || self.selective
    }
}

/// Deleting the Application with a resources finalizer: delete its objects, then the finalizer.
#[derive(Clone, Debug, PartialEq)]
pub enum Finalize {
    Delete(Vec<Value>),
    RemoveFinalizers,
}

/// The outcome of planning.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The complete status (before the sync's outcome, if any).
    pub status: ApplicationStatus,
    pub sync: Option<SyncTask>,
    /// Remove the top-level `operation`: it has been acted on.
    pub clear_operation: bool,
    /// Set `spec.syncPolicy.automated.enabled: false` (a rollback suspends automated sync).
    pub disable_automated: bool,
    pub finalize: Option<Finalize>,
    /// Live objects to delete (the hooks still running when their operation was terminated).
    pub delete: Vec<Value>,
    pub requeue_after: Duration,
}

/// What a sync did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SyncOutcome {
    /// One entry per object applied, pruned or kept.
    pub results: Vec<ResourceResult>,
    /// Why the sync failed, if it did.
    pub error: Option<String>,
    /// Not finished: what the sync waits for (a wave's health, a hook); the next reconcile goes
    /// on from `results`.
    pub waiting: Option<String>,
}

/// The revision and source to render for the Application's operation or pending retry.
pub fn operation_request(app: &Application) -> Option<OperationRequest> {
    let spec_source = &app.spec.source;
    if let Some(op) = &app.operation {
        if let Some(rollback) = &op.rollback {
            let entry = history_entry(app, rollback.id)?;
            return Some(OperationRequest {
                revision: entry.revision.clone(),
                source: entry.source.clone().unwrap_or_else(|| spec_source.clone()),
            });
        }
        let sync = op.sync.as_ref()?;
        return Some(OperationRequest {
            revision: sync
                .revision
                .clone()
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| spec_source.target_revision().to_string()),
            source: sync.source.clone().unwrap_or_else(|| spec_source.clone()),
        });
    }
    let state = pending_retry(app.status.as_ref()?)?;
    let sync = state.operation.sync.as_ref()?;
    let source = sync.source.clone().unwrap_or_else(|| spec_source.clone());
    let refresh = state
        .operation
        .retry
        .as_ref()
        .or_else(|| app.spec.retry())
        .and_then(|r| r.refresh)
        .unwrap_or(false);
    // `retry.refresh`: the retry takes the latest commit of the source's revision.
    let revision = if refresh && state.finished_at.is_some() {
        source.target_revision().to_string()
    } else {
        operation_revision(state)?.to_string()
    };
    Some(OperationRequest { revision, source })
}

fn history_entry(app: &Application, id: i64) -> Option<&RevisionHistory> {
    app.status.as_ref()?.history.iter().find(|h| h.id == id)
}

/// The operation state when it waits for a retry (Argo CD keeps it Running between attempts).
fn pending_retry(status: &ApplicationStatus) -> Option<&OperationState> {
    status
        .operation_state
        .as_ref()
        .filter(|s| s.phase == OperationPhase::Running)
}

/// The commit an operation synced (or was asked to).
fn operation_revision(state: &OperationState) -> Option<&str> {
    state
        .sync_result
        .as_ref()
        .map(|r| r.revision.as_str())
        .filter(|r| !r.is_empty())
        .or_else(|| state.operation.sync.as_ref()?.revision.as_deref())
}

/// A dry-run or selective sync operation.
fn is_partial_operation(op: &Operation) -> bool {
    op.sync
        .as_ref()
        .is_some_and(|s| s.is_dry_run() || !s.resources.is_empty())
}

fn is_automated_operation(op: &Operation) -> bool {
    op.initiated_by.as_ref().is_some_and(|i| i.automated)
}

fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

fn until(now: Timestamp, at: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
}

fn plus(t: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// What to do about syncing.
enum Decision {
    Nothing,
    Wait(Duration),
    Sync(Box<SyncTask>),
    /// Automated sync refused, with the reason shown as SyncError.
    Refuse(String),
    /// The operation could not start; recorded as a failed operation.
    OperationError(Box<OperationState>),
    /// The project's sync windows do not allow this sync now.
    Blocked {
        task: Box<SyncTask>,
        reason: String,
    },
}

/// Plans one reconcile.
pub fn plan(obs: &Observed) -> Plan {
    let app = &obs.app;
    let previous = app.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    if obs.refreshed {
        status.reconciled_at = Some(Time(obs.now));
    }
    let mut plan = Plan {
        status: ApplicationStatus::default(),
        sync: None,
        clear_operation: app.operation.is_some(),
        disable_automated: false,
        finalize: None,
        delete: Vec::new(),
        requeue_after: obs.next_refresh_in,
    };
    if app.metadata.deletion_timestamp.is_some() {
        plan.clear_operation = false;
        let every: Vec<Value> = obs
            .tracked
            .iter()
            .chain(&obs.tracked_hooks)
            .cloned()
            .collect();
        plan.finalize = finalize(app, &every);
        plan.requeue_after = AFTER_SYNC;
        plan.status = status;
        return plan;
    }
    let invalid_spec = obs.invalid_spec.clone().or_else(|| spec_refusal(app));
    if let Some(message) = invalid_spec {
        refuse_invalid_spec(&mut status, app, message, obs.now);
        plan.status = status;
        return plan;
    }
    let mut conditions: Vec<(&str, String)> = Vec::new();
    let comparison = record_comparison(&mut status, obs, &mut conditions);

    let terminating = previous
        .operation_state
        .as_ref()
        .filter(|s| s.phase == OperationPhase::Terminating);
    let decision = match (terminating, &app.operation) {
        (Some(state), _) => {
            // A request still waiting (held by a sync window) is the operation terminated: it goes
            // too, as `clear_operation` says by default.
            let (state, running_hooks) = terminated(state, obs.now);
            status.operation_state = Some(state);
            plan.delete = running_hooks;
            Decision::Nothing
        }
        (None, Some(op)) => decide_operation(obs, op),
        (None, None) => match decide_retry(obs) {
            Some(decision) => decision,
            None => decide_automated(obs, comparison.as_ref()),
        },
    };
    let decision = gate_by_sync_windows(obs, decision);
    let mut sync_error = None;
    match decision {
        Decision::Nothing => {}
        Decision::Wait(d) => plan.requeue_after = plan.requeue_after.min(d),
        Decision::Refuse(message) => sync_error = Some(message),
        // Reported as SyncError from the failed operation state, below.
        Decision::OperationError(state) => status.operation_state = Some(*state),
        Decision::Blocked { mut task, reason } => {
            if app.operation.is_some() {
                // A user's request waits for the window, Running and saying why, as in Argo CD.
                plan.clear_operation = false;
                let message = format!("Sync operation blocked by sync window: {reason}");
                let started = status
                    .operation_state
                    .as_ref()
                    .filter(|s| s.finished_at.is_none() && s.message.as_ref() == Some(&message))
                    .map_or(obs.now, |s| s.started_at.0);
                task.started_at = started.as_second();
                status = sync_in_progress(status, &task, message, Vec::new());
            }
            plan.requeue_after = plan.requeue_after.min(until_next_minute(obs.now));
        }
        Decision::Sync(task) => match refusal(&task) {
            // Failed before anything is applied, recorded as any failed sync is.
            Some(outcome) => {
                status = finish_sync(status, &app.spec, &task, &outcome, obs.now, obs.now);
            }
            None => {
                plan.disable_automated = task.kind == SyncKind::Rollback && app.spec.is_automated();
                plan.requeue_after = AFTER_SYNC;
                plan.sync = Some(*task);
            }
        },
    }
    if sync_error.is_none() && plan.sync.is_none() {
        sync_error = failed_operation_message(&status);
    }
    if let Some(message) = sync_error {
        conditions.push((SYNC_ERROR, message));
    }
    if let Some(message) = comparison
        .as_ref()
        .and_then(|c| orphan_warning(&app.spec, c))
    {
        conditions.push((ORPHANED_RESOURCE_WARNING, message));
    }
    if let Some(message) = shared_warning(obs) {
        conditions.push((SHARED_RESOURCE_WARNING, message));
    }
    set_owned_conditions(&mut status.conditions, &conditions, obs.now);
    plan.status = status;
    plan
}

/// A sync the project's sync windows do not allow now becomes [`Decision::Blocked`]; a window
/// Sluice cannot evaluate refuses it (SyncError naming the window).
fn gate_by_sync_windows(obs: &Observed, decision: Decision) -> Decision {
    let Decision::Sync(task) = decision else {
        return decision;
    };
    if task.resumed {
        // As in Argo CD, a window that opens or closes does not stop a sync under way.
        return Decision::Sync(task);
    }
    let app = &obs.app;
    let manual = task
        .operation
        .initiated_by
        .as_ref()
        .is_none_or(|by| !by.automated);
    let name = app.metadata.name.clone().unwrap_or_default();
    let destination = &app.spec.destination;
    // The cluster resolved, as Argo CD matches windows' `clusters` (server or name).
    let target = sync_windows::Target {
        name: &name,
        namespace: destination.namespace.as_deref().unwrap_or_default(),
        clusters: [obs.cluster.server.as_str(), obs.cluster.name.as_str()],
    };
    match sync_windows::check(&obs.sync_windows, &target, obs.now, manual) {
        Ok(None) => Decision::Sync(task),
        Ok(Some(blocked)) => Decision::Blocked {
            task,
            reason: blocked.reason,
        },
        Err(e) => Decision::Refuse(format!("the project's {e}")),
    }
}

/// Argo CD's `terminate-op` (`status.operationState.phase: Terminating`): the operation ends
/// Failed, "Operation terminated", without a retry; the hooks it left running are marked failed and
/// returned, to be deleted (named from their results: the watch caches may not hold their kind).
fn terminated(state: &OperationState, now: Timestamp) -> (OperationState, Vec<Value>) {
    let mut state = state.clone();
    let mut running = Vec::new();
    for result in state
        .sync_result
        .iter_mut()
        .flat_map(|r| r.resources.iter_mut())
        .filter(|r| r.hook_phase == Some(HookPhase::Running))
    {
        result.hook_phase = Some(HookPhase::Failed);
        result.message = Some("Terminated".to_string());
        let api_version = if result.group.is_empty() {
            result.version.clone()
        } else {
            format!("{}/{}", result.group, result.version)
        };
        running.push(serde_json::json!({
            "apiVersion": api_version,
            "kind": result.kind,
            "metadata": {"name": result.name, "namespace": result.namespace},
        }));
    }
    state.phase = OperationPhase::Failed;
    state.message = Some(TERMINATED.to_string());
    state.finished_at = Some(Time(now));
    (state, running)
}

/// Windows open and close on minutes: look again just after the next one starts.
fn until_next_minute(now: Timestamp) -> Duration {
    let into = u64::try_from(now.as_second().rem_euclid(60)).unwrap_or(0);
    Duration::from_secs(60 - into + 1)
}

/// Why Sluice cannot follow `app`'s spec: Argo CD fields it does not implement, application-level
/// sync options it does not follow (both named). Checked before anything is fetched.
pub fn spec_refusal(app: &Application) -> Option<String> {
    let messages: Vec<String> = [
        super::unsupported::unsupported_message(app),
        sync_options::application_problems(app),
    ]
    .into_iter()
    .flatten()
    .collect();
    (!messages.is_empty()).then(|| messages.join("; "))
}

/// Why `task` must fail before it applies anything: objects its project does not permit, no
/// ServiceAccount to sync as (`--sync-impersonation`), or (with `FailOnSharedResource=true`)
/// objects another Application tracks.
fn refusal(task: &SyncTask) -> Option<SyncOutcome> {
    let error = if !task.not_permitted.is_empty() {
        format!(
            "{} object(s) are not permitted by the project, nothing was applied: {}",
            task.not_permitted.len(),
            task.not_permitted.join("; ")
        )
    } else if let SyncIdentity::Missing(why) = &task.run_as {
        format!("no ServiceAccount to sync as, nothing was applied: {why}")
    } else if task.fail_on_shared && !task.shared.is_empty() {
        let names: Vec<String> = task
            .shared
            .iter()
            .filter_map(key_of)
            .map(|k| k.to_string())
            .collect();
        format!(
            "FailOnSharedResource=true: {} object(s) are tracked by another Application, nothing was applied: {}",
            names.len(),
            names.join(", ")
        )
    } else {
        return None;
    };
    // An operation under way keeps what it did (and says so).
    let error = if task.resumed {
        error.replace("nothing was applied", "nothing more was applied")
    } else {
        error
    };
    Some(SyncOutcome {
        results: task.done.clone(),
        error: Some(error),
        waiting: None,
    })
}

/// An Application that cannot be processed as specified: the InvalidSpecError condition, the sync
/// status Unknown (nothing was compared), and a requested operation recorded as failed with the
/// same reason rather than dropped without a word.
fn refuse_invalid_spec(
    status: &mut ApplicationStatus,
    app: &Application,
    message: String,
    now: Timestamp,
) {
    if let Some(op) = app
        .operation
        .as_ref()
        .filter(|op| op.sync.is_some() || op.rollback.is_some())
    {
        status.operation_state = Some(*error_state(
            op,
            format!("operation refused: {message}"),
            now,
        ));
    }
    if let Some(sync) = &mut status.sync {
        sync.status = SyncStatusCode::Unknown;
    }
    set_owned_conditions(
        &mut status.conditions,
        &[(INVALID_SPEC_ERROR, message)],
        now,
    );
}

/// Declared objects whose live copy another Application applied.
fn shared_warning(obs: &Observed) -> Option<String> {
    let desired = obs.target.as_ref().ok()?;
    let me = app_tracking_id(&obs.app);
    let shared: Vec<String> = desired
        .objects
        .iter()
        .filter_map(|o| {
            let owner = tracked_by_another(obs, o, &me)?;
            Some(format!("{} (applied by {owner})", key_of(o)?))
        })
        .collect();
    (!shared.is_empty()).then(|| {
        format!(
            "{} object(s) are also declared by another Application, which keeps them: {}. They are not applied nor pruned by this one; declare each object in one Application only",
            shared.len(),
            shared.join(", ")
        )
    })
}

/// Writes the comparison (or its failure) into `status`; returns it when it succeeded.
fn record_comparison(
    status: &mut ApplicationStatus,
    obs: &Observed,
    conditions: &mut Vec<(&str, String)>,
) -> Option<Comparison> {
    let spec = &obs.app.spec;
    let compared_to = Some(ComparedTo {
        source: Some(spec.source.clone()),
        destination: Some(spec.destination.clone()),
    });
    match &obs.target {
        Err(failure) => {
            conditions.push((COMPARISON_ERROR, failure.message.clone()));
            let previous_revision = status.sync.as_ref().and_then(|s| s.revision.clone());
            status.sync = Some(SyncStatus {
                status: SyncStatusCode::Unknown,
                revision: failure.revision.clone().or(previous_revision),
                compared_to,
            });
            None
        }
        Ok(desired) => {
            let comparison = compare(
                &desired.objects,
                &obs.live,
                &obs.tracked,
                &spec.ignore_differences,
                &obs.health_rules,
            );
            status.sync = Some(SyncStatus {
                status: comparison.sync_status,
                revision: Some(desired.revision.clone()),
                compared_to,
            });
            status.resources = comparison.resources.clone();
            status.health = Some(with_transition(
                status.health.as_ref(),
                comparison.health.clone(),
                obs.now,
            ));
            status.source_type = desired.source_type;
            let images = images(&desired.objects);
            status.summary = (!images.is_empty()).then(|| ApplicationSummary {
                images,
                ..ApplicationSummary::default()
            });
            Some(comparison)
        }
    }
}

/// `health` with `lastTransitionTime` kept when the code did not change.
fn with_transition(
    previous: Option<&HealthStatus>,
    mut health: HealthStatus,
    now: Timestamp,
) -> HealthStatus {
    health.last_transition_time = match previous {
        Some(p) if p.status == health.status => p.last_transition_time.clone(),
        _ => Some(Time(now)),
    };
    health
}

fn finalize(app: &Application, tracked: &[Value]) -> Option<Finalize> {
    let has_finalizer = app
        .metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| RESOURCES_FINALIZERS.contains(&f.as_str()));
    if !has_finalizer {
        return None;
    }
    // `Delete=false` objects stay in the cluster when the Application goes.
    let options = sync_options::spec_options(app).0;
    let mut objects: Vec<Value> = tracked
        .iter()
        .filter(|o| effective(o, &options).deletes())
        .cloned()
        .collect();
    if objects.is_empty() {
        return Some(Finalize::RemoveFinalizers);
    }
    sort_for_prune(&mut objects);
    Some(Finalize::Delete(objects))
}

fn requested_desired(obs: &Observed) -> Result<&Desired, String> {
    match &obs.requested {
        Some(Ok(desired)) => Ok(desired),
        Some(Err(failure)) => Err(failure.message.clone()),
        None => Err("the requested revision could not be read".to_string()),
    }
}

fn error_state(op: &Operation, message: String, now: Timestamp) -> Box<OperationState> {
    Box::new(OperationState {
        operation: op.clone(),
        phase: OperationPhase::Error,
        message: Some(message),
        sync_result: None,
        started_at: Time(now),
        finished_at: Some(Time(now)),
        retry_count: 0,
    })
}

fn decide_operation(obs: &Observed, op: &Operation) -> Decision {
    let app = &obs.app;
    if let Some(rollback) = &op.rollback {
        let Some(entry) = history_entry(app, rollback.id) else {
            let ids: Vec<String> = app
                .status
                .iter()
                .flat_map(|s| s.history.iter().map(|h| h.id.to_string()))
                .collect();
            return Decision::OperationError(error_state(
                op,
                format!(
                    "rollback: history has no id {} (ids: {}); pick one from status.history",
                    rollback.id,
                    if ids.is_empty() {
                        "none".to_string()
                    } else {
                        ids.join(", ")
                    }
                ),
                obs.now,
            ));
        };
        let desired = match requested_desired(obs) {
            Ok(d) => d,
            Err(message) => {
                return Decision::OperationError(error_state(
                    op,
                    format!("rollback to {}: {message}", short(&entry.revision)),
                    obs.now,
                ));
            }
        };
        let recorded = Operation {
            sync: Some(SyncOperation {
                revision: Some(entry.revision.clone()),
                prune: rollback.prune,
                source: entry.source.clone(),
                ..SyncOperation::default()
            }),
            ..op.clone()
        };
        let task = sync_task(
            obs,
            desired,
            SyncKind::Rollback,
            rollback.prune,
            &[],
            recorded,
            None,
        );
        return Decision::Sync(Box::new(task));
    }
    let Some(sync) = &op.sync else {
        // A refresh only: the observe step did it.
        return Decision::Nothing;
    };
    match requested_desired(obs) {
        Ok(desired) => {
            let task = sync_task(
                obs,
                desired,
                SyncKind::Manual,
                sync.prune,
                &sync.sync_options,
                op.clone(),
                None,
            );
            Decision::Sync(Box::new(task))
        }
        Err(message) => Decision::OperationError(error_state(op, message, obs.now)),
    }
}

/// A Running operation: one under way (no `finishedAt`: waiting for a wave or a hook, or the
/// controller restarted meanwhile) goes on where its `syncResult` says; a failed one waiting for its
/// next attempt runs again from the start when its backoff is over. `None` when there is none to
/// consider.
fn decide_retry(obs: &Observed) -> Option<Decision> {
    let app = &obs.app;
    let state = pending_retry(app.status.as_ref()?)?;
    let revision = operation_revision(state)?;
    if is_automated_operation(&state.operation) {
        let moved = obs.target.as_ref().is_ok_and(|t| t.revision != revision);
        if moved || !app.spec.is_automated() {
            // A new commit is tried instead (G10); or automated sync was turned off.
            return None;
        }
    }
    let retry = state
        .operation
        .retry
        .clone()
        .or_else(|| app.spec.retry().cloned());
    let under_way = state.finished_at.is_none();
    if !under_way {
        let retry = retry.as_ref()?;
        let delay = retry
            .delay(u32::try_from(state.retry_count).unwrap_or(u32::MAX))
            .unwrap_or(crate::api::application::DEFAULT_BACKOFF_DURATION);
        let finished = state.finished_at.as_ref().map_or(obs.now, |t| t.0);
        let due = plus(finished, delay);
        if obs.now < due {
            return Some(Decision::Wait(until(obs.now, due)));
        }
    }
    let desired = match requested_desired(obs) {
        Ok(d) => d,
        Err(message) => {
            return Some(Decision::OperationError(error_state(
                &state.operation,
                message,
                obs.now,
            )));
        }
    };
    let sync = state.operation.sync.clone().unwrap_or_default();
    // Nothing done yet (e.g. held by a sync window): it starts afresh.
    let resumes = under_way
        && state
            .sync_result
            .as_ref()
            .is_some_and(|r| !r.resources.is_empty());
    let mut task = sync_task(
        obs,
        desired,
        SyncKind::Retry,
        sync.prune,
        &sync.sync_options,
        state.operation.clone(),
        resumes.then_some(state),
    );
    task.retry = retry;
    task.retry_count = state.retry_count + i64::from(!under_way);
    Some(Decision::Sync(Box::new(task)))
}

/// The status while `task` is under way (waiting for a wave, a hook or a sync window): its
/// operation Running, without `finishedAt`, with `message` saying what it waits for and `results`
/// what it did so far (where the next reconcile goes on).
pub fn sync_in_progress(
    mut status: ApplicationStatus,
    task: &SyncTask,
    message: String,
    results: Vec<ResourceResult>,
) -> ApplicationStatus {
    status.operation_state = Some(OperationState {
        operation: task.operation.clone(),
        phase: OperationPhase::Running,
        message: Some(message),
        sync_result: Some(SyncOperationResult {
            revision: task.revision.clone(),
            resources: results,
            source: Some(task.source.clone()),
        }),
        started_at: Time(task_started_at(task)),
        finished_at: None,
        retry_count: task.retry_count,
    });
    status
}

/// When `task`'s operation started (its hooks are named for it).
pub fn task_started_at(task: &SyncTask) -> Timestamp {
    Timestamp::from_second(task.started_at).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn decide_automated(obs: &Observed, comparison: Option<&Comparison>) -> Decision {
    let app = &obs.app;
    let Some(automated) = app.spec.automated() else {
        return Decision::Nothing;
    };
    let (Ok(desired), Some(comparison)) = (&obs.target, comparison) else {
        return Decision::Nothing;
    };
    if comparison.sync_status != SyncStatusCode::OutOfSync {
        return Decision::Nothing;
    }
    let status = app.status.clone().unwrap_or_default();
    if status.is_quarantined(&desired.revision) {
        return Decision::Refuse(format!(
            "automated sync of {} skipped: the revision is quarantined (its rollout failed; see status.revert) until its revert is synced; request a sync to apply it anyway",
            short(&desired.revision)
        ));
    }
    let mut heal_attempts = 0;
    let mut kind = SyncKind::Automated;
    if let Some(last) = status.operation_state.as_ref().filter(|s| {
        // A finished dry-run or selective sync did not sync the revision.
        operation_revision(s) == Some(desired.revision.as_str())
            && !(s.phase.is_completed() && is_partial_operation(&s.operation))
    }) {
        match last.phase {
            // Reported as SyncError from the failed operation (G10).
            OperationPhase::Failed | OperationPhase::Error => return Decision::Nothing,
            OperationPhase::Running | OperationPhase::Terminating => return Decision::Nothing,
            OperationPhase::Succeeded => {
                if !automated.self_heal() {
                    return Decision::Nothing;
                }
                let finished = last.finished_at.as_ref().map_or(obs.now, |t| t.0);
                let since =
                    Duration::try_from(obs.now.duration_since(finished)).unwrap_or(Duration::ZERO);
                let attempts = if since >= SELF_HEAL_COOLDOWN {
                    0
                } else {
                    last.operation
                        .sync
                        .as_ref()
                        .map_or(0, |s| s.auto_heal_attempts_count)
                };
                let due = plus(finished, self_heal_backoff(attempts));
                if obs.now < due {
                    return Decision::Wait(until(obs.now, due));
                }
                heal_attempts = attempts + 1;
                kind = SyncKind::SelfHeal;
            }
        }
    }
    let only_pruning = comparison
        .resources
        .iter()
        .filter(|r| r.status != Some(SyncStatusCode::Synced))
        .all(|r| r.requires_pruning);
    if only_pruning && !automated.prune() {
        // Reported as OrphanedResourceWarning.
        return Decision::Nothing;
    }
    if automated.prune()
        && !automated.allow_empty()
        && desired.objects.is_empty()
        && !comparison.requires_pruning.is_empty()
    {
        return Decision::Refuse(format!(
            "automated sync of {} refused: it would delete every object of the Application ({} of them); set syncPolicy.automated.allowEmpty: true if that is intended",
            short(&desired.revision),
            comparison.requires_pruning.len()
        ));
    }
    let sync_options = app
        .spec
        .sync_policy
        .as_ref()
        .map(|p| p.sync_options.clone())
        .unwrap_or_default();
    let operation = Operation {
        sync: Some(SyncOperation {
            revision: Some(desired.revision.clone()),
            prune: automated.prune(),
            sync_options: sync_options.clone(),
            auto_heal_attempts_count: heal_attempts,
            ..SyncOperation::default()
        }),
        initiated_by: Some(OperationInitiator {
            username: None,
            automated: true,
        }),
        retry: app.spec.retry().cloned(),
        ..Operation::default()
    };
    Decision::Sync(Box::new(sync_task(
        obs,
        desired,
        kind,
        automated.prune(),
        &[],
        operation,
        None,
    )))
}

/// The delay before self-heal attempt `attempts + 1`.
fn self_heal_backoff(attempts: i64) -> Duration {
    if attempts <= 0 {
        return Duration::ZERO;
    }
    let mut delay = SELF_HEAL_BACKOFF_BASE;
    for _ in 1..attempts {
        delay = delay.saturating_mul(SELF_HEAL_BACKOFF_FACTOR);
        if delay >= SELF_HEAL_BACKOFF_MAX {
            return SELF_HEAL_BACKOFF_MAX;
        }
    }
    delay.min(SELF_HEAL_BACKOFF_MAX)
}

fn sync_task(
    obs: &Observed,
    desired: &Desired,
    kind: SyncKind,
    prune: bool,
    extra_options: &[String],
    operation: Operation,
    under_way: Option<&OperationState>,
) -> SyncTask {
    let spec = &obs.app.spec;
    let options = sync_options::sync_options(&obs.app, extra_options);
    let declared: BTreeSet<ResourceKey> = desired.objects.iter().filter_map(key_of).collect();
    let mut extra: Vec<Value> = obs
        .tracked
        .iter()
        .filter(|o| key_of(o).is_some_and(|k| !declared.contains(&k)))
        .cloned()
        .collect();
    sort_for_prune(&mut extra);
    let (to_prune, kept): (Vec<Value>, Vec<Value>) = extra
        .into_iter()
        .partition(|o| prune && effective(o, &options).prunes());
    let (prune_last, to_prune): (Vec<Value>, Vec<Value>) = to_prune
        .into_iter()
        .partition(|o| effective(o, &options).prunes_last());
    let create_namespace = options
        .creates_namespace()
        .then(|| spec.destination.namespace.clone())
        .flatten()
        .filter(|ns| !ns.is_empty());
    let namespace_metadata = create_namespace.as_ref().and_then(|_| {
        spec.sync_policy
            .as_ref()?
            .managed_namespace_metadata
            .clone()
    });
    let retry = operation.retry.clone();
    let me = app_tracking_id(&obs.app);
    let (shared, mut apply): (Vec<Value>, Vec<Value>) = desired
        .objects
        .iter()
        .cloned()
        .partition(|o| tracked_by_another(obs, o, &me).is_some());
    let done: Vec<ResourceResult> = under_way
        .and_then(|state| state.sync_result.as_ref())
        .map(|r| r.resources.clone())
        .unwrap_or_default();
    if options.applies_out_of_sync_only() {
        apply = out_of_sync_only(obs, apply, &done);
    }
    if options.respects_ignore_differences() {
        for obj in &mut apply {
            if let Some(live) = key_of(obj).and_then(|k| obs.live.get(&k)) {
                keep_live_ignored_fields(&spec.ignore_differences, obj, live);
            }
        }
    }
    let adopted = apply
        .iter()
        .filter_map(key_of)
        .filter(|key| {
            obs.live
                .get(key)
                .is_some_and(|live| annotation(live, APPLICATION_ANNOTATION).is_none())
        })
        .collect();
    let requested = operation.sync.clone().unwrap_or_default();
    let task = SyncTask {
        kind,
        revision: desired.revision.clone(),
        source: desired.source.clone(),
        apply,
        hooks: desired.hooks.clone(),
        // Hooks are named for the start of their operation: the same in each of its reconciles.
        started_at: under_way
            .map_or(obs.now, |state| state.started_at.0)
            .as_second(),
        prune: to_prune,
        prune_last,
        prune_skipped: kept,
        shared,
        fail_on_shared: options.fails_on_shared_resource(),
        adopted,
        not_permitted: desired.not_permitted.clone(),
        create_namespace,
        namespace_metadata,
        options,
        run_as: obs.sync_identity.clone(),
        operation,
        retry,
        retry_count: 0,
        dry_run: requested.is_dry_run(),
        selective: false,
        resumed: under_way.is_some(),
        done,
    };
    select(task, &requested.resources)
}

/// Argo CD's selective sync: only the objects `resources` names are applied, pruned or reported,
/// and no hook runs.
fn select(mut task: SyncTask, resources: &[SyncOperationResource]) -> SyncTask {
    if resources.is_empty() {
        return task;
    }
    let chosen = |obj: &Value| {
        key_of(obj).is_some_and(|k| {
            resources
                .iter()
                .any(|r| r.matches(&k.group, &k.kind, &k.namespace, &k.name))
        })
    };
    for list in [
        &mut task.apply,
        &mut task.prune,
        &mut task.prune_last,
        &mut task.prune_skipped,
        &mut task.shared,
    ] {
        list.retain(|obj| chosen(obj));
    }
    task.hooks.clear();
    task.selective = true;
    task
}

/// `ApplyOutOfSyncOnly=true`: the objects of `apply` that are missing or differ from their live
/// copy (as the comparison judges them, `ignoreDifferences` included).
/// `ApplyOutOfSyncOnly=true`: the objects that differ from their live copy, and those this
/// operation applied already (`done`: in sync now, but their waves are still waited for).
fn out_of_sync_only(obs: &Observed, apply: Vec<Value>, done: &[ResourceResult]) -> Vec<Value> {
    let comparison = compare(
        &apply,
        &obs.live,
        &[],
        &obs.app.spec.ignore_differences,
        &obs.health_rules,
    );
    let synced: BTreeSet<ResourceKey> = comparison
        .resources
        .iter()
        .filter(|r| r.status == Some(SyncStatusCode::Synced))
        .map(|r| ResourceKey::new(&r.group, &r.kind, &r.namespace, &r.name))
        .collect();
    let applied: BTreeSet<ResourceKey> = done
        .iter()
        .filter(|r| r.hook_type.is_none())
        .map(|r| ResourceKey::new(&r.group, &r.kind, &r.namespace, &r.name))
        .collect();
    apply
        .into_iter()
        .filter(|o| key_of(o).is_none_or(|k| !synced.contains(&k) || applied.contains(&k)))
        .collect()
}

fn app_tracking_id(app: &Application) -> String {
    tracking_id(
        app.metadata.namespace.as_deref().unwrap_or_default(),
        app.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// The Application that tracks the live copy of `declared`, when it is not `me`.
fn tracked_by_another<'a>(obs: &'a Observed, declared: &Value, me: &str) -> Option<&'a str> {
    let owner = annotation(obs.live.get(&key_of(declared)?)?, APPLICATION_ANNOTATION)?;
    (owner != me).then_some(owner)
}

/// The SyncError message of the last operation when it failed for good.
fn failed_operation_message(status: &ApplicationStatus) -> Option<String> {
    let state = status.operation_state.as_ref()?;
    if !matches!(state.phase, OperationPhase::Failed | OperationPhase::Error) {
        return None;
    }
    let revision = operation_revision(state).unwrap_or("the requested revision");
    let message = state.message.as_deref().unwrap_or("unknown error");
    Some(format!(
        "sync of {} failed: {message}. Automated sync does not retry a failed revision without syncPolicy.retry: push a fix or request a sync",
        short(revision)
    ))
}

fn orphan_warning(spec: &ApplicationSpec, comparison: &Comparison) -> Option<String> {
    if comparison.requires_pruning.is_empty() || spec.automated().is_some_and(|a| a.prune()) {
        return None;
    }
    let names: Vec<String> = comparison
        .requires_pruning
        .iter()
        .filter_map(key_of)
        .map(|k| k.to_string())
        .collect();
    Some(format!(
        "{} object(s) are no longer in Git but are kept because pruning is off: {}. Set syncPolicy.automated.prune: true, or request a sync with prune, to delete them",
        names.len(),
        names.join(", ")
    ))
}

/// Folds the outcome of `task` into `status`: operation state (Running while a retry is due,
/// Argo CD's way), history on success (not for self-heal, which re-applies what is there), and the
/// SyncError condition.
pub fn finish_sync(
    mut status: ApplicationStatus,
    spec: &ApplicationSpec,
    task: &SyncTask,
    outcome: &SyncOutcome,
    started_at: Timestamp,
    now: Timestamp,
) -> ApplicationStatus {
    let retry_due = outcome.error.as_ref().and_then(|_| {
        let retry = task.retry.as_ref()?;
        retry.allows_retry(task.retry_count).then(|| {
            retry
                .delay(u32::try_from(task.retry_count).unwrap_or(u32::MAX))
                .unwrap_or(crate::api::application::DEFAULT_BACKOFF_DURATION)
        })
    });
    let (phase, message) = match (&outcome.error, retry_due) {
        (None, _) if task.dry_run => (
            OperationPhase::Succeeded,
            "successfully synced (dry run: nothing was changed)".to_string(),
        ),
        (None, _) => (
            OperationPhase::Succeeded,
            "successfully synced (all tasks run)".to_string(),
        ),
        (Some(error), Some(delay)) => (
            OperationPhase::Running,
            format!(
                "{error}; retrying attempt #{} in {}s",
                task.retry_count + 1,
                delay.as_secs()
            ),
        ),
        (Some(error), None) => (OperationPhase::Failed, error.clone()),
    };
    status.operation_state = Some(OperationState {
        operation: task.operation.clone(),
        phase,
        message: Some(message.clone()),
        sync_result: Some(SyncOperationResult {
            revision: task.revision.clone(),
            resources: outcome.results.clone(),
            source: Some(task.source.clone()),
        }),
        started_at: Time(started_at),
        finished_at: Some(Time(now)),
        retry_count: task.retry_count,
    });
    let sync_error = match phase {
        OperationPhase::Succeeded => {
            // An automated sync never runs twice for a revision; a second entry could only come
            // from a reconcile that read the Application before its first sync was recorded, or
            // from a self-heal that waited for a wave (it goes on as a retry of its operation).
            let repeated = is_automated_operation(&task.operation)
                && status
                    .history
                    .last()
                    .is_some_and(|h| h.revision == task.revision);
            if task.kind != SyncKind::SelfHeal && !repeated && !task.is_partial() {
                let entry = RevisionHistory {
                    id: status.next_history_id(),
                    revision: task.revision.clone(),
                    deployed_at: Time(now),
                    deploy_started_at: Some(Time(started_at)),
                    source: Some(task.source.clone()),
                    initiated_by: task.operation.initiated_by.clone(),
                };
                status.push_history(entry, spec.revision_history_limit());
            }
            None
        }
        OperationPhase::Running => Some(format!(
            "sync of {} failed: {message}",
            short(&task.revision)
        )),
        _ => failed_operation_message(&status),
    };
    replace_condition(&mut status.conditions, SYNC_ERROR, sync_error, now);
    status
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
