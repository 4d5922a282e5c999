//! ApplicationSets on the local cluster (Argo CD's ApplicationSet controller semantics): a git
//! directories generator over a real Git repository creates one Application per directory, which
//! sync; a directory added in Git adds an Application, a directory removed deletes its Application
//! (and, through its resources finalizer, what it deployed); an unsupported generator is reported
//! in an `ErrorOccurred` condition naming it, kept as written, and creates nothing.

mod common;

use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::{Value, json};
use sluice::api::application::Application;
use sluice::api::applicationset::ApplicationSet;

use common::gitops::{GitRepo, GitopsHarness, TIMEOUT, config_map};
use common::wait_for;

fn appsets(h: &GitopsHarness) -> Api<ApplicationSet> {
    Api::namespaced(h.client.clone(), &h.ns.name)
}

async fn create_appset(h: &GitopsHarness, manifest: Value) {
    let appset: ApplicationSet = serde_json::from_value(manifest).expect("ApplicationSet");
    appsets(h)
        .create(&PostParams::default(), &appset)
        .await
        .expect("create ApplicationSet");
}

/// The names of the Applications the ApplicationSet `name` generated (by its label), sorted.
async fn generated(h: &GitopsHarness, name: &str) -> Vec<String> {
    let list = h
        .apps()
        .list(&ListParams::default().labels(&format!("sluice.dev/application-set={name}")))
        .await
        .expect("list applications");
    let mut names: Vec<String> = list
        .items
        .iter()
        .filter(|a| a.metadata.deletion_timestamp.is_none())
        .filter_map(|a| a.metadata.name.clone())
        .collect();
    names.sort();
    names
}

async fn wait_generated(h: &GitopsHarness, name: &str, want: &[&str]) {
    wait_for(
        &format!("ApplicationSet {name} to generate {want:?}"),
        TIMEOUT,
        || async {
            let names = generated(h, name).await;
            (names == want).then_some(())
        },
    )
    .await;
}

/// The `(status, reason, message)` of condition `type_` of the ApplicationSet.
fn condition(appset: &ApplicationSet, type_: &str) -> Option<(String, String, String)> {
    let c = appset
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((
        c.status.clone().unwrap_or_default(),
        c.reason.clone().unwrap_or_default(),
        c.message.clone().unwrap_or_default(),
    ))
}

fn directories_appset(repo: &GitRepo, namespace: &str) -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "ApplicationSet",
        "metadata": {"name": "dirs"},
        "spec": {
            "generators": [{"git": {"repoURL": repo.url, "revision": "main",
                "directories": [{"path": "apps/*"}, {"path": "apps/skip", "exclude": true}]}}],
            "template": {
                "metadata": {"name": "dirs-{{path.basename}}", "labels": {"team": "{{path[0]}}"}},
                "spec": {"project": "default",
                         "source": {"repoURL": repo.url, "targetRevision": "main", "path": "{{path}}"},
                         "destination": {"server": "https://kubernetes.default.svc",
                                         "namespace": namespace},
                         "syncPolicy": {"automated": {"prune": true}}}
            }
        }
    })
}

#[tokio::test]
async fn git_directories_generate_sync_add_and_remove_applications() {
    let h = GitopsHarness::start("appset", "2s").await;
    let repo = GitRepo::create(&h.env, "appset");
    let first = repo.commit(
        "three apps, one excluded",
        &[
            ("apps/alpha/cm.yaml", Some(&config_map("alpha", "1"))),
            ("apps/beta/cm.yaml", Some(&config_map("beta", "1"))),
            ("apps/skip/cm.yaml", Some(&config_map("skip", "1"))),
            ("README.md", Some("not a directory")),
        ],
    );
    create_appset(&h, directories_appset(&repo, &h.ns.name)).await;

    wait_generated(&h, "dirs", &["dirs-alpha", "dirs-beta"]).await;
    for app in ["dirs-alpha", "dirs-beta"] {
        h.wait_synced(app, &first).await;
    }
    h.wait_config("alpha", Some("1")).await;
    h.wait_config("beta", Some("1")).await;
    assert_eq!(h.config_value("skip").await, None, "apps/skip is excluded");
    let alpha: Application = h.apps().get("dirs-alpha").await.expect("dirs-alpha");
    let owner = &alpha.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("ApplicationSet", "dirs")
    );
    assert_eq!(owner.controller, Some(true));
    assert_eq!(
        alpha
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("team"))
            .map(String::as_str),
        Some("apps")
    );
    assert_eq!(alpha.spec.source.path.as_deref(), Some("apps/alpha"));

    // Status: Argo's conditions, and the generated Applications with their sync and health.
    let appset = wait_for(
        "ApplicationSet status with 2 Synced resources",
        TIMEOUT,
        || async {
            let set = appsets(&h).get("dirs").await.ok()?;
            let status = set.status.as_ref()?;
            let synced = status
                .resources
                .iter()
                .filter(|r| r.status.as_deref() == Some("Synced"));
            (synced.count() == 2).then_some(set)
        },
    )
    .await;
    assert_eq!(
        condition(&appset, "ResourcesUpToDate").map(|c| c.0),
        Some("True".to_string())
    );
    assert_eq!(
        condition(&appset, "ErrorOccurred").map(|c| c.0),
        Some("False".to_string())
    );
    assert_eq!(
        condition(&appset, "ParametersGenerated").map(|c| c.0),
        Some("True".to_string())
    );

    // A directory added in Git: its Application appears (on the next poll) and syncs.
    let second = repo.commit(
        "gamma",
        &[("apps/gamma/cm.yaml", Some(&config_map("gamma", "1")))],
    );
    wait_generated(&h, "dirs", &["dirs-alpha", "dirs-beta", "dirs-gamma"]).await;
    h.wait_synced("dirs-gamma", &second).await;
    h.wait_config("gamma", Some("1")).await;

    // A directory removed from Git: its Application is deleted, and what it deployed with it.
    repo.commit("drop alpha", &[("apps/alpha/cm.yaml", None)]);
    wait_generated(&h, "dirs", &["dirs-beta", "dirs-gamma"]).await;
    wait_for("dirs-alpha gone", TIMEOUT, || async {
        h.apps()
            .get_opt("dirs-alpha")
            .await
            .expect("get dirs-alpha")
            .is_none()
            .then_some(())
    })
    .await;
    h.wait_config("alpha", None).await;
    assert_eq!(h.config_value("beta").await.as_deref(), Some("1"));
}

#[tokio::test]
async fn an_unsupported_generator_is_named_kept_and_creates_nothing() {
    let h = GitopsHarness::start("appset-pr", "2s").await;
    let repo = GitRepo::create(&h.env, "appset-pr");
    repo.commit(
        "one app",
        &[("apps/one/cm.yaml", Some(&config_map("one", "1")))],
    );
    let mut manifest = directories_appset(&repo, &h.ns.name);
    manifest["metadata"]["name"] = json!("prs");
    manifest["spec"]["generators"] = json!([
        {"git": {"repoURL": repo.url, "revision": "main", "directories": [{"path": "apps/*"}]}},
        {"pullRequest": {"github": {"owner": "example", "repo": "app"}, "requeueAfterSeconds": 60}}
    ]);
    create_appset(&h, manifest).await;

    let appset = wait_for(
        "ErrorOccurred naming the pullRequest generator",
        TIMEOUT,
        || async {
            let set = appsets(&h).get("prs").await.ok()?;
            let (status, _, message) = condition(&set, "ErrorOccurred")?;
            (status == "True").then_some((set, message))
        },
    )
    .await;
    let (set, message) = appset;
    assert!(
        message.contains("spec.generators[1].pullRequest is not supported by Sluice"),
        "{message}"
    );
    assert_eq!(
        condition(&set, "ResourcesUpToDate").map(|c| c.0),
        Some("False".to_string())
    );
    // Kept as written, not pruned by the schema.
    let raw = serde_json::to_value(&set).expect("json");
    assert_eq!(
        raw["spec"]["generators"][1]["pullRequest"]["github"]["owner"],
        "example"
    );
    // Nothing was generated, even by the supported git generator beside it: the controller
    // has had its reconciles (the condition is written), and creates nothing on a refusal.
    assert!(generated(&h, "prs").await.is_empty());
    let all = h.apps().list(&ListParams::default()).await.expect("list");
    assert!(all.items.is_empty(), "{:?}", all.items.len());
}
