//! Resource hooks, as Argo CD reads them: `argocd.argoproj.io/hook` (`PreSync`, `Sync`,
//! `PostSync`, `SyncFail`, `Skip`; comma-separated), else Helm's `helm.sh/hook` (`pre-install` and
//! `pre-upgrade` run as PreSync, `post-install` and `post-upgrade` as PostSync; `crd-install`
//! marks no hook). A hook is not an ordinary resource: it is created when its phase runs, waited
//! for until it completes, never compared with Git nor pruned, and deleted as its
//! `argocd.argoproj.io/hook-delete-policy` (or `helm.sh/hook-delete-policy`) says, by default
//! before it is created again.
//!
//! Helm's other hooks (`test`, `test-success`, `test-failure`, `pre-delete`, `post-delete`,
//! `pre-rollback`, `post-rollback`) are hooks Argo CD never runs: kept out of the sync, as there.
//! Argo CD hook types and delete policies Sluice does not know or implement (`PostDelete`,
//! `PreDelete`, a typo) refuse the revision, naming the object and the value, instead of being
//! applied as ordinary objects or silently skipped.

use std::fmt;

use serde_json::Value;

use super::object::{annotation, key_of, str_at};
use crate::api::application::SyncPhase;

/// Argo CD's hook annotation.
pub const HOOK_ANNOTATION: &str = "argocd.argoproj.io/hook";
/// Argo CD's hook deletion annotation.
pub const HOOK_DELETE_POLICY_ANNOTATION: &str = "argocd.argoproj.io/hook-delete-policy";
/// Helm's hook annotation.
pub const HELM_HOOK_ANNOTATION: &str = "helm.sh/hook";
/// Helm's hook deletion annotation.
pub const HELM_HOOK_DELETE_POLICY_ANNOTATION: &str = "helm.sh/hook-delete-policy";

/// What a manifest is to a sync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// An ordinary resource: compared, applied, pruned.
    Resource,
    /// `argocd.argoproj.io/hook: Skip`: never applied nor compared.
    Skip,
    /// A hook run in these phases (none: a Helm hook Argo CD never runs).
    Hook(Vec<SyncPhase>),
}

/// When a hook object is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeletePolicy {
    /// After it completed successfully.
    HookSucceeded,
    /// After it failed.
    HookFailed,
    /// Before it is created again (the default when no policy is written).
    BeforeHookCreation,
}

/// A hook annotation whose value Sluice cannot follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookError {
    pub object: String,
    pub annotation: &'static str,
    pub value: String,
}

impl fmt::Display for HookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {:?} is not supported by Sluice (hooks: PreSync, Sync, PostSync, SyncFail, Skip; delete policies: HookSucceeded, HookFailed, BeforeHookCreation)",
            self.object, self.annotation, self.value
        )
    }
}

fn values(obj: &Value, key: &str) -> Vec<String> {
    annotation(obj, key)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

fn object_name(obj: &Value) -> String {
    key_of(obj).map_or_else(
        || {
            format!(
                "{} {}",
                str_at(obj, "/kind").unwrap_or_default(),
                str_at(obj, "/metadata/generateName").unwrap_or_default()
            )
        },
        |k| k.to_string(),
    )
}

fn argo_phase(value: &str) -> Option<Option<SyncPhase>> {
    match value {
        "PreSync" => Some(Some(SyncPhase::PreSync)),
        "Sync" => Some(Some(SyncPhase::Sync)),
        "PostSync" => Some(Some(SyncPhase::PostSync)),
        "SyncFail" => Some(Some(SyncPhase::SyncFail)),
        "Skip" => Some(None),
        _ => None,
    }
}

fn helm_phase(value: &str) -> Option<SyncPhase> {
    match value {
        "pre-install" | "pre-upgrade" => Some(SyncPhase::PreSync),
        "post-install" | "post-upgrade" => Some(SyncPhase::PostSync),
        _ => None,
    }
}

/// The role of a manifest; an Argo CD hook type Sluice does not implement is an error.
pub fn role(obj: &Value) -> Result<Role, HookError> {
    let argo = values(obj, HOOK_ANNOTATION);
    if annotation(obj, HOOK_ANNOTATION).is_some() {
        let mut phases = Vec::new();
        let mut skip = false;
        for value in &argo {
            match argo_phase(value) {
                Some(Some(phase)) if !phases.contains(&phase) => phases.push(phase),
                Some(Some(_)) => {}
                Some(None) => skip = true,
                None => {
                    return Err(HookError {
                        object: object_name(obj),
                        annotation: HOOK_ANNOTATION,
                        value: value.clone(),
                    });
                }
            }
        }
        // Argo CD: `Skip` beside other types is ignored; an empty value marks a hook that never
        // runs.
        return Ok(if phases.is_empty() && skip {
            Role::Skip
        } else {
            Role::Hook(phases)
        });
    }
    let helm = values(obj, HELM_HOOK_ANNOTATION);
    if annotation(obj, HELM_HOOK_ANNOTATION).is_none_or(|v| v.trim() == "crd-install") {
        return Ok(Role::Resource);
    }
    let mut phases: Vec<SyncPhase> = Vec::new();
    for phase in helm.iter().filter_map(|v| helm_phase(v)) {
        if !phases.contains(&phase) {
            phases.push(phase);
        }
    }
    Ok(Role::Hook(phases))
}

/// Whether a live object is a hook or skipped (so not compared with Git nor pruned); an
/// unreadable hook annotation counts as a hook, to keep it rather than prune it.
pub fn is_hook_or_skipped(obj: &Value) -> bool {
    !matches!(role(obj), Ok(Role::Resource))
}

/// The delete policies of a hook (Argo CD's, then Helm's; `BeforeHookCreation` when none).
pub fn delete_policies(obj: &Value) -> Result<Vec<DeletePolicy>, HookError> {
    let mut policies = Vec::new();
    for value in values(obj, HOOK_DELETE_POLICY_ANNOTATION) {
        let policy = match value.as_str() {
            "HookSucceeded" => DeletePolicy::HookSucceeded,
            "HookFailed" => DeletePolicy::HookFailed,
            "BeforeHookCreation" => DeletePolicy::BeforeHookCreation,
            _ => {
                return Err(HookError {
                    object: object_name(obj),
                    annotation: HOOK_DELETE_POLICY_ANNOTATION,
                    value,
                });
            }
        };
        policies.push(policy);
    }
    for value in values(obj, HELM_HOOK_DELETE_POLICY_ANNOTATION) {
        let policy = match value.as_str() {
            "hook-succeeded" => DeletePolicy::HookSucceeded,
            "hook-failed" => DeletePolicy::HookFailed,
            "before-hook-creation" => DeletePolicy::BeforeHookCreation,
            _ => {
                return Err(HookError {
                    object: object_name(obj),
                    annotation: HELM_HOOK_DELETE_POLICY_ANNOTATION,
                    value,
                });
            }
        };
        policies.push(policy);
    }
    if policies.is_empty() {
        policies.push(DeletePolicy::BeforeHookCreation);
    }
    Ok(policies)
}

/// Splits rendered manifests into resources and hooks, dropping the skipped ones; the first hook
/// annotation Sluice cannot follow refuses them all.
pub fn split(objects: Vec<Value>) -> Result<(Vec<Value>, Vec<Value>), HookError> {
    let mut resources = Vec::new();
    let mut hooks = Vec::new();
    for obj in objects {
        match role(&obj)? {
            Role::Resource => resources.push(obj),
            Role::Skip => {}
            Role::Hook(_) => {
                delete_policies(&obj)?;
                hooks.push(obj);
            }
        }
    }
    Ok((resources, hooks))
}

/// Checks the hooks of a revision: objects with a type and a `name` or `generateName`, no name
/// twice.
pub fn check(hooks: &[Value]) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for hook in hooks {
        let kind = str_at(hook, "/kind").unwrap_or_default();
        if str_at(hook, "/apiVersion").is_none_or(str::is_empty) || kind.is_empty() {
            return Err(format!(
                "a hook has no apiVersion or kind: {}",
                super::object::snippet(hook)
            ));
        }
        let named = str_at(hook, "/metadata/name").is_some_and(|n| !n.is_empty());
        let generated = str_at(hook, "/metadata/generateName").is_some_and(|n| !n.is_empty());
        if !named && !generated {
            return Err(format!(
                "hook {kind} has neither metadata.name nor metadata.generateName: {}",
                super::object::snippet(hook)
            ));
        }
        if named
            && let Some(key) = key_of(hook)
            && !seen.insert(key.clone())
        {
            return Err(format!("hook {key} is declared twice"));
        }
    }
    Ok(())
}

/// The phases a hook runs in (none for a resource).
pub fn phases(obj: &Value) -> Vec<SyncPhase> {
    match role(obj) {
        Ok(Role::Hook(phases)) => phases,
        _ => Vec::new(),
    }
}

/// The name of a hook as created in `phase` of a sync of `revision` started at `started` (Unix
/// seconds): its own, else Argo CD's `<generateName><sha7>-<phase>-<started>`, so each sync runs
/// a fresh one.
pub fn hook_name(obj: &Value, revision: &str, phase: SyncPhase, started: i64) -> String {
    if let Some(name) = str_at(obj, "/metadata/name").filter(|n| !n.is_empty()) {
        return name.to_string();
    }
    let prefix = str_at(obj, "/metadata/generateName").unwrap_or_default();
    let short: String = revision.chars().take(7).collect();
    format!("{prefix}{short}-{phase:?}-{started}").to_lowercase()
}

/// How far a hook got, from its live object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookProgress {
    Running(String),
    Succeeded,
    Failed(String),
}

/// Argo CD's rule: a Pod by its phase; any other kind by its health (Healthy succeeded, Degraded
/// failed, anything else running); a kind without health succeeds once created.
pub fn progress(live: &Value, rules: &super::health_rules::HealthRules) -> HookProgress {
    if str_at(live, "/kind") == Some("Pod") && str_at(live, "/apiVersion") == Some("v1") {
        let message = str_at(live, "/status/message")
            .unwrap_or_default()
            .to_string();
        return match str_at(live, "/status/phase") {
            Some("Succeeded") => HookProgress::Succeeded,
            Some("Failed") => HookProgress::Failed(message),
            _ => HookProgress::Running(message),
        };
    }
    match super::health::health_of(live, rules) {
        None => HookProgress::Succeeded,
        Some(health) => {
            let message = health.message.unwrap_or_default();
            match health.status {
                crate::api::application::HealthStatusCode::Healthy => HookProgress::Succeeded,
                crate::api::application::HealthStatusCode::Degraded => {
                    HookProgress::Failed(message)
                }
                _ => HookProgress::Running(message),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn annotated(annotations: Value) -> Value {
        json!({"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": "migrate", "namespace": "shop", "annotations": annotations}})
    }

    #[test]
    fn argo_hook_types_and_skip() {
        assert_eq!(role(&annotated(json!({}))), Ok(Role::Resource));
        assert_eq!(
            role(&annotated(json!({HOOK_ANNOTATION: "PreSync"}))),
            Ok(Role::Hook(vec![SyncPhase::PreSync]))
        );
        assert_eq!(
            role(&annotated(
                json!({HOOK_ANNOTATION: "PreSync, PostSync,PreSync"})
            )),
            Ok(Role::Hook(vec![SyncPhase::PreSync, SyncPhase::PostSync]))
        );
        assert_eq!(
            role(&annotated(json!({HOOK_ANNOTATION: "Skip"}))),
            Ok(Role::Skip)
        );
        // Skip beside another type is ignored, as in Argo CD.
        assert_eq!(
            role(&annotated(json!({HOOK_ANNOTATION: "Skip,SyncFail"}))),
            Ok(Role::Hook(vec![SyncPhase::SyncFail]))
        );
    }

    #[test]
    fn an_unimplemented_hook_type_is_an_error_naming_object_and_value() {
        let err = role(&annotated(json!({HOOK_ANNOTATION: "PostDelete"}))).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("Job.batch shop/migrate"), "{text}");
        assert!(text.contains("argocd.argoproj.io/hook"), "{text}");
        assert!(text.contains("\"PostDelete\""), "{text}");
        let err = split(vec![annotated(
            json!({HOOK_ANNOTATION: "PreSync", HOOK_DELETE_POLICY_ANNOTATION: "OnSuccess"}),
        )])
        .unwrap_err();
        assert_eq!(err.value, "OnSuccess");
    }

    #[test]
    fn helm_hooks_map_as_in_argo_cd() {
        let helm = |v: &str| role(&annotated(json!({HELM_HOOK_ANNOTATION: v})));
        assert_eq!(
            helm("pre-install,pre-upgrade"),
            Ok(Role::Hook(vec![SyncPhase::PreSync]))
        );
        assert_eq!(
            helm("post-install"),
            Ok(Role::Hook(vec![SyncPhase::PostSync]))
        );
        assert_eq!(helm("crd-install"), Ok(Role::Resource));
        // A Helm test is a hook Argo CD never runs.
        assert_eq!(helm("test"), Ok(Role::Hook(vec![])));
        // Argo CD's annotation wins over Helm's.
        assert_eq!(
            role(&annotated(
                json!({HELM_HOOK_ANNOTATION: "pre-install", HOOK_ANNOTATION: "PostSync"})
            )),
            Ok(Role::Hook(vec![SyncPhase::PostSync]))
        );
    }

    #[test]
    fn delete_policies_default_to_before_hook_creation() {
        assert_eq!(
            delete_policies(&annotated(json!({HOOK_ANNOTATION: "PreSync"}))),
            Ok(vec![DeletePolicy::BeforeHookCreation])
        );
        assert_eq!(
            delete_policies(&annotated(json!({
                HOOK_DELETE_POLICY_ANNOTATION: "HookSucceeded",
                HELM_HOOK_DELETE_POLICY_ANNOTATION: "hook-failed"
            }))),
            Ok(vec![DeletePolicy::HookSucceeded, DeletePolicy::HookFailed])
        );
    }

    #[test]
    fn split_keeps_resources_and_hooks_and_drops_skipped() {
        let resource = annotated(json!({}));
        let hook = annotated(json!({HOOK_ANNOTATION: "Sync"}));
        let skipped = annotated(json!({HOOK_ANNOTATION: "Skip"}));
        let (resources, hooks) = split(vec![resource.clone(), hook.clone(), skipped]).unwrap();
        assert_eq!(resources, vec![resource]);
        assert_eq!(hooks, vec![hook]);
    }

    #[test]
    fn generated_hook_names_are_argo_cds() {
        let obj = json!({"kind": "Job", "metadata": {"generateName": "migrate-"}});
        assert_eq!(
            hook_name(&obj, "0123456789abcdef", SyncPhase::PreSync, 1_700_000_000),
            "migrate-0123456-presync-1700000000"
        );
        assert_eq!(
            hook_name(&annotated(json!({})), "0123456789", SyncPhase::Sync, 1),
            "migrate"
        );
    }

    #[test]
    fn progress_of_pods_jobs_and_kinds_without_health() {
        let pod =
            |phase: &str| json!({"apiVersion": "v1", "kind": "Pod", "status": {"phase": phase}});
        assert_eq!(
            progress(&pod("Succeeded"), &Default::default()),
            HookProgress::Succeeded
        );
        assert!(matches!(
            progress(&pod("Failed"), &Default::default()),
            HookProgress::Failed(_)
        ));
        assert!(matches!(
            progress(&pod("Running"), &Default::default()),
            HookProgress::Running(_)
        ));
        let job = |condition: &str| {
            json!({"apiVersion": "batch/v1", "kind": "Job",
                   "status": {"conditions": [{"type": condition, "status": "True", "message": "boom"}]}})
        };
        assert_eq!(
            progress(&job("Complete"), &Default::default()),
            HookProgress::Succeeded
        );
        assert!(
            matches!(progress(&job("Failed"), &Default::default()), HookProgress::Failed(m) if m.contains("boom"))
        );
        let config_map =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
        assert_eq!(
            progress(&config_map, &Default::default()),
            HookProgress::Succeeded
        );
    }
}
