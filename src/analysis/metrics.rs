//! AnalysisRun metrics, read from the AnalysisRun cache at scrape time (so finished or deleted runs
//! leave no stale series): `sluice_analysis_run_metric_phase{namespace,analysis_run,metric,phase}`
//! (1 per metric of each run) and `sluice_analysis_measurement_value{namespace,analysis_run,metric}`
//! (the latest numeric measurement of each metric).

use kube::ResourceExt;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use crate::api::analysis::{AnalysisRun, MetricResult};
use crate::metrics::{Labels, encode_gauge_family, encode_info_family};

/// Encodes both families from the cached AnalysisRuns.
pub struct AnalysisRunMetrics {
    pub runs: Store<AnalysisRun>,
}

impl std::fmt::Debug for AnalysisRunMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AnalysisRunMetrics")
    }
}

impl Collector for AnalysisRunMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let runs = self.runs.state();
        let phases = runs.iter().flat_map(|run| metric_phases(run)).collect();
        encode_info_family(
            &mut encoder,
            "analysis_run_metric_phase",
            "Phase of each metric of each AnalysisRun (1 per metric)",
            phases,
        )?;
        let values = runs.iter().flat_map(|run| latest_values(run)).collect();
        encode_gauge_family(
            &mut encoder,
            "analysis_measurement_value",
            "Latest numeric measurement of each metric of each AnalysisRun",
            values,
        )
    }
}

fn results(run: &AnalysisRun) -> &[MetricResult] {
    run.status
        .as_ref()
        .map_or(&[][..], |s| s.metric_results.as_slice())
}

fn metric_labels(run: &AnalysisRun, metric: &str) -> Labels {
    vec![
        ("namespace".into(), run.namespace().unwrap_or_default()),
        ("analysis_run".into(), run.name_any()),
        ("metric".into(), metric.to_string()),
    ]
}

/// One label set per metric result, with its phase.
pub fn metric_phases(run: &AnalysisRun) -> Vec<Labels> {
    results(run)
        .iter()
        .map(|result| {
            let mut labels = metric_labels(run, &result.name);
            labels.push(("phase".into(), result.phase.to_string()));
            labels
        })
        .collect()
}

/// The latest measurement of each metric whose value reads as a number (a scalar, or the first
/// element of a vector result such as `[0.97]`).
pub fn latest_values(run: &AnalysisRun) -> Vec<(Labels, f64)> {
    results(run)
        .iter()
        .filter_map(|result| {
            let value = result.measurements.last()?.value.as_deref()?;
            Some((metric_labels(run, &result.name), first_number(value)?))
        })
        .collect()
}

fn first_number(value: &str) -> Option<f64> {
    let inner = value.trim().trim_start_matches('[').trim_end_matches(']');
    inner.split(',').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run() -> AnalysisRun {
        serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisRun",
            "metadata": {"name": "web-abc-2-step", "namespace": "shop"},
            "spec": {"metrics": []},
            "status": {"phase": "Running", "metricResults": [
                {"name": "success-rate", "phase": "Running", "measurements": [
                    {"phase": "Successful", "value": "[0.99]"},
                    {"phase": "Successful", "value": "[0.97, 0.5]"}
                ]},
                {"name": "latency", "phase": "Failed", "measurements": [
                    {"phase": "Failed", "value": "0.8"}
                ]},
                {"name": "no-data", "phase": "Error", "measurements": [
                    {"phase": "Error", "value": "[]"}
                ]},
                {"name": "pending", "phase": "Pending"}
            ]}
        }))
        .unwrap()
    }

    fn label<'a>(labels: &'a Labels, key: &str) -> &'a str {
        labels
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    }

    #[test]
    fn one_phase_sample_per_metric() {
        let phases = metric_phases(&run());
        let got: Vec<(&str, &str)> = phases
            .iter()
            .map(|l| (label(l, "metric"), label(l, "phase")))
            .collect();
        assert_eq!(
            got,
            vec![
                ("success-rate", "Running"),
                ("latency", "Failed"),
                ("no-data", "Error"),
                ("pending", "Pending")
            ]
        );
        assert_eq!(label(&phases[0], "analysis_run"), "web-abc-2-step");
        assert_eq!(label(&phases[0], "namespace"), "shop");
    }

    #[test]
    fn latest_numeric_value_per_metric() {
        let values: Vec<(String, f64)> = latest_values(&run())
            .into_iter()
            .map(|(l, v)| (label(&l, "metric").to_string(), v))
            .collect();
        assert_eq!(
            values,
            vec![
                ("success-rate".to_string(), 0.97),
                ("latency".to_string(), 0.8)
            ]
        );
    }
}
