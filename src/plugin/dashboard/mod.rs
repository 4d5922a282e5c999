//! `kubectl sluice dashboard`: a live web page of Applications, Rollouts and their Events, served on
//! 127.0.0.1 with the caller's kubeconfig (Kubernetes RBAC is the access control, as `kubectl argo
//! rollouts dashboard`). The page is embedded in the binary and fetches nothing else; it follows
//! the watches through server-sent events, and its buttons run the plugin's own commands.

mod cache;
pub mod http;
pub mod views;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};

use rand::RngCore;

use crate::plugin::cli::DashboardArgs;
use crate::plugin::client::Kube;
use crate::plugin::error::{EXIT_OK, PluginError};
pub use cache::Scope;

/// Serves until interrupted; prints the URL first (a line tests and scripts read).
pub async fn serve(
    kube: &Kube,
    args: &DashboardArgs,
    out: &mut dyn Write,
) -> Result<u8, PluginError> {
    let scope = if args.all_namespaces {
        Scope::All
    } else {
        Scope::Namespace(kube.namespace.clone())
    };
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| PluginError::Invalid(format!("cannot listen on {address}: {e}")))?;
    let listen_error =
        |e: std::io::Error| PluginError::Invalid(format!("cannot listen on {address}: {e}"));
    let port = listener.local_addr().map_err(listen_error)?.port();
    let dashboard = http::Dashboard {
        cache: cache::Cache::start(&kube.client, &scope),
        kube: kube.clone(),
        scope,
        token: token(),
        hosts: vec![format!("127.0.0.1:{port}"), format!("localhost:{port}")],
    };
    writeln!(
        out,
        "Sluice dashboard: http://127.0.0.1:{port}/ (Ctrl-C to stop)"
    )?;
    out.flush()?;
    let server = axum::serve(listener, http::router(dashboard));
    tokio::select! {
        served = server => served.map_err(listen_error)?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(EXIT_OK)
}

/// 128 random bits, hex.
fn token() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
