//! Runs the hooks of one sync phase, wave by wave: each hook is created (after its previous copy is
//! deleted, `BeforeHookCreation`), then the wave waits until every hook of it has completed; a
//! failed hook fails the sync. Completed hooks are deleted as their delete policies say.

use serde_json::Value;

use super::{Applier, Mode, api, kube_message, result};
use crate::api::application::{HookPhase, ResourceResult, ResultCode, SyncPhase};
use crate::gitops::hooks::{self, DeletePolicy, HookProgress};
use crate::gitops::live::to_value;
use crate::gitops::object::key_of;
use crate::gitops::order::{sync_wave, wave_groups};
use crate::gitops::plan::{SyncOutcome, SyncTask};

/// One hook created in this sync.
struct Started {
    obj: Value,
    policies: Vec<DeletePolicy>,
}

/// The hooks of `task` that run in `phase`, named for this sync, in apply order.
pub(super) fn hooks_of(task: &SyncTask, phase: SyncPhase) -> Vec<Value> {
    named_hooks(&task.hooks, &task.revision, task.started_at, phase)
}

/// The `hooks` that run in `phase`, named for a sync of `revision` started at `started_at`.
fn named_hooks(hooks: &[Value], revision: &str, started_at: i64, phase: SyncPhase) -> Vec<Value> {
    let mut of_phase: Vec<&Value> = hooks
        .iter()
        .filter(|hook| hooks::phases(hook).contains(&phase))
        .collect();
    // By wave, each wave in apply order (stable).
    of_phase.sort_by_key(|hook| sync_wave(hook));
    of_phase
        .into_iter()
        .map(|hook| {
            let mut named = hook.clone();
            let name = hooks::hook_name(hook, revision, phase, started_at);
            if let Some(metadata) = named.get_mut("metadata").and_then(Value::as_object_mut) {
                metadata.remove("generateName");
                metadata.insert("name".into(), Value::String(name));
            }
            named
        })
        .collect()
}

fn hook_result(
    obj: &Value,
    phase: SyncPhase,
    status: ResultCode,
    hook_phase: HookPhase,
    message: impl Into<String>,
) -> ResourceResult {
    ResourceResult {
        sync_phase: Some(phase),
        hook_type: Some(phase),
        hook_phase: Some(hook_phase),
        ..result(obj, status, message)
    }
}

impl Applier<'_> {
    /// Runs `hooks` (of `phase`, named, in apply order) wave by wave; whether all succeeded. On a
    /// failure the outcome's error says which hook and why.
    pub(super) async fn run_hooks(
        &self,
        task: &SyncTask,
        phase: SyncPhase,
        hooks: &[Value],
        outcome: &mut SyncOutcome,
    ) -> bool {
        for wave in wave_groups(hooks) {
            let mut started = Vec::new();
            for obj in wave {
                match self.start_hook(task, obj).await {
                    Ok(policies) => started.push(Started {
                        obj: obj.clone(),
                        policies,
                    }),
                    Err(message) => {
                        outcome.results.push(hook_result(
                            obj,
                            phase,
                            ResultCode::SyncFailed,
                            HookPhase::Failed,
                            message.clone(),
                        ));
                        outcome.error = Some(format!("{phase:?} hook: {message}"));
                        return false;
                    }
                }
            }
            if !self.finish_wave(phase, &started, outcome).await {
                return false;
            }
        }
        true
    }

    /// Creates one hook, deleting its previous copy first unless its policies say otherwise.
    async fn start_hook(&self, task: &SyncTask, obj: &Value) -> Result<Vec<DeletePolicy>, String> {
        let key = key_of(obj).ok_or_else(|| "a hook has no name".to_string())?;
        let policies = hooks::delete_policies(obj).map_err(|e| e.to_string())?;
        let kind = self.kind_of(obj).await?;
        if policies.contains(&DeletePolicy::BeforeHookCreation) {
            let live = api(self.reader, &kind, &key.namespace)
                .get_opt(&key.name)
                .await
                .map_err(|e| format!("{key}: {}", kube_message(&e)))?;
            if let Some(live) = live {
                self.delete_with(&to_value(&live, &kind), super::Propagation::Background)
                    .await?;
                self.wait_gone(&key, &kind).await?;
            }
        }
        self.apply(obj, Mode::of(task, obj, false)).await?;
        Ok(policies)
    }

    /// Waits until every hook of a wave has completed, records each, deletes them as their
    /// policies say; whether all succeeded.
    async fn finish_wave(
        &self,
        phase: SyncPhase,
        started: &[Started],
        outcome: &mut SyncOutcome,
    ) -> bool {
        let wave = started.first().map_or(0, |s| sync_wave(&s.obj));
        let ended = match self.wait_hooks(phase, wave, started).await {
            Ok(ended) => ended,
            Err(message) => {
                for hook in started {
                    outcome.results.push(hook_result(
                        &hook.obj,
                        phase,
                        ResultCode::Synced,
                        HookPhase::Running,
                        "created; not complete when the sync ended",
                    ));
                }
                outcome.error = Some(message);
                return false;
            }
        };
        let mut failure = None;
        for (hook, (live, progress)) in started.iter().zip(ended) {
            let (hook_phase, message, delete_on) = match &progress {
                HookProgress::Failed(why) => {
                    let what = format!(
                        "{phase:?} hook {} failed{}",
                        key_of(&hook.obj).map(|k| k.to_string()).unwrap_or_default(),
                        if why.is_empty() {
                            String::new()
                        } else {
                            format!(": {why}")
                        }
                    );
                    failure.get_or_insert(what.clone());
                    (HookPhase::Failed, what, DeletePolicy::HookFailed)
                }
                _ => (
                    HookPhase::Succeeded,
                    format!("{phase:?} hook succeeded"),
                    DeletePolicy::HookSucceeded,
                ),
            };
            outcome.results.push(hook_result(
                &hook.obj,
                phase,
                ResultCode::Synced,
                hook_phase,
                message,
            ));
            if hook.policies.contains(&delete_on)
                && let Err(e) = self
                    .delete_with(&live, super::Propagation::Background)
                    .await
            {
                tracing::warn!(error = %e, "cannot delete a completed hook");
            }
        }
        match failure {
            Some(message) => {
                outcome.error = Some(message);
                false
            }
            None => true,
        }
    }

    /// Polls the hooks of a wave until all have completed (or [`super::WAVE_TIMEOUT`] passed):
    /// each live object with how it ended.
    async fn wait_hooks(
        &self,
        phase: SyncPhase,
        wave: i64,
        started: &[Started],
    ) -> Result<Vec<(Value, HookProgress)>, String> {
        let deadline = tokio::time::Instant::now() + super::WAVE_TIMEOUT;
        let mut reported = None;
        loop {
            let mut ended = Vec::new();
            let mut running = None;
            for hook in started {
                let key = key_of(&hook.obj).ok_or_else(|| "a hook has no name".to_string())?;
                let kind = self.kind_of(&hook.obj).await?;
                let live = api(self.reader, &kind, &key.namespace)
                    .get_opt(&key.name)
                    .await
                    .map_err(|e| format!("{key}: {}", kube_message(&e)))?;
                let Some(live) = live.map(|l| to_value(&l, &kind)) else {
                    return Err(format!(
                        "{phase:?} hook {key} was deleted before it completed"
                    ));
                };
                let progress = hooks::progress(&live, &self.health_rules.current());
                if let HookProgress::Running(why) = &progress {
                    running.get_or_insert_with(|| {
                        format!(
                            "{key}{}",
                            if why.is_empty() {
                                String::new()
                            } else {
                                format!(": {why}")
                            }
                        )
                    });
                }
                ended.push((live, progress));
            }
            let Some(waiting_for) = running else {
                return Ok(ended);
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "{phase:?} hooks of wave {wave} did not complete within {}s: {waiting_for}",
                    super::WAVE_TIMEOUT.as_secs()
                ));
            }
            if reported.as_ref() != Some(&waiting_for) {
                if let Some(progress) = self.progress {
                    progress(format!(
                        "waiting for {phase:?} hook {waiting_for} to complete"
                    ))
                    .await;
                }
                reported = Some(waiting_for);
            }
            tokio::time::sleep(super::WAVE_POLL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitops::object::str_at;
    use serde_json::json;

    #[test]
    fn hooks_of_a_phase_are_named_for_the_sync_and_lose_generate_name() {
        let hook = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"generateName": "migrate-", "namespace": "shop",
                         "annotations": {"argocd.argoproj.io/hook": "PreSync,PostSync"}}});
        let other = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "notify", "namespace": "shop",
                         "annotations": {"argocd.argoproj.io/hook": "SyncFail"}}});
        let hooks = [hook, other];
        let named = |phase| named_hooks(&hooks, "abcdef0123456789", 42, phase);
        let pre = named(SyncPhase::PreSync);
        assert_eq!(pre.len(), 1);
        assert_eq!(pre[0]["metadata"]["name"], "migrate-abcdef0-presync-42");
        assert!(str_at(&pre[0], "/metadata/generateName").is_none());
        assert_eq!(
            named(SyncPhase::PostSync)[0]["metadata"]["name"],
            "migrate-abcdef0-postsync-42"
        );
        assert_eq!(named(SyncPhase::SyncFail)[0]["metadata"]["name"], "notify");
        assert!(named(SyncPhase::Sync).is_empty());
    }
}
