//! Argo Rollouts' `job` metric provider: a measurement is a batch/v1 Job.
//!
//! Unlike the other providers a measurement takes time, so it lives in the run's status across
//! reconciles (and controller restarts), as Argo's `Run` / `Resume` / `Terminate`
//! (`metricproviders/job/job.go`):
//! - *start*: create the Job named `<run uid>.<metric>.<count + error + 1>` (the metric name is
//!   shortened to keep the name within 63 characters), owned by the run (controller reference),
//!   labelled `analysisrun.argoproj.io/uid` (its pods too) and annotated with the run's name,
//!   namespace and the metric. The measurement is Running, with `job-name` / `job-namespace` in its
//!   metadata. A Job of that name that already exists and is owned by the same run is adopted (a
//!   restart between the create and the status write);
//! - *resume*: read the Job: its `Complete` condition makes the measurement Successful, `Failed`
//!   makes it Failed (with the Job's reason and message); a Job that is gone makes it an Error; else
//!   it stays Running and is looked at again after `sqrt(2 × elapsed)` seconds (Argo's back-off),
//!   or sooner when the Job changes (the controller watches the metadata of labelled Jobs);
//! - *terminate* (the run is terminated or ended while the Job runs): delete the Job (propagation
//!   Background: the Job goes at once, its pods after it); the measurement is Inconclusive,
//!   "Metric Terminated", as in Argo;
//! - *garbage collection*: when a metric has more Jobs than its measurement retention (default 10,
//!   Argo's `DefaultMeasurementHistoryLimit`), the oldest are deleted. Argo counts the Jobs of the
//!   whole run; here they are counted per metric, so one metric's Jobs never evict another's.
//!   Deleting the run deletes its Jobs through the owner reference.
//!
//! `successCondition` / `failureCondition` are not used by this provider (Argo ignores them too):
//! the Job's own outcome is the verdict. Argo's short cut for pods stuck on image pulls (measurement
//! Inconclusive) is not implemented: such a Job runs until its own `activeDeadlineSeconds` or
//! `backoffLimit` ends it. No `backoffLimit` is defaulted (Argo sets none; Kubernetes' default 6
//! applies).

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, ListParams};
use kube::core::PartialObjectMeta;
use kube::{Api, Client, Resource};
use serde_json::{Map, Value, json};

use crate::api::analysis::{AnalysisPhase, AnalysisRun, Measurement, Metric, MetricResult};

/// Label on the Job and its pods: the uid of the run (Argo's `AnalysisRunUIDLabelKey`); the
/// controller watches Jobs with this label only.
pub const UID_LABEL: &str = "analysisrun.argoproj.io/uid";
/// Annotation on the Job: the run's name.
pub const RUN_NAME_ANNOTATION: &str = "analysisrun.argoproj.io/name";
/// Annotation on the Job: the run's namespace.
pub const RUN_NAMESPACE_ANNOTATION: &str = "analysisrun.argoproj.io/namespace";
/// Annotation on the Job: the metric it measures (a metric name may not fit in a label value).
pub const METRIC_ANNOTATION: &str = "analysisrun.argoproj.io/metric-name";
/// Measurement metadata: the Job's name.
pub const JOB_NAME_KEY: &str = "job-name";
/// Measurement metadata: the Job's namespace.
pub const JOB_NAMESPACE_KEY: &str = "job-namespace";
/// Message of a measurement whose Job was deleted because the run ended (Argo's).
pub const TERMINATED_MESSAGE: &str = "Metric Terminated";
/// The Job controller puts the Job's name into a pod label, so the name must be a valid label value.
const NAME_LIMIT: usize = 63;
/// The longest Job condition message copied into a measurement.
const MESSAGE_LIMIT: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("provider.job: {0}")]
    Spec(String),
    #[error("creating Job {namespace}/{name}: {reason}")]
    Create {
        namespace: String,
        name: String,
        reason: String,
    },
    #[error("Job {namespace}/{name} exists and belongs to another AnalysisRun")]
    NotOurs { namespace: String, name: String },
    #[error("reading Job {namespace}/{name}: {source}")]
    Get {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting Job {namespace}/{name}: {source}")]
    Delete {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("listing the Jobs of AnalysisRun {namespace}/{name}: {source}")]
    List {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// The run a Job is created for.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRef {
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

impl RunRef {
    /// `None` for a run not yet stored (no uid): a Job could not be owned by it.
    pub fn of(run: &AnalysisRun) -> Option<Self> {
        Some(Self {
            name: run.metadata.name.clone()?,
            namespace: run.metadata.namespace.clone()?,
            uid: run.metadata.uid.clone()?,
        })
    }
}

// ---------------------------------------------------------------------------------------------------
// PURE: names, the Job object, outcomes, scheduling, garbage-collection choice
// ---------------------------------------------------------------------------------------------------

/// The number in the next Job's name: every measurement ever started + 1 (Argo's `getJobIDSuffix`).
pub fn next_job_id(result: Option<&MetricResult>) -> i64 {
    result.map_or(0, |r| i64::from(r.count) + i64::from(r.error)) + 1
}

/// `<uid>.<metric>.<id>`, the metric name cut (at a character boundary) so the whole fits in 63.
pub fn job_name(uid: &str, metric: &str, id: i64) -> String {
    let name = format!("{uid}.{metric}.{id}");
    if name.len() <= NAME_LIMIT {
        return name;
    }
    let over = name.len() - NAME_LIMIT;
    let mut keep = metric.len().saturating_sub(over);
    while !metric.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{uid}.{}.{id}", &metric[..keep])
}

/// The Job of one measurement (as JSON, so the JobSpec goes to the API server exactly as written):
/// `provider.job.spec` with the run's uid label added to the pod template, `provider.job.metadata`
/// labels and annotations plus the run's, and a controller reference to the run.
pub fn build_job(run: &RunRef, metric: &Metric, id: i64) -> Result<Value, JobError> {
    let job = metric
        .provider
        .job
        .as_ref()
        .ok_or_else(|| JobError::Spec("not set".into()))?;
    let mut spec = job
        .get("spec")
        .filter(|s| s.is_object())
        .cloned()
        .ok_or_else(|| JobError::Spec("spec must be a JobSpec object".into()))?;
    let mut labels = string_map(job, "labels")?;
    let mut annotations = string_map(job, "annotations")?;
    labels.insert(UID_LABEL.into(), json!(run.uid));
    annotations.insert(RUN_NAME_ANNOTATION.into(), json!(run.name));
    annotations.insert(RUN_NAMESPACE_ANNOTATION.into(), json!(run.namespace));
    annotations.insert(METRIC_ANNOTATION.into(), json!(metric.name));

    let template = spec
        .get_mut("template")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| JobError::Spec("spec.template must be a pod template object".into()))?;
    let template_meta = template
        .entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| JobError::Spec("spec.template.metadata must be an object".into()))?;
    let pod_labels = template_meta
        .entry("labels")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| JobError::Spec("spec.template.metadata.labels must be a map".into()))?;
    // Argo labels the pods too, so they can be found by run.
    pod_labels.insert(UID_LABEL.into(), json!(run.uid));

    Ok(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(&run.uid, &metric.name, id),
            "namespace": run.namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [{
                "apiVersion": AnalysisRun::api_version(&()),
                "kind": AnalysisRun::kind(&()),
                "name": run.name,
                "uid": run.uid,
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        },
        "spec": spec,
    }))
}

/// `provider.job.metadata.<key>` as a map of strings (empty when unset).
fn string_map(job: &Value, key: &str) -> Result<Map<String, Value>, JobError> {
    match job.get("metadata").and_then(|m| m.get(key)) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(map)) if map.values().all(Value::is_string) => Ok(map.clone()),
        Some(_) => Err(JobError::Spec(format!(
            "metadata.{key} must be a map of strings"
        ))),
    }
}

/// Where a Job stands.
#[derive(Clone, Debug, PartialEq)]
pub enum JobOutcome {
    Running,
    Complete,
    Failed { message: String },
}

/// The outcome from the Job's conditions: a true `Complete` or `Failed` condition ends it (the
/// Job controller sets these only once the Job is finished).
pub fn outcome(name: &str, status: Option<&JobStatus>) -> JobOutcome {
    let conditions = status.and_then(|s| s.conditions.as_deref()).unwrap_or(&[]);
    for c in conditions.iter().filter(|c| c.status == "True") {
        match c.type_.as_str() {
            "Complete" => return JobOutcome::Complete,
            "Failed" => {
                let mut message = format!("Job {name} failed");
                if let Some(reason) = c.reason.as_deref().filter(|r| !r.is_empty()) {
                    message.push_str(&format!(": {reason}"));
                }
                if let Some(text) = c.message.as_deref().filter(|m| !m.is_empty()) {
                    message.push_str(&format!(": {}", super::snippet(text, MESSAGE_LIMIT)));
                }
                return JobOutcome::Failed { message };
            }
            _ => {}
        }
    }
    JobOutcome::Running
}

/// What a reconcile read about the Job of an unfinished measurement.
#[derive(Clone, Debug, PartialEq)]
pub enum Observed {
    Found(JobOutcome),
    /// The Job is gone (deleted by hand, or never created).
    Missing,
}

/// The Job an unfinished measurement refers to, from its metadata (`job-namespace` defaults to the
/// run's, as in Argo). The status can be written by hand, so only a Job of this run's (its
/// namespace, its uid in the name) is ever read or deleted through it.
pub fn job_ref(m: &Measurement, run: &RunRef) -> Result<(String, String), String> {
    let name = m
        .metadata
        .get(JOB_NAME_KEY)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| "job metadata reference missing".to_string())?;
    let namespace = m
        .metadata
        .get(JOB_NAMESPACE_KEY)
        .filter(|n| !n.is_empty())
        .unwrap_or(&run.namespace);
    if namespace != &run.namespace {
        return Err(format!(
            "Job namespace {namespace:?} is not the AnalysisRun's ({:?})",
            run.namespace
        ));
    }
    if !name.starts_with(&format!("{}.", run.uid)) {
        return Err(format!("Job {name:?} is not one of this AnalysisRun's"));
    }
    Ok((namespace.clone(), name.clone()))
}

/// Whether the measurement is still in flight (started, not finished).
pub fn in_flight(m: &Measurement) -> bool {
    !m.phase.is_completed()
}

/// The measurement of a Job just created: Running, pointing at the Job, looked at again at once (a
/// short Job may be done already).
pub fn started(namespace: &str, name: &str, now: Timestamp) -> Measurement {
    Measurement {
        phase: AnalysisPhase::Running,
        started_at: Some(Time(now)),
        resume_at: Some(Time(now)),
        metadata: BTreeMap::from([
            (JOB_NAME_KEY.to_string(), name.to_string()),
            (JOB_NAMESPACE_KEY.to_string(), namespace.to_string()),
        ]),
        ..Measurement::default()
    }
}

/// An unfinished measurement ended in Error (Argo's `MarkMeasurementError`).
pub fn errored(m: &Measurement, message: String, now: Timestamp) -> Measurement {
    Measurement {
        phase: AnalysisPhase::Error,
        message: Some(message),
        finished_at: Some(Time(now)),
        resume_at: None,
        ..m.clone()
    }
}

/// An unfinished measurement whose Job was deleted because the run ended.
pub fn terminated(m: &Measurement, now: Timestamp) -> Measurement {
    Measurement {
        phase: AnalysisPhase::Inconclusive,
        message: Some(TERMINATED_MESSAGE.into()),
        finished_at: Some(Time(now)),
        resume_at: None,
        ..m.clone()
    }
}

/// The measurement after reading its Job (PURE): finished when the Job is, an Error when the Job is
/// gone, else still Running with the next look `sqrt(2 × elapsed)` seconds away once the previous
/// one is due. `None`: nothing changed (not due yet), so no status write.
pub fn resume(m: &Measurement, observed: &Observed, now: Timestamp) -> Option<Measurement> {
    let finished = |phase: AnalysisPhase, message: Option<String>| Measurement {
        phase,
        message,
        finished_at: Some(Time(now)),
        resume_at: None,
        ..m.clone()
    };
    match observed {
        Observed::Missing => {
            let name = m.metadata.get(JOB_NAME_KEY).cloned().unwrap_or_default();
            Some(errored(m, format!("Job {name} not found"), now))
        }
        Observed::Found(JobOutcome::Complete) => Some(finished(AnalysisPhase::Successful, None)),
        Observed::Found(JobOutcome::Failed { message }) => {
            Some(finished(AnalysisPhase::Failed, Some(message.clone())))
        }
        Observed::Found(JobOutcome::Running) => {
            if m.resume_at.as_ref().is_some_and(|t| t.0 > now) {
                return None;
            }
            let started = m.started_at.as_ref().map_or(now, |t| t.0);
            Some(Measurement {
                resume_at: Some(Time(add(now, backoff(started, now)))),
                ..m.clone()
            })
        }
    }
}

/// Argo's growing delay between looks at a running Job: `sqrt(2 × elapsed)` seconds, at least one
/// second (a Job change triggers a reconcile anyway) and at most five minutes.
pub fn backoff(started: Timestamp, now: Timestamp) -> Duration {
    let elapsed = started.duration_until(now).as_secs_f64().max(0.0);
    Duration::from_secs_f64((2.0 * elapsed).sqrt().clamp(1.0, 300.0))
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// What garbage collection knows of one existing Job.
#[derive(Clone, Debug, PartialEq)]
pub struct ExistingJob {
    pub name: String,
    pub metric: Option<String>,
    pub created: Option<Timestamp>,
    pub deleting: bool,
}

/// The Jobs of `metric` to delete so that at most `keep` (at least 1) remain: the oldest first, by
/// creation time and then by the number in the name (creation times have second precision). Jobs
/// already being deleted are not counted.
pub fn to_collect(jobs: &[ExistingJob], metric: &str, keep: i32) -> Vec<String> {
    let mut mine: Vec<&ExistingJob> = jobs
        .iter()
        .filter(|j| !j.deleting && j.metric.as_deref() == Some(metric))
        .collect();
    mine.sort_by_key(|j| (j.created, id_of(&j.name), j.name.clone()));
    let keep = usize::try_from(keep.max(1)).unwrap_or(1);
    let excess = mine.len().saturating_sub(keep);
    mine.into_iter()
        .take(excess)
        .map(|j| j.name.clone())
        .collect()
}

fn id_of(name: &str) -> i64 {
    name.rsplit('.')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// What `kubectl sluice lint` reports of a job metric (field under the metric, message): a Job
/// object that cannot be built from it, and conditions that would be ignored.
pub fn lint(metric: &Metric) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    let run = RunRef {
        name: "lint".into(),
        namespace: "lint".into(),
        uid: "lint".into(),
    };
    if let Err(JobError::Spec(reason)) = build_job(&run, metric, 1) {
        problems.push(("provider.job", reason));
    }
    for (field, set) in [
        ("successCondition", &metric.success_condition),
        ("failureCondition", &metric.failure_condition),
    ] {
        if set.as_deref().is_some_and(|c| !c.trim().is_empty()) {
            problems.push((
                field,
                "not used by the job provider (the Job's outcome decides, as in Argo)".to_string(),
            ));
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------------
// I/O: create, read, delete, collect
// ---------------------------------------------------------------------------------------------------

/// Creates the Job of the measurement `id` of `metric` and returns the Running measurement; a Job
/// the API server refuses (an invalid or unknown field: validation is strict) is an Error
/// measurement with its reason.
pub async fn start(
    client: &Client,
    run: &RunRef,
    metric: &Metric,
    id: i64,
    field_manager: &str,
    now: Timestamp,
) -> Measurement {
    let created = build_job(run, metric, id);
    let outcome = match created {
        Ok(job) => create(client, run, &job, field_manager).await,
        Err(e) => Err(e),
    };
    let name = job_name(&run.uid, &metric.name, id);
    match outcome {
        Ok(()) => started(&run.namespace, &name, now),
        Err(e) => {
            let m = Measurement {
                phase: AnalysisPhase::Error,
                started_at: Some(Time(now)),
                ..Measurement::default()
            };
            errored(&m, e.to_string(), Timestamp::now())
        }
    }
}

async fn create(
    client: &Client,
    run: &RunRef,
    job: &Value,
    field_manager: &str,
) -> Result<(), JobError> {
    let name = job["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let create_err = |reason: String| JobError::Create {
        namespace: run.namespace.clone(),
        name: name.clone(),
        reason,
    };
    let body = serde_json::to_vec(job).map_err(|e| create_err(e.to_string()))?;
    let pp = kube::api::PostParams {
        dry_run: false,
        field_manager: Some(field_manager.to_string()),
    };
    let request = kube::core::Request::new(Job::url_path(&(), Some(&run.namespace)))
        .create(&pp, body)
        .map_err(|e| create_err(e.to_string()))?;
    let request = strict(request).map_err(create_err)?;
    match client.request::<Job>(request).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => adopt(client, run, &name).await,
        Err(kube::Error::Api(s)) => Err(create_err(s.message)),
        Err(e) => Err(create_err(e.to_string())),
    }
}

/// The create request with `fieldValidation=Strict`: a field the Job does not have is refused with
/// its path instead of being dropped (kube's `PostParams` has no such option).
fn strict(request: http::Request<Vec<u8>>) -> Result<http::Request<Vec<u8>>, String> {
    let (mut parts, body) = request.into_parts();
    let uri = parts.uri.to_string();
    let sep = if uri.contains('?') { '&' } else { '?' };
    parts.uri = format!("{uri}{sep}fieldValidation=Strict")
        .parse()
        .map_err(|e: http::uri::InvalidUri| e.to_string())?;
    Ok(http::Request::from_parts(parts, body))
}

/// A Job of this name exists: the same run created it before a restart (its status write was
/// lost), unless the controller reference says otherwise.
async fn adopt(client: &Client, run: &RunRef, name: &str) -> Result<(), JobError> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), &run.namespace);
    let existing = jobs.get(name).await.map_err(|source| JobError::Get {
        namespace: run.namespace.clone(),
        name: name.to_string(),
        source,
    })?;
    let owner = existing
        .metadata
        .owner_references
        .unwrap_or_default()
        .into_iter()
        .find(|o| o.controller == Some(true));
    if owner.is_some_and(|o| o.uid == run.uid) {
        tracing::info!(job = name, "adopted the Job created before a restart");
        Ok(())
    } else {
        Err(JobError::NotOurs {
            namespace: run.namespace.clone(),
            name: name.to_string(),
        })
    }
}

/// Reads the Job of an unfinished measurement. A Job that is not found is [`Observed::Missing`];
/// other errors are returned (the reconcile is retried rather than the measurement failed).
pub async fn observe(client: &Client, namespace: &str, name: &str) -> Result<Observed, JobError> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    match jobs.get_opt(name).await {
        Ok(Some(job)) => Ok(Observed::Found(outcome(name, job.status.as_ref()))),
        Ok(None) => Ok(Observed::Missing),
        Err(source) => Err(JobError::Get {
            namespace: namespace.to_string(),
            name: name.to_string(),
            source,
        }),
    }
}

/// Deletes a Job (Background propagation: its pods are removed by the garbage collector). Already
/// gone is fine.
pub async fn delete(client: &Client, namespace: &str, name: &str) -> Result<(), JobError> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    match jobs.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(JobError::Delete {
            namespace: namespace.to_string(),
            name: name.to_string(),
            source,
        }),
    }
}

/// Deletes the oldest Jobs of `metric` beyond `keep` (Argo's `GarbageCollect`), reading only the
/// Jobs' metadata, selected by the run's uid label.
pub async fn collect_garbage(
    client: &Client,
    run: &RunRef,
    metric: &str,
    keep: i32,
) -> Result<Vec<String>, JobError> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), &run.namespace);
    let selector = format!("{UID_LABEL}={}", run.uid);
    let list = jobs
        .list_metadata(&ListParams::default().labels(&selector))
        .await
        .map_err(|source| JobError::List {
            namespace: run.namespace.clone(),
            name: run.name.clone(),
            source,
        })?;
    let existing: Vec<ExistingJob> = list.items.iter().map(existing).collect();
    let doomed = to_collect(&existing, metric, keep);
    for name in &doomed {
        delete(client, &run.namespace, name).await?;
        tracing::info!(job = %name, metric, "garbage-collected an old analysis Job");
    }
    Ok(doomed)
}

fn existing(job: &PartialObjectMeta<Job>) -> ExistingJob {
    let meta = &job.metadata;
    ExistingJob {
        name: meta.name.clone().unwrap_or_default(),
        metric: meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(METRIC_ANNOTATION))
            .cloned(),
        created: meta.creation_timestamp.as_ref().map(|t| t.0),
        deleting: meta.deletion_timestamp.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::JobCondition;

    const UID: &str = "0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9";

    fn run() -> RunRef {
        RunRef {
            name: "web-7d9f-2".into(),
            namespace: "team".into(),
            uid: UID.into(),
        }
    }

    fn metric(job: Value) -> Metric {
        serde_json::from_value(json!({"name": "smoke", "provider": {"job": job}})).unwrap()
    }

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn smoke_job() -> Value {
        json!({
            "metadata": {"labels": {"team": "a"}, "annotations": {"note": "x"}},
            "spec": {"backoffLimit": 1, "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "t", "image": "smoke:1"}]
            }}}
        })
    }

    #[test]
    fn names_follow_argo_and_fit_in_a_label() {
        assert_eq!(job_name(UID, "smoke", 1), format!("{UID}.smoke.1"));
        let long = "a-very-long-metric-name-that-does-not-fit";
        let name = job_name(UID, long, 12);
        assert_eq!(name.len(), 63);
        assert_eq!(name, format!("{UID}.a-very-long-metric-name.12"));
        // Multi-byte characters are cut at a boundary.
        let name = job_name(UID, "ééééééééééééééééééééééé", 3);
        assert!(name.len() <= 63, "{name}");
        assert_eq!(next_job_id(None), 1);
        let r = MetricResult {
            count: 3,
            error: 2,
            ..MetricResult::default()
        };
        assert_eq!(next_job_id(Some(&r)), 6);
    }

    #[test]
    fn the_job_is_the_metrics_spec_owned_and_labelled_for_the_run() {
        let job = build_job(&run(), &metric(smoke_job()), 2).unwrap();
        assert_eq!(job["apiVersion"], "batch/v1");
        assert_eq!(job["kind"], "Job");
        let meta = &job["metadata"];
        assert_eq!(meta["name"], format!("{UID}.smoke.2"));
        assert_eq!(meta["namespace"], "team");
        assert_eq!(meta["labels"], json!({"team": "a", UID_LABEL: UID}));
        assert_eq!(
            meta["annotations"],
            json!({"note": "x", RUN_NAME_ANNOTATION: "web-7d9f-2",
                   RUN_NAMESPACE_ANNOTATION: "team", METRIC_ANNOTATION: "smoke"})
        );
        assert_eq!(
            meta["ownerReferences"],
            json!([{"apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisRun",
                    "name": "web-7d9f-2", "uid": UID, "controller": true, "blockOwnerDeletion": true}])
        );
        // The spec as written (no defaults added), plus the pod label.
        assert_eq!(job["spec"]["backoffLimit"], 1);
        assert_eq!(
            job["spec"]["template"]["metadata"]["labels"],
            json!({UID_LABEL: UID})
        );
        assert_eq!(
            job["spec"]["template"]["spec"],
            smoke_job()["spec"]["template"]["spec"]
        );
        assert!(job["spec"].get("activeDeadlineSeconds").is_none());
    }

    #[test]
    fn a_job_spec_of_the_wrong_shape_is_refused_clearly() {
        for (job, expected) in [
            (json!({}), "provider.job: spec must be a JobSpec object"),
            (
                json!({"spec": {}}),
                "provider.job: spec.template must be a pod template object",
            ),
            (
                json!({"spec": {"template": {"metadata": {"labels": []}}}}),
                "provider.job: spec.template.metadata.labels must be a map",
            ),
            (
                json!({"metadata": {"labels": {"a": 1}}, "spec": {"template": {}}}),
                "provider.job: metadata.labels must be a map of strings",
            ),
        ] {
            let err = build_job(&run(), &metric(job), 1).unwrap_err();
            assert_eq!(err.to_string(), expected);
        }
    }

    fn condition(type_: &str, status: &str, reason: &str, message: &str) -> JobCondition {
        JobCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            ..JobCondition::default()
        }
    }

    fn status(conditions: Vec<JobCondition>) -> JobStatus {
        JobStatus {
            conditions: Some(conditions),
            ..JobStatus::default()
        }
    }

    #[test]
    fn the_outcome_comes_from_the_final_conditions() {
        assert_eq!(outcome("j", None), JobOutcome::Running);
        // Conditions set before the end (success policy, failure target) do not end it.
        let pending = status(vec![condition(
            "FailureTarget",
            "True",
            "DeadlineExceeded",
            "",
        )]);
        assert_eq!(outcome("j", Some(&pending)), JobOutcome::Running);
        let done = status(vec![
            condition("SuccessCriteriaMet", "True", "CompletionsReached", ""),
            condition(
                "Complete",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            ),
        ]);
        assert_eq!(outcome("j", Some(&done)), JobOutcome::Complete);
        let failed = status(vec![condition(
            "Failed",
            "True",
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        )]);
        assert_eq!(
            outcome("j", Some(&failed)),
            JobOutcome::Failed {
                message:
                    "Job j failed: DeadlineExceeded: Job was active longer than specified deadline"
                        .into()
            }
        );
        let not_true = status(vec![condition("Complete", "False", "", "")]);
        assert_eq!(outcome("j", Some(&not_true)), JobOutcome::Running);
        let huge = status(vec![condition(
            "Failed",
            "True",
            "BackoffLimitExceeded",
            &"x".repeat(100_000),
        )]);
        let JobOutcome::Failed { message } = outcome("j", Some(&huge)) else {
            panic!("failed")
        };
        assert!(message.len() < 1100, "{}", message.len());
    }

    #[test]
    fn resume_finishes_or_schedules_the_next_look() {
        let m = started("team", "job-1", ts(100));
        assert_eq!(m.phase, AnalysisPhase::Running);
        assert!(in_flight(&m));

        let done = resume(&m, &Observed::Found(JobOutcome::Complete), ts(130)).unwrap();
        assert_eq!(done.phase, AnalysisPhase::Successful);
        assert_eq!(done.finished_at, Some(Time(ts(130))));
        assert_eq!(done.started_at, Some(Time(ts(100))));
        assert_eq!(done.metadata[JOB_NAME_KEY], "job-1");
        assert!(!in_flight(&done));

        let failed = resume(
            &m,
            &Observed::Found(JobOutcome::Failed {
                message: "Job job-1 failed: BackoffLimitExceeded".into(),
            }),
            ts(130),
        )
        .unwrap();
        assert_eq!(failed.phase, AnalysisPhase::Failed);
        assert_eq!(
            failed.message.as_deref(),
            Some("Job job-1 failed: BackoffLimitExceeded")
        );

        let gone = resume(&m, &Observed::Missing, ts(130)).unwrap();
        assert_eq!(gone.phase, AnalysisPhase::Error);
        assert_eq!(gone.message.as_deref(), Some("Job job-1 not found"));

        // Running: due now (resumeAt = start), the next look sqrt(2 × 50) = 10 s later.
        let running = Observed::Found(JobOutcome::Running);
        let later = resume(&m, &running, ts(150)).unwrap();
        assert_eq!(later.phase, AnalysisPhase::Running);
        assert_eq!(later.resume_at, Some(Time(ts(160))));
        // Not due yet: unchanged, nothing to write.
        assert_eq!(resume(&later, &running, ts(155)), None);
        assert!(resume(&later, &running, ts(160)).is_some());

        let t = terminated(&m, ts(140));
        assert_eq!(t.phase, AnalysisPhase::Inconclusive);
        assert_eq!(t.message.as_deref(), Some(TERMINATED_MESSAGE));
        assert_eq!(t.finished_at, Some(Time(ts(140))));
    }

    #[test]
    fn backoff_grows_with_the_square_root_and_is_bounded() {
        assert_eq!(backoff(ts(0), ts(0)), Duration::from_secs(1));
        assert_eq!(backoff(ts(0), ts(8)), Duration::from_secs(4));
        assert_eq!(backoff(ts(0), ts(10_000_000)), Duration::from_secs(300));
        assert_eq!(backoff(ts(10), ts(0)), Duration::from_secs(1));
    }

    #[test]
    fn only_a_job_of_the_run_is_referenced() {
        let name = format!("{UID}.smoke.1");
        let m = started("team", &name, ts(1));
        assert_eq!(job_ref(&m, &run()), Ok(("team".into(), name.clone())));
        let mut no_namespace = m.clone();
        no_namespace.metadata.remove(JOB_NAMESPACE_KEY);
        assert_eq!(
            job_ref(&no_namespace, &run()),
            Ok(("team".into(), name.clone()))
        );
        let bare = Measurement {
            phase: AnalysisPhase::Running,
            ..Measurement::default()
        };
        assert_eq!(
            job_ref(&bare, &run()),
            Err("job metadata reference missing".into())
        );
        let elsewhere = started("kube-system", &name, ts(1));
        assert!(
            job_ref(&elsewhere, &run())
                .unwrap_err()
                .contains("kube-system")
        );
        let foreign = started("team", "precious-job", ts(1));
        assert_eq!(
            job_ref(&foreign, &run()),
            Err("Job \"precious-job\" is not one of this AnalysisRun's".into())
        );
    }

    #[test]
    fn lint_names_a_broken_job_and_ignored_conditions() {
        assert!(lint(&metric(smoke_job())).is_empty());
        let mut m = metric(json!({"spec": {}}));
        m.success_condition = Some("result == true".into());
        assert_eq!(
            lint(&m),
            vec![
                (
                    "provider.job",
                    "spec.template must be a pod template object".to_string()
                ),
                (
                    "successCondition",
                    "not used by the job provider (the Job's outcome decides, as in Argo)"
                        .to_string()
                ),
            ]
        );
    }

    #[test]
    fn garbage_collection_keeps_the_newest_of_each_metric() {
        let job = |name: &str, metric: &str, created: i64| ExistingJob {
            name: name.into(),
            metric: Some(metric.into()),
            created: Some(ts(created)),
            deleting: false,
        };
        let jobs = vec![
            job("u.m.3", "m", 10),
            job("u.m.1", "m", 10),
            job("u.m.10", "m", 10),
            job("u.m.2", "m", 10),
            job("u.other.1", "other", 1),
            ExistingJob {
                deleting: true,
                ..job("u.m.0", "m", 1)
            },
        ];
        assert_eq!(to_collect(&jobs, "m", 2), vec!["u.m.1", "u.m.2"]);
        assert_eq!(to_collect(&jobs, "m", 10), Vec::<String>::new());
        assert_eq!(to_collect(&jobs, "m", 0), vec!["u.m.1", "u.m.2", "u.m.3"]);
        assert_eq!(to_collect(&jobs, "other", 1), Vec::<String>::new());
        // Creation time first.
        let jobs = vec![job("u.m.9", "m", 5), job("u.m.1", "m", 6)];
        assert_eq!(to_collect(&jobs, "m", 1), vec!["u.m.9"]);
    }
}
