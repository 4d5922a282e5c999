//! Header and mirror routes (Argo Rollouts' `setHeaderRoute` and `setMirrorRoute` steps, with
//! `trafficRouting.managedRoutes`): the types, as Argo writes them, and their validation.
//!
//! A managed route is a route the Rollout adds to the traffic router for the duration of an update
//! (requests with a header go to the canary; a share of matching requests is mirrored to it). Which
//! routes exist at a step is decided by the planner (`crate::rollout::managed_routes`), how they are
//! written by each router (`crate::rollout::traffic`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::rollout::{
    CanaryStep, CanaryStepKind, CanaryStrategy, GATEWAY_API_PLUGIN, GatewayApiTrafficRouting,
    RolloutSpecError,
};

/// Argo's message when a step names a route that `managedRoutes` does not list.
pub const ROUTE_NOT_IN_MANAGED_ROUTES: &str =
    "Steps define a route that does not exist in spec.strategy.canary.trafficRouting.managedRoutes";
/// Argo's message for a match value with more than one kind set.
pub const STRING_MATCH_MULTIPLE: &str =
    "StringMatch match value must have exactly one of the following: exact, regex, prefix";
/// Argo's message for a match value with no kind set.
pub const STRING_MATCH_MISSING: &str =
    "StringMatch value missed, match value must have one of the following: exact, regex, prefix";

/// One entry of `trafficRouting.managedRoutes` (Argo's `MangedRoutes`). The list order is the
/// routes' precedence.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedRoute {
    /// The route's name, as `setHeaderRoute.name` / `setMirrorRoute.name` refer to it.
    pub name: String,
}

/// `steps[].setHeaderRoute` (Argo's `SetHeaderRoute`): requests matching go to the canary only.
/// Without `match`, the route is removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetHeaderRoute {
    /// A name listed in `trafficRouting.managedRoutes`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Header matches, all of which a request must satisfy.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HeaderRoutingMatch>,
}

/// One header match of a [`SetHeaderRoute`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderRoutingMatch {
    /// The header's name.
    pub header_name: String,
    /// How its value is matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_value: Option<StringMatch>,
}

/// `steps[].setMirrorRoute` (Argo's `SetMirrorRoute`): a share of the requests matching is copied
/// to the canary (the responses of the copies are dropped). Without `match`, the route is removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetMirrorRoute {
    /// A name listed in `trafficRouting.managedRoutes`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Request matches; a request matching any of them is mirrored.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<RouteMatch>,
    /// Percentage of the matching requests mirrored [100].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub percentage: Option<i32>,
}

/// One request match of a [`SetMirrorRoute`] (Argo's `RouteMatch`): every part set must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteMatch {
    /// The HTTP method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatch>,
    /// The URL path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<StringMatch>,
    /// Headers, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, StringMatch>,
}

/// How a value is matched (Argo's `StringMatch`): exactly one of the three is set (Argo treats an
/// empty string as unset).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StringMatch {
    /// The value is exactly this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// The value starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The value matches this regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// A [`StringMatch`] with its one kind resolved.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ValueMatch {
    /// `exact`.
    Exact(String),
    /// `prefix`.
    Prefix(String),
    /// `regex`.
    Regex(String),
}

impl StringMatch {
    /// The one kind set, or Argo's message when none or several are.
    pub fn resolve(&self) -> Result<ValueMatch, &'static str> {
        let set = |v: &Option<String>| v.as_deref().filter(|s| !s.is_empty()).map(str::to_string);
        let kinds = [
            set(&self.exact).map(ValueMatch::Exact),
            set(&self.prefix).map(ValueMatch::Prefix),
            set(&self.regex).map(ValueMatch::Regex),
        ];
        let mut found = kinds.into_iter().flatten();
        match (found.next(), found.next()) {
            (Some(one), None) => Ok(one),
            (Some(_), Some(_)) => Err(STRING_MATCH_MULTIPLE),
            (None, _) => Err(STRING_MATCH_MISSING),
        }
    }
}

impl SetMirrorRoute {
    /// `percentage`, default 100 (Argo's default).
    pub fn percentage(&self) -> i32 {
        self.percentage.unwrap_or(100)
    }
}

/// Checks a header route step's matches (Argo's `hasMultipleMatchValues`); `field` is the step's
/// `setHeaderRoute` path.
pub fn validate_header_route(route: &SetHeaderRoute, field: &str) -> Result<(), String> {
    for (i, m) in route.matches.iter().enumerate() {
        let at = format!("{field}.match[{i}]");
        if m.header_name.is_empty() {
            return Err(format!("{at}.headerName is required"));
        }
        let value = m.header_value.as_ref().ok_or(STRING_MATCH_MISSING);
        value
            .and_then(StringMatch::resolve)
            .and_then(check_regex)
            .map_err(|e| format!("{at}.headerValue: {e}"))?;
    }
    Ok(())
}

/// Checks a mirror route step's matches and percentage; `field` is the step's `setMirrorRoute`
/// path.
pub fn validate_mirror_route(route: &SetMirrorRoute, field: &str) -> Result<(), String> {
    if !(0..=100).contains(&route.percentage()) {
        return Err(format!(
            "{field}.percentage is {}, must be between 0 and 100",
            route.percentage()
        ));
    }
    for (i, m) in route.matches.iter().enumerate() {
        let at = format!("{field}.match[{i}]");
        let parts = [("method", m.method.as_ref()), ("path", m.path.as_ref())]
            .into_iter()
            .filter_map(|(name, value)| value.map(|v| (name.to_string(), v)))
            .chain(
                m.headers
                    .iter()
                    .map(|(name, v)| (format!("headers[{name}]"), v)),
            );
        for (name, value) in parts {
            value
                .resolve()
                .and_then(check_regex)
                .map_err(|e| format!("{at}.{name}: {e}"))?;
        }
    }
    Ok(())
}

/// The route a step sets, as `(field, name)`, when it is a header or mirror route step.
pub fn step_route(step: &CanaryStep) -> Option<(&'static str, &str)> {
    match step.kind() {
        Some(CanaryStepKind::SetHeaderRoute(r)) => Some(("setHeaderRoute", r.name.as_str())),
        Some(CanaryStepKind::SetMirrorRoute(r)) => Some(("setMirrorRoute", r.name.as_str())),
        _ => None,
    }
}

/// Argo's rules tying route steps to `trafficRouting` (`ValidateRolloutStrategyCanary`): a router,
/// `managedRoutes`, and a listed name; plus what each of Sluice's routers can do, so that nothing
/// written is silently left out.
pub fn validate_steps_against_routing(canary: &CanaryStrategy) -> Result<(), RolloutSpecError> {
    let routing = canary.traffic_routing.as_ref();
    let managed = routing.and_then(|t| t.managed_routes.as_ref());
    for (index, step) in canary.steps.iter().enumerate() {
        let Some((field, name)) = step_route(step) else {
            continue;
        };
        let invalid = |reason: String| RolloutSpecError::InvalidStep { index, reason };
        let Some(routing) = routing else {
            return Err(invalid(format!(
                "{field} requires trafficRouting (Sluice implements it with the {GATEWAY_API_PLUGIN} plugin{})",
                if field == "setHeaderRoute" {
                    " and nginx"
                } else {
                    ""
                }
            )));
        };
        // Another router (Argo's Istio, ALB...) is reported on its own when Sluice lacks it; one
        // Sluice has without managed routes must not take the step silently.
        if routing.nginx.is_none() && routing.gateway_api().is_none() {
            return Err(invalid(format!(
                "{field} is implemented for the {GATEWAY_API_PLUGIN} plugin and nginx only"
            )));
        }
        let Some(managed) = managed else {
            return Err(invalid(
                "Rollout has missing field 'spec.strategy.canary.trafficRouting.managedRoutes'"
                    .to_string(),
            ));
        };
        if !managed.iter().any(|m| m.name == name) {
            return Err(invalid(format!(
                "{field}.name {name:?}: {ROUTE_NOT_IN_MANAGED_ROUTES}"
            )));
        }
        if routing.nginx.is_some() {
            check_nginx_step(step, field).map_err(invalid)?;
        }
        if let Some(gateway) = routing.gateway_api() {
            check_gateway_route_name(name, gateway).map_err(invalid)?;
            check_gateway_methods(step).map_err(invalid)?;
        }
    }
    if routing.is_some_and(|t| t.nginx.is_some()) {
        check_nginx_single_route(canary)?;
    }
    Ok(())
}

/// ingress-nginx has no mirror on a canary Ingress, and one canary Ingress carries one header
/// (`canary-by-header`); Argo Rollouts refuses both steps with NGINX.
fn check_nginx_step(step: &CanaryStep, field: &str) -> Result<(), String> {
    if field == "setMirrorRoute" {
        return Err(
            "setMirrorRoute is not supported with trafficRouting.nginx (ingress-nginx has no mirror for a canary Ingress)"
                .to_string(),
        );
    }
    match step.set_header_route.as_ref().map(|r| r.matches.len()) {
        Some(0 | 1) | None => Ok(()),
        Some(n) => Err(format!(
            "setHeaderRoute has {n} matches; with trafficRouting.nginx a header route has one (the canary Ingress's canary-by-header)"
        )),
    }
}

/// All header route steps of an NGINX Rollout name one route: the canary Ingress holds one header.
fn check_nginx_single_route(canary: &CanaryStrategy) -> Result<(), RolloutSpecError> {
    let mut first: Option<&str> = None;
    for (index, step) in canary.steps.iter().enumerate() {
        let Some(("setHeaderRoute", name)) = step_route(step) else {
            continue;
        };
        match first {
            None => first = Some(name),
            Some(other) if other != name => {
                return Err(RolloutSpecError::InvalidStep {
                    index,
                    reason: format!(
                        "setHeaderRoute.name {name:?}: with trafficRouting.nginx all header routes must be one route ({other:?}), the canary Ingress carries one header"
                    ),
                });
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// A managed route becomes an HTTPRoute rule named after it, so its name must be a Gateway API
/// rule name; and some route must take header and mirror rules.
fn check_gateway_route_name(name: &str, gateway: &GatewayApiTrafficRouting) -> Result<(), String> {
    if gateway.routes_with_managed_rules().next().is_none() {
        return Err(format!(
            "the {GATEWAY_API_PLUGIN} plugin names no HTTPRoute for managed routes (httpRoute, or httpRoutes with useHeaderRoutes: true)"
        ));
    }
    if !is_rule_name(name) {
        return Err(format!(
            "route name {name:?} is not a Gateway API rule name (lowercase letters, digits, '-' and '.', at most {MAX_RULE_NAME} characters, starting and ending with a letter or digit)"
        ));
    }
    Ok(())
}

/// An HTTPRoute matches a method exactly, by one of the names Gateway API lists.
fn check_gateway_methods(step: &CanaryStep) -> Result<(), String> {
    let Some(mirror) = step.set_mirror_route.as_ref() else {
        return Ok(());
    };
    for (i, m) in mirror.matches.iter().enumerate() {
        let Some(method) = m.method.as_ref() else {
            continue;
        };
        match method.resolve() {
            Ok(ValueMatch::Exact(v)) if GATEWAY_METHODS.contains(&v.as_str()) => {}
            _ => {
                return Err(format!(
                    "setMirrorRoute.match[{i}].method: Gateway API matches a method exactly, one of {}",
                    GATEWAY_METHODS.join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// The methods an HTTPRoute match accepts.
pub const GATEWAY_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// Longest managed route name: a Gateway API rule name (253) leaves room for the `-N` suffix of a
/// second or later rule.
const MAX_RULE_NAME: usize = 240;

/// A Gateway API `SectionName`: DNS-subdomain-like.
fn is_rule_name(name: &str) -> bool {
    let label = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    name.len() <= MAX_RULE_NAME && name.split('.').all(label)
}

/// A regex that does not compile is refused up front rather than at the proxy.
fn check_regex(value: ValueMatch) -> Result<ValueMatch, &'static str> {
    match &value {
        ValueMatch::Regex(re) if regex::Regex::new(re).is_err() => {
            Err("regex is not a valid regular expression")
        }
        _ => Ok(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(v: &str) -> StringMatch {
        StringMatch {
            exact: Some(v.into()),
            ..StringMatch::default()
        }
    }

    #[test]
    fn string_matches_set_exactly_one_kind() {
        assert_eq!(exact("a").resolve(), Ok(ValueMatch::Exact("a".into())));
        let both = StringMatch {
            prefix: Some("p".into()),
            regex: Some("r".into()),
            ..StringMatch::default()
        };
        assert_eq!(both.resolve(), Err(STRING_MATCH_MULTIPLE));
        let empty = StringMatch {
            exact: Some(String::new()),
            ..StringMatch::default()
        };
        assert_eq!(empty.resolve(), Err(STRING_MATCH_MISSING));
    }

    #[test]
    fn header_routes_are_checked_match_by_match() {
        let ok = SetHeaderRoute {
            name: "h".into(),
            matches: vec![HeaderRoutingMatch {
                header_name: "x-canary".into(),
                header_value: Some(exact("yes")),
            }],
        };
        assert_eq!(validate_header_route(&ok, "f"), Ok(()));
        let mut no_value = ok.clone();
        no_value.matches[0].header_value = None;
        assert_eq!(
            validate_header_route(&no_value, "f"),
            Err(format!("f.match[0].headerValue: {STRING_MATCH_MISSING}"))
        );
        let mut bad_regex = ok.clone();
        bad_regex.matches[0].header_value = Some(StringMatch {
            regex: Some("(".into()),
            ..StringMatch::default()
        });
        assert!(
            validate_header_route(&bad_regex, "f")
                .unwrap_err()
                .contains("not a valid regular expression")
        );
        let mut no_name = ok;
        no_name.matches[0].header_name.clear();
        assert_eq!(
            validate_header_route(&no_name, "f"),
            Err("f.match[0].headerName is required".into())
        );
    }

    #[test]
    fn mirror_routes_are_checked() {
        let route = SetMirrorRoute {
            name: "m".into(),
            matches: vec![RouteMatch {
                method: Some(exact("GET")),
                path: Some(StringMatch {
                    prefix: Some("/".into()),
                    exact: Some("/x".into()),
                    ..StringMatch::default()
                }),
                headers: BTreeMap::new(),
            }],
            percentage: Some(30),
        };
        assert_eq!(
            validate_mirror_route(&route, "f"),
            Err(format!("f.match[0].path: {STRING_MATCH_MULTIPLE}"))
        );
        let mut over = route;
        over.matches.clear();
        over.percentage = Some(120);
        assert_eq!(
            validate_mirror_route(&over, "f"),
            Err("f.percentage is 120, must be between 0 and 100".into())
        );
        assert_eq!(SetMirrorRoute::default().percentage(), 100);
    }

    /// A Rollout with `routing` (YAML flow) and `steps`, validated.
    fn validate_rollout(routing: &str, steps: &str) -> Result<(), String> {
        let yaml = format!(
            r#"
apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata: {{name: web, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  template: {{metadata: {{labels: {{app: web}}}}, spec: {{containers: [{{name: c, image: i}}]}}}}
  strategy:
    canary:
      stableService: s
      canaryService: c
      trafficRouting: {routing}
      steps: {steps}
"#
        );
        let r: crate::api::rollout::Rollout = serde_saphyr::from_str(&yaml).unwrap();
        r.spec.validate().map_err(|e| e.to_string())
    }

    const GATEWAY: &str = "{managedRoutes: [{name: beta}, {name: copy}], plugins: {argoproj-labs/gatewayAPI: {httpRoute: r}}}";
    const HEADER: &str =
        "[{setHeaderRoute: {name: beta, match: [{headerName: x, headerValue: {exact: y}}]}}]";
    const MIRROR: &str =
        "[{setMirrorRoute: {name: copy, percentage: 20, match: [{method: {exact: GET}}]}}]";

    #[test]
    fn route_steps_are_valid_with_a_router_and_managed_routes() {
        assert_eq!(validate_rollout(GATEWAY, HEADER), Ok(()));
        assert_eq!(validate_rollout(GATEWAY, MIRROR), Ok(()));
        let nginx = "{managedRoutes: [{name: beta}], nginx: {stableIngress: web}}";
        assert_eq!(validate_rollout(nginx, HEADER), Ok(()));
        // Removal steps (no match) are valid too.
        assert_eq!(
            validate_rollout(GATEWAY, "[{setHeaderRoute: {name: beta}}]"),
            Ok(())
        );
    }

    #[test]
    fn route_steps_are_refused_as_argo_refuses_them() {
        let cases = [
            (
                "null",
                HEADER,
                "spec.strategy.canary.steps[0]: setHeaderRoute requires trafficRouting (Sluice implements it with the argoproj-labs/gatewayAPI plugin and nginx)",
            ),
            (
                "{plugins: {argoproj-labs/gatewayAPI: {httpRoute: r}}}",
                MIRROR,
                "spec.strategy.canary.steps[0]: Rollout has missing field 'spec.strategy.canary.trafficRouting.managedRoutes'",
            ),
            (
                "{managedRoutes: [{name: other}], plugins: {argoproj-labs/gatewayAPI: {httpRoute: r}}}",
                HEADER,
                "spec.strategy.canary.steps[0]: setHeaderRoute.name \"beta\": Steps define a route that does not exist in spec.strategy.canary.trafficRouting.managedRoutes",
            ),
            (
                "{managedRoutes: [{name: copy}], nginx: {stableIngress: web}}",
                MIRROR,
                "spec.strategy.canary.steps[0]: setMirrorRoute is not supported with trafficRouting.nginx (ingress-nginx has no mirror for a canary Ingress)",
            ),
            (
                "{managedRoutes: [{name: Beta_1}], plugins: {argoproj-labs/gatewayAPI: {httpRoute: r}}}",
                "[{setHeaderRoute: {name: Beta_1}}]",
                "is not a Gateway API rule name",
            ),
            (
                "{managedRoutes: [{name: beta}], plugins: {argoproj-labs/gatewayAPI: {httpRoutes: [{name: r}]}}}",
                HEADER,
                "names no HTTPRoute for managed routes (httpRoute, or httpRoutes with useHeaderRoutes: true)",
            ),
            (
                GATEWAY,
                "[{setMirrorRoute: {name: copy, match: [{method: {prefix: G}}]}}]",
                "setMirrorRoute.match[0].method: Gateway API matches a method exactly",
            ),
            (
                GATEWAY,
                "[{setHeaderRoute: {name: beta, match: [{headerName: x, headerValue: {exact: a, regex: b}}]}}]",
                STRING_MATCH_MULTIPLE,
            ),
        ];
        for (routing, steps, message) in cases {
            let err = validate_rollout(routing, steps).unwrap_err();
            assert!(err.contains(message), "{routing} {steps}: {err}");
        }
    }

    #[test]
    fn nginx_takes_one_header_route_with_one_header() {
        let nginx = "{managedRoutes: [{name: a}, {name: b}], nginx: {stableIngress: web}}";
        let two_routes = "[{setHeaderRoute: {name: a, match: [{headerName: x, headerValue: {exact: y}}]}}, {setHeaderRoute: {name: b}}]";
        let err = validate_rollout(nginx, two_routes).unwrap_err();
        assert!(err.contains("must be one route"), "{err}");
        let two_headers = "[{setHeaderRoute: {name: a, match: [{headerName: x, headerValue: {exact: y}}, {headerName: z, headerValue: {exact: y}}]}}]";
        let err = validate_rollout(nginx, two_headers).unwrap_err();
        assert!(err.contains("has 2 matches"), "{err}");
    }

    #[test]
    fn argo_yaml_round_trips() {
        let yaml = r#"
name: header-route-1
match:
- headerName: X-Canary
  headerValue:
    prefix: "tru"
"#;
        let route: SetHeaderRoute = serde_saphyr::from_str(yaml).unwrap();
        assert_eq!(route.matches[0].header_name, "X-Canary");
        assert_eq!(
            route.matches[0].header_value.as_ref().unwrap().resolve(),
            Ok(ValueMatch::Prefix("tru".into()))
        );
        let mirror: SetMirrorRoute = serde_saphyr::from_str(
            "name: m\npercentage: 35\nmatch:\n- method: {exact: GET}\n  headers:\n    agent: {regex: \"^fire.*\"}\n",
        )
        .unwrap();
        assert_eq!(mirror.percentage(), 35);
        assert_eq!(
            serde_json::to_value(&mirror).unwrap(),
            serde_json::json!({"name": "m", "percentage": 35, "match": [
                {"method": {"exact": "GET"}, "headers": {"agent": {"regex": "^fire.*"}}}]})
        );
    }
}
