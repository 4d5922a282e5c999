//! EndpointSlices for pods with loopback IPs.
//!
//! The API server refuses loopback addresses in `IPv4` EndpointSlices and Endpoints ("may not be in the
//! loopback range"), so kube-controller-manager's endpoint controllers cannot describe the local
//! cluster's pods (IPs in 127.0.0.0/8), and the local cluster runs it without them. This module does
//! their job for selector Services: it keeps, per Service, EndpointSlices of address type `FQDN` whose
//! addresses are the pods' IPs as text (a dotted quad is a valid FQDN), with the usual
//! `kubernetes.io/service-name` label, ports, `ready`/`serving`/`terminating` conditions and pod
//! `targetRef`s. Proxies that read EndpointSlices by that label (Traefik's Gateway API provider) then
//! reach the pods, whose addresses [`crate::pods`] serves.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::reflector::{self, reflector};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Client, ResourceExt as _};
use serde_json::{Value, json};
use tokio::time::Instant;

/// `endpointslice.kubernetes.io/managed-by` of the slices written here.
pub const MANAGED_BY: &str = "sluice-traffic.e2e.sluice.dev";
/// Endpoints per slice (kube-controller-manager's default is 100; the API allows 1000).
const MAX_PER_SLICE: usize = 100;
/// How often changes are gathered into one reconcile.
const BATCH: Duration = Duration::from_millis(100);
/// Wait before retrying after a failed write.
const RETRY: Duration = Duration::from_secs(1);
/// Placeholder wait when nothing is due (that branch is disabled then).
const IDLE: Duration = Duration::from_secs(3600);

/// Which watch an event came from.
#[derive(Debug, Clone, Copy)]
enum Watch {
    Pods,
    Services,
}
const FIELD_MANAGER: &str = "sluice-traffic";

/// A slice's identity: namespace and name.
type SliceKey = (String, String);
/// A slice port: Service port name (`""` when unnamed), resolved number, protocol.
type PortKey = (String, i32, String);

/// The slices every selector Service of `services` should have, given `pods` (any namespaces).
#[must_use]
pub fn desired(services: &[Arc<Service>], pods: &[Arc<Pod>]) -> BTreeMap<SliceKey, Value> {
    let mut by_namespace: HashMap<&str, Vec<&Pod>> = HashMap::new();
    for pod in pods {
        by_namespace
            .entry(pod.metadata.namespace.as_deref().unwrap_or_default())
            .or_default()
            .push(pod);
    }
    let mut out = BTreeMap::new();
    for service in services {
        let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
        let candidates = by_namespace.get(namespace).map_or(&[][..], Vec::as_slice);
        out.extend(service_slices(service, candidates));
    }
    out
}

/// The slices of one Service: endpoints grouped by their resolved ports (a named `targetPort` may
/// resolve differently per pod), `MAX_PER_SLICE` per slice; one empty slice when nothing is selected.
fn service_slices(service: &Service, pods: &[&Pod]) -> Vec<(SliceKey, Value)> {
    let (Some(spec), Some(name), Some(namespace), Some(uid)) = (
        &service.spec,
        &service.metadata.name,
        &service.metadata.namespace,
        &service.metadata.uid,
    ) else {
        return Vec::new();
    };
    let Some(selector) = spec.selector.as_ref().filter(|s| !s.is_empty()) else {
        return Vec::new();
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Vec::new();
    }
    let ports = spec.ports.as_deref().unwrap_or_default();
    let mut groups: BTreeMap<Vec<PortKey>, Vec<Value>> = BTreeMap::new();
    for pod in pods {
        let labels = pod.labels();
        if !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            continue;
        }
        if let Some(endpoint) = endpoint(pod) {
            groups
                .entry(resolved_ports(ports, pod))
                .or_default()
                .push(endpoint);
        }
    }
    if groups.is_empty() {
        groups.insert(resolved_ports(ports, &Pod::default()), Vec::new());
    }
    let mut out = Vec::new();
    for (slice_ports, endpoints) in groups {
        let chunks: Vec<&[Value]> = if endpoints.is_empty() {
            vec![&[]]
        } else {
            endpoints.chunks(MAX_PER_SLICE).collect()
        };
        for chunk in chunks {
            let slice_name = format!("{name}-sluice-{}", out.len());
            let slice = json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {
                    "name": slice_name, "namespace": namespace,
                    "labels": {
                        "kubernetes.io/service-name": name,
                        "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
                    },
                    "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": name,
                                         "uid": uid, "controller": true}],
                },
                "addressType": "FQDN",
                "ports": slice_ports.iter().map(|(name, port, protocol)| {
                    json!({"name": name, "port": port, "protocol": protocol})
                }).collect::<Vec<_>>(),
                "endpoints": chunk,
            });
            out.push(((namespace.clone(), slice_name), slice));
        }
    }
    out
}

/// A pod's endpoint, or `None` when it has no IP or has finished (as kube-controller-manager does).
fn endpoint(pod: &Pod) -> Option<Value> {
    let status = pod.status.as_ref()?;
    let ip = status.pod_ip.as_deref().filter(|ip| !ip.is_empty())?;
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None;
    }
    let ready_condition = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let mut endpoint = json!({
        "addresses": [ip],
        "conditions": {"ready": ready_condition && !terminating, "serving": ready_condition,
                       "terminating": terminating},
        "targetRef": {"kind": "Pod", "namespace": pod.metadata.namespace, "name": pod.metadata.name,
                      "uid": pod.metadata.uid},
    });
    if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
        endpoint["nodeName"] = json!(node);
    }
    Some(endpoint)
}

/// The Service's ports with `targetPort` resolved against `pod`'s container ports; a named target
/// the pod does not declare is left out, as kube-controller-manager does.
fn resolved_ports(ports: &[ServicePort], pod: &Pod) -> Vec<PortKey> {
    ports
        .iter()
        .filter_map(|port| {
            let number = match &port.target_port {
                None => Some(port.port),
                Some(IntOrString::Int(n)) => Some(*n),
                Some(IntOrString::String(name)) => pod
                    .spec
                    .iter()
                    .flat_map(|s| &s.containers)
                    .flat_map(|c| c.ports.iter().flatten())
                    .find(|p| p.name.as_deref() == Some(name.as_str()))
                    .map(|p| p.container_port),
            }?;
            Some((
                port.name.clone().unwrap_or_default(),
                number,
                port.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
            ))
        })
        .collect()
}

/// Keeps the slices in step with the cluster until the watches end.
pub async fn run(client: Client, namespace: Option<String>) {
    let (pods_api, services_api): (Api<Pod>, Api<Service>) = match &namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let (pods, pods_writer) = reflector::store::<Pod>();
    let (services, services_writer) = reflector::store::<Service>();
    // Each event says which watch it came from and whether that watch has finished a full list.
    let pod_events = reflector(
        pods_writer,
        watcher(pods_api, watcher::Config::default())
            .default_backoff()
            // Bookkeeping nobody here reads: it is most of a KWOK pod's size.
            .modify(|pod| pod.managed_fields_mut().clear()),
    )
    .map(|e| (Watch::Pods, matches!(e, Ok(watcher::Event::InitDone))));
    let service_events = reflector(
        services_writer,
        watcher(services_api, watcher::Config::default())
            .default_backoff()
            .modify(|service| service.managed_fields_mut().clear()),
    )
    .map(|e| (Watch::Services, matches!(e, Ok(watcher::Event::InitDone))));
    let mut events = std::pin::pin!(futures::stream::select(pod_events, service_events));
    let mut slices = Slices::new(client, namespace).await;
    let (mut pods_listed, mut services_listed) = (false, false);
    // When the next reconcile is due: every change of one BATCH goes into one reconcile.
    let mut due: Option<Instant> = None;
    loop {
        let wait = due.map_or(IDLE, |at| at.saturating_duration_since(Instant::now()));
        tokio::select! {
            event = events.next() => match event {
                Some((watch, listed)) => {
                    match watch {
                        Watch::Pods => pods_listed |= listed,
                        Watch::Services => services_listed |= listed,
                    }
                    due.get_or_insert_with(|| Instant::now() + BATCH);
                }
                None => break,
            },
            () = tokio::time::sleep(wait), if due.is_some() => {
                // Before both lists are complete, a missing object would delete slices in use.
                if !(pods_listed && services_listed) {
                    due = Some(Instant::now() + BATCH);
                    continue;
                }
                let wanted = desired(&services.state(), &pods.state());
                due = if slices.reconcile(&wanted).await {
                    None
                } else {
                    Some(Instant::now() + RETRY)
                };
            }
        }
    }
    tracing::warn!("pod or service watch ended");
}

/// The slices written, as last applied (`None`: found at start, to delete unless still wanted).
struct Slices {
    client: Client,
    written: BTreeMap<SliceKey, Option<Value>>,
}

impl Slices {
    /// Starts from the slices a previous run left, so that those no longer wanted are deleted.
    async fn new(client: Client, namespace: Option<String>) -> Self {
        let api: Api<EndpointSlice> = match &namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let params = ListParams::default().labels(&format!(
            "endpointslice.kubernetes.io/managed-by={MANAGED_BY}"
        ));
        let written = match api.list(&params).await {
            Ok(list) => list
                .items
                .iter()
                .map(|s| ((s.namespace().unwrap_or_default(), s.name_any()), None))
                .collect(),
            Err(err) => {
                tracing::warn!(error = %err, "cannot list earlier EndpointSlices; leaving them");
                BTreeMap::new()
            }
        };
        Self { client, written }
    }

    /// Writes what changed and deletes what is no longer wanted. Returns whether every write worked.
    async fn reconcile(&mut self, desired: &BTreeMap<SliceKey, Value>) -> bool {
        let mut ok = true;
        let stale: Vec<SliceKey> = self
            .written
            .keys()
            .filter(|k| !desired.contains_key(*k))
            .cloned()
            .collect();
        for key in stale {
            let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &key.0);
            match api.delete(&key.1, &DeleteParams::default()).await {
                Ok(_) => {}
                // Gone already (e.g. with its Service or namespace).
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(err) => {
                    tracing::debug!(slice = ?key, error = %err, "deleting EndpointSlice failed");
                    ok = false;
                    continue;
                }
            }
            self.written.remove(&key);
        }
        for (key, slice) in desired {
            if self.written.get(key).and_then(Option::as_ref) == Some(slice) {
                continue;
            }
            let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &key.0);
            let params = PatchParams::apply(FIELD_MANAGER).force();
            match api.patch(&key.1, &params, &Patch::Apply(slice)).await {
                Ok(_) => {
                    self.written.insert(key.clone(), Some(slice.clone()));
                }
                Err(err) => {
                    // A terminating namespace refuses writes until it is gone; retried meanwhile.
                    tracing::debug!(slice = ?key, error = %err, "writing EndpointSlice failed");
                    ok = false;
                }
            }
        }
        ok
    }
}

/// One endpoint as tests read it back: address, ready, pod name.
#[cfg(test)]
type EndpointSummary = (String, bool, String);

/// Reads the slices' pods back, for tests: `(slice name, endpoints)`.
#[cfg(test)]
fn summary(slices: &BTreeMap<SliceKey, Value>) -> Vec<(String, Vec<EndpointSummary>)> {
    slices
        .iter()
        .map(|((_, name), slice)| {
            let endpoints = slice["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    (
                        e["addresses"][0].as_str().unwrap_or_default().to_owned(),
                        e["conditions"]["ready"].as_bool().unwrap_or_default(),
                        e["targetRef"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    )
                })
                .collect();
            (name.clone(), endpoints)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, labels: Value, ip: &str, ready: bool) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "apps", "uid": format!("u-{name}"),
                             "labels": labels},
                "spec": {"nodeName": "kwok-node-0", "containers": [{"name": "web",
                         "ports": [{"name": "http", "containerPort": 8080}]}]},
                "status": {"phase": "Running", "podIP": ip, "conditions": [
                    {"type": "Ready", "status": if ready { "True" } else { "False" }}]}
            }))
            .unwrap(),
        )
    }

    fn service(name: &str, selector: Value, target: Value) -> Arc<Service> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "apps", "uid": format!("u-{name}")},
                "spec": {"selector": selector, "ports": [{"port": 80, "targetPort": target}]}
            }))
            .unwrap(),
        )
    }

    #[test]
    fn selected_pods_become_fqdn_endpoints_with_resolved_ports() {
        let services = [service(
            "web-canary",
            json!({"app": "web", "hash": "b"}),
            json!("http"),
        )];
        let pods = [
            pod(
                "web-a-1",
                json!({"app": "web", "hash": "a"}),
                "127.9.0.1",
                true,
            ),
            pod(
                "web-b-1",
                json!({"app": "web", "hash": "b"}),
                "127.9.0.2",
                true,
            ),
            pod(
                "web-b-2",
                json!({"app": "web", "hash": "b"}),
                "127.9.0.3",
                false,
            ),
        ];
        let slices = desired(&services, &pods);
        assert_eq!(
            summary(&slices),
            vec![(
                "web-canary-sluice-0".to_owned(),
                vec![
                    ("127.9.0.2".to_owned(), true, "web-b-1".to_owned()),
                    ("127.9.0.3".to_owned(), false, "web-b-2".to_owned()),
                ]
            )]
        );
        let slice = &slices[&("apps".to_owned(), "web-canary-sluice-0".to_owned())];
        assert_eq!(slice["addressType"], "FQDN");
        assert_eq!(
            slice["ports"],
            json!([{"name": "", "port": 8080, "protocol": "TCP"}])
        );
        assert_eq!(
            slice["metadata"]["labels"]["kubernetes.io/service-name"],
            "web-canary"
        );
        // The API server would accept it: every address is a valid FQDN-type address.
        let typed: EndpointSlice = serde_json::from_value(slice.clone()).unwrap();
        assert_eq!(typed.endpoints.map(|e| e.len()), Some(2));
    }

    #[test]
    fn services_without_pods_get_one_empty_slice_and_others_none() {
        let services = [
            service("empty", json!({"app": "none"}), json!(8080)),
            service("headless-by-hand", json!({}), json!(8080)),
        ];
        let slices = desired(
            &services,
            &[pod("p", json!({"app": "web"}), "127.9.0.1", true)],
        );
        assert_eq!(
            summary(&slices),
            vec![("empty-sluice-0".to_owned(), vec![])]
        );
    }

    #[test]
    fn large_services_are_split_into_slices_of_at_most_100() {
        let services = [service("web", json!({"app": "web"}), json!(8080))];
        let pods: Vec<_> = (0..250)
            .map(|i| {
                pod(
                    &format!("web-{i}"),
                    json!({"app": "web"}),
                    &format!("127.9.{}.{}", i / 200, i % 200 + 1),
                    true,
                )
            })
            .collect();
        let sizes: Vec<usize> = summary(&desired(&services, &pods))
            .iter()
            .map(|(_, e)| e.len())
            .collect();
        assert_eq!(sizes, vec![100, 100, 50]);
    }

    #[test]
    fn finished_and_unaddressed_pods_are_left_out() {
        let services = [service("web", json!({"app": "web"}), json!(8080))];
        let mut done = (*pod("done", json!({"app": "web"}), "127.9.0.1", false)).clone();
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        let pending = pod("pending", json!({"app": "web"}), "", false);
        let slices = desired(&services, &[Arc::new(done), pending]);
        assert_eq!(summary(&slices), vec![("web-sluice-0".to_owned(), vec![])]);
    }
}
