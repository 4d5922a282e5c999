//! `sluice_rollout_info{namespace,name,strategy,phase}`: read from the Rollout cache at scrape time,
//! so a deleted Rollout or a changed phase never leaves a stale series behind.

use kube::ResourceExt;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use crate::api::rollout::Rollout;
use crate::metrics::{Labels, encode_info_family};

/// Encodes one `sluice_rollout_info` sample per cached Rollout.
pub struct RolloutInfo {
    pub rollouts: Store<Rollout>,
}

impl std::fmt::Debug for RolloutInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RolloutInfo")
    }
}

impl Collector for RolloutInfo {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let samples: Vec<Labels> = self
            .rollouts
            .state()
            .iter()
            .map(|r| info_labels(r))
            .collect();
        encode_info_family(
            &mut encoder,
            "rollout_info",
            "Rollouts by strategy and phase (1 per Rollout)",
            samples,
        )
    }
}

/// The labels of one Rollout's info sample; an unset phase (not reconciled yet) is `Unknown`.
pub fn info_labels(rollout: &Rollout) -> Labels {
    let strategy = if rollout.spec.strategy.blue_green.is_some() {
        "blueGreen"
    } else {
        "canary"
    };
    let phase = rollout
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .map_or("Unknown".to_string(), |p| p.to_string());
    vec![
        ("namespace".into(), rollout.namespace().unwrap_or_default()),
        ("name".into(), rollout.name_any()),
        ("strategy".into(), strategy.into()),
        ("phase".into(), phase),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::rollout::{RolloutPhase, RolloutStatus};
    use crate::rollout::simulate::{blue_green, canary};

    #[test]
    fn info_labels_name_strategy_and_phase() {
        let mut c = canary(3, vec![]);
        c.metadata.namespace = Some("shop".into());
        let mut bg = blue_green(3);
        bg.status = Some(RolloutStatus {
            phase: Some(RolloutPhase::Paused),
            ..Default::default()
        });
        let value = |labels: &Labels, key: &str| {
            labels
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let c_labels = info_labels(&c);
        assert_eq!(value(&c_labels, "namespace").as_deref(), Some("shop"));
        assert_eq!(value(&c_labels, "name").as_deref(), Some("web"));
        assert_eq!(value(&c_labels, "strategy").as_deref(), Some("canary"));
        assert_eq!(value(&c_labels, "phase").as_deref(), Some("Unknown"));
        let bg_labels = info_labels(&bg);
        assert_eq!(value(&bg_labels, "strategy").as_deref(), Some("blueGreen"));
        assert_eq!(value(&bg_labels, "phase").as_deref(), Some("Paused"));
    }
}
