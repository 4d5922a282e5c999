//! The Rollout test harness: a namespace with its own `sluice controller`, and readers of what the
//! engine writes (ReplicaSets, Service selectors, HTTPRoute weights).

use std::time::Duration;

use futures::TryStreamExt;
use jiff::Timestamp;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::task::JoinHandle;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Service;
use kube::api::{DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use kube::{Api, Client};
use serde_json::{Value, json};
use sluice::api::analysis::{AnalysisRun, AnalysisTemplate};
use sluice::api::rollout::{Rollout, RolloutPhase};

use super::{ControllerProcess, E2eEnv, TestNamespace, apply_crds, wait_for};

pub const TIMEOUT: Duration = Duration::from_secs(60);

pub struct Harness {
    pub client: Client,
    pub ns: TestNamespace,
    pub controller: ControllerProcess,
}

impl Harness {
    pub async fn start(prefix: &str) -> Self {
        let env = E2eEnv::load();
        let client = env.client().await;
        apply_crds(&client).await;
        let ns = TestNamespace::create(&client, prefix).await;
        let controller = ControllerProcess::start(&env, &[&format!("--namespace={}", ns.name)]);
        Self {
            client,
            ns,
            controller,
        }
    }

    /// Kills the controller without warning and starts a fresh one, as a crash and restart would.
    pub fn restart_controller(&mut self) {
        self.controller.signal("KILL");
        let env = E2eEnv::load();
        self.controller =
            ControllerProcess::start(&env, &[&format!("--namespace={}", self.ns.name)]);
    }

    /// Patches the Rollout's status subresource, as the plugin's control actions do.
    pub async fn patch_status(&self, patch: Value) {
        self.rollouts()
            .patch_status("web", &PatchParams::default(), &Patch::Merge(patch))
            .await
            .expect("patch rollout status");
    }

    /// Services named `names` selecting the app's pods (the engine adds the revision hash).
    pub async fn create_web_services(&self, names: &[&str]) {
        for name in names {
            self.create(
                &self.services(),
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                       "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
            )
            .await;
        }
    }

    /// Services `web-stable` and `web-canary` and the HTTPRoute `web` sending all traffic to stable.
    pub async fn create_services_and_route(&self) {
        self.create_web_services(&["web-stable", "web-canary"])
            .await;
        self.create(
            &self.routes(),
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "web"},
            "spec": {"parentRefs": [{"name": "gateway"}], "rules": [{"backendRefs": [
                {"name": "web-stable", "port": 80, "weight": 100},
                {"name": "web-canary", "port": 80, "weight": 0}
            ]}]}}),
        )
        .await;
    }

    pub fn rollouts(&self) -> Api<Rollout> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    pub fn replica_sets(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    pub fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    pub fn analysis_templates(&self) -> Api<AnalysisTemplate> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    pub fn analysis_runs(&self) -> Api<AnalysisRun> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    pub fn routes(&self) -> Api<DynamicObject> {
        routes(&self.client, &self.ns.name)
    }

    pub async fn create<K>(&self, api: &Api<K>, object: Value)
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
    pub async fn wait_rollout(&self, what: &str, check: impl Fn(&Rollout) -> bool) -> Rollout {
        let api = self.rollouts();
        wait_for(what, TIMEOUT, || async {
            let rollout = api.get("web").await.ok()?;
            check(&rollout).then_some(rollout)
        })
        .await
    }

    pub async fn set_image(&self, image: &str) {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": image}]}}}});
        self.rollouts()
            .patch("web", &PatchParams::default(), &Patch::Merge(patch))
            .await
            .expect("update image");
    }

    /// Promote one step, as `kubectl sluice promote` does: clear the pause conditions.
    pub async fn promote(&self) {
        self.patch_status(json!({"status": {"pauseConditions": null}}))
            .await;
    }

    /// `spec.replicas` per pod template hash of the Rollout's ReplicaSets.
    pub async fn replicas_by_hash(&self) -> Vec<(String, i32, i32)> {
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

    /// The names of the Rollout's ReplicaSets, sorted.
    pub async fn replica_sets_named(&self) -> Vec<String> {
        let list = self
            .replica_sets()
            .list(&ListParams::default())
            .await
            .expect("list replicasets");
        let mut names: Vec<String> = list
            .items
            .into_iter()
            .filter_map(|rs| rs.metadata.name)
            .collect();
        names.sort();
        names
    }

    pub async fn route_weights(&self) -> (i64, i64) {
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

    pub async fn selector_hash(&self, service: &str) -> Option<String> {
        let svc = self.services().get(service).await.ok()?;
        svc.spec?
            .selector?
            .get("rollouts-pod-template-hash")
            .cloned()
    }
}

pub fn phase(rollout: &Rollout) -> Option<RolloutPhase> {
    rollout.status.as_ref().and_then(|s| s.phase)
}

pub fn step(rollout: &Rollout) -> Option<i32> {
    rollout.status.as_ref().and_then(|s| s.current_step_index)
}

pub fn current_hash(rollout: &Rollout) -> String {
    rollout
        .status
        .as_ref()
        .and_then(|s| s.current_pod_hash.clone())
        .unwrap_or_default()
}

pub fn observed_current(rollout: &Rollout) -> bool {
    let status = rollout.status.as_ref();
    status.and_then(|s| s.observed_generation.as_deref())
        == rollout
            .metadata
            .generation
            .map(|g| g.to_string())
            .as_deref()
}

pub fn rollout_manifest(replicas: i32, strategy: Value) -> Value {
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

/// A canary strategy through the HTTPRoute `web` with `web-stable` / `web-canary`.
pub fn route_strategy(steps: Value) -> Value {
    json!({"canary": {
        "stableService": "web-stable", "canaryService": "web-canary",
        "trafficRouting": {"plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": "web"}}},
        "steps": steps
    }})
}

/// Watches the HTTPRoute and notes when its canary weight first returns to 0 after being above 0.
pub struct WeightZeroWatch {
    task: JoinHandle<Option<Timestamp>>,
}

/// The HTTPRoutes of `namespace`.
pub fn routes(client: &Client, namespace: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "gateway.networking.k8s.io",
        "v1",
        "HTTPRoute",
    ));
    Api::namespaced_with(client.clone(), namespace, &resource)
}

impl WeightZeroWatch {
    pub fn start(h: &Harness) -> Self {
        Self::start_in(&h.client, &h.ns.name)
    }

    /// Watches the HTTPRoute `web` of `namespace`.
    pub fn start_in(client: &Client, namespace: &str) -> Self {
        let routes = routes(client, namespace);
        let task = tokio::spawn(async move {
            let mut events = std::pin::pin!(
                watcher(
                    routes,
                    watcher::Config::default().fields("metadata.name=web")
                )
                .applied_objects()
            );
            let mut had_canary_traffic = false;
            while let Ok(Some(route)) = events.try_next().await {
                let canary = route.data["spec"]["rules"][0]["backendRefs"][1]["weight"]
                    .as_i64()
                    .unwrap_or(0);
                if canary > 0 {
                    had_canary_traffic = true;
                } else if had_canary_traffic {
                    return Some(Timestamp::now());
                }
            }
            None
        });
        Self { task }
    }

    pub async fn first_zero_after_canary_traffic(self) -> Timestamp {
        tokio::time::timeout(TIMEOUT, self.task)
            .await
            .expect("the route's canary weight back to 0 in time")
            .expect("route watch task")
            .expect("the route watch saw canary traffic, then weight 0")
    }
}

/// The shipped success-rate template, measured every 2 s after a 10 s delay (so that Prometheus has
/// scraped the canary's new series many times and a `:bad` canary has answered enough requests to
/// show its 500s), `count` times; `edit` adjusts its metric further.
pub fn success_rate_template(count: i64, edit: impl FnOnce(&mut Value)) -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/analysis-templates/success-rate.yaml"
    );
    let text = std::fs::read_to_string(path).expect("read the success-rate template");
    let mut template: Value = serde_saphyr::from_str(&text).expect("parse the template");
    let metric = &mut template["spec"]["metrics"][0];
    metric["interval"] = json!("2s");
    // After only 4 s a `:bad` canary (30 % 500s) once measured 100 % success twice on a loaded
    // machine and was promoted (revert_e2e l3).
    metric["initialDelay"] = json!("10s");
    metric["count"] = json!(count);
    edit(metric);
    template
}
