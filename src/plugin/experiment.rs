//! `get experiment NAME`: an Experiment with its templates' ReplicaSets (replicas, ready,
//! available) and its analyses' AnalysisRuns with their phases, in the shape of Argo's
//! `kubectl argo rollouts get experiment`.

use std::io::Write;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::api::ListParams;
use kube::{Resource, ResourceExt};

use crate::api::analysis::AnalysisRun;
use crate::api::experiment::{Experiment, TEMPLATE_NAME_ANNOTATION};
use crate::api::rollout::{POD_TEMPLATE_HASH_LABEL, Rollout};
use crate::plugin::client::Kube;
use crate::plugin::error::{EXIT_OK, PluginError};
use crate::plugin::style::Style;
use crate::rollout::observe::controls;
use crate::rollout::replicasets::replica_counts;

/// Reads the Experiment and what it owns, and prints it.
pub async fn get_experiment(
    kube: &Kube,
    name: &str,
    style: Style,
    out: &mut dyn Write,
) -> Result<u8, PluginError> {
    let experiment: Experiment = kube.get("Experiment", name).await?;
    let params = ListParams::default().labels(POD_TEMPLATE_HASH_LABEL);
    let replica_sets: Vec<ReplicaSet> = kube
        .namespaced::<ReplicaSet>()
        .list(&params)
        .await
        .map_err(|e| kube.error(e, "ReplicaSet", "", "list ReplicaSets"))?
        .items
        .into_iter()
        .filter(|rs| controls(rs, &experiment))
        .collect();
    let runs: Vec<AnalysisRun> = kube
        .namespaced::<AnalysisRun>()
        .list(&ListParams::default())
        .await
        .map_err(|e| kube.error(e, "AnalysisRun", "", "list AnalysisRuns"))?
        .items
        .into_iter()
        .filter(|run| controls(run, &experiment))
        .collect();
    let text = render_experiment(&experiment, &replica_sets, &runs, Timestamp::now(), style);
    out.write_all(text.as_bytes())?;
    Ok(EXIT_OK)
}

/// The printed form. Pure.
pub fn render_experiment(
    experiment: &Experiment,
    replica_sets: &[ReplicaSet],
    runs: &[AnalysisRun],
    now: Timestamp,
    style: Style,
) -> String {
    let status = experiment.status.clone().unwrap_or_default();
    let phase = status.phase.map_or("Pending", |p| p.as_str());
    let mut out = String::new();
    let mut line = |label: &str, value: &str| {
        out.push_str(&format!("{:<16}{value}\n", format!("{label}:")));
    };
    line("Name", &experiment.name_any());
    line("Namespace", &experiment.namespace().unwrap_or_default());
    line("Status", &style.status(phase));
    if let Some(message) = status.message.as_deref().filter(|m| !m.is_empty()) {
        line("Message", message);
    }
    if let Some(duration) = &experiment.spec.duration {
        line("Duration", duration);
    }
    if let Some(at) = &status.available_at {
        line("AvailableAt", &at.0.to_string());
        line(
            "Running for",
            &format!("{}s", (now - at.0).get_seconds().max(0)),
        );
    }
    out.push_str("\nTEMPLATES:\n");
    out.push_str(&format!(
        "  {:<16}{:<40}{:<14}{:<10}{:<8}{:<10}{}\n",
        "NAME", "REPLICASET", "STATUS", "DESIRED", "READY", "AVAILABLE", "HASH"
    ));
    for template in &experiment.spec.templates {
        let ts = status
            .template_statuses
            .iter()
            .find(|t| t.name == template.name);
        let rs = replica_sets
            .iter()
            .find(|rs| rs.annotations().get(TEMPLATE_NAME_ANNOTATION) == Some(&template.name));
        let counts = rs.map(replica_counts).unwrap_or_default();
        let template_status = ts.and_then(|t| t.status).map_or("Pending", |s| s.as_str());
        out.push_str(&format!(
            "  {:<16}{:<40}{:<14}{:<10}{:<8}{:<10}{}\n",
            template.name,
            rs.map(|rs| rs.name_any())
                .unwrap_or_else(|| "-".to_string()),
            template_status,
            counts.desired,
            counts.ready,
            counts.available,
            ts.and_then(|t| t.pod_template_hash.clone())
                .unwrap_or_default(),
        ));
    }
    if !experiment.spec.analyses.is_empty() {
        out.push_str("\nANALYSIS RUNS:\n");
        out.push_str(&format!(
            "  {:<16}{:<40}{:<14}{}\n",
            "NAME", "ANALYSISRUN", "PHASE", "MESSAGE"
        ));
        for analysis in &experiment.spec.analyses {
            let recorded = status
                .analysis_runs
                .iter()
                .find(|r| r.name == analysis.name);
            let run_name = recorded.map(|r| r.analysis_run.clone()).unwrap_or_default();
            let live = runs.iter().find(|r| r.name_any() == run_name);
            let phase = live
                .and_then(|r| r.status.as_ref())
                .and_then(|s| s.phase)
                .or(recorded.map(|r| r.phase))
                .map_or("Pending", |p| p.as_str());
            let message = live
                .and_then(|r| r.status.as_ref())
                .and_then(|s| s.message.clone())
                .or_else(|| recorded.and_then(|r| r.message.clone()))
                .unwrap_or_default();
            out.push_str(&format!(
                "  {:<16}{:<40}{:<14}{}\n",
                analysis.name,
                if run_name.is_empty() { "-" } else { &run_name },
                phase,
                message
            ));
        }
    }
    if let Some(owner) = experiment
        .owner_references()
        .iter()
        .find(|o| o.kind == Rollout::kind(&()))
    {
        out.push_str(&format!("\nOwned by Rollout {}\n", owner.name));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prints_phase_templates_with_replica_sets_and_runs_with_phases() {
        let experiment: Experiment = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Experiment",
            "metadata": {"name": "exp", "namespace": "ns", "uid": "u1"},
            "spec": {"duration": "1m", "templates": [
                {"name": "baseline", "selector": {"matchLabels": {"a": "b"}}, "template": {}},
                {"name": "canary", "selector": {"matchLabels": {"a": "c"}}, "template": {}}],
                "analyses": [{"name": "check", "templateName": "t"}]},
            "status": {"phase": "Running",
                "templateStatuses": [{"name": "baseline", "replicas": 1, "updatedReplicas": 1,
                    "readyReplicas": 1, "availableReplicas": 1, "status": "Running",
                    "podTemplateHash": "abc"}],
                "analysisRuns": [{"name": "check", "analysisRun": "exp-check", "phase": "Running"}]}
        }))
        .unwrap();
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "exp-baseline", "annotations": {TEMPLATE_NAME_ANNOTATION: "baseline"}},
            "spec": {"replicas": 1, "selector": {}},
            "status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1}
        }))
        .unwrap();
        let run: AnalysisRun = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisRun",
            "metadata": {"name": "exp-check"},
            "spec": {"metrics": []},
            "status": {"phase": "Failed", "message": "metric m failed"}
        }))
        .unwrap();
        let text = render_experiment(
            &experiment,
            &[rs],
            &[run],
            "2026-01-01T00:00:00Z".parse().unwrap(),
            Style::PLAIN,
        );
        assert!(text.contains("Status:         ✔ Running"), "{text}");
        let baseline = text.lines().find(|l| l.contains("baseline")).unwrap();
        assert!(
            baseline.contains("exp-baseline") && baseline.contains("Running"),
            "{text}"
        );
        assert!(baseline.contains("abc"), "{text}");
        let canary = text
            .lines()
            .find(|l| l.trim_start().starts_with("canary"))
            .unwrap();
        assert!(canary.contains("Pending"), "{text}");
        let check = text.lines().find(|l| l.contains("exp-check")).unwrap();
        assert!(
            check.contains("Failed") && check.contains("metric m failed"),
            "{text}"
        );
    }
}
