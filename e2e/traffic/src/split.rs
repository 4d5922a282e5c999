//! The live traffic split of one Rollout, computed from observed objects (pure, no I/O).
//!
//! - canary with the Gateway API plugin: the HTTPRoute rule holding the stable/canary backendRefs gives
//!   each Service its `weight` (1 when absent, per Gateway API);
//! - canary with NGINX: the stable Service gets `total − w`, the canary Service `w`, from the canary
//!   Ingress (`<prefix>/canary: "true"`, backend = canaryService, `<prefix>/canary-weight`);
//! - blue-green: everything to the active Service (the preview Service is reported separately);
//! - no router: one backend per ReplicaSet owned by the Rollout, weighted by its ready replicas;
//! - Istio, SMI, Traefik: see [`mesh`].
//!
//! Services map to revisions by `spec.selector["rollouts-pod-template-hash"]`; a revision serves only when
//! a ReplicaSet owned by the Rollout carries that hash and has ready pods, otherwise requests get 503.

pub mod mesh;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use rand::Rng;
use serde_json::Value;

use crate::routes::EmulatedRequest;

/// Label (and Service selector key) naming a Rollout revision.
pub const HASH_LABEL: &str = "rollouts-pod-template-hash";
/// Traffic router plugin key for the Gateway API.
pub const GATEWAY_PLUGIN: &str = "argoproj-labs/gatewayAPI";
/// Default NGINX annotation prefix.
pub const NGINX_PREFIX: &str = "nginx.ingress.kubernetes.io";

/// Why a Rollout's split could not be computed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SplitError {
    /// A field the strategy needs is absent.
    #[error("rollout has no {0}")]
    MissingField(&'static str),
    /// A traffic router this emulation does not know.
    #[error("unsupported traffic router: {0}")]
    UnsupportedRouter(String),
    /// The HTTPRoute named by the Gateway API plugin does not exist.
    #[error("HTTPRoute {namespace}/{name} not found")]
    RouteNotFound {
        /// Route namespace.
        namespace: String,
        /// Route name.
        name: String,
    },
    /// A mesh object (VirtualService, DestinationRule, TrafficSplit, TraefikService) the router
    /// names does not exist.
    #[error("{0} not found")]
    ObjectNotFound(String),
    /// None of the stable Ingresses named by `trafficRouting.nginx` exists.
    #[error("stable Ingress {0} not found")]
    IngressNotFound(String),
}

/// How a Rollout's traffic is routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Router {
    /// Canary through a Gateway API HTTPRoute.
    GatewayApi {
        /// Route namespace (defaults to the Rollout's).
        namespace: String,
        /// Route name.
        name: String,
        /// `canary.stableService`.
        stable: String,
        /// `canary.canaryService`.
        canary: String,
    },
    /// Canary through NGINX Ingress canary annotations.
    Nginx {
        /// `nginx.stableIngress` and `nginx.stableIngresses`.
        stable_ingresses: Vec<String>,
        /// `nginx.annotationPrefix`.
        annotation_prefix: String,
        /// `canary.stableService`.
        stable: String,
        /// `canary.canaryService`.
        canary: String,
    },
    /// Canary through a service mesh or Traefik (Istio, SMI, TraefikService).
    Mesh(mesh::MeshRouter),
    /// Blue-green: all traffic through the active Service.
    BlueGreen {
        /// `blueGreen.activeService`.
        active: String,
        /// `blueGreen.previewService`.
        preview: Option<String>,
    },
    /// No router: traffic spreads over ready pods.
    ReadyPods,
}

/// Where a share of the traffic goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// The Service traffic goes through (the Rollout's name when there is no router).
    pub service: String,
    /// The revision (pod-template-hash) the Service selects, if any.
    pub hash: Option<String>,
    /// Relative weight; 0 gets no traffic.
    pub weight: u32,
    /// First container image of the serving revision; `None` when there are no ready endpoints (503).
    pub image: Option<String>,
}

/// The traffic split of one Rollout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    /// Backends of the user-facing traffic.
    pub backends: Vec<Backend>,
    /// Blue-green preview Service, which gets only the separate preview traffic.
    pub preview: Option<Backend>,
    /// Copies of the user-facing traffic (HTTPRoute `RequestMirror` filters).
    pub mirrors: Vec<Mirror>,
    /// Where requests carrying the emulated header go, when a header route sends them elsewhere
    /// than `backends` (see [`crate::routes`]).
    pub header: Option<HeaderLane>,
}

/// A share of requests copied to a backend; the copy's answer is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// Where the copies go.
    pub backend: Backend,
    /// Percentage of the requests copied.
    pub percent: u32,
}

/// The route of requests carrying the emulated header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderLane {
    /// Where they go.
    pub backends: Vec<Backend>,
    /// Copies of them.
    pub mirrors: Vec<Mirror>,
}

/// Objects observed in the Rollout's namespace.
#[derive(Debug, Clone, Copy, Default)]
pub struct World<'a> {
    /// The HTTPRoute named by the Gateway API plugin (JSON), when it exists.
    pub route: Option<&'a Value>,
    /// Services of the namespace.
    pub services: &'a [Service],
    /// Ingresses of the namespace (needed only for NGINX).
    pub ingresses: &'a [Ingress],
    /// ReplicaSets of the namespace.
    pub replica_sets: &'a [ReplicaSet],
    /// The header a share of the emulated requests carries, `(name, value)`.
    pub header: Option<(&'a str, &'a str)>,
    /// The mesh objects a [`Router::Mesh`] names (JSON), those that exist.
    pub mesh: &'a [Value],
}

/// `value[key]`, with JSON `null` read as absent.
fn field<'v>(value: &'v Value, key: &str) -> Option<&'v Value> {
    value.get(key).filter(|v| !v.is_null())
}

fn str_at<'v>(value: &'v Value, pointer: &str) -> Option<&'v str> {
    value.pointer(pointer).and_then(Value::as_str)
}

fn required<'v>(
    value: &'v Value,
    pointer: &str,
    name: &'static str,
) -> Result<&'v str, SplitError> {
    str_at(value, pointer)
        .filter(|s| !s.is_empty())
        .ok_or(SplitError::MissingField(name))
}

/// How the Rollout (full object JSON) routes its traffic.
///
/// # Errors
/// A router with missing required fields, or a router this emulation does not support.
pub fn router(rollout: &Value) -> Result<Router, SplitError> {
    let namespace = str_at(rollout, "/metadata/namespace").unwrap_or("default");
    if let Some(blue_green) = rollout
        .pointer("/spec/strategy/blueGreen")
        .filter(|v| v.is_object())
    {
        return Ok(Router::BlueGreen {
            active: required(
                blue_green,
                "/activeService",
                "spec.strategy.blueGreen.activeService",
            )?
            .to_owned(),
            preview: str_at(blue_green, "/previewService")
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        });
    }
    let Some(canary) = rollout.pointer("/spec/strategy/canary") else {
        return Ok(Router::ReadyPods);
    };
    // The CRD marks optional fields nullable: `null` means absent throughout.
    let Some(routing) = field(canary, "trafficRouting").filter(|routing| {
        routing
            .as_object()
            .is_some_and(|r| r.values().any(|v| !v.is_null()))
    }) else {
        return Ok(Router::ReadyPods);
    };
    let stable = || {
        required(
            canary,
            "/stableService",
            "spec.strategy.canary.stableService",
        )
        .map(str::to_owned)
    };
    let canary_service = || {
        required(
            canary,
            "/canaryService",
            "spec.strategy.canary.canaryService",
        )
        .map(str::to_owned)
    };
    let plugins = field(routing, "plugins");
    if let Some(plugin) = plugins.and_then(|p| field(p, GATEWAY_PLUGIN)) {
        let name = str_at(plugin, "/httpRoute")
            .or_else(|| str_at(plugin, "/httpRoutes/0/name"))
            .filter(|s| !s.is_empty())
            .ok_or(SplitError::MissingField(
                "trafficRouting.plugins[\"argoproj-labs/gatewayAPI\"].httpRoute",
            ))?;
        return Ok(Router::GatewayApi {
            namespace: str_at(plugin, "/namespace")
                .filter(|s| !s.is_empty())
                .unwrap_or(namespace)
                .to_owned(),
            name: name.to_owned(),
            stable: stable()?,
            canary: canary_service()?,
        });
    }
    if let Some(nginx) = field(routing, "nginx") {
        let mut stable_ingresses: Vec<String> = str_at(nginx, "/stableIngress")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .into_iter()
            .collect();
        if let Some(more) = field(nginx, "stableIngresses").and_then(Value::as_array) {
            stable_ingresses.extend(more.iter().filter_map(Value::as_str).map(str::to_owned));
        }
        return Ok(Router::Nginx {
            stable_ingresses,
            annotation_prefix: str_at(nginx, "/annotationPrefix")
                .filter(|s| !s.is_empty())
                .unwrap_or(NGINX_PREFIX)
                .to_owned(),
            stable: stable()?,
            canary: canary_service()?,
        });
    }
    let rollout_name = str_at(rollout, "/metadata/name").unwrap_or_default();
    if let Some(mesh) = mesh::router(routing, namespace, rollout_name)? {
        return Ok(Router::Mesh(mesh));
    }
    let non_null = |v: &Value| -> Vec<String> {
        v.as_object()
            .into_iter()
            .flatten()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, _)| k.clone())
            .collect()
    };
    let mut kinds = non_null(routing);
    if let Some(plugins) = plugins {
        kinds.extend(non_null(plugins).iter().map(|k| format!("plugins[{k}]")));
    }
    Err(SplitError::UnsupportedRouter(kinds.join(", ")))
}

/// A revision of the Rollout: one ReplicaSet it owns.
#[derive(Debug, Clone)]
struct Revision {
    image: String,
    ready: u32,
}

/// ReplicaSets owned by the Rollout (`uid`), keyed by pod-template-hash.
fn revisions(uid: &str, replica_sets: &[ReplicaSet]) -> BTreeMap<String, Revision> {
    let mut out = BTreeMap::new();
    for rs in replica_sets {
        let owned = rs
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|owner| owner.uid == uid);
        let Some(hash) = rs.metadata.labels.as_ref().and_then(|l| l.get(HASH_LABEL)) else {
            continue;
        };
        if !owned {
            continue;
        }
        let image = rs
            .spec
            .as_ref()
            .and_then(|spec| spec.template.as_ref())
            .and_then(|template| template.spec.as_ref())
            .and_then(|pod| pod.containers.first())
            .and_then(|container| container.image.clone())
            .unwrap_or_default();
        let ready = rs
            .status
            .as_ref()
            .and_then(|status| status.ready_replicas)
            .and_then(|ready| u32::try_from(ready).ok())
            .unwrap_or(0);
        out.entry(hash.clone()).or_insert(Revision { image, ready });
    }
    out
}

/// The backend for traffic sent to Service `name` (in the Rollout's namespace when `local`).
fn service_backend(
    name: &str,
    local: bool,
    weight: u32,
    services: &[Service],
    revisions: &BTreeMap<String, Revision>,
) -> Backend {
    let hash = services
        .iter()
        .filter(|_| local)
        .find(|svc| svc.metadata.name.as_deref() == Some(name))
        .and_then(|svc| svc.spec.as_ref())
        .and_then(|spec| spec.selector.as_ref())
        .and_then(|selector| selector.get(HASH_LABEL))
        .filter(|hash| !hash.is_empty())
        .cloned();
    let image = hash
        .as_ref()
        .and_then(|hash| revisions.get(hash))
        .filter(|revision| revision.ready > 0)
        .map(|revision| revision.image.clone());
    Backend {
        service: name.to_owned(),
        hash,
        weight,
        image,
    }
}

/// The traffic split of a Rollout (full object JSON) given what was observed in its namespace.
///
/// # Errors
/// Whatever [`router`] reports, a missing HTTPRoute, or missing stable Ingresses.
pub fn compute(rollout: &Value, world: &World<'_>) -> Result<Split, SplitError> {
    let name = required(rollout, "/metadata/name", "metadata.name")?;
    let uid = required(rollout, "/metadata/uid", "metadata.uid")?;
    let namespace = str_at(rollout, "/metadata/namespace").unwrap_or("default");
    let revisions = revisions(uid, world.replica_sets);
    let backend = |service: &str, weight: u32| {
        service_backend(service, true, weight, world.services, &revisions)
    };
    match router(rollout)? {
        Router::ReadyPods => {
            let mut backends: Vec<Backend> = revisions
                .iter()
                .filter(|(_, revision)| revision.ready > 0)
                .map(|(hash, revision)| Backend {
                    service: name.to_owned(),
                    hash: Some(hash.clone()),
                    weight: revision.ready,
                    image: Some(revision.image.clone()),
                })
                .collect();
            if backends.is_empty() {
                // No ready pod anywhere: the app's Service has no endpoints.
                backends.push(Backend {
                    service: name.to_owned(),
                    hash: None,
                    weight: 1,
                    image: None,
                });
            }
            Ok(Split {
                backends,
                ..Split::default()
            })
        }
        Router::BlueGreen { active, preview } => Ok(Split {
            backends: vec![backend(&active, 1)],
            preview: preview.map(|preview| backend(&preview, 1)),
            ..Split::default()
        }),
        Router::GatewayApi {
            namespace: route_namespace,
            name: route_name,
            stable,
            canary,
        } => {
            let route = world.route.ok_or_else(|| SplitError::RouteNotFound {
                namespace: route_namespace.clone(),
                name: route_name.clone(),
            })?;
            let lane = |request: &EmulatedRequest<'_>| {
                let (refs, mirrors) = gateway_lane(
                    route,
                    &route_namespace,
                    namespace,
                    &stable,
                    &canary,
                    request,
                );
                let to_backend = |(service, local, weight): (String, bool, u32)| {
                    service_backend(&service, local, weight, world.services, &revisions)
                };
                let mirrors: Vec<Mirror> = mirrors
                    .into_iter()
                    .map(|(service, local, percent)| Mirror {
                        backend: to_backend((service, local, 1)),
                        percent,
                    })
                    .collect();
                HeaderLane {
                    backends: refs.into_iter().map(to_backend).collect(),
                    mirrors,
                }
            };
            let plain = lane(&EmulatedRequest::PLAIN);
            let header = world
                .header
                .map(|header| {
                    lane(&EmulatedRequest {
                        header: Some(header),
                        ..EmulatedRequest::PLAIN
                    })
                })
                .filter(|lane| *lane != plain);
            Ok(Split {
                backends: plain.backends,
                mirrors: plain.mirrors,
                header,
                ..Split::default()
            })
        }
        Router::Mesh(mesh) => Ok(Split {
            backends: mesh::backends(&mesh, world, namespace, &revisions)?,
            ..Split::default()
        }),
        Router::Nginx {
            stable_ingresses,
            annotation_prefix,
            stable,
            canary,
        } => {
            if let Some(first) = stable_ingresses.first()
                && !stable_ingresses.iter().any(|wanted| {
                    world
                        .ingresses
                        .iter()
                        .any(|ing| ing.metadata.name.as_deref() == Some(wanted.as_str()))
                })
            {
                return Err(SplitError::IngressNotFound(first.clone()));
            }
            let preferred: Vec<String> = stable_ingresses
                .iter()
                .map(|stable_ingress| format!("{name}-{stable_ingress}-canary"))
                .collect();
            let canary_ingress =
                nginx_canary_ingress(world.ingresses, &annotation_prefix, &canary, &preferred);
            let (canary_weight, total) = nginx_canary_weight(canary_ingress, &annotation_prefix);
            // `canary-by-header` wins over the weight (ingress-nginx's precedence).
            let by_header = canary_ingress.and_then(|ingress| {
                let annotations = ingress.metadata.annotations.clone().unwrap_or_default();
                crate::routes::nginx_header_matches(&annotations, &annotation_prefix, world.header)
            });
            Ok(Split {
                backends: vec![
                    backend(&stable, total - canary_weight),
                    backend(&canary, canary_weight),
                ],
                header: (by_header == Some(true)).then(|| HeaderLane {
                    backends: vec![backend(&canary, 1)],
                    mirrors: Vec::new(),
                }),
                ..Split::default()
            })
        }
    }
}

/// `(service, in the Rollout's namespace, weight)` for a Service reference (`None` for other kinds).
fn service_ref(
    reference: &Value,
    route_namespace: &str,
    rollout_namespace: &str,
) -> Option<(String, bool, u32)> {
    let is_service = str_at(reference, "/group").unwrap_or("").is_empty()
        && str_at(reference, "/kind").unwrap_or("Service") == "Service";
    let name = str_at(reference, "/name").filter(|_| is_service)?;
    let namespace = str_at(reference, "/namespace").unwrap_or(route_namespace);
    let weight = reference
        .get("weight")
        .and_then(Value::as_i64)
        .map_or(1, |w| u32::try_from(w).unwrap_or(0));
    Some((name.to_owned(), namespace == rollout_namespace, weight))
}

/// For the HTTPRoute rule `request` takes among those referencing the stable or canary Service
/// (see [`crate::routes::select_rule`]): its Service backendRefs `(service, local, weight)` and its
/// mirrors `(service, local, percent)`.
type Refs = Vec<(String, bool, u32)>;
fn gateway_lane(
    route: &Value,
    route_namespace: &str,
    rollout_namespace: &str,
    stable: &str,
    canary: &str,
    request: &EmulatedRequest<'_>,
) -> (Refs, Refs) {
    let refs_of = |rule: &Value| -> Refs {
        rule.get("backendRefs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| service_ref(r, route_namespace, rollout_namespace))
            .collect()
    };
    let eligible = |rule: &Value| {
        refs_of(rule)
            .iter()
            .any(|(name, local, _)| *local && (name == stable || name == canary))
    };
    let Some(rule) = crate::routes::select_rule(route, request, eligible) else {
        return (Vec::new(), Vec::new());
    };
    let mirrors = crate::routes::rule_mirrors(rule)
        .into_iter()
        .filter_map(|(reference, percent)| {
            let (name, local, _) = service_ref(reference, route_namespace, rollout_namespace)?;
            Some((name, local, percent))
        })
        .collect();
    (refs_of(rule), mirrors)
}

fn ingress_services(backend: Option<&IngressBackend>) -> impl Iterator<Item = &str> {
    backend
        .and_then(|b| b.service.as_ref())
        .map(|s| s.name.as_str())
        .into_iter()
}

fn ingress_targets(ingress: &Ingress, service: &str) -> bool {
    let Some(spec) = ingress.spec.as_ref() else {
        return false;
    };
    let mut names = ingress_services(spec.default_backend.as_ref()).chain(
        spec.rules
            .iter()
            .flatten()
            .filter_map(|rule| rule.http.as_ref())
            .flat_map(|http| http.paths.iter())
            .flat_map(|path| ingress_services(Some(&path.backend))),
    );
    names.any(|name| name == service)
}

fn ingress_annotation(ingress: &Ingress, prefix: &str, key: &str) -> Option<String> {
    ingress
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(&format!("{prefix}/{key}")))
        .map(|v| v.trim().to_owned())
}

/// The canary Ingress of `canary_service`: Ingresses named in `preferred` win over other matching
/// canary Ingresses.
fn nginx_canary_ingress<'i>(
    ingresses: &'i [Ingress],
    prefix: &str,
    canary_service: &str,
    preferred: &[String],
) -> Option<&'i Ingress> {
    let mut candidates: Vec<&Ingress> = ingresses
        .iter()
        .filter(|ing| ingress_annotation(ing, prefix, "canary").as_deref() == Some("true"))
        .filter(|ing| ingress_targets(ing, canary_service))
        .collect();
    candidates.sort_by_key(|ing| {
        let name = ing.metadata.name.clone().unwrap_or_default();
        (!preferred.contains(&name), name)
    });
    candidates.first().copied()
}

/// `(canary weight, total weight)` from the canary Ingress; `(0, 100)` without one.
fn nginx_canary_weight(canary: Option<&Ingress>, prefix: &str) -> (u32, u32) {
    let annotation = |ingress: &Ingress, key: &str| ingress_annotation(ingress, prefix, key);
    let Some(canary) = canary else {
        return (0, 100);
    };
    let total = annotation(canary, "canary-weight-total")
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|t| *t > 0)
        .unwrap_or(100);
    let weight = annotation(canary, "canary-weight")
        .and_then(|v| v.parse::<i64>().ok())
        .map_or(0, |w| {
            u32::try_from(w.clamp(0, i64::from(total))).unwrap_or(0)
        });
    (weight, total)
}

/// Pick one backend at random, proportionally to weight; `None` when every weight is 0.
pub fn pick<'a, R: Rng + ?Sized>(backends: &'a [Backend], rng: &mut R) -> Option<&'a Backend> {
    let total: u64 = backends.iter().map(|b| u64::from(b.weight)).sum();
    if total == 0 {
        return None;
    }
    let mut ticket = rng.random_range(0..total);
    for backend in backends {
        let weight = u64::from(backend.weight);
        if ticket < weight {
            return Some(backend);
        }
        ticket -= weight;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use serde_json::json;

    const UID: &str = "uid-1";

    fn rollout(strategy: &Value) -> Value {
        json!({
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": "demo", "namespace": "apps", "uid": UID},
            "spec": {"strategy": strategy},
        })
    }

    fn canary_with(routing: &Value) -> Value {
        rollout(&json!({"canary": {
            "stableService": "demo-stable",
            "canaryService": "demo-canary",
            "trafficRouting": routing,
        }}))
    }

    fn gateway_rollout() -> Value {
        canary_with(&json!({"plugins": {GATEWAY_PLUGIN: {"httpRoute": "demo-route"}}}))
    }

    fn nginx_rollout() -> Value {
        canary_with(&json!({"nginx": {"stableIngress": "demo"}}))
    }

    fn service(name: &str, hash: Option<&str>) -> Service {
        let mut selector = json!({"app": "demo"});
        if let Some(hash) = hash {
            selector[HASH_LABEL] = json!(hash);
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "apps"},
            "spec": {"selector": selector},
        }))
        .unwrap()
    }

    fn replica_set(hash: &str, image: &str, ready: Option<i32>, owner: &str) -> ReplicaSet {
        let mut status = json!({"replicas": ready.unwrap_or(0)});
        if let Some(ready) = ready {
            status["readyReplicas"] = json!(ready);
        }
        serde_json::from_value(json!({
            "metadata": {
                "name": format!("demo-{hash}"),
                "namespace": "apps",
                "labels": {"app": "demo", HASH_LABEL: hash},
                "ownerReferences": [{
                    "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
                    "name": "demo", "uid": owner, "controller": true,
                }],
            },
            "spec": {
                "selector": {"matchLabels": {"app": "demo", HASH_LABEL: hash}},
                "template": {"spec": {"containers": [{"name": "app", "image": image}]}},
            },
            "status": status,
        }))
        .unwrap()
    }

    fn standard_replica_sets() -> Vec<ReplicaSet> {
        vec![
            replica_set("aaa", "demo:v1", Some(4), UID),
            replica_set("bbb", "demo:bad", Some(1), UID),
        ]
    }

    fn standard_services() -> Vec<Service> {
        vec![
            service("demo-stable", Some("aaa")),
            service("demo-canary", Some("bbb")),
        ]
    }

    fn ingress(name: &str, service: &str, annotations: &Value) -> Ingress {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "apps", "annotations": annotations},
            "spec": {"rules": [{"host": "demo.local", "http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": service, "port": {"number": 80}}},
            }]}}]},
        }))
        .unwrap()
    }

    fn http_route(refs: &Value) -> Value {
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "demo-route", "namespace": "apps"},
            "spec": {"rules": [
                {"matches": [{"path": {"value": "/other"}}], "backendRefs": [{"name": "other", "port": 80}]},
                {"backendRefs": refs},
            ]},
        })
    }

    fn b(service: &str, hash: Option<&str>, weight: u32, image: Option<&str>) -> Backend {
        Backend {
            service: service.to_owned(),
            hash: hash.map(str::to_owned),
            weight,
            image: image.map(str::to_owned),
        }
    }

    #[test]
    fn router_kinds() {
        let cases: Vec<(&str, Value, Result<Router, SplitError>)> = vec![
            ("no strategy", rollout(&json!({})), Ok(Router::ReadyPods)),
            (
                "canary without routing",
                rollout(&json!({"canary": {"steps": []}})),
                Ok(Router::ReadyPods),
            ),
            (
                "canary with empty routing",
                canary_with(&json!({})),
                Ok(Router::ReadyPods),
            ),
            (
                "gateway api",
                gateway_rollout(),
                Ok(Router::GatewayApi {
                    namespace: "apps".into(),
                    name: "demo-route".into(),
                    stable: "demo-stable".into(),
                    canary: "demo-canary".into(),
                }),
            ),
            (
                "gateway api in another namespace, httpRoutes form",
                canary_with(&json!({"plugins": {GATEWAY_PLUGIN: {
                    "namespace": "edge", "httpRoutes": [{"name": "r1"}],
                }}})),
                Ok(Router::GatewayApi {
                    namespace: "edge".into(),
                    name: "r1".into(),
                    stable: "demo-stable".into(),
                    canary: "demo-canary".into(),
                }),
            ),
            (
                "gateway api without route",
                canary_with(&json!({"plugins": {GATEWAY_PLUGIN: {}}})),
                Err(SplitError::MissingField(
                    "trafficRouting.plugins[\"argoproj-labs/gatewayAPI\"].httpRoute",
                )),
            ),
            (
                "nginx defaults",
                nginx_rollout(),
                Ok(Router::Nginx {
                    stable_ingresses: vec!["demo".into()],
                    annotation_prefix: NGINX_PREFIX.into(),
                    stable: "demo-stable".into(),
                    canary: "demo-canary".into(),
                }),
            ),
            (
                "nginx with prefix and several ingresses",
                canary_with(&json!({"nginx": {
                    "stableIngresses": ["a", "b"], "annotationPrefix": "custom.nginx.org",
                }})),
                Ok(Router::Nginx {
                    stable_ingresses: vec!["a".into(), "b".into()],
                    annotation_prefix: "custom.nginx.org".into(),
                    stable: "demo-stable".into(),
                    canary: "demo-canary".into(),
                }),
            ),
            (
                "nginx without canary service",
                rollout(&json!({"canary": {
                    "stableService": "demo-stable",
                    "trafficRouting": {"nginx": {"stableIngress": "demo"}},
                }})),
                Err(SplitError::MissingField(
                    "spec.strategy.canary.canaryService",
                )),
            ),
            (
                "alb is not emulated",
                canary_with(&json!({"alb": {}})),
                Err(SplitError::UnsupportedRouter("alb".into())),
            ),
            (
                "other plugin is not emulated",
                canary_with(&json!({"plugins": {"acme/mesh": {}}})),
                Err(SplitError::UnsupportedRouter(
                    "plugins, plugins[acme/mesh]".into(),
                )),
            ),
            (
                "blue-green",
                rollout(
                    &json!({"blueGreen": {"activeService": "demo-active", "previewService": "demo-preview"}}),
                ),
                Ok(Router::BlueGreen {
                    active: "demo-active".into(),
                    preview: Some("demo-preview".into()),
                }),
            ),
            (
                "nulls are absent: canary",
                rollout(&json!({"blueGreen": null, "canary": {
                    "stableService": "demo-stable", "canaryService": "demo-canary",
                    "trafficRouting": {"nginx": null, "plugins": null},
                }})),
                Ok(Router::ReadyPods),
            ),
            (
                "nulls are absent: null routing",
                canary_with(&Value::Null),
                Ok(Router::ReadyPods),
            ),
            (
                "nulls are absent: gateway api",
                canary_with(&json!({"nginx": null, "plugins": {
                    GATEWAY_PLUGIN: {"httpRoute": "demo-route", "namespace": null, "configMap": null},
                    "acme/mesh": null,
                }})),
                Ok(Router::GatewayApi {
                    namespace: "apps".into(),
                    name: "demo-route".into(),
                    stable: "demo-stable".into(),
                    canary: "demo-canary".into(),
                }),
            ),
            (
                "nulls are absent: nginx",
                canary_with(
                    &json!({"plugins": null, "nginx": {"stableIngress": "demo", "annotationPrefix": null}}),
                ),
                Ok(Router::Nginx {
                    stable_ingresses: vec!["demo".into()],
                    annotation_prefix: NGINX_PREFIX.into(),
                    stable: "demo-stable".into(),
                    canary: "demo-canary".into(),
                }),
            ),
            (
                "nulls are absent: blue-green",
                rollout(
                    &json!({"canary": null, "blueGreen": {"activeService": "demo-active", "previewService": null}}),
                ),
                Ok(Router::BlueGreen {
                    active: "demo-active".into(),
                    preview: None,
                }),
            ),
            (
                "blue-green without active",
                rollout(&json!({"blueGreen": {"previewService": "demo-preview"}})),
                Err(SplitError::MissingField(
                    "spec.strategy.blueGreen.activeService",
                )),
            ),
        ];
        for (name, rollout, expected) in cases {
            assert_eq!(router(&rollout), expected, "{name}");
        }
    }

    #[test]
    fn gateway_api_splits() {
        let services = standard_services();
        let replica_sets = standard_replica_sets();
        let stable_canary = |stable: Value, canary: Value| {
            let mut s = json!({"name": "demo-stable", "port": 80});
            let mut c = json!({"name": "demo-canary", "port": 80});
            if !stable.is_null() {
                s["weight"] = stable;
            }
            if !canary.is_null() {
                c["weight"] = canary;
            }
            json!([s, c])
        };
        let cases: Vec<(&str, Value, Vec<Backend>)> = vec![
            (
                "80/20",
                http_route(&stable_canary(json!(80), json!(20))),
                vec![
                    b("demo-stable", Some("aaa"), 80, Some("demo:v1")),
                    b("demo-canary", Some("bbb"), 20, Some("demo:bad")),
                ],
            ),
            (
                "0/100",
                http_route(&stable_canary(json!(0), json!(100))),
                vec![
                    b("demo-stable", Some("aaa"), 0, Some("demo:v1")),
                    b("demo-canary", Some("bbb"), 100, Some("demo:bad")),
                ],
            ),
            (
                "missing weights default to 1",
                http_route(&stable_canary(Value::Null, Value::Null)),
                vec![
                    b("demo-stable", Some("aaa"), 1, Some("demo:v1")),
                    b("demo-canary", Some("bbb"), 1, Some("demo:bad")),
                ],
            ),
            (
                "only the stable ref",
                http_route(&json!([{"name": "demo-stable", "port": 80}])),
                vec![b("demo-stable", Some("aaa"), 1, Some("demo:v1"))],
            ),
            (
                "unknown service and non-Service refs",
                http_route(&json!([
                    {"name": "demo-stable", "weight": 90},
                    {"name": "ghost", "weight": 10},
                    {"group": "example.com", "kind": "Bucket", "name": "x", "weight": 50},
                ])),
                vec![
                    b("demo-stable", Some("aaa"), 90, Some("demo:v1")),
                    b("ghost", None, 10, None),
                ],
            ),
            (
                "cross-namespace ref is not resolved here",
                http_route(&json!([
                    {"name": "demo-stable", "weight": 50},
                    {"name": "demo-canary", "namespace": "elsewhere", "weight": 50},
                ])),
                vec![
                    b("demo-stable", Some("aaa"), 50, Some("demo:v1")),
                    b("demo-canary", None, 50, None),
                ],
            ),
            (
                "route without matching rule",
                http_route(&json!([{"name": "unrelated"}])),
                vec![],
            ),
        ];
        for (name, route, expected) in cases {
            let world = World {
                route: Some(&route),
                services: &services,
                replica_sets: &replica_sets,
                ..World::default()
            };
            let split = compute(&gateway_rollout(), &world).unwrap();
            assert_eq!(split.backends, expected, "{name}");
            assert_eq!(split.preview, None, "{name}");
        }
    }

    #[test]
    fn gateway_api_header_and_mirror_routes() {
        let services = standard_services();
        let replica_sets = standard_replica_sets();
        let weighted = json!([
            {"name": "demo-stable", "port": 80, "weight": 80},
            {"name": "demo-canary", "port": 80, "weight": 20},
        ]);
        let prefix = json!({"type": "PathPrefix", "value": "/"});
        // As Sluice writes them: managed rules first, then the user's.
        let route = json!({"metadata": {"namespace": "apps"}, "spec": {"rules": [
            {"name": "copy", "matches": [{"path": prefix}],
             "filters": [{"type": "RequestMirror",
                          "requestMirror": {"backendRef": {"name": "demo-canary", "port": 80}, "percent": 30}}],
             "backendRefs": weighted},
            {"name": "beta", "matches": [{"path": prefix, "headers": [
                {"type": "Exact", "name": "x-sluice-canary", "value": "true"}]}],
             "backendRefs": [{"name": "demo-canary", "port": 80, "weight": 1}]},
            {"matches": [{"path": prefix}], "backendRefs": weighted},
        ]}});
        let world = World {
            route: Some(&route),
            services: &services,
            replica_sets: &replica_sets,
            header: Some(("X-Sluice-Canary", "true")),
            ..World::default()
        };
        let split = compute(&gateway_rollout(), &world).unwrap();
        let weighted = vec![
            b("demo-stable", Some("aaa"), 80, Some("demo:v1")),
            b("demo-canary", Some("bbb"), 20, Some("demo:bad")),
        ];
        assert_eq!(split.backends, weighted);
        assert_eq!(
            split.mirrors,
            vec![Mirror {
                backend: b("demo-canary", Some("bbb"), 1, Some("demo:bad")),
                percent: 30
            }]
        );
        assert_eq!(
            split.header,
            Some(HeaderLane {
                backends: vec![b("demo-canary", Some("bbb"), 1, Some("demo:bad"))],
                mirrors: vec![],
            })
        );
        // Another header value: the same lane as plain requests, so none of its own.
        let other = World {
            header: Some(("x-sluice-canary", "false")),
            ..world
        };
        assert_eq!(compute(&gateway_rollout(), &other).unwrap().header, None);
        // Without managed rules the split is as before.
        let plain = http_route(&json!([
            {"name": "demo-stable", "port": 80, "weight": 80},
            {"name": "demo-canary", "port": 80, "weight": 20},
        ]));
        let split = compute(
            &gateway_rollout(),
            &World {
                route: Some(&plain),
                ..world
            },
        )
        .unwrap();
        assert_eq!(
            (split.backends, split.mirrors, split.header),
            (weighted, vec![], None)
        );
    }

    #[test]
    fn nginx_canary_by_header() {
        let services = standard_services();
        let replica_sets = standard_replica_sets();
        let ingresses = vec![
            ingress("demo", "demo-stable", &json!({})),
            ingress(
                "demo-demo-canary",
                "demo-canary",
                &json!({
                    "nginx.ingress.kubernetes.io/canary": "true",
                    "nginx.ingress.kubernetes.io/canary-weight": "0",
                    "nginx.ingress.kubernetes.io/canary-by-header": "x-sluice-canary",
                    "nginx.ingress.kubernetes.io/canary-by-header-value": "true",
                }),
            ),
        ];
        let world = World {
            services: &services,
            ingresses: &ingresses,
            replica_sets: &replica_sets,
            header: Some(("x-sluice-canary", "true")),
            ..World::default()
        };
        let split = compute(&nginx_rollout(), &world).unwrap();
        assert_eq!(split.backends[1].weight, 0);
        assert_eq!(
            split.header.unwrap().backends,
            vec![b("demo-canary", Some("bbb"), 1, Some("demo:bad"))]
        );
        let other = World {
            header: Some(("x-sluice-canary", "no")),
            ..world
        };
        assert_eq!(compute(&nginx_rollout(), &other).unwrap().header, None);
    }

    #[test]
    fn gateway_api_without_route_is_an_error() {
        let world = World::default();
        assert_eq!(
            compute(&gateway_rollout(), &world),
            Err(SplitError::RouteNotFound {
                namespace: "apps".into(),
                name: "demo-route".into()
            })
        );
    }

    #[test]
    fn services_without_endpoints_get_no_image() {
        let route = http_route(&json!([
            {"name": "demo-stable", "weight": 50},
            {"name": "demo-canary", "weight": 50},
        ]));
        type Case = (&'static str, Vec<Service>, Vec<ReplicaSet>, Vec<Backend>);
        let cases: Vec<Case> = vec![
            (
                "service without hash selector",
                vec![
                    service("demo-stable", None),
                    service("demo-canary", Some("bbb")),
                ],
                standard_replica_sets(),
                vec![
                    b("demo-stable", None, 50, None),
                    b("demo-canary", Some("bbb"), 50, Some("demo:bad")),
                ],
            ),
            (
                "hash without replica set",
                vec![
                    service("demo-stable", Some("aaa")),
                    service("demo-canary", Some("zzz")),
                ],
                standard_replica_sets(),
                vec![
                    b("demo-stable", Some("aaa"), 50, Some("demo:v1")),
                    b("demo-canary", Some("zzz"), 50, None),
                ],
            ),
            (
                "replica set owned by someone else",
                standard_services(),
                vec![
                    replica_set("aaa", "demo:v1", Some(4), UID),
                    replica_set("bbb", "demo:bad", Some(1), "other-uid"),
                ],
                vec![
                    b("demo-stable", Some("aaa"), 50, Some("demo:v1")),
                    b("demo-canary", Some("bbb"), 50, None),
                ],
            ),
            (
                "replica set with no ready pods",
                standard_services(),
                vec![
                    replica_set("aaa", "demo:v1", Some(4), UID),
                    replica_set("bbb", "demo:bad", None, UID),
                ],
                vec![
                    b("demo-stable", Some("aaa"), 50, Some("demo:v1")),
                    b("demo-canary", Some("bbb"), 50, None),
                ],
            ),
            (
                "service missing",
                vec![service("demo-stable", Some("aaa"))],
                standard_replica_sets(),
                vec![
                    b("demo-stable", Some("aaa"), 50, Some("demo:v1")),
                    b("demo-canary", None, 50, None),
                ],
            ),
        ];
        for (name, services, replica_sets, expected) in cases {
            let world = World {
                route: Some(&route),
                services: &services,
                replica_sets: &replica_sets,
                ..World::default()
            };
            assert_eq!(
                compute(&gateway_rollout(), &world).unwrap().backends,
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn nginx_splits() {
        let services = standard_services();
        let replica_sets = standard_replica_sets();
        let stable_ingress = ingress("demo", "demo-stable", &json!({}));
        let canary_ingress =
            |name: &str, annotations: Value| ingress(name, "demo-canary", &annotations);
        type Case = (
            &'static str,
            Value,
            Vec<Ingress>,
            Result<(u32, u32), SplitError>,
        );
        let cases: Vec<Case> = vec![
            (
                "weight 20",
                nginx_rollout(),
                vec![
                    stable_ingress.clone(),
                    canary_ingress(
                        "demo-demo-canary",
                        json!({
                            "nginx.ingress.kubernetes.io/canary": "true",
                            "nginx.ingress.kubernetes.io/canary-weight": "20",
                        }),
                    ),
                ],
                Ok((80, 20)),
            ),
            (
                "no canary ingress: all stable",
                nginx_rollout(),
                vec![stable_ingress.clone()],
                Ok((100, 0)),
            ),
            (
                "canary ingress without weight",
                nginx_rollout(),
                vec![
                    stable_ingress.clone(),
                    canary_ingress(
                        "demo-demo-canary",
                        json!({"nginx.ingress.kubernetes.io/canary": "true"}),
                    ),
                ],
                Ok((100, 0)),
            ),
            (
                "canary annotation not true is ignored",
                nginx_rollout(),
                vec![
                    stable_ingress.clone(),
                    canary_ingress(
                        "demo-demo-canary",
                        json!({
                            "nginx.ingress.kubernetes.io/canary": "false",
                            "nginx.ingress.kubernetes.io/canary-weight": "40",
                        }),
                    ),
                ],
                Ok((100, 0)),
            ),
            (
                "custom prefix",
                canary_with(
                    &json!({"nginx": {"stableIngress": "demo", "annotationPrefix": "custom.io"}}),
                ),
                vec![
                    stable_ingress.clone(),
                    canary_ingress(
                        "x",
                        json!({
                            "nginx.ingress.kubernetes.io/canary": "true",
                            "nginx.ingress.kubernetes.io/canary-weight": "90",
                        }),
                    ),
                    canary_ingress(
                        "y",
                        json!({
                            "custom.io/canary": "true",
                            "custom.io/canary-weight": "35",
                        }),
                    ),
                ],
                Ok((65, 35)),
            ),
            (
                "weight total and clamping",
                nginx_rollout(),
                vec![
                    stable_ingress.clone(),
                    canary_ingress(
                        "demo-demo-canary",
                        json!({
                            "nginx.ingress.kubernetes.io/canary": "true",
                            "nginx.ingress.kubernetes.io/canary-weight": "5000",
                            "nginx.ingress.kubernetes.io/canary-weight-total": "1000",
                        }),
                    ),
                ],
                Ok((0, 1000)),
            ),
            (
                "the rollout's own canary ingress wins",
                nginx_rollout(),
                vec![
                    stable_ingress.clone(),
                    canary_ingress(
                        "aaa-first",
                        json!({
                            "nginx.ingress.kubernetes.io/canary": "true",
                            "nginx.ingress.kubernetes.io/canary-weight": "70",
                        }),
                    ),
                    canary_ingress(
                        "demo-demo-canary",
                        json!({
                            "nginx.ingress.kubernetes.io/canary": "true",
                            "nginx.ingress.kubernetes.io/canary-weight": "10",
                        }),
                    ),
                ],
                Ok((90, 10)),
            ),
            (
                "canary ingress for another service is ignored",
                nginx_rollout(),
                vec![
                    stable_ingress.clone(),
                    ingress(
                        "other-canary",
                        "other",
                        &json!({
                            "nginx.ingress.kubernetes.io/canary": "true",
                            "nginx.ingress.kubernetes.io/canary-weight": "50",
                        }),
                    ),
                ],
                Ok((100, 0)),
            ),
            (
                "stable ingress missing",
                nginx_rollout(),
                vec![],
                Err(SplitError::IngressNotFound("demo".into())),
            ),
        ];
        for (name, rollout, ingresses, expected) in cases {
            let world = World {
                services: &services,
                ingresses: &ingresses,
                replica_sets: &replica_sets,
                ..World::default()
            };
            let expected = expected.map(|(stable, canary)| Split {
                backends: vec![
                    b("demo-stable", Some("aaa"), stable, Some("demo:v1")),
                    b("demo-canary", Some("bbb"), canary, Some("demo:bad")),
                ],
                preview: None,
                ..Split::default()
            });
            assert_eq!(compute(&rollout, &world), expected, "{name}");
        }
    }

    #[test]
    fn blue_green_sends_everything_to_active() {
        let services = vec![
            service("demo-active", Some("aaa")),
            service("demo-preview", Some("bbb")),
        ];
        let replica_sets = standard_replica_sets();
        let world = World {
            services: &services,
            replica_sets: &replica_sets,
            ..World::default()
        };
        let cases: Vec<(&str, Value, Split)> = vec![
            (
                "active and preview",
                rollout(
                    &json!({"blueGreen": {"activeService": "demo-active", "previewService": "demo-preview"}}),
                ),
                Split {
                    backends: vec![b("demo-active", Some("aaa"), 1, Some("demo:v1"))],
                    preview: Some(b("demo-preview", Some("bbb"), 1, Some("demo:bad"))),
                    ..Split::default()
                },
            ),
            (
                "active only",
                rollout(&json!({"blueGreen": {"activeService": "demo-active"}})),
                Split {
                    backends: vec![b("demo-active", Some("aaa"), 1, Some("demo:v1"))],
                    preview: None,
                    ..Split::default()
                },
            ),
            (
                "active service missing",
                rollout(&json!({"blueGreen": {"activeService": "nope"}})),
                Split {
                    backends: vec![b("nope", None, 1, None)],
                    preview: None,
                    ..Split::default()
                },
            ),
        ];
        for (name, rollout, expected) in cases {
            assert_eq!(compute(&rollout, &world), Ok(expected), "{name}");
        }
    }

    #[test]
    fn without_router_ready_pods_decide() {
        let cases: Vec<(&str, Vec<ReplicaSet>, Vec<Backend>)> = vec![
            (
                "3 stable, 1 canary",
                vec![
                    replica_set("aaa", "demo:v1", Some(3), UID),
                    replica_set("bbb", "demo:slow", Some(1), UID),
                ],
                vec![
                    b("demo", Some("aaa"), 3, Some("demo:v1")),
                    b("demo", Some("bbb"), 1, Some("demo:slow")),
                ],
            ),
            (
                "scaled-down and foreign replica sets are ignored",
                vec![
                    replica_set("aaa", "demo:v1", Some(2), UID),
                    replica_set("old", "demo:v0", Some(0), UID),
                    replica_set("ccc", "other:v1", Some(5), "someone-else"),
                ],
                vec![b("demo", Some("aaa"), 2, Some("demo:v1"))],
            ),
            (
                "nothing ready: no endpoints",
                vec![replica_set("aaa", "demo:v1", None, UID)],
                vec![b("demo", None, 1, None)],
            ),
        ];
        for (name, replica_sets, expected) in cases {
            let world = World {
                replica_sets: &replica_sets,
                ..World::default()
            };
            let split = compute(
                &rollout(&json!({"canary": {"steps": [{"setWeight": 25}]}})),
                &world,
            )
            .unwrap();
            assert_eq!(split.backends, expected, "{name}");
        }
    }

    #[test]
    fn rollout_without_uid_is_an_error() {
        let mut rollout = rollout(&json!({}));
        rollout["metadata"].as_object_mut().unwrap().remove("uid");
        assert_eq!(
            compute(&rollout, &World::default()),
            Err(SplitError::MissingField("metadata.uid"))
        );
    }

    #[test]
    fn pick_follows_weights() {
        let backends = vec![
            b("stable", Some("aaa"), 80, Some("demo:v1")),
            b("canary", Some("bbb"), 20, Some("demo:v2")),
            b("zero", Some("ccc"), 0, Some("demo:v3")),
        ];
        let mut rng = StdRng::seed_from_u64(3);
        let mut counts = BTreeMap::new();
        for _ in 0..10_000 {
            let picked = pick(&backends, &mut rng).unwrap();
            *counts.entry(picked.service.as_str()).or_insert(0_u32) += 1;
        }
        let canary = counts.get("canary").copied().unwrap_or(0);
        assert!((1_800..=2_200).contains(&canary), "{counts:?}");
        assert_eq!(counts.get("zero"), None);
    }

    #[test]
    fn pick_with_no_weight_picks_nothing() {
        let mut rng = StdRng::seed_from_u64(3);
        assert_eq!(pick(&[], &mut rng), None);
        assert_eq!(pick(&[b("s", None, 0, None)], &mut rng), None);
    }
}
