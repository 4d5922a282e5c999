//! The Istio, SMI and Traefik traffic routers end to end: a real `sluice controller` (scoped to the
//! test's namespace) sets VirtualService destination weights (host- and subset-level, with the
//! DestinationRule's subsets labelled per revision), an owned SMI TrafficSplit and a TraefikService's
//! weighted services, step by step, on the local cluster (whose `up` installs their CRDs,
//! `e2e/crds/mesh-routers.yaml`). The
//! traffic emulator reads the same objects, so an analysis of a `:bad` canary measures the traffic
//! the VirtualService sends it.

mod common;

use std::time::Duration;

use common::rollouts::{
    Harness, TIMEOUT, current_hash, observed_current, phase, rollout_manifest, step,
    success_rate_template,
};
use common::wait_for;
use kube::api::{DynamicObject, GroupVersionKind, ListParams};
use kube::core::ApiResource;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use sluice::api::analysis::AnalysisPhase;
use sluice::api::rollout::{Rollout, RolloutPhase};

/// Analysis runs take several measurements a few seconds apart on top of a rollout.
const ANALYSIS_TIMEOUT: Duration = Duration::from_secs(90);

fn api(h: &Harness, group: &str, version: &str, kind: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    Api::namespaced_with(h.client.clone(), &h.ns.name, &resource)
}

fn virtual_services(h: &Harness) -> Api<DynamicObject> {
    api(h, "networking.istio.io", "v1alpha3", "VirtualService")
}

fn destination_rules(h: &Harness) -> Api<DynamicObject> {
    api(h, "networking.istio.io", "v1alpha3", "DestinationRule")
}

fn traffic_splits(h: &Harness) -> Api<DynamicObject> {
    api(h, "split.smi-spec.io", "v1alpha1", "TrafficSplit")
}

fn traefik_services(h: &Harness) -> Api<DynamicObject> {
    api(h, "traefik.io", "v1alpha1", "TraefikService")
}

fn healthy(r: &Rollout) -> bool {
    observed_current(r) && phase(r) == Some(RolloutPhase::Healthy)
}

fn paused_at(r: &Rollout, index: i32) -> bool {
    observed_current(r) && phase(r) == Some(RolloutPhase::Paused) && step(r) == Some(index)
}

fn stable_rs(r: &Rollout) -> Option<String> {
    r.status.as_ref().and_then(|s| s.stable_rs.clone())
}

/// The steps every weight test walks: 20 %, 50 %, 100 %, each paused until promoted.
fn paused_steps() -> Value {
    json!([{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {}},
           {"setWeight": 100}, {"pause": {}}])
}

fn canary_strategy(routing: Value, steps: Value) -> Value {
    json!({"canary": {
        "stableService": "web-stable", "canaryService": "web-canary",
        "trafficRouting": routing, "steps": steps,
    }})
}

/// The VirtualService `web`: an unmanaged `admin` route, and the managed `primary` route with the
/// given destinations.
async fn create_virtual_service(h: &Harness, primary: Value) {
    let vs: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService",
        "metadata": {"name": "web"},
        "spec": {
            "hosts": ["web.example.com"],
            "gateways": ["shop-gateway"],
            "http": [
                {"name": "admin", "match": [{"uri": {"prefix": "/admin"}}],
                 "route": [{"destination": {"host": "web-stable"}, "weight": 100}]},
                {"name": "primary", "route": primary},
            ],
        },
    }))
    .expect("a VirtualService");
    virtual_services(h)
        .create(&Default::default(), &vs)
        .await
        .expect("create the VirtualService");
}

/// `(stable, canary)` weights of the `primary` route, telling the two destinations apart by
/// `side` (host or subset); also checks that nothing else of the VirtualService moved.
async fn primary_weights(h: &Harness, side: &dyn Fn(&Value) -> Option<String>) -> (i64, i64) {
    let vs = virtual_services(h)
        .get("web")
        .await
        .expect("the VirtualService");
    let spec = &vs.data["spec"];
    assert_eq!(spec["hosts"], json!(["web.example.com"]), "hosts untouched");
    assert_eq!(
        spec["gateways"],
        json!(["shop-gateway"]),
        "gateways untouched"
    );
    assert_eq!(
        spec["http"][0],
        json!({"name": "admin", "match": [{"uri": {"prefix": "/admin"}}],
               "route": [{"destination": {"host": "web-stable"}, "weight": 100}]}),
        "the unmanaged route is untouched"
    );
    let weight = |wanted: &str| {
        spec["http"][1]["route"]
            .as_array()
            .and_then(|r| r.iter().find(|d| side(d).as_deref() == Some(wanted)))
            .and_then(|d| d["weight"].as_i64())
            .unwrap_or(-1)
    };
    (weight("stable"), weight("canary"))
}

fn host_side(destination: &Value) -> Option<String> {
    match destination["destination"]["host"].as_str()? {
        "web-stable" => Some("stable".into()),
        "web-canary" => Some("canary".into()),
        _ => None,
    }
}

fn subset_side(destination: &Value) -> Option<String> {
    destination["destination"]["subset"]
        .as_str()
        .map(str::to_owned)
}

/// `(stable, canary)` weights of the TrafficSplit `web`.
async fn split_weights(h: &Harness) -> Option<(i64, i64)> {
    let split = traffic_splits(h).get_opt("web").await.ok()??;
    let weight = |service: &str| {
        split.data["spec"]["backends"]
            .as_array()
            .and_then(|b| b.iter().find(|b| b["service"] == service))
            .and_then(|b| b["weight"].as_i64())
            .unwrap_or(-1)
    };
    Some((weight("web-stable"), weight("web-canary")))
}

/// Subset name → its `rollouts-pod-template-hash` label in the DestinationRule `web`.
async fn subset_hashes(h: &Harness) -> (Option<String>, Option<String>) {
    let dr = destination_rules(h)
        .get("web")
        .await
        .expect("the DestinationRule");
    let hash = |name: &str| {
        dr.data["spec"]["subsets"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == name))
            .and_then(|s| s["labels"]["rollouts-pod-template-hash"].as_str())
            .map(str::to_owned)
    };
    (hash("stable"), hash("canary"))
}

/// Deploys, updates the image and walks the paused steps, checking `weights` at each: `(80, 20)`,
/// `(50, 50)`, `(0, 100)`, then `(100, 0)` once fully promoted. `at_step(h, stable, canary)` checks
/// more at each step. Returns the first and the promoted revision's hashes.
async fn walk_steps<W, F>(
    h: &Harness,
    weights: impl Fn() -> W,
    at_step: impl Fn(String, String) -> F,
) -> (String, String)
where
    W: Future<Output = Option<(i64, i64)>>,
    F: Future<Output = ()>,
{
    let first = current_hash(&h.wait_rollout("first deploy Healthy", healthy).await);
    h.set_image("example/web:2.0").await;
    for (index, expected) in [(1, (80, 20)), (3, (50, 50)), (5, (0, 100))] {
        let paused = h
            .wait_rollout(&format!("paused at step {index}"), |r| paused_at(r, index))
            .await;
        assert_eq!(weights().await, Some(expected), "weights at step {index}");
        at_step(first.clone(), current_hash(&paused)).await;
        h.promote().await;
    }
    let done = h
        .wait_rollout("fully promoted", |r| healthy(r) && step(r) == Some(6))
        .await;
    let second = current_hash(&done);
    assert_eq!(stable_rs(&done), Some(second.clone()));
    wait_for("all traffic back on the (new) stable", TIMEOUT, || async {
        (weights().await == Some((100, 0))).then_some(())
    })
    .await;
    (first, second)
}

#[tokio::test]
async fn istio_host_level_canary_moves_weights_exactly_per_step() {
    let h = Harness::start("mesh-istio").await;
    h.create_web_services(&["web-stable", "web-canary"]).await;
    create_virtual_service(
        &h,
        json!([{"destination": {"host": "web-stable", "port": {"number": 80}}, "weight": 100},
               {"destination": {"host": "web-canary.default.svc.cluster.local", "port": {"number": 80}}, "weight": 0}]),
    )
    .await;
    let routing = json!({"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}});
    h.create(
        &h.rollouts(),
        rollout_manifest(2, canary_strategy(routing, paused_steps())),
    )
    .await;
    let side = |d: &Value| -> Option<String> {
        let host = d["destination"]["host"].as_str()?;
        host_side(&json!({"destination": {"host": host.split('.').next()?}}))
    };
    let weights = || async { Some(primary_weights(&h, &side).await) };
    let at_step = |stable: String, canary: String| {
        let h = &h;
        async move {
            assert_eq!(h.selector_hash("web-canary").await, Some(canary));
            assert_eq!(h.selector_hash("web-stable").await, Some(stable));
        }
    };
    walk_steps(&h, weights, at_step).await;
    h.ns.delete().await;
}

#[tokio::test]
async fn istio_subset_level_canary_labels_subsets_and_moves_weights_per_step() {
    let h = Harness::start("mesh-subset").await;
    h.create_web_services(&["web"]).await;
    let dr: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "networking.istio.io/v1alpha3", "kind": "DestinationRule",
        "metadata": {"name": "web"},
        "spec": {"host": "web", "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"}},
                 "subsets": [{"name": "canary", "labels": {"app": "web"}},
                             {"name": "stable", "labels": {"app": "web"}}]},
    }))
    .expect("a DestinationRule");
    destination_rules(&h)
        .create(&Default::default(), &dr)
        .await
        .expect("create the DestinationRule");
    create_virtual_service(
        &h,
        json!([{"destination": {"host": "web", "subset": "stable"}, "weight": 100},
               {"destination": {"host": "web", "subset": "canary"}, "weight": 0}]),
    )
    .await;
    let routing = json!({"istio": {
        "virtualService": {"name": "web", "routes": ["primary"]},
        "destinationRule": {"name": "web", "canarySubsetName": "canary", "stableSubsetName": "stable"},
    }});
    let strategy = json!({"canary": {"trafficRouting": routing, "steps": paused_steps()}});
    h.create(&h.rollouts(), rollout_manifest(2, strategy)).await;
    let weights = || async { Some(primary_weights(&h, &subset_side).await) };
    let at_step = |stable: String, canary: String| {
        let h = &h;
        async move {
            assert_eq!(subset_hashes(h).await, (Some(stable), Some(canary)));
        }
    };
    let (_, second) = walk_steps(&h, weights, at_step).await;
    wait_for("both subsets on the promoted revision", TIMEOUT, || async {
        (subset_hashes(&h).await == (Some(second.clone()), Some(second.clone()))).then_some(())
    })
    .await;
    let dr = destination_rules(&h)
        .get("web")
        .await
        .expect("the DestinationRule");
    assert_eq!(
        dr.annotations()
            .get("argo-rollouts.argoproj.io/managed-by-rollouts")
            .map(String::as_str),
        Some("web")
    );
    assert_eq!(
        dr.data["spec"]["trafficPolicy"],
        json!({"loadBalancer": {"simple": "ROUND_ROBIN"}}),
        "the rest of the DestinationRule is untouched"
    );
    h.ns.delete().await;
}

#[tokio::test]
async fn smi_canary_owns_a_traffic_split_weighted_per_step() {
    let h = Harness::start("mesh-smi").await;
    h.create_web_services(&["web-stable", "web-canary"]).await;
    let routing = json!({"smi": {"rootService": "web-root"}});
    h.create(
        &h.rollouts(),
        rollout_manifest(2, canary_strategy(routing, paused_steps())),
    )
    .await;
    let at_step = |_: String, _: String| async {};
    walk_steps(&h, || split_weights(&h), at_step).await;
    let split = traffic_splits(&h)
        .get("web")
        .await
        .expect("the TrafficSplit");
    assert_eq!(split.data["spec"]["service"], json!("web-root"));
    let rollout = h.rollouts().get("web").await.expect("the Rollout");
    let owners = split.owner_references();
    assert!(
        owners
            .iter()
            .any(|o| o.controller == Some(true) && Some(&o.uid) == rollout.metadata.uid.as_ref()),
        "{owners:?}"
    );
    h.ns.delete().await;
}

/// The weighted entries of the TraefikService `web`, and `(stable, canary)` weights.
async fn traefik_weights(h: &Harness) -> Option<(i64, i64)> {
    let service = traefik_services(h).get("web").await.ok()?;
    let entries = service.data["spec"]["weighted"]["services"]
        .as_array()?
        .clone();
    assert_eq!(
        entries.get(2),
        Some(&json!({"name": "maintenance", "port": 80, "weight": 1})),
        "the unmanaged entry is untouched"
    );
    let weight = |name: &str| {
        entries
            .iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["weight"].as_i64())
            .unwrap_or(-1)
    };
    Some((weight("web-stable"), weight("web-canary")))
}

#[tokio::test]
async fn traefik_canary_moves_weighted_service_weights_per_step() {
    let h = Harness::start("mesh-traefik").await;
    h.create_web_services(&["web-stable", "web-canary"]).await;
    let service: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "traefik.io/v1alpha1", "kind": "TraefikService",
        "metadata": {"name": "web"},
        "spec": {"weighted": {"services": [
            {"name": "web-stable", "port": 80, "weight": 100},
            {"name": "web-canary", "port": 80, "weight": 0},
            {"name": "maintenance", "port": 80, "weight": 1},
        ]}},
    }))
    .expect("a TraefikService");
    traefik_services(&h)
        .create(&Default::default(), &service)
        .await
        .expect("create the TraefikService");
    let routing = json!({"traefik": {"weightedTraefikServiceName": "web"}});
    h.create(
        &h.rollouts(),
        rollout_manifest(2, canary_strategy(routing, paused_steps())),
    )
    .await;
    let at_step = |_: String, _: String| async {};
    walk_steps(&h, || traefik_weights(&h), at_step).await;
    h.ns.delete().await;
}

/// A `:bad` canary (30 % HTTP 500) behind a host-level VirtualService fails its success-rate
/// analysis — measured on the traffic the emulator sends through the VirtualService — and the
/// Rollout is aborted with all traffic back on the stable.
#[tokio::test]
async fn a_bad_canary_through_istio_is_aborted_with_weights_back_to_stable() {
    let h = Harness::start("mesh-bad").await;
    h.create_web_services(&["web-stable", "web-canary"]).await;
    create_virtual_service(
        &h,
        json!([{"destination": {"host": "web-stable"}, "weight": 100},
               {"destination": {"host": "web-canary"}, "weight": 0}]),
    )
    .await;
    h.create(&h.analysis_templates(), success_rate_template(4, |_| ()))
        .await;
    let args = json!([
        {"name": "namespace", "value": h.ns.name},
        {"name": "rollout", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "revision", "valueFrom": {"podTemplateHashValue": "Latest"}},
        {"name": "window", "value": "10s"}
    ]);
    let steps = json!([
        {"setWeight": 40},
        {"analysis": {"templates": [{"templateName": "success-rate"}], "args": args}}
    ]);
    let routing = json!({"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}});
    h.create(
        &h.rollouts(),
        rollout_manifest(4, canary_strategy(routing, steps)),
    )
    .await;
    let blue = current_hash(&h.wait_rollout("first deploy Healthy", healthy).await);
    h.set_image("example/web:bad").await;
    wait_for("40 % of the traffic on the canary", TIMEOUT, || async {
        (primary_weights(&h, &host_side).await == (60, 40)).then_some(())
    })
    .await;

    let selector = "sluice.dev/rollout=web,sluice.dev/analysis-type=step";
    let run = wait_for("the step analysis to fail", ANALYSIS_TIMEOUT, || async {
        let runs = h
            .analysis_runs()
            .list(&ListParams::default().labels(selector))
            .await
            .ok()?
            .items;
        let run = runs.into_iter().next()?;
        run.status
            .as_ref()
            .and_then(|s| s.phase)
            .filter(|p| p.is_completed())
            .map(|_| run)
    })
    .await;
    let status = run.status.as_ref().expect("run status");
    assert_eq!(status.phase, Some(AnalysisPhase::Failed), "{run:#?}");
    let failed = status.metric_results[0]
        .measurements
        .iter()
        .find(|m| m.phase == AnalysisPhase::Failed)
        .expect("a failed measurement");
    let rate: f64 = failed
        .value
        .as_deref()
        .and_then(|v| v.trim_matches(['[', ']']).parse().ok())
        .expect("a numeric success rate");
    // The canary answers 30 % 500s: its measured success rate is well below the 0.95 threshold.
    assert!(rate < 0.9, "measured success rate {rate}");

    let aborted = h
        .wait_rollout("aborted and Degraded", |r| {
            observed_current(r)
                && phase(r) == Some(RolloutPhase::Degraded)
                && r.status.as_ref().is_some_and(|s| s.abort == Some(true))
        })
        .await;
    assert_eq!(stable_rs(&aborted), Some(blue.clone()));
    wait_for("VirtualService back to 100/0", TIMEOUT, || async {
        (primary_weights(&h, &host_side).await == (100, 0)).then_some(())
    })
    .await;
    println!("figure: bad canary through Istio measured success rate {rate:.3}");
    h.ns.delete().await;
}

fn invalid_spec_message(r: &Rollout) -> Option<String> {
    r.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "InvalidSpec" && c.status.as_deref() == Some("True"))
        .and_then(|c| c.message.clone())
}

/// As Argo, a VirtualService that is missing, or lacks the named route, makes the Rollout
/// `InvalidSpec` naming it (no pod is created meanwhile); once the VirtualService is fixed the
/// Rollout deploys.
#[tokio::test]
async fn a_missing_virtual_service_or_route_is_invalid_spec_until_fixed() {
    let h = Harness::start("mesh-invalid").await;
    h.create_web_services(&["web-stable", "web-canary"]).await;
    let routing = json!({"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}});
    h.create(
        &h.rollouts(),
        rollout_manifest(2, canary_strategy(routing, paused_steps())),
    )
    .await;
    let ns = h.ns.name.clone();
    let missing = h
        .wait_rollout("InvalidSpec: no VirtualService", |r| {
            phase(r) == Some(RolloutPhase::Degraded) && invalid_spec_message(r).is_some()
        })
        .await;
    assert_eq!(
        invalid_spec_message(&missing).as_deref(),
        Some(format!("VirtualService {ns}/web not found").as_str())
    );
    assert!(h.replica_sets_named().await.is_empty(), "nothing deployed");

    let vs: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService",
        "metadata": {"name": "web"},
        "spec": {"hosts": ["web"], "http": [{"name": "other", "route": [
            {"destination": {"host": "web-stable"}, "weight": 100},
            {"destination": {"host": "web-canary"}, "weight": 0}]}]},
    }))
    .expect("a VirtualService");
    virtual_services(&h)
        .create(&Default::default(), &vs)
        .await
        .expect("create the VirtualService");
    let expected = format!("VirtualService {ns}/web: has no http route named \"primary\"");
    h.wait_rollout("InvalidSpec: no such route", |r| {
        invalid_spec_message(r).as_deref() == Some(expected.as_str())
    })
    .await;

    let mut fixed = virtual_services(&h)
        .get("web")
        .await
        .expect("the VirtualService");
    fixed.data["spec"]["http"][0]["name"] = json!("primary");
    virtual_services(&h)
        .replace("web", &Default::default(), &fixed)
        .await
        .expect("fix the route name");
    let healthy_now = h.wait_rollout("deployed once fixed", healthy).await;
    assert_eq!(invalid_spec_message(&healthy_now), None);
    h.ns.delete().await;
}
