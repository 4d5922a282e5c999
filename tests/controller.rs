//! `sluice controller` against the local cluster: runs with the contract flags, serves `/healthz`,
//! `/readyz` and `/metrics` with `sluice_build_info`, and exits cleanly on SIGTERM.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{E2eEnv, wait_for};

struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_local_addr() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr")
}

async fn get(url: &str) -> Option<(u16, String)> {
    let response = reqwest::get(url).await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

#[tokio::test]
async fn controller_serves_health_and_metrics_and_stops_on_sigterm() {
    let env = E2eEnv::load();
    sluice::tls::install_crypto_provider();
    let metrics_addr = free_local_addr();
    let webhook_addr = free_local_addr();
    let cache = std::env::temp_dir().join(format!("sluice-controller-test-{}", std::process::id()));
    let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "controller",
            &format!("--metrics-addr={metrics_addr}"),
            &format!("--webhook-addr={webhook_addr}"),
            "--repo-poll-interval=5s",
        ])
        .env("KUBECONFIG", env.get("KUBECONFIG"))
        .env("SLUICE_GIT_CACHE_DIR", &cache)
        .env("PROMETHEUS_URL", env.get("PROMETHEUS_URL"))
        .stdout(Stdio::null())
        .spawn()
        .expect("start sluice controller");
    let mut controller = Controller(child);

    let base = format!("http://{metrics_addr}");
    wait_for("/readyz to answer 200", Duration::from_secs(30), || async {
        get(&format!("{base}/readyz"))
            .await
            .filter(|(status, _)| *status == 200)
    })
    .await;
    let (status, _) = get(&format!("{base}/healthz")).await.expect("healthz");
    assert_eq!(status, 200);

    let (status, body) = get(&format!("{base}/metrics")).await.expect("metrics");
    assert_eq!(status, 200);
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .expect("exposition format");
    assert!(!scrape.samples.is_empty());
    for sample in &scrape.samples {
        assert!(
            sample.metric.starts_with("sluice_"),
            "unprefixed family {}",
            sample.metric
        );
    }
    let build = scrape
        .samples
        .iter()
        .find(|s| s.metric == "sluice_build_info")
        .expect("sluice_build_info");
    assert_eq!(build.labels.get("version"), Some(sluice::VERSION));

    // SIGTERM is how Kubernetes stops a pod: the process must exit 0 promptly.
    let pid = controller.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("send SIGTERM");
    assert!(killed.success());
    let status = wait_for("the controller to exit", Duration::from_secs(15), || {
        let exited = controller.0.try_wait().expect("wait on controller");
        async move { exited }
    })
    .await;
    assert!(status.success(), "controller exited with {status}");
}
