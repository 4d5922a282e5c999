//! Service-mesh routers: the split a mesh would apply, read from its objects.
//!
//! - Istio: the first managed route of the (first) VirtualService — the http route named first in
//!   `routes`, else the only/first http route, else the first tls, else the first tcp route. Each
//!   destination is a backend weighted by its `weight` (a lone destination without one gets it all,
//!   as in Istio). Its host's first DNS label names the Service. With a `destinationRule`, the
//!   destination's subset selects the revision by the subset's `rollouts-pod-template-hash` label
//!   (a subset without that label falls back to what the Service selects).
//! - SMI: the TrafficSplit's backends (`trafficSplitName`, default the Rollout's name), weights being
//!   integers or whole-number quantity strings.
//! - Traefik: the Service entries of the TraefikService's `spec.weighted.services` (weight 1 when
//!   absent, as in Traefik); entries naming another TraefikService are not followed.
//! - Ambassador: the first Mapping of `mappings` and its canary copy `<name>-canary`: the canary
//!   Mapping's `service` gets its `weight` (of 100), the stable Mapping's the rest, all of it when
//!   there is no canary Mapping (Ambassador's canary rule). `service` is `name[.namespace][:port]`.
//! - APISIX: the backends (`serviceName`, `weight`, 100 when absent as in APISIX) of the ApisixRoute's
//!   first managed http rule (the first of `rules`, else the rule named like the route).

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Backend, HASH_LABEL, Revision, SplitError, World, field, service_backend, str_at};

/// The kinds of mesh objects read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MeshKind {
    /// `networking.istio.io` VirtualService.
    VirtualService,
    /// `networking.istio.io` DestinationRule.
    DestinationRule,
    /// `split.smi-spec.io` TrafficSplit.
    TrafficSplit,
    /// `traefik.io` TraefikService.
    TraefikService,
    /// `getambassador.io` Mapping.
    Mapping,
    /// `apisix.apache.org` ApisixRoute.
    ApisixRoute,
}

impl MeshKind {
    /// `(group, version, kind)` as Sluice writes them (Argo Rollouts' defaults).
    #[must_use]
    pub fn gvk(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::VirtualService => ("networking.istio.io", "v1alpha3", "VirtualService"),
            Self::DestinationRule => ("networking.istio.io", "v1alpha3", "DestinationRule"),
            Self::TrafficSplit => ("split.smi-spec.io", "v1alpha1", "TrafficSplit"),
            Self::TraefikService => ("traefik.io", "v1alpha1", "TraefikService"),
            Self::Mapping => ("getambassador.io", "v2", "Mapping"),
            Self::ApisixRoute => ("apisix.apache.org", "v2", "ApisixRoute"),
        }
    }
}

/// One mesh object a Rollout's split depends on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MeshRef {
    /// Its kind.
    pub kind: MeshKind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl std::fmt::Display for MeshRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind.gvk().2, self.namespace, self.name)
    }
}

/// A Rollout routed by a mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeshRouter {
    /// `trafficRouting.istio`.
    Istio {
        /// The (first) VirtualService.
        virtual_service: MeshRef,
        /// The first name in its `routes`, if any.
        route: Option<String>,
        /// `destinationRule.name`, for subset-level routing.
        destination_rule: Option<MeshRef>,
    },
    /// `trafficRouting.smi`.
    Smi {
        /// The TrafficSplit.
        split: MeshRef,
    },
    /// `trafficRouting.traefik`.
    Traefik {
        /// The weighted TraefikService.
        service: MeshRef,
    },
    /// `trafficRouting.ambassador`.
    Ambassador {
        /// The first stable Mapping.
        stable: MeshRef,
        /// Its canary copy (absent at rest).
        canary: MeshRef,
    },
    /// `trafficRouting.apisix`.
    Apisix {
        /// The ApisixRoute.
        route: MeshRef,
        /// The http rule whose backends split the traffic.
        rule: String,
    },
}

impl MeshRouter {
    /// The objects its split is computed from.
    #[must_use]
    pub fn reads(&self) -> Vec<MeshRef> {
        match self {
            Self::Istio {
                virtual_service,
                destination_rule,
                ..
            } => std::iter::once(virtual_service.clone())
                .chain(destination_rule.clone())
                .collect(),
            Self::Smi { split } => vec![split.clone()],
            Self::Traefik { service } => vec![service.clone()],
            Self::Ambassador { stable, canary } => vec![stable.clone(), canary.clone()],
            Self::Apisix { route, .. } => vec![route.clone()],
        }
    }
}

fn mesh_ref(kind: MeshKind, namespace: &str, name: &str) -> MeshRef {
    MeshRef {
        kind,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    }
}

/// The mesh router of `trafficRouting` (Rollout in `namespace`, named `rollout`), `None` when it
/// names none.
///
/// # Errors
/// An Istio router naming no VirtualService.
pub fn router(
    routing: &Value,
    namespace: &str,
    rollout: &str,
) -> Result<Option<MeshRouter>, SplitError> {
    if let Some(istio) = field(routing, "istio") {
        let vs = field(istio, "virtualService")
            .or_else(|| istio.pointer("/virtualServices/0"))
            .ok_or(SplitError::MissingField(
                "trafficRouting.istio.virtualService",
            ))?;
        let reference =
            str_at(vs, "/name")
                .filter(|s| !s.is_empty())
                .ok_or(SplitError::MissingField(
                    "trafficRouting.istio.virtualService.name",
                ))?;
        // Istio's `name.namespace` shorthand, as the controller reads it.
        let reference = reference.trim_end_matches(".cluster.local");
        let (vs_ns, vs_name) = match reference.rsplit_once('.') {
            Some((name, ns)) if !name.is_empty() && !ns.is_empty() => (ns, name),
            _ => (namespace, reference),
        };
        return Ok(Some(MeshRouter::Istio {
            virtual_service: mesh_ref(MeshKind::VirtualService, vs_ns, vs_name),
            route: str_at(vs, "/routes/0").map(str::to_owned),
            destination_rule: str_at(istio, "/destinationRule/name")
                .filter(|s| !s.is_empty())
                .map(|name| mesh_ref(MeshKind::DestinationRule, namespace, name)),
        }));
    }
    if let Some(smi) = field(routing, "smi") {
        let name = str_at(smi, "/trafficSplitName")
            .filter(|s| !s.is_empty())
            .unwrap_or(rollout);
        return Ok(Some(MeshRouter::Smi {
            split: mesh_ref(MeshKind::TrafficSplit, namespace, name),
        }));
    }
    if let Some(traefik) = field(routing, "traefik") {
        let name = str_at(traefik, "/weightedTraefikServiceName")
            .filter(|s| !s.is_empty())
            .ok_or(SplitError::MissingField(
                "trafficRouting.traefik.weightedTraefikServiceName",
            ))?;
        return Ok(Some(MeshRouter::Traefik {
            service: mesh_ref(MeshKind::TraefikService, namespace, name),
        }));
    }
    if let Some(ambassador) = field(routing, "ambassador") {
        let name = str_at(ambassador, "/mappings/0")
            .filter(|s| !s.is_empty())
            .ok_or(SplitError::MissingField(
                "trafficRouting.ambassador.mappings",
            ))?;
        return Ok(Some(MeshRouter::Ambassador {
            stable: mesh_ref(MeshKind::Mapping, namespace, name),
            canary: mesh_ref(MeshKind::Mapping, namespace, &format!("{name}-canary")),
        }));
    }
    if let Some(apisix) = field(routing, "apisix") {
        let name = str_at(apisix, "/route/name")
            .filter(|s| !s.is_empty())
            .ok_or(SplitError::MissingField("trafficRouting.apisix.route.name"))?;
        return Ok(Some(MeshRouter::Apisix {
            route: mesh_ref(MeshKind::ApisixRoute, namespace, name),
            rule: str_at(apisix, "/route/rules/0").unwrap_or(name).to_owned(),
        }));
    }
    Ok(None)
}

fn find<'a>(world: &World<'a>, wanted: &MeshRef) -> Result<&'a Value, SplitError> {
    world
        .mesh
        .iter()
        .find(|o| {
            str_at(o, "/kind") == Some(wanted.kind.gvk().2)
                && str_at(o, "/metadata/name") == Some(wanted.name.as_str())
                && str_at(o, "/metadata/namespace") == Some(wanted.namespace.as_str())
        })
        .ok_or_else(|| SplitError::ObjectNotFound(wanted.to_string()))
}

/// The backends of a mesh-routed Rollout in `namespace`.
///
/// # Errors
/// A missing mesh object.
pub(super) fn backends(
    router: &MeshRouter,
    world: &World<'_>,
    namespace: &str,
    revisions: &BTreeMap<String, Revision>,
) -> Result<Vec<Backend>, SplitError> {
    match router {
        MeshRouter::Istio {
            virtual_service,
            route,
            destination_rule,
        } => {
            let vs = find(world, virtual_service)?;
            let subsets = destination_rule
                .as_ref()
                .map(|dr| find(world, dr).map(subset_hashes))
                .transpose()?
                .unwrap_or_default();
            let destinations = istio_route(vs, route.as_deref())
                .and_then(|r| r.get("route"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let lone = destinations.len() == 1;
            Ok(destinations
                .iter()
                .filter_map(|d| {
                    let host = str_at(d, "/destination/host")?.split('.').next()?;
                    let weight = d
                        .get("weight")
                        .and_then(Value::as_i64)
                        .map_or(if lone { 100 } else { 0 }, |w| {
                            u32::try_from(w).unwrap_or(0)
                        });
                    let subset_hash = str_at(d, "/destination/subset")
                        .and_then(|subset| subsets.get(subset))
                        .cloned();
                    Some(match subset_hash {
                        Some(hash) => hashed_backend(host, hash, weight, revisions),
                        None => service_backend(host, true, weight, world.services, revisions),
                    })
                })
                .collect())
        }
        MeshRouter::Traefik { service } => Ok(find(world, service)?
            .pointer("/spec/weighted/services")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|e| str_at(e, "/kind").unwrap_or("Service") == "Service")
            .filter_map(|e| {
                let name = str_at(e, "/name")?;
                let local = str_at(e, "/namespace").unwrap_or(namespace) == namespace;
                let weight = e
                    .get("weight")
                    .and_then(Value::as_u64)
                    .map_or(1, |w| u32::try_from(w).unwrap_or(0));
                Some(service_backend(
                    name,
                    local,
                    weight,
                    world.services,
                    revisions,
                ))
            })
            .collect()),
        MeshRouter::Ambassador { stable, canary } => {
            let stable = find(world, stable)?;
            let canary = find(world, canary).ok();
            let weight = canary
                .and_then(|c| c.pointer("/spec/weight"))
                .and_then(Value::as_u64)
                .map_or(0, |w| u32::try_from(w.min(100)).unwrap_or(0));
            let backend = |mapping: &Value, weight: u32| {
                let service = str_at(mapping, "/spec/service")?;
                let host = service.split(':').next()?;
                let (name, local) = match host.split_once('.') {
                    Some((name, ns)) => (name, ns.split('.').next() == Some(namespace)),
                    None => (host, true),
                };
                Some(service_backend(
                    name,
                    local,
                    weight,
                    world.services,
                    revisions,
                ))
            };
            Ok(backend(stable, 100 - weight)
                .into_iter()
                .chain(canary.and_then(|c| backend(c, weight)))
                .collect())
        }
        MeshRouter::Apisix { route, rule } => Ok(find(world, route)?
            .pointer("/spec/http")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|r| str_at(r, "/name") == Some(rule.as_str()))
            .and_then(|r| r.get("backends"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|b| {
                let name = str_at(b, "/serviceName")?;
                let weight = b
                    .get("weight")
                    .and_then(Value::as_u64)
                    .map_or(100, |w| u32::try_from(w).unwrap_or(0));
                Some(service_backend(
                    name,
                    true,
                    weight,
                    world.services,
                    revisions,
                ))
            })
            .collect()),
        MeshRouter::Smi { split } => {
            let split = find(world, split)?;
            let local = str_at(split, "/metadata/namespace") == Some(namespace);
            Ok(split
                .pointer("/spec/backends")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|b| {
                    let service = str_at(b, "/service")?;
                    let weight = match b.get("weight") {
                        Some(Value::Number(n)) => n.as_u64(),
                        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
                        _ => None,
                    }
                    .and_then(|w| u32::try_from(w).ok())
                    .unwrap_or(0);
                    Some(service_backend(
                        service,
                        local,
                        weight,
                        world.services,
                        revisions,
                    ))
                })
                .collect())
        }
    }
}

/// The route whose destinations decide the split (see the module docs).
fn istio_route<'v>(vs: &'v Value, name: Option<&str>) -> Option<&'v Value> {
    let list = |field: &str| {
        vs.pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .filter(|l| !l.is_empty())
    };
    if let Some(http) = list("http") {
        return match name {
            Some(name) => http.iter().find(|r| str_at(r, "/name") == Some(name)),
            None => http.first(),
        };
    }
    list("tls")
        .or_else(|| list("tcp"))
        .and_then(|routes| routes.first())
}

/// Subset name → the pod-template hash its labels select.
fn subset_hashes(destination_rule: &Value) -> BTreeMap<String, String> {
    destination_rule
        .pointer("/spec/subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let name = str_at(s, "/name")?;
            let hash = s
                .get("labels")
                .and_then(|l| field(l, HASH_LABEL))?
                .as_str()?;
            Some((name.to_owned(), hash.to_owned()))
        })
        .collect()
}

/// A backend whose revision is named directly (a subset's hash), not through a Service selector.
fn hashed_backend(
    service: &str,
    hash: String,
    weight: u32,
    revisions: &BTreeMap<String, Revision>,
) -> Backend {
    let image = revisions
        .get(&hash)
        .filter(|revision| revision.ready > 0)
        .map(|revision| revision.image.clone());
    Backend {
        service: service.to_owned(),
        hash: Some(hash),
        weight,
        image,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use k8s_openapi::api::core::v1::Service;
    use serde_json::json;

    use super::super::{Router, Split, compute, router as rollout_router};
    use super::*;

    const UID: &str = "uid-1";

    fn rollout(routing: &Value) -> Value {
        json!({
            "metadata": {"name": "demo", "namespace": "apps", "uid": UID},
            "spec": {"strategy": {"canary": {
                "stableService": "demo-stable", "canaryService": "demo-canary",
                "trafficRouting": routing,
            }}},
        })
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

    fn replica_set(hash: &str, image: &str, ready: i32) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {
                "name": format!("demo-{hash}"), "namespace": "apps",
                "labels": {HASH_LABEL: hash},
                "ownerReferences": [{"apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
                                     "name": "demo", "uid": UID, "controller": true}],
            },
            "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "app", "image": image}]}}},
            "status": {"replicas": ready, "readyReplicas": ready},
        }))
        .unwrap()
    }

    fn b(service: &str, hash: Option<&str>, weight: u32, image: Option<&str>) -> Backend {
        Backend {
            service: service.into(),
            hash: hash.map(Into::into),
            weight,
            image: image.map(Into::into),
        }
    }

    fn split_of(rollout: &Value, mesh: &[Value]) -> Result<Split, SplitError> {
        let services = [
            service("demo-stable", Some("aaa")),
            service("demo-canary", Some("bbb")),
            service("demo", None),
        ];
        let replica_sets = [
            replica_set("aaa", "demo:v1", 4),
            replica_set("bbb", "demo:bad", 1),
        ];
        compute(
            rollout,
            &World {
                services: &services,
                replica_sets: &replica_sets,
                mesh,
                ..World::default()
            },
        )
    }

    fn virtual_service(name: &str, namespace: &str, http: &Value) -> Value {
        json!({"kind": "VirtualService", "metadata": {"name": name, "namespace": namespace},
               "spec": {"hosts": ["demo"], "http": http}})
    }

    #[test]
    fn routers_are_read_from_the_rollout() {
        let istio = rollout(&json!({"istio": {
            "virtualService": {"name": "vs.mesh", "routes": ["primary"]},
            "destinationRule": {"name": "dr", "canarySubsetName": "c", "stableSubsetName": "s"},
        }}));
        assert_eq!(
            rollout_router(&istio).unwrap(),
            Router::Mesh(MeshRouter::Istio {
                virtual_service: mesh_ref(MeshKind::VirtualService, "mesh", "vs"),
                route: Some("primary".into()),
                destination_rule: Some(mesh_ref(MeshKind::DestinationRule, "apps", "dr")),
            })
        );
        let many = rollout(&json!({"istio": {"virtualServices": [{"name": "a"}, {"name": "b"}]}}));
        let Router::Mesh(router) = rollout_router(&many).unwrap() else {
            panic!("not a mesh router")
        };
        assert_eq!(
            router.reads(),
            vec![mesh_ref(MeshKind::VirtualService, "apps", "a")]
        );
        assert_eq!(
            rollout_router(&rollout(&json!({"smi": {}}))).unwrap(),
            Router::Mesh(MeshRouter::Smi {
                split: mesh_ref(MeshKind::TrafficSplit, "apps", "demo")
            })
        );
        assert_eq!(
            rollout_router(&rollout(&json!({"istio": {}}))).unwrap_err(),
            SplitError::MissingField("trafficRouting.istio.virtualService")
        );
    }

    #[test]
    fn istio_host_level_weights_go_to_the_services_revisions() {
        let r =
            rollout(&json!({"istio": {"virtualService": {"name": "vs", "routes": ["primary"]}}}));
        let vs = virtual_service(
            "vs",
            "apps",
            &json!([
                {"name": "admin", "route": [{"destination": {"host": "admin"}}]},
                {"name": "primary", "route": [
                    {"destination": {"host": "demo-stable.apps.svc.cluster.local"}, "weight": 70},
                    {"destination": {"host": "demo-canary"}, "weight": 30},
                ]},
            ]),
        );
        assert_eq!(
            split_of(&r, &[vs]).unwrap().backends,
            vec![
                b("demo-stable", Some("aaa"), 70, Some("demo:v1")),
                b("demo-canary", Some("bbb"), 30, Some("demo:bad")),
            ]
        );
        assert_eq!(
            split_of(&r, &[]).unwrap_err().to_string(),
            "VirtualService apps/vs not found"
        );
        let lone = virtual_service(
            "vs",
            "apps",
            &json!([{"route": [{"destination": {"host": "demo-stable"}}]}]),
        );
        let unnamed = rollout(&json!({"istio": {"virtualService": {"name": "vs"}}}));
        assert_eq!(
            split_of(&unnamed, &[lone]).unwrap().backends,
            vec![b("demo-stable", Some("aaa"), 100, Some("demo:v1"))]
        );
    }

    #[test]
    fn istio_subsets_select_revisions_by_their_hash_label() {
        let r = rollout(&json!({"istio": {
            "virtualService": {"name": "vs"},
            "destinationRule": {"name": "dr", "canarySubsetName": "canary", "stableSubsetName": "stable"},
        }}));
        let vs = virtual_service(
            "vs",
            "apps",
            &json!([{"route": [
                {"destination": {"host": "demo", "subset": "stable"}, "weight": 80},
                {"destination": {"host": "demo", "subset": "canary"}, "weight": 20},
            ]}]),
        );
        let dr = json!({"kind": "DestinationRule", "metadata": {"name": "dr", "namespace": "apps"},
        "spec": {"host": "demo", "subsets": [
            {"name": "canary", "labels": {"app": "demo", HASH_LABEL: "bbb"}},
            {"name": "stable", "labels": {"app": "demo", HASH_LABEL: "aaa"}},
        ]}});
        assert_eq!(
            split_of(&r, &[vs.clone(), dr]).unwrap().backends,
            vec![
                b("demo", Some("aaa"), 80, Some("demo:v1")),
                b("demo", Some("bbb"), 20, Some("demo:bad")),
            ]
        );
        assert_eq!(
            split_of(&r, &[vs]).unwrap_err().to_string(),
            "DestinationRule apps/dr not found"
        );
    }

    #[test]
    fn traefik_weighted_services_are_the_backends() {
        let r = rollout(&json!({"traefik": {"weightedTraefikServiceName": "demo-wrr"}}));
        let service = json!({"kind": "TraefikService", "metadata": {"name": "demo-wrr", "namespace": "apps"},
        "spec": {"weighted": {"services": [
            {"name": "demo-stable", "port": 80, "weight": 60},
            {"name": "demo-canary", "port": 80, "weight": 40},
            {"name": "other-wrr", "kind": "TraefikService", "weight": 5},
            {"name": "demo-canary", "namespace": "elsewhere"},
        ]}}});
        assert_eq!(
            split_of(&r, &[service]).unwrap().backends,
            vec![
                b("demo-stable", Some("aaa"), 60, Some("demo:v1")),
                b("demo-canary", Some("bbb"), 40, Some("demo:bad")),
                b("demo-canary", None, 1, None),
            ]
        );
        assert_eq!(
            split_of(&r, &[]).unwrap_err(),
            SplitError::ObjectNotFound("TraefikService apps/demo-wrr".into())
        );
        assert_eq!(
            rollout_router(&rollout(&json!({"traefik": {}}))).unwrap_err(),
            SplitError::MissingField("trafficRouting.traefik.weightedTraefikServiceName")
        );
    }

    #[test]
    fn smi_backends_weigh_by_integer_or_quantity() {
        let r = rollout(&json!({"smi": {"trafficSplitName": "demo-split"}}));
        let split = json!({"kind": "TrafficSplit", "metadata": {"name": "demo-split", "namespace": "apps"},
        "spec": {"service": "demo-stable", "backends": [
            {"service": "demo-canary", "weight": 25},
            {"service": "demo-stable", "weight": "75"},
        ]}});
        assert_eq!(
            split_of(&r, &[split]).unwrap().backends,
            vec![
                b("demo-canary", Some("bbb"), 25, Some("demo:bad")),
                b("demo-stable", Some("aaa"), 75, Some("demo:v1")),
            ]
        );
        assert_eq!(
            split_of(&r, &[]).unwrap_err(),
            SplitError::ObjectNotFound("TrafficSplit apps/demo-split".into())
        );
    }

    #[test]
    fn ambassador_canary_mapping_weight_is_the_canary_share() {
        let r = rollout(&json!({"ambassador": {"mappings": ["demo", "demo-grpc"]}}));
        let stable = json!({"kind": "Mapping", "metadata": {"name": "demo", "namespace": "apps"},
            "spec": {"prefix": "/", "service": "demo-stable:80"}});
        let canary = json!({"kind": "Mapping", "metadata": {"name": "demo-canary", "namespace": "apps"},
            "spec": {"prefix": "/", "service": "demo-canary.apps:80", "weight": 30}});
        assert_eq!(
            split_of(&r, &[stable.clone(), canary]).unwrap().backends,
            vec![
                b("demo-stable", Some("aaa"), 70, Some("demo:v1")),
                b("demo-canary", Some("bbb"), 30, Some("demo:bad")),
            ]
        );
        // No canary Mapping: everything on the stable one.
        assert_eq!(
            split_of(&r, &[stable]).unwrap().backends,
            vec![b("demo-stable", Some("aaa"), 100, Some("demo:v1"))]
        );
        assert_eq!(
            split_of(&r, &[]).unwrap_err(),
            SplitError::ObjectNotFound("Mapping apps/demo".into())
        );
        assert_eq!(
            rollout_router(&rollout(&json!({"ambassador": {"mappings": []}}))).unwrap_err(),
            SplitError::MissingField("trafficRouting.ambassador.mappings")
        );
    }

    #[test]
    fn apisix_route_rule_backends_are_the_backends() {
        let r = rollout(&json!({"apisix": {"route": {"name": "demo-route", "rules": ["main"]}}}));
        let route = json!({"kind": "ApisixRoute", "metadata": {"name": "demo-route", "namespace": "apps"},
        "spec": {"http": [
            {"name": "other", "backends": [{"serviceName": "demo", "weight": 1}]},
            {"name": "main", "backends": [
                {"serviceName": "demo-stable", "servicePort": 80},
                {"serviceName": "demo-canary", "servicePort": 80, "weight": 25},
            ]},
        ]}});
        assert_eq!(
            split_of(&r, &[route]).unwrap().backends,
            vec![
                b("demo-stable", Some("aaa"), 100, Some("demo:v1")),
                b("demo-canary", Some("bbb"), 25, Some("demo:bad")),
            ]
        );
        assert_eq!(
            split_of(&r, &[]).unwrap_err(),
            SplitError::ObjectNotFound("ApisixRoute apps/demo-route".into())
        );
        assert_eq!(
            rollout_router(&rollout(&json!({"apisix": {}}))).unwrap_err(),
            SplitError::MissingField("trafficRouting.apisix.route.name")
        );
    }
}
