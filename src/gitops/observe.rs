//! The observe step of an Application reconcile: resolve the tracked revision (when a refresh is
//! due), render it, normalise the manifests, and read the live objects from the watch caches.
//!
//! Everything Git or rendering gets wrong becomes a [`ComparisonFailure`] shown to the user
//! (docs/behaviour.md G11); only infrastructure trouble (a watch that cannot list) fails the
//! reconcile.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::core::GroupVersionKind;
use kube::runtime::reflector::Store;
use serde_json::Value;
use thiserror::Error;

use super::chart::{ChartCache, ChartLocation};
use super::clusters::{ClusterConn, ClusterError, Clusters};
use super::credentials::{CredentialScope, ScopedSecrets};
use super::engine_fields::carry_over_engine_fields;
use super::health_rules::HealthRulesSource;
use super::hooks;
use super::impersonation::SyncIdentity;
use super::kinds::kinds_defined_by_crds;
use super::live::LiveError;
use super::object::{
    APPLICATION_ANNOTATION, GIT_REVISION_ANNOTATION, ResourceKey, TRACKING_LABEL,
    TRACKING_LABEL_VALUE, check_manifests, gvk, key_of, set_annotation, set_label, set_namespace,
    str_at, tracking_id,
};
use super::order::sort_for_apply;
use super::plan::{ComparisonFailure, Desired, Observed, operation_request, spec_refusal};
use super::project::{ClusterRef, ObjectKind};
use super::projects::{Projects, as_rules};
use super::refresh::{RefreshInput, decide, jitter_seed};
use super::render::{RenderCache, RenderContext};
use super::source::{RepoCache, SourceError};
use super::sync_options::{self, object_problems};
use super::webhook::PushLog;
use crate::api::application::{Application, ApplicationSource, RefreshType};
use crate::api::project::AppProject;

/// The refresh annotation (values `normal`, `hard`); removed once acted on.
pub const REFRESH_ANNOTATION: &str = "sluice.dev/refresh";
/// Argo CD's refresh annotation, honoured too.
pub const ARGO_REFRESH_ANNOTATION: &str = "argocd.argoproj.io/refresh";

/// Metadata the API server sets, dropped from manifests before they are applied.
const SERVER_METADATA: &[&str] = &[
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "managedFields",
    "generation",
    "selfLink",
];

#[derive(Debug, Error)]
pub enum ObserveError {
    #[error(transparent)]
    Live(#[from] LiveError),
    /// Deleting an Application whose cluster is broken or unreachable: its finalizer stays until
    /// what it deployed there can be deleted.
    #[error("deleting the Application: {0}")]
    Cluster(ClusterError),
}

/// What a reconcile observed, and the cluster its destination resolved to (`None` when it did not
/// resolve: nothing is applied then).
pub struct Observation {
    pub observed: Observed,
    pub cluster: Option<Arc<ClusterConn>>,
}

/// What the observe step reads from.
#[derive(Clone)]
pub struct Reader {
    pub repos: RepoCache,
    pub renders: RenderCache,
    /// The destination clusters: API discovery and watch caches per cluster.
    pub clusters: Clusters,
    /// Repository credential Secrets: one store per label (`sluice.dev/secret-type`,
    /// `argocd.argoproj.io/secret-type`).
    pub secrets: Vec<Store<Secret>>,
    pub pushes: PushLog,
    pub poll_interval: Duration,
    /// The AppProjects of the control namespace.
    pub projects: Projects,
    /// `--sync-impersonation`: syncs write as the project's ServiceAccount for the destination.
    pub sync_impersonation: bool,
    /// Helm charts of chart repositories and OCI registries (`source.chart`).
    pub charts: ChartCache,
    /// `--git-allow-insecure-http`: plain http:// chart repositories off the loopback too.
    pub allow_insecure_http: bool,
    /// The users' health rules (the `sluice-health` ConfigMap).
    pub health_rules: HealthRulesSource,
}

/// `desired` (its revision kept) as a comparison that failed: the live objects could not be read.
fn unreadable(
    desired: &Result<Desired, ComparisonFailure>,
    message: &str,
) -> Result<Desired, ComparisonFailure> {
    Err(ComparisonFailure {
        revision: desired.as_ref().ok().map(|d| d.revision.clone()),
        message: message.to_owned(),
    })
}

/// A refresh asked for with the annotation or the operation.
pub fn refresh_request(app: &Application) -> Option<RefreshType> {
    let from_annotation = [REFRESH_ANNOTATION, ARGO_REFRESH_ANNOTATION]
        .iter()
        .find_map(|key| app.annotations().get(*key))
        .map(|value| {
            if value.trim().eq_ignore_ascii_case("hard") {
                RefreshType::Hard
            } else {
                RefreshType::Normal
            }
        });
    let from_operation = app.operation.as_ref().and_then(|op| op.refresh);
    match (from_annotation, from_operation) {
        (Some(RefreshType::Hard), _) | (_, Some(RefreshType::Hard)) => Some(RefreshType::Hard),
        (a, o) => a.or(o),
    }
}

fn is_full_sha(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Reader {
    /// Observes `app` at `now`.
    pub async fn observe(
        &self,
        app: &Application,
        now: Timestamp,
    ) -> Result<Observation, ObserveError> {
        let cluster = match self.clusters.resolve(&app.spec.destination).await {
            Ok(cluster) => cluster,
            Err(e) if app.metadata.deletion_timestamp.is_some() && !e.is_unknown() => {
                return Err(ObserveError::Cluster(e));
            }
            // A cluster that is not declared at all: as Argo CD, deleting the Application then
            // deletes nothing there (nothing can be reached) and lets it go.
            Err(e) => {
                return Ok(Observation {
                    observed: self.refused(app, now, e.to_string(), None, None),
                    cluster: None,
                });
            }
        };
        let observed = self.observe_on(app, now, &cluster).await?;
        Ok(Observation {
            observed,
            cluster: Some(cluster),
        })
    }

    async fn observe_on(
        &self,
        app: &Application,
        now: Timestamp,
        cluster: &ClusterConn,
    ) -> Result<Observed, ObserveError> {
        let project = match self.permitted_project(app, cluster) {
            Ok(project) => project,
            Err(message) => return Ok(self.refused(app, now, message, None, Some(cluster))),
        };
        if let Some(message) = spec_refusal(app) {
            // Refused before anything is fetched: nothing of it is supported as written.
            return Ok(self.refused(app, now, message, Some(&project), Some(cluster)));
        }
        let spec = &app.spec;
        let sync_identity = SyncIdentity::for_sync(
            self.sync_impersonation,
            &project,
            &cluster.identity.server,
            spec.destination.namespace.as_deref().unwrap_or_default(),
        );
        let source = &spec.source;
        let status = app.status.clone().unwrap_or_default();
        let compared = status.sync.as_ref().filter(|s| {
            s.compared_to.as_ref().is_some_and(|c| {
                c.source.as_ref() == Some(source)
                    && c.destination.as_ref() == Some(&spec.destination)
            })
        });
        let last_revision = compared.and_then(|s| s.revision.clone());
        let requested_refresh = refresh_request(app);
        let decision = decide(
            &RefreshInput {
                reconciled_at: status.reconciled_at.as_ref().map(|t| t.0),
                has_current_comparison: last_revision.is_some(),
                pushed_at: self.pushes.pushed_at(&source.repo_url),
                requested: requested_refresh,
                jitter_seed: jitter_seed(&app.namespace().unwrap_or_default(), &app.name_any()),
            },
            now,
            self.poll_interval,
        );
        tracing::debug!(
            fetched_since = ?decision.fetched_since,
            reconciled_at = ?status.reconciled_at.as_ref().map(|t| t.0),
            next_in = ?decision.next_in,
            "refresh decision"
        );
        let creds = self.credentials(app);
        let (target_sha, refreshed) = match (decision.fetched_since, last_revision) {
            (None, Some(sha)) => (Ok(sha), false),
            (since, _) => {
                let since = since.unwrap_or(now);
                let sha = self
                    .resolve(&creds, source, source.target_revision(), since)
                    .await;
                (sha, true)
            }
        };
        let mut target = match target_sha {
            Ok(sha) => {
                self.desired(app, &project, cluster, &creds, &sha, source, decision.hard)
                    .await
            }
            Err(message) => Err(ComparisonFailure {
                revision: None,
                message,
            }),
        };
        let mut requested = match operation_request(app) {
            None => None,
            Some(req) => {
                let same_source = req.source == *source;
                let same_revision = target.as_ref().is_ok_and(|t| t.revision == req.revision)
                    || req.revision == source.target_revision();
                if same_source && same_revision {
                    Some(target.clone())
                } else if let Err(violation) =
                    as_rules(&project).check_source_repo(&req.source.repo_url)
                {
                    // Checked before anything is fetched: no request, no credentials sent.
                    Some(Err(ComparisonFailure {
                        revision: None,
                        message: format!("the operation's source is refused: {violation}"),
                    }))
                } else {
                    // A commit is in any recent fetch; a branch or tag is fetched anew.
                    let since = if is_full_sha(&req.revision) {
                        self.a_poll_ago()
                    } else {
                        now
                    };
                    let desired = match self
                        .resolve(&creds, &req.source, &req.revision, since)
                        .await
                    {
                        Ok(sha) => {
                            self.desired(app, &project, cluster, &creds, &sha, &req.source, false)
                                .await
                        }
                        Err(message) => Err(ComparisonFailure {
                            revision: None,
                            message,
                        }),
                    };
                    Some(desired)
                }
            }
        };

        let id = tracking_id(&app.namespace().unwrap_or_default(), &app.name_any());
        self.watch_recorded_kinds(app, cluster).await;
        let mut live = BTreeMap::new();
        let mut unread = None;
        for desired in [
            target.as_ref().ok(),
            requested.as_ref().and_then(|r| r.as_ref().ok()),
        ]
        .into_iter()
        .flatten()
        {
            match self.read_live(cluster, &desired.objects, &mut live).await {
                Ok(()) => {}
                // The controller's own cluster failing is the controller's trouble: retried.
                Err(e) if cluster.secret.is_none() => return Err(e),
                // Another cluster's is its user's: shown, and nothing compared or applied.
                Err(e) => {
                    unread = Some(format!("cluster {}: {e}", cluster.identity));
                    break;
                }
            }
        }
        if let Some(message) = unread {
            target = unreadable(&target, &message);
            requested = requested.as_ref().map(|r| unreadable(r, &message));
            live.clear();
        }
        let (tracked_hooks, tracked) = cluster
            .live
            .tracked_by(&id)
            .into_iter()
            .partition(hooks::is_hook_or_skipped);
        for desired in [
            target.as_mut().ok(),
            requested.as_mut().and_then(|r| r.as_mut().ok()),
        ]
        .into_iter()
        .flatten()
        {
            carry_over_engine_fields(&mut desired.objects, &live);
        }
        Ok(Observed {
            app: app.clone(),
            now,
            refreshed,
            target,
            requested,
            live,
            tracked,
            tracked_hooks,
            next_refresh_in: decision.next_in,
            invalid_spec: None,
            sync_identity,
            sync_windows: project.spec.sync_windows.clone(),
            health_rules: self.health_rules.current(),
            cluster: cluster.identity.clone(),
        })
    }

    /// An Application refused before anything is read: `tracked` is only read to finish a
    /// deletion (on `cluster`, when its destination resolved), as the project's ServiceAccount when
    /// the project permits the Application.
    fn refused(
        &self,
        app: &Application,
        now: Timestamp,
        message: String,
        project: Option<&AppProject>,
        cluster: Option<&ClusterConn>,
    ) -> Observed {
        // Deleting it still deletes what it applied before it was refused.
        let tracked = match cluster {
            Some(cluster) if app.metadata.deletion_timestamp.is_some() => cluster.live.tracked_by(
                &tracking_id(&app.namespace().unwrap_or_default(), &app.name_any()),
            ),
            _ => Vec::new(),
        };
        let identity = match (project, cluster) {
            (Some(project), Some(cluster)) => SyncIdentity::for_sync(
                self.sync_impersonation,
                project,
                &cluster.identity.server,
                app.spec
                    .destination
                    .namespace
                    .as_deref()
                    .unwrap_or_default(),
            ),
            // Without a project there is no ServiceAccount to delete as.
            _ if self.sync_impersonation => SyncIdentity::Missing(format!(
                "sync impersonation is on and the project refuses the Application: {message}"
            )),
            _ => SyncIdentity::Controller,
        };
        let mut observed =
            Observed::refused(app, now, message, tracked, self.poll_interval, identity);
        if let Some(cluster) = cluster {
            observed.cluster = cluster.identity.clone();
        }
        observed
    }

    /// The Application's project, when it may use it and it permits the Application's source and
    /// destination; else why not (nothing of the Application is fetched or applied then).
    fn permitted_project(
        &self,
        app: &Application,
        cluster: &ClusterConn,
    ) -> Result<Arc<AppProject>, String> {
        let project = self.projects.of(app).map_err(|e| e.to_string())?;
        let identity = &cluster.identity;
        as_rules(&project)
            .check_application(
                app,
                self.projects.control_namespace(),
                ClusterRef {
                    server: &identity.server,
                    name: &identity.name,
                },
            )
            .map_err(|e| e.to_string())?;
        Ok(project)
    }

    /// The repository Secrets `app` may use ([`CredentialScope`]), to choose the credentials of each
    /// URL it fetches.
    fn credentials(&self, app: &Application) -> ScopedSecrets {
        let scope = CredentialScope::of(app, self.projects.control_namespace());
        let stores: Vec<_> = self.secrets.iter().flat_map(Store::state).collect();
        ScopedSecrets::new(stores.iter().map(|s| &**s), &scope)
    }

    fn a_poll_ago(&self) -> Timestamp {
        jiff::SignedDuration::try_from(self.poll_interval)
            .ok()
            .and_then(|d| Timestamp::now().checked_sub(d).ok())
            .unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// Resolves `revision` with a fetch that started at `fetched_since` or later, with the
    /// credentials of `source`'s own URL.
    async fn resolve(
        &self,
        creds: &ScopedSecrets,
        source: &ApplicationSource,
        revision: &str,
        fetched_since: Timestamp,
    ) -> Result<String, String> {
        if let Some(chart) = self.chart_location(creds, source)? {
            return self
                .charts
                .resolve(&chart, revision, fetched_since)
                .await
                .map_err(|e| e.to_string());
        }
        let creds = creds.for_url(&source.repo_url).map_err(|e| e.to_string())?;
        self.repos
            .resolve(&source.repo_url, revision, creds.as_ref(), fetched_since)
            .await
            .map_err(|e| e.to_string())
    }

    /// The tree of `sha` as fetched with the credentials of `source`'s URL (fetched first if the
    /// cache lacks it).
    async fn checkout(
        &self,
        creds: &ScopedSecrets,
        source: &ApplicationSource,
        sha: &str,
    ) -> Result<PathBuf, String> {
        if let Some(chart) = self.chart_location(creds, source)? {
            // A chart version's archive is fetched by the checkout itself.
            return self
                .charts
                .checkout(&chart, sha)
                .await
                .map_err(|e| e.to_string());
        }
        let url = &source.repo_url;
        let chosen = creds.for_url(url).map_err(|e| e.to_string())?;
        match self.repos.checkout(url, chosen.as_ref(), sha).await {
            Ok(root) => return Ok(root),
            Err(SourceError::UnknownCommit { .. }) => {}
            // A fetch would not change a tree over a limit or a path out of it.
            Err(e) => return Err(e.to_string()),
        }
        // Not in this process's cache yet (e.g. after a restart with a new cache): fetch it.
        self.resolve(creds, source, sha, self.a_poll_ago()).await?;
        self.repos
            .checkout(url, chosen.as_ref(), sha)
            .await
            .map_err(|e| e.to_string())
    }

    /// Where `source`'s chart is, when it names one (a Helm chart of a chart repository or OCI
    /// registry rather than a path of a Git repository).
    fn chart_location(
        &self,
        creds: &ScopedSecrets,
        source: &ApplicationSource,
    ) -> Result<Option<ChartLocation>, String> {
        let Some(chart) = source.chart.as_deref().filter(|c| !c.is_empty()) else {
            return Ok(None);
        };
        let access = creds
            .chart_access(&source.repo_url)
            .map_err(|e| e.to_string())?;
        let pass_credentials = source
            .helm
            .as_ref()
            .and_then(|h| h.pass_credentials)
            .unwrap_or(false);
        ChartLocation::new(
            &source.repo_url,
            chart,
            access,
            pass_credentials,
            self.allow_insecure_http,
        )
        .map(Some)
        .map_err(|e| e.to_string())
    }

    /// The normalised manifests of `source` at `sha` (a chart's version for a chart source).
    #[allow(clippy::too_many_arguments)]
    async fn desired(
        &self,
        app: &Application,
        project: &AppProject,
        cluster: &ClusterConn,
        creds: &ScopedSecrets,
        sha: &str,
        source: &ApplicationSource,
        hard: bool,
    ) -> Result<Desired, ComparisonFailure> {
        let fail = |message: String| ComparisonFailure {
            revision: Some(sha.to_string()),
            message,
        };
        let root = self.checkout(creds, source, sha).await.map_err(fail)?;
        let ctx = RenderContext {
            app_name: app.name_any(),
            namespace: app
                .spec
                .destination
                .namespace
                .clone()
                .filter(|ns| !ns.is_empty())
                .or_else(|| app.namespace())
                .unwrap_or_default(),
        };
        // A chart's root is the chart itself: Argo CD ignores `path` beside `chart`.
        // A commit sha names content whatever the repository; a chart's version does not (two
        // charts share "1.0.0"), so a chart's renders are keyed by its unpacked directory too.
        let (rendered_source, shown, content_key) =
            match source.chart.as_deref().filter(|c| !c.is_empty()) {
                Some(chart) => (
                    ApplicationSource {
                        path: None,
                        ..source.clone()
                    },
                    format!("chart {chart} {sha}"),
                    format!("{sha} {}", root.display()),
                ),
                None => (source.clone(), source.path().to_string(), sha.to_string()),
            };
        let rendered = if hard {
            self.renders
                .render_again(&content_key, &root, &rendered_source, &ctx)
                .await
        } else {
            self.renders
                .get_or_render(&content_key, &root, &rendered_source, &ctx)
                .await
        }
        .map_err(|e| fail(format!("rendering {shown}: {e}")))?;
        let (objects, hooks) = hooks::split(rendered.objects.clone())
            .map_err(|e| fail(format!("rendering {shown}: {e}")))?;
        let (objects, hooks, not_permitted) = self
            .normalize(app, project, cluster, sha, objects, hooks)
            .await
            .map_err(fail)?;
        Ok(Desired {
            revision: sha.to_string(),
            source: source.clone(),
            source_type: Some(rendered.source_type),
            objects,
            hooks,
            not_permitted,
        })
    }

    /// Defaults namespaces (the destination's for namespaced kinds, none for cluster-scoped ones),
    /// drops server-set metadata, sets the tracking annotations, refuses unknown kinds and
    /// duplicates, and sorts into apply order, for the objects and the hooks alike. Also returns,
    /// per object the project does not permit, why (a sync of these objects fails and applies
    /// nothing).
    async fn normalize(
        &self,
        app: &Application,
        project: &AppProject,
        cluster: &ClusterConn,
        sha: &str,
        mut objects: Vec<Value>,
        mut hooks: Vec<Value>,
    ) -> Result<(Vec<Value>, Vec<Value>, Vec<String>), String> {
        let rules = as_rules(project);
        let mut not_permitted = Vec::new();
        check_manifests(&objects).map_err(|e| e.to_string())?;
        hooks::check(&hooks)?;
        let app_options = sync_options::spec_options(app).0;
        let defined = kinds_defined_by_crds(&objects);
        let destination = app
            .spec
            .destination
            .namespace
            .clone()
            .filter(|ns| !ns.is_empty());
        let id = tracking_id(&app.namespace().unwrap_or_default(), &app.name_any());
        for obj in objects.iter_mut().chain(hooks.iter_mut()) {
            let Some(gvk) = gvk(obj) else { continue };
            let skip_missing =
                sync_options::effective(obj, &app_options).skips_dry_run_on_missing_resource();
            let namespaced = self
                .namespaced(cluster, &gvk, &defined, skip_missing)
                .await?;
            if namespaced {
                let declared = str_at(obj, "/metadata/namespace")
                    .filter(|ns| !ns.is_empty())
                    .map(String::from);
                let namespace = declared.or_else(|| destination.clone()).ok_or_else(|| {
                    format!(
                        "{} {} has no namespace and spec.destination.namespace is not set",
                        gvk.kind,
                        str_at(obj, "/metadata/name").unwrap_or_default()
                    )
                })?;
                set_namespace(obj, Some(&namespace));
            } else {
                set_namespace(obj, None);
            }
            let namespace = str_at(obj, "/metadata/namespace").unwrap_or_default();
            let name = str_at(obj, "/metadata/name").unwrap_or_default();
            let object = ObjectKind {
                group: &gvk.group,
                kind: &gvk.kind,
                name,
                namespaced,
            };
            let identity = &cluster.identity;
            let on_cluster = ClusterRef {
                server: &identity.server,
                name: &identity.name,
            };
            let key = || key_of(obj).map_or_else(|| gvk.kind.clone(), |k| k.to_string());
            if let Err(violation) = rules.check_object(object, namespace, on_cluster) {
                not_permitted.push(format!("{}: {violation}", key()));
            }
            if let Some(why) = cluster
                .scope
                .refusal(identity, namespaced.then_some(namespace))
            {
                not_permitted.push(format!("{}: {why}", key()));
            }
            if let Some(metadata) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                for key in SERVER_METADATA {
                    metadata.remove(*key);
                }
            }
            set_annotation(obj, APPLICATION_ANNOTATION, &id);
            set_annotation(obj, GIT_REVISION_ANNOTATION, sha);
            set_label(obj, TRACKING_LABEL, TRACKING_LABEL_VALUE);
        }
        check_manifests(&objects).map_err(|e| e.to_string())?;
        // Named with their namespace, now set.
        if let Some(message) = object_problems(&objects) {
            return Err(message);
        }
        sort_for_apply(&mut objects);
        sort_for_apply(&mut hooks);
        Ok((objects, hooks, not_permitted))
    }

    /// Whether objects of `gvk` are namespaced: as the cluster serves the kind, else as a CRD of the
    /// same manifests defines it; else, with `SkipDryRunOnMissingResource=true`, namespaced (Argo
    /// CD's assumption for a kind it cannot find), else an error.
    async fn namespaced(
        &self,
        cluster: &ClusterConn,
        gvk: &GroupVersionKind,
        defined: &[(GroupVersionKind, bool)],
        skip_missing: bool,
    ) -> Result<bool, String> {
        match cluster.kinds.resolve(gvk).await {
            Ok(Some(kind)) => Ok(kind.namespaced),
            Ok(None) if skip_missing && !defined.iter().any(|(g, _)| g == gvk) => Ok(true),
            Ok(None) => defined
                .iter()
                .find(|(g, _)| g == gvk)
                .map(|(_, namespaced)| *namespaced)
                .ok_or_else(|| {
                    let api_version = if gvk.group.is_empty() {
                        gvk.version.clone()
                    } else {
                        format!("{}/{}", gvk.group, gvk.version)
                    };
                    format!(
                        "unknown kind {} in apiVersion {api_version}: the cluster does not serve it (install its CRD first, or fix apiVersion/kind)",
                        gvk.kind
                    )
                }),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Starts the watches of the kinds `status.resources` lists, so that objects Git no longer
    /// declares are still found (and pruned) after a restart.
    async fn watch_recorded_kinds(&self, app: &Application, cluster: &ClusterConn) {
        let Some(status) = &app.status else { return };
        let mut seen = std::collections::BTreeSet::new();
        for r in &status.resources {
            let gvk = GroupVersionKind::gvk(&r.group, &r.version, &r.kind);
            if !seen.insert((r.group.clone(), r.version.clone(), r.kind.clone())) {
                continue;
            }
            match cluster.kinds.resolve(&gvk).await {
                Ok(Some(kind)) => {
                    if let Err(e) = cluster.live.watch(&kind).await {
                        tracing::warn!(kind = %r.kind, error = %e, "cannot watch a kind the Application had");
                    }
                }
                Ok(None) => {}
                // The cluster does not answer: asking for each kind would only wait longer.
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch the kinds the Application had");
                    return;
                }
            }
        }
    }

    async fn read_live(
        &self,
        cluster: &ClusterConn,
        objects: &[Value],
        live: &mut BTreeMap<ResourceKey, Value>,
    ) -> Result<(), ObserveError> {
        for obj in objects {
            let (Some(gvk), Some(key)) = (gvk(obj), key_of(obj)) else {
                continue;
            };
            if live.contains_key(&key) {
                continue;
            }
            // A kind its CRD (in the same sync) has not registered yet has no live objects.
            let Ok(Some(kind)) = cluster.kinds.resolve(&gvk).await else {
                continue;
            };
            if let Some(found) = cluster.live.get(&kind, &key.namespace, &key.name).await? {
                live.insert(key, found);
            }
        }
        Ok(())
    }
}
