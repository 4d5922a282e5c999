//! The `app` commands of `kubectl sluice`, through the real kubectl, on an Application whose status
//! is written by the test (no controller runs here, so what the plugin reads and writes is exactly
//! what the test set): list, get, history, diff, and the sync / rollback requests in `operation`.

mod common;
mod plugin_support;

use common::{E2eEnv, TestNamespace, apply_crds};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use plugin_support::kubectl_sluice;
use serde_json::{Value, json};
use sluice::api::application::Application;

const EXIT_DIFF: i32 = 1;
const EXIT_TIMEOUT: i32 = 2;
const EXIT_ERROR: i32 = 3;

const WITH_STATUS: &str = include_str!("fixtures/application/with-status.yaml");

#[tokio::test]
async fn app_commands_read_the_status_and_request_operations() {
    let env = E2eEnv::load();
    let client = env.client().await;
    apply_crds(&client).await;
    let ns = TestNamespace::create(&client, "plug-app").await;
    let apps: Api<Application> = Api::namespaced(client.clone(), &ns.name);
    let fixture: Value = serde_saphyr::from_str(WITH_STATUS).expect("fixture");
    let mut app: Application = serde_json::from_value(fixture.clone()).expect("application");
    app.metadata.namespace = Some(ns.name.clone());
    app.status = None;
    apps.create(&PostParams::default(), &app)
        .await
        .expect("create application");
    apps.patch_status(
        "shop",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": fixture["status"]})),
    )
    .await
    .expect("write status");
    let run = |args: &'static [&'static str]| {
        let env = E2eEnv::load();
        let ns = ns.name.clone();
        async move { kubectl_sluice(&env, Some(&ns), args).await }
    };

    let list = run(&["app", "list"]).await.expect_code(0).stdout;
    assert!(
        list.lines()
            .nth(1)
            .unwrap_or_default()
            .starts_with("shop  ⚠ OutOfSync  ✖ Degraded  4d1e2f3"),
        "{list}"
    );
    let get = run(&["app", "get", "shop"]).await.expect_code(0).stdout;
    for text in [
        &format!("Name:               {}/shop", ns.name),
        "Sync Status:        ⚠ OutOfSync to main (4d1e2f3)",
        "Health Status:      ✖ Degraded",
        "sluice.dev  Rollout    shop       shop         ⚠ OutOfSync  ✖ Degraded  RolloutAborted",
    ] {
        assert!(get.contains(text), "{text:?} missing in\n{get}");
    }
    let history = run(&["app", "history", "shop"]).await.expect_code(0).stdout;
    assert!(
        history.contains("9f2c4e1b7d3a5c6e8f0a1b2c3d4e5f6a7b8c9d0e  alice"),
        "{history}"
    );
    let diff = run(&["app", "diff", "shop"])
        .await
        .expect_code(EXIT_DIFF)
        .stdout;
    assert!(
        diff.starts_with("===== sluice.dev/Rollout shop/shop ======\n"),
        "{diff}"
    );

    let sync = run(&["app", "sync", "shop", "--prune", "--async"])
        .await
        .expect_code(0);
    assert_eq!(sync.stdout, "application 'shop': sync requested\n");
    let requested = apps.get("shop").await.expect("application");
    let operation = serde_json::to_value(requested.operation.as_ref().expect("operation")).unwrap();
    assert_eq!(operation["sync"]["prune"], true);
    let user = operation["initiatedBy"]["username"]
        .as_str()
        .unwrap_or_default();
    assert!(!user.is_empty(), "{operation}");

    run(&["app", "rollback", "shop", "1", "--async"])
        .await
        .expect_code(EXIT_ERROR)
        .expect_one_line_error("another operation is already in progress");
    apps.patch(
        "shop",
        &PatchParams::default(),
        &Patch::Merge(json!({"operation": null})),
    )
    .await
    .expect("clear operation");
    run(&["app", "rollback", "shop", "7", "--async"])
        .await
        .expect_code(EXIT_ERROR)
        .expect_one_line_error("has no history entry 7 (ids: 0, 1)");
    run(&["app", "rollback", "shop", "1", "--async"])
        .await
        .expect_code(0);
    let requested = apps.get("shop").await.expect("application");
    let operation = serde_json::to_value(requested.operation.as_ref().expect("operation")).unwrap();
    assert_eq!(operation["rollback"]["id"], 1);

    // Nobody carries the operation out here: waiting for it ends at the timeout.
    apps.patch(
        "shop",
        &PatchParams::default(),
        &Patch::Merge(json!({"operation": null})),
    )
    .await
    .expect("clear operation");
    let waited = run(&["app", "sync", "shop", "--timeout", "2s"])
        .await
        .expect_code(EXIT_TIMEOUT);
    assert!(
        waited
            .stderr
            .contains("timed out after 2s waiting for the sync"),
        "{waited:?}"
    );
    ns.delete().await;
}

/// Sync, diff, history and rollback carried out by a real `sluice controller` on a repository
/// served by the local git daemon: the commands wait for the operation's outcome.
#[tokio::test]
async fn app_sync_and_rollback_wait_for_the_controller() {
    use common::gitops::{GitRepo, GitopsHarness, config_map};

    let h = GitopsHarness::start("plug-appsync", "2s").await;
    let repo = GitRepo::create(&h.env, "plugin-app");
    let first = repo.commit(
        "v1",
        &[("app/config.yaml", Some(&config_map("config", "1")))],
    );
    h.create_app("shop", &repo, "app", json!({})).await;
    let ns = h.ns.name.clone();
    let run = |args: Vec<String>| {
        let env = E2eEnv::load();
        let ns = ns.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            kubectl_sluice(&env, Some(&ns), &args).await
        }
    };
    let words = |text: &str| text.split(' ').map(str::to_string).collect::<Vec<_>>();
    h.wait_app("shop", "compared with Git", |a| {
        a.status
            .as_ref()
            .and_then(|s| s.sync.as_ref())
            .and_then(|s| s.revision.as_deref())
            == Some(first.as_str())
    })
    .await;

    let diff = run(words("app diff shop"))
        .await
        .expect_code(EXIT_DIFF)
        .stdout;
    assert!(diff.contains("===== ConfigMap "), "{diff}");
    let sync = run(words("app sync shop --timeout 90s"))
        .await
        .expect_code(0);
    assert!(
        sync.stdout.contains("application 'shop': sync Succeeded"),
        "{sync:?}"
    );
    assert_eq!(h.config_value("config").await.as_deref(), Some("1"));
    let synced = h.wait_synced("shop", &first).await;
    let history = synced
        .status
        .as_ref()
        .map(|s| s.history.clone())
        .unwrap_or_default();
    let first_id = history.last().expect("history entry").id;
    run(words("app diff shop")).await.expect_code(0);

    let second = repo.commit(
        "v2",
        &[("app/config.yaml", Some(&config_map("config", "2")))],
    );
    h.wait_app("shop", "OutOfSync at the second commit", |a| {
        a.status
            .as_ref()
            .and_then(|s| s.sync.as_ref())
            .and_then(|s| s.revision.as_deref())
            == Some(second.as_str())
    })
    .await;
    let diff = run(words("app diff shop"))
        .await
        .expect_code(EXIT_DIFF)
        .stdout;
    assert!(diff.contains("data.v: Git \"2\", live \"1\""), "{diff}");
    run(words("app sync shop")).await.expect_code(0);
    assert_eq!(h.config_value("config").await.as_deref(), Some("2"));
    let history = run(words("app history shop")).await.expect_code(0).stdout;
    assert!(
        history.contains(&first) && history.contains(&second),
        "{history}"
    );

    let rollback = run(words(&format!("app rollback shop {first_id}")))
        .await
        .expect_code(0);
    assert!(rollback.stdout.contains("Succeeded"), "{rollback:?}");
    assert_eq!(h.config_value("config").await.as_deref(), Some("1"));
    let get = run(words("app get shop")).await.expect_code(0).stdout;
    assert!(get.contains(&format!("({})", &first[..7])), "back at the first commit:\n{get}");
    h.ns.delete().await;
}
