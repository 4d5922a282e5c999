//! The ApplicationSet reconciler. ApplicationSets live in the control namespace (Argo CD's
//! default), and so do the Applications they generate. A reconcile is triggered by a change of the
//! ApplicationSet, of an Application it owns (its sync or health, for `status.resources`, or its
//! deletion), of a cluster or repository Secret, and by its requeue: the repository poll interval
//! when a git generator is used (or its `requeueAfterSeconds`), else [`RESYNC`].

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{PredicateConfig, WatchStreamExt, predicates, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use thiserror::Error;

use super::generators::{Cluster, Generated, Generation, GitQuery, Sources};
use super::plan::{Observed, Plan, REASON_UPDATE_ERROR, error_conditions, plan};
use super::template::Dialect;
use super::{APPLICATION_SET_LABEL, FIELD_MANAGER};
use crate::api::application::{Application, ApplicationStatus, HealthStatus};
use crate::api::applicationset::{ApplicationSet, ApplicationSetStatus};
use crate::gitops::credentials::{CredentialScope, SECRET_TYPE_LABELS, ScopedSecrets};
use crate::gitops::source::RepoCache;
use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::reconcile_guard::ReconcileGuard;
use crate::rollout::observe::controls;

/// How long an ApplicationSet without a git generator waits before it is generated again anyway
/// (Argo CD's default requeue).
pub const RESYNC: Duration = Duration::from_secs(180);
/// Retry delay after a failed status write.
const RETRY: Duration = Duration::from_secs(5);
/// Rounds of Git reads one reconcile makes (a matrix whose second generator's repository or
/// revision comes from the first one's parameters needs two).
const MAX_GIT_ROUNDS: usize = 4;
/// The value of the Secret type labels naming a cluster Secret.
const CLUSTER_SECRET_TYPE: &str = "cluster";

/// The ApplicationSet controller's settings.
#[derive(Clone)]
pub struct AppSetSettings {
    /// Where ApplicationSets, their Applications and the cluster and repository Secrets live.
    pub control_namespace: String,
    /// `--repo-poll-interval`: how stale a Git read may be, and the requeue of git generators.
    pub poll_interval: Duration,
    /// The Application controller's Git cache, shared (one fetch per repository and tick).
    pub repos: RepoCache,
}

#[derive(Debug, Error)]
pub enum ReconcileError {
    #[error("cannot write the status: {0}")]
    Status(#[source] kube::Error),
}

struct Context {
    client: Client,
    settings: AppSetSettings,
    applications: Store<Application>,
    secrets: Vec<Store<Secret>>,
}

/// Runs the ApplicationSet controller until the process stops.
pub async fn run(client: Client, settings: AppSetSettings, metrics: Metrics, readiness: Readiness) {
    let namespace = settings.control_namespace.clone();
    let config = watcher::Config::default();
    let (store, changed) = readiness.watch(
        "applicationsets",
        Api::<ApplicationSet>::namespaced(client.clone(), &namespace),
        config.clone(),
    );
    // Its own status writes do not trigger it again: only what users change (the generation).
    let changed = changed.predicate_filter(predicates::generation, PredicateConfig::default());
    let (applications, app_writer) = reflector::store();
    let app_stream = reflector::reflector(
        app_writer,
        watcher(
            Api::<Application>::namespaced(client.clone(), &namespace),
            config.clone().labels(APPLICATION_SET_LABEL),
        )
        .modify(slim_application),
    )
    .default_backoff()
    .touched_objects()
    .predicate_filter(owned_application_trigger, PredicateConfig::default());
    let (secrets, secret_streams): (Vec<_>, Vec<_>) = SECRET_TYPE_LABELS
        .iter()
        .map(|label| {
            let (store, writer) = reflector::store();
            let stream = reflector::reflector(
                writer,
                watcher(
                    Api::<Secret>::namespaced(client.clone(), &namespace),
                    config.clone().labels(label),
                ),
            )
            .default_backoff()
            .touched_objects()
            .predicate_filter(predicates::resource_version, PredicateConfig::default())
            .map(|_| ())
            .boxed();
            (store, stream)
        })
        .unzip();
    let secret_changes = futures::stream::select_all(secret_streams);
    let guard = ReconcileGuard::new("applicationset", &metrics).reporting(
        client.clone(),
        FIELD_MANAGER,
        None,
    );
    let context = Arc::new(Context {
        client,
        settings,
        applications,
        secrets,
    });
    tracing::info!(namespace, "applicationset controller running");
    Controller::for_stream(changed, store)
        .owns_stream(app_stream)
        .reconcile_all_on(secret_changes)
        .run(
            guard.reconcile(reconcile),
            guard.error_policy(error_policy),
            context,
        )
        .for_each(crate::reconcile_guard::log_result("applicationset"))
        .await;
}

/// Keeps what the controller reads of a generated Application: metadata without managed fields,
/// the spec, and the sync and health status.
fn slim_application(app: &mut Application) {
    app.managed_fields_mut().clear();
    app.status = app.status.take().map(|status| ApplicationStatus {
        sync: status.sync.map(|mut sync| {
            sync.compared_to = None;
            sync
        }),
        health: status.health.map(|h| HealthStatus {
            last_transition_time: None,
            ..h
        }),
        ..ApplicationStatus::default()
    });
}

/// What of an owned Application asks for its ApplicationSet's reconcile: its spec and metadata
/// (someone changed it), its deletion, and its sync and health (for `status.resources`); not the
/// rest of its status, which changes at every comparison.
fn owned_application_trigger(app: &Application) -> Option<u64> {
    let mut hasher = std::hash::DefaultHasher::new();
    app.metadata.generation.hash(&mut hasher);
    app.metadata.labels.hash(&mut hasher);
    app.metadata.annotations.hash(&mut hasher);
    app.metadata.finalizers.hash(&mut hasher);
    app.metadata.deletion_timestamp.is_some().hash(&mut hasher);
    if let Some(status) = &app.status {
        status
            .sync
            .as_ref()
            .map(|s| s.status.to_string())
            .hash(&mut hasher);
        status
            .health
            .as_ref()
            .map(|h| (h.status.to_string(), h.message.clone()))
            .hash(&mut hasher);
    }
    Some(hasher.finish())
}

async fn reconcile(
    appset: Arc<ApplicationSet>,
    ctx: Arc<Context>,
) -> Result<Requeue, ReconcileError> {
    let span = tracing::info_span!("reconcile", applicationset = %appset.name_any());
    reconcile_appset(appset, ctx).instrument(span).await
}

async fn reconcile_appset(
    appset: Arc<ApplicationSet>,
    ctx: Arc<Context>,
) -> Result<Requeue, ReconcileError> {
    if appset.metadata.deletion_timestamp.is_some() {
        // Its Applications go with it through their ownerReferences (garbage collection).
        return Ok(Requeue::await_change());
    }
    let owned: Vec<Application> = ctx
        .applications
        .state()
        .iter()
        .filter(|a| controls(a.as_ref(), appset.as_ref()))
        .map(|a| a.as_ref().clone())
        .collect();
    let (generated, requeue) = ctx.generate(&appset).await;
    let now = Timestamp::now();
    let planned = plan(&Observed {
        appset: &appset,
        generated,
        owned: &owned,
        now,
    });
    tracing::debug!(
        apply = planned.apply.len(),
        delete = planned.delete.len(),
        "planned"
    );
    let mut status = planned.status.clone();
    if let Err(message) = act(&ctx.client, &appset, &planned).await {
        let previous = appset
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        status.conditions = error_conditions(previous, true, REASON_UPDATE_ERROR, &message, now);
    }
    write_status(&ctx.client, &appset, &status).await?;
    Ok(Requeue::requeue(requeue))
}

fn error_policy(appset: Arc<ApplicationSet>, error: &ReconcileError, _: Arc<Context>) -> Requeue {
    tracing::warn!(applicationset = %appset.name_any(), error = %error, "reconcile failed");
    Requeue::requeue(RETRY)
}

impl Context {
    /// The parameter sets of every generator, reading Git trees as the generators ask for them;
    /// and when to look again.
    async fn generate(
        &self,
        appset: &ApplicationSet,
    ) -> (Result<Vec<Generated>, String>, Duration) {
        let spec = &appset.spec;
        let requeue = git_requeue(appset, self.settings.poll_interval);
        if !spec.unsupported_fields().is_empty() {
            // Reported by the planner; nothing is read for an ApplicationSet that is refused.
            return (Ok(Vec::new()), requeue);
        }
        let dialect = match Dialect::new(spec.go_template(), &spec.go_template_options) {
            Ok(d) => d,
            Err(e) => return (Err(e.to_string()), requeue),
        };
        let mut sources = Sources {
            clusters: self.clusters(),
            git: BTreeMap::new(),
        };
        for _ in 0..MAX_GIT_ROUNDS {
            let mut generation = Generation::new(&sources, dialect);
            let result = generation.all(&spec.generators);
            let missing = std::mem::take(&mut generation.missing);
            if missing.is_empty() {
                return (result.map_err(|e| e.to_string()), requeue);
            }
            for query in missing {
                let data = self.read_git(appset, &query).await;
                sources.git.insert(query, data);
            }
        }
        (
            Err(format!(
                "the git generators asked for new repositories or revisions more than {MAX_GIT_ROUNDS} times"
            )),
            requeue,
        )
    }

    /// The clusters of the cluster Secrets of the control namespace, each once.
    fn clusters(&self) -> Vec<Cluster> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for secret in self.secrets.iter().flat_map(Store::state) {
            let is_cluster = SECRET_TYPE_LABELS
                .iter()
                .any(|l| secret.labels().get(*l).map(String::as_str) == Some(CLUSTER_SECRET_TYPE));
            if !is_cluster || !seen.insert(secret.name_any()) {
                continue;
            }
            let field = |key: &str| {
                secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            };
            let Some(server) = field("server") else {
                continue;
            };
            out.push(Cluster {
                name: field("name").unwrap_or_else(|| server.clone()),
                server,
                project: field("project"),
                labels: secret.labels().clone(),
                annotations: secret.annotations().clone(),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.server.cmp(&b.server)));
        out
    }

    /// One Git tree, with the repository credentials of the control namespace that the
    /// template's project may use (those naming no project, or that project).
    async fn read_git(
        &self,
        appset: &ApplicationSet,
        query: &GitQuery,
    ) -> Result<super::generators::GitData, String> {
        let project = appset
            .spec
            .template
            .spec
            .get("project")
            .and_then(serde_json::Value::as_str)
            .filter(|p| !p.contains("{{"))
            .unwrap_or_default()
            .to_string();
        let namespace = self.settings.control_namespace.clone();
        let scope = CredentialScope {
            app_namespace: namespace.clone(),
            control_namespace: namespace,
            project,
        };
        let states: Vec<_> = self.secrets.iter().flat_map(Store::state).collect();
        let creds = ScopedSecrets::new(states.iter().map(|s| &**s), &scope)
            .for_url(&query.repo_url)
            .map_err(|e| e.to_string())?;
        let fresh_since = jiff::SignedDuration::try_from(self.settings.poll_interval)
            .ok()
            .and_then(|d| Timestamp::now().checked_sub(d).ok())
            .unwrap_or(Timestamp::UNIX_EPOCH);
        super::git::read(&self.settings.repos, query, creds.as_ref(), fresh_since).await
    }
}

/// The requeue: the shortest `requeueAfterSeconds` of the top-level git generators, else the poll
/// interval when one is used, else [`RESYNC`].
fn git_requeue(appset: &ApplicationSet, poll_interval: Duration) -> Duration {
    let json = serde_json::to_string(&appset.spec.generators).unwrap_or_default();
    let uses_git = json.contains("\"repoURL\"");
    let explicit = appset
        .spec
        .generators
        .iter()
        .filter_map(|g| g.git.as_ref()?.requeue_after_seconds)
        .filter_map(|s| u64::try_from(s).ok())
        .map(Duration::from_secs)
        .min();
    match (explicit, uses_git) {
        (Some(d), _) => d.max(Duration::from_secs(1)),
        (None, true) => poll_interval,
        (None, false) => RESYNC,
    }
}

/// Applies and deletes what the plan says, going on past failures; the failures' message.
async fn act(client: &Client, appset: &ApplicationSet, plan: &Plan) -> Result<(), String> {
    let namespace = appset.namespace().unwrap_or_default();
    let api: Api<Application> = Api::namespaced(client.clone(), &namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut errors = Vec::new();
    for object in &plan.apply {
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        match api.patch(name, &params, &Patch::Apply(object)).await {
            Ok(_) => tracing::info!(application = name, "applied"),
            Err(e) => errors.push(format!("{name}: {}", kube_message(&e))),
        }
    }
    for name in &plan.delete {
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => tracing::info!(application = %name, "deleted (no longer generated)"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => errors.push(format!("{name}: {}", kube_message(&e))),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

fn kube_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(e) => e.message.clone(),
        other => other.to_string(),
    }
}

/// Writes `status` unless it is the one the ApplicationSet has.
async fn write_status(
    client: &Client,
    appset: &ApplicationSet,
    status: &ApplicationSetStatus,
) -> Result<(), ReconcileError> {
    if appset.status.as_ref() == Some(status) {
        return Ok(());
    }
    let api: Api<ApplicationSet> =
        Api::namespaced(client.clone(), &appset.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": ApplicationSet::api_version(&()),
        "kind": ApplicationSet::kind(&()),
        "status": status,
    });
    api.patch_status(
        &appset.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(ReconcileError::Status)?;
    Ok(())
}
