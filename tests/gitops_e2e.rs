//! The Application reconciler end to end: a real `sluice controller` (scoped to the test's
//! namespace) syncs repositories served by the local git daemon into the local cluster; pods of
//! the Deployments become Ready on the KWOK node. Each test names the docs/behaviour.md ids it
//! shows.

mod common;
#[path = "gitops_source_e2e/ssh_git.rs"]
mod ssh_git;

use std::path::Path;
use std::time::{Duration, Instant};

use common::gitops::{
    GitRepo, GitopsHarness, TIMEOUT, condition, config_map, deployment, health, revision,
    sync_status,
};
use common::wait_for;
use serde_json::{Value, json};
use sluice::api::application::{
    ApplicationSourceType, HealthStatusCode, OperationPhase, SyncStatusCode,
};

fn automated(options: Value) -> Value {
    json!({"syncPolicy": {"automated": options}})
}

fn annotation(
    obj: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<String> {
    obj.annotations.as_ref()?.get(key).cloned()
}

const KUSTOMIZATION: &str =
    "resources:\n- deployment.yaml\nnamePrefix: kz-\ncommonLabels:\n  tier: web\n";
const CHART: &str = "apiVersion: v2\nname: web\nversion: 0.1.0\n";
const CHART_VALUES: &str = "replicas: 1\nimage: example/web:1.0\n";
const CHART_DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-web
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels:
      app: {{ .Release.Name }}-web
  template:
    metadata:
      labels:
        app: {{ .Release.Name }}-web
    spec:
      containers:
      - name: web
        image: {{ .Values.image }}
"#;

#[tokio::test]
async fn g1_g6_directory_kustomize_and_helm_applications_sync_and_become_healthy() {
    let h = GitopsHarness::start("go-render", "60s").await;
    let repo = GitRepo::create(&h.env, "render");
    let sha = repo.commit(
        "three sources",
        &[
            (
                "plain/web.yaml",
                Some(&deployment("plain-web", 2, "example/web:1.0")),
            ),
            (
                "plain/nested/config.yaml",
                Some(&config_map("plain-config", "1")),
            ),
            ("kustomize/kustomization.yaml", Some(KUSTOMIZATION)),
            (
                "kustomize/deployment.yaml",
                Some(&deployment("web", 1, "example/web:1.0")),
            ),
            ("chart/Chart.yaml", Some(CHART)),
            ("chart/values.yaml", Some(CHART_VALUES)),
            ("chart/templates/deployment.yaml", Some(CHART_DEPLOYMENT)),
        ],
    );
    h.create_app(
        "plain",
        &repo,
        "plain",
        json!({"source": {"directory": {"recurse": true}},
               "syncPolicy": {"automated": {}}}),
    )
    .await;
    h.create_app("kustomized", &repo, "kustomize", automated(json!({})))
        .await;
    h.create_app(
        "charted",
        &repo,
        "chart",
        json!({"source": {"helm": {"parameters": [{"name": "replicas", "value": "2"}]}},
               "syncPolicy": {"automated": {}}}),
    )
    .await;

    // G1: Synced and Healthy at the commit, every object annotated with its Application and commit.
    let plain = h.wait_synced("plain", &sha).await;
    let kustomized = h.wait_synced("kustomized", &sha).await;
    let charted = h.wait_synced("charted", &sha).await;
    let source_type =
        |a: &sluice::api::application::Application| a.status.as_ref().and_then(|s| s.source_type);
    assert_eq!(source_type(&plain), Some(ApplicationSourceType::Directory));
    assert_eq!(
        source_type(&kustomized),
        Some(ApplicationSourceType::Kustomize)
    );
    assert_eq!(source_type(&charted), Some(ApplicationSourceType::Helm));
    assert_eq!(h.config_value("plain-config").await.as_deref(), Some("1"));
    for (name, app, replicas) in [
        ("plain-web", "plain", 2),
        ("kz-web", "kustomized", 1),
        ("charted-web", "charted", 2),
    ] {
        let d = h.deployments().get(name).await.expect(name);
        assert_eq!(
            annotation(&d.metadata, "sluice.dev/application"),
            Some(format!("{}/{app}", h.ns.name))
        );
        assert_eq!(
            annotation(&d.metadata, "sluice.dev/revision"),
            Some(sha.clone())
        );
        assert_eq!(d.spec.and_then(|s| s.replicas), Some(replicas));
    }
    let history = &plain.status.as_ref().unwrap().history;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].revision, sha);

    // Metrics: one info sample per Application with its statuses, and the syncs counted.
    let info = h
        .controller
        .metric_with(
            "sluice_application_info",
            &[
                ("namespace", h.ns.name.as_str()),
                ("name", "charted"),
                ("sync_status", "Synced"),
                ("health_status", "Healthy"),
            ],
        )
        .await;
    assert_eq!(info, Some(1.0));
    let syncs = h
        .controller
        .metric_with("sluice_application_sync_total", &[("phase", "Succeeded")])
        .await;
    assert!(syncs.is_some_and(|n| n >= 3.0), "{syncs:?}");
    h.ns.delete().await;
}

#[tokio::test]
async fn g2_a_webhook_push_is_applied_within_seconds() {
    // Polling once an hour: only the webhook can bring the commit in.
    let h = GitopsHarness::start("go-hook", "1h").await;
    let repo = GitRepo::create(&h.env, "hook");
    let first = repo.commit(
        "v1",
        &[("app/config.yaml", Some(&config_map("config", "1")))],
    );
    h.create_app("hook", &repo, "app", automated(json!({})))
        .await;
    h.wait_synced("hook", &first).await;

    let second = repo.commit(
        "v2",
        &[("app/config.yaml", Some(&config_map("config", "2")))],
    );
    // An unsigned event is refused and changes nothing.
    assert_eq!(h.push_event(&repo, false).await, 401);
    let start = Instant::now();
    assert_eq!(h.push_event(&repo, true).await, 200);
    h.wait_config("config", Some("2")).await;
    let applied = start.elapsed();
    println!("webhook push applied in {applied:?}");
    assert!(applied < Duration::from_secs(5), "took {applied:?}");
    h.wait_synced("hook", &second).await;
    h.ns.delete().await;
}

#[tokio::test]
async fn g2_without_a_webhook_the_next_poll_applies_the_commit() {
    let h = GitopsHarness::start("go-poll", "3s").await;
    let repo = GitRepo::create(&h.env, "poll");
    let first = repo.commit(
        "v1",
        &[("app/config.yaml", Some(&config_map("config", "1")))],
    );
    h.create_app("poll", &repo, "app", automated(json!({})))
        .await;
    h.wait_synced("poll", &first).await;
    let second = repo.commit(
        "v2",
        &[("app/config.yaml", Some(&config_map("config", "2")))],
    );
    let took = h.wait_config("config", Some("2")).await;
    println!("commit applied by polling in {took:?}");
    h.wait_synced("poll", &second).await;
    h.ns.delete().await;
}

#[tokio::test]
async fn g3_manual_policy_shows_out_of_sync_until_a_sync_is_requested() {
    let h = GitopsHarness::start("go-manual", "2s").await;
    let repo = GitRepo::create(&h.env, "manual");
    let first = repo.commit(
        "v1",
        &[("app/config.yaml", Some(&config_map("config", "1")))],
    );
    h.create_app("manual", &repo, "app", json!({})).await;
    h.wait_app("manual", "OutOfSync with the object Missing", |a| {
        sync_status(a) == SyncStatusCode::OutOfSync && health(a) == HealthStatusCode::Missing
    })
    .await;
    assert_eq!(h.config_value("config").await, None);

    h.request(
        "manual",
        json!({"sync": {}, "initiatedBy": {"username": "e2e"}}),
    )
    .await;
    let synced = h.wait_synced("manual", &first).await;
    assert!(
        synced.operation.is_none(),
        "the handled operation is removed"
    );
    let state = synced
        .status
        .as_ref()
        .unwrap()
        .operation_state
        .clone()
        .unwrap();
    assert_eq!(state.phase, OperationPhase::Succeeded);

    // A new commit: OutOfSync with the diff shown, nothing applied.
    let second = repo.commit(
        "v2",
        &[("app/config.yaml", Some(&config_map("config", "2")))],
    );
    let out = h
        .wait_app("manual", "OutOfSync at the new commit", |a| {
            sync_status(a) == SyncStatusCode::OutOfSync
                && revision(a).as_deref() == Some(second.as_str())
        })
        .await;
    let resource = &out.status.as_ref().unwrap().resources[0];
    // A unified diff from live (`-`) to Git (`+`), the tracking annotation in its context.
    assert_eq!(
        resource.diff,
        [
            "@@ -1,6 +1,6 @@",
            " apiVersion: v1",
            " data:",
            "-  v: \"1\"",
            "+  v: \"2\"",
            " kind: ConfigMap",
            " metadata:",
            "   annotations:",
        ]
    );
    assert_eq!(h.config_value("config").await.as_deref(), Some("1"));
    h.request("manual", json!({"sync": {}})).await;
    h.wait_synced("manual", &second).await;
    assert_eq!(h.config_value("config").await.as_deref(), Some("2"));
    h.ns.delete().await;
}

#[tokio::test]
async fn g4_a_live_scale_is_self_healed_and_stays_out_of_sync_without_self_heal() {
    let h = GitopsHarness::start("go-heal", "60s").await;
    let repo = GitRepo::create(&h.env, "heal");
    let sha = repo.commit(
        "two deployments",
        &[
            (
                "healed/web.yaml",
                Some(&deployment("healed", 2, "example/web:1.0")),
            ),
            (
                "kept/web.yaml",
                Some(&deployment("drifted", 2, "example/web:1.0")),
            ),
        ],
    );
    h.create_app(
        "healed",
        &repo,
        "healed",
        automated(json!({"selfHeal": true})),
    )
    .await;
    h.create_app("drifted", &repo, "kept", automated(json!({})))
        .await;
    h.wait_synced("healed", &sha).await;
    h.wait_synced("drifted", &sha).await;

    h.kubectl(&["scale", "deployment/healed", "--replicas=5"]);
    h.kubectl(&["scale", "deployment/drifted", "--replicas=5"]);
    let start = Instant::now();
    let replicas = |name: &'static str| {
        let api = h.deployments();
        async move {
            api.get(name)
                .await
                .ok()
                .and_then(|d| d.spec)
                .and_then(|s| s.replicas)
        }
    };
    wait_for("self-heal back to 2 replicas", TIMEOUT, || async {
        (replicas("healed").await == Some(2)).then_some(())
    })
    .await;
    let healed = start.elapsed();
    println!("live scale self-healed in {healed:?}");
    assert!(healed < Duration::from_secs(15), "took {healed:?}");
    h.wait_synced("healed", &sha).await;

    let drifted = h
        .wait_app("drifted", "OutOfSync with the replicas drift shown", |a| {
            sync_status(a) == SyncStatusCode::OutOfSync
                && a.status.as_ref().is_some_and(|s| {
                    s.resources.iter().any(|r| {
                        r.diff
                            .windows(2)
                            .any(|w| w == ["-  replicas: 5", "+  replicas: 2"])
                    })
                })
        })
        .await;
    assert!(condition(&drifted, "SyncError").is_none());
    // Reconciled again since (a later comparison), and still not reverted.
    let seen = drifted.status.as_ref().unwrap().reconciled_at.clone();
    h.kubectl(&[
        "annotate",
        "application/drifted",
        "sluice.dev/refresh=normal",
    ]);
    h.wait_app("drifted", "refreshed", |a| {
        a.status.as_ref().unwrap().reconciled_at != seen
            && !a
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|m| m.contains_key("sluice.dev/refresh"))
    })
    .await;
    assert_eq!(replicas("drifted").await, Some(5));
    h.ns.delete().await;
}

#[tokio::test]
async fn g5_removed_files_are_pruned_only_with_prune_and_emptying_the_app_is_refused() {
    let h = GitopsHarness::start("go-prune", "2s").await;
    let repo = GitRepo::create(&h.env, "prune");
    let sha = repo.commit(
        "two apps of two objects",
        &[
            ("pruned/README.md", Some("configs\n")),
            ("pruned/a.yaml", Some(&config_map("pa", "1"))),
            ("pruned/b.yaml", Some(&config_map("pb", "1"))),
            ("kept/a.yaml", Some(&config_map("ka", "1"))),
            ("kept/b.yaml", Some(&config_map("kb", "1"))),
        ],
    );
    h.create_app("pruned", &repo, "pruned", automated(json!({"prune": true})))
        .await;
    h.create_app("kept", &repo, "kept", automated(json!({})))
        .await;
    h.wait_synced("pruned", &sha).await;
    h.wait_synced("kept", &sha).await;

    let removed = repo.commit(
        "remove b",
        &[("pruned/b.yaml", None), ("kept/b.yaml", None)],
    );
    h.wait_config("pb", None).await;
    h.wait_synced("pruned", &removed).await;
    let kept = h
        .wait_app("kept", "OutOfSync, kb requiring pruning", |a| {
            revision(a).as_deref() == Some(removed.as_str())
                && a.status.as_ref().is_some_and(|s| {
                    s.resources
                        .iter()
                        .any(|r| r.name == "kb" && r.requires_pruning)
                })
        })
        .await;
    assert_eq!(sync_status(&kept), SyncStatusCode::OutOfSync);
    assert!(
        condition(&kept, "OrphanedResourceWarning")
            .unwrap()
            .contains(&format!("ConfigMap {}/kb", h.ns.name))
    );
    assert_eq!(h.config_value("kb").await.as_deref(), Some("1"));

    // A commit leaving no manifest at all: refused without allowEmpty, nothing deleted.
    let empty = repo.commit("remove everything", &[("pruned/a.yaml", None)]);
    let refused = h
        .wait_app("pruned", "SyncError about allowEmpty", |a| {
            revision(a).as_deref() == Some(empty.as_str())
                && condition(a, "SyncError").is_some_and(|m| m.contains("allowEmpty"))
        })
        .await;
    assert_eq!(sync_status(&refused), SyncStatusCode::OutOfSync);
    assert_eq!(h.config_value("pa").await.as_deref(), Some("1"));
    h.ns.delete().await;
}

#[tokio::test]
async fn g11_broken_yaml_applies_nothing_and_the_next_good_commit_syncs() {
    let h = GitopsHarness::start("go-yaml", "2s").await;
    let repo = GitRepo::create(&h.env, "yaml");
    let first = repo.commit(
        "v1",
        &[
            ("app/a.yaml", Some(&config_map("a", "1"))),
            ("app/b.yaml", Some(&config_map("b", "1"))),
        ],
    );
    h.create_app("yaml", &repo, "app", automated(json!({"prune": true})))
        .await;
    h.wait_synced("yaml", &first).await;

    let broken = repo.commit(
        "v2 with a broken file",
        &[
            ("app/a.yaml", Some(&config_map("a", "2"))),
            (
                "app/b.yaml",
                Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b\ndata: ["),
            ),
        ],
    );
    let failed = h
        .wait_app("yaml", "ComparisonError at the broken commit", |a| {
            revision(a).as_deref() == Some(broken.as_str())
                && condition(a, "ComparisonError").is_some()
        })
        .await;
    assert_eq!(sync_status(&failed), SyncStatusCode::Unknown);
    let message = condition(&failed, "ComparisonError").unwrap();
    assert!(message.contains("b.yaml"), "{message}");
    h.wait_event("yaml", "Warning", "ComparisonError", "b.yaml")
        .await;
    // Nothing of the commit was applied, not even the valid file.
    assert_eq!(h.config_value("a").await.as_deref(), Some("1"));
    assert_eq!(h.config_value("b").await.as_deref(), Some("1"));

    let fixed = repo.commit(
        "v3",
        &[
            ("app/a.yaml", Some(&config_map("a", "3"))),
            ("app/b.yaml", Some(&config_map("b", "3"))),
        ],
    );
    let synced = h.wait_synced("yaml", &fixed).await;
    assert!(condition(&synced, "ComparisonError").is_none());
    h.wait_event(
        "yaml",
        "Normal",
        "OperationCompleted",
        &format!("Sync operation to {fixed} succeeded"),
    )
    .await;
    assert_eq!(h.config_value("a").await.as_deref(), Some("3"));
    h.ns.delete().await;
}

#[tokio::test]
async fn g9_rollback_to_a_history_id_applies_it_and_suspends_automated_sync() {
    let h = GitopsHarness::start("go-rollback", "2s").await;
    let repo = GitRepo::create(&h.env, "rollback");
    let first = repo.commit(
        "v1",
        &[("app/config.yaml", Some(&config_map("config", "1")))],
    );
    h.create_app("rb", &repo, "app", automated(json!({"prune": true})))
        .await;
    h.wait_synced("rb", &first).await;
    let second = repo.commit(
        "v2",
        &[("app/config.yaml", Some(&config_map("config", "2")))],
    );
    let synced = h.wait_synced("rb", &second).await;
    let history = synced.status.as_ref().unwrap().history.clone();
    let ids: Vec<(i64, &str)> = history
        .iter()
        .map(|e| (e.id, e.revision.as_str()))
        .collect();
    assert_eq!(ids, [(0, first.as_str()), (1, second.as_str())]);

    h.request(
        "rb",
        json!({"rollback": {"id": 0}, "initiatedBy": {"username": "e2e"}}),
    )
    .await;
    h.wait_config("config", Some("1")).await;
    let rolled = h
        .wait_app("rb", "rollback recorded, automated sync off", |a| {
            a.operation.is_none()
                && a.spec
                    .sync_policy
                    .as_ref()
                    .and_then(|p| p.automated.as_ref())
                    .and_then(|x| x.enabled)
                    == Some(false)
                && a.status
                    .as_ref()
                    .and_then(|s| s.operation_state.as_ref())
                    .is_some_and(|o| {
                        o.phase == OperationPhase::Succeeded && o.operation.rollback.is_some()
                    })
        })
        .await;
    assert_eq!(
        rolled
            .status
            .as_ref()
            .unwrap()
            .history
            .last()
            .unwrap()
            .revision,
        first
    );

    // Later polls compare with main again: OutOfSync, and nothing re-applies v2.
    let since = rolled.status.as_ref().unwrap().reconciled_at.clone();
    h.wait_app("rb", "compared again after the rollback, OutOfSync", |a| {
        let status = a.status.as_ref().unwrap();
        status.reconciled_at != since && sync_status(a) == SyncStatusCode::OutOfSync
    })
    .await;
    assert_eq!(h.config_value("config").await.as_deref(), Some("1"));

    // Re-enabled: main is synced again.
    h.apps()
        .patch(
            "rb",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                json!({"spec": {"syncPolicy": {"automated": {"enabled": true}}}}),
            ),
        )
        .await
        .expect("re-enable automated sync");
    h.wait_config("config", Some("2")).await;
    h.ns.delete().await;
}

#[tokio::test]
async fn g12_an_app_of_apps_creates_and_syncs_two_children() {
    let h = GitopsHarness::start("go-apps", "60s").await;
    let repo = GitRepo::create(&h.env, "apps");
    let child = |name: &str| {
        json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Application",
               "metadata": {"name": name},
               "spec": {"source": {"repoURL": repo.url, "targetRevision": "main",
                                   "path": format!("children/{name}")},
                        "destination": {"namespace": h.ns.name},
                        "syncPolicy": {"automated": {"prune": true}}}})
        .to_string()
    };
    let sha = repo.commit(
        "two children",
        &[
            ("parent/one.yaml", Some(&child("one"))),
            ("parent/two.yaml", Some(&child("two"))),
            ("children/one/config.yaml", Some(&config_map("one", "1"))),
            (
                "children/two/web.yaml",
                Some(&deployment("two", 1, "example/web:1.0")),
            ),
        ],
    );
    h.create_app("parent", &repo, "parent", automated(json!({"prune": true})))
        .await;
    h.wait_synced("one", &sha).await;
    h.wait_synced("two", &sha).await;
    let parent = h.wait_synced("parent", &sha).await;
    let kinds: Vec<(&str, &str)> = parent
        .status
        .as_ref()
        .unwrap()
        .resources
        .iter()
        .map(|r| (r.kind.as_str(), r.name.as_str()))
        .collect();
    assert_eq!(kinds, [("Application", "one"), ("Application", "two")]);
    assert_eq!(h.config_value("one").await.as_deref(), Some("1"));
    assert!(h.deployments().get_opt("two").await.unwrap().is_some());
    h.ns.delete().await;
}

#[tokio::test]
async fn g14_fifty_applications_on_one_repository_fetch_once_per_tick() {
    const APPS: usize = 50;
    const POLL_SECONDS: u64 = 5;
    let h = GitopsHarness::start("go-fifty", "5s").await;
    let repo = GitRepo::create(&h.env, "fifty");
    let files = |version: &str| -> Vec<(String, String)> {
        (0..APPS)
            .map(|i| {
                (
                    format!("apps/{i}/config.yaml"),
                    config_map(&format!("c{i}"), version),
                )
            })
            .collect()
    };
    let commit = |message: &str, version: &str| {
        let owned = files(version);
        let changes: Vec<(&str, Option<&str>)> = owned
            .iter()
            .map(|(p, c)| (p.as_str(), Some(c.as_str())))
            .collect();
        repo.commit(message, &changes)
    };
    let first = commit("v1", "1");
    for i in 0..APPS {
        h.create_app(
            &format!("app{i}"),
            &repo,
            &format!("apps/{i}"),
            automated(json!({})),
        )
        .await;
    }
    let all_synced = |sha: String| {
        let api = h.apps();
        async move {
            let list = api.list(&Default::default()).await.ok()?;
            let done = list
                .items
                .iter()
                .filter(|a| {
                    sync_status(a) == SyncStatusCode::Synced
                        && revision(a).as_deref() == Some(sha.as_str())
                })
                .count();
            (done == APPS).then_some(())
        }
    };
    wait_for(
        "50 Applications synced at v1",
        Duration::from_secs(180),
        || all_synced(first.clone()),
    )
    .await;

    let fetches = || async {
        h.controller
            .metric_with("sluice_git_requests_total", &[("type", "fetch")])
            .await
            .unwrap_or(0.0)
    };
    let before = fetches().await;
    let started = jiff::Timestamp::now().as_second();
    let second = commit("v2", "2");
    wait_for(
        "50 Applications synced at v2",
        Duration::from_secs(120),
        || all_synced(second.clone()),
    )
    .await;
    let after = fetches().await;
    let ended = jiff::Timestamp::now().as_second();
    let poll = i64::try_from(POLL_SECONDS).unwrap();
    let ticks = ended.div_euclid(poll) - started.div_euclid(poll) + 1;
    let made = after - before;
    println!(
        "{APPS} Applications: {made} fetches over {ticks} poll ticks ({}s)",
        ended - started
    );
    assert!(made >= 1.0, "the commit was fetched");
    assert!(made <= ticks as f64, "{made} fetches in {ticks} ticks");
    // Every fetch is timed too (compared between polls: a fetch in flight is counted, not yet
    // timed), and the API requests the syncs made are counted.
    wait_for(
        "one duration per fetch",
        Duration::from_secs(30),
        || async {
            let timed = h
                .controller
                .metric_with(
                    "sluice_git_request_duration_seconds_count",
                    &[("type", "fetch")],
                )
                .await;
            (timed == Some(fetches().await)).then_some(())
        },
    )
    .await;
    let applies = h
        .controller
        .metric_with(
            "sluice_kube_requests_total",
            &[("method", "PATCH"), ("code", "200")],
        )
        .await
        .unwrap_or(0.0);
    assert!(
        applies >= 2.0 * APPS as f64,
        "two syncs of {APPS} Applications made {applies} PATCH requests"
    );
    h.ns.delete().await;
}

/// The manifests of a canary Rollout through the HTTPRoute `web`, as a user keeps them in Git.
fn rollout_files(image: &str, config: &str) -> Vec<(&'static str, String)> {
    let service = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
        .to_string()
    };
    let route = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "web"},
        "spec": {"parentRefs": [{"name": "gateway"}], "rules": [{"backendRefs": [
            {"name": "web-stable", "port": 80, "weight": 100},
            {"name": "web-canary", "port": 80, "weight": 0}]}]}});
    let rollout = json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": image}]}},
                 "strategy": {"canary": {
                     "stableService": "web-stable", "canaryService": "web-canary",
                     "trafficRouting": {"plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": "web"}}},
                     "steps": [{"setWeight": 20}, {"pause": {}}]}}}});
    vec![
        ("web/stable.yaml", service("web-stable")),
        ("web/canary.yaml", service("web-canary")),
        ("web/route.yaml", route.to_string()),
        ("web/rollout.yaml", rollout.to_string()),
        ("web/config.yaml", config_map("config", config)),
    ]
}

#[tokio::test]
async fn g15_syncs_keep_the_weights_and_selectors_the_rollout_engine_set() {
    let h = GitopsHarness::start("go-engine", "2s").await;
    let repo = GitRepo::create(&h.env, "engine");
    let commit = |message: &str, image: &str, config: &str| {
        let files = rollout_files(image, config);
        let changes: Vec<(&str, Option<&str>)> =
            files.iter().map(|(p, c)| (*p, Some(c.as_str()))).collect();
        repo.commit(message, &changes)
    };
    let first = commit("v1", "example/web:1.0", "1");
    h.create_app(
        "web",
        &repo,
        "web",
        automated(json!({"prune": true, "selfHeal": true})),
    )
    .await;
    h.wait_synced("web", &first).await;

    // A new image: the Rollout pauses at 20% on the route, the canary Service on the new pods.
    let second = commit("v2", "example/web:2.0", "1");
    let route_resource = kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
        "gateway.networking.k8s.io",
        "v1",
        "HTTPRoute",
    ));
    let routes: kube::Api<kube::api::DynamicObject> =
        kube::Api::namespaced_with(h.client.clone(), &h.ns.name, &route_resource);
    let weights = || async {
        let route = routes.get("web").await.ok()?;
        let refs = route.data["spec"]["rules"][0]["backendRefs"]
            .as_array()?
            .clone();
        let weight = |name: &str| {
            refs.iter()
                .find(|r| r["name"] == name)
                .and_then(|r| r["weight"].as_i64())
        };
        Some((weight("web-stable")?, weight("web-canary")?))
    };
    wait_for("route at 80/20", TIMEOUT, || async {
        (weights().await == Some((80, 20))).then_some(())
    })
    .await;
    let selector_hash = |name: &'static str| {
        let services: kube::Api<k8s_openapi::api::core::v1::Service> =
            kube::Api::namespaced(h.client.clone(), &h.ns.name);
        async move {
            services
                .get(name)
                .await
                .ok()?
                .spec?
                .selector?
                .get("rollouts-pod-template-hash")
                .cloned()
        }
    };
    let canary_hash = wait_for("canary Service pinned to a revision", TIMEOUT, || {
        selector_hash("web-canary")
    })
    .await;
    // The engine's fields are no drift: Synced, the Rollout Suspended (paused at its step).
    let paused = h
        .wait_app("web", "Synced and Suspended at v2", |a| {
            sync_status(a) == SyncStatusCode::Synced
                && health(a) == HealthStatusCode::Suspended
                && revision(a).as_deref() == Some(second.as_str())
        })
        .await;
    assert!(
        paused
            .status
            .as_ref()
            .unwrap()
            .resources
            .iter()
            .all(|r| r.diff.is_empty()),
        "{:?}",
        paused.status.as_ref().unwrap().resources
    );

    // Another commit re-applies every object, the route and Services included: the live split
    // and selectors stay as the engine set them.
    let third = commit("v3", "example/web:2.0", "2");
    h.wait_config("config", Some("2")).await;
    h.wait_app("web", "Synced at v3", |a| {
        sync_status(a) == SyncStatusCode::Synced && revision(a).as_deref() == Some(third.as_str())
    })
    .await;
    // No fight with the engine: the last sync was the commit's, not a self-heal.
    let app = h.apps().get("web").await.expect("application");
    let state = app.status.unwrap().operation_state.unwrap();
    assert_eq!(state.operation.sync.unwrap().auto_heal_attempts_count, 0);
    let route = routes.get("web").await.expect("route");
    assert_eq!(
        route
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("sluice.dev/revision")),
        Some(&third)
    );
    assert_eq!(weights().await, Some((80, 20)));
    assert_eq!(selector_hash("web-canary").await, Some(canary_hash));
    h.ns.delete().await;
}

#[tokio::test]
async fn g7_a_later_wave_waits_until_the_earlier_one_is_healthy() {
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
    use kube::api::{DeleteParams, PostParams};

    let h = GitopsHarness::start("go-wave", "60s").await;
    let repo = GitRepo::create(&h.env, "wave");
    let pv_name = format!("{}-data", h.ns.name);
    // Wave -1: a claim only a volume created by hand can bind (no provisioner); wave 1: a ConfigMap.
    let claim = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "annotations": {"argocd.argoproj.io/sync-wave": "-1"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": pv_name,
                 "resources": {"requests": {"storage": "1Mi"}}}});
    let mut late: Value = serde_json::from_str(&config_map("late", "1")).unwrap();
    late["metadata"]["annotations"] = json!({"sluice.dev/sync-wave": "1"});
    let sha = repo.commit(
        "waves",
        &[
            ("app/claim.yaml", Some(&claim.to_string())),
            ("app/late.yaml", Some(&late.to_string())),
        ],
    );
    h.create_app("wave", &repo, "app", automated(json!({})))
        .await;

    // The claim is applied and stays Pending; the sync records that it waits for it, and the
    // ConfigMap of the next wave is not applied meanwhile.
    let waiting = h
        .wait_app("wave", "waiting for wave -1", |a| {
            a.status
                .as_ref()
                .and_then(|s| s.operation_state.as_ref())
                .is_some_and(|o| {
                    o.phase == OperationPhase::Running
                        && o.message.as_deref().is_some_and(|m| {
                            m.starts_with("waiting for sync wave -1 to be healthy")
                        })
                })
        })
        .await;
    let message = waiting
        .status
        .unwrap()
        .operation_state
        .unwrap()
        .message
        .unwrap();
    assert!(message.contains("PersistentVolumeClaim"), "{message}");
    assert_eq!(h.config_value("late").await, None);
    // The wait holds no reconcile: reconciles of the Application keep ending while it waits.
    let reconciles = || async {
        h.controller
            .metric_with(
                "sluice_reconciles_total",
                &[("controller", "application"), ("result", "ok")],
            )
            .await
            .unwrap_or(0.0)
    };
    let before = reconciles().await;
    common::wait_for(
        "reconciles that end while the wave waits",
        TIMEOUT,
        || async { (reconciles().await >= before + 2.0).then_some(()) },
    )
    .await;
    assert_eq!(h.config_value("late").await, None);

    let volume: PersistentVolume = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv_name},
        "spec": {"capacity": {"storage": "1Mi"}, "accessModes": ["ReadWriteOnce"],
                 "storageClassName": "", "hostPath": {"path": "/tmp/sluice-e2e"},
                 "claimRef": {"namespace": h.ns.name, "name": "data"}}
    }))
    .unwrap();
    let volumes: kube::Api<PersistentVolume> = kube::Api::all(h.client.clone());
    volumes
        .create(&PostParams::default(), &volume)
        .await
        .expect("create volume");
    h.wait_config("late", Some("1")).await;
    let app = h
        .wait_app("wave", "Synced at the commit", |a| {
            sync_status(a) == SyncStatusCode::Synced && revision(a).as_deref() == Some(sha.as_str())
        })
        .await;
    let claims: kube::Api<PersistentVolumeClaim> =
        kube::Api::namespaced(h.client.clone(), &h.ns.name);
    let phase = claims
        .get("data")
        .await
        .unwrap()
        .status
        .and_then(|s| s.phase);
    assert_eq!(phase.as_deref(), Some("Bound"));
    let waves: Vec<(String, i64)> = app
        .status
        .unwrap()
        .resources
        .iter()
        .map(|r| (r.name.clone(), r.sync_wave))
        .collect();
    assert_eq!(waves, [("data".to_string(), -1), ("late".to_string(), 1)]);
    volumes
        .delete(&pv_name, &DeleteParams::default())
        .await
        .expect("delete volume");
    h.ns.delete().await;
}

#[tokio::test]
async fn g13_an_ssh_key_repository_syncs_and_the_key_is_in_no_log_event_or_status() {
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::api::events::v1::Event;
    use kube::api::{ListParams, Patch, PatchParams, PostParams};

    let h = GitopsHarness::start("go-ssh", "2s").await;
    let server = ssh_git::PrivateSshServer::start();
    let mut repo = GitRepo::create(&h.env, "ssh");
    // The same bare repository, reached through the private sshd instead of the git daemon.
    let ssh_base = server.base_url(Path::new(h.env.get("GIT_ROOT")));
    repo.url = repo.url.replace(h.env.get("GIT_BASE_URL"), &ssh_base);
    let sha = repo.commit("v1", &[("app/cm.yaml", Some(&config_map("over-ssh", "1")))]);

    // First a key the server refuses, with the user GitHub and GitLab use (the URL's user wins).
    let wrong_key = ssh_git::KeyPair::generate("not-authorized");
    let secrets: kube::Api<Secret> = kube::Api::namespaced(h.client.clone(), &h.ns.name);
    let secret = |key: &ssh_git::KeyPair| -> Secret {
        serde_json::from_value(json!({
            "metadata": {"name": "repo-ssh", "labels": {"sluice.dev/secret-type": "repository"}},
            "stringData": {"url": ssh_base, "username": "git", "sshPrivateKey": key.private,
                           "knownHosts": server.known_hosts_line()}
        }))
        .expect("secret")
    };
    secrets
        .create(&PostParams::default(), &secret(&wrong_key))
        .await
        .expect("create Secret");
    h.create_app("ssh", &repo, "app", automated(json!({})))
        .await;
    let refused = h
        .wait_app("ssh", "a ComparisonError for the refused key", |a| {
            condition(a, "ComparisonError").is_some()
        })
        .await;
    let message = condition(&refused, "ComparisonError").unwrap();
    assert!(message.contains("authentication"), "{message}");
    h.wait_event("ssh", "Warning", "ComparisonError", "authentication")
        .await;

    // The right key: the next poll fetches with it.
    let right_key = json!({"stringData": {"sshPrivateKey": server.client_key.private}});
    secrets
        .patch(
            "repo-ssh",
            &PatchParams::default(),
            &Patch::Merge(right_key),
        )
        .await
        .expect("patch Secret");
    let synced = h.wait_synced("ssh", &sha).await;
    assert_eq!(h.config_value("over-ssh").await.as_deref(), Some("1"));

    let events: kube::Api<Event> = kube::Api::namespaced(h.client.clone(), &h.ns.name);
    let events = events.list(&ListParams::default()).await.unwrap();
    let places = [
        ("the controller log", h.controller_log()),
        ("the Events", serde_json::to_string(&events.items).unwrap()),
        ("the Application", serde_json::to_string(&synced).unwrap()),
    ];
    for (place, text) in &places {
        for key in [&wrong_key, &server.client_key] {
            assert!(!text.contains("PRIVATE KEY"), "{place} holds a private key");
            for line in key.private.lines().filter(|l| !l.starts_with("-----")) {
                assert!(!text.contains(line), "{place} holds private key material");
            }
        }
    }
    h.ns.delete().await;
}

/// A CustomResourceDefinition and a resource of its kind in one commit: the resource is applied
/// once the API server serves its kind (a later reconcile of the same sync), and the sync succeeds.
#[tokio::test]
async fn a_crd_and_its_resources_sync_in_one_commit() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind};

    let h = GitopsHarness::start("go-crd", "60s").await;
    let repo = GitRepo::create(&h.env, "crd");
    let group = format!("{}.sluice-e2e.example", h.ns.name);
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("gadgets.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                   "schema": {"openAPIV3Schema": {"type": "object",
                     "x-kubernetes-preserve-unknown-fields": true}}}]}});
    let gadget = json!({"apiVersion": format!("{group}/v1"), "kind": "Gadget",
        "metadata": {"name": "g"}, "spec": {"size": 3}});
    let sha = repo.commit(
        "a kind and a resource of it",
        &[
            ("app/crd.yaml", Some(&crd.to_string())),
            ("app/gadget.yaml", Some(&gadget.to_string())),
        ],
    );
    h.create_app(
        "crd",
        &repo,
        "app",
        json!({"syncPolicy": {"automated": {}}}),
    )
    .await;
    h.wait_app("crd", "synced", |a| {
        sync_status(a) == SyncStatusCode::Synced && revision(a).as_deref() == Some(sha.as_str())
    })
    .await;
    let app = h.wait_operation("crd", OperationPhase::Succeeded).await;
    let applied: Vec<String> = app
        .status
        .and_then(|s| s.operation_state)
        .and_then(|o| o.sync_result)
        .map(|r| r.resources.iter().map(|r| r.kind.clone()).collect())
        .unwrap_or_default();
    assert_eq!(applied, ["CustomResourceDefinition", "Gadget"]);
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(&group, "v1", "Gadget"));
    let gadgets: kube::Api<DynamicObject> =
        kube::Api::namespaced_with(h.client.clone(), &h.ns.name, &resource);
    let live = gadgets.get("g").await.expect("the Gadget");
    assert_eq!(live.data["spec"]["size"], 3);
    let crds: kube::Api<CustomResourceDefinition> = kube::Api::all(h.client.clone());
    crds.delete(&format!("gadgets.{group}"), &DeleteParams::default())
        .await
        .expect("delete the CRD");
}
