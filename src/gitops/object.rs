//! Manifests as JSON values: their identity, the tracking annotations the GitOps core puts on them,
//! and the checks that reject an object Git declares badly (docs/behaviour.md G11).

use std::fmt;

use kube::core::GroupVersionKind;
use serde_json::{Map, Value};
use thiserror::Error;

/// Server-side apply field manager of everything the GitOps core writes.
pub const FIELD_MANAGER: &str = crate::api::keys::GITOPS_FIELD_MANAGER;
pub use crate::api::keys::{
    APPLICATION_ANNOTATION, GIT_REVISION_ANNOTATION, TRACKING_LABEL, TRACKING_LABEL_VALUE,
};
/// Per-object sync options, e.g. `Prune=false` (also read under Argo CD's name; see
/// [`super::sync_options`]).
pub const SYNC_OPTIONS_ANNOTATION: &str = "sluice.dev/sync-options";
/// Argo CD's per-object sync options annotation.
pub const ARGO_SYNC_OPTIONS_ANNOTATION: &str = "argocd.argoproj.io/sync-options";

/// Identity of an object: the version is left out, as Argo CD does, since one object is served in
/// several versions.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceKey {
    /// API group; empty for the core group.
    pub group: String,
    pub kind: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
}

impl ResourceKey {
    pub fn new(group: &str, kind: &str, namespace: &str, name: &str) -> Self {
        Self {
            group: group.to_string(),
            kind: kind.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        };
        if self.namespace.is_empty() {
            write!(f, "{kind} {}", self.name)
        } else {
            write!(f, "{kind} {}/{}", self.namespace, self.name)
        }
    }
}

/// A manifest Git declares that cannot be applied as written.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ManifestError {
    #[error("a manifest is not a mapping: {0}")]
    NotAnObject(String),
    #[error("a manifest has no apiVersion and kind: {0}")]
    NoType(String),
    #[error("{kind} has no metadata.name: {snippet}")]
    NoName { kind: String, snippet: String },
    #[error("{0} is declared twice")]
    Duplicate(ResourceKey),
}

/// `<namespace>/<name>`: the value of [`APPLICATION_ANNOTATION`].
pub fn tracking_id(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// Splits `apiVersion` into group and version (`v1` is the core group).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.rsplit_once('/').unwrap_or(("", api_version))
}

pub fn str_at<'a>(obj: &'a Value, pointer: &str) -> Option<&'a str> {
    obj.pointer(pointer).and_then(Value::as_str)
}

/// The object's group, version and kind, when it has `apiVersion` and `kind`.
pub fn gvk(obj: &Value) -> Option<GroupVersionKind> {
    let api_version = str_at(obj, "/apiVersion").filter(|s| !s.is_empty())?;
    let kind = str_at(obj, "/kind").filter(|s| !s.is_empty())?;
    let (group, version) = split_api_version(api_version);
    Some(GroupVersionKind::gvk(group, version, kind))
}

/// The object's identity as it stands (the namespace as written, empty when absent).
pub fn key_of(obj: &Value) -> Option<ResourceKey> {
    let gvk = gvk(obj)?;
    let name = str_at(obj, "/metadata/name")?;
    let namespace = str_at(obj, "/metadata/namespace").unwrap_or_default();
    Some(ResourceKey::new(&gvk.group, &gvk.kind, namespace, name))
}

pub fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

/// Sets `metadata.annotations[key]`, creating the maps on the way.
pub fn set_annotation(obj: &mut Value, key: &str, value: &str) {
    set_metadata_map_entry(obj, "annotations", key, value);
}

/// Sets `metadata.labels[key]`, creating the maps on the way.
pub fn set_label(obj: &mut Value, key: &str, value: &str) {
    set_metadata_map_entry(obj, "labels", key, value);
}

fn set_metadata_map_entry(obj: &mut Value, map: &str, key: &str, value: &str) {
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    let metadata = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !metadata.is_object() {
        *metadata = Value::Object(Map::new());
    }
    let Some(metadata) = metadata.as_object_mut() else {
        return;
    };
    let entries = metadata
        .entry(map)
        .or_insert_with(|| Value::Object(Map::new()));
    if !entries.is_object() {
        *entries = Value::Object(Map::new());
    }
    if let Some(entries) = entries.as_object_mut() {
        entries.insert(key.to_string(), Value::String(value.to_string()));
    }
}

/// Sets `metadata.namespace` (or removes it with `None`).
pub fn set_namespace(obj: &mut Value, namespace: Option<&str>) {
    let Some(metadata) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    match namespace {
        Some(ns) => {
            metadata.insert("namespace".into(), Value::String(ns.to_string()));
        }
        None => {
            metadata.remove("namespace");
        }
    }
}

/// Whether another object controls this one (a ReplicaSet of a Deployment, a Pod of a ReplicaSet):
/// such objects inherit annotations from their owner but are not the Application's own.
pub fn has_controller_owner(obj: &Value) -> bool {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|owners| {
            owners
                .iter()
                .any(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
        })
}

/// Whether `live` was applied by the Application `tracking_id` and is its own object.
pub fn is_tracked_by(live: &Value, tracking_id: &str) -> bool {
    annotation(live, APPLICATION_ANNOTATION) == Some(tracking_id) && !has_controller_owner(live)
}

/// A short, single-line excerpt of a manifest for error messages.
pub fn snippet(obj: &Value) -> String {
    let text = obj.to_string();
    if text.chars().count() > 120 {
        let cut: String = text.chars().take(117).collect();
        format!("{cut}...")
    } else {
        text
    }
}

/// Checks that every manifest is an object with a type and a name, and that none is declared twice
/// (after namespaces are defaulted).
pub fn check_manifests(objects: &[Value]) -> Result<(), ManifestError> {
    let mut seen = std::collections::BTreeSet::new();
    for obj in objects {
        if !obj.is_object() {
            return Err(ManifestError::NotAnObject(snippet(obj)));
        }
        let Some(gvk) = gvk(obj) else {
            return Err(ManifestError::NoType(snippet(obj)));
        };
        let Some(key) = key_of(obj).filter(|k| !k.name.is_empty()) else {
            return Err(ManifestError::NoName {
                kind: gvk.kind,
                snippet: snippet(obj),
            });
        };
        if !seen.insert(key.clone()) {
            return Err(ManifestError::Duplicate(key));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_and_tracking() {
        let mut obj = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop"}});
        assert_eq!(
            key_of(&obj),
            Some(ResourceKey::new("apps", "Deployment", "shop", "web"))
        );
        assert_eq!(
            key_of(&obj).unwrap().to_string(),
            "Deployment.apps shop/web"
        );
        set_annotation(&mut obj, APPLICATION_ANNOTATION, "argocd/shop");
        assert!(is_tracked_by(&obj, "argocd/shop"));
        assert!(!is_tracked_by(&obj, "argocd/other"));
        obj["metadata"]["ownerReferences"] = json!([{"kind": "Rollout", "controller": true}]);
        assert!(!is_tracked_by(&obj, "argocd/shop"));
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}});
        assert_eq!(key_of(&ns).unwrap().to_string(), "Namespace shop");
    }

    #[test]
    fn bad_manifests_are_named() {
        let ok = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}});
        assert_eq!(check_manifests(std::slice::from_ref(&ok)), Ok(()));
        assert!(matches!(
            check_manifests(&[json!("text")]),
            Err(ManifestError::NotAnObject(_))
        ));
        assert!(matches!(
            check_manifests(&[json!({"kind": "ConfigMap", "metadata": {"name": "a"}})]),
            Err(ManifestError::NoType(_))
        ));
        assert!(matches!(
            check_manifests(&[json!({"apiVersion": "v1", "kind": "ConfigMap"})]),
            Err(ManifestError::NoName { .. })
        ));
        assert_eq!(
            check_manifests(&[ok.clone(), ok]),
            Err(ManifestError::Duplicate(ResourceKey::new(
                "",
                "ConfigMap",
                "",
                "a"
            )))
        );
    }
}
