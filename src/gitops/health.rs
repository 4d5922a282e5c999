//! Health of live objects, per kind (docs/behaviour.md G8), following Argo CD's built-in health
//! checks (gitops-engine `pkg/health` and the common CRDs of Argo CD's resource customizations),
//! after the users' rules ([`HealthRules`], the `sluice-health` ConfigMap). Kinds without a check
//! have no health and do not count towards the Application's, as in Argo CD; an object Git declares
//! but the cluster lacks is `Missing`.

use serde_json::Value;

use super::health_rules::HealthRules;
use super::object::{gvk, str_at};
use crate::api::application::{HealthStatus, HealthStatusCode};

fn health(status: HealthStatusCode, message: impl Into<String>) -> HealthStatus {
    let message = message.into();
    HealthStatus {
        status,
        message: (!message.is_empty()).then_some(message),
        last_transition_time: None,
    }
}

fn healthy() -> HealthStatus {
    health(HealthStatusCode::Healthy, "")
}

fn progressing(message: impl Into<String>) -> HealthStatus {
    health(HealthStatusCode::Progressing, message)
}

fn degraded(message: impl Into<String>) -> HealthStatus {
    health(HealthStatusCode::Degraded, message)
}

fn int(obj: &Value, pointer: &str) -> Option<i64> {
    obj.pointer(pointer).and_then(|v| {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    })
}

fn int_or_zero(obj: &Value, pointer: &str) -> i64 {
    int(obj, pointer).unwrap_or(0)
}

/// The condition of `type_` in `status.conditions`.
fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
}

fn condition_is_true(obj: &Value, type_: &str) -> bool {
    condition(obj, type_).and_then(|c| str_at(c, "/status")) == Some("True")
}

fn condition_message(obj: &Value, type_: &str) -> String {
    condition(obj, type_)
        .and_then(|c| str_at(c, "/message"))
        .unwrap_or_default()
        .to_string()
}

/// Whether the controller of the object has seen its latest spec (`observedGeneration`).
fn generation_observed(obj: &Value) -> bool {
    match (
        int(obj, "/metadata/generation"),
        int(obj, "/status/observedGeneration"),
    ) {
        (Some(generation), Some(observed)) => observed >= generation,
        (Some(_), None) => false,
        (None, _) => true,
    }
}

/// The health of a live object by the users' rule of its kind, else the built-in one; `None` for
/// kinds without either.
pub fn health_of(obj: &Value, rules: &HealthRules) -> Option<HealthStatus> {
    rules.health_of(obj).or_else(|| built_in_health(obj))
}

fn built_in_health(obj: &Value) -> Option<HealthStatus> {
    let gvk = gvk(obj)?;
    let group = gvk.group.as_str();
    match (group, gvk.kind.as_str()) {
        ("apps" | "extensions", "Deployment") => Some(deployment(obj)),
        ("apps" | "extensions", "ReplicaSet") => Some(replica_set(obj)),
        ("apps", "StatefulSet") => Some(stateful_set(obj)),
        ("apps" | "extensions", "DaemonSet") => Some(daemon_set(obj)),
        ("", "Pod") => Some(pod(obj)),
        ("", "Service") => Some(service(obj)),
        ("networking.k8s.io" | "extensions", "Ingress") => Some(load_balanced(obj)),
        ("batch", "Job") => Some(job(obj)),
        ("batch", "CronJob") => Some(cron_job(obj)),
        ("autoscaling", "HorizontalPodAutoscaler") => Some(autoscaler(obj)),
        ("policy", "PodDisruptionBudget") => Some(disruption_budget(obj)),
        ("cert-manager.io", "Certificate") => Some(certificate(obj)),
        ("cert-manager.io", "Issuer" | "ClusterIssuer") => Some(issuer(obj)),
        ("", "PersistentVolumeClaim") => Some(pvc(obj)),
        ("", "Namespace") => Some(namespace(obj)),
        ("sluice.dev" | "argoproj.io", "Rollout") => Some(rollout(obj)),
        // Child Applications of an app-of-apps have no health of their own here, as in Argo CD
        // since 1.8: a parent is not Progressing while a child rolls out. A user's rule for
        // `sluice.dev_Application` opts in (README, health of kinds).
        ("sluice.dev" | "argoproj.io", "AnalysisRun") => Some(analysis_run(obj)),
        _ => None,
    }
}

fn deployment(obj: &Value) -> HealthStatus {
    if obj.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
        return health(HealthStatusCode::Suspended, "Deployment is paused");
    }
    if !generation_observed(obj) {
        return progressing(
            "Waiting for rollout to finish: observed deployment generation less than desired generation",
        );
    }
    if condition(obj, "Progressing").and_then(|c| str_at(c, "/reason"))
        == Some("ProgressDeadlineExceeded")
    {
        let name = str_at(obj, "/metadata/name").unwrap_or_default();
        return degraded(format!(
            "Deployment {name:?} exceeded its progress deadline"
        ));
    }
    let desired = int(obj, "/spec/replicas").unwrap_or(1);
    let updated = int_or_zero(obj, "/status/updatedReplicas");
    let replicas = int_or_zero(obj, "/status/replicas");
    let available = int_or_zero(obj, "/status/availableReplicas");
    if updated < desired {
        return progressing(format!(
            "Waiting for rollout to finish: {updated} out of {desired} new replicas have been updated..."
        ));
    }
    if replicas > updated {
        return progressing(format!(
            "Waiting for rollout to finish: {} old replicas are pending termination...",
            replicas - updated
        ));
    }
    if available < updated {
        return progressing(format!(
            "Waiting for rollout to finish: {available} of {updated} updated replicas are available..."
        ));
    }
    healthy()
}

fn replica_set(obj: &Value) -> HealthStatus {
    if !generation_observed(obj) {
        return progressing(
            "Waiting for rollout to finish: observed replica set generation less than desired generation",
        );
    }
    if condition_is_true(obj, "ReplicaFailure") {
        return degraded(condition_message(obj, "ReplicaFailure"));
    }
    let desired = int(obj, "/spec/replicas").unwrap_or(1);
    let available = int_or_zero(obj, "/status/availableReplicas");
    if available < desired {
        return progressing(format!(
            "Waiting for rollout to finish: {available} out of {desired} new replicas are available..."
        ));
    }
    healthy()
}

fn stateful_set(obj: &Value) -> HealthStatus {
    if !generation_observed(obj) {
        return progressing("Waiting for statefulset spec update to be observed...");
    }
    let desired = int(obj, "/spec/replicas").unwrap_or(1);
    let ready = int_or_zero(obj, "/status/readyReplicas");
    if ready < desired {
        return progressing(format!(
            "Waiting for {} pods to be ready...",
            desired - ready
        ));
    }
    if str_at(obj, "/spec/updateStrategy/type") == Some("OnDelete") {
        return healthy();
    }
    let partition = int_or_zero(obj, "/spec/updateStrategy/rollingUpdate/partition");
    if partition > 0 {
        let updated = int_or_zero(obj, "/status/updatedReplicas");
        if updated < desired - partition {
            return progressing(format!(
                "Waiting for partitioned roll out to finish: {updated} out of {} new pods have been updated...",
                desired - partition
            ));
        }
        return healthy();
    }
    let current = str_at(obj, "/status/currentRevision");
    let update = str_at(obj, "/status/updateRevision");
    if current != update {
        return progressing("waiting for statefulset rolling update to complete");
    }
    healthy()
}

fn daemon_set(obj: &Value) -> HealthStatus {
    if !generation_observed(obj) {
        return progressing("Waiting for daemon set spec update to be observed...");
    }
    if str_at(obj, "/spec/updateStrategy/type") == Some("OnDelete") {
        return healthy();
    }
    let desired = int_or_zero(obj, "/status/desiredNumberScheduled");
    let updated = int_or_zero(obj, "/status/updatedNumberScheduled");
    let available = int_or_zero(obj, "/status/numberAvailable");
    if updated < desired {
        return progressing(format!(
            "Waiting for daemon set rollout to finish: {updated} out of {desired} new pods have been updated..."
        ));
    }
    if available < desired {
        return progressing(format!(
            "Waiting for daemon set rollout to finish: {available} of {desired} updated pods are available..."
        ));
    }
    healthy()
}

/// Container waiting reasons that will not resolve by themselves.
const FAILED_WAITING_REASONS: &[&str] = &[
    "CrashLoopBackOff",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

fn pod(obj: &Value) -> HealthStatus {
    let waiting_failure = obj
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find_map(|c| {
            let reason = str_at(c, "/state/waiting/reason")?;
            FAILED_WAITING_REASONS.contains(&reason).then(|| {
                let message = str_at(c, "/state/waiting/message").unwrap_or(reason);
                message.to_string()
            })
        });
    if let Some(message) = waiting_failure {
        return degraded(message);
    }
    let message = str_at(obj, "/status/message").unwrap_or_default();
    match str_at(obj, "/status/phase") {
        Some("Succeeded") => health(HealthStatusCode::Healthy, message),
        Some("Failed") => degraded(message),
        Some("Running") => {
            let restart_policy = str_at(obj, "/spec/restartPolicy").unwrap_or("Always");
            if restart_policy == "Always" && !condition_is_true(obj, "Ready") {
                progressing(message)
            } else {
                health(HealthStatusCode::Healthy, message)
            }
        }
        _ => progressing(message),
    }
}

fn service(obj: &Value) -> HealthStatus {
    if str_at(obj, "/spec/type") == Some("LoadBalancer") {
        return load_balanced(obj);
    }
    healthy()
}

/// A LoadBalancer Service or an Ingress: Healthy once an address is assigned.
fn load_balanced(obj: &Value) -> HealthStatus {
    let assigned = obj
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if assigned {
        healthy()
    } else {
        progressing("Waiting for an address to be assigned")
    }
}

fn job(obj: &Value) -> HealthStatus {
    if condition_is_true(obj, "Failed") {
        return degraded(condition_message(obj, "Failed"));
    }
    if condition_is_true(obj, "Complete") || condition_is_true(obj, "SuccessCriteriaMet") {
        return healthy();
    }
    if obj.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true) {
        return health(HealthStatusCode::Suspended, "Job is suspended");
    }
    progressing("Job is running")
}

fn cron_job(obj: &Value) -> HealthStatus {
    if obj.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true) {
        return health(HealthStatusCode::Suspended, "CronJob is suspended");
    }
    healthy()
}

/// gitops-engine's HPA check: a condition saying it cannot scale is Degraded; able to scale is
/// Healthy; anything else is still waiting.
fn autoscaler(obj: &Value) -> HealthStatus {
    for type_ in ["AbleToScale", "ScalingActive"] {
        let failing = condition(obj, type_).and_then(|c| str_at(c, "/status")) == Some("False");
        let reason = condition(obj, type_).and_then(|c| str_at(c, "/reason"));
        if failing && reason != Some("ScalingDisabled") {
            return degraded(condition_message(obj, type_));
        }
    }
    if condition_is_true(obj, "AbleToScale") {
        return healthy();
    }
    progressing("Waiting to Autoscale")
}

/// Argo CD's PodDisruptionBudget check: Degraded while fewer pods are healthy than it requires.
fn disruption_budget(obj: &Value) -> HealthStatus {
    match (
        int(obj, "/status/currentHealthy"),
        int(obj, "/status/desiredHealthy"),
    ) {
        (Some(current), Some(desired)) if current < desired => degraded(format!(
            "Pod Disruption Budget has {current} healthy pods of the {desired} it requires"
        )),
        (Some(_), Some(_)) => healthy(),
        _ => progressing("Waiting for the budget's status"),
    }
}

/// Argo CD's cert-manager Certificate check.
fn certificate(obj: &Value) -> HealthStatus {
    if condition_is_true(obj, "Ready") {
        return healthy();
    }
    if condition_is_true(obj, "Issuing") {
        return progressing(condition_message(obj, "Issuing"));
    }
    if condition(obj, "Ready").and_then(|c| str_at(c, "/status")) == Some("False") {
        return degraded(condition_message(obj, "Ready"));
    }
    progressing("Waiting for the certificate")
}

/// Argo CD's cert-manager Issuer and ClusterIssuer check.
fn issuer(obj: &Value) -> HealthStatus {
    if condition_is_true(obj, "Ready") {
        return healthy();
    }
    if condition(obj, "Ready").and_then(|c| str_at(c, "/status")) == Some("False") {
        return degraded(condition_message(obj, "Ready"));
    }
    progressing("Initializing the issuer")
}

fn pvc(obj: &Value) -> HealthStatus {
    match str_at(obj, "/status/phase") {
        Some("Bound") => healthy(),
        Some("Lost") => degraded("The claim lost its volume"),
        _ => progressing("Waiting for the claim to be bound"),
    }
}

fn namespace(obj: &Value) -> HealthStatus {
    match str_at(obj, "/status/phase") {
        Some("Terminating") => progressing("Namespace is terminating"),
        _ => healthy(),
    }
}

/// Argo Rollouts' health: only the phase of the latest generation counts; Paused is Suspended.
fn rollout(obj: &Value) -> HealthStatus {
    if !generation_observed(obj) {
        return progressing("Waiting for rollout spec update to be observed");
    }
    let message = str_at(obj, "/status/message").unwrap_or_default();
    match str_at(obj, "/status/phase") {
        Some("Healthy") => health(HealthStatusCode::Healthy, message),
        Some("Paused") => health(HealthStatusCode::Suspended, message),
        Some("Degraded") => degraded(message),
        _ => progressing(message),
    }
}

fn analysis_run(obj: &Value) -> HealthStatus {
    let message = str_at(obj, "/status/message").unwrap_or_default();
    match str_at(obj, "/status/phase") {
        Some("Successful") => health(HealthStatusCode::Healthy, message),
        Some("Failed" | "Error") => degraded(message),
        Some("Inconclusive") => health(HealthStatusCode::Suspended, message),
        _ => progressing(message),
    }
}

/// The Application's health: the worst of its objects' (Healthy when none has a health).
pub fn aggregate<'a>(healths: impl IntoIterator<Item = &'a HealthStatus>) -> HealthStatus {
    let mut worst: Option<&HealthStatus> = None;
    for h in healths {
        if worst.is_none_or(|w| h.status.severity() > w.status.severity()) {
            worst = Some(h);
        }
    }
    match worst {
        Some(h) if h.status != HealthStatusCode::Healthy => h.clone(),
        _ => healthy(),
    }
}

/// Whether a sync may go on to the next wave, given the health of what it applied so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaveGate {
    Proceed,
    /// Waiting for the named object.
    Wait(String),
    /// The named object is Degraded: the sync fails.
    Fail(String),
}

/// Objects without a health check, Healthy and Suspended ones (a paused Rollout) let the sync go
/// on; Degraded fails it; anything else is waited for.
pub fn wave_gate<'a>(
    objects: impl IntoIterator<Item = (String, Option<&'a HealthStatus>)>,
) -> WaveGate {
    let mut waiting = None;
    for (name, health) in objects {
        let Some(health) = health else { continue };
        let detail = health
            .message
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        match health.status {
            HealthStatusCode::Healthy | HealthStatusCode::Suspended => {}
            HealthStatusCode::Degraded => {
                return WaveGate::Fail(format!("{name} is Degraded{detail}"));
            }
            other => {
                waiting.get_or_insert_with(|| format!("{name} is {other}{detail}"));
            }
        }
    }
    waiting.map_or(WaveGate::Proceed, WaveGate::Wait)
}

#[cfg(test)]
mod tests {
    use super::*;
    use HealthStatusCode::*;
    use serde_json::json;

    fn code(obj: Value) -> Option<HealthStatusCode> {
        health_of(&obj, &HealthRules::default()).map(|h| h.status)
    }

    fn deploy(spec: Value, status: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "generation": 2}, "spec": spec, "status": status})
    }

    #[test]
    fn g8_deployment() {
        let cases = [
            (
                json!({"replicas": 2}),
                json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
                Healthy,
            ),
            (
                json!({"replicas": 2}),
                json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
                Progressing,
            ),
            (
                json!({"replicas": 2}),
                json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 2}),
                Progressing,
            ),
            (
                json!({"replicas": 2}),
                json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1}),
                Progressing,
            ),
            (
                json!({"replicas": 2}),
                json!({"observedGeneration": 2, "conditions": [
                    {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}),
                Degraded,
            ),
            (json!({"replicas": 2, "paused": true}), json!({}), Suspended),
            (
                json!({"replicas": 0}),
                json!({"observedGeneration": 2}),
                Healthy,
            ),
        ];
        for (spec, status, want) in cases {
            assert_eq!(
                code(deploy(spec.clone(), status.clone())),
                Some(want),
                "{spec} {status}"
            );
        }
    }

    #[test]
    fn g8_workloads() {
        let rs = |status: Value| {
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"generation": 1},
                   "spec": {"replicas": 2}, "status": status})
        };
        assert_eq!(
            code(rs(json!({"observedGeneration": 1, "availableReplicas": 2}))),
            Some(Healthy)
        );
        assert_eq!(
            code(rs(json!({"observedGeneration": 1, "availableReplicas": 1}))),
            Some(Progressing)
        );
        assert_eq!(
            code(rs(
                json!({"observedGeneration": 1, "conditions": [{"type": "ReplicaFailure", "status": "True", "message": "quota"}]})
            )),
            Some(Degraded)
        );

        let sts = |status: Value| {
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"generation": 1},
                   "spec": {"replicas": 2}, "status": status})
        };
        assert_eq!(
            code(sts(
                json!({"observedGeneration": 1, "readyReplicas": 2, "currentRevision": "a", "updateRevision": "a"})
            )),
            Some(Healthy)
        );
        assert_eq!(
            code(sts(
                json!({"observedGeneration": 1, "readyReplicas": 2, "currentRevision": "a", "updateRevision": "b"})
            )),
            Some(Progressing)
        );
        assert_eq!(
            code(sts(json!({"observedGeneration": 1, "readyReplicas": 1}))),
            Some(Progressing)
        );

        let ds = |status: Value| json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"generation": 1}, "status": status});
        assert_eq!(
            code(ds(
                json!({"observedGeneration": 1, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 3})
            )),
            Some(Healthy)
        );
        assert_eq!(
            code(ds(
                json!({"observedGeneration": 1, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 2})
            )),
            Some(Progressing)
        );
    }

    #[test]
    fn g8_pods_jobs_claims_services_ingresses() {
        let pod = |status: Value| json!({"apiVersion": "v1", "kind": "Pod", "status": status});
        assert_eq!(
            code(pod(
                json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]})
            )),
            Some(Healthy)
        );
        assert_eq!(code(pod(json!({"phase": "Running"}))), Some(Progressing));
        assert_eq!(code(pod(json!({"phase": "Pending"}))), Some(Progressing));
        assert_eq!(code(pod(json!({"phase": "Failed"}))), Some(Degraded));
        assert_eq!(code(pod(json!({"phase": "Succeeded"}))), Some(Healthy));
        assert_eq!(
            code(pod(json!({"phase": "Running", "containerStatuses": [
                {"state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}))),
            Some(Degraded)
        );

        let job = |spec: Value, status: Value| json!({"apiVersion": "batch/v1", "kind": "Job", "spec": spec, "status": status});
        assert_eq!(
            code(job(
                json!({}),
                json!({"conditions": [{"type": "Complete", "status": "True"}]})
            )),
            Some(Healthy)
        );
        assert_eq!(
            code(job(
                json!({}),
                json!({"conditions": [{"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}]})
            )),
            Some(Degraded)
        );
        assert_eq!(code(job(json!({}), json!({}))), Some(Progressing));
        assert_eq!(
            code(job(json!({"suspend": true}), json!({}))),
            Some(Suspended)
        );

        let pvc = |phase: &str| json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "status": {"phase": phase}});
        assert_eq!(code(pvc("Bound")), Some(Healthy));
        assert_eq!(code(pvc("Pending")), Some(Progressing));
        assert_eq!(code(pvc("Lost")), Some(Degraded));

        assert_eq!(
            code(json!({"apiVersion": "v1", "kind": "Service", "spec": {"type": "ClusterIP"}})),
            Some(Healthy)
        );
        assert_eq!(
            code(json!({"apiVersion": "v1", "kind": "Service", "spec": {"type": "LoadBalancer"}})),
            Some(Progressing)
        );
        assert_eq!(
            code(
                json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                        "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}})
            ),
            Some(Healthy)
        );
        assert_eq!(code(json!({"apiVersion": "v1", "kind": "ConfigMap"})), None);
    }

    #[test]
    fn common_crds_and_autoscaling_kinds_have_argo_cds_checks() {
        let with = |api: &str, kind: &str, spec: Value, status: Value| {
            code(
                json!({"apiVersion": api, "kind": kind, "metadata": {"name": "x"},
                        "spec": spec, "status": status}),
            )
        };
        let conditions = |list: Value| json!({"conditions": list});
        let cert = |status: Value| with("cert-manager.io/v1", "Certificate", json!({}), status);
        assert_eq!(
            cert(conditions(json!([{"type": "Ready", "status": "True"}]))),
            Some(Healthy)
        );
        assert_eq!(
            cert(conditions(
                json!([{"type": "Ready", "status": "False"}, {"type": "Issuing", "status": "True"}])
            )),
            Some(Progressing)
        );
        assert_eq!(
            cert(conditions(json!([{"type": "Ready", "status": "False"}]))),
            Some(Degraded)
        );
        assert_eq!(cert(json!({})), Some(Progressing));
        let issuer = |status: Value| with("cert-manager.io/v1", "ClusterIssuer", json!({}), status);
        assert_eq!(
            issuer(conditions(json!([{"type": "Ready", "status": "True"}]))),
            Some(Healthy)
        );
        assert_eq!(
            issuer(conditions(json!([{"type": "Ready", "status": "False"}]))),
            Some(Degraded)
        );

        let hpa = |list: Value| {
            with(
                "autoscaling/v2",
                "HorizontalPodAutoscaler",
                json!({}),
                conditions(list),
            )
        };
        assert_eq!(
            hpa(json!([{"type": "AbleToScale", "status": "True"}])),
            Some(Healthy)
        );
        assert_eq!(
            hpa(json!([{"type": "AbleToScale", "status": "True"},
                       {"type": "ScalingActive", "status": "False", "reason": "FailedGetResourceMetric"}])),
            Some(Degraded)
        );
        assert_eq!(hpa(json!([])), Some(Progressing));

        let pdb = |status: Value| with("policy/v1", "PodDisruptionBudget", json!({}), status);
        assert_eq!(
            pdb(json!({"currentHealthy": 3, "desiredHealthy": 2})),
            Some(Healthy)
        );
        assert_eq!(
            pdb(json!({"currentHealthy": 1, "desiredHealthy": 2})),
            Some(Degraded)
        );
        assert_eq!(pdb(json!({})), Some(Progressing));

        let cron = |spec: Value| with("batch/v1", "CronJob", spec, json!({}));
        assert_eq!(cron(json!({"suspend": true})), Some(Suspended));
        assert_eq!(cron(json!({"schedule": "* * * * *"})), Some(Healthy));
    }

    #[test]
    fn a_users_rule_wins_over_the_built_in_check() {
        let data = [(
            "batch_CronJob".to_string(),
            "- when: 'spec.schedule == \"@never\"'\n  status: Degraded\n  message: never runs\n- status: Healthy\n".to_string(),
        )]
        .into_iter()
        .collect();
        let rules = HealthRules::parse(&data);
        let cron = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "x"},
                          "spec": {"schedule": "@never"}});
        let health = health_of(&cron, &rules).unwrap();
        assert_eq!(
            (health.status, health.message.as_deref()),
            (Degraded, Some("never runs"))
        );
    }

    #[test]
    fn g8_rollouts() {
        let rollout = |phase: &str, observed: &str| {
            json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
                   "metadata": {"generation": 3},
                   "status": {"phase": phase, "observedGeneration": observed, "message": "m"}})
        };
        assert_eq!(code(rollout("Healthy", "3")), Some(Healthy));
        assert_eq!(code(rollout("Paused", "3")), Some(Suspended));
        assert_eq!(code(rollout("Degraded", "3")), Some(Degraded));
        assert_eq!(code(rollout("Progressing", "3")), Some(Progressing));
        assert_eq!(code(rollout("Healthy", "2")), Some(Progressing));
        assert_eq!(
            health_of(&rollout("Degraded", "3"), &HealthRules::default())
                .unwrap()
                .message
                .as_deref(),
            Some("m")
        );
    }

    /// The rule README gives for assessing child Applications, as Argo CD's opt-in Lua rule does.
    const CHILD_APPLICATION_RULE: &str = r#"
- when: 'status.health?.status == "Healthy"'
  status: Healthy
- when: 'status.health?.status == "Suspended"'
  status: Suspended
- when: 'status.health?.status == "Degraded"'
  status: Degraded
  message: a child Application is Degraded
- when: 'status.health?.status == "Missing"'
  status: Missing
- status: Progressing
"#;

    #[test]
    fn child_applications_count_only_when_a_rule_opts_in() {
        let app = |status: Value| json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Application", "status": status});
        let degraded_child = app(json!({"health": {"status": "Degraded"}}));
        assert_eq!(
            health_of(&degraded_child, &HealthRules::default()),
            None,
            "Argo CD (since 1.8) does not assess child Applications by default"
        );
        let argo_child = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application"});
        assert_eq!(health_of(&argo_child, &HealthRules::default()), None);

        let rules = HealthRules::parse(&std::collections::BTreeMap::from([(
            "sluice.dev_Application".to_string(),
            CHILD_APPLICATION_RULE.to_string(),
        )]));
        let code = |obj: Value| health_of(&obj, &rules).map(|h| h.status);
        assert_eq!(code(degraded_child), Some(Degraded));
        assert_eq!(
            code(app(json!({"health": {"status": "Healthy"}}))),
            Some(Healthy)
        );
        assert_eq!(
            code(app(json!({"health": {"status": "Suspended"}}))),
            Some(Suspended)
        );
        assert_eq!(code(app(json!({}))), Some(Progressing));
    }

    #[test]
    fn g7_the_next_wave_waits_for_health() {
        let ok = healthy();
        let paused = health(Suspended, "paused");
        let rolling = progressing("rolling");
        let broken = degraded("crash");
        let gate = |items: Vec<(&str, Option<&HealthStatus>)>| {
            wave_gate(items.into_iter().map(|(n, h)| (n.to_string(), h)))
        };
        assert_eq!(
            gate(vec![("a", Some(&ok)), ("b", None), ("c", Some(&paused))]),
            WaveGate::Proceed
        );
        assert_eq!(
            gate(vec![("a", Some(&ok)), ("b", Some(&rolling))]),
            WaveGate::Wait("b is Progressing: rolling".into())
        );
        assert_eq!(
            gate(vec![("a", Some(&rolling)), ("b", Some(&broken))]),
            WaveGate::Fail("b is Degraded: crash".into())
        );
    }

    #[test]
    fn application_health_is_the_worst_child() {
        let hs = [
            healthy(),
            health(Suspended, "paused"),
            degraded("broken"),
            progressing("rolling"),
        ];
        let worst = aggregate(&hs);
        assert_eq!(worst.status, Degraded);
        assert_eq!(worst.message.as_deref(), Some("broken"));
        assert_eq!(aggregate(&[]).status, Healthy);
        assert_eq!(aggregate(&[healthy()]).message, None);
    }
}
