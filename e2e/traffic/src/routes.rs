//! Header and mirror routes in the emulation (pure, no I/O): which HTTPRoute rule an emulated
//! request takes, the `RequestMirror` filters of that rule, and whether a request matches an NGINX
//! canary Ingress's `canary-by-header*` annotations.
//!
//! Every emulated request is `GET /`; a configurable share of them carries one header (see
//! `--header`), so that a header route (a rule with header matches, or `canary-by-header`) sends
//! those requests elsewhere than the weighted split, and the metrics tell them apart.

use std::collections::BTreeMap;

use serde_json::Value;

/// An emulated request, as matched against routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmulatedRequest<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// URL path.
    pub path: &'a str,
    /// The one header it carries, if any: `(name, value)`.
    pub header: Option<(&'a str, &'a str)>,
}

impl EmulatedRequest<'_> {
    /// `GET /` without a header.
    pub const PLAIN: EmulatedRequest<'static> = EmulatedRequest {
        method: "GET",
        path: "/",
        header: None,
    };
}

/// How specific a matching HTTPRoute match is, in Gateway API's precedence order: an exact path,
/// the longest path, a method, the most header matches.
type Specificity = (bool, usize, bool, usize);

/// The rule of `route` that `request` takes among the rules `eligible` accepts: the matching rule
/// with the most specific match (Gateway API precedence), the first one of equals; without any
/// matching rule, the first eligible one (the weighted rule, however its matches read).
pub fn select_rule<'r>(
    route: &'r Value,
    request: &EmulatedRequest<'_>,
    eligible: impl Fn(&Value) -> bool,
) -> Option<&'r Value> {
    let rules: Vec<&Value> = route
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|rule| eligible(rule))
        .collect();
    let mut best: Option<(Specificity, &Value)> = None;
    for rule in &rules {
        let Some(score) = rule_specificity(rule, request) else {
            continue;
        };
        if best.is_none_or(|(b, _)| score > b) {
            best = Some((score, rule));
        }
    }
    best.map(|(_, rule)| rule)
        .or_else(|| rules.first().copied())
}

/// The specificity of the most specific match of `rule` that `request` satisfies; a rule without
/// matches matches everything (as `PathPrefix /`).
fn rule_specificity(rule: &Value, request: &EmulatedRequest<'_>) -> Option<Specificity> {
    match rule.get("matches").and_then(Value::as_array) {
        Some(matches) if !matches.is_empty() => matches
            .iter()
            .filter_map(|m| match_specificity(m, request))
            .max(),
        _ => Some((false, 1, false, 0)),
    }
}

fn match_specificity(m: &Value, request: &EmulatedRequest<'_>) -> Option<Specificity> {
    let path_type = str_at(m, "/path/type").unwrap_or("PathPrefix");
    let path_value = str_at(m, "/path/value").unwrap_or("/");
    let exact = match path_type {
        "Exact" => (request.path == path_value).then_some(true)?,
        "RegularExpression" => regex_matches(path_value, request.path).then_some(false)?,
        _ => prefix_matches(path_value, request.path).then_some(false)?,
    };
    let method = match str_at(m, "/method") {
        Some(method) if method != request.method => return None,
        Some(_) => true,
        None => false,
    };
    let headers: Vec<&Value> = m
        .get("headers")
        .and_then(Value::as_array)
        .map(|h| h.iter().collect())
        .unwrap_or_default();
    if !headers.iter().all(|h| header_matches(h, request.header)) {
        return None;
    }
    let query = m
        .get("queryParams")
        .and_then(Value::as_array)
        .is_some_and(|q| !q.is_empty());
    if query {
        // Emulated requests carry no query string.
        return None;
    }
    Some((exact, path_value.len(), method, headers.len()))
}

/// Gateway API's `PathPrefix`: whole path elements (`/api` matches `/api/x`, not `/apix`).
fn prefix_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// One HTTPRoute header match against the request's one header (names are case-insensitive).
fn header_matches(m: &Value, header: Option<(&str, &str)>) -> bool {
    let (Some(name), Some((have_name, have_value))) = (str_at(m, "/name"), header) else {
        return false;
    };
    if !name.eq_ignore_ascii_case(have_name) {
        return false;
    }
    let value = str_at(m, "/value").unwrap_or("");
    match str_at(m, "/type").unwrap_or("Exact") {
        "RegularExpression" => regex_matches(value, have_value),
        _ => value == have_value,
    }
}

/// An unanchored search, as the proxies' RE2-style engines do; a bad pattern matches nothing.
fn regex_matches(pattern: &str, value: &str) -> bool {
    regex::Regex::new(pattern).is_ok_and(|re| re.is_match(value))
}

fn str_at<'v>(value: &'v Value, pointer: &str) -> Option<&'v str> {
    value.pointer(pointer).and_then(Value::as_str)
}

/// The `RequestMirror` filters of a rule: `(backendRef, percent)`, the percentage from `percent`,
/// else `fraction` (numerator/denominator), else 100.
pub fn rule_mirrors(rule: &Value) -> Vec<(&Value, u32)> {
    rule.get("filters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|f| str_at(f, "/type") == Some("RequestMirror"))
        .filter_map(|f| {
            let mirror = f.get("requestMirror")?;
            let reference = mirror.get("backendRef")?;
            Some((reference, mirror_percent(mirror)))
        })
        .collect()
}

fn mirror_percent(mirror: &Value) -> u32 {
    let as_u32 = |v: Option<&Value>| {
        v.and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
    };
    if let Some(percent) = as_u32(mirror.get("percent")) {
        return percent.min(100);
    }
    match (
        as_u32(mirror.pointer("/fraction/numerator")),
        as_u32(mirror.pointer("/fraction/denominator")).unwrap_or(100),
    ) {
        (Some(n), d) if d > 0 => (u64::from(n) * 100 / u64::from(d))
            .try_into()
            .map_or(100, |p: u32| p.min(100)),
        _ => 100,
    }
}

/// Whether `header` satisfies an NGINX canary Ingress's header annotations (ingress-nginx:
/// `canary-by-header-value` exactly, else `canary-by-header-pattern`; with neither, the value
/// `always`). `None` when the Ingress routes by no header.
pub fn nginx_header_matches(
    annotations: &BTreeMap<String, String>,
    prefix: &str,
    header: Option<(&str, &str)>,
) -> Option<bool> {
    let get = |key: &str| {
        annotations
            .get(&format!("{prefix}/{key}"))
            .map(String::as_str)
    };
    let name = get("canary-by-header").filter(|n| !n.is_empty())?;
    let Some((_, have_value)) = header.filter(|(n, _)| n.eq_ignore_ascii_case(name)) else {
        return Some(false);
    };
    Some(
        match (
            get("canary-by-header-value").filter(|v| !v.is_empty()),
            get("canary-by-header-pattern").filter(|v| !v.is_empty()),
        ) {
            (Some(value), _) => value == have_value,
            (None, Some(pattern)) => regex_matches(pattern, have_value),
            (None, None) => have_value == "always",
        },
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn route(rules: Value) -> Value {
        json!({"spec": {"rules": rules}})
    }

    const WITH_HEADER: EmulatedRequest<'static> = EmulatedRequest {
        method: "GET",
        path: "/",
        header: Some(("X-Sluice-Canary", "true")),
    };

    fn weighted() -> Value {
        json!({"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
               "backendRefs": [{"name": "s", "weight": 80}, {"name": "c", "weight": 20}]})
    }

    fn header_rule(kind: &str, value: &str) -> Value {
        json!({"name": "beta",
               "matches": [{"path": {"type": "PathPrefix", "value": "/"},
                            "headers": [{"type": kind, "name": "x-sluice-canary", "value": value}]}],
               "backendRefs": [{"name": "c"}]})
    }

    #[test]
    fn header_requests_take_the_header_rule_others_the_weighted_one() {
        let r = route(json!([weighted(), header_rule("Exact", "true")]));
        let any = |_: &Value| true;
        assert_eq!(
            select_rule(&r, &EmulatedRequest::PLAIN, any),
            Some(&weighted())
        );
        assert_eq!(
            select_rule(&r, &WITH_HEADER, any),
            Some(&header_rule("Exact", "true"))
        );
        for (kind, value, taken) in [
            ("Exact", "false", false),
            ("RegularExpression", "^tr.*", true),
            ("RegularExpression", "^no", false),
        ] {
            let r = route(json!([weighted(), header_rule(kind, value)]));
            let expected = if taken {
                header_rule(kind, value)
            } else {
                weighted()
            };
            assert_eq!(
                select_rule(&r, &WITH_HEADER, any),
                Some(&expected),
                "{kind} {value}"
            );
        }
    }

    #[test]
    fn precedence_is_path_then_method_then_headers_then_order() {
        let any = |_: &Value| true;
        let mirror = json!({"name": "m", "matches": [{"path": {"type": "PathPrefix", "value": "/"}, "method": "GET"}]});
        let r = route(json!([weighted(), mirror.clone()]));
        assert_eq!(select_rule(&r, &EmulatedRequest::PLAIN, any), Some(&mirror));
        let post = json!({"matches": [{"method": "POST"}]});
        let r = route(json!([weighted(), post]));
        assert_eq!(
            select_rule(&r, &EmulatedRequest::PLAIN, any),
            Some(&weighted())
        );
        let exact = json!({"matches": [{"path": {"type": "Exact", "value": "/"}}]});
        let r = route(json!([mirror, exact.clone()]));
        assert_eq!(select_rule(&r, &EmulatedRequest::PLAIN, any), Some(&exact));
        // Only elsewhere: no rule matches `/`, the first eligible one is taken.
        let api = json!({"matches": [{"path": {"value": "/api"}}], "backendRefs": []});
        let r = route(json!([api.clone()]));
        assert_eq!(select_rule(&r, &EmulatedRequest::PLAIN, any), Some(&api));
        assert_eq!(
            select_rule(&r, &EmulatedRequest::PLAIN, |_: &Value| false),
            None
        );
        assert!(prefix_matches("/api", "/api/x"));
        assert!(!prefix_matches("/api", "/apix"));
        assert!(prefix_matches("/", "/anything"));
    }

    #[test]
    fn mirror_filters_give_their_percentage() {
        let rule = json!({"filters": [
            {"type": "RequestHeaderModifier"},
            {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "c"}, "percent": 30}},
            {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "d"},
                                                         "fraction": {"numerator": 1, "denominator": 4}}},
            {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "e"}}},
        ]});
        let mirrors: Vec<(&str, u32)> = rule_mirrors(&rule)
            .into_iter()
            .map(|(r, p)| (r["name"].as_str().unwrap(), p))
            .collect();
        assert_eq!(mirrors, vec![("c", 30), ("d", 25), ("e", 100)]);
    }

    #[test]
    fn nginx_header_annotations() {
        let p = "nginx.ingress.kubernetes.io";
        let ann = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (format!("{p}/{k}"), (*v).to_string()))
                .collect()
        };
        let h = Some(("x-sluice-canary", "true"));
        assert_eq!(nginx_header_matches(&ann(&[]), p, h), None);
        let exact = ann(&[
            ("canary-by-header", "X-Sluice-Canary"),
            ("canary-by-header-value", "true"),
        ]);
        assert_eq!(nginx_header_matches(&exact, p, h), Some(true));
        assert_eq!(nginx_header_matches(&exact, p, None), Some(false));
        let pattern = ann(&[
            ("canary-by-header", "x-sluice-canary"),
            ("canary-by-header-pattern", "^t"),
        ]);
        assert_eq!(nginx_header_matches(&pattern, p, h), Some(true));
        let always = ann(&[("canary-by-header", "x-sluice-canary")]);
        assert_eq!(nginx_header_matches(&always, p, h), Some(false));
        assert_eq!(
            nginx_header_matches(&always, p, Some(("x-sluice-canary", "always"))),
            Some(true)
        );
    }
}
