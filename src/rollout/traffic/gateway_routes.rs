//! Header and mirror routes on Gateway API HTTPRoutes, as the `argoproj-labs/gatewayAPI` plugin
//! writes header routes.
//!
//! Every managed route becomes one rule per "source" rule (a rule routing to both the stable and
//! the canary Service), placed before the user's rules and named after the route (`<name>` for
//! the first source rule, `<name>-1`, `<name>-2`... for the next, the plugin's names, so rules an
//! Argo-driven plugin left behind are recognised). The rule names are the whole state: the set in
//! force is read back from the live route, so nothing is kept in memory.
//!
//! - a header route copies the source rule's matches (or one empty match) with the route's headers
//!   added, and its filters, and routes to the canary Service only;
//! - a mirror route (which the plugin does not implement) copies the source rule's backendRefs, so
//!   matching requests are still split by weight (the weights are set on it like on the source),
//!   and adds a `RequestMirror` filter to the canary Service with `percent`.
//!
//! The user's rules are never changed; the write is the whole `rules` list (an atomic list) with the
//! live `resourceVersion`, as for weights.
//!
//! Precedence: Gateway API picks the rule with the most specific match (exact path, longest path,
//! method, most headers), rule order only breaking ties; managed rules come first, in
//! `managedRoutes` order, so they win ties. `managedRoutes`' order cannot override specificity: a
//! mirror route matching a method takes precedence over a header route for requests both match.

use regex::escape;
use serde_json::{Map, Value, json};

use super::gateway::{
    ManagedBackends, Role, apply_body, backend_refs, missing_backend, role, roles_in, route_key,
    route_namespace, rules,
};
use super::{LiveObjects, ObjectKey, TrafficError, TrafficWrite};
use crate::api::rollout::{GatewayApiTrafficRouting, Rollout};
use crate::api::routes::{GATEWAY_METHODS, RouteMatch, StringMatch, ValueMatch};
use crate::rollout::managed_routes::ActiveRoute;

/// Where a Rollout's managed rules go and how they are recognised.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ManagedRules {
    /// The HTTPRoutes that take managed rules (`httpRoute`, and `httpRoutes` with
    /// `useHeaderRoutes: true`).
    pub routes: Vec<ObjectKey>,
    /// Every name of `managedRoutes`: a rule named after one of them is the Rollout's.
    pub names: Vec<String>,
}

impl ManagedRules {
    /// From the Rollout's `managedRoutes` and the plugin's routes in `route_namespace`.
    pub fn from_rollout(
        rollout: &Rollout,
        config: &GatewayApiTrafficRouting,
        route_namespace: &str,
    ) -> Self {
        let names = rollout
            .spec
            .canary()
            .and_then(|c| c.traffic_routing.as_ref())
            .and_then(|t| t.managed_routes.as_ref())
            .map(|m| m.iter().map(|r| r.name.clone()).collect())
            .unwrap_or_default();
        Self {
            routes: config
                .routes_with_managed_rules()
                .map(|name| route_key(route_namespace, name))
                .collect(),
            names,
        }
    }

    /// Whether a rule of this name is one of the Rollout's managed rules.
    pub fn owns(&self, rule_name: &str) -> bool {
        self.names.iter().any(|name| is_rule_of(rule_name, name))
    }
}

/// `<route>` or `<route>-<n>`: the name of a managed rule of `route`.
fn is_rule_of(rule_name: &str, route: &str) -> bool {
    match rule_name.strip_prefix(route) {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix('-')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
        None => false,
    }
}

/// The writes that leave exactly `routes` as managed rules on each route that takes them.
pub fn writes(
    managed: &ManagedRules,
    backends: &ManagedBackends,
    live: &LiveObjects,
    routes: &[ActiveRoute],
) -> Result<Vec<TrafficWrite>, TrafficError> {
    let mut writes = Vec::new();
    for key in &managed.routes {
        let Some(route) = live.get(key) else {
            if routes.is_empty() {
                // Nothing to remove from a route that is gone.
                continue;
            }
            return Err(TrafficError::NotFound {
                key: Box::new(key.clone()),
            });
        };
        let wanted = rules_with(route, key, managed, backends, routes)?;
        if Some(&wanted) != route.pointer("/spec/rules").and_then(Value::as_array) {
            writes.push(TrafficWrite::Apply {
                key: key.clone(),
                body: apply_body(route, key, wanted),
            });
        }
    }
    Ok(writes)
}

/// The managed rules of `routes`, then the route's other rules as they are.
pub fn rules_with(
    route: &Value,
    key: &ObjectKey,
    managed: &ManagedRules,
    backends: &ManagedBackends,
    routes: &[ActiveRoute],
) -> Result<Vec<Value>, TrafficError> {
    let ns = route_namespace(route, key);
    let all = rules(route, key)?;
    let kept: Vec<Value> = all
        .iter()
        .filter(|rule| !rule_name(rule).is_some_and(|n| managed.owns(n)))
        .cloned()
        .collect();
    if routes.is_empty() {
        return Ok(kept);
    }
    let sources: Vec<&Value> = kept
        .iter()
        .filter(|rule| roles_in(rule, ns, backends) == (true, true))
        .collect();
    if sources.is_empty() {
        return Err(missing_backend(&kept, ns, key, backends));
    }
    let mut added = Vec::new();
    for route_spec in routes {
        for (index, source) in sources.iter().enumerate() {
            let name = match index {
                0 => route_spec.name().to_string(),
                n => format!("{}-{n}", route_spec.name()),
            };
            let canary = canary_ref(source, ns, backends);
            let rule = match route_spec {
                ActiveRoute::Header(h) => {
                    let headers: Vec<Value> = h
                        .matches
                        .iter()
                        .map(|m| header_match(&m.header_name, m.header_value.as_ref()))
                        .collect::<Result<_, _>>()
                        .map_err(|reason| invalid(key, route_spec.name(), reason))?;
                    header_rule(&name, source, &headers, canary)
                }
                ActiveRoute::Mirror(m) => {
                    let matches = mirror_matches(source, &m.matches)
                        .map_err(|reason| invalid(key, route_spec.name(), reason))?;
                    mirror_rule(&name, source, matches, canary, m.percentage())
                }
            };
            added.push(with_defaults(rule));
        }
    }
    // First: Gateway API gives a tie between equally specific matches to the first rule, so a
    // mirror route matching what the weighted rule matches takes those requests (in
    // managedRoutes' order among managed rules) instead of never applying.
    added.extend(kept);
    Ok(added)
}

fn invalid(key: &ObjectKey, route: &str, reason: String) -> TrafficError {
    TrafficError::Malformed {
        key: Box::new(key.clone()),
        reason: format!("managed route {route:?}: {reason}"),
    }
}

fn rule_name(rule: &Value) -> Option<&str> {
    rule.get("name").and_then(Value::as_str)
}

/// The source rule's canary backendRef, reduced to what addresses the Service (its weight is the
/// split's, not the route's).
fn canary_ref(source: &Value, route_namespace: &str, backends: &ManagedBackends) -> Value {
    let found = backend_refs(source)
        .iter()
        .find(|b| role(b, route_namespace, backends) == Some(Role::Canary));
    let mut reference = Map::new();
    reference.insert("group".into(), json!(""));
    reference.insert("kind".into(), json!("Service"));
    reference.insert("name".into(), json!(backends.canary));
    for field in ["namespace", "port"] {
        if let Some(value) = found.and_then(|b| b.get(field)) {
            reference.insert(field.into(), value.clone());
        }
    }
    Value::Object(reference)
}

/// An HTTPRoute header match for a header route match (the plugin's mapping: a prefix becomes a
/// regular expression; Sluice anchors and escapes it, so `1.2` does not match `102`).
fn header_match(name: &str, value: Option<&StringMatch>) -> Result<Value, String> {
    let value = value
        .ok_or_else(|| "headerValue is missing".to_string())?
        .resolve()
        .map_err(str::to_string)?;
    let (kind, value) = match value {
        ValueMatch::Exact(v) => ("Exact", v),
        ValueMatch::Prefix(p) => ("RegularExpression", format!("^{}.*", escape(&p))),
        ValueMatch::Regex(r) => ("RegularExpression", r),
    };
    Ok(json!({"type": kind, "name": name, "value": value}))
}

/// The source's matches (or one that matches everything) with `headers` added to each.
fn header_rule(name: &str, source: &Value, headers: &[Value], canary: Value) -> Value {
    let matches: Vec<Value> = source_matches(source)
        .into_iter()
        .map(|mut m| {
            push_headers(&mut m, headers);
            m
        })
        .collect();
    let mut rule = Map::new();
    rule.insert("name".into(), json!(name));
    rule.insert("matches".into(), json!(matches));
    if let Some(filters) = source.get("filters").filter(|f| !f.is_null()) {
        rule.insert("filters".into(), filters.clone());
    }
    rule.insert("backendRefs".into(), json!([canary]));
    Value::Object(rule)
}

/// The source's weighted backends, its filters and a mirror of `percent` % to the canary.
fn mirror_rule(
    name: &str,
    source: &Value,
    matches: Vec<Value>,
    canary: Value,
    percent: i32,
) -> Value {
    let mut filters: Vec<Value> = source
        .get("filters")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    filters.push(json!({
        "type": "RequestMirror",
        "requestMirror": {"backendRef": canary, "percent": percent},
    }));
    let mut rule = Map::new();
    rule.insert("name".into(), json!(name));
    rule.insert("matches".into(), json!(matches));
    rule.insert("filters".into(), json!(filters));
    rule.insert("backendRefs".into(), json!(backend_refs(source)));
    Value::Object(rule)
}

/// The rule as the API server stores it (the HTTPRoute schema's defaults filled in), so that
/// comparing it with the live rule finds no difference once written: no write on every reconcile.
fn with_defaults(mut rule: Value) -> Value {
    if let Some(matches) = rule.get_mut("matches").and_then(Value::as_array_mut) {
        for m in matches.iter_mut().filter_map(Value::as_object_mut) {
            m.entry("path").or_insert_with(default_path);
            if let Some(headers) = m.get_mut("headers").and_then(Value::as_array_mut) {
                for h in headers.iter_mut().filter_map(Value::as_object_mut) {
                    h.entry("type").or_insert_with(|| json!("Exact"));
                }
            }
        }
    }
    if let Some(refs) = rule.get_mut("backendRefs").and_then(Value::as_array_mut) {
        for r in refs.iter_mut().filter_map(Value::as_object_mut) {
            r.entry("group").or_insert_with(|| json!(""));
            r.entry("kind").or_insert_with(|| json!("Service"));
            r.entry("weight").or_insert_with(|| json!(1));
        }
    }
    rule
}

fn default_path() -> Value {
    json!({"type": "PathPrefix", "value": "/"})
}

fn source_matches(source: &Value) -> Vec<Value> {
    match source.get("matches").and_then(Value::as_array) {
        Some(matches) if !matches.is_empty() => matches.clone(),
        _ => vec![json!({"path": default_path()})],
    }
}

fn push_headers(m: &mut Value, headers: &[Value]) {
    let Some(fields) = m.as_object_mut() else {
        return;
    };
    let list = fields.entry("headers").or_insert_with(|| json!([]));
    if let Some(list) = list.as_array_mut() {
        list.extend(headers.iter().cloned());
    } else {
        *list = json!(headers);
    }
}

/// Every source match narrowed by every mirror match: the mirror's path and method replace the
/// source's, its headers are added.
fn mirror_matches(source: &Value, mirror: &[RouteMatch]) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for m in mirror {
        let headers: Vec<Value> = m
            .headers
            .iter()
            .map(|(name, value)| header_match(name, Some(value)))
            .collect::<Result<_, _>>()?;
        for mut base in source_matches(source) {
            let Some(fields) = base.as_object_mut() else {
                continue;
            };
            if let Some(path) = &m.path {
                fields.insert("path".into(), path_match(path)?);
            }
            if let Some(method) = &m.method {
                fields.insert("method".into(), json!(method_match(method)?));
            }
            push_headers(&mut base, &headers);
            out.push(base);
        }
    }
    Ok(out)
}

fn path_match(path: &StringMatch) -> Result<Value, String> {
    Ok(match path.resolve().map_err(str::to_string)? {
        ValueMatch::Exact(v) => json!({"type": "Exact", "value": v}),
        ValueMatch::Prefix(v) => json!({"type": "PathPrefix", "value": v}),
        ValueMatch::Regex(v) => json!({"type": "RegularExpression", "value": v}),
    })
}

/// Gateway API matches a method exactly, by its name in capitals.
fn method_match(method: &StringMatch) -> Result<String, String> {
    match method.resolve().map_err(str::to_string)? {
        ValueMatch::Exact(v) if GATEWAY_METHODS.contains(&v.as_str()) => Ok(v),
        other => Err(format!(
            "method {other:?}: Gateway API matches one of {} exactly",
            GATEWAY_METHODS.join(", ")
        )),
    }
}

/// For the GitOps apply and diff of an HTTPRoute (docs/behaviour.md G15): `desired` (Git's) with
/// the live managed rules of the Rollout among `rollouts` that adds them to `namespace/name` put in
/// front, as the router keeps them, so a sync neither removes a header or mirror route in force nor
/// shows it as drift. `desired` unchanged when no Rollout adds rules to the route, or none is live.
pub fn carry_over_managed_rules<'a>(
    desired: &Value,
    live: &Value,
    rollouts: impl IntoIterator<Item = &'a Rollout>,
    namespace: &str,
    name: &str,
) -> Value {
    let managed = rollouts.into_iter().find_map(|rollout| {
        let config = rollout
            .spec
            .canary()?
            .traffic_routing
            .as_ref()?
            .gateway_api()?;
        let router = super::gateway::GatewayRouter::from_rollout(rollout, config).ok()?;
        let managed = router.managed().clone();
        managed
            .routes
            .iter()
            .any(|r| r.namespace == namespace && r.name == name)
            .then_some(managed)
    });
    let Some(managed) = managed else {
        return desired.clone();
    };
    let owned = |rule: &&Value| rule_name(rule).is_some_and(|n| managed.owns(n));
    let live_rules: Vec<Value> = live
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(owned)
        .cloned()
        .collect();
    if live_rules.is_empty() {
        return desired.clone();
    }
    let mut out = desired.clone();
    if let Some(rules) = out.pointer_mut("/spec/rules").and_then(Value::as_array_mut) {
        let git: Vec<Value> = rules.iter().filter(|r| !owned(r)).cloned().collect();
        *rules = live_rules.into_iter().chain(git).collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use pretty_assertions::assert_eq;

    use super::*;
    use crate::api::routes::{HeaderRoutingMatch, SetHeaderRoute, SetMirrorRoute};

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

    fn managed() -> ManagedRules {
        ManagedRules {
            routes: vec![key()],
            names: vec!["mirror".into(), "beta".into()],
        }
    }

    /// A weighted rule with a path match and a filter, and an unrelated rule.
    fn route() -> Value {
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "web-route", "namespace": "shop", "resourceVersion": "9"},
            "spec": {"rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "filters": [{"type": "RequestHeaderModifier",
                                 "requestHeaderModifier": {"add": [{"name": "x", "value": "1"}]}}],
                    "backendRefs": [
                        {"name": "web-stable", "port": 80, "weight": 70},
                        {"name": "web-canary", "port": 8080, "weight": 30},
                    ],
                },
                {"matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
                 "backendRefs": [{"name": "admin", "port": 80}]},
            ]},
        })
    }

    fn header(name: &str, value: StringMatch) -> ActiveRoute {
        ActiveRoute::Header(SetHeaderRoute {
            name: "beta".into(),
            matches: vec![HeaderRoutingMatch {
                header_name: name.into(),
                header_value: Some(value),
            }],
        })
    }

    fn exact(v: &str) -> StringMatch {
        StringMatch {
            exact: Some(v.into()),
            ..StringMatch::default()
        }
    }

    fn mirror(percent: i32) -> ActiveRoute {
        ActiveRoute::Mirror(SetMirrorRoute {
            name: "mirror".into(),
            matches: vec![RouteMatch {
                method: Some(exact("GET")),
                path: Some(StringMatch {
                    prefix: Some("/api".into()),
                    ..StringMatch::default()
                }),
                headers: BTreeMap::from([("x-tenant".to_string(), exact("a"))]),
            }],
            percentage: Some(percent),
        })
    }

    fn apply(writes: &[TrafficWrite]) -> &Value {
        let [TrafficWrite::Apply { key: k, body }] = writes else {
            panic!("{writes:?}");
        };
        assert_eq!(k, &key());
        assert_eq!(body["metadata"]["resourceVersion"], json!("9"));
        body
    }

    fn live(route: Value) -> LiveObjects {
        LiveObjects::from([(key(), route)])
    }

    #[test]
    fn a_header_route_adds_a_canary_only_rule_and_keeps_the_rest() {
        let writes = writes(
            &managed(),
            &backends(),
            &live(route()),
            &[header("X-Canary", exact("yes"))],
        )
        .unwrap();
        let rules = apply(&writes)["spec"]["rules"].as_array().unwrap().clone();
        assert_eq!(rules[1..], route()["spec"]["rules"].as_array().unwrap()[..]);
        assert_eq!(
            rules[0],
            json!({
                "name": "beta",
                "matches": [{"path": {"type": "PathPrefix", "value": "/"},
                             "headers": [{"type": "Exact", "name": "X-Canary", "value": "yes"}]}],
                "filters": route()["spec"]["rules"][0]["filters"].clone(),
                "backendRefs": [{"group": "", "kind": "Service", "name": "web-canary", "port": 8080, "weight": 1}],
            })
        );
        // Applied, the same routes write nothing; the weights still read from the source rule.
        let mut after = route();
        after["spec"]["rules"] = json!(rules);
        let same = super::writes(
            &managed(),
            &backends(),
            &live(after.clone()),
            &[header("X-Canary", exact("yes"))],
        );
        assert_eq!(same, Ok(vec![]));
        let (stable, canary) =
            super::super::gateway::route_weights(&after, &key(), &backends()).unwrap();
        assert_eq!((stable, canary), (70, 30));
        // Weights set later leave the header rule alone (it routes to the canary only).
        let weighted =
            super::super::gateway::weighted_rules(&after, &key(), &backends(), 50).unwrap();
        assert_eq!(weighted[0], after["spec"]["rules"][0]);
    }

    #[test]
    fn header_values_map_to_gateway_match_types() {
        let prefix = StringMatch {
            prefix: Some("1.2".into()),
            ..StringMatch::default()
        };
        let regex = StringMatch {
            regex: Some("^(a|b)$".into()),
            ..StringMatch::default()
        };
        assert_eq!(
            header_match("v", Some(&prefix)),
            Ok(json!({"type": "RegularExpression", "name": "v", "value": "^1\\.2.*"}))
        );
        assert_eq!(
            header_match("v", Some(&regex)),
            Ok(json!({"type": "RegularExpression", "name": "v", "value": "^(a|b)$"}))
        );
        assert!(header_match("v", None).is_err());
    }

    #[test]
    fn a_mirror_route_copies_the_split_and_mirrors_a_percentage() {
        let writes = writes(&managed(), &backends(), &live(route()), &[mirror(25)]).unwrap();
        let rule = apply(&writes)["spec"]["rules"][0].clone();
        assert_eq!(
            rule,
            json!({
                "name": "mirror",
                "matches": [{"path": {"type": "PathPrefix", "value": "/api"}, "method": "GET",
                             "headers": [{"type": "Exact", "name": "x-tenant", "value": "a"}]}],
                "filters": [
                    route()["spec"]["rules"][0]["filters"][0].clone(),
                    {"type": "RequestMirror",
                     "requestMirror": {"backendRef": {"group": "", "kind": "Service",
                                                      "name": "web-canary", "port": 8080}, "percent": 25}},
                ],
                "backendRefs": [
                    {"group": "", "kind": "Service", "name": "web-stable", "port": 80, "weight": 70},
                    {"group": "", "kind": "Service", "name": "web-canary", "port": 8080, "weight": 30},
                ],
            })
        );
        // The mirror rule routes to both Services, so weights move on it as on the source.
        let mut after = route();
        after["spec"]["rules"] = apply(&writes)["spec"]["rules"].clone();
        let weighted =
            super::super::gateway::weighted_rules(&after, &key(), &backends(), 60).unwrap();
        assert_eq!(weighted[0]["backendRefs"][1]["weight"], json!(60));
    }

    #[test]
    fn routes_follow_managed_order_and_every_source_rule() {
        let mut two = route();
        two["spec"]["rules"][1] = json!({
            "matches": [{"path": {"type": "Exact", "value": "/v2"}}],
            "backendRefs": [{"name": "web-canary", "port": 8080}, {"name": "web-stable", "port": 80}],
        });
        let routes = [mirror(10), header("X-Canary", exact("yes"))];
        let rules = rules_with(&two, &key(), &managed(), &backends(), &routes).unwrap();
        let names: Vec<&str> = rules.iter().map(|r| rule_name(r).unwrap_or("-")).collect();
        assert_eq!(
            names,
            vec!["mirror", "mirror-1", "beta", "beta-1", "-", "-"]
        );
        assert_eq!(
            rules[3]["matches"][0]["path"],
            json!({"type": "Exact", "value": "/v2"})
        );
    }

    #[test]
    fn removing_routes_leaves_the_users_rules_only() {
        let mut with_rules = route();
        with_rules["spec"]["rules"] = json!(
            rules_with(
                &route(),
                &key(),
                &managed(),
                &backends(),
                &[mirror(10), header("h", exact("v"))]
            )
            .unwrap()
        );
        // A user's rule whose name only looks like a managed one stays.
        with_rules["spec"]["rules"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "beta-x", "backendRefs": [{"name": "admin", "port": 80}]}));
        let writes = writes(&managed(), &backends(), &live(with_rules), &[]).unwrap();
        let rules = apply(&writes)["spec"]["rules"].as_array().unwrap().clone();
        let mut expected = route()["spec"]["rules"].as_array().unwrap().clone();
        expected.push(json!({"name": "beta-x", "backendRefs": [{"name": "admin", "port": 80}]}));
        assert_eq!(rules, expected);
        // Nothing managed: nothing written; a route that is gone: nothing to remove.
        assert_eq!(
            super::writes(&managed(), &backends(), &live(route()), &[]),
            Ok(vec![])
        );
        assert_eq!(
            super::writes(&managed(), &backends(), &LiveObjects::new(), &[]),
            Ok(vec![])
        );
    }

    #[test]
    fn errors_name_the_route_and_the_problem() {
        let err = writes(&managed(), &backends(), &LiveObjects::new(), &[mirror(10)]).unwrap_err();
        assert_eq!(err.to_string(), "HTTPRoute shop/web-route not found");
        let mut no_canary = route();
        no_canary["spec"]["rules"] = json!([{"backendRefs": [{"name": "web-stable", "port": 80}]}]);
        assert!(matches!(
            writes(&managed(), &backends(), &live(no_canary), &[mirror(10)]),
            Err(TrafficError::MissingBackend { .. })
        ));
        let ActiveRoute::Mirror(mut m) = mirror(10) else {
            unreachable!()
        };
        m.matches[0].method = Some(StringMatch {
            prefix: Some("G".into()),
            ..StringMatch::default()
        });
        let err = writes(
            &managed(),
            &backends(),
            &live(route()),
            &[ActiveRoute::Mirror(m)],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("managed route \"mirror\": method"),
            "{err}"
        );
    }

    #[test]
    fn a_gitops_sync_keeps_the_live_managed_rules() {
        let rollout: Rollout = serde_saphyr::from_str(
            &include_str!("../../../tests/fixtures/rollout/canary-gatewayapi.yaml").replace(
                "plugins:",
                "managedRoutes: [{name: beta}]\n        plugins:",
            ),
        )
        .unwrap();
        assert!(
            rollout
                .spec
                .canary()
                .unwrap()
                .traffic_routing
                .as_ref()
                .unwrap()
                .managed_routes
                .is_some(),
            "fixture edited"
        );
        let mut live = route();
        live["spec"]["rules"] = json!(
            rules_with(
                &route(),
                &key(),
                &managed(),
                &backends(),
                &[header("X-Canary", exact("yes"))]
            )
            .unwrap()
        );
        let git = route();
        let out = carry_over_managed_rules(&git, &live, [&rollout], "shop", "web-route");
        assert_eq!(out["spec"]["rules"], live["spec"]["rules"]);
        // Another route, or nothing managed live: Git's as it is.
        assert_eq!(
            carry_over_managed_rules(&git, &live, [&rollout], "shop", "other"),
            git
        );
        assert_eq!(
            carry_over_managed_rules(&git, &route(), [&rollout], "shop", "web-route"),
            git
        );
    }

    #[test]
    fn managed_rule_names() {
        assert!(is_rule_of("beta", "beta"));
        assert!(is_rule_of("beta-12", "beta"));
        assert!(!is_rule_of("beta-", "beta"));
        assert!(!is_rule_of("beta-x", "beta"));
        assert!(!is_rule_of("betas", "beta"));
        assert!(!managed().owns("other"));
    }
}
