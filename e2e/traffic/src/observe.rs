//! Reads Rollouts and the objects deciding their traffic split from the cluster.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use serde_json::Value;

use crate::split::mesh::MeshRef;
use crate::split::{self, HASH_LABEL, Router, Split, SplitError, World};

/// Errors reading the cluster or computing a split.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// Listing or reading objects failed.
    #[error("reading {what}: {message}")]
    Read {
        /// What was being read.
        what: String,
        /// The client's error.
        message: String,
    },
    /// An object could not be converted to JSON.
    #[error("encoding {what}: {source}")]
    Json {
        /// What was being encoded.
        what: String,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// The split could not be computed from what was read.
    #[error(transparent)]
    Split(#[from] SplitError),
}

impl ObserveError {
    fn read(what: impl Into<String>, err: &kube::Error) -> Self {
        Self::Read {
            what: what.into(),
            message: describe(err),
        }
    }
}

/// A Rollout's name and its JSON (or why it could not be encoded).
type NamedRollout = (String, Result<Value, ObserveError>);

/// The split of one Rollout, or why it is unknown this tick.
#[derive(Debug)]
pub struct Observation {
    /// Rollout namespace.
    pub namespace: String,
    /// Rollout name.
    pub name: String,
    /// The live traffic split.
    pub split: Result<Split, ObserveError>,
}

/// Reads the cluster through a kube client.
#[derive(Clone)]
pub struct Observer {
    client: Client,
    namespace: Option<String>,
    rollouts: ApiResource,
    routes: ApiResource,
    /// The header a share of the emulated requests carries.
    header: Option<(String, String)>,
}

fn resource(group: &str, version: &str, kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

impl Observer {
    /// Observe Rollouts in `namespace`, or in all namespaces.
    #[must_use]
    pub fn new(client: Client, namespace: Option<String>) -> Self {
        Self {
            client,
            namespace,
            rollouts: resource("sluice.dev", "v1alpha1", "Rollout"),
            routes: resource("gateway.networking.k8s.io", "v1", "HTTPRoute"),
            header: None,
        }
    }

    /// Splits also say where requests carrying `header` (`(name, value)`) go.
    #[must_use]
    pub fn with_header(mut self, header: Option<(String, String)>) -> Self {
        self.header = header;
        self
    }

    /// The split of every Rollout in scope.
    ///
    /// # Errors
    /// When Rollouts cannot be listed. Errors about a single Rollout are in its [`Observation`].
    pub async fn observe(&self) -> Result<Vec<Observation>, ObserveError> {
        let api: Api<DynamicObject> = match &self.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &self.rollouts),
            None => Api::all_with(self.client.clone(), &self.rollouts),
        };
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| ObserveError::read("rollouts.sluice.dev", &e))?;
        let mut by_namespace: BTreeMap<String, Vec<NamedRollout>> = BTreeMap::new();
        for object in list.items {
            let namespace = object.metadata.namespace.clone().unwrap_or_default();
            let name = object.metadata.name.clone().unwrap_or_default();
            let json = serde_json::to_value(&object).map_err(|source| ObserveError::Json {
                what: format!("rollout {namespace}/{name}"),
                source,
            });
            by_namespace
                .entry(namespace)
                .or_default()
                .push((name, json));
        }
        let mut out = Vec::new();
        for (namespace, rollouts) in by_namespace {
            out.extend(self.observe_namespace(&namespace, rollouts).await);
        }
        Ok(out)
    }

    async fn observe_namespace(
        &self,
        namespace: &str,
        rollouts: Vec<NamedRollout>,
    ) -> Vec<Observation> {
        let routers: Vec<Option<Router>> = rollouts
            .iter()
            .map(|(_, json)| json.as_ref().ok().and_then(|j| split::router(j).ok()))
            .collect();
        let needs_ingresses = routers
            .iter()
            .any(|r| matches!(r, Some(Router::Nginx { .. })));
        let route_names: BTreeSet<(String, String)> = routers
            .iter()
            .filter_map(|r| match r {
                Some(Router::GatewayApi {
                    namespace, name, ..
                }) => Some((namespace.clone(), name.clone())),
                _ => None,
            })
            .collect();

        let (replica_sets, services, ingresses) = futures::join!(
            self.replica_sets(namespace),
            self.services(namespace),
            self.ingresses(namespace, needs_ingresses),
        );
        let mut routes: BTreeMap<(String, String), Result<Option<Value>, String>> = BTreeMap::new();
        for key in route_names {
            let fetched = self.route(&key.0, &key.1).await;
            routes.insert(key, fetched);
        }
        let (mesh, mesh_errors) = self.mesh_objects(&routers).await;

        rollouts
            .into_iter()
            .zip(routers)
            .map(|((name, json), router)| {
                let split = json.and_then(|json| {
                    let replica_sets = replica_sets
                        .as_ref()
                        .map_err(|m| read_error(format!("replicasets in {namespace}"), m))?;
                    let services = services
                        .as_ref()
                        .map_err(|m| read_error(format!("services in {namespace}"), m))?;
                    let ingresses = ingresses
                        .as_ref()
                        .map_err(|m| read_error(format!("ingresses in {namespace}"), m))?;
                    let route = match &router {
                        Some(Router::GatewayApi {
                            namespace: route_ns,
                            name: route_name,
                            ..
                        }) => match routes.get(&(route_ns.clone(), route_name.clone())) {
                            Some(Ok(route)) => route.as_ref(),
                            Some(Err(m)) => {
                                return Err(read_error(
                                    format!("httproute {route_ns}/{route_name}"),
                                    m,
                                ));
                            }
                            None => None,
                        },
                        _ => None,
                    };
                    if let Some(Router::Mesh(router)) = &router
                        && let Some((what, m)) = router
                            .reads()
                            .iter()
                            .find_map(|r| mesh_errors.get(r).map(|m| (r.to_string(), m)))
                    {
                        return Err(read_error(what, m));
                    }
                    let world = World {
                        route,
                        services,
                        ingresses,
                        replica_sets,
                        header: self.header.as_ref().map(|(n, v)| (n.as_str(), v.as_str())),
                        mesh: &mesh,
                    };
                    Ok(split::compute(&json, &world)?)
                });
                Observation {
                    namespace: namespace.to_owned(),
                    name,
                    split,
                }
            })
            .collect()
    }

    async fn replica_sets(&self, namespace: &str) -> Result<Vec<ReplicaSet>, String> {
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), namespace);
        api.list(&ListParams::default().labels(HASH_LABEL))
            .await
            .map(|l| l.items)
            .map_err(|e| describe(&e))
    }

    async fn services(&self, namespace: &str) -> Result<Vec<Service>, String> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), namespace);
        api.list(&ListParams::default())
            .await
            .map(|l| l.items)
            .map_err(|e| describe(&e))
    }

    async fn ingresses(&self, namespace: &str, needed: bool) -> Result<Vec<Ingress>, String> {
        if !needed {
            return Ok(Vec::new());
        }
        let api: Api<Ingress> = Api::namespaced(self.client.clone(), namespace);
        api.list(&ListParams::default())
            .await
            .map(|l| l.items)
            .map_err(|e| describe(&e))
    }

    /// The mesh objects the Rollouts' mesh routers name: those found, and the read errors.
    async fn mesh_objects(
        &self,
        routers: &[Option<Router>],
    ) -> (Vec<Value>, BTreeMap<MeshRef, String>) {
        let wanted: BTreeSet<MeshRef> = routers
            .iter()
            .filter_map(|r| match r {
                Some(Router::Mesh(mesh)) => Some(mesh.reads()),
                _ => None,
            })
            .flatten()
            .collect();
        let mut found = Vec::new();
        let mut errors = BTreeMap::new();
        for object in wanted {
            let (group, version, kind) = object.kind.gvk();
            let api: Api<DynamicObject> = Api::namespaced_with(
                self.client.clone(),
                &object.namespace,
                &resource(group, version, kind),
            );
            match api.get_opt(&object.name).await.map_err(|e| describe(&e)) {
                Ok(Some(value)) => match serde_json::to_value(&value) {
                    Ok(json) => found.push(json),
                    Err(e) => {
                        errors.insert(object, e.to_string());
                    }
                },
                Ok(None) => {}
                Err(message) => {
                    errors.insert(object, message);
                }
            }
        }
        (found, errors)
    }

    async fn route(&self, namespace: &str, name: &str) -> Result<Option<Value>, String> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &self.routes);
        match api.get_opt(name).await {
            Ok(Some(route)) => serde_json::to_value(&route)
                .map(Some)
                .map_err(|e| e.to_string()),
            Ok(None) => Ok(None),
            Err(e) => Err(describe(&e)),
        }
    }
}

/// A kube error in one line; a bare 404 (no such resource type) says which CRD is missing.
fn describe(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status)
            if status.code == 404 && status.message.contains("page not found") =>
        {
            "404: resource type not served (CRD not installed?)".to_owned()
        }
        other => other.to_string(),
    }
}

fn read_error(what: String, message: &str) -> ObserveError {
    ObserveError::Read {
        what,
        message: message.to_owned(),
    }
}
