//! The Ambassador router end to end: a real `sluice controller` (scoped to the test's namespace)
//! keeps a canary copy of the stable Mapping (`<name>-canary`, the canary Service, the step's
//! `weight`) on the local cluster (whose `up` installs the Mapping CRD, `e2e/crds/mesh-routers.yaml`),
//! and deletes it on abort and once promoted. The traffic emulator splits by the same Mappings, so
//! the analysis of a `:bad` canary measures the traffic the canary Mapping sends it.

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

fn mappings(h: &Harness) -> Api<DynamicObject> {
    let resource =
        ApiResource::from_gvk(&GroupVersionKind::gvk("getambassador.io", "v2", "Mapping"));
    Api::namespaced_with(h.client.clone(), &h.ns.name, &resource)
}

fn healthy(r: &Rollout) -> bool {
    observed_current(r) && phase(r) == Some(RolloutPhase::Healthy)
}

/// The stable Mapping `web`: `/` to `web-stable:80`, with a field Sluice must copy.
async fn create_stable_mapping(h: &Harness) {
    let mapping: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "getambassador.io/v2", "kind": "Mapping",
        "metadata": {"name": "web"},
        "spec": {"prefix": "/", "rewrite": "/", "service": "web-stable:80", "timeout_ms": 3000},
    }))
    .expect("a Mapping");
    mappings(h)
        .create(&Default::default(), &mapping)
        .await
        .expect("create the Mapping");
}

/// `(service, weight)` of the canary Mapping, `None` when it does not exist.
async fn canary_mapping(h: &Harness) -> Option<(String, i64)> {
    let mapping = mappings(h).get_opt("web-canary").await.ok()??;
    let spec = &mapping.data["spec"];
    assert_eq!(spec["prefix"], json!("/"), "copied from the stable Mapping");
    assert_eq!(
        spec["timeout_ms"],
        json!(3000),
        "copied from the stable Mapping"
    );
    Some((
        spec["service"].as_str().unwrap_or_default().to_owned(),
        spec["weight"].as_i64().unwrap_or(-1),
    ))
}

fn canary_strategy(steps: Value) -> Value {
    json!({"canary": {
        "stableService": "web-stable", "canaryService": "web-canary",
        "trafficRouting": {"ambassador": {"mappings": ["web"]}}, "steps": steps,
    }})
}

#[tokio::test]
async fn ambassador_canary_mapping_follows_the_steps_and_goes_once_promoted() {
    let h = Harness::start("ambassador").await;
    h.create_web_services(&["web-stable", "web-canary"]).await;
    create_stable_mapping(&h).await;
    let stable_version = mappings(&h)
        .get("web")
        .await
        .expect("the Mapping")
        .resource_version();
    let steps = json!([{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]);
    h.create(&h.rollouts(), rollout_manifest(2, canary_strategy(steps)))
        .await;
    h.wait_rollout("first deploy Healthy", healthy).await;
    assert_eq!(canary_mapping(&h).await, None, "no canary Mapping at rest");

    h.set_image("example/web:2.0").await;
    for (index, weight) in [(1, 20), (3, 50)] {
        h.wait_rollout(&format!("paused at step {index}"), |r| {
            observed_current(r) && phase(r) == Some(RolloutPhase::Paused) && step(r) == Some(index)
        })
        .await;
        let expected = Some(("web-canary:80".to_string(), weight));
        wait_for(&format!("canary Mapping at {weight}"), TIMEOUT, || async {
            (canary_mapping(&h).await == expected).then_some(())
        })
        .await;
        h.promote().await;
    }
    h.wait_rollout("fully promoted", |r| healthy(r) && step(r) == Some(4))
        .await;
    wait_for("canary Mapping deleted", TIMEOUT, || async {
        canary_mapping(&h).await.is_none().then_some(())
    })
    .await;
    let stable_now = mappings(&h).get("web").await.expect("the Mapping");
    assert_eq!(
        stable_now.resource_version(),
        stable_version,
        "the stable Mapping is never written"
    );
    h.ns.delete().await;
}

/// A `:bad` canary (30 % HTTP 500) behind the canary Mapping fails its success-rate analysis —
/// measured on the traffic the emulator sends by the Mappings' weights — and the Rollout is aborted
/// with the canary Mapping gone (all traffic on the stable one).
#[tokio::test]
async fn a_bad_canary_through_ambassador_is_aborted_back_to_the_stable_mapping() {
    let h = Harness::start("ambassador-bad").await;
    h.create_web_services(&["web-stable", "web-canary"]).await;
    create_stable_mapping(&h).await;
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
    h.create(&h.rollouts(), rollout_manifest(4, canary_strategy(steps)))
        .await;
    let blue = current_hash(&h.wait_rollout("first deploy Healthy", healthy).await);
    h.set_image("example/web:bad").await;
    wait_for("40 % of the traffic on the canary", TIMEOUT, || async {
        (canary_mapping(&h).await == Some(("web-canary:80".to_string(), 40))).then_some(())
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
    let rate: f64 = status.metric_results[0]
        .measurements
        .iter()
        .find(|m| m.phase == AnalysisPhase::Failed)
        .and_then(|m| m.value.as_deref())
        .and_then(|v| v.trim_matches(['[', ']']).parse().ok())
        .expect("a numeric success rate");
    assert!(rate < 0.9, "measured success rate {rate}");

    let aborted = h
        .wait_rollout("aborted and Degraded", |r| {
            observed_current(r)
                && phase(r) == Some(RolloutPhase::Degraded)
                && r.status.as_ref().is_some_and(|s| s.abort == Some(true))
        })
        .await;
    assert_eq!(
        aborted.status.as_ref().and_then(|s| s.stable_rs.clone()),
        Some(blue)
    );
    wait_for("canary Mapping deleted", TIMEOUT, || async {
        canary_mapping(&h).await.is_none().then_some(())
    })
    .await;
    println!("figure: bad canary through Ambassador measured success rate {rate:.3}");
    h.ns.delete().await;
}
