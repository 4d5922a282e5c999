//! AnalysisTemplates built from other templates (Argo Rollouts ≥ 1.7, `spec.templates`): a
//! template's own metrics, arguments, dry-run and retention rules, then those of every template it
//! names, and of the templates they name, as one template (PURE).
//!
//! As Argo: two metrics of one name are an error, as is an argument given two different values;
//! an argument given a value wins over one that leaves it to the Rollout. A reference that is not
//! found, a cycle, or nesting deeper than [`MAX_DEPTH`] is an error naming the chain of templates.

use std::collections::BTreeSet;

use crate::api::analysis::AnalysisTemplateSpec;
use crate::rollout::templates::TemplateRef;

/// Deepest chain of templates naming templates.
pub const MAX_DEPTH: usize = 8;
/// Most templates one composed template may gather.
const MAX_TEMPLATES: usize = 32;

/// `root` (whose spec is `spec`) with every template it names merged in; `lookup` finds a
/// referenced template (namespaced ones in the Rollout's namespace).
pub fn compose(
    root: &TemplateRef,
    spec: &AnalysisTemplateSpec,
    lookup: &dyn Fn(&TemplateRef) -> Option<AnalysisTemplateSpec>,
) -> Result<AnalysisTemplateSpec, String> {
    if spec.templates.is_empty() {
        return Ok(spec.clone());
    }
    let mut gathered = Vec::new();
    gather(root, spec, lookup, &mut vec![label(root)], &mut gathered)?;
    let mut composed = AnalysisTemplateSpec::default();
    for (name, part) in &gathered {
        merge_into(&mut composed, name, part)?;
    }
    Ok(composed)
}

fn label(reference: &TemplateRef) -> String {
    format!("{} {:?}", reference.kind(), reference.name)
}

/// Depth first, the template before the ones it names; `chain` is the path from the root.
fn gather(
    reference: &TemplateRef,
    spec: &AnalysisTemplateSpec,
    lookup: &dyn Fn(&TemplateRef) -> Option<AnalysisTemplateSpec>,
    chain: &mut Vec<String>,
    gathered: &mut Vec<(String, AnalysisTemplateSpec)>,
) -> Result<(), String> {
    if gathered.len() >= MAX_TEMPLATES {
        return Err(format!(
            "it gathers more than {MAX_TEMPLATES} templates through spec.templates"
        ));
    }
    gathered.push((label(reference), spec.clone()));
    for child in &spec.templates {
        let child_ref = TemplateRef {
            name: child.template_name.clone(),
            cluster_scope: child.cluster_scope.unwrap_or(false),
        };
        let child_label = label(&child_ref);
        if chain.contains(&child_label) {
            return Err(format!(
                "spec.templates forms a cycle: {} -> {child_label}",
                chain.join(" -> ")
            ));
        }
        if chain.len() >= MAX_DEPTH {
            return Err(format!(
                "spec.templates nests deeper than {MAX_DEPTH}: {} -> {child_label}",
                chain.join(" -> ")
            ));
        }
        let child_spec = lookup(&child_ref).ok_or_else(|| {
            format!(
                "spec.templates: {child_label} (named by {}) not found",
                chain.join(" -> ")
            )
        })?;
        chain.push(child_label);
        gather(&child_ref, &child_spec, lookup, chain, gathered)?;
        chain.pop();
    }
    Ok(())
}

/// Adds `part` (from template `name`) to `composed`.
fn merge_into(
    composed: &mut AnalysisTemplateSpec,
    name: &str,
    part: &AnalysisTemplateSpec,
) -> Result<(), String> {
    let known: BTreeSet<String> = composed.metrics.iter().map(|m| m.name.clone()).collect();
    for metric in &part.metrics {
        if known.contains(&metric.name) {
            return Err(format!(
                "metric {:?} of {name} is defined twice in the composed template",
                metric.name
            ));
        }
        composed.metrics.push(metric.clone());
    }
    for arg in &part.args {
        match composed.args.iter_mut().find(|a| a.name == arg.name) {
            None => composed.args.push(arg.clone()),
            Some(existing) => {
                let given = |a: &crate::api::analysis::Argument| {
                    a.value.is_some() || a.value_from.is_some()
                };
                match (given(existing), given(arg)) {
                    (true, true) if existing != arg => {
                        return Err(format!(
                            "argument {:?} of {name} has another value in the composed template",
                            arg.name
                        ));
                    }
                    (false, true) => *existing = arg.clone(),
                    _ => {}
                }
            }
        }
    }
    for rule in &part.dry_run {
        if !composed.dry_run.contains(rule) {
            composed.dry_run.push(rule.clone());
        }
    }
    for rule in &part.measurement_retention {
        if !composed.measurement_retention.contains(rule) {
            composed.measurement_retention.push(rule.clone());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    fn spec(value: serde_json::Value) -> AnalysisTemplateSpec {
        serde_json::from_value(value).unwrap()
    }

    fn named(name: &str) -> TemplateRef {
        TemplateRef {
            name: name.into(),
            cluster_scope: false,
        }
    }

    fn metric(name: &str) -> serde_json::Value {
        json!({"name": name, "provider": {"prometheus": {"address": "http://127.0.0.1:9090", "query": "1"}}})
    }

    fn store(
        entries: Vec<(&str, serde_json::Value)>,
    ) -> BTreeMap<TemplateRef, AnalysisTemplateSpec> {
        entries
            .into_iter()
            .map(|(name, value)| (named(name), spec(value)))
            .collect()
    }

    fn composed(
        root: &str,
        templates: &BTreeMap<TemplateRef, AnalysisTemplateSpec>,
    ) -> Result<AnalysisTemplateSpec, String> {
        let lookup = |r: &TemplateRef| templates.get(r).cloned();
        compose(&named(root), &templates[&named(root)], &lookup)
    }

    #[test]
    fn metrics_args_and_rules_of_named_templates_are_merged() {
        let templates = store(vec![
            (
                "all",
                json!({"metrics": [metric("own")], "args": [{"name": "service", "value": "web"}],
                           "templates": [{"templateName": "errors"}, {"templateName": "latency"}]}),
            ),
            (
                "errors",
                json!({"metrics": [metric("error-rate")], "args": [{"name": "service"}],
                              "dryRun": [{"metricName": "error-rate"}]}),
            ),
            (
                "latency",
                json!({"metrics": [metric("p99")], "args": [{"name": "quantile", "value": "0.99"}],
                               "templates": [{"templateName": "base"}],
                               "measurementRetention": [{"metricName": "p99", "limit": 20}]}),
            ),
            ("base", json!({"metrics": [metric("up")]})),
        ]);
        let spec = composed("all", &templates).unwrap();
        let names: Vec<&str> = spec.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["own", "error-rate", "p99", "up"]);
        let args: Vec<(&str, Option<&str>)> = spec
            .args
            .iter()
            .map(|a| (a.name.as_str(), a.value.as_deref()))
            .collect();
        assert_eq!(args, [("service", Some("web")), ("quantile", Some("0.99"))]);
        assert_eq!(spec.dry_run.len(), 1);
        assert_eq!(spec.measurement_retention.len(), 1);
        assert!(spec.templates.is_empty());
    }

    #[test]
    fn a_template_without_references_is_itself() {
        let templates = store(vec![("plain", json!({"metrics": [metric("a")]}))]);
        assert_eq!(
            composed("plain", &templates).unwrap(),
            templates[&named("plain")]
        );
    }

    #[test]
    fn missing_references_cycles_and_conflicts_are_errors_naming_the_chain() {
        let missing = store(vec![(
            "a",
            json!({"templates": [{"templateName": "gone"}]}),
        )]);
        assert_eq!(
            composed("a", &missing).unwrap_err(),
            "spec.templates: AnalysisTemplate \"gone\" (named by AnalysisTemplate \"a\") not found"
        );
        let cycle = store(vec![
            ("a", json!({"templates": [{"templateName": "b"}]})),
            ("b", json!({"templates": [{"templateName": "a"}]})),
        ]);
        assert_eq!(
            composed("a", &cycle).unwrap_err(),
            "spec.templates forms a cycle: AnalysisTemplate \"a\" -> AnalysisTemplate \"b\" -> AnalysisTemplate \"a\""
        );
        let twice = store(vec![
            (
                "a",
                json!({"metrics": [metric("m")], "templates": [{"templateName": "b"}]}),
            ),
            ("b", json!({"metrics": [metric("m")]})),
        ]);
        assert!(composed("a", &twice).unwrap_err().contains("metric \"m\""));
        let conflict = store(vec![
            (
                "a",
                json!({"args": [{"name": "x", "value": "1"}], "templates": [{"templateName": "b"}]}),
            ),
            ("b", json!({"args": [{"name": "x", "value": "2"}]})),
        ]);
        assert!(
            composed("a", &conflict)
                .unwrap_err()
                .contains("argument \"x\"")
        );
    }

    #[test]
    fn deep_chains_are_refused() {
        let mut entries = Vec::new();
        let names: Vec<String> = (0..=MAX_DEPTH + 1).map(|i| format!("t{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            let next = names.get(i + 1);
            let value = match next {
                Some(next) => json!({"templates": [{"templateName": next}]}),
                None => json!({"metrics": [metric("m")]}),
            };
            entries.push((name.as_str(), value));
        }
        let templates = store(entries);
        assert!(
            composed("t0", &templates)
                .unwrap_err()
                .contains("nests deeper than")
        );
    }
}
