//! The Events an Application reconcile records, as Argo CD's application controller does: status
//! transitions (`ResourceUpdated`), finished sync operations (`OperationCompleted`) and new error
//! conditions (reason = the condition type). They are derived from the status before and after the
//! reconcile, so a reconcile that changes nothing records nothing, however often it runs.
//!
//! Each is created as its own `events.k8s.io/v1` Event. kube's `Recorder` is not used here: it
//! folds Events of the same reason into one series and keeps the first note, so "Sync operation to
//! <b> succeeded" would be lost behind "... to <a> succeeded".

use jiff::Timestamp;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::runtime::events::EventType;
use kube::{Client, Resource, ResourceExt};

use super::object::FIELD_MANAGER;
use crate::api::application::{Application, ApplicationStatus, OperationPhase};

/// The API server refuses Event notes longer than this (bytes).
const MAX_NOTE: usize = 1024;

/// One Event to record on the Application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppEvent {
    pub type_: EventType,
    pub reason: &'static str,
    pub note: String,
}

/// The Events of the step from `before` (the status the reconcile read) to `after` (the one it
/// wrote).
pub fn transitions(before: &ApplicationStatus, after: &ApplicationStatus) -> Vec<AppEvent> {
    let mut events = Vec::new();
    if let Some(completed) = completed_operation(before, after) {
        events.push(completed);
    }
    let (old_sync, new_sync) = (before.sync_status(), after.sync_status());
    if old_sync != new_sync {
        events.push(normal(
            "ResourceUpdated",
            format!("Updated sync status: {old_sync} -> {new_sync}"),
        ));
    }
    let (old_health, new_health) = (before.health_status(), after.health_status());
    if old_health != new_health {
        events.push(normal(
            "ResourceUpdated",
            format!("Updated health status: {old_health} -> {new_health}"),
        ));
    }
    for condition in &after.conditions {
        let known = before
            .conditions
            .iter()
            .any(|c| c.type_ == condition.type_ && c.message == condition.message);
        if !known && condition.status.as_deref() != Some("False") {
            events.push(AppEvent {
                type_: EventType::Warning,
                reason: condition_reason(&condition.type_),
                note: condition.message.clone().unwrap_or_default(),
            });
        }
    }
    events
}

/// The Event of a sync operation that finished in this step (a new `finishedAt`).
fn completed_operation(before: &ApplicationStatus, after: &ApplicationStatus) -> Option<AppEvent> {
    let state = after.operation_state.as_ref()?;
    let finished = state.finished_at.as_ref()?;
    let already = before
        .operation_state
        .as_ref()
        .and_then(|s| s.finished_at.as_ref())
        == Some(finished);
    if already || !state.phase.is_completed() {
        return None;
    }
    let revision = state
        .sync_result
        .as_ref()
        .map(|r| r.revision.as_str())
        .unwrap_or_default();
    let message = state.message.as_deref().unwrap_or_default();
    Some(match state.phase {
        OperationPhase::Succeeded => normal(
            "OperationCompleted",
            format!("Sync operation to {revision} succeeded"),
        ),
        _ => AppEvent {
            type_: EventType::Warning,
            reason: "OperationCompleted",
            note: format!(
                "Sync operation to {revision} {}: {message}",
                phase_word(state.phase)
            ),
        },
    })
}

fn phase_word(phase: OperationPhase) -> &'static str {
    match phase {
        OperationPhase::Failed => "failed",
        _ => "ended in error",
    }
}

fn normal(reason: &'static str, note: String) -> AppEvent {
    AppEvent {
        type_: EventType::Normal,
        reason,
        note,
    }
}

/// Event reasons are `&'static str`; the known condition types keep their names, anything else
/// is reported as a generic `ConditionRaised`.
fn condition_reason(type_: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "ComparisonError",
        "SyncError",
        "InvalidSpecError",
        "OrphanedResourceWarning",
        "RevertFailed",
        "SharedResourceWarning",
        "RepeatedResourceWarning",
    ];
    KNOWN
        .iter()
        .find(|known| **known == type_)
        .copied()
        .unwrap_or("ConditionRaised")
}

/// The Event object of `event` about `app` at `now`.
pub fn event_object(app: &Application, event: &AppEvent, now: Timestamp) -> Event {
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{}.{:x}", app.name_any(), now.as_nanosecond())),
            namespace: app.namespace(),
            ..ObjectMeta::default()
        },
        action: Some("Reconcile".into()),
        reason: Some(event.reason.into()),
        note: Some(truncate(&event.note, MAX_NOTE)),
        type_: Some(
            match event.type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .into(),
        ),
        event_time: Some(MicroTime(now)),
        regarding: Some(app.object_ref(&())),
        reporting_controller: Some(FIELD_MANAGER.into()),
        reporting_instance: Some(FIELD_MANAGER.into()),
        ..Event::default()
    }
}

/// Creates the Events of `events` about `app`; one that cannot be created is logged and dropped
/// (the status holds the truth).
pub async fn publish(client: &Client, app: &Application, events: Vec<AppEvent>) {
    let Some(namespace) = app.namespace() else {
        return;
    };
    let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
    for event in events {
        let object = event_object(app, &event, Timestamp::now());
        if let Err(e) = api.create(&PostParams::default(), &object).await {
            tracing::debug!(error = %e, reason = event.reason, "application event not recorded");
        }
    }
}

/// `text` cut to at most `max` bytes on a character boundary, marked with `…` when cut.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(value: serde_json::Value) -> ApplicationStatus {
        serde_json::from_value(value).unwrap()
    }

    fn notes(events: &[AppEvent]) -> Vec<(&'static str, &str)> {
        events.iter().map(|e| (e.reason, e.note.as_str())).collect()
    }

    #[test]
    fn nothing_changed_records_nothing() {
        let s = status(json!({
            "sync": {"status": "Synced"}, "health": {"status": "Healthy"},
            "conditions": [{"type": "ComparisonError", "message": "bad yaml"}]
        }));
        assert!(transitions(&s, &s).is_empty());
    }

    #[test]
    fn sync_and_health_transitions_read_like_argo_cd() {
        let before = status(json!({"sync": {"status": "Synced"}, "health": {"status": "Healthy"}}));
        let after =
            status(json!({"sync": {"status": "OutOfSync"}, "health": {"status": "Progressing"}}));
        let events = transitions(&before, &after);
        assert_eq!(
            notes(&events),
            [
                (
                    "ResourceUpdated",
                    "Updated sync status: Synced -> OutOfSync"
                ),
                (
                    "ResourceUpdated",
                    "Updated health status: Healthy -> Progressing"
                ),
            ]
        );
        assert!(events.iter().all(|e| e.type_ == EventType::Normal));
    }

    fn operation(phase: &str, finished: &str) -> serde_json::Value {
        json!({
            "operation": {"sync": {}}, "phase": phase, "message": "the apply failed",
            "syncResult": {"revision": "abc123"},
            "startedAt": "2026-11-23T10:00:00Z", "finishedAt": finished
        })
    }

    #[test]
    fn a_finished_sync_is_recorded_once() {
        let running = status(json!({"sync": {"status": "OutOfSync"}}));
        let done = status(json!({
            "sync": {"status": "Synced"},
            "operationState": operation("Succeeded", "2026-11-23T10:00:05Z")
        }));
        assert_eq!(
            notes(&transitions(&running, &done)),
            [
                ("OperationCompleted", "Sync operation to abc123 succeeded"),
                (
                    "ResourceUpdated",
                    "Updated sync status: OutOfSync -> Synced"
                ),
            ]
        );
        assert!(transitions(&done, &done).is_empty(), "already recorded");
    }

    #[test]
    fn a_failed_sync_is_a_warning_with_its_message() {
        let before = status(json!({
            "operationState": operation("Succeeded", "2026-11-23T09:00:00Z")
        }));
        let after = status(json!({
            "operationState": operation("Failed", "2026-11-23T10:00:05Z")
        }));
        let events = transitions(&before, &after);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].type_, EventType::Warning);
        assert_eq!(
            events[0].note,
            "Sync operation to abc123 failed: the apply failed"
        );
    }

    #[test]
    fn a_new_or_changed_condition_is_a_warning() {
        let before = status(json!({"conditions": [
            {"type": "ComparisonError", "message": "old"}
        ]}));
        let after = status(json!({"conditions": [
            {"type": "ComparisonError", "message": "apps/web.yaml: line 3: bad indentation"},
            {"type": "MadeUpWarning", "message": "m"},
        ]}));
        let events = transitions(&before, &after);
        assert_eq!(
            notes(&events),
            [
                ("ComparisonError", "apps/web.yaml: line 3: bad indentation"),
                ("ConditionRaised", "m"),
            ]
        );
        assert!(events.iter().all(|e| e.type_ == EventType::Warning));
    }

    #[test]
    fn event_objects_name_the_application_and_fit_the_api_limits() {
        let app: Application = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Application",
            "metadata": {"name": "shop", "namespace": "team", "uid": "u-1"},
            "spec": {"source": {"repoURL": "r"}, "destination": {}}
        }))
        .unwrap();
        let long = AppEvent {
            type_: EventType::Warning,
            reason: "ComparisonError",
            note: "é".repeat(600),
        };
        let now: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let event = event_object(&app, &long, now);
        let note = event.note.unwrap();
        assert!(
            note.len() <= MAX_NOTE && note.ends_with('…'),
            "{}",
            note.len()
        );
        assert_eq!(event.type_.as_deref(), Some("Warning"));
        assert_eq!(event.metadata.namespace.as_deref(), Some("team"));
        let regarding = event.regarding.unwrap();
        assert_eq!(regarding.kind.as_deref(), Some("Application"));
        assert_eq!(regarding.name.as_deref(), Some("shop"));
        assert_eq!(regarding.uid.as_deref(), Some("u-1"));
        let short = AppEvent {
            note: "fine".into(),
            ..long
        };
        assert_eq!(
            event_object(&app, &short, now).note.as_deref(),
            Some("fine")
        );
    }
}
