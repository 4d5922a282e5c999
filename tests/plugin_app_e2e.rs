//! The `app` commands of `kubectl sluice`, through the real kubectl, against a real `sluice
//! controller` syncing a repository of the local git daemon: list, get, diff, sync, history and
//! rollback (which wait for the controller's outcome), and their one-line errors. The text layout
//! itself is tested from fixtures in `plugin_render.rs`, the operation patches in
//! `src/plugin/app/operation.rs`.

mod common;
mod plugin_support;

use common::E2eEnv;
use common::gitops::{GitRepo, GitopsHarness, config_map, deployment, sync_status};
use plugin_support::{kubectl_sluice, kubectl_sluice_on_tty};
use serde_json::json;
use sluice::api::application::SyncStatusCode;

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
        &[
            ("app/config.yaml", Some(&config_map("config", "1"))),
            (
                "app/web.yaml",
                Some(&deployment("web", 2, "example/web:1.0")),
            ),
        ],
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
        format!("ConfigMap   {ns}  config  ⚠ OutOfSync"),
        format!("Deployment  {ns}  web     ⚠ OutOfSync"),
    ] {
        assert!(get.contains(&text), "{text:?} missing in\n{get}");
    }
    let diff = run(words("app diff shop"))
        .await
        .expect_code(EXIT_DIFF)
        .stdout;
    // Nothing applied yet: each object is all added from Git.
    for text in [
        format!("===== ConfigMap {ns}/config ======\n--- live\n+++ git\n@@ -0,0 +1,"),
        "\n+  v: \"1\"\n".to_string(),
        format!("===== apps/Deployment {ns}/web ======\n--- live\n+++ git\n@@ -0,0 +1,"),
        "\n+spec:\n+  replicas: 2\n".to_string(),
    ] {
        assert!(diff.contains(&text), "{text:?} missing in\n{diff}");
    }
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

    // A live scale: the Deployment's diff is its replicas, live `-` and Git `+`, in context.
    h.kubectl(&["scale", "deployment/web", "--replicas=5"]);
    h.wait_app("shop", "OutOfSync after the live scale", |a| {
        sync_status(a) == SyncStatusCode::OutOfSync
    })
    .await;
    let diff = run(words("app diff shop"))
        .await
        .expect_code(EXIT_DIFF)
        .stdout;
    let expected = format!(
        "===== apps/Deployment {ns}/web ======
--- live
+++ git
@@ -8,7 +8,7 @@
   name: web
   namespace: {ns}
 spec:
-  replicas: 5
+  replicas: 2
   selector:
     matchLabels:
       app: web
"
    );
    assert_eq!(diff, expected);
    // Red and green on a terminal only, and never with --no-color.
    let env = E2eEnv::load();
    let tty = kubectl_sluice_on_tty(&env, &ns, &["app", "diff", "shop"])
        .await
        .expect_code(EXIT_DIFF)
        .stdout;
    for line in [
        "\x1b[31m-  replicas: 5\x1b[0m",
        "\x1b[32m+  replicas: 2\x1b[0m",
    ] {
        assert!(tty.contains(line), "{line:?} missing in {tty:?}");
    }
    let plain = kubectl_sluice_on_tty(&env, &ns, &["app", "diff", "shop", "--no-color"])
        .await
        .expect_code(EXIT_DIFF)
        .stdout;
    assert_eq!(plain.replace("\r\n", "\n"), expected);
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
    assert!(
        diff.contains(&format!(
            "===== ConfigMap {ns}/config ======
--- live
+++ git
@@ -1,6 +1,6 @@
 apiVersion: v1
 data:
-  v: \"1\"
+  v: \"2\"
 kind: ConfigMap
"
        )),
        "{diff}"
    );
    let history = run(words("app history shop")).await.expect_code(0).stdout;
    assert!(history.contains(&first), "{history}");

    // Rolling back to the synced entry while Git moved on: the live objects stay at the first
    // commit, and the command reports the controller's outcome.
    let rollback = run(words(&format!("app rollback shop {first_id}")))
        .await
        .expect_code(0);
    assert!(rollback.stdout.contains("Succeeded"), "{rollback:?}");
    assert_eq!(h.config_value("config").await.as_deref(), Some("1"));
    // What the controller reports after a rollback is its business (see docs/behaviour.md G9); the
    // command
    // shows the operation's outcome.
    let get = run(words("app get shop")).await.expect_code(0).stdout;
    assert!(get.contains("Last Operation:     Succeeded"), "{get}");
    h.ns.delete().await;
}

/// `app create`, `wait`, `set`, `sync --revision` and `delete` (with and without `--cascade`)
/// through the real kubectl, carried out by a real controller.
#[tokio::test]
async fn app_create_wait_set_and_delete_manage_an_application_end_to_end() {
    let h = GitopsHarness::start("plug-appmanage", "2s").await;
    let repo = GitRepo::create(&h.env, "plugin-manage");
    let first = repo.commit(
        "v1",
        &[("app/config.yaml", Some(&config_map("config", "1")))],
    );
    let second = repo.commit(
        "v2",
        &[("app/config.yaml", Some(&config_map("config", "2")))],
    );
    let ns = h.ns.name.clone();
    let env = E2eEnv::load();
    let run = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (env, ns) = (&env, ns.clone());
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            kubectl_sluice(env, Some(&ns), &args).await
        }
    };

    let created = run(&[
        "app",
        "create",
        "shop",
        "--repo",
        &repo.url,
        "--path",
        "app",
        "--revision",
        &first,
        "--dest-namespace",
        &ns,
        "--sync-policy",
        "automated",
    ])
    .await
    .expect_code(0)
    .stdout;
    assert_eq!(created.trim(), "application 'shop' created");
    let waited = run(&["app", "wait", "shop", "--timeout", "90s"])
        .await
        .expect_code(0)
        .stdout;
    assert_eq!(waited.trim(), "application 'shop': Synced, Healthy");
    assert_eq!(h.config_value("config").await.as_deref(), Some("1"));

    // `set`: follow the branch; the automated sync takes the new commit.
    run(&[
        "app",
        "set",
        "shop",
        "--revision",
        "main",
        "--sync-policy",
        "none",
    ])
    .await
    .expect_code(0);
    h.wait_app("shop", "compared at main without automation", |a| {
        !a.spec.is_automated()
            && a.status
                .as_ref()
                .and_then(|s| s.sync.as_ref())
                .and_then(|s| s.revision.as_deref())
                == Some(second.as_str())
    })
    .await;
    run(&["app", "set", "shop"])
        .await
        .expect_one_line_error("nothing to set");
    // A sync of an older commit than the branch's, as asked.
    run(&[
        "app",
        "sync",
        "shop",
        "--revision",
        &first,
        "--timeout",
        "90s",
    ])
    .await
    .expect_code(0);
    assert_eq!(h.config_value("config").await.as_deref(), Some("1"));
    run(&["app", "sync", "shop", "--timeout", "90s"])
        .await
        .expect_code(0);
    run(&["app", "wait", "shop", "--sync", "--timeout", "90s"])
        .await
        .expect_code(0);
    assert_eq!(h.config_value("config").await.as_deref(), Some("2"));

    // Without --cascade what it deployed stays; recreated from an Argo CD manifest, a cascading
    // delete takes the ConfigMap with it.
    run(&[
        "app",
        "delete",
        "shop",
        "--cascade=false",
        "--timeout",
        "60s",
    ])
    .await
    .expect_code(0);
    assert_eq!(h.config_value("config").await.as_deref(), Some("2"));
    let manifest = tempfile::NamedTempFile::new().expect("manifest file");
    std::fs::write(
        manifest.path(),
        format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: shop\nspec:\n  source:\n    repoURL: {}\n    targetRevision: main\n    path: app\n  destination:\n    namespace: {ns}\n  syncPolicy:\n    automated: {{}}\n",
            repo.url
        ),
    )
    .expect("write manifest");
    run(&[
        "app",
        "create",
        "-f",
        manifest.path().to_str().expect("utf-8"),
    ])
    .await
    .expect_code(0);
    run(&["app", "wait", "shop", "--timeout", "90s"])
        .await
        .expect_code(0);
    run(&["app", "delete", "shop", "--timeout", "90s"])
        .await
        .expect_code(0);
    assert_eq!(h.config_value("config").await, None, "cascaded");
    run(&["app", "wait", "shop", "--timeout", "5s"])
        .await
        .expect_one_line_error("not found");
}
