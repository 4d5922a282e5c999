//! The `web` metric provider on the local cluster: an AnalysisTemplate whose metric asks an HTTP
//! server of the test's own (on 127.0.0.1, reachable from the controller process) gates a
//! blue-green pre-promotion analysis. `{"ok": true}` promotes the preview; `{"ok": false}` aborts
//! the rollout and the active Service never leaves the old revision. The request carries what the
//! template says: POST, a JSON body with `{{args}}` replaced, and a header from a Secret argument.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::{Value, json};
use sluice::api::analysis::{AnalysisPhase, AnalysisRun, AnalysisTemplate};
use sluice::api::rollout::{Rollout, RolloutPhase};
use tokio::task::JoinHandle;

use common::rollouts::{Harness, current_hash, observed_current, phase, rollout_manifest};
use common::wait_for;

const TIMEOUT: Duration = Duration::from_secs(90);
const TOKEN: &str = "s3cret-token";

/// A request the check server received.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: Value,
}

/// An HTTP server on 127.0.0.1 answering every `POST /checks/{service}` with `answer`, recording
/// what it received.
struct CheckServer {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl CheckServer {
    async fn start(answer: &'static str) -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let state = (received.clone(), answer);
        let app = Router::new()
            .route("/checks/{service}", post(check))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url,
            received,
            task,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("request log").clone()
    }
}

impl Drop for CheckServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type CheckState = (Arc<Mutex<Vec<Received>>>, &'static str);

async fn check(
    State((received, answer)): State<CheckState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ([(&'static str, &'static str); 1], &'static str) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    received.lock().expect("request log").push(Received {
        path: uri.to_string(),
        authorization: header("authorization"),
        content_type: header("content-type"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    ([("content-type", "application/json")], answer)
}

/// Argo's documented web metric, POST with a JSON body, pointed at `server`.
fn web_template(server: &str) -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": "web-check"},
        "spec": {
            "args": [
                {"name": "service-name"},
                {"name": "api-token", "valueFrom": {"secretKeyRef": {"name": "check-api", "key": "token"}}}
            ],
            "metrics": [{
                "name": "webmetric",
                "successCondition": "result == true",
                "provider": {"web": {
                    "method": "POST",
                    "url": format!("{server}/checks/{{{{ args.service-name }}}}"),
                    "timeoutSeconds": 5,
                    "headers": [{"key": "Authorization", "value": "Bearer {{ args.api-token }}"}],
                    "jsonBody": {"service": "{{ args.service-name }}", "window": "5m"},
                    "jsonPath": "{$.ok}"
                }}
            }]
        }
    })
}

async fn create_secret(h: &Harness) {
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), &h.ns.name);
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "check-api", "labels": {"sluice.dev/analysis-secret": "true"}},
        "stringData": {"token": TOKEN}
    }))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
}

/// A blue-green Rollout gated by the web check before promotion; returns the first revision's hash.
async fn blue_green_with_web_check(h: &Harness, server: &CheckServer) -> String {
    create_secret(h).await;
    h.create_web_services(&["web-active", "web-preview"]).await;
    h.create(&h.analysis_templates(), web_template(&server.url))
        .await;
    let strategy = json!({"blueGreen": {
        "activeService": "web-active", "previewService": "web-preview",
        "autoPromotionEnabled": true,
        "prePromotionAnalysis": {
            "templates": [{"templateName": "web-check"}],
            "args": [{"name": "service-name", "value": "web-preview"}]
        }
    }});
    h.create(&h.rollouts(), rollout_manifest(2, strategy)).await;
    let blue = current_hash(&h.wait_rollout("first deploy Healthy", healthy).await);
    wait_for("active selects the first revision", TIMEOUT, || async {
        (h.selector_hash("web-active").await.as_deref() == Some(blue.as_str())).then_some(())
    })
    .await;
    blue
}

fn healthy(r: &Rollout) -> bool {
    observed_current(r) && phase(r) == Some(RolloutPhase::Healthy)
}

fn stable_rs(r: &Rollout) -> Option<String> {
    r.status.as_ref().and_then(|s| s.stable_rs.clone())
}

fn run_phase(run: &AnalysisRun) -> Option<AnalysisPhase> {
    run.status.as_ref().and_then(|s| s.phase)
}

/// The Rollout's pre-promotion AnalysisRuns once they have all ended. Normally one; the rollout
/// engine may create a second (`<name>.1`) for the same revision when the run ends before its own
/// status write reaches the watch cache (a web check answers at once), so each is judged here and
/// the uniqueness is left to the rollout engine's own tests.
async fn finished_pre_promotion_runs(h: &Harness) -> Vec<AnalysisRun> {
    let selector = "sluice.dev/rollout=web,sluice.dev/analysis-type=prePromotion";
    wait_for("the pre-promotion analysis to end", TIMEOUT, || async {
        let runs = h
            .analysis_runs()
            .list(&ListParams::default().labels(selector))
            .await
            .ok()?
            .items;
        let done = !runs.is_empty()
            && runs
                .iter()
                .all(|r| run_phase(r).is_some_and(|p| p.is_completed()));
        done.then_some(runs)
    })
    .await
}

/// The value and phase of the run's only measurement.
fn only_measurement(run: &AnalysisRun) -> (Option<String>, AnalysisPhase) {
    let results = &run.status.as_ref().expect("status").metric_results;
    assert_eq!(results.len(), 1, "{run:#?}");
    let measurements = &results[0].measurements;
    assert!(!measurements.is_empty(), "{run:#?}");
    let last = &measurements[measurements.len() - 1];
    (last.value.clone(), last.phase)
}

/// The check server saw what the template asked for, with the arguments and the Secret in place.
fn assert_requests_as_templated(server: &CheckServer) {
    let received = server.received();
    assert!(!received.is_empty(), "the check server was asked");
    for r in &received {
        assert_eq!(r.path, "/checks/web-preview", "{r:?}");
        assert_eq!(
            r.authorization.as_deref(),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert_eq!(r.content_type.as_deref(), Some("application/json"));
        assert_eq!(r.body, json!({"service": "web-preview", "window": "5m"}));
    }
}

#[tokio::test]
async fn a_web_check_answering_ok_promotes_the_preview() {
    let server = CheckServer::start(r#"{"ok": true}"#).await;
    let h = Harness::start("web-ok").await;
    let blue = blue_green_with_web_check(&h, &server).await;
    h.set_image("example/web:2.0").await;

    let runs = finished_pre_promotion_runs(&h).await;
    for run in &runs {
        assert_eq!(run_phase(run), Some(AnalysisPhase::Successful), "{run:#?}");
        assert_eq!(
            only_measurement(run),
            (Some("true".to_string()), AnalysisPhase::Successful)
        );
    }
    let done = h
        .wait_rollout("promoted and Healthy", |r| {
            healthy(r) && stable_rs(r).as_deref().is_some_and(|s| s != blue)
        })
        .await;
    let green = current_hash(&done);
    assert_eq!(stable_rs(&done), Some(green.clone()));
    wait_for("active selects the new revision", TIMEOUT, || async {
        (h.selector_hash("web-active").await.as_deref() == Some(green.as_str())).then_some(())
    })
    .await;
    assert_requests_as_templated(&server);
    // The Secret's value is sent, never written into the run.
    let text = serde_json::to_string(&runs).expect("runs as JSON");
    assert!(!text.contains(TOKEN), "{text}");
}

#[tokio::test]
async fn a_web_check_answering_not_ok_aborts_and_active_stays() {
    let server = CheckServer::start(r#"{"ok": false}"#).await;
    let h = Harness::start("web-bad").await;
    let blue = blue_green_with_web_check(&h, &server).await;
    h.set_image("example/web:2.0").await;

    let runs = finished_pre_promotion_runs(&h).await;
    for run in &runs {
        assert_eq!(run_phase(run), Some(AnalysisPhase::Failed), "{run:#?}");
        assert_eq!(
            only_measurement(run),
            (Some("false".to_string()), AnalysisPhase::Failed)
        );
    }
    let r = h
        .wait_rollout("aborted and Degraded", |r| {
            observed_current(r)
                && phase(r) == Some(RolloutPhase::Degraded)
                && r.status.as_ref().is_some_and(|s| s.abort == Some(true))
        })
        .await;
    assert_eq!(stable_rs(&r), Some(blue.clone()));
    assert_eq!(
        h.selector_hash("web-active").await.as_deref(),
        Some(blue.as_str())
    );
    assert_requests_as_templated(&server);
}

/// What Sluice does not implement is refused by the API server, naming the field, rather than
/// accepted and ignored; an empty section (as Go clients serialise) is no setting.
#[tokio::test]
async fn unsupported_web_authentication_is_refused_by_the_api_server() {
    let h = Harness::start("web-auth").await;
    let templates: Api<AnalysisTemplate> = h.analysis_templates();
    for (auth, field) in [
        (
            json!({"sigv4": {"region": "eu-west-1"}}),
            "authentication.sigv4",
        ),
        (
            json!({"basicAuth": {"username": "u", "password": "p"}}),
            "authentication.basicAuth",
        ),
    ] {
        let mut template = web_template("http://127.0.0.1:9");
        template["spec"]["metrics"][0]["provider"]["web"]["authentication"] = auth;
        let typed: AnalysisTemplate = serde_json::from_value(template).expect("template");
        let err = templates
            .create(&PostParams::default(), &typed)
            .await
            .expect_err("refused");
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
    let mut template = web_template("http://127.0.0.1:9");
    template["spec"]["metrics"][0]["provider"]["web"]["method"] = json!("GET");
    let typed: AnalysisTemplate = serde_json::from_value(template).expect("template");
    let err = templates
        .create(&PostParams::default(), &typed)
        .await
        .expect_err("a body with GET is refused");
    assert!(err.to_string().contains("need method POST or PUT"), "{err}");
    let mut template = web_template("http://127.0.0.1:9");
    template["spec"]["metrics"][0]["provider"]["web"]["authentication"] =
        json!({"sigv4": {}, "basicAuth": {}});
    let typed: AnalysisTemplate = serde_json::from_value(template).expect("template");
    templates
        .create(&PostParams::default(), &typed)
        .await
        .expect("empty sections are accepted");
}

/// Argo's documented web metrics (GET through jsonPath, POST with jsonBody, OAuth2) are accepted
/// and read back as written: nothing pruned or defaulted.
#[tokio::test]
async fn argos_documented_web_metrics_are_stored_as_written() {
    let h = Harness::start("web-docs").await;
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/analysis/web-template.yaml"
    );
    let text = std::fs::read_to_string(path).expect("fixture");
    let mut fixture: Value = serde_saphyr::from_str(&text).expect("fixture YAML");
    fixture["metadata"] = json!({"name": "web-checks"});
    let templates: Api<kube::api::DynamicObject> = Api::namespaced_with(
        h.client.clone(),
        &h.ns.name,
        &kube::core::ApiResource::erase::<AnalysisTemplate>(&()),
    );
    let object: kube::api::DynamicObject = serde_json::from_value(fixture.clone()).expect("object");
    let created = templates
        .create(&PostParams::default(), &object)
        .await
        .expect("the API server accepts Argo's examples");
    assert_eq!(created.data["spec"], fixture["spec"]);
}
