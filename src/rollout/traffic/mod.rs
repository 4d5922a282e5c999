//! Traffic routers: how "send W% to the canary" becomes objects to write.
//!
//! The planner only decides the canary weight (0..=100). A [`TrafficRouter`] turns it into the
//! writes that put it in place and reads back the weight in force. Routers are pure: the act step
//! fetches the objects a router [`reads`](TrafficRouter::reads), hands them over as
//! [`LiveObjects`], and applies the [`TrafficWrite`]s it gets back (server-side apply, forced, under
//! [`crate::rollout::FIELD_MANAGER`]). Adding a router means one new file here and one arm in
//! [`router_for`].
//!
//! - no router: [`ReplicaRatio`], the split follows the replica counts and nothing is written;
//! - [`gateway::GatewayRouter`]: Gateway API HTTPRoute backend weights;
//! - [`nginx::NginxRouter`]: an NGINX canary Ingress beside the stable one;
//! - [`istio::IstioRouter`], [`smi::SmiRouter`], [`traefik::TraefikRouter`],
//!   [`ambassador::AmbassadorRouter`], [`apisix::ApisixRouter`]: see [`mesh_router`].
//!
//! Managed routes (`setHeaderRoute`, `setMirrorRoute`) go through
//! [`managed_routes`](TrafficRouter::managed_routes): [`gateway_routes`] for the Gateway API, the
//! canary Ingress's `canary-by-header` for NGINX; the other routers refuse them.

pub mod ambassador;
pub mod apisix;
pub mod gateway;
pub mod gateway_routes;
pub mod istio;
pub mod nginx;
pub mod smi;
pub mod traefik;

use std::collections::BTreeMap;
use std::fmt;

use kube::ResourceExt;
use kube::core::GroupVersionKind;
use serde_json::{Map, Value, json};
use thiserror::Error;

use crate::api::rollout::{GATEWAY_API_PLUGIN, Rollout};
use crate::rollout::managed_routes::ActiveRoute;

/// Identifies an object a router reads or writes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// e.g. `gateway.networking.k8s.io/v1`.
    pub api_version: String,
    /// e.g. `HTTPRoute`.
    pub kind: String,
    /// The object's namespace.
    pub namespace: String,
    /// The object's name.
    pub name: String,
}

impl ObjectKey {
    /// Group, version and kind, for the act step's `ApiResource::from_gvk` (core objects have an
    /// `apiVersion` without a group).
    pub fn gvk(&self) -> GroupVersionKind {
        let (group, version) = self
            .api_version
            .rsplit_once('/')
            .unwrap_or(("", self.api_version.as_str()));
        GroupVersionKind::gvk(group, version, &self.kind)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// The live objects the act step fetched for a router, as JSON. An object that does not exist is
/// absent from the map.
pub type LiveObjects = BTreeMap<ObjectKey, Value>;

/// One write that puts a weight in place.
#[derive(Clone, Debug, PartialEq)]
pub enum TrafficWrite {
    /// Server-side apply `body` (it carries `apiVersion`, `kind`, `metadata.name` and
    /// `metadata.namespace`) with force: the router owns what it sends.
    Apply {
        /// The object written.
        key: ObjectKey,
        /// The apply body.
        body: Value,
    },
    /// Delete the object (already gone is fine).
    Delete {
        /// The object deleted.
        key: ObjectKey,
    },
}

/// Which router a Rollout uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouterKind {
    /// No traffic router: the split follows the replica counts.
    ReplicaRatio,
    /// `trafficRouting.plugins.argoproj-labs/gatewayAPI`.
    GatewayApi,
    /// `trafficRouting.nginx`.
    Nginx,
    /// `trafficRouting.istio`.
    Istio,
    /// `trafficRouting.smi`.
    Smi,
    /// `trafficRouting.traefik`.
    Traefik,
    /// `trafficRouting.ambassador`.
    Ambassador,
    /// `trafficRouting.apisix`.
    Apisix,
}

/// Why a router cannot be built, or cannot set or read a weight.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TrafficError {
    /// The weight asked for is outside 0..=the total weight.
    #[error("canary weight {weight} is outside 0..={max_weight}")]
    WeightOutOfRange {
        /// The weight asked for.
        weight: i32,
        /// The total weight (100, or `maxTrafficWeight`).
        max_weight: i32,
    },
    /// The Rollout lacks what a router needs to identify or own objects.
    #[error("Rollout {rollout}: {reason}")]
    InvalidRollout {
        /// `<namespace>/<name>` of the Rollout (parts may be empty).
        rollout: String,
        /// What is missing or wrong, naming the field.
        reason: String,
    },
    /// An object the router needs does not exist.
    #[error("{key} not found")]
    NotFound {
        /// The missing object.
        key: Box<ObjectKey>,
    },
    /// An HTTPRoute has no rule that routes to both the stable and the canary Service.
    #[error(
        "{route} has no rule with backendRefs to both {stable} (stableService) and {canary} (canaryService); missing: {missing}"
    )]
    MissingBackend {
        /// The route.
        route: Box<ObjectKey>,
        /// The stable Service.
        stable: String,
        /// The canary Service.
        canary: String,
        /// The Service(s) found in no rule, or "a rule with both" when each appears but never
        /// together.
        missing: String,
    },
    /// A live object does not have the shape its kind has.
    #[error("{key}: {reason}")]
    Malformed {
        /// The object.
        key: Box<ObjectKey>,
        /// What is wrong.
        reason: String,
    },
    /// A managed route asked of a router that cannot route by header or mirror.
    #[error(
        "the {router} router cannot set managed route {route:?} (setHeaderRoute/setMirrorRoute)"
    )]
    RouteUnsupported {
        /// The router.
        router: String,
        /// The route's name.
        route: String,
    },
    /// An object the router would write exists and is controlled by someone else.
    #[error("{key} exists and is not controlled by Rollout {rollout}; refusing to take it over")]
    NotOwned {
        /// The object.
        key: Box<ObjectKey>,
        /// The Rollout's name.
        rollout: String,
    },
}

/// A traffic router. Implementations hold what they took from the Rollout spec; every method is
/// pure.
pub trait TrafficRouter: fmt::Debug + Send + Sync {
    /// Which router this is.
    fn kind(&self) -> RouterKind;

    /// The objects the act step must fetch before calling [`desired`](Self::desired),
    /// [`live_weight`](Self::live_weight) or [`after_promotion`](Self::after_promotion).
    fn reads(&self) -> Vec<ObjectKey>;

    /// The writes that send `canary_weight` (out of `maxTrafficWeight`, 100 unless set) of the
    /// traffic to the canary and the rest to the stable. Empty when the live objects already say so (no write churn).
    fn desired(
        &self,
        live: &LiveObjects,
        canary_weight: i32,
    ) -> Result<Vec<TrafficWrite>, TrafficError>;

    /// The canary weight in force, out of `maxTrafficWeight`; `None` when the router sets no
    /// weights (the split then follows the replica counts).
    fn live_weight(&self, live: &LiveObjects) -> Result<Option<i32>, TrafficError>;

    /// The writes once the Rollout is fully promoted (the stable Service selects the new pods):
    /// by default all traffic to the stable, i.e. weight 0.
    fn after_promotion(&self, live: &LiveObjects) -> Result<Vec<TrafficWrite>, TrafficError> {
        self.desired(live, 0)
    }

    /// The writes that leave exactly `routes` (header and mirror routes, in precedence order) in
    /// place, the weights as they are; empty when the live objects already say so. A router
    /// without managed routes has none to remove and refuses to add any.
    fn managed_routes(
        &self,
        _live: &LiveObjects,
        routes: &[ActiveRoute],
    ) -> Result<Vec<TrafficWrite>, TrafficError> {
        match routes.first() {
            None => Ok(Vec::new()),
            Some(route) => Err(TrafficError::RouteUnsupported {
                router: format!("{:?}", self.kind()),
                route: route.name().to_string(),
            }),
        }
    }
}

/// No traffic router: the split follows the ready replica counts, so no weight is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicaRatio;

impl TrafficRouter for ReplicaRatio {
    fn kind(&self) -> RouterKind {
        RouterKind::ReplicaRatio
    }

    fn reads(&self) -> Vec<ObjectKey> {
        Vec::new()
    }

    fn desired(
        &self,
        _live: &LiveObjects,
        canary_weight: i32,
    ) -> Result<Vec<TrafficWrite>, TrafficError> {
        check_weight(canary_weight)?;
        Ok(Vec::new())
    }

    fn live_weight(&self, _live: &LiveObjects) -> Result<Option<i32>, TrafficError> {
        Ok(None)
    }
}

/// The router of a Rollout. Blue-green Rollouts and canaries without `trafficRouting` get
/// [`ReplicaRatio`]. Exactly one router is supported at a time; a plugin other than
/// `argoproj-labs/gatewayAPI` is refused rather than ignored, since ignoring it would run the
/// whole canary without the traffic control the user asked for.
pub fn router_for(rollout: &Rollout) -> Result<Box<dyn TrafficRouter>, TrafficError> {
    let Some(canary) = rollout.spec.canary() else {
        return Ok(Box::new(ReplicaRatio));
    };
    let Some(routing) = canary.traffic_routing.as_ref() else {
        return Ok(Box::new(ReplicaRatio));
    };
    if let Some(plugins) = routing.plugins.as_ref()
        && !plugins.other.is_empty()
    {
        let names: Vec<&str> = plugins.other.keys().map(String::as_str).collect();
        return Err(invalid_rollout(
            rollout,
            format!(
                "trafficRouting.plugins {} not supported; Sluice implements {GATEWAY_API_PLUGIN} and nginx",
                names.join(", ")
            ),
        ));
    }
    if let Some(router) = mesh_router(rollout, routing)? {
        return Ok(router);
    }
    match (routing.nginx.as_ref(), routing.gateway_api()) {
        (Some(_), Some(_)) => Err(invalid_rollout(
            rollout,
            "trafficRouting sets both nginx and a gatewayAPI plugin; set one".to_string(),
        )),
        (Some(nginx), None) => Ok(Box::new(nginx::NginxRouter::from_rollout(rollout, nginx)?)),
        (None, Some(gateway)) => Ok(Box::new(gateway::GatewayRouter::from_rollout(
            rollout, gateway,
        )?)),
        // `plugins: {}`: the planner sees a router (`has_traffic_routing`), so there must be one.
        (None, None) if canary.has_traffic_routing() => Err(invalid_rollout(
            rollout,
            format!("trafficRouting.plugins names no router; expected {GATEWAY_API_PLUGIN}"),
        )),
        (None, None) => Ok(Box::new(ReplicaRatio)),
    }
}

/// The router of `trafficRouting.istio`, `.smi`, `.traefik`, `.ambassador` or `.apisix`, `None`
/// when none is set. Argo can
/// drive several routers of one Rollout at once; Sluice drives one, and refuses a second rather
/// than leave it unmanaged.
fn mesh_router(
    rollout: &Rollout,
    routing: &crate::api::rollout::TrafficRouting,
) -> Result<Option<Box<dyn TrafficRouter>>, TrafficError> {
    let mut set: Vec<&str> = [
        ("istio", routing.istio.is_some()),
        ("smi", routing.smi.is_some()),
        ("traefik", routing.traefik.is_some()),
        ("ambassador", routing.ambassador.is_some()),
        ("apisix", routing.apisix.is_some()),
        ("nginx", routing.nginx.is_some()),
        ("plugins", routing.plugins.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, present)| present.then_some(name))
    .collect();
    let router: Box<dyn TrafficRouter> = if let Some(istio) = &routing.istio {
        Box::new(istio::IstioRouter::from_rollout(rollout, istio)?)
    } else if let Some(smi) = &routing.smi {
        Box::new(smi::SmiRouter::from_rollout(rollout, smi)?)
    } else if let Some(traefik) = &routing.traefik {
        Box::new(traefik::TraefikRouter::from_rollout(rollout, traefik)?)
    } else if let Some(apisix) = &routing.apisix {
        Box::new(apisix::ApisixRouter::from_rollout(rollout, apisix)?)
    } else if let Some(ambassador) = &routing.ambassador {
        Box::new(ambassador::AmbassadorRouter::from_rollout(
            rollout, ambassador,
        )?)
    } else {
        return Ok(None);
    };
    if set.len() > 1 {
        set.sort_unstable();
        return Err(invalid_rollout(
            rollout,
            format!("trafficRouting sets {}; set one router", set.join(", ")),
        ));
    }
    Ok(Some(router))
}

/// The body of an apply that replaces `spec` of the object at `key` (an atomic list the router
/// rewrote whole) guarded by the `resourceVersion` of `live`, the copy it was computed from: a
/// concurrent edit (a GitOps sync, a user) makes the write conflict instead of being overwritten.
pub fn guarded_apply_body(key: &ObjectKey, live: Option<&Value>, spec: Value) -> Value {
    let mut metadata = Map::new();
    metadata.insert("name".to_string(), json!(key.name));
    metadata.insert("namespace".to_string(), json!(key.namespace));
    if let Some(version) = live.and_then(|o| o.pointer("/metadata/resourceVersion")) {
        metadata.insert("resourceVersion".to_string(), version.clone());
    }
    json!({
        "apiVersion": key.api_version,
        "kind": key.kind,
        "metadata": metadata,
        "spec": spec,
    })
}

/// Refuses weights outside 0..=100.
pub fn check_weight(weight: i32) -> Result<i32, TrafficError> {
    check_weight_out_of(weight, 100)
}

/// Refuses weights outside 0..=`max_weight` (`maxTrafficWeight`, for the routers that honour it).
pub fn check_weight_out_of(weight: i32, max_weight: i32) -> Result<i32, TrafficError> {
    if (0..=max_weight).contains(&weight) {
        Ok(weight)
    } else {
        Err(TrafficError::WeightOutOfRange { weight, max_weight })
    }
}

/// `trafficRouting.maxTrafficWeight` of the Rollout, when set.
fn max_traffic_weight(rollout: &Rollout) -> Option<i32> {
    rollout
        .spec
        .canary()
        .and_then(|c| c.traffic_routing.as_ref())
        .and_then(|t| t.max_traffic_weight)
}

/// The `stableService` and `canaryService` a router needs, or why they are missing.
fn services(rollout: &Rollout) -> Result<(String, String), TrafficError> {
    let canary = rollout.spec.canary();
    let get = |field: &str, value: Option<&String>| {
        value.filter(|s| !s.is_empty()).cloned().ok_or_else(|| {
            invalid_rollout(
                rollout,
                format!("{field} is required with a traffic router"),
            )
        })
    };
    Ok((
        get(
            "spec.strategy.canary.stableService",
            canary.and_then(|c| c.stable_service.as_ref()),
        )?,
        get(
            "spec.strategy.canary.canaryService",
            canary.and_then(|c| c.canary_service.as_ref()),
        )?,
    ))
}

/// The Rollout's namespace, which a router needs to address the objects it reads.
fn namespace(rollout: &Rollout) -> Result<String, TrafficError> {
    rollout
        .namespace()
        .ok_or_else(|| invalid_rollout(rollout, "metadata.namespace is not set".to_string()))
}

fn invalid_rollout(rollout: &Rollout, reason: String) -> TrafficError {
    TrafficError::InvalidRollout {
        rollout: format!(
            "{}/{}",
            rollout.namespace().unwrap_or_default(),
            rollout.metadata.name.clone().unwrap_or_default()
        ),
        reason,
    }
}

/// The Gateway API canary fixture with its `trafficRouting` replaced by what `route` sets: the
/// routers' tests start from it.
#[cfg(test)]
pub(super) fn fixture_routed_by(
    route: impl FnOnce(&mut crate::api::rollout::TrafficRouting),
) -> Rollout {
    let mut r: Rollout = serde_saphyr::from_str(include_str!(
        "../../../tests/fixtures/rollout/canary-gatewayapi.yaml"
    ))
    .expect("fixture");
    r.metadata.uid = Some("uid-1".into());
    let routing = r
        .spec
        .strategy
        .canary
        .as_mut()
        .and_then(|c| c.traffic_routing.as_mut())
        .expect("a routed canary");
    routing.plugins = None;
    route(routing);
    r
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    fn parse(yaml: &str) -> Rollout {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn with_ns(mut r: Rollout) -> Rollout {
        r.metadata.namespace.get_or_insert_with(|| "shop".into());
        r.metadata.uid = Some("uid-1".into());
        r
    }

    fn gateway() -> Rollout {
        with_ns(parse(include_str!(
            "../../../tests/fixtures/rollout/canary-gatewayapi.yaml"
        )))
    }

    fn set_routing(r: &mut Rollout, edit: impl FnOnce(&mut crate::api::rollout::TrafficRouting)) {
        let canary = r.spec.strategy.canary.as_mut().unwrap();
        edit(canary.traffic_routing.get_or_insert_default());
    }

    #[test]
    fn router_is_chosen_from_the_spec() {
        let cases = [
            (
                include_str!("../../../tests/fixtures/rollout/canary-replicas.yaml"),
                RouterKind::ReplicaRatio,
            ),
            (
                include_str!("../../../tests/fixtures/rollout/canary-gatewayapi.yaml"),
                RouterKind::GatewayApi,
            ),
            (
                include_str!("../../../tests/fixtures/rollout/canary-nginx.yaml"),
                RouterKind::Nginx,
            ),
            (
                include_str!("../../../tests/fixtures/rollout/bluegreen-analysis.yaml"),
                RouterKind::ReplicaRatio,
            ),
        ];
        for (yaml, kind) in cases {
            let router = router_for(&with_ns(parse(yaml))).unwrap();
            assert_eq!(router.kind(), kind, "{yaml}");
        }
    }

    #[test]
    fn replica_ratio_writes_nothing() {
        let router = ReplicaRatio;
        let live = LiveObjects::new();
        assert_eq!(router.reads(), vec![]);
        for weight in [0, 20, 50, 100] {
            assert_eq!(router.desired(&live, weight), Ok(vec![]));
        }
        assert_eq!(router.live_weight(&live), Ok(None));
        assert_eq!(router.after_promotion(&live), Ok(vec![]));
        assert_eq!(
            router.desired(&live, 101),
            Err(TrafficError::WeightOutOfRange {
                weight: 101,
                max_weight: 100
            })
        );
    }

    #[test]
    fn bad_router_specs_are_refused_with_the_reason() {
        let mut both = gateway();
        set_routing(&mut both, |t| t.nginx = Some(Default::default()));
        let err = router_for(&both).unwrap_err();
        assert!(err.to_string().contains("both nginx and"), "{err}");

        let mut other = gateway();
        set_routing(&mut other, |t| {
            let plugins = t.plugins.as_mut().unwrap();
            plugins.gateway_api = None;
            plugins
                .other
                .insert("example.com/mesh".into(), serde_json::json!({}));
        });
        assert_eq!(
            router_for(&other).unwrap_err().to_string(),
            "Rollout shop/web: trafficRouting.plugins example.com/mesh not supported; Sluice implements argoproj-labs/gatewayAPI and nginx"
        );

        set_routing(&mut other, |t| t.plugins.as_mut().unwrap().other.clear());
        let err = router_for(&other).unwrap_err();
        assert!(err.to_string().contains("names no router"), "{err}");

        let mut no_canary_service = gateway();
        no_canary_service
            .spec
            .strategy
            .canary
            .as_mut()
            .unwrap()
            .canary_service = None;
        assert_eq!(
            router_for(&no_canary_service).unwrap_err().to_string(),
            "Rollout shop/web: spec.strategy.canary.canaryService is required with a traffic router"
        );

        let mut empty = gateway();
        set_routing(&mut empty, |t| *t = Default::default());
        assert_eq!(router_for(&empty).unwrap().kind(), RouterKind::ReplicaRatio);
    }

    #[test]
    fn keys_give_their_group_version_kind() {
        let route = gateway::route_key("shop", "r");
        assert_eq!(
            route.gvk(),
            GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute")
        );
        assert_eq!(route.to_string(), "HTTPRoute shop/r");
        let core = ObjectKey {
            api_version: "v1".into(),
            kind: "Service".into(),
            namespace: "shop".into(),
            name: "s".into(),
        };
        assert_eq!(core.gvk(), GroupVersionKind::gvk("", "v1", "Service"));
    }

    #[test]
    fn weights_are_percentages() {
        for w in [0, 1, 50, 100] {
            assert_eq!(check_weight(w), Ok(w));
        }
        for w in [-1, 101] {
            assert_eq!(
                check_weight(w).unwrap_err().to_string(),
                format!("canary weight {w} is outside 0..=100")
            );
        }
    }
}
