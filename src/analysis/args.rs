//! Arguments (PURE, A7): resolving `value` / `valueFrom`, templating `{{args.NAME}}` into metrics, and
//! building an AnalysisRun spec from the templates a Rollout names.
//!
//! Resolution happens in two places, as in Argo: the Rollout engine resolves what only it knows
//! (`podTemplateHashValue`, `fieldRef`) when it builds the run ([`build_analysis_run`]); the run
//! controller resolves Secrets (`secretKeyRef`) when it measures ([`resolve_args`]), so secret values
//! are never written into the run. Anything left unresolved is a clear error on the run; a query is
//! never sent with a placeholder in it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::api::analysis::{
    AnalysisRunSpec, AnalysisTemplateSpec, Argument, FieldRef, Metric, PodTemplateHashValue,
    SecretKeyRef, ValueFrom,
};
use crate::api::rollout::{AnalysisRunArgument, RolloutAnalysis};

/// Why arguments could not be resolved or a spec could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    #[error("args.{name} has no value: give it a value in the Rollout's analysis args")]
    Missing { name: String },
    #[error("metric {metric:?} uses {{{{args.{name}}}}}, which is not an argument of the run")]
    Undeclared { metric: String, name: String },
    #[error("args.{name}: the {which:?} pod template hash is not known")]
    NoPodTemplateHash {
        name: String,
        which: PodTemplateHashValue,
    },
    #[error("args.{name}: fieldRef {path:?} was not resolved when the run was created")]
    UnresolvedFieldRef { name: String, path: String },
    #[error("args.{name}: fieldRef {path:?}: {reason}")]
    FieldPath {
        name: String,
        path: String,
        reason: String,
    },
    #[error("args.{name}: key {key:?} of Secret {secret:?} could not be read")]
    Secret {
        name: String,
        secret: String,
        key: String,
    },
    #[error("args.{name}: {source}")]
    SecretUnusable {
        name: String,
        #[source]
        source: super::secrets::SecretError,
    },
    #[error("args.{name} is given two different values by templates {first:?} and {second:?}")]
    Conflict {
        name: String,
        first: String,
        second: String,
    },
    #[error("metric {metric:?} is defined by both templates {first:?} and {second:?}")]
    DuplicateMetric {
        metric: String,
        first: String,
        second: String,
    },
    #[error("metric {metric:?} cannot be templated: {reason}")]
    Metric { metric: String, reason: String },
}

/// What argument resolution may read.
#[derive(Clone, Debug, Default)]
pub struct ArgContext<'a> {
    /// `rollouts-pod-template-hash` of the stable ReplicaSet.
    pub stable_hash: Option<&'a str>,
    /// `rollouts-pod-template-hash` of the newest ReplicaSet (canary / preview).
    pub latest_hash: Option<&'a str>,
    /// The Rollout as JSON, for `fieldRef`.
    pub rollout: Option<&'a Value>,
    /// Secret values the caller read, by (Secret name, key).
    pub secrets: BTreeMap<(String, String), String>,
}

/// Argument values by name; remembers which came from Secrets so they can be masked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvedArgs {
    pub values: BTreeMap<String, String>,
    secret_values: BTreeSet<String>,
}

impl ResolvedArgs {
    /// `text` with every secret value replaced by `*****` (for metadata, messages and logs).
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in self.secret_values.iter().filter(|s| !s.is_empty()) {
            out = out.replace(secret.as_str(), "*****");
        }
        out
    }
}

/// The Secrets (name, key) the arguments read, for the caller to fetch before [`resolve_args`].
pub fn secret_refs(args: &[Argument]) -> Vec<SecretKeyRef> {
    args.iter()
        .filter_map(|a| a.value_from.as_ref()?.secret_key_ref.clone())
        .collect()
}

/// Resolves a run's arguments: `value` as is; `secretKeyRef` from `ctx.secrets`;
/// `podTemplateHashValue` from the hashes; `fieldRef` against `ctx.rollout`. An argument with neither
/// a value nor a source is [`ArgsError::Missing`].
pub fn resolve_args(args: &[Argument], ctx: &ArgContext<'_>) -> Result<ResolvedArgs, ArgsError> {
    let mut resolved = ResolvedArgs::default();
    for arg in args {
        let value = match (&arg.value, &arg.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(from)) => {
                if let Some(secret) = &from.secret_key_ref {
                    let v = ctx
                        .secrets
                        .get(&(secret.name.clone(), secret.key.clone()))
                        .cloned()
                        .ok_or_else(|| ArgsError::Secret {
                            name: arg.name.clone(),
                            secret: secret.name.clone(),
                            key: secret.key.clone(),
                        })?;
                    resolved.secret_values.insert(v.clone());
                    v
                } else {
                    resolve_value_from(
                        &arg.name,
                        from.pod_template_hash_value,
                        from.field_ref.as_ref(),
                        ctx,
                    )?
                }
            }
            (None, None) => {
                return Err(ArgsError::Missing {
                    name: arg.name.clone(),
                });
            }
        };
        resolved.values.insert(arg.name.clone(), value);
    }
    Ok(resolved)
}

fn resolve_value_from(
    name: &str,
    hash: Option<PodTemplateHashValue>,
    field_ref: Option<&FieldRef>,
    ctx: &ArgContext<'_>,
) -> Result<String, ArgsError> {
    if let Some(which) = hash {
        let h = match which {
            PodTemplateHashValue::Stable => ctx.stable_hash,
            PodTemplateHashValue::Latest => ctx.latest_hash,
        };
        return h
            .map(str::to_string)
            .ok_or_else(|| ArgsError::NoPodTemplateHash {
                name: name.to_string(),
                which,
            });
    }
    if let Some(f) = field_ref {
        let Some(rollout) = ctx.rollout else {
            return Err(ArgsError::UnresolvedFieldRef {
                name: name.to_string(),
                path: f.field_path.clone(),
            });
        };
        return field_path(rollout, &f.field_path).map_err(|reason| ArgsError::FieldPath {
            name: name.to_string(),
            path: f.field_path.clone(),
            reason,
        });
    }
    Err(ArgsError::Missing {
        name: name.to_string(),
    })
}

/// Reads `path` (`metadata.name`, `metadata.labels['app']`, `spec.template.spec.containers[0].image`)
/// from `object`. Strings come as they are, other values as JSON.
pub fn field_path(object: &Value, path: &str) -> Result<String, String> {
    let mut current = object;
    let mut rest = path.trim();
    if rest.is_empty() {
        return Err("empty path".into());
    }
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']').ok_or("unclosed [")?;
            let key = after[..end].trim();
            rest = &after[end + 1..];
            let quoted = key
                .strip_prefix('\'')
                .and_then(|k| k.strip_suffix('\''))
                .or_else(|| key.strip_prefix('"').and_then(|k| k.strip_suffix('"')));
            current = match (quoted, key.parse::<usize>()) {
                (Some(k), _) => current.get(k),
                (None, Ok(i)) => current.get(i),
                (None, Err(_)) => return Err(format!("bad index [{key}]")),
            }
            .ok_or_else(|| format!("no [{key}]"))?;
        } else {
            let rest_trimmed = rest.strip_prefix('.').unwrap_or(rest);
            let end = rest_trimmed.find(['.', '[']).unwrap_or(rest_trimmed.len());
            let key = &rest_trimmed[..end];
            if key.is_empty() {
                return Err("empty field name".into());
            }
            rest = &rest_trimmed[end..];
            current = current
                .get(key)
                .ok_or_else(|| format!("no field {key:?}"))?;
        }
    }
    Ok(match current {
        Value::String(s) => s.clone(),
        Value::Null => return Err("the field is null".into()),
        other => other.to_string(),
    })
}

/// The longest text a substitution may produce: a long value used many times would otherwise
/// multiply into gigabytes.
pub const MAX_SUBSTITUTED_BYTES: usize = 1 << 20;

/// Replaces every `{{args.NAME}}` (spaces allowed inside the braces) in `text`. A name without a value
/// is an error naming it; other `{{...}}` text is left alone.
pub fn substitute(metric: &str, text: &str, args: &ResolvedArgs) -> Result<String, ArgsError> {
    let mut out = String::with_capacity(text.len().min(MAX_SUBSTITUTED_BYTES));
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        if out.len() > MAX_SUBSTITUTED_BYTES {
            return Err(ArgsError::Metric {
                metric: metric.to_string(),
                reason: format!(
                    "a field is longer than {MAX_SUBSTITUTED_BYTES} bytes once its {{{{args}}}} are replaced"
                ),
            });
        }
        let Some(len) = rest[start + 2..].find("}}") else {
            break;
        };
        let inner = rest[start + 2..start + 2 + len].trim();
        out.push_str(&rest[..start]);
        match inner.strip_prefix("args.") {
            Some(name) => {
                let value = args.values.get(name).ok_or_else(|| ArgsError::Undeclared {
                    metric: metric.to_string(),
                    name: name.to_string(),
                })?;
                out.push_str(value);
            }
            None => out.push_str(&rest[start..start + 2 + len + 2]),
        }
        rest = &rest[start + 2 + len + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The metric with `{{args.NAME}}` replaced in every string field (query, conditions, address,
/// headers, URL, labels, interval, count, limits).
pub fn resolve_metric(metric: &Metric, args: &ResolvedArgs) -> Result<Metric, ArgsError> {
    let err = |reason: String| ArgsError::Metric {
        metric: metric.name.clone(),
        reason,
    };
    let mut json = serde_json::to_value(metric).map_err(|e| err(e.to_string()))?;
    substitute_json(&metric.name, &mut json, args)?;
    // Limits and counts templated as strings stay int-or-string; the accessors read both.
    serde_json::from_value(json).map_err(|e| err(e.to_string()))
}

fn substitute_json(metric: &str, value: &mut Value, args: &ResolvedArgs) -> Result<(), ArgsError> {
    match value {
        Value::String(s) if s.contains("{{") => {
            *s = substitute(metric, s, args)?;
        }
        Value::Array(items) => {
            for item in items {
                substitute_json(metric, item, args)?;
            }
        }
        Value::Object(map) => {
            for item in map.values_mut() {
                substitute_json(metric, item, args)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Builds the spec of an AnalysisRun from the templates a Rollout's analysis names (`(name, spec)`, in
/// order) and the analysis itself (its args, dryRun, measurementRetention), as Argo's
/// `NewAnalysisRunFromTemplates`:
/// - metrics are concatenated; a metric name defined twice is an error;
/// - template args are merged by name (two different template values are an error), then the
///   Rollout's args override them; `podTemplateHashValue` and `fieldRef` are resolved here against
///   `ctx`, Secrets are left as `secretKeyRef` for the run controller;
/// - an argument left without a value stays so, and the run then fails with
///   [`ArgsError::Missing`] (a clear error on the run, A7);
/// - dryRun and measurementRetention of the templates and of the analysis are concatenated.
pub fn build_analysis_run(
    templates: &[(String, AnalysisTemplateSpec)],
    analysis: &RolloutAnalysis,
    ctx: &ArgContext<'_>,
) -> Result<AnalysisRunSpec, ArgsError> {
    let mut spec = AnalysisRunSpec::default();
    let mut metric_owner: BTreeMap<String, String> = BTreeMap::new();
    let mut arg_owner: BTreeMap<String, String> = BTreeMap::new();
    for (template, t) in templates {
        for metric in &t.metrics {
            if let Some(first) = metric_owner.insert(metric.name.clone(), template.clone()) {
                return Err(ArgsError::DuplicateMetric {
                    metric: metric.name.clone(),
                    first,
                    second: template.clone(),
                });
            }
            spec.metrics.push(metric.clone());
        }
        for arg in &t.args {
            match spec.args.iter_mut().find(|a| a.name == arg.name) {
                None => {
                    arg_owner.insert(arg.name.clone(), template.clone());
                    spec.args.push(arg.clone());
                }
                Some(existing) => {
                    let both_set = (existing.value.is_some() || existing.value_from.is_some())
                        && (arg.value.is_some() || arg.value_from.is_some());
                    if both_set
                        && (existing.value != arg.value || existing.value_from != arg.value_from)
                    {
                        return Err(ArgsError::Conflict {
                            name: arg.name.clone(),
                            first: arg_owner.get(&arg.name).cloned().unwrap_or_default(),
                            second: template.clone(),
                        });
                    }
                    if existing.value.is_none() && existing.value_from.is_none() {
                        *existing = arg.clone();
                    }
                }
            }
        }
        spec.dry_run.extend(t.dry_run.iter().cloned());
        spec.measurement_retention
            .extend(t.measurement_retention.iter().cloned());
    }
    for given in &analysis.args {
        let resolved = rollout_arg(given, ctx);
        match spec.args.iter_mut().find(|a| a.name == given.name) {
            Some(existing) => *existing = resolved,
            None => spec.args.push(resolved),
        }
    }
    // Template arguments whose source only the Rollout knows are resolved now too.
    for arg in &mut spec.args {
        if arg.value.is_some() {
            continue;
        }
        if let Some(from) = &arg.value_from
            && from.secret_key_ref.is_none()
            && let Ok(v) = resolve_value_from(
                &arg.name,
                from.pod_template_hash_value,
                from.field_ref.as_ref(),
                ctx,
            )
        {
            arg.value = Some(v);
            arg.value_from = None;
        }
    }
    spec.dry_run.extend(analysis.dry_run.iter().cloned());
    spec.measurement_retention
        .extend(analysis.measurement_retention.iter().cloned());
    Ok(spec)
}

/// A Rollout argument as a run argument: a literal stays; `podTemplateHashValue` / `fieldRef` become
/// the value when `ctx` resolves them, else stay as `valueFrom` (and the run reports why).
pub fn rollout_arg(given: &AnalysisRunArgument, ctx: &ArgContext<'_>) -> Argument {
    let mut arg = Argument {
        name: given.name.clone(),
        value: given.value.clone(),
        value_from: None,
    };
    if arg.value.is_none()
        && let Some(from) = &given.value_from
    {
        match resolve_value_from(
            &given.name,
            from.pod_template_hash_value,
            from.field_ref.as_ref(),
            ctx,
        ) {
            Ok(v) => arg.value = Some(v),
            Err(_) => {
                arg.value_from = Some(ValueFrom {
                    secret_key_ref: None,
                    field_ref: from.field_ref.clone(),
                    pod_template_hash_value: from.pod_template_hash_value,
                });
            }
        }
    }
    arg
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn arg(v: Value) -> Argument {
        serde_json::from_value(v).unwrap()
    }

    fn rollout() -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "prod", "labels": {"app": "web", "app.kubernetes.io/name": "w"}},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "c", "image": "web:2"}]}}}
        })
    }

    #[test]
    fn a7_value_pod_template_hash_field_ref_and_secret() {
        let r = rollout();
        let mut ctx = ArgContext {
            stable_hash: Some("abc"),
            latest_hash: Some("def"),
            rollout: Some(&r),
            ..ArgContext::default()
        };
        ctx.secrets
            .insert(("creds".into(), "token".into()), "s3cr3t".into());
        let args = vec![
            arg(json!({"name": "literal", "value": "x"})),
            arg(json!({"name": "stable", "valueFrom": {"podTemplateHashValue": "Stable"}})),
            arg(json!({"name": "latest", "valueFrom": {"podTemplateHashValue": "Latest"}})),
            arg(
                json!({"name": "app", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}}),
            ),
            arg(
                json!({"name": "image", "valueFrom": {"fieldRef": {"fieldPath": "spec.template.spec.containers[0].image"}}}),
            ),
            arg(
                json!({"name": "replicas", "valueFrom": {"fieldRef": {"fieldPath": "spec.replicas"}}}),
            ),
            arg(
                json!({"name": "token", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}),
            ),
        ];
        let resolved = resolve_args(&args, &ctx).unwrap();
        let got: Vec<(&str, &str)> = resolved
            .values
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("app", "web"),
                ("image", "web:2"),
                ("latest", "def"),
                ("literal", "x"),
                ("replicas", "3"),
                ("stable", "abc"),
                ("token", "s3cr3t"),
            ]
        );
        assert_eq!(resolved.mask("Bearer s3cr3t here"), "Bearer ***** here");
        assert_eq!(
            secret_refs(&args),
            vec![SecretKeyRef {
                name: "creds".into(),
                key: "token".into()
            }]
        );
    }

    #[test]
    fn a7_unresolvable_args_are_clear_errors() {
        let ctx = ArgContext::default();
        let cases = [
            (json!({"name": "m"}), "args.m has no value"),
            (
                json!({"name": "h", "valueFrom": {"podTemplateHashValue": "Stable"}}),
                "args.h: the Stable pod template hash is not known",
            ),
            (
                json!({"name": "f", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
                "args.f: fieldRef \"metadata.name\" was not resolved",
            ),
            (
                json!({"name": "s", "valueFrom": {"secretKeyRef": {"name": "x", "key": "k"}}}),
                "args.s: key \"k\" of Secret \"x\" could not be read",
            ),
        ];
        for (a, message) in cases {
            let err = resolve_args(&[arg(a)], &ctx).unwrap_err();
            assert!(err.to_string().starts_with(message), "{err}");
        }
        let r = rollout();
        let with_rollout = ArgContext {
            rollout: Some(&r),
            ..ArgContext::default()
        };
        let err = resolve_args(
            &[arg(json!({"name": "f", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['nope']"}}}))],
            &with_rollout,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "args.f: fieldRef \"metadata.labels['nope']\": no ['nope']"
        );
    }

    #[test]
    fn field_paths() {
        let r = rollout();
        assert_eq!(field_path(&r, "metadata.name").unwrap(), "web");
        assert_eq!(
            field_path(&r, "metadata.labels[\"app.kubernetes.io/name\"]").unwrap(),
            "w"
        );
        assert!(field_path(&r, "spec.template.spec.containers[5]").is_err());
        assert!(field_path(&r, "").is_err());
        assert!(field_path(&r, "metadata.labels[app").is_err());
    }

    fn resolved(pairs: &[(&str, &str)]) -> ResolvedArgs {
        ResolvedArgs {
            values: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..ResolvedArgs::default()
        }
    }

    #[test]
    fn a7_templating_into_queries_and_conditions() {
        let args = resolved(&[("svc", "web"), ("threshold", "0.95"), ("limit", "2")]);
        assert_eq!(
            substitute(
                "m",
                "rate(x{service=\"{{args.svc}}\"}[1m]) {{ args.svc }}",
                &args
            )
            .unwrap(),
            "rate(x{service=\"web\"}[1m]) web"
        );
        assert_eq!(
            substitute("m", "{{other}} {{", &args).unwrap(),
            "{{other}} {{"
        );
        let err = substitute("m", "up{a=\"{{args.nope}}\"}", &args).unwrap_err();
        assert_eq!(
            err.to_string(),
            "metric \"m\" uses {{args.nope}}, which is not an argument of the run"
        );

        let metric: Metric = serde_json::from_value(json!({
            "name": "rate", "successCondition": "result[0] >= {{args.threshold}}",
            "failureLimit": "{{args.limit}}",
            "provider": {"prometheus": {"query": "sum(x{svc=\"{{args.svc}}\"})",
                "headers": [{"key": "X-Svc", "value": "{{args.svc}}"}]}}
        }))
        .unwrap();
        let m = resolve_metric(&metric, &args).unwrap();
        let prom = m.provider.prometheus.as_ref().unwrap();
        assert_eq!(prom.query, "sum(x{svc=\"web\"})");
        assert_eq!(prom.headers[0].value, "web");
        assert_eq!(m.success_condition.as_deref(), Some("result[0] >= 0.95"));
        assert_eq!(m.failure_limit(), Ok(2));
        assert!(resolve_metric(&metric, &resolved(&[])).is_err());
    }

    fn template(v: Value) -> AnalysisTemplateSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn builds_a_run_from_templates_and_rollout_args() {
        let success = template(json!({
            "args": [{"name": "service"}, {"name": "hash", "valueFrom": {"podTemplateHashValue": "Latest"}},
                     {"name": "threshold", "value": "0.95"}],
            "metrics": [{"name": "success-rate", "provider": {"prometheus": {"query": "q"}}}],
            "dryRun": [{"metricName": "success-rate"}]
        }));
        let latency = template(json!({
            "args": [{"name": "service"}, {"name": "token", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
            "metrics": [{"name": "latency", "provider": {"prometheus": {"query": "q"}}}],
            "measurementRetention": [{"metricName": "latency", "limit": 3}]
        }));
        let analysis: RolloutAnalysis = serde_json::from_value(json!({
            "templates": [{"templateName": "success"}, {"templateName": "latency"}],
            "args": [
                {"name": "service", "value": "web"},
                {"name": "threshold", "value": "0.99"},
                {"name": "app", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "stable", "valueFrom": {"podTemplateHashValue": "Stable"}}
            ],
            "measurementRetention": [{"metricName": "*", "limit": 20}]
        }))
        .unwrap();
        let r = rollout();
        let ctx = ArgContext {
            stable_hash: None,
            latest_hash: Some("def"),
            rollout: Some(&r),
            ..ArgContext::default()
        };
        let spec = build_analysis_run(
            &[
                ("success".into(), success.clone()),
                ("latency".into(), latency),
            ],
            &analysis,
            &ctx,
        )
        .unwrap();
        let names: Vec<&str> = spec.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["success-rate", "latency"]);
        let value = |n: &str| {
            spec.args
                .iter()
                .find(|a| a.name == n)
                .unwrap_or_else(|| panic!("{n}"))
                .clone()
        };
        assert_eq!(value("service").value.as_deref(), Some("web"));
        assert_eq!(value("threshold").value.as_deref(), Some("0.99"));
        assert_eq!(value("hash").value.as_deref(), Some("def"));
        assert_eq!(value("app").value.as_deref(), Some("web"));
        // Secrets stay references; an unknown hash stays a source, and the run will say why.
        assert!(value("token").value_from.unwrap().secret_key_ref.is_some());
        assert_eq!(
            value("stable").value_from.unwrap().pod_template_hash_value,
            Some(PodTemplateHashValue::Stable)
        );
        assert!(spec.is_dry_run("success-rate"));
        assert_eq!(spec.measurement_retention_limit("latency"), 3);
        assert_eq!(spec.measurement_retention_limit("success-rate"), 20);

        // A missing arg is kept, so the run reports it.
        let bare = build_analysis_run(
            &[("success".into(), success.clone())],
            &RolloutAnalysis::default(),
            &ctx,
        )
        .unwrap();
        assert_eq!(
            resolve_args(&bare.args, &ctx).unwrap_err(),
            ArgsError::Missing {
                name: "service".into()
            }
        );

        let dup = build_analysis_run(
            &[("a".into(), success.clone()), ("b".into(), success)],
            &RolloutAnalysis::default(),
            &ctx,
        );
        assert!(matches!(
            dup,
            Err(ArgsError::Conflict { .. }) | Err(ArgsError::DuplicateMetric { .. })
        ));
    }

    fn cases() -> proptest::prelude::ProptestConfig {
        crate::proptest_config()
    }

    proptest::proptest! {
        #![proptest_config(cases())]

        #[test]
        fn substitution_of_any_text_never_panics(
            text in "(\\PC|\\{\\{ ?(args\\.)?[a-zé]{0,3} ?\\}\\}|\\{|\\}){0,20}",
            value in "\\PC{0,10}",
        ) {
            let mut args = ResolvedArgs::default();
            for name in ["a", "é", ""] {
                args.values.insert(name.to_string(), value.clone());
            }
            if let Ok(out) = substitute("m", &text, &args) {
                proptest::prop_assert!(out.len() <= text.len() * (value.len() + 1));
            }
        }

        #[test]
        fn field_paths_of_any_text_never_panic(path in "(\\PC|\\[|\\]|\\.|'|\"|[0-9]){0,20}") {
            let object = json!({"metadata": {"name": "web", "labels": {"app": "web"}},
                                "spec": {"containers": [{"image": "i"}]}});
            let _ = field_path(&object, &path);
        }
    }

    #[test]
    fn a_long_value_used_many_times_is_refused_not_multiplied() {
        let mut args = ResolvedArgs::default();
        args.values.insert("x".into(), "v".repeat(100_000));
        let text = "{{args.x}}".repeat(100);
        let err = substitute("m", &text, &args).unwrap_err();
        assert!(matches!(err, ArgsError::Metric { .. }), "{err}");
        assert!(substitute("m", &"{{args.x}}".repeat(5), &args).is_ok());
    }
}
