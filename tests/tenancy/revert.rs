//! The revert loop takes no Rollout's word for where its revision came from: a Rollout that team B
//! creates in its own namespace, annotated with team A's Application and one of team A's commits,
//! fails its analysis; nothing is pushed to team A's repository nor written to its Application, and
//! the Rollout says why.

use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};
use sluice::api::application::{HealthStatusCode, SyncStatusCode};
use sluice::api::rollout::{RevertPhase, Rollout, RolloutPhase};

use crate::common::canary_app::{
    APP, app_files, bare_dir, commit, git, healthy, revert_phase, reverts_of,
};
use crate::common::gitops::{GitRepo, TIMEOUT, config_map, health, revision, sync_status};
use crate::common::rollouts::phase;
use crate::common::tenancy::{NewApp, TenancyHarness, apply};
use crate::common::wait_for;

/// The canary app's objects at `image`, for `namespace`, the Rollout annotated as Sluice's sync
/// annotates the Rollouts it applies, with `application` and `revision`.
fn forged_objects(namespace: &str, image: &str, application: &str, revision: &str) -> Vec<Value> {
    app_files(namespace, image)
        .into_iter()
        .map(|(path, manifest)| {
            let mut object: Value = serde_json::from_str(&manifest).expect("manifest is JSON");
            if path.ends_with("rollout.yaml") {
                object["metadata"]["annotations"] = json!({
                    "sluice.dev/application": application,
                    "sluice.dev/revision": revision,
                });
            }
            object
        })
        .collect()
}

async fn wait_forged(h: &TenancyHarness, what: &str, check: impl Fn(&Rollout) -> bool) -> Rollout {
    let api: Api<Rollout> = Api::namespaced(h.client.clone(), &h.team_b.ns.name);
    wait_for(what, TIMEOUT, || async {
        let r = api.get_opt("web").await.ok()??;
        check(&r).then_some(r)
    })
    .await
}

#[tokio::test]
async fn a_forged_rollout_in_team_b_pushes_no_revert_to_team_a() {
    let h = TenancyHarness::start("rvt", &[]).await;
    let team_a = h.team_a.ns.name.clone();
    let team_b = h.team_b.ns.name.clone();

    // Team A: the canary app, then a commit whose revert would apply cleanly (it only adds a file).
    let repo = GitRepo::create(&h.env, "rvt");
    commit(&repo, "web v1", &app_files(&team_a, "example/web:1.0"));
    let deployed = commit(
        &repo,
        "settings",
        &[("app/settings.yaml".into(), config_map("settings", "1"))],
    );
    h.create_app(
        NewApp::of(&h.team_a, APP, &repo),
        json!({"syncPolicy": {"automated": {"prune": true, "selfHeal": true},
                              "rollback": {"gitRevert": true}}}),
    )
    .await;
    h.wait_app(&team_a, APP, "Synced and Healthy", |a| {
        sync_status(a) == SyncStatusCode::Synced
            && health(a) == HealthStatusCode::Healthy
            && revision(a).as_deref() == Some(deployed.as_str())
    })
    .await;
    let dir = bare_dir(&h.env, &repo);
    assert_eq!(git(&dir, &["rev-parse", "main"]), deployed);

    // Team B: the same app in its namespace, claiming to be team A's at the deployed commit; then
    // a bad release whose analysis fails.
    let application = format!("{team_a}/{APP}");
    for object in forged_objects(&team_b, "example/web:1.0", &application, &deployed) {
        apply(&h.client, &team_b, object).await;
    }
    wait_forged(&h, "the forged Rollout Healthy", healthy).await;
    for object in forged_objects(&team_b, "example/web:bad", &application, &deployed) {
        apply(&h.client, &team_b, object).await;
    }
    let refused = wait_forged(&h, "the forged Rollout aborted, its revert refused", |r| {
        r.status.as_ref().is_some_and(|s| s.abort == Some(true))
            && phase(r) == Some(RolloutPhase::Degraded)
            && revert_phase(r) == Some(RevertPhase::Failed)
    })
    .await;
    let record = refused
        .status
        .as_ref()
        .and_then(|s| {
            s.revisions
                .iter()
                .find(|r| Some(&r.pod_template_hash) == s.current_pod_hash.as_ref())
        })
        .cloned()
        .expect("the bad revision's record");
    assert_eq!(record.git_revision.as_deref(), Some(deployed.as_str()));
    assert_eq!(record.application.as_deref(), Some(application.as_str()));

    let expected =
        format!("Application {application} does not list Rollout {team_b}/web in status.resources");
    let events: Api<Event> = Api::namespaced(h.client.clone(), &team_b);
    let event = wait_for(
        "a RevertRefused Event on the forged Rollout",
        TIMEOUT,
        || async {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items.into_iter().find(|e| {
                let about = e.regarding.as_ref();
                about.and_then(|r| r.kind.as_deref()) == Some("Rollout")
                    && about.and_then(|r| r.name.as_deref()) == Some("web")
                    && e.type_.as_deref() == Some("Warning")
                    && e.reason.as_deref() == Some("RevertRefused")
            })
        },
    )
    .await;
    let note = event.note.clone().unwrap_or_default();
    assert!(note.contains(&expected), "{note}");
    assert!(
        event.series.is_none(),
        "recorded once, not repeated: {event:?}"
    );
    let message = refused
        .status
        .as_ref()
        .and_then(|s| s.revert.as_ref())
        .and_then(|r| r.message.clone())
        .unwrap_or_default();
    assert_eq!(message, note);

    // Team A's repository and Application are untouched.
    assert_eq!(
        git(&dir, &["rev-parse", "main"]),
        deployed,
        "nothing pushed"
    );
    assert_eq!(reverts_of(&dir, &deployed), 0);
    let app = h
        .apps(&team_a)
        .get(APP)
        .await
        .expect("team A's Application");
    let status = app.status.expect("status");
    assert_eq!(status.revert, None);
    assert!(
        status.quarantined_revisions.is_empty(),
        "{:?}",
        status.quarantined_revisions
    );
    assert!(
        !status
            .conditions
            .iter()
            .any(|c| c.type_.starts_with("Revert")),
        "{:?}",
        status.conditions
    );
}
