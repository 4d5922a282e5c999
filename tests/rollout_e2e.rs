//! The Rollout engine end to end: a real `sluice controller` (scoped to the test's namespace) drives
//! ReplicaSets, Services and an HTTPRoute on the local cluster; pods become ready on the KWOK node.

mod common;

use std::time::Duration;

use common::{ControllerProcess, E2eEnv, TestNamespace, apply_crds, wait_for};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Service;
use kube::api::{DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use kube::{Api, Client};
use serde_json::{Value, json};
use sluice::api::rollout::{Rollout, RolloutPhase};

const TIMEOUT: Duration = Duration::from_secs(60);

struct Harness {
    client: Client,
    ns: TestNamespace,
    _controller: ControllerProcess,
}

impl Harness {
    async fn start(prefix: &str) -> Self {
        let env = E2eEnv::load();
        let client = env.client().await;
        apply_crds(&client).await;
        let ns = TestNamespace::create(&client, prefix).await;
        let controller = ControllerProcess::start(&env, &[&format!("--namespace={}", ns.name)]);
        Self {
            client,
            ns,
            _controller: controller,
        }
    }

    fn rollouts(&self) -> Api<Rollout> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    fn replica_sets(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    fn routes(&self) -> Api<DynamicObject> {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
            "gateway.networking.k8s.io",
            "v1",
            "HTTPRoute",
        ));
        Api::namespaced_with(self.client.clone(), &self.ns.name, &resource)
    }

    async fn create<K>(&self, api: &Api<K>, object: Value)
    where
        K: kube::Resource
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let typed: K = serde_json::from_value(object).expect("valid object");
        api.create(&PostParams::default(), &typed)
            .await
            .expect("create object");
    }

    /// Waits until the Rollout's status satisfies `check`, returning the Rollout.
    async fn wait_rollout(&self, what: &str, check: impl Fn(&Rollout) -> bool) -> Rollout {
        let api = self.rollouts();
        wait_for(what, TIMEOUT, || async {
            let rollout = api.get("web").await.ok()?;
            check(&rollout).then_some(rollout)
        })
        .await
    }

    async fn set_image(&self, image: &str) {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": image}]}}}});
        self.rollouts()
            .patch("web", &PatchParams::default(), &Patch::Merge(patch))
            .await
            .expect("update image");
    }

    /// Promote one step, as `kubectl sluice promote` does: clear the pause conditions.
    async fn promote(&self) {
        let patch = json!({"status": {"pauseConditions": null}});
        self.rollouts()
            .patch_status("web", &PatchParams::default(), &Patch::Merge(patch))
            .await
            .expect("promote");
    }

    /// `spec.replicas` per pod template hash of the Rollout's ReplicaSets.
    async fn replicas_by_hash(&self) -> Vec<(String, i32, i32)> {
        let list = self
            .replica_sets()
            .list(&ListParams::default())
            .await
            .expect("list replicasets");
        let mut out: Vec<_> = list
            .items
            .iter()
            .map(|rs| {
                let hash = rs
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("rollouts-pod-template-hash"))
                    .cloned()
                    .unwrap_or_default();
                let spec = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
                let ready = rs
                    .status
                    .as_ref()
                    .and_then(|s| s.ready_replicas)
                    .unwrap_or(0);
                (hash, spec, ready)
            })
            .collect();
        out.sort();
        out
    }

    async fn route_weights(&self) -> (i64, i64) {
        let route = self.routes().get("web").await.expect("route");
        let refs = &route.data["spec"]["rules"][0]["backendRefs"];
        let weight = |name: &str| {
            refs.as_array()
                .and_then(|a| a.iter().find(|r| r["name"] == name))
                .and_then(|r| r["weight"].as_i64())
                .unwrap_or(-1)
        };
        (weight("web-stable"), weight("web-canary"))
    }

    async fn selector_hash(&self, service: &str) -> Option<String> {
        let svc = self.services().get(service).await.ok()?;
        svc.spec?
            .selector?
            .get("rollouts-pod-template-hash")
            .cloned()
    }
}

fn phase(rollout: &Rollout) -> Option<RolloutPhase> {
    rollout.status.as_ref().and_then(|s| s.phase)
}

fn step(rollout: &Rollout) -> Option<i32> {
    rollout.status.as_ref().and_then(|s| s.current_step_index)
}

fn current_hash(rollout: &Rollout) -> String {
    rollout
        .status
        .as_ref()
        .and_then(|s| s.current_pod_hash.clone())
        .unwrap_or_default()
}

fn observed_current(rollout: &Rollout) -> bool {
    let status = rollout.status.as_ref();
    status.and_then(|s| s.observed_generation.as_deref())
        == rollout
            .metadata
            .generation
            .map(|g| g.to_string())
            .as_deref()
}

fn rollout_manifest(replicas: i32, strategy: Value) -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "example/web:1.0"}]}
            },
            "strategy": strategy
        }
    })
}

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

#[tokio::test]
async fn canary_with_an_httproute_moves_weights_exactly_per_step() {
    let h = Harness::start("ro-route").await;
    for name in ["web-stable", "web-canary"] {
        h.create(
            &h.services(),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                   "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
        )
        .await;
    }
    h.create(
        &h.routes(),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "web"},
        "spec": {"parentRefs": [{"name": "gateway"}], "rules": [{"backendRefs": [
            {"name": "web-stable", "port": 80, "weight": 100},
            {"name": "web-canary", "port": 80, "weight": 0}
        ]}]}}),
    )
    .await;
    let strategy = json!({"canary": {
        "stableService": "web-stable", "canaryService": "web-canary",
        "trafficRouting": {"plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": "web"}}},
        "steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {}},
                  {"setWeight": 100}, {"pause": {}}]
    }});
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
