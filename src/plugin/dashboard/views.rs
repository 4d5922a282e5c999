//! What the dashboard's pages show, as JSON (PURE): built from snapshots of the watched objects,
//! so every page is a function of the cluster's state and is tested without a cluster.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use serde::Serialize;
use serde_json::{Value, json};

use crate::analysis::args::{ResolvedArgs, substitute};
use crate::api::analysis::{AnalysisRun, Argument, Measurement};
use crate::api::application::Application;
use crate::api::rollout::Rollout;
use crate::plugin::info::{
    ReplicaSetInfo, RevisionInfo, RolloutObjects, StrategyInfo, rollout_info,
};
use crate::rollout::observe::ROLLOUT_LABEL;

/// Events shown on the timeline, newest first: enough for a release, bounded for the browser.
pub const TIMELINE_LIMIT: usize = 200;

/// The kinds whose Events make the timeline.
const TIMELINE_KINDS: [&str; 4] = ["Application", "Rollout", "AnalysisRun", "Experiment"];

fn time(t: &Option<Time>) -> Value {
    t.as_ref().map_or(Value::Null, |t| json!(t.0.to_string()))
}

fn to_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// One line per Application on the overview.
pub fn application_summary(app: &Application) -> Value {
    let status = app.status.clone().unwrap_or_default();
    json!({
        "namespace": app.namespace().unwrap_or_default(),
        "name": app.name_any(),
        "project": app.spec.project,
        "sync": to_json(&status.sync_status()),
        "health": to_json(&status.health_status()),
        "revision": status.sync.as_ref().and_then(|s| s.revision.clone()),
        "repoURL": app.spec.source.repo_url,
        "path": app.spec.source.path,
        "operation": status.operation_state.as_ref().map(|o| to_json(&o.phase)),
        "reverting": status.revert.as_ref().map(|r| to_json(&r.phase)),
    })
}

/// An Application's page: its state, its resource tree (with the ReplicaSets and pods the cache
/// holds under its workloads), last operation, history, quarantine and revert record.
pub fn application_detail(app: &Application, replica_sets: &[ReplicaSet], pods: &[Pod]) -> Value {
    let status = app.status.clone().unwrap_or_default();
    let resources: Vec<Value> = status
        .resources
        .iter()
        .map(|r| {
            let namespace = r.namespace.clone();
            let children = children_of(&r.kind, &r.name, &namespace, replica_sets, pods);
            json!({
                "group": r.group, "kind": r.kind, "namespace": namespace, "name": r.name,
                "status": to_json(&r.status),
                "health": r.health.as_ref().map(|h| to_json(&h.status)),
                "message": r.health.as_ref().and_then(|h| h.message.clone()),
                "children": children,
            })
        })
        .collect();
    let mut detail = application_summary(app);
    let extra = json!({
        "targetRevision": app.spec.source.target_revision,
        "destination": to_json(&app.spec.destination),
        "resources": resources,
        "lastOperation": status.operation_state.as_ref().map(to_json),
        "history": status.history.iter().rev().map(to_json).collect::<Vec<_>>(),
        "quarantined": status.quarantined_revisions,
        "revert": status.revert.as_ref().map(to_json),
        "conditions": status.conditions.iter().map(to_json).collect::<Vec<_>>(),
        "healthMessage": status.health.as_ref().and_then(|h| h.message.clone()),
    });
    merge(&mut detail, extra);
    detail
}

/// The ReplicaSets a workload owns, each with its pods (the live part of Argo CD's resource tree).
fn children_of(
    kind: &str,
    name: &str,
    namespace: &str,
    replica_sets: &[ReplicaSet],
    pods: &[Pod],
) -> Vec<Value> {
    if !matches!(kind, "Rollout" | "Deployment") {
        return Vec::new();
    }
    replica_sets
        .iter()
        .filter(|rs| rs.namespace().as_deref() == Some(namespace) && owned_by(*rs, kind, name))
        .map(|rs| {
            let rs_name = rs.name_any();
            let pods: Vec<Value> = pods
                .iter()
                .filter(|p| {
                    p.namespace().as_deref() == Some(namespace)
                        && owned_by(*p, "ReplicaSet", &rs_name)
                })
                .map(|p| json!({"kind": "Pod", "name": p.name_any(), "status": pod_phase(p)}))
                .collect();
            let status = rs.status.clone().unwrap_or_default();
            json!({
                "kind": "ReplicaSet", "name": rs_name,
                "status": format!("{}/{} ready", status.ready_replicas.unwrap_or(0), status.replicas),
                "children": pods,
            })
        })
        .collect()
}

fn owned_by(object: &impl ResourceExt, kind: &str, name: &str) -> bool {
    object
        .owner_references()
        .iter()
        .any(|o| o.kind == kind && o.name == name)
}

fn pod_phase(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Unknown".to_string())
}

/// One line per Rollout on the overview.
pub fn rollout_summary(rollout: &Rollout) -> Value {
    let info = rollout_info(&RolloutObjects::rollout_only(rollout.clone()));
    let mut line = json!({
        "namespace": info.namespace,
        "name": info.name,
        "status": info.status,
        "message": info.message,
        // The desired images: the overview reads no ReplicaSets, whose images `info` would list.
        "images": desired_images(rollout),
        "desired": info.replicas.desired,
        "ready": info.replicas.ready,
    });
    merge(&mut line, strategy(&info.strategy));
    line
}

fn desired_images(rollout: &Rollout) -> Vec<String> {
    rollout
        .spec
        .template
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .map(|spec| {
            spec.containers
                .iter()
                .filter_map(|c| c.image.clone())
                .collect()
        })
        .unwrap_or_default()
}

fn strategy(strategy: &StrategyInfo) -> Value {
    match strategy {
        StrategyInfo::Canary {
            step,
            set_weight,
            actual_weight,
        } => json!({"strategy": "canary", "step": step, "setWeight": set_weight,
                    "actualWeight": actual_weight}),
        StrategyInfo::BlueGreen => json!({"strategy": "blueGreen"}),
    }
}

/// A Rollout's page: steps (the current one marked), weights, revisions with their ReplicaSets,
/// pods and commit, and each analysis metric's measurements with the thresholds of its conditions.
pub fn rollout_detail(objects: &RolloutObjects) -> Value {
    let rollout = &objects.rollout;
    let info = rollout_info(objects);
    let status = rollout.status.clone().unwrap_or_default();
    let steps: Vec<Value> = rollout
        .spec
        .canary()
        .map(|c| {
            c.steps
                .iter()
                .map(|s| json!(step_text(&to_json(s))))
                .collect()
        })
        .unwrap_or_default();
    let mut detail = rollout_summary(rollout);
    let extra = json!({
        "steps": steps,
        "currentStepIndex": status.current_step_index,
        "paused": rollout.spec.paused.unwrap_or(false) || !status.pause_conditions.is_empty(),
        "aborted": status.aborted(),
        "revisions": info.revisions.iter().map(revision).collect::<Vec<_>>(),
        "analysisRuns": analysis_runs(rollout, &objects.analysis_runs),
        "revert": info.revert.as_ref().map(to_json),
        "message": info.message,
    });
    merge(&mut detail, extra);
    detail
}

/// A step as one short line: `setWeight: 20`, `pause: 30s`, `analysis: success-rate`.
pub fn step_text(step: &Value) -> String {
    let Some((key, value)) = step.as_object().and_then(|o| o.iter().next()) else {
        return step.to_string();
    };
    let detail = match (key.as_str(), value) {
        (_, Value::Number(n)) => n.to_string(),
        ("pause", v) => v
            .get("duration")
            .map_or("until promoted".to_string(), plain),
        ("analysis" | "experiment", v) => v["templates"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|t| t["templateName"].as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default(),
        (_, v) => plain(v),
    };
    format!("{key}: {detail}")
}

fn plain(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_string)
}

fn revision(r: &RevisionInfo) -> Value {
    json!({
        "revision": r.revision,
        "roles": r.roles.iter().map(|role| role.as_str()).collect::<Vec<_>>(),
        "images": r.images,
        "gitRevision": r.git_revision,
        "application": r.application,
        "replicaSets": r.replica_sets.iter().map(replica_set).collect::<Vec<_>>(),
    })
}

fn replica_set(rs: &ReplicaSetInfo) -> Value {
    json!({
        "name": rs.name, "status": rs.status, "desired": rs.desired, "ready": rs.ready,
        "pods": rs.pods.iter().map(|p| json!({"name": p.name, "status": p.display_status(),
            "ready": format!("{}/{}", p.ready_containers, p.containers)})).collect::<Vec<_>>(),
    })
}

/// The Rollout's AnalysisRuns, newest first, each metric with its points.
fn analysis_runs(rollout: &Rollout, runs: &[AnalysisRun]) -> Vec<Value> {
    let name = rollout.name_any();
    let mut runs: Vec<&AnalysisRun> = runs
        .iter()
        .filter(|run| {
            run.namespace() == rollout.namespace()
                && run.labels().get(ROLLOUT_LABEL).map(String::as_str) == Some(name.as_str())
        })
        .collect();
    runs.sort_by(|a, b| {
        b.metadata
            .creation_timestamp
            .cmp(&a.metadata.creation_timestamp)
            .then_with(|| b.name_any().cmp(&a.name_any()))
    });
    runs.into_iter().map(analysis_run).collect()
}

fn analysis_run(run: &AnalysisRun) -> Value {
    let status = run.status.clone().unwrap_or_default();
    let results: BTreeMap<&str, _> = status
        .metric_results
        .iter()
        .map(|r| (r.name.as_str(), r))
        .collect();
    let args = plain_args(&run.spec.args);
    let metrics: Vec<Value> = run
        .spec
        .metrics
        .iter()
        .map(|metric| {
            let result = results.get(metric.name.as_str());
            let condition = |c: &Option<String>| {
                c.as_deref()
                    .map(|c| substitute(&metric.name, c, &args).unwrap_or_else(|_| c.to_string()))
            };
            let (success, failure) = (
                condition(&metric.success_condition),
                condition(&metric.failure_condition),
            );
            let points: Vec<Value> = result
                .map(|r| r.measurements.iter().map(point).collect())
                .unwrap_or_default();
            json!({
                "name": metric.name,
                "phase": result.map(|r| to_json(&r.phase)),
                "message": result.and_then(|r| r.message.clone()),
                "thresholds": thresholds(success.as_deref(), failure.as_deref()),
                "successCondition": success,
                "failureCondition": failure,
                "points": points,
            })
        })
        .collect();
    json!({
        "name": run.name_any(),
        "phase": status.phase.as_ref().map(to_json),
        "message": status.message,
        "type": run.labels().get("sluice.dev/analysis-type"),
        "revision": run.labels().get("rollouts-pod-template-hash"),
        "created": time(&run.metadata.creation_timestamp),
        "metrics": metrics,
    })
}

fn point(m: &Measurement) -> Value {
    json!({
        "at": time(&m.finished_at.clone().or_else(|| m.started_at.clone())),
        "phase": to_json(&m.phase),
        "raw": m.value,
        "value": m.value.as_deref().and_then(numeric_value),
        "message": m.message,
    })
}

/// The number a measurement's value text holds: `0.97`, `[0.97]` (Prometheus vectors, first
/// element), `"0.97"`; `None` for anything else (the chart then marks the point without a height).
pub fn numeric_value(text: &str) -> Option<f64> {
    let value: Value = serde_json::from_str(text.trim()).ok()?;
    let first = match &value {
        Value::Array(items) => items.first()?,
        other => other,
    };
    match first {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|v: &f64| v.is_finite())
}

/// The run's arguments that have a plain `value`, to show its conditions as they are evaluated
/// (a Secret's value is never read by the dashboard: a condition using one stays as written).
fn plain_args(args: &[Argument]) -> ResolvedArgs {
    let mut resolved = ResolvedArgs::default();
    resolved.values = args
        .iter()
        .filter_map(|a| Some((a.name.clone(), a.value.clone()?)))
        .collect();
    resolved
}

fn thresholds(success: Option<&str>, failure: Option<&str>) -> Vec<Value> {
    [("success", success), ("failure", failure)]
        .into_iter()
        .filter_map(|(kind, condition)| {
            let (op, value) = threshold(condition?)?;
            Some(json!({"kind": kind, "op": op, "value": value}))
        })
        .collect()
}

/// The line a condition draws on the chart, when it compares the measured value with a number:
/// `result[0] >= 0.95`, `result < 10`, `0.95 <= result[0]` (normalised to `result OP number`).
/// Compound conditions draw no line rather than a misleading one.
pub fn threshold(condition: &str) -> Option<(&'static str, f64)> {
    const OPS: [(&str, &str); 6] = [
        (">=", "<="),
        ("<=", ">="),
        ("==", "=="),
        ("!=", "!="),
        (">", "<"),
        ("<", ">"),
    ];
    let (op, flipped, at) = OPS
        .iter()
        .filter_map(|(op, flipped)| condition.find(op).map(|at| (*op, *flipped, at)))
        .min_by_key(|(_, _, at)| *at)?;
    let (left, right) = (condition[..at].trim(), condition[at + op.len()..].trim());
    let is_result = |side: &str| {
        matches!(
            side,
            "result" | "result[0]" | "asFloat(result)" | "asFloat(result[0])"
        )
    };
    let number = |side: &str| side.parse::<f64>().ok().filter(|v| v.is_finite());
    if is_result(left) {
        Some((op_name(op), number(right)?))
    } else if is_result(right) {
        Some((op_name(flipped), number(left)?))
    } else {
        None
    }
}

fn op_name(op: &str) -> &'static str {
    match op {
        ">=" => ">=",
        "<=" => "<=",
        "==" => "==",
        "!=" => "!=",
        ">" => ">",
        _ => "<",
    }
}

/// Events of Applications, Rollouts, AnalysisRuns and Experiments, newest first, at most
/// [`TIMELINE_LIMIT`].
pub fn timeline(events: &[Event]) -> Vec<Value> {
    let mut shown: Vec<&Event> = events
        .iter()
        .filter(|e| {
            e.involved_object
                .kind
                .as_deref()
                .is_some_and(|k| TIMELINE_KINDS.contains(&k))
        })
        .collect();
    shown.sort_by_key(|e| std::cmp::Reverse(event_time(e)));
    shown
        .into_iter()
        .take(TIMELINE_LIMIT)
        .map(|e| {
            json!({
                "at": event_time(e).map(|t| t.to_string()),
                "type": e.type_,
                "reason": e.reason,
                "kind": e.involved_object.kind,
                "namespace": e.involved_object.namespace,
                "name": e.involved_object.name,
                "message": e.message,
                "count": e.count,
            })
        })
        .collect()
}

/// When an Event last happened: `lastTimestamp`, else `eventTime`, else its creation (events.k8s.io
/// writers fill only some of them).
fn event_time(e: &Event) -> Option<jiff::Timestamp> {
    e.last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(into), Value::Object(from)) = (into.as_object_mut(), from) {
        into.extend(from);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measured_values_are_read_as_numbers() {
        let cases = [
            ("0.97", Some(0.97)),
            ("[0.97]", Some(0.97)),
            ("[0.5, 0.2]", Some(0.5)),
            ("\"12\"", Some(12.0)),
            ("[]", None),
            ("NaN", None),
            ("up", None),
            ("{\"a\": 1}", None),
        ];
        for (text, expected) in cases {
            assert_eq!(numeric_value(text), expected, "{text}");
        }
    }

    #[test]
    fn simple_comparisons_with_the_result_draw_a_threshold() {
        let cases = [
            ("result[0] >= 0.95", Some((">=", 0.95))),
            ("result < 10", Some(("<", 10.0))),
            ("0.95 <= result[0]", Some((">=", 0.95))),
            ("5 > result", Some(("<", 5.0))),
            ("asFloat(result) == 1", Some(("==", 1.0))),
            ("len(result) == 0 || result[0] < 0.9", None),
            ("result[0] >= {{args.threshold}}", None),
            ("result.status == 'ok'", None),
        ];
        for (condition, expected) in cases {
            assert_eq!(threshold(condition), expected, "{condition}");
        }
    }

    #[test]
    fn steps_read_as_one_line_each() {
        let cases = [
            (json!({"setWeight": 20}), "setWeight: 20"),
            (json!({"pause": {}}), "pause: until promoted"),
            (json!({"pause": {"duration": "30s"}}), "pause: 30s"),
            (json!({"pause": {"duration": 30}}), "pause: 30"),
            (
                json!({"analysis": {"templates": [{"templateName": "a"}, {"templateName": "b"}]}}),
                "analysis: a, b",
            ),
            (
                json!({"setCanaryScale": {"replicas": 2}}),
                "setCanaryScale: {\"replicas\":2}",
            ),
        ];
        for (step, expected) in cases {
            assert_eq!(step_text(&step), expected);
        }
    }

    fn event(kind: &str, name: &str, at: &str) -> Event {
        serde_json::from_value(json!({
            "metadata": {"name": format!("{name}.{at}"), "namespace": "ns"},
            "involvedObject": {"kind": kind, "name": name, "namespace": "ns"},
            "reason": "Step", "message": "m", "type": "Normal",
            "lastTimestamp": at,
        }))
        .expect("event")
    }

    #[test]
    fn the_timeline_has_the_release_kinds_newest_first() {
        let events = vec![
            event("Rollout", "web", "2026-01-01T00:00:01Z"),
            event("Pod", "web-1", "2026-01-01T00:00:05Z"),
            event("Application", "demo", "2026-01-01T00:00:03Z"),
            event("AnalysisRun", "web-1", "2026-01-01T00:00:02.5Z"),
        ];
        let kinds: Vec<String> = timeline(&events)
            .iter()
            .map(|e| e["kind"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(kinds, ["Application", "AnalysisRun", "Rollout"]);
        let many: Vec<Event> = (0..TIMELINE_LIMIT + 5)
            .map(|i| {
                event(
                    "Rollout",
                    "web",
                    &format!("2026-01-01T00:{:02}:{:02}Z", i / 60, i % 60),
                )
            })
            .collect();
        let shown = timeline(&many);
        assert_eq!(shown.len(), TIMELINE_LIMIT);
        assert_eq!(shown[0]["at"], json!("2026-01-01T00:03:24Z"));
    }

    #[test]
    fn a_rollout_page_has_its_steps_and_one_point_per_measurement() {
        let rollout: Rollout = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "web", "namespace": "ns", "generation": 2},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "web:2"}]}},
                     "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}},
            "status": {"currentStepIndex": 1, "observedGeneration": "2", "stableRS": "a", "currentPodHash": "b",
                       "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": "2026-01-01T00:00:00Z"}]}
        }))
        .expect("rollout");
        let run: AnalysisRun = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisRun",
            "metadata": {"name": "web-b-1", "namespace": "ns",
                         "labels": {"sluice.dev/rollout": "web", "rollouts-pod-template-hash": "b"}},
            "spec": {"args": [{"name": "threshold", "value": "0.95"}],
                     "metrics": [{"name": "success-rate", "successCondition": "result[0] >= {{ args.threshold }}",
                                  "provider": {"prometheus": {"query": "q"}}}]},
            "status": {"phase": "Running", "metricResults": [{"name": "success-rate", "phase": "Running",
                "measurements": [
                    {"phase": "Successful", "value": "[0.99]", "finishedAt": "2026-01-01T00:00:02Z"},
                    {"phase": "Error", "message": "no data"},
                    {"phase": "Successful", "value": "[0.97]", "finishedAt": "2026-01-01T00:00:06Z"}
                ]}]}
        }))
        .expect("run");
        let other: AnalysisRun = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisRun",
            "metadata": {"name": "api-1", "namespace": "ns", "labels": {"sluice.dev/rollout": "api"}},
            "spec": {"metrics": []}
        }))
        .expect("run");
        let page = rollout_detail(&RolloutObjects {
            rollout,
            replica_sets: Vec::new(),
            pods: Vec::new(),
            analysis_runs: vec![run, other],
        });
        assert_eq!(
            page["steps"],
            json!(["setWeight: 20", "pause: until promoted"])
        );
        assert_eq!(page["currentStepIndex"], json!(1));
        assert_eq!(page["step"], json!("1/2"));
        assert_eq!(page["setWeight"], json!(20));
        assert_eq!(page["paused"], json!(true));
        assert_eq!(page["images"], json!(["web:2"]));
        let runs = page["analysisRuns"].as_array().expect("runs");
        assert_eq!(runs.len(), 1, "only the Rollout's own runs");
        let metric = &runs[0]["metrics"][0];
        let values: Vec<Value> = metric["points"]
            .as_array()
            .expect("points")
            .iter()
            .map(|p| p["value"].clone())
            .collect();
        assert_eq!(values, [json!(0.99), Value::Null, json!(0.97)]);
        assert_eq!(
            metric["thresholds"],
            json!([{"kind": "success", "op": ">=", "value": 0.95}])
        );
        assert_eq!(metric["successCondition"], json!("result[0] >= 0.95"));
    }
}
