//! Control actions and failure handling of the Rollout engine on the local cluster: blue-green
//! promotion, abort / retry / fast rollback through an HTTPRoute, and a controller killed mid-rollout.

mod common;

use common::rollouts::{
    Harness, TIMEOUT, current_hash, observed_current, phase, rollout_manifest, route_strategy, step,
};
use common::wait_for;
use serde_json::json;
use sluice::api::rollout::{Rollout, RolloutPhase};

fn paused_at(index: i32) -> impl Fn(&Rollout) -> bool {
    move |r| observed_current(r) && phase(r) == Some(RolloutPhase::Paused) && step(r) == Some(index)
}

fn healthy(r: &Rollout) -> bool {
    observed_current(r) && phase(r) == Some(RolloutPhase::Healthy)
}

fn spec_replicas(sets: &[(String, i32, i32)], hash: &str) -> Option<i32> {
    sets.iter()
        .find(|(h, _, _)| h == hash)
        .map(|(_, spec, _)| *spec)
}

#[tokio::test]
async fn blue_green_waits_for_promote_then_switches_active_and_scales_the_old_down_later() {
    let h = Harness::start("ro-bg").await;
    h.create_web_services(&["web-active", "web-preview"]).await;
    let strategy = json!({"blueGreen": {
        "activeService": "web-active", "previewService": "web-preview",
        "autoPromotionEnabled": false, "scaleDownDelaySeconds": 5
    }});
    h.create(&h.rollouts(), rollout_manifest(3, strategy)).await;
    let blue = current_hash(&h.wait_rollout("first deploy Healthy", healthy).await);
    wait_for("active selects the first revision", TIMEOUT, || async {
        (h.selector_hash("web-active").await.as_deref() == Some(blue.as_str())).then_some(())
    })
    .await;

    // B1/B2: the new revision runs at full size behind the preview Service; active is untouched
    // and the Rollout waits for promote.
    h.set_image("example/web:2.0").await;
    let paused = h
        .wait_rollout("paused for promotion", |r| {
            observed_current(r) && phase(r) == Some(RolloutPhase::Paused)
        })
        .await;
    let green = current_hash(&paused);
    wait_for(
        "preview selects green with 3 ready pods",
        TIMEOUT,
        || async {
            let preview = h.selector_hash("web-preview").await;
            let ready = h
                .replicas_by_hash()
                .await
                .iter()
                .any(|(hash, _, ready)| *hash == green && *ready == 3);
            (preview.as_deref() == Some(green.as_str()) && ready).then_some(())
        },
    )
    .await;
    assert_eq!(
        h.selector_hash("web-active").await.as_deref(),
        Some(blue.as_str())
    );

    // B3: promote switches active in one write; blue keeps its pods until the delay has passed.
    h.promote().await;
    wait_for("active switched to green", TIMEOUT, || async {
        (h.selector_hash("web-active").await.as_deref() == Some(green.as_str())).then_some(())
    })
    .await;
    assert_eq!(
        spec_replicas(&h.replicas_by_hash().await, &blue),
        Some(3),
        "blue must keep its pods during scaleDownDelaySeconds"
    );
    wait_for("blue scaled down after the delay", TIMEOUT, || async {
        (spec_replicas(&h.replicas_by_hash().await, &blue) == Some(0)).then_some(())
    })
    .await;
    h.wait_rollout("Healthy on green", healthy).await;
    h.ns.delete().await;
}

#[tokio::test]
async fn abort_returns_traffic_at_once_retry_restarts_and_fast_rollback_is_healthy() {
    let h = Harness::start("ro-abort").await;
    h.create_services_and_route().await;
    let mut manifest = rollout_manifest(
        2,
        route_strategy(json!([{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}])),
    );
    manifest["spec"]["strategy"]["canary"]["abortScaleDownDelaySeconds"] = json!(2);
    h.create(&h.rollouts(), manifest).await;
    let stable = current_hash(&h.wait_rollout("first deploy Healthy", healthy).await);

    h.set_image("example/web:2.0").await;
    let paused = h.wait_rollout("paused at 50%", paused_at(1)).await;
    let canary = current_hash(&paused);
    assert_eq!(h.route_weights().await, (50, 50));

    // C7: abort → weight 0 at once, canary Service back on stable, Degraded, canary scaled down
    // after abortScaleDownDelaySeconds.
    h.patch_status(json!({"status": {"abort": true}})).await;
    let aborted = h
        .wait_rollout("aborted and Degraded", |r| {
            observed_current(r) && phase(r) == Some(RolloutPhase::Degraded)
        })
        .await;
    assert_eq!(h.route_weights().await, (100, 0));
    assert_eq!(
        h.selector_hash("web-canary").await.as_deref(),
        Some(stable.as_str())
    );
    let message = aborted
        .status
        .as_ref()
        .and_then(|s| s.message.clone())
        .unwrap_or_default();
    assert!(message.contains("RolloutAborted"), "{message}");
    wait_for(
        "canary scaled down after the abort delay",
        TIMEOUT,
        || async { (spec_replicas(&h.replicas_by_hash().await, &canary) == Some(0)).then_some(()) },
    )
    .await;

    // Retry: the steps start again for the same revision.
    h.patch_status(json!({"status": {"abort": false}})).await;
    h.wait_rollout("paused at 50% again", paused_at(1)).await;
    wait_for("weights back at 50/50", TIMEOUT, || async {
        (h.route_weights().await == (50, 50)).then_some(())
    })
    .await;

    // R7: going back to the stable template is Healthy at once, with no steps.
    h.set_image("example/web:1.0").await;
    let back = h.wait_rollout("fast rollback Healthy", healthy).await;
    assert_eq!(current_hash(&back), stable);
    assert_eq!(h.route_weights().await, (100, 0));
    assert_eq!(
        h.selector_hash("web-canary").await.as_deref(),
        Some(stable.as_str())
    );
    h.ns.delete().await;
}

#[tokio::test]
async fn a_controller_killed_mid_rollout_continues_from_the_same_step_without_duplicates() {
    let mut h = Harness::start("ro-restart").await;
    h.create_services_and_route().await;
    let steps = json!([{"setWeight": 30}, {"pause": {}}, {"setWeight": 60},
                       {"pause": {"duration": "3s"}}, {"setWeight": 90}, {"pause": {}}]);
    h.create(&h.rollouts(), rollout_manifest(2, route_strategy(steps)))
        .await;
    h.wait_rollout("first deploy Healthy", healthy).await;
    h.set_image("example/web:2.0").await;
    h.wait_rollout("paused at step 1", paused_at(1)).await;
    let sets_before = h.replica_sets_named().await;
    assert_eq!(h.route_weights().await, (70, 30));

    // Killed while paused at a step: after the restart, same step, same weights, same ReplicaSets.
    h.restart_controller();
    wait_for("the new controller to serve", TIMEOUT, || async {
        h.controller
            .metric("sluice_leader")
            .await
            .filter(|v| *v == 1.0)
    })
    .await;
    let still = h.wait_rollout("still paused at step 1", paused_at(1)).await;
    assert_eq!(step(&still), Some(1));
    assert_eq!(h.route_weights().await, (70, 30));
    assert_eq!(h.replica_sets_named().await, sets_before);

    // Killed during the timed pause: the restarted controller still ends it and moves on.
    h.promote().await;
    h.wait_rollout("in the timed pause", |r| {
        observed_current(r) && step(r) == Some(3)
    })
    .await;
    h.restart_controller();
    h.wait_rollout("past the timed pause, paused at step 5", paused_at(5))
        .await;
    assert_eq!(h.route_weights().await, (10, 90));
    assert_eq!(h.replica_sets_named().await, sets_before);
    h.ns.delete().await;
}
