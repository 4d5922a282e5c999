//! Argo CD's resource hooks end to end: a real `sluice controller` (scoped to the test's namespace)
//! syncs a repository of the local git daemon holding hooks (`argocd.argoproj.io/hook`, Helm's
//! `helm.sh/hook`) into the local cluster, where KWOK runs the Jobs' pods to completion.

mod common;
mod plugin_support;

use common::gitops::{
    GitRepo, GitopsHarness, condition, config_map, operation_message, sync_status,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{ListParams, PostParams};
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

/// A PreSync hook PersistentVolumeClaim bound only to the volume `volume` (created by hand, no
/// provisioner): Progressing, so the hook runs, until the test creates that volume.
fn claim_hook(name: &str, volume: &str) -> String {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "annotations": {"argocd.argoproj.io/hook": "PreSync"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": volume,
                 "resources": {"requests": {"storage": "1Mi"}}}})
    .to_string()
}

fn volume_for(name: &str, namespace: &str, claim: &str) -> PersistentVolume {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
        "spec": {"capacity": {"storage": "1Mi"}, "accessModes": ["ReadWriteOnce"],
                 "storageClassName": "", "hostPath": {"path": "/tmp/sluice-e2e"},
                 "claimRef": {"namespace": namespace, "name": claim}}
    }))
    .expect("volume")
}

fn waiting_for_hook(app: &Application, hook: &str) -> bool {
    app.status
        .as_ref()
        .and_then(|s| s.operation_state.as_ref())
        .is_some_and(|o| {
            o.phase == OperationPhase::Running
                && o.finished_at.is_none()
                && o.message
                    .as_deref()
                    .is_some_and(|m| m.starts_with("waiting for PreSync hook") && m.contains(hook))
        })
}

/// A sync waits for its hook across reconciles (and a controller restart) without creating it twice,
/// and `kubectl sluice app terminate-op` ends a sync whose hook never completes.
#[tokio::test]
async fn a_sync_waits_for_its_hook_across_restarts_and_terminate_op_ends_a_stuck_one() {
    let mut h = GitopsHarness::start("hooks-wait", "2s").await;
    let repo = GitRepo::create(&h.env, "hooks-wait");
    let volume = format!("{}-hook", h.ns.name);
    let first = repo.commit(
        "a claim the migration needs",
        &[
            ("app/a.yaml", Some(&config_map("a", "1"))),
            ("app/claim.yaml", Some(&claim_hook("data", &volume))),
        ],
    );
    h.create_app(
        "web",
        &repo,
        "app",
        json!({"syncPolicy": {"automated": {}}}),
    )
    .await;
    h.wait_app("web", "waiting for the PreSync hook", |a| {
        waiting_for_hook(a, "data")
    })
    .await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(h.client.clone(), &h.ns.name);
    let uid = claims.get("data").await.expect("the hook").uid();
    assert_eq!(
        h.config_value("a").await,
        None,
        "applied before its PreSync hook"
    );

    // A controller killed while the sync waits: the new one goes on with the same hook.
    h.controller.signal("KILL");
    let cache = tempfile::tempdir().expect("cache");
    let (controller, _) = common::gitops::start_controller(&h.env, &h.ns.name, "2s", cache.path());
    h.controller = controller;
    let volumes: Api<PersistentVolume> = Api::all(h.client.clone());
    volumes
        .create(
            &PostParams::default(),
            &volume_for(&volume, &h.ns.name, "data"),
        )
        .await
        .expect("create the volume");
    let app = h.wait_synced("web", &first).await;
    assert_eq!(h.config_value("a").await.as_deref(), Some("1"));
    assert_eq!(
        claims.get("data").await.expect("the hook").uid(),
        uid,
        "the hook was created again"
    );
    let hook = results(&app)
        .into_iter()
        .find(|r| r.name == "data")
        .expect("the hook's result");
    assert_eq!(hook.hook_phase, Some(HookPhase::Succeeded));

    // A hook that never completes: the sync waits until it is terminated.
    repo.commit(
        "a claim no volume will bind",
        &[
            ("app/a.yaml", Some(&config_map("a", "2"))),
            ("app/claim.yaml", None),
            (
                "app/stuck.yaml",
                Some(&claim_hook("stuck", &format!("{volume}-never"))),
            ),
        ],
    );
    h.wait_app("web", "waiting for the stuck hook", |a| {
        waiting_for_hook(a, "stuck")
    })
    .await;
    let env = common::E2eEnv::load();
    let run =
        plugin_support::kubectl_sluice(&env, Some(&h.ns.name), &["app", "terminate-op", "web"])
            .await
            .expect_code(0);
    assert_eq!(run.stdout.trim(), "Application 'web' operation terminating");
    let app = h.wait_operation("web", OperationPhase::Failed).await;
    assert_eq!(operation_message(&app), "Operation terminated");
    let stuck = results(&app)
        .into_iter()
        .find(|r| r.name == "stuck")
        .expect("the hook's result");
    assert_eq!(stuck.hook_phase, Some(HookPhase::Failed));
    assert_eq!(stuck.message.as_deref(), Some("Terminated"));
    common::wait_for(
        "the stuck hook deleted",
        common::gitops::TIMEOUT,
        || async {
            let claim = claims.get_opt("stuck").await.ok()?;
            claim
                .is_none_or(|c| c.metadata.deletion_timestamp.is_some())
                .then_some(())
        },
    )
    .await;
    assert_eq!(h.config_value("a").await.as_deref(), Some("1"));

    // Nothing in progress now: a one-line error.
    plugin_support::kubectl_sluice(&env, Some(&h.ns.name), &["app", "terminate-op", "web"])
        .await
        .expect_code(3)
        .expect_one_line_error("No operation is in progress");
    volumes
        .delete(&volume, &Default::default())
        .await
        .expect("delete the volume");
}
