//! Runs the real `sluice controller` as the chart's ServiceAccount: a TokenRequest token in a kubeconfig
//! with the cluster's server and CA, so the API server authorizes every call against the chart's RBAC.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::common::{ControllerProcess, E2eEnv, free_local_addr};

/// A kubeconfig authenticating as a ServiceAccount, and where the controller writes its logs.
pub struct AsServiceAccount {
    dir: tempfile::TempDir,
}

impl AsServiceAccount {
    /// Requests a one-hour token for `namespace/name` and writes a kubeconfig with it.
    pub async fn new(env: &E2eEnv, client: &Client, namespace: &str, name: &str) -> Self {
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        let issued = Api::<ServiceAccount>::namespaced(client.clone(), namespace)
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .expect("TokenRequest for the chart's ServiceAccount");
        let token = issued
            .status
            .and_then(|s| s.token)
            .expect("token in the TokenRequest status");
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = token_kubeconfig(Path::new(env.get("KUBECONFIG")), &token);
        std::fs::write(dir.path().join("kubeconfig"), kubeconfig.to_string())
            .expect("write kubeconfig");
        Self { dir }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("controller.log")
    }

    /// Starts `sluice controller --leader-elect --namespace=<watch>` with the chart's other `flags` as
    /// the ServiceAccount, in the pod namespace `pod_namespace` (as the chart's Deployment runs it),
    /// logging to [`Self::log_path`].
    pub fn start_controller(
        &self,
        env: &E2eEnv,
        pod_namespace: &str,
        watch: &str,
        flags: &[String],
    ) -> ControllerProcess {
        let metrics_addr = free_local_addr();
        let webhook_addr = free_local_addr();
        let log = std::fs::File::create(self.log_path()).expect("create the controller log");
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args([
                "controller",
                "--leader-elect",
                &format!("--namespace={watch}"),
                &format!("--metrics-addr={metrics_addr}"),
                &format!("--webhook-addr={webhook_addr}"),
            ])
            .args(flags)
            .env("KUBECONFIG", self.kubeconfig())
            .env("POD_NAMESPACE", pod_namespace)
            .env("PROMETHEUS_URL", env.get("PROMETHEUS_URL"))
            .env("SLUICE_GIT_CACHE_DIR", self.dir.path().join("git-cache"))
            .env("PATH", env.get("PATH"))
            // Reconcile and watch errors are logged at debug; a 403 anywhere must show.
            .env("RUST_LOG", "info,sluice=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sluice controller");
        ControllerProcess {
            child,
            metrics_url: format!("http://{metrics_addr}"),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

/// A kubeconfig with the current context's cluster (server, CA) of `admin` and `token` as the user.
fn token_kubeconfig(admin: &Path, token: &str) -> Value {
    let text = std::fs::read_to_string(admin).expect("read KUBECONFIG");
    let config: Value = serde_saphyr::from_str(&text).expect("KUBECONFIG is YAML");
    let current = config["current-context"].as_str().expect("current-context");
    let named = |list: &str, name: &str| {
        config[list]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("KUBECONFIG has no {list} entry {name}"))
    };
    let cluster_name = named("contexts", current)["context"]["cluster"].clone();
    let cluster = named("clusters", cluster_name.as_str().unwrap_or_default())["cluster"].clone();
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": cluster}],
        "users": [{"name": "service-account", "user": {"token": token}}],
        "contexts": [{"name": "service-account", "context": {"cluster": "cluster", "user": "service-account"}}],
        "current-context": "service-account"
    })
}

/// A test that fails (often by a timeout) shows why: the refused calls, else the end of the log.
impl Drop for AsServiceAccount {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let log = self.log();
        let refused: Vec<&str> = log
            .lines()
            .filter(|l| l.to_lowercase().contains("forbidden"))
            .collect();
        if refused.is_empty() {
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!("controller log (last lines):\n{}", tail.join("\n"));
        } else {
            eprintln!("calls the chart's RBAC refused:\n{}", refused.join("\n"));
        }
    }
}
