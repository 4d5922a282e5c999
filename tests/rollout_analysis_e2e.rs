//! Analysis gating rollouts on the local cluster: real PromQL over the traffic emulator's requests,
//! scraped by the real Prometheus, decides whether a canary is promoted, aborted or paused, and
//! whether a blue-green preview is ever switched to active.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::ListParams;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use sluice::api::analysis::{AnalysisPhase, AnalysisRun};
use sluice::api::rollout::{PauseReason, Rollout, RolloutPhase};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use common::rollouts::{
    Harness, WeightZeroWatch, current_hash, observed_current, phase, rollout_manifest,
    route_strategy, success_rate_template,
};
use common::{E2eEnv, wait_for};

/// Analysis runs take several measurements a few seconds apart on top of a rollout.
const TIMEOUT: Duration = Duration::from_secs(90);

/// The arguments every test gives the template: this namespace's `web` Rollout, the latest revision.
fn analysis_args(ns: &str) -> Value {
    json!([
        {"name": "namespace", "value": ns},
        {"name": "rollout", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "revision", "valueFrom": {"podTemplateHashValue": "Latest"}},
        {"name": "window", "value": "10s"}
    ])
}

/// A canary through the HTTPRoute: 20 % of the traffic, then the analysis step, then full promotion.
async fn canary_with_step_analysis(h: &Harness, template: Value) -> String {
    h.create_services_and_route().await;
    h.create(&h.analysis_templates(), template).await;
    let steps = json!([
        {"setWeight": 20},
        {"analysis": {"templates": [{"templateName": "success-rate"}], "args": analysis_args(&h.ns.name)}}
    ]);
    h.create(&h.rollouts(), rollout_manifest(4, route_strategy(steps)))
        .await;
    current_hash(&h.wait_rollout("first deploy Healthy", healthy).await)
}

fn healthy(r: &Rollout) -> bool {
    observed_current(r) && phase(r) == Some(RolloutPhase::Healthy)
}

fn degraded(r: &Rollout) -> bool {
    observed_current(r) && phase(r) == Some(RolloutPhase::Degraded)
}

fn stable_rs(r: &Rollout) -> Option<String> {
    r.status.as_ref().and_then(|s| s.stable_rs.clone())
}

fn aborted(r: &Rollout) -> bool {
    r.status.as_ref().is_some_and(|s| s.abort == Some(true))
}

fn message(r: &Rollout) -> String {
    r.status
        .as_ref()
        .and_then(|s| s.message.clone())
        .unwrap_or_default()
}

fn run_phase(run: &AnalysisRun) -> Option<AnalysisPhase> {
    run.status.as_ref().and_then(|s| s.phase)
}

/// Every measurement of the run's (only) metric.
fn measurements(run: &AnalysisRun) -> Vec<sluice::api::analysis::Measurement> {
    run.status
        .as_ref()
        .and_then(|s| s.metric_results.first())
        .map(|m| m.measurements.clone())
        .unwrap_or_default()
}

/// The Rollout's only AnalysisRun of `analysis_type`, once it has reached a phase `done` accepts.
async fn run_of_type(
    h: &Harness,
    analysis_type: &str,
    what: &str,
    done: impl Fn(AnalysisPhase) -> bool,
) -> AnalysisRun {
    let selector = format!("sluice.dev/rollout=web,sluice.dev/analysis-type={analysis_type}");
    wait_for(what, TIMEOUT, || async {
        let runs = h
            .analysis_runs()
            .list(&ListParams::default().labels(&selector))
            .await
            .ok()?
            .items;
        assert!(runs.len() <= 1, "one {analysis_type} run only: {runs:#?}");
        let run = runs.into_iter().next()?;
        run_phase(&run).filter(|p| done(*p)).map(|_| run)
    })
    .await
}

/// A1, A5: a good canary's success rate passes the analysis step (twice) and it is promoted.
#[tokio::test]
async fn a_good_canary_passes_step_analysis_and_is_promoted() {
    let h = Harness::start("ra-good").await;
    let blue = canary_with_step_analysis(&h, success_rate_template(2, |_| ())).await;
    h.set_image("example/web:2.0").await;

    let run = run_of_type(&h, "step", "the step analysis to succeed", |p| {
        p.is_completed()
    })
    .await;
    assert_eq!(run_phase(&run), Some(AnalysisPhase::Successful), "{run:#?}");
    let taken = measurements(&run);
    assert_eq!(taken.len(), 2, "{taken:#?}");
    for m in &taken {
        assert_eq!(m.phase, AnalysisPhase::Successful, "{m:#?}");
        let value: f64 = m
            .value
            .as_deref()
            .and_then(|v| v.trim_matches(['[', ']']).parse().ok())
            .unwrap_or_else(|| panic!("a numeric success rate: {m:#?}"));
        assert!(value >= 0.95, "{value}");
    }

    let done = h
        .wait_rollout("promoted and Healthy", |r| {
            healthy(r) && stable_rs(r).as_deref() != Some(blue.as_str())
        })
        .await;
    let green = current_hash(&done);
    assert_eq!(stable_rs(&done), Some(green.clone()));
    wait_for("all traffic on the new stable", TIMEOUT, || async {
        (h.route_weights().await == (100, 0)
            && h.selector_hash("web-stable").await.as_deref() == Some(green.as_str()))
        .then_some(())
    })
    .await;

    // The controller's /metrics describe the same: the Rollout Healthy, the run's metric
    // Successful with its last value.
    let ns = h.ns.name.as_str();
    let run_name = run.metadata.name.clone().unwrap_or_default();
    let c = &h.controller;
    wait_for("the Rollout's and the run's metrics", TIMEOUT, || async {
        let info = [("namespace", ns), ("name", "web"), ("strategy", "canary")];
        let healthy = c
            .metric_with(
                "sluice_rollout_info",
                &[info.as_slice(), &[("phase", "Healthy")]].concat(),
            )
            .await;
        let of_run = [
            ("namespace", ns),
            ("analysis_run", run_name.as_str()),
            ("metric", "success-rate"),
        ];
        let phase = c
            .metric_with(
                "sluice_analysis_run_metric_phase",
                &[of_run.as_slice(), &[("phase", "Successful")]].concat(),
            )
            .await;
        let value = c
            .metric_with("sluice_analysis_measurement_value", &of_run)
            .await;
        (healthy == Some(1.0) && phase == Some(1.0) && value.is_some_and(|v| v >= 0.95))
            .then_some(())
    })
    .await;
}

/// A5, A8, A12: a `:bad` canary (30 % HTTP 500) fails its first measurement (failureLimit 0): the
/// rollout aborts, the route goes back to 100/0 at once, and the message names metric and value.
/// Prints the time from the failing measurement to canary weight 0 on the route.
#[tokio::test]
async fn a_bad_canary_fails_analysis_and_traffic_returns_to_stable() {
    let h = Harness::start("ra-bad").await;
    let blue = canary_with_step_analysis(&h, success_rate_template(4, |_| ())).await;
    let weight_zero = WeightZeroWatch::start(&h);
    h.set_image("example/web:bad").await;

    let run = run_of_type(&h, "step", "the step analysis to fail", |p| {
        p.is_completed()
    })
    .await;
    assert_eq!(run_phase(&run), Some(AnalysisPhase::Failed), "{run:#?}");
    // failureLimit 0: the first failed measurement ends the run. (A measurement before it may pass:
    // the canary's first seconds of traffic are a small sample.)
    let taken = measurements(&run);
    let failures: Vec<_> = taken
        .iter()
        .filter(|m| m.phase == AnalysisPhase::Failed)
        .collect();
    assert_eq!(failures.len(), 1, "{taken:#?}");
    assert_eq!(taken.last(), failures.first().copied(), "{taken:#?}");
    let failed = failures[0];

    let aborted_rollout = h
        .wait_rollout("aborted and Degraded", |r| degraded(r) && aborted(r))
        .await;
    assert_eq!(stable_rs(&aborted_rollout), Some(blue.clone()));
    let text = message(&aborted_rollout);
    let value = failed.value.clone().unwrap_or_default();
    assert!(text.contains("success-rate"), "{text}");
    assert!(
        text.contains(value.trim_matches(['[', ']'])),
        "{text} / {value}"
    );
    wait_for(
        "route back to 100/0, canary Service on stable",
        TIMEOUT,
        || async {
            (h.route_weights().await == (100, 0)
                && h.selector_hash("web-canary").await.as_deref() == Some(blue.as_str()))
            .then_some(())
        },
    )
    .await;

    let failed_at = failed
        .finished_at
        .as_ref()
        .map(|t| t.0)
        .expect("the failed measurement's time");
    let zero_at = weight_zero.first_zero_after_canary_traffic().await;
    let ms = zero_at.duration_since(failed_at).as_millis();
    println!("figure: failing measurement -> HTTPRoute canary weight 0: {ms} ms");
    assert!(ms >= 0, "weight 0 before the failing measurement: {ms} ms");
}

/// A template built from another (`spec.templates`, Argo ≥ 1.7): the step's AnalysisRun measures the
/// included template's metric, and a bad canary fails it and aborts, as with the template itself.
#[tokio::test]
async fn a_composed_template_runs_the_metrics_it_includes() {
    let h = Harness::start("ra-composed").await;
    let mut base = success_rate_template(4, |_| ());
    base["metadata"]["name"] = json!("success-rate-base");
    h.create(&h.analysis_templates(), base).await;
    let composed = json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": "success-rate"},
        "spec": {"templates": [{"templateName": "success-rate-base"}]}
    });
    let blue = canary_with_step_analysis(&h, composed).await;
    h.set_image("example/web:bad").await;
    let run = run_of_type(&h, "step", "the composed step analysis to fail", |p| {
        p.is_completed()
    })
    .await;
    assert_eq!(run_phase(&run), Some(AnalysisPhase::Failed), "{run:#?}");
    let metrics: Vec<&str> = run.spec.metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(metrics, ["success-rate"], "the included template's metric");
    let aborted_rollout = h
        .wait_rollout("aborted and Degraded", |r| degraded(r) && aborted(r))
        .await;
    assert_eq!(stable_rs(&aborted_rollout), Some(blue));
}

/// A2, A11: Prometheus goes away mid-analysis (the template's address is a proxy the test stops):
/// measurements become Error, the run ends Error after the consecutive error limit, the rollout
/// aborts and never promotes.
#[tokio::test]
async fn prometheus_lost_mid_analysis_errors_the_run_and_aborts() {
    let env = E2eEnv::load();
    let proxy = PrometheusProxy::start(env.get("PROMETHEUS_URL")).await;
    let address = proxy.url();
    let template = success_rate_template(30, |metric| {
        metric["consecutiveErrorLimit"] = json!(2);
        metric["provider"]["prometheus"]["address"] = json!(address);
    });
    let h = Harness::start("ra-promloss").await;
    let blue = canary_with_step_analysis(&h, template).await;
    h.set_image("example/web:2.0").await;

    let selector = "sluice.dev/rollout=web,sluice.dev/analysis-type=step";
    wait_for(
        "a successful measurement through the proxy",
        TIMEOUT,
        || async {
            let runs = h
                .analysis_runs()
                .list(&ListParams::default().labels(selector))
                .await
                .ok()?;
            runs.items
                .iter()
                .flat_map(measurements)
                .any(|m| m.phase == AnalysisPhase::Successful)
                .then_some(())
        },
    )
    .await;
    proxy.stop();

    let run = run_of_type(&h, "step", "the run to end", |p| p.is_completed()).await;
    assert_eq!(run_phase(&run), Some(AnalysisPhase::Error), "{run:#?}");
    let taken = measurements(&run);
    let trailing_errors = taken
        .iter()
        .rev()
        .take_while(|m| m.phase == AnalysisPhase::Error)
        .count();
    assert_eq!(
        trailing_errors, 3,
        "limit 2: the third error in a row ends it: {taken:#?}"
    );

    let r = h
        .wait_rollout("aborted and Degraded", |r| degraded(r) && aborted(r))
        .await;
    assert_eq!(stable_rs(&r), Some(blue.clone()), "never promoted");
    assert_eq!(h.route_weights().await, (100, 0));
}

/// A1, A5: a condition pair neither value meets makes the run Inconclusive, which pauses the
/// rollout; promote continues it to the end.
#[tokio::test]
async fn inconclusive_analysis_pauses_the_rollout_until_promoted() {
    let template = success_rate_template(1, |metric| {
        metric["successCondition"] = json!("result[0] > 2");
        metric["failureCondition"] = json!("result[0] < -1");
    });
    let h = Harness::start("ra-inconclusive").await;
    let blue = canary_with_step_analysis(&h, template).await;
    h.set_image("example/web:2.0").await;

    let run = run_of_type(&h, "step", "the run to end", |p| p.is_completed()).await;
    assert_eq!(
        run_phase(&run),
        Some(AnalysisPhase::Inconclusive),
        "{run:#?}"
    );
    let paused = h
        .wait_rollout("paused by the inconclusive run", |r| {
            phase(r) == Some(RolloutPhase::Paused)
                && r.status.as_ref().is_some_and(|s| {
                    s.pause_conditions
                        .iter()
                        .any(|c| c.reason == PauseReason::InconclusiveAnalysisRun)
                })
        })
        .await;
    assert_eq!(stable_rs(&paused), Some(blue.clone()));

    h.promote().await;
    let done = h
        .wait_rollout("promoted and Healthy", |r| {
            healthy(r) && stable_rs(r).as_deref() != Some(blue.as_str())
        })
        .await;
    assert_eq!(stable_rs(&done), Some(current_hash(&done)));
}

/// B4, A5: blue-green with a pre-promotion analysis of the `:bad` preview: the analysis fails, the
/// rollout aborts, and the active Service never leaves the old revision, even with auto-promotion on.
#[tokio::test]
async fn blue_green_failing_pre_promotion_analysis_never_switches_active() {
    let h = Harness::start("ra-bluegreen").await;
    h.create_web_services(&["web-active", "web-preview"]).await;
    h.create(&h.analysis_templates(), success_rate_template(4, |_| ()))
        .await;
    let strategy = json!({"blueGreen": {
        "activeService": "web-active", "previewService": "web-preview",
        "autoPromotionEnabled": true,
        "prePromotionAnalysis": {
            "templates": [{"templateName": "success-rate"}], "args": analysis_args(&h.ns.name)
        }
    }});
    h.create(&h.rollouts(), rollout_manifest(2, strategy)).await;
    let blue = current_hash(&h.wait_rollout("first deploy Healthy", healthy).await);
    wait_for("active selects the first revision", TIMEOUT, || async {
        (h.selector_hash("web-active").await.as_deref() == Some(blue.as_str())).then_some(())
    })
    .await;
    let active_seen = SelectorWatch::start(&h, "web-active");

    h.set_image("example/web:bad").await;
    let run = run_of_type(
        &h,
        "prePromotion",
        "the pre-promotion analysis to end",
        |p| p.is_completed(),
    )
    .await;
    assert_eq!(run_phase(&run), Some(AnalysisPhase::Failed), "{run:#?}");
    let r = h
        .wait_rollout("aborted and Degraded", |r| degraded(r) && aborted(r))
        .await;
    assert_eq!(stable_rs(&r), Some(blue.clone()));
    assert_eq!(
        h.selector_hash("web-active").await.as_deref(),
        Some(blue.as_str())
    );
    let seen = active_seen.stop();
    assert!(
        seen.iter()
            .all(|hash| hash.as_deref() == Some(blue.as_str())),
        "active Service only ever selected {blue}: {seen:?}"
    );
}

/// Records every `rollouts-pod-template-hash` a Service's selector takes while the test runs.
struct SelectorWatch {
    seen: Arc<Mutex<Vec<Option<String>>>>,
    task: JoinHandle<()>,
}

impl SelectorWatch {
    fn start(h: &Harness, service: &str) -> Self {
        let services: Api<Service> = h.services();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let fields = format!("metadata.name={service}");
        let task = tokio::spawn(async move {
            let events = watcher(services, watcher::Config::default().fields(&fields))
                .applied_objects()
                .filter_map(|svc| async move { svc.ok() });
            let mut events = std::pin::pin!(events);
            while let Some(svc) = events.next().await {
                let hash = svc
                    .spec
                    .and_then(|s| s.selector)
                    .and_then(|s| s.get("rollouts-pod-template-hash").cloned());
                sink.lock().expect("selector log").push(hash);
            }
        });
        Self { seen, task }
    }

    fn stop(self) -> Vec<Option<String>> {
        self.task.abort();
        self.seen.lock().expect("selector log").clone()
    }
}

/// A TCP proxy on 127.0.0.1 in front of the real Prometheus; stopping it closes the listener and
/// every open connection, as a Prometheus going away would.
struct PrometheusProxy {
    port: u16,
    task: JoinHandle<()>,
}

impl PrometheusProxy {
    async fn start(prometheus_url: &str) -> Self {
        let upstream = prometheus_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                connections.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Self { port, task }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Aborting the accept loop drops the listener and the JoinSet, which aborts every connection.
    fn stop(self) {
        self.task.abort();
    }
}
