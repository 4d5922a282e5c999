//! The Rollout commands of `kubectl sluice`, through the real kubectl, against Rollouts driven by a
//! real `sluice controller`: get (and --watch), list, set image, status (Healthy, timeout,
//! Degraded), promote (--full), abort, retry, pause, resume, restart, undo.

mod common;
mod plugin_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::E2eEnv;
use common::rollouts::{
    Harness, TIMEOUT, current_hash, observed_current, phase, rollout_manifest, route_strategy, step,
};
use common::wait_for;
use plugin_support::{Run, kubectl, kubectl_sluice};
use serde_json::json;
use sluice::api::rollout::{Rollout, RolloutPhase};
use tokio::io::AsyncReadExt;

const EXIT_DEGRADED: i32 = 1;
const EXIT_TIMEOUT: i32 = 2;
const EXIT_ERROR: i32 = 3;

/// `kubectl sluice` in the harness's namespace.
async fn plugin(h: &Harness, args: &[&str]) -> Run {
    kubectl_sluice(&E2eEnv::load(), Some(&h.ns.name), args).await
}

fn paused_at(index: i32) -> impl Fn(&Rollout) -> bool {
    move |r| observed_current(r) && phase(r) == Some(RolloutPhase::Paused) && step(r) == Some(index)
}

fn healthy(r: &Rollout) -> bool {
    observed_current(r) && phase(r) == Some(RolloutPhase::Healthy)
}

fn image(r: &Rollout) -> String {
    r.spec
        .template
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .unwrap()
        .containers[0]
        .image
        .clone()
        .unwrap_or_default()
}

fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l.trim_end() == line)
}

#[tokio::test]
async fn set_image_get_status_and_promote_drive_a_canary() {
    let h = Harness::start("plug-canary").await;
    h.create_services_and_route().await;
    let steps = json!([{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]);
    h.create(&h.rollouts(), rollout_manifest(2, route_strategy(steps)))
        .await;
    let run = plugin(&h, &["status", "web", "--timeout", "60s"])
        .await
        .expect_code(0);
    assert!(run.stdout.ends_with("Healthy\n"), "{}", run.stdout);

    let run = plugin(&h, &["set", "image", "web", "web=example/web:2.0"])
        .await
        .expect_code(0);
    assert_eq!(
        run.stdout,
        "rollout 'web' image updated: web=example/web:2.0\n"
    );
    let paused = h.wait_rollout("paused at step 1", paused_at(1)).await;
    assert_eq!(image(&paused), "example/web:2.0");

    let tree = plugin(&h, &["get", "rollout", "web"])
        .await
        .expect_code(0)
        .stdout;
    for line in [
        "Status:          ॥ Paused",
        "Message:         CanaryPauseStep",
        "  Step:          1/3",
        "  SetWeight:     50",
        "  ActualWeight:  50",
        "                 example/web:2.0 (canary)",
    ] {
        assert!(has_line(&tree, line), "{line:?} missing in\n{tree}");
    }
    assert!(tree.contains("# revision:2"), "{tree}");
    assert!(
        tree.contains(&format!("web-{}", current_hash(&paused))),
        "{tree}"
    );
    assert!(
        !tree.contains('\x1b'),
        "no colours when not on a terminal:\n{tree}"
    );

    // Paused forever: the wait ends at the timeout with exit 2.
    let run = plugin(&h, &["status", "web", "--timeout", "2s"])
        .await
        .expect_code(EXIT_TIMEOUT);
    assert!(run.stdout.contains("Paused - CanaryPauseStep"), "{run:?}");
    assert!(run.stderr.contains("timed out after 2s"), "{run:?}");

    let run = plugin(&h, &["promote", "web"]).await.expect_code(0);
    assert_eq!(run.stdout, "rollout 'web' promoted\n");
    plugin(&h, &["status", "web", "--timeout", "60s"])
        .await
        .expect_code(0);
    assert_eq!(h.route_weights().await, (100, 0));
    let tree = plugin(&h, &["get", "rollout", "web"])
        .await
        .expect_code(0)
        .stdout;
    assert!(has_line(&tree, "  Step:          3/3"), "{tree}");
    assert!(has_line(&tree, "  SetWeight:     100"), "{tree}");

    let list = plugin(&h, &["list", "rollouts"])
        .await
        .expect_code(0)
        .stdout;
    let row = list
        .lines()
        .find(|l| l.starts_with("web "))
        .unwrap_or_default();
    assert!(row.contains("✔ Healthy") && row.contains("3/3"), "{list}");
    let all = kubectl_sluice(&E2eEnv::load(), None, &["list", "rollouts", "-A"])
        .await
        .expect_code(0)
        .stdout;
    assert!(all.starts_with("NAMESPACE"), "{all}");
    assert!(
        all.lines()
            .any(|l| l.starts_with(&format!("{} ", h.ns.name))),
        "{all}"
    );
    h.ns.delete().await;
}

#[tokio::test]
async fn abort_ends_degraded_then_retry_and_full_promotion_recover() {
    let h = Harness::start("plug-abort").await;
    h.create_services_and_route().await;
    let steps = json!([{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]);
    h.create(&h.rollouts(), rollout_manifest(2, route_strategy(steps)))
        .await;
    h.wait_rollout("first deploy Healthy", healthy).await;
    plugin(&h, &["set", "image", "web", "web=example/web:2.0"])
        .await
        .expect_code(0);
    h.wait_rollout("paused at step 1", paused_at(1)).await;

    // --revert needs a revision applied from Git (this one was not): refused before anything is
    // written. The revert itself is covered by tests/revert_e2e.rs (L5).
    plugin(&h, &["abort", "web", "--revert"])
        .await
        .expect_code(EXIT_ERROR)
        .expect_one_line_error("not applied by an Application from Git");
    let still = h.rollouts().get("web").await.expect("rollout");
    assert!(!still.status.as_ref().is_some_and(|s| s.aborted()));

    let run = plugin(&h, &["abort", "web"]).await.expect_code(0);
    assert_eq!(run.stdout, "rollout 'web' aborted\n");
    let run = plugin(&h, &["status", "web", "--timeout", "60s"])
        .await
        .expect_code(EXIT_DEGRADED);
    assert!(run.stdout.contains("Degraded - RolloutAborted"), "{run:?}");
    assert_eq!(h.route_weights().await, (100, 0));

    let run = plugin(&h, &["retry", "web"]).await.expect_code(0);
    assert_eq!(run.stdout, "rollout 'web' retried\n");
    h.wait_rollout("paused at step 1 again", paused_at(1)).await;

    let run = plugin(&h, &["promote", "web", "--full"])
        .await
        .expect_code(0);
    assert_eq!(run.stdout, "rollout 'web' fully promoted\n");
    plugin(&h, &["status", "web", "--timeout", "60s"])
        .await
        .expect_code(0);
    let done = h.rollouts().get("web").await.expect("rollout");
    assert_eq!(
        done.status.as_ref().and_then(|s| s.stable_rs.clone()),
        Some(current_hash(&done))
    );
    h.ns.delete().await;
}

#[tokio::test]
async fn pause_resume_restart_and_undo() {
    let h = Harness::start("plug-undo").await;
    h.create(&h.rollouts(), rollout_manifest(2, json!({"canary": {}})))
        .await;
    h.wait_rollout("first deploy Healthy", healthy).await;

    let run = plugin(&h, &["pause", "web"]).await.expect_code(0);
    assert_eq!(run.stdout, "rollout 'web' paused\n");
    h.wait_rollout("manually paused", |r| {
        r.spec.paused == Some(true) && observed_current(r) && phase(r) == Some(RolloutPhase::Paused)
    })
    .await;
    plugin(&h, &["promote", "web"]).await.expect_code(0);
    h.wait_rollout("promote lifts a manual pause", |r| {
        r.spec.paused == Some(false) && healthy(r)
    })
    .await;
    plugin(&h, &["pause", "web"]).await.expect_code(0);
    let run = plugin(&h, &["resume", "web"]).await.expect_code(0);
    assert_eq!(run.stdout, "rollout 'web' resumed\n");
    h.wait_rollout("resumed and Healthy", |r| {
        r.spec.paused == Some(false) && healthy(r)
    })
    .await;

    let run = plugin(&h, &["restart", "web"]).await.expect_code(0);
    assert!(
        run.stdout.starts_with("rollout 'web' restarts its pods"),
        "{run:?}"
    );
    let restarted = h
        .wait_rollout("pods restarted", |r| {
            let asked = r.spec.restart_at.as_ref().map(|t| t.0);
            let done = r
                .status
                .as_ref()
                .and_then(|s| s.restarted_at.as_ref())
                .map(|t| t.0);
            asked.is_some() && done >= asked
        })
        .await;
    assert!(restarted.spec.restart_at.is_some());

    plugin(&h, &["set", "image", "web", "web=example/web:2.0"])
        .await
        .expect_code(0);
    h.wait_rollout("revision 2 Healthy", |r| {
        healthy(r) && image(r) == "example/web:2.0"
    })
    .await;
    let run = plugin(&h, &["undo", "web"]).await.expect_code(0);
    assert_eq!(run.stdout, "rollout 'web' rolled back to revision 1\n");
    h.wait_rollout("back on 1.0 and Healthy", |r| {
        healthy(r) && image(r) == "example/web:1.0"
    })
    .await;
    plugin(&h, &["undo", "web", "--to-revision", "2"])
        .await
        .expect_code(0);
    h.wait_rollout("on 2.0 again", |r| {
        healthy(r) && image(r) == "example/web:2.0"
    })
    .await;
    plugin(&h, &["undo", "web", "--to-revision", "9"])
        .await
        .expect_code(EXIT_ERROR)
        .expect_one_line_error("revision 9 not found");
    plugin(&h, &["set", "image", "web", "nope=x:1"])
        .await
        .expect_code(EXIT_ERROR)
        .expect_one_line_error("has no container \"nope\" (containers: web)");
    h.ns.delete().await;
}

#[tokio::test]
async fn get_watch_redraws_when_the_rollout_changes() {
    let h = Harness::start("plug-watch").await;
    h.create(&h.rollouts(), rollout_manifest(1, json!({"canary": {}})))
        .await;
    h.wait_rollout("first deploy Healthy", healthy).await;
    let mut cmd = kubectl(&E2eEnv::load());
    cmd.args([
        "sluice", "get", "rollout", "web", "--watch", "-n", &h.ns.name,
    ])
    .stdout(std::process::Stdio::piped());
    let mut child = tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .spawn()
        .expect("start get --watch");
    let mut stdout = child.stdout.take().expect("stdout");
    let seen = Arc::new(Mutex::new(String::new()));
    let reader = {
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                seen.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let output = |needle: &'static str| {
        let seen = seen.clone();
        async move { seen.lock().unwrap().contains(needle).then_some(()) }
    };
    wait_for("the first tree", TIMEOUT, || output("# revision:1")).await;
    assert!(!seen.lock().unwrap().contains("# revision:2"));
    h.set_image("example/web:2.0").await;
    wait_for("a redraw with revision 2", TIMEOUT, || {
        output("# revision:2")
    })
    .await;
    wait_for("revision 2 as stable", TIMEOUT, || {
        output("example/web:2.0 (stable)")
    })
    .await;
    child.kill().await.expect("stop get --watch");
    let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
    h.ns.delete().await;
}
