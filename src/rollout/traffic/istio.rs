//! Istio router (`trafficRouting.istio`), as Argo Rollouts v1.10 does it.
//!
//! - **Host-level**: in each managed route of the VirtualService(s), the destination whose host is
//!   the `canaryService` gets weight `W` and the one whose host is the `stableService` `100 − W`
//!   (a host is compared by its first DNS label, as Argo does: `web-canary.shop.svc.cluster.local`
//!   is `web-canary`).
//! - **Subset-level** (`destinationRule`): the destinations are told apart by their `subset`, and
//!   the DestinationRule's canary and stable subsets are given the `rollouts-pod-template-hash` of
//!   the canary and the stable revision, so each subset selects exactly one revision.
//!
//! Managed routes are the `http` routes named in `routes` (an unnamed list manages the VirtualService's
//! only http route), the `tls` routes matching a `tlsRoutes` entry (port and SNI hosts) and the `tcp`
//! routes matching a `tcpRoutes` port; without `tlsRoutes` / `tcpRoutes`, the first `tls` / `tcp`
//! route, when the VirtualService has any (Argo's rules). A managed route must have exactly two
//! destinations, the canary and the stable (Argo would silently delete any other; Sluice refuses,
//! naming it, rather than drop a destination the user wrote). Routes not managed are left exactly as
//! they are.
//!
//! Writes: Istio's CRDs declare no list keys, so `spec.http`, `spec.tls`, `spec.tcp` and a
//! DestinationRule's `spec.subsets` are atomic lists, and a server-side apply cannot own only the
//! weights inside them. Argo reads the object, edits it and `Update`s it with the resourceVersion it
//! read. Sluice does the same within its one write path: the apply body carries the whole live list
//! (only the managed weights or subset labels changed) and the live `resourceVersion`, so a
//! concurrent edit makes the write fail with a conflict and the next reconcile retries on fresh data
//! instead of overwriting it with stale routes. Every list holding a managed route is sent on each
//! write (never a varying subset: a field the manager applied before and then leaves out would be
//! deleted by the API server); the rest of the object (hosts, gateways, lists without a managed
//! route) is not part of the body and stays as it is.
//!
//! API version: `networking.istio.io/v1alpha3`, Argo's default (every Istio release serves it).

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::gateway::canary_percent;
use super::{
    LiveObjects, ObjectKey, RouterKind, TrafficError, TrafficRouter, TrafficWrite, check_weight,
    invalid_rollout, namespace,
};
use crate::api::rollout::Rollout;

/// The Istio API version Sluice reads and writes (Argo Rollouts' default).
pub const ISTIO_API_VERSION: &str = "networking.istio.io/v1alpha3";
/// The VirtualService kind.
pub const VIRTUAL_SERVICE_KIND: &str = "VirtualService";
/// The DestinationRule kind.
pub const DESTINATION_RULE_KIND: &str = "DestinationRule";
/// The annotation Argo puts on a DestinationRule whose subsets a Rollout manages.
pub const MANAGED_BY_ANNOTATION: &str = "argo-rollouts.argoproj.io/managed-by-rollouts";
/// The pod label a subset selects a revision by.
const HASH_LABEL: &str = crate::api::rollout::POD_TEMPLATE_HASH_LABEL;

/// `trafficRouting.istio` as Argo defines it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct IstioConfig {
    #[serde(default)]
    virtual_service: Option<VirtualServiceConfig>,
    #[serde(default)]
    virtual_services: Option<Vec<VirtualServiceConfig>>,
    #[serde(default)]
    destination_rule: Option<DestinationRuleConfig>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct VirtualServiceConfig {
    name: String,
    #[serde(default)]
    routes: Option<Vec<String>>,
    #[serde(default)]
    tls_routes: Option<Vec<TlsRouteConfig>>,
    #[serde(default)]
    tcp_routes: Option<Vec<TcpRouteConfig>>,
}

/// A `tlsRoutes` entry: matches the tls routes whose match blocks name this one port and exactly
/// these SNI hosts.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsRouteConfig {
    #[serde(default)]
    port: Option<i64>,
    #[serde(default)]
    sni_hosts: Option<Vec<String>>,
}

/// A `tcpRoutes` entry: matches the tcp routes whose match blocks name this one port.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpRouteConfig {
    #[serde(default)]
    port: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DestinationRuleConfig {
    name: String,
    canary_subset_name: String,
    stable_subset_name: String,
    #[serde(default)]
    additional_subset_names: Option<Vec<String>>,
}

/// One VirtualService and the routes of it the Rollout manages.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ManagedVirtualService {
    key: ObjectKey,
    /// `routes`: http route names (empty: the only http route).
    http: Vec<String>,
    tls: Vec<TlsRouteConfig>,
    tcp: Vec<TcpRouteConfig>,
}

/// The DestinationRule of a subset-level Rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ManagedDestinationRule {
    key: ObjectKey,
    canary_subset: String,
    stable_subset: String,
}

/// What tells the canary destination from the stable one.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Targets {
    /// Host-level: the destinations' hosts are the canary and stable Services.
    Hosts { stable: String, canary: String },
    /// Subset-level: their subsets are the DestinationRule's canary and stable subsets.
    Subsets { stable: String, canary: String },
}

/// Which managed destination a destination is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Stable,
    Canary,
}

/// The Istio router of one Rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IstioRouter {
    rollout: String,
    virtual_services: Vec<ManagedVirtualService>,
    destination_rule: Option<ManagedDestinationRule>,
    targets: Targets,
    /// Pod-template hashes of the canary and of the stable revision, for the subsets.
    canary_hash: Option<String>,
    stable_hash: Option<String>,
}

/// The key of a VirtualService.
pub fn virtual_service_key(namespace: &str, name: &str) -> ObjectKey {
    key(VIRTUAL_SERVICE_KIND, namespace, name)
}

/// The key of a DestinationRule.
pub fn destination_rule_key(namespace: &str, name: &str) -> ObjectKey {
    key(DESTINATION_RULE_KIND, namespace, name)
}

fn key(kind: &str, namespace: &str, name: &str) -> ObjectKey {
    ObjectKey {
        api_version: ISTIO_API_VERSION.to_string(),
        kind: kind.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

/// A VirtualService reference: `name`, or Istio's `name.namespace` shorthand (a trailing
/// `.cluster.local` ignored), as Argo reads it.
fn split_reference(reference: &str, default_namespace: &str) -> (String, String) {
    let reference = reference.trim_end_matches(".cluster.local");
    match reference.rsplit_once('.') {
        Some((name, namespace)) if !name.is_empty() && !namespace.is_empty() => {
            (namespace.to_string(), name.to_string())
        }
        _ => (default_namespace.to_string(), reference.to_string()),
    }
}

impl IstioRouter {
    /// The router for `rollout` with `trafficRouting.istio` = `config`. The subsets' hashes are
    /// taken from the Rollout's `status.canary.weights` (the act step hands over the planned
    /// status), else from `currentPodHash` / `stableRS`.
    pub fn from_rollout(rollout: &Rollout, config: &Value) -> Result<Self, TrafficError> {
        let invalid = |reason: String| invalid_rollout(rollout, reason);
        let config: IstioConfig = serde_json::from_value(config.clone())
            .map_err(|e| invalid(format!("spec.strategy.canary.trafficRouting.istio: {e}")))?;
        let ns = namespace(rollout)?;
        let configs = match (config.virtual_service, config.virtual_services) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "trafficRouting.istio sets both virtualService and virtualServices; set one"
                        .to_string(),
                ));
            }
            (Some(one), None) => vec![one],
            (None, Some(many)) if !many.is_empty() => many,
            (None, _) => {
                return Err(invalid(
                    "trafficRouting.istio names no VirtualService (set virtualService or virtualServices)"
                        .to_string(),
                ));
            }
        };
        let mut virtual_services = Vec::new();
        for vs in configs {
            if vs.name.is_empty() {
                return Err(invalid(
                    "trafficRouting.istio: a VirtualService name is empty".to_string(),
                ));
            }
            let (vs_ns, name) = split_reference(&vs.name, &ns);
            virtual_services.push(ManagedVirtualService {
                key: virtual_service_key(&vs_ns, &name),
                http: vs.routes.unwrap_or_default(),
                tls: vs.tls_routes.unwrap_or_default(),
                tcp: vs.tcp_routes.unwrap_or_default(),
            });
        }
        let canary = rollout.spec.canary();
        let service = |value: Option<&String>| value.filter(|s| !s.is_empty()).cloned();
        let stable_service = service(canary.and_then(|c| c.stable_service.as_ref()));
        let canary_service = service(canary.and_then(|c| c.canary_service.as_ref()));
        let (targets, destination_rule) = match config.destination_rule {
            Some(dr) => {
                if dr.additional_subset_names.is_some_and(|n| !n.is_empty()) {
                    return Err(invalid(
                        "spec.strategy.canary.trafficRouting.istio.destinationRule.additionalSubsetNames is not supported by Sluice"
                            .to_string(),
                    ));
                }
                if dr.name.is_empty()
                    || dr.canary_subset_name.is_empty()
                    || dr.stable_subset_name.is_empty()
                {
                    return Err(invalid(
                        "trafficRouting.istio.destinationRule needs name, canarySubsetName and stableSubsetName"
                            .to_string(),
                    ));
                }
                (
                    Targets::Subsets {
                        stable: dr.stable_subset_name.clone(),
                        canary: dr.canary_subset_name.clone(),
                    },
                    Some(ManagedDestinationRule {
                        key: destination_rule_key(&ns, &dr.name),
                        canary_subset: dr.canary_subset_name,
                        stable_subset: dr.stable_subset_name,
                    }),
                )
            }
            None => match (stable_service, canary_service) {
                (Some(stable), Some(canary)) => (Targets::Hosts { stable, canary }, None),
                _ => {
                    return Err(invalid(
                        "host-level Istio routing needs spec.strategy.canary.stableService and canaryService (or set trafficRouting.istio.destinationRule)"
                            .to_string(),
                    ));
                }
            },
        };
        let status = rollout.status.as_ref();
        let weights = status
            .and_then(|s| s.canary.as_ref())
            .and_then(|c| c.weights.as_ref());
        let hash = |from_weights: Option<&String>, fallback: Option<&String>| {
            from_weights.or(fallback).filter(|h| !h.is_empty()).cloned()
        };
        Ok(Self {
            rollout: rollout.metadata.name.clone().unwrap_or_default(),
            virtual_services,
            destination_rule,
            targets,
            canary_hash: hash(
                weights.and_then(|w| w.canary.pod_template_hash.as_ref()),
                status.and_then(|s| s.current_pod_hash.as_ref()),
            ),
            stable_hash: hash(
                weights.and_then(|w| w.stable.pod_template_hash.as_ref()),
                status.and_then(|s| s.stable_rs.as_ref()),
            ),
        })
    }

    fn live<'a>(live: &'a LiveObjects, key: &ObjectKey) -> Result<&'a Value, TrafficError> {
        live.get(key).ok_or_else(|| TrafficError::NotFound {
            key: Box::new(key.clone()),
        })
    }

    /// The DestinationRule write that points the subsets at the current hashes, if any is needed.
    fn destination_rule_write(
        &self,
        live: &LiveObjects,
    ) -> Result<Option<TrafficWrite>, TrafficError> {
        let Some(dr) = &self.destination_rule else {
            return Ok(None);
        };
        let object = Self::live(live, &dr.key)?;
        let subsets = list_at(object, &dr.key, "subsets")?;
        let mut updated = subsets.to_vec();
        for (name, hash, field) in [
            (&dr.canary_subset, &self.canary_hash, "canarySubsetName"),
            (&dr.stable_subset, &self.stable_hash, "stableSubsetName"),
        ] {
            let subset = updated
                .iter_mut()
                .find(|s| s.get("name").and_then(Value::as_str) == Some(name.as_str()))
                .ok_or_else(|| TrafficError::Malformed {
                    key: Box::new(dr.key.clone()),
                    reason: format!("has no subset {name:?} (the Rollout's {field})"),
                })?;
            set_subset_hash(subset, hash.as_deref());
        }
        let managed_by = object
            .pointer(&format!(
                "/metadata/annotations/{}",
                MANAGED_BY_ANNOTATION.replace('/', "~1")
            ))
            .and_then(Value::as_str);
        if updated.as_slice() == subsets && managed_by == Some(self.rollout.as_str()) {
            return Ok(None);
        }
        let mut body = apply_body(object, &dr.key, "subsets", Value::Array(updated));
        body["metadata"]["annotations"] = json!({ MANAGED_BY_ANNOTATION: self.rollout });
        Ok(Some(TrafficWrite::Apply {
            key: dr.key.clone(),
            body,
        }))
    }

    /// The VirtualService write that sets `weight` on its managed routes, if any is needed.
    fn virtual_service_write(
        &self,
        live: &LiveObjects,
        vs: &ManagedVirtualService,
        weight: i64,
    ) -> Result<Option<TrafficWrite>, TrafficError> {
        let object = Self::live(live, &vs.key)?;
        if !has_any_route(object) {
            return Err(no_routes(&vs.key));
        }
        let mut spec = Map::new();
        let mut changed = false;
        for kind in RouteKind::ALL {
            let routes = list_at(object, &vs.key, kind.field())?;
            let indices = managed_indices(vs, kind, routes)?;
            if indices.is_empty() {
                continue;
            }
            let mut updated = routes.to_vec();
            for index in indices {
                if let Some(route) = updated.get_mut(index) {
                    set_route_weights(route, &self.targets, weight, &vs.key, kind, index)?;
                }
            }
            changed |= updated.as_slice() != routes;
            spec.insert(kind.field().to_string(), Value::Array(updated));
        }
        if !changed {
            return Ok(None);
        }
        let mut body = apply_body(object, &vs.key, "", Value::Null);
        body["spec"] = Value::Object(spec);
        Ok(Some(TrafficWrite::Apply {
            key: vs.key.clone(),
            body,
        }))
    }

    /// `(stable, canary)` weights of the first managed route of `vs`.
    fn route_weights(
        &self,
        live: &LiveObjects,
        vs: &ManagedVirtualService,
    ) -> Result<(i64, i64), TrafficError> {
        let object = Self::live(live, &vs.key)?;
        for kind in RouteKind::ALL {
            let routes = list_at(object, &vs.key, kind.field())?;
            if let Some(index) = managed_indices(vs, kind, routes)?.first()
                && let Some(route) = routes.get(*index)
            {
                let destinations =
                    checked_destinations(route, &self.targets, &vs.key, kind, *index)?;
                let weight_of = |wanted: Role| {
                    destinations
                        .iter()
                        .find(|(_, role)| *role == wanted)
                        .and_then(|(d, _)| d.get("weight"))
                        .and_then(Value::as_i64)
                        .unwrap_or(0)
                };
                return Ok((weight_of(Role::Stable), weight_of(Role::Canary)));
            }
        }
        Err(no_routes(&vs.key))
    }
}

impl TrafficRouter for IstioRouter {
    fn kind(&self) -> RouterKind {
        RouterKind::Istio
    }

    fn reads(&self) -> Vec<ObjectKey> {
        let mut keys: Vec<ObjectKey> = self
            .destination_rule
            .iter()
            .map(|dr| dr.key.clone())
            .collect();
        keys.extend(self.virtual_services.iter().map(|vs| vs.key.clone()));
        keys
    }

    /// The DestinationRule first (as Argo updates the hashes before the weights), then each
    /// VirtualService. Every object is checked before anything is written.
    fn desired(
        &self,
        live: &LiveObjects,
        canary_weight: i32,
    ) -> Result<Vec<TrafficWrite>, TrafficError> {
        let weight = i64::from(check_weight(canary_weight)?);
        let mut writes: Vec<TrafficWrite> =
            self.destination_rule_write(live)?.into_iter().collect();
        for vs in &self.virtual_services {
            writes.extend(self.virtual_service_write(live, vs, weight)?);
        }
        Ok(writes)
    }

    /// The weight of the first managed route of the first VirtualService; Sluice sets them all
    /// together.
    fn live_weight(&self, live: &LiveObjects) -> Result<Option<i32>, TrafficError> {
        let Some(vs) = self.virtual_services.first() else {
            return Ok(None);
        };
        let (stable, canary) = self.route_weights(live, vs)?;
        Ok(Some(canary_percent(stable, canary)))
    }
}

/// The Istio router of the first Rollout among `rollouts` that manages the VirtualService or
/// DestinationRule (`kind`) `namespace/name`. The GitOps side uses it to keep the engine's fields
/// (docs/behaviour.md G15).
pub fn router_managing<'a>(
    rollouts: impl IntoIterator<Item = &'a Rollout>,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Option<IstioRouter> {
    rollouts.into_iter().find_map(|rollout| {
        let config = rollout
            .spec
            .canary()?
            .traffic_routing
            .as_ref()?
            .istio
            .as_ref()?;
        let router = IstioRouter::from_rollout(rollout, config).ok()?;
        router
            .reads()
            .iter()
            .any(|k| k.kind == kind && k.namespace == namespace && k.name == name)
            .then_some(router)
    })
}

impl IstioRouter {
    /// For the GitOps apply and diff of an object this router manages (docs/behaviour.md G15):
    /// `desired` (from Git) with the engine's fields taken from `live` — the weights of the managed
    /// routes' canary and stable destinations, and the pod-template hash labels of the managed
    /// subsets — so a sync never resets the split and they never show as drift. Everything else is
    /// Git's; an object that does not have the managed shape (yet) is returned unchanged.
    pub fn carry_over_live(&self, desired: &Value, live: &Value) -> Value {
        match desired.get("kind").and_then(Value::as_str) {
            Some(VIRTUAL_SERVICE_KIND) => self.carry_over_weights(desired, live),
            Some(DESTINATION_RULE_KIND) => self.carry_over_subset_hashes(desired, live),
            _ => desired.clone(),
        }
    }

    fn carry_over_weights(&self, desired: &Value, live: &Value) -> Value {
        let (Some(name), Some(namespace)) = (
            live.pointer("/metadata/name").and_then(Value::as_str),
            live.pointer("/metadata/namespace").and_then(Value::as_str),
        ) else {
            return desired.clone();
        };
        let Some(vs) = self
            .virtual_services
            .iter()
            .find(|vs| vs.key.name == name && vs.key.namespace == namespace)
        else {
            return desired.clone();
        };
        let mut objects = LiveObjects::new();
        objects.insert(vs.key.clone(), live.clone());
        let Ok((stable, canary)) = self.route_weights(&objects, vs) else {
            return desired.clone();
        };
        let mut out = desired.clone();
        for kind in RouteKind::ALL {
            let Ok(indices) = list_at(desired, &vs.key, kind.field())
                .and_then(|routes| managed_indices(vs, kind, routes))
            else {
                return desired.clone();
            };
            let Some(routes) = out
                .pointer_mut(&format!("/spec/{}", kind.field()))
                .and_then(Value::as_array_mut)
            else {
                continue;
            };
            for index in indices {
                if let Some(route) = routes.get_mut(index) {
                    set_weights(route, &self.targets, stable, canary);
                }
            }
        }
        out
    }

    fn carry_over_subset_hashes(&self, desired: &Value, live: &Value) -> Value {
        let Some(dr) = &self.destination_rule else {
            return desired.clone();
        };
        let live_hash = |subset: &str| {
            live.pointer("/spec/subsets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|s| s.get("name").and_then(Value::as_str) == Some(subset))
                .and_then(|s| s.pointer(&format!("/labels/{HASH_LABEL}")))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let mut out = desired.clone();
        if let Some(subsets) = out
            .pointer_mut("/spec/subsets")
            .and_then(Value::as_array_mut)
        {
            for subset in subsets.iter_mut() {
                let name = subset
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if (name == dr.canary_subset || name == dr.stable_subset)
                    && let Some(hash) = live_hash(name)
                {
                    set_subset_hash(subset, Some(&hash));
                }
            }
        }
        out
    }
}

/// Sets the canary and stable destinations' weights of a route to the given values.
fn set_weights(route: &mut Value, targets: &Targets, stable: i64, canary: i64) {
    if let Some(destinations) = route.get_mut("route").and_then(Value::as_array_mut) {
        for destination in destinations.iter_mut() {
            let value = match role(destination, targets) {
                Some(Role::Canary) => canary,
                Some(Role::Stable) => stable,
                None => continue,
            };
            if let Some(fields) = destination.as_object_mut() {
                fields.insert("weight".to_string(), json!(value));
            }
        }
    }
}

/// The three route lists of a VirtualService.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RouteKind {
    Http,
    Tls,
    Tcp,
}

impl RouteKind {
    const ALL: [RouteKind; 3] = [RouteKind::Http, RouteKind::Tls, RouteKind::Tcp];

    fn field(self) -> &'static str {
        match self {
            RouteKind::Http => "http",
            RouteKind::Tls => "tls",
            RouteKind::Tcp => "tcp",
        }
    }
}

fn has_any_route(object: &Value) -> bool {
    RouteKind::ALL.iter().any(|k| {
        object
            .pointer(&format!("/spec/{}", k.field()))
            .and_then(Value::as_array)
            .is_some_and(|l| !l.is_empty())
    })
}

fn no_routes(key: &ObjectKey) -> TrafficError {
    TrafficError::Malformed {
        key: Box::new(key.clone()),
        reason: "has none of spec.http, spec.tls, spec.tcp".to_string(),
    }
}

/// The list `spec.<field>` (absent or null: empty).
fn list_at<'a>(
    object: &'a Value,
    key: &ObjectKey,
    field: &str,
) -> Result<&'a [Value], TrafficError> {
    match object.pointer(&format!("/spec/{field}")) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(TrafficError::Malformed {
            key: Box::new(key.clone()),
            reason: format!("spec.{field} is not a list"),
        }),
    }
}

/// The indices of the managed routes of one kind, by Argo's rules (see the module docs).
fn managed_indices(
    vs: &ManagedVirtualService,
    kind: RouteKind,
    routes: &[Value],
) -> Result<Vec<usize>, TrafficError> {
    let malformed = |reason: String| TrafficError::Malformed {
        key: Box::new(vs.key.clone()),
        reason,
    };
    match kind {
        RouteKind::Http if vs.http.is_empty() => match routes.len() {
            0 => Ok(Vec::new()),
            1 => Ok(vec![0]),
            _ => Err(malformed(
                "spec.http has more than one route; name the managed ones in trafficRouting.istio.virtualService.routes".to_string(),
            )),
        },
        RouteKind::Http => vs
            .http
            .iter()
            .map(|name| {
                routes
                    .iter()
                    .position(|r| r.get("name").and_then(Value::as_str) == Some(name.as_str()))
                    .ok_or_else(|| malformed(format!("has no http route named {name:?}")))
            })
            .collect(),
        RouteKind::Tls if vs.tls.is_empty() => first_only(routes, "tls", &malformed),
        RouteKind::Tcp if vs.tcp.is_empty() => first_only(routes, "tcp", &malformed),
        RouteKind::Tls => matching(&vs.tls, routes, "tlsRoutes", &malformed, |wanted, route| {
            let (ports, hosts) = match_ports_and_hosts(route);
            single_port(&ports) == wanted.port.unwrap_or(0)
                && hosts == sorted(wanted.sni_hosts.clone().unwrap_or_default())
        }),
        RouteKind::Tcp => matching(&vs.tcp, routes, "tcpRoutes", &malformed, |wanted, route| {
            let (ports, _) = match_ports_and_hosts(route);
            single_port(&ports) == wanted.port.unwrap_or(0)
        }),
    }
}

/// Without a selector, Argo manages the first tls/tcp route, and refuses a list of several.
fn first_only(
    routes: &[Value],
    field: &str,
    malformed: &dyn Fn(String) -> TrafficError,
) -> Result<Vec<usize>, TrafficError> {
    match routes.len() {
        0 => Ok(Vec::new()),
        1 => Ok(vec![0]),
        _ => Err(malformed(format!(
            "spec.{field} has more than one route; select the managed ones in trafficRouting.istio.virtualService.{field}Routes"
        ))),
    }
}

/// Every route matching some selector; a selector matching no route is an error.
fn matching<T: std::fmt::Debug>(
    selectors: &[T],
    routes: &[Value],
    field: &str,
    malformed: &dyn Fn(String) -> TrafficError,
    matches: impl Fn(&T, &Value) -> bool,
) -> Result<Vec<usize>, TrafficError> {
    let mut indices = Vec::new();
    for wanted in selectors {
        let found: Vec<usize> = routes
            .iter()
            .enumerate()
            .filter(|(_, route)| matches(wanted, route))
            .map(|(i, _)| i)
            .collect();
        if found.is_empty() {
            return Err(malformed(format!(
                "no route matches {field} entry {wanted:?}"
            )));
        }
        indices.extend(found);
    }
    Ok(indices)
}

/// The distinct ports and the sorted distinct SNI hosts of a route's match blocks.
fn match_ports_and_hosts(route: &Value) -> (Vec<i64>, Vec<String>) {
    let mut ports = Vec::new();
    let mut hosts = Vec::new();
    for block in route
        .get("match")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        ports.push(block.get("port").and_then(Value::as_i64).unwrap_or(0));
        hosts.extend(
            block
                .get("sniHosts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string),
        );
    }
    ports.sort_unstable();
    ports.dedup();
    (ports, sorted(hosts))
}

/// The one port a route matches, 0 when none; a route matching several ports never matches a
/// selector (Argo), shown as -1.
fn single_port(ports: &[i64]) -> i64 {
    match ports {
        [] => 0,
        [one] => *one,
        _ => -1,
    }
}

fn sorted(mut items: Vec<String>) -> Vec<String> {
    items.sort();
    items.dedup();
    items
}

/// A destination's host as Argo compares it: up to the first dot.
fn short_host(destination: &Value) -> Option<&str> {
    let host = destination
        .pointer("/destination/host")
        .and_then(Value::as_str)?;
    host.split('.').next().filter(|h| !h.is_empty())
}

fn role(destination: &Value, targets: &Targets) -> Option<Role> {
    let (wanted, stable, canary) = match targets {
        Targets::Hosts { stable, canary } => (short_host(destination), stable, canary),
        Targets::Subsets { stable, canary } => (
            destination
                .pointer("/destination/subset")
                .and_then(Value::as_str),
            stable,
            canary,
        ),
    };
    match wanted {
        Some(w) if w == canary => Some(Role::Canary),
        Some(w) if w == stable => Some(Role::Stable),
        _ => None,
    }
}

fn describe_route(kind: RouteKind, index: usize, route: &Value) -> String {
    match route.get("name").and_then(Value::as_str) {
        Some(name) => format!("{} route {name:?}", kind.field()),
        None => format!("spec.{}[{index}]", kind.field()),
    }
}

/// The destinations of a managed route with their roles: exactly a canary and a stable one.
fn checked_destinations<'a>(
    route: &'a Value,
    targets: &Targets,
    key: &ObjectKey,
    kind: RouteKind,
    index: usize,
) -> Result<Vec<(&'a Value, Role)>, TrafficError> {
    let what = describe_route(kind, index, route);
    let malformed = |reason: String| TrafficError::Malformed {
        key: Box::new(key.clone()),
        reason: format!("{what}: {reason}"),
    };
    let destinations = route
        .get("route")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("has no destinations (route)".to_string()))?;
    let (label, stable, canary) = match targets {
        Targets::Hosts { stable, canary } => ("Service", stable, canary),
        Targets::Subsets { stable, canary } => ("DestinationRule subset", stable, canary),
    };
    let mut found = Vec::new();
    for destination in destinations {
        let role = role(destination, targets).ok_or_else(|| {
            malformed(format!(
                "destination {} is neither the canary nor the stable {label}; a managed route must have exactly those two",
                destination.get("destination").unwrap_or(&Value::Null)
            ))
        })?;
        found.push((destination, role));
    }
    for (wanted, name, side) in [
        (Role::Canary, canary, "Canary"),
        (Role::Stable, stable, "Stable"),
    ] {
        match found.iter().filter(|(_, r)| *r == wanted).count() {
            0 => {
                return Err(malformed(format!(
                    "{side} {label} '{name}' not found in route"
                )));
            }
            1 => {}
            _ => {
                return Err(malformed(format!(
                    "{side} {label} '{name}' appears more than once"
                )));
            }
        }
    }
    Ok(found)
}

/// Sets the canary destination's weight to `weight` and the stable one's to `100 − weight`.
fn set_route_weights(
    route: &mut Value,
    targets: &Targets,
    weight: i64,
    key: &ObjectKey,
    kind: RouteKind,
    index: usize,
) -> Result<(), TrafficError> {
    checked_destinations(route, targets, key, kind, index)?;
    set_weights(route, targets, 100 - weight, weight);
    Ok(())
}

/// Sets (or, without a hash, removes) a subset's `rollouts-pod-template-hash` label.
fn set_subset_hash(subset: &mut Value, hash: Option<&str>) {
    let Some(fields) = subset.as_object_mut() else {
        return;
    };
    let labels = fields
        .entry("labels")
        .or_insert_with(|| Value::Object(Map::new()));
    if !labels.is_object() {
        *labels = Value::Object(Map::new());
    }
    if let Some(labels) = labels.as_object_mut() {
        match hash {
            Some(hash) => {
                labels.insert(HASH_LABEL.to_string(), json!(hash));
            }
            None => {
                labels.remove(HASH_LABEL);
            }
        }
    }
}

/// The apply body: identity, the live `resourceVersion` (optimistic concurrency, see the module
/// docs) and `spec.<field>` = `list` when `field` is not empty.
fn apply_body(object: &Value, key: &ObjectKey, field: &str, list: Value) -> Value {
    let mut spec = Map::new();
    if !field.is_empty() {
        spec.insert(field.to_string(), list);
    }
    super::guarded_apply_body(key, Some(object), Value::Object(spec))
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;
    use serde_json::json;

    use super::*;
    use crate::rollout::traffic::router_for;

    fn rollout(istio: Value) -> Rollout {
        crate::rollout::traffic::fixture_routed_by(|routing| routing.istio = Some(istio))
    }

    fn with_hashes(mut r: Rollout, canary: &str, stable: &str) -> Rollout {
        let status: crate::api::rollout::RolloutStatus = serde_json::from_value(json!({
            "canary": {"weights": {
                "canary": {"weight": 20, "podTemplateHash": canary, "serviceName": "web-canary"},
                "stable": {"weight": 80, "podTemplateHash": stable, "serviceName": "web-stable"},
            }}
        }))
        .unwrap();
        r.status = Some(status);
        r
    }

    fn router(istio: Value) -> IstioRouter {
        IstioRouter::from_rollout(&rollout(json!({})), &istio).unwrap()
    }

    fn host_vs() -> Value {
        json!({
            "apiVersion": ISTIO_API_VERSION, "kind": "VirtualService",
            "metadata": {"name": "web-vs", "namespace": "shop", "resourceVersion": "7"},
            "spec": {
                "hosts": ["web.example.com"],
                "gateways": ["shop-gw"],
                "http": [
                    {"name": "admin", "match": [{"uri": {"prefix": "/admin"}}],
                     "route": [{"destination": {"host": "admin"}}]},
                    {"name": "primary", "route": [
                        {"destination": {"host": "web-stable", "port": {"number": 80}}, "weight": 100},
                        {"destination": {"host": "web-canary.shop.svc.cluster.local"}, "weight": 0},
                    ]},
                ],
            },
        })
    }

    fn live(objects: &[Value]) -> LiveObjects {
        objects
            .iter()
            .map(|o| {
                let key = key(
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["namespace"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap(),
                );
                (key, o.clone())
            })
            .collect()
    }

    fn apply_body_of(write: &TrafficWrite) -> &Value {
        match write {
            TrafficWrite::Apply { body, .. } => body,
            TrafficWrite::Delete { key } => panic!("unexpected delete of {key}"),
        }
    }

    /// The live object after a write: what the API server makes of the apply (the lists sent
    /// replace the live ones, the rest stays).
    fn applied(object: &Value, write: &TrafficWrite) -> Value {
        let body = apply_body_of(write);
        let mut out = object.clone();
        for (field, list) in body["spec"].as_object().unwrap() {
            out["spec"][field] = list.clone();
        }
        if let Some(annotations) = body["metadata"].get("annotations") {
            out["metadata"]["annotations"] = annotations.clone();
        }
        out
    }

    #[test]
    fn host_level_weights_follow_every_step_and_read_back() {
        let r = router(json!({"virtualService": {"name": "web-vs", "routes": ["primary"]}}));
        assert_eq!(r.kind(), RouterKind::Istio);
        assert_eq!(r.reads(), vec![virtual_service_key("shop", "web-vs")]);
        let mut vs = host_vs();
        for weight in [20, 50, 80, 0] {
            let writes = r.desired(&live(std::slice::from_ref(&vs)), weight).unwrap();
            assert_eq!(writes.len(), 1, "weight {weight}");
            let body = apply_body_of(&writes[0]);
            assert_eq!(body["metadata"]["resourceVersion"], json!("7"));
            assert_eq!(body["apiVersion"], json!("networking.istio.io/v1alpha3"));
            assert_eq!(
                body["spec"].as_object().unwrap().keys().collect::<Vec<_>>(),
                vec!["http"],
                "only the managed list is sent: hosts and gateways are not touched"
            );
            vs = applied(&vs, &writes[0]);
            let primary = &vs["spec"]["http"][1]["route"];
            assert_eq!(primary[0]["weight"], json!(100 - weight));
            assert_eq!(primary[1]["weight"], json!(weight));
            assert_eq!(primary[0]["destination"]["port"], json!({"number": 80}));
            assert_eq!(
                vs["spec"]["http"][0],
                host_vs()["spec"]["http"][0],
                "unmanaged route"
            );
            assert_eq!(
                r.live_weight(&live(std::slice::from_ref(&vs))),
                Ok(Some(weight))
            );
            assert_eq!(
                r.desired(&live(std::slice::from_ref(&vs)), weight),
                Ok(vec![]),
                "no churn"
            );
        }
    }

    #[test]
    fn an_unnamed_route_list_manages_the_only_http_route() {
        let r = router(json!({"virtualService": {"name": "web-vs"}}));
        let mut vs = host_vs();
        vs["spec"]["http"].as_array_mut().unwrap().remove(0);
        let writes = r.desired(&live(std::slice::from_ref(&vs)), 30).unwrap();
        let vs = applied(&vs, &writes[0]);
        assert_eq!(vs["spec"]["http"][0]["route"][1]["weight"], json!(30));

        let err = r.desired(&live(&[host_vs()]), 30).unwrap_err().to_string();
        assert!(err.contains("more than one route"), "{err}");
    }

    #[test]
    fn missing_objects_routes_and_destinations_are_named() {
        let r =
            router(json!({"virtualService": {"name": "web-vs", "routes": ["primary", "nope"]}}));
        assert_eq!(
            r.desired(&LiveObjects::new(), 10).unwrap_err().to_string(),
            "VirtualService shop/web-vs not found"
        );
        assert_eq!(
            r.desired(&live(&[host_vs()]), 10).unwrap_err().to_string(),
            "VirtualService shop/web-vs: has no http route named \"nope\""
        );

        let r = router(json!({"virtualService": {"name": "web-vs", "routes": ["primary"]}}));
        let mut no_canary = host_vs();
        no_canary["spec"]["http"][1]["route"]
            .as_array_mut()
            .unwrap()
            .pop();
        assert_eq!(
            r.desired(&live(&[no_canary]), 10).unwrap_err().to_string(),
            "VirtualService shop/web-vs: http route \"primary\": Canary Service 'web-canary' not found in route"
        );
        let mut third = host_vs();
        third["spec"]["http"][1]["route"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": {"host": "legacy"}, "weight": 0}));
        let err = r.desired(&live(&[third]), 10).unwrap_err().to_string();
        assert!(
            err.contains("neither the canary nor the stable Service"),
            "{err}"
        );
        let mut empty = host_vs();
        empty["spec"] = json!({"hosts": ["x"]});
        assert_eq!(
            r.desired(&live(&[empty]), 10).unwrap_err().to_string(),
            "VirtualService shop/web-vs: has none of spec.http, spec.tls, spec.tcp"
        );
    }

    #[test]
    fn tls_and_tcp_routes_are_selected_by_port_and_sni_hosts() {
        let r = router(json!({"virtualService": {
            "name": "web-vs",
            "tlsRoutes": [{"port": 443, "sniHosts": ["b.example.com", "a.example.com"]}],
            "tcpRoutes": [{"port": 5432}],
        }}));
        let dests = json!([
            {"destination": {"host": "web-stable"}, "weight": 100},
            {"destination": {"host": "web-canary"}, "weight": 0},
        ]);
        let vs = json!({
            "apiVersion": ISTIO_API_VERSION, "kind": "VirtualService",
            "metadata": {"name": "web-vs", "namespace": "shop"},
            "spec": {
                "tls": [
                    {"match": [{"port": 8443, "sniHosts": ["a.example.com"]}], "route": [{"destination": {"host": "other"}}]},
                    {"match": [{"port": 443, "sniHosts": ["a.example.com", "b.example.com"]}], "route": dests},
                ],
                "tcp": [
                    {"match": [{"port": 5432}], "route": dests},
                    {"match": [{"port": 3306}], "route": [{"destination": {"host": "mysql"}}]},
                ],
            },
        });
        let writes = r.desired(&live(std::slice::from_ref(&vs)), 40).unwrap();
        let after = applied(&vs, &writes[0]);
        assert_eq!(after["spec"]["tls"][0], vs["spec"]["tls"][0]);
        assert_eq!(after["spec"]["tls"][1]["route"][1]["weight"], json!(40));
        assert_eq!(after["spec"]["tcp"][0]["route"][0]["weight"], json!(60));
        assert_eq!(after["spec"]["tcp"][1], vs["spec"]["tcp"][1]);
        assert_eq!(r.live_weight(&live(&[after])), Ok(Some(40)));

        // Without tlsRoutes Argo manages the only tls route, and refuses several.
        let r =
            router(json!({"virtualService": {"name": "web-vs", "tcpRoutes": [{"port": 5432}]}}));
        let err = r
            .desired(&live(std::slice::from_ref(&vs)), 40)
            .unwrap_err()
            .to_string();
        assert!(err.contains("spec.tls has more than one route"), "{err}");
        let mut tcp_only = vs;
        tcp_only["spec"].as_object_mut().unwrap().remove("tls");
        let r = router(json!({"virtualService": {"name": "web-vs", "tcpRoutes": [{"port": 1}]}}));
        let err = r.desired(&live(&[tcp_only]), 40).unwrap_err().to_string();
        assert!(err.contains("no route matches tcpRoutes entry"), "{err}");
    }

    fn subset_vs() -> Value {
        json!({
            "apiVersion": ISTIO_API_VERSION, "kind": "VirtualService",
            "metadata": {"name": "web-vs", "namespace": "shop", "resourceVersion": "3"},
            "spec": {"http": [{"name": "primary", "route": [
                {"destination": {"host": "web", "subset": "stable"}, "weight": 100},
                {"destination": {"host": "web", "subset": "canary"}, "weight": 0},
            ]}]},
        })
    }

    fn destination_rule() -> Value {
        json!({
            "apiVersion": ISTIO_API_VERSION, "kind": "DestinationRule",
            "metadata": {"name": "web-dr", "namespace": "shop", "resourceVersion": "9"},
            "spec": {"host": "web", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}, "subsets": [
                {"name": "canary", "labels": {"app": "web"}},
                {"name": "stable", "labels": {"app": "web"}},
                {"name": "legacy", "labels": {"version": "v0"}},
            ]},
        })
    }

    fn subset_config() -> Value {
        json!({
            "virtualService": {"name": "web-vs", "routes": ["primary"]},
            "destinationRule": {"name": "web-dr", "canarySubsetName": "canary", "stableSubsetName": "stable"},
        })
    }

    #[test]
    fn subset_level_labels_the_subsets_then_weights_them() {
        let r = IstioRouter::from_rollout(
            &with_hashes(rollout(json!({})), "new", "old"),
            &subset_config(),
        )
        .unwrap();
        assert_eq!(
            r.reads(),
            vec![
                destination_rule_key("shop", "web-dr"),
                virtual_service_key("shop", "web-vs")
            ]
        );
        let objects = [destination_rule(), subset_vs()];
        let writes = r.desired(&live(&objects), 25).unwrap();
        assert_eq!(writes.len(), 2);
        let dr = applied(&objects[0], &writes[0]);
        assert_eq!(
            apply_body_of(&writes[0])["metadata"]["resourceVersion"],
            json!("9")
        );
        assert_eq!(
            dr["spec"]["subsets"],
            json!([
                {"name": "canary", "labels": {"app": "web", "rollouts-pod-template-hash": "new"}},
                {"name": "stable", "labels": {"app": "web", "rollouts-pod-template-hash": "old"}},
                {"name": "legacy", "labels": {"version": "v0"}},
            ])
        );
        assert_eq!(
            dr["spec"]["trafficPolicy"],
            destination_rule()["spec"]["trafficPolicy"]
        );
        assert_eq!(
            dr["metadata"]["annotations"][MANAGED_BY_ANNOTATION],
            json!("web")
        );
        let vs = applied(&objects[1], &writes[1]);
        assert_eq!(vs["spec"]["http"][0]["route"][1]["weight"], json!(25));
        assert_eq!(vs["spec"]["http"][0]["route"][0]["weight"], json!(75));
        assert_eq!(
            r.live_weight(&live(&[dr.clone(), vs.clone()])),
            Ok(Some(25))
        );
        assert_eq!(r.desired(&live(&[dr, vs]), 25), Ok(vec![]), "no churn");
    }

    #[test]
    fn subset_level_errors_name_the_missing_subset() {
        let r = IstioRouter::from_rollout(
            &with_hashes(rollout(json!({})), "new", "old"),
            &subset_config(),
        )
        .unwrap();
        assert_eq!(
            r.desired(&live(&[subset_vs()]), 25)
                .unwrap_err()
                .to_string(),
            "DestinationRule shop/web-dr not found"
        );
        let mut dr = destination_rule();
        dr["spec"]["subsets"].as_array_mut().unwrap().remove(0);
        assert_eq!(
            r.desired(&live(&[dr, subset_vs()]), 25)
                .unwrap_err()
                .to_string(),
            "DestinationRule shop/web-dr: has no subset \"canary\" (the Rollout's canarySubsetName)"
        );
        let mut vs = subset_vs();
        vs["spec"]["http"][0]["route"][1]["destination"]["subset"] = json!("beta");
        let err = r
            .desired(&live(&[destination_rule(), vs]), 25)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("neither the canary nor the stable DestinationRule subset"),
            "{err}"
        );
    }

    #[test]
    fn bad_configurations_are_refused_at_construction() {
        let cases = [
            (json!({}), "names no VirtualService"),
            (
                json!({"virtualService": {"name": "a"}, "virtualServices": [{"name": "b"}]}),
                "sets both virtualService and virtualServices",
            ),
            (
                json!({"virtualService": {"name": "a", "bogus": 1}}),
                "unknown field `bogus`",
            ),
            (
                json!({"virtualService": {"name": "a"}, "destinationRule": {
                    "name": "d", "canarySubsetName": "c", "stableSubsetName": "s",
                    "additionalSubsetNames": ["x"]}}),
                "additionalSubsetNames is not supported",
            ),
        ];
        for (config, expected) in cases {
            let err = IstioRouter::from_rollout(&rollout(json!({})), &config)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{config}: {err}");
        }
    }

    #[test]
    fn several_virtual_services_and_namespaced_references() {
        let r = router(json!({"virtualServices": [
            {"name": "web-vs", "routes": ["primary"]},
            {"name": "edge.gateways.cluster.local"},
        ]}));
        assert_eq!(
            r.reads(),
            vec![
                virtual_service_key("shop", "web-vs"),
                virtual_service_key("gateways", "edge")
            ]
        );
        let r = router(
            json!({"virtualServices": [{"name": "web-vs", "routes": ["primary"]}, {"name": "edge.gateways"}]}),
        );
        assert_eq!(r.reads()[1], virtual_service_key("gateways", "edge"));
        let mut edge = host_vs();
        edge["metadata"] = json!({"name": "edge", "namespace": "gateways"});
        edge["spec"]["http"].as_array_mut().unwrap().remove(0);
        let writes = r.desired(&live(&[host_vs(), edge]), 60).unwrap();
        assert_eq!(writes.len(), 2);
    }

    #[test]
    fn gitops_keeps_the_live_weights_and_subset_hashes_of_managed_objects_only() {
        let r = with_hashes(rollout(subset_config()), "new", "old");
        let found = router_managing([&r], "VirtualService", "shop", "web-vs").unwrap();
        assert!(router_managing([&r], "VirtualService", "shop", "other").is_none());
        assert_eq!(
            router_managing([&r], "DestinationRule", "shop", "web-dr").as_ref(),
            Some(&found)
        );
        let writes = found
            .desired(&live(&[destination_rule(), subset_vs()]), 30)
            .unwrap();
        let live_dr = applied(&destination_rule(), &writes[0]);
        let live_vs = applied(&subset_vs(), &writes[1]);

        // Git's version: weights 100/0, subsets without hashes, and a new field.
        let mut git_vs = subset_vs();
        git_vs["spec"]["hosts"] = json!(["web.example.com"]);
        let kept = found.carry_over_live(&git_vs, &live_vs);
        assert_eq!(kept["spec"]["http"], live_vs["spec"]["http"]);
        assert_eq!(kept["spec"]["hosts"], json!(["web.example.com"]));
        let mut git_dr = destination_rule();
        git_dr["spec"]["subsets"][2]["labels"]["version"] = json!("v1");
        let kept = found.carry_over_live(&git_dr, &live_dr);
        assert_eq!(kept["spec"]["subsets"][0], live_dr["spec"]["subsets"][0]);
        assert_eq!(kept["spec"]["subsets"][1], live_dr["spec"]["subsets"][1]);
        assert_eq!(kept["spec"]["subsets"][2]["labels"]["version"], json!("v1"));
        // Not yet weighted, or not the managed shape: Git's as is.
        let mut bare = subset_vs();
        bare["spec"]["http"][0]["route"]
            .as_array_mut()
            .unwrap()
            .pop();
        assert_eq!(found.carry_over_live(&git_vs, &bare), git_vs);
    }

    #[test]
    fn the_router_is_chosen_and_a_second_one_refused() {
        let r = rollout(json!({"virtualService": {"name": "web-vs"}}));
        assert_eq!(router_for(&r).unwrap().kind(), RouterKind::Istio);
        let mut both = r.clone();
        let routing = both
            .spec
            .strategy
            .canary
            .as_mut()
            .unwrap()
            .traffic_routing
            .as_mut()
            .unwrap();
        routing.smi = Some(json!({}));
        assert_eq!(
            router_for(&both).unwrap_err().to_string(),
            "Rollout shop/web: trafficRouting sets istio, smi; set one router"
        );
        assert!(r.spec.canary().unwrap().has_traffic_routing());
    }
}
