//! The Application conditions the GitOps core owns, rewritten on every reconcile from what it
//! found, keeping `lastTransitionTime` when a condition did not change (no write churn). Conditions
//! of other types (e.g. the revert loop's `RevertFailed`) are left as they are.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::common::Condition;

/// Git could not be read or rendered, or declares something that cannot be applied (G11).
pub const COMPARISON_ERROR: &str = "ComparisonError";
/// A sync failed, or automated sync refuses to run (G5, G10, quarantine).
pub const SYNC_ERROR: &str = "SyncError";
/// Objects left in the cluster that Git no longer declares, kept because pruning is off (G5).
pub const ORPHANED_RESOURCE_WARNING: &str = "OrphanedResourceWarning";
/// Objects Git declares that another Application applied (both would fight over them).
pub const SHARED_RESOURCE_WARNING: &str = "SharedResourceWarning";
/// The Application cannot be processed as specified (e.g. a destination outside the cluster).
pub const INVALID_SPEC_ERROR: &str = "InvalidSpecError";

/// A reconcile of the Application panicked (a bug in Sluice, met by this Application's input); the
/// next reconcile that completes removes it.
pub const UNKNOWN_ERROR: &str = "UnknownError";

/// The condition types [`set_owned_conditions`] manages.
const OWNED: &[&str] = &[
    COMPARISON_ERROR,
    SYNC_ERROR,
    ORPHANED_RESOURCE_WARNING,
    SHARED_RESOURCE_WARNING,
    INVALID_SPEC_ERROR,
    UNKNOWN_ERROR,
];

/// The status merge patch recording a contained panic as the `UnknownError` condition (Argo CD's type
/// for errors no other condition describes), other conditions kept.
pub fn panic_status(
    app: &crate::api::application::Application,
    panic: &crate::reconcile_guard::Panicked,
    now: Timestamp,
) -> Option<serde_json::Value> {
    let mut conditions = app
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    replace_condition(&mut conditions, UNKNOWN_ERROR, Some(panic.to_string()), now);
    Some(serde_json::json!({"status": {"conditions": conditions}}))
}

/// Whether the GitOps core manages conditions of `type_`.
pub fn is_owned(type_: &str) -> bool {
    OWNED.contains(&type_)
}

/// Replaces the owned conditions of `conditions` with `wanted` (type, message), keeping the
/// existing entry, time included, when its message is unchanged.
pub fn set_owned_conditions(
    conditions: &mut Vec<Condition>,
    wanted: &[(&str, String)],
    now: Timestamp,
) {
    let previous = std::mem::take(conditions);
    let (owned, others): (Vec<Condition>, Vec<Condition>) = previous
        .into_iter()
        .partition(|c| OWNED.contains(&c.type_.as_str()));
    *conditions = others;
    for (type_, message) in wanted {
        let kept = owned
            .iter()
            .find(|c| c.type_ == *type_ && c.message.as_deref() == Some(message.as_str()));
        conditions.push(kept.cloned().unwrap_or_else(|| Condition {
            type_: (*type_).to_string(),
            message: Some(message.clone()),
            last_transition_time: Some(Time(now)),
            ..Condition::default()
        }));
    }
}

/// Sets (`Some(message)`) or removes (`None`) the one condition `type_`, keeping its time when the
/// message is unchanged.
pub fn replace_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    message: Option<String>,
    now: Timestamp,
) {
    let kept = conditions
        .iter()
        .position(|c| c.type_ == type_ && c.message == message);
    if let (Some(_), Some(_)) = (kept, &message) {
        return;
    }
    conditions.retain(|c| c.type_ != type_);
    if let Some(message) = message {
        conditions.push(Condition {
            type_: type_.to_string(),
            message: Some(message),
            last_transition_time: Some(Time(now)),
            ..Condition::default()
        });
    }
}

/// The message of the owned condition `type_`, if set.
pub fn message_of<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a str> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .and_then(|c| c.message.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_an_unknown_error_until_a_reconcile_completes() {
        let app: crate::api::application::Application = serde_json::from_value(serde_json::json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Application",
            "metadata": {"name": "shop", "namespace": "apps"},
            "spec": {"source": {"repoURL": "https://git.example.com/shop.git"}, "destination": {}},
            "status": {"conditions": [{"type": "RevertFailed", "message": "conflict"}]}
        }))
        .expect("valid Application");
        let panic = crate::reconcile_guard::Panicked {
            message: "index out of bounds".into(),
        };
        let patch = panic_status(&app, &panic, at(100)).expect("a status patch");
        let mut conditions: Vec<Condition> =
            serde_json::from_value(patch["status"]["conditions"].clone()).expect("conditions");
        assert_eq!(message_of(&conditions, "RevertFailed"), Some("conflict"));
        assert_eq!(
            message_of(&conditions, UNKNOWN_ERROR),
            Some("reconcile panicked: index out of bounds")
        );
        // The next reconcile that gets to write its conditions owns this one, and drops it.
        set_owned_conditions(&mut conditions, &[], at(200));
        assert_eq!(message_of(&conditions, UNKNOWN_ERROR), None);
        assert_eq!(conditions.len(), 1);
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn unchanged_conditions_keep_their_time_and_foreign_ones_stay() {
        let mut conditions = vec![Condition {
            type_: "RevertFailed".into(),
            message: Some("conflict".into()),
            ..Condition::default()
        }];
        set_owned_conditions(
            &mut conditions,
            &[(SYNC_ERROR, "boom".to_string())],
            at(100),
        );
        set_owned_conditions(
            &mut conditions,
            &[
                (SYNC_ERROR, "boom".to_string()),
                (COMPARISON_ERROR, "bad yaml".to_string()),
            ],
            at(200),
        );
        let times: Vec<(&str, Option<i64>)> = conditions
            .iter()
            .map(|c| {
                (
                    c.type_.as_str(),
                    c.last_transition_time.as_ref().map(|t| t.0.as_second()),
                )
            })
            .collect();
        assert_eq!(
            times,
            [
                ("RevertFailed", None),
                (SYNC_ERROR, Some(100)),
                (COMPARISON_ERROR, Some(200))
            ]
        );
        replace_condition(&mut conditions, SYNC_ERROR, Some("boom".into()), at(250));
        assert_eq!(
            conditions[1]
                .last_transition_time
                .as_ref()
                .unwrap()
                .0
                .as_second(),
            100
        );
        replace_condition(&mut conditions, SYNC_ERROR, None, at(250));
        assert_eq!(message_of(&conditions, SYNC_ERROR), None);
        set_owned_conditions(&mut conditions, &[], at(300));
        assert_eq!(conditions.len(), 1);
        assert_eq!(message_of(&conditions, "RevertFailed"), Some("conflict"));
    }
}
