//! Argo fields Sluice does not implement, on the local cluster: the API server keeps them (nothing is
//! pruned), and the object that sets one is refused by the controller naming the field — a Rollout
//! goes `InvalidSpec` and creates nothing, an AnalysisRun ends in `Error`. Also the templates a
//! Rollout names: resolved on every reconcile, a missing one (or one using an unimplemented
//! provider) is `InvalidSpec` until it is fixed.

mod common;

use kube::api::ListParams;
use serde_json::{Value, json};
use sluice::api::analysis::{AnalysisPhase, AnalysisRun};
use sluice::api::rollout::{Rollout, RolloutPhase};
use sluice::api::unsupported::ROLLOUT_SPEC;

use common::rollouts::{Harness, TIMEOUT, observed_current, phase, rollout_manifest};
use common::wait_for;

/// A value for an unimplemented field, shaped as Argo users write it.
fn argo_value(pattern: &str) -> Value {
    match pattern.rsplit('.').next().unwrap_or_default() {
        "minPodsPerReplicaSet" | "scaleDownDelayRevisionLimit" | "maxTrafficWeight" => json!(2),
        "maxUnavailable" => json!(1),
        "weight" => json!(20),
        "antiAffinity" => json!({"preferredDuringSchedulingIgnoredDuringExecution": {"weight": 1}}),
        "rollbackWindow" => json!({"revisions": 3}),
        _ => json!({"name": "web"}),
    }
}

/// A Rollout that sets the unimplemented field `pattern` (relative to `spec`, `[]` = a list item),
/// otherwise valid.
fn rollout_setting(name: &str, pattern: &str) -> Value {
    let strategy = if pattern.starts_with("strategy.blueGreen") {
        json!({"blueGreen": {"activeService": "web-active"}})
    } else {
        json!({"canary": {"stableService": "web-stable", "canaryService": "web-canary",
                          "trafficRouting": {"nginx": {"stableIngress": "web"}},
                          "steps": [{"setWeight": 20}]}})
    };
    let mut rollout = rollout_manifest(1, strategy);
    rollout["metadata"]["name"] = json!(name);
    let mut cursor = &mut rollout["spec"];
    let segments: Vec<&str> = pattern.split('.').collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match segment.strip_suffix("[]") {
            // A step of its own, after the existing ones.
            Some(key) => {
                let step = if segments[i + 1] == "experiment" {
                    // An experiment step of two templates, the second setting the field.
                    let mut template = json!({"name": "canary", "specRef": "canary"});
                    template[segments[segments.len() - 1]] = argo_value(pattern);
                    json!({"experiment": {"templates": [
                        {"name": "baseline", "specRef": "stable"}, template]}})
                } else {
                    json!({ segments[i + 1]: argo_value(pattern) })
                };
                cursor[key].as_array_mut().expect("a list").push(step);
                break;
            }
            None if last => cursor[*segment] = argo_value(pattern),
            None => {
                if cursor.get(*segment).is_none() {
                    cursor[*segment] = json!({});
                }
                cursor = &mut cursor[*segment];
            }
        }
    }
    rollout
}

fn invalid_spec_message(rollout: &Rollout) -> Option<String> {
    if !observed_current(rollout) || phase(rollout) != Some(RolloutPhase::Degraded) {
        return None;
    }
    let conditions = rollout.status.as_ref()?.conditions.as_slice();
    let invalid = conditions.iter().find(|c| c.type_ == "InvalidSpec")?;
    Some(invalid.message.clone().unwrap_or_default())
}

async fn wait_invalid_spec(h: &Harness, name: &str) -> String {
    let api = h.rollouts();
    wait_for(&format!("{name} InvalidSpec"), TIMEOUT, || async {
        invalid_spec_message(&api.get(name).await.ok()?)
    })
    .await
}

async fn replica_sets_of(h: &Harness, name: &str) -> usize {
    h.replica_sets()
        .list(&ListParams::default())
        .await
        .expect("list ReplicaSets")
        .items
        .iter()
        .filter(|rs| {
            rs.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.kind == "Rollout" && o.name == name)
        })
        .count()
}

#[tokio::test]
async fn every_unimplemented_rollout_field_is_kept_and_makes_the_rollout_invalid_naming_it() {
    let h = Harness::start("unsupported").await;
    let cases: Vec<(String, &str)> = ROLLOUT_SPEC
        .iter()
        .enumerate()
        .map(|(i, pattern)| (format!("unsupported-{i}"), *pattern))
        .collect();
    for (name, pattern) in &cases {
        h.create(&h.rollouts(), rollout_setting(name, pattern))
            .await;
        // Stored as written: the API server pruned nothing.
        let stored = h.rollouts().get(name).await.expect("get Rollout");
        assert!(
            !stored.spec.unsupported_fields().is_empty(),
            "{pattern}: the field was pruned"
        );
    }
    for (name, pattern) in &cases {
        let message = wait_invalid_spec(&h, name).await;
        let concrete = pattern.replace("[]", "[1]");
        assert!(
            message.contains(&format!("spec.{concrete} is not supported by Sluice")),
            "{pattern}: {message}"
        );
        assert_eq!(replica_sets_of(&h, name).await, 0, "{pattern}: it moved");
    }
    h.ns.delete().await;
}

fn template(name: &str, provider: Value) -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": name},
        "spec": {"metrics": [{"name": "m", "interval": "5s", "count": 1,
                              "successCondition": "result[0] >= 0", "provider": provider}]}
    })
}

fn rollout_with_step_analysis(template_name: &str) -> Value {
    rollout_manifest(
        2,
        json!({"canary": {"steps": [
            {"setWeight": 50},
            {"analysis": {"templates": [{"templateName": template_name}]}}
        ]}}),
    )
}

#[tokio::test]
async fn a_missing_template_is_invalid_spec_until_it_is_created() {
    let h = Harness::start("missing-template").await;
    h.create(&h.rollouts(), rollout_with_step_analysis("later"))
        .await;
    let message = wait_invalid_spec(&h, "web").await;
    assert_eq!(
        message,
        "spec.strategy.canary.steps[1].analysis.templates[0].templateName: \
         AnalysisTemplate \"later\" not found"
    );
    assert_eq!(replica_sets_of(&h, "web").await, 0);

    h.create(
        &h.analysis_templates(),
        template("later", json!({"prometheus": {"query": "vector(1)"}})),
    )
    .await;
    h.wait_rollout("Healthy once the template exists", |r| {
        observed_current(r) && phase(r) == Some(RolloutPhase::Healthy)
    })
    .await;
    assert_eq!(replica_sets_of(&h, "web").await, 1);
    h.ns.delete().await;
}

#[tokio::test]
async fn a_template_with_an_unimplemented_provider_makes_its_rollout_invalid() {
    let h = Harness::start("template-provider").await;
    h.create(
        &h.analysis_templates(),
        template(
            "dd",
            json!({"datadog": {"apiVersion": "v2", "query": "avg:kubernetes.cpu.user.total{*}"}}),
        ),
    )
    .await;
    h.create(&h.rollouts(), rollout_with_step_analysis("dd"))
        .await;
    let message = wait_invalid_spec(&h, "web").await;
    assert!(
        message.contains(
            "AnalysisTemplate \"dd\": spec.metrics[0].provider.datadog is not supported by Sluice"
        ),
        "{message}"
    );
    assert_eq!(replica_sets_of(&h, "web").await, 0);
    h.ns.delete().await;
}

#[tokio::test]
async fn an_analysis_run_with_an_unimplemented_field_ends_in_error_naming_it() {
    let h = Harness::start("unsupported-run").await;
    let run = json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisRun",
        "metadata": {"name": "run"},
        "spec": {
            "metrics": [{"name": "m", "provider": {"datadog": {"query": "avg:cpu{*}"}}}],
            "ttlStrategy": {"secondsAfterCompletion": 60}
        }
    });
    h.create(&h.analysis_runs(), run).await;
    let api = h.analysis_runs();
    let finished: AnalysisRun = wait_for("AnalysisRun in Error", TIMEOUT, || async {
        let run = api.get("run").await.ok()?;
        (run.status.as_ref()?.phase() == AnalysisPhase::Error).then_some(run)
    })
    .await;
    let message = finished.status.and_then(|s| s.message).unwrap_or_default();
    assert_eq!(
        message,
        "spec.metrics[0].provider.datadog, spec.ttlStrategy are not supported by Sluice \
         (Argo fields it does not implement)"
    );
    h.ns.delete().await;
}
