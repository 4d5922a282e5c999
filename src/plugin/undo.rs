//! `undo`: the pod template of an earlier revision, taken from its ReplicaSet as Argo does (pure).

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::PodTemplateSpec;

use crate::api::rollout::{POD_TEMPLATE_HASH_LABEL, Rollout};
use crate::plugin::error::PluginError;
use crate::rollout::replicasets::{is_owned_by, replica_set_hash, replica_set_revision};

/// The revision `undo` goes back to, and the template to put in `spec.template`.
#[derive(Clone, Debug, PartialEq)]
pub struct UndoTarget {
    pub revision: i64,
    pub template: PodTemplateSpec,
}

/// The template of revision `to_revision`, or of the revision before the current one when `None`.
/// The ReplicaSet's hash label is removed: the Rollout's template never carries it.
pub fn undo_target(
    rollout: &Rollout,
    replica_sets: &[ReplicaSet],
    to_revision: Option<i64>,
) -> Result<UndoTarget, PluginError> {
    let name = rollout.metadata.name.clone().unwrap_or_default();
    if rollout.spec.workload_ref.is_some() {
        return Err(PluginError::Unsupported(format!(
            "Rollout {name:?} uses spec.workloadRef; undo the change on the referenced workload instead"
        )));
    }
    let mut owned: Vec<(i64, &ReplicaSet)> = replica_sets
        .iter()
        .filter(|rs| is_owned_by(rs, rollout))
        .filter_map(|rs| Some((replica_set_revision(rs)?, rs)))
        .collect();
    owned.sort_by_key(|(revision, _)| std::cmp::Reverse(*revision));
    let current_hash = rollout
        .status
        .as_ref()
        .and_then(|s| s.current_pod_hash.as_deref());
    let current = owned
        .iter()
        .find(|(_, rs)| current_hash.is_some() && replica_set_hash(rs) == current_hash)
        .or(owned.first())
        .map(|(revision, _)| *revision);
    let chosen = match to_revision {
        Some(wanted) => owned.iter().find(|(revision, _)| *revision == wanted),
        None => owned
            .iter()
            .find(|(revision, _)| current.is_some_and(|c| *revision < c)),
    };
    let Some((revision, rs)) = chosen else {
        let known: Vec<String> = owned.iter().map(|(r, _)| r.to_string()).collect();
        let what = match to_revision {
            Some(wanted) => format!("revision {wanted} not found"),
            None => "no revision before the current one".to_string(),
        };
        return Err(PluginError::Invalid(format!(
            "cannot undo Rollout {name:?}: {what} (revisions: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )));
    };
    if Some(*revision) == current {
        return Err(PluginError::Invalid(format!(
            "Rollout {name:?} already runs revision {revision}"
        )));
    }
    let mut template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .ok_or_else(|| {
            PluginError::Invalid(format!(
                "ReplicaSet {:?} of revision {revision} has no pod template",
                rs.metadata.name.clone().unwrap_or_default()
            ))
        })?;
    if let Some(meta) = template.metadata.as_mut()
        && let Some(labels) = meta.labels.as_mut()
    {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    Ok(UndoTarget {
        revision: *revision,
        template,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rollout(current_hash: &str) -> Rollout {
        serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "web", "uid": "u1"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "web:3"}]}},
                     "strategy": {"canary": {}}},
            "status": {"currentPodHash": current_hash}
        }))
        .unwrap()
    }

    fn rs(hash: &str, revision: i64, image: &str, owner: &str) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": format!("web-{hash}"),
                         "labels": {"app": "web", "rollouts-pod-template-hash": hash},
                         "annotations": {"rollout.sluice.dev/revision": revision.to_string()},
                         "ownerReferences": [{"apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
                                              "name": "web", "uid": owner, "controller": true}]},
            "spec": {"selector": {"matchLabels": {"app": "web", "rollouts-pod-template-hash": hash}},
                     "template": {"metadata": {"labels": {"app": "web", "rollouts-pod-template-hash": hash}},
                                  "spec": {"containers": [{"name": "web", "image": image}]}}}
        }))
        .unwrap()
    }

    fn image(target: &UndoTarget) -> String {
        target.template.spec.as_ref().unwrap().containers[0]
            .image
            .clone()
            .unwrap()
    }

    fn sets() -> Vec<ReplicaSet> {
        vec![
            rs("aaa", 1, "web:1", "u1"),
            rs("ccc", 3, "web:3", "u1"),
            rs("bbb", 2, "web:2", "u1"),
            rs("zzz", 9, "other:9", "someone-else"),
        ]
    }

    #[test]
    fn default_is_the_revision_before_the_current_one_without_the_hash_label() {
        let target = undo_target(&rollout("ccc"), &sets(), None).unwrap();
        assert_eq!(target.revision, 2);
        assert_eq!(image(&target), "web:2");
        let labels = target.template.metadata.unwrap().labels.unwrap();
        assert_eq!(labels.get("app").map(String::as_str), Some("web"));
        assert!(!labels.contains_key(POD_TEMPLATE_HASH_LABEL));
    }

    #[test]
    fn to_revision_picks_that_revision() {
        let target = undo_target(&rollout("ccc"), &sets(), Some(1)).unwrap();
        assert_eq!((target.revision, image(&target)), (1, "web:1".to_string()));
    }

    #[test]
    fn unknown_current_or_missing_revisions_are_clear_errors() {
        let err = undo_target(&rollout("ccc"), &sets(), Some(7)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot undo Rollout \"web\": revision 7 not found (revisions: 3, 2, 1)"
        );
        let err = undo_target(&rollout("ccc"), &sets(), Some(3)).unwrap_err();
        assert_eq!(err.to_string(), "Rollout \"web\" already runs revision 3");
        let err = undo_target(&rollout("aaa"), &sets(), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot undo Rollout \"web\": no revision before the current one (revisions: 3, 2, 1)"
        );
    }
}
