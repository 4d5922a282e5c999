//! Ephemeral pod metadata end to end (issue 18): `canaryMetadata` / `stableMetadata` and
//! `previewMetadata` / `activeMetadata` label the pods of each role, so that a Service or a query
//! selecting `role=canary` selects only the canary's pods, and the labels move in place when the
//! roles change. A real `sluice controller` on the local cluster; pods run on the KWOK node.

mod common;

use std::collections::BTreeSet;

use common::rollouts::{
    Harness, TIMEOUT, current_hash, observed_current, phase, rollout_manifest, step,
};
use common::wait_for;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;
use sluice::api::rollout::{Rollout, RolloutPhase};

const HASH_LABEL: &str = "rollouts-pod-template-hash";

fn pods(h: &Harness) -> Api<Pod> {
    Api::namespaced(h.client.clone(), &h.ns.name)
}

/// Names of the running (not terminating) pods `selector` selects, sorted.
async fn selected(h: &Harness, selector: &str) -> BTreeSet<String> {
    pods(h)
        .list(&ListParams::default().labels(selector))
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.name)
        .collect()
}

/// The running pods of one revision.
async fn revision_pods(h: &Harness, hash: &str) -> BTreeSet<String> {
    selected(h, &format!("app=web,{HASH_LABEL}={hash}")).await
}

/// Waits until `selector` selects exactly the running pods of revision `hash` (and some), and
/// returns them.
async fn wait_selects_revision(h: &Harness, selector: &str, hash: &str) -> BTreeSet<String> {
    wait_for(
        &format!("{selector} selects exactly the pods of {hash}"),
        TIMEOUT,
        || async {
            let revision = revision_pods(h, hash).await;
            let chosen = selected(h, selector).await;
            (!revision.is_empty() && chosen == revision).then_some(chosen)
        },
    )
    .await
}

async fn wait_selects_nothing(h: &Harness, selector: &str) {
    wait_for(&format!("{selector} selects no pod"), TIMEOUT, || async {
        selected(h, selector).await.is_empty().then_some(())
    })
    .await;
}

/// The pods behind a Service, from its EndpointSlices (kube-controller-manager keeps them).
async fn endpoint_pods(h: &Harness, service: &str) -> BTreeSet<String> {
    let slices: Api<EndpointSlice> = Api::namespaced(h.client.clone(), &h.ns.name);
    slices
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
        .await
        .expect("list endpointslices")
        .items
        .into_iter()
        .flat_map(|s| s.endpoints.unwrap_or_default())
        .filter_map(|e| e.target_ref.and_then(|r| r.name))
        .collect()
}

/// A Service selecting the app's pods by an ephemeral label (the engine does not manage it).
async fn create_role_service(h: &Harness, name: &str, role: &str) {
    h.create(
        &h.services(),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
               "spec": {"selector": {"app": "web", "role": role}, "ports": [{"port": 80}]}}),
    )
    .await;
}

async fn pod_annotation(h: &Harness, pod: &str, key: &str) -> Option<String> {
    let pod = pods(h).get(pod).await.expect("get pod");
    pod.metadata.annotations?.get(key).cloned()
}

async fn template_labels(h: &Harness, hash: &str) -> std::collections::BTreeMap<String, String> {
    let rs = h
        .replica_sets()
        .get(&format!("web-{hash}"))
        .await
        .expect("get replicaset");
    rs.spec
        .and_then(|s| s.template)
        .and_then(|t| t.metadata)
        .and_then(|m| m.labels)
        .unwrap_or_default()
}

fn healthy(r: &Rollout) -> bool {
    observed_current(r) && phase(r) == Some(RolloutPhase::Healthy)
}

fn stable_is(r: &Rollout, hash: &str) -> bool {
    r.status.as_ref().and_then(|s| s.stable_rs.as_deref()) == Some(hash)
}

#[tokio::test]
async fn canary_metadata_labels_only_canary_pods_during_the_pause_and_stable_labels_after_promotion()
 {
    let h = Harness::start("pm-canary").await;
    create_role_service(&h, "web-role-canary", "canary").await;
    let strategy = json!({"canary": {
        "canaryMetadata": {"labels": {"role": "canary"},
                           "annotations": {"example.com/phase": "canary"}},
        "stableMetadata": {"labels": {"role": "stable"}},
        "steps": [{"setWeight": 25}, {"pause": {}}]
    }});
    h.create(&h.rollouts(), rollout_manifest(4, strategy)).await;
    let stable = current_hash(&h.wait_rollout("first deploy Healthy", healthy).await);
    wait_selects_revision(&h, "app=web,role=stable", &stable).await;
    wait_selects_nothing(&h, "app=web,role=canary").await;

    // During the canary (paused at step 1, 3 stable + 1 canary), role=canary is the canary only.
    h.set_image("example/web:2.0").await;
    let paused = h
        .wait_rollout("paused at step 1", |r| {
            observed_current(r) && phase(r) == Some(RolloutPhase::Paused) && step(r) == Some(1)
        })
        .await;
    let canary = current_hash(&paused);
    assert_ne!(canary, stable);
    let canary_pods = wait_selects_revision(&h, "app=web,role=canary", &canary).await;
    let stable_pods = wait_selects_revision(&h, "app=web,role=stable", &stable).await;
    assert_eq!((stable_pods.len(), canary_pods.len()), (3, 1));
    for pod in &canary_pods {
        assert_eq!(
            pod_annotation(&h, pod, "example.com/phase")
                .await
                .as_deref(),
            Some("canary")
        );
    }
    wait_for(
        "the role=canary Service's endpoints are the canary pods",
        TIMEOUT,
        || async { (endpoint_pods(&h, "web-role-canary").await == canary_pods).then_some(()) },
    )
    .await;
    assert_eq!(
        template_labels(&h, &canary)
            .await
            .get("role")
            .map(String::as_str),
        Some("canary")
    );

    // Promotion: the canary's pods become the stable ones in place (same pods, new labels).
    h.promote().await;
    h.wait_rollout("promoted and Healthy", |r| {
        healthy(r) && stable_is(r, &canary)
    })
    .await;
    let promoted = wait_selects_revision(&h, "app=web,role=stable", &canary).await;
    assert!(
        canary_pods.is_subset(&promoted),
        "the canary pods {canary_pods:?} were relabelled in place, not replaced: {promoted:?}"
    );
    wait_selects_nothing(&h, "app=web,role=canary").await;
    for pod in &canary_pods {
        assert_eq!(pod_annotation(&h, pod, "example.com/phase").await, None);
    }
    wait_for(
        "the role=canary Service has no endpoints",
        TIMEOUT,
        || async {
            endpoint_pods(&h, "web-role-canary")
                .await
                .is_empty()
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        template_labels(&h, &canary)
            .await
            .get("role")
            .map(String::as_str),
        Some("stable")
    );
    assert_eq!(template_labels(&h, &stable).await.get("role"), None);

    // Removing the metadata from the spec takes it off; it is no part of the pod template hash,
    // so no new revision starts.
    let revisions = h.replica_sets_named().await;
    h.rollouts()
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"strategy": {"canary": {
                "canaryMetadata": null, "stableMetadata": null}}}})),
        )
        .await
        .expect("remove the metadata");
    wait_selects_nothing(&h, "app=web,role").await;
    let after = h.wait_rollout("Healthy again", healthy).await;
    assert_eq!(current_hash(&after), canary);
    assert_eq!(h.replica_sets_named().await, revisions);
    assert_eq!(revision_pods(&h, &canary).await.len(), 4);
    h.ns.delete().await;
}

#[tokio::test]
async fn blue_green_preview_metadata_until_promotion_then_active_metadata_in_place() {
    let h = Harness::start("pm-bg").await;
    h.create_web_services(&["web-active", "web-preview"]).await;
    create_role_service(&h, "web-role-preview", "preview").await;
    let strategy = json!({"blueGreen": {
        "activeService": "web-active", "previewService": "web-preview",
        "autoPromotionEnabled": false,
        "previewMetadata": {"labels": {"role": "preview"}},
        "activeMetadata": {"labels": {"role": "active"}}
    }});
    h.create(&h.rollouts(), rollout_manifest(2, strategy)).await;
    let blue = current_hash(&h.wait_rollout("first deploy Healthy", healthy).await);
    wait_selects_revision(&h, "app=web,role=active", &blue).await;

    h.set_image("example/web:2.0").await;
    let paused = h
        .wait_rollout("paused for promotion", |r| {
            observed_current(r) && phase(r) == Some(RolloutPhase::Paused)
        })
        .await;
    let green = current_hash(&paused);
    let preview_pods = wait_selects_revision(&h, "app=web,role=preview", &green).await;
    wait_selects_revision(&h, "app=web,role=active", &blue).await;
    wait_for(
        "the role=preview Service's endpoints are the preview pods",
        TIMEOUT,
        || async { (endpoint_pods(&h, "web-role-preview").await == preview_pods).then_some(()) },
    )
    .await;

    // Promotion: green's pods become active in place; blue still runs (scaleDownDelaySeconds)
    // but is no longer active, so it loses the label.
    h.promote().await;
    h.wait_rollout("promoted and Healthy", |r| {
        healthy(r) && stable_is(r, &green)
    })
    .await;
    let active = wait_selects_revision(&h, "app=web,role=active", &green).await;
    assert_eq!(active, preview_pods, "the same pods, relabelled in place");
    wait_selects_nothing(&h, "app=web,role=preview").await;
    let blue_pods = revision_pods(&h, &blue).await;
    assert_eq!(blue_pods.len(), 2, "blue runs until its scale-down delay");
    assert!(
        selected(&h, "app=web,role").await.is_disjoint(&blue_pods),
        "blue's pods have no role any more"
    );
    assert_eq!(
        h.selector_hash("web-active").await.as_deref(),
        Some(green.as_str())
    );
    h.ns.delete().await;
}
