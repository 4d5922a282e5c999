//! The Experiment an `experiment` step creates (Argo's `GetExperimentFromTemplate`): one template
//! per step template, from the stable or the canary revision's pod template, with the step's
//! metadata; the step's analyses with their arguments resolved by the Rollout (pod template hashes,
//! `fieldRef`), so the Experiment controller needs nothing of the Rollout. Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use kube::api::ObjectMeta;

use crate::analysis::args::{ArgContext, rollout_arg};
use crate::api::experiment::{
    Experiment, ExperimentAnalysisTemplateRef, ExperimentSpec, ExperimentTemplate,
};
use crate::api::rollout::{POD_TEMPLATE_HASH_LABEL, Rollout, RolloutExperimentStep};
use crate::rollout::analysis_runs::AnalysisRunError;
use crate::rollout::observe::{ROLLOUT_LABEL, STEP_INDEX_LABEL};
use crate::rollout::replicasets::{ARGO_ROLLOUT_REVISION_ANNOTATION, rollout_owner_reference};

/// What an experiment step's Experiment is made of besides the step.
pub struct ExperimentSource<'a> {
    pub name: &'a str,
    pub step_index: i32,
    pub revision: i64,
    /// Hash and pod template of the stable revision.
    pub stable_hash: &'a str,
    pub stable_template: &'a PodTemplateSpec,
    /// Hash and pod template of the current (canary) revision.
    pub canary_hash: &'a str,
    pub canary_template: &'a PodTemplateSpec,
    /// The revisions' selector (without the hash key).
    pub selector: &'a LabelSelector,
}

/// Builds the Experiment of `step`.
pub fn build_experiment(
    rollout: &Rollout,
    step: &RolloutExperimentStep,
    source: &ExperimentSource<'_>,
) -> Result<Experiment, AnalysisRunError> {
    let owner = rollout_owner_reference(rollout)
        .ok_or_else(|| AnalysisRunError::NoOwner(rollout.name_any()))?;
    let mut labels = rollout.labels().clone();
    labels.insert(
        POD_TEMPLATE_HASH_LABEL.to_string(),
        source.canary_hash.to_string(),
    );
    labels.insert(ROLLOUT_LABEL.to_string(), rollout.name_any());
    labels.insert(STEP_INDEX_LABEL.to_string(), source.step_index.to_string());
    let templates = step
        .templates
        .iter()
        .map(|t| {
            let template = if t.spec_ref == "stable" {
                source.stable_template
            } else {
                source.canary_template
            };
            experiment_template(t, template, source.selector, rollout)
        })
        .collect();
    let rollout_json = serde_json::to_value(rollout)?;
    let context = ArgContext {
        stable_hash: Some(source.stable_hash),
        latest_hash: Some(source.canary_hash),
        rollout: Some(&rollout_json),
        secrets: BTreeMap::new(),
    };
    let analyses = step
        .analyses
        .iter()
        .map(|a| ExperimentAnalysisTemplateRef {
            name: a.name.clone(),
            template_name: a.template_name.clone(),
            cluster_scope: a.cluster_scope,
            args: a
                .args
                .iter()
                .map(|arg| rollout_arg(arg, &context))
                .collect(),
            required_for_completion: a.required_for_completion,
        })
        .collect();
    Ok(Experiment {
        metadata: ObjectMeta {
            name: Some(source.name.to_string()),
            namespace: rollout.namespace(),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                ARGO_ROLLOUT_REVISION_ANNOTATION.to_string(),
                source.revision.to_string(),
            )])),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: ExperimentSpec {
            templates,
            duration: step.duration.clone(),
            progress_deadline_seconds: rollout.spec.progress_deadline_seconds,
            terminate: None,
            analyses,
            scale_down_delay_seconds: step.scale_down_delay_seconds,
            dry_run: step.dry_run.clone(),
            measurement_retention: Vec::new(),
            analysis_run_metadata: step.analysis_run_metadata.clone(),
        },
        status: None,
    })
}

/// One template: the revision's pod template without its hash label (the Experiment's ReplicaSet
/// gets its own), the step's labels on the pods and in the selector, its annotations on the pods.
fn experiment_template(
    step: &crate::api::rollout::RolloutExperimentTemplate,
    template: &PodTemplateSpec,
    selector: &LabelSelector,
    rollout: &Rollout,
) -> ExperimentTemplate {
    let mut template = template.clone();
    let metadata = template.metadata.get_or_insert_with(ObjectMeta::default);
    let labels = metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.remove(POD_TEMPLATE_HASH_LABEL);
    let mut selector = step.selector.clone().unwrap_or_else(|| selector.clone());
    if let Some(match_labels) = selector.match_labels.as_mut() {
        match_labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    if let Some(extra) = &step.metadata {
        labels.extend(extra.labels.clone());
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .extend(extra.labels.clone());
        if !extra.annotations.is_empty() {
            metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .extend(extra.annotations.clone());
        }
    }
    ExperimentTemplate {
        name: step.name.clone(),
        replicas: step.replicas,
        min_ready_seconds: rollout.spec.min_ready_seconds,
        selector,
        template,
        service: step.service.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn step_templates_take_the_revisions_templates_metadata_and_resolved_args() {
        let rollout: Rollout = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "web", "namespace": "shop", "uid": "u1", "labels": {"team": "a"}},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "progressDeadlineSeconds": 90,
                     "template": {"metadata": {"labels": {"app": "web"}}},
                     "strategy": {"canary": {}}}
        }))
        .unwrap();
        let step: RolloutExperimentStep = serde_json::from_value(json!({
            "duration": "1m",
            "templates": [
                {"name": "baseline", "specRef": "stable", "metadata": {"labels": {"role": "baseline"}}},
                {"name": "canary", "specRef": "canary", "replicas": 2}
            ],
            "analyses": [{"name": "compare", "templateName": "t", "args": [
                {"name": "canary-hash", "valueFrom": {"podTemplateHashValue": "Latest"}},
                {"name": "ns", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}]}]
        }))
        .unwrap();
        let stable: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web", POD_TEMPLATE_HASH_LABEL: "s1"}},
            "spec": {"containers": [{"name": "c", "image": "web:1"}]}
        }))
        .unwrap();
        let canary: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "web:2"}]}
        }))
        .unwrap();
        let selector: LabelSelector =
            serde_json::from_value(json!({"matchLabels": {"app": "web"}})).unwrap();
        let experiment = build_experiment(
            &rollout,
            &step,
            &ExperimentSource {
                name: "web-c1-2-0",
                step_index: 0,
                revision: 2,
                stable_hash: "s1",
                stable_template: &stable,
                canary_hash: "c1",
                canary_template: &canary,
                selector: &selector,
            },
        )
        .unwrap();
        let value = serde_json::to_value(&experiment).unwrap();
        assert_eq!(value["metadata"]["labels"][POD_TEMPLATE_HASH_LABEL], "c1");
        assert_eq!(value["metadata"]["labels"]["team"], "a");
        assert_eq!(value["metadata"]["labels"][ROLLOUT_LABEL], "web");
        assert_eq!(value["metadata"]["ownerReferences"][0]["kind"], "Rollout");
        assert_eq!(value["spec"]["progressDeadlineSeconds"], 90);
        let baseline = &value["spec"]["templates"][0];
        assert_eq!(
            baseline["template"]["metadata"]["labels"],
            json!({"app": "web", "role": "baseline"})
        );
        assert_eq!(
            baseline["selector"]["matchLabels"],
            json!({"app": "web", "role": "baseline"})
        );
        assert_eq!(
            baseline["template"]["spec"]["containers"][0]["image"],
            "web:1"
        );
        let canary = &value["spec"]["templates"][1];
        assert_eq!(canary["replicas"], 2);
        assert_eq!(
            canary["template"]["spec"]["containers"][0]["image"],
            "web:2"
        );
        assert_eq!(
            value["spec"]["analyses"][0]["args"],
            json!([{"name": "canary-hash", "value": "c1"}, {"name": "ns", "value": "shop"}])
        );
    }
}
