//! Argo CD's resource hooks end to end: a real `sluice controller` (scoped to the test's namespace)
//! syncs a repository of the local git daemon holding hooks (`argocd.argoproj.io/hook`, Helm's
//! `helm.sh/hook`) into the local cluster, where KWOK runs the Jobs' pods to completion.

mod common;

use common::gitops::{
    GitRepo, GitopsHarness, condition, config_map, operation_message, sync_status,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use sluice::api::application::{
    Application, HookPhase, OperationPhase, ResourceResult, SyncPhase, SyncStatusCode,
};

/// A Job hook of `phases` (`name` or, ending in `-`, `generateName`) with `annotations` added.
fn job_hook(name: &str, phases: &str, annotations: Value, fails: bool) -> String {
    let mut metadata = json!({"annotations": {"argocd.argoproj.io/hook": phases}});
    let key = if name.ends_with('-') {
        "generateName"
    } else {
        "name"
    };
    metadata[key] = json!(name);
    merge_annotations(&mut metadata, annotations);
    let mut pod_spec = json!({"restartPolicy": "Never",
        "containers": [{"name": "main", "image": "example/migrate:1"}]});
    let mut spec = json!({"backoffLimit": 0});
    if fails {
        // Never scheduled, so the Job fails when its deadline passes.
        pod_spec["nodeSelector"] = json!({"sluice.dev/no-such-node": "true"});
        spec["activeDeadlineSeconds"] = json!(2);
    }
    spec["template"] = json!({"spec": pod_spec});
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec}).to_string()
}

fn merge_annotations(metadata: &mut Value, annotations: Value) {
    if let (Some(into), Some(from)) = (
        metadata["annotations"].as_object_mut(),
        annotations.as_object(),
    ) {
        for (k, v) in from {
            into.insert(k.clone(), v.clone());
        }
    }
}

fn annotated_config_map(name: &str, annotations: Value) -> String {
    let mut obj: Value = serde_json::from_str(&config_map(name, "1")).expect("json");
    obj["metadata"]["annotations"] = annotations;
    obj.to_string()
}

fn results(app: &Application) -> Vec<ResourceResult> {
    app.status
        .as_ref()
        .and_then(|s| s.operation_state.as_ref())
        .and_then(|o| o.sync_result.as_ref())
        .map(|r| r.resources.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn presync_runs_before_the_objects_postsync_after_and_policies_delete_what_they_say() {
    let h = GitopsHarness::start("hooks-ok", "60s").await;
    let repo = GitRepo::create(&h.env, "hooks-ok");
    let sha = repo.commit(
        "app with hooks",
        &[
            ("app/a.yaml", Some(&config_map("a", "1"))),
            (
                "app/migrate.yaml",
                Some(&job_hook("migrate", "PreSync", json!({}), false)),
            ),
            (
                "app/smoke.yaml",
                Some(&job_hook(
                    "smoke-",
                    "PostSync",
                    json!({"argocd.argoproj.io/hook-delete-policy": "HookSucceeded"}),
                    false,
                )),
            ),
        ],
    );
    h.create_app(
        "web",
        &repo,
        "app",
        json!({"syncPolicy": {"automated": {}}}),
    )
    .await;
    h.wait_operation("web", OperationPhase::Succeeded).await;
    let app = h.wait_synced("web", &sha).await;

    let results = results(&app);
    let hook_of = |phase: SyncPhase| {
        results
            .iter()
            .find(|r| r.hook_type == Some(phase))
            .unwrap_or_else(|| panic!("no {phase:?} hook result in {results:?}"))
    };
    assert_eq!(hook_of(SyncPhase::PreSync).name, "migrate");
    assert_eq!(
        hook_of(SyncPhase::PreSync).hook_phase,
        Some(HookPhase::Succeeded)
    );
    let smoke = hook_of(SyncPhase::PostSync);
    assert!(
        smoke
            .name
            .starts_with(&format!("smoke-{}-postsync-", &sha[..7])),
        "{}",
        smoke.name
    );
    assert_eq!(smoke.hook_phase, Some(HookPhase::Succeeded));
    let position = |name: &str| results.iter().position(|r| r.name == name).unwrap();
    assert!(position("migrate") < position("a") && position("a") < position(&smoke.name));

    // The PreSync Job (default policy: kept until it is created again) completed before `a` was
    // created; the PostSync one (HookSucceeded) is gone.
    let jobs: Api<Job> = Api::namespaced(h.client.clone(), &h.ns.name);
    let migrate = jobs.get("migrate").await.expect("the PreSync Job is kept");
    let completed = migrate
        .status
        .and_then(|s| s.completion_time)
        .expect("the PreSync Job completed");
    let created = h
        .config_maps()
        .get("a")
        .await
        .expect("a")
        .metadata
        .creation_timestamp
        .expect("created");
    assert!(completed.0 <= created.0, "{completed:?} > {created:?}");
    assert!(
        jobs.get_opt(&smoke.name).await.expect("read").is_none(),
        "the HookSucceeded Job was not deleted"
    );

    // Hooks are not part of the comparison: Synced, and only `a` is a resource of the app.
    assert_eq!(sync_status(&app), SyncStatusCode::Synced);
    let resources: Vec<String> = app
        .status
        .as_ref()
        .map(|s| s.resources.iter().map(|r| r.name.clone()).collect())
        .unwrap_or_default();
    assert_eq!(resources, ["a"]);
}

#[tokio::test]
async fn a_failed_presync_hook_fails_the_sync_applies_nothing_and_runs_the_syncfail_hooks() {
    let h = GitopsHarness::start("hooks-fail", "60s").await;
    let repo = GitRepo::create(&h.env, "hooks-fail");
    repo.commit(
        "a migration that fails",
        &[
            ("app/a.yaml", Some(&config_map("a", "1"))),
            (
                "app/migrate.yaml",
                Some(&job_hook("migrate", "PreSync", json!({}), true)),
            ),
            (
                "app/report.yaml",
                Some(&annotated_config_map(
                    "sync-failed",
                    json!({"argocd.argoproj.io/hook": "SyncFail"}),
                )),
            ),
        ],
    );
    h.create_app(
        "web",
        &repo,
        "app",
        json!({"syncPolicy": {"automated": {}}}),
    )
    .await;
    let app = h.wait_operation("web", OperationPhase::Failed).await;
    let message = operation_message(&app);
    assert!(
        message.contains("PreSync hook Job.batch") && message.contains("migrate failed"),
        "{message}"
    );
    assert_eq!(
        h.config_value("a").await,
        None,
        "applied after a failed PreSync hook"
    );
    assert_eq!(
        h.config_value("sync-failed").await.as_deref(),
        Some("1"),
        "the SyncFail hook did not run"
    );
    let failed = results(&app)
        .into_iter()
        .find(|r| r.name == "migrate")
        .expect("the hook's result");
    assert_eq!(failed.hook_phase, Some(HookPhase::Failed));
}

#[tokio::test]
async fn skipped_objects_and_helm_tests_are_never_applied_and_unknown_hook_types_are_refused() {
    let h = GitopsHarness::start("hooks-skip", "60s").await;
    let repo = GitRepo::create(&h.env, "hooks-skip");
    let helm_test = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-test", "annotations": {"helm.sh/hook": "test"}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "t", "image": "example/t:1"}]}});
    let sha = repo.commit(
        "skip and helm test",
        &[
            ("app/a.yaml", Some(&config_map("a", "1"))),
            (
                "app/skipped.yaml",
                Some(&annotated_config_map(
                    "skipped",
                    json!({"argocd.argoproj.io/hook": "Skip"}),
                )),
            ),
            ("app/test.yaml", Some(&helm_test.to_string())),
        ],
    );
    h.create_app(
        "web",
        &repo,
        "app",
        json!({"syncPolicy": {"automated": {}}}),
    )
    .await;
    h.wait_synced("web", &sha).await;
    assert_eq!(h.config_value("skipped").await, None);
    let pods: Api<Pod> = Api::namespaced(h.client.clone(), &h.ns.name);
    let names: Vec<String> = pods
        .list(&ListParams::default())
        .await
        .expect("pods")
        .items
        .iter()
        .map(|p| p.name_any())
        .collect();
    assert!(!names.contains(&"web-test".to_string()), "{names:?}");

    // A hook type Sluice does not implement refuses the revision, naming it; nothing changes.
    repo.commit(
        "a PostDelete hook",
        &[
            ("app/a.yaml", Some(&config_map("a", "2"))),
            (
                "app/cleanup.yaml",
                Some(&job_hook("cleanup", "PostDelete", json!({}), false)),
            ),
        ],
    );
    h.push_event(&repo, true).await;
    let app = h
        .wait_app("web", "a ComparisonError naming PostDelete", |a| {
            condition(a, "ComparisonError").is_some_and(|m| m.contains("\"PostDelete\""))
        })
        .await;
    let message = condition(&app, "ComparisonError").unwrap_or_default();
    assert!(message.contains("Job.batch"), "{message}");
    assert_eq!(h.config_value("a").await.as_deref(), Some("1"));
}
