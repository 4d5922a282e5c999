//! `replicaProgressThreshold` end to end: a ResourceQuota lets the canary have only one of the two
//! pods its step wants; with a threshold of one pod the real `sluice controller` still moves the
//! HTTPRoute's weight and reaches the pause, as Argo does.

mod common;

use common::rollouts::{Harness, observed_current, phase, rollout_manifest, route_strategy, step};
use serde_json::json;
use sluice::api::rollout::RolloutPhase;

#[tokio::test]
async fn a_canary_short_of_pods_goes_on_once_the_threshold_is_met() {
    let h = Harness::start("ro-threshold").await;
    h.create_services_and_route().await;
    let mut strategy = route_strategy(json!([{"setWeight": 50}, {"pause": {}}]));
    strategy["canary"]["replicaProgressThreshold"] = json!({"type": "Pods", "value": 1});
    h.create(&h.rollouts(), rollout_manifest(4, strategy)).await;
    h.wait_rollout("first deploy Healthy", |r| {
        observed_current(r) && phase(r) == Some(RolloutPhase::Healthy)
    })
    .await;
    // Room for one canary pod besides the four stable ones: the step wants two.
    let quotas: kube::Api<k8s_openapi::api::core::v1::ResourceQuota> =
        kube::Api::namespaced(h.client.clone(), &h.ns.name);
    h.create(
        &quotas,
        json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "pods"},
               "spec": {"hard": {"pods": "5"}}}),
    )
    .await;
    h.set_image("example/web:2.0").await;
    h.wait_rollout("paused at step 1 with one of two canary pods", |r| {
        observed_current(r) && phase(r) == Some(RolloutPhase::Paused) && step(r) == Some(1)
    })
    .await;
    assert_eq!(h.route_weights().await, (50, 50));
    let canary = h
        .replicas_by_hash()
        .await
        .into_iter()
        .find(|(_, spec, _)| *spec == 2)
        .expect("the canary ReplicaSet asks for 2 pods");
    assert_eq!(canary.2, 1, "the quota leaves it one pod: {canary:?}");
    h.ns.delete().await;
}
