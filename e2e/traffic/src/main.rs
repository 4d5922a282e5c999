//! `sluice-traffic`: the emulated data plane of Sluice's end-to-end tests.
//!
//! Every tick it reads the live traffic split of each Rollout (HTTPRoute weights, NGINX canary weight,
//! blue-green active Service, or ready pods without a router), emulates requests against the revisions
//! (behaviour chosen by image tag, see [`behaviour`]) and exposes them as Prometheus metrics.
//! With `--serve-pods` it also answers real HTTP on every Ready pod's `podIP:containerPort` with the
//! same behaviour (see [`pods`]), and writes the EndpointSlices of selector Services that the API server
//! would refuse from kube-controller-manager for loopback pod IPs (see [`endpoints`]), for a real proxy
//! in front of the pods.

mod behaviour;
mod endpoints;
mod engine;
mod metrics;
mod observe;
mod pods;
mod routes;
mod split;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::time::{Instant, MissedTickBehavior};
use tracing_subscriber::EnvFilter;

/// Emulated data plane: sends synthetic requests along each Rollout's live traffic split and exposes
/// `http_requests_total` and `http_request_duration_seconds` for Prometheus.
#[derive(Debug, Parser)]
#[command(name = "sluice-traffic", version)]
struct Args {
    /// Address serving /metrics and /healthz (loopback only).
    #[arg(long, env = "SLUICE_TRAFFIC_LISTEN", default_value = "127.0.0.1:9101", value_parser = parse_listen)]
    listen: SocketAddr,
    /// Requests per second per Rollout.
    #[arg(long, env = "SLUICE_TRAFFIC_RATE", default_value_t = 20.0, value_parser = parse_rate)]
    rate: f64,
    /// Requests per second sent to each blue-green preview Service (0 = none, like real users).
    #[arg(long, env = "SLUICE_TRAFFIC_PREVIEW_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    preview_rate: f64,
    /// Only Rollouts in this namespace (default: all namespaces).
    #[arg(long, env = "SLUICE_TRAFFIC_NAMESPACE")]
    namespace: Option<String>,
    /// Milliseconds between reads of the cluster.
    #[arg(long, env = "SLUICE_TRAFFIC_TICK_MS", default_value_t = 250, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    tick_ms: u64,
    /// The header (`NAME=VALUE`) a share of the emulated requests carries, so that header routes
    /// (an HTTPRoute rule matching it, NGINX `canary-by-header`) can be seen in
    /// `http_requests_total{traffic="header"}`.
    #[arg(long, env = "SLUICE_TRAFFIC_HEADER", default_value = DEFAULT_HEADER, value_parser = parse_header)]
    header: (String, String),
    /// Share (0 to 1) of the requests that carry `--header`.
    #[arg(long, env = "SLUICE_TRAFFIC_HEADER_SHARE", default_value_t = 0.2, value_parser = parse_share)]
    header_share: f64,
    /// Seed for the request emulation (default: random).
    #[arg(long, env = "SLUICE_TRAFFIC_SEED")]
    seed: Option<u64>,
    /// Also serve HTTP on each Ready pod's loopback `podIP:containerPort` (pods with other IPs are
    /// skipped), answering as the container's image tag says, with an `X-Pod-Name` header; and keep
    /// selector Services' EndpointSlices (address type FQDN), which the cluster then must not write.
    #[arg(long, env = "SLUICE_TRAFFIC_SERVE_PODS")]
    serve_pods: bool,
}

fn parse_listen(value: &str) -> Result<SocketAddr, String> {
    let addr = match value.strip_prefix("localhost:") {
        Some(port) => SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            port.parse::<u16>()
                .map_err(|e| format!("bad port {port:?}: {e}"))?,
        )),
        None => value
            .parse::<SocketAddr>()
            .map_err(|e| format!("{value:?} is not HOST:PORT: {e}"))?,
    };
    if addr.ip().is_loopback() {
        Ok(addr)
    } else {
        Err(format!(
            "{addr} is not a loopback address; use 127.0.0.1 or localhost"
        ))
    }
}

/// The header emulated requests carry by default.
const DEFAULT_HEADER: &str = "x-sluice-canary=true";

fn parse_header(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((name, value))
            if !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Ok((name.to_owned(), value.to_owned()))
        }
        _ => Err(format!("{value:?} is not NAME=VALUE with a header name")),
    }
}

fn parse_share(value: &str) -> Result<f64, String> {
    let share: f64 = value.parse().map_err(|e| format!("{value:?}: {e}"))?;
    if share.is_finite() && (0.0..=1.0).contains(&share) {
        Ok(share)
    } else {
        Err(format!("{value} is not between 0 and 1"))
    }
}

fn parse_rate(value: &str) -> Result<f64, String> {
    let rate: f64 = value.parse().map_err(|e| format!("{value:?}: {e}"))?;
    if rate.is_finite() && (0.0..=100_000.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("{value} is not between 0 and 100000"))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            // kube's client logs every failed request at ERROR; the engine already reports each failure
            // once (then at DEBUG), so that line is off unless RUST_LOG asks for it.
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,kube_client::client::builder=off")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // kube is built with rustls + ring only; another caller may already have installed it.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let client = kube::Client::try_default()
        .await
        .context("building a Kubernetes client from KUBECONFIG")?;
    if args.serve_pods {
        tokio::spawn(pods::run(
            client.clone(),
            args.namespace.clone(),
            pods::Limits::default(),
        ));
        tokio::spawn(endpoints::run(client.clone(), args.namespace.clone()));
    }
    let observer = observe::Observer::new(client, args.namespace.clone())
        .with_header(Some(args.header.clone()));
    let metrics = Arc::new(metrics::Metrics::new());

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let bound = listener.local_addr().context("reading bound address")?;
    let server = tokio::spawn(metrics::serve(listener, Arc::clone(&metrics)));
    tracing::info!(
        listen = %bound,
        rate = args.rate,
        preview_rate = args.preview_rate,
        namespace = args.namespace.as_deref().unwrap_or("*"),
        tick_ms = args.tick_ms,
        "sluice-traffic started"
    );

    let rng = match args.seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_os_rng(),
    };
    let mut engine =
        engine::Engine::new(args.rate, args.preview_rate, rng).with_header_share(args.header_share);
    let mut interval = tokio::time::interval(Duration::from_millis(args.tick_ms));
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last = Instant::now();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    tokio::pin!(server);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            result = &mut server => {
                return match result {
                    Ok(Ok(())) => Err(anyhow::anyhow!("metrics server stopped")),
                    Ok(Err(err)) => Err(err.into()),
                    Err(err) => Err(anyhow::anyhow!("metrics server task: {err}")),
                };
            }
            _ = interval.tick() => {}
        }
        let observed = observer.observe().await;
        let now = Instant::now();
        engine.tick(observed, now.saturating_duration_since(last), &metrics);
        last = now;
    }
    tracing::info!("sluice-traffic stopping");
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_must_be_loopback() {
        assert_eq!(
            parse_listen("127.0.0.1:9101"),
            Ok("127.0.0.1:9101".parse().unwrap())
        );
        assert_eq!(
            parse_listen("localhost:9200"),
            Ok("127.0.0.1:9200".parse().unwrap())
        );
        assert_eq!(
            parse_listen("[::1]:9101"),
            Ok("[::1]:9101".parse().unwrap())
        );
        assert!(parse_listen("0.0.0.0:9101").is_err());
        assert!(parse_listen("10.1.2.3:9101").is_err());
        assert!(parse_listen("localhost:http").is_err());
        assert!(parse_listen("example.com:80").is_err());
    }

    #[test]
    fn rates_are_bounded() {
        assert_eq!(parse_rate("20"), Ok(20.0));
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        assert!(parse_rate("-1").is_err());
        assert!(parse_rate("NaN").is_err());
        assert!(parse_rate("inf").is_err());
    }

    #[test]
    fn defaults() {
        let args = Args::try_parse_from(["sluice-traffic"]).unwrap();
        assert_eq!(args.listen, "127.0.0.1:9101".parse().unwrap());
        assert!((args.rate - 20.0).abs() < f64::EPSILON);
        assert_eq!(args.tick_ms, 250);
        assert_eq!(args.namespace, None);
        assert!(!args.serve_pods);
        assert_eq!(
            args.header,
            ("x-sluice-canary".to_string(), "true".to_string())
        );
        assert!((args.header_share - 0.2).abs() < f64::EPSILON);
        assert!(Args::try_parse_from(["sluice-traffic", "--tick-ms", "0"]).is_err());
    }

    #[test]
    fn header_and_share_are_checked() {
        assert_eq!(
            parse_header("X-Beta=a=b"),
            Ok(("X-Beta".to_string(), "a=b".to_string()))
        );
        assert!(parse_header("novalue").is_err());
        assert!(parse_header("bad name=x").is_err());
        assert_eq!(parse_share("0"), Ok(0.0));
        assert!(parse_share("1.5").is_err());
        assert!(parse_share("NaN").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
