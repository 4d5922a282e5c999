//! Sync impersonation (`--sync-impersonation`): a sync writes as the ServiceAccount its project names
//! in `destinationServiceAccounts`, so the API server's RBAC has the last word even when the project
//! itself permits everything. Team A's project here is permissive on kinds (every cluster-scoped kind,
//! its namespace and `kube-system` as destinations) but names team A's `deployer`, whose Role only
//! covers ConfigMaps, Services, Deployments and Rollouts in team A's namespace. Team B's project names
//! no account.

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sluice::api::application::{Application, OperationPhase, SyncStatusCode};

use crate::common::gitops::{GitRepo, TIMEOUT, condition, config_map, revision, sync_status};
use crate::common::tenancy::{DEPLOYER, NewApp, TenancyHarness};
use crate::common::wait_for;

const SYNC_ERROR: &str = "SyncError";

/// The harness with `--sync-impersonation`; team A's project as described above, team B's unchanged
/// (no `destinationServiceAccounts`).
async fn start(prefix: &str) -> TenancyHarness {
    let team_a = format!("{prefix}-a-");
    TenancyHarness::start_with_projects(prefix, &["--sync-impersonation"], |ns, spec| {
        if !ns.starts_with(&team_a) {
            return;
        }
        spec["clusterResourceWhitelist"] = json!([{"group": "*", "kind": "*"}]);
        spec["destinations"] = json!([
            {"server": "https://kubernetes.default.svc", "namespace": ns},
            {"server": "https://kubernetes.default.svc", "namespace": "kube-system"},
        ]);
        spec["destinationServiceAccounts"] = json!([
            {"server": "https://kubernetes.default.svc", "namespace": ns, "defaultServiceAccount": DEPLOYER},
        ]);
    })
    .await
}

fn namespaced_config_map(name: &str, namespace: &str, value: &str) -> String {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": namespace}, "data": {"v": value}})
    .to_string()
}

/// The last operation's phase and message.
fn operation(app: &Application) -> Option<(OperationPhase, String)> {
    let state = app.status.as_ref()?.operation_state.as_ref()?;
    Some((state.phase, state.message.clone().unwrap_or_default()))
}

fn failed_with(app: &Application, needle: &str) -> bool {
    operation(app)
        .is_some_and(|(phase, message)| phase == OperationPhase::Failed && message.contains(needle))
}

fn service_account_user(ns: &str) -> String {
    format!("system:serviceaccount:{ns}:{DEPLOYER}")
}

/// (a) A permissive project does not make a ClusterRoleBinding possible: the dry run as team A's
/// `deployer` is refused by the API server, that refusal is the sync's failure, and nothing of the
/// revision is applied (not even the ConfigMap the account could write).
#[tokio::test]
async fn the_api_servers_refusal_of_the_service_account_fails_the_sync_and_applies_nothing() {
    let h = start("imp-crb").await;
    let ns = h.team_a.ns.name.clone();
    let binding = format!("{ns}-escalate");
    let repo = GitRepo::create(&h.env, "imp-crb");
    let crb = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": binding},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": DEPLOYER, "namespace": ns}],
    });
    repo.commit(
        "escalate",
        &[
            ("app/cm.yaml", Some(&config_map("settings", "1"))),
            ("app/crb.yaml", Some(&crb.to_string())),
        ],
    );
    h.create_app(NewApp::of(&h.team_a, "escalate", &repo), json!({}))
        .await;

    let user = service_account_user(&ns);
    let app = h
        .wait_app(
            &ns,
            "escalate",
            "the sync failed on the API server's refusal",
            |a| failed_with(a, "forbidden"),
        )
        .await;
    let (_, message) = operation(&app).expect("operation state");
    assert!(
        message.contains(&user)
            && message.contains(&format!(
                "ClusterRoleBinding.rbac.authorization.k8s.io {binding}"
            ))
            && message.contains("nothing was applied"),
        "the refusal names the account and the object: {message}"
    );
    let sync_error = condition(&app, SYNC_ERROR).expect("SyncError condition");
    assert!(
        sync_error.contains("forbidden") && sync_error.contains(&user),
        "{sync_error}"
    );

    let bindings: Api<ClusterRoleBinding> = Api::all(h.client.clone());
    assert!(
        bindings.get_opt(&binding).await.expect("read").is_none(),
        "the ClusterRoleBinding was created"
    );
    assert!(
        h.config_maps(&ns)
            .get_opt("settings")
            .await
            .expect("read")
            .is_none(),
        "the ConfigMap was applied although the sync failed"
    );
    assert!(
        h.controller_log().contains("sync impersonation on"),
        "the controller says impersonation is on"
    );
}

/// (b) What the account may write is applied, with Sluice's field manager; the same sync writing
/// where the account may not (`kube-system`, which the project permits and the controller itself
/// could write) is refused by the API server, naming the account.
#[tokio::test]
async fn a_sync_writes_as_the_projects_service_account() {
    let h = start("imp-sa").await;
    let ns = h.team_a.ns.name.clone();
    let repo = GitRepo::create(&h.env, "imp-sa");
    let first = repo.commit(
        "settings",
        &[("app/cm.yaml", Some(&config_map("settings", "1")))],
    );
    h.create_app(NewApp::of(&h.team_a, "config", &repo), json!({}))
        .await;
    h.wait_app(&ns, "config", "Synced at the first commit", |a| {
        sync_status(a) == SyncStatusCode::Synced && revision(a).as_deref() == Some(first.as_str())
    })
    .await;
    let applied = h
        .config_maps(&ns)
        .get("settings")
        .await
        .expect("the ConfigMap");
    assert_eq!(
        applied
            .data
            .as_ref()
            .and_then(|d| d.get("v"))
            .map(String::as_str),
        Some("1")
    );
    let managers: Vec<(String, String)> = applied
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|f| {
            (
                f.manager.clone().unwrap_or_default(),
                f.operation.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        managers.contains(&("sluice-gitops".to_string(), "Apply".to_string())),
        "applied with Sluice's field manager: {managers:?}"
    );

    let outside = format!("{ns}-outside");
    let second = repo.commit(
        "and one in kube-system",
        &[(
            "app/outside.yaml",
            Some(&namespaced_config_map(&outside, "kube-system", "1")),
        )],
    );
    let user = service_account_user(&ns);
    let app = h
        .wait_app(
            &ns,
            "config",
            "the second commit refused as the account",
            |a| {
                failed_with(a, "forbidden")
                    && a.status
                        .as_ref()
                        .and_then(|s| s.operation_state.as_ref())
                        .and_then(|o| o.sync_result.as_ref())
                        .is_some_and(|r| r.revision == second)
            },
        )
        .await;
    let (_, message) = operation(&app).expect("operation state");
    let kube_system: Api<ConfigMap> = Api::namespaced(h.client.clone(), "kube-system");
    let created = kube_system.get_opt(&outside).await.expect("read");
    if created.is_some() {
        let _ = kube_system.delete(&outside, &DeleteParams::default()).await;
    }
    assert!(created.is_none(), "written to kube-system: {message}");
    assert!(
        message.contains(&user) && message.contains("kube-system"),
        "the refusal names the account and the namespace: {message}"
    );
    // Still the first revision's content: nothing of the refused one was applied.
    assert_eq!(
        h.config_maps(&ns)
            .get("settings")
            .await
            .expect("the ConfigMap")
            .metadata
            .annotations
            .and_then(|a| a.get("sluice.dev/revision").cloned()),
        Some(first)
    );
}

/// (c) Under `--sync-impersonation` a project with no `destinationServiceAccounts` fails every sync
/// with a message saying so, and the controller never writes as itself.
#[tokio::test]
async fn a_project_without_service_accounts_fails_the_sync_with_a_clear_message() {
    let h = start("imp-none").await;
    let ns = h.team_b.ns.name.clone();
    let repo = GitRepo::create(&h.env, "imp-none");
    repo.commit(
        "settings",
        &[("app/cm.yaml", Some(&config_map("settings", "1")))],
    );
    h.create_app(NewApp::of(&h.team_b, "config", &repo), json!({}))
        .await;
    let expected = format!(
        "no ServiceAccount to sync as, nothing was applied: sync impersonation is on (--sync-impersonation) and project {} has no destinationServiceAccounts",
        h.team_b.project
    );
    let app = h
        .wait_app(
            &ns,
            "config",
            "the sync refused for want of an account",
            |a| failed_with(a, &expected),
        )
        .await;
    let sync_error = condition(&app, SYNC_ERROR).expect("SyncError condition");
    assert!(sync_error.contains(&expected), "{sync_error}");
    assert!(
        h.config_maps(&ns)
            .get_opt("settings")
            .await
            .expect("read")
            .is_none(),
        "applied as the controller"
    );
    let result: Option<Value> = app
        .status
        .as_ref()
        .and_then(|s| s.operation_state.as_ref())
        .and_then(|o| o.sync_result.as_ref())
        .map(|r| json!(r.resources));
    assert_eq!(result, Some(json!([])), "no object was attempted");
}

/// Deleting an Application with the resources finalizer deletes its objects as the ServiceAccount
/// too: what the account may delete goes, an object it may not (one in `kube-system` carrying the
/// Application's tracking annotation) stays and keeps the finalizer, until it is gone.
#[tokio::test]
async fn the_cascade_delete_runs_as_the_service_account() {
    let h = start("imp-del").await;
    let ns = h.team_a.ns.name.clone();
    let repo = GitRepo::create(&h.env, "imp-del");
    let sha = repo.commit(
        "settings",
        &[("app/cm.yaml", Some(&config_map("settings", "1")))],
    );
    h.create_app(NewApp::of(&h.team_a, "config", &repo), json!({}))
        .await;
    let apps = h.apps(&ns);
    apps.patch(
        "config",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"finalizers": ["resources-finalizer.argocd.argoproj.io"]}}),
        ),
    )
    .await
    .expect("add the resources finalizer");
    h.wait_app(&ns, "config", "Synced", |a| {
        sync_status(a) == SyncStatusCode::Synced && revision(a).as_deref() == Some(sha.as_str())
    })
    .await;

    let stray = format!("{ns}-stray");
    let kube_system: Api<ConfigMap> = Api::namespaced(h.client.clone(), "kube-system");
    let tracked: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": stray, "namespace": "kube-system",
                     "labels": {"sluice.dev/tracked": "true"},
                     "annotations": {"sluice.dev/application": format!("{ns}/config")}},
    }))
    .expect("ConfigMap");
    kube_system
        .create(&PostParams::default(), &tracked)
        .await
        .expect("create the tracked ConfigMap in kube-system");

    apps.delete("config", &DeleteParams::default())
        .await
        .expect("delete the Application");
    let settings = h.config_maps(&ns);
    wait_for("the ConfigMap deleted as the account", TIMEOUT, || async {
        settings
            .get_opt("settings")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    let user = service_account_user(&ns);
    wait_for(
        "the refused delete in kube-system logged",
        TIMEOUT,
        || async {
            let log = h.controller_log();
            log.lines()
                .any(|l| l.contains("cascade delete") && l.contains(&stray) && l.contains(&user))
                .then_some(())
        },
    )
    .await;
    let kept = kube_system.get_opt(&stray).await.expect("read");
    let app_kept = apps.get_opt("config").await.expect("read").is_some();
    let _ = kube_system.delete(&stray, &DeleteParams::default()).await;
    assert!(kept.is_some(), "deleted in kube-system: not as the account");
    assert!(app_kept, "the finalizer went before its objects");
    wait_for("the Application gone", TIMEOUT, || async {
        apps.get_opt("config").await.ok()?.is_none().then_some(())
    })
    .await;
}
