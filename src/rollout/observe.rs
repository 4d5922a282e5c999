//! The observe step: turns the Rollout and the objects read from the watch caches into the plain
//! [`Observed`] snapshot the planner takes. Pure, so the mapping is tested without a cluster.

pub use crate::api::keys::{ANALYSIS_TYPE_LABEL, ROLLOUT_LABEL, STEP_INDEX_LABEL};
use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::ResourceExt;

use crate::api::analysis::{AnalysisPhase, AnalysisRun};
use crate::api::experiment::Experiment;
use crate::api::rollout::{POD_TEMPLATE_HASH_LABEL, Rollout};
use crate::rollout::anti_affinity;
use crate::rollout::observed::{
    AnalysisType, Observed, ObservedAnalysisRun, ObservedExperiment, ObservedPod,
    ObservedReplicaSet, ObservedService, ObservedWorkload,
};
use crate::rollout::pod_metadata::{recorded, selector_keys};
use crate::rollout::replicasets::{
    is_owned_by, replica_counts, replica_set_hash, replica_set_revision, scale_down_deadline,
};
use crate::rollout::templates::ResolvedTemplates;

/// What one reconcile read from the cluster, before it is turned into an [`Observed`].
pub struct Reads<'a> {
    pub replica_sets: &'a [ReplicaSet],
    pub services: &'a [Service],
    pub analysis_runs: &'a [AnalysisRun],
    /// Pods; each is given to the owned ReplicaSet that controls it (ownerReference uid).
    pub pods: &'a [Pod],
    /// The Deployment `spec.workloadRef` names, when set and found.
    pub workload: Option<&'a Deployment>,
    /// The templates the spec names that were found.
    pub templates: &'a ResolvedTemplates,
    /// Experiments; those the Rollout controls are kept.
    pub experiments: &'a [Experiment],
}

/// Builds the snapshot for one reconcile. Objects not owned by `rollout` are ignored, so callers may
/// pass everything in the namespace.
pub fn observe(
    rollout: &Rollout,
    new_template_hash: String,
    reads: &Reads<'_>,
    now: Timestamp,
) -> Observed {
    let Reads {
        replica_sets,
        services,
        analysis_runs,
        pods,
        workload,
        templates,
        experiments,
    } = reads;
    Observed {
        rollout: rollout.clone(),
        replica_sets: replica_sets
            .iter()
            .filter(|rs| is_owned_by(rs, rollout) && rs.metadata.deletion_timestamp.is_none())
            .filter_map(|rs| observe_replica_set(rs, pods))
            .collect(),
        new_template_hash,
        services: services
            .iter()
            .map(|svc| (svc.name_any(), observe_service(svc)))
            .collect::<BTreeMap<_, _>>(),
        analysis_runs: analysis_runs
            .iter()
            .filter(|run| is_controlled_by(run, rollout))
            .filter_map(observe_analysis_run)
            .collect(),
        workload: workload.map(|d| ObservedWorkload {
            name: d.name_any(),
            spec_replicas: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        }),
        experiments: experiments
            .iter()
            .filter(|e| controls(*e, rollout))
            .map(observe_experiment)
            .collect(),
        templates: (*templates).clone(),
        now,
    }
}

fn observe_experiment(experiment: &Experiment) -> ObservedExperiment {
    let labels = experiment.labels();
    let status = experiment.status.as_ref();
    ObservedExperiment {
        name: experiment.name_any(),
        step_index: labels.get(STEP_INDEX_LABEL).and_then(|i| i.parse().ok()),
        pod_template_hash: labels
            .get(POD_TEMPLATE_HASH_LABEL)
            .cloned()
            .unwrap_or_default(),
        phase: status.and_then(|s| s.phase),
        message: status.and_then(|s| s.message.clone()),
        terminating: experiment.spec.terminate(),
    }
}

/// The Service names the strategy refers to (stable/canary or active/preview).
pub fn referenced_services(rollout: &Rollout) -> Vec<String> {
    let mut names = Vec::new();
    if let Some(canary) = rollout.spec.canary() {
        names.extend(canary.stable_service.clone());
        names.extend(canary.canary_service.clone());
    }
    if let Some(blue_green) = rollout.spec.blue_green() {
        names.push(blue_green.active_service.clone());
        names.extend(blue_green.preview_service.clone());
    }
    names.retain(|n| !n.is_empty());
    names
}

fn observe_replica_set(rs: &ReplicaSet, pods: &[Pod]) -> Option<ObservedReplicaSet> {
    let hash = replica_set_hash(rs)?.to_string();
    let uid = rs.metadata.uid.as_deref();
    let mut owned: Vec<ObservedPod> = pods
        .iter()
        .filter(|pod| uid.is_some() && controller_uid(pod) == uid)
        .map(observe_pod)
        .collect();
    owned.sort_by(|a, b| a.name.cmp(&b.name));
    let counts = replica_counts(rs);
    let spec = rs.spec.as_ref();
    let template_meta = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref());
    Some(ObservedReplicaSet {
        name: rs.name_any(),
        pod_template_hash: hash,
        revision: replica_set_revision(rs).unwrap_or(0),
        spec_replicas: counts.desired,
        replicas: counts.current,
        ready_replicas: counts.ready,
        available_replicas: counts.available,
        created: rs
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(Timestamp::UNIX_EPOCH, |t| t.0),
        // A malformed deadline is treated as none: the planner then sets a fresh one.
        scale_down_deadline: scale_down_deadline(rs).ok().flatten(),
        pods: owned,
        template_labels: template_meta
            .and_then(|m| m.labels.clone())
            .unwrap_or_default(),
        template_annotations: template_meta
            .and_then(|m| m.annotations.clone())
            .unwrap_or_default(),
        ephemeral_metadata: recorded(rs),
        selector_keys: spec.map(|s| selector_keys(&s.selector)).unwrap_or_default(),
        anti_affinity: anti_affinity::recorded(rs.metadata.annotations.as_ref()),
    })
}

/// The uid of the object controlling `pod` (its ReplicaSet).
fn controller_uid(pod: &Pod) -> Option<&str> {
    pod.metadata
        .owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.as_str())
}

fn observe_pod(pod: &Pod) -> ObservedPod {
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        });
    ObservedPod {
        name: pod.name_any(),
        created: pod
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(Timestamp::UNIX_EPOCH, |t| t.0),
        ready,
        deleting: pod.metadata.deletion_timestamp.is_some(),
        labels: pod.labels().clone(),
        annotations: pod.annotations().clone(),
    }
}

fn observe_service(svc: &Service) -> ObservedService {
    ObservedService {
        selector_hash: svc
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .and_then(|s| s.get(POD_TEMPLATE_HASH_LABEL))
            .cloned(),
    }
}

/// Whether `rollout` is the controller owner of `run`.
pub fn is_controlled_by(run: &AnalysisRun, rollout: &Rollout) -> bool {
    controls(run, rollout)
}

/// Whether `owner` is the controller owner of `object`.
pub fn controls(object: &impl ResourceExt, owner: &impl ResourceExt) -> bool {
    let Some(uid) = owner.meta().uid.as_deref() else {
        return false;
    };
    object
        .owner_references()
        .iter()
        .any(|o| o.uid == uid && o.controller == Some(true))
}

fn observe_analysis_run(run: &AnalysisRun) -> Option<ObservedAnalysisRun> {
    let labels = run.labels();
    let analysis_type = match labels.get(ANALYSIS_TYPE_LABEL).map(String::as_str) {
        Some("step") => AnalysisType::Step,
        Some("background") => AnalysisType::Background,
        Some("prePromotion") => AnalysisType::PrePromotion,
        Some("postPromotion") => AnalysisType::PostPromotion,
        _ => return None,
    };
    let status = run.status.as_ref();
    Some(ObservedAnalysisRun {
        name: run.name_any(),
        analysis_type,
        step_index: labels.get(STEP_INDEX_LABEL).and_then(|i| i.parse().ok()),
        pod_template_hash: labels
            .get(POD_TEMPLATE_HASH_LABEL)
            .cloned()
            .unwrap_or_default(),
        phase: status
            .and_then(|s| s.phase)
            .unwrap_or(AnalysisPhase::Pending),
        message: status.and_then(|s| s.message.clone()),
        created: run.metadata.creation_timestamp.as_ref().map(|t| t.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rollout() -> Rollout {
        serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "web", "namespace": "shop", "uid": "uid-1", "generation": 3},
            "spec": {
                "replicas": 4,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"containers": [{"name": "web", "image": "web:1"}]}},
                "strategy": {"canary": {"stableService": "web-stable", "canaryService": "web-canary"}}
            }
        }))
        .unwrap()
    }

    fn reads<'a>(
        replica_sets: &'a [ReplicaSet],
        services: &'a [Service],
        analysis_runs: &'a [AnalysisRun],
    ) -> Reads<'a> {
        Reads {
            replica_sets,
            services,
            analysis_runs,
            pods: &[],
            workload: None,
            templates: &NO_TEMPLATES,
            experiments: &[],
        }
    }

    static NO_TEMPLATES: ResolvedTemplates = ResolvedTemplates::new();

    fn owner(uid: &str) -> serde_json::Value {
        json!([{"apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "name": "web",
                "uid": uid, "controller": true}])
    }

    fn replica_set(name: &str, hash: &str, uid: &str) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {
                "name": name, "namespace": "shop",
                "labels": {POD_TEMPLATE_HASH_LABEL: hash},
                "annotations": {"rollout.sluice.dev/revision": "2",
                                "rollout.sluice.dev/scale-down-deadline": "2030-01-01T00:00:30Z"},
                "ownerReferences": owner(uid),
                "creationTimestamp": "2030-01-01T00:00:00Z"
            },
            "spec": {"replicas": 3, "selector": {"matchLabels": {POD_TEMPLATE_HASH_LABEL: hash}}},
            "status": {"replicas": 3, "readyReplicas": 2, "availableReplicas": 1}
        }))
        .unwrap()
    }

    #[test]
    fn keeps_only_owned_replica_sets_and_reads_their_counts_and_deadline() {
        let sets = [
            replica_set("web-abc", "abc", "uid-1"),
            replica_set("other-def", "def", "uid-2"),
        ];
        let observed = observe(
            &rollout(),
            "abc".into(),
            &reads(&sets, &[], &[]),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(observed.replica_sets.len(), 1);
        let rs = &observed.replica_sets[0];
        assert_eq!(rs.name, "web-abc");
        assert_eq!(rs.pod_template_hash, "abc");
        assert_eq!(rs.revision, 2);
        assert_eq!(
            (
                rs.spec_replicas,
                rs.replicas,
                rs.ready_replicas,
                rs.available_replicas
            ),
            (3, 3, 2, 1)
        );
        assert_eq!(
            rs.scale_down_deadline,
            Some("2030-01-01T00:00:30Z".parse().unwrap())
        );
        assert_eq!(rs.created, "2030-01-01T00:00:00Z".parse().unwrap());
    }

    #[test]
    fn replica_sets_carry_their_template_metadata_record_selector_and_pod_labels() {
        let mut rs = replica_set("web-abc", "abc", "uid-1");
        rs.metadata.uid = Some("rs-uid".into());
        rs.metadata.annotations.get_or_insert_default().insert(
            "rollout.sluice.dev/ephemeral-metadata".into(),
            r#"{"labels":{"role":"canary"}}"#.into(),
        );
        let spec = rs.spec.as_mut().unwrap();
        spec.selector
            .match_labels
            .get_or_insert_default()
            .insert("app".into(), "web".into());
        spec.template = serde_json::from_value(json!({"metadata": {
            "labels": {"app": "web", POD_TEMPLATE_HASH_LABEL: "abc", "role": "canary"},
            "annotations": {"example.com/phase": "canary"}}}))
        .ok();
        let pod: Pod = serde_json::from_value(json!({"metadata": {
            "name": "web-abc-1", "namespace": "shop",
            "labels": {"app": "web", "role": "canary"},
            "annotations": {"example.com/phase": "canary"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc",
                                 "uid": "rs-uid", "controller": true}]}}))
        .unwrap();
        let sets = [rs];
        let pods = [pod];
        let mut r = reads(&sets, &[], &[]);
        r.pods = &pods;
        let observed = observe(&rollout(), "abc".into(), &r, Timestamp::UNIX_EPOCH);
        let rs = &observed.replica_sets[0];
        assert_eq!(rs.template_labels["role"], "canary");
        assert_eq!(rs.template_annotations["example.com/phase"], "canary");
        assert_eq!(
            rs.ephemeral_metadata
                .as_ref()
                .map(|m| m.labels["role"].clone()),
            Some("canary".to_string())
        );
        assert_eq!(
            rs.selector_keys,
            ["app".to_string(), POD_TEMPLATE_HASH_LABEL.to_string()].into()
        );
        assert_eq!(rs.pods.len(), 1);
        assert_eq!(rs.pods[0].labels["role"], "canary");
        assert_eq!(rs.pods[0].annotations["example.com/phase"], "canary");
    }

    #[test]
    fn services_map_to_their_hash_selector() {
        let services: Vec<Service> = vec![
            serde_json::from_value(json!({"metadata": {"name": "web-stable"},
                "spec": {"selector": {"app": "web", POD_TEMPLATE_HASH_LABEL: "abc"}}}))
            .unwrap(),
            serde_json::from_value(json!({"metadata": {"name": "web-canary"},
                "spec": {"selector": {"app": "web"}}}))
            .unwrap(),
        ];
        let observed = observe(
            &rollout(),
            "abc".into(),
            &reads(&[], &services, &[]),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(observed.service_hash("web-stable"), Some("abc"));
        assert_eq!(observed.service_hash("web-canary"), None);
        assert_eq!(observed.service_hash("missing"), None);
    }

    #[test]
    fn analysis_runs_are_read_from_their_labels_and_status() {
        let run: AnalysisRun = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisRun",
            "metadata": {"name": "web-abc-2-1", "namespace": "shop", "ownerReferences": owner("uid-1"),
                "labels": {ANALYSIS_TYPE_LABEL: "step", STEP_INDEX_LABEL: "1",
                           POD_TEMPLATE_HASH_LABEL: "abc", ROLLOUT_LABEL: "web"}},
            "spec": {"metrics": []},
            "status": {"phase": "Failed", "message": "metric error-rate: 0.3 >= 0.05"}
        }))
        .unwrap();
        let mut foreign = run.clone();
        foreign.metadata.owner_references = serde_json::from_value(owner("uid-9")).ok();
        let runs = [run, foreign];
        let observed = observe(
            &rollout(),
            "abc".into(),
            &reads(&[], &[], &runs),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(
            observed.analysis_runs,
            vec![ObservedAnalysisRun {
                name: "web-abc-2-1".into(),
                analysis_type: AnalysisType::Step,
                step_index: Some(1),
                pod_template_hash: "abc".into(),
                phase: AnalysisPhase::Failed,
                message: Some("metric error-rate: 0.3 >= 0.05".into()),
                created: None,
            }]
        );
    }

    #[test]
    fn referenced_services_of_each_strategy() {
        assert_eq!(
            referenced_services(&rollout()),
            vec!["web-stable", "web-canary"]
        );
        let mut blue_green = rollout();
        blue_green.spec.strategy = serde_json::from_value(
            json!({"blueGreen": {"activeService": "web-active", "previewService": "web-preview"}}),
        )
        .unwrap();
        assert_eq!(
            referenced_services(&blue_green),
            vec!["web-active", "web-preview"]
        );
    }
}
