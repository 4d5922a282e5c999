//! The APISIX router end to end: a real `sluice controller` (scoped to the test's namespace) sets
//! the canary and stable backend weights of an ApisixRoute's http rule step by step on the local
//! cluster (whose `up` installs the ApisixRoute CRD, `e2e/crds/mesh-routers.yaml`), back to the
//! stable on abort and once promoted; the other rule and backend stay as written. The traffic
//! emulator splits by the same rule, so a `:bad` canary's errors show in what it measures.

mod common;

use common::rollouts::{Harness, TIMEOUT, observed_current, phase, rollout_manifest, step};
use common::wait_for;
use kube::Api;
use kube::api::{DynamicObject, GroupVersionKind};
use kube::core::ApiResource;
use serde_json::{Value, json};
use sluice::api::rollout::{Rollout, RolloutPhase};

fn routes(h: &Harness) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "apisix.apache.org",
        "v2",
        "ApisixRoute",
    ));
    Api::namespaced_with(h.client.clone(), &h.ns.name, &resource)
}

fn healthy(r: &Rollout) -> bool {
    observed_current(r) && phase(r) == Some(RolloutPhase::Healthy)
}

fn paused_at(r: &Rollout, index: i32) -> bool {
    observed_current(r) && phase(r) == Some(RolloutPhase::Paused) && step(r) == Some(index)
}

/// The `admin` rule, which no Rollout manages.
fn admin_rule() -> Value {
    json!({"name": "admin", "match": {"paths": ["/admin"]},
           "backends": [{"serviceName": "web-stable", "servicePort": 80}]})
}

/// `(stable, canary)` weights of the `main` rule; also checks that nothing else moved.
async fn weights(h: &Harness) -> Option<(i64, i64)> {
    let route = routes(h).get("web").await.ok()?;
    let http = route.data["spec"]["http"].as_array()?.clone();
    assert_eq!(
        http.get(1),
        Some(&admin_rule()),
        "the other rule is untouched"
    );
    let backends = http[0]["backends"].as_array()?.clone();
    assert_eq!(
        backends.get(2),
        Some(&json!({"serviceName": "maintenance", "servicePort": 80, "weight": 0})),
        "the other backend is untouched"
    );
    let weight = |service: &str| {
        backends
            .iter()
            .find(|b| b["serviceName"] == service)
            .and_then(|b| b["weight"].as_i64())
            .unwrap_or(-1)
    };
    Some((weight("web-stable"), weight("web-canary")))
}

async fn wait_weights(h: &Harness, expected: (i64, i64)) {
    wait_for(&format!("the route at {expected:?}"), TIMEOUT, || async {
        (weights(h).await == Some(expected)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn apisix_route_weights_follow_the_steps_and_return_to_stable() {
    let h = Harness::start("apisix").await;
    h.create_web_services(&["web-stable", "web-canary"]).await;
    let route: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute",
        "metadata": {"name": "web"},
        "spec": {"http": [
            {"name": "main", "match": {"paths": ["/*"], "hosts": ["web.example"]}, "backends": [
                {"serviceName": "web-stable", "servicePort": 80, "weight": 100},
                {"serviceName": "web-canary", "servicePort": 80, "weight": 0},
                {"serviceName": "maintenance", "servicePort": 80, "weight": 0},
            ]},
            admin_rule(),
        ]},
    }))
    .expect("an ApisixRoute");
    routes(&h)
        .create(&Default::default(), &route)
        .await
        .expect("create the ApisixRoute");
    let strategy = json!({"canary": {
        "stableService": "web-stable", "canaryService": "web-canary",
        "trafficRouting": {"apisix": {"route": {"name": "web", "rules": ["main"]}}},
        "steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}],
    }});
    h.create(&h.rollouts(), rollout_manifest(2, strategy)).await;
    h.wait_rollout("first deploy Healthy", healthy).await;
    wait_weights(&h, (100, 0)).await;

    h.set_image("example/web:2.0").await;
    for (index, weight) in [(1, 20), (3, 50)] {
        h.wait_rollout(&format!("paused at step {index}"), |r| paused_at(r, index))
            .await;
        wait_weights(&h, (100 - weight, weight)).await;
        h.promote().await;
    }
    h.wait_rollout("fully promoted", |r| healthy(r) && step(r) == Some(4))
        .await;
    wait_weights(&h, (100, 0)).await;

    // A new revision aborted at its first step: all traffic back on the stable backend.
    h.set_image("example/web:3.0").await;
    h.wait_rollout("paused at step 1", |r| paused_at(r, 1))
        .await;
    wait_weights(&h, (80, 20)).await;
    h.patch_status(json!({"status": {"abort": true}})).await;
    h.wait_rollout("aborted", |r| {
        observed_current(r)
            && phase(r) == Some(RolloutPhase::Degraded)
            && r.status.as_ref().is_some_and(|s| s.abort == Some(true))
    })
    .await;
    wait_weights(&h, (100, 0)).await;
    h.ns.delete().await;
}
