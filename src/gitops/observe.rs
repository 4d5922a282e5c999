//! The observe step of an Application reconcile: resolve the tracked revision (when a refresh is
//! due), render it, normalise the manifests, and read the live objects from the watch caches.
//!
//! Everything Git or rendering gets wrong becomes a [`ComparisonFailure`] shown to the user
//! (SCENARIOS G11); only infrastructure trouble (a watch that cannot list) fails the reconcile.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::core::GroupVersionKind;
use kube::runtime::reflector::Store;
use serde_json::Value;
use thiserror::Error;

use super::credentials::{CredentialScope, ScopedSecrets};
use super::engine_fields::carry_over_engine_fields;
use super::kinds::{KindResolver, kinds_defined_by_crds};
use super::live::{LiveCache, LiveError};
use super::object::{
    APPLICATION_ANNOTATION, REVISION_ANNOTATION, ResourceKey, TRACKING_LABEL, TRACKING_LABEL_VALUE,
    check_manifests, gvk, key_of, set_annotation, set_label, set_namespace, str_at, tracking_id,
};
use super::order::sort_for_apply;
use super::plan::{ComparisonFailure, Desired, Observed, operation_request};
use super::refresh::{RefreshInput, decide, jitter_seed};
use super::render::{RenderCache, RenderContext};
use super::source::{RepoCache, SourceError};
use super::webhook::PushLog;
use crate::api::application::{Application, ApplicationSource, RefreshType};

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
}

/// What the observe step reads from.
#[derive(Clone)]
pub struct Reader {
    pub repos: RepoCache,
    pub renders: RenderCache,
    pub kinds: KindResolver,
    pub live: LiveCache,
    /// Repository credential Secrets: one store per label (`sluice.dev/secret-type`,
    /// `argocd.argoproj.io/secret-type`).
    pub secrets: Vec<Store<Secret>>,
    /// Namespace whose credential Secrets every Application may use (the controller's).
    pub credentials_namespace: Option<String>,
    pub pushes: PushLog,
    pub poll_interval: Duration,
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
    ) -> Result<Observed, ObserveError> {
        let spec = &app.spec;
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
            Ok(sha) => self.desired(app, &creds, &sha, source, decision.hard).await,
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
                        Ok(sha) => self.desired(app, &creds, &sha, &req.source, false).await,
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
        self.watch_recorded_kinds(app).await;
        let mut live = BTreeMap::new();
        for desired in [
            target.as_ref().ok(),
            requested.as_ref().and_then(|r| r.as_ref().ok()),
        ]
        .into_iter()
        .flatten()
        {
            self.read_live(&desired.objects, &mut live).await?;
        }
        let tracked = self.live.tracked_by(&id);
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
            next_refresh_in: decision.next_in,
        })
    }

    /// The repository Secrets `app` may use ([`CredentialScope`]), to choose the credentials of each
    /// URL it fetches.
    fn credentials(&self, app: &Application) -> ScopedSecrets {
        let control_namespace = self.credentials_namespace.clone().unwrap_or_default();
        let scope = CredentialScope::of(app, &control_namespace);
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

    /// The normalised manifests of `source` at `sha`.
    async fn desired(
        &self,
        app: &Application,
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
        let rendered = if hard {
            self.renders.render_again(sha, &root, source, &ctx).await
        } else {
            self.renders.get_or_render(sha, &root, source, &ctx).await
        }
        .map_err(|e| fail(format!("rendering {}: {e}", source.path())))?;
        let objects = self
            .normalize(app, sha, rendered.objects.clone())
            .await
            .map_err(fail)?;
        Ok(Desired {
            revision: sha.to_string(),
            source: source.clone(),
            source_type: Some(rendered.source_type),
            objects,
        })
    }

    /// Defaults namespaces (the destination's for namespaced kinds, none for cluster-scoped ones),
    /// drops server-set metadata, sets the tracking annotations, refuses unknown kinds and
    /// duplicates, and sorts into apply order.
    async fn normalize(
        &self,
        app: &Application,
        sha: &str,
        mut objects: Vec<Value>,
    ) -> Result<Vec<Value>, String> {
        check_manifests(&objects).map_err(|e| e.to_string())?;
        let defined = kinds_defined_by_crds(&objects);
        let destination = app
            .spec
            .destination
            .namespace
            .clone()
            .filter(|ns| !ns.is_empty());
        let id = tracking_id(&app.namespace().unwrap_or_default(), &app.name_any());
        for obj in &mut objects {
            let Some(gvk) = gvk(obj) else { continue };
            let namespaced = self.namespaced(&gvk, &defined).await?;
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
            if let Some(metadata) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                for key in SERVER_METADATA {
                    metadata.remove(*key);
                }
            }
            set_annotation(obj, APPLICATION_ANNOTATION, &id);
            set_annotation(obj, REVISION_ANNOTATION, sha);
            set_label(obj, TRACKING_LABEL, TRACKING_LABEL_VALUE);
        }
        check_manifests(&objects).map_err(|e| e.to_string())?;
        sort_for_apply(&mut objects);
        Ok(objects)
    }

    async fn namespaced(
        &self,
        gvk: &GroupVersionKind,
        defined: &[(GroupVersionKind, bool)],
    ) -> Result<bool, String> {
        match self.kinds.resolve(gvk).await {
            Ok(Some(kind)) => Ok(kind.namespaced),
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
    async fn watch_recorded_kinds(&self, app: &Application) {
        let Some(status) = &app.status else { return };
        let mut seen = std::collections::BTreeSet::new();
        for r in &status.resources {
            let gvk = GroupVersionKind::gvk(&r.group, &r.version, &r.kind);
            if !seen.insert((r.group.clone(), r.version.clone(), r.kind.clone())) {
                continue;
            }
            if let Ok(Some(kind)) = self.kinds.resolve(&gvk).await
                && let Err(e) = self.live.watch(&kind).await
            {
                tracing::warn!(kind = %r.kind, error = %e, "cannot watch a kind the Application had");
            }
        }
    }

    async fn read_live(
        &self,
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
            let Ok(Some(kind)) = self.kinds.resolve(&gvk).await else {
                continue;
            };
            if let Some(found) = self.live.get(&kind, &key.namespace, &key.name).await? {
                live.insert(key, found);
            }
        }
        Ok(())
    }
}
