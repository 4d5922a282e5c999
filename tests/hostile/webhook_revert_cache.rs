//! Attacks on the webhook, the live cache and the revert loop (issue 17 items 6-8): a forged
//! webhook of a provider without a secret, an Application declaring one Secret among thousands of
//! others, and a metric provider outage during a canary. Each ends in an HTTP status or an
//! Application condition, and the controller stays up.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sluice::api::analysis::{AnalysisPhase, AnalysisRun};
use sluice::api::application::RevertPhase as AppRevertPhase;
use sluice::api::rollout::RevertPhase;

use crate::common::canary_app::{
    APP, app_at_v1_with, app_files_with, commit, git, git_dir, revert_phase, reverts_of,
    wait_rollout,
};
use crate::common::gitops::{GitRepo, GitopsHarness, TIMEOUT, condition, config_map};
use crate::common::rollouts::{routes, success_rate_template};
use crate::common::{ControllerProcess, free_local_addr, http_get, wait_for};

async fn assert_healthy(controller: &ControllerProcess) {
    let healthz = http_get(&format!("{}/healthz", controller.metrics_url)).await;
    assert_eq!(
        healthz.map(|(status, _)| status),
        Some(200),
        "the controller answers /healthz"
    );
}

async fn fetches(h: &GitopsHarness) -> f64 {
    h.controller
        .metric_with("sluice_git_requests_total", &[("type", "fetch")])
        .await
        .unwrap_or(0.0)
}

/// POSTs `body` to the harness's webhook with `headers`; the status and the body.
async fn post_webhook(h: &GitopsHarness, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .post(&h.webhook_url)
        .header("Content-Type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.body(body).send().await.expect("webhook answers");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// Only the GitHub secret is set (the harness's controller): an unsigned GitLab push for the
/// tracked repository is refused with 403 and fetches nothing; an oversized body gets 413; the
/// signed GitHub push of the same commit then applies it.
#[tokio::test]
async fn an_unsigned_gitlab_push_is_refused_when_only_the_github_secret_is_set() {
    // Polling once an hour: only an accepted webhook can bring the commit in.
    let h = GitopsHarness::start("hostile-webhook", "1h").await;
    let repo = GitRepo::create(&h.env, "hostile-webhook");
    let v1 = repo.commit("v1", &[("app/cm.yaml", Some(&config_map("cfg", "v1")))]);
    h.create_app(
        "app",
        &repo,
        "app",
        json!({"syncPolicy": {"automated": {}}}),
    )
    .await;
    h.wait_synced("app", &v1).await;
    repo.commit("v2", &[("app/cm.yaml", Some(&config_map("cfg", "v2")))]);
    let before = fetches(&h).await;

    let gitlab_push = json!({"object_kind": "push", "ref": "refs/heads/main",
        "project": {"git_http_url": repo.url, "web_url": repo.url},
        "repository": {"url": repo.url}})
    .to_string();
    let (status, body) = post_webhook(
        &h,
        &[("X-Gitlab-Event", "Push Hook")],
        gitlab_push.clone().into_bytes(),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("SLUICE_WEBHOOK_GITLAB_SECRET"),
        "the refusal says what to configure: {body}"
    );
    // A token the controller never configured does not help either.
    let (status, _) = post_webhook(
        &h,
        &[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", "guess")],
        gitlab_push.into_bytes(),
    )
    .await;
    assert_eq!(status, 403);
    // Larger than the 1 MiB limit: refused before it is buffered.
    let (status, _) = post_webhook(
        &h,
        &[("X-GitHub-Event", "push")],
        vec![b' '; 2 * 1024 * 1024],
    )
    .await;
    assert_eq!(status, 413);

    // Nothing was fetched: the counter stays put for a few seconds (a refused push that had
    // been taken would fetch within milliseconds), and the ConfigMap is still v1.
    let window = std::time::Instant::now();
    while window.elapsed() < Duration::from_secs(3) {
        assert_eq!(fetches(&h).await, before, "a refused push fetched");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(h.config_value("cfg").await.as_deref(), Some("v1"));
    assert_healthy(&h.controller).await;

    // The control: the signed GitHub push of the same repository is taken and applies v2.
    assert_eq!(h.push_event(&repo, true).await, 200);
    h.wait_config("cfg", Some("v2")).await;
    assert!(fetches(&h).await > before);
    assert_healthy(&h.controller).await;
}

/// The resident set of the controller process, in bytes.
fn rss_bytes(controller: &ControllerProcess) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", controller.child.id()))
        .expect("the controller process is running");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kib * 1024
}

const UNRELATED_SECRETS: usize = 2_000;
const SECRET_BYTES: usize = 24 * 1024;

/// An Application declares one Secret while 2,000 unrelated Secrets of 24 KiB each (47 MiB, 62 MiB
/// as the base64 a cache holds) sit in its namespace, the one the controller watches. The watch of
/// Secrets selects `sluice.dev/tracked=true`, so the controller's resident memory grows by far less
/// than caching them would take (observable from outside without trusting the controller's own
/// account); the declared Secret carries the label and is still self-healed through that watch.
#[tokio::test]
async fn declaring_one_secret_does_not_cache_every_secret() {
    let h = GitopsHarness::start("hostile-secrets", "2s").await;
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), &h.ns.name);
    let payload = "x".repeat(SECRET_BYTES);
    futures::stream::iter(0..UNRELATED_SECRETS)
        .map(|i| {
            let secrets = secrets.clone();
            let payload = payload.clone();
            async move {
                let secret: Secret = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": format!("unrelated-{i}")},
                    "stringData": {"blob": payload}
                }))
                .expect("secret");
                secrets
                    .create(&PostParams::default(), &secret)
                    .await
                    .expect("create an unrelated Secret");
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    assert_healthy(&h.controller).await;
    let before = rss_bytes(&h.controller);

    let repo = GitRepo::create(&h.env, "hostile-secrets");
    let declared = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "declared"},
                          "stringData": {"token": "from-git"}})
    .to_string();
    let v1 = repo.commit("one secret", &[("app/secret.yaml", Some(&declared))]);
    h.create_app(
        "app",
        &repo,
        "app",
        json!({"syncPolicy": {"automated": {"selfHeal": true}}}),
    )
    .await;
    h.wait_synced("app", &v1).await;
    let applied = secrets.get("declared").await.expect("the declared Secret");
    assert_eq!(
        applied
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("sluice.dev/tracked"))
            .map(String::as_str),
        Some("true")
    );

    // Drift of the tracked Secret is seen through the labelled watch and healed.
    secrets
        .patch(
            "declared",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"token": "changed-by-hand"}})),
        )
        .await
        .expect("edit the declared Secret");
    wait_for("the declared Secret healed", TIMEOUT, || async {
        let s = secrets.get("declared").await.ok()?;
        let token = s.data?.get("token")?.0.clone();
        (token == b"from-git").then_some(())
    })
    .await;

    let after = rss_bytes(&h.controller);
    let grown = after.saturating_sub(before);
    let cached_size = (UNRELATED_SECRETS * SECRET_BYTES) as u64;
    println!(
        "figure: controller RSS {} MiB -> {} MiB with {UNRELATED_SECRETS} unrelated Secrets ({} MiB)",
        before >> 20,
        after >> 20,
        cached_size >> 20
    );
    assert!(
        grown < cached_size / 2,
        "the controller grew by {} MiB: it caches the unrelated Secrets ({} MiB)",
        grown >> 20,
        cached_size >> 20
    );
    assert_healthy(&h.controller).await;
}

/// A canary of a good release (2.0) whose analysis cannot reach its Prometheus (a 127.0.0.1 port
/// nobody listens on; the shared Prometheus is left alone), aborted with all traffic back on
/// stable. The repository, the commit of 2.0 and the AnalysisRun that ended in Error.
async fn canary_during_an_outage(
    h: &GitopsHarness,
    prefix: &str,
    rollback: Value,
) -> (GitRepo, String, AnalysisRun) {
    let nowhere = free_local_addr();
    let template = success_rate_template(2, |metric| {
        metric["provider"]["prometheus"]["address"] = json!(format!("http://{nowhere}"));
        metric["consecutiveErrorLimit"] = json!(1);
    });
    let (repo, _stable) = app_at_v1_with(h, prefix, &template, rollback).await;
    let ns = h.ns.name.clone();
    let v2 = commit(
        &repo,
        "web v2",
        &app_files_with(&ns, "example/web:2.0", json!({}), &template),
    );
    wait_rollout(h, "the canary aborted on the errored analysis", |r| {
        r.status.as_ref().is_some_and(|s| s.abort == Some(true))
    })
    .await;
    let runs: Api<AnalysisRun> = Api::namespaced(h.client.clone(), &ns);
    let errored = runs
        .list(&Default::default())
        .await
        .expect("list runs")
        .items
        .into_iter()
        .find(|r| r.status.as_ref().and_then(|s| s.phase) == Some(AnalysisPhase::Error))
        .expect("an AnalysisRun in Error");
    let route_api = routes(&h.client, &ns);
    wait_for("all traffic on stable", TIMEOUT, || async {
        let route = route_api.get("web").await.ok()?;
        let refs: &Value = &route.data["spec"]["rules"][0]["backendRefs"];
        let weight = |name: &str| {
            refs.as_array()
                .and_then(|a| a.iter().find(|r| r["name"] == name))
                .and_then(|r| r["weight"].as_i64())
        };
        (weight("web-stable") == Some(100) && weight("web-canary") == Some(0)).then_some(())
    })
    .await;
    (repo, v2, errored)
}

/// The analysis ends in Error during a Prometheus outage: traffic goes back to stable, the
/// Application records `RevertSkipped` naming `gitRevert.onError`, and Git keeps the commit.
#[tokio::test]
async fn a_prometheus_outage_during_a_canary_reverts_nothing_in_git() {
    let h = GitopsHarness::start("hostile-outage", "2s").await;
    let (repo, v2, errored) = canary_during_an_outage(&h, "hostile-outage", json!({})).await;

    let app = h
        .wait_app(APP, "RevertSkipped recorded", |a| {
            a.status
                .as_ref()
                .and_then(|s| s.revert.as_ref())
                .is_some_and(|r| r.sha == v2 && r.phase == AppRevertPhase::Skipped)
        })
        .await;
    let skipped = condition(&app, "RevertSkipped").expect("the RevertSkipped condition");
    let run_name = errored.metadata.name.clone().unwrap_or_default();
    for expected in [run_name.as_str(), "Error", v2.as_str(), "gitRevert.onError"] {
        assert!(skipped.contains(expected), "{expected:?} in {skipped:?}");
    }
    assert_eq!(condition(&app, "RevertFailed"), None);
    let dir = git_dir(&h, &repo);
    assert_eq!(
        git(&dir, &["rev-parse", "main"]),
        v2,
        "Git keeps the commit"
    );
    assert_eq!(reverts_of(&dir, &v2), 0);
    assert_healthy(&h.controller).await;
}

/// With `gitRevert.onError: true` the Application opted in: the same outage reverts the commit.
#[tokio::test]
async fn a_prometheus_outage_reverts_the_commit_when_the_application_opts_in() {
    let h = GitopsHarness::start("hostile-onerror", "2s").await;
    let (repo, v2, _errored) = canary_during_an_outage(
        &h,
        "hostile-onerror",
        json!({"gitRevert": {"onError": true}}),
    )
    .await;
    wait_rollout(&h, "the revert pushed", |r| {
        matches!(
            revert_phase(r),
            Some(RevertPhase::Pushed | RevertPhase::Synced)
        )
    })
    .await;
    let dir = git_dir(&h, &repo);
    assert_eq!(reverts_of(&dir, &v2), 1);
    let app = h.apps().get(APP).await.expect("the Application");
    assert_eq!(condition(&app, "RevertSkipped"), None);
    assert_healthy(&h.controller).await;
}
