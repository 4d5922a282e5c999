//! AnalysisRuns a Rollout creates: its templates (namespaced or cluster-scoped) merged into one run
//! spec, the Rollout's arguments resolved into it, owned by and labelled for the Rollout.
//!
//! The merge and argument rules are the analysis module's ([`merge_templates`]); this side takes
//! the templates observed and supplies what only the Rollout knows (pod template hashes, its own fields). A
//! template's `secretKeyRef` argument stays in the run for the analysis controller to read, so secret
//! values never land in an object's spec.

use std::collections::BTreeMap;

use kube::ResourceExt;
use kube::api::ObjectMeta;
use thiserror::Error;

use crate::analysis::args::{ArgContext, ArgsError, build_analysis_run as merge_templates};
use crate::api::analysis::{AnalysisRun, AnalysisRunSpec, AnalysisTemplateSpec};
use crate::api::rollout::{POD_TEMPLATE_HASH_LABEL, Rollout, RolloutAnalysis};
use crate::rollout::observe::{ANALYSIS_TYPE_LABEL, ROLLOUT_LABEL, STEP_INDEX_LABEL};
use crate::rollout::observed::AnalysisType;
use crate::rollout::replicasets::rollout_owner_reference;
use crate::rollout::templates::{ResolvedTemplates, TemplateRef};

#[derive(Debug, Error)]
pub enum AnalysisRunError {
    #[error("analysis template {0} not found")]
    TemplateNotFound(String),
    #[error(transparent)]
    Args(#[from] ArgsError),
    #[error("cannot read the Rollout for fieldRef arguments: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("rollout {0} has no uid yet; cannot own an AnalysisRun")]
    NoOwner(String),
}

/// Builds the AnalysisRun object to create from the templates `analysis` names (as observed).
pub fn build_analysis_run(
    found: &ResolvedTemplates,
    rollout: &Rollout,
    name: &str,
    analysis_type: AnalysisType,
    step_index: Option<i32>,
    analysis: &RolloutAnalysis,
    pod_template_hash: &str,
) -> Result<AnalysisRun, AnalysisRunError> {
    let namespace = rollout.namespace().unwrap_or_default();
    let templates = named_templates(found, analysis)?;
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

/// The templates `analysis` names, looked up in `found`, with their names (what
/// [`merge_templates`] takes). Shared by every kind that creates AnalysisRuns (Rollouts,
/// Experiments).
pub fn named_templates(
    found: &ResolvedTemplates,
    analysis: &RolloutAnalysis,
) -> Result<Vec<(String, AnalysisTemplateSpec)>, AnalysisRunError> {
    analysis
        .templates
        .iter()
        .map(|template| {
            let reference = TemplateRef {
                name: template.template_name.clone(),
                cluster_scope: template.cluster_scope(),
            };
            let spec = found
                .get(&reference)
                .ok_or_else(|| AnalysisRunError::TemplateNotFound(reference.name.clone()))?;
            Ok((reference.name, spec.clone()))
        })
        .collect()
}

/// The run spec: the templates merged, with the Rollout's arguments resolved against its stable
/// and analysed revisions and its own fields. Pure.
pub fn run_spec(
    rollout: &Rollout,
    templates: &[(String, AnalysisTemplateSpec)],
    analysis: &RolloutAnalysis,
    pod_template_hash: &str,
) -> Result<AnalysisRunSpec, AnalysisRunError> {
    let rollout_json = serde_json::to_value(rollout)?;
    let context = ArgContext {
        stable_hash: rollout.status.as_ref().and_then(|s| s.stable_rs.as_deref()),
        latest_hash: Some(pod_template_hash),
        rollout: Some(&rollout_json),
        secrets: BTreeMap::new(),
    };
    Ok(merge_templates(templates, analysis, &context)?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rollout() -> Rollout {
        serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "web", "namespace": "shop", "uid": "u1"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}},
                     "strategy": {"canary": {}}},
            "status": {"stableRS": "stable1"}
        }))
        .unwrap()
    }

    fn analysis(metadata: serde_json::Value) -> RolloutAnalysis {
        serde_json::from_value(json!({
            "templates": [{"templateName": "a"}],
            "args": [{"name": "stable", "valueFrom": {"podTemplateHashValue": "Stable"}},
                     {"name": "ns", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
            "analysisRunMetadata": metadata
        }))
        .unwrap()
    }

    #[test]
    fn the_rollout_side_supplies_hashes_and_its_own_fields_to_the_args() {
        let template: AnalysisTemplateSpec = serde_json::from_value(json!({
            "args": [{"name": "stable"}, {"name": "ns"}],
            "metrics": [{"name": "m", "provider": {"prometheus": {"query": "q"}}}]
        }))
        .unwrap();
        let spec = run_spec(
            &rollout(),
            &[("a".to_string(), template)],
            &analysis(json!({})),
            "canary1",
        )
        .unwrap();
        let args: Vec<_> = spec
            .args
            .iter()
            .map(|a| (a.name.as_str(), a.value.as_deref()))
            .collect();
        assert_eq!(args, [("stable", Some("stable1")), ("ns", Some("shop"))]);
    }

    #[test]
    fn labels_name_rollout_type_hash_and_step_over_user_metadata() {
        let analysis = analysis(json!({"labels": {"team": "a", ROLLOUT_LABEL: "spoofed"}}));
        let labels = run_labels(&rollout(), &analysis, AnalysisType::Step, Some(2), "abc");
        assert_eq!(labels[ROLLOUT_LABEL], "web");
        assert_eq!(labels[ANALYSIS_TYPE_LABEL], "step");
        assert_eq!(labels[POD_TEMPLATE_HASH_LABEL], "abc");
        assert_eq!(labels[STEP_INDEX_LABEL], "2");
        assert_eq!(labels["team"], "a");
    }
}
