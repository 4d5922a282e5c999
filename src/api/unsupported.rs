//! Argo fields Sluice keeps but does not implement.
//!
//! A manifest written for Argo Rollouts must never lose a field silently: if the CRD schema left
//! such a field out, the API server would prune it and the object would run as if it had never been
//! written (an Istio canary falling back to replica ratio, say). So every Argo field is in the
//! schema; those Sluice does not act on are typed as preserved JSON ([`preserved_schema`]) and listed
//! here, one list per kind. The controllers report a listed field as `InvalidSpec` (a Rollout) or
//! `Error` (an AnalysisRun) naming its path, and `kubectl sluice lint` reports the same list, so the
//! two never disagree.

use serde_json::Value;

/// Paths under a Rollout's `spec` (relative to it) that Sluice does not implement. `[]` matches
/// every item of a list.
pub const ROLLOUT_SPEC: &[&str] = &[
    "strategy.canary.pingPong",
    "strategy.canary.steps[].experiment.templates[].weight",
    "strategy.canary.steps[].plugin",
    "strategy.canary.trafficRouting.alb",
    "strategy.canary.trafficRouting.appMesh",
];

/// Metric providers of Argo that Sluice does not implement, under `spec.metrics[].provider`.
const PROVIDERS: &[&str] = &[
    "metrics[].provider.cloudWatch",
    "metrics[].provider.datadog",
    "metrics[].provider.graphite",
    "metrics[].provider.influxdb",
    "metrics[].provider.kayenta",
    "metrics[].provider.newRelic",
    "metrics[].provider.plugin",
    "metrics[].provider.skywalking",
    "metrics[].provider.wavefront",
    "metrics[].provider.prometheus.authentication.sigv4",
];

/// Paths under an AnalysisTemplate's or ClusterAnalysisTemplate's `spec` that Sluice does not
/// implement.
pub fn analysis_template_spec() -> impl Iterator<Item = &'static str> {
    PROVIDERS.iter().copied()
}

/// Paths under an AnalysisRun's `spec` that Sluice does not implement.
pub fn analysis_run_spec() -> impl Iterator<Item = &'static str> {
    PROVIDERS.iter().copied().chain(["ttlStrategy"])
}

/// Every place in `value` where one of `patterns` is set (present and not `null`), as concrete
/// paths prefixed with `root` (`spec.strategy.canary.steps[2].plugin`), in pattern order.
pub fn set_paths<'a>(
    value: &Value,
    root: &str,
    patterns: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let mut found = Vec::new();
    for pattern in patterns {
        let segments: Vec<&str> = pattern.split('.').collect();
        collect(value, &segments, root.to_string(), &mut found);
    }
    found
}

fn collect(value: &Value, segments: &[&str], path: String, found: &mut Vec<String>) {
    let Some((segment, rest)) = segments.split_first() else {
        if !value.is_null() {
            found.push(path);
        }
        return;
    };
    let (key, each_item) = match segment.strip_suffix("[]") {
        Some(key) => (key, true),
        None => (*segment, false),
    };
    let Some(child) = value.get(key) else {
        return;
    };
    let path = if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    };
    if !each_item {
        collect(child, rest, path, found);
        return;
    }
    if let Value::Array(items) = child {
        for (index, item) in items.iter().enumerate() {
            collect(item, rest, format!("{path}[{index}]"), found);
        }
    }
}

/// The message for the unimplemented fields set in one object, the same in every report.
pub fn message(paths: &[String]) -> String {
    match paths {
        [one] => format!("{one} is not supported by Sluice (an Argo field it does not implement)"),
        many => format!(
            "{} are not supported by Sluice (Argo fields it does not implement)",
            many.join(", ")
        ),
    }
}

/// The schema of an Argo field Sluice keeps without implementing it: any JSON (a number, a list),
/// stored as written, so the controller sees that it was set.
pub fn preserved_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-preserve-unknown-fields": true,
        "nullable": true,
    })
}

/// [`preserved_schema`] for an Argo field that is an object: typed as one, so that CEL rules can
/// name it (`has(self.plugin)`).
pub fn preserved_object_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
        "nullable": true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_each_listed_rollout_field_by_its_concrete_path() {
        for pattern in ROLLOUT_SPEC {
            let mut spec = json!({});
            let mut cursor = &mut spec;
            let segments: Vec<&str> = pattern.split('.').collect();
            let mut expected = "spec".to_string();
            for (i, segment) in segments.iter().enumerate() {
                let last = i + 1 == segments.len();
                let leaf = if last { json!({"x": 1}) } else { json!({}) };
                match segment.strip_suffix("[]") {
                    Some(key) => {
                        cursor[key] = json!([{}, leaf]);
                        expected.push_str(&format!(".{key}[1]"));
                        cursor = &mut cursor[key][1];
                    }
                    None => {
                        cursor[*segment] = leaf;
                        expected.push_str(&format!(".{segment}"));
                        cursor = &mut cursor[*segment];
                    }
                }
            }
            assert_eq!(
                set_paths(&spec, "spec", ROLLOUT_SPEC.iter().copied()),
                vec![expected],
                "{pattern}"
            );
        }
    }

    #[test]
    fn null_and_absent_fields_are_not_reported_but_empty_objects_and_zero_are() {
        let spec = json!({"strategy": {"canary": {"pingPong": {},
                                                  "steps": [{"setWeight": 5},
                                                            {"experiment": {"templates": [{"weight": 0}]}}]}}});
        assert_eq!(
            set_paths(&spec, "spec", ROLLOUT_SPEC.iter().copied()),
            vec![
                "spec.strategy.canary.pingPong".to_string(),
                "spec.strategy.canary.steps[1].experiment.templates[0].weight".to_string()
            ]
        );
    }

    #[test]
    fn providers_are_found_in_every_metric() {
        let spec = json!({"metrics": [
            {"name": "a", "provider": {"prometheus": {"query": "up"}}},
            {"name": "b", "provider": {"datadog": {"query": "x"}}},
            {"name": "c", "provider": {"prometheus": {"query": "up", "authentication": {"sigv4": {"region": "r"}}}}},
        ], "templates": [{"templateName": "base"}]});
        assert_eq!(
            set_paths(&spec, "spec", analysis_template_spec()),
            vec![
                "spec.metrics[1].provider.datadog".to_string(),
                "spec.metrics[2].provider.prometheus.authentication.sigv4".to_string(),
            ]
        );
        let run = json!({"metrics": [], "ttlStrategy": {"secondsAfterCompletion": 60}});
        assert_eq!(
            set_paths(&run, "spec", analysis_run_spec()),
            vec!["spec.ttlStrategy".to_string()]
        );
    }

    #[test]
    fn a_list_where_an_object_is_expected_is_not_a_match() {
        let spec = json!({"strategy": {"canary": {"steps": {"plugin": {}}}}});
        assert!(set_paths(&spec, "spec", ROLLOUT_SPEC.iter().copied()).is_empty());
    }
}
