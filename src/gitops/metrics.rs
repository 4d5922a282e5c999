//! The GitOps core's metrics:
//! - `sluice_application_info{namespace,name,sync_status,health_status}`, read from the Application
//!   cache at scrape time (no stale series for deleted Applications or old statuses);
//! - `sluice_application_sync_total{phase}`: finished sync operations by phase.
//!
//! Git requests are counted where they are made ([`crate::gitops::source::GitRequestMetrics`]).

use kube::ResourceExt;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::api::application::{Application, OperationPhase};
use crate::metrics::{Labels, Metrics, encode_info_family};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

/// The counters the reconciler updates.
#[derive(Clone, Default)]
pub struct GitopsMetrics {
    syncs: Family<PhaseLabels, Counter>,
}

impl GitopsMetrics {
    /// Registers the families on `metrics`, the info family reading `applications`.
    pub fn register(metrics: &Metrics, applications: Store<Application>) -> Self {
        let me = Self::default();
        metrics.register(|r| {
            r.register(
                "application_sync",
                "Finished Application sync operations by phase",
                me.syncs.clone(),
            );
            r.register_collector(Box::new(ApplicationInfo { applications }));
        });
        me
    }

    /// Counts a finished (or retrying) sync operation.
    pub fn sync_finished(&self, phase: OperationPhase) {
        self.syncs
            .get_or_create(&PhaseLabels {
                phase: format!("{phase:?}"),
            })
            .inc();
    }
}

struct ApplicationInfo {
    applications: Store<Application>,
}

impl std::fmt::Debug for ApplicationInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApplicationInfo")
    }
}

impl Collector for ApplicationInfo {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let samples: Vec<Labels> = self
            .applications
            .state()
            .iter()
            .map(|a| info_labels(a))
            .collect();
        encode_info_family(
            &mut encoder,
            "application_info",
            "Applications by sync and health status (1 per Application)",
            samples,
        )
    }
}

/// The labels of one Application's info sample.
pub fn info_labels(app: &Application) -> Labels {
    let status = app.status.clone().unwrap_or_default();
    vec![
        ("namespace".into(), app.namespace().unwrap_or_default()),
        ("name".into(), app.name_any()),
        ("sync_status".into(), status.sync_status().to_string()),
        ("health_status".into(), status.health_status().to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn families_are_exposed_with_their_labels() {
        let metrics = Metrics::new();
        let (store, mut writer) = kube::runtime::reflector::store::<Application>();
        let app: Application = serde_json::from_value(json!({
            "metadata": {"name": "shop", "namespace": "argocd"},
            "spec": {"source": {"repoURL": "r"}, "destination": {}},
            "status": {"sync": {"status": "Synced"}, "health": {"status": "Degraded"}}
        }))
        .unwrap();
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(app));
        let gitops = GitopsMetrics::register(&metrics, store);
        gitops.sync_finished(OperationPhase::Succeeded);
        let text = metrics.encode().unwrap();
        assert!(text.contains(
            r#"sluice_application_info{namespace="argocd",name="shop",sync_status="Synced",health_status="Degraded"} 1"#
        ), "{text}");
        assert!(
            text.contains(r#"sluice_application_sync_total{phase="Succeeded"} 1"#),
            "{text}"
        );
    }
}
