//! AppProject sync windows end to end: a real `sluice controller` (scoped to the test's namespace)
//! holds an automated Application's sync and a user's requested sync while a deny window is active,
//! and syncs as soon as the window is gone.

mod common;

use common::gitops::{GitRepo, GitopsHarness, config_map, sync_status};
use common::tenancy::{create_project, projects};
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use sluice::api::application::{Application, OperationPhase, SyncStatusCode};

fn operation(app: &Application) -> Option<(OperationPhase, String)> {
    let state = app.status.as_ref()?.operation_state.as_ref()?;
    Some((state.phase, state.message.clone().unwrap_or_default()))
}

#[tokio::test]
async fn a_deny_window_holds_automated_and_requested_syncs_until_it_is_gone() {
    let h = GitopsHarness::start("windows", "60s").await;
    let repo = GitRepo::create(&h.env, "windows");
    let sha = repo.commit("one", &[("app/a.yaml", Some(&config_map("a", "1")))]);
    create_project(
        &h.client,
        &h.ns.name,
        "frozen",
        json!({"sourceRepos": ["*"], "destinations": [{"server": "*", "namespace": "*"}],
               "syncWindows": [{"kind": "deny", "schedule": "* * * * *", "duration": "1h",
                                "applications": ["web"]}]}),
    )
    .await;
    let app: Application = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Application",
        "metadata": {"name": "web"},
        "spec": {"project": "frozen",
                 "source": {"repoURL": repo.url, "targetRevision": "main", "path": "app"},
                 "destination": {"namespace": h.ns.name},
                 "syncPolicy": {"automated": {}}}
    }))
    .expect("application");
    h.apps()
        .create(&PostParams::default(), &app)
        .await
        .expect("create application");

    // Compared (OutOfSync at the commit), not synced.
    h.wait_app("web", "OutOfSync at the commit", |a| {
        sync_status(a) == SyncStatusCode::OutOfSync
            && a.status
                .as_ref()
                .and_then(|s| s.sync.as_ref())
                .and_then(|s| s.revision.as_deref())
                == Some(sha.as_str())
    })
    .await;
    // A user's sync request waits, Running, saying why.
    h.request(
        "web",
        json!({"sync": {"revision": "main"}, "initiatedBy": {"username": "alice"}}),
    )
    .await;
    let waiting = h
        .wait_app("web", "the requested sync blocked by the window", |a| {
            operation(a).is_some_and(|(phase, message)| {
                phase == OperationPhase::Running && message.contains("blocked by sync window")
            })
        })
        .await;
    assert!(waiting.operation.is_some(), "the request must be kept");
    assert_eq!(
        h.config_value("a").await,
        None,
        "synced inside a deny window"
    );

    // The window removed: the waiting request (and the automated policy) sync at once.
    projects(&h.client, &h.ns.name)
        .patch(
            "frozen",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"syncWindows": null}})),
        )
        .await
        .expect("remove the window");
    h.wait_synced("web", &sha).await;
    assert_eq!(h.config_value("a").await.as_deref(), Some("1"));
}
