//! The `proj` commands of `kubectl sluice`, through the real kubectl: two AppProjects in a control
//! namespace and Applications naming them there, in a namespace a project's `sourceNamespaces`
//! accept, and in one it does not. No controller runs: the statuses are written as a controller
//! would, so the output is known (a cluster-wide controller would rewrite them, but those run only
//! in `tenancy_e2e`, and test binaries run one after another). The text layout itself is tested
//! from fixtures in `plugin_render.rs`.

mod common;
mod plugin_support;

use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use sluice::api::application::Application;

use common::tenancy::create_project;
use common::{E2eEnv, TestNamespace, apply_crds};
use plugin_support::{kubectl_sluice, kubectl_sluice_on_tty};

const EXIT_ERROR: i32 = 3;
/// Project names no other test uses: the refused Applications of a project are looked for in every
/// namespace.
const TEAM: &str = "plugin-proj-team";
const PLATFORM: &str = "plugin-proj-platform";

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
    let control = TestNamespace::create(&client, "plug-proj").await;
    let team = TestNamespace::create(&client, "plug-projteam").await;
    let stray = TestNamespace::create(&client, "plug-projstray").await;
    let (control_ns, team_ns, stray_ns) = (&control.name, &team.name, &stray.name);
    let server = "https://kubernetes.default.svc";
    create_project(
        &client,
        control_ns,
        TEAM,
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
        PLATFORM,
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
        PLATFORM,
        Some(("Synced", "Healthy")),
    )
    .await;
    create_app(&client, control_ns, "tools", TEAM, None).await;
    create_app(
        &client,
        team_ns,
        "web",
        TEAM,
        Some(("OutOfSync", "Progressing")),
    )
    .await;
    // Neither project accepts these namespaces: they name the project but do not use it.
    create_app(&client, stray_ns, "intruder", TEAM, None).await;
    create_app(&client, team_ns, "platform-app", PLATFORM, None).await;

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
            vec![PLATFORM, "-", "*", "* (*)", "*.*", "1"],
            vec![
                TEAM,
                "Team A's services (e2e)",
                "git://127.0.0.1:9418/team-a-*.git, +1 more",
                &team_destination,
                "<none>",
                "2"
            ],
        ],
        "{list}"
    );

    let get = kubectl_sluice(&env, Some(control_ns), &["proj", "get", TEAM])
        .await
        .expect_code(0)
        .stdout;
    let (fields, apps) = get.split_once("\n\n").expect("fields, then Applications");
    assert_eq!(
        fields,
        format!(
            "\
Name:               {control_ns}/{TEAM}
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
    let tty = kubectl_sluice_on_tty(&env, control_ns, &["proj", "get", PLATFORM])
        .await
        .expect_code(0)
        .stdout;
    assert!(tty.contains("Cluster Allowed:    *.*\r\n"), "{tty:?}");
    assert!(
        tty.contains("\x1b[32m✔\x1b[0m Synced  \x1b[32m✔\x1b[0m Healthy"),
        "{tty:?}"
    );
    assert!(
        tty.contains(&format!("  {team_ns}/platform-app\r\n")),
        "{tty:?}"
    );

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
