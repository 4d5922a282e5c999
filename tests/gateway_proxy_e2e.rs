//! The local cluster's real data path: requests through the Gateway API proxy (Traefik, Gateway
//! `e2e/e2e-gateway`, `$GATEWAY_URL`) reach pods whose loopback IPs answer HTTP, split by the weights
//! Sluice writes into the HTTPRoute (docs/behaviour.md C2), counted by the `X-Pod-Name` each pod
//! answers with.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use common::rollouts::{
    Harness, TIMEOUT, current_hash, observed_current, phase, rollout_manifest, step,
};
use common::{E2eEnv, TestNamespace, wait_for};
use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sluice::api::rollout::RolloutPhase;

/// The port every test pod declares and every Service targets.
const POD_PORT: u16 = 8080;
/// Requests sent in one measured sample.
const SAMPLE: usize = 400;
/// Requests in flight at once.
const CONCURRENCY: usize = 8;
/// Allowed chance that a correct split still fails the assertion.
const FALSE_FAILURE: f64 = 1e-6;

/// One answer: status code and `X-Pod-Name` (empty when absent).
type Answer = (u16, String);

fn http() -> reqwest::Client {
    sluice::tls::install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .expect("HTTP client")
}

/// GET `url` (with `host` as Host header when given); `None` when nothing answers.
async fn get(client: &reqwest::Client, url: &str, host: Option<&str>) -> Option<Answer> {
    let mut request = client.get(url);
    if let Some(host) = host {
        request = request.header(reqwest::header::HOST, host);
    }
    let response = request.send().await.ok()?;
    let pod = response
        .headers()
        .get("x-pod-name")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Some((response.status().as_u16(), pod))
}

/// `count` requests through the Gateway for `host`, `CONCURRENCY` at a time.
async fn through_gateway(gateway: &str, host: &str, count: usize) -> Vec<Option<Answer>> {
    let client = http();
    futures::stream::iter(0..count)
        .map(|_| get(&client, gateway, Some(host)))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await
}

/// Hoeffding: a count of `n` Bernoulli(p) draws lies within `p·n ± t` with probability at least
/// `1 - FALSE_FAILURE` for `t = sqrt(n · ln(2 / FALSE_FAILURE) / 2)`, whatever p is.
fn binomial_tolerance(n: usize) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let n = n as f64;
    (n * (2.0 / FALSE_FAILURE).ln() / 2.0).sqrt()
}

/// The Ready pods of `ns` with label `rollouts-pod-template-hash=hash`: name → IP.
async fn ready_pods(h: &Harness, hash: &str) -> BTreeMap<String, IpAddr> {
    let pods: Api<Pod> = Api::namespaced(h.client.clone(), &h.ns.name);
    let list = pods
        .list(&ListParams::default().labels(&format!("rollouts-pod-template-hash={hash}")))
        .await
        .expect("list pods");
    list.items.iter().filter_map(ready_ip).collect()
}

fn ready_ip(pod: &Pod) -> Option<(String, IpAddr)> {
    let status = pod.status.as_ref()?;
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let ip = status.pod_ip.as_deref()?.parse().ok()?;
    (ready && pod.metadata.deletion_timestamp.is_none())
        .then(|| (pod.metadata.name.clone().unwrap_or_default(), ip))
}

/// Waits until each pod answers on `ip:POD_PORT` with its own name, and checks the IP is loopback
/// (the local cluster's contract: pod IPs in 127.0.0.0/8).
async fn wait_pods_answer(pods: &BTreeMap<String, IpAddr>) {
    let client = http();
    for (name, ip) in pods {
        assert!(
            ip.is_loopback(),
            "pod {name} has IP {ip}, not in 127.0.0.0/8"
        );
        let url = format!("http://{ip}:{POD_PORT}/");
        let answer = wait_for(&format!("pod {name} answering on {url}"), TIMEOUT, || {
            get(&client, &url, None)
        })
        .await;
        assert_eq!(answer, (200, name.clone()), "{url}");
    }
}

fn web_rollout(replicas: i32) -> Value {
    let mut rollout = rollout_manifest(
        replicas,
        json!({"canary": {
            "stableService": "web-stable", "canaryService": "web-canary",
            "trafficRouting": {"plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": "web"}}},
            "steps": [{"setWeight": 20}, {"pause": {}}]
        }}),
    );
    rollout["spec"]["template"]["spec"]["containers"][0]["ports"] =
        json!([{"containerPort": POD_PORT}]);
    rollout
}

/// A new pod template image. The whole container is given: a merge patch replaces the list.
async fn set_image(h: &Harness, image: &str) {
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "web", "image": image, "ports": [{"containerPort": POD_PORT}]}
    ]}}}});
    h.rollouts()
        .patch("web", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .expect("update image");
}

/// Services `web-stable`/`web-canary` (port 80 → the pods' port) and the HTTPRoute `web` on Gateway
/// `e2e/e2e-gateway` for `host`, all traffic to stable.
async fn create_services_and_route(h: &Harness, host: &str) {
    for name in ["web-stable", "web-canary"] {
        h.create(
            &h.services(),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                   "spec": {"selector": {"app": "web"},
                            "ports": [{"port": 80, "targetPort": POD_PORT}]}}),
        )
        .await;
    }
    h.create(
        &h.routes(),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "web"},
        "spec": {
            "parentRefs": [{"name": "e2e", "namespace": "e2e-gateway"}],
            "hostnames": [host],
            "rules": [{"backendRefs": [
                {"name": "web-stable", "port": 80, "weight": 100},
                {"name": "web-canary", "port": 80, "weight": 0}
            ]}]
        }}),
    )
    .await;
}

/// Waits until `CONCURRENCY` requests in a row through the Gateway all answer 200 from `pods`: the
/// proxy has loaded the route's current weights and endpoints.
async fn wait_gateway_reaches(gateway: &str, host: &str, pods: &BTreeSet<String>, what: &str) {
    wait_for(what, TIMEOUT, || async {
        let answers = through_gateway(gateway, host, CONCURRENCY).await;
        answers
            .iter()
            .all(|a| matches!(a, Some((200, pod)) if pods.contains(pod)))
            .then_some(())
    })
    .await;
}

/// Counts a sample's answers per pod, failing on any that is not a 200 from one of `pods`.
fn count_by_pod(answers: &[Option<Answer>], pods: &BTreeSet<String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for answer in answers {
        match answer {
            Some((200, pod)) if pods.contains(pod) => *counts.entry(pod.clone()).or_insert(0) += 1,
            other => panic!("answer {other:?} is not a 200 from one of {pods:?}"),
        }
    }
    counts
}

#[tokio::test]
async fn gateway_splits_requests_by_the_rollout_weights_and_moves_them_all_on_promotion() {
    let env = E2eEnv::load();
    let gateway = env.get("GATEWAY_URL").to_owned();
    let h = Harness::start("gw-proxy").await;
    let host = format!("{}.e2e.test", h.ns.name);
    create_services_and_route(&h, &host).await;
    h.create(&h.rollouts(), web_rollout(4)).await;
    let first = h
        .wait_rollout("first deploy Healthy", |r| {
            observed_current(r) && phase(r) == Some(RolloutPhase::Healthy)
        })
        .await;
    let stable_hash = current_hash(&first);
    let stable = wait_for("4 Ready stable pods", TIMEOUT, || async {
        let pods = ready_pods(&h, &stable_hash).await;
        (pods.len() == 4).then_some(pods)
    })
    .await;
    // A pod's port answers directly, with the pod's name.
    wait_pods_answer(&stable).await;
    let stable_names: BTreeSet<String> = stable.keys().cloned().collect();
    wait_gateway_reaches(
        &gateway,
        &host,
        &stable_names,
        "the Gateway sending to stable pods",
    )
    .await;

    // setWeight 20: one canary pod, the route at 80/20.
    set_image(&h, "example/web:2.0").await;
    let paused = h
        .wait_rollout("paused at step 1", |r| {
            observed_current(r) && phase(r) == Some(RolloutPhase::Paused) && step(r) == Some(1)
        })
        .await;
    let canary_hash = current_hash(&paused);
    assert_ne!(canary_hash, stable_hash);
    assert_eq!(h.route_weights().await, (80, 20));
    let canary = wait_for("1 Ready canary pod", TIMEOUT, || async {
        let pods = ready_pods(&h, &canary_hash).await;
        (pods.len() == 1).then_some(pods)
    })
    .await;
    wait_pods_answer(&canary).await;
    let canary_names: BTreeSet<String> = canary.keys().cloned().collect();
    let both: BTreeSet<String> = stable_names.union(&canary_names).cloned().collect();
    // The proxy has the 80/20 route once a canary pod answers through it.
    wait_for(
        "a canary pod answering through the Gateway",
        TIMEOUT,
        || async {
            let answers = through_gateway(&gateway, &host, CONCURRENCY * 4).await;
            answers
                .iter()
                .any(|a| matches!(a, Some((200, pod)) if canary_names.contains(pod)))
                .then_some(())
        },
    )
    .await;

    let counts = count_by_pod(&through_gateway(&gateway, &host, SAMPLE).await, &both);
    let to_canary: usize = canary_names.iter().filter_map(|p| counts.get(p)).sum();
    let tolerance = binomial_tolerance(SAMPLE);
    #[allow(clippy::cast_precision_loss)]
    let expected = SAMPLE as f64 * 0.2;
    #[allow(clippy::cast_precision_loss)]
    let deviation = (to_canary as f64 - expected).abs();
    eprintln!(
        "canary: {to_canary} of {SAMPLE} (expected {expected} ± {tolerance:.1}); per pod {counts:?}"
    );
    assert!(
        deviation <= tolerance,
        "{to_canary} of {SAMPLE} requests reached the canary, expected {expected} ± {tolerance:.1} \
         (weight 20); per pod: {counts:?}"
    );
    // Every stable pod takes part (each gets ~80 of 400: none getting any is out of the question).
    assert!(
        stable_names.iter().all(|p| counts.contains_key(p)),
        "stable pods without requests: {counts:?}"
    );

    // Promotion: every request reaches the new revision's pods.
    h.promote().await;
    h.wait_rollout("promoted and Healthy", |r| {
        observed_current(r)
            && phase(r) == Some(RolloutPhase::Healthy)
            && r.status.as_ref().and_then(|s| s.stable_rs.as_deref()) == Some(canary_hash.as_str())
    })
    .await;
    let promoted = wait_for("4 Ready pods of the new revision", TIMEOUT, || async {
        let pods = ready_pods(&h, &canary_hash).await;
        (pods.len() == 4).then_some(pods)
    })
    .await;
    wait_pods_answer(&promoted).await;
    let new_names: BTreeSet<String> = promoted.keys().cloned().collect();
    wait_gateway_reaches(
        &gateway,
        &host,
        &new_names,
        "the Gateway sending to the new pods only",
    )
    .await;
    let counts = count_by_pod(
        &through_gateway(&gateway, &host, SAMPLE / 4).await,
        &new_names,
    );
    assert_eq!(counts.values().sum::<usize>(), SAMPLE / 4, "{counts:?}");
    h.ns.delete().await;
}

#[tokio::test]
async fn a_bad_tagged_pod_answers_some_500_with_its_name() {
    let env = E2eEnv::load();
    let client = env.client().await;
    let ns = TestNamespace::create(&client, "gw-bad").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bad"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "bad"}},
                 "template": {"metadata": {"labels": {"app": "bad"}},
                              "spec": {"containers": [{"name": "web", "image": "example/web:bad",
                                                       "ports": [{"containerPort": POD_PORT}]}]}}}
    }))
    .expect("deployment");
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create deployment");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let (name, ip) = wait_for("the bad pod Ready with an IP", TIMEOUT, || async {
        let list = pods.list(&ListParams::default()).await.ok()?;
        list.items.iter().find_map(ready_ip)
    })
    .await;
    assert!(ip.is_loopback(), "pod IP {ip} not in 127.0.0.0/8");
    let url = format!("http://{ip}:{POD_PORT}/");
    let http = http();
    wait_for("the bad pod answering", TIMEOUT, || get(&http, &url, None)).await;
    let answers: Vec<Option<Answer>> = futures::stream::iter(0..100)
        .map(|_| get(&http, &url, None))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let codes: Vec<u16> = answers
        .iter()
        .map(|a| match a {
            Some((code, pod)) if *pod == name => *code,
            other => panic!("answer {other:?} does not name pod {name}"),
        })
        .collect();
    // 30 % 500s: P(none of 100) = 0.7^100 ≈ 3e-16, P(all 100) = 0.3^100.
    assert!(codes.contains(&500), "no 500 in {codes:?}");
    assert!(codes.contains(&200), "no 200 in {codes:?}");
    assert!(codes.iter().all(|c| *c == 200 || *c == 500), "{codes:?}");
    ns.delete().await;
}
