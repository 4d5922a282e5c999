//! `sluice controller`: connects to the cluster, serves the metrics and health endpoints, takes part in
//! leader election when asked, and runs the controllers of every subsystem while it leads, until
//! SIGTERM or Ctrl-C.

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;

use crate::cli::ControllerArgs;
use crate::error::Result;
use crate::kube_requests::KubeRequestCounter;
use crate::leader::{LeaderElector, Timings, holder_identity};
use crate::metrics::Metrics;
use crate::server::{self, Readiness};

/// Runs the controller process until it is asked to stop or loses the leader lease.
pub async fn run(args: ControllerArgs) -> Result<()> {
    crate::tls::install_crypto_provider();
    let git_limits = args.git_limits.limits(args.repo_poll_interval);
    if let Err(e) = crate::gitops::source::set_process_limits(&git_limits) {
        tracing::warn!(error = %e, "cannot set the Git network timeouts");
    }
    let metrics = Metrics::new();
    let readiness = Readiness::default();
    let leader_gauge = Gauge::<i64>::default();
    metrics.register(|r| {
        r.register(
            "leader",
            "1 while this process holds the leader lease (always 1 without --leader-elect)",
            leader_gauge.clone(),
        )
    });

    let config = kube::Config::infer()
        .await
        .map_err(kube::Error::InferConfig)?;
    let kube_requests = KubeRequestCounter::register(&metrics);
    // Impersonating clients are built from the same configuration (server, CA, credentials).
    let sync_impersonation = args.sync_impersonation.then(|| {
        crate::gitops::impersonation::Impersonator::new(config.clone(), kube_requests.clone())
    });
    let client = kube::client::ClientBuilder::try_from(config)?
        .with_layer(&kube_requests)
        .build();
    let version = client.apiserver_version().await?;
    tracing::info!(
        server_version = %version.git_version,
        namespace = args.namespace.as_deref().unwrap_or("<all>"),
        git_cache_dir = %args.git_cache_dir().display(),
        prometheus_url = args.prometheus_url().as_deref().unwrap_or("<none>"),
        "connected to the cluster"
    );
    readiness.set_connected(true);

    let control_namespace = control_namespace(
        args.namespace.as_deref(),
        std::env::var("POD_NAMESPACE").ok().as_deref(),
    );
    let elector = args.leader_elect.then(|| {
        LeaderElector::new(
            client.clone(),
            &control_namespace,
            holder_identity(),
            Timings::default(),
        )
    });
    // Without election this process always leads; the sender lives as long as `run`.
    let (_always_leading, always) = watch::channel(true);
    let leading = elector.as_ref().map_or(always, LeaderElector::subscribe);

    let git_requests = crate::gitops::source::GitRequestMetrics::register(&metrics);
    let repos = crate::gitops::source::RepoCache::new(args.git_cache_dir(), git_requests.clone())
        .with_limits(git_limits.clone());
    let controllers = Controllers {
        client: client.clone(),
        readiness: readiness.clone(),
        namespace: args.namespace.clone(),
        prometheus_url: args.prometheus_url(),
        rollout_workers: args.rollout_workers,
        metrics: metrics.clone(),
        gitops: crate::gitops::controller::GitopsSettings {
            namespace: args.namespace.clone(),
            control_namespace: control_namespace.clone(),
            poll_interval: args.repo_poll_interval,
            cache_dir: args.git_cache_dir(),
            webhook_addr: args.webhook_addr,
            webhook_insecure: args.webhook_insecure,
            git_requests: git_requests.clone(),
            git_limits,
            render_remote: args.render_remote_policy(),
            sync_impersonation,
            kube_requests: kube_requests.clone(),
            repos: repos.clone(),
        },
        appsets: crate::appset::controller::AppSetSettings {
            control_namespace: control_namespace.clone(),
            poll_interval: args.repo_poll_interval,
            repos,
        },
        revert: crate::revert::controller::RevertSettings {
            namespace: args.namespace.clone(),
            control_namespace: control_namespace.clone(),
            cache_dir: args.git_cache_dir(),
            author: args.git_author.clone(),
            git_requests,
            allow_insecure_http: args.git_limits.git_allow_insecure_http,
        },
        notifications: crate::notifications::controller::NotificationSettings {
            namespace: args.namespace.clone(),
            control_namespace: control_namespace.clone(),
            retry: crate::notifications::services::RetryPolicy::default(),
        },
    };
    let endpoints = server::serve(args.metrics_addr, server::router(metrics, readiness));
    let campaign = async {
        match &elector {
            Some(elector) => elector.run().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        served = endpoints => served,
        lost = campaign => lost.map_err(Into::into),
        () = controllers.run_while_leading(leading, leader_gauge) => Ok(()),
        () = shutdown_signal() => {
            tracing::info!("shutting down");
            if let Some(elector) = &elector {
                elector.release().await;
            }
            Ok(())
        }
    }
}

/// The control namespace (the Lease, projects, repository Secrets): `--namespace`, else the pod's
/// namespace, else `default`.
fn control_namespace(watched: Option<&str>, pod_namespace: Option<&str>) -> String {
    watched
        .or(pod_namespace)
        .filter(|ns| !ns.is_empty())
        .unwrap_or("default")
        .to_string()
}

/// The watch caches of the controllers, each reported to `/readyz` once synced.
const CACHES: [&str; 9] = [
    "rollouts",
    "experiments",
    "analysistemplates",
    "clusteranalysistemplates",
    "analysisruns",
    "applications",
    "appprojects",
    "reverts",
    "applicationsets",
];

/// What the reconcilers share.
struct Controllers {
    client: kube::Client,
    readiness: Readiness,
    namespace: Option<String>,
    prometheus_url: Option<String>,
    rollout_workers: u16,
    metrics: Metrics,
    gitops: crate::gitops::controller::GitopsSettings,
    revert: crate::revert::controller::RevertSettings,
    notifications: crate::notifications::controller::NotificationSettings,
    appsets: crate::appset::controller::AppSetSettings,
}

impl Controllers {
    /// Waits for leadership, then runs the reconcilers. Standbys never get past the wait, so they
    /// never write; losing the lease ends the whole process (see [`crate::leader`]).
    async fn run_while_leading(self, mut leading: watch::Receiver<bool>, leader_gauge: Gauge<i64>) {
        if leading.wait_for(|leads| *leads).await.is_err() {
            // The elector is gone: the select in `run` ends the process through its result.
            return std::future::pending().await;
        }
        leader_gauge.set(1);
        tracing::info!("leading: controllers running");
        let ready = self.readiness;
        ready.expect_caches(&CACHES);
        let analysis = crate::analysis::controller::run(
            self.client.clone(),
            crate::analysis::controller::AnalysisContext {
                prometheus_url: self.prometheus_url,
                namespace: self.namespace.clone(),
                metrics: self.metrics.clone(),
            },
            ready.clone(),
        );
        let applications = crate::gitops::controller::run(
            self.client.clone(),
            self.gitops,
            self.metrics.clone(),
            ready.clone(),
        );
        let reverts = crate::revert::controller::run(
            self.client.clone(),
            self.revert,
            self.metrics.clone(),
            ready.clone(),
        );
        let experiments = crate::experiment::controller::run(
            self.client.clone(),
            self.namespace.clone(),
            self.metrics.clone(),
            ready.clone(),
        );
        let appsets = crate::appset::controller::run(
            self.client.clone(),
            self.appsets,
            self.metrics.clone(),
            ready.clone(),
        );
        // Its own watches: a slow receiver never holds up the reconcilers above.
        let notifications = crate::notifications::controller::run(
            self.client.clone(),
            self.notifications,
            self.metrics.clone(),
        );
        let rollouts = crate::rollout::controller::run(
            self.client,
            crate::rollout::controller::RolloutSettings {
                namespace: self.namespace,
                workers: self.rollout_workers,
            },
            self.metrics,
            ready,
        );
        tokio::join!(
            analysis,
            rollouts,
            experiments,
            applications,
            reverts,
            notifications,
            appsets
        );
        // A controller stream only ends when the process is shutting down.
        std::future::pending().await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_namespace_fallbacks() {
        assert_eq!(control_namespace(Some("team"), Some("pod-ns")), "team");
        assert_eq!(control_namespace(None, Some("pod-ns")), "pod-ns");
        assert_eq!(control_namespace(None, None), "default");
        assert_eq!(control_namespace(None, Some("")), "default");
    }
}
