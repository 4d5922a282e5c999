//! NGINX `stableIngresses` and `canaryIngressAnnotations` end to end: a real `sluice controller`
//! (scoped to the test's namespace) derives one canary Ingress per stable Ingress, each carrying
//! the step's weight and the Rollout's `canaryIngressAnnotations`, sends them all back to weight 0
//! on abort, and removes them all once a revision is fully promoted; the stable Ingresses are never
//! written.

mod common;

use std::collections::BTreeMap;

use common::rollouts::{Harness, TIMEOUT, observed_current, phase, rollout_manifest, step};
use common::wait_for;
use k8s_openapi::api::networking::v1::Ingress;
use kube::Api;
use serde_json::json;
use sluice::api::rollout::{Rollout, RolloutPhase};

/// The stable Ingresses the Rollout names, one per (emulated) NGINX controller.
const STABLE: [&str; 2] = ["web", "web-internal"];
const CUSTOM_KEY: &str = "my-custom-annotation.mygroup.com/key";

fn ingresses(h: &Harness) -> Api<Ingress> {
    Api::namespaced(h.client.clone(), &h.ns.name)
}

/// What matters of a canary Ingress: its `canary`, `canary-weight` and custom annotation, and the
/// Service its first path sends to.
#[derive(Debug, PartialEq)]
struct CanaryIngress {
    canary: String,
    weight: String,
    custom: String,
    service: String,
}

async fn canary_ingress(h: &Harness, stable: &str) -> Option<CanaryIngress> {
    let ingress = ingresses(h)
        .get_opt(&format!("web-{stable}-canary"))
        .await
        .ok()??;
    let annotations: BTreeMap<String, String> = ingress.metadata.annotations.unwrap_or_default();
    let annotation = |key: &str| annotations.get(key).cloned().unwrap_or_default();
    let service = ingress
        .spec
        .and_then(|s| s.rules)
        .and_then(|rules| rules.into_iter().next())
        .and_then(|rule| rule.http)
        .and_then(|http| http.paths.into_iter().next())
        .and_then(|path| path.backend.service)
        .map(|svc| svc.name)
        .unwrap_or_default();
    Some(CanaryIngress {
        canary: annotation("nginx.ingress.kubernetes.io/canary"),
        weight: annotation("nginx.ingress.kubernetes.io/canary-weight"),
        custom: annotation(CUSTOM_KEY),
        service,
    })
}

/// Waits until every stable Ingress has its canary Ingress at `weight`.
async fn wait_canaries_at(h: &Harness, weight: &str) {
    let expected = CanaryIngress {
        canary: "true".into(),
        weight: weight.into(),
        custom: "value".into(),
        service: "web-canary".into(),
    };
    wait_for(
        &format!("every canary Ingress at {weight}"),
        TIMEOUT,
        || async {
            for stable in STABLE {
                if canary_ingress(h, stable).await.as_ref() != Some(&expected) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
}

async fn wait_no_canaries(h: &Harness) {
    wait_for("no canary Ingress", TIMEOUT, || async {
        for stable in STABLE {
            if canary_ingress(h, stable).await.is_some() {
                return None;
            }
        }
        Some(())
    })
    .await;
}

fn paused_at(r: &Rollout, index: i32) -> bool {
    observed_current(r) && phase(r) == Some(RolloutPhase::Paused) && step(r) == Some(index)
}

async fn stable_versions(h: &Harness) -> Vec<Option<String>> {
    let mut versions = Vec::new();
    for stable in STABLE {
        let ingress = ingresses(h).get(stable).await.expect("stable Ingress");
        versions.push(ingress.metadata.resource_version);
    }
    versions
}

#[tokio::test]
async fn several_stable_ingresses_each_get_a_canary_ingress_with_the_canary_annotations() {
    let h = Harness::start("nginx-multi").await;
    h.create_web_services(&["web-stable", "web-canary"]).await;
    for (stable, class) in STABLE.iter().zip(["nginx", "nginx-internal"]) {
        let ingress = json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": stable},
            "spec": {"ingressClassName": class, "rules": [{"host": format!("{stable}.example"),
                "http": {"paths": [{"path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": "web-stable", "port": {"number": 80}}}}]}}]}
        });
        h.create(&ingresses(&h), ingress).await;
    }
    let before = stable_versions(&h).await;
    let strategy = json!({"canary": {
        "stableService": "web-stable", "canaryService": "web-canary",
        "trafficRouting": {"nginx": {
            "stableIngresses": STABLE,
            "canaryIngressAnnotations": {CUSTOM_KEY: "value"},
        }},
        "steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]
    }});
    h.create(&h.rollouts(), rollout_manifest(2, strategy)).await;
    h.wait_rollout("first deploy Healthy", |r| {
        observed_current(r) && phase(r) == Some(RolloutPhase::Healthy)
    })
    .await;
    wait_no_canaries(&h).await;

    // Each step's weight on every canary Ingress, then promoted: all removed.
    h.set_image("example/web:2.0").await;
    for (index, weight) in [(1, "20"), (3, "50")] {
        h.wait_rollout(&format!("paused at step {index}"), |r| paused_at(r, index))
            .await;
        wait_canaries_at(&h, weight).await;
        h.promote().await;
    }
    h.wait_rollout("fully promoted", |r| {
        observed_current(r) && phase(r) == Some(RolloutPhase::Healthy) && step(r) == Some(4)
    })
    .await;
    wait_no_canaries(&h).await;

    // A new revision aborted at its first step: every canary Ingress back to weight 0.
    h.set_image("example/web:3.0").await;
    h.wait_rollout("paused at step 1", |r| paused_at(r, 1))
        .await;
    wait_canaries_at(&h, "20").await;
    h.patch_status(json!({"status": {"abort": true}})).await;
    h.wait_rollout("aborted", |r| {
        observed_current(r)
            && phase(r) == Some(RolloutPhase::Degraded)
            && r.status.as_ref().is_some_and(|s| s.abort == Some(true))
    })
    .await;
    wait_canaries_at(&h, "0").await;
    assert_eq!(
        stable_versions(&h).await,
        before,
        "the stable Ingresses are never written"
    );
    h.ns.delete().await;
}

/// Argo's rule: exactly one of `stableIngress` and `stableIngresses`; the API server refuses a
/// Rollout with both, with Argo's message.
#[tokio::test]
async fn stable_ingress_and_stable_ingresses_together_are_refused_with_argos_message() {
    let h = Harness::start("nginx-both").await;
    let strategy = json!({"canary": {
        "stableService": "web-stable", "canaryService": "web-canary",
        "trafficRouting": {"nginx": {"stableIngress": "web", "stableIngresses": ["web"]}},
        "steps": [{"setWeight": 20}]
    }});
    let rollout: Rollout =
        serde_json::from_value(rollout_manifest(1, strategy)).expect("a Rollout");
    let error = h
        .rollouts()
        .create(&Default::default(), &rollout)
        .await
        .expect_err("refused by the API server");
    assert!(
        error.to_string().contains(
            "Either StableIngress or StableIngresses must be configured. Both are configured."
        ),
        "{error}"
    );
    h.ns.delete().await;
}
