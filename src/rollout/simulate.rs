//! A model of the cluster's answer to a plan: fixtures (Rollouts, observed ReplicaSets) and a
//! simulator of the act step (ReplicaSets scale, pods become ready, routes and Services change as
//! told). The planner's tests and the benchmarks drive whole rollouts through it without a cluster.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ObjectMeta;

use crate::api::analysis::{
    AnalysisPhase, AnalysisTemplateSpec, Metric, MetricProvider, PrometheusMetric,
};
use crate::api::rollout::{
    BlueGreenStrategy, CanaryStep, CanaryStrategy, GatewayApiTrafficRouting,
    POD_TEMPLATE_HASH_LABEL, Rollout, RolloutAnalysis, RolloutAnalysisTemplate, RolloutPause,
    RolloutPhase, RolloutSpec, RolloutStatus, RolloutStrategy, SetCanaryScale, TrafficRouting,
    TrafficRoutingPlugins,
};
use crate::rollout::action::{Action, Plan};
use crate::rollout::observed::{
    AnalysisType, Observed, ObservedAnalysisRun, ObservedPod, ObservedReplicaSet, ObservedService,
};
use crate::rollout::{plan, templates};

pub const T0: &str = "2026-01-01T00:00:00Z";

pub fn t0() -> Timestamp {
    T0.parse().unwrap()
}

pub fn weight(weight: i32) -> CanaryStep {
    CanaryStep {
        set_weight: Some(weight),
        ..Default::default()
    }
}

pub fn pause() -> CanaryStep {
    CanaryStep {
        pause: Some(RolloutPause::default()),
        ..Default::default()
    }
}

pub fn pause_for(duration: &str) -> CanaryStep {
    CanaryStep {
        pause: Some(RolloutPause {
            duration: Some(IntOrString::String(duration.to_string())),
        }),
        ..Default::default()
    }
}

pub fn analysis_step(template: &str) -> CanaryStep {
    CanaryStep {
        analysis: Some(analysis(template)),
        ..Default::default()
    }
}

pub fn canary_scale(scale: SetCanaryScale) -> CanaryStep {
    CanaryStep {
        set_canary_scale: Some(scale),
        ..Default::default()
    }
}

pub fn analysis(template: &str) -> RolloutAnalysis {
    RolloutAnalysis {
        templates: vec![RolloutAnalysisTemplate {
            template_name: template.to_string(),
            cluster_scope: None,
        }],
        ..Default::default()
    }
}

fn rollout(replicas: i32, strategy: RolloutStrategy) -> Rollout {
    let mut rollout = Rollout::new(
        "web",
        RolloutSpec {
            replicas: Some(replicas),
            selector: Some(LabelSelector::default()),
            template: Some(PodTemplateSpec::default()),
            strategy,
            ..Default::default()
        },
    );
    rollout.metadata = ObjectMeta {
        name: Some("web".to_string()),
        namespace: Some("shop".to_string()),
        generation: Some(1),
        ..Default::default()
    };
    rollout
}

/// A canary without a traffic router (replica ratio).
pub fn canary(replicas: i32, steps: Vec<CanaryStep>) -> Rollout {
    rollout(
        replicas,
        RolloutStrategy {
            canary: Some(CanaryStrategy {
                steps,
                ..Default::default()
            }),
            blue_green: None,
        },
    )
}

/// A canary with the Gateway API router and stable/canary Services.
pub fn canary_with_router(replicas: i32, steps: Vec<CanaryStep>) -> Rollout {
    let mut r = canary(replicas, steps);
    let c = canary_spec(&mut r);
    c.stable_service = Some("web-stable".to_string());
    c.canary_service = Some("web-canary".to_string());
    c.traffic_routing = Some(TrafficRouting {
        plugins: Some(TrafficRoutingPlugins {
            gateway_api: Some(GatewayApiTrafficRouting {
                http_route: Some("web".to_string()),
                ..Default::default()
            }),
            other: BTreeMap::new(),
        }),
        ..Default::default()
    });
    r
}

pub fn canary_spec(r: &mut Rollout) -> &mut CanaryStrategy {
    r.spec.strategy.canary.as_mut().unwrap()
}

pub fn blue_green(replicas: i32) -> Rollout {
    rollout(
        replicas,
        RolloutStrategy {
            canary: None,
            blue_green: Some(BlueGreenStrategy {
                active_service: "web-active".to_string(),
                preview_service: Some("web-preview".to_string()),
                ..Default::default()
            }),
        },
    )
}

pub fn bg_spec(r: &mut Rollout) -> &mut BlueGreenStrategy {
    r.spec.strategy.blue_green.as_mut().unwrap()
}

/// A new Rollout whose template hashes to `h1`, nothing created yet.
pub fn observed(rollout: Rollout) -> Observed {
    let mut obs = Observed {
        rollout,
        replica_sets: Vec::new(),
        new_template_hash: "h1".to_string(),
        services: BTreeMap::new(),
        analysis_runs: Vec::new(),
        workload: None,
        experiments: Vec::new(),
        templates: Default::default(),
        now: t0(),
    };
    provide_templates(&mut obs);
    obs
}

/// Applies a plan as the act step would (pods are created but not ready yet), then writes the
/// status.
pub fn apply(obs: &mut Observed, plan: &Plan) {
    for action in &plan.actions {
        apply_action(obs, action);
    }
    obs.rollout.status = Some(plan.status.clone());
}

fn apply_action(obs: &mut Observed, action: &Action) {
    let now = obs.now;
    match action {
        Action::CreateReplicaSet {
            name,
            hash,
            revision,
            replicas,
            ephemeral_metadata,
            anti_affinity,
        } => {
            assert!(
                obs.replica_set(hash).is_none(),
                "ReplicaSet {hash} created twice"
            );
            let mut template_labels =
                BTreeMap::from([(POD_TEMPLATE_HASH_LABEL.to_string(), hash.clone())]);
            let mut template_annotations = BTreeMap::new();
            if let Some(metadata) = ephemeral_metadata {
                template_labels.extend(metadata.labels.clone());
                template_annotations.extend(metadata.annotations.clone());
            }
            obs.replica_sets.push(ObservedReplicaSet {
                name: name.clone(),
                pod_template_hash: hash.clone(),
                revision: *revision,
                spec_replicas: *replicas,
                replicas: *replicas,
                created: now,
                template_labels,
                template_annotations,
                ephemeral_metadata: ephemeral_metadata.clone(),
                selector_keys: [POD_TEMPLATE_HASH_LABEL.to_string()].into(),
                anti_affinity: anti_affinity.clone(),
                ..Default::default()
            });
        }
        Action::SetAntiAffinity {
            replica_set,
            injected,
        } => rs_mut(obs, replica_set).anti_affinity = injected.clone(),
        Action::SyncEphemeralMetadata {
            replica_set,
            template,
            pods,
        } => {
            let rs = rs_mut(obs, replica_set);
            if let Some(change) = template {
                change
                    .patch
                    .apply(&mut rs.template_labels, &mut rs.template_annotations);
                rs.ephemeral_metadata = change.record.clone();
            }
            for change in pods {
                if let Some(pod) = rs.pods.iter_mut().find(|p| p.name == change.pod) {
                    change.patch.apply(&mut pod.labels, &mut pod.annotations);
                }
            }
        }
        Action::ScaleReplicaSet { name, replicas } => {
            let rs = rs_mut(obs, name);
            rs.spec_replicas = *replicas;
            rs.replicas = *replicas;
            rs.ready_replicas = rs.ready_replicas.min(*replicas);
            rs.available_replicas = rs.available_replicas.min(*replicas);
        }
        Action::SetScaleDownDeadline { name, at } => {
            rs_mut(obs, name).scale_down_deadline = *at;
        }
        Action::DeleteReplicaSet { name } => obs.replica_sets.retain(|rs| &rs.name != name),
        Action::DeleteAnalysisRun { name } => obs.analysis_runs.retain(|run| &run.name != name),
        Action::SetReplicaSetRevision { name, revision } => {
            rs_mut(obs, name).revision = *revision;
        }
        Action::EvictPod { name } => {
            let pod = obs
                .replica_sets
                .iter_mut()
                .flat_map(|rs| &mut rs.pods)
                .find(|p| &p.name == name);
            if let Some(pod) = pod {
                pod.deleting = true;
            }
        }
        Action::SetServiceSelector { service, hash } => {
            obs.services.insert(
                service.clone(),
                ObservedService {
                    selector_hash: Some(hash.clone()),
                },
            );
        }
        Action::SetCanaryWeight { .. }
        | Action::SetManagedRoutes { .. }
        | Action::RecordEvent(_) => {}
        Action::ScaleWorkload { replicas, .. } => {
            if let Some(w) = obs.workload.as_mut() {
                w.spec_replicas = *replicas;
            }
        }
        Action::CreateAnalysisRun {
            name,
            analysis_type,
            step_index,
            pod_template_hash,
            ..
        } => {
            assert!(
                obs.analysis_run(name).is_none(),
                "AnalysisRun {name} created twice"
            );
            obs.analysis_runs.push(ObservedAnalysisRun {
                name: name.clone(),
                analysis_type: *analysis_type,
                step_index: *step_index,
                pod_template_hash: pod_template_hash.clone(),
                phase: AnalysisPhase::Running,
                message: None,
                created: Some(obs.now),
            });
        }
        Action::TerminateAnalysisRun { name } => {
            if let Some(run) = obs.analysis_runs.iter_mut().find(|r| &r.name == name) {
                run.phase = AnalysisPhase::Successful;
            }
        }
        // The Experiment controller is not simulated: tests put the Experiments they need.
        Action::CreateExperiment { .. } => {}
        Action::TerminateExperiment { name } => {
            if let Some(experiment) = obs.experiments.iter_mut().find(|e| &e.name == name) {
                experiment.terminating = true;
            }
        }
    }
}

fn rs_mut<'o>(obs: &'o mut Observed, name: &str) -> &'o mut ObservedReplicaSet {
    obs.replica_sets
        .iter_mut()
        .find(|rs| rs.name == name)
        .expect("the ReplicaSet exists")
}

/// The ReplicaSet controller, for tests that look at pods: every ReplicaSet runs `spec_replicas`
/// pods (removed newest first), each new one born with its template's labels and annotations;
/// every pod is ready.
pub fn run_pods(obs: &mut Observed) {
    let now = obs.now;
    for rs in &mut obs.replica_sets {
        let want = usize::try_from(rs.spec_replicas).unwrap_or(0);
        rs.pods.truncate(want);
        let mut serial = rs.pods.len();
        while rs.pods.len() < want {
            serial += 1;
            rs.pods.push(ObservedPod {
                name: format!("{}-{serial}", rs.name),
                created: now,
                ready: true,
                deleting: false,
                labels: rs.template_labels.clone(),
                annotations: rs.template_annotations.clone(),
            });
        }
        rs.replicas = rs.spec_replicas;
        rs.ready_replicas = rs.spec_replicas;
        rs.available_replicas = rs.spec_replicas;
    }
}

/// Every pod becomes ready and available.
pub fn pods_ready(obs: &mut Observed) {
    for rs in &mut obs.replica_sets {
        rs.replicas = rs.spec_replicas;
        rs.ready_replicas = rs.spec_replicas;
        rs.available_replicas = rs.spec_replicas;
    }
}

/// The simulated cluster holds every template the spec names (one metric each), as observe would
/// find them; a test of a missing template removes one from `obs.templates` after this.
pub fn provide_templates(obs: &mut Observed) {
    for (_, reference) in templates::references(obs.spec()) {
        obs.templates
            .entry(reference)
            .or_insert_with(|| AnalysisTemplateSpec {
                metrics: vec![Metric {
                    name: "up".to_string(),
                    provider: MetricProvider {
                        prometheus: Some(PrometheusMetric {
                            query: "up".to_string(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    ..Default::default()
                }],
                ..Default::default()
            });
    }
}

/// Plans, checks R10 (the same observation plans the same), applies.
pub fn step(obs: &mut Observed) -> Plan {
    provide_templates(obs);
    let plan = plan::plan(obs);
    assert_eq!(plan, plan::plan(obs), "planning is not deterministic");
    apply(obs, &plan);
    plan
}

/// Plans and applies with pods becoming ready, until a plan changes nothing in the cluster;
/// returns every plan made. Also checks that re-planning right after applying creates nothing
/// twice (the simulator asserts on duplicate creates).
pub fn settle(obs: &mut Observed) -> Vec<Plan> {
    let mut plans: Vec<Plan> = Vec::new();
    for _ in 0..30 {
        let plan = step(obs);
        pods_ready(obs);
        // Managed routes are asked for again on every reconcile of an update; asking for the
        // same ones as the plan before writes nothing.
        let repeated = |action: &Action| {
            matches!(action, Action::SetManagedRoutes { .. })
                && plans.last().is_some_and(|p| p.actions.contains(action))
        };
        let done = plan.changes().all(repeated) && plan.status == plan::plan(obs).status;
        plans.push(plan);
        if done {
            return plans;
        }
    }
    panic!("did not settle: last plan {:#?}", plans.last());
}

/// A Rollout deployed and Healthy at `h1`.
pub fn deployed(rollout: Rollout) -> Observed {
    let mut obs = observed(rollout);
    settle(&mut obs);
    assert_eq!(
        phase(&obs),
        RolloutPhase::Healthy,
        "{:#?}",
        obs.rollout.status
    );
    obs
}

/// The template changes to `hash` (a new generation).
pub fn update(obs: &mut Observed, hash: &str) {
    provide_templates(obs);
    obs.new_template_hash = hash.to_string();
    obs.rollout.metadata.generation = Some(obs.generation() + 1);
}

pub fn advance(obs: &mut Observed, seconds: i64) {
    obs.now += SignedDuration::from_secs(seconds);
}

pub fn status(obs: &Observed) -> RolloutStatus {
    obs.status()
}

pub fn phase(obs: &Observed) -> RolloutPhase {
    obs.status().phase.unwrap()
}

pub fn spec_replicas(obs: &Observed, hash: &str) -> i32 {
    obs.replica_set(hash).map_or(0, |rs| rs.spec_replicas)
}

pub fn weight_action(plan: &Plan) -> Option<i32> {
    plan.actions.iter().rev().find_map(|a| match a {
        Action::SetCanaryWeight { weight } => Some(*weight),
        _ => None,
    })
}

pub fn creates(plans: &[Plan]) -> Vec<&Action> {
    plans
        .iter()
        .flat_map(|p| &p.actions)
        .filter(|a| {
            matches!(
                a,
                Action::CreateReplicaSet { .. } | Action::CreateAnalysisRun { .. }
            )
        })
        .collect()
}

/// The phase of the AnalysisRun of this type becomes `phase`.
pub fn finish_run(obs: &mut Observed, analysis_type: AnalysisType, phase: AnalysisPhase) {
    let run = obs
        .analysis_runs
        .iter_mut()
        .rev()
        .find(|r| r.analysis_type == analysis_type)
        .expect("a run of that type exists");
    run.phase = phase;
    run.message = Some(format!("Metric \"success-rate\" assessed {phase:?}"));
}

/// The user promotes one step (clears the pause conditions).
pub fn user_promotes(obs: &mut Observed) {
    let mut status = obs.status();
    status.pause_conditions.clear();
    obs.rollout.status = Some(status);
}

pub fn edit_status(obs: &mut Observed, edit: impl FnOnce(&mut RolloutStatus)) {
    let mut status = obs.status();
    edit(&mut status);
    obs.rollout.status = Some(status);
}
