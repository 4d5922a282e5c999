//! Argo's `antiAffinity` end to end: a real `sluice controller` injects the rule against the stable
//! revision's pods into the new ReplicaSet, the real kube-scheduler honours it, and promotion takes
//! it off again.

mod common;

use common::rollouts::{
    Harness, TIMEOUT, current_hash, observed_current, phase, rollout_manifest, step,
};
use common::wait_for;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};
use sluice::api::rollout::RolloutPhase;

/// The pod anti-affinity of the ReplicaSet of `hash`, as JSON (`null` when it has none).
async fn anti_affinity(h: &Harness, hash: &str) -> Value {
    let rs: ReplicaSet = h
        .replica_sets()
        .get(&format!("web-{hash}"))
        .await
        .expect("get the ReplicaSet");
    let affinity = rs
        .spec
        .and_then(|s| s.template)
        .and_then(|t| t.spec)
        .and_then(|s| s.affinity);
    serde_json::to_value(affinity.and_then(|a| a.pod_anti_affinity)).expect("json")
}

/// Argo's injected term against the pods of `stable` in `namespace`.
fn term(stable: &str, namespace: &str) -> Value {
    json!({
        "labelSelector": {"matchExpressions": [{
            "key": "rollouts-pod-template-hash", "operator": "In", "values": [stable]}]},
        "namespaces": [namespace],
        "topologyKey": "kubernetes.io/hostname"
    })
}

/// Deploys 2 pods with `anti_affinity`, updates the image and waits for the Rollout to start the
/// update; returns (stable hash, canary hash).
async fn updated_canary(h: &Harness, anti_affinity: Value) -> (String, String) {
    let strategy = json!({"canary": {
        "antiAffinity": anti_affinity,
        "steps": [{"setWeight": 50}, {"pause": {}}]
    }});
    h.create(&h.rollouts(), rollout_manifest(2, strategy)).await;
    let first = h
        .wait_rollout("first deploy Healthy", |r| {
            observed_current(r) && phase(r) == Some(RolloutPhase::Healthy)
        })
        .await;
    let stable = current_hash(&first);
    h.set_image("example/web:2.0").await;
    let updating = h
        .wait_rollout("the update started", |r| {
            observed_current(r) && current_hash(r) != stable
        })
        .await;
    (stable, current_hash(&updating))
}

#[tokio::test]
async fn a_preferred_rule_is_injected_into_the_canary_and_taken_off_on_promotion() {
    let h = Harness::start("ro-affinity").await;
    let (stable, canary) = updated_canary(
        &h,
        json!({"preferredDuringSchedulingIgnoredDuringExecution": {"weight": 60}}),
    )
    .await;
    // A preference: the canary's pod still runs on the only node, and the step is reached.
    h.wait_rollout("paused at step 1", |r| {
        phase(r) == Some(RolloutPhase::Paused) && step(r) == Some(1)
    })
    .await;
    assert_eq!(anti_affinity(&h, &stable).await, Value::Null);
    assert_eq!(
        anti_affinity(&h, &canary).await,
        json!({"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 60, "podAffinityTerm": term(&stable, &h.ns.name)}
        ]})
    );
    assert!(h.replicas_by_hash().await.contains(&(canary.clone(), 1, 1)));

    h.promote().await;
    h.wait_rollout("promoted", |r| {
        observed_current(r)
            && phase(r) == Some(RolloutPhase::Healthy)
            && r.status.as_ref().and_then(|s| s.stable_rs.as_deref()) == Some(canary.as_str())
    })
    .await;
    wait_for("the rule taken off the new stable", TIMEOUT, || async {
        (anti_affinity(&h, &canary).await == Value::Null).then_some(())
    })
    .await;
    h.ns.delete().await;
}

#[tokio::test]
async fn a_required_rule_keeps_the_canary_off_the_node_of_the_stable_pods() {
    let h = Harness::start("ro-affinity-req").await;
    let nodes: Api<Node> = Api::all(h.client.clone());
    let nodes = nodes.list(&ListParams::default()).await.expect("nodes");
    assert_eq!(
        nodes.items.len(),
        1,
        "the local cluster has one KWOK node, where the stable pods run"
    );
    let (stable, canary) = updated_canary(
        &h,
        json!({"requiredDuringSchedulingIgnoredDuringExecution": {}}),
    )
    .await;
    assert_eq!(
        anti_affinity(&h, &canary).await,
        json!({"requiredDuringSchedulingIgnoredDuringExecution": [term(&stable, &h.ns.name)]})
    );
    let pods: Api<Pod> = Api::namespaced(h.client.clone(), &h.ns.name);
    let selector = format!("rollouts-pod-template-hash={canary}");
    wait_for(
        "the scheduler to refuse the canary pod the stable pods' node",
        TIMEOUT,
        || async {
            let list = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .ok()?;
            let pod = list.items.first()?;
            let unschedulable =
                pod.status.as_ref()?.conditions.as_ref()?.iter().any(|c| {
                    c.type_ == "PodScheduled" && c.reason.as_deref() == Some("Unschedulable")
                });
            let unbound = pod.spec.as_ref().is_some_and(|s| s.node_name.is_none());
            (unschedulable && unbound).then_some(())
        },
    )
    .await;
    // The step waits for a canary pod that cannot run.
    let rollout = h.rollouts().get("web").await.expect("get the Rollout");
    assert_eq!(phase(&rollout), Some(RolloutPhase::Progressing));
    h.ns.delete().await;
}
