//! `scaleDownDelayRevisionLimit` end to end: a real `sluice controller` keeps only the newest old
//! revisions running through `scaleDownDelaySeconds`, and scales older ones down at once.

mod common;

use common::rollouts::{Harness, TIMEOUT, current_hash, observed_current, phase, rollout_manifest};
use common::wait_for;
use serde_json::json;
use sluice::api::rollout::RolloutPhase;

/// Sets the image and waits until the Rollout has switched to it and is Healthy; returns its hash.
async fn promoted(h: &Harness, image: &str) -> String {
    h.set_image(image).await;
    let rollout = h
        .wait_rollout(&format!("{image} promoted"), |r| {
            observed_current(r)
                && phase(r) == Some(RolloutPhase::Healthy)
                && r.status.as_ref().and_then(|s| s.stable_rs.as_deref())
                    == r.status
                        .as_ref()
                        .and_then(|s| s.current_pod_hash.as_deref())
                && r.status
                    .as_ref()
                    .and_then(|s| s.blue_green.as_ref())
                    .and_then(|b| b.active_selector.as_deref())
                    == r.status
                        .as_ref()
                        .and_then(|s| s.current_pod_hash.as_deref())
        })
        .await;
    current_hash(&rollout)
}

#[tokio::test]
async fn only_the_newest_old_revision_waits_out_the_scale_down_delay() {
    let h = Harness::start("ro-sd-limit").await;
    h.create_web_services(&["web-active"]).await;
    let strategy = json!({"blueGreen": {
        "activeService": "web-active",
        "scaleDownDelaySeconds": 600,
        "scaleDownDelayRevisionLimit": 1
    }});
    h.create(&h.rollouts(), rollout_manifest(1, strategy)).await;
    let first = h
        .wait_rollout("first deploy Healthy", |r| {
            observed_current(r) && phase(r) == Some(RolloutPhase::Healthy)
        })
        .await;
    let first = current_hash(&first);
    let second = promoted(&h, "example/web:2.0").await;
    assert_eq!(
        h.replicas_by_hash().await,
        {
            let mut want = vec![(first.clone(), 1, 1), (second.clone(), 1, 1)];
            want.sort();
            want
        },
        "the previous revision waits out the delay"
    );
    let third = promoted(&h, "example/web:3.0").await;
    wait_for(
        "the oldest revision scaled down at once, the previous one still waiting",
        TIMEOUT,
        || async {
            let mut want = vec![
                (first.clone(), 0, 0),
                (second.clone(), 1, 1),
                (third.clone(), 1, 1),
            ];
            want.sort();
            (h.replicas_by_hash().await == want).then_some(())
        },
    )
    .await;
    h.ns.delete().await;
}
