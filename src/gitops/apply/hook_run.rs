//! Runs the hooks of one sync phase, wave by wave: each hook is created (after its previous copy is
//! deleted, `BeforeHookCreation`) and recorded Running; the sync goes on to the next wave once
//! every hook of it has completed (read again at each reconcile until then); a failed hook fails
//! the sync. Completed hooks are deleted as their delete policies say.

use serde_json::Value;

use super::{Applier, Mode, is_about, result};
use crate::api::application::{HookPhase, ResourceResult, ResultCode, SyncPhase};
use crate::gitops::hooks::{self, DeletePolicy, HookProgress};
use crate::gitops::object::key_of;
use crate::gitops::order::{sync_wave, wave_groups};
use crate::gitops::plan::{SyncOutcome, SyncTask};

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

/// Whether a hook was created.
enum Started {
    Yes,
    /// Not yet: what it waits for.
    Not(String),
}

/// Where `outcome` records the hook `obj` of `phase`.
fn recorded(outcome: &SyncOutcome, obj: &Value, phase: SyncPhase) -> Option<usize> {
    outcome
        .results
        .iter()
        .position(|r| r.hook_type == Some(phase) && is_about(r, obj))
}

/// What a hook's end means: its phase, the message, and the delete policy that then applies.
fn ending(
    phase: SyncPhase,
    key: &str,
    progress: &HookProgress,
) -> (HookPhase, String, DeletePolicy) {
    match progress {
        HookProgress::Failed(why) => (
            HookPhase::Failed,
            format!(
                "{phase:?} hook {key} failed{}",
                if why.is_empty() {
                    String::new()
                } else {
                    format!(": {why}")
                }
            ),
            DeletePolicy::HookFailed,
        ),
        _ => (
            HookPhase::Succeeded,
            format!("{phase:?} hook succeeded"),
            DeletePolicy::HookSucceeded,
        ),
    }
}

impl Applier<'_> {
    /// Runs `hooks` (of `phase`, named, in apply order) wave by wave: creates those `outcome` does
    /// not record yet, then reads the wave's; whether all of them succeeded. Otherwise the outcome
    /// says why the sync failed, or what it waits for.
    pub(super) async fn run_hooks(
        &self,
        task: &SyncTask,
        phase: SyncPhase,
        hooks: &[Value],
        outcome: &mut SyncOutcome,
    ) -> bool {
        let crd_kinds = super::crd_kinds(task);
        for wave in wave_groups(hooks) {
            for obj in wave {
                if recorded(outcome, obj, phase).is_some() {
                    continue;
                }
                if self.awaits_kind(obj, &crd_kinds, outcome).await {
                    return false;
                }
                match self.start_hook(task, obj).await {
                    Ok(Started::Not(waiting)) => {
                        outcome.waiting = Some(waiting);
                        return false;
                    }
                    Ok(Started::Yes) => outcome.results.push(hook_result(
                        obj,
                        phase,
                        ResultCode::Synced,
                        HookPhase::Running,
                        "created",
                    )),
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
            if !self.check_wave(phase, wave, outcome).await {
                return false;
            }
        }
        true
    }

    /// Creates one hook; its previous copy is deleted first unless its policies say otherwise,
    /// and the hook created once that copy is gone (a later reconcile).
    async fn start_hook(&self, task: &SyncTask, obj: &Value) -> Result<Started, String> {
        let key = key_of(obj).ok_or_else(|| "a hook has no name".to_string())?;
        let policies = hooks::delete_policies(obj).map_err(|e| e.to_string())?;
        if policies.contains(&DeletePolicy::BeforeHookCreation)
            && let Some(live) = self.live(obj).await?
        {
            if live.pointer("/metadata/deletionTimestamp").is_none() {
                self.delete_with(&live, super::Propagation::Background)
                    .await?;
            }
            return Ok(Started::Not(format!(
                "waiting for the previous {key} to be deleted before the hook is created again"
            )));
        }
        self.apply(obj, Mode::of(task, obj, false)).await?;
        Ok(Started::Yes)
    }

    /// Reads the hooks of a wave still running: records those that ended, deleting them as their
    /// policies say; whether all of the wave succeeded (else the sync fails, or waits for one).
    async fn check_wave(
        &self,
        phase: SyncPhase,
        wave: &[Value],
        outcome: &mut SyncOutcome,
    ) -> bool {
        let rules = self.health_rules.current();
        let mut failure = None;
        let mut running = None;
        for obj in wave {
            let Some(index) = recorded(outcome, obj, phase) else {
                continue;
            };
            match outcome.results[index].hook_phase {
                Some(HookPhase::Running) => {}
                Some(HookPhase::Failed) => {
                    failure
                        .get_or_insert(outcome.results[index].message.clone().unwrap_or_default());
                    continue;
                }
                _ => continue,
            }
            let key = key_of(obj).map(|k| k.to_string()).unwrap_or_default();
            let live = match self.live(obj).await {
                Ok(live) => live,
                Err(message) => {
                    // Read again by the next reconcile: a failed read says nothing of the hook.
                    outcome.waiting = Some(format!("reading {phase:?} hook {key}: {message}"));
                    return false;
                }
            };
            let Some(live) = live else {
                let message = format!("{phase:?} hook {key} was deleted before it completed");
                outcome.results[index] = hook_result(
                    obj,
                    phase,
                    ResultCode::Synced,
                    HookPhase::Failed,
                    message.clone(),
                );
                failure.get_or_insert(message);
                continue;
            };
            let progress = hooks::progress(&live, &rules);
            if let HookProgress::Running(why) = &progress {
                running.get_or_insert_with(|| {
                    if why.is_empty() {
                        key.clone()
                    } else {
                        format!("{key}: {why}")
                    }
                });
                continue;
            }
            let (hook_phase, message, delete_on) = ending(phase, &key, &progress);
            if hook_phase == HookPhase::Failed {
                failure.get_or_insert(message.clone());
            }
            outcome.results[index] =
                hook_result(obj, phase, ResultCode::Synced, hook_phase, message);
            let policies = hooks::delete_policies(obj).unwrap_or_default();
            if policies.contains(&delete_on)
                && let Err(e) = self
                    .delete_with(&live, super::Propagation::Background)
                    .await
            {
                tracing::warn!(error = %e, "cannot delete a completed hook");
            }
        }
        if let Some(message) = failure {
            outcome.error = Some(message);
            return false;
        }
        if let Some(waiting_for) = running {
            outcome.waiting = Some(format!(
                "waiting for {phase:?} hook {waiting_for} to complete"
            ));
            return false;
        }
        true
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
