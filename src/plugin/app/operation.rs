//! Sync and rollback requests (pure): Argo CD's top-level `operation` field, written as a merge
//! patch guarded by the `resourceVersion` read, and the check that the controller has carried one
//! out.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::api::application::{Application, OperationPhase, SyncOperationResource};
use crate::plugin::error::PluginError;

/// `operation.sync` (of `revision` instead of `targetRevision` when given, of some objects only, as a
/// dry run), initiated by `username`.
pub fn sync_request(
    app: &Application,
    wanted: &SyncRequest<'_>,
    username: &str,
) -> Result<Value, PluginError> {
    refuse_if_busy(app)?;
    let mut sync = json!({});
    if wanted.prune {
        sync["prune"] = json!(true);
    }
    if let Some(revision) = wanted.revision.map(str::trim).filter(|r| !r.is_empty()) {
        sync["revision"] = json!(revision);
    }
    if !wanted.resources.is_empty() {
        sync["resources"] = json!(wanted.resources);
    }
    if wanted.dry_run {
        sync["dryRun"] = json!(true);
    }
    Ok(request(app, json!({"sync": sync}), username))
}

/// What `app sync` asks for.
#[derive(Clone, Copy, Debug, Default)]
pub struct SyncRequest<'a> {
    pub prune: bool,
    pub revision: Option<&'a str>,
    /// Selective sync: only these objects.
    pub resources: &'a [SyncOperationResource],
    pub dry_run: bool,
}

/// `operation.rollback` to history entry `id`, initiated by `username`.
pub fn rollback_request(app: &Application, id: i64, username: &str) -> Result<Value, PluginError> {
    refuse_if_busy(app)?;
    let history = app
        .status
        .as_ref()
        .map(|s| s.history.as_slice())
        .unwrap_or_default();
    if !history.iter().any(|h| h.id == id) {
        let ids: Vec<String> = history.iter().map(|h| h.id.to_string()).collect();
        return Err(PluginError::Invalid(format!(
            "Application {:?} has no history entry {id} (ids: {})",
            app.metadata.name.clone().unwrap_or_default(),
            if ids.is_empty() {
                "none".to_string()
            } else {
                ids.join(", ")
            }
        )));
    }
    Ok(request(app, json!({"rollback": {"id": id}}), username))
}

/// Argo CD's `terminate-op`: `status.operationState.phase: Terminating` (a status merge patch
/// guarded by the `resourceVersion` read), which the controller turns into a Failed operation,
/// "Operation terminated", deleting the hooks it left running.
pub fn terminate_request(app: &Application) -> Result<Value, PluginError> {
    let running = app
        .status
        .as_ref()
        .and_then(|s| s.operation_state.as_ref())
        .is_some_and(|s| s.phase == OperationPhase::Running);
    if !running {
        return Err(PluginError::Invalid(format!(
            "Unable to terminate operation. No operation is in progress for Application {:?}",
            app.metadata.name.clone().unwrap_or_default()
        )));
    }
    Ok(json!({
        "metadata": {"resourceVersion": app.metadata.resource_version},
        "status": {"operationState": {"phase": "Terminating"}}
    }))
}

fn refuse_if_busy(app: &Application) -> Result<(), PluginError> {
    let under_way = app
        .status
        .as_ref()
        .and_then(|s| s.operation_state.as_ref())
        .is_some_and(|s| {
            matches!(
                s.phase,
                OperationPhase::Running | OperationPhase::Terminating
            ) && s.finished_at.is_none()
        });
    if under_way {
        return Err(PluginError::Invalid(format!(
            "another operation is already in progress for Application {:?} (`kubectl sluice app terminate-op` stops it)",
            app.metadata.name.clone().unwrap_or_default()
        )));
    }
    if app.operation.is_some() {
        return Err(PluginError::Invalid(format!(
            "another operation is already in progress for Application {:?}",
            app.metadata.name.clone().unwrap_or_default()
        )));
    }
    Ok(())
}

fn request(app: &Application, mut operation: Value, username: &str) -> Value {
    operation["initiatedBy"] = json!({"username": username});
    json!({
        "metadata": {"resourceVersion": app.metadata.resource_version},
        "operation": operation
    })
}

/// The outcome of an operation requested at `requested_at`, once the controller has finished it
/// (it removed `operation` and recorded a completed `status.operationState` started since).
pub fn finished_operation(
    app: &Application,
    requested_at: Timestamp,
) -> Option<(OperationPhase, String)> {
    if app.operation.is_some() {
        return None;
    }
    let state = app.status.as_ref()?.operation_state.as_ref()?;
    // The request time is truncated to the second the API server stores timestamps in.
    let since = requested_at.as_second();
    (state.phase.is_completed() && state.started_at.0.as_second() >= since)
        .then(|| (state.phase, state.message.clone().unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(extra: Value) -> Application {
        let mut base = json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Application",
            "metadata": {"name": "shop", "namespace": "sluice", "resourceVersion": "7"},
            "spec": {"source": {"repoURL": "git://h/r.git", "path": "apps/shop"},
                     "destination": {"namespace": "shop"}},
            "status": {"history": [
                {"id": 0, "revision": "aaaa", "deployedAt": "2025-03-03T09:00:10Z"},
                {"id": 1, "revision": "bbbb", "deployedAt": "2025-03-04T09:00:10Z"}]}
        });
        if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn sync_writes_argo_cds_operation_with_the_user() {
        let pruning = SyncRequest {
            prune: true,
            ..SyncRequest::default()
        };
        let patch = sync_request(&app(json!({})), &pruning, "alice").unwrap();
        assert_eq!(
            patch,
            json!({"metadata": {"resourceVersion": "7"},
                   "operation": {"sync": {"prune": true}, "initiatedBy": {"username": "alice"}}})
        );
        let plain = sync_request(&app(json!({})), &SyncRequest::default(), "alice").unwrap();
        assert_eq!(plain["operation"]["sync"], json!({}));
        let pinned = SyncRequest {
            revision: Some("v1.2"),
            ..SyncRequest::default()
        };
        let pinned = sync_request(&app(json!({})), &pinned, "alice").unwrap();
        assert_eq!(pinned["operation"]["sync"], json!({"revision": "v1.2"}));
        let resources = [SyncOperationResource {
            group: "apps".into(),
            kind: "Deployment".into(),
            name: "web".into(),
            namespace: String::new(),
        }];
        let selective = SyncRequest {
            resources: &resources,
            dry_run: true,
            ..SyncRequest::default()
        };
        let selective = sync_request(&app(json!({})), &selective, "alice").unwrap();
        assert_eq!(
            selective["operation"]["sync"],
            json!({"resources": [{"group": "apps", "kind": "Deployment", "name": "web"}], "dryRun": true})
        );
    }

    #[test]
    fn rollback_needs_a_known_history_id() {
        let patch = rollback_request(&app(json!({})), 0, "alice").unwrap();
        assert_eq!(patch["operation"]["rollback"], json!({"id": 0}));
        let err = rollback_request(&app(json!({})), 5, "alice").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Application \"shop\" has no history entry 5 (ids: 0, 1)"
        );
    }

    #[test]
    fn only_an_operation_in_progress_can_be_terminated() {
        let state = |phase: &str| {
            json!({"status": {"operationState": {"operation": {"sync": {}}, "phase": phase,
                                                 "startedAt": "2025-03-04T10:00:00Z"}}})
        };
        let patch = terminate_request(&app(state("Running"))).unwrap();
        assert_eq!(
            patch,
            json!({"metadata": {"resourceVersion": "7"},
                   "status": {"operationState": {"phase": "Terminating"}}})
        );
        for idle in [
            app(state("Succeeded")),
            app(state("Failed")),
            app(json!({})),
        ] {
            assert_eq!(
                terminate_request(&idle).unwrap_err().to_string(),
                "Unable to terminate operation. No operation is in progress for Application \"shop\""
            );
        }
    }

    #[test]
    fn a_pending_operation_blocks_another() {
        let busy = app(json!({"operation": {"sync": {}}}));
        let err = sync_request(&busy, &SyncRequest::default(), "alice").unwrap_err();
        assert_eq!(
            err.to_string(),
            "another operation is already in progress for Application \"shop\""
        );
        let under_way = app(
            json!({"status": {"operationState": {"operation": {"sync": {}},
            "phase": "Running", "startedAt": "2025-03-04T10:00:00Z"}}}),
        );
        let err = sync_request(&under_way, &SyncRequest::default(), "alice").unwrap_err();
        assert!(err.to_string().contains("app terminate-op"), "{err}");
        // Failed and waiting for a retry: a new request replaces it.
        let retrying = app(
            json!({"status": {"operationState": {"operation": {"sync": {}},
            "phase": "Running", "startedAt": "2025-03-04T10:00:00Z",
            "finishedAt": "2025-03-04T10:00:05Z"}}}),
        );
        assert!(sync_request(&retrying, &SyncRequest::default(), "alice").is_ok());
    }

    #[test]
    fn an_operation_is_finished_once_removed_and_recorded_as_completed() {
        let requested: Timestamp = "2025-03-04T10:00:00.500Z".parse().unwrap();
        let state = |phase: &str, started: &str| {
            json!({"operationState": {"operation": {"sync": {}}, "phase": phase,
                                      "message": "done", "startedAt": started}})
        };
        let done = app(json!({"status": state("Succeeded", "2025-03-04T10:00:00Z")}));
        assert_eq!(
            finished_operation(&done, requested),
            Some((OperationPhase::Succeeded, "done".to_string()))
        );
        let older = app(json!({"status": state("Succeeded", "2025-03-04T09:59:59Z")}));
        assert_eq!(finished_operation(&older, requested), None);
        let running = app(json!({"status": state("Running", "2025-03-04T10:00:01Z")}));
        assert_eq!(finished_operation(&running, requested), None);
        let mut pending = done.clone();
        pending.operation = Some(Default::default());
        assert_eq!(finished_operation(&pending, requested), None);
    }
}
