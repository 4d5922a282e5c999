//! Experiments on the local cluster (Argo Rollouts' Experiment semantics): an Experiment's templates
//! run as ReplicaSets for its duration and are scaled down once it is Successful; a canary
//! `experiment` step runs baseline and canary ReplicaSets beside the Rollout and passes or aborts
//! the update on its analysis, measured with real PromQL by the real Prometheus.

mod common;
mod plugin_support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};
use sluice::api::analysis::AnalysisPhase;
use sluice::api::experiment::{Experiment, TEMPLATE_NAME_ANNOTATION};
use sluice::api::rollout::{Rollout, RolloutPhase};

use common::rollouts::{
    Harness, current_hash, observed_current, phase, rollout_manifest, route_strategy,
};
use common::{E2eEnv, wait_for};
use plugin_support::kubectl_sluice;

/// Templates become available, run their duration and scale down within this.
const TIMEOUT: Duration = Duration::from_secs(90);

fn experiments(h: &Harness) -> Api<Experiment> {
    Api::namespaced(h.client.clone(), &h.ns.name)
}

fn experiment_phase(e: &Experiment) -> Option<AnalysisPhase> {
    e.status.as_ref().and_then(|s| s.phase)
}

/// A template of pods labelled `app: exp, role: <role>`.
fn template(name: &str, role: &str, replicas: i32, image: &str) -> Value {
    let labels = json!({"app": "exp", "role": role});
    json!({"name": name, "replicas": replicas, "selector": {"matchLabels": labels},
           "template": {"metadata": {"labels": labels},
                        "spec": {"containers": [{"name": "web", "image": image}]}}})
}

/// An AnalysisTemplate whose one measurement is `vector(<verdict>)` through the real Prometheus,
/// Successful when it is 1: `verdict: "1"` passes, `"0"` fails.
fn verdict_template() -> Value {
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate",
           "metadata": {"name": "verdict"},
           "spec": {"args": [{"name": "verdict"}],
                    "metrics": [{"name": "verdict", "successCondition": "result[0] == 1",
                                 "provider": {"prometheus": {"query": "vector({{args.verdict}})"}}}]}})
}

/// The Experiment's ReplicaSets: (template, spec replicas, available replicas).
async fn template_replica_sets(h: &Harness, experiment: &str) -> Vec<(String, i32, i32)> {
    let list = h
        .replica_sets()
        .list(&ListParams::default())
        .await
        .expect("list replicasets");
    let mut out: Vec<(String, i32, i32)> = list
        .items
        .iter()
        .filter(|rs| {
            rs.metadata.owner_references.as_ref().is_some_and(|o| {
                o.iter()
                    .any(|o| o.kind == "Experiment" && o.name == experiment)
            })
        })
        .map(|rs: &ReplicaSet| {
            let template = rs
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(TEMPLATE_NAME_ANNOTATION))
                .cloned()
                .unwrap_or_default();
            let spec = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            let available = rs
                .status
                .as_ref()
                .and_then(|s| s.available_replicas)
                .unwrap_or(0);
            (template, spec, available)
        })
        .collect();
    out.sort();
    out
}

async fn wait_experiment(
    h: &Harness,
    name: &str,
    what: &str,
    check: impl Fn(&Experiment) -> bool,
) -> Experiment {
    let api = experiments(h);
    wait_for(what, TIMEOUT, || async {
        let experiment = api.get(name).await.ok()?;
        check(&experiment).then_some(experiment)
    })
    .await
}

/// (1) Two templates run side by side for the duration, then the Experiment is Successful and
/// both ReplicaSets are scaled down after `scaleDownDelaySeconds`.
#[tokio::test]
async fn an_experiment_runs_baseline_and_canary_for_its_duration_then_succeeds_and_scales_down() {
    let h = Harness::start("exp-run").await;
    // The canary template also asks for a Service (Argo's templates[].service).
    let mut canary_with_service = template("canary", "canary", 2, "example/web:2.0");
    canary_with_service["template"]["spec"]["containers"][0]["ports"] =
        json!([{"name": "http", "containerPort": 8080}]);
    canary_with_service["service"] = json!({});
    h.create(
        &experiments(&h),
        json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Experiment",
               "metadata": {"name": "compare"},
               "spec": {"duration": "8s", "scaleDownDelaySeconds": 2, "templates": [
                   template("baseline", "baseline", 1, "example/web:1.0"),
                   canary_with_service]}}),
    )
    .await;

    let running = wait_experiment(&h, "compare", "the Experiment Running", |e| {
        experiment_phase(e) == Some(AnalysisPhase::Running)
    })
    .await;
    let started = running
        .status
        .as_ref()
        .and_then(|s| s.available_at.clone())
        .expect("availableAt is set once Running")
        .0;
    assert_eq!(
        template_replica_sets(&h, "compare").await,
        vec![("baseline".to_string(), 1, 1), ("canary".to_string(), 2, 2)],
        "both templates run at their replicas while Running"
    );
    let canary_hash = running
        .status
        .as_ref()
        .and_then(|s| s.template_statuses.iter().find(|t| t.name == "canary"))
        .and_then(|t| t.pod_template_hash.clone())
        .expect("the canary template's hash");
    let service = wait_for("the canary template's Service", TIMEOUT, || async {
        h.services().get("compare-canary").await.ok()
    })
    .await;
    let selector = service.spec.and_then(|s| s.selector).unwrap_or_default();
    assert_eq!(
        selector.get("rollouts-pod-template-hash"),
        Some(&canary_hash)
    );
    assert_eq!(selector.get("role").map(String::as_str), Some("canary"));
    assert!(
        h.services().get("compare-baseline").await.is_err(),
        "no Service for a template without `service`"
    );
    let plugin = kubectl_sluice(
        &E2eEnv::load(),
        Some(&h.ns.name),
        &["get", "experiment", "compare"],
    )
    .await;
    assert_eq!(plugin.code, 0, "{}", plugin.stderr);
    assert!(
        plugin.stdout.contains("Status:         ✔ Running"),
        "{}",
        plugin.stdout
    );
    let canary_line = plugin
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("canary"))
        .unwrap_or_default();
    assert!(
        canary_line.contains("compare-canary") && canary_line.contains("Running"),
        "{}",
        plugin.stdout
    );

    let done = wait_experiment(&h, "compare", "the Experiment Successful", |e| {
        experiment_phase(e).is_some_and(|p| p.is_completed())
    })
    .await;
    assert_eq!(experiment_phase(&done), Some(AnalysisPhase::Successful));
    let ran = jiff::Timestamp::now().duration_since(started);
    assert!(
        ran >= jiff::SignedDuration::from_secs(8),
        "ended after {ran:?}, before its 8s duration"
    );
    wait_for("both templates scaled to 0", TIMEOUT, || async {
        let rs = template_replica_sets(&h, "compare").await;
        (rs.len() == 2 && rs.iter().all(|(_, spec, _)| *spec == 0)).then_some(())
    })
    .await;
    wait_for("the canary template's Service deleted", TIMEOUT, || async {
        h.services()
            .get("compare-canary")
            .await
            .is_err()
            .then_some(())
    })
    .await;
    assert_eq!(
        experiment_phase(&experiments(&h).get("compare").await.expect("experiment")),
        Some(AnalysisPhase::Successful)
    );
}

/// A canary through the HTTPRoute: 20 %, then an experiment of the stable and canary templates
/// with the verdict analysis, then full promotion.
fn experiment_strategy(verdict: &str) -> Value {
    route_strategy(json!([
        {"setWeight": 20},
        {"experiment": {
            "duration": "6s", "scaleDownDelaySeconds": 2,
            "templates": [
                {"name": "baseline", "specRef": "stable", "metadata": {"labels": {"role": "baseline"}}},
                {"name": "canary", "specRef": "canary", "metadata": {"labels": {"role": "exp-canary"}}}
            ],
            "analyses": [{"name": "verdict", "templateName": "verdict",
                          "args": [{"name": "verdict", "value": verdict}]}]
        }}
    ]))
}

async fn deployed_with_experiment_step(prefix: &str, verdict: &str) -> (Harness, String) {
    let h = Harness::start(prefix).await;
    h.create_services_and_route().await;
    h.create(&h.analysis_templates(), verdict_template()).await;
    h.create(
        &h.rollouts(),
        rollout_manifest(2, experiment_strategy(verdict)),
    )
    .await;
    let first = h
        .wait_rollout("first deploy Healthy", |r| {
            observed_current(r) && phase(r) == Some(RolloutPhase::Healthy)
        })
        .await;
    (h, current_hash(&first))
}

fn current_experiment(r: &Rollout) -> Option<String> {
    r.status
        .as_ref()
        .and_then(|s| s.canary.as_ref())
        .and_then(|c| c.current_experiment.clone())
}

/// (2) The experiment's analysis fails: the Experiment is Failed, the Rollout aborts (Degraded,
/// traffic back to stable) and the Experiment's ReplicaSets are scaled down.
#[tokio::test]
async fn a_failing_experiment_step_aborts_the_rollout_back_to_stable() {
    let (h, blue) = deployed_with_experiment_step("exp-fail", "0").await;
    h.set_image("example/web:2.0").await;

    let at_step = h
        .wait_rollout("the experiment step to start", |r| {
            current_experiment(r).is_some()
        })
        .await;
    let name = current_experiment(&at_step).expect("experiment named");
    let green = current_hash(&at_step);
    assert!(
        name.starts_with(&format!("web-{green}-2-1")),
        "Argo's name <rollout>-<hash>-<revision>-<step>: {name}"
    );
    // The status names the Experiment before it is created (creates follow the status write).
    let experiment = wait_experiment(&h, &name, "the Experiment created", |_| true).await;
    let owner = &experiment
        .metadata
        .owner_references
        .as_ref()
        .expect("owned")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Rollout", "web")
    );

    let failed = wait_experiment(&h, &name, "the Experiment Failed", |e| {
        experiment_phase(e).is_some_and(|p| p.is_completed())
    })
    .await;
    assert_eq!(experiment_phase(&failed), Some(AnalysisPhase::Failed));

    let aborted = h
        .wait_rollout("the Rollout Degraded", |r| {
            observed_current(r) && phase(r) == Some(RolloutPhase::Degraded)
        })
        .await;
    let message = aborted
        .status
        .as_ref()
        .and_then(|s| s.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains(&format!("Experiment \"{name}\" Failed")),
        "{message}"
    );
    assert_eq!(h.route_weights().await, (100, 0), "traffic back to stable");
    assert_eq!(h.selector_hash("web-canary").await, Some(blue.clone()));
    wait_for(
        "the experiment's ReplicaSets scaled down",
        TIMEOUT,
        || async {
            let rs = template_replica_sets(&h, &name).await;
            (!rs.is_empty() && rs.iter().all(|(_, spec, _)| *spec == 0)).then_some(())
        },
    )
    .await;
}

/// (3) The experiment passes: the step completes and the Rollout goes on to Healthy on the new
/// revision; the Experiment is Successful and scaled down.
#[tokio::test]
async fn a_passing_experiment_step_lets_the_rollout_become_healthy() {
    let (h, _) = deployed_with_experiment_step("exp-pass", "1").await;
    h.set_image("example/web:2.0").await;
    let at_step = h
        .wait_rollout("the experiment step to start", |r| {
            current_experiment(r).is_some()
        })
        .await;
    let name = current_experiment(&at_step).expect("experiment named");
    let green = current_hash(&at_step);
    // The step lasts at least the experiment's 6 s duration: the tree names its Experiment.
    let tree = kubectl_sluice(
        &E2eEnv::load(),
        Some(&h.ns.name),
        &["get", "rollout", "web"],
    )
    .await;
    assert!(
        tree.stdout
            .lines()
            .any(|l| l.trim_start().starts_with("Experiment:") && l.contains(&name)),
        "{}",
        tree.stdout
    );
    let running = wait_experiment(&h, &name, "the Experiment Running", |e| {
        experiment_phase(e) == Some(AnalysisPhase::Running)
    })
    .await;
    assert_eq!(running.spec.templates.len(), 2);
    let replica_sets = template_replica_sets(&h, &name).await;
    assert_eq!(
        replica_sets
            .iter()
            .map(|(t, spec, _)| (t.as_str(), *spec))
            .collect::<Vec<_>>(),
        vec![("baseline", 1), ("canary", 1)]
    );

    let healthy = wait_for(
        "the Rollout Healthy on the new revision",
        TIMEOUT,
        || async {
            let r = h.rollouts().get("web").await.ok()?;
            (observed_current(&r)
                && phase(&r) == Some(RolloutPhase::Healthy)
                && r.status.as_ref().and_then(|s| s.stable_rs.clone()) == Some(green.clone()))
            .then_some(r)
        },
    )
    .await;
    assert_eq!(current_experiment(&healthy), None);
    let done = experiments(&h).get(&name).await.expect("experiment");
    assert_eq!(experiment_phase(&done), Some(AnalysisPhase::Successful));
    let run_phase = done
        .status
        .as_ref()
        .and_then(|s| s.analysis_runs.first())
        .map(|r| r.phase);
    assert_eq!(run_phase, Some(AnalysisPhase::Successful));
    assert_eq!(h.route_weights().await, (100, 0));
    wait_for(
        "the experiment's ReplicaSets scaled down",
        TIMEOUT,
        || async {
            let rs = template_replica_sets(&h, &name).await;
            rs.iter().all(|(_, spec, _)| *spec == 0).then_some(())
        },
    )
    .await;
}

/// R10: a controller killed while the experiment step runs continues with the same Experiment:
/// no second Experiment, no second ReplicaSet or AnalysisRun, and the Rollout completes.
#[tokio::test]
async fn a_controller_killed_during_an_experiment_step_continues_without_duplicates() {
    let (mut h, _) = deployed_with_experiment_step("exp-crash", "1").await;
    h.set_image("example/web:2.0").await;
    let at_step = h
        .wait_rollout("the experiment step to start", |r| {
            current_experiment(r).is_some()
        })
        .await;
    let name = current_experiment(&at_step).expect("experiment named");
    wait_experiment(&h, &name, "the Experiment's ReplicaSets created", |e| {
        e.status
            .as_ref()
            .is_some_and(|s| s.template_statuses.len() == 2)
    })
    .await;
    h.restart_controller();
    let green = current_hash(&at_step);
    wait_for(
        "the Rollout Healthy on the new revision",
        TIMEOUT,
        || async {
            let r = h.rollouts().get("web").await.ok()?;
            (observed_current(&r)
                && phase(&r) == Some(RolloutPhase::Healthy)
                && r.status.as_ref().and_then(|s| s.stable_rs.clone()) == Some(green.clone()))
            .then_some(())
        },
    )
    .await;
    let all = experiments(&h)
        .list(&ListParams::default())
        .await
        .expect("list experiments")
        .items;
    assert_eq!(all.len(), 1, "one Experiment only");
    assert_eq!(template_replica_sets(&h, &name).await.len(), 2);
    let runs = h
        .analysis_runs()
        .list(&ListParams::default())
        .await
        .expect("list runs")
        .items;
    assert_eq!(
        runs.iter()
            .filter(|r| r.metadata.name.as_deref() == Some(&format!("{name}-verdict")))
            .count(),
        1
    );
    assert_eq!(runs.len(), 1, "the only AnalysisRun is the Experiment's");
}
