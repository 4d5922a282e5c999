//! Runs a sync: server-side apply of every object in order under the field manager
//! `sluice-gitops`, then the prune in reverse order (docs/behaviour.md G5, G7).
//!
//! As Argo CD does, every object is first applied as a server-side dry run: if any is refused
//! (admission, validation, immutable field), nothing is applied and the sync fails with the
//! reason. Objects whose namespace or CRD the same sync creates cannot be dry-run and are checked
//! by the real apply. Objects of a kind whose CRD the sync applies wait (for a later reconcile)
//! until the kind is served. Between sync waves the sync waits for what it applied to be healthy
//! (Degraded fails it).
//!
//! A sync never waits inside a reconcile: [`Applier::run`] does what can be done now, records it
//! (the results), and says what it waits for; the next reconcile goes on from those results, so a
//! restarted controller goes on too and a slow wave holds no reconcile slot. The one bounded wait
//! left is `Force=true`'s (at most [`FORCE_DELETE_TIMEOUT`] for the object it deleted to be gone
//! before it is created again).
//!
//! Sync options (application-level, overridden per object): `Replace=true` replaces or creates
//! instead of applying, `Force=true` deletes and creates again, `Validate=false` writes with
//! `fieldValidation=Ignore` (else `Strict`, kubectl's default), `SkipDryRunOnMissingResource=true`
//! skips the dry run of a kind not served yet, `PruneLast=true` prunes after everything applied is
//! healthy, `PrunePropagationPolicy` deletes with that policy, `CreateNamespace=true` with
//! `managedNamespaceMetadata` labels and annotates the namespace.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions,
    PropagationPolicy, ValidationDirective,
};
use kube::core::{GroupVersionKind, Request};
use kube::{Client, Resource};
use serde_json::{Value, json};

use super::health::{WaveGate, health_of, wave_gate};
use super::health_rules::HealthRulesSource;
use super::kinds::{Kind, KindResolver, kinds_defined_by_crds};
use super::live::to_value;
use super::object::{FIELD_MANAGER, ResourceKey, gvk, key_of, split_api_version, str_at};
use super::order::{sync_wave, wave_groups};
use super::plan::{SyncOutcome, SyncTask};
use super::sync_options::{Propagation, effective};
use crate::api::application::{
    HealthStatus, HealthStatusCode, HookPhase, ManagedNamespaceMetadata, ResourceResult,
    ResultCode, SyncPhase,
};

mod hook_run;

/// How long `Force=true` waits for the object it deleted to be gone before creating it again.
const FORCE_DELETE_TIMEOUT: Duration = Duration::from_secs(60);

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
        hook_type: None,
        hook_phase: None,
    }
}

/// Applies and deletes objects for the GitOps core.
pub struct Applier<'a> {
    /// Writes (dry run, apply, prune, CreateNamespace, cascade delete): the controller's client, or
    /// one impersonating the sync's ServiceAccount (`--sync-impersonation`).
    pub client: &'a Client,
    /// Reads between the writes (a wave's health, a kind being served, whether the namespace
    /// exists): always the controller's own, as for the watch caches.
    pub reader: &'a Client,
    pub kinds: &'a KindResolver,
    /// The users' health rules, for a wave's and a hook's health.
    pub health_rules: &'a HealthRulesSource,
}

/// Whether `result` is about `obj` (same group, kind, namespace and name). Called for every object
/// against every result of a resumed sync: it compares in place, allocating nothing.
fn is_about(result: &ResourceResult, obj: &Value) -> bool {
    let (group, _) = split_api_version(str_at(obj, "/apiVersion").unwrap_or_default());
    let text = |p: &str| str_at(obj, p).unwrap_or_default();
    (
        result.group.as_str(),
        result.kind.as_str(),
        result.namespace.as_str(),
        result.name.as_str(),
    ) == (
        group,
        text("/kind"),
        text("/metadata/namespace"),
        text("/metadata/name"),
    )
}

/// Whether the operation already applied or pruned `obj` (a result not of a hook).
fn handled(outcome: &SyncOutcome, obj: &Value) -> bool {
    outcome
        .results
        .iter()
        .any(|r| r.hook_type.is_none() && is_about(r, obj))
}

/// The kinds the CRDs `task` applies define.
pub(super) fn crd_kinds(task: &SyncTask) -> Vec<GroupVersionKind> {
    kinds_defined_by_crds(&task.apply)
        .into_iter()
        .map(|(gvk, _)| gvk)
        .collect()
}

/// Records that `obj`, applied, made the sync fail (`message`).
fn mark_failed(outcome: &mut SyncOutcome, obj: &Value, message: &str) {
    let failed = result(obj, ResultCode::SyncFailed, message);
    match outcome
        .results
        .iter_mut()
        .find(|r| r.hook_type.is_none() && is_about(r, obj))
    {
        Some(recorded) => *recorded = failed,
        None => outcome.results.push(failed),
    }
}

/// Why the operation failed, as an earlier reconcile of it recorded (an object or hook result
/// that failed); `None` while it has not.
fn recorded_failure(results: &[ResourceResult]) -> Option<String> {
    results
        .iter()
        .find(|r| {
            r.status == Some(ResultCode::SyncFailed) || r.hook_phase == Some(HookPhase::Failed)
        })
        .map(|r| r.message.clone().unwrap_or_default())
}

impl Applier<'_> {
    /// Runs `task` from where its earlier reconciles left it (`task.done`) until it ends or must
    /// wait, reporting per object what happened; stops at the first failure, after which the
    /// SyncFail hooks run. Never waits: what it would wait for is `outcome.waiting`.
    pub async fn run(&self, task: &SyncTask) -> SyncOutcome {
        let mut outcome = SyncOutcome {
            results: task.done.clone(),
            ..SyncOutcome::default()
        };
        match recorded_failure(&task.done) {
            // Failed in an earlier reconcile: its SyncFail hooks are under way.
            Some(error) => outcome.error = Some(error),
            None => self.sync(task, &mut outcome).await,
        }
        if outcome.waiting.is_some() {
            return outcome;
        }
        if let Some(error) = outcome.error.clone() {
            let fail_hooks = hook_run::hooks_of(task, SyncPhase::SyncFail);
            let ran = self
                .run_hooks(task, SyncPhase::SyncFail, &fail_hooks, &mut outcome)
                .await;
            if let Some(waiting) = outcome.waiting.take() {
                outcome.waiting = Some(format!("{error}; {waiting}"));
                return outcome;
            }
            outcome.error = Some(match (ran, outcome.error.take()) {
                (false, Some(hook_error)) if hook_error != error => {
                    format!("{error}; then {hook_error}")
                }
                _ => error,
            });
        }
        outcome
    }

    /// PreSync hooks, then the objects and Sync hooks wave by wave, the prune, then (once
    /// everything applied is healthy) the PostSync hooks. What `outcome` already records is not
    /// done again.
    async fn sync(&self, task: &SyncTask, outcome: &mut SyncOutcome) {
        if task.dry_run {
            self.dry_run_sync(task, outcome).await;
            return;
        }
        if !task.resumed && !self.prepare(task, outcome).await {
            return;
        }
        let pre_sync = hook_run::hooks_of(task, SyncPhase::PreSync);
        if !self
            .run_hooks(task, SyncPhase::PreSync, &pre_sync, outcome)
            .await
        {
            return;
        }
        if !self.apply_waves(task, outcome).await {
            return;
        }
        if !self.prune(task, &task.prune, outcome).await {
            return;
        }
        if !task.prune_last.is_empty() {
            // `PruneLast=true`: an implicit last wave, after everything applied is healthy.
            if !self
                .gate(&task.apply, Some("before pruning last"), outcome)
                .await
            {
                return;
            }
            if !self.prune(task, &task.prune_last, outcome).await {
                return;
            }
        }
        for obj in &task.prune_skipped {
            if !handled(outcome, obj) {
                outcome.results.push(result(
                    obj,
                    ResultCode::PruneSkipped,
                    "ignored (requires pruning)",
                ));
            }
        }
        let post_sync = hook_run::hooks_of(task, SyncPhase::PostSync);
        if !post_sync.is_empty() {
            if !self
                .gate(&task.apply, Some("before the PostSync hooks"), outcome)
                .await
            {
                return;
            }
            self.run_hooks(task, SyncPhase::PostSync, &post_sync, outcome)
                .await;
        }
    }

    /// The first steps of a sync, before anything of it is applied: `CreateNamespace`, and the dry
    /// run of every object; whether the sync goes on.
    async fn prepare(&self, task: &SyncTask, outcome: &mut SyncOutcome) -> bool {
        if let Some(ns) = &task.create_namespace
            && let Err(e) = self
                .ensure_namespace(ns, task.namespace_metadata.as_ref())
                .await
        {
            let message = format!("creating namespace {ns}: {}", kube_message(&e));
            let namespace =
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            outcome
                .results
                .push(result(&namespace, ResultCode::SyncFailed, message.clone()));
            outcome.error = Some(message);
            return false;
        }
        if let Err((obj, message)) = self.dry_run(task).await {
            outcome
                .results
                .push(result(&obj, ResultCode::SyncFailed, message.clone()));
            outcome.error = Some(message);
            return false;
        }
        true
    }

    /// Applies the objects wave by wave, each wave's Sync hooks after its objects; the next wave
    /// once everything applied before is healthy (its hooks complete). Whether all is done.
    async fn apply_waves(&self, task: &SyncTask, outcome: &mut SyncOutcome) -> bool {
        let sync_hooks = hook_run::hooks_of(task, SyncPhase::Sync);
        let mut hooks_left: &[Value] = &sync_hooks;
        let groups = wave_groups(&task.apply);
        let crd_kinds = crd_kinds(task);
        let mut applied = 0;
        for (index, group) in groups.iter().enumerate() {
            let wave = group.first().map_or(0, sync_wave);
            let earlier = hooks_left
                .iter()
                .take_while(|h| sync_wave(h) < wave)
                .count();
            let (before, rest) = hooks_left.split_at(earlier);
            if !self.run_hooks(task, SyncPhase::Sync, before, outcome).await {
                return false;
            }
            for obj in *group {
                if handled(outcome, obj) {
                    continue;
                }
                if self.awaits_kind(obj, &crd_kinds, outcome).await {
                    return false;
                }
                let done = self.apply(obj, Mode::of(task, obj, false)).await;
                if !record(outcome, obj, done, ResultCode::Synced, "applied") {
                    return false;
                }
            }
            let same = rest.iter().take_while(|h| sync_wave(h) == wave).count();
            let (with_wave, rest) = rest.split_at(same);
            if !self
                .run_hooks(task, SyncPhase::Sync, with_wave, outcome)
                .await
            {
                return false;
            }
            hooks_left = rest;
            applied += group.len();
            if index + 1 < groups.len() && !self.gate(&task.apply[..applied], None, outcome).await {
                return false;
            }
        }
        self.run_hooks(task, SyncPhase::Sync, hooks_left, outcome)
            .await
    }

    /// Deletes `objects` with the sync's propagation policy; whether the sync goes on.
    async fn prune(&self, task: &SyncTask, objects: &[Value], outcome: &mut SyncOutcome) -> bool {
        let propagation = task.options.propagation();
        for obj in objects {
            if handled(outcome, obj) {
                continue;
            }
            let done = self.delete_with(obj, propagation).await;
            if !record(outcome, obj, done, ResultCode::Pruned, "pruned") {
                return false;
            }
        }
        true
    }

    /// `dryRun: true` (Argo CD's `kubectl apply --dry-run`): every object the API server can
    /// check is applied as a server-side dry run and reported, what would be pruned is reported;
    /// nothing is created, changed or deleted, and no hook runs.
    async fn dry_run_sync(&self, task: &SyncTask, outcome: &mut SyncOutcome) {
        let uncheckable = Uncheckable::of(task);
        let mut failures = Vec::new();
        for obj in &task.apply {
            let mode = Mode::of(task, obj, true);
            let unserved = mode.skip_dry_run_on_missing && !self.is_served(obj).await;
            let (code, message) = if uncheckable.covers(obj) || unserved {
                (
                    ResultCode::Synced,
                    "not checked (dry run): its namespace or kind does not exist yet".to_string(),
                )
            } else {
                match self.apply(obj, mode).await {
                    Ok(()) => (ResultCode::Synced, "applied (dry run)".to_string()),
                    Err(message) => {
                        failures.push(message.clone());
                        (ResultCode::SyncFailed, format!("{message} (dry run)"))
                    }
                }
            };
            outcome.results.push(result(obj, code, message));
        }
        for obj in task.prune.iter().chain(&task.prune_last) {
            outcome
                .results
                .push(result(obj, ResultCode::Pruned, "pruned (dry run)"));
        }
        for obj in &task.prune_skipped {
            outcome.results.push(result(
                obj,
                ResultCode::PruneSkipped,
                "ignored (requires pruning)",
            ));
        }
        if !failures.is_empty() {
            outcome.error = Some(format!(
                "the dry run refused {} object(s), nothing was changed: {}",
                failures.len(),
                failures.join("; ")
            ));
        }
    }

    /// Dry-runs every object that can be checked before anything is created.
    async fn dry_run(&self, task: &SyncTask) -> Result<(), (Value, String)> {
        let uncheckable = Uncheckable::of(task);
        for obj in &task.apply {
            if uncheckable.covers(obj) {
                continue;
            }
            let mode = Mode::of(task, obj, true);
            // `Force=true` may delete and create it again: a dry run of the change says nothing
            // of that; a kind the cluster does not serve yet may be served when it is applied.
            if mode.force || (mode.skip_dry_run_on_missing && !self.is_served(obj).await) {
                continue;
            }
            if let Err(message) = self.apply(obj, mode).await {
                return Err((
                    obj.clone(),
                    format!("{message} (dry run: nothing was applied)"),
                ));
            }
        }
        Ok(())
    }

    /// Whether the objects applied so far are healthy enough to go on: else the sync waits
    /// (`outcome.waiting`), or fails when one is Degraded (its result says so). `before` names
    /// the step that waits for them, when it is not the next wave. As in Argo CD there is no
    /// deadline: a new revision to sync or `terminate-op` ends a wait.
    async fn gate(
        &self,
        applied: &[Value],
        before: Option<&str>,
        outcome: &mut SyncOutcome,
    ) -> bool {
        let wave = applied.last().map_or(0, sync_wave);
        let rules = self.health_rules.current();
        let mut healths = Vec::with_capacity(applied.len());
        for obj in applied {
            let health = match self.live(obj).await {
                Ok(Some(live)) => health_of(&live, &rules),
                Ok(None) => Some(HealthStatus {
                    status: HealthStatusCode::Missing,
                    message: None,
                    last_transition_time: None,
                }),
                Err(message) => {
                    // Read again by the next reconcile: a failed read says nothing of the wave.
                    outcome.waiting = Some(format!("reading what the sync applied: {message}"));
                    return false;
                }
            };
            let key = key_of(obj).map(|k| k.to_string()).unwrap_or_default();
            healths.push((obj, key, health));
        }
        let prefix = before.map(|b| format!("{b}: ")).unwrap_or_default();
        match wave_gate(healths.iter().map(|(_, key, h)| (key.clone(), h.as_ref()))) {
            WaveGate::Proceed => true,
            WaveGate::Fail(why) => {
                let message = format!("{prefix}sync wave {wave}: {why}");
                let degraded = healths.iter().find(|(_, _, h)| {
                    h.as_ref()
                        .is_some_and(|h| h.status == HealthStatusCode::Degraded)
                });
                if let Some((obj, _, _)) = degraded {
                    mark_failed(outcome, obj, &message);
                }
                outcome.error = Some(message);
                false
            }
            WaveGate::Wait(why) => {
                tracing::debug!(wave, waiting_for = %why, "waiting for the wave to be healthy");
                outcome.waiting = Some(format!(
                    "{prefix}waiting for sync wave {wave} to be healthy: {why}"
                ));
                false
            }
        }
    }

    /// The live copy of `obj` (a GET: a sync reads what it just wrote, which the caches may not
    /// show yet), `None` when it does not exist.
    async fn live(&self, obj: &Value) -> Result<Option<Value>, String> {
        let key = key_of(obj).ok_or_else(|| "a manifest has no name".to_string())?;
        let kind = self.kind_of(obj).await?;
        api(self.reader, &kind, &key.namespace)
            .get_opt(&key.name)
            .await
            .map(|live| live.map(|l| to_value(&l, &kind)))
            .map_err(|e| format!("{key}: {}", kube_message(&e)))
    }

    /// The kind of `obj` as the cluster serves it (a kind whose CRD this sync applies is waited
    /// for beforehand: [`Applier::awaits_kind`]).
    async fn kind_of(&self, obj: &Value) -> Result<Kind, String> {
        let gvk = gvk(obj).ok_or_else(|| "a manifest has no apiVersion or kind".to_string())?;
        match self.kinds.resolve(&gvk).await {
            Ok(Some(kind)) => Ok(kind),
            Ok(None) => Err(format!(
                "kind {} of {} is not served by the cluster",
                gvk.kind,
                str_at(obj, "/apiVersion").unwrap_or_default()
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Whether the sync must wait before writing `obj`: its kind is defined by a CRD among
    /// `crd_kinds` (applied by this sync) that the API server does not serve yet. Then
    /// `outcome.waiting` says so.
    pub(super) async fn awaits_kind(
        &self,
        obj: &Value,
        crd_kinds: &[GroupVersionKind],
        outcome: &mut SyncOutcome,
    ) -> bool {
        let Some(gvk) = gvk(obj).filter(|g| crd_kinds.contains(g)) else {
            return false;
        };
        if self.is_served(obj).await {
            return false;
        }
        outcome.waiting = Some(format!(
            "waiting for kind {} of {} to be served (its CustomResourceDefinition is applied by this sync)",
            gvk.kind,
            str_at(obj, "/apiVersion").unwrap_or_default()
        ));
        true
    }

    /// Whether the cluster serves `obj`'s kind now.
    async fn is_served(&self, obj: &Value) -> bool {
        let Some(gvk) = gvk(obj) else { return false };
        matches!(self.kinds.resolve(&gvk).await, Ok(Some(_)))
    }

    /// Writes `obj` as its sync options say: a server-side apply, or (`Replace=true`) a replace or
    /// create; with `Force=true` the object is deleted and created again (always with `Replace`,
    /// else when the apply is refused, e.g. for an immutable field).
    async fn apply(&self, obj: &Value, mode: Mode) -> Result<(), String> {
        let key = key_of(obj).ok_or_else(|| "a manifest has no name".to_string())?;
        let kind = self.kind_of(obj).await?;
        if mode.replace {
            self.replace(obj, &key, &kind, mode).await?;
        } else {
            match self.server_side_apply(obj, &key, &kind, mode).await {
                Err(e) if mode.force && !mode.dry_run && is_refused_change(&e) => {
                    tracing::info!(object = %key, error = %kube_message(&e), "Force=true: deleting and creating the object again");
                    self.recreate(obj, &key, &kind, mode).await?;
                }
                done => done.map_err(|e| apply_error(&key, &e, mode))?,
            }
        }
        Ok(())
    }

    /// Server-side apply. On an object this Application applied before, Git wins over whoever
    /// changed a field it declares (drift is corrected); on one it adopts, a field another manager
    /// owns is a conflict that fails the sync.
    async fn server_side_apply(
        &self,
        obj: &Value,
        key: &ResourceKey,
        kind: &Kind,
        mode: Mode,
    ) -> Result<(), kube::Error> {
        let mut params = PatchParams::apply(FIELD_MANAGER);
        params.force = !mode.adopting;
        params.dry_run = mode.dry_run;
        params.field_validation = Some(mode.validation());
        api(self.client, kind, &key.namespace)
            .patch(&key.name, &params, &Patch::Apply(obj))
            .await
            .map(|_| ())
    }

    /// `Replace=true`: a replace of the live object (the fields Git does not declare are dropped),
    /// or a create when there is none; with `Force=true`, delete and create.
    async fn replace(
        &self,
        obj: &Value,
        key: &ResourceKey,
        kind: &Kind,
        mode: Mode,
    ) -> Result<(), String> {
        let live = api(self.reader, kind, &key.namespace)
            .get_opt(&key.name)
            .await
            .map_err(|e| format!("{key}: {}", kube_message(&e)))?;
        match live {
            None => self.write_whole(obj, key, kind, mode, Write::Create).await,
            Some(_) if mode.force => self.recreate(obj, key, kind, mode).await,
            Some(live) => {
                let mut body = obj.clone();
                if let Some(metadata) = body.get_mut("metadata").and_then(Value::as_object_mut)
                    && let Some(version) = live.metadata.resource_version
                {
                    metadata.insert("resourceVersion".into(), Value::String(version));
                }
                self.write_whole(&body, key, kind, mode, Write::Replace)
                    .await
            }
        }
    }

    /// `Force=true`: deletes the live object, waits until it is gone, creates `obj`.
    async fn recreate(
        &self,
        obj: &Value,
        key: &ResourceKey,
        kind: &Kind,
        mode: Mode,
    ) -> Result<(), String> {
        let objects = api(self.client, kind, &key.namespace);
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            ..DeleteParams::default()
        };
        match objects.delete(&key.name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(format!("Force=true: deleting {key}: {}", kube_message(&e))),
        }
        self.wait_gone(key, kind)
            .await
            .map_err(|e| format!("Force=true: {e}"))?;
        self.write_whole(obj, key, kind, mode, Write::Create).await
    }

    /// Waits (at most [`FORCE_DELETE_TIMEOUT`]) until a deleted object is gone.
    async fn wait_gone(&self, key: &ResourceKey, kind: &Kind) -> Result<(), String> {
        let gone = async {
            let reader = api(self.reader, kind, &key.namespace);
            loop {
                match reader.get_opt(&key.name).await {
                    Ok(None) => return Ok(()),
                    Ok(Some(_)) => tokio::time::sleep(Duration::from_millis(250)).await,
                    Err(e) => return Err(format!("{key}: {}", kube_message(&e))),
                }
            }
        };
        match tokio::time::timeout(FORCE_DELETE_TIMEOUT, gone).await {
            Ok(done) => done,
            Err(_) => Err(format!(
                "{key} was not gone {}s after its deletion",
                FORCE_DELETE_TIMEOUT.as_secs()
            )),
        }
    }

    /// A create or replace (not an apply), with the field validation of the sync options (kube's
    /// `PostParams` has none: added to the query).
    async fn write_whole(
        &self,
        obj: &Value,
        key: &ResourceKey,
        kind: &Kind,
        mode: Mode,
        write: Write,
    ) -> Result<(), String> {
        let fail = |message: String| format!("{key}: {message}");
        let namespace = kind.namespaced.then_some(key.namespace.as_str());
        let request = Request::new(DynamicObject::url_path(&kind.resource, namespace));
        let params = PostParams {
            dry_run: mode.dry_run,
            field_manager: Some(FIELD_MANAGER.to_string()),
        };
        let body = serde_json::to_vec(obj).map_err(|e| fail(e.to_string()))?;
        let mut http = match write {
            Write::Create => request.create(&params, body),
            Write::Replace => request.replace(&key.name, &params, body),
        }
        .map_err(|e| fail(e.to_string()))?;
        let uri = format!(
            "{}&fieldValidation={}",
            http.uri(),
            mode.validation().as_str()
        );
        *http.uri_mut() = uri.parse().map_err(|e| fail(format!("{e}")))?;
        self.client
            .request::<DynamicObject>(http)
            .await
            .map(|_| ())
            .map_err(|e| fail(kube_message(&e)))
    }

    /// Deletes a live object, if it is still the one observed (same uid), its dependents in the
    /// background.
    pub async fn delete(&self, live: &Value) -> Result<(), String> {
        self.delete_with(live, Propagation::Background).await
    }

    /// Deletes a live object, if it is still the one observed (same uid), with `propagation`.
    async fn delete_with(&self, live: &Value, propagation: Propagation) -> Result<(), String> {
        let key = key_of(live).ok_or_else(|| "an object has no name".to_string())?;
        let kind = self.kind_of(live).await?;
        let params = DeleteParams {
            preconditions: str_at(live, "/metadata/uid").map(|uid| Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            propagation_policy: Some(match propagation {
                Propagation::Foreground => PropagationPolicy::Foreground,
                Propagation::Background => PropagationPolicy::Background,
                Propagation::Orphan => PropagationPolicy::Orphan,
            }),
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

    /// `CreateNamespace=true`: creates the namespace when missing; with
    /// `managedNamespaceMetadata`, applies its labels and annotations whether it was missing or
    /// not (server-side, so labels others set stay).
    async fn ensure_namespace(
        &self,
        name: &str,
        metadata: Option<&ManagedNamespaceMetadata>,
    ) -> Result<(), kube::Error> {
        if metadata.is_none()
            && Api::<Namespace>::all(self.reader.clone())
                .get_opt(name)
                .await?
                .is_some()
        {
            return Ok(());
        }
        let mut body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        if let Some(metadata) = metadata {
            if !metadata.labels.is_empty() {
                body["metadata"]["labels"] = json!(metadata.labels);
            }
            if !metadata.annotations.is_empty() {
                body["metadata"]["annotations"] = json!(metadata.annotations);
            }
        }
        Api::<Namespace>::all(self.client.clone())
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
            .map(|_| ())
    }
}

/// The objects a dry run cannot check before the sync creates what they need: those in a
/// namespace the sync creates, and those of a kind a CRD of the sync defines.
struct Uncheckable {
    namespaces: BTreeSet<String>,
    kinds: Vec<GroupVersionKind>,
}

impl Uncheckable {
    fn of(task: &SyncTask) -> Self {
        let mut namespaces: BTreeSet<String> = task.create_namespace.iter().cloned().collect();
        namespaces.extend(
            task.apply
                .iter()
                .filter(|o| str_at(o, "/kind") == Some("Namespace"))
                .filter_map(|o| str_at(o, "/metadata/name").map(String::from)),
        );
        Self {
            namespaces,
            kinds: crd_kinds(task),
        }
    }

    fn covers(&self, obj: &Value) -> bool {
        let namespace = str_at(obj, "/metadata/namespace").unwrap_or_default();
        self.namespaces.contains(namespace) || gvk(obj).is_some_and(|g| self.kinds.contains(&g))
    }
}

/// How one object is applied.
#[derive(Clone, Copy)]
struct Mode {
    dry_run: bool,
    /// The object exists and this Application did not apply it: no `force`.
    adopting: bool,
    /// `Replace=true`.
    replace: bool,
    /// `Force=true`.
    force: bool,
    /// `Validate=false` not written.
    validate: bool,
    /// `SkipDryRunOnMissingResource=true`.
    skip_dry_run_on_missing: bool,
}

impl Mode {
    fn of(task: &SyncTask, obj: &Value, dry_run: bool) -> Self {
        let options = effective(obj, &task.options);
        Mode {
            dry_run,
            adopting: key_of(obj).is_some_and(|k| task.adopted.contains(&k)),
            replace: options.replaces(),
            force: options.forces(),
            validate: options.validates(),
            skip_dry_run_on_missing: options.skips_dry_run_on_missing_resource(),
        }
    }

    /// kubectl's: strict, `Ignore` with `Validate=false`.
    fn validation(self) -> ValidationDirective {
        if self.validate {
            ValidationDirective::Strict
        } else {
            ValidationDirective::Ignore
        }
    }
}

#[derive(Clone, Copy)]
enum Write {
    Create,
    Replace,
}

/// The message of a failed server-side apply.
fn apply_error(key: &ResourceKey, error: &kube::Error, mode: Mode) -> String {
    match error {
        kube::Error::Api(status) if status.code == 409 && mode.adopting => format!(
            "{key}: {} (the object exists and was not applied by this Application: Sluice does not take over fields other managers own; drop them from Git or from the object, or delete the object)",
            kube_message(error)
        ),
        _ => format!("{key}: {}", kube_message(error)),
    }
}

/// An apply the API server refused for the change itself (invalid, e.g. an immutable field, or a
/// conflict): what `Force=true` deletes and creates again for.
fn is_refused_change(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 422 || status.code == 409)
}

fn api(client: &Client, kind: &Kind, namespace: &str) -> Api<DynamicObject> {
    if kind.namespaced {
        Api::namespaced_with(client.clone(), namespace, &kind.resource)
    } else {
        Api::all_with(client.clone(), &kind.resource)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_is_about_the_object_of_its_group_kind_namespace_and_name() {
        let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop"}});
        let config_map = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "web", "namespace": "shop"}});
        let applied = result(&deployment, ResultCode::Synced, "applied");
        assert!(is_about(&applied, &deployment));
        assert!(!is_about(&applied, &config_map));
        // Another version of the same object is the same object.
        let mut v1beta1 = deployment.clone();
        v1beta1["apiVersion"] = json!("apps/v1beta1");
        assert!(is_about(&applied, &v1beta1));
        assert!(is_about(
            &result(&config_map, ResultCode::Pruned, "pruned"),
            &config_map
        ));
    }

    #[test]
    fn a_failure_an_earlier_reconcile_recorded_is_found_again() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "shop"}});
        let mut outcome = SyncOutcome {
            results: vec![result(&obj, ResultCode::Synced, "applied")],
            ..SyncOutcome::default()
        };
        assert_eq!(recorded_failure(&outcome.results), None);
        mark_failed(
            &mut outcome,
            &obj,
            "sync wave 0: ConfigMap shop/a is Degraded",
        );
        assert_eq!(outcome.results.len(), 1);
        assert_eq!(
            recorded_failure(&outcome.results).as_deref(),
            Some("sync wave 0: ConfigMap shop/a is Degraded")
        );
    }
}
