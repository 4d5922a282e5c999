//! The AnalysisTemplates a Rollout names, resolved on every reconcile (from the watch caches, in
//! observe) so that a missing template, or one using an Argo field Sluice does not implement, makes
//! the Rollout `InvalidSpec` before anything moves, as Argo does — not an analysis that fails (and a
//! commit reverted) halfway through the update.

use std::collections::BTreeMap;

use crate::api::analysis::AnalysisTemplateSpec;
use crate::api::rollout::{RolloutAnalysis, RolloutSpec};
use crate::api::unsupported;

/// An AnalysisTemplate (namespaced, in the Rollout's namespace) or ClusterAnalysisTemplate.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TemplateRef {
    pub name: String,
    pub cluster_scope: bool,
}

impl TemplateRef {
    pub fn kind(&self) -> &'static str {
        if self.cluster_scope {
            "ClusterAnalysisTemplate"
        } else {
            "AnalysisTemplate"
        }
    }
}

/// The templates found, by reference; a reference missing here was not found.
pub type ResolvedTemplates = BTreeMap<TemplateRef, AnalysisTemplateSpec>;

/// Every analysis of the spec with the path it is written at.
fn analyses(spec: &RolloutSpec) -> Vec<(String, &RolloutAnalysis)> {
    let mut out = Vec::new();
    if let Some(canary) = spec.canary() {
        for (index, step) in canary.steps.iter().enumerate() {
            if let Some(analysis) = &step.analysis {
                out.push((
                    format!("spec.strategy.canary.steps[{index}].analysis"),
                    analysis,
                ));
            }
        }
        if let Some(background) = &canary.analysis {
            out.push((
                "spec.strategy.canary.analysis".to_string(),
                &background.analysis,
            ));
        }
    }
    if let Some(blue_green) = spec.blue_green() {
        for (field, analysis) in [
            ("prePromotionAnalysis", &blue_green.pre_promotion_analysis),
            ("postPromotionAnalysis", &blue_green.post_promotion_analysis),
        ] {
            if let Some(analysis) = analysis {
                out.push((format!("spec.strategy.blueGreen.{field}"), analysis));
            }
        }
    }
    out
}

/// Every template reference of the spec with the path of its `templateName`.
pub fn references(spec: &RolloutSpec) -> Vec<(String, TemplateRef)> {
    let mut found: Vec<(String, TemplateRef)> = analyses(spec)
        .into_iter()
        .flat_map(|(path, analysis)| {
            analysis
                .templates
                .iter()
                .enumerate()
                .map(move |(index, template)| {
                    (
                        format!("{path}.templates[{index}].templateName"),
                        TemplateRef {
                            name: template.template_name.clone(),
                            cluster_scope: template.cluster_scope(),
                        },
                    )
                })
        })
        .collect();
    found.extend(experiment_references(spec));
    found
}

/// The templates the analyses of `experiment` steps name: the Experiment runs them, but a missing
/// one is the Rollout's `InvalidSpec` before anything moves, as for its own analyses.
fn experiment_references(spec: &RolloutSpec) -> Vec<(String, TemplateRef)> {
    let Some(canary) = spec.canary() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (index, step) in canary.steps.iter().enumerate() {
        let Some(experiment) = &step.experiment else {
            continue;
        };
        for (i, analysis) in experiment.analyses.iter().enumerate() {
            out.push((
                format!(
                    "spec.strategy.canary.steps[{index}].experiment.analyses[{i}].templateName"
                ),
                TemplateRef {
                    name: analysis.template_name.clone(),
                    cluster_scope: analysis.cluster_scope.unwrap_or(false),
                },
            ));
        }
    }
    out
}

/// Whether the spec names this template.
pub fn names(spec: &RolloutSpec, template: &TemplateRef) -> bool {
    references(spec).iter().any(|(_, r)| r == template)
}

/// The first problem with the templates the spec names: one not found, or one setting Argo fields
/// Sluice does not implement. Pure.
pub fn check(spec: &RolloutSpec, found: &ResolvedTemplates) -> Result<(), String> {
    for (path, reference) in references(spec) {
        let Some(template) = found.get(&reference) else {
            return Err(format!(
                "{path}: {} {:?} not found",
                reference.kind(),
                reference.name
            ));
        };
        if let Some(error) = &template.composition_error {
            return Err(format!(
                "{path}: {} {:?}: {error}",
                reference.kind(),
                reference.name
            ));
        }
        let unsupported = template.unsupported_fields();
        if !unsupported.is_empty() {
            return Err(format!(
                "{path}: {} {:?}: {}",
                reference.kind(),
                reference.name,
                unsupported::message(&unsupported)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(strategy: serde_json::Value) -> RolloutSpec {
        serde_json::from_value(json!({"strategy": strategy})).unwrap()
    }

    fn template(provider: serde_json::Value) -> AnalysisTemplateSpec {
        serde_json::from_value(json!({"metrics": [{"name": "m", "provider": provider}]})).unwrap()
    }

    fn named(name: &str, cluster_scope: bool) -> TemplateRef {
        TemplateRef {
            name: name.to_string(),
            cluster_scope,
        }
    }

    #[test]
    fn references_cover_steps_background_and_blue_green_analyses() {
        let canary = spec(json!({"canary": {
            "steps": [{"setWeight": 10}, {"analysis": {"templates": [{"templateName": "a"}, {"templateName": "c", "clusterScope": true}]}}],
            "analysis": {"templates": [{"templateName": "b"}]}}}));
        let refs: Vec<(String, TemplateRef)> = references(&canary);
        assert_eq!(
            refs,
            vec![
                (
                    "spec.strategy.canary.steps[1].analysis.templates[0].templateName".to_string(),
                    named("a", false)
                ),
                (
                    "spec.strategy.canary.steps[1].analysis.templates[1].templateName".to_string(),
                    named("c", true)
                ),
                (
                    "spec.strategy.canary.analysis.templates[0].templateName".to_string(),
                    named("b", false)
                ),
            ]
        );
        let blue_green = spec(json!({"blueGreen": {"activeService": "a",
            "prePromotionAnalysis": {"templates": [{"templateName": "pre"}]},
            "postPromotionAnalysis": {"templates": [{"templateName": "post"}]}}}));
        assert!(names(&blue_green, &named("post", false)));
        assert!(!names(&blue_green, &named("post", true)));
        assert_eq!(references(&blue_green).len(), 2);
    }

    #[test]
    fn a_missing_template_names_its_reference() {
        let s = spec(json!({"canary": {"steps": [
            {"analysis": {"templates": [{"templateName": "ok"}, {"templateName": "gone", "clusterScope": true}]}}]}}));
        let mut found = ResolvedTemplates::new();
        found.insert(
            named("ok", false),
            template(json!({"prometheus": {"query": "up"}})),
        );
        assert_eq!(
            check(&s, &found),
            Err(
                "spec.strategy.canary.steps[0].analysis.templates[1].templateName: \
                 ClusterAnalysisTemplate \"gone\" not found"
                    .to_string()
            )
        );
        found.insert(
            named("gone", true),
            template(json!({"prometheus": {"query": "up"}})),
        );
        assert_eq!(check(&s, &found), Ok(()));
    }

    #[test]
    fn an_experiment_step_naming_a_missing_template_is_invalid_spec() {
        let s = spec(
            json!({"canary": {"steps": [{"setWeight": 10}, {"experiment": {
            "templates": [{"name": "c", "specRef": "canary"}],
            "analyses": [{"name": "a", "templateName": "gone"}]}}]}}),
        );
        assert_eq!(
            check(&s, &ResolvedTemplates::new()),
            Err(
                "spec.strategy.canary.steps[1].experiment.analyses[0].templateName: \
                 AnalysisTemplate \"gone\" not found"
                    .to_string()
            )
        );
        assert!(names(&s, &named("gone", false)));
    }

    #[test]
    fn a_template_that_does_not_compose_is_refused_naming_why() {
        let spec = spec(json!({"canary": {"steps": [
            {"analysis": {"templates": [{"templateName": "all"}]}}]}}));
        let mut broken = template(json!({"prometheus": {"query": "up"}}));
        broken.composition_error = Some("spec.templates forms a cycle: a -> b -> a".into());
        let found = ResolvedTemplates::from([(named("all", false), broken)]);
        assert_eq!(
            check(&spec, &found).unwrap_err(),
            "spec.strategy.canary.steps[0].analysis.templates[0].templateName: AnalysisTemplate \"all\": spec.templates forms a cycle: a -> b -> a"
        );
    }

    #[test]
    fn a_template_with_an_unimplemented_provider_is_refused_naming_both() {
        let s = spec(json!({"blueGreen": {"activeService": "a",
            "prePromotionAnalysis": {"templates": [{"templateName": "dd"}]}}}));
        let mut found = ResolvedTemplates::new();
        found.insert(
            named("dd", false),
            template(json!({"datadog": {"query": "avg:x"}})),
        );
        let error = check(&s, &found).unwrap_err();
        assert_eq!(
            error,
            "spec.strategy.blueGreen.prePromotionAnalysis.templates[0].templateName: \
             AnalysisTemplate \"dd\": spec.metrics[0].provider.datadog is not supported by Sluice \
             (an Argo field it does not implement)"
        );
    }
}
