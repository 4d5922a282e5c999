//! AnalysisRuns a Rollout creates: its templates (namespaced or cluster-scoped) merged into one run
//! spec, the Rollout's arguments resolved into it, owned by and labelled for the Rollout.
//!
//! Only arguments the Rollout can know are resolved here (literal values, pod template hashes,
//! field paths of the Rollout); a template's `secretKeyRef` argument stays in the run for the
//! analysis controller to read, so secret values never land in an object's spec.

use std::collections::BTreeMap;

use kube::api::ObjectMeta;
use kube::{Api, Client, ResourceExt};
use serde_json::Value;
use thiserror::Error;

use crate::api::analysis::{
    AnalysisRun, AnalysisRunSpec, AnalysisTemplate, AnalysisTemplateSpec, Argument,
    ClusterAnalysisTemplate, PodTemplateHashValue,
};
use crate::api::rollout::{AnalysisRunArgument, POD_TEMPLATE_HASH_LABEL, Rollout, RolloutAnalysis};
use crate::rollout::observe::{ANALYSIS_TYPE_LABEL, ROLLOUT_LABEL, STEP_INDEX_LABEL};
use crate::rollout::observed::AnalysisType;
use crate::rollout::replicasets::rollout_owner_reference;

#[derive(Debug, Error)]
pub enum AnalysisRunError {
    #[error("reading analysis template {name}: {source}")]
    Template {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("analysis template {0} not found")]
    TemplateNotFound(String),
    #[error("analysis templates {first} and {second} both define metric {metric}")]
    DuplicateMetric {
        metric: String,
        first: String,
        second: String,
    },
    #[error("argument {name}: {reason}")]
    Argument { name: String, reason: String },
    #[error("rollout {0} has no uid yet; cannot own an AnalysisRun")]
    NoOwner(String),
}

/// Reads the templates `analysis` names and builds the AnalysisRun object to create.
pub async fn build_analysis_run(
    client: &Client,
    rollout: &Rollout,
    name: &str,
    analysis_type: AnalysisType,
    step_index: Option<i32>,
    analysis: &RolloutAnalysis,
    pod_template_hash: &str,
) -> Result<AnalysisRun, AnalysisRunError> {
    let namespace = rollout.namespace().unwrap_or_default();
    let mut templates = Vec::new();
    for template in &analysis.templates {
        let spec = fetch_template(
            client,
            &namespace,
            &template.template_name,
            template.cluster_scope(),
        )
        .await?;
        templates.push((template.template_name.clone(), spec));
    }
    let spec = run_spec(rollout, &templates, analysis, pod_template_hash)?;
    let owner = rollout_owner_reference(rollout)
        .ok_or_else(|| AnalysisRunError::NoOwner(rollout.name_any()))?;
    Ok(AnalysisRun {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace),
            labels: Some(run_labels(
                rollout,
                analysis,
                analysis_type,
                step_index,
                pod_template_hash,
            )),
            annotations: analysis
                .analysis_run_metadata
                .as_ref()
                .map(|m| m.annotations.clone())
                .filter(|a| !a.is_empty()),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    })
}

async fn fetch_template(
    client: &Client,
    namespace: &str,
    name: &str,
    cluster_scope: bool,
) -> Result<AnalysisTemplateSpec, AnalysisRunError> {
    let err = |source| AnalysisRunError::Template {
        name: name.to_string(),
        source,
    };
    let found = if cluster_scope {
        Api::<ClusterAnalysisTemplate>::all(client.clone())
            .get_opt(name)
            .await
            .map_err(err)?
            .map(|t| t.spec.0)
    } else {
        Api::<AnalysisTemplate>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(err)?
            .map(|t| t.spec)
    };
    found.ok_or_else(|| AnalysisRunError::TemplateNotFound(name.to_string()))
}

fn run_labels(
    rollout: &Rollout,
    analysis: &RolloutAnalysis,
    analysis_type: AnalysisType,
    step_index: Option<i32>,
    pod_template_hash: &str,
) -> BTreeMap<String, String> {
    let mut labels = analysis
        .analysis_run_metadata
        .as_ref()
        .map(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(ROLLOUT_LABEL.to_string(), rollout.name_any());
    labels.insert(
        ANALYSIS_TYPE_LABEL.to_string(),
        analysis_type.label().to_string(),
    );
    labels.insert(
        POD_TEMPLATE_HASH_LABEL.to_string(),
        pod_template_hash.to_string(),
    );
    if let Some(index) = step_index {
        labels.insert(STEP_INDEX_LABEL.to_string(), index.to_string());
    }
    labels
}

/// Merges the templates (metrics, args, dry-run and retention settings, in template order) and sets
/// the Rollout's argument values on the merged args. Pure.
pub fn run_spec(
    rollout: &Rollout,
    templates: &[(String, AnalysisTemplateSpec)],
    analysis: &RolloutAnalysis,
    pod_template_hash: &str,
) -> Result<AnalysisRunSpec, AnalysisRunError> {
    let mut spec = AnalysisRunSpec::default();
    let mut metric_sources: BTreeMap<String, String> = BTreeMap::new();
    for (template_name, template) in templates {
        for metric in &template.metrics {
            if let Some(first) = metric_sources.insert(metric.name.clone(), template_name.clone()) {
                return Err(AnalysisRunError::DuplicateMetric {
                    metric: metric.name.clone(),
                    first,
                    second: template_name.clone(),
                });
            }
            spec.metrics.push(metric.clone());
        }
        for arg in &template.args {
            if !spec.args.iter().any(|a| a.name == arg.name) {
                spec.args.push(arg.clone());
            }
        }
        spec.dry_run.extend(template.dry_run.iter().cloned());
        spec.measurement_retention
            .extend(template.measurement_retention.iter().cloned());
    }
    spec.dry_run.extend(analysis.dry_run.iter().cloned());
    spec.measurement_retention
        .extend(analysis.measurement_retention.iter().cloned());
    for rollout_arg in &analysis.args {
        let value = resolve_rollout_arg(rollout, rollout_arg, pod_template_hash)?;
        match spec.args.iter_mut().find(|a| a.name == rollout_arg.name) {
            Some(arg) => {
                arg.value = Some(value);
                arg.value_from = None;
            }
            None => spec.args.push(Argument {
                name: rollout_arg.name.clone(),
                value: Some(value),
                value_from: None,
            }),
        }
    }
    Ok(spec)
}

fn resolve_rollout_arg(
    rollout: &Rollout,
    arg: &AnalysisRunArgument,
    pod_template_hash: &str,
) -> Result<String, AnalysisRunError> {
    let err = |reason: &str| AnalysisRunError::Argument {
        name: arg.name.clone(),
        reason: reason.to_string(),
    };
    if let Some(value) = &arg.value {
        return Ok(value.clone());
    }
    let Some(from) = &arg.value_from else {
        return Err(err("neither value nor valueFrom is set"));
    };
    if let Some(which) = from.pod_template_hash_value {
        return match which {
            PodTemplateHashValue::Latest => Ok(pod_template_hash.to_string()),
            PodTemplateHashValue::Stable => rollout
                .status
                .as_ref()
                .and_then(|s| s.stable_rs.clone())
                .ok_or_else(|| err("the Rollout has no stable revision yet")),
        };
    }
    if let Some(field) = &from.field_ref {
        let object = serde_json::to_value(rollout).map_err(|e| err(&e.to_string()))?;
        return field_path_value(&object, &field.field_path).ok_or_else(|| {
            err(&format!(
                "field {} is not set on the Rollout",
                field.field_path
            ))
        });
    }
    Err(err("valueFrom names no source"))
}

/// The value at a Kubernetes-style field path such as `metadata.name` or
/// `metadata.labels['app.kubernetes.io/name']`, as a string.
fn field_path_value(object: &Value, path: &str) -> Option<String> {
    let mut current = object;
    let mut rest = path;
    while !rest.is_empty() {
        let (key, tail) = if let Some(bracketed) = rest.strip_prefix("['") {
            let end = bracketed.find("']")?;
            (&bracketed[..end], &bracketed[end + 2..])
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        current = current.get(key)?;
        rest = tail.strip_prefix('.').unwrap_or(tail);
    }
    match current {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rollout() -> Rollout {
        serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "web", "namespace": "shop", "uid": "u1",
                         "labels": {"app.kubernetes.io/name": "web"}},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}},
                     "strategy": {"canary": {}}},
            "status": {"stableRS": "stable1"}
        }))
        .unwrap()
    }

    fn template(metric: &str, args: serde_json::Value) -> AnalysisTemplateSpec {
        serde_json::from_value(json!({
            "args": args,
            "metrics": [{"name": metric, "successCondition": "result[0] > 0.9",
                         "provider": {"prometheus": {"query": "q{{args.service}}"}}}]
        }))
        .unwrap()
    }

    fn analysis(args: serde_json::Value) -> RolloutAnalysis {
        serde_json::from_value(json!({"templates": [{"templateName": "a"}], "args": args})).unwrap()
    }

    #[test]
    fn templates_merge_and_rollout_args_fill_the_template_args() {
        let templates = vec![
            (
                "a".to_string(),
                template("success", json!([{"name": "service"}, {"name": "hash"}])),
            ),
            (
                "b".to_string(),
                template("latency", json!([{"name": "service"}])),
            ),
        ];
        let spec = run_spec(
            &rollout(),
            &templates,
            &analysis(json!([
                {"name": "service", "value": "web-canary"},
                {"name": "hash", "valueFrom": {"podTemplateHashValue": "Latest"}},
                {"name": "stable", "valueFrom": {"podTemplateHashValue": "Stable"}},
                {"name": "ns", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "app", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app.kubernetes.io/name']"}}}
            ])),
            "canary1",
        )
        .unwrap();
        let names: Vec<_> = spec.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["success", "latency"]);
        let args: Vec<_> = spec
            .args
            .iter()
            .map(|a| (a.name.as_str(), a.value.as_deref()))
            .collect();
        assert_eq!(
            args,
            [
                ("service", Some("web-canary")),
                ("hash", Some("canary1")),
                ("stable", Some("stable1")),
                ("ns", Some("shop")),
                ("app", Some("web")),
            ]
        );
    }

    #[test]
    fn a_template_secret_arg_stays_for_the_analysis_controller() {
        let templates = vec![(
            "a".to_string(),
            template(
                "m",
                json!([{"name": "token", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]),
            ),
        )];
        let spec = run_spec(&rollout(), &templates, &analysis(json!([])), "h").unwrap();
        assert!(spec.args[0].value.is_none());
        assert!(spec.args[0].value_from.is_some());
    }

    #[test]
    fn duplicate_metrics_and_unresolvable_args_are_clear_errors() {
        let templates = vec![
            ("a".to_string(), template("m", json!([]))),
            ("b".to_string(), template("m", json!([]))),
        ];
        let err = run_spec(&rollout(), &templates, &analysis(json!([])), "h").unwrap_err();
        assert_eq!(
            err.to_string(),
            "analysis templates a and b both define metric m"
        );

        let mut new_rollout = rollout();
        new_rollout.status = None;
        let err = run_spec(
            &new_rollout,
            &[],
            &analysis(json!([{"name": "stable", "valueFrom": {"podTemplateHashValue": "Stable"}}])),
            "h",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "argument stable: the Rollout has no stable revision yet"
        );
        let err = run_spec(
            &rollout(),
            &[],
            &analysis(
                json!([{"name": "x", "valueFrom": {"fieldRef": {"fieldPath": "spec.nothing"}}}]),
            ),
            "h",
        )
        .unwrap_err();
        assert!(err.to_string().contains("spec.nothing"), "{err}");
    }

    #[test]
    fn labels_name_rollout_type_hash_and_step() {
        let labels = run_labels(
            &rollout(),
            &analysis(json!([])),
            AnalysisType::Step,
            Some(2),
            "abc",
        );
        assert_eq!(labels[ROLLOUT_LABEL], "web");
        assert_eq!(labels[ANALYSIS_TYPE_LABEL], "step");
        assert_eq!(labels[POD_TEMPLATE_HASH_LABEL], "abc");
        assert_eq!(labels[STEP_INDEX_LABEL], "2");
    }
}
