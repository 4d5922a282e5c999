//! Requests through the local cluster's real Gateway API proxy (Traefik, `$GATEWAY_URL`) and the
//! emulator's counters (`$TRAFFIC_URL/metrics`), for the tests of what reaches which pods.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;

use super::rollouts::Harness;

/// Requests in flight at once.
pub const CONCURRENCY: usize = 8;

/// One answer: status code and `X-Pod-Name` (empty when absent).
pub type Answer = (u16, String);

pub fn http() -> reqwest::Client {
    sluice::tls::install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .expect("HTTP client")
}

/// GET `url` with `Host: host` and the `headers` given; `None` when nothing answers.
pub async fn get(
    client: &reqwest::Client,
    url: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> Option<Answer> {
    let mut request = client.get(url).header(reqwest::header::HOST, host);
    for (name, value) in headers {
        request = request.header(*name, *value);
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

/// `count` requests through the Gateway for `host` with `headers`, `CONCURRENCY` at a time.
pub async fn through_gateway(
    gateway: &str,
    host: &str,
    headers: &[(&str, &str)],
    count: usize,
) -> Vec<Option<Answer>> {
    let client = http();
    futures::stream::iter(0..count)
        .map(|_| get(&client, gateway, host, headers))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await
}

/// The names of the Ready pods of the Rollout's revision `hash`.
pub async fn ready_pods(h: &Harness, hash: &str) -> BTreeSet<String> {
    let pods: Api<Pod> = Api::namespaced(h.client.clone(), &h.ns.name);
    let list = pods
        .list(&ListParams::default().labels(&format!("rollouts-pod-template-hash={hash}")))
        .await
        .expect("list pods");
    list.items
        .iter()
        .filter(|pod| is_ready(pod))
        .filter_map(|pod| pod.metadata.name.clone())
        .collect()
}

fn is_ready(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let loopback = status
        .pod_ip
        .as_deref()
        .and_then(|ip| ip.parse::<IpAddr>().ok())
        .is_some_and(|ip| ip.is_loopback());
    ready && loopback && pod.metadata.deletion_timestamp.is_none()
}

/// Answers per pod; `None` when one is not a 200 from one of `pods`.
pub fn count_by_pod(
    answers: &[Option<Answer>],
    pods: &BTreeSet<String>,
) -> Option<BTreeMap<String, usize>> {
    let mut counts = BTreeMap::new();
    for answer in answers {
        match answer {
            Some((200, pod)) if pods.contains(pod) => *counts.entry(pod.clone()).or_insert(0) += 1,
            _ => return None,
        }
    }
    Some(counts)
}

/// The sum of the emulator's `http_requests_total` samples whose labels include all of `labels`.
pub async fn emulated_requests(traffic_url: &str, labels: &[(&str, &str)]) -> u64 {
    let text = http()
        .get(format!("{traffic_url}/metrics"))
        .send()
        .await
        .expect("emulator reachable")
        .text()
        .await
        .expect("emulator metrics");
    text.lines()
        .filter(|l| l.starts_with("http_requests_total{"))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
