//! The analysis engine against the local cluster and the real Prometheus, which scrapes the traffic
//! emulator: AnalysisRuns are reconciled by `sluice::analysis::controller::run` started in-process
//! and scoped to the test's namespace.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{
    E2eEnv, TestNamespace, apply_crds, free_local_addr, prometheus_query, wait_for,
    wait_replica_sets_ready,
};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Service;
use kube::api::{DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use kube::{Api, Client, Resource};
use serde_json::json;
use sluice::analysis::args::{ArgContext, build_analysis_run};
use sluice::analysis::controller::{AnalysisContext, run as run_analysis_controller};
use sluice::api::Rollout;
use sluice::api::analysis::{
    AnalysisPhase, AnalysisRun, AnalysisRunSpec, AnalysisTemplate, AnalysisTemplateSpec,
};
use sluice::api::rollout::RolloutAnalysis;

const TIMEOUT: Duration = Duration::from_secs(90);

fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("valid object")
}

/// The analysis controller, in this process, watching `namespace` only; stopped when dropped.
struct InProcessController(tokio::task::JoinHandle<()>);

impl InProcessController {
    fn start(client: &Client, env: &E2eEnv, namespace: &str) -> Self {
        Self::start_with(
            client,
            Some(env.get("PROMETHEUS_URL").to_string()),
            namespace,
        )
    }

    fn start_with(client: &Client, prometheus_url: Option<String>, namespace: &str) -> Self {
        let ctx = AnalysisContext {
            prometheus_url,
            namespace: Some(namespace.to_string()),
            metrics: sluice::metrics::Metrics::new(),
        };
        let ready = sluice::readiness::Readiness::default();
        Self(tokio::spawn(run_analysis_controller(
            client.clone(),
            ctx,
            ready,
        )))
    }
}

impl Drop for InProcessController {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn create_run(client: &Client, ns: &str, name: &str, spec: AnalysisRunSpec) {
    let runs: Api<AnalysisRun> = Api::namespaced(client.clone(), ns);
    runs.create(&PostParams::default(), &AnalysisRun::new(name, spec))
        .await
        .unwrap_or_else(|e| panic!("create AnalysisRun {name}: {e}"));
}

/// Waits until the run is completed and returns it.
async fn completed_run(client: &Client, ns: &str, name: &str) -> AnalysisRun {
    let runs: Api<AnalysisRun> = Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("AnalysisRun {name} to complete"),
        TIMEOUT,
        || async {
            let run = runs.get(name).await.ok()?;
            run.status
                .as_ref()
                .is_some_and(|s| s.phase().is_completed())
                .then_some(run)
        },
    )
    .await
}

fn phase_and_message(run: &AnalysisRun) -> (AnalysisPhase, String) {
    let status = run.status.clone().unwrap_or_default();
    (status.phase(), status.message.unwrap_or_default())
}

fn http_route_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "gateway.networking.k8s.io",
        "v1",
        "HTTPRoute",
    ))
}

/// A Rollout routed 70/30 by an HTTPRoute to a healthy stable revision and a `:bad` canary (30%
/// HTTP 500), backed by ReplicaSets it owns, so the emulator produces `http_requests_total` for both.
/// Returns once Prometheus has scraped both revisions.
async fn traffic_with_a_bad_canary(client: &Client, env: &E2eEnv, ns: &str) {
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    for (name, hash) in [("web-stable", "stablehash"), ("web-canary", "canaryhash")] {
        let svc: Service = from_json(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name},
            "spec": {
                "selector": {"app": "web", "rollouts-pod-template-hash": hash},
                "ports": [{"port": 80, "targetPort": 8080}]
            }
        }));
        services
            .create(&PostParams::default(), &svc)
            .await
            .expect("create service");
    }
    let routes: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &http_route_resource());
    let route: DynamicObject = from_json(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "web"},
        "spec": {
            "parentRefs": [{"name": "gateway"}],
            "rules": [{"backendRefs": [
                {"name": "web-stable", "port": 80, "weight": 70},
                {"name": "web-canary", "port": 80, "weight": 30}
            ]}]
        }
    }));
    routes
        .create(&PostParams::default(), &route)
        .await
        .expect("create HTTPRoute");
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), ns);
    let rollout: Rollout = from_json(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "paused": true,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "example/web:1.0"}]}
            },
            "strategy": {"canary": {
                "stableService": "web-stable",
                "canaryService": "web-canary",
                "trafficRouting": {"plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": "web"}}},
                "steps": [{"setWeight": 30}, {"pause": {}}]
            }}
        }
    }));
    let rollout = rollouts
        .create(&PostParams::default(), &rollout)
        .await
        .expect("create Rollout");
    let owner = rollout.controller_owner_ref(&()).expect("owner reference");
    let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    for (hash, image) in [
        ("stablehash", "example/web:1.0"),
        ("canaryhash", "example/web:bad"),
    ] {
        let labels = json!({"app": "web", "rollouts-pod-template-hash": hash});
        let rs: ReplicaSet = from_json(json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": format!("web-{hash}"), "labels": labels, "ownerReferences": [owner]},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "web", "image": image}]}
                }
            }
        }));
        replicasets
            .create(&PostParams::default(), &rs)
            .await
            .expect("create replicaset");
    }
    wait_replica_sets_ready(client, ns, &["web-stablehash", "web-canaryhash"], 1).await;
    // Wait until the verdicts are certain: over the analysis window neither revision has a 503 left
    // (those answered before the emulator saw the pods Ready), the stable revision's success rate is
    // exactly 1, and the canary's is near its 70 %: clearly below 0.95, and not the 0 of a window in
    // which its 200 series had just appeared and not grown yet.
    let prometheus = env.get("PROMETHEUS_URL");
    let rate = |revision: &str, codes: &str| {
        format!(
            "sum(rate(http_requests_total{{namespace=\"{ns}\", rollout=\"web\", revision=\"{revision}\", code=~\"{codes}\"}}[{ANALYSIS_WINDOW}]))"
        )
    };
    let success_rate =
        |revision: &str| format!("{} / {}", rate(revision, "[^5].*"), rate(revision, ".*"));
    let (stable_ok, canary_ok) = (success_rate("stablehash"), success_rate("canaryhash"));
    let unavailable = [rate("stablehash", "503"), rate("canaryhash", "503")];
    wait_for(
        "Prometheus to see steady traffic on both revisions: no 503 left in the window, the stable's success rate 1, the canary's between 0.5 and 0.9",
        STEADY_TRAFFIC_TIMEOUT,
        || async {
            let value = |result: Vec<serde_json::Value>| {
                result
                    .first()
                    .and_then(|s| s["value"][1].as_str()?.parse::<f64>().ok())
            };
            for query in &unavailable {
                // No 503 series at all is as good as a flat one.
                let startup_503s = value(prometheus_query(prometheus, query).await).unwrap_or(0.0);
                if startup_503s > 0.0 {
                    return None;
                }
            }
            let stable = value(prometheus_query(prometheus, &stable_ok).await)?;
            let canary = value(prometheus_query(prometheus, &canary_ok).await)?;
            (stable >= 1.0 && (0.5..0.9).contains(&canary)).then_some(())
        },
    )
    .await;
}

/// The `window` argument of every success-rate run here, and of the readiness wait above.
const ANALYSIS_WINDOW: &str = "30s";
/// Start-up 503s leave the analysis window after it has passed once.
const STEADY_TRAFFIC_TIMEOUT: Duration = Duration::from_secs(120);

fn templates_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("analysis-templates")
}

fn read_template(file: &str) -> AnalysisTemplate {
    let path = templates_dir().join(file);
    let text = std::fs::read_to_string(&path).expect("read template");
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The success-rate template instantiated for one revision, measured every 2 s, twice.
fn success_rate_run(ns: &str, revision: &str) -> AnalysisRunSpec {
    let template = read_template("success-rate.yaml");
    let analysis: RolloutAnalysis = from_json(json!({
        "templates": [{"templateName": "success-rate"}],
        "args": [
            {"name": "namespace", "value": ns},
            {"name": "rollout", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "revision", "valueFrom": {"podTemplateHashValue": "Latest"}},
            {"name": "window", "value": ANALYSIS_WINDOW}
        ]
    }));
    let rollout = json!({"metadata": {"name": "web", "namespace": ns}});
    let ctx = ArgContext {
        stable_hash: Some("stablehash"),
        latest_hash: Some(revision),
        rollout: Some(&rollout),
        ..ArgContext::default()
    };
    let mut spec = build_analysis_run(
        &[("success-rate".to_string(), template.spec)],
        &analysis,
        &ctx,
    )
    .expect("build run");
    spec.metrics[0].interval = Some("2s".into());
    spec.metrics[0].count = Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(2));
    spec
}

/// A8, A9, A12: real PromQL over the emulator's traffic: the healthy revision's success rate passes,
/// the `:bad` one's fails with a message naming the metric, its value and the condition.
#[tokio::test]
async fn success_rate_passes_for_the_good_revision_and_fails_for_the_bad_one() {
    let env = E2eEnv::load();
    let client = env.client().await;
    apply_crds(&client).await;
    let ns = TestNamespace::create(&client, "analysis-rate").await;
    traffic_with_a_bad_canary(&client, &env, &ns.name).await;
    let _controller = InProcessController::start(&client, &env, &ns.name);

    create_run(
        &client,
        &ns.name,
        "good",
        success_rate_run(&ns.name, "stablehash"),
    )
    .await;
    let started = Instant::now();
    create_run(
        &client,
        &ns.name,
        "bad",
        success_rate_run(&ns.name, "canaryhash"),
    )
    .await;

    let bad = completed_run(&client, &ns.name, "bad").await;
    let bad_elapsed = started.elapsed();
    let (phase, message) = phase_and_message(&bad);
    assert_eq!(phase, AnalysisPhase::Failed, "{message}");
    assert!(
        message.starts_with(
            "metric \"success-rate\" assessed Failed due to failed (1) > failureLimit (0): value ["
        ),
        "{message}"
    );
    assert!(
        message.ends_with("did not meet successCondition \"result[0] >= 0.95\""),
        "{message}"
    );
    let status = bad.status.clone().unwrap_or_default();
    let measurement = &status.metric_results[0].measurements[0];
    let query = &measurement.metadata["query"];
    assert!(
        query.contains("revision=\"canaryhash\"") && !query.contains("{{"),
        "resolved query kept in the metadata: {query}"
    );
    let value: f64 = measurement
        .value
        .as_deref()
        .and_then(|v| v.trim_matches(['[', ']']).parse().ok())
        .expect("a number in the value");
    // Only the verdict's side of the threshold is certain: the emulator's error share per window
    // varies with the machine's load.
    assert!(
        value > 0.0 && value < 0.95,
        "bad revision success rate {value}"
    );
    eprintln!("bad run Failed {bad_elapsed:?} after creation: {message}");

    // The scrape provider reads the emulator's exposition endpoint directly.
    create_run(
        &client,
        &ns.name,
        "scrape",
        from_json(json!({"metrics": [{
            "name": "bad-500s",
            "successCondition": "len(result) == 1 && result[0] > 0",
            "provider": {"scrape": {
                "url": format!("{}/metrics", env.get("TRAFFIC_URL")),
                "metric": "http_requests_total",
                "labels": {"namespace": ns.name, "revision": "canaryhash", "code": "500", "traffic": "plain"}
            }}
        }]})),
    )
    .await;
    let scraped = completed_run(&client, &ns.name, "scrape").await;
    let (phase, message) = phase_and_message(&scraped);
    assert_eq!(phase, AnalysisPhase::Successful, "{message} {scraped:?}");

    let good = completed_run(&client, &ns.name, "good").await;
    let (phase, message) = phase_and_message(&good);
    assert_eq!(phase, AnalysisPhase::Successful, "{message}");
    let status = good.status.unwrap_or_default();
    assert_eq!(status.metric_results[0].count, 2);
    assert_eq!(status.metric_results[0].successful, 2);

    ns.delete().await;
}

/// A11, A2: Prometheus unreachable (a closed 127.0.0.1 port) gives Error measurements, and the run
/// ends Error after the consecutive error limit [4], never Successful.
#[tokio::test]
async fn unreachable_prometheus_errors_the_run_after_the_consecutive_error_limit() {
    let env = E2eEnv::load();
    let client = env.client().await;
    apply_crds(&client).await;
    let ns = TestNamespace::create(&client, "analysis-down").await;
    let closed = free_local_addr();
    let _controller =
        InProcessController::start_with(&client, Some(format!("http://{closed}")), &ns.name);
    create_run(
        &client,
        &ns.name,
        "down",
        from_json(json!({"metrics": [{
            "name": "success-rate", "interval": "1s",
            "successCondition": "result[0] >= 0.95",
            "provider": {"prometheus": {"query": "vector(1)"}}
        }]})),
    )
    .await;
    let run = completed_run(&client, &ns.name, "down").await;
    let (phase, message) = phase_and_message(&run);
    assert_eq!(phase, AnalysisPhase::Error, "{message}");
    let result = &run.status.unwrap_or_default().metric_results[0];
    assert_eq!((result.error, result.consecutive_error), (5, 5));
    assert_eq!(result.successful, 0);
    assert!(
        result
            .measurements
            .iter()
            .all(|m| m.phase == AnalysisPhase::Error),
        "{result:?}"
    );
    assert!(
        message.starts_with(
            "metric \"success-rate\" assessed Error due to consecutiveErrors (5) > consecutiveErrorLimit (4); last error: Prometheus http://127.0.0.1:"
        ),
        "{message}"
    );
    ns.delete().await;
}

/// A1, A4: a condition pair that matches neither value makes the run Inconclusive; a template without
/// conditions over real Prometheus is Successful.
#[tokio::test]
async fn neither_condition_met_is_inconclusive() {
    let env = E2eEnv::load();
    let client = env.client().await;
    apply_crds(&client).await;
    let ns = TestNamespace::create(&client, "analysis-inconclusive").await;
    let _controller = InProcessController::start(&client, &env, &ns.name);
    create_run(
        &client,
        &ns.name,
        "neither",
        from_json(json!({"metrics": [{
            "name": "half",
            "successCondition": "result[0] > 0.9",
            "failureCondition": "result[0] < 0.1",
            "provider": {"prometheus": {"query": "vector(0.5)"}}
        }]})),
    )
    .await;
    create_run(
        &client,
        &ns.name,
        "scalar",
        from_json(json!({"metrics": [{
            "name": "scalar",
            "successCondition": "result >= 0.95 && !isNaN(result)",
            "provider": {"prometheus": {"query": "scalar(vector(1))"}}
        }]})),
    )
    .await;
    // A run measuring until terminated (interval, no count) ends Successful on `spec.terminate`.
    create_run(
        &client,
        &ns.name,
        "forever",
        from_json(json!({"metrics": [{
            "name": "up", "interval": "1s",
            "successCondition": "all(result, {# == 1})",
            "provider": {"prometheus": {"query": "vector(1)"}}
        }]})),
    )
    .await;
    let runs: Api<AnalysisRun> = Api::namespaced(client.clone(), &ns.name);
    wait_for("two measurements of the endless run", TIMEOUT, || async {
        let run = runs.get("forever").await.ok()?;
        let status = run.status?;
        (status.phase() == AnalysisPhase::Running && status.metric_results.first()?.successful >= 2)
            .then_some(())
    })
    .await;
    runs.patch(
        "forever",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"terminate": true}})),
    )
    .await
    .expect("terminate the run");
    let forever = completed_run(&client, &ns.name, "forever").await;
    assert_eq!(
        phase_and_message(&forever),
        (AnalysisPhase::Successful, "run terminated".to_string())
    );

    let run = completed_run(&client, &ns.name, "neither").await;
    let (phase, message) = phase_and_message(&run);
    assert_eq!(phase, AnalysisPhase::Inconclusive, "{message}");
    assert!(
        message.contains("value [0.5] met neither successCondition \"result[0] > 0.9\" nor failureCondition \"result[0] < 0.1\""),
        "{message}"
    );
    let scalar = completed_run(&client, &ns.name, "scalar").await;
    let (phase, message) = phase_and_message(&scalar);
    assert_eq!(phase, AnalysisPhase::Successful, "{message}");
    let status = scalar.status.unwrap_or_default();
    assert_eq!(
        status.metric_results[0].measurements[0].value.as_deref(),
        Some("1")
    );
    assert_eq!(
        status.metric_results[0].measurements[0].metadata["resultType"],
        "scalar"
    );
    ns.delete().await;
}

/// A7: an argument without a value fails the run with a message naming it; no query is sent.
#[tokio::test]
async fn missing_arg_fails_the_run_with_a_clear_message() {
    let env = E2eEnv::load();
    let client = env.client().await;
    apply_crds(&client).await;
    let ns = TestNamespace::create(&client, "analysis-args").await;
    let _controller = InProcessController::start(&client, &env, &ns.name);
    create_run(
        &client,
        &ns.name,
        "missing",
        from_json(json!({
            "args": [{"name": "service"}],
            "metrics": [{
                "name": "rate",
                "successCondition": "result[0] >= 0.95",
                "provider": {"prometheus": {"query": "sum(up{service=\"{{args.service}}\"})"}}
            }]
        })),
    )
    .await;
    let run = completed_run(&client, &ns.name, "missing").await;
    let (phase, message) = phase_and_message(&run);
    assert_eq!(phase, AnalysisPhase::Error);
    assert_eq!(
        message,
        "unable to resolve arguments: args.service has no value: give it a value in the Rollout's analysis args"
    );
    assert!(run.status.unwrap_or_default().metric_results.is_empty());
    ns.delete().await;
}

/// `analysis-templates/`: every template is accepted by the API server's schema and, with its
/// required args given, resolves without a placeholder left.
#[tokio::test]
async fn ready_templates_are_accepted_by_the_cluster() {
    let env = E2eEnv::load();
    let client = env.client().await;
    apply_crds(&client).await;
    let ns = TestNamespace::create(&client, "analysis-templates").await;
    let templates: Api<AnalysisTemplate> = Api::namespaced(client.clone(), &ns.name);
    let mut files: Vec<String> = std::fs::read_dir(templates_dir())
        .expect("analysis-templates/")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| f.ends_with(".yaml"))
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "error-rate.yaml",
            "latency-p95.yaml",
            "latency-p99.yaml",
            "success-rate.yaml"
        ]
    );
    for file in &files {
        let template = read_template(file);
        let name = template.metadata.name.clone().expect("template name");
        let applied = templates
            .patch(
                &name,
                &PatchParams::apply("sluice-e2e-tests").force(),
                &Patch::Apply(&template),
            )
            .await
            .unwrap_or_else(|e| panic!("API server refused {file}: {e}"));
        assert_eq!(applied.spec, template.spec, "{file} round-trips unchanged");

        let spec: AnalysisTemplateSpec = template.spec;
        let analysis: RolloutAnalysis = from_json(json!({"args": [
            {"name": "namespace", "value": "prod"},
            {"name": "rollout", "value": "web"},
            {"name": "revision", "value": "abc"}
        ]}));
        let run = build_analysis_run(&[(name.clone(), spec)], &analysis, &ArgContext::default())
            .expect("build");
        let resolved = sluice::analysis::args::resolve_args(&run.args, &ArgContext::default())
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        for metric in &run.metrics {
            let m = sluice::analysis::args::resolve_metric(metric, &resolved)
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            let text = serde_json::to_string(&m).expect("json");
            assert!(!text.contains("{{"), "{file}: placeholder left in {text}");
            assert!(
                m.effective_count().is_ok() && m.interval().is_ok(),
                "{file}"
            );
        }
    }
    ns.delete().await;
}

/// All state is in the status: a controller stopped mid-run and started again continues the count
/// where it was (no measurement lost or repeated, no reset).
#[tokio::test]
async fn a_restarted_controller_continues_where_it_was() {
    let env = E2eEnv::load();
    let client = env.client().await;
    apply_crds(&client).await;
    let ns = TestNamespace::create(&client, "analysis-restart").await;
    let first = InProcessController::start(&client, &env, &ns.name);
    create_run(
        &client,
        &ns.name,
        "steady",
        from_json(json!({"metrics": [{
            "name": "up", "interval": "1s", "count": 4,
            "successCondition": "result[0] == 1",
            "provider": {"prometheus": {"query": "vector(1)"}}
        }]})),
    )
    .await;
    let runs: Api<AnalysisRun> = Api::namespaced(client.clone(), &ns.name);
    wait_for("two measurements before the restart", TIMEOUT, || async {
        let status = runs.get("steady").await.ok()?.status?;
        (status.metric_results.first()?.count >= 2).then_some(())
    })
    .await;
    drop(first);
    let _second = InProcessController::start(&client, &env, &ns.name);
    let run = completed_run(&client, &ns.name, "steady").await;
    let (phase, message) = phase_and_message(&run);
    assert_eq!(phase, AnalysisPhase::Successful, "{message}");
    let result = &run.status.unwrap_or_default().metric_results[0];
    assert_eq!((result.count, result.successful), (4, 4), "{result:?}");
    assert_eq!(result.measurements.len(), 4);
    ns.delete().await;
}

/// A stand-in Prometheus answering `vector(1)` to every query and keeping the request heads, to check
/// what the provider sends (the local Prometheus has no authentication to test against).
async fn recording_prometheus() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    tokio::task::JoinHandle<()>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = heads.clone();
    let server = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = vec![0u8; 8192];
            let mut len = 0;
            while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") && len < buf.len() {
                match socket.read(&mut buf[len..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => len += n,
                }
            }
            seen.lock()
                .expect("lock")
                .push(String::from_utf8_lossy(&buf[..len]).to_string());
            let body = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]}]}}"#;
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(reply.as_bytes()).await;
        }
    });
    (format!("http://{addr}"), heads, server)
}

/// Bearer token and headers reach Prometheus, the token read from a Secret (labelled for analysis);
/// a `secretKeyRef` argument is templated into the query but masked in the measurement's metadata.
#[tokio::test]
async fn credentials_and_secret_args_come_from_secrets_and_stay_out_of_status() {
    use k8s_openapi::api::core::v1::Secret;
    let env = E2eEnv::load();
    let client = env.client().await;
    apply_crds(&client).await;
    let ns = TestNamespace::create(&client, "analysis-auth").await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let secret: Secret = from_json(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "prom-creds", "labels": {"sluice.dev/analysis-secret": "true"}},
        "stringData": {"token": "tok-e2e-123", "tenant": "tenant-secret-9"}
    }));
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
    let (address, heads, server) = recording_prometheus().await;
    let _controller = InProcessController::start(&client, &env, &ns.name);
    create_run(
        &client,
        &ns.name,
        "auth",
        from_json(json!({
            "args": [{"name": "tenant", "valueFrom": {"secretKeyRef": {"name": "prom-creds", "key": "tenant"}}}],
            "metrics": [{
                "name": "up",
                "successCondition": "result[0] == 1",
                "provider": {"prometheus": {
                    "address": address,
                    "query": "up{tenant=\"{{args.tenant}}\"}",
                    "headers": [{"key": "X-Scope-OrgID", "value": "team-a"}],
                    "authentication": {"bearer": {"tokenSecretRef": {"name": "prom-creds", "key": "token"}}}
                }}
            }]
        })),
    )
    .await;
    let run = completed_run(&client, &ns.name, "auth").await;
    let (phase, message) = phase_and_message(&run);
    assert_eq!(phase, AnalysisPhase::Successful, "{message}");
    let head = heads
        .lock()
        .expect("lock")
        .first()
        .cloned()
        .expect("a request");
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("authorization: bearer tok-e2e-123"),
        "{head}"
    );
    assert!(lower.contains("x-scope-orgid: team-a"), "{head}");
    assert!(
        head.contains("tenant-secret-9"),
        "the query carries the secret value: {head}"
    );
    let status = serde_json::to_string(&run.status).expect("json");
    assert!(
        !status.contains("tenant-secret-9") && !status.contains("tok-e2e-123"),
        "{status}"
    );
    assert!(status.contains("up{tenant=\\\"*****\\\"}"), "{status}");
    server.abort();
    ns.delete().await;
}
