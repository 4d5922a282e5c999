//! Lint of an AnalysisTemplate / ClusterAnalysisTemplate: the typed parse, unknown fields, and per
//! metric what the analysis controller would otherwise only find at run time: limits and durations
//! that do not parse, a provider that is not exactly one, conditions that are not valid
//! expressions, and `{{args.NAME}}` placeholders naming no declared argument.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value;

use crate::api::analysis::{
    AnalysisSpecError, AnalysisTemplate, AnalysisTemplateSpec, ClusterAnalysisTemplate, Metric,
    MetricProvider,
};
use crate::api::unsupported;
use crate::plugin::lint::unknown::unknown_fields;
use crate::plugin::lint::{Document, LineIndex};

pub(super) fn check_template(doc: &mut Document<'_>, generic: &Value, index: &LineIndex) {
    if let Some(template) = doc.typed::<AnalysisTemplate>() {
        check_unknown(doc, generic, &template, index);
        check_spec(doc, &template.spec, index);
    }
}

pub(super) fn check_cluster_template(doc: &mut Document<'_>, generic: &Value, index: &LineIndex) {
    if let Some(template) = doc.typed::<ClusterAnalysisTemplate>() {
        check_unknown(doc, generic, &template, index);
        check_spec(doc, &template.spec, index);
    }
}

fn check_unknown(
    doc: &mut Document<'_>,
    generic: &Value,
    typed: &impl Serialize,
    index: &LineIndex,
) {
    if let Ok(understood) = serde_json::to_value(typed) {
        for path in unknown_fields(generic, &understood) {
            doc.at(index, &path, format!("{path}: unknown field"));
        }
    }
}

/// Whether a provider other than those Sluice implements (`prometheus`, `scrape`, `web`, `job`) is
/// set.
fn sets_other_provider(provider: &MetricProvider) -> bool {
    serde_json::to_value(provider)
        .ok()
        .and_then(|value| {
            value.as_object().map(|set| {
                set.keys()
                    .any(|k| !["prometheus", "scrape", "web", "job"].contains(&k.as_str()))
            })
        })
        .unwrap_or(false)
}

fn check_spec(doc: &mut Document<'_>, spec: &AnalysisTemplateSpec, index: &LineIndex) {
    for path in spec.unsupported_fields() {
        let message = unsupported::message(std::slice::from_ref(&path));
        doc.at(index, &path, message);
    }
    if spec.metrics.is_empty() && spec.templates.is_empty() {
        doc.at(
            index,
            "spec.metrics",
            "spec.metrics: at least one metric is required",
        );
    }
    let declared: BTreeSet<&str> = spec.args.iter().map(|a| a.name.as_str()).collect();
    let mut seen = BTreeSet::new();
    for (i, metric) in spec.metrics.iter().enumerate() {
        let path = format!("spec.metrics[{i}]");
        if metric.name.trim().is_empty() {
            doc.at(
                index,
                &format!("{path}.name"),
                format!("{path}.name is empty"),
            );
        } else if !seen.insert(metric.name.as_str()) {
            doc.at(
                index,
                &format!("{path}.name"),
                format!("{path}: metric name {:?} is used twice", metric.name),
            );
        }
        for (field, problem) in metric_problems(metric) {
            doc.at(
                index,
                &format!("{path}.{field}"),
                format!("{path}.{field}: {problem}"),
            );
        }
        for (field, arg) in undeclared_args(metric, &declared) {
            doc.at(
                index,
                &format!("{path}.{field}"),
                format!("{path}.{field}: {{{{args.{arg}}}}} is not declared in spec.args"),
            );
        }
    }
}

/// Problems of one metric, by field (relative to the metric).
fn metric_problems(metric: &Metric) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    let templated = |value: Option<String>| value.is_some_and(|v| v.contains("{{"));
    let int_text = |v: &Option<k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>| {
        v.as_ref().map(|v| match v {
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i) => i.to_string(),
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.clone(),
        })
    };
    // Values with `{{args.x}}` placeholders are only known when the run is created.
    let checks: [(&'static str, bool, Result<(), AnalysisSpecError>); 7] = [
        (
            "failureLimit",
            templated(int_text(&metric.failure_limit)),
            metric.failure_limit().map(drop),
        ),
        (
            "inconclusiveLimit",
            templated(int_text(&metric.inconclusive_limit)),
            metric.inconclusive_limit().map(drop),
        ),
        (
            "consecutiveErrorLimit",
            templated(int_text(&metric.consecutive_error_limit)),
            metric.consecutive_error_limit().map(drop),
        ),
        (
            "consecutiveSuccessLimit",
            templated(int_text(&metric.consecutive_success_limit)),
            metric.consecutive_success_limit().map(drop),
        ),
        (
            "count",
            templated(int_text(&metric.count)),
            metric.effective_count().map(drop),
        ),
        (
            "interval",
            templated(metric.interval.clone()),
            metric.interval().map(drop),
        ),
        (
            "initialDelay",
            templated(metric.initial_delay.clone()),
            metric.initial_delay().map(drop),
        ),
    ];
    for (field, skip, result) in checks {
        if let (false, Err(error)) = (skip, result) {
            problems.push((field, spec_error_message(&error)));
        }
    }
    let provider = &metric.provider;
    let set = usize::from(provider.prometheus.is_some())
        + usize::from(provider.scrape.is_some())
        + usize::from(provider.web.is_some())
        + usize::from(provider.job.is_some());
    match set {
        // An Argo provider Sluice does not implement: reported with the unimplemented fields.
        0 if sets_other_provider(provider) => {}
        0 => problems.push((
            "provider",
            "set one provider: prometheus, scrape, web or job".to_string(),
        )),
        1 => {}
        _ => problems.push((
            "provider",
            "set only one provider: prometheus, scrape, web or job".to_string(),
        )),
    }
    if provider.job.is_some() {
        problems.extend(crate::analysis::provider::job::lint(metric));
    }
    if let Some(p) = &provider.prometheus
        && p.query.trim().is_empty()
    {
        problems.push((
            "provider.prometheus.query",
            "the query is empty".to_string(),
        ));
    }
    if let Some(web) = &provider.web {
        problems.extend(crate::analysis::provider::web::lint(web));
    }
    for (field, condition) in [
        ("successCondition", &metric.success_condition),
        ("failureCondition", &metric.failure_condition),
    ] {
        if let Some(condition) = condition.as_deref().filter(|c| !c.trim().is_empty())
            && let Err(error) = expr::compile(&without_placeholders(condition))
        {
            problems.push((
                field,
                format!(
                    "{condition:?} is not a valid expression ({})",
                    expression_error(&error.to_string())
                ),
            ));
        }
    }
    problems
}

/// The part of an analysis spec error that the field path does not already say.
fn spec_error_message(error: &AnalysisSpecError) -> String {
    match error {
        AnalysisSpecError::NotAnInteger { value, .. } => format!("{value:?} is not an integer"),
        AnalysisSpecError::IntervalTooShort { value, .. } => {
            format!("{value:?} is shorter than the minimum of 1s")
        }
        AnalysisSpecError::InvalidDuration { source, .. } => {
            format!(
                "invalid duration {:?} (expected e.g. 30s, 5m, 1h)",
                source.input
            )
        }
    }
}

/// A parse error of the expression language as one line: `column 13: expected value, ...`
/// rather than pest's multi-line drawing.
fn expression_error(text: &str) -> String {
    let column = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("--> "))
        .and_then(|position| position.split_once(':'))
        .map(|(_, column)| column.trim().to_string());
    let reason = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("= "))
        .map_or_else(
            || text.split_whitespace().collect::<Vec<_>>().join(" "),
            str::to_string,
        );
    match column {
        Some(column) => format!("column {column}: {reason}"),
        None => reason,
    }
}

/// `{{args.x}}` replaced by a number, so a condition like `result[0] < {{args.max}}` parses.
fn without_placeholders(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        match rest[start..].find("}}") {
            Some(end) => {
                out.push('0');
                rest = &rest[start + end + 2..];
            }
            None => {
                rest = &rest[start..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `(field, arg)` for every `{{args.NAME}}` of the metric whose NAME is not declared.
fn undeclared_args<'a>(
    metric: &'a Metric,
    declared: &BTreeSet<&str>,
) -> Vec<(&'static str, String)> {
    let mut texts: Vec<(&'static str, &'a str)> = Vec::new();
    if let Some(p) = &metric.provider.prometheus {
        texts.push(("provider.prometheus.query", p.query.as_str()));
        texts.extend(
            p.address
                .as_deref()
                .map(|a| ("provider.prometheus.address", a)),
        );
        let oauth2 = p.authentication.as_ref().and_then(|a| a.oauth2.as_ref());
        texts.extend(
            oauth2
                .and_then(|o| o.client_secret.as_deref())
                .map(|c| ("provider.prometheus.authentication.oauth2.clientSecret", c)),
        );
        texts.extend(
            oauth2
                .and_then(|o| o.client_id.as_deref())
                .map(|c| ("provider.prometheus.authentication.oauth2.clientId", c)),
        );
    }
    if let Some(s) = &metric.provider.scrape {
        texts.push(("provider.scrape.url", s.url.as_str()));
    }
    if let Some(w) = &metric.provider.web {
        texts.push(("provider.web.url", w.url.as_str()));
        texts.extend(
            w.headers
                .iter()
                .map(|h| ("provider.web.headers", h.value.as_str())),
        );
        texts.extend(w.body.as_deref().map(|b| ("provider.web.body", b)));
        texts.extend(w.json_path.as_deref().map(|p| ("provider.web.jsonPath", p)));
        let oauth2 = w.authentication.as_ref().and_then(|a| a.oauth2.as_ref());
        texts.extend(
            oauth2
                .and_then(|o| o.client_secret.as_deref())
                .map(|c| ("provider.web.authentication.oauth2.clientSecret", c)),
        );
        texts.extend(
            oauth2
                .and_then(|o| o.client_id.as_deref())
                .map(|c| ("provider.web.authentication.oauth2.clientId", c)),
        );
        let mut body_strings = Vec::new();
        if let Some(body) = &w.json_body {
            json_strings(body, &mut body_strings);
        }
        texts.extend(
            body_strings
                .into_iter()
                .map(|s| ("provider.web.jsonBody", s)),
        );
    }
    texts.extend(
        metric
            .success_condition
            .as_deref()
            .map(|c| ("successCondition", c)),
    );
    texts.extend(
        metric
            .failure_condition
            .as_deref()
            .map(|c| ("failureCondition", c)),
    );
    let mut out = Vec::new();
    for (field, text) in texts {
        for arg in placeholder_args(text) {
            if !declared.contains(arg.as_str()) {
                out.push((field, arg));
            }
        }
    }
    out
}

/// Every string in a JSON value (keys are not templated).
fn json_strings<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|v| json_strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| json_strings(v, out)),
        _ => {}
    }
}

/// The NAMEs of `{{args.NAME}}` (and `{{ args.NAME }}`) in `text`.
fn placeholder_args(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        if let Some(name) = after[..end].trim().strip_prefix("args.") {
            names.push(name.trim().to_string());
        }
        rest = &after[end + 2..];
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_found_and_neutralised() {
        assert_eq!(
            placeholder_args("rate(x{svc=\"{{args.service}}\", ns=\"{{ args.ns }}\"}[1m])"),
            vec!["service".to_string(), "ns".to_string()]
        );
        assert_eq!(
            without_placeholders("result[0] < {{args.max}}"),
            "result[0] < 0"
        );
        assert_eq!(without_placeholders("no {{ end"), "no {{ end");
    }

    #[test]
    fn web_metrics_are_checked_like_the_controller_checks_them() {
        let metric = |provider: Value| -> Metric {
            serde_json::from_value(serde_json::json!({
                "name": "web",
                "successCondition": "result == true",
                "provider": provider,
            }))
            .unwrap()
        };
        let good = metric(serde_json::json!({"web": {
            "url": "http://checks.example/api?service={{args.service}}",
            "method": "POST",
            "headers": [{"key": "Authorization", "value": "Bearer {{args.token}}"}],
            "jsonBody": {"service": "{{args.service}}"},
            "jsonPath": "{$.data.ok}",
        }}));
        assert_eq!(metric_problems(&good), vec![]);
        let declared: BTreeSet<&str> = ["service"].into();
        assert_eq!(
            undeclared_args(&good, &declared),
            vec![("provider.web.headers", "token".to_string())]
        );
        let bad = metric(serde_json::json!({"web": {
            "url": "http://checks.example/",
            "body": "x",
            "jsonPath": "{range .items[*]}{.ok}{end}",
        }}));
        let problems = metric_problems(&bad);
        let fields: Vec<&str> = problems.iter().map(|(f, _)| *f).collect();
        assert_eq!(
            fields,
            ["provider.web", "provider.web.jsonPath"],
            "{problems:?}"
        );
        assert!(problems[0].1.contains("POST or PUT"), "{problems:?}");
        let two = metric(serde_json::json!({
            "web": {"url": "http://checks.example/"},
            "scrape": {"url": "http://checks.example/metrics", "metric": "m"},
        }));
        assert_eq!(
            metric_problems(&two),
            vec![(
                "provider",
                "set only one provider: prometheus, scrape, web or job".to_string()
            )]
        );
    }

    #[test]
    fn expression_errors_are_one_line_with_the_column() {
        let error = expr::compile("result[0] >=").unwrap_err().to_string();
        let text = expression_error(&error);
        assert!(text.starts_with("column 13: expected "), "{text}");
        assert!(!text.contains('\n'));
    }
}
