//! Helm charts from a chart repository and an OCI registry, end to end: the local cluster's real
//! chart repository (`HELM_REPO_URL`, files of `e2e/.run/charts/` indexed with `helm repo index`)
//! and real OCI registry (`OCI_REGISTRY`, charts pushed with `helm push`), a real `sluice
//! controller`, and Applications written as Argo CD's (`chart` + `targetRevision`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::E2eEnv;
use common::gitops::{GitopsHarness, condition, revision, sync_status};
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sluice::api::application::{Application, ApplicationSourceType, SyncStatusCode};

/// A chart named `name` whose one template is a ConfigMap holding the chart's version and the
/// `greeting` value.
fn write_chart(dir: &Path, name: &str) -> PathBuf {
    let chart = dir.join(name);
    std::fs::create_dir_all(chart.join("templates")).expect("chart dir");
    std::fs::write(
        chart.join("Chart.yaml"),
        format!("apiVersion: v2\nname: {name}\nversion: 0.0.0\n"),
    )
    .expect("Chart.yaml");
    std::fs::write(chart.join("values.yaml"), "greeting: hello\n").expect("values.yaml");
    std::fs::write(
        chart.join("templates/cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-settings\n\
         data:\n  version: {{ .Chart.Version | quote }}\n  greeting: {{ .Values.greeting | quote }}\n",
    )
    .expect("template");
    chart
}

/// Runs `helm` from the cluster's PATH with its own config and cache (nothing of the user's).
fn helm(env: &E2eEnv, home: &Path, args: &[&str]) -> String {
    let output = Command::new("helm")
        .args(args)
        .env("PATH", env.get("PATH"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .expect("run helm");
    assert!(
        output.status.success(),
        "helm {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Packages `chart` as `version` into `dest` and returns the archive's path.
fn package(env: &E2eEnv, home: &Path, chart: &Path, version: &str, dest: &Path) -> PathBuf {
    let dest_text = dest.to_str().expect("utf-8 path");
    helm(
        env,
        home,
        &[
            "package",
            chart.to_str().expect("utf-8 path"),
            "--version",
            version,
            "--destination",
            dest_text,
        ],
    );
    let name = chart
        .file_name()
        .and_then(|n| n.to_str())
        .expect("chart name");
    dest.join(format!("{name}-{version}.tgz"))
}

fn charts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("e2e/.run/charts")
}

async fn create_chart_app(h: &GitopsHarness, name: &str, source: Value) {
    let app: Application = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Application",
        "metadata": {"name": name},
        "spec": {"source": source, "destination": {"namespace": h.ns.name},
                 "syncPolicy": {"automated": {}}}
    }))
    .expect("application");
    h.apps()
        .create(&PostParams::default(), &app)
        .await
        .expect("create application");
}

async fn wait_synced_at(h: &GitopsHarness, app: &str, version: &str) -> Application {
    h.wait_app(app, &format!("Synced at chart version {version}"), |a| {
        sync_status(a) == SyncStatusCode::Synced && revision(a).as_deref() == Some(version)
    })
    .await
}

async fn settings(h: &GitopsHarness, app: &str) -> (String, String) {
    let cm = h
        .config_maps()
        .get(&format!("{app}-settings"))
        .await
        .expect("the chart's ConfigMap");
    let data = cm.data.unwrap_or_default();
    (
        data.get("version").cloned().unwrap_or_default(),
        data.get("greeting").cloned().unwrap_or_default(),
    )
}

#[tokio::test]
async fn a_chart_repository_chart_follows_its_semver_range_to_each_new_version() {
    let h = GitopsHarness::start("chartrepo", "2s").await;
    let home = tempfile::tempdir().expect("helm home");
    let chart_name = format!("settings-{}", h.ns.name);
    let chart = write_chart(home.path(), &chart_name);
    let charts = charts_dir();
    let publish = |version: &str| {
        package(&h.env, home.path(), &chart, version, &charts);
        helm(
            &h.env,
            home.path(),
            &["repo", "index", charts.to_str().expect("utf-8")],
        );
    };
    publish("1.0.0");
    publish("2.0.0");

    create_chart_app(
        &h,
        "web",
        json!({"repoURL": h.env.get("HELM_REPO_URL"), "chart": chart_name,
               "targetRevision": "^1.0",
               "helm": {"parameters": [{"name": "greeting", "value": "hi"}]}}),
    )
    .await;
    let app = wait_synced_at(&h, "web", "1.0.0").await;
    assert_eq!(
        app.status.as_ref().and_then(|s| s.source_type),
        Some(ApplicationSourceType::Helm)
    );
    assert_eq!(settings(&h, "web").await, ("1.0.0".into(), "hi".into()));

    // A new version in the range is picked up at the next poll; 2.0.0 stays out of it.
    publish("1.1.0");
    wait_synced_at(&h, "web", "1.1.0").await;
    assert_eq!(settings(&h, "web").await, ("1.1.0".into(), "hi".into()));
}

#[tokio::test]
async fn an_oci_registry_chart_syncs_and_a_version_it_lacks_is_reported() {
    let h = GitopsHarness::start("chartoci", "60s").await;
    let home = tempfile::tempdir().expect("helm home");
    let chart = write_chart(home.path(), "settings");
    let registry = format!("oci://{}/{}", h.env.get("OCI_REGISTRY"), h.ns.name);
    for version in ["1.0.0", "1.2.0"] {
        let archive = package(&h.env, home.path(), &chart, version, home.path());
        helm(
            &h.env,
            home.path(),
            &[
                "push",
                archive.to_str().expect("utf-8"),
                &registry,
                "--plain-http",
            ],
        );
    }

    create_chart_app(
        &h,
        "api",
        json!({"repoURL": registry, "chart": "settings", "targetRevision": "1.0.0"}),
    )
    .await;
    wait_synced_at(&h, "api", "1.0.0").await;
    assert_eq!(settings(&h, "api").await, ("1.0.0".into(), "hello".into()));

    // A version the registry does not have: a ComparisonError naming the versions it has, and
    // what was applied stays as it is.
    h.apps()
        .patch(
            "api",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"source": {"targetRevision": "~3.0"}}})),
        )
        .await
        .expect("patch targetRevision");
    let app = h
        .wait_app("api", "a ComparisonError", |a| {
            condition(a, "ComparisonError").is_some()
        })
        .await;
    let message = condition(&app, "ComparisonError").unwrap_or_default();
    assert!(
        message.contains("no version matches targetRevision \"~3.0\" (versions: 1.2.0, 1.0.0)"),
        "{message}"
    );
    assert_eq!(settings(&h, "api").await, ("1.0.0".into(), "hello".into()));

    // A range the registry can meet: the highest version in it.
    h.apps()
        .patch(
            "api",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"source": {"targetRevision": ">=1.0.0 <2.0.0"}}})),
        )
        .await
        .expect("patch targetRevision");
    wait_synced_at(&h, "api", "1.2.0").await;
    assert_eq!(settings(&h, "api").await, ("1.2.0".into(), "hello".into()));
}
