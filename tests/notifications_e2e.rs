//! Notifications on the local cluster: the demo canary app with a Rollout subscribed to the built-in
//! triggers through a webhook and a Slack incoming webhook, both served by this test on 127.0.0.1.
//! Two bad releases, with controller restarts between the messages of the first and before the
//! second: each release gives exactly one `on-analysis-run-failed` message (naming the failed
//! metric) and one `on-git-reverted` message (with the revert commit's sha) per service, and the
//! Slack payloads are Slack's incoming-webhook JSON.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sluice::api::rollout::{RevertPhase, Rollout};

use common::canary_app::{
    APP, app_at_v1, app_files, commit, git, git_dir, healthy, revert_phase, wait_rollout,
};
use common::gitops::{GitRepo, GitopsHarness, TIMEOUT};
use common::wait_for;

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    token: Option<String>,
    content_type: Option<String>,
    body: Value,
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// Serves on a free 127.0.0.1 port; returns the receiver and its base URL.
    async fn start() -> (Self, String) {
        let receiver = Self::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let app = axum::Router::new()
            .fallback(record)
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    fn all(&self) -> Vec<Received> {
        self.got.lock().expect("receiver lock").clone()
    }

    /// The webhook messages of `trigger` about a Rollout or AnalysisRun.
    fn webhook(&self, trigger: &str) -> Vec<Received> {
        self.webhook_about(trigger, &["Rollout", "AnalysisRun"])
    }

    /// The webhook messages of `trigger` about objects of `kinds`.
    fn webhook_about(&self, trigger: &str, kinds: &[&str]) -> Vec<Received> {
        self.all()
            .into_iter()
            .filter(|r| r.path == "/hook" && r.body["trigger"] == trigger)
            .filter(|r| kinds.iter().any(|k| r.body["kind"] == *k))
            .collect()
    }

    /// The Slack messages whose text starts with `prefix`.
    fn slack(&self, prefix: &str) -> Vec<Received> {
        self.all()
            .into_iter()
            .filter(|r| r.path.starts_with("/slack/"))
            .filter(|r| {
                r.body["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with(prefix))
            })
            .collect()
    }
}

async fn record(State(receiver): State<Receiver>, uri: Uri, headers: HeaderMap, body: Bytes) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    receiver.got.lock().expect("receiver lock").push(Received {
        path: uri.path().to_string(),
        token: header("x-token"),
        content_type: header("content-type"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
}

const SLACK_TEXT_FAILED: &str = "AnalysisRun ";
const SLACK_TEXT_REVERTED: &str = "Sluice reverted commit ";

/// The ConfigMap (with two bad keys, which must not stop the good ones) and the Secret.
async fn configure(h: &GitopsHarness, receiver_url: &str) {
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), &h.ns.name);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "sluice-notifications"},
        "stringData": {
            "receiver-url": format!("{receiver_url}/hook"),
            "receiver-token": "t0ken",
            "slack-webhook-url": format!("{receiver_url}/slack/T000/B000/XXXX"),
        }
    }))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create the Secret");
    let config: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "sluice-notifications"},
        "data": {
            "service.webhook.receiver": "url: $receiver-url\nheaders:\n- name: X-Token\n  value: $receiver-token\n",
            "service.slack": "webhookUrl: $slack-webhook-url\n",
            "service.pagerduty": "token: x\n",
            "template.broken": "message: '{{range .x}}'\n",
        }
    }))
    .expect("configmap");
    h.config_maps()
        .create(&PostParams::default(), &config)
        .await
        .expect("create the ConfigMap");
}

/// Subscribes the live Rollout (annotations Git does not declare, so the sync leaves them).
async fn subscribe(h: &GitopsHarness) {
    let prefix = "notifications.sluice.dev/subscribe";
    let patch = json!({"metadata": {"annotations": {
        format!("{prefix}.on-analysis-run-failed.receiver"): "",
        format!("{prefix}.on-git-reverted.receiver"): "ops",
        format!("{prefix}.on-rollout-completed.receiver"): "",
        format!("{prefix}.on-analysis-run-failed.slack"): "",
        format!("{prefix}.on-git-reverted.slack"): "#deploys",
    }}});
    let rollouts: Api<Rollout> = Api::namespaced(h.client.clone(), &h.ns.name);
    rollouts
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("subscribe the Rollout");
    // The Application is told of the same reverts (its own record of them).
    let app = json!({"metadata": {"annotations": {
        format!("{prefix}.on-git-reverted.receiver"): "app-team",
    }}});
    h.apps()
        .patch(APP, &PatchParams::default(), &Patch::Merge(&app))
        .await
        .expect("subscribe the Application");
}

fn restart(h: &mut GitopsHarness, cache: &tempfile::TempDir) {
    h.controller.signal("KILL");
    let (controller, _) = common::gitops::start_controller(&h.env, &h.ns.name, "2s", cache.path());
    h.controller = controller;
}

/// Waits until `count` messages of each kind have arrived; on a timeout, says which are missing.
async fn wait_messages(receiver: &Receiver, count: usize) {
    let counts = || {
        [
            (
                "webhook failed",
                receiver.webhook("on-analysis-run-failed").len(),
            ),
            (
                "webhook reverted",
                receiver.webhook("on-git-reverted").len(),
            ),
            (
                "webhook app reverted",
                receiver
                    .webhook_about("on-git-reverted", &["Application"])
                    .len(),
            ),
            ("slack failed", receiver.slack(SLACK_TEXT_FAILED).len()),
            ("slack reverted", receiver.slack(SLACK_TEXT_REVERTED).len()),
        ]
    };
    let start = std::time::Instant::now();
    while counts().iter().any(|(_, n)| *n < count) {
        assert!(
            start.elapsed() < TIMEOUT * 2,
            "timed out waiting for {count} failed-analysis and revert message(s) per service: {:?}",
            counts()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A bad release: committed, its analysis fails, Sluice reverts it; returns (bad sha, revert sha)
/// once the Rollout is Healthy again on the revert.
async fn bad_release(h: &GitopsHarness, repo: &GitRepo, image: &str) -> (String, String) {
    let bad = commit(
        repo,
        &format!("web: release {image}"),
        &app_files(&h.ns.name, image),
    );
    bad_release_tail(h, repo, &bad).await
}

/// The Slack incoming-webhook JSON: `text`, optional `attachments` (objects whose `fields` are
/// `{title, value, short}`) and `blocks`, nothing Slack does not know.
fn assert_slack_format(message: &Received) {
    let body = message.body.as_object().expect("a JSON object");
    for key in body.keys() {
        assert!(
            [
                "text",
                "attachments",
                "blocks",
                "channel",
                "username",
                "icon_emoji",
                "icon_url"
            ]
            .contains(&key.as_str()),
            "unknown Slack key {key}: {body:?}"
        );
    }
    assert!(body["text"].as_str().is_some_and(|t| !t.is_empty()));
    for attachment in body["attachments"].as_array().expect("attachments") {
        assert!(attachment["title"].is_string(), "{attachment}");
        assert!(attachment["color"].is_string(), "{attachment}");
        for field in attachment["fields"].as_array().expect("fields") {
            assert!(
                field["title"].is_string() && field["value"].is_string(),
                "{field}"
            );
            assert!(field["short"].is_boolean(), "{field}");
        }
    }
    assert_eq!(
        message.content_type.as_deref(),
        Some("application/json; charset=utf-8")
    );
}

#[tokio::test]
async fn each_bad_release_is_told_once_per_service_across_restarts() {
    let mut h = GitopsHarness::start("notify", "2s").await;
    let cache = tempfile::tempdir().expect("cache");
    let (receiver, url) = Receiver::start().await;
    configure(&h, &url).await;
    let (repo, blue) = app_at_v1(&h, "notify").await;
    subscribe(&h).await;

    // The bad keys are named in a Warning Event on the ConfigMap; the good ones work (below).
    let events: Api<Event> = Api::namespaced(h.client.clone(), &h.ns.name);
    let event = wait_for("the ConfigMap's Warning Event", TIMEOUT, || async {
        events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("InvalidNotificationsConfig")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref())
                        == Some("sluice-notifications")
            })
    })
    .await;
    let note = event.note.unwrap_or_default();
    assert!(
        note.contains("service.pagerduty: unknown service type"),
        "{note}"
    );
    assert!(
        note.contains("template.broken: message: unsupported placeholder"),
        "{note}"
    );
    // v1 completed: told once (the reverts below return to the same revision: not again).
    wait_for("on-rollout-completed for v1", TIMEOUT, || async {
        (receiver.webhook("on-rollout-completed").len() == 1).then_some(())
    })
    .await;

    // Release 1, the controller killed and restarted right after the first message.
    let bad1 = commit(
        &repo,
        "web: release bad",
        &app_files(&h.ns.name, "example/web:bad"),
    );
    wait_for("the first failed-analysis message", TIMEOUT * 2, || async {
        (!receiver.webhook("on-analysis-run-failed").is_empty()).then_some(())
    })
    .await;
    restart(&mut h, &cache);
    let (reverted1, revert1) = bad_release_tail(&h, &repo, &bad1).await;
    assert_eq!(reverted1, bad1);
    wait_messages(&receiver, 1).await;
    check_release(&h, &receiver, 0, &bad1, &revert1);

    // Restart again: the new process reads the records and sends nothing for release 1; release 2
    // is told once more.
    restart(&mut h, &cache);
    let (bad2, revert2) = bad_release(&h, &repo, "example/web-two:bad").await;
    wait_messages(&receiver, 2).await;
    check_release(&h, &receiver, 1, &bad2, &revert2);
    assert_ne!(revert1, revert2);

    // Nothing more arrives: each message once (a bounded look for duplicates, not a wait for
    // something to happen).
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(receiver.webhook("on-analysis-run-failed").len(), 2);
    assert_eq!(receiver.webhook("on-git-reverted").len(), 2);
    assert_eq!(
        receiver
            .webhook_about("on-git-reverted", &["Application"])
            .len(),
        2
    );
    assert_eq!(receiver.slack(SLACK_TEXT_FAILED).len(), 2);
    assert_eq!(receiver.slack(SLACK_TEXT_REVERTED).len(), 2);
    assert_eq!(receiver.webhook("on-rollout-completed").len(), 1);
    let blue_message = &receiver.webhook("on-rollout-completed")[0];
    assert_eq!(blue_message.body["revision"], blue.as_str());

    // The restarted controller counted only release 2's sends; the bad keys as errors.
    for (trigger, service, count) in [
        ("on-analysis-run-failed", "receiver", 1.0),
        // The Rollout's and the Application's.
        ("on-git-reverted", "receiver", 2.0),
        ("on-analysis-run-failed", "slack", 1.0),
        ("on-git-reverted", "slack", 1.0),
    ] {
        let sent = h
            .controller
            .metric_with(
                "sluice_notifications_total",
                &[
                    ("trigger", trigger),
                    ("service", service),
                    ("result", "sent"),
                ],
            )
            .await;
        assert_eq!(sent, Some(count), "{trigger}/{service}");
    }
    let errors = h
        .controller
        .metric_with(
            "sluice_notifications_total",
            &[("service", "pagerduty"), ("result", "error")],
        )
        .await;
    assert_eq!(errors, Some(1.0));

    // The record on the Rollout names both revert commits.
    let rollouts: Api<Rollout> = Api::namespaced(h.client.clone(), &h.ns.name);
    let live = rollouts.get("web").await.expect("the Rollout");
    let record = live
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("notified.notifications.sluice.dev"))
        .cloned()
        .expect("the record annotation");
    let record: serde_json::Map<String, Value> =
        serde_json::from_str(&record).expect("record JSON");
    for revert in [&revert1, &revert2] {
        assert!(
            record
                .keys()
                .any(|k| k.starts_with(&format!("{revert}:on-git-reverted:"))),
            "{revert} in {record:?}"
        );
    }
}

/// The rest of the bad release of `bad`, already pushed: waits until its revert has synced and the
/// Rollout is Healthy; returns (reverted sha, revert commit).
async fn bad_release_tail(h: &GitopsHarness, repo: &GitRepo, bad: &str) -> (String, String) {
    let done = wait_rollout(h, "the bad release reverted and Healthy again", |r| {
        let revert = r.status.as_ref().and_then(|s| s.revert.as_ref());
        healthy(r)
            && revert_phase(r) == Some(RevertPhase::Synced)
            && revert.is_some_and(|v| v.sha == bad)
    })
    .await;
    let revert = done
        .status
        .and_then(|s| s.revert)
        .expect("the revert record");
    let revert_commit = revert.revert_commit.expect("the revert commit");
    assert_eq!(
        git(&git_dir(h, repo), &["rev-parse", "main"]),
        revert_commit
    );
    (revert.sha, revert_commit)
}

/// The `index`-th messages of each kind are about the release of `bad`, reverted by `revert`.
fn check_release(h: &GitopsHarness, receiver: &Receiver, index: usize, bad: &str, revert: &str) {
    let failed = &receiver.webhook("on-analysis-run-failed")[index];
    assert_eq!(failed.body["kind"], "AnalysisRun", "{:?}", failed.body);
    assert_eq!(failed.body["namespace"], h.ns.name.as_str());
    assert_eq!(
        failed.body["failedMetrics"], "success-rate",
        "{:?}",
        failed.body
    );
    assert_eq!(failed.body["rollout"], "web");
    assert!(
        failed.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("success-rate"))
    );
    assert_eq!(
        failed.token.as_deref(),
        Some("t0ken"),
        "the header from the Secret"
    );
    assert_eq!(failed.content_type.as_deref(), Some("application/json"));

    let reverted = &receiver.webhook("on-git-reverted")[index];
    assert_eq!(reverted.body["kind"], "Rollout");
    assert_eq!(reverted.body["name"], "web");
    assert_eq!(reverted.body["revertCommit"], revert, "{:?}", reverted.body);
    assert_eq!(reverted.body["revertedCommit"], bad, "{:?}", reverted.body);
    assert!(
        reverted.body["message"]
            .as_str()
            .is_some_and(|m| m.contains(revert))
    );

    let app = &receiver.webhook_about("on-git-reverted", &["Application"])[index];
    assert_eq!(app.body["name"], APP);
    assert_eq!(app.body["revertCommit"], revert, "{:?}", app.body);
    assert_eq!(app.body["revertedCommit"], bad, "{:?}", app.body);

    let slack_failed = &receiver.slack(SLACK_TEXT_FAILED)[index];
    assert_slack_format(slack_failed);
    assert!(
        slack_failed.body["text"]
            .as_str()
            .is_some_and(|t| t.contains("success-rate"))
    );
    let slack_reverted = &receiver.slack(SLACK_TEXT_REVERTED)[index];
    assert_slack_format(slack_reverted);
    assert!(
        slack_reverted.body["text"]
            .as_str()
            .is_some_and(|t| t.contains(revert) && t.contains(bad))
    );
    assert_eq!(slack_reverted.path, "/slack/T000/B000/XXXX");
}
