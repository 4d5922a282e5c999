//! The `proj` commands of `kubectl sluice`, through the real kubectl: two AppProjects in a control
//! namespace and Applications naming them there, in a namespace a project's `sourceNamespaces`
//! accept, and in one it does not. No controller runs: the statuses are written as a controller
//! would, so the output is known. The text layout itself is tested from fixtures in
//! `plugin_render.rs`.

mod common;
mod plugin_support;

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, CustomResourceExt};
use serde_json::{Value, json};
use sluice::api::application::Application;
use sluice::api::project::AppProject;

use common::{E2eEnv, TestNamespace, apply_crds};
use plugin_support::{kubectl_sluice, kubectl_sluice_on_tty};

const EXIT_ERROR: i32 = 3;

/// The AppProject CRD from the type, until `crds/` carries it (`apply_crds` then applies the same
/// object, with the same field manager).
async fn apply_project_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = AppProject::crd();
    let name = crd.metadata.name.clone().expect("CRD name");
    crds.patch(
        &name,
        &PatchParams::apply("sluice-e2e-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("apply the AppProject CRD");
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(crds, &name, conditions::is_crd_established()),
    )
    .await
    .expect("AppProject CRD established in 30s")
    .expect("watch CRD");
}

async fn create_project(client: &Client, namespace: &str, name: &str, spec: Value) {
    let project: AppProject = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "AppProject",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }))
    .expect("AppProject object");
    Api::<AppProject>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &project)
        .await
        .expect("create AppProject");
}

/// An Application of `project` in `namespace`; with `status` (sync, health), that status written
/// through the status subresource as the controller writes it.
async fn create_app(
    client: &Client,
    namespace: &str,
    name: &str,
    project: &str,
    status: Option<(&str, &str)>,
) {
    let app: Application = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "project": project,
            "source": {"repoURL": "git://127.0.0.1:9418/team-a-web.git", "path": "app"},
            "destination": {"namespace": namespace},
        },
    }))
    .expect("Application object");
    let api = Api::<Application>::namespaced(client.clone(), namespace);
    api.create(&PostParams::default(), &app)
        .await
        .expect("create Application");
    if let Some((sync, health)) = status {
        let status = json!({"status": {"sync": {"status": sync}, "health": {"status": health}}});
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .expect("write the Application's status");
    }
}

/// The cells of a table line (columns are at least two spaces apart, cells never hold two).
fn cells(line: &str) -> Vec<&str> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

fn table(text: &str) -> Vec<Vec<&str>> {
    text.lines().map(cells).collect()
}

/// `proj list` and `proj get` in the control namespace chosen with `-n`: what each project allows,
/// which Applications use it (and which name it from a namespace it does not accept); a missing
/// project is a one-line error.
#[tokio::test]
async fn proj_list_and_get_show_what_projects_allow_and_who_uses_them() {
    let env = E2eEnv::load();
    let client = env.client().await;
    apply_crds(&client).await;
    apply_project_crd(&client).await;
    let control = TestNamespace::create(&client, "plug-proj").await;
    let team = TestNamespace::create(&client, "plug-projteam").await;
    let stray = TestNamespace::create(&client, "plug-projstray").await;
    let (control_ns, team_ns, stray_ns) = (&control.name, &team.name, &stray.name);
    let server = "https://kubernetes.default.svc";
    create_project(
        &client,
        control_ns,
        "team-a",
        json!({
            "description": "Team A's services\n(e2e)",
            "sourceRepos": [
                "git://127.0.0.1:9418/team-a-*.git",
                "!git://127.0.0.1:9418/team-a-secret.git"
            ],
            "destinations": [{"server": server, "namespace": team_ns}],
            "sourceNamespaces": [format!("{team_ns}*")],
            "namespaceResourceBlacklist": [{"group": "", "kind": "Secret"}],
            "destinationServiceAccounts": [
                {"server": server, "namespace": team_ns, "defaultServiceAccount": "deployer"}
            ],
        }),
    )
    .await;
    create_project(
        &client,
        control_ns,
        "platform",
        json!({
            "sourceRepos": ["*"],
            "destinations": [{"server": "*", "namespace": "*"}],
            "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
        }),
    )
    .await;
    create_app(
        &client,
        control_ns,
        "ops",
        "platform",
        Some(("Synced", "Healthy")),
    )
    .await;
    create_app(&client, control_ns, "tools", "team-a", None).await;
    create_app(
        &client,
        team_ns,
        "web",
        "team-a",
        Some(("OutOfSync", "Progressing")),
    )
    .await;
    // Neither project accepts these namespaces: they name the project but do not use it.
    create_app(&client, stray_ns, "intruder", "team-a", None).await;
    create_app(&client, team_ns, "platform-app", "platform", None).await;

    let list = kubectl_sluice(&env, Some(control_ns), &["proj", "list"])
        .await
        .expect_code(0)
        .stdout;
    let team_destination = format!("{server} ({team_ns})");
    assert_eq!(
        table(&list),
        [
            vec![
                "NAME",
                "DESCRIPTION",
                "SOURCE-REPOS",
                "DESTINATIONS",
                "CLUSTER-RESOURCE-WHITELIST",
                "APPLICATIONS"
            ],
            vec!["platform", "-", "*", "* (*)", "*.*", "1"],
            vec![
                "team-a",
                "Team A's services (e2e)",
                "git://127.0.0.1:9418/team-a-*.git, +1 more",
                &team_destination,
                "<none>",
                "2"
            ],
        ],
        "{list}"
    );

    let get = kubectl_sluice(&env, Some(control_ns), &["proj", "get", "team-a"])
        .await
        .expect_code(0)
        .stdout;
    let (fields, apps) = get.split_once("\n\n").expect("fields, then Applications");
    assert_eq!(
        fields,
        format!(
            "\
Name:               {control_ns}/team-a
Description:        Team A's services (e2e)
Source Repos:       git://127.0.0.1:9418/team-a-*.git
Denied Repos:       git://127.0.0.1:9418/team-a-secret.git
Destinations:       {server} ({team_ns})
Source Namespaces:  {team_ns}*
Cluster Allowed:    no cluster-scoped kinds
Cluster Denied:     none
Namespaced Allowed: all kinds
Namespaced Denied:  Secret
Service Accounts:   {server} ({team_ns}) as deployer"
        )
    );
    let (used, refused) = apps.split_once("\n\n").expect("users, then the refused");
    let tools = format!("{control_ns}/tools");
    let web = format!("{team_ns}/web");
    assert_eq!(
        table(used),
        [
            vec!["APPLICATION", "SYNC", "HEALTH"],
            vec![&tools, "? Unknown", "? Unknown"],
            vec![&web, "⚠ OutOfSync", "◌ Progressing"],
        ],
        "{get}"
    );
    assert_eq!(
        refused,
        format!(
            "Refused (their namespace is not in sourceNamespaces, so they are not synced):\n  {stray_ns}/intruder\n"
        )
    );

    // On a terminal the status icons are coloured.
    let tty = kubectl_sluice_on_tty(&env, control_ns, &["proj", "get", "platform"])
        .await
        .expect_code(0)
        .stdout;
    assert!(tty.contains("Cluster Allowed:    *.*\r\n"), "{tty:?}");
    assert!(
        tty.contains("\x1b[32m✔\x1b[0m Synced  \x1b[32m✔\x1b[0m Healthy"),
        "{tty:?}"
    );
    assert!(tty.contains(&format!("  {team_ns}/platform-app\r\n")), "{tty:?}");

    kubectl_sluice(&env, Some(control_ns), &["proj", "get", "missing"])
        .await
        .expect_code(EXIT_ERROR)
        .expect_one_line_error(&format!(
            "AppProject \"missing\" not found in namespace \"{control_ns}\""
        ));
    let none = kubectl_sluice(&env, Some(stray_ns), &["proj", "list"])
        .await
        .expect_code(0)
        .stdout;
    assert_eq!(none, "No AppProjects found.\n");

    stray.delete().await;
    team.delete().await;
    control.delete().await;
}
