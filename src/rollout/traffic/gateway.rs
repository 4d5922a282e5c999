//! Gateway API HTTPRoute router (`trafficRouting.plugins.argoproj-labs/gatewayAPI`).
//!
//! In every rule that routes to both the stable and the canary Service, their backendRefs get
//! weights `100 − W` and `W`. Nothing else changes: not the order of `backendRefs` (public
//! contract), not the other backends, matches, filters or rules. Rules that route to neither, or to
//! only one of the two (e.g. a header match pinned to stable), are the user's fixed routing and are
//! left alone; a route where no rule has both is an error, since no weight could be set.
//!
//! `spec.rules` is an atomic list in the HTTPRoute schema, so a server-side apply cannot own just
//! the weights: the apply body carries the whole live `rules` list with only the weights changed,
//! plus the live `resourceVersion`, so that a concurrent edit of the rules (e.g. a GitOps sync)
//! makes the apply fail and be retried on fresh data instead of being overwritten with stale rules.
//! The GitOps side does the converse with [`carry_over_live_weights`] (docs/behaviour.md G15).

use serde_json::{Value, json};

use super::gateway_routes::ManagedRules;
use super::{
    LiveObjects, ObjectKey, RouterKind, TrafficError, TrafficRouter, TrafficWrite,
    check_weight_out_of, invalid_rollout, namespace, services,
};
use crate::api::rollout::{GatewayApiTrafficRouting, Rollout};
use crate::rollout::managed_routes::ActiveRoute;

/// The HTTPRoute API version Sluice reads and writes.
pub const HTTP_ROUTE_API_VERSION: &str = "gateway.networking.k8s.io/v1";
/// The HTTPRoute kind.
pub const HTTP_ROUTE_KIND: &str = "HTTPRoute";
/// The weight of a backendRef without `weight` (Gateway API default).
const DEFAULT_BACKEND_WEIGHT: i64 = 1;

/// The two Services whose backendRef weights Sluice sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagedBackends {
    /// `stableService`.
    pub stable: String,
    /// `canaryService`.
    pub canary: String,
    /// Namespace of both Services: the Rollout's.
    pub namespace: String,
}

/// The HTTPRoute router of one Rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayRouter {
    routes: Vec<ObjectKey>,
    backends: ManagedBackends,
    managed: ManagedRules,
    /// `maxTrafficWeight`: the stable gets `max_weight − W`.
    max_weight: i32,
}

/// The key of an HTTPRoute.
pub fn route_key(namespace: &str, name: &str) -> ObjectKey {
    ObjectKey {
        api_version: HTTP_ROUTE_API_VERSION.to_string(),
        kind: HTTP_ROUTE_KIND.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

impl GatewayRouter {
    /// The router for `rollout` with the plugin configuration `config`: its routes (`httpRoute`,
    /// then `httpRoutes`, in the plugin's `namespace` or the Rollout's) and Services.
    pub fn from_rollout(
        rollout: &Rollout,
        config: &GatewayApiTrafficRouting,
    ) -> Result<Self, TrafficError> {
        let rollout_ns = namespace(rollout)?;
        let (stable, canary) = services(rollout)?;
        let route_ns = config
            .namespace
            .clone()
            .unwrap_or_else(|| rollout_ns.clone());
        let routes: Vec<ObjectKey> = config
            .http_route_names()
            .into_iter()
            .map(|name| route_key(&route_ns, name))
            .collect();
        if routes.is_empty() {
            return Err(invalid_rollout(
                rollout,
                "the gatewayAPI plugin names no HTTPRoute (set httpRoute or httpRoutes)"
                    .to_string(),
            ));
        }
        let managed = ManagedRules::from_rollout(rollout, config, &route_ns);
        Ok(Self {
            routes,
            backends: ManagedBackends {
                stable,
                canary,
                namespace: rollout_ns,
            },
            managed,
            max_weight: rollout
                .spec
                .canary()
                .map_or(100, |c| c.max_traffic_weight()),
        })
    }

    /// The routes this router weights. The GitOps side uses it to know which routes of an
    /// Application a Rollout manages (docs/behaviour.md G15).
    pub fn routes(&self) -> &[ObjectKey] {
        &self.routes
    }

    /// The Services whose weights it sets.
    pub fn backends(&self) -> &ManagedBackends {
        &self.backends
    }

    /// Where and under which names it adds header and mirror rules.
    pub fn managed(&self) -> &ManagedRules {
        &self.managed
    }

    fn live_route<'a>(
        &self,
        live: &'a LiveObjects,
        key: &ObjectKey,
    ) -> Result<&'a Value, TrafficError> {
        live.get(key).ok_or_else(|| TrafficError::NotFound {
            key: Box::new(key.clone()),
        })
    }
}

impl TrafficRouter for GatewayRouter {
    fn kind(&self) -> RouterKind {
        RouterKind::GatewayApi
    }

    fn reads(&self) -> Vec<ObjectKey> {
        self.routes.clone()
    }

    fn desired(
        &self,
        live: &LiveObjects,
        canary_weight: i32,
    ) -> Result<Vec<TrafficWrite>, TrafficError> {
        check_weight_out_of(canary_weight, self.max_weight)?;
        let mut writes = Vec::new();
        for key in &self.routes {
            let route = self.live_route(live, key)?;
            let rules =
                weighted_rules_out_of(route, key, &self.backends, canary_weight, self.max_weight)?;
            if Some(&rules) != route.pointer("/spec/rules").and_then(Value::as_array) {
                writes.push(TrafficWrite::Apply {
                    key: key.clone(),
                    body: apply_body(route, key, rules),
                });
            }
        }
        Ok(writes)
    }

    /// The weight of the first route; Sluice sets all its routes together.
    fn live_weight(&self, live: &LiveObjects) -> Result<Option<i32>, TrafficError> {
        let Some(key) = self.routes.first() else {
            return Ok(None);
        };
        let (stable, canary) = route_weights(self.live_route(live, key)?, key, &self.backends)?;
        Ok(Some(canary_share(stable, canary, self.max_weight)))
    }

    fn managed_routes(
        &self,
        live: &LiveObjects,
        routes: &[ActiveRoute],
    ) -> Result<Vec<TrafficWrite>, TrafficError> {
        super::gateway_routes::writes(&self.managed, &self.backends, live, routes)
    }
}

/// Which managed Service a backendRef points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    Stable,
    Canary,
}

/// The role of a backendRef: a core `Service` (group and kind default to it) with a managed
/// name, in the Services' namespace (a backendRef's namespace defaults to the route's).
pub(super) fn role(
    backend: &Value,
    route_namespace: &str,
    backends: &ManagedBackends,
) -> Option<Role> {
    let field = |name: &str| backend.get(name).and_then(Value::as_str);
    let is_service = matches!(field("group"), None | Some(""))
        && matches!(field("kind"), None | Some("Service"))
        && field("namespace").unwrap_or(route_namespace) == backends.namespace;
    match field("name") {
        Some(name) if is_service && name == backends.stable => Some(Role::Stable),
        Some(name) if is_service && name == backends.canary => Some(Role::Canary),
        _ => None,
    }
}

pub(super) fn backend_refs(rule: &Value) -> &[Value] {
    rule.get("backendRefs")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Whether a rule routes to the stable and to the canary Service.
pub(super) fn roles_in(
    rule: &Value,
    route_namespace: &str,
    backends: &ManagedBackends,
) -> (bool, bool) {
    let roles: Vec<Role> = backend_refs(rule)
        .iter()
        .filter_map(|b| role(b, route_namespace, backends))
        .collect();
    (roles.contains(&Role::Stable), roles.contains(&Role::Canary))
}

pub(super) fn rules<'a>(route: &'a Value, key: &ObjectKey) -> Result<&'a [Value], TrafficError> {
    match route.pointer("/spec/rules") {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(rules)) => Ok(rules),
        Some(_) => Err(TrafficError::Malformed {
            key: Box::new(key.clone()),
            reason: "spec.rules is not a list".to_string(),
        }),
    }
}

/// The namespace of a route: its own, else the one in its key.
pub(super) fn route_namespace<'a>(route: &'a Value, key: &'a ObjectKey) -> &'a str {
    route
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or(&key.namespace)
}

/// The route's `spec.rules` with the managed weights set to `100 − canary_weight` (stable) and
/// `canary_weight` (canary), everything else as it is.
pub fn weighted_rules(
    route: &Value,
    key: &ObjectKey,
    backends: &ManagedBackends,
    canary_weight: i32,
) -> Result<Vec<Value>, TrafficError> {
    weighted_rules_out_of(route, key, backends, canary_weight, 100)
}

/// [`weighted_rules`] out of a total of `max_weight` (`maxTrafficWeight`): the stable gets
/// `max_weight − canary_weight`.
pub fn weighted_rules_out_of(
    route: &Value,
    key: &ObjectKey,
    backends: &ManagedBackends,
    canary_weight: i32,
    max_weight: i32,
) -> Result<Vec<Value>, TrafficError> {
    let canary_weight = i64::from(check_weight_out_of(canary_weight, max_weight)?);
    let stable_weight = i64::from(max_weight) - canary_weight;
    // Fails first when no rule could carry the split.
    route_weights(route, key, backends)?;
    let ns = route_namespace(route, key);
    Ok(rules(route, key)?
        .iter()
        .map(|rule| set_rule_weights(rule, ns, backends, stable_weight, canary_weight))
        .collect())
}

/// A copy of `rule` with the managed weights set, when it routes to both managed Services.
fn set_rule_weights(
    rule: &Value,
    route_namespace: &str,
    backends: &ManagedBackends,
    stable_weight: i64,
    canary_weight: i64,
) -> Value {
    let mut rule = rule.clone();
    if roles_in(&rule, route_namespace, backends) != (true, true) {
        return rule;
    }
    if let Some(refs) = rule.get_mut("backendRefs").and_then(Value::as_array_mut) {
        for backend in refs.iter_mut() {
            let weight = match role(backend, route_namespace, backends) {
                Some(Role::Stable) => stable_weight,
                Some(Role::Canary) => canary_weight,
                None => continue,
            };
            if let Some(fields) = backend.as_object_mut() {
                fields.insert("weight".to_string(), json!(weight));
            }
        }
    }
    rule
}

/// The server-side apply body for a route: identity, the live `resourceVersion` (optimistic
/// concurrency, see the module docs) and the whole `rules` list.
pub fn apply_body(route: &Value, key: &ObjectKey, rules: Vec<Value>) -> Value {
    super::guarded_apply_body(key, Some(route), json!({"rules": rules}))
}

/// The raw `(stable, canary)` weights of the first rule that routes to both managed Services
/// (a backendRef without `weight` weighs 1, as in Gateway API).
pub fn route_weights(
    route: &Value,
    key: &ObjectKey,
    backends: &ManagedBackends,
) -> Result<(i64, i64), TrafficError> {
    let ns = route_namespace(route, key);
    let all = rules(route, key)?;
    let Some(rule) = all
        .iter()
        .find(|rule| roles_in(rule, ns, backends) == (true, true))
    else {
        return Err(missing_backend(all, ns, key, backends));
    };
    let weight_of = |wanted: Role| {
        backend_refs(rule)
            .iter()
            .find(|b| role(b, ns, backends) == Some(wanted))
            .and_then(|b| b.get("weight"))
            .and_then(Value::as_i64)
            .unwrap_or(DEFAULT_BACKEND_WEIGHT)
    };
    Ok((weight_of(Role::Stable), weight_of(Role::Canary)))
}

/// The error naming which Service the route lacks.
pub(super) fn missing_backend(
    rules: &[Value],
    route_namespace: &str,
    key: &ObjectKey,
    backends: &ManagedBackends,
) -> TrafficError {
    let (stable, canary) = rules.iter().fold((false, false), |acc, rule| {
        let (s, c) = roles_in(rule, route_namespace, backends);
        (acc.0 || s, acc.1 || c)
    });
    let missing = match (stable, canary) {
        (false, false) => format!("{} and {}", backends.stable, backends.canary),
        (false, true) => backends.stable.clone(),
        (true, false) => backends.canary.clone(),
        (true, true) => "a rule with both".to_string(),
    };
    TrafficError::MissingBackend {
        route: Box::new(key.clone()),
        stable: backends.stable.clone(),
        canary: backends.canary.clone(),
        missing,
    }
}

/// The canary's share of traffic in percent, rounded to nearest; 0 when no traffic goes to
/// either.
pub fn canary_percent(stable: i64, canary: i64) -> i32 {
    canary_share(stable, canary, 100)
}

/// The canary's share of traffic out of `max_weight`, rounded to nearest; 0 when no traffic goes
/// to either.
pub fn canary_share(stable: i64, canary: i64, max_weight: i32) -> i32 {
    // In i128: weights read from a live route may be any i64.
    let (stable, canary) = (i128::from(stable.max(0)), i128::from(canary.max(0)));
    let total = stable + canary;
    if total == 0 {
        return 0;
    }
    let max = i128::from(max_weight.max(0));
    // At most `max_weight` after clamping, so the conversion cannot fail.
    i32::try_from((canary * max * 2 + total) / (2 * total)).unwrap_or(max_weight)
}

/// The Services whose weights one of `rollouts` sets on the HTTPRoute `namespace/name`, if any:
/// what the GitOps apply and diff need to call [`carry_over_live_weights`] (docs/behaviour.md G15).
/// The API version is not compared, since Git may declare the route in an older served version.
/// Rollouts whose router cannot be built are skipped: they set no weights.
pub fn managed_backends_of_route<'a>(
    rollouts: impl IntoIterator<Item = &'a Rollout>,
    namespace: &str,
    name: &str,
) -> Option<ManagedBackends> {
    rollouts.into_iter().find_map(|rollout| {
        let config = rollout
            .spec
            .canary()?
            .traffic_routing
            .as_ref()?
            .gateway_api()?;
        let router = GatewayRouter::from_rollout(rollout, config).ok()?;
        router
            .routes
            .iter()
            .any(|r| r.namespace == namespace && r.name == name)
            .then_some(router.backends)
    })
}

/// For the GitOps apply and diff of a route a Rollout manages (docs/behaviour.md G15): `desired`
/// (from Git) with the managed backendRefs' weights taken from `live`, so a sync never resets the
/// Rollout's split and the weights never show as drift. Everything else is Git's.
///
/// The weights of the first live rule that has both Services are used for every desired rule that
/// has both, since Sluice sets all rules alike; matching rules by index would break as soon as Git
/// adds or reorders a rule. When the live route has no such rule (not yet created, or not yet
/// weighted), `desired` is returned unchanged.
pub fn carry_over_live_weights(desired: &Value, live: &Value, backends: &ManagedBackends) -> Value {
    let live_ns = live
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or(&backends.namespace);
    let live_key = route_key(live_ns, "");
    let Ok((stable, canary)) = route_weights(live, &live_key, backends) else {
        return desired.clone();
    };
    let desired_ns = desired
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or(live_ns);
    let mut out = desired.clone();
    if let Some(rules) = out.pointer_mut("/spec/rules").and_then(Value::as_array_mut) {
        for rule in rules.iter_mut() {
            *rule = set_rule_weights(rule, desired_ns, backends, stable, canary);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    fn backends() -> ManagedBackends {
        ManagedBackends {
            stable: "web-stable".into(),
            canary: "web-canary".into(),
            namespace: "shop".into(),
        }
    }

    fn key() -> ObjectKey {
        route_key("shop", "web-route")
    }

    /// A route as a user writes it: canary listed first, an unrelated backend in the middle, a
    /// second rule for another service, filters and matches.
    fn route() -> Value {
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {
                "name": "web-route",
                "namespace": "shop",
                "resourceVersion": "42",
                "labels": {"sluice.dev/application": "shop-web"},
            },
            "spec": {
                "parentRefs": [{"name": "gw", "namespace": "infra"}],
                "hostnames": ["web.example.com"],
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                        "filters": [{"type": "RequestHeaderModifier",
                                     "requestHeaderModifier": {"add": [{"name": "x", "value": "1"}]}}],
                        "backendRefs": [
                            {"name": "web-canary", "port": 80, "weight": 0},
                            {"name": "mirror", "port": 80, "weight": 0},
                            {"name": "web-stable", "port": 80, "kind": "Service", "weight": 100},
                        ],
                    },
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
                        "backendRefs": [{"name": "admin", "port": 8080}],
                    },
                    {
                        "matches": [{"headers": [{"name": "x-pin", "value": "stable"}]}],
                        "backendRefs": [{"name": "web-stable", "port": 80}],
                    },
                ],
            },
        })
    }

    fn router() -> GatewayRouter {
        GatewayRouter {
            routes: vec![key()],
            backends: backends(),
            managed: ManagedRules::default(),
            max_weight: 100,
        }
    }

    fn live(route: Value) -> LiveObjects {
        LiveObjects::from([(key(), route)])
    }

    fn names(rule: &Value) -> Vec<&str> {
        backend_refs(rule)
            .iter()
            .map(|b| b["name"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn weights_move_and_nothing_else_does() {
        for (weight, stable, canary) in [(0, 100, 0), (20, 80, 20), (50, 50, 50), (100, 0, 100)] {
            let live = live(route());
            let writes = router().desired(&live, weight).unwrap();
            // At 0 the route already says 100/0: nothing to write.
            if weight == 0 {
                assert_eq!(writes, vec![], "weight 0");
                continue;
            }
            let [TrafficWrite::Apply { key: k, body }] = writes.as_slice() else {
                panic!("{weight}: {writes:?}");
            };
            assert_eq!(k, &key());
            let mut expected = route();
            let refs = expected["spec"]["rules"][0]["backendRefs"]
                .as_array_mut()
                .unwrap();
            refs[0]["weight"] = json!(canary);
            refs[2]["weight"] = json!(stable);
            // The body is identity + resourceVersion + the whole rules list.
            assert_eq!(
                body,
                &json!({
                    "apiVersion": "gateway.networking.k8s.io/v1",
                    "kind": "HTTPRoute",
                    "metadata": {"name": "web-route", "namespace": "shop", "resourceVersion": "42"},
                    "spec": {"rules": expected["spec"]["rules"].clone()},
                }),
                "weight {weight}"
            );
            // Order as declared, untouched rules identical.
            assert_eq!(
                names(&body["spec"]["rules"][0]),
                vec!["web-canary", "mirror", "web-stable"]
            );
            assert_eq!(body["spec"]["rules"][1], route()["spec"]["rules"][1]);
            assert_eq!(body["spec"]["rules"][2], route()["spec"]["rules"][2]);
            // Reading the result back gives the weight set.
            let mut after = route();
            after["spec"]["rules"] = body["spec"]["rules"].clone();
            assert_eq!(
                router().live_weight(&self::live(after.clone())),
                Ok(Some(weight))
            );
            assert_eq!(router().desired(&self::live(after), weight), Ok(vec![]));
        }
    }

    #[test]
    fn every_rule_with_both_backends_is_weighted() {
        let mut two = route();
        two["spec"]["rules"][1] = json!({
            "matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
            "backendRefs": [{"name": "web-stable", "port": 80}, {"name": "web-canary", "port": 80}],
        });
        let rules = weighted_rules(&two, &key(), &backends(), 30).unwrap();
        assert_eq!(
            rules[1]["backendRefs"],
            json!([
                {"name": "web-stable", "port": 80, "weight": 70},
                {"name": "web-canary", "port": 80, "weight": 30},
            ])
        );
        assert_eq!(rules[0]["backendRefs"][0]["weight"], json!(30));
    }

    #[test]
    fn only_core_services_in_the_rollout_namespace_are_managed() {
        let mut lookalikes = route();
        lookalikes["spec"]["rules"][0]["backendRefs"] = json!([
            {"name": "web-canary", "port": 80},
            {"name": "web-canary", "kind": "ServiceImport", "group": "multicluster.x-k8s.io"},
            {"name": "web-stable", "namespace": "elsewhere"},
            {"name": "web-stable", "namespace": "shop", "group": ""},
        ]);
        let rules = weighted_rules(&lookalikes, &key(), &backends(), 10).unwrap();
        let weights: Vec<Value> = backend_refs(&rules[0])
            .iter()
            .map(|b| b.get("weight").cloned().unwrap_or(Value::Null))
            .collect();
        assert_eq!(
            weights,
            vec![json!(10), Value::Null, Value::Null, json!(90)]
        );
    }

    #[test]
    fn missing_backends_are_named() {
        let cases = [
            (json!([{"name": "web-stable"}]), "web-canary"),
            (json!([{"name": "web-canary"}]), "web-stable"),
            (json!([{"name": "other"}]), "web-stable and web-canary"),
        ];
        for (refs, missing) in cases {
            let mut r = route();
            r["spec"]["rules"] = json!([{"backendRefs": refs}]);
            let err = router().desired(&live(r), 20).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "HTTPRoute shop/web-route has no rule with backendRefs to both web-stable (stableService) and web-canary (canaryService); missing: {missing}"
                )
            );
        }
        // Both present, never in the same rule.
        let mut split = route();
        split["spec"]["rules"] = json!([{"backendRefs": [{"name": "web-stable"}]}, {"backendRefs": [{"name": "web-canary"}]}]);
        let err = router().live_weight(&live(split)).unwrap_err();
        assert!(
            err.to_string().ends_with("missing: a rule with both"),
            "{err}"
        );
        // No rules at all.
        let mut empty = route();
        empty["spec"] = json!({});
        assert!(matches!(
            router().desired(&live(empty), 20),
            Err(TrafficError::MissingBackend { .. })
        ));
    }

    #[test]
    fn missing_or_malformed_routes_and_bad_weights() {
        assert_eq!(
            router()
                .desired(&LiveObjects::new(), 20)
                .unwrap_err()
                .to_string(),
            "HTTPRoute shop/web-route not found"
        );
        let mut bad = route();
        bad["spec"]["rules"] = json!("nope");
        assert_eq!(
            router().live_weight(&live(bad)).unwrap_err().to_string(),
            "HTTPRoute shop/web-route: spec.rules is not a list"
        );
        assert_eq!(
            router().desired(&live(route()), 120),
            Err(TrafficError::WeightOutOfRange {
                weight: 120,
                max_weight: 100
            })
        );
    }

    #[test]
    fn live_weight_follows_gateway_api_defaults() {
        let cases = [
            (json!([{"name": "web-stable"}, {"name": "web-canary"}]), 50),
            (
                json!([{"name": "web-stable", "weight": 3}, {"name": "web-canary", "weight": 1}]),
                25,
            ),
            (
                json!([{"name": "web-stable", "weight": 0}, {"name": "web-canary", "weight": 0}]),
                0,
            ),
            (
                json!([{"name": "web-stable", "weight": 2}, {"name": "web-canary", "weight": 1}]),
                33,
            ),
        ];
        for (refs, weight) in cases {
            let mut r = route();
            r["spec"]["rules"] = json!([{"backendRefs": refs}]);
            assert_eq!(router().live_weight(&live(r)), Ok(Some(weight)));
        }
        assert_eq!(canary_percent(1, 2), 67);
    }

    #[test]
    fn after_promotion_sends_everything_to_stable() {
        let mut at_50 = route();
        at_50["spec"]["rules"] = json!(weighted_rules(&route(), &key(), &backends(), 50).unwrap());
        let writes = router().after_promotion(&live(at_50)).unwrap();
        let [TrafficWrite::Apply { body, .. }] = writes.as_slice() else {
            panic!("{writes:?}");
        };
        assert_eq!(body["spec"]["rules"], route()["spec"]["rules"]);
    }

    #[test]
    fn several_routes_are_weighted_together() {
        let other = route_key("shop", "api-route");
        let router = GatewayRouter {
            routes: vec![key(), other.clone()],
            backends: backends(),
            managed: ManagedRules::default(),
            max_weight: 100,
        };
        let mut api = route();
        api["metadata"]["name"] = json!("api-route");
        let live = LiveObjects::from([(key(), route()), (other.clone(), api)]);
        assert_eq!(router.reads(), vec![key(), other.clone()]);
        let writes = router.desired(&live, 40).unwrap();
        let keys: Vec<&ObjectKey> = writes
            .iter()
            .map(|w| match w {
                TrafficWrite::Apply { key, .. } | TrafficWrite::Delete { key } => key,
            })
            .collect();
        assert_eq!(keys, vec![&key(), &other]);
        let without_second = LiveObjects::from([(key(), route())]);
        assert!(matches!(
            router.desired(&without_second, 40),
            Err(TrafficError::NotFound { key }) if *key == other
        ));
    }

    #[test]
    fn carry_over_keeps_live_weights_and_git_for_the_rest() {
        let mut live_route = route();
        live_route["spec"]["rules"] =
            json!(weighted_rules(&route(), &key(), &backends(), 20).unwrap());
        // Git changes a port, adds a rule in front and a header filter; weights as first written.
        let mut desired = route();
        desired["metadata"] = json!({"name": "web-route"});
        desired["spec"]["rules"][0]["backendRefs"][1]["port"] = json!(81);
        let rules = desired["spec"]["rules"].as_array_mut().unwrap();
        rules.insert(
            0,
            json!({"matches": [{"path": {"type": "Exact", "value": "/beta"}}],
                   "backendRefs": [{"name": "web-canary", "port": 80}, {"name": "web-stable", "port": 80}]}),
        );
        let out = carry_over_live_weights(&desired, &live_route, &backends());
        let mut expected = desired.clone();
        expected["spec"]["rules"][0]["backendRefs"] = json!([
            {"name": "web-canary", "port": 80, "weight": 20},
            {"name": "web-stable", "port": 80, "weight": 80},
        ]);
        expected["spec"]["rules"][1]["backendRefs"][0]["weight"] = json!(20);
        expected["spec"]["rules"][1]["backendRefs"][2]["weight"] = json!(80);
        assert_eq!(out, expected);
        // Applying the carried-over route changes no weight: no fight with the engine.
        let mut synced = out.clone();
        synced["metadata"] = live_route["metadata"].clone();
        assert_eq!(router().live_weight(&live(synced)), Ok(Some(20)));
    }

    #[test]
    fn carry_over_without_live_weights_keeps_git() {
        let desired = route();
        let mut unmanaged = route();
        unmanaged["spec"]["rules"] = json!([{"backendRefs": [{"name": "other"}]}]);
        assert_eq!(
            carry_over_live_weights(&desired, &unmanaged, &backends()),
            desired
        );
        assert_eq!(
            carry_over_live_weights(&desired, &json!({}), &backends()),
            desired
        );
        // Git removed the managed backends: Git wins, nothing is added.
        let mut live_route = route();
        live_route["spec"]["rules"] =
            json!(weighted_rules(&route(), &key(), &backends(), 50).unwrap());
        assert_eq!(
            carry_over_live_weights(&unmanaged, &live_route, &backends()),
            unmanaged
        );
    }

    #[test]
    fn routes_are_matched_to_the_rollout_that_manages_them() {
        let gateway: Rollout = serde_saphyr::from_str(include_str!(
            "../../../tests/fixtures/rollout/canary-gatewayapi.yaml"
        ))
        .unwrap();
        let ratio: Rollout = serde_saphyr::from_str(include_str!(
            "../../../tests/fixtures/rollout/canary-replicas.yaml"
        ))
        .unwrap();
        let rollouts = [ratio, gateway];
        assert_eq!(
            managed_backends_of_route(&rollouts, "shop", "web-route"),
            Some(backends())
        );
        assert_eq!(managed_backends_of_route(&rollouts, "shop", "other"), None);
        assert_eq!(
            managed_backends_of_route(&rollouts, "prod", "web-route"),
            None
        );
    }

    #[test]
    fn from_rollout_uses_plugin_namespace_and_all_routes() {
        let mut r: Rollout = serde_saphyr::from_str(include_str!(
            "../../../tests/fixtures/rollout/canary-gatewayapi.yaml"
        ))
        .unwrap();
        let mut config = r
            .spec
            .canary()
            .unwrap()
            .traffic_routing
            .as_ref()
            .unwrap()
            .gateway_api()
            .unwrap()
            .clone();
        config.namespace = Some("edge".into());
        config.http_routes = vec![crate::api::rollout::GatewayApiHttpRoute {
            name: "second".into(),
            use_header_routes: None,
        }];
        let router = GatewayRouter::from_rollout(&r, &config).unwrap();
        assert_eq!(
            router.routes(),
            &[route_key("edge", "web-route"), route_key("edge", "second")]
        );
        assert_eq!(router.backends(), &backends());

        config.http_route = None;
        config.http_routes.clear();
        let err = GatewayRouter::from_rollout(&r, &config).unwrap_err();
        assert!(err.to_string().contains("names no HTTPRoute"), "{err}");

        r.metadata.namespace = None;
        assert!(GatewayRouter::from_rollout(&r, &config).is_err());
    }

    #[test]
    fn weights_are_out_of_max_traffic_weight() {
        let router = GatewayRouter {
            max_weight: 1000,
            ..router()
        };
        let writes = router.desired(&live(route()), 250).unwrap();
        let [TrafficWrite::Apply { body, .. }] = writes.as_slice() else {
            panic!("{writes:?}");
        };
        let mut applied = route();
        applied["spec"]["rules"] = body["spec"]["rules"].clone();
        assert_eq!(route_weights(&applied, &key(), &backends()), Ok((750, 250)));
        assert_eq!(router.live_weight(&live(applied.clone())), Ok(Some(250)));
        assert_eq!(router.desired(&live(applied), 250), Ok(vec![]));
        assert_eq!(
            router.desired(&live(route()), 1001),
            Err(TrafficError::WeightOutOfRange {
                weight: 1001,
                max_weight: 1000
            })
        );
        assert_eq!(canary_share(1, 3, 1000), 750);
    }
}
