//! What a project permits: Application namespaces (`sourceNamespaces`), repositories, destinations and
//! kinds; objects another Application tracks.

use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::Api;
use serde_json::json;
use sluice::api::application::{Application, OperationPhase, SyncStatusCode};
use sluice::api::project::AppProject;

use crate::common::gitops::{GitRepo, condition, config_map, revision, sync_status};
use crate::common::tenancy::{NewApp, TenancyHarness};

fn operation(app: &Application) -> Option<(OperationPhase, String)> {
    let state = app.status.as_ref()?.operation_state.as_ref()?;
    Some((state.phase, state.message.clone().unwrap_or_default()))
}

/// `manifest` (JSON) with `metadata.namespace` set.
fn in_namespace(manifest: &str, namespace: &str) -> String {
    let mut object: serde_json::Value = serde_json::from_str(manifest).unwrap();
    object["metadata"]["namespace"] = json!(namespace);
    object.to_string()
}

#[tokio::test]
async fn objects_outside_the_project_fail_the_sync_and_nothing_of_it_is_applied() {
    let h = TenancyHarness::start("tn-kinds", &[]).await;
    let a = &h.team_a.ns.name;
    let repo = GitRepo::create(&h.env, "tn-kinds");
    let binding = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: team-a-is-admin\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: cluster-admin\nsubjects:\n- kind: ServiceAccount\n  name: deployer\n  namespace: team-a\n";
    let sha = repo.commit(
        "an app that also grabs cluster-admin",
        &[
            ("app/own.yaml", Some(&config_map("own", "1"))),
            ("app/binding.yaml", Some(binding)),
            (
                "app/system.yaml",
                Some(&in_namespace(&config_map("planted", "1"), "kube-system")),
            ),
        ],
    );
    h.create_app(NewApp::of(&h.team_a, "shop", &repo), json!({}))
        .await;

    let app = h
        .wait_app(a, "shop", "the sync failed", |app| {
            operation(app).is_some_and(|(phase, _)| phase == OperationPhase::Failed)
        })
        .await;
    let (_, message) = operation(&app).unwrap();
    assert!(message.contains("nothing was applied"), "{message}");
    assert!(
        message.contains("ClusterRoleBinding.rbac.authorization.k8s.io team-a-is-admin")
            && message.contains("clusterResourceWhitelist"),
        "names the binding and the rule: {message}"
    );
    assert!(
        message.contains("ConfigMap kube-system/planted")
            && message.contains("project team-a's destinations"),
        "names the ConfigMap and the rule: {message}"
    );
    let sync_error = condition(&app, "SyncError").expect("SyncError condition");
    assert!(sync_error.contains("team-a-is-admin"), "{sync_error}");
    assert_eq!(revision(&app).as_deref(), Some(sha.as_str()));

    let bindings: Api<ClusterRoleBinding> = Api::all(h.client.clone());
    assert!(bindings.get_opt("team-a-is-admin").await.unwrap().is_none());
    assert!(
        h.config_maps("kube-system")
            .get_opt("planted")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        h.config_maps(a).get_opt("own").await.unwrap().is_none(),
        "all-or-nothing: not even the permitted object is applied"
    );
}

#[tokio::test]
async fn applications_outside_the_control_namespace_need_the_projects_source_namespaces() {
    let h = TenancyHarness::start("tn-srcns", &[]).await;
    let (a, b) = (&h.team_a.ns.name, &h.team_b.ns.name);
    let projects: Api<AppProject> = Api::namespaced(h.client.clone(), &h.control.name);
    let default = crate::common::wait_for(
        "the controller creates the default project",
        std::time::Duration::from_secs(60),
        || async { projects.get_opt("default").await.ok().flatten() },
    )
    .await;
    assert!(
        default.spec.source_namespaces.is_empty(),
        "closed by default"
    );

    let repo = GitRepo::create(&h.env, "tn-srcns");
    let sha = repo.commit(
        "one map",
        &[("app/cm.yaml", Some(&config_map("hello", "1")))],
    );
    // Team B's namespace is not in team A's sourceNamespaces, nor in the default project's.
    h.create_app(
        NewApp {
            destination: a,
            namespace: b,
            ..NewApp::of(&h.team_a, "borrowed", &repo)
        },
        json!({}),
    )
    .await;
    h.create_app(
        NewApp {
            project: "default",
            ..NewApp::of(&h.team_b, "defaulted", &repo)
        },
        json!({}),
    )
    .await;
    // The control namespace may use any project; team A's own namespace may use team A's.
    h.create_app(NewApp::of(&h.team_a, "own", &repo), json!({}))
        .await;

    for (name, project) in [("borrowed", "team-a"), ("defaulted", "default")] {
        let app = h
            .wait_app(b, name, "InvalidSpecError", |app| {
                condition(app, "InvalidSpecError").is_some()
            })
            .await;
        let message = condition(&app, "InvalidSpecError").unwrap();
        assert!(
            message.contains(&format!("namespace {b} may not use project {project}"))
                && message.contains("sourceNamespaces"),
            "{message}"
        );
        assert_ne!(sync_status(&app), SyncStatusCode::Synced);
    }
    h.wait_app(a, "own", "Synced at the commit", |app| {
        sync_status(app) == SyncStatusCode::Synced && revision(app).as_deref() == Some(sha.as_str())
    })
    .await;
    assert!(h.config_maps(a).get_opt("hello").await.unwrap().is_some());
    // Only `own` applied it, into team A's namespace; team B's namespace got nothing.
    assert!(h.config_maps(b).get_opt("hello").await.unwrap().is_none());

    // A repository outside sourceRepos is refused before it is fetched.
    h.create_app(
        NewApp::of(&h.team_a, "elsewhere", &repo),
        json!({"source": {"repoURL": "http://127.0.0.1:9/other.git", "path": "app"}}),
    )
    .await;
    let app = h
        .wait_app(a, "elsewhere", "InvalidSpecError", |app| {
            condition(app, "InvalidSpecError").is_some()
        })
        .await;
    let message = condition(&app, "InvalidSpecError").unwrap();
    assert!(
        message.contains("is not permitted by project team-a's sourceRepos"),
        "{message}"
    );
    assert_eq!(condition(&app, "ComparisonError"), None, "never fetched");
}

#[tokio::test]
async fn an_object_another_application_tracks_is_neither_modified_nor_pruned() {
    let h = TenancyHarness::start("tn-shared", &[]).await;
    let (a, b) = (&h.team_a.ns.name, &h.team_b.ns.name);
    // Both teams may deploy into team B's namespace.
    let git_base = h.env.get("GIT_BASE_URL");
    h.set_project(
        &h.team_a.project,
        json!({"destinations": [
            {"server": "https://kubernetes.default.svc", "namespace": a},
            {"server": "https://kubernetes.default.svc", "namespace": b},
        ], "sourceRepos": [format!("{git_base}/*")], "sourceNamespaces": [a]}),
    )
    .await;

    let repo_b = GitRepo::create(&h.env, "tn-shared-b");
    let sha_b = repo_b.commit(
        "team b",
        &[("app/cm.yaml", Some(&config_map("shared", "team-b")))],
    );
    h.create_app(NewApp::of(&h.team_b, "owner", &repo_b), json!({}))
        .await;
    h.wait_app(b, "owner", "Synced", |app| {
        sync_status(app) == SyncStatusCode::Synced
            && revision(app).as_deref() == Some(sha_b.as_str())
    })
    .await;

    let repo_a = GitRepo::create(&h.env, "tn-shared-a");
    let shared = in_namespace(&config_map("shared", "team-a"), b);
    let sha_a = repo_a.commit(
        "team a declares b's map too",
        &[
            ("app/mine.yaml", Some(&config_map("mine", "1"))),
            ("app/shared.yaml", Some(&shared)),
        ],
    );
    h.create_app(NewApp::of(&h.team_a, "intruder", &repo_a), json!({}))
        .await;
    let app = h
        .wait_app(a, "intruder", "synced what is its own", |app| {
            operation(app).is_some_and(|(phase, _)| phase == OperationPhase::Succeeded)
                && revision(app).as_deref() == Some(sha_a.as_str())
        })
        .await;
    let warning = condition(&app, "SharedResourceWarning").expect("SharedResourceWarning");
    assert!(
        warning.contains(&format!("ConfigMap {b}/shared (applied by {b}/owner)")),
        "{warning}"
    );
    assert!(h.config_maps(a).get_opt("mine").await.unwrap().is_some());
    let kept = h.config_maps(b).get("shared").await.unwrap();
    assert_eq!(kept.data.unwrap()["v"], "team-b", "not modified");
    assert_eq!(
        kept.metadata.annotations.unwrap()["sluice.dev/application"],
        format!("{b}/owner"),
        "not taken over"
    );

    // Team A drops the map from Git and syncs with prune: still team B's, still there.
    let sha_a2 = repo_a.commit("drop it", &[("app/shared.yaml", None)]);
    h.wait_app(a, "intruder", "Synced at the new commit", |app| {
        sync_status(app) == SyncStatusCode::Synced
            && revision(app).as_deref() == Some(sha_a2.as_str())
    })
    .await;
    let kept = h.config_maps(b).get("shared").await.unwrap();
    assert_eq!(kept.data.unwrap()["v"], "team-b", "not pruned");

    // With FailOnSharedResource=true the sync fails instead, applying nothing.
    let repo_c = GitRepo::create(&h.env, "tn-shared-c");
    repo_c.commit(
        "strict",
        &[
            ("app/strict.yaml", Some(&config_map("strict", "1"))),
            ("app/shared.yaml", Some(&shared)),
        ],
    );
    h.create_app(
        NewApp::of(&h.team_a, "strict", &repo_c),
        json!({"syncPolicy": {"automated": {}, "syncOptions": ["FailOnSharedResource=true"]}}),
    )
    .await;
    let app = h
        .wait_app(a, "strict", "the sync failed", |app| {
            operation(app).is_some_and(|(phase, _)| phase == OperationPhase::Failed)
        })
        .await;
    let (_, message) = operation(&app).unwrap();
    assert!(
        message.starts_with("FailOnSharedResource=true"),
        "{message}"
    );
    assert!(h.config_maps(a).get_opt("strict").await.unwrap().is_none());
}

#[tokio::test]
async fn fields_another_manager_owns_are_never_forced_on_an_adopted_object() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::PostParams;

    let h = TenancyHarness::start("tn-force", &[]).await;
    let a = &h.team_a.ns.name;
    let by_hand: ConfigMap = serde_json::from_str(&config_map("legacy", "by-hand")).unwrap();
    let params = PostParams {
        field_manager: Some("ops-team".to_string()),
        ..PostParams::default()
    };
    h.config_maps(a).create(&params, &by_hand).await.unwrap();

    let repo = GitRepo::create(&h.env, "tn-force");
    repo.commit(
        "declare the legacy map",
        &[("app/legacy.yaml", Some(&config_map("legacy", "from-git")))],
    );
    h.create_app(NewApp::of(&h.team_a, "adopter", &repo), json!({}))
        .await;
    let app = h
        .wait_app(a, "adopter", "the sync failed", |app| {
            operation(app).is_some_and(|(phase, _)| phase == OperationPhase::Failed)
        })
        .await;
    let (_, message) = operation(&app).unwrap();
    assert!(
        message.contains("conflict with \"ops-team\"")
            && message.contains("was not applied by this Application"),
        "{message}"
    );
    let kept = h.config_maps(a).get("legacy").await.unwrap();
    assert_eq!(kept.data.unwrap()["v"], "by-hand");

    // Once Git agrees with the owner's value there is no conflict: the object is adopted, and from
    // then on Git wins over anyone (drift is corrected).
    let sha = repo.commit(
        "agree with ops",
        &[("app/legacy.yaml", Some(&config_map("legacy", "by-hand")))],
    );
    h.wait_app(a, "adopter", "Synced at the agreeing commit", |app| {
        sync_status(app) == SyncStatusCode::Synced && revision(app).as_deref() == Some(sha.as_str())
    })
    .await;
    let adopted = h.config_maps(a).get("legacy").await.unwrap();
    assert_eq!(
        adopted.metadata.annotations.unwrap()["sluice.dev/application"],
        format!("{a}/adopter")
    );
}
