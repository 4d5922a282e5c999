//! Argo's `antiAffinity` (canary and blue-green): while a new revision rolls out, its pods keep off
//! the nodes of the stable revision's pods, so that a node failure cannot take both down and the
//! new pods do not crowd the nodes the stable ones need.
//!
//! As Argo, the rule is a pod anti-affinity term selecting the stable revision's pods by their
//! `rollouts-pod-template-hash` in the Rollout's namespace, over `kubernetes.io/hostname`, added to
//! the new ReplicaSet's pod template — as a preference with the spec's weight, or as a
//! requirement — next to whatever affinity the Rollout's template has. It is injected only while
//! there is a stable revision that is not the ReplicaSet's own. The stable one never gets it.
//!
//! The controller's ReplicaSet cache drops pod specs, so what was injected is recorded in a
//! ReplicaSet annotation ([`ANTI_AFFINITY_ANNOTATION`]); the planner compares that record with what
//! the ReplicaSet of the current template should carry and plans a change when they differ: when
//! the stable revision changes under a running update, when the spec's strategy changes, and when
//! the ReplicaSet becomes the stable one (the rule is taken off then; Argo leaves it, pointing at a
//! revision that is being scaled away). Pods already running keep the affinity they were born with.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, PodAffinityTerm, PodAntiAffinity, PodTemplateSpec, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::rollout::{POD_TEMPLATE_HASH_LABEL, RolloutSpec};
use crate::rollout::action::Action;
use crate::rollout::plan::Ctx;

/// The ReplicaSet annotation recording the anti-affinity injected into its pod template (JSON of
/// an [`InjectedAntiAffinity`]).
pub const ANTI_AFFINITY_ANNOTATION: &str = "rollout.sluice.dev/anti-affinity";

/// The node topology Argo's rule spreads over.
const TOPOLOGY_KEY: &str = "kubernetes.io/hostname";

/// The anti-affinity term a ReplicaSet's pod template carries against the stable revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InjectedAntiAffinity {
    /// The stable revision's pod template hash, whose pods are avoided.
    pub stable_hash: String,
    /// The preference's weight; `None` makes the term a requirement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
}

/// What the ReplicaSet of `hash` should carry: a term against `stable_hash` when the spec asks
/// for anti-affinity and the stable revision is another one.
pub fn wanted(
    spec: &RolloutSpec,
    stable_hash: Option<&str>,
    hash: &str,
) -> Option<InjectedAntiAffinity> {
    let strategy = spec
        .canary()
        .and_then(|c| c.anti_affinity.as_ref())
        .or_else(|| spec.blue_green().and_then(|b| b.anti_affinity.as_ref()))?;
    let stable_hash = stable_hash.filter(|stable| !stable.is_empty() && *stable != hash)?;
    // The spec was validated before planning: an invalid strategy never gets here.
    let weight = strategy.preferred_weight("antiAffinity").ok()?;
    Some(InjectedAntiAffinity {
        stable_hash: stable_hash.to_string(),
        weight,
    })
}

/// The record read back from a ReplicaSet's annotations; an unreadable one reads as none, so the
/// planner writes the wanted state again.
pub fn recorded(annotations: Option<&BTreeMap<String, String>>) -> Option<InjectedAntiAffinity> {
    annotations?
        .get(ANTI_AFFINITY_ANNOTATION)
        .and_then(|value| serde_json::from_str(value).ok())
}

/// The pod template's affinity with `injected` added to the template's own.
pub fn affinity_with(
    template_affinity: Option<&Affinity>,
    injected: Option<&InjectedAntiAffinity>,
    namespace: &str,
) -> Option<Affinity> {
    let Some(injected) = injected else {
        return template_affinity.cloned();
    };
    let mut affinity = template_affinity.cloned().unwrap_or_default();
    let anti = affinity
        .pod_anti_affinity
        .get_or_insert_with(PodAntiAffinity::default);
    let term = stable_pods_term(&injected.stable_hash, namespace);
    match injected.weight {
        Some(weight) => anti
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(WeightedPodAffinityTerm {
                weight,
                pod_affinity_term: term,
            }),
        None => anti
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(term),
    }
    Some(affinity)
}

/// A JSON merge patch value that makes a pod spec's `affinity` exactly `affinity`: merge patches
/// merge objects key by key, so every key the rule can touch is written, `null` when unset (lists
/// are replaced whole). The template's own node and pod affinity are the same on every revision of
/// it (they are part of the pod template hash), so writing them as they are is exact.
pub fn affinity_merge_patch(affinity: Option<&Affinity>) -> Result<Value, serde_json::Error> {
    let Some(affinity) = affinity else {
        return Ok(Value::Null);
    };
    let mut value = serde_json::to_value(affinity)?;
    for key in ["nodeAffinity", "podAffinity", "podAntiAffinity"] {
        value
            .as_object_mut()
            .map(|object| object.entry(key).or_insert(Value::Null));
    }
    if let Some(anti) = value
        .get_mut("podAntiAffinity")
        .and_then(Value::as_object_mut)
    {
        for key in [
            "preferredDuringSchedulingIgnoredDuringExecution",
            "requiredDuringSchedulingIgnoredDuringExecution",
        ] {
            anti.entry(key).or_insert(Value::Null);
        }
    }
    Ok(value)
}

/// `template` as the ReplicaSet runs it: its affinity with `injected` added.
pub fn inject(template: &mut PodTemplateSpec, injected: &InjectedAntiAffinity, namespace: &str) {
    if let Some(pod) = template.spec.as_mut() {
        pod.affinity = affinity_with(pod.affinity.as_ref(), Some(injected), namespace);
    }
}

/// The pods of the stable revision, on the same node.
fn stable_pods_term(stable_hash: &str, namespace: &str) -> PodAffinityTerm {
    PodAffinityTerm {
        label_selector: Some(LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: POD_TEMPLATE_HASH_LABEL.to_string(),
                operator: "In".to_string(),
                values: Some(vec![stable_hash.to_string()]),
            }]),
            match_labels: None,
        }),
        namespaces: Some(vec![namespace.to_string()]),
        topology_key: TOPOLOGY_KEY.to_string(),
        ..PodAffinityTerm::default()
    }
}

/// What the ReplicaSet the planner creates now carries.
pub(crate) fn for_new_replica_set(ctx: &Ctx<'_>) -> Option<InjectedAntiAffinity> {
    wanted(ctx.spec(), ctx.status.stable_rs.as_deref(), ctx.new_hash())
}

/// Brings the anti-affinity of the current template's ReplicaSet to what the planned status
/// wants (Argo updates that ReplicaSet only).
pub(crate) fn plan_anti_affinity(ctx: &mut Ctx<'_>) {
    let Some(rs) = ctx.obs.new_replica_set() else {
        return;
    };
    let wanted = wanted(
        ctx.spec(),
        ctx.status.stable_rs.as_deref(),
        &rs.pod_template_hash,
    );
    if rs.anti_affinity == wanted {
        return;
    }
    let action = Action::SetAntiAffinity {
        replica_set: rs.name.clone(),
        injected: wanted,
    };
    ctx.actions.push(action);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::rollout::{
        AntiAffinity, PreferredAntiAffinity, RequiredAntiAffinity, RolloutPhase,
    };
    use crate::rollout::simulate::{
        canary, canary_spec, creates, deployed, observed, pause, phase, settle, status, update,
        user_promotes, weight,
    };
    use k8s_openapi::api::core::v1::{NodeAffinity, NodeSelector};
    use serde_json::json;

    fn spec(strategy: serde_json::Value) -> RolloutSpec {
        serde_json::from_value(json!({
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "web", "image": "web:1"}]}},
            "strategy": strategy
        }))
        .unwrap()
    }

    fn preferred(weight: i32) -> AntiAffinity {
        AntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(PreferredAntiAffinity {
                weight,
            }),
            required_during_scheduling_ignored_during_execution: None,
        }
    }

    fn with_anti_affinity(
        mut rollout: crate::api::rollout::Rollout,
        weight: i32,
    ) -> crate::api::rollout::Rollout {
        canary_spec(&mut rollout).anti_affinity = Some(preferred(weight));
        rollout
    }

    fn injected(
        obs: &crate::rollout::observed::Observed,
        hash: &str,
    ) -> Option<InjectedAntiAffinity> {
        obs.replica_set(hash)
            .and_then(|rs| rs.anti_affinity.clone())
    }

    fn against(stable: &str, weight: i32) -> Option<InjectedAntiAffinity> {
        Some(InjectedAntiAffinity {
            stable_hash: stable.into(),
            weight: Some(weight),
        })
    }

    #[test]
    fn an_update_is_born_avoiding_the_stable_pods_and_loses_it_on_promotion() {
        let mut obs = deployed(with_anti_affinity(canary(4, vec![weight(25), pause()]), 50));
        assert_eq!(
            injected(&obs, "h1"),
            None,
            "the first revision has no stable"
        );
        update(&mut obs, "h2");
        let plans = settle(&mut obs);
        assert_eq!(phase(&obs), RolloutPhase::Paused);
        let born_with: Vec<_> = creates(&plans)
            .into_iter()
            .filter_map(|a| match a {
                Action::CreateReplicaSet { anti_affinity, .. } => Some(anti_affinity.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(born_with, vec![against("h1", 50)]);
        assert_eq!(injected(&obs, "h1"), None, "the stable never avoids itself");

        // A newer update while h2 rolls out: h1 is still the stable revision.
        update(&mut obs, "h3");
        settle(&mut obs);
        assert_eq!(injected(&obs, "h3"), against("h1", 50));

        // The spec's weight changes: the running ReplicaSet follows.
        canary_spec(&mut obs.rollout).anti_affinity = Some(preferred(80));
        let plans = settle(&mut obs);
        let sets: Vec<_> = plans
            .iter()
            .flat_map(|p| &p.actions)
            .filter(|a| matches!(a, Action::SetAntiAffinity { .. }))
            .collect();
        assert_eq!(sets.len(), 1, "{sets:?}");
        assert_eq!(injected(&obs, "h3"), against("h1", 80));

        user_promotes(&mut obs);
        settle(&mut obs);
        assert_eq!(phase(&obs), RolloutPhase::Healthy);
        assert_eq!(status(&obs).stable_rs.as_deref(), Some("h3"));
        assert_eq!(injected(&obs, "h3"), None, "the new stable avoids nothing");
    }

    #[test]
    fn removing_the_strategy_takes_the_rule_off_the_running_revision() {
        let mut obs = deployed(with_anti_affinity(canary(2, vec![weight(50), pause()]), 10));
        update(&mut obs, "h2");
        settle(&mut obs);
        assert_eq!(injected(&obs, "h2"), against("h1", 10));
        canary_spec(&mut obs.rollout).anti_affinity = None;
        settle(&mut obs);
        assert_eq!(injected(&obs, "h2"), None);
        assert_eq!(phase(&obs), RolloutPhase::Paused);
    }

    #[test]
    fn an_invalid_strategy_is_invalid_spec_and_creates_nothing() {
        let mut rollout = canary(2, vec![weight(50)]);
        canary_spec(&mut rollout).anti_affinity = Some(preferred(0));
        let obs = observed(rollout);
        let plan = crate::rollout::plan::plan(&obs);
        assert!(
            plan.changes()
                .all(|a| !matches!(a, Action::CreateReplicaSet { .. }))
        );
        let invalid = plan
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "InvalidSpec")
            .and_then(|c| c.message.clone())
            .unwrap_or_default();
        assert!(
            invalid.contains("spec.strategy.canary.antiAffinity is invalid: AntiAffinity weight must be between 1-100"),
            "{invalid}"
        );
    }

    #[test]
    fn only_a_revision_other_than_the_stable_one_avoids_the_stable_pods() {
        let canary = spec(json!({"canary": {"antiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": {"weight": 40}}}}));
        assert_eq!(
            wanted(&canary, Some("stable1"), "new1"),
            Some(InjectedAntiAffinity {
                stable_hash: "stable1".into(),
                weight: Some(40)
            })
        );
        assert_eq!(wanted(&canary, Some("new1"), "new1"), None, "the stable");
        assert_eq!(wanted(&canary, None, "new1"), None, "first revision");
        assert_eq!(wanted(&canary, Some(""), "new1"), None);

        let blue_green = spec(json!({"blueGreen": {"activeService": "web",
            "antiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}}}));
        assert_eq!(
            wanted(&blue_green, Some("active1"), "preview1"),
            Some(InjectedAntiAffinity {
                stable_hash: "active1".into(),
                weight: None
            })
        );
        let without = spec(json!({"canary": {}}));
        assert_eq!(wanted(&without, Some("stable1"), "new1"), None);
    }

    #[test]
    fn the_term_is_argos_next_to_the_templates_own_affinity() {
        let own = Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector::default()),
                ..NodeAffinity::default()
            }),
            ..Affinity::default()
        };
        let injected = InjectedAntiAffinity {
            stable_hash: "abc".into(),
            weight: Some(100),
        };
        let affinity = affinity_with(Some(&own), Some(&injected), "team").unwrap();
        assert_eq!(affinity.node_affinity, own.node_affinity);
        assert_eq!(
            serde_json::to_value(&affinity.pod_anti_affinity).unwrap(),
            json!({"preferredDuringSchedulingIgnoredDuringExecution": [{
                "weight": 100,
                "podAffinityTerm": {
                    "labelSelector": {"matchExpressions": [{
                        "key": "rollouts-pod-template-hash", "operator": "In", "values": ["abc"]}]},
                    "namespaces": ["team"],
                    "topologyKey": "kubernetes.io/hostname"
                }
            }]})
        );

        let required = InjectedAntiAffinity {
            stable_hash: "abc".into(),
            weight: None,
        };
        let affinity = affinity_with(None, Some(&required), "team").unwrap();
        let anti = affinity.pod_anti_affinity.unwrap();
        assert_eq!(
            anti.preferred_during_scheduling_ignored_during_execution,
            None
        );
        assert_eq!(
            anti.required_during_scheduling_ignored_during_execution
                .unwrap()
                .len(),
            1
        );
        assert_eq!(affinity_with(Some(&own), None, "team"), Some(own));
        assert_eq!(affinity_with(None, None, "team"), None);
    }

    #[test]
    fn the_merge_patch_names_every_key_the_rule_can_touch() {
        let injected = InjectedAntiAffinity {
            stable_hash: "abc".into(),
            weight: None,
        };
        let affinity = affinity_with(None, Some(&injected), "team");
        let patch = affinity_merge_patch(affinity.as_ref()).unwrap();
        assert_eq!(patch["nodeAffinity"], Value::Null);
        assert_eq!(patch["podAffinity"], Value::Null);
        let anti = &patch["podAntiAffinity"];
        assert_eq!(
            anti["preferredDuringSchedulingIgnoredDuringExecution"],
            Value::Null
        );
        assert_eq!(
            anti["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"],
            "kubernetes.io/hostname"
        );
        assert_eq!(affinity_merge_patch(None).unwrap(), Value::Null);
    }

    #[test]
    fn the_record_round_trips_and_a_bad_one_reads_as_none() {
        let injected = InjectedAntiAffinity {
            stable_hash: "abc".into(),
            weight: Some(5),
        };
        let annotations = BTreeMap::from([(
            ANTI_AFFINITY_ANNOTATION.to_string(),
            serde_json::to_string(&injected).unwrap(),
        )]);
        assert_eq!(recorded(Some(&annotations)), Some(injected));
        let bad = BTreeMap::from([(ANTI_AFFINITY_ANNOTATION.to_string(), "{".to_string())]);
        assert_eq!(recorded(Some(&bad)), None);
        assert_eq!(recorded(None), None);
    }

    #[test]
    fn a_strategy_needs_exactly_one_kind_and_a_weight_of_1_to_100() {
        let field = "spec.strategy.canary.antiAffinity";
        assert_eq!(preferred(1).preferred_weight(field).unwrap(), Some(1));
        assert_eq!(preferred(100).preferred_weight(field).unwrap(), Some(100));
        for weight in [0, 101, -3] {
            let error = preferred(weight).preferred_weight(field).unwrap_err();
            assert_eq!(
                error.to_string(),
                "spec.strategy.canary.antiAffinity is invalid: AntiAffinity weight must be between 1-100"
            );
        }
        let both = AntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(RequiredAntiAffinity {}),
            ..preferred(10)
        };
        let none = AntiAffinity::default();
        for strategy in [both, none] {
            assert_eq!(
                strategy.preferred_weight(field).unwrap_err().to_string(),
                "spec.strategy.canary.antiAffinity is invalid: AntiAffinity must have exactly one strategy listed"
            );
        }
    }
}
