//! The `job` metric provider on the local cluster: each measurement of a step analysis is a real
//! batch/v1 Job run by the real Job controller (KWOK completes the pods of a scheduled Job; a Job
//! whose pod can never be scheduled fails at its `activeDeadlineSeconds`). A completing Job promotes
//! the canary; a failing one aborts it and traffic returns to stable. The Jobs are owned by their
//! AnalysisRun, labelled with its uid, collected beyond the measurement retention, deleted when the
//! run is terminated while they run, and gone with the run.

mod common;

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use sluice::api::analysis::{AnalysisPhase, AnalysisRun, Measurement};
use sluice::api::rollout::{Rollout, RolloutPhase};

use common::rollouts::{
    Harness, current_hash, observed_current, phase, rollout_manifest, route_strategy,
};
use common::wait_for;

/// Jobs go through the Job controller and (for the failing one) a 10 s deadline.
const TIMEOUT: Duration = Duration::from_secs(90);
const UID_LABEL: &str = "analysisrun.argoproj.io/uid";

/// A pod spec the local cluster completes (`type: kwok` is the fake node), or one never scheduled
/// (so its Job fails at the deadline).
fn pod_spec(node_type: &str) -> Value {
    json!({
        "restartPolicy": "Never",
        "nodeSelector": {"type": node_type},
        "containers": [{"name": "smoke", "image": "example/smoke:1", "args": ["--target", "{{args.service}}"]}]
    })
}

/// Argo's documented job metric: `count` Jobs, 1 s apart, at most `keep` kept.
fn job_template(node_type: &str, count: i64, keep: i64) -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": "smoke"},
        "spec": {
            "args": [{"name": "service"}],
            "measurementRetention": [{"metricName": "smoke", "limit": keep}],
            "metrics": [{
                "name": "smoke",
                "count": count,
                "interval": "1s",
                "provider": {"job": {
                    "metadata": {"labels": {"team": "qa"}, "annotations": {"owner": "smoke-tests"}},
                    "spec": {
                        "backoffLimit": 0,
                        "activeDeadlineSeconds": 10,
                        "template": {"spec": pod_spec(node_type)}
                    }
                }}
            }]
        }
    })
}

/// A canary through the HTTPRoute: 20 %, then the job analysis step. Returns the first hash.
async fn canary_with_job_step(h: &Harness, template: Value) -> String {
    h.create_services_and_route().await;
    h.create(&h.analysis_templates(), template).await;
    let steps = json!([
        {"setWeight": 20},
        {"analysis": {"templates": [{"templateName": "smoke"}],
                      "args": [{"name": "service", "value": "web-canary"}]}}
    ]);
    h.create(&h.rollouts(), rollout_manifest(4, route_strategy(steps)))
        .await;
    current_hash(&h.wait_rollout("first deploy Healthy", healthy).await)
}

fn healthy(r: &Rollout) -> bool {
    observed_current(r) && phase(r) == Some(RolloutPhase::Healthy)
}

fn stable_rs(r: &Rollout) -> Option<String> {
    r.status.as_ref().and_then(|s| s.stable_rs.clone())
}

fn run_phase(run: &AnalysisRun) -> Option<AnalysisPhase> {
    run.status.as_ref().and_then(|s| s.phase)
}

fn measurements(run: &AnalysisRun) -> Vec<Measurement> {
    run.status
        .as_ref()
        .and_then(|s| s.metric_results.first())
        .map(|m| m.measurements.clone())
        .unwrap_or_default()
}

fn uid(run: &AnalysisRun) -> String {
    run.metadata.uid.clone().expect("a stored run has a uid")
}

fn jobs(h: &Harness) -> Api<Job> {
    Api::namespaced(h.client.clone(), &h.ns.name)
}

/// The Jobs labelled with the run's uid, by name.
async fn jobs_of(h: &Harness, run: &AnalysisRun) -> Vec<Job> {
    let selector = format!("{UID_LABEL}={}", uid(run));
    let mut list = jobs(h)
        .list(&ListParams::default().labels(&selector))
        .await
        .expect("list jobs")
        .items;
    list.retain(|j| j.metadata.deletion_timestamp.is_none());
    list.sort_by_key(|j| j.metadata.name.clone());
    list
}

/// The step AnalysisRun, once it has ended.
async fn finished_step_run(h: &Harness) -> AnalysisRun {
    let selector = "sluice.dev/rollout=web,sluice.dev/analysis-type=step";
    wait_for("the step analysis to end", TIMEOUT, || async {
        let runs = h
            .analysis_runs()
            .list(&ListParams::default().labels(selector))
            .await
            .ok()?
            .items;
        runs.into_iter()
            .find(|r| run_phase(r).is_some_and(AnalysisPhase::is_completed))
    })
    .await
}

/// Asserts the Job is the one Argo would create for measurement `id` of `run`.
fn assert_argo_job(job: &Job, run: &AnalysisRun, id: i64) {
    let meta = &job.metadata;
    assert_eq!(
        meta.name.as_deref(),
        Some(format!("{}.smoke.{id}", uid(run)).as_str())
    );
    let owner = meta
        .owner_references
        .as_ref()
        .and_then(|o| o.first())
        .expect("an owner reference");
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("AnalysisRun", uid(run).as_str())
    );
    assert_eq!(owner.controller, Some(true));
    let labels = meta.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("team").map(String::as_str), Some("qa"));
    assert_eq!(labels.get(UID_LABEL), Some(&uid(run)));
    let annotations = meta.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations
            .get("analysisrun.argoproj.io/metric-name")
            .map(String::as_str),
        Some("smoke")
    );
    assert_eq!(
        annotations.get("analysisrun.argoproj.io/name"),
        run.metadata.name.as_ref()
    );
    assert_eq!(
        annotations.get("owner").map(String::as_str),
        Some("smoke-tests")
    );
    let spec = job.spec.as_ref().expect("a spec");
    let pod_labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    assert_eq!(pod_labels.get(UID_LABEL), Some(&uid(run)));
    // The run's args reached the Job.
    let container = &spec.template.spec.as_ref().expect("pod spec").containers[0];
    assert_eq!(
        container.args.as_deref(),
        Some(["--target".to_string(), "web-canary".to_string()].as_slice())
    );
}

/// Completing Jobs pass the step (two measurements, two Jobs), the canary is promoted; with a
/// retention of 1 the first Job is collected when the second starts, and deleting the run deletes
/// the last one.
#[tokio::test]
async fn completing_jobs_pass_the_step_analysis_and_the_canary_is_promoted() {
    let h = Harness::start("job-good").await;
    let blue = canary_with_job_step(&h, job_template("kwok", 2, 1)).await;
    h.set_image("example/web:2.0").await;

    let run = finished_step_run(&h).await;
    assert_eq!(run_phase(&run), Some(AnalysisPhase::Successful), "{run:#?}");
    let result = &run.status.as_ref().expect("status").metric_results[0];
    assert_eq!((result.count, result.successful), (2, 2), "{result:#?}");
    let kept = measurements(&run);
    assert_eq!(kept.len(), 1, "retention 1: {kept:#?}");
    let last = &kept[0];
    assert_eq!(last.phase, AnalysisPhase::Successful);
    assert_eq!(
        last.metadata.get("job-name"),
        Some(&format!("{}.smoke.2", uid(&run)))
    );
    assert_eq!(last.metadata.get("job-namespace"), Some(&h.ns.name));

    let done = h
        .wait_rollout("promoted and Healthy", |r| {
            healthy(r) && stable_rs(r).as_deref() != Some(blue.as_str())
        })
        .await;
    assert_eq!(stable_rs(&done), Some(current_hash(&done)));
    wait_for("all traffic on the new stable", TIMEOUT, || async {
        (h.route_weights().await == (100, 0)).then_some(())
    })
    .await;

    // Only the newest Job is kept (measurement retention 1); it completed.
    let left = jobs_of(&h, &run).await;
    assert_eq!(left.len(), 1, "{left:#?}");
    assert_argo_job(&left[0], &run, 2);
    let conditions = left[0]
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Complete" && c.status == "True"),
        "{conditions:#?}"
    );

    // The run's Jobs go with the run (owner reference, Kubernetes' garbage collector).
    h.analysis_runs()
        .delete(
            run.metadata.name.as_deref().unwrap_or_default(),
            &DeleteParams::default(),
        )
        .await
        .expect("delete the run");
    wait_for("the run's Jobs deleted with it", TIMEOUT, || async {
        jobs_of(&h, &run).await.is_empty().then_some(())
    })
    .await;
    h.ns.delete().await;
}

/// A Job that fails (never scheduled, its 10 s deadline passes) fails the step: the rollout aborts,
/// traffic returns to stable, and the run's message carries the Job's reason.
#[tokio::test]
async fn a_failing_job_aborts_the_canary_and_traffic_returns_to_stable() {
    let h = Harness::start("job-bad").await;
    let blue = canary_with_job_step(&h, job_template("nowhere", 1, 10)).await;
    h.set_image("example/web:bad").await;

    let run = finished_step_run(&h).await;
    assert_eq!(run_phase(&run), Some(AnalysisPhase::Failed), "{run:#?}");
    let taken = measurements(&run);
    assert_eq!(taken.len(), 1, "{taken:#?}");
    assert_eq!(taken[0].phase, AnalysisPhase::Failed);
    let why = taken[0].message.clone().unwrap_or_default();
    assert!(why.contains("DeadlineExceeded"), "{why}");

    let aborted = h
        .wait_rollout("aborted and Degraded", |r| {
            observed_current(r)
                && phase(r) == Some(RolloutPhase::Degraded)
                && r.status.as_ref().is_some_and(|s| s.abort == Some(true))
        })
        .await;
    assert_eq!(stable_rs(&aborted), Some(blue.clone()));
    let message = aborted
        .status
        .as_ref()
        .and_then(|s| s.message.clone())
        .unwrap_or_default();
    assert!(message.contains("smoke"), "{message}");
    wait_for(
        "route back to 100/0, canary Service on stable",
        TIMEOUT,
        || async {
            (h.route_weights().await == (100, 0)
                && h.selector_hash("web-canary").await.as_deref() == Some(blue.as_str()))
            .then_some(())
        },
    )
    .await;

    // The failed Job stays (within the retention), owned by its run.
    let left = jobs_of(&h, &run).await;
    assert_eq!(left.len(), 1, "{left:#?}");
    assert_argo_job(&left[0], &run, 1);
    h.ns.delete().await;
}

/// A run measured by a Job that never ends: the measurement stays Running across a controller
/// crash (no second Job), and terminating the run deletes the Job; the measurement is Inconclusive,
/// "Metric Terminated", as in Argo.
#[tokio::test]
async fn terminating_a_run_deletes_its_running_job_even_after_a_restart() {
    let mut h = Harness::start("job-term").await;
    let run = json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisRun",
        "metadata": {"name": "smoke"},
        "spec": {"args": [{"name": "service", "value": "web-canary"}], "metrics": [{
            "name": "smoke",
            "provider": {"job": {"spec": {"backoffLimit": 0, "template": {"spec": pod_spec("nowhere")}}}}
        }]}
    });
    h.create(&h.analysis_runs(), run).await;
    let api = h.analysis_runs();
    let running = |what: &'static str| {
        let api = api.clone();
        async move {
            wait_for(what, TIMEOUT, || async {
                let run = api.get("smoke").await.ok()?;
                let m = measurements(&run);
                (m.len() == 1
                    && m[0].phase == AnalysisPhase::Running
                    && m[0].metadata.contains_key("job-name"))
                .then_some(run)
            })
            .await
        }
    };
    let run = running("the Job started").await;
    assert_eq!(run_phase(&run), Some(AnalysisPhase::Running));
    assert_eq!(jobs_of(&h, &run).await.len(), 1);

    let resume_at = |run: &AnalysisRun| measurements(run).first().and_then(|m| m.resume_at.clone());
    let before = resume_at(&run);

    h.restart_controller();
    // The new controller resumes the same measurement (it reads the Job and schedules its next
    // look): still one measurement, still Running, still one Job.
    let run = wait_for("the new controller to look at the Job", TIMEOUT, || async {
        let run = api.get("smoke").await.ok()?;
        let m = measurements(&run);
        (m.len() == 1 && m[0].phase == AnalysisPhase::Running && resume_at(&run) != before)
            .then_some(run)
    })
    .await;
    let left = jobs_of(&h, &run).await;
    assert_eq!(left.len(), 1, "no second Job: {left:#?}");

    api.patch(
        "smoke",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"terminate": true}})),
    )
    .await
    .expect("terminate the run");
    let ended = wait_for("the run ended", TIMEOUT, || async {
        let run = api.get("smoke").await.ok()?;
        run_phase(&run)
            .is_some_and(AnalysisPhase::is_completed)
            .then_some(run)
    })
    .await;
    let m = measurements(&ended);
    assert_eq!(m.len(), 1, "{m:#?}");
    assert_eq!(m[0].phase, AnalysisPhase::Inconclusive);
    assert_eq!(m[0].message.as_deref(), Some("Metric Terminated"));
    assert!(m[0].finished_at.is_some());
    wait_for("the running Job deleted", TIMEOUT, || async {
        jobs_of(&h, &ended).await.is_empty().then_some(())
    })
    .await;
    h.ns.delete().await;
}

/// A JobSpec the API server refuses (here a misspelt field: the create is strict) is an Error
/// measurement naming the field; with `consecutiveErrorLimit: 0` the run ends in Error at once.
#[tokio::test]
async fn a_job_spec_the_api_server_refuses_is_an_error_naming_the_field() {
    let h = Harness::start("job-invalid").await;
    let run = json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisRun",
        "metadata": {"name": "smoke"},
        "spec": {"metrics": [{
            "name": "smoke",
            "consecutiveErrorLimit": 0,
            "provider": {"job": {"spec": {"template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "smoke", "imagee": "example/smoke:1"}]
            }}}}}
        }]}
    });
    h.create(&h.analysis_runs(), run).await;
    let api = h.analysis_runs();
    let ended = wait_for("the run in Error", TIMEOUT, || async {
        let run = api.get("smoke").await.ok()?;
        (run_phase(&run) == Some(AnalysisPhase::Error)).then_some(run)
    })
    .await;
    let m = measurements(&ended);
    assert_eq!(m.len(), 1, "{m:#?}");
    assert_eq!(m[0].phase, AnalysisPhase::Error);
    let why = m[0].message.clone().unwrap_or_default();
    assert!(why.contains("imagee"), "{why}");
    assert!(jobs_of(&h, &ended).await.is_empty());
    h.ns.delete().await;
}
