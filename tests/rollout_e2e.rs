//! The Rollout engine end to end: a real `sluice controller` (scoped to the test's namespace) drives
//! ReplicaSets, Services and an HTTPRoute on the local cluster; pods become ready on the KWOK node.

mod common;

use common::rollouts::{
    Harness, TIMEOUT, current_hash, observed_current, phase, rollout_manifest, route_strategy, step,
};
use common::wait_for;
use k8s_openapi::api::networking::v1::Ingress;
use kube::Api;
use serde_json::json;
use sluice::api::rollout::RolloutPhase;

#[tokio::test]
async fn canary_with_replica_ratio_pauses_promotes_and_scales_the_old_revision_down() {
    let h = Harness::start("ro-ratio").await;
    let strategy = json!({"canary": {"steps": [
        {"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": "2s"}}
    ]}});
    h.create(&h.rollouts(), rollout_manifest(4, strategy)).await;

    // R2: the first deploy goes straight to Healthy with the stable ReplicaSet at 4.
    let first = h
        .wait_rollout("first deploy Healthy", |r| {
            observed_current(r) && phase(r) == Some(RolloutPhase::Healthy)
        })
        .await;
    let stable = current_hash(&first);
    assert_eq!(h.replicas_by_hash().await, vec![(stable.clone(), 4, 4)]);

    // C1: 25% of 4 → 1 canary pod, stable keeps 3; paused at step 1 waiting for promote.
    h.set_image("example/web:2.0").await;
    let paused = h
        .wait_rollout("paused at step 1", |r| {
            observed_current(r) && phase(r) == Some(RolloutPhase::Paused) && step(r) == Some(1)
        })
        .await;
    let canary = current_hash(&paused);
    assert_ne!(canary, stable);
    wait_for("1 canary pod ready, 3 stable", TIMEOUT, || async {
        let mut want = vec![(stable.clone(), 3, 3), (canary.clone(), 1, 1)];
        want.sort();
        (h.replicas_by_hash().await == want).then_some(())
    })
    .await;

    // Promote: 50% → 2/2, then the 2 s pause ends by itself and the canary becomes stable.
    h.promote().await;
    let done = h
        .wait_rollout("fully promoted and Healthy", |r| {
            observed_current(r)
                && phase(r) == Some(RolloutPhase::Healthy)
                && r.status.as_ref().and_then(|s| s.stable_rs.as_deref()) == Some(canary.as_str())
        })
        .await;
    assert_eq!(step(&done), Some(4));
    wait_for("old revision scaled to 0", TIMEOUT, || async {
        let mut want = vec![(stable.clone(), 0, 0), (canary.clone(), 4, 4)];
        want.sort();
        (h.replicas_by_hash().await == want).then_some(())
    })
    .await;
    h.ns.delete().await;
}

/// Deploys `replicas` pods with `steps` (no router), updates the image and waits for the pause at
/// step 1; returns (stable hash, canary hash).
async fn paused_router_less_canary(
    h: &Harness,
    replicas: i32,
    steps: serde_json::Value,
) -> (String, String) {
    h.create(
        &h.rollouts(),
        rollout_manifest(replicas, json!({"canary": {"steps": steps}})),
    )
    .await;
    let first = h
        .wait_rollout("first deploy Healthy", |r| {
            observed_current(r) && phase(r) == Some(RolloutPhase::Healthy)
        })
        .await;
    h.set_image("example/web:2.0").await;
    let paused = h
        .wait_rollout("paused at step 1", |r| {
            observed_current(r) && phase(r) == Some(RolloutPhase::Paused) && step(r) == Some(1)
        })
        .await;
    (current_hash(&first), current_hash(&paused))
}

async fn wait_for_pods(h: &Harness, what: &str, mut want: Vec<(String, i32, i32)>) {
    want.sort();
    wait_for(what, TIMEOUT, || async {
        (h.replicas_by_hash().await == want).then_some(())
    })
    .await;
}

/// Issue 18, Argo's e2e `rollout-basic.yaml`: 1 replica at setWeight 50 runs 1 stable + 1 canary
/// pod (the default 25% surge rounds up to one pod), so half the traffic stays on the stable.
#[tokio::test]
async fn one_replica_at_weight_50_without_router_runs_one_stable_and_one_canary_pod() {
    let h = Harness::start("ro-basic").await;
    let (stable, canary) =
        paused_router_less_canary(&h, 1, json!([{"setWeight": 50}, {"pause": {}}])).await;
    wait_for_pods(
        &h,
        "1 stable + 1 canary pod",
        vec![(stable, 1, 1), (canary, 1, 1)],
    )
    .await;
    h.ns.delete().await;
}

/// Issue 18, Argo's e2e `rollout-canary-with-pause.yaml`: 3 replicas at setWeight 20 run 3 stable +
/// 1 canary pod; an update during the pause scales revision 2 down and gives revision 3 the pod.
#[tokio::test]
async fn three_replicas_at_weight_20_without_router_run_three_stable_and_one_canary_pod() {
    let h = Harness::start("ro-pause3").await;
    let (stable, second) =
        paused_router_less_canary(&h, 3, json!([{"setWeight": 20}, {"pause": {}}])).await;
    wait_for_pods(
        &h,
        "3 stable + 1 canary pod",
        vec![(stable.clone(), 3, 3), (second.clone(), 1, 1)],
    )
    .await;
    h.set_image("example/web:3.0").await;
    let third = h
        .wait_rollout("revision 3 paused at step 1", |r| {
            observed_current(r)
                && phase(r) == Some(RolloutPhase::Paused)
                && step(r) == Some(1)
                && current_hash(r) != second
        })
        .await;
    wait_for_pods(
        &h,
        "revision 1: 3, revision 2: 0, revision 3: 1",
        vec![(stable, 3, 3), (second, 0, 0), (current_hash(&third), 1, 1)],
    )
    .await;
    h.ns.delete().await;
}

#[tokio::test]
async fn canary_with_an_httproute_moves_weights_exactly_per_step() {
    let h = Harness::start("ro-route").await;
    h.create_services_and_route().await;
    let strategy = route_strategy(json!([{"setWeight": 20}, {"pause": {}}, {"setWeight": 50},
        {"pause": {}}, {"setWeight": 100}, {"pause": {}}]));
    h.create(&h.rollouts(), rollout_manifest(2, strategy)).await;
    let first = h
        .wait_rollout("first deploy Healthy", |r| {
            observed_current(r) && phase(r) == Some(RolloutPhase::Healthy)
        })
        .await;
    let stable = current_hash(&first);
    wait_for(
        "stable Service selects the stable hash",
        TIMEOUT,
        || async {
            (h.selector_hash("web-stable").await.as_deref() == Some(stable.as_str())).then_some(())
        },
    )
    .await;
    assert_eq!(h.route_weights().await, (100, 0));

    h.set_image("example/web:2.0").await;
    for (index, expected) in [(1, (80, 20)), (3, (50, 50)), (5, (0, 100))] {
        let paused = h
            .wait_rollout(&format!("paused at step {index}"), |r| {
                observed_current(r)
                    && phase(r) == Some(RolloutPhase::Paused)
                    && step(r) == Some(index)
            })
            .await;
        assert_eq!(h.route_weights().await, expected, "weights at step {index}");
        let canary = current_hash(&paused);
        assert_eq!(
            h.selector_hash("web-canary").await.as_deref(),
            Some(canary.as_str())
        );
        assert_eq!(
            h.selector_hash("web-stable").await.as_deref(),
            Some(stable.as_str())
        );
        h.promote().await;
    }
    let done = h
        .wait_rollout("fully promoted", |r| {
            observed_current(r) && phase(r) == Some(RolloutPhase::Healthy) && step(r) == Some(6)
        })
        .await;
    let canary = current_hash(&done);
    wait_for(
        "stable Service moved to the new hash, all traffic on it",
        TIMEOUT,
        || async {
            let moved = h.selector_hash("web-stable").await.as_deref() == Some(canary.as_str());
            (moved && h.route_weights().await == (100, 0)).then_some(())
        },
    )
    .await;
    h.ns.delete().await;
}

/// Names of the Rollout's pods that are Ready and not terminating, and how many pods exist at all.
async fn restart_ready_pods(h: &Harness) -> (Vec<String>, usize) {
    use k8s_openapi::api::core::v1::Pod;
    let pods: kube::Api<Pod> = kube::Api::namespaced(h.client.clone(), &h.ns.name);
    let list = pods
        .list(&kube::api::ListParams::default().labels("app=web"))
        .await
        .expect("list pods");
    let ready: Vec<String> = list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    (ready, list.items.len())
}

#[tokio::test]
async fn restart_at_replaces_every_pod_and_records_restarted_at() {
    use kube::api::{Patch, PatchParams};
    let h = Harness::start("ro-restart").await;
    h.create(
        &h.rollouts(),
        rollout_manifest(3, json!({"canary": {"steps": []}})),
    )
    .await;
    h.wait_rollout("first deploy Healthy", |r| {
        observed_current(r) && phase(r) == Some(RolloutPhase::Healthy)
    })
    .await;
    let before = wait_for("3 pods Ready", TIMEOUT, || async {
        let (ready, all) = restart_ready_pods(&h).await;
        (ready.len() == 3 && all == 3).then_some(ready)
    })
    .await;

    // restartAt has second precision and restarts pods created strictly before it: wait until the
    // clock is past the second the pods were created in.
    let created = {
        let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
            kube::Api::namespaced(h.client.clone(), &h.ns.name);
        let mut latest = jiff::Timestamp::UNIX_EPOCH;
        for name in &before {
            let pod = pods.get(name).await.expect("get pod");
            if let Some(t) = pod.metadata.creation_timestamp {
                latest = latest.max(t.0);
            }
        }
        latest
    };
    let restart_at = wait_for("a second after the pods were created", TIMEOUT, || async {
        let now = jiff::Timestamp::now();
        (now.as_second() > created.as_second()).then_some(now)
    })
    .await;
    let restart_at = restart_at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    h.rollouts()
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"restartAt": restart_at}})),
        )
        .await
        .expect("set restartAt");

    let done = h
        .wait_rollout("status.restartedAt set", |r| {
            r.status
                .as_ref()
                .and_then(|s| s.restarted_at.as_ref())
                .is_some()
        })
        .await;
    assert_eq!(
        done.status
            .as_ref()
            .and_then(|s| s.restarted_at.as_ref())
            .map(|t| t.0.as_second()),
        restart_at
            .parse::<jiff::Timestamp>()
            .ok()
            .map(|t| t.as_second())
    );
    wait_for(
        "3 new pods Ready, none of the old ones left",
        TIMEOUT,
        || async {
            let (ready, all) = restart_ready_pods(&h).await;
            let replaced = ready.iter().all(|name| !before.contains(name));
            (ready.len() == 3 && all == 3 && replaced).then_some(())
        },
    )
    .await;
    h.wait_rollout("Healthy after the restart", |r| {
        observed_current(r) && phase(r) == Some(RolloutPhase::Healthy)
    })
    .await;
    h.ns.delete().await;
}

/// The canary Ingress of the NGINX router, if it exists: its `canary` and `canary-weight`
/// annotations and the Service it sends to.
async fn canary_ingress(h: &Harness) -> Option<(String, String, String)> {
    let ingresses: Api<Ingress> = Api::namespaced(h.client.clone(), &h.ns.name);
    let ingress = ingresses.get_opt("web-web-canary").await.ok()??;
    let annotations = ingress.metadata.annotations.unwrap_or_default();
    let annotation = |key: &str| {
        annotations
            .get(&format!("nginx.ingress.kubernetes.io/{key}"))
            .cloned()
            .unwrap_or_default()
    };
    let backend = ingress
        .spec
        .and_then(|s| s.rules)
        .and_then(|rules| rules.into_iter().next())
        .and_then(|rule| rule.http)
        .and_then(|http| http.paths.into_iter().next())
        .and_then(|path| path.backend.service)
        .map(|svc| svc.name)
        .unwrap_or_default();
    Some((annotation("canary"), annotation("canary-weight"), backend))
}

/// C3: NGINX Ingress: a canary Ingress copying the stable one, pointed at the canary Service, with
/// `canary: "true"` and the step's `canary-weight`; the stable Ingress is never written; the canary
/// Ingress is removed after promotion.
#[tokio::test]
async fn canary_with_nginx_ingress_creates_weights_and_removes_the_canary_ingress() {
    let h = Harness::start("ro-nginx").await;
    h.create_web_services(&["web-stable", "web-canary"]).await;
    let ingresses: Api<Ingress> = Api::namespaced(h.client.clone(), &h.ns.name);
    let stable_ingress = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "web"},
        "spec": {"ingressClassName": "nginx", "rules": [{"host": "web.example", "http": {"paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "web-stable", "port": {"number": 80}}}
        }]}}]}
    });
    h.create(&ingresses, stable_ingress).await;
    let stable_version = ingresses
        .get("web")
        .await
        .expect("stable Ingress")
        .metadata
        .resource_version;
    let strategy = json!({"canary": {
        "stableService": "web-stable", "canaryService": "web-canary",
        "trafficRouting": {"nginx": {"stableIngress": "web"}},
        "steps": [{"setWeight": 30}, {"pause": {}}, {"setWeight": 60}, {"pause": {}}]
    }});
    h.create(&h.rollouts(), rollout_manifest(2, strategy)).await;
    h.wait_rollout("first deploy Healthy", |r| {
        observed_current(r) && phase(r) == Some(RolloutPhase::Healthy)
    })
    .await;
    assert_eq!(canary_ingress(&h).await, None, "no canary Ingress at rest");

    h.set_image("example/web:2.0").await;
    for (index, weight) in [(1, "30"), (3, "60")] {
        h.wait_rollout(&format!("paused at step {index}"), |r| {
            observed_current(r) && phase(r) == Some(RolloutPhase::Paused) && step(r) == Some(index)
        })
        .await;
        let expected = (
            "true".to_string(),
            weight.to_string(),
            "web-canary".to_string(),
        );
        wait_for(&format!("canary Ingress at {weight}"), TIMEOUT, || async {
            (canary_ingress(&h).await.as_ref() == Some(&expected)).then_some(())
        })
        .await;
        h.promote().await;
    }
    h.wait_rollout("fully promoted", |r| {
        observed_current(r) && phase(r) == Some(RolloutPhase::Healthy) && step(r) == Some(4)
    })
    .await;
    wait_for("canary Ingress removed", TIMEOUT, || async {
        canary_ingress(&h).await.is_none().then_some(())
    })
    .await;
    let stable_now = ingresses.get("web").await.expect("stable Ingress");
    assert_eq!(
        stable_now.metadata.resource_version, stable_version,
        "the stable Ingress is never written"
    );
    h.ns.delete().await;
}
