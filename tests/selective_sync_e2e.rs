//! Argo CD's selective and dry-run syncs end to end: a real `sluice controller` syncs only the
//! objects an operation names, or only checks them with server-side dry runs, and neither counts
//! as a sync of the revision (no history entry).

mod common;

use common::gitops::{GitRepo, GitopsHarness, config_map};
use serde_json::json;
use sluice::api::application::{Application, OperationPhase, OperationState};

/// The last operation once it is finished (and the request cleared, so that the next one is not
/// merged into it) and was requested with `sync` as its `operation.sync`.
fn finished<'a>(app: &'a Application, sync: &serde_json::Value) -> Option<&'a OperationState> {
    if app.operation.is_some() {
        return None;
    }
    let state = app.status.as_ref()?.operation_state.as_ref()?;
    let requested = serde_json::to_value(state.operation.sync.as_ref()?).ok()?;
    (state.phase.is_completed() && &requested == sync).then_some(state)
}

fn messages(state: &OperationState) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = state
        .sync_result
        .iter()
        .flat_map(|r| &r.resources)
        .map(|r| (r.name.clone(), r.message.clone().unwrap_or_default()))
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn a_dry_run_changes_nothing_and_a_selective_sync_applies_only_what_it_names() {
    let h = GitopsHarness::start("sel-sync", "60s").await;
    let repo = GitRepo::create(&h.env, "sel-sync");
    repo.commit(
        "two config maps",
        &[
            ("app/a.yaml", Some(&config_map("a", "1"))),
            ("app/b.yaml", Some(&config_map("b", "1"))),
        ],
    );
    h.create_app("web", &repo, "app", json!({})).await;

    let dry_run = json!({"dryRun": true});
    h.request("web", json!({"sync": dry_run})).await;
    let app = h
        .wait_app("web", "the dry run finished", |a| {
            finished(a, &dry_run).is_some()
        })
        .await;
    let state = finished(&app, &dry_run).expect("finished");
    assert_eq!(
        state.phase,
        OperationPhase::Succeeded,
        "{:?}",
        state.message
    );
    assert_eq!(
        messages(state),
        [
            ("a".to_string(), "applied (dry run)".to_string()),
            ("b".to_string(), "applied (dry run)".to_string())
        ]
    );
    assert_eq!(h.config_value("a").await, None, "a dry run creates nothing");
    assert_eq!(h.config_value("b").await, None);

    let selective = json!({"resources": [{"kind": "ConfigMap", "name": "a"}]});
    h.request("web", json!({"sync": selective})).await;
    let app = h
        .wait_app("web", "the selective sync finished", |a| {
            finished(a, &selective).is_some()
        })
        .await;
    let state = finished(&app, &selective).expect("finished");
    assert_eq!(
        state.phase,
        OperationPhase::Succeeded,
        "{:?}",
        state.message
    );
    assert_eq!(messages(state), [("a".to_string(), "applied".to_string())]);
    assert_eq!(h.config_value("a").await.as_deref(), Some("1"));
    assert_eq!(h.config_value("b").await, None, "not named, not applied");
    let history = app.status.as_ref().map_or(0, |s| s.history.len());
    assert_eq!(history, 0, "partial syncs leave no history entry");

    // The full sync: everything, and the history entry.
    let full = json!({});
    h.request("web", json!({"sync": full})).await;
    let app = h
        .wait_app("web", "the full sync finished", |a| {
            finished(a, &full).is_some()
        })
        .await;
    assert_eq!(h.config_value("b").await.as_deref(), Some("1"));
    assert_eq!(app.status.as_ref().map_or(0, |s| s.history.len()), 1);
    h.ns.delete().await;
}
