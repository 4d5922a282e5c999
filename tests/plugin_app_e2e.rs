//! The `app` commands of `kubectl sluice`, through the real kubectl, against a real `sluice
//! controller` syncing a repository of the local git daemon: list, get, diff, sync, history and
//! rollback (which wait for the controller's outcome), and their one-line errors. The text layout
//! itself is tested from fixtures in `plugin_render.rs`, the operation patches in
//! `src/plugin/app/operation.rs`.

mod common;
mod plugin_support;

use common::E2eEnv;
use common::gitops::{GitRepo, GitopsHarness, config_map};
use plugin_support::kubectl_sluice;
use serde_json::json;

const EXIT_DIFF: i32 = 1;
const EXIT_ERROR: i32 = 3;

/// Sync, diff, history and rollback carried out by a real `sluice controller` on a repository
/// served by the local git daemon: the commands wait for the operation's outcome.
#[tokio::test]
async fn app_sync_and_rollback_wait_for_the_controller() {
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

    let list = run(words("app list")).await.expect_code(0).stdout;
    let row = list.lines().nth(1).unwrap_or_default();
    assert!(row.starts_with("shop  ⚠ OutOfSync"), "{list}");
    assert!(
        row.contains("Manual") && row.ends_with("app   main"),
        "{list}"
    );
    let get = run(words("app get shop")).await.expect_code(0).stdout;
    for text in [
        format!("Name:               {ns}/shop"),
        format!("Sync Status:        ⚠ OutOfSync to main ({})", &first[..7]),
        format!("Repo:               {}", repo.url),
        format!("ConfigMap  {ns}  config"),
    ] {
        assert!(get.contains(&text), "{text:?} missing in\n{get}");
    }
    let diff = run(words("app diff shop"))
        .await
        .expect_code(EXIT_DIFF)
        .stdout;
    assert!(
        diff.contains(&format!("===== ConfigMap {ns}/config ======")),
        "{diff}"
    );
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
    run(words("app rollback shop 7"))
        .await
        .expect_code(EXIT_ERROR)
        .expect_one_line_error(&format!("has no history entry 7 (ids: {first_id})"));

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
    let history = run(words("app history shop")).await.expect_code(0).stdout;
    assert!(history.contains(&first), "{history}");

    // Rolling back to the synced entry while Git moved on: the live objects stay at the first
    // commit, and the command reports the controller's outcome.
    let rollback = run(words(&format!("app rollback shop {first_id}")))
        .await
        .expect_code(0);
    assert!(rollback.stdout.contains("Succeeded"), "{rollback:?}");
    assert_eq!(h.config_value("config").await.as_deref(), Some("1"));
    // What the controller reports after a rollback is its business (see SCENARIOS G9); the command
    // shows the operation's outcome.
    let get = run(words("app get shop")).await.expect_code(0).stdout;
    assert!(get.contains("Last Operation:     Succeeded"), "{get}");
    h.ns.delete().await;
}
