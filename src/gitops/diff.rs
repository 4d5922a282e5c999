//! Drift: how a live object differs from what Git declares.
//!
//! Two checks, both pure:
//! - every field Git declares must be live with the same value ([`declared_drift`]). Fields Git
//!   does not declare (defaults, other managers' fields, status) are not compared, so server-side
//!   defaults never show as drift; values are normalised where the API server rewrites them
//!   (quantities, numbers, empty values Go omits);
//! - every field the last apply of the GitOps core owned (its `managedFields` entry) and Git no
//!   longer declares is drift too ([`removed_fields`]): removing a line from Git is a change.
//!
//! The `sluice.dev/revision` annotation is not compared: a commit that does not touch an object
//! leaves it Synced.
//!
//! Each drift carries a structured [`FieldPath`], so [`live_view`] can put the live values into a
//! copy of what Git declares: the live side of the unified diff (`super::unified`), which then
//! differs from Git exactly where drift was found.

use std::fmt;

use serde_json::{Map, Value};

use super::object::{FIELD_MANAGER, GIT_REVISION_ANNOTATION, gvk};

/// One step from an object down to one of its fields.
#[derive(Clone, Debug, PartialEq)]
pub enum Segment {
    /// A field of an object.
    Field(String),
    /// An element of a list, by position.
    Index(usize),
    /// An element of a list, by the values of its key fields (`name`, or the fields of a
    /// `managedFields` `k:` key).
    Item(Map<String, Value>),
    /// A value of a list kept as a set (`finalizers`; a `managedFields` `v:` entry).
    Member(Value),
}

/// Where a field is, e.g. `spec.template.spec.containers[name=web].image`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldPath(pub Vec<Segment>);

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Field(name) if i == 0 => write!(f, "{name}")?,
                Segment::Field(name) => write!(f, ".{name}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
                Segment::Item(key) => {
                    let label: Vec<String> = key
                        .iter()
                        .map(|(k, v)| format!("{k}={}", key_label(v)))
                        .collect();
                    write!(f, "[{}]", label.join(","))?;
                }
                Segment::Member(value) => write!(f, "[{}]", key_label(value))?,
            }
        }
        Ok(())
    }
}

/// One field that differs.
#[derive(Clone, Debug, PartialEq)]
pub struct Drift {
    pub path: FieldPath,
    /// The value Git declares; `None` when Git no longer declares the field.
    pub git: Option<Value>,
    /// The live value; `None` when the field is not live.
    pub live: Option<Value>,
}

const MAX_VALUE_CHARS: usize = 80;

fn show(value: Option<&Value>) -> String {
    match value {
        None => "(none)".to_string(),
        Some(v) => {
            let text = v.to_string();
            if text.chars().count() > MAX_VALUE_CHARS {
                let cut: String = text.chars().take(MAX_VALUE_CHARS - 3).collect();
                format!("{cut}...")
            } else {
                text
            }
        }
    }
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: Git {}, live {}",
            self.path,
            show(self.git.as_ref()),
            show(self.live.as_ref())
        )
    }
}

/// Every difference between `desired` and `live`: declared fields that differ, then fields the
/// GitOps core applied before and Git no longer declares.
pub fn diff(desired: &Value, live: &Value) -> Vec<Drift> {
    let desired = normalize_desired(desired);
    let mut out = declared_drift(&desired, live);
    out.extend(removed_fields(&desired, live));
    out
}

/// Rewrites what the API server stores differently from how it is written: a Secret's
/// `stringData` is stored base64-encoded in `data`.
pub fn normalize_desired(desired: &Value) -> Value {
    let mut out = desired.clone();
    let is_secret = gvk(desired).is_some_and(|g| g.group.is_empty() && g.kind == "Secret");
    if !is_secret {
        return out;
    }
    let Some(string_data) = out.get("stringData").and_then(Value::as_object).cloned() else {
        return out;
    };
    if let Some(root) = out.as_object_mut() {
        root.remove("stringData");
        let data = root
            .entry("data")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(data) = data.as_object_mut() {
            for (key, value) in string_data {
                let text = value
                    .as_str()
                    .map_or_else(|| value.to_string(), String::from);
                let encoded = serde_json::to_value(k8s_openapi::ByteString(text.into_bytes()))
                    .unwrap_or(Value::Null);
                data.insert(key, encoded);
            }
        }
    }
    out
}

/// Fields of `desired` that are not live with the same value.
pub fn declared_drift(desired: &Value, live: &Value) -> Vec<Drift> {
    let mut out = Vec::new();
    let (Some(desired), Some(live)) = (desired.as_object(), live.as_object()) else {
        return out;
    };
    for (key, git) in desired {
        match key.as_str() {
            "apiVersion" | "kind" | "status" => {}
            "metadata" => compare_metadata(git, live.get("metadata"), &mut out),
            _ => compare(
                &mut vec![Segment::Field(key.clone())],
                git,
                live.get(key),
                &mut out,
            ),
        }
    }
    out
}

fn compare_metadata(git: &Value, live: Option<&Value>, out: &mut Vec<Drift>) {
    for field in ["labels", "annotations", "finalizers"] {
        let Some(mut declared) = git.get(field).cloned() else {
            continue;
        };
        if field == "annotations"
            && let Some(map) = declared.as_object_mut()
        {
            map.remove(GIT_REVISION_ANNOTATION);
        }
        let mut path = vec![
            Segment::Field("metadata".to_string()),
            Segment::Field(field.to_string()),
        ];
        compare(&mut path, &declared, live.and_then(|m| m.get(field)), out);
    }
}

fn drift(path: &[Segment], git: &Value, live: Option<&Value>) -> Drift {
    Drift {
        path: FieldPath(path.to_vec()),
        git: Some(git.clone()),
        live: live.filter(|v| !v.is_null()).cloned(),
    }
}

/// Whether Go would omit the value (`omitempty`), so its absence from the live object is no drift.
fn is_vacuous(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_vacuous),
    }
}

fn compare(path: &mut Vec<Segment>, git: &Value, live: Option<&Value>, out: &mut Vec<Drift>) {
    let live = live.filter(|v| !v.is_null());
    match (git, live) {
        // A null in Git states no value.
        (Value::Null, _) => {}
        (_, None) => {
            if !is_vacuous(git) {
                out.push(drift(path, git, None));
            }
        }
        (Value::Object(g), Some(Value::Object(l))) => {
            for (key, value) in g {
                path.push(Segment::Field(key.clone()));
                compare(path, value, l.get(key), out);
                path.pop();
            }
        }
        (Value::Array(g), Some(Value::Array(l))) => compare_lists(path, g, l, out),
        (Value::Object(_) | Value::Array(_), Some(_)) => out.push(drift(path, git, live)),
        (_, Some(l)) => {
            if !scalar_eq(path, git, l) {
                out.push(drift(path, git, live));
            }
        }
    }
}

/// Fields that identify an element of a list the API server merges by key (containers, env,
/// volumes, ports, mounts), in the order they are tried.
const MERGE_KEYS: &[&str] = &[
    "name",
    "containerPort",
    "port",
    "mountPath",
    "devicePath",
    "ip",
];

/// The merge key of a list of objects: the first of [`MERGE_KEYS`] every element has.
fn merge_key(items: &[Value]) -> Option<&'static str> {
    if items.is_empty() || !items.iter().all(Value::is_object) {
        return None;
    }
    MERGE_KEYS.iter().copied().find(|key| {
        items.iter().all(|item| {
            item.get(*key)
                .is_some_and(|v| v.is_string() || v.is_number())
        })
    })
}

fn key_label(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), String::from)
}

fn compare_lists(path: &mut Vec<Segment>, git: &[Value], live: &[Value], out: &mut Vec<Drift>) {
    if let Some(key) = merge_key(git) {
        // Keyed: each element Git declares must be live; elements other managers added are theirs.
        for item in git {
            let id = &item[key];
            let mut item_key = Map::new();
            item_key.insert(key.to_string(), id.clone());
            path.push(Segment::Item(item_key));
            let found = live
                .iter()
                .find(|l| l.get(key).is_some_and(|v| scalar_eq(path, id, v)));
            match found {
                Some(l) => compare(path, item, Some(l), out),
                None => out.push(drift(path, item, None)),
            }
            path.pop();
        }
        return;
    }
    if git.len() != live.len() {
        out.push(Drift {
            path: FieldPath(path.clone()),
            git: Some(Value::Array(git.to_vec())),
            live: Some(Value::Array(live.to_vec())),
        });
        return;
    }
    for (index, (g, l)) in git.iter().zip(live).enumerate() {
        path.push(Segment::Index(index));
        compare(path, g, Some(l), out);
        path.pop();
    }
}

/// Map keys whose values are resource quantities (`100m` = `0.1`, `1Gi` = `1024Mi`).
const QUANTITY_MAPS: &[&str] = &[
    "limits",
    "requests",
    "hard",
    "capacity",
    "allocatable",
    "overhead",
];
const QUANTITY_FIELDS: &[&str] = &["storage", "sizeLimit"];

fn is_quantity_path(path: &[Segment]) -> bool {
    let name = |segment: Option<&Segment>| match segment {
        Some(Segment::Field(name)) => name.clone(),
        _ => String::new(),
    };
    let leaf = name(path.last());
    let parent = name(path.len().checked_sub(2).and_then(|i| path.get(i)));
    let (leaf, parent) = (leaf.as_str(), parent.as_str());
    QUANTITY_MAPS.contains(&parent) || QUANTITY_FIELDS.contains(&leaf)
}

fn scalar_eq(path: &[Segment], git: &Value, live: &Value) -> bool {
    if git == live {
        return true;
    }
    if let (Some(a), Some(b)) = (git.as_f64(), live.as_f64()) {
        return a == b;
    }
    if is_quantity_path(path) {
        let text = |v: &Value| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        if let (Some(a), Some(b)) = (
            text(git).as_deref().and_then(parse_quantity),
            text(live).as_deref().and_then(parse_quantity),
        ) {
            return (a - b).abs() <= f64::EPSILON * a.abs().max(b.abs()).max(1.0) * 16.0;
        }
    }
    false
}

/// The value of a Kubernetes resource quantity (`500m`, `1.5Gi`, `2e3`, `10k`).
pub fn parse_quantity(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0_f64.powi(2),
        "Gi" => 1024.0_f64.powi(3),
        "Ti" => 1024.0_f64.powi(4),
        "Pi" => 1024.0_f64.powi(5),
        "Ei" => 1024.0_f64.powi(6),
        exponent => {
            let digits = exponent
                .strip_prefix('e')
                .or_else(|| exponent.strip_prefix('E'))?;
            10f64.powi(digits.parse().ok()?)
        }
    };
    Some(number * factor)
}

/// Fields the GitOps core's last apply owns (`managedFields` of manager [`FIELD_MANAGER`],
/// operation `Apply`) that `desired` no longer declares but are still live.
pub fn removed_fields(desired: &Value, live: &Value) -> Vec<Drift> {
    let mut out = Vec::new();
    for fields in managed_field_sets(live, &[FIELD_MANAGER], Some("Apply")) {
        walk_owned(&mut Vec::new(), fields, Some(desired), Some(live), &mut out);
    }
    out
}

/// The `fieldsV1` sets of the `managedFields` entries of `managers` (and `operation`, if given).
pub fn managed_field_sets<'a>(
    live: &'a Value,
    managers: &[&str],
    operation: Option<&str>,
) -> Vec<&'a Map<String, Value>> {
    live.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|entry| {
            entry
                .get("manager")
                .and_then(Value::as_str)
                .is_some_and(|m| managers.contains(&m))
        })
        .filter(|entry| {
            operation.is_none_or(|op| entry.get("operation").and_then(Value::as_str) == Some(op))
        })
        .filter_map(|entry| entry.get("fieldsV1").and_then(Value::as_object))
        .collect()
}

/// Whether the element `item` of a list has every key/value of a `k:{...}` field set key.
pub fn matches_item_key(item: &Value, key: &Map<String, Value>) -> bool {
    key.iter().all(|(field, value)| {
        item.get(field)
            .is_some_and(|v| v == value || v.as_f64().is_some_and(|n| Some(n) == value.as_f64()))
    })
}

fn find_item<'a>(list: Option<&'a Value>, key: &Map<String, Value>) -> Option<&'a Value> {
    list.and_then(Value::as_array)?
        .iter()
        .find(|item| matches_item_key(item, key))
}

/// The element Git declares for a `k:{...}` key. Key fields Git leaves out were defaulted by the
/// API server (a Service port's `protocol: TCP`), so only the fields Git writes must match.
fn find_declared_item<'a>(list: Option<&'a Value>, key: &Map<String, Value>) -> Option<&'a Value> {
    let list = list.and_then(Value::as_array)?;
    list.get(declared_item_index(list, key)?)
}

fn is_skipped_owned_field(path: &[Segment], name: &str) -> bool {
    match path {
        [] => matches!(name, "status" | "apiVersion" | "kind"),
        [Segment::Field(only)] if only == "metadata" => !matches!(name, "labels" | "annotations"),
        _ => false,
    }
}

fn walk_owned(
    path: &mut Vec<Segment>,
    fields: &Map<String, Value>,
    desired: Option<&Value>,
    live: Option<&Value>,
    out: &mut Vec<Drift>,
) {
    for (entry, children) in fields {
        let children = children.as_object();
        if let Some(name) = entry.strip_prefix("f:") {
            if is_skipped_owned_field(path, name) {
                continue;
            }
            let d = desired.and_then(|d| d.get(name)).filter(|v| !v.is_null());
            let l = live.and_then(|l| l.get(name)).filter(|v| !v.is_null());
            path.push(Segment::Field(name.to_string()));
            match (d, l) {
                (None, Some(l)) => out.push(Drift {
                    path: FieldPath(path.clone()),
                    git: None,
                    live: Some(restrict_to_fields(l, children)),
                }),
                (Some(_), Some(_)) => {
                    if let Some(children) = children {
                        walk_owned(path, children, d, l, out);
                    }
                }
                _ => {}
            }
            path.pop();
        } else if let Some(key) = entry.strip_prefix("k:") {
            let Ok(Value::Object(key)) = serde_json::from_str::<Value>(key) else {
                continue;
            };
            let (d, l) = (find_declared_item(desired, &key), find_item(live, &key));
            path.push(Segment::Item(key.clone()));
            match (d, l) {
                (None, Some(l)) => out.push(Drift {
                    path: FieldPath(path.clone()),
                    git: None,
                    live: Some(restrict_item(l, &key, children)),
                }),
                (Some(_), Some(_)) => {
                    if let Some(children) = children {
                        walk_owned(path, children, d, l, out);
                    }
                }
                _ => {}
            }
            path.pop();
        } else if let Some(value) = entry.strip_prefix("v:") {
            let Ok(value) = serde_json::from_str::<Value>(value) else {
                continue;
            };
            let contains = |list: Option<&Value>| {
                list.and_then(Value::as_array)
                    .is_some_and(|a| a.contains(&value))
            };
            if !contains(desired) && contains(live) {
                let mut at = path.clone();
                at.push(Segment::Member(value.clone()));
                out.push(Drift {
                    path: FieldPath(at),
                    git: None,
                    live: Some(value),
                });
            }
        }
    }
}

/// `live` restricted to a `managedFields` field set: what an apply owned, without what the API
/// server defaulted or other managers added inside it. A leaf (no child fields) is kept whole.
fn restrict_to_fields(live: &Value, fields: Option<&Map<String, Value>>) -> Value {
    let Some(fields) = fields.filter(|f| f.keys().any(|k| k != ".")) else {
        return live.clone();
    };
    match live {
        Value::Object(object) => Value::Object(
            fields
                .iter()
                .filter_map(|(entry, children)| {
                    let name = entry.strip_prefix("f:")?;
                    let value = object.get(name)?;
                    Some((
                        name.to_string(),
                        restrict_to_fields(value, children.as_object()),
                    ))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .filter_map(|item| {
                    fields.iter().find_map(|(entry, children)| {
                        if let Some(key) = entry.strip_prefix("k:") {
                            let Ok(Value::Object(key)) = serde_json::from_str::<Value>(key) else {
                                return None;
                            };
                            matches_item_key(item, &key)
                                .then(|| restrict_item(item, &key, children.as_object()))
                        } else {
                            let value = entry.strip_prefix("v:")?;
                            let value = serde_json::from_str::<Value>(value).ok()?;
                            (&value == item).then(|| item.clone())
                        }
                    })
                })
                .collect(),
        ),
        _ => live.clone(),
    }
}

/// A list element restricted to its field set, with the key fields that identify it (a field set
/// need not list them).
fn restrict_item(
    item: &Value,
    key: &Map<String, Value>,
    fields: Option<&Map<String, Value>>,
) -> Value {
    let mut out = restrict_to_fields(item, fields);
    if let (Some(out), Some(item)) = (out.as_object_mut(), item.as_object()) {
        for field in key.keys() {
            if let Some(value) = item.get(field) {
                out.insert(field.clone(), value.clone());
            }
        }
    }
    out
}

/// The live counterpart of `desired` (as [`normalize_desired`] returns it) for showing a diff:
/// `desired` with each drift's live value put in its place, so it holds exactly the fields Git
/// declares plus those Git no longer declares, and the two differ only where [`diff`] found drift.
/// Values equal after normalisation (`500m` and `0.5`) therefore read as Git writes them.
pub fn live_view(desired: &Value, drifts: &[Drift]) -> Value {
    let mut view = desired.clone();
    for drift in drifts {
        let Some((last, parents)) = drift.path.0.split_last() else {
            continue;
        };
        let mut parent = Some(&mut view);
        for segment in parents {
            parent = parent.and_then(|p| child_mut(p, segment));
        }
        if let Some(parent) = parent {
            let live = match (&drift.git, &drift.live) {
                (Some(git), Some(live)) => Some(restrict_to_shape(git, live)),
                (_, live) => live.clone(),
            };
            put(parent, last, live);
        }
    }
    view
}

/// The live value restricted to the fields Git declares, element by element for lists: an atomic
/// list whose length changed is drift as a whole, but the defaults the API server filled into
/// its elements are not.
fn restrict_to_shape(git: &Value, live: &Value) -> Value {
    match (git, live) {
        (Value::Object(g), Value::Object(l)) => Value::Object(
            l.iter()
                .filter_map(|(k, v)| Some((k.clone(), restrict_to_shape(g.get(k)?, v))))
                .collect(),
        ),
        (Value::Array(g), Value::Array(l)) => Value::Array(
            l.iter()
                .enumerate()
                .map(|(i, v)| {
                    g.get(i)
                        .map_or_else(|| v.clone(), |g| restrict_to_shape(g, v))
                })
                .collect(),
        ),
        _ => live.clone(),
    }
}

fn declared_item_index(list: &[Value], key: &Map<String, Value>) -> Option<usize> {
    list.iter().position(|item| {
        let declared: Map<String, Value> = key
            .iter()
            .filter(|(field, _)| item.get(field.as_str()).is_some())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        !declared.is_empty() && matches_item_key(item, &declared)
    })
}

fn child_mut<'a>(value: &'a mut Value, segment: &Segment) -> Option<&'a mut Value> {
    match (value, segment) {
        (Value::Object(map), Segment::Field(name)) => map.get_mut(name),
        (Value::Array(list), Segment::Index(index)) => list.get_mut(*index),
        (Value::Array(list), Segment::Item(key)) => {
            let index = declared_item_index(list, key)?;
            list.get_mut(index)
        }
        _ => None,
    }
}

/// Sets (or, for `None`, removes) the field `segment` of `parent`.
fn put(parent: &mut Value, segment: &Segment, value: Option<Value>) {
    match (parent, segment) {
        (Value::Object(map), Segment::Field(name)) => match value {
            Some(value) => {
                map.insert(name.clone(), value);
            }
            None => {
                map.remove(name);
            }
        },
        (Value::Array(list), Segment::Index(index)) => match value {
            Some(value) => match list.get_mut(*index) {
                Some(slot) => *slot = value,
                None => list.push(value),
            },
            None if *index < list.len() => {
                list.remove(*index);
            }
            None => {}
        },
        (Value::Array(list), Segment::Item(key)) => match (declared_item_index(list, key), value) {
            (Some(index), Some(value)) => {
                if let Some(slot) = list.get_mut(index) {
                    *slot = value;
                }
            }
            (Some(index), None) => {
                list.remove(index);
            }
            (None, Some(value)) => list.push(value),
            (None, None) => {}
        },
        (Value::Array(list), Segment::Member(member))
            if value.is_some() && !list.contains(member) =>
        {
            list.push(member.clone());
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(drifts: &[Drift]) -> Vec<String> {
        drifts.iter().map(|d| d.path.to_string()).collect()
    }

    fn deployment(replicas: i64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"},
                         "annotations": {"sluice.dev/revision": "a".repeat(40)}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}, "creationTimestamp": null},
                                  "spec": {"containers": [{"name": "web", "image": image,
                                      "ports": [{"containerPort": 8080}],
                                      "resources": {"requests": {"cpu": "0.5", "memory": "1Gi"}}}]}}}
        })
    }

    /// The Deployment as the API server returns it: defaults filled in, quantities canonical.
    fn live_deployment(replicas: i64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"},
                         "generation": 4, "uid": "u",
                         "annotations": {"sluice.dev/revision": "b".repeat(40),
                                         "deployment.kubernetes.io/revision": "3"}},
            "spec": {"replicas": replicas, "progressDeadlineSeconds": 600,
                     "selector": {"matchLabels": {"app": "web"}},
                     "strategy": {"type": "RollingUpdate"},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [
                                      {"name": "istio-proxy", "image": "proxy"},
                                      {"name": "web", "image": image, "imagePullPolicy": "IfNotPresent",
                                       "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                                       "resources": {"requests": {"cpu": "500m", "memory": "1024Mi"}}}],
                                      "restartPolicy": "Always", "dnsPolicy": "ClusterFirst"}}},
            "status": {"replicas": replicas}
        })
    }

    #[test]
    fn defaults_normalised_values_and_other_managers_items_are_no_drift() {
        let drifts = diff(&deployment(3, "web:1"), &live_deployment(3, "web:1"));
        assert_eq!(drifts, []);
    }

    #[test]
    fn g4_live_edits_are_drift_with_both_values() {
        let drifts = diff(&deployment(3, "web:1"), &live_deployment(1, "web:2"));
        assert_eq!(
            paths(&drifts),
            [
                "spec.replicas",
                "spec.template.spec.containers[name=web].image"
            ]
        );
        assert_eq!(drifts[0].to_string(), "spec.replicas: Git 3, live 1");
    }

    #[test]
    fn missing_keyed_items_and_changed_atomic_lists_are_drift() {
        let desired = json!({"apiVersion": "v1", "kind": "Pod", "spec": {
            "containers": [{"name": "a", "args": ["x", "y"]}, {"name": "b"}]}});
        let live = json!({"apiVersion": "v1", "kind": "Pod", "spec": {
            "containers": [{"name": "a", "args": ["x"]}]}});
        assert_eq!(
            paths(&diff(&desired, &live)),
            ["spec.containers[name=a].args", "spec.containers[name=b]"]
        );
    }

    #[test]
    fn revision_annotation_and_vacuous_values_are_not_compared() {
        let desired = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "annotations": {"sluice.dev/revision": "new"}},
            "data": {}, "immutable": false});
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "annotations": {"sluice.dev/revision": "old"}}});
        assert_eq!(diff(&desired, &live), []);
    }

    #[test]
    fn secret_string_data_compares_with_data() {
        let desired = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "stringData": {"token": "abc"}});
        let live = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"token": "YWJj"}});
        assert_eq!(diff(&desired, &live), []);
        let changed = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"token": "eHl6"}});
        assert_eq!(paths(&diff(&desired, &changed)), ["data.token"]);
    }

    #[test]
    fn quantities() {
        for (a, b) in [
            ("500m", "0.5"),
            ("1Gi", "1024Mi"),
            ("2e3", "2k"),
            ("1", "1000m"),
        ] {
            assert_eq!(parse_quantity(a), parse_quantity(b), "{a} = {b}");
        }
        assert_eq!(parse_quantity("lots"), None);
        let desired = json!({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [
            {"name": "a", "resources": {"limits": {"cpu": 1}}}]}});
        let live = json!({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [
            {"name": "a", "resources": {"limits": {"cpu": "1"}}}]}});
        assert_eq!(diff(&desired, &live), []);
    }

    #[test]
    fn g3_fields_removed_from_git_that_the_last_apply_owned_are_drift() {
        let desired = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "labels": {"keep": "1"}},
            "data": {"a": "1"}});
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "labels": {"keep": "1", "gone": "2", "theirs": "3"},
                "managedFields": [
                    {"manager": "sluice-gitops", "operation": "Apply", "fieldsV1": {
                        "f:data": {"f:a": {}, "f:b": {}},
                        "f:metadata": {"f:labels": {"f:keep": {}, "f:gone": {}}}}},
                    {"manager": "kubectl", "operation": "Update", "fieldsV1": {
                        "f:metadata": {"f:labels": {"f:theirs": {}}}}}
                ]},
            "data": {"a": "1", "b": "2"}});
        let drifts = diff(&desired, &live);
        assert_eq!(paths(&drifts), ["data.b", "metadata.labels.gone"]);
        assert_eq!(drifts[0].git, None);
        assert_eq!(drifts[0].to_string(), "data.b: Git (none), live \"2\"");
    }

    #[test]
    fn list_keys_the_server_defaulted_still_match_what_git_declares() {
        let desired = json!({"apiVersion": "v1", "kind": "Service",
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}});
        let live = json!({"apiVersion": "v1", "kind": "Service",
            "spec": {"selector": {"app": "web"},
                     "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]},
            "metadata": {"managedFields": [{"manager": "sluice-gitops", "operation": "Apply",
                "fieldsV1": {"f:spec": {"f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {
                    ".": {}, "f:port": {}}}, "f:selector": {}}}}]}});
        assert_eq!(diff(&desired, &live), []);
        let other_port = json!({"apiVersion": "v1", "kind": "Service",
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 81}]}});
        assert_eq!(
            paths(&removed_fields(&other_port, &live)),
            ["spec.ports[port=80,protocol=TCP]"]
        );
    }

    #[test]
    fn live_view_puts_each_drift_where_git_declares_it() {
        let desired = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "s", "finalizers": ["a"]},
            "spec": {"ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": "web"}}});
        let live = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "s", "finalizers": ["a", "b"], "managedFields": [
                {"manager": "sluice-gitops", "operation": "Apply", "fieldsV1": {
                    "f:metadata": {"f:finalizers": {"v:\"a\"": {}, "v:\"b\"": {}}},
                    "f:spec": {"f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {
                        ".": {}, "f:port": {}, "f:targetPort": {}}},
                        "f:selector": {}, "f:type": {}}}}]},
            "spec": {"ports": [{"port": 80, "protocol": "TCP", "targetPort": 9090}],
                     "selector": {"app": "web", "extra": "x"}, "type": "NodePort",
                     "clusterIP": "10.0.0.1"}});
        let drifts = diff(&desired, &live);
        assert_eq!(
            paths(&drifts),
            [
                "metadata.finalizers",
                "spec.ports[port=80].targetPort",
                "spec.type",
            ]
        );
        assert_eq!(
            live_view(&desired, &drifts),
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "s", "finalizers": ["a", "b"]},
                "spec": {"ports": [{"port": 80, "targetPort": 9090}], "selector": {"app": "web"},
                         "type": "NodePort"}})
        );
        // A value of a set list (a `v:` entry) Git no longer declares joins the list.
        let member = Drift {
            path: FieldPath(vec![
                Segment::Field("spec".to_string()),
                Segment::Field("finalizers".to_string()),
                Segment::Member(json!("b")),
            ]),
            git: None,
            live: Some(json!("b")),
        };
        assert_eq!(
            live_view(&json!({"spec": {"finalizers": ["a"]}}), &[member]),
            json!({"spec": {"finalizers": ["a", "b"]}})
        );
    }

    #[test]
    fn removed_keyed_list_items_are_drift() {
        let desired = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "env": [{"name": "A", "value": "1"}]}]}}}});
        let live = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]}}},
            "metadata": {"managedFields": [{"manager": "sluice-gitops", "operation": "Apply",
            "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"web\"}": {".": {}, "f:env": {
                    "k:{\"name\":\"A\"}": {".": {}, "f:value": {}},
                    "k:{\"name\":\"B\"}": {".": {}, "f:value": {}}}}}}}}}}]}});
        assert_eq!(
            paths(&removed_fields(&desired, &live)),
            ["spec.template.spec.containers[name=web].env[name=B]"]
        );
    }
}
