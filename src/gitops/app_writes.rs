//! Writes to the Application itself: its status (the fields the GitOps core owns; the revert loop's
//! `revert`, `quarantinedRevisions` and foreign conditions are left to their writer), the removal
//! of a handled `operation` or refresh annotation, a rollback's suspension of automated sync, and
//! the resources finalizer.

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Map, Value, json};
use thiserror::Error;

use super::conditions::is_owned;
use super::object::FIELD_MANAGER;
use super::observe::{ARGO_REFRESH_ANNOTATION, REFRESH_ANNOTATION};
use super::plan::RESOURCES_FINALIZERS;
use crate::api::application::{Application, ApplicationStatus, OperationPhase};

/// Status fields the GitOps core writes.
const OWNED_STATUS_FIELDS: &[&str] = &[
    "sync",
    "health",
    "resources",
    "history",
    "operationState",
    "conditions",
    "reconciledAt",
    "sourceType",
    "summary",
];
/// Attempts of a status write that meets concurrent changes.
const STATUS_WRITE_ATTEMPTS: usize = 3;

#[derive(Debug, Error)]
pub enum WriteError {
    #[error("writing the status of Application {name}: {source}")]
    Status {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("updating Application {name} ({what}): {source}")]
    Patch {
        name: String,
        what: &'static str,
        #[source]
        source: kube::Error,
    },
}

/// The owned status fields as a merge patch: absent fields are `null`, so they are removed.
pub fn owned_status(status: &ApplicationStatus) -> Map<String, Value> {
    let full = serde_json::to_value(status).unwrap_or(Value::Null);
    OWNED_STATUS_FIELDS
        .iter()
        .map(|f| {
            let value = full.get(*f).cloned().unwrap_or(Value::Null);
            ((*f).to_string(), value)
        })
        .collect()
}

/// `new` as a merge patch over `old`: a merge patch merges objects key by key, so a key `old` has
/// and `new` lacks, at any depth, is written as `null` (a new operation's state must not keep the
/// previous one's `finishedAt` or sync options). The `resourceVersion` precondition makes `old`
/// the live value.
fn with_removals(old: &Value, new: Value) -> Value {
    match (old, new) {
        (Value::Object(old), Value::Object(mut new)) => {
            for (key, old_value) in old {
                let value = match new.remove(key) {
                    None => Value::Null,
                    Some(new_value) => with_removals(old_value, new_value),
                };
                new.insert(key.clone(), value);
            }
            Value::Object(new)
        }
        (_, new) => new,
    }
}

/// `mine` with the conditions other writers added to `fresh` since it was read, and a user's
/// `terminate-op` of the operation `mine` still has under way (the next reconcile ends it).
fn rebase(fresh: &ApplicationStatus, mine: &ApplicationStatus) -> ApplicationStatus {
    let mut merged = mine.clone();
    let terminating = fresh
        .operation_state
        .as_ref()
        .filter(|s| s.phase == OperationPhase::Terminating);
    if let (Some(asked), Some(state)) = (terminating, merged.operation_state.as_mut())
        && state.phase == OperationPhase::Running
        && state.started_at == asked.started_at
    {
        state.phase = OperationPhase::Terminating;
    }
    merged.conditions = fresh
        .conditions
        .iter()
        .filter(|c| !is_owned(&c.type_))
        .chain(mine.conditions.iter().filter(|c| is_owned(&c.type_)))
        .cloned()
        .collect();
    merged
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Writes `status` when its owned fields differ from the Application's, with the read
/// `resourceVersion` as precondition; on a conflict it re-reads and writes again.
pub async fn write_status(
    api: &Api<Application>,
    app: &Application,
    status: &ApplicationStatus,
) -> Result<(), WriteError> {
    let name = app.name_any();
    let mut current = app.clone();
    let mut wanted = status.clone();
    for attempt in 1..=STATUS_WRITE_ATTEMPTS {
        let previous = current.status.clone().unwrap_or_default();
        if owned_status(&previous) == owned_status(&wanted) {
            return Ok(());
        }
        let patch = json!({
            "metadata": {"resourceVersion": current.resource_version()},
            "status": with_removals(
                &Value::Object(owned_status(&previous)),
                Value::Object(owned_status(&wanted)),
            ),
        });
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        };
        match api
            .patch_status(&name, &params, &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if is_conflict(&e) && attempt < STATUS_WRITE_ATTEMPTS => {
                current = api.get(&name).await.map_err(|source| WriteError::Status {
                    name: name.clone(),
                    source,
                })?;
                wanted = rebase(&current.status.clone().unwrap_or_default(), &wanted);
            }
            Err(source) => return Err(WriteError::Status { name, source }),
        }
    }
    Ok(())
}

fn patch_error(app: &Application, what: &'static str) -> impl FnOnce(kube::Error) -> WriteError {
    let name = app.name_any();
    move |source| WriteError::Patch { name, what, source }
}

fn update_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    }
}

/// Removes the `operation` the reconcile acted on; one a user wrote meanwhile stays (the JSON
/// patch tests that the operation is still the same).
pub async fn clear_operation(api: &Api<Application>, app: &Application) -> Result<(), WriteError> {
    let Some(operation) = &app.operation else {
        return Ok(());
    };
    let ops = json!([
        {"op": "test", "path": "/operation", "value": operation},
        {"op": "remove", "path": "/operation"},
    ]);
    let Ok(patch) = serde_json::from_value(ops) else {
        return Ok(());
    };
    match api
        .patch(&app.name_any(), &update_params(), &Patch::<()>::Json(patch))
        .await
    {
        Ok(_) => Ok(()),
        // The test failed: a new operation was written, the next reconcile handles it.
        Err(kube::Error::Api(s)) if s.code == 422 || s.code == 409 => Ok(()),
        Err(e) => Err(patch_error(app, "removing the handled operation")(e)),
    }
}

/// Turns automated sync off after a rollback (`spec.syncPolicy.automated.enabled: false`); the
/// user turns it back on with `enabled: true`.
pub async fn disable_automated(
    api: &Api<Application>,
    app: &Application,
) -> Result<(), WriteError> {
    let patch = json!({"spec": {"syncPolicy": {"automated": {"enabled": false}}}});
    api.patch(&app.name_any(), &update_params(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(patch_error(
            app,
            "suspending automated sync after a rollback",
        ))
}

/// Removes the refresh annotations once the refresh is done.
pub async fn clear_refresh_annotations(
    api: &Api<Application>,
    app: &Application,
) -> Result<(), WriteError> {
    let present: Map<String, Value> = [REFRESH_ANNOTATION, ARGO_REFRESH_ANNOTATION]
        .iter()
        .filter(|k| app.annotations().contains_key(**k))
        .map(|k| ((*k).to_string(), Value::Null))
        .collect();
    if present.is_empty() {
        return Ok(());
    }
    let patch = json!({"metadata": {"annotations": present}});
    api.patch(&app.name_any(), &update_params(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(patch_error(app, "removing the refresh annotation"))
}

/// Removes the resources finalizers once the objects are gone.
pub async fn remove_finalizers(
    api: &Api<Application>,
    app: &Application,
) -> Result<(), WriteError> {
    let remaining: Vec<String> = app
        .finalizers()
        .iter()
        .filter(|f| !RESOURCES_FINALIZERS.contains(&f.as_str()))
        .cloned()
        .collect();
    let patch = json!({"metadata": {
        "finalizers": remaining, "resourceVersion": app.resource_version()}});
    api.patch(&app.name_any(), &update_params(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(patch_error(app, "removing the resources finalizer"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::common::Condition;

    fn condition(type_: &str) -> Condition {
        Condition {
            type_: type_.into(),
            ..Condition::default()
        }
    }

    #[test]
    fn owned_fields_only_and_removed_ones_are_null() {
        let status: ApplicationStatus = serde_json::from_value(json!({
            "sync": {"status": "Synced"},
            "quarantinedRevisions": ["abc"],
            "revert": {"sha": "abc", "phase": "Pushed"}
        }))
        .unwrap();
        let owned = owned_status(&status);
        assert_eq!(owned["sync"], json!({"status": "Synced"}));
        assert_eq!(owned["health"], Value::Null);
        assert!(!owned.contains_key("quarantinedRevisions"));
        assert!(!owned.contains_key("revert"));
    }

    #[test]
    fn removed_keys_are_null_at_every_depth_and_lists_are_replaced() {
        let old = json!({"operationState": {
            "operation": {"sync": {"dryRun": true, "prune": true}},
            "finishedAt": "2026-01-01T00:00:00Z",
            "syncResult": {"resources": [{"name": "a"}, {"name": "b"}]}
        }, "summary": {"images": ["x"]}});
        let new = json!({"operationState": {
            "operation": {"sync": {"resources": [{"kind": "ConfigMap", "name": "a"}]}},
            "syncResult": {"resources": [{"name": "a"}]}
        }, "summary": null});
        assert_eq!(
            with_removals(&old, new),
            json!({"operationState": {
                "operation": {"sync": {
                    "resources": [{"kind": "ConfigMap", "name": "a"}],
                    "dryRun": null, "prune": null}},
                "finishedAt": null,
                "syncResult": {"resources": [{"name": "a"}]}
            }, "summary": null})
        );
    }

    #[test]
    fn a_rebase_keeps_conditions_others_added_meanwhile() {
        let mine = ApplicationStatus {
            conditions: vec![condition("SyncError"), condition("RevertFailed")],
            ..ApplicationStatus::default()
        };
        let fresh = ApplicationStatus {
            conditions: vec![
                condition("RevertFailed"),
                condition("Other"),
                condition("ComparisonError"),
            ],
            ..ApplicationStatus::default()
        };
        let types: Vec<String> = rebase(&fresh, &mine)
            .conditions
            .into_iter()
            .map(|c| c.type_)
            .collect();
        assert_eq!(types, ["RevertFailed", "Other", "SyncError"]);
    }

    #[test]
    fn a_rebase_keeps_a_terminate_request_of_the_operation_under_way() {
        let state = |phase: &str, started: &str| -> ApplicationStatus {
            serde_json::from_value(json!({"operationState": {
                "operation": {"sync": {}}, "phase": phase, "startedAt": started}}))
            .unwrap()
        };
        let phase = |s: ApplicationStatus| s.operation_state.unwrap().phase;
        let asked = state("Terminating", "2026-01-01T00:00:00Z");
        assert_eq!(
            phase(rebase(&asked, &state("Running", "2026-01-01T00:00:00Z"))),
            OperationPhase::Terminating
        );
        // Finished meanwhile, or another operation: mine stands.
        assert_eq!(
            phase(rebase(&asked, &state("Succeeded", "2026-01-01T00:00:00Z"))),
            OperationPhase::Succeeded
        );
        assert_eq!(
            phase(rebase(&asked, &state("Running", "2026-01-01T00:05:00Z"))),
            OperationPhase::Running
        );
    }
}
