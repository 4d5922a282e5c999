//! `sluice controller`: connects to the cluster, serves the metrics and health endpoints, and runs the
//! controllers of every subsystem until SIGTERM or Ctrl-C.

use crate::cli::ControllerArgs;
use crate::error::Result;
use crate::metrics::Metrics;
use crate::server::{self, Readiness};

/// Runs the controller process until it is asked to stop.
pub async fn run(args: ControllerArgs) -> Result<()> {
    crate::tls::install_crypto_provider();
    let metrics = Metrics::new();
    let readiness = Readiness::default();

    let client = kube::Client::try_default().await?;
    let version = client.apiserver_version().await?;
    tracing::info!(
        server_version = %version.git_version,
        namespace = args.namespace.as_deref().unwrap_or("<all>"),
        git_cache_dir = %args.git_cache_dir().display(),
        prometheus_url = args.prometheus_url().as_deref().unwrap_or("<none>"),
        "connected to the cluster"
    );
    readiness.set_ready(true);

    let endpoints = server::serve(args.metrics_addr, server::router(metrics, readiness));
    tokio::select! {
        served = endpoints => served,
        () = shutdown_signal() => {
            tracing::info!("shutting down");
            Ok(())
        }
    }
}

/// Resolves on SIGTERM (how Kubernetes stops a pod) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
