//! `trafficRouting.maxTrafficWeight` end to end, as Argo Rollouts: the steps' `setWeight` values
//! are out of it, and so are the weights the router writes: NGINX's `canary-weight` with
//! `canary-weight-total`, the HTTPRoute's stable and canary `backendRefs` weights (summing to it).
//! An abort sends everything back to the stable. The API server refuses a `setWeight` above it and
//! the field with a router other than NGINX or a plugin (Argo's message).

mod common;

use std::collections::BTreeMap;

use common::rollouts::{
    Harness, TIMEOUT, observed_current, phase, rollout_manifest, route_strategy, step,
};
use common::wait_for;
use k8s_openapi::api::networking::v1::Ingress;
use kube::Api;
use serde_json::{Value, json};
use sluice::api::rollout::{Rollout, RolloutPhase};

const MAX: i64 = 1000;

fn steps() -> Value {
    json!([{"setWeight": 250}, {"pause": {}}, {"setWeight": 700}, {"pause": {}}])
}

fn paused_at(r: &Rollout, index: i32) -> bool {
    observed_current(r) && phase(r) == Some(RolloutPhase::Paused) && step(r) == Some(index)
}

fn healthy(r: &Rollout) -> bool {
    observed_current(r) && phase(r) == Some(RolloutPhase::Healthy)
}

/// `(stable, canary)` of `status.canary.weights`.
fn status_weights(r: &Rollout) -> Option<(i32, i32)> {
    let weights = r.status.as_ref()?.canary.as_ref()?.weights.as_ref()?;
    Some((weights.stable.weight, weights.canary.weight))
}

async fn abort(h: &Harness) {
    h.patch_status(json!({"status": {"abort": true}})).await;
    h.wait_rollout("aborted", |r| {
        observed_current(r)
            && phase(r) == Some(RolloutPhase::Degraded)
            && r.status.as_ref().is_some_and(|s| s.abort == Some(true))
    })
    .await;
}

/// `canary-weight` and `canary-weight-total` of the canary Ingress, if it exists.
async fn nginx_weights(h: &Harness) -> Option<(String, String)> {
    let ingresses: Api<Ingress> = Api::namespaced(h.client.clone(), &h.ns.name);
    let ingress = ingresses.get_opt("web-web-canary").await.ok()??;
    let annotations: BTreeMap<String, String> = ingress.metadata.annotations.unwrap_or_default();
    let annotation = |key: &str| {
        annotations
            .get(&format!("nginx.ingress.kubernetes.io/{key}"))
            .cloned()
            .unwrap_or_default()
    };
    Some((
        annotation("canary-weight"),
        annotation("canary-weight-total"),
    ))
}

#[tokio::test]
async fn nginx_writes_weights_out_of_max_traffic_weight_as_canary_weight_total() {
    let h = Harness::start("max-weight-nginx").await;
    h.create_web_services(&["web-stable", "web-canary"]).await;
    let ingresses: Api<Ingress> = Api::namespaced(h.client.clone(), &h.ns.name);
    h.create(
        &ingresses,
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "web"},
            "spec": {"ingressClassName": "nginx", "rules": [{"host": "web.example", "http": {
                "paths": [{"path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": "web-stable", "port": {"number": 80}}}}]}}]}
        }),
    )
    .await;
    let strategy = json!({"canary": {
        "stableService": "web-stable", "canaryService": "web-canary",
        "trafficRouting": {"maxTrafficWeight": MAX, "nginx": {"stableIngress": "web"}},
        "steps": steps(),
    }});
    h.create(&h.rollouts(), rollout_manifest(10, strategy))
        .await;
    h.wait_rollout("first deploy Healthy", healthy).await;

    h.set_image("example/web:2.0").await;
    for (index, weight, canary_pods) in [(1, 250, 3), (3, 700, 7)] {
        let paused = h
            .wait_rollout(&format!("paused at step {index}"), |r| paused_at(r, index))
            .await;
        assert_eq!(status_weights(&paused), Some((1000 - weight, weight)));
        let expected = Some((weight.to_string(), MAX.to_string()));
        wait_for(&format!("canary Ingress at {weight}"), TIMEOUT, || async {
            (nginx_weights(&h).await == expected).then_some(())
        })
        .await;
        // ceil(weight × 10 / 1000) canary pods, as Argo's trafficWeightToReplicas.
        let canary = current_replicas(&h, &paused).await;
        assert_eq!(canary, canary_pods, "canary pods at {weight}");
        if index == 1 {
            h.promote().await;
        }
    }
    abort(&h).await;
    let expected = Some(("0".to_string(), MAX.to_string()));
    wait_for("canary Ingress back to 0", TIMEOUT, || async {
        (nginx_weights(&h).await == expected).then_some(())
    })
    .await;
    let aborted = h.rollouts().get("web").await.expect("the Rollout");
    assert_eq!(status_weights(&aborted), Some((1000, 0)));
    h.ns.delete().await;
}

/// `spec.replicas` of the current revision's ReplicaSet.
async fn current_replicas(h: &Harness, r: &Rollout) -> i32 {
    let hash = r
        .status
        .as_ref()
        .and_then(|s| s.current_pod_hash.clone())
        .unwrap_or_default();
    h.replicas_by_hash()
        .await
        .into_iter()
        .find(|(h, _, _)| *h == hash)
        .map_or(-1, |(_, spec, _)| spec)
}

#[tokio::test]
async fn gateway_api_weights_sum_to_max_traffic_weight_and_return_to_stable_on_abort() {
    let h = Harness::start("max-weight-gw").await;
    h.create_services_and_route().await;
    let mut strategy = route_strategy(steps());
    strategy["canary"]["trafficRouting"]["maxTrafficWeight"] = json!(MAX);
    h.create(&h.rollouts(), rollout_manifest(4, strategy)).await;
    h.wait_rollout("first deploy Healthy", healthy).await;
    wait_for("the route at 1000/0", TIMEOUT, || async {
        (h.route_weights().await == (MAX, 0)).then_some(())
    })
    .await;

    h.set_image("example/web:2.0").await;
    for (index, weight) in [(1, 250), (3, 700)] {
        h.wait_rollout(&format!("paused at step {index}"), |r| paused_at(r, index))
            .await;
        wait_for(&format!("the route at {weight}"), TIMEOUT, || async {
            (h.route_weights().await == (MAX - weight, weight)).then_some(())
        })
        .await;
        if index == 1 {
            h.promote().await;
        }
    }
    abort(&h).await;
    wait_for("the route back to 1000/0", TIMEOUT, || async {
        (h.route_weights().await == (MAX, 0)).then_some(())
    })
    .await;
    h.ns.delete().await;
}

#[tokio::test]
async fn the_api_server_refuses_a_weight_above_it_and_other_routers_than_nginx_or_plugins() {
    let h = Harness::start("max-weight-bad").await;
    let refused = |routing: Value, weight: i64| {
        let strategy = json!({"canary": {
            "stableService": "web-stable", "canaryService": "web-canary",
            "trafficRouting": routing, "steps": [{"setWeight": weight}],
        }});
        serde_json::from_value::<Rollout>(rollout_manifest(1, strategy)).expect("a Rollout")
    };
    let cases = [
        (
            json!({"maxTrafficWeight": MAX, "nginx": {"stableIngress": "web"}}),
            1001,
            "SetWeight needs to be between 0 and 100, or maxTrafficWeight when set",
        ),
        (
            json!({"nginx": {"stableIngress": "web"}}),
            101,
            "SetWeight needs to be between 0 and 100, or maxTrafficWeight when set",
        ),
        (
            json!({"maxTrafficWeight": MAX, "smi": {"rootService": "web"}}),
            500,
            "Canary maxTrafficWeight in traffic routing only supported in Nginx and Plugins",
        ),
    ];
    for (routing, weight, message) in cases {
        let error = h
            .rollouts()
            .create(&Default::default(), &refused(routing.clone(), weight))
            .await
            .expect_err("refused by the API server");
        assert!(error.to_string().contains(message), "{routing}: {error}");
    }
    // Within it, accepted.
    h.rollouts()
        .create(
            &Default::default(),
            &refused(
                json!({"maxTrafficWeight": MAX, "nginx": {"stableIngress": "web"}}),
                1000,
            ),
        )
        .await
        .expect("setWeight 1000 of 1000 is accepted");
    h.ns.delete().await;
}
