//! Emulated pods: every Ready pod's declared container ports answer HTTP on `podIP:port`.
//!
//! KWOK pods have no containers, so a real proxy in front of them (the local cluster's Gateway) would
//! have nothing to talk to. The local cluster gives pods addresses in 127.0.0.0/8, which Linux lets any
//! process bind without configuration; this module watches pods and binds a listener on each Ready
//! pod's `podIP:containerPort` while the pod is Ready, answering every request the way the container's
//! image tag says ([`behaviour::respond`], the same emulation the request engine uses) with an
//! `X-Pod-Name` header naming the pod.

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use futures::TryStreamExt as _;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::Api;
use kube::runtime::{WatchStreamExt as _, watcher};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

use crate::behaviour;

/// The response header naming the pod that answered.
pub const POD_NAME_HEADER: &str = "x-pod-name";

/// Bounds that keep the pod server cheap however many pods there are.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Addresses bound at once (every Ready pod's ports, across the cluster).
    pub max_listeners: usize,
    /// Open connections at once, across every listener; more are closed on accept.
    pub max_connections: usize,
    /// A client must send a request's headers within this time, or the connection is closed.
    pub header_timeout: Duration,
    /// Largest buffered request head (bytes). Bodies are never read.
    pub max_buf_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_listeners: 20_000,
            max_connections: 4_096,
            header_timeout: Duration::from_secs(30),
            max_buf_size: 16 * 1024,
        }
    }
}

/// An address a pod serves and how it answers there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `podIP:containerPort`.
    pub addr: SocketAddr,
    /// The pod's name, sent as `X-Pod-Name`.
    pub pod: Arc<str>,
    /// The container's image; its tag decides the behaviour.
    pub image: Arc<str>,
}

/// The addresses `pod` serves now: none unless it is Ready, not terminating and has a loopback IP;
/// then one per declared TCP container port.
#[must_use]
pub fn wanted(pod: &Pod) -> Vec<Endpoint> {
    if pod.metadata.deletion_timestamp.is_some() {
        return Vec::new();
    }
    let Some(status) = &pod.status else {
        return Vec::new();
    };
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    // Only loopback: anything else would make this process listen on a real network.
    let ip = status
        .pod_ip
        .as_deref()
        .and_then(|ip| ip.parse::<IpAddr>().ok())
        .filter(IpAddr::is_loopback);
    let (true, Some(ip), Some(spec), Some(name)) = (ready, ip, &pod.spec, &pod.metadata.name)
    else {
        return Vec::new();
    };
    let pod_name: Arc<str> = Arc::from(name.as_str());
    let mut out = Vec::new();
    for container in &spec.containers {
        let image: Arc<str> = Arc::from(container.image.as_deref().unwrap_or(""));
        for port in container.ports.iter().flatten() {
            let tcp = port.protocol.as_deref().is_none_or(|p| p == "TCP");
            let Ok(number) = u16::try_from(port.container_port) else {
                continue;
            };
            if tcp && number != 0 {
                out.push(Endpoint {
                    addr: SocketAddr::new(ip, number),
                    pod: Arc::clone(&pod_name),
                    image: Arc::clone(&image),
                });
            }
        }
    }
    out
}

/// What to change so that `owner` serves exactly `wanted`, given what is bound now.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// Addresses to close (the owner's stale ones, or another owner's that this owner takes over).
    pub unbind: Vec<SocketAddr>,
    /// Endpoints to bind.
    pub bind: Vec<Endpoint>,
}

/// One bound address.
struct Bound {
    owner: String,
    endpoint: Endpoint,
    task: JoinHandle<()>,
}

/// The listeners of every served pod, keyed by address, with an index by owning pod (its uid).
pub struct Listeners {
    limits: Limits,
    connections: Arc<Semaphore>,
    by_addr: HashMap<SocketAddr, Bound>,
    by_owner: HashMap<String, BTreeSet<SocketAddr>>,
}

impl Listeners {
    /// No listeners yet.
    #[must_use]
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            by_addr: HashMap::new(),
            by_owner: HashMap::new(),
        }
    }

    /// How many addresses are bound.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_addr.len()
    }

    /// The change that makes `owner` serve exactly `wanted`. An address bound for another owner is
    /// taken over: KWOK hands a deleted pod's IP to the next pod, possibly before the deletion is seen.
    #[must_use]
    pub fn plan(&self, owner: &str, wanted: &[Endpoint]) -> Change {
        let mut change = Change::default();
        for addr in self.by_owner.get(owner).into_iter().flatten() {
            if !wanted.iter().any(|e| e.addr == *addr) {
                change.unbind.push(*addr);
            }
        }
        for endpoint in wanted {
            match self.by_addr.get(&endpoint.addr) {
                Some(bound) if bound.owner == owner && bound.endpoint == *endpoint => {}
                Some(_) => {
                    change.unbind.push(endpoint.addr);
                    change.bind.push(endpoint.clone());
                }
                None => change.bind.push(endpoint.clone()),
            }
        }
        change
    }

    /// Makes `owner` serve exactly `wanted`.
    pub async fn set(&mut self, owner: &str, wanted: &[Endpoint]) {
        let change = self.plan(owner, wanted);
        for addr in change.unbind {
            self.unbind(addr).await;
        }
        for endpoint in change.bind {
            self.bind(owner, endpoint);
        }
    }

    /// Closes every address of `owner`.
    pub async fn remove(&mut self, owner: &str) {
        self.set(owner, &[]).await;
    }

    /// The owners that have addresses bound.
    #[must_use]
    pub fn owners(&self) -> Vec<String> {
        self.by_owner.keys().cloned().collect()
    }

    /// Closes `addr` and waits until its socket is closed, so that it can be bound again at once.
    async fn unbind(&mut self, addr: SocketAddr) {
        let Some(bound) = self.by_addr.remove(&addr) else {
            return;
        };
        if let Some(addrs) = self.by_owner.get_mut(&bound.owner) {
            addrs.remove(&addr);
            if addrs.is_empty() {
                self.by_owner.remove(&bound.owner);
            }
        }
        bound.task.abort();
        // The task's future (with its listener and connections) is dropped when the abort completes.
        let _ = bound.task.await;
        tracing::debug!(%addr, pod = %bound.endpoint.pod, "pod address closed");
    }

    fn bind(&mut self, owner: &str, endpoint: Endpoint) {
        if self.by_addr.len() >= self.limits.max_listeners {
            tracing::warn!(addr = %endpoint.addr, pod = %endpoint.pod, max = self.limits.max_listeners,
                "too many pod addresses bound; not serving this one");
            return;
        }
        let listener = match listen(endpoint.addr) {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(addr = %endpoint.addr, pod = %endpoint.pod, error = %err,
                    "cannot bind the pod's address (another cluster's pod server on the same IP?)");
                return;
            }
        };
        tracing::debug!(addr = %endpoint.addr, pod = %endpoint.pod, image = %endpoint.image, "pod address bound");
        let task = tokio::spawn(serve(
            listener,
            endpoint.clone(),
            Arc::clone(&self.connections),
            self.limits,
        ));
        self.by_owner
            .entry(owner.to_owned())
            .or_default()
            .insert(endpoint.addr);
        self.by_addr.insert(
            endpoint.addr,
            Bound {
                owner: owner.to_owned(),
                endpoint,
                task,
            },
        );
    }
}

/// A listening socket on `addr`. SO_REUSEADDR: a pod's address is often bound again right after
/// another pod let it go, while that pod's connections are still in TIME_WAIT.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}

/// Accepts connections on one pod address until aborted; the connections live in a [`JoinSet`] owned
/// by this future, so they end with it.
async fn serve(
    listener: TcpListener,
    endpoint: Endpoint,
    connections: Arc<Semaphore>,
    limits: Limits,
) {
    let mut open = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(err) => {
                        tracing::debug!(addr = %endpoint.addr, error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Over the bound the connection is dropped (closed) unanswered.
                let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
                    tracing::debug!(addr = %endpoint.addr, "connection limit reached");
                    continue;
                };
                let endpoint = endpoint.clone();
                open.spawn(async move {
                    serve_connection(stream, endpoint, limits).await;
                    drop(permit);
                });
            }
            Some(_) = open.join_next(), if !open.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, endpoint: Endpoint, limits: Limits) {
    let service = service_fn(move |_request: Request<hyper::body::Incoming>| {
        let endpoint = endpoint.clone();
        async move { Ok::<_, Infallible>(answer(&endpoint).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_buf_size);
    if let Err(err) = builder
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::trace!(error = %err, "pod connection ended");
    }
}

/// One request's answer: the emulated status after the emulated latency, naming the pod.
async fn answer(endpoint: &Endpoint) -> Response<Body> {
    let outcome = behaviour::respond(Some(&endpoint.image), &mut rand::rng());
    tokio::time::sleep(outcome.latency).await;
    let status = StatusCode::from_u16(outcome.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = Response::new(Body::from(format!("{} {}\n", endpoint.pod, outcome.code)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(&endpoint.pod) {
        response.headers_mut().insert(POD_NAME_HEADER, value);
    }
    response
}

/// Watches pods (in `namespace`, or all) and keeps [`Listeners`] in step until the watch ends.
pub async fn run(client: Client, namespace: Option<String>, limits: Limits) {
    let api: Api<Pod> = match &namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let mut listeners = Listeners::new(limits);
    // Owners seen since the current (re)list started; the others vanished while the watch was down.
    let mut relisted: Option<BTreeSet<String>> = None;
    let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
    tracing::info!(
        namespace = namespace.as_deref().unwrap_or("*"),
        "serving Ready pods' container ports"
    );
    loop {
        let event = match events.try_next().await {
            Ok(Some(event)) => event,
            Ok(None) => break,
            Err(err) => {
                tracing::warn!(error = %err, "watching pods failed; retrying");
                continue;
            }
        };
        match event {
            watcher::Event::Init => relisted = Some(BTreeSet::new()),
            watcher::Event::InitApply(pod) => {
                if let Some(seen) = relisted.as_mut() {
                    seen.insert(owner(&pod));
                }
                listeners.set(&owner(&pod), &wanted(&pod)).await;
            }
            watcher::Event::InitDone => {
                let seen = relisted.take().unwrap_or_default();
                for gone in listeners.owners().into_iter().filter(|o| !seen.contains(o)) {
                    listeners.remove(&gone).await;
                }
                tracing::info!(
                    bound = listeners.len(),
                    "pod addresses in step with the cluster"
                );
            }
            watcher::Event::Apply(pod) => listeners.set(&owner(&pod), &wanted(&pod)).await,
            watcher::Event::Delete(pod) => listeners.remove(&owner(&pod)).await,
        }
    }
    tracing::warn!("pod watch ended");
}

/// Whose addresses these are: the pod's uid (a pod recreated under the same name is another owner),
/// else namespace/name.
fn owner(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_else(|| {
        format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn pod(name: &str, ip: &str, ready: bool, ports: &[i32], image: &str) -> Pod {
        let ports: Vec<_> = ports.iter().map(|p| json!({"containerPort": p})).collect();
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "apps", "uid": format!("uid-{name}")},
            "spec": {"containers": [{"name": "web", "image": image, "ports": ports}]},
            "status": {"podIP": ip, "conditions": [
                {"type": "Ready", "status": if ready { "True" } else { "False" }}
            ]}
        }))
        .unwrap()
    }

    fn endpoint(addr: &str, pod: &str, image: &str) -> Endpoint {
        Endpoint {
            addr: addr.parse().unwrap(),
            pod: pod.into(),
            image: image.into(),
        }
    }

    #[test]
    fn ready_loopback_pods_serve_each_tcp_port() {
        let mut p = pod("web-1", "127.9.0.4", true, &[8080, 9090], "web:bad");
        p.spec.as_mut().unwrap().containers[0]
            .ports
            .as_mut()
            .unwrap()[1]
            .protocol = Some("UDP".into());
        assert_eq!(
            wanted(&p),
            vec![endpoint("127.9.0.4:8080", "web-1", "web:bad")]
        );
    }

    #[test]
    fn other_pods_serve_nothing() {
        let cases = [
            pod("not-ready", "127.9.0.4", false, &[8080], "web:v1"),
            pod("real-network", "10.0.0.4", true, &[8080], "web:v1"),
            pod("no-ports", "127.9.0.4", true, &[], "web:v1"),
            pod("bad-ip", "not-an-ip", true, &[8080], "web:v1"),
            pod("port-too-big", "127.9.0.4", true, &[70_000], "web:v1"),
        ];
        for p in &cases {
            assert_eq!(wanted(p), vec![], "{:?}", p.metadata.name);
        }
        let mut terminating = pod("terminating", "127.9.0.4", true, &[8080], "web:v1");
        terminating.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        assert_eq!(wanted(&terminating), vec![]);
    }

    async fn get(addr: SocketAddr) -> Option<String> {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut out = String::new();
        stream.read_to_string(&mut out).await.ok()?;
        Some(out)
    }

    fn free_addr(ip: &str) -> SocketAddr {
        let probe = std::net::TcpListener::bind((ip, 0)).unwrap();
        probe.local_addr().unwrap()
    }

    #[tokio::test]
    async fn bound_addresses_answer_with_the_pod_name_and_close_when_removed() {
        let addr = free_addr("127.0.0.1");
        let mut listeners = Listeners::new(Limits::default());
        let web1 = endpoint(&addr.to_string(), "web-1", "web:v1");
        listeners.set("uid-1", std::slice::from_ref(&web1)).await;
        let answer = get(addr).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("x-pod-name: web-1\r\n"), "{answer}");

        // Another pod gets the same IP before the first one's deletion is seen: it takes the address.
        let web2 = endpoint(&addr.to_string(), "web-2", "web:v1");
        assert_eq!(
            listeners.plan("uid-2", std::slice::from_ref(&web2)),
            Change {
                unbind: vec![addr],
                bind: vec![web2.clone()]
            }
        );
        listeners.set("uid-2", std::slice::from_ref(&web2)).await;
        assert!(get(addr).await.unwrap().contains("x-pod-name: web-2\r\n"));
        // The first pod's deletion then closes nothing of the second's.
        listeners.remove("uid-1").await;
        assert!(get(addr).await.unwrap().contains("x-pod-name: web-2\r\n"));
        assert_eq!(listeners.len(), 1);

        listeners.remove("uid-2").await;
        assert_eq!(listeners.len(), 0);
        assert!(get(addr).await.is_none(), "address still answers");
    }

    #[tokio::test]
    async fn unchanged_pods_keep_their_listeners() {
        let addr = free_addr("127.0.0.1");
        let mut listeners = Listeners::new(Limits::default());
        let web = endpoint(&addr.to_string(), "web-1", "web:v1");
        listeners.set("uid-1", std::slice::from_ref(&web)).await;
        assert_eq!(
            listeners.plan("uid-1", std::slice::from_ref(&web)),
            Change::default()
        );
        listeners.remove("uid-1").await;
    }

    #[tokio::test]
    async fn bad_pods_answer_some_500() {
        let addr = free_addr("127.0.0.1");
        let mut listeners = Listeners::new(Limits::default());
        listeners
            .set(
                "uid-1",
                &[endpoint(&addr.to_string(), "web-bad", "web:bad")],
            )
            .await;
        let mut codes = Vec::new();
        for _ in 0..60 {
            let answer = get(addr).await.unwrap();
            codes.push(answer[9..12].to_owned());
        }
        // P(no 500 in 60) = 0.7^60 ≈ 5e-10.
        assert!(codes.iter().any(|c| c == "500"), "{codes:?}");
        assert!(codes.iter().all(|c| c == "500" || c == "200"), "{codes:?}");
        listeners.remove("uid-1").await;
    }

    #[tokio::test]
    async fn connections_over_the_limit_are_closed() {
        let addr = free_addr("127.0.0.1");
        let limits = Limits {
            max_connections: 1,
            ..Limits::default()
        };
        let mut listeners = Listeners::new(limits);
        listeners
            .set("uid-1", &[endpoint(&addr.to_string(), "web-1", "web:v1")])
            .await;
        // The first connection holds the only permit while idle.
        // The kernel's accept queue is FIFO, so the idle one is accepted (and served) first.
        let _idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert_eq!(get(addr).await.as_deref(), Some(""));
        listeners.remove("uid-1").await;
    }
}
