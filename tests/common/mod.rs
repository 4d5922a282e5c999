//! Helpers for the tests that run against the local cluster started by `e2e/cluster/up`.
#![allow(dead_code)] // each test binary uses a different subset

pub mod browser;
pub mod canary_app;
pub mod gitops;
pub mod proxy;
pub mod rollouts;
pub mod tenancy;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// What `e2e/cluster/up` wrote to `e2e/.run/env`.
pub struct E2eEnv {
    pub vars: BTreeMap<String, String>,
}

impl E2eEnv {
    /// Reads `e2e/.run/env`; fails the test with the fix when the cluster is not up.
    pub fn load() -> Self {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("e2e/.run/env");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}: start the local cluster first (e2e/cluster/up, or make test)",
                path.display()
            )
        });
        let vars = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self { vars }
    }

    pub fn get(&self, key: &str) -> &str {
        self.vars
            .get(key)
            .unwrap_or_else(|| panic!("e2e/.run/env has no {key}"))
    }

    pub async fn client(&self) -> Client {
        sluice::tls::install_crypto_provider();
        let kubeconfig = Kubeconfig::read_from(self.get("KUBECONFIG")).expect("read kubeconfig");
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("kubeconfig is valid");
        Client::try_from(config).expect("client")
    }
}

/// A namespace of its own per test, so tests run in parallel without seeing each other. Deleted
/// when dropped at the end of a passing test (so a long session's leftovers do not fill the KWOK
/// node); a failing test leaves it for inspection until `e2e/cluster/down`.
pub struct TestNamespace {
    pub name: String,
    client: Client,
    deleted: bool,
}

impl TestNamespace {
    pub async fn create(client: &Client, prefix: &str) -> Self {
        let name = format!("{prefix}-{}", unique_suffix());
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}
        }))
        .expect("namespace object");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        Self {
            name,
            client: client.clone(),
            deleted: false,
        }
    }

    /// Deletes the namespace (and so everything in it) now.
    pub async fn delete(mut self) {
        Api::<Namespace>::all(self.client.clone())
            .delete(&self.name, &DeleteParams::default())
            .await
            .expect("delete namespace");
        self.deleted = true;
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.deleted || std::thread::panicking() {
            return;
        }
        // Drop cannot await: kubectl deletes it without waiting for the namespace to be gone.
        let env = E2eEnv::load();
        let _ = std::process::Command::new("kubectl")
            .args(["delete", "namespace", &self.name, "--wait=false"])
            .env("KUBECONFIG", env.get("KUBECONFIG"))
            .env("PATH", env.get("PATH"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}", std::process::id() & 0xfff, nanos & 0xfffff)
}

/// Polls `check` until it returns `Some`, failing the test with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until each ReplicaSet named in `names` (namespace `ns`) has `ready` Ready pods.
pub async fn wait_replica_sets_ready(client: &Client, ns: &str, names: &[&str], ready: i32) {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use kube::api::ListParams;

    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let what = format!("ReplicaSets {names:?} with {ready} Ready pods each");
    wait_for(&what, Duration::from_secs(60), || async {
        let list = api.list(&ListParams::default()).await.ok()?;
        let is_ready = |name: &&str| {
            list.items.iter().any(|rs| {
                rs.metadata.name.as_deref() == Some(*name)
                    && rs.status.as_ref().and_then(|s| s.ready_replicas) == Some(ready)
            })
        };
        names.iter().all(is_ready).then_some(())
    })
    .await;
}

/// Applies `crds/` server-side (as a user would with `kubectl apply --server-side -f crds/`) and waits
/// until every CRD is established.
pub async fn apply_crds(client: &Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Patch, PatchParams};
    use kube::runtime::wait::{await_condition, conditions};

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crds");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("crds/ exists") {
        let path = entry.expect("dir entry").path();
        let text = std::fs::read_to_string(&path).expect("read CRD file");
        let crd: CustomResourceDefinition =
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = crd.metadata.name.clone().expect("CRD name");
        crds.patch(
            &name,
            &PatchParams::apply("sluice-e2e-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("API server refused {}: {e}", path.display()));
        names.push(name);
    }
    for name in names {
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(crds.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .unwrap_or_else(|_| panic!("CRD {name} not established in 30s"))
        .expect("watch CRD");
    }
}

/// Runs a PromQL instant query and returns the `data.result` array.
pub async fn prometheus_query(base_url: &str, query: &str) -> Vec<serde_json::Value> {
    sluice::tls::install_crypto_provider();
    let response = reqwest::Client::new()
        .get(format!("{base_url}/api/v1/query"))
        .query(&[("query", query)])
        .send()
        .await
        .expect("Prometheus reachable");
    let body: serde_json::Value = response.json().await.expect("Prometheus JSON");
    assert_eq!(body["status"], "success", "query {query} failed: {body}");
    body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A `sluice controller` process started by a test; killed when dropped.
pub struct ControllerProcess {
    pub child: std::process::Child,
    pub metrics_url: String,
}

impl ControllerProcess {
    /// Starts `sluice controller` against the local cluster on free 127.0.0.1 ports, with `extra` flags.
    pub fn start(env: &E2eEnv, extra: &[&str]) -> Self {
        let metrics_addr = free_local_addr();
        let webhook_addr = free_local_addr();
        let cache = std::env::temp_dir().join(format!("sluice-test-cache-{}", std::process::id()));
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("controller")
            .arg(format!("--metrics-addr={metrics_addr}"))
            .arg(format!("--webhook-addr={webhook_addr}"))
            .args(extra)
            .env("KUBECONFIG", env.get("KUBECONFIG"))
            .env("SLUICE_GIT_CACHE_DIR", &cache)
            .env("PROMETHEUS_URL", env.get("PROMETHEUS_URL"))
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start sluice controller");
        Self {
            child,
            metrics_url: format!("http://{metrics_addr}"),
        }
    }

    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// The value of a sample of the controller's `/metrics`, if it answers.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        self.metric_with(name, &[]).await
    }

    /// The value of the first sample of `name` carrying every label of `labels`.
    pub async fn metric_with(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let body = http_get(&format!("{}/metrics", self.metrics_url))
            .await
            .filter(|(status, _)| *status == 200)?
            .1;
        let scrape =
            prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).ok()?;
        scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == name
                    && labels
                        .iter()
                        .all(|(key, value)| s.labels.get(key) == Some(*value))
            })
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until exactly one of `controllers` reports leading (`sluice_leader 1`), and returns its
/// index.
pub async fn sole_leader(controllers: &[&ControllerProcess], timeout: Duration) -> usize {
    wait_for("exactly one leader", timeout, || async {
        let mut leaders = Vec::new();
        for (i, c) in controllers.iter().enumerate() {
            match c.metric("sluice_leader").await {
                Some(1.0) => leaders.push(i),
                Some(_) => {}
                None => return None,
            }
        }
        (leaders.len() == 1).then(|| leaders[0])
    })
    .await
}

pub fn free_local_addr() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr")
}

/// GET returning the status code and body, `None` when the server does not answer.
pub async fn http_get(url: &str) -> Option<(u16, String)> {
    sluice::tls::install_crypto_provider();
    let response = reqwest::get(url).await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}
