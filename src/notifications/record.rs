//! What was already sent (PURE): Argo's `notified.notifications.argoproj.io` record, kept in the
//! annotation [`ANNOTATION`] of the notified object as a JSON map of
//! `[<oncePer>:]<trigger>:<condition>:<service>:<recipient>` → unix time of the send. Kept on the
//! object, the record survives controller restarts; a controller killed between a send and the
//! record's write sends that one message again (at least once, never silently lost).

use std::collections::{BTreeMap, BTreeSet};

/// The annotation holding the record (its own field manager writes it).
pub const ANNOTATION: &str = "notified.notifications.sluice.dev";
/// Entries kept; the oldest beyond this go first (only `oncePer` entries accumulate: the others
/// are removed when their condition turns false).
pub const MAX_ENTRIES: usize = 100;
/// The longest `oncePer` value kept in a key.
const MAX_ONCE_PER_CHARS: usize = 100;

/// The record of one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record(BTreeMap<String, i64>);

impl Record {
    /// The record in an annotation's value; an unreadable one counts as empty (the worst outcome
    /// is a message sent again, never one lost).
    pub fn parse(annotation: Option<&str>) -> Self {
        annotation
            .and_then(|text| serde_json::from_str::<BTreeMap<String, i64>>(text).ok())
            .map(Self)
            .unwrap_or_default()
    }

    /// The annotation's value.
    pub fn to_annotation(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_else(|_| "{}".to_string())
    }

    pub fn contains(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Records `key` as sent at `now` (unix seconds), then keeps the newest [`MAX_ENTRIES`] entries,
    /// never dropping `key` itself.
    pub fn mark_sent(&mut self, key: &str, now: i64) {
        self.0.insert(key.to_string(), now);
        self.prune(&BTreeSet::from([key.to_string()]));
    }

    /// Forgets `key` (its condition is false again: the next true sends again).
    pub fn clear(&mut self, key: &str) {
        self.0.remove(key);
    }

    /// Keeps at most [`MAX_ENTRIES`]: the entries in `keep`, then the newest others.
    pub fn prune(&mut self, keep: &BTreeSet<String>) {
        if self.0.len() <= MAX_ENTRIES {
            return;
        }
        let mut others: Vec<(String, i64)> = self
            .0
            .iter()
            .filter(|(k, _)| !keep.contains(*k))
            .map(|(k, t)| (k.clone(), *t))
            .collect();
        // Newest first; equal times by key, so the outcome does not depend on map order.
        others.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let room = MAX_ENTRIES.saturating_sub(keep.len().min(MAX_ENTRIES));
        for (key, _) in others.into_iter().skip(room) {
            self.0.remove(&key);
        }
    }
}

/// The key of one notification: per trigger condition, service and recipient, and per `oncePer`
/// value when the condition has one (Argo's layout).
pub fn key(
    trigger: &str,
    condition: &str,
    once_per: Option<&str>,
    service: &str,
    recipient: &str,
) -> String {
    let base = format!("{trigger}:{condition}:{service}:{recipient}");
    match once_per {
        Some(value) => format!(
            "{}:{base}",
            crate::reconcile_guard::truncate(value, MAX_ONCE_PER_CHARS)
        ),
        None => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_round_trips_through_its_annotation() {
        let mut record = Record::default();
        record.mark_sent("on-x:[0].abc:hook:", 1_700_000_000);
        let text = record.to_annotation();
        assert_eq!(text, r#"{"on-x:[0].abc:hook:":1700000000}"#);
        assert_eq!(Record::parse(Some(&text)), record);
        assert!(Record::parse(Some(&text)).contains("on-x:[0].abc:hook:"));
    }

    #[test]
    fn an_unreadable_annotation_is_an_empty_record() {
        assert!(Record::parse(None).is_empty());
        assert!(Record::parse(Some("not json")).is_empty());
        assert!(Record::parse(Some(r#"{"k":"not a number"}"#)).is_empty());
    }

    #[test]
    fn keys_follow_argo_with_once_per_in_front() {
        assert_eq!(
            key("on-git-reverted", "[0].1a2b", None, "ops", "team-a"),
            "on-git-reverted:[0].1a2b:ops:team-a"
        );
        assert_eq!(
            key("on-git-reverted", "[0].1a2b", Some("abc123"), "ops", ""),
            "abc123:on-git-reverted:[0].1a2b:ops:"
        );
        let long = "x".repeat(500);
        assert!(key("t", "[0].h", Some(&long), "s", "r").len() < 150);
    }

    #[test]
    fn pruning_keeps_the_newest_and_the_one_just_sent() {
        let mut record = Record::default();
        for i in 0..MAX_ENTRIES as i64 {
            record.0.insert(format!("k{i}"), 1000 + i);
        }
        // The oldest timestamp, yet just sent: it stays; k0 (the oldest other) goes.
        record.mark_sent("new", 5);
        assert_eq!(record.len(), MAX_ENTRIES);
        assert!(record.contains("new"));
        assert!(!record.contains("k0"));
        assert!(record.contains("k1"));
        record.clear("k1");
        assert!(!record.contains("k1"));
    }
}
