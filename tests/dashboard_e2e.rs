//! `kubectl sluice dashboard` in a real headless Chromium against the local cluster: the demo app
//! listed, a canary's step and weights moving on the page without a reload, one chart point per
//! analysis measurement, the promote and abort-and-revert buttons doing what the plugin does, and
//! the page refusing requests that do not come from itself. Screenshots go to
//! `e2e/.run/artifacts/dashboard/`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sluice::api::analysis::{AnalysisPhase, AnalysisRun};
use sluice::api::rollout::Rollout;

use common::browser::{Browser, artifact_dir};
use common::canary_app::{
    APP, app_at_v1_with, app_files_with, commit, git, git_dir, reverts_of, wait_rollout,
};
use common::gitops::GitopsHarness;
use common::rollouts::success_rate_template;
use common::wait_for;

/// `kubectl sluice dashboard --port 0 -n NS`, run through a real kubectl.
struct DashboardProcess {
    child: Child,
    url: String,
}

impl DashboardProcess {
    fn start(h: &GitopsHarness) -> Self {
        let plugin_dir = Path::new(env!("CARGO_BIN_EXE_kubectl-sluice"))
            .parent()
            .expect("plugin dir")
            .to_path_buf();
        let mut child = Command::new("kubectl")
            .args(["sluice", "dashboard", "--port", "0", "-n", &h.ns.name])
            .env("KUBECONFIG", h.env.get("KUBECONFIG"))
            .env(
                "PATH",
                format!("{}:{}", plugin_dir.display(), h.env.get("PATH")),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start kubectl sluice dashboard");
        let stdout = child.stdout.take().expect("stdout");
        let mut first = String::new();
        BufReader::new(stdout)
            .read_line(&mut first)
            .expect("read the dashboard's first line");
        let url = first
            .split_whitespace()
            .find(|w| w.starts_with("http://127.0.0.1:"))
            .unwrap_or_else(|| panic!("no URL in {first:?}"))
            .trim_end_matches('/')
            .to_string();
        DashboardProcess { child, url }
    }
}

impl Drop for DashboardProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rollout_json(ns: &str, name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "web", "image": image}]}},
            "strategy": {"canary": {"steps": [
                {"setWeight": 25}, {"pause": {}}, {"setWeight": 75}, {"pause": {}}
            ]}}
        }
    })
}

async fn wait_step(api: &Api<Rollout>, name: &str, index: i32) -> Rollout {
    wait_for(
        &format!("Rollout {name} at step {index}"),
        Duration::from_secs(120),
        || async {
            let r = api.get(name).await.ok()?;
            let status = r.status.as_ref()?;
            (status.current_step_index == Some(index) && !status.pause_conditions.is_empty())
                .then_some(r)
        },
    )
    .await
}

/// Text of the element with `data-testid` `id`, through the page.
fn by_testid(id: &str) -> String {
    format!("[data-testid=\"{id}\"]")
}

#[tokio::test]
async fn dashboard_follows_a_canary_live_and_its_buttons_drive_it() {
    let h = GitopsHarness::start("dashboard", "2s").await;
    let ns = h.ns.name.clone();
    let artifacts = artifact_dir("dashboard");
    // The demo app (Application `demo` → Rollout `web` gated by the success-rate analysis), three
    // measurements per analysis so the chart has a line.
    let template = success_rate_template(3, |_| ());
    let (repo, _blue) = app_at_v1_with(&h, "dashboard", &template, json!({})).await;
    let dashboard = DashboardProcess::start(&h);
    let browser = Browser::start().await;

    // The Applications page lists the demo app, Synced and Healthy.
    browser.goto(&format!("{}/", dashboard.url)).await;
    let row = format!("[data-app=\"{ns}/{APP}\"]");
    browser
        .wait_eval(
            "the demo app listed Synced and Healthy",
            &format!(
                "const r = document.querySelector({}); return r ? r.textContent : '';",
                json!(row)
            ),
            |t| {
                let t = t.as_str()?;
                (t.contains(APP) && t.contains("Synced") && t.contains("Healthy")).then_some(())
            },
        )
        .await;
    browser.screenshot(&artifacts, "1-applications.png").await;

    // A canary paused at its first step, opened before it starts; the page follows it live.
    let rollouts: Api<Rollout> = Api::namespaced(h.client.clone(), &ns);
    let manual: Rollout =
        serde_json::from_value(rollout_json(&ns, "manual", "example/web:1.0")).expect("rollout");
    rollouts
        .create(&PostParams::default(), &manual)
        .await
        .expect("create Rollout manual");
    wait_for(
        "Rollout manual Healthy",
        Duration::from_secs(120),
        || async {
            let r = rollouts.get("manual").await.ok()?;
            (r.status.as_ref()?.stable_rs.is_some()
                && r.status.as_ref()?.current_step_index == Some(4))
            .then_some(())
        },
    )
    .await;
    browser
        .goto(&format!("{}/#/rollouts/{ns}/manual", dashboard.url))
        .await;
    browser
        .wait_eval(
            "the Rollout page",
            "return document.querySelector('[data-testid=step]')?.textContent ?? '';",
            |t| (t.as_str()? == "4/4").then_some(()),
        )
        .await;
    // Marks this document: a reload would lose it.
    browser
        .eval("window.loadedOnce = 'yes'; return true;")
        .await;
    rollouts
        .patch(
            "manual",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "web", "image": "example/web:2.0"}]}}}})),
        )
        .await
        .expect("new image");
    wait_step(&rollouts, "manual", 1).await;
    let shown = |step: &'static str, set: &'static str| {
        move |v: &Value| {
            let v = v.as_array()?;
            (v[0] == step && v[1] == set && v[2] == "yes").then_some(())
        }
    };
    let read_state = format!(
        "return [document.querySelector({})?.textContent, document.querySelector({})?.textContent, window.loadedOnce];",
        json!(by_testid("step")),
        json!(by_testid("set-weight"))
    );
    browser
        .wait_eval(
            "step 1/4 at weight 25 without a reload",
            &read_state,
            shown("1/4", "25"),
        )
        .await;
    let current = browser.text(&by_testid("step-current")).await;
    assert_eq!(current, "pause: until promoted");
    let actual = browser.text(&by_testid("actual-weight")).await;
    assert!(!actual.is_empty(), "ActualWeight shown");
    browser.screenshot(&artifacts, "2-canary-paused.png").await;

    // Promote, confirmed in the dialog: the next pause, on the page, still without a reload.
    browser.click("button[data-action=promote]").await;
    browser.click("#confirm-ok").await;
    wait_step(&rollouts, "manual", 3).await;
    browser
        .wait_eval(
            "step 3/4 at weight 75 without a reload",
            &read_state,
            shown("3/4", "75"),
        )
        .await;
    let said = browser.text(&by_testid("action-result")).await;
    assert_eq!(said, "rollout 'manual' promoted");

    // A good release of the demo app: one chart point per measurement of its analysis.
    let dir = git_dir(&h, &repo);
    let v2 = commit(
        &repo,
        "web v2",
        &app_files_with(&ns, "example/web:2.0", json!({}), &template),
    );
    common::canary_app::synced_at(&h, &v2).await;
    wait_rollout(&h, "v2 Healthy and stable", |r| {
        let status = r.status.as_ref();
        common::canary_app::healthy(r)
            && r.spec
                .template
                .as_ref()
                .and_then(|t| t.spec.as_ref())
                .is_some_and(|s| s.containers[0].image.as_deref() == Some("example/web:2.0"))
            && status.and_then(|s| s.stable_rs.clone())
                == status.and_then(|s| s.current_pod_hash.clone())
    })
    .await;
    let runs: Api<AnalysisRun> = Api::namespaced(h.client.clone(), &ns);
    let run = wait_for(
        "the v2 analysis Successful",
        Duration::from_secs(120),
        || async {
            let list = runs
                .list(&ListParams::default().labels("sluice.dev/rollout=web"))
                .await
                .ok()?;
            list.items.into_iter().find(|r| {
                r.status.as_ref().and_then(|s| s.phase) == Some(AnalysisPhase::Successful)
            })
        },
    )
    .await;
    let run_name = run.metadata.name.clone().expect("run name");
    let measured: Vec<usize> = run
        .status
        .as_ref()
        .expect("status")
        .metric_results
        .iter()
        .map(|m| m.measurements.len())
        .collect();
    assert!(measured.iter().all(|n| *n >= 3), "{measured:?}");
    browser
        .goto(&format!("{}/#/rollouts/{ns}/web", dashboard.url))
        .await;
    let count_points = format!(
        "const run = document.querySelector('[data-testid=analysis-run][data-name={}]'); \
         return run ? [...run.querySelectorAll('[data-testid=chart]')].map(c => c.querySelectorAll('circle.point').length) : null;",
        json!(run_name)
    );
    let points: Vec<usize> = browser
        .wait_eval("the analysis chart", &count_points, |v| {
            let counts: Vec<usize> = v
                .as_array()?
                .iter()
                .filter_map(|n| n.as_u64().map(|n| n as usize))
                .collect();
            (counts.len() == measured.len()).then_some(counts)
        })
        .await;
    assert_eq!(points, measured, "one point per measurement");
    let thresholds = browser
        .eval("return document.querySelectorAll('[data-testid=chart] line[data-threshold=success]').length;")
        .await;
    assert!(
        thresholds.as_u64().unwrap_or(0) >= 1,
        "the success threshold is drawn"
    );

    // A third release, aborted and reverted from the page while its analysis waits.
    let v3 = commit(
        &repo,
        "web v3",
        &app_files_with(&ns, "example/web:3.0", json!({}), &template),
    );
    wait_rollout(&h, "v3 at its analysis step", |r| {
        r.status.as_ref().and_then(|s| s.current_step_index) == Some(1)
    })
    .await;
    browser.click("button[data-action=abort-revert]").await;
    browser.click("#confirm-ok").await;
    browser
        .wait_eval(
            "the Rollout page showing the abort",
            &format!(
                "return [document.querySelector({})?.textContent, document.querySelector({})?.textContent];",
                json!(by_testid("rollout-status")),
                json!(by_testid("revert"))
            ),
            |v| {
                let v = v.as_array()?;
                (v[0] == "Degraded" && v[1].as_str()?.contains(&v3)).then_some(())
            },
        )
        .await;
    browser.screenshot(&artifacts, "3-aborted.png").await;
    wait_for(
        "the revert of v3 in Git",
        Duration::from_secs(120),
        || async { (reverts_of(&dir, &v3) == 1).then_some(()) },
    )
    .await;
    browser
        .wait_eval(
            "the Rollout page showing the revert",
            &format!(
                "return document.querySelector({})?.textContent ?? '';",
                json!(by_testid("revert"))
            ),
            |t| {
                let t = t.as_str()?;
                (t.contains(&v3) && (t.contains("Pushed") || t.contains("Synced"))).then_some(())
            },
        )
        .await;
    browser
        .screenshot(&artifacts, "3-aborted-and-reverted.png")
        .await;
    // The Application page shows the revert commit's message, read from status (no link out).
    browser
        .goto(&format!("{}/#/apps/{ns}/{APP}", dashboard.url))
        .await;
    let message = browser
        .wait_eval(
            "the revert commit message",
            &format!(
                "return document.querySelector({})?.textContent ?? '';",
                json!(by_testid("revert-message"))
            ),
            |t| {
                let t = t.as_str()?;
                t.contains(&format!("Sluice-Reverts: {v3}"))
                    .then(|| t.to_string())
            },
        )
        .await;
    let in_git = git(&dir, &["log", "-1", "--format=%B", "main"]);
    assert_eq!(message.trim(), in_git.trim());
    browser
        .screenshot(&artifacts, "4-application-revert.png")
        .await;

    // The timeline lists the Rollouts' Events.
    browser.goto(&format!("{}/#/events", dashboard.url)).await;
    browser
        .wait_eval(
            "the timeline",
            "return document.querySelector('[data-testid=timeline]')?.textContent ?? '';",
            |t| t.as_str()?.contains("Rollout").then_some(()),
        )
        .await;
}

/// Only requests to the listener's own name, and actions carrying the page's token, are served.
#[tokio::test]
async fn dashboard_refuses_other_hosts_and_actions_without_its_token() {
    let h = GitopsHarness::start("dashboard-guard", "60s").await;
    let dashboard = DashboardProcess::start(&h);
    sluice::tls::install_crypto_provider();
    let http = reqwest::Client::new();
    let page = http
        .get(format!("{}/", dashboard.url))
        .send()
        .await
        .expect("GET /");
    assert_eq!(page.status(), 200);
    let csp = page
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let body = page.text().await.expect("page");
    let token = body
        .split("name=\"sluice-token\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("token in the page")
        .to_string();

    let rebound = http
        .get(format!("{}/api/overview", dashboard.url))
        .header("Host", "attacker.example:80")
        .send()
        .await
        .expect("GET");
    assert_eq!(rebound.status(), 421, "a DNS-rebinding name is refused");

    let action = format!("{}/api/rollouts/{}/web/abort", dashboard.url, h.ns.name);
    let no_token = http.post(&action).send().await.expect("POST");
    assert_eq!(no_token.status(), 403);
    let other_origin = http
        .post(&action)
        .header("X-Sluice-Dashboard-Token", &token)
        .header("Origin", "http://attacker.example")
        .send()
        .await
        .expect("POST");
    assert_eq!(other_origin.status(), 403);
    // With the token, the action runs as the plugin's command: here, no such Rollout.
    let missing = http
        .post(&action)
        .header("X-Sluice-Dashboard-Token", &token)
        .send()
        .await
        .expect("POST");
    assert_eq!(missing.status(), 404);
    let said: Value = missing.json().await.expect("json");
    assert!(
        said["error"]
            .as_str()
            .unwrap_or_default()
            .contains("not found"),
        "{said}"
    );
    let elsewhere = http
        .post(format!(
            "{}/api/rollouts/kube-system/web/abort",
            dashboard.url
        ))
        .header("X-Sluice-Dashboard-Token", &token)
        .send()
        .await
        .expect("POST");
    assert_eq!(elsewhere.status(), 404, "only the dashboard's namespace");
}
