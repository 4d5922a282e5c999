//! The Application reconciler: observe → plan → act for each Application, triggered by
//! - changes to the Application itself (spec, operation, refresh annotation);
//! - changes to any object it applied (watch caches of the kinds it manages: drift, health);
//! - webhook push events of its repository (`POST /api/webhook` on `--webhook-addr`);
//! - its poll slot (`--repo-poll-interval`, with a per-Application jitter), through `requeue_after`.

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use kube::runtime::controller::{self, Action as Requeue, Controller};
use kube::runtime::reflector;
use kube::runtime::{PredicateConfig, WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use thiserror::Error;
use tracing::Instrument;

use super::app_writes::{
    WriteError, clear_operation, clear_refresh_annotations, disable_automated, remove_finalizers,
    write_status,
};
use super::apply::Applier;
use super::chart::ChartCache;
use super::clusters::{ClusterConn, Clusters, RemoteSettings, is_cluster_secret};
use super::credentials::SECRET_TYPE_LABELS;
use super::events::{self, transitions};
use super::health_rules::{HEALTH_CONFIG_MAP, HealthRulesSource};
use super::impersonation::{Impersonator, SyncIdentity};
use super::kinds::KindResolver;
use super::live::LiveCache;
use super::metrics::GitopsMetrics;
use super::observe::{Observation, ObserveError, Reader, refresh_request};
use super::plan::{
    Finalize, Plan, SyncOutcome, SyncTask, finish_sync, plan, sync_in_progress, task_started_at,
};
use super::projects::{Projects, ensure_default_project};
use super::render::{RemotePolicy, RenderCache};
use super::source::{GitLimits, GitRequestMetrics, RepoCache};
use super::webhook::{self, PushLog, WebhookSecrets, WebhookState};
use crate::api::application::{Application, ApplicationStatus, HealthStatusCode, OperationPhase};
use crate::api::project::AppProject;
use crate::kube_requests::KubeRequestCounter;
use crate::metrics::Metrics;
use crate::readiness::Readiness;

/// Retry delay after a failed reconcile.
const RETRY: Duration = Duration::from_secs(5);
/// Triggers closer together than this are merged into one reconcile.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// Applications reconciled at the same time.
const CONCURRENCY: u16 = 16;
/// How soon a sync that waits for a wave or a hook looks again.
const SYNC_UNDER_WAY: Duration = Duration::from_secs(2);
/// The shortest requeue (a plan never asks for an immediate one).
const MIN_REQUEUE: Duration = Duration::from_millis(200);

/// The GitOps controller's settings, from the command line.
#[derive(Clone, Debug)]
pub struct GitopsSettings {
    /// Watch only this namespace.
    pub namespace: Option<String>,
    /// Where AppProjects and repository Secrets live: `--namespace`, else `$POD_NAMESPACE`, else
    /// `default`.
    pub control_namespace: String,
    pub poll_interval: Duration,
    pub cache_dir: PathBuf,
    pub webhook_addr: SocketAddr,
    /// `--webhook-insecure`: take webhook events of a provider without a secret unverified.
    pub webhook_insecure: bool,
    /// Counts and times the sync cache's fetches (shared with the revert loop).
    pub git_requests: GitRequestMetrics,
    /// Accepted repository URLs, fetch and extracted-tree bounds.
    pub git_limits: GitLimits,
    /// What renders may fetch from outside their repository.
    pub render_remote: RemotePolicy,
    /// `--sync-impersonation`: syncs write as their project's ServiceAccount, through clients this
    /// builds; `None` writes as the controller.
    pub sync_impersonation: Option<Impersonator>,
    /// Counts the requests of the clients built for other clusters with the controller's own.
    pub kube_requests: KubeRequestCounter,
    /// The Git cache of the process (shared with the ApplicationSet controller's git generators,
    /// so a repository is fetched once per tick whoever reads it).
    pub repos: RepoCache,
}

#[derive(Debug, Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Observe(#[from] ObserveError),
    #[error(transparent)]
    Write(#[from] WriteError),
}

struct Context {
    /// The controller's own cluster: Applications, their events, projects.
    client: Client,
    reader: Reader,
    metrics: GitopsMetrics,
}

/// Runs the Application controller and its webhook until the process stops.
pub async fn run(client: Client, settings: GitopsSettings, metrics: Metrics, readiness: Readiness) {
    let (trigger, triggers) = futures::channel::mpsc::unbounded();
    let config = watcher::Config::default();
    let applications: Api<Application> = match &settings.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (store, changed) = readiness.watch("applications", applications, config.clone());
    let changed = changed.predicate_filter(reconcile_trigger, PredicateConfig::default());
    let controller = Controller::for_stream(changed, store.clone()).with_config(
        controller::Config::default()
            .debounce(DEBOUNCE)
            .concurrency(CONCURRENCY),
    );
    let gitops_metrics = GitopsMetrics::register(&metrics, store.clone());

    let secrets_api: Api<Secret> = match &settings.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    // One watch per label (Sluice's and Argo CD's): a selector cannot say "either label".
    let (secrets, secret_changes): (Vec<_>, Vec<_>) = SECRET_TYPE_LABELS
        .iter()
        .map(|label| {
            let (store, writer) = reflector::store();
            let changes = watcher(secrets_api.clone(), config.clone().labels(label))
                .default_backoff()
                .reflect(writer)
                .touched_objects();
            (store, changes)
        })
        .unzip();

    let projects_api: Api<AppProject> =
        Api::namespaced(client.clone(), &settings.control_namespace);
    let (projects, projects_writer) = reflector::store();
    let project_changes = watcher(projects_api, config.clone())
        .default_backoff()
        .reflect(projects_writer)
        .touched_objects();
    let project_triggers =
        applications_of_changed_projects(project_changes, store.clone(), trigger.clone());

    // The users' health rules: one ConfigMap of the control namespace; a change re-judges every
    // Application's health at once.
    let health_api: Api<ConfigMap> = Api::namespaced(client.clone(), &settings.control_namespace);
    let (health_store, health_writer) = reflector::store();
    let health_changes = watcher(
        health_api,
        config
            .clone()
            .fields(&format!("metadata.name={HEALTH_CONFIG_MAP}")),
    )
    .default_backoff()
    .reflect(health_writer)
    .touched_objects();
    let health_triggers =
        every_application_on_change(health_changes, store.clone(), trigger.clone());

    let local = ClusterConn::local(
        client.clone(),
        KindResolver::new(client.clone()),
        LiveCache::new(
            client.clone(),
            settings.namespace.clone().into_iter().collect(),
            trigger.clone(),
        ),
        settings.sync_impersonation.clone(),
    );
    let clusters = Clusters::new(
        local,
        secrets.clone(),
        settings.control_namespace.clone(),
        RemoteSettings {
            requests: settings.kube_requests.clone(),
            impersonation: settings.sync_impersonation.is_some(),
            trigger: trigger.clone(),
        },
    );
    let secrets_watch = futures::future::join_all(secret_changes.into_iter().map(|changes| {
        applications_of_changed_clusters(changes, clusters.clone(), store.clone(), trigger.clone())
    }));
    let pushes = PushLog::default();
    let reader = Reader {
        repos: settings.repos.clone(),
        renders: RenderCache::new().with_remote_policy(settings.render_remote.clone()),
        clusters,
        secrets,
        pushes: pushes.clone(),
        poll_interval: settings.poll_interval,
        projects: Projects::new(projects.clone(), settings.control_namespace.clone()),
        sync_impersonation: settings.sync_impersonation.is_some(),
        charts: ChartCache::new(settings.cache_dir.clone(), settings.git_limits.clone()),
        allow_insecure_http: settings.git_limits.allow_insecure_http,
        health_rules: HealthRulesSource::new(health_store),
    };
    let webhook_state = WebhookState::new(
        WebhookSecrets::from_env(settings.webhook_insecure),
        store,
        pushes,
        trigger,
    );
    let webhook = async {
        if let Err(e) = webhook::serve(settings.webhook_addr, webhook_state).await {
            tracing::error!(addr = %settings.webhook_addr, error = %e, "the Git webhook cannot be served");
        }
    };
    let guard = crate::reconcile_guard::ReconcileGuard::new("application", &metrics).reporting(
        client.clone(),
        super::object::FIELD_MANAGER,
        Some(super::conditions::panic_status),
    );
    ensure_default_project_logged(&client, &settings.control_namespace).await;
    log_sync_identity(settings.sync_impersonation.is_some());
    let context = Arc::new(Context {
        client,
        reader,
        metrics: gitops_metrics,
    });
    let controller = async {
        // An Application is judged by its project: none before the projects are read.
        if projects.wait_until_ready().await.is_err() {
            tracing::error!("the AppProject cache stopped before it was ready");
        }
        readiness.cache_synced("appprojects");
        controller
            .reconcile_on(triggers)
            .run(
                guard.reconcile(reconcile),
                guard.error_policy(error_policy),
                context,
            )
            .for_each(crate::reconcile_guard::log_result("application"))
            .await;
    };
    tracing::info!(
        poll_interval = ?settings.poll_interval,
        helm_value_schemes = ?settings.render_remote.helm_value_schemes,
        kustomize_remote = settings.render_remote.kustomize_remote,
        "application controller running"
    );
    tokio::join!(
        controller,
        webhook,
        secrets_watch,
        project_triggers,
        health_triggers
    );
}

/// Says once who syncs write as, since projects' `destinationServiceAccounts` are ignored without
/// `--sync-impersonation`.
fn log_sync_identity(impersonation: bool) {
    if impersonation {
        tracing::info!(
            "sync impersonation on: syncs and cascade deletes write as their project's destinationServiceAccounts; a project without one for the destination fails its syncs"
        );
    } else {
        tracing::info!(
            "sync impersonation off (--sync-impersonation not set): syncs write as the controller itself, projects' destinationServiceAccounts are ignored"
        );
    }
}

/// Creates the permissive `default` project when it is missing; a failure is logged (Applications
/// of the `default` project then show it as missing) and does not stop the controller.
async fn ensure_default_project_logged(client: &Client, namespace: &str) {
    match ensure_default_project(client, namespace).await {
        Ok(true) => tracing::info!(namespace, "created the default AppProject"),
        Ok(false) => {}
        Err(e) => {
            tracing::error!(namespace, error = %e, "cannot create the default AppProject");
        }
    }
}

/// Reconciles the Applications of every project that changes or is deleted (its rules apply at once).
async fn applications_of_changed_projects(
    changes: impl futures::Stream<Item = Result<AppProject, watcher::Error>>,
    applications: reflector::Store<Application>,
    trigger: futures::channel::mpsc::UnboundedSender<reflector::ObjectRef<Application>>,
) {
    changes
        .for_each(|change| {
            match change {
                Ok(project) => {
                    let name = project.name_any();
                    for app in applications.state() {
                        if app.spec.project() == name {
                            let _ = trigger.unbounded_send(reflector::ObjectRef::from_obj(&*app));
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "watching AppProjects"),
            }
            futures::future::ready(())
        })
        .await;
}

/// When a cluster Secret of the control namespace changes or goes: its connection is built again
/// (or dropped) and the Applications deploying to other clusters are reconciled at once (one that
/// named an unknown cluster may name a known one now).
async fn applications_of_changed_clusters(
    changes: impl futures::Stream<Item = Result<Secret, watcher::Error>>,
    clusters: Clusters,
    applications: reflector::Store<Application>,
    trigger: futures::channel::mpsc::UnboundedSender<reflector::ObjectRef<Application>>,
) {
    changes
        .for_each(|change| {
            match change {
                Ok(secret)
                    if is_cluster_secret(&secret)
                        && secret.metadata.namespace.as_deref()
                            == Some(clusters.control_namespace()) =>
                {
                    clusters.forget_stale();
                    for app in applications.state() {
                        if !app.spec.destination.is_in_cluster() {
                            let _ = trigger.unbounded_send(reflector::ObjectRef::from_obj(&*app));
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "watching the secret-type Secrets"),
            }
            futures::future::ready(())
        })
        .await;
}

/// Reconciles every Application when the watched object changes (or is deleted).
async fn every_application_on_change<K>(
    changes: impl futures::Stream<Item = Result<K, watcher::Error>>,
    applications: reflector::Store<Application>,
    trigger: futures::channel::mpsc::UnboundedSender<reflector::ObjectRef<Application>>,
) {
    changes
        .for_each(|change| {
            match change {
                Ok(_) => {
                    for app in applications.state() {
                        let _ = trigger.unbounded_send(reflector::ObjectRef::from_obj(&*app));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "watching the sluice-health ConfigMap"),
            }
            futures::future::ready(())
        })
        .await;
}

/// What of an Application asks for a reconcile when it changes: what users and the other loops
/// write (spec, `operation`, labels, annotations such as the refresh request, finalizers,
/// deletion). Not its status: the reconcile's own status write would otherwise queue a second
/// reconcile of every Application after each one, doubling the queue; the next comparison is
/// scheduled by the reconcile's requeue, and live objects trigger through the live caches.
fn reconcile_trigger(app: &Application) -> Option<u64> {
    let mut hasher = std::hash::DefaultHasher::new();
    app.metadata.generation.hash(&mut hasher);
    app.metadata.labels.hash(&mut hasher);
    app.metadata.annotations.hash(&mut hasher);
    app.metadata.finalizers.hash(&mut hasher);
    app.metadata.deletion_timestamp.is_some().hash(&mut hasher);
    // Hashed as written, not trusting `generation` to cover fields outside `spec`.
    serde_json::to_string(&app.spec).ok().hash(&mut hasher);
    serde_json::to_string(&app.operation).ok().hash(&mut hasher);
    Some(hasher.finish())
}

async fn reconcile(app: Arc<Application>, ctx: Arc<Context>) -> Result<Requeue, ReconcileError> {
    let span = tracing::info_span!(
        "reconcile",
        namespace = app.namespace().unwrap_or_default(),
        application = %app.name_any()
    );
    reconcile_app(&app, &ctx).instrument(span).await
}

async fn reconcile_app(app: &Application, ctx: &Context) -> Result<Requeue, ReconcileError> {
    let Observation { observed, cluster } = ctx.reader.observe(app, Timestamp::now()).await?;
    let plan = plan(&observed);
    let api: Api<Application> =
        Api::namespaced(ctx.client.clone(), &app.namespace().unwrap_or_default());
    if let Some(finalize) = &plan.finalize {
        finalize_app(
            app,
            &api,
            ctx,
            cluster.as_deref(),
            finalize,
            &observed.sync_identity,
        )
        .await?;
        return Ok(Requeue::requeue(plan.requeue_after.max(MIN_REQUEUE)));
    }
    if plan.disable_automated {
        disable_automated(&api, app).await?;
        tracing::info!(
            "rollback: automated sync suspended (set spec.syncPolicy.automated.enabled: true to resume)"
        );
    }
    if !plan.delete.is_empty() {
        delete_objects(
            ctx,
            cluster.as_deref(),
            &observed.sync_identity,
            &plan.delete,
            "deleting the hooks of a terminated operation",
        )
        .await;
    }
    let (status, requeue_after) = match &plan.sync {
        Some(task) => match run_sync(app, ctx, cluster.as_deref(), &plan, task).await {
            Ran::Finished(status) => (status, plan.requeue_after),
            Ran::UnderWay(status) => (status, SYNC_UNDER_WAY),
        },
        None => (plan.status.clone(), plan.requeue_after),
    };
    write_status(&api, app, &status).await?;
    let before = app.status.clone().unwrap_or_default();
    events::publish(&ctx.client, app, transitions(&before, &status)).await;
    if plan.clear_operation {
        clear_operation(&api, app).await?;
    }
    if observed.refreshed && refresh_request(app).is_some() {
        clear_refresh_annotations(&api, app).await?;
    }
    Ok(Requeue::requeue(requeue_after.max(MIN_REQUEUE)))
}

/// The status after a sync's reconcile.
enum Ran {
    Finished(ApplicationStatus),
    /// Waiting for a wave or a hook: looked at again after [`SYNC_UNDER_WAY`].
    UnderWay(ApplicationStatus),
}

/// Runs what can be done of `task` now: to its end, or until it waits for a wave or a hook.
async fn run_sync(
    app: &Application,
    ctx: &Context,
    cluster: Option<&ClusterConn>,
    plan: &Plan,
    task: &SyncTask,
) -> Ran {
    if !task.resumed {
        log_sync_start(plan, task);
    }
    let writer = match cluster {
        Some(cluster) => cluster
            .client_as(&task.run_as)
            .map(|writer| (writer, cluster))
            .map_err(|e| e.to_string()),
        // Not planned without a cluster; said plainly should that change.
        None => Err("the destination names no usable cluster".to_string()),
    };
    let outcome = match writer {
        Ok((writer, cluster)) => {
            Applier {
                client: &writer,
                reader: &cluster.client,
                kinds: &cluster.kinds,
                health_rules: &ctx.reader.health_rules,
            }
            .run(task)
            .await
        }
        Err(e) => SyncOutcome {
            results: task.done.clone(),
            error: Some(format!(
                "{e}; nothing {}was applied",
                if task.resumed { "more " } else { "" }
            )),
            waiting: None,
        },
    };
    if let Some(waiting) = outcome.waiting {
        return Ran::UnderWay(sync_in_progress(
            plan.status.clone(),
            task,
            waiting,
            outcome.results,
        ));
    }
    let status = finish_sync(
        plan.status.clone(),
        &app.spec,
        task,
        &outcome,
        task_started_at(task),
        Timestamp::now(),
    );
    let phase = status
        .operation_state
        .as_ref()
        .map_or(OperationPhase::Error, |s| s.phase);
    ctx.metrics.sync_finished(phase);
    match &outcome.error {
        None => tracing::info!(revision = %task.revision, "synced"),
        Some(error) => {
            tracing::warn!(revision = %task.revision, phase = ?phase, %error, "sync failed");
        }
    }
    Ran::Finished(status)
}

/// Logs what a sync starts to change (the changed lines only: the hunk headers and context would
/// drown them in a log line).
fn log_sync_start(plan: &Plan, task: &SyncTask) {
    let drift: Vec<String> = plan
        .status
        .resources
        .iter()
        .filter(|r| !r.diff.is_empty())
        .map(|r| {
            if r.health
                .as_ref()
                .is_some_and(|h| h.status == HealthStatusCode::Missing)
            {
                return format!("{} {}: not in the cluster", r.kind, r.name);
            }
            let changed: Vec<&str> = r
                .diff
                .iter()
                .map(String::as_str)
                .filter(|l| l.starts_with(['-', '+']))
                .map(str::trim_end)
                .collect();
            format!("{} {}: {}", r.kind, r.name, changed.join("; "))
        })
        .collect();
    tracing::info!(
        drift = %drift.join(" | "),
        revision = %task.revision,
        kind = ?task.kind,
        apply = task.apply.len(),
        prune = task.prune.len(),
        "syncing"
    );
}

/// Deletes `objects` as the sync's identity (a failure is logged, under `what`: what is left is
/// found again).
async fn delete_objects(
    ctx: &Context,
    cluster: Option<&ClusterConn>,
    identity: &SyncIdentity,
    objects: &[serde_json::Value],
    what: &str,
) {
    // Objects are found only on a cluster that resolved.
    let Some(cluster) = cluster else {
        return;
    };
    let writer = match cluster.client_as(identity) {
        Ok(writer) => writer,
        Err(e) => {
            tracing::warn!(error = %e, "{what}: nothing deleted");
            return;
        }
    };
    let applier = Applier {
        client: &writer,
        reader: &cluster.client,
        kinds: &cluster.kinds,
        health_rules: &ctx.reader.health_rules,
    };
    for obj in objects {
        if let Err(e) = applier.delete(obj).await {
            tracing::warn!(error = %e, "{what}");
        }
    }
}

async fn finalize_app(
    app: &Application,
    api: &Api<Application>,
    ctx: &Context,
    cluster: Option<&ClusterConn>,
    finalize: &Finalize,
    identity: &SyncIdentity,
) -> Result<(), ReconcileError> {
    match finalize {
        Finalize::Delete(objects) => {
            // The finalizer stays until they are gone: nothing is deleted as anyone else.
            delete_objects(ctx, cluster, identity, objects, "cascade delete").await;
            Ok(())
        }
        Finalize::RemoveFinalizers => Ok(remove_finalizers(api, app).await?),
    }
}

fn error_policy(app: Arc<Application>, error: &ReconcileError, _ctx: Arc<Context>) -> Requeue {
    tracing::warn!(
        namespace = app.namespace().unwrap_or_default(),
        application = %app.name_any(),
        error = %error,
        "reconcile failed"
    );
    Requeue::requeue(RETRY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn app(extra: serde_json::Value) -> Application {
        let mut value = json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Application",
            "metadata": {"name": "shop", "namespace": "team", "generation": 3},
            "spec": {"source": {"repoURL": "r", "path": "a"}, "destination": {}},
        });
        for (key, v) in extra.as_object().cloned().unwrap_or_default() {
            value[key] = v;
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_status_write_alone_triggers_no_reconcile() {
        let base = reconcile_trigger(&app(json!({})));
        let status_only = app(json!({"status": {"sync": {"status": "Synced"},
                                                "reconciledAt": "2026-11-23T10:00:00Z"}}));
        assert_eq!(reconcile_trigger(&status_only), base);
        for changed in [
            json!({"operation": {"sync": {"prune": true}}}),
            json!({"spec": {"source": {"repoURL": "r", "path": "b"}, "destination": {}}}),
            json!({"metadata": {"name": "shop", "namespace": "team", "generation": 3,
                                "annotations": {"sluice.dev/refresh": "hard"}}}),
            json!({"metadata": {"name": "shop", "namespace": "team", "generation": 3,
                                "deletionTimestamp": "2026-11-23T10:00:00Z"}}),
        ] {
            assert_ne!(reconcile_trigger(&app(changed.clone())), base, "{changed}");
        }
    }
}
