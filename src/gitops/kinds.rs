//! Which API resource serves a kind, and whether it is namespaced: API discovery per group version
//! and kind, cached for the life of the process (a kind that is missing is asked again next time,
//! since its CRD may be installed meanwhile).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use kube::Client;
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{Scope, pinned_kind};
use serde_json::Value;
use thiserror::Error;

use super::object::str_at;

/// A served kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kind {
    pub resource: ApiResource,
    pub namespaced: bool,
}

#[derive(Debug, Error)]
pub enum KindError {
    #[error("API discovery of {group}/{version} {kind}{on} failed: {source}")]
    Discovery {
        group: String,
        version: String,
        kind: String,
        /// ` on cluster <name> (<server>)` for another cluster than the controller's own.
        on: String,
        #[source]
        source: kube::Error,
    },
}

/// Discovery results shared by every reconcile.
#[derive(Clone)]
pub struct KindResolver {
    client: Client,
    known: Arc<Mutex<HashMap<GroupVersionKind, Kind>>>,
    /// Named in errors: empty for the controller's own cluster.
    on: String,
}

impl KindResolver {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            known: Arc::default(),
            on: String::new(),
        }
    }

    /// Discovery on another cluster, named `cluster` in errors.
    pub fn for_cluster(client: Client, cluster: &str) -> Self {
        Self {
            on: format!(" on cluster {cluster}"),
            ..Self::new(client)
        }
    }

    /// The kind, `None` when the API server does not serve it.
    pub async fn resolve(&self, gvk: &GroupVersionKind) -> Result<Option<Kind>, KindError> {
        if let Some(kind) = self.lock().get(gvk) {
            return Ok(Some(kind.clone()));
        }
        match pinned_kind(&self.client, gvk).await {
            Ok((resource, caps)) => {
                let kind = Kind {
                    resource,
                    namespaced: caps.scope == Scope::Namespaced,
                };
                self.lock().insert(gvk.clone(), kind.clone());
                Ok(Some(kind))
            }
            Err(kube::Error::Discovery(_)) => Ok(None),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
            Err(source) => Err(KindError::Discovery {
                group: gvk.group.clone(),
                version: gvk.version.clone(),
                kind: gvk.kind.clone(),
                on: self.on.clone(),
                source,
            }),
        }
    }

    /// Forgets a kind (its CRD may have changed scope or been removed).
    pub fn forget(&self, gvk: &GroupVersionKind) {
        self.lock().remove(gvk);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<GroupVersionKind, Kind>> {
        // The map holds plain values; a panic elsewhere leaves it usable.
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The kinds the CRDs among `objects` define, with their scope: they can be declared next to
/// their CRD although the API server does not serve them yet.
pub fn kinds_defined_by_crds(objects: &[Value]) -> Vec<(GroupVersionKind, bool)> {
    let mut out = Vec::new();
    for crd in objects.iter().filter(|o| {
        str_at(o, "/kind") == Some("CustomResourceDefinition")
            && str_at(o, "/apiVersion").is_some_and(|v| v.starts_with("apiextensions.k8s.io/"))
    }) {
        let (Some(group), Some(kind)) =
            (str_at(crd, "/spec/group"), str_at(crd, "/spec/names/kind"))
        else {
            continue;
        };
        let namespaced = str_at(crd, "/spec/scope") != Some("Cluster");
        for version in crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| str_at(v, "/name"))
        {
            out.push((GroupVersionKind::gvk(group, version, kind), namespaced));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn crds_in_the_same_sync_define_kinds() {
        let objects = vec![
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                   "spec": {"group": "example.com", "scope": "Cluster",
                            "names": {"kind": "Widget", "plural": "widgets"},
                            "versions": [{"name": "v1"}, {"name": "v2"}]}}),
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                   "spec": {"group": "example.com", "scope": "Namespaced",
                            "names": {"kind": "Gadget"}, "versions": [{"name": "v1"}]}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap"}),
        ];
        assert_eq!(
            kinds_defined_by_crds(&objects),
            [
                (GroupVersionKind::gvk("example.com", "v1", "Widget"), false),
                (GroupVersionKind::gvk("example.com", "v2", "Widget"), false),
                (GroupVersionKind::gvk("example.com", "v1", "Gadget"), true),
            ]
        );
    }
}
