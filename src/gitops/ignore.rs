//! `spec.ignoreDifferences`: fields left out of the comparison, for the objects an entry matches.
//! JSON pointers (RFC 6901), a subset of jq path expressions (`.a.b`, `.a["k"]`, `.a[]`, `.a[0]`,
//! `select(.name == "x")`, stages joined by `|`) and the fields of named field managers.

use serde_json::{Map, Value};

use super::diff::{managed_field_sets, matches_item_key};
use super::object::ResourceKey;
use crate::api::application::ResourceIgnoreDifferences;

/// Whether an `ignoreDifferences` entry applies to the object `key`.
fn applies_to(entry: &ResourceIgnoreDifferences, key: &ResourceKey) -> bool {
    let group_ok = entry.group.as_deref().unwrap_or_default() == key.group;
    let name_ok = entry
        .name
        .as_deref()
        .is_none_or(|n| n.is_empty() || n == key.name);
    let ns_ok = entry
        .namespace
        .as_deref()
        .is_none_or(|n| n.is_empty() || n == key.namespace);
    group_ok && entry.kind == key.kind && name_ok && ns_ok
}

/// Removes from `desired` and `live` the fields the matching entries ignore. Expressions that do
/// not parse are skipped (they cannot match anything).
pub fn strip_ignored(
    entries: &[ResourceIgnoreDifferences],
    key: &ResourceKey,
    desired: &mut Value,
    live: &mut Value,
) {
    for entry in entries.iter().filter(|e| applies_to(e, key)) {
        for pointer in &entry.json_pointers {
            remove_pointer(desired, pointer);
            remove_pointer(live, pointer);
        }
        for expression in &entry.jq_path_expressions {
            if let Some(steps) = parse_jq(expression) {
                remove_jq(desired, &steps);
                remove_jq(live, &steps);
            }
        }
        if !entry.managed_fields_managers.is_empty() {
            let managers: Vec<&str> = entry
                .managed_fields_managers
                .iter()
                .map(String::as_str)
                .collect();
            let owned: Vec<Map<String, Value>> = managed_field_sets(live, &managers, None)
                .into_iter()
                .cloned()
                .collect();
            for fields in &owned {
                remove_owned(desired, fields);
                remove_owned(live, fields);
            }
        }
    }
}

/// `RespectIgnoreDifferences=true`: the fields of `desired` that the matching entries ignore take
/// their value in `live` (or are left out when `live` has none), so a sync leaves them as they are
/// in the cluster, as Argo CD pre-patches the desired state.
pub fn keep_live_ignored_fields(
    entries: &[ResourceIgnoreDifferences],
    desired: &mut Value,
    live: &Value,
) {
    let Some(key) = super::object::key_of(desired) else {
        return;
    };
    let mut stripped = desired.clone();
    let mut live_stripped = live.clone();
    strip_ignored(entries, &key, &mut stripped, &mut live_stripped);
    if stripped != *desired {
        restore_from_live(desired, &stripped, Some(live));
    }
}

/// Where `stripped` lacks what `desired` has, puts `live`'s value (or removes it).
fn restore_from_live(desired: &mut Value, stripped: &Value, live: Option<&Value>) {
    match (desired, stripped) {
        (Value::Object(fields), Value::Object(kept)) => {
            let names: Vec<String> = fields.keys().cloned().collect();
            for name in names {
                let live_field = live.and_then(|l| l.get(&name));
                match (kept.get(&name), live_field) {
                    (None, Some(value)) => {
                        fields.insert(name, value.clone());
                    }
                    (None, None) => {
                        fields.remove(&name);
                    }
                    (Some(kept_field), _) => {
                        if let Some(field) = fields.get_mut(&name)
                            && field != kept_field
                        {
                            restore_from_live(field, kept_field, live_field);
                        }
                    }
                }
            }
        }
        (Value::Array(items), Value::Array(kept)) if items.len() == kept.len() => {
            for (index, (item, kept_item)) in items.iter_mut().zip(kept).enumerate() {
                if item != kept_item {
                    let live_item = live.and_then(|l| l.get(index));
                    restore_from_live(item, kept_item, live_item);
                }
            }
        }
        (value, kept) => *value = live.cloned().unwrap_or_else(|| kept.clone()),
    }
}

/// Removes the value at an RFC 6901 pointer, if present.
pub fn remove_pointer(value: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    match value.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.remove(&last);
        }
        Some(Value::Array(items)) => {
            if let Ok(index) = last.parse::<usize>()
                && index < items.len()
            {
                items.remove(index);
            }
        }
        _ => {}
    }
}

/// Removes the fields of a managed-fields set (`f:`, `k:`, `v:` entries) that the set owns as a
/// whole (leaves); entries with children are descended into.
fn remove_owned(value: &mut Value, fields: &Map<String, Value>) {
    for (entry, children) in fields {
        let nested = children.as_object().filter(|c| c.keys().any(|k| k != "."));
        if let Some(name) = entry.strip_prefix("f:") {
            let Some(map) = value.as_object_mut() else {
                continue;
            };
            match nested {
                Some(children) => {
                    if let Some(child) = map.get_mut(name) {
                        remove_owned(child, children);
                    }
                }
                None => {
                    map.remove(name);
                }
            }
        } else if let Some(key) = entry.strip_prefix("k:") {
            let Ok(Value::Object(key)) = serde_json::from_str::<Value>(key) else {
                continue;
            };
            let Some(items) = value.as_array_mut() else {
                continue;
            };
            match nested {
                Some(children) => {
                    for item in items.iter_mut().filter(|i| matches_item_key(i, &key)) {
                        remove_owned(item, children);
                    }
                }
                None => items.retain(|i| !matches_item_key(i, &key)),
            }
        } else if let Some(v) = entry.strip_prefix("v:")
            && let (Ok(v), Some(items)) = (serde_json::from_str::<Value>(v), value.as_array_mut())
        {
            items.retain(|i| *i != v);
        }
    }
}

/// One step of a jq path expression.
#[derive(Clone, Debug, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
    Each,
    /// `select(.path == value)`.
    Select(Vec<Step>, Value),
}

/// Parses the supported subset of jq path expressions; `None` for anything else.
fn parse_jq(expression: &str) -> Option<Vec<Step>> {
    let mut steps = Vec::new();
    for stage in expression.split('|') {
        let stage = stage.trim();
        if let Some(inner) = stage
            .strip_prefix("select(")
            .and_then(|s| s.strip_suffix(')'))
        {
            let (path, value) = inner.split_once("==")?;
            let value: Value = serde_json::from_str(value.trim()).ok()?;
            steps.push(Step::Select(parse_path(path.trim())?, value));
        } else if stage != "." {
            steps.extend(parse_path(stage)?);
        }
    }
    Some(steps)
}

fn parse_path(path: &str) -> Option<Vec<Step>> {
    let mut steps = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            if let Some(quoted) = after.strip_prefix('"') {
                let end = quoted.find('"')?;
                steps.push(Step::Field(quoted[..end].to_string()));
                rest = &quoted[end + 1..];
            } else {
                let end = after.find(['.', '[']).unwrap_or(after.len());
                if end > 0 {
                    steps.push(Step::Field(after[..end].to_string()));
                }
                rest = &after[end..];
            }
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            let inner = after[..end].trim();
            if inner.is_empty() {
                steps.push(Step::Each);
            } else if let Some(name) = inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                steps.push(Step::Field(name.to_string()));
            } else {
                steps.push(Step::Index(inner.parse().ok()?));
            }
            rest = after[end + 1..]
                .strip_prefix('?')
                .unwrap_or(&after[end + 1..]);
        } else {
            return None;
        }
    }
    Some(steps)
}

/// The value `steps` reach from `value` (for `select` conditions: first match only).
fn get_path<'a>(value: &'a Value, steps: &[Step]) -> Option<&'a Value> {
    let mut current = value;
    for step in steps {
        current = match step {
            Step::Field(name) => current.get(name)?,
            Step::Index(i) => current.get(*i)?,
            Step::Each | Step::Select(..) => return None,
        };
    }
    Some(current)
}

/// Removes every value `steps` reach.
fn remove_jq(value: &mut Value, steps: &[Step]) {
    let Some((first, rest)) = steps.split_first() else {
        return;
    };
    // A select as the last step removes the selected element itself: handled by its parent.
    if rest.is_empty() {
        match (first, value) {
            (Step::Field(name), Value::Object(map)) => {
                map.remove(name);
            }
            (Step::Index(i), Value::Array(items)) if *i < items.len() => {
                items.remove(*i);
            }
            (Step::Each, Value::Array(items)) => items.clear(),
            (Step::Each, Value::Object(map)) => map.clear(),
            _ => {}
        }
        return;
    }
    if let (Step::Each, Some(Step::Select(path, wanted))) = (first, rest.first()) {
        let after = &rest[1..];
        if let Value::Array(items) = value {
            let selected = |item: &Value| get_path(item, path) == Some(wanted);
            if after.is_empty() {
                items.retain(|item| !selected(item));
            } else {
                for item in items.iter_mut().filter(|i| selected(i)) {
                    remove_jq(item, after);
                }
            }
        }
        return;
    }
    match (first, value) {
        (Step::Field(name), Value::Object(map)) => {
            if let Some(child) = map.get_mut(name) {
                remove_jq(child, rest);
            }
        }
        (Step::Index(i), Value::Array(items)) => {
            if let Some(child) = items.get_mut(*i) {
                remove_jq(child, rest);
            }
        }
        (Step::Each, Value::Array(items)) => {
            for item in items {
                remove_jq(item, rest);
            }
        }
        (Step::Each, Value::Object(map)) => {
            for child in map.values_mut() {
                remove_jq(child, rest);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(v: Value) -> ResourceIgnoreDifferences {
        serde_json::from_value(v).unwrap()
    }

    fn key() -> ResourceKey {
        ResourceKey::new("apps", "Deployment", "shop", "web")
    }

    fn stripped(entries: &[ResourceIgnoreDifferences], v: Value) -> Value {
        let mut d = v.clone();
        let mut l = v;
        strip_ignored(entries, &key(), &mut d, &mut l);
        assert_eq!(d, l);
        d
    }

    #[test]
    fn json_pointers_remove_fields_of_matching_objects_only() {
        let v = json!({"spec": {"replicas": 3, "paused": false}});
        let e = entry(
            json!({"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/replicas"]}),
        );
        assert_eq!(
            stripped(&[e], v.clone()),
            json!({"spec": {"paused": false}})
        );
        let other = entry(json!({"group": "apps", "kind": "Deployment", "name": "api",
                                 "jsonPointers": ["/spec/replicas"]}));
        assert_eq!(stripped(&[other], v.clone()), v);
        let core = entry(json!({"kind": "Deployment", "jsonPointers": ["/spec/replicas"]}));
        assert_eq!(stripped(&[core], v.clone()), v);
        let escaped = entry(json!({"group": "apps", "kind": "Deployment",
            "jsonPointers": ["/metadata/annotations/example.com~1owner"]}));
        assert_eq!(
            stripped(
                &[escaped],
                json!({"metadata": {"annotations": {"example.com/owner": "x", "b": "y"}}})
            ),
            json!({"metadata": {"annotations": {"b": "y"}}})
        );
    }

    #[test]
    fn jq_path_expressions() {
        let v = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "web:1", "env": [{"name": "A"}]},
            {"name": "sidecar", "image": "proxy"}]}}},
            "metadata": {"annotations": {"a.b/c": "1", "d": "2"}}});
        let cases = [
            (
                ".spec.template.spec.containers[] | select(.name == \"sidecar\")",
                json!({"spec": {"template": {"spec": {"containers": [
                    {"name": "web", "image": "web:1", "env": [{"name": "A"}]}]}}},
                    "metadata": {"annotations": {"a.b/c": "1", "d": "2"}}}),
            ),
            (
                ".spec.template.spec.containers[] | select(.name == \"web\") | .image",
                json!({"spec": {"template": {"spec": {"containers": [
                    {"name": "web", "env": [{"name": "A"}]},
                    {"name": "sidecar", "image": "proxy"}]}}},
                    "metadata": {"annotations": {"a.b/c": "1", "d": "2"}}}),
            ),
            (
                ".spec.template.spec.containers[].image",
                json!({"spec": {"template": {"spec": {"containers": [
                    {"name": "web", "env": [{"name": "A"}]}, {"name": "sidecar"}]}}},
                    "metadata": {"annotations": {"a.b/c": "1", "d": "2"}}}),
            ),
            (
                ".metadata.annotations.\"a.b/c\"",
                json!({"spec": v["spec"].clone(), "metadata": {"annotations": {"d": "2"}}}),
            ),
            (
                ".metadata.annotations[\"d\"]",
                json!({"spec": v["spec"].clone(), "metadata": {"annotations": {"a.b/c": "1"}}}),
            ),
            (".spec.template.spec.containers[1]", {
                let mut w = v.clone();
                w["spec"]["template"]["spec"]["containers"]
                    .as_array_mut()
                    .unwrap()
                    .remove(1);
                w
            }),
            ("not a path", v.clone()),
        ];
        for (expression, want) in cases {
            let e = entry(json!({"group": "apps", "kind": "Deployment",
                                 "jqPathExpressions": [expression]}));
            assert_eq!(stripped(&[e], v.clone()), want, "{expression}");
        }
    }

    #[test]
    fn managed_fields_managers() {
        let live = json!({"metadata": {"managedFields": [{"manager": "hpa", "operation": "Update",
            "fieldsV1": {"f:spec": {"f:replicas": {}}}}]}, "spec": {"replicas": 7, "paused": false}});
        let mut desired = json!({"spec": {"replicas": 2, "paused": false}});
        let mut l = live.clone();
        let e =
            entry(json!({"group": "apps", "kind": "Deployment", "managedFieldsManagers": ["hpa"]}));
        strip_ignored(&[e], &key(), &mut desired, &mut l);
        assert_eq!(desired, json!({"spec": {"paused": false}}));
        assert_eq!(l["spec"], json!({"paused": false}));
    }

    #[test]
    fn respect_ignore_differences_keeps_the_live_values() {
        let entries: Vec<ResourceIgnoreDifferences> = serde_json::from_value(serde_json::json!([
            {"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/replicas", "/spec/paused"]},
            {"group": "apps", "kind": "Deployment",
             "jqPathExpressions": [".spec.template.spec.containers[] | select(.name == \"side\") | .image"]}
        ]))
        .unwrap();
        let mut desired = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"replicas": 1, "paused": true, "template": {"spec": {"containers": [
                {"name": "app", "image": "app:2"}, {"name": "side", "image": "side:2"}]}}}});
        let live = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "uid": "u"},
            "spec": {"replicas": 5, "template": {"spec": {"containers": [
                {"name": "app", "image": "app:1"}, {"name": "side", "image": "side:1"}]}}}});
        keep_live_ignored_fields(&entries, &mut desired, &live);
        assert_eq!(desired["spec"]["replicas"], 5);
        assert_eq!(desired["spec"].get("paused"), None, "not live: left out");
        let containers = &desired["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["image"], "app:2", "not ignored: Git's");
        assert_eq!(containers[1]["image"], "side:1");
        assert_eq!(desired["metadata"].get("uid"), None);

        let mut other = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "web"}, "data": {"a": "1"}});
        let before = other.clone();
        keep_live_ignored_fields(&entries, &mut other, &serde_json::json!({}));
        assert_eq!(other, before);
    }
}
