//! The loop (docs/behaviour.md L1, L2, L6) on the local cluster: an Application syncs a canary
//! Rollout from the local git server; a `:bad` commit fails its analysis on real Prometheus data;
//! traffic returns to stable, the commit is reverted in Git by the controller, the Application
//! syncs the revert and everything is Healthy again; a good commit afterwards rolls out normally.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::Api;
use kube::api::ListParams;
use serde_json::json;
use sluice::api::analysis::{AnalysisPhase, AnalysisRun};
use sluice::api::rollout::{RevertPhase, RolloutPhase};

use common::canary_app::{
    APP, app_at_v1, app_at_v1_with, app_files, app_files_labelled, app_files_with_args, commit,
    git, git_dir, healthy, revert_phase, reverts_of, stable_rs, synced_at, wait_rollout,
};
use common::gitops::{GitopsHarness, TIMEOUT};
use common::rollouts::{WeightZeroWatch, current_hash, observed_current, phase};
use common::{ControllerProcess, sole_leader, wait_for};

#[tokio::test]
async fn l1_a_failed_canary_is_rolled_back_and_its_commit_reverted_in_git() {
    let h = GitopsHarness::start("loop", "2s").await;
    let (repo, blue) = app_at_v1(&h, "loop").await;
    let ns = h.ns.name.clone();

    // The bad release: the analysis fails at 20 %, traffic goes back at once, the commit is reverted.
    let routes = WeightZeroWatch::start_in(&h.client, &ns);
    let bad = commit(
        &repo,
        "web: release bad",
        &app_files(&ns, "example/web:bad"),
    );
    let aborted = wait_rollout(&h, "the bad canary aborted", |r| {
        r.status.as_ref().is_some_and(|s| s.abort == Some(true))
    })
    .await;
    let record = aborted
        .status
        .as_ref()
        .and_then(|s| {
            s.revisions
                .iter()
                .find(|r| Some(&r.pod_template_hash) == s.current_pod_hash.as_ref())
        })
        .cloned()
        .expect("the bad revision's record");
    assert_eq!(record.git_revision.as_deref(), Some(bad.as_str()));
    assert_eq!(record.application, Some(format!("{ns}/{APP}")));
    let zero_at = routes.first_zero_after_canary_traffic().await;
    let runs: Api<AnalysisRun> = Api::namespaced(h.client.clone(), &ns);
    let failed_run = runs
        .list(&ListParams::default().labels("sluice.dev/analysis-type=step"))
        .await
        .expect("list runs")
        .items
        .into_iter()
        .find(|r| r.status.as_ref().and_then(|s| s.phase) == Some(AnalysisPhase::Failed))
        .expect("a failed step run");
    let failed_at = failed_run
        .status
        .as_ref()
        .and_then(|s| s.metric_results.first())
        .and_then(|m| {
            m.measurements
                .iter()
                .find(|x| x.phase == AnalysisPhase::Failed)
        })
        .and_then(|m| m.finished_at.as_ref())
        .map(|t| t.0)
        .expect("the failing measurement's time");

    let pushed = wait_rollout(&h, "the revert pushed", |r| {
        matches!(
            revert_phase(r),
            Some(RevertPhase::Pushed | RevertPhase::Synced)
        )
    })
    .await;
    let pushed_at = jiff::Timestamp::now();
    let revert_commit = pushed
        .status
        .as_ref()
        .and_then(|s| s.revert.as_ref())
        .and_then(|r| r.revert_commit.clone())
        .expect("the revert commit");
    let dir = git_dir(&h, &repo);
    assert_eq!(git(&dir, &["rev-parse", "main"]), revert_commit);
    assert_eq!(git(&dir, &["rev-parse", "main^"]), bad);
    let message = git(&dir, &["log", "-1", "--format=%B", "main"]);
    let run_name = failed_run.metadata.name.clone().unwrap_or_default();
    for expected in [
        format!("Sluice-Reverts: {bad}"),
        format!("Sluice-Rollout: {ns}/web"),
        format!("AnalysisRun {run_name} failed"),
        "success-rate".to_string(),
    ] {
        assert!(message.contains(&expected), "{expected:?} in:\n{message}");
    }
    assert_eq!(
        git(&dir, &["log", "-1", "--format=%an <%ae>", "main"]),
        "Sluice <sluice@localhost>"
    );
    assert_eq!(
        git(&dir, &["show", "main:app/rollout.yaml"]),
        app_files(&ns, "example/web:1.0")[4].1
    );
    // The push is in the controller's Git request metrics, counted and timed.
    for family in [
        "sluice_git_requests_total",
        "sluice_git_request_duration_seconds_count",
    ] {
        let pushes = h.controller.metric_with(family, &[("type", "push")]).await;
        assert_eq!(pushes, Some(1.0), "{family}{{type=\"push\"}}");
    }

    // L2 + L1 end: the quarantine holds the bad commit; the revert syncs; all Healthy on stable.
    let app = h.wait_synced(APP, &revert_commit).await;
    let synced_at = jiff::Timestamp::now();
    let status = app.status.expect("status");
    assert!(
        status.is_quarantined(&bad),
        "{:?}",
        status.quarantined_revisions
    );
    let done = wait_rollout(&h, "Healthy on the stable revision, revert Synced", |r| {
        healthy(r) && revert_phase(r) == Some(RevertPhase::Synced)
    })
    .await;
    assert_eq!(stable_rs(&done).as_deref(), Some(blue.as_str()));
    assert_eq!(current_hash(&done), blue);
    println!(
        "figure: failing measurement -> route weight 0: {} ms; -> revert pushed (seen): {} ms; -> Application Synced+Healthy at the revert (seen): {} ms",
        zero_at.duration_since(failed_at).as_millis(),
        pushed_at.duration_since(failed_at).as_millis(),
        synced_at.duration_since(failed_at).as_millis(),
    );
    let start = Instant::now();

    // L6: a good commit afterwards rolls out and is promoted.
    let v2 = commit(&repo, "web v2", &app_files(&ns, "example/web:2.0"));
    h.wait_synced(APP, &v2).await;
    let promoted = wait_rollout(&h, "v2 promoted", |r| {
        healthy(r) && stable_rs(r).is_some_and(|s| s != blue)
    })
    .await;
    assert_eq!(stable_rs(&promoted), Some(current_hash(&promoted)));
    println!(
        "v2 promoted {} ms after its commit",
        start.elapsed().as_millis()
    );
}

/// The step analysis as a `job` metric (named as the Rollout's template): a Job whose pod selects
/// nodes of type `{{args.node-type}}`. The local cluster's fake node is `kwok` (the pod completes);
/// any other type is never scheduled, so the Job fails at its 10 s deadline.
fn job_template() -> serde_json::Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": "success-rate"},
        "spec": {
            "args": [{"name": "namespace"}, {"name": "rollout"}, {"name": "revision"},
                     {"name": "window"}, {"name": "node-type", "value": "kwok"}],
            "metrics": [{"name": "smoke", "provider": {"job": {"spec": {
                "backoffLimit": 0, "activeDeadlineSeconds": 10,
                "template": {"spec": {
                    "restartPolicy": "Never",
                    "nodeSelector": {"type": "{{args.node-type}}"},
                    "containers": [{"name": "smoke", "image": "example/smoke:1",
                                    "args": ["{{args.rollout}}", "{{args.revision}}"]}]
                }}
            }}}}]
        }
    })
}

/// L1 with a Job analysis: the bad commit's smoke-test Job fails, the canary aborts, the commit is
/// reverted in Git, the Application syncs the revert and the Rollout is Healthy on stable.
#[tokio::test]
async fn l1_a_failing_job_analysis_reverts_the_commit() {
    let h = GitopsHarness::start("loop-job", "2s").await;
    let template = job_template();
    let (repo, blue) = app_at_v1_with(&h, "loop-job", &template, json!({})).await;
    let ns = h.ns.name.clone();
    let files = app_files_with_args(
        &ns,
        "example/web:bad",
        json!({}),
        &template,
        &[("node-type", "nowhere")],
    );
    let bad = commit(&repo, "web: release bad", &files);

    let pushed = wait_rollout(&h, "the revert pushed", |r| {
        matches!(
            revert_phase(r),
            Some(RevertPhase::Pushed | RevertPhase::Synced)
        )
    })
    .await;
    let revert_commit = pushed
        .status
        .as_ref()
        .and_then(|s| s.revert.as_ref())
        .and_then(|r| r.revert_commit.clone())
        .expect("the revert commit");
    let dir = git_dir(&h, &repo);
    assert_eq!(git(&dir, &["rev-parse", "main^"]), bad);
    let message = git(&dir, &["log", "-1", "--format=%B", &revert_commit]);
    assert!(
        message.contains(&format!("Sluice-Reverts: {bad}")),
        "{message}"
    );
    assert!(message.contains("smoke"), "{message}");

    // The failed measurement is the Job's, with its reason.
    let runs: Api<AnalysisRun> = Api::namespaced(h.client.clone(), &ns);
    let failed = runs
        .list(&ListParams::default().labels("sluice.dev/analysis-type=step"))
        .await
        .expect("list runs")
        .items
        .into_iter()
        .find(|r| r.status.as_ref().and_then(|s| s.phase) == Some(AnalysisPhase::Failed))
        .expect("a failed step run");
    let measurement = failed
        .status
        .as_ref()
        .and_then(|s| s.metric_results.first())
        .and_then(|m| m.measurements.last())
        .cloned()
        .expect("a measurement");
    assert_eq!(measurement.phase, AnalysisPhase::Failed);
    let why = measurement.message.unwrap_or_default();
    assert!(why.contains("DeadlineExceeded"), "{why}");
    assert!(measurement.metadata.contains_key("job-name"));

    h.wait_synced(APP, &revert_commit).await;
    let done = wait_rollout(&h, "Healthy on the stable revision, revert Synced", |r| {
        healthy(r) && revert_phase(r) == Some(RevertPhase::Synced)
    })
    .await;
    assert_eq!(stable_rs(&done).as_deref(), Some(blue.as_str()));
    assert_eq!(h_route_weights(&h).await, (100, 0));
}

/// L3: someone changes the same line after the bad commit: the revert conflicts, nothing is pushed,
/// the Application and the Rollout say why (naming the file), traffic stays on stable.
#[tokio::test]
async fn l3_a_conflicting_later_commit_pushes_nothing_and_says_why() {
    let h = GitopsHarness::start("loop-conflict", "2s").await;
    let (repo, _) = app_at_v1(&h, "loop-conflict").await;
    let ns = h.ns.name.clone();
    let dir = git_dir(&h, &repo);
    let bad = commit(&repo, "web bad", &app_files(&ns, "example/web:bad"));
    synced_at(&h, &bad).await;
    // Before the analysis fails (it measures after 10 s), a person labels the Rollout: the same
    // line of app/rollout.yaml, no new revision.
    let later = commit(
        &repo,
        "label the rollout",
        &app_files_labelled(&ns, "example/web:bad", json!({"team": "shop"})),
    );
    synced_at(&h, &later).await;
    let r = wait_rollout(&h, "the revert refused", |r| {
        revert_phase(r) == Some(RevertPhase::Failed)
    })
    .await;
    assert!(r.status.as_ref().is_some_and(|s| s.abort == Some(true)));
    assert_eq!(git(&dir, &["rev-parse", "main"]), later, "nothing pushed");
    assert_eq!(reverts_of(&dir, &bad), 0);
    let message = r
        .status
        .as_ref()
        .and_then(|s| s.revert.as_ref())
        .and_then(|v| v.message.clone())
        .unwrap_or_default();
    assert!(message.contains("app/rollout.yaml"), "{message}");
    let app = h
        .wait_app(APP, "RevertFailed", |a| {
            common::gitops::condition(a, "RevertFailed").is_some()
        })
        .await;
    let condition = common::gitops::condition(&app, "RevertFailed").unwrap_or_default();
    assert!(condition.contains("app/rollout.yaml"), "{condition}");
    assert_eq!(
        h_route_weights(&h).await,
        (100, 0),
        "traffic stays on stable"
    );
}

/// L4: the server refuses the first push (a pre-receive hook): the push is retried and lands once.
#[tokio::test]
async fn l4_a_refused_push_is_retried_and_lands_exactly_once() {
    let h = GitopsHarness::start("loop-refuse", "2s").await;
    let (repo, blue) = app_at_v1(&h, "loop-refuse").await;
    let dir = git_dir(&h, &repo);
    let marker = dir.join("refused-once");
    let hook = dir.join("hooks").join("pre-receive");
    std::fs::create_dir_all(dir.join("hooks")).expect("hooks dir");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nif [ ! -f '{m}' ]; then touch '{m}'; echo 'busy: try again' >&2; exit 1; fi\nexit 0\n",
            m = marker.display()
        ),
    )
    .expect("write hook");
    Command::new("chmod")
        .args(["+x"])
        .arg(&hook)
        .status()
        .expect("chmod");
    let bad = commit(&repo, "web bad", &app_files(&h.ns.name, "example/web:bad"));
    let r = wait_rollout(&h, "the revert synced", |r| {
        healthy(r) && revert_phase(r) == Some(RevertPhase::Synced)
    })
    .await;
    assert!(marker.exists(), "the hook refused a first push");
    assert_eq!(reverts_of(&dir, &bad), 1);
    assert_eq!(stable_rs(&r).as_deref(), Some(blue.as_str()));
}

/// L4, R10: the controller is killed right after the revert reached the server; the new one finds
/// it by its trailer: one revert commit, and the loop completes.
#[tokio::test]
async fn l4_a_controller_killed_after_pushing_makes_no_second_revert() {
    let mut h = GitopsHarness::start("loop-kill", "2s").await;
    let (repo, blue) = app_at_v1(&h, "loop-kill").await;
    let dir = git_dir(&h, &repo);
    let bad = commit(&repo, "web bad", &app_files(&h.ns.name, "example/web:bad"));
    wait_for("the revert on the server", TIMEOUT, || async {
        (reverts_of(&dir, &bad) == 1).then_some(())
    })
    .await;
    h.controller.signal("KILL");
    let cache = tempfile::tempdir().expect("cache");
    let (controller, _) = common::gitops::start_controller(&h.env, &h.ns.name, "2s", cache.path());
    h.controller = controller;
    let r = wait_rollout(&h, "the revert synced after the restart", |r| {
        healthy(r) && revert_phase(r) == Some(RevertPhase::Synced)
    })
    .await;
    assert_eq!(reverts_of(&dir, &bad), 1, "exactly one revert commit");
    assert_eq!(stable_rs(&r).as_deref(), Some(blue.as_str()));
}

async fn h_route_weights(h: &GitopsHarness) -> (i64, i64) {
    let route = common::rollouts::routes(&h.client, &h.ns.name)
        .get("web")
        .await
        .expect("route");
    let weight = |i: usize| {
        route.data["spec"]["rules"][0]["backendRefs"][i]["weight"]
            .as_i64()
            .unwrap_or(-1)
    };
    (weight(0), weight(1))
}

/// L5: a manual abort leaves Git alone; `kubectl sluice abort --revert` asks for the revert, which
/// is pushed and synced like an automatic one.
#[tokio::test]
async fn l5_a_manual_abort_reverts_only_when_asked() {
    let h = GitopsHarness::start("loop-manual", "2s").await;
    let (repo, blue) = app_at_v1(&h, "loop-manual").await;
    let dir = git_dir(&h, &repo);
    let ns = h.ns.name.clone();
    // A good release, aborted by hand while its analysis waits for its first measurement.
    let v2 = commit(&repo, "web v2", &app_files(&ns, "example/web:2.0"));
    wait_rollout(&h, "v2 at its analysis step", |r| {
        r.status.as_ref().and_then(|s| s.current_step_index) == Some(1)
    })
    .await;
    let kubectl = |args: &[&str]| {
        let plugin_dir = Path::new(env!("CARGO_BIN_EXE_kubectl-sluice"))
            .parent()
            .expect("plugin dir")
            .to_path_buf();
        let out = Command::new("kubectl")
            .args(args)
            .arg(format!("--namespace={ns}"))
            .env("KUBECONFIG", h.env.get("KUBECONFIG"))
            .env(
                "PATH",
                format!("{}:{}", plugin_dir.display(), h.env.get("PATH")),
            )
            .output()
            .expect("run kubectl");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    kubectl(&["sluice", "abort", "web"]);
    let aborted = wait_rollout(&h, "aborted by hand", |r| {
        observed_current(r) && phase(r) == Some(RolloutPhase::Degraded)
    })
    .await;
    assert_eq!(
        revert_phase(&aborted),
        None,
        "a manual abort asks for no revert"
    );
    assert_eq!(stable_rs(&aborted).as_deref(), Some(blue.as_str()));
    assert_eq!(git(&dir, &["rev-parse", "main"]), v2);

    let said = kubectl(&["sluice", "abort", "web", "--revert"]);
    assert!(said.contains("revert"), "{said}");
    let done = wait_rollout(&h, "the requested revert synced", |r| {
        healthy(r) && revert_phase(r) == Some(RevertPhase::Synced)
    })
    .await;
    assert_eq!(reverts_of(&dir, &v2), 1);
    assert_eq!(stable_rs(&done).as_deref(), Some(blue.as_str()));
    let message = git(&dir, &["log", "-1", "--format=%B", "main"]);
    assert!(message.contains("the rollout was aborted"), "{message}");
}

/// The AnalysisRuns of the revision `hash`.
async fn runs_of(h: &GitopsHarness, hash: &str) -> Vec<AnalysisRun> {
    Api::<AnalysisRun>::namespaced(h.client.clone(), &h.ns.name)
        .list(&ListParams::default().labels(&format!("rollouts-pod-template-hash={hash}")))
        .await
        .expect("list AnalysisRuns")
        .items
}

/// The ReplicaSets the Rollout owns, by pod-template hash.
async fn replica_set_hashes(h: &GitopsHarness) -> Vec<String> {
    let sets: Api<ReplicaSet> = Api::namespaced(h.client.clone(), &h.ns.name);
    let mut hashes: Vec<String> = sets
        .list(&ListParams::default())
        .await
        .expect("list ReplicaSets")
        .items
        .into_iter()
        .filter(|rs| {
            rs.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.kind == "Rollout" && o.name == "web")
        })
        .filter_map(|rs| rs.metadata.labels?.remove("rollouts-pod-template-hash"))
        .collect();
    hashes.sort();
    hashes
}

/// Waits for the canary of a new revision (not `old`) to have its AnalysisRun, then kills the
/// leader among `alive` — mid-rollout, before the run's first measurement (10 s in) — and returns
/// the canary's hash and the index of the killed process in `alive`.
async fn kill_leader_mid_analysis(
    h: &GitopsHarness,
    old: &str,
    alive: &[&ControllerProcess],
) -> (String, usize) {
    let canary = wait_rollout(h, "a new canary revision", |r| {
        let hash = current_hash(r);
        !hash.is_empty() && hash != old
    })
    .await;
    let hash = current_hash(&canary);
    wait_for("the canary's AnalysisRun", TIMEOUT, || async {
        (!runs_of(h, &hash).await.is_empty()).then_some(())
    })
    .await;
    let leader = sole_leader(alive, TIMEOUT).await;
    alive[leader].signal("KILL");
    (hash, leader)
}

/// Issue 9, R10: two controllers with `--leader-elect`. The leader is killed while a good canary's
/// analysis runs; the standby leads once the 15 s lease expires and promotes it. A third process
/// stands by; a bad release, the leader killed again while its analysis runs: the new leader fails
/// the analysis, rolls back and reverts the commit. One ReplicaSet per revision, one AnalysisRun per
/// canary, one revert commit.
#[tokio::test]
async fn failover_a_standby_finishes_rollouts_and_reverts_without_duplicates() {
    let elect = ["--leader-elect"];
    let h = GitopsHarness::start_with("failover", "2s", &elect, common::gitops::DEBUG_LOG).await;
    let caches = [
        tempfile::tempdir().expect("cache"),
        tempfile::tempdir().expect("cache"),
    ];
    let standby = |cache: &tempfile::TempDir| {
        common::gitops::start_controller_with(
            &h.env,
            &h.ns.name,
            "2s",
            cache.path(),
            &elect,
            common::gitops::DEBUG_LOG,
        )
        .0
    };
    let second = standby(&caches[0]);
    let mut alive = vec![&h.controller, &second];
    let (repo, blue) = app_at_v1(&h, "failover").await;
    let dir = git_dir(&h, &repo);

    // A good release, its leader killed mid-analysis: the standby finishes it.
    commit(&repo, "web v2", &app_files(&h.ns.name, "example/web:2.0"));
    let (green, killed) = kill_leader_mid_analysis(&h, &blue, &alive).await;
    alive.remove(killed);
    let promoted = wait_rollout(&h, "v2 promoted by the standby", |r| {
        healthy(r) && stable_rs(r).as_deref() == Some(green.as_str())
    })
    .await;
    assert_eq!(current_hash(&promoted), green);
    let runs = runs_of(&h, &green).await;
    assert_eq!(runs.len(), 1, "one AnalysisRun for the canary");
    assert_eq!(
        runs[0].status.as_ref().and_then(|s| s.phase),
        Some(AnalysisPhase::Successful)
    );
    let mut want = vec![blue.clone(), green.clone()];
    want.sort();
    assert_eq!(replica_set_hashes(&h).await, want);

    // A bad release, the new leader killed mid-analysis: the third process reverts it, once.
    let third = standby(&caches[1]);
    alive.push(&third);
    let bad = commit(&repo, "web bad", &app_files(&h.ns.name, "example/web:bad"));
    let (red, _) = kill_leader_mid_analysis(&h, &green, &alive).await;
    let reverted = wait_rollout(&h, "the bad canary reverted and synced", |r| {
        healthy(r) && revert_phase(r) == Some(RevertPhase::Synced)
    })
    .await;
    assert_eq!(stable_rs(&reverted).as_deref(), Some(green.as_str()));
    assert_eq!(reverts_of(&dir, &bad), 1, "exactly one revert commit");
    let runs = runs_of(&h, &red).await;
    assert_eq!(runs.len(), 1, "one AnalysisRun for the bad canary");
    assert_eq!(
        runs[0].status.as_ref().and_then(|s| s.phase),
        Some(AnalysisPhase::Failed)
    );
    want.push(red);
    want.sort();
    assert_eq!(replica_set_hashes(&h).await, want);
}
