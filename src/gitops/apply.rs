//! Runs a sync: server-side apply of every object in order under the field manager
//! `sluice-gitops`, then the prune in reverse order (SCENARIOS G5, G7).
//!
//! As Argo CD does, every object is first applied as a server-side dry run: if any is refused
//! (admission, validation, immutable field), nothing is applied and the sync fails with the
//! reason. Objects whose namespace or CRD the same sync creates cannot be dry-run and are checked
//! by the real apply. A CRD is applied and waited for until Established before its resources.
//! Between sync waves the sync waits for what it applied to be healthy (Degraded fails it).

use std::collections::BTreeSet;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::core::GroupVersionKind;
use kube::runtime::wait::{await_condition, conditions};
use serde_json::{Value, json};

use super::health::{WaveGate, health_of, wave_gate};
use super::kinds::{Kind, KindResolver, kinds_defined_by_crds};
use super::live::to_value;
use super::object::{FIELD_MANAGER, ResourceKey, gvk, key_of, split_api_version, str_at};
use super::order::{sync_wave, wave_groups};
use super::plan::{SyncOutcome, SyncTask};
use crate::api::application::{
    HealthStatus, HealthStatusCode, ResourceResult, ResultCode, SyncPhase,
};

/// How long a sync waits for a wave to be healthy before the next one.
const WAVE_TIMEOUT: Duration = Duration::from_secs(600);
/// How often the health of a wave is read while waiting.
const WAVE_POLL: Duration = Duration::from_secs(1);
/// How long a CRD applied by a sync may take to be Established, and its kind to be served.
const CRD_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The message of a Kubernetes error without the wrapping (`Forbidden: ...`).
pub fn kube_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => other.to_string(),
    }
}

/// Records the result of applying or pruning `obj`; on failure also the sync's error. Whether the
/// sync goes on.
fn record(
    outcome: &mut SyncOutcome,
    obj: &Value,
    done: Result<(), String>,
    ok: ResultCode,
    ok_message: &str,
) -> bool {
    match done {
        Ok(()) => {
            outcome.results.push(result(obj, ok, ok_message));
            true
        }
        Err(message) => {
            outcome
                .results
                .push(result(obj, ResultCode::SyncFailed, message.clone()));
            outcome.error = Some(message);
            false
        }
    }
}

fn result(obj: &Value, status: ResultCode, message: impl Into<String>) -> ResourceResult {
    let (group, version) = split_api_version(str_at(obj, "/apiVersion").unwrap_or_default());
    let text = |p: &str| str_at(obj, p).unwrap_or_default().to_string();
    ResourceResult {
        group: group.to_string(),
        version: version.to_string(),
        kind: text("/kind"),
        namespace: text("/metadata/namespace"),
        name: text("/metadata/name"),
        status: Some(status),
        message: Some(message.into()),
        sync_phase: Some(SyncPhase::Sync),
    }
}

/// Told what a sync waits for (to record it in the status while it waits).
pub type ProgressFn = dyn Fn(String) -> BoxFuture<'static, ()> + Send + Sync;

/// Applies and deletes objects for the GitOps core.
pub struct Applier<'a> {
    /// Writes (dry run, apply, prune, CreateNamespace, cascade delete): the controller's client, or
    /// one impersonating the sync's ServiceAccount (`--sync-impersonation`).
    pub client: &'a Client,
    /// Reads between the writes (a wave's health, a CRD being Established, whether the namespace
    /// exists): always the controller's own, as for the watch caches.
    pub reader: &'a Client,
    pub kinds: &'a KindResolver,
    pub progress: Option<&'a ProgressFn>,
}

impl Applier<'_> {
    /// Runs `task`, reporting per object what happened; stops at the first failure.
    pub async fn run(&self, task: &SyncTask) -> SyncOutcome {
        let mut outcome = SyncOutcome::default();
        if let Some(ns) = &task.create_namespace
            && let Err(e) = self.ensure_namespace(ns).await
        {
            outcome.error = Some(format!("creating namespace {ns}: {}", kube_message(&e)));
            return outcome;
        }
        if let Err((obj, message)) = self.dry_run(task).await {
            outcome
                .results
                .push(result(&obj, ResultCode::SyncFailed, message.clone()));
            outcome.error = Some(message);
            return outcome;
        }
        let groups = wave_groups(&task.apply);
        let mut applied = 0;
        for (index, group) in groups.iter().enumerate() {
            for obj in *group {
                let done = self.apply(obj, Mode::of(task, obj, false)).await;
                if !record(&mut outcome, obj, done, ResultCode::Synced, "applied") {
                    return outcome;
                }
            }
            applied += group.len();
            if index + 1 < groups.len()
                && let Err(message) = self.wait_healthy(&task.apply[..applied]).await
            {
                outcome.error = Some(message);
                return outcome;
            }
        }
        for obj in &task.prune {
            let done = self.delete(obj).await;
            if !record(&mut outcome, obj, done, ResultCode::Pruned, "pruned") {
                return outcome;
            }
        }
        for obj in &task.prune_skipped {
            outcome.results.push(result(
                obj,
                ResultCode::PruneSkipped,
                "ignored (requires pruning)",
            ));
        }
        outcome
    }

    /// Dry-runs every object that can be checked before anything is created.
    async fn dry_run(&self, task: &SyncTask) -> Result<(), (Value, String)> {
        let mut created_namespaces: BTreeSet<String> =
            task.create_namespace.iter().cloned().collect();
        created_namespaces.extend(
            task.apply
                .iter()
                .filter(|o| str_at(o, "/kind") == Some("Namespace"))
                .filter_map(|o| str_at(o, "/metadata/name").map(String::from)),
        );
        let defined: Vec<GroupVersionKind> = kinds_defined_by_crds(&task.apply)
            .into_iter()
            .map(|(g, _)| g)
            .collect();
        for obj in &task.apply {
            let namespace = str_at(obj, "/metadata/namespace").unwrap_or_default();
            let from_new_crd = gvk(obj).is_some_and(|g| defined.contains(&g));
            if created_namespaces.contains(namespace) || from_new_crd {
                continue;
            }
            if let Err(message) = self.apply(obj, Mode::of(task, obj, true)).await {
                return Err((
                    obj.clone(),
                    format!("{message} (dry run: nothing was applied)"),
                ));
            }
        }
        Ok(())
    }

    /// Waits until the objects applied so far are healthy enough for the next wave.
    async fn wait_healthy(&self, applied: &[Value]) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + WAVE_TIMEOUT;
        let wave = applied.last().map_or(0, sync_wave);
        let mut reported = None;
        loop {
            let mut healths = Vec::new();
            for obj in applied {
                let key = key_of(obj).ok_or_else(|| "a manifest has no name".to_string())?;
                let kind = self.kind_of(obj).await?;
                let live = api(self.reader, &kind, &key.namespace)
                    .get_opt(&key.name)
                    .await
                    .map_err(|e| format!("{key}: {}", kube_message(&e)))?;
                let health = match live {
                    Some(live) => health_of(&to_value(&live, &kind)),
                    None => Some(HealthStatus {
                        status: HealthStatusCode::Missing,
                        message: None,
                        last_transition_time: None,
                    }),
                };
                healths.push((key.to_string(), health));
            }
            match wave_gate(healths.iter().map(|(k, h)| (k.clone(), h.as_ref()))) {
                WaveGate::Proceed => return Ok(()),
                WaveGate::Fail(why) => return Err(format!("sync wave {wave}: {why}")),
                WaveGate::Wait(why) if tokio::time::Instant::now() >= deadline => {
                    return Err(format!(
                        "sync wave {wave} did not become healthy within {}s: {why}",
                        WAVE_TIMEOUT.as_secs()
                    ));
                }
                WaveGate::Wait(why) => {
                    if reported.as_ref() != Some(&why) {
                        tracing::info!(wave, waiting_for = %why, "waiting for the wave to be healthy");
                        if let Some(progress) = self.progress {
                            progress(format!("waiting for sync wave {wave} to be healthy: {why}"))
                                .await;
                        }
                        reported = Some(why);
                    }
                    tokio::time::sleep(WAVE_POLL).await;
                }
            }
        }
    }

    async fn kind_of(&self, obj: &Value) -> Result<Kind, String> {
        let gvk = gvk(obj).ok_or_else(|| "a manifest has no apiVersion or kind".to_string())?;
        let deadline = tokio::time::Instant::now() + CRD_READY_TIMEOUT;
        loop {
            match self.kinds.resolve(&gvk).await {
                Ok(Some(kind)) => return Ok(kind),
                Ok(None) if tokio::time::Instant::now() < deadline => {
                    // Served a moment after its CRD is Established.
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Ok(None) => {
                    return Err(format!(
                        "kind {} of {} is not served by the cluster",
                        gvk.kind,
                        str_at(obj, "/apiVersion").unwrap_or_default()
                    ));
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Server-side apply. On an object this Application applied before, Git wins over whoever
    /// changed a field it declares (drift is corrected); on one it adopts, a field another manager
    /// owns is a conflict that fails the sync.
    async fn apply(&self, obj: &Value, mode: Mode) -> Result<(), String> {
        let key = key_of(obj).ok_or_else(|| "a manifest has no name".to_string())?;
        let kind = self.kind_of(obj).await?;
        let mut params = PatchParams::apply(FIELD_MANAGER);
        params.force = !mode.adopting;
        params.dry_run = mode.dry_run;
        api(self.client, &kind, &key.namespace)
            .patch(&key.name, &params, &Patch::Apply(obj))
            .await
            .map_err(|e| match &e {
                kube::Error::Api(status) if status.code == 409 && mode.adopting => format!(
                    "{key}: {} (the object exists and was not applied by this Application: Sluice does not take over fields other managers own; drop them from Git or from the object, or delete the object)",
                    kube_message(&e)
                ),
                _ => format!("{key}: {}", kube_message(&e)),
            })?;
        if !mode.dry_run && is_crd(obj) {
            self.wait_established(&key).await?;
        }
        Ok(())
    }

    async fn wait_established(&self, key: &ResourceKey) -> Result<(), String> {
        let crds: Api<CustomResourceDefinition> = Api::all(self.reader.clone());
        let established = await_condition(crds, &key.name, conditions::is_crd_established());
        match tokio::time::timeout(CRD_READY_TIMEOUT, established).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("{key}: waiting for Established: {e}")),
            Err(_) => Err(format!(
                "{key}: not Established within {}s",
                CRD_READY_TIMEOUT.as_secs()
            )),
        }
    }

    /// Deletes a live object, if it is still the one observed (same uid).
    pub async fn delete(&self, live: &Value) -> Result<(), String> {
        let key = key_of(live).ok_or_else(|| "an object has no name".to_string())?;
        let kind = self.kind_of(live).await?;
        let params = DeleteParams {
            preconditions: str_at(live, "/metadata/uid").map(|uid| Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        match api(self.client, &kind, &key.namespace)
            .delete(&key.name, &params)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(format!("deleting {key}: {}", kube_message(&e))),
        }
    }

    async fn ensure_namespace(&self, name: &str) -> Result<(), kube::Error> {
        if Api::<Namespace>::all(self.reader.clone())
            .get_opt(name)
            .await?
            .is_some()
        {
            return Ok(());
        }
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        Api::<Namespace>::all(self.client.clone())
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Apply(&body),
            )
            .await
            .map(|_| ())
    }
}

/// How one object is applied.
#[derive(Clone, Copy)]
struct Mode {
    dry_run: bool,
    /// The object exists and this Application did not apply it: no `force`.
    adopting: bool,
}

impl Mode {
    fn of(task: &SyncTask, obj: &Value, dry_run: bool) -> Self {
        Mode {
            dry_run,
            adopting: key_of(obj).is_some_and(|k| task.adopted.contains(&k)),
        }
    }
}

fn api(client: &Client, kind: &Kind, namespace: &str) -> Api<DynamicObject> {
    if kind.namespaced {
        Api::namespaced_with(client.clone(), namespace, &kind.resource)
    } else {
        Api::all_with(client.clone(), &kind.resource)
    }
}

fn is_crd(obj: &Value) -> bool {
    gvk(obj)
        .is_some_and(|g| g.group == "apiextensions.k8s.io" && g.kind == "CustomResourceDefinition")
}
