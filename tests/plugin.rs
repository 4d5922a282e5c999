//! The plugin runs as `kubectl sluice ...` through the real kubectl of the local cluster: finding it,
//! the commands that need no cluster (version, completion, lint), and one-line errors with a failing
//! exit code (unknown command, not found, not a Rollout, forbidden, cluster unreachable).

mod common;
mod plugin_support;

use std::path::PathBuf;

use common::{E2eEnv, TestNamespace, apply_crds};
use kube::config::Kubeconfig;
use plugin_support::{kubectl, kubectl_sluice};
use serde_json::json;

const EXIT_DEGRADED: i32 = 1;
const EXIT_ERROR: i32 = 3;

fn fixture(path: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path)
        .display()
        .to_string()
}

#[tokio::test]
async fn kubectl_finds_the_plugin_and_runs_it() {
    let env = E2eEnv::load();
    let run = kubectl_sluice(&env, None, &["version"])
        .await
        .expect_code(0);
    assert_eq!(run.stdout, format!("kubectl-sluice {}\n", sluice::VERSION));
}

#[test]
fn an_unknown_command_is_one_clear_error_with_a_failing_exit_code() {
    let env = E2eEnv::load();
    let out = kubectl(&env)
        .args(["sluice", "frobnicate"])
        .output()
        .expect("run kubectl");
    assert_eq!(out.status.code(), Some(EXIT_ERROR));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unrecognized subcommand"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn completion_scripts_for_every_shell() {
    let env = E2eEnv::load();
    for shell in ["bash", "zsh", "fish"] {
        let run = kubectl_sluice(&env, None, &["completion", shell])
            .await
            .expect_code(0);
        assert!(run.stdout.contains("kubectl-sluice"), "{shell}");
        assert!(run.stdout.contains("promote"), "{shell}");
    }
    kubectl_sluice(&env, None, &["completion", "tcsh"])
        .await
        .expect_code(EXIT_ERROR);
}

#[tokio::test]
async fn lint_reports_problems_by_line_and_passes_valid_manifests() {
    let env = E2eEnv::load();
    let bad = fixture("plugin/lint-invalid.yaml");
    let run = kubectl_sluice(&env, None, &["lint", "-f", &bad])
        .await
        .expect_code(EXIT_DEGRADED);
    assert!(
        run.stdout.contains(&format!(
            "{bad}:31: Rollout \"web\": spec.strategy.canary.steps[1].setWieght: unknown field"
        )),
        "{}",
        run.stdout
    );
    assert!(run.stdout.ends_with("3 objects checked, 10 problems\n"));
    let good = fixture("rollout/canary-gatewayapi.yaml");
    let run = kubectl_sluice(&env, None, &["lint", "-f", &good])
        .await
        .expect_code(0);
    assert_eq!(
        run.stdout,
        format!("{good}: 1 object checked, no problems\n")
    );
    kubectl_sluice(&env, None, &["lint", "-f", "/nonexistent.yaml"])
        .await
        .expect_code(EXIT_ERROR)
        .expect_one_line_error("cannot read /nonexistent.yaml");
}

#[tokio::test]
async fn missing_objects_and_deployments_are_named_in_one_line() {
    let env = E2eEnv::load();
    let client = env.client().await;
    apply_crds(&client).await;
    let ns = TestNamespace::create(&client, "plug-errors").await;
    kubectl_sluice(&env, Some(&ns.name), &["promote", "nope"])
        .await
        .expect_code(EXIT_ERROR)
        .expect_one_line_error(&format!(
            "Rollout \"nope\" not found in namespace \"{}\"",
            ns.name
        ));
    let deployment: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(json!({
        "metadata": {"name": "plain"},
        "spec": {"selector": {"matchLabels": {"app": "plain"}},
                 "template": {"metadata": {"labels": {"app": "plain"}},
                              "spec": {"containers": [{"name": "c", "image": "x:1"}]}}}
    }))
    .unwrap();
    kube::Api::namespaced(client.clone(), &ns.name)
        .create(&Default::default(), &deployment)
        .await
        .expect("create deployment");
    kubectl_sluice(&env, Some(&ns.name), &["get", "rollout", "plain"])
        .await
        .expect_code(EXIT_ERROR)
        .expect_one_line_error("\"plain\" in namespace");
    let run = kubectl_sluice(&env, Some(&ns.name), &["status", "plain"]).await;
    assert!(
        run.stderr.contains("is a Deployment, not a Rollout"),
        "{run:?}"
    );
    kubectl_sluice(&env, Some(&ns.name), &["app", "get", "nope"])
        .await
        .expect_code(EXIT_ERROR)
        .expect_one_line_error("Application \"nope\" not found");
    ns.delete().await;
}

/// A kubeconfig for the local cluster's API server with `user` as its user entry.
fn kubeconfig_with(
    env: &E2eEnv,
    server: Option<&str>,
    user: serde_json::Value,
) -> tempfile_path::TempPath {
    let local = Kubeconfig::read_from(env.get("KUBECONFIG")).expect("read kubeconfig");
    let cluster = local.clusters[0].cluster.clone().expect("cluster");
    let cluster = match server {
        Some(server) => json!({"server": server, "insecure-skip-tls-verify": true}),
        None => {
            json!({"server": cluster.server, "certificate-authority": cluster.certificate_authority})
        }
    };
    let config = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x"
    });
    tempfile_path::TempPath::write(&serde_json::to_string(&config).unwrap())
}

#[tokio::test]
async fn an_unreachable_cluster_is_one_clear_error() {
    let env = E2eEnv::load();
    let config = kubeconfig_with(&env, Some("https://127.0.0.1:1"), json!({"token": "x"}));
    let path = config.path();
    kubectl_sluice(&env, None, &["--kubeconfig", &path, "list", "rollouts"])
        .await
        .expect_code(EXIT_ERROR)
        .expect_one_line_error("cannot reach the cluster at https://127.0.0.1:1");
    kubectl_sluice(
        &env,
        None,
        &["--context", "no-such-context", "list", "rollouts"],
    )
    .await
    .expect_code(EXIT_ERROR)
    .expect_one_line_error("cannot load the kubeconfig");
}

#[tokio::test]
async fn a_user_without_rights_gets_forbidden_in_one_line() {
    let env = E2eEnv::load();
    let client = env.client().await;
    apply_crds(&client).await;
    let ns = TestNamespace::create(&client, "plug-forbidden").await;
    let created = kubectl(&env)
        .args(["create", "serviceaccount", "nobody", "-n", &ns.name])
        .output()
        .expect("run kubectl");
    assert!(created.status.success(), "{created:?}");
    let token = kubectl(&env)
        .args(["create", "token", "nobody", "-n", &ns.name])
        .output()
        .expect("run kubectl");
    assert!(token.status.success(), "{token:?}");
    let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
    let config = kubeconfig_with(&env, None, json!({"token": token}));
    let path = config.path();
    kubectl_sluice(
        &env,
        Some(&ns.name),
        &["--kubeconfig", &path, "get", "rollout", "web"],
    )
    .await
    .expect_code(EXIT_ERROR)
    .expect_one_line_error("forbidden: ");
    kubectl_sluice(
        &env,
        Some(&ns.name),
        &["--kubeconfig", &path, "abort", "web"],
    )
    .await
    .expect_code(EXIT_ERROR)
    .expect_one_line_error("forbidden: ");
    ns.delete().await;
}

/// A file in the temp directory, removed when dropped.
mod tempfile_path {
    pub struct TempPath(std::path::PathBuf);

    impl TempPath {
        pub fn write(contents: &str) -> Self {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let path = std::env::temp_dir().join(format!(
                "sluice-plugin-test-{}-{nanos}.kubeconfig",
                std::process::id()
            ));
            std::fs::write(&path, contents).expect("write temp kubeconfig");
            Self(path)
        }

        pub fn path(&self) -> String {
            self.0.display().to_string()
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}
