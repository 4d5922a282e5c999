//! Planner tests of the Experiment controller, named after the behaviours they prove (Argo
//! Rollouts' Experiment semantics).

use super::*;
use crate::api::analysis::AnalysisTemplateSpec;
use crate::api::experiment::Experiment;
use crate::experiment::observe::ObservedRun;
use crate::rollout::templates::{ResolvedTemplates, TemplateRef};
use serde_json::json;

fn t0() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

fn experiment(spec: serde_json::Value) -> Experiment {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Experiment",
        "metadata": {"name": "exp", "namespace": "ns", "uid": "u1"},
        "spec": spec
    }))
    .unwrap()
}

fn two_templates(extra: serde_json::Value) -> serde_json::Value {
    let mut spec = json!({
        "duration": "1m",
        "templates": [
            {"name": "baseline", "selector": {"matchLabels": {"app": "web", "role": "baseline"}},
             "template": {"metadata": {"labels": {"app": "web", "role": "baseline"}}}},
            {"name": "canary", "replicas": 2,
             "selector": {"matchLabels": {"app": "web", "role": "canary"}},
             "template": {"metadata": {"labels": {"app": "web", "role": "canary"}}}}
        ]
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    spec
}

fn templates() -> ResolvedTemplates {
    let spec: AnalysisTemplateSpec = serde_json::from_value(json!({
        "args": [{"name": "hash"}],
        "metrics": [{"name": "m", "provider": {"prometheus": {"query": "up{h=\"{{args.hash}}\"}"}}}]
    }))
    .unwrap();
    ResolvedTemplates::from([(
        TemplateRef {
            name: "check".to_string(),
            cluster_scope: false,
        },
        spec,
    )])
}

fn observed(spec: serde_json::Value) -> Observed {
    Observed {
        experiment: experiment(spec),
        replica_sets: BTreeMap::new(),
        analysis_runs: BTreeMap::new(),
        services: BTreeMap::new(),
        templates: templates(),
        now: t0(),
    }
}

/// Applies a plan as the act step and the cluster would: ReplicaSets are created with all pods
/// available at once, scaled ones follow, runs are created Running, then the status is written.
fn apply(obs: &mut Observed, plan: &Plan) {
    for action in &plan.actions {
        match action {
            Action::CreateReplicaSet {
                template,
                name,
                hash,
                replicas,
            } => {
                assert!(
                    !obs.replica_sets.contains_key(template),
                    "{template} created twice"
                );
                obs.replica_sets.insert(
                    template.clone(),
                    ObservedReplicaSet {
                        name: name.clone(),
                        pod_template_hash: hash.clone(),
                        spec_replicas: *replicas,
                        replicas: *replicas,
                        ready_replicas: *replicas,
                        available_replicas: *replicas,
                        scale_down_deadline: None,
                    },
                );
            }
            Action::ScaleReplicaSet { name, replicas } => {
                let rs = obs
                    .replica_sets
                    .values_mut()
                    .find(|rs| &rs.name == name)
                    .unwrap();
                rs.spec_replicas = *replicas;
                rs.replicas = *replicas;
                rs.ready_replicas = *replicas;
                rs.available_replicas = *replicas;
            }
            Action::SetScaleDownDeadline { name, at } => {
                let rs = obs
                    .replica_sets
                    .values_mut()
                    .find(|rs| &rs.name == name)
                    .unwrap();
                rs.scale_down_deadline = *at;
            }
            Action::CreateAnalysisRun { name, .. } => {
                obs.analysis_runs
                    .entry(name.clone())
                    .or_insert(ObservedRun {
                        phase: AnalysisPhase::Running,
                        message: None,
                        terminating: false,
                    });
            }
            Action::TerminateAnalysisRun { name } => {
                let run = obs.analysis_runs.get_mut(name).unwrap();
                run.terminating = true;
                run.phase = AnalysisPhase::Successful;
            }
            Action::CreateService { template, name, .. } => {
                assert!(
                    obs.services
                        .insert(template.clone(), name.clone())
                        .is_none(),
                    "service of {template} created twice"
                );
            }
            Action::DeleteService { name } => {
                obs.services.retain(|_, n| n != name);
            }
            Action::RecordEvent { .. } => {}
        }
    }
    obs.experiment.status = Some(plan.status.clone());
}

/// Plans (twice, checking it is deterministic) and applies.
fn step(obs: &mut Observed) -> Plan {
    let plan = plan(obs);
    assert_eq!(plan, super::plan(obs), "planning is not deterministic");
    apply(obs, &plan);
    plan
}

fn advance(obs: &mut Observed, seconds: i64) {
    obs.now += SignedDuration::from_secs(seconds);
}

fn phase(obs: &Observed) -> Option<AnalysisPhase> {
    obs.experiment.status.as_ref().and_then(|s| s.phase)
}

fn replicas(obs: &Observed, template: &str) -> i32 {
    obs.replica_sets[template].spec_replicas
}

fn reasons(plan: &Plan) -> Vec<String> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            Action::RecordEvent { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn experiment_creates_one_replica_set_per_template_named_and_hashed() {
    let mut obs = observed(two_templates(json!({})));
    let plan = step(&mut obs);
    let created: Vec<(&str, &str, i32)> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::CreateReplicaSet {
                template,
                name,
                replicas,
                ..
            } => Some((template.as_str(), name.as_str(), *replicas)),
            _ => None,
        })
        .collect();
    assert_eq!(
        created,
        vec![("baseline", "exp-baseline", 1), ("canary", "exp-canary", 2)]
    );
    let status = &plan.status.template_statuses;
    assert!(status.iter().all(|t| t.pod_template_hash.is_some()));
    assert_ne!(status[0].pod_template_hash, status[1].pod_template_hash);
    // Re-planning the applied state creates nothing again.
    let again = super::plan(&obs);
    assert!(
        !again
            .actions
            .iter()
            .any(|a| matches!(a, Action::CreateReplicaSet { .. }))
    );
}

#[test]
fn experiment_waits_for_available_templates_then_runs_its_duration_then_succeeds_and_scales_down_after_the_delay()
 {
    let mut obs = observed(two_templates(json!({})));
    // Created, pods not yet available: Pending, templates Progressing.
    let first = plan(&obs);
    apply(&mut obs, &first);
    for rs in obs.replica_sets.values_mut() {
        rs.available_replicas = 0;
    }
    let pending = step(&mut obs);
    assert_eq!(pending.status.phase, Some(AnalysisPhase::Pending));
    assert_eq!(pending.status.available_at, None);
    // Available: Running from now, requeued at the end of the duration.
    for rs in obs.replica_sets.values_mut() {
        rs.available_replicas = rs.spec_replicas;
    }
    advance(&mut obs, 5);
    let running = step(&mut obs);
    assert_eq!(running.status.phase, Some(AnalysisPhase::Running));
    assert_eq!(running.status.available_at, Some(Time(obs.now)));
    assert!(
        running
            .requeue_after
            .is_some_and(|d| d <= Duration::from_secs(61))
    );
    // Half-way: still running, pods kept.
    advance(&mut obs, 30);
    assert_eq!(step(&mut obs).status.phase, Some(AnalysisPhase::Running));
    // Duration passed: Successful; templates Successful.
    advance(&mut obs, 31);
    let done = step(&mut obs);
    assert_eq!(done.status.phase, Some(AnalysisPhase::Successful));
    assert!(
        done.status
            .template_statuses
            .iter()
            .all(|t| t.status == Some(TemplateStatusCode::Successful))
    );
    assert!(reasons(&done).contains(&"ExperimentSuccessful".to_string()));
    // Then the scale-down waits scaleDownDelaySeconds [30].
    let delayed = step(&mut obs);
    assert_eq!(replicas(&obs, "canary"), 2);
    assert!(
        delayed
            .requeue_after
            .is_some_and(|d| d <= Duration::from_secs(31))
    );
    advance(&mut obs, 31);
    step(&mut obs);
    assert_eq!(replicas(&obs, "baseline"), 0);
    assert_eq!(replicas(&obs, "canary"), 0);
    assert_eq!(phase(&obs), Some(AnalysisPhase::Successful));
}

#[test]
fn experiment_analysis_starts_once_templates_are_available_with_template_hash_args() {
    let mut obs = observed(two_templates(json!({"analyses": [
        {"name": "a", "templateName": "check",
         "args": [{"name": "hash", "value": "{{templates.canary.podTemplateHash}}"}]}
    ]})));
    let first = step(&mut obs);
    assert!(
        !first
            .actions
            .iter()
            .any(|a| matches!(a, Action::CreateAnalysisRun { .. })),
        "no run before the templates are available"
    );
    let second = step(&mut obs);
    assert_eq!(second.status.phase, Some(AnalysisPhase::Running));
    let third = step(&mut obs);
    let canary_hash = obs.replica_sets["canary"].pod_template_hash.clone();
    let run = third.actions.iter().find_map(|a| match a {
        Action::CreateAnalysisRun { name, spec, .. } => Some((name.clone(), spec.clone())),
        _ => None,
    });
    let (name, spec) = run.expect("the run is created once available_at is recorded");
    assert_eq!(name, "exp-a");
    assert_eq!(spec.args[0].value.as_deref(), Some(canary_hash.as_str()));
    assert_eq!(third.status.analysis_runs[0].analysis_run, "exp-a");
}

fn running_with_analysis(analysis: serde_json::Value) -> Observed {
    let mut obs = observed(two_templates(json!({"analyses": [analysis]})));
    for _ in 0..3 {
        step(&mut obs);
    }
    assert_eq!(phase(&obs), Some(AnalysisPhase::Running));
    assert!(obs.analysis_runs.contains_key("exp-a"));
    obs
}

#[test]
fn experiment_fails_when_its_analysis_fails_and_scales_down() {
    let mut obs = running_with_analysis(json!({"name": "a", "templateName": "check",
        "args": [{"name": "hash", "value": "x"}]}));
    let run = obs.analysis_runs.get_mut("exp-a").unwrap();
    run.phase = AnalysisPhase::Failed;
    run.message = Some("Metric \"m\" assessed Failed".to_string());
    let failed = step(&mut obs);
    assert_eq!(failed.status.phase, Some(AnalysisPhase::Failed));
    assert_eq!(
        failed.status.message.as_deref(),
        Some("Metric \"m\" assessed Failed")
    );
    // The next reconcile sees it ended: the delay starts, then the pods go.
    step(&mut obs);
    assert_eq!(replicas(&obs, "canary"), 2);
    advance(&mut obs, 31);
    step(&mut obs);
    assert_eq!(replicas(&obs, "canary"), 0);
    assert_eq!(phase(&obs), Some(AnalysisPhase::Failed));
}

#[test]
fn experiment_errors_or_is_inconclusive_as_its_analysis() {
    for outcome in [AnalysisPhase::Error, AnalysisPhase::Inconclusive] {
        let mut obs = running_with_analysis(json!({"name": "a", "templateName": "check",
            "args": [{"name": "hash", "value": "x"}]}));
        obs.analysis_runs.get_mut("exp-a").unwrap().phase = outcome;
        assert_eq!(step(&mut obs).status.phase, Some(outcome));
    }
}

#[test]
fn experiment_with_a_required_analysis_ends_when_it_succeeds_before_the_duration() {
    let mut obs = running_with_analysis(json!({"name": "a", "templateName": "check",
        "requiredForCompletion": true, "args": [{"name": "hash", "value": "x"}]}));
    obs.analysis_runs.get_mut("exp-a").unwrap().phase = AnalysisPhase::Successful;
    let done = step(&mut obs);
    assert_eq!(done.status.phase, Some(AnalysisPhase::Successful));
    assert_eq!(
        done.status.message.as_deref(),
        Some(REQUIRED_ANALYSIS_COMPLETED)
    );
}

#[test]
fn experiment_that_ran_its_duration_terminates_a_still_running_analysis() {
    let mut obs = running_with_analysis(json!({"name": "a", "templateName": "check",
        "args": [{"name": "hash", "value": "x"}]}));
    advance(&mut obs, 61);
    assert_eq!(step(&mut obs).status.phase, Some(AnalysisPhase::Successful));
    let ending = step(&mut obs);
    assert!(ending.actions.contains(&Action::TerminateAnalysisRun {
        name: "exp-a".to_string()
    }));
}

#[test]
fn experiment_terminated_by_spec_terminate_succeeds_and_scales_down() {
    let mut obs = observed(two_templates(json!({})));
    step(&mut obs);
    step(&mut obs);
    obs.experiment.spec.terminate = Some(true);
    let ended = step(&mut obs);
    assert_eq!(ended.status.phase, Some(AnalysisPhase::Successful));
    advance(&mut obs, 31);
    step(&mut obs);
    assert_eq!(replicas(&obs, "baseline"), 0);
}

#[test]
fn experiment_template_past_its_progress_deadline_fails_the_experiment() {
    let mut obs = observed(two_templates(json!({"progressDeadlineSeconds": 60})));
    let first = plan(&obs);
    apply(&mut obs, &first);
    obs.replica_sets
        .get_mut("canary")
        .unwrap()
        .available_replicas = 1;
    let progressing = step(&mut obs);
    assert!(
        progressing
            .requeue_after
            .is_some_and(|d| d <= Duration::from_secs(61))
    );
    advance(&mut obs, 61);
    let failed = step(&mut obs);
    assert_eq!(failed.status.phase, Some(AnalysisPhase::Failed));
    assert_eq!(
        failed.status.message.as_deref(),
        Some("Template 'canary' exceeded its progressDeadlineSeconds (60)")
    );
    assert!(reasons(&failed).contains(&"TemplateFailed".to_string()));
}

#[test]
fn experiment_naming_a_missing_template_errors_before_anything_runs_long() {
    let mut obs = observed(two_templates(json!({"analyses": [
        {"name": "a", "templateName": "absent"}]})));
    let plan = step(&mut obs);
    assert_eq!(plan.status.phase, Some(AnalysisPhase::Error));
    assert!(
        plan.status
            .message
            .as_deref()
            .is_some_and(|m| m.contains("AnalysisTemplate \"absent\" not found")),
        "{:?}",
        plan.status.message
    );
}

#[test]
fn experiment_template_service_selects_its_pods_while_they_run_and_goes_with_them() {
    let mut spec = two_templates(json!({"scaleDownDelaySeconds": 0}));
    spec["templates"][1]["service"] = json!({"name": "canary-svc"});
    spec["templates"][1]["template"]["spec"] =
        json!({"containers": [{"name": "web", "ports": [{"containerPort": 8080}]}]});
    let mut obs = observed(spec);
    step(&mut obs);
    let second = step(&mut obs);
    let hash = obs.replica_sets["canary"].pod_template_hash.clone();
    assert!(second.actions.contains(&Action::CreateService {
        template: "canary".to_string(),
        name: "canary-svc".to_string(),
        hash,
    }));
    assert_eq!(
        second.status.template_statuses[1].service_name.as_deref(),
        Some("canary-svc")
    );
    assert_eq!(second.status.template_statuses[0].service_name, None);
    obs.experiment.spec.terminate = Some(true);
    step(&mut obs);
    step(&mut obs);
    let gone = step(&mut obs);
    assert!(
        gone.actions.contains(&Action::DeleteService {
            name: "canary-svc".to_string()
        }) || obs.services.is_empty()
    );
    assert!(obs.services.is_empty());
    assert_eq!(gone.status.template_statuses[1].service_name, None);
}

#[test]
fn experiment_with_an_invalid_spec_is_error_naming_why_and_runs_nothing() {
    let mut spec = two_templates(json!({}));
    spec["templates"][1]["name"] = json!("baseline");
    let mut obs = observed(spec);
    let plan = step(&mut obs);
    assert_eq!(plan.status.phase, Some(AnalysisPhase::Error));
    assert_eq!(
        plan.status.message.as_deref(),
        Some("InvalidSpec: spec.templates[1].name \"baseline\" must be set and unique")
    );
    assert!(plan.changes().next().is_none());
    assert_eq!(plan.status.conditions[0].type_, "InvalidSpec");
    // Reported once: the next plan writes the same status and records no second Event.
    let again = super::plan(&obs);
    assert_eq!(again.status, plan.status);
    assert!(reasons(&again).is_empty());
}

#[test]
fn experiment_restarted_at_any_point_creates_nothing_twice() {
    let mut obs = running_with_analysis(json!({"name": "a", "templateName": "check",
        "args": [{"name": "hash", "value": "x"}]}));
    // The run is missing from the cache (its create was lost): the same name is created again.
    obs.analysis_runs.clear();
    let healed = step(&mut obs);
    let creates: Vec<&Action> = healed
        .actions
        .iter()
        .filter(|a| matches!(a, Action::CreateAnalysisRun { .. }))
        .collect();
    assert_eq!(creates.len(), 1);
    assert!(matches!(creates[0], Action::CreateAnalysisRun { name, .. } if name == "exp-a"));
}

#[test]
fn experiment_replanned_from_a_cache_without_its_replica_sets_creates_them_again_silently() {
    let mut obs = observed(two_templates(json!({})));
    let first = plan(&obs);
    assert_eq!(
        reasons(&first)
            .iter()
            .filter(|r| *r == "NewReplicaSetCreated")
            .count(),
        2
    );
    // The status is written but the cache has not seen the ReplicaSets yet.
    obs.experiment.status = Some(first.status.clone());
    advance(&mut obs, 1);
    let again = plan(&obs);
    assert!(!reasons(&again).contains(&"NewReplicaSetCreated".to_string()));
    assert_eq!(
        again.status.template_statuses[0].last_transition_time,
        first.status.template_statuses[0].last_transition_time
    );
    assert_eq!(
        again
            .actions
            .iter()
            .filter(|a| matches!(a, Action::CreateReplicaSet { .. }))
            .count(),
        2
    );
}

fn progressing(plan: &Plan) -> (Option<String>, Option<String>) {
    let condition = plan
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .expect("a Progressing condition");
    (condition.status.clone(), condition.reason.clone())
}

#[test]
fn experiment_progressing_condition_follows_argo_reasons() {
    let mut obs = observed(two_templates(json!({})));
    let first = step(&mut obs);
    assert_eq!(
        progressing(&first),
        (Some("True".into()), Some("ReplicaSetUpdated".into()))
    );
    let running = step(&mut obs);
    assert_eq!(
        progressing(&running),
        (Some("True".into()), Some("NewReplicaSetAvailable".into()))
    );
    // Unchanged while it runs: no write churn.
    advance(&mut obs, 10);
    let still = step(&mut obs);
    assert_eq!(still.status.conditions, running.status.conditions);
    advance(&mut obs, 60);
    let done = step(&mut obs);
    assert_eq!(
        progressing(&done),
        (Some("False".into()), Some("ExperimentCompleted".into()))
    );
}

#[test]
fn experiment_template_selecting_every_pod_is_invalid() {
    let mut spec = two_templates(json!({}));
    spec["templates"][0]["selector"] = json!({});
    let plan = super::plan(&observed(spec));
    assert_eq!(
        plan.status.message.as_deref(),
        Some(
            "InvalidSpec: spec.templates[0].selector selects every pod: a non-empty selector is \
             required"
        )
    );
}
