//! Attacks of this area; see tests/hostile_e2e.rs.
//!
//! Inputs that used to panic the controller (a non-ASCII `rangeQuery.start`, an infinite
//! `rangeQuery.step`, `maxSurge: 2147483647`) and their neighbours (huge pause durations, a range
//! in a condition, a sub-second interval, an overlong condition, an unlabelled Secret), sent while
//! an unrelated canary is in the middle of its steps. Each ends in an API-server refusal naming the
//! field or a clear message on the object; the controller stays up, answers `/healthz`, counts no
//! panic, and the unrelated canary finishes.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use kube::core::ApiResource;
use kube::{Api, Client};
use serde_json::{Value, json};
use sluice::api::analysis::{AnalysisPhase, AnalysisRun};
use sluice::api::rollout::{Rollout, RolloutPhase};

use crate::common::rollouts::{Harness, TIMEOUT, current_hash, phase, rollout_manifest};
use crate::common::{apply_crds, http_get, wait_for};

fn sluice_api(client: &Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("sluice.dev", "v1alpha1", kind));
    Api::namespaced_with(client.clone(), ns, &resource)
}

async fn create(api: &Api<DynamicObject>, object: Value) -> Result<(), kube::Error> {
    let object: DynamicObject = serde_json::from_value(object).expect("a valid object");
    api.create(&PostParams::default(), &object).await.map(drop)
}

/// Creating `object` is refused by the API server with a message naming `field`. The CRDs are
/// applied again before each try: other tests on the shared cluster may have applied their own
/// copies in between (an object the older schema let through is deleted, and tried again).
async fn assert_refused(client: &Client, api: &Api<DynamicObject>, object: Value, field: &str) {
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    for _ in 0..5 {
        apply_crds(client).await;
        match create(api, object.clone()).await {
            Ok(()) => {
                let _ = api.delete(&name, &DeleteParams::default()).await;
            }
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{name}: {status:?}");
                assert!(
                    status.message.contains(field),
                    "{name}: the refusal does not name {field}: {}",
                    status.message
                );
                return;
            }
            Err(e) => panic!("{name}: {e}"),
        }
    }
    panic!("{name} was accepted; the API server must refuse it naming {field}");
}

/// An AnalysisRun of one Prometheus metric with `prometheus` merged into its provider; the first
/// measurement error ends the run.
fn run(name: &str, metric: Value) -> Value {
    let mut m = json!({
        "name": "m",
        "consecutiveErrorLimit": 0,
        "successCondition": "true",
        "provider": {"prometheus": {"query": "vector(1)"}}
    });
    if let (Some(base), Some(extra)) = (m.as_object_mut(), metric.as_object()) {
        for (k, v) in extra {
            if k == "prometheus" {
                base["provider"]["prometheus"]
                    .as_object_mut()
                    .expect("object")
                    .extend(v.as_object().cloned().unwrap_or_default());
            } else {
                base.insert(k.clone(), v.clone());
            }
        }
    }
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisRun",
        "metadata": {"name": name},
        "spec": {"metrics": [m]}
    })
}

/// Waits for the run to end and returns its phase and message.
async fn outcome(client: &Client, ns: &str, name: &str) -> (AnalysisPhase, String) {
    let runs: Api<AnalysisRun> = Api::namespaced(client.clone(), ns);
    wait_for(&format!("AnalysisRun {name} to end"), TIMEOUT, || async {
        let status = runs.get(name).await.ok()?.status?;
        status.phase().is_completed().then(|| {
            let message = status.message.clone().unwrap_or_default();
            let measured = status
                .metric_results
                .iter()
                .flat_map(|r| r.measurements.iter().filter_map(|m| m.message.clone()))
                .collect::<Vec<_>>()
                .join("; ");
            (status.phase(), format!("{message} | {measured}"))
        })
    })
    .await
}

async fn healthz(h: &Harness) {
    let answer = http_get(&format!("{}/healthz", h.controller.metrics_url)).await;
    assert_eq!(
        answer.map(|(status, body)| (status, body.trim().to_string())),
        Some((200, "ok".to_string())),
        "/healthz"
    );
}

#[tokio::test]
async fn crash_inputs_are_refused_or_reported_and_the_controller_stays_up() {
    let mut h = Harness::start("hostile-crash").await;
    let ns = h.ns.name.clone();
    let client = h.client.clone();

    // The unrelated canary: deployed, then updated through timed steps that run during the attack.
    let steps = json!([
        {"setWeight": 25}, {"pause": {"duration": "3s"}},
        {"setWeight": 50}, {"pause": {"duration": "3s"}},
        {"setWeight": 75}, {"pause": {"duration": "3s"}}
    ]);
    h.create(
        &h.rollouts(),
        rollout_manifest(4, json!({"canary": {"steps": steps}})),
    )
    .await;
    let first = h
        .wait_rollout("the unrelated canary to be Healthy", |r| {
            phase(r) == Some(RolloutPhase::Healthy)
        })
        .await;
    h.set_image("example/web:2.0").await;

    let rollouts = sluice_api(&client, &ns, "Rollout");
    let runs = sluice_api(&client, &ns, "AnalysisRun");
    let with_canary = |name: &str, canary: Value| {
        let mut r = rollout_manifest(2, json!({"canary": canary}));
        r["metadata"]["name"] = json!(name);
        r
    };

    // Refused at admission, naming the field.
    assert_refused(
        &client,
        &rollouts,
        with_canary("surge-max-int", json!({"maxSurge": 2147483647})),
        "maxSurge",
    )
    .await;
    assert_refused(
        &client,
        &rollouts,
        with_canary("surge-percent", json!({"maxSurge": "1001%"})),
        "maxSurge",
    )
    .await;
    assert_refused(
        &client,
        &rollouts,
        with_canary("unavailable-negative", json!({"maxUnavailable": -1})),
        "maxUnavailable",
    )
    .await;
    assert_refused(
        &client,
        &rollouts,
        with_canary("unavailable-percent", json!({"maxUnavailable": "101%"})),
        "maxUnavailable",
    )
    .await;
    // A surge above 100% is valid in Argo Rollouts and Kubernetes: admitted, not mistaken for an attack.
    create(
        &rollouts,
        with_canary(
            "surge-double",
            json!({"maxSurge": "200%", "maxUnavailable": 0}),
        ),
    )
    .await
    .expect("maxSurge 200% is admitted");
    assert_refused(
        &client,
        &rollouts,
        with_canary(
            "pause-garbage",
            json!({"steps": [{"pause": {"duration": "now()é"}}]}),
        ),
        "duration",
    )
    .await;
    // An int beyond i32 would be stored, then fail to decode and hide every run listed with it.
    assert_refused(
        &client,
        &runs,
        run("count-beyond-i32", json!({"count": 99_999_999_999i64})),
        "count",
    )
    .await;
    assert_refused(
        &client,
        &runs,
        run("interval-too-fast", json!({"interval": "100ms"})),
        "interval",
    )
    .await;
    assert_refused(
        &client,
        &runs,
        run(
            "condition-too-long",
            json!({"successCondition": format!("result > {}", "1".repeat(5000))}),
        ),
        "successCondition",
    )
    .await;

    // Accepted by the schema, refused by the controller with a message naming the field.
    let huge_pause = with_canary(
        "pause-forever",
        json!({"steps": [{"setWeight": 50}, {"pause": {"duration": "99999999999999h"}}]}),
    );
    create(&rollouts, huge_pause)
        .await
        .expect("create pause-forever");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "db-password"},
        "stringData": {"password": "hunter2"}
    }))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create the unlabelled Secret");
    let attacks = [
        (
            run(
                "start-non-ascii",
                json!({"prometheus": {"rangeQuery": {"start": "now()é"}}}),
            ),
            "rangeQuery.start",
        ),
        (
            run(
                "step-inf",
                json!({"prometheus": {"rangeQuery": {"step": "inf"}}}),
            ),
            "rangeQuery.step",
        ),
        (
            run(
                "step-huge",
                json!({"prometheus": {"rangeQuery": {"step": "1e30"}}}),
            ),
            "rangeQuery.step",
        ),
        (
            run(
                "range-bomb",
                json!({"successCondition": "len(0..9999999999) > 0"}),
            ),
            "range operator",
        ),
        (
            {
                let mut r = run(
                    "unlabelled-secret",
                    json!({"prometheus": {"query": "vector({{args.password}})"}}),
                );
                r["spec"]["args"] = json!([{"name": "password", "valueFrom": {
                    "secretKeyRef": {"name": "db-password", "key": "password"}}}]);
                r
            },
            "sluice.dev/analysis-secret",
        ),
    ];
    for (object, _) in &attacks {
        create(&runs, object.clone())
            .await
            .unwrap_or_else(|e| panic!("create {}: {e}", object["metadata"]["name"]));
    }
    for (object, field) in &attacks {
        let name = object["metadata"]["name"].as_str().expect("name");
        let (phase, message) = outcome(&client, &ns, name).await;
        assert_eq!(phase, AnalysisPhase::Error, "{name}: {message}");
        assert!(message.contains(field), "{name}: {message}");
        assert!(!message.contains("hunter2"), "{name}: {message}");
        healthz(&h).await;
    }
    let rollouts_typed: Api<Rollout> = Api::namespaced(client.clone(), &ns);
    let degraded = wait_for("pause-forever to be Degraded", TIMEOUT, || async {
        let r = rollouts_typed.get("pause-forever").await.ok()?;
        (phase(&r) == Some(RolloutPhase::Degraded)).then_some(r)
    })
    .await;
    let message = degraded.status.and_then(|s| s.message).unwrap_or_default();
    assert!(message.contains("duration"), "{message}");

    // The controller stayed up throughout, and the unrelated canary finished its steps.
    healthz(&h).await;
    let done = h
        .wait_rollout("the unrelated canary to finish the update", |r| {
            phase(r) == Some(RolloutPhase::Healthy) && current_hash(r) != current_hash(&first)
        })
        .await;
    assert_eq!(
        done.status.as_ref().and_then(|s| s.stable_rs.clone()),
        Some(current_hash(&done))
    );
    assert_eq!(h.controller.child.try_wait().ok().flatten(), None);
    for controller in ["rollout", "analysis", "application", "revert"] {
        assert_eq!(
            h.controller
                .metric_with(
                    "sluice_reconcile_panics_total",
                    &[("controller", controller)]
                )
                .await,
            Some(0.0),
            "{controller}"
        );
    }
    healthz(&h).await;
}
