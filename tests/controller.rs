//! `sluice controller` against the local cluster: runs with the contract flags, serves `/healthz`,
//! `/readyz` and `/metrics` with `sluice_build_info`, and exits cleanly on SIGTERM.

mod common;

use std::time::Duration;

use common::{ControllerProcess, E2eEnv, http_get, wait_for};

#[tokio::test]
async fn controller_serves_health_and_metrics_and_stops_on_sigterm() {
    let env = E2eEnv::load();
    let mut controller = ControllerProcess::start(&env, &["--repo-poll-interval=5s"]);
    let base = controller.metrics_url.clone();

    // Ready once connected and every controller's watch cache has listed its objects.
    let (_, body) = wait_for("/readyz to answer 200", Duration::from_secs(30), || async {
        http_get(&format!("{base}/readyz"))
            .await
            .filter(|(status, _)| *status == 200)
    })
    .await;
    assert_eq!(body, "ready");
    let (status, _) = http_get(&format!("{base}/healthz")).await.expect("healthz");
    assert_eq!(status, 200);

    let (status, body) = http_get(&format!("{base}/metrics")).await.expect("metrics");
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
    // Without --leader-elect the process always leads.
    assert_eq!(controller.metric("sluice_leader").await, Some(1.0));

    // SIGTERM is how Kubernetes stops a pod: the process must exit 0 promptly.
    controller.signal("TERM");
    let status = wait_for("the controller to exit", Duration::from_secs(15), || {
        let exited = controller.child.try_wait().expect("wait on controller");
        async move { exited }
    })
    .await;
    assert!(status.success(), "controller exited with {status}");
}
