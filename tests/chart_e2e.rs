//! The Helm chart: rendered with the real `helm` and checked against the code (RBAC, flags, CRDs,
//! dashboard), then installed on the local cluster, where the real `sluice controller`, authenticated as
//! the chart's ServiceAccount and run with the chart's flags, drives a canary with a step analysis to
//! Healthy and syncs an Application through sync impersonation, without one `forbidden`.

mod common;
#[path = "chart_e2e/helm.rs"]
mod helm;
#[path = "chart_e2e/promql.rs"]
mod promql;
#[path = "chart_e2e/rbac.rs"]
mod rbac;
#[path = "chart_e2e/render.rs"]
mod render;
#[path = "chart_e2e/service_account.rs"]
mod service_account;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use sluice::api::analysis::{AnalysisPhase, AnalysisRun, ClusterAnalysisTemplate};
use sluice::api::application::{Application, SyncStatusCode};
use sluice::api::rollout::{Rollout, RolloutPhase};

use common::gitops::{GitRepo, config_map, sync_status};
use common::rollouts::{
    Harness, current_hash, observed_current, phase, rollout_manifest, route_strategy, step,
};
use common::tenancy::{DEPLOYER, create_deployer, create_project};
use common::{E2eEnv, TestNamespace, apply_crds, wait_for};
use service_account::AsServiceAccount;

/// The chart's Deployment becoming available (pods on the KWOK node, never pulled).
const INSTALL_TIMEOUT: Duration = Duration::from_secs(90);

/// The default install (ClusterRole, sync impersonation, the GitOps core not cluster admin), so that
/// the explicit rules are what is exercised. The controller watches the release namespace only: a
/// cluster-wide one would reconcile the Rollouts of every other test on the shared cluster. The
/// project of that namespace names a ServiceAccount with a Role there, as an install with impersonation
/// needs; the chart's own ServiceAccount may not write ConfigMaps, so the synced one was written as it.
#[tokio::test]
async fn default_install_lets_the_controller_drive_a_canary_with_analysis() {
    let env = E2eEnv::load();
    let client = env.client().await;
    apply_crds(&client).await;
    let ns = TestNamespace::create(&client, "chart").await;
    let release = ns.name.clone();
    helm::install(&env, &release, &ns.name, &[]);
    let fullname = format!("{release}-sluice");
    wait_available(&client, &ns.name, &fullname).await;
    let flags = chart_flags(&client, &ns.name, &fullname).await;
    assert!(
        flags.iter().any(|f| f == "--sync-impersonation"),
        "the chart syncs through impersonation by default: {flags:?}"
    );
    create_deployer(&client, &ns.name).await;
    create_project(
        &client,
        &ns.name,
        "default",
        json!({
            "sourceRepos": ["*"],
            "destinations": [{"server": "*", "namespace": "*"}],
            "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
            "destinationServiceAccounts": [
                {"server": "https://kubernetes.default.svc", "namespace": ns.name, "defaultServiceAccount": DEPLOYER},
            ],
        }),
    )
    .await;

    let sa = AsServiceAccount::new(&env, &client, &ns.name, &fullname).await;
    let controller = sa.start_controller(&env, &ns.name, &ns.name, &flags);
    let h = Harness {
        client: client.clone(),
        ns,
        controller,
    };
    let template = analysis_template("AnalysisTemplate", "constant-one");
    h.create(&h.analysis_templates(), template).await;
    drive_canary(&h, json!({"templateName": "constant-one"})).await;
    sync_an_application_as_the_projects_account(&env, &h).await;

    assert_ran_unhindered(&h, &sa, &h.ns.name).await;
    let Harness { ns, controller, .. } = h;
    drop(controller);
    helm::uninstall(&env, &release, &ns.name);
    ns.delete().await;
}

/// `watchNamespace`: Roles in the watched namespace, the release elsewhere; the analysis uses a
/// ClusterAnalysisTemplate, read through the one small ClusterRole.
#[tokio::test]
async fn watch_namespace_install_works_with_roles_only() {
    let env = E2eEnv::load();
    let client = env.client().await;
    apply_crds(&client).await;
    let release_ns = TestNamespace::create(&client, "chart-rel").await;
    let watched = TestNamespace::create(&client, "chart-watch").await;
    let release = release_ns.name.clone();
    helm::install(
        &env,
        &release,
        &release_ns.name,
        &[&format!("watchNamespace={}", watched.name)],
    );
    let fullname = format!("{release}-sluice");
    wait_available(&client, &release_ns.name, &fullname).await;

    let sa = AsServiceAccount::new(&env, &client, &release_ns.name, &fullname).await;
    let flags = chart_flags(&client, &release_ns.name, &fullname).await;
    let controller = sa.start_controller(&env, &release_ns.name, &watched.name, &flags);
    let h = Harness {
        client: client.clone(),
        ns: watched,
        controller,
    };
    let cluster_template = format!("{}-constant-one", h.ns.name);
    let templates: Api<ClusterAnalysisTemplate> = Api::all(client.clone());
    h.create(
        &templates,
        analysis_template("ClusterAnalysisTemplate", &cluster_template),
    )
    .await;
    drive_canary(
        &h,
        json!({"templateName": cluster_template, "clusterScope": true}),
    )
    .await;

    // With --namespace, the Lease lives in the watched namespace, as the chart's Role expects.
    assert_ran_unhindered(&h, &sa, &h.ns.name).await;
    templates
        .delete(&cluster_template, &DeleteParams::default())
        .await
        .expect("delete the ClusterAnalysisTemplate");
    let Harness { ns, controller, .. } = h;
    drop(controller);
    helm::uninstall(&env, &release, &release_ns.name);
    ns.delete().await;
    release_ns.delete().await;
}

async fn wait_available(client: &Client, namespace: &str, name: &str) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    wait_for(
        "the chart's Deployment to have 2 available replicas",
        INSTALL_TIMEOUT,
        || async {
            let d = deployments.get(name).await.ok()?;
            let status = d.status?;
            (status.available_replicas == Some(2) && status.ready_replicas == Some(2)).then_some(())
        },
    )
    .await;
}

/// The flags the chart's Deployment runs the controller with, but those a local process sets itself
/// (addresses, cache directory, namespace, leader election).
async fn chart_flags(client: &Client, namespace: &str, name: &str) -> Vec<String> {
    let deployment = Api::<Deployment>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .expect("the chart's Deployment");
    let args = deployment
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|p| p.containers.into_iter().next())
        .and_then(|c| c.args)
        .expect("the controller's args");
    let local = [
        "controller",
        "--leader-elect",
        "--namespace",
        "--metrics-addr",
        "--webhook-addr",
        "--git-cache-dir",
    ];
    args.into_iter()
        .filter(|a| !local.contains(&a.split('=').next().unwrap_or(a)))
        .collect()
}

/// An Application of the `default` project (which names the `deployer` ServiceAccount) syncs a
/// ConfigMap: the chart's ServiceAccount may not write ConfigMaps, so it was written as `deployer`.
async fn sync_an_application_as_the_projects_account(env: &E2eEnv, h: &Harness) {
    let repo = GitRepo::create(env, "chart-app");
    repo.commit(
        "settings",
        &[("app/cm.yaml", Some(&config_map("settings", "1")))],
    );
    let app: Application = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Application",
        "metadata": {"name": "settings", "namespace": h.ns.name},
        "spec": {
            "project": "default",
            "source": {"repoURL": repo.url, "targetRevision": "main", "path": "app"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": h.ns.name},
            "syncPolicy": {"automated": {"prune": true}},
        },
    }))
    .expect("Application");
    let apps: Api<Application> = Api::namespaced(h.client.clone(), &h.ns.name);
    apps.create(&PostParams::default(), &app)
        .await
        .expect("create the Application");
    wait_for("the Application Synced", INSTALL_TIMEOUT, || async {
        let app = apps.get("settings").await.ok()?;
        (sync_status(&app) == SyncStatusCode::Synced).then_some(())
    })
    .await;
    let applied = Api::<ConfigMap>::namespaced(h.client.clone(), &h.ns.name)
        .get("settings")
        .await
        .expect("the synced ConfigMap");
    assert_eq!(
        applied
            .data
            .as_ref()
            .and_then(|d| d.get("v"))
            .map(String::as_str),
        Some("1")
    );
}

/// A metric that always passes on the real Prometheus, with its argument read from a Secret, so that
/// the analysis exercises the Secret read as well.
fn analysis_template(kind: &str, name: &str) -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": kind,
        "metadata": {"name": name},
        "spec": {
            "args": [{"name": "expected", "valueFrom": {"secretKeyRef": {"name": "analysis-args", "key": "expected"}}}],
            "metrics": [{
                "name": "constant",
                "count": 1,
                "successCondition": "result[0] >= 1",
                "provider": {"prometheus": {"query": "vector({{args.expected}})"}}
            }]
        }
    })
}

/// Through the HTTPRoute: 50 %, the step analysis, an indefinite pause, then promotion to Healthy.
async fn drive_canary(h: &Harness, template_ref: Value) {
    let secret: Api<Secret> = Api::namespaced(h.client.clone(), &h.ns.name);
    h.create(
        &secret,
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "analysis-args", "labels": {"sluice.dev/analysis-secret": "true"}},
               "stringData": {"expected": "1"}}),
    )
    .await;
    h.create_services_and_route().await;
    let steps = json!([
        {"setWeight": 50},
        {"analysis": {"templates": [template_ref]}},
        {"pause": {}}
    ]);
    h.create(&h.rollouts(), rollout_manifest(2, route_strategy(steps)))
        .await;
    let first = current_hash(&h.wait_rollout("first revision Healthy", healthy).await);

    h.set_image("example/web:2.0").await;
    let paused = h
        .wait_rollout("paused after the analysis step", |r| {
            observed_current(r) && phase(r) == Some(RolloutPhase::Paused) && step(r) == Some(2)
        })
        .await;
    assert_ne!(current_hash(&paused), first);
    assert_eq!(h.route_weights().await, (50, 50));
    let runs = Api::<AnalysisRun>::namespaced(h.client.clone(), &h.ns.name)
        .list(&ListParams::default())
        .await
        .expect("list AnalysisRuns");
    assert!(
        runs.items
            .iter()
            .any(|r| r.status.as_ref().and_then(|s| s.phase) == Some(AnalysisPhase::Successful)),
        "no Successful AnalysisRun: {:?}",
        runs.items.iter().map(|r| &r.status).collect::<Vec<_>>()
    );

    h.promote().await;
    let promoted = h
        .wait_rollout("Healthy after promotion", |r| {
            healthy(r)
                && r.status.as_ref().and_then(|s| s.stable_rs.clone()) == Some(current_hash(r))
        })
        .await;
    assert_eq!(current_hash(&promoted), current_hash(&paused));
    assert_eq!(h.route_weights().await, (100, 0));
}

fn healthy(r: &Rollout) -> bool {
    observed_current(r) && phase(r) == Some(RolloutPhase::Healthy)
}

/// The controller led, recorded events, and was never refused a call.
async fn assert_ran_unhindered(h: &Harness, sa: &AsServiceAccount, lease_namespace: &str) {
    let lease = Api::<Lease>::namespaced(h.client.clone(), lease_namespace)
        .get("sluice-controller")
        .await
        .expect("the leader Lease exists");
    assert!(
        lease.spec.and_then(|s| s.holder_identity).is_some(),
        "nobody holds the Lease"
    );
    assert_eq!(h.controller.metric("sluice_leader").await, Some(1.0));
    let events = Api::<Event>::namespaced(h.client.clone(), &h.ns.name)
        .list(&ListParams::default())
        .await
        .expect("list events");
    assert!(
        events
            .items
            .iter()
            .any(|e| e.reporting_controller.as_deref() == Some("sluice-rollout")),
        "the controller recorded no Event"
    );
    let log = sa.log();
    assert!(
        log.contains("leading: controllers running"),
        "controller log not captured:\n{log}"
    );
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.to_lowercase().contains("forbidden"))
        .collect();
    assert!(
        refused.is_empty(),
        "the chart's RBAC refused calls:\n{}",
        refused.join("\n")
    );
}
