//! The AnalysisRun reconciler: observe → plan → act.
//!
//! - *observe*: the run from the watch cache, and the Secrets its arguments name;
//! - *plan* (PURE, [`plan`]): assess the run at `now` and list the metrics whose measurement is due;
//! - *act*: take the due measurements through the [`Providers`], record them ([`record`], PURE), and
//!   write the status through the status subresource (server-side apply, field manager
//!   `sluice-analysis`) only when it changed; then requeue at the next measurement time, never polling.
//!
//! A `job` metric's measurement takes time ([`job`]): it is started (a Job created, the measurement
//! Running in the status), then each reconcile reads that one Job and finishes the measurement
//! when the Job has; a run that is terminated or ends deletes the Jobs still running. Jobs are
//! watched by metadata only and only those labelled `analysisrun.argoproj.io/uid`, to trigger a
//! reconcile of their run when they change.
//!
//! All state is in the run's status, so a controller restarted at any point continues where it was.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::Instrument;

use super::args::{self, ArgContext, ArgsError, ResolvedArgs};
use super::condition::{self, MetricValue};
use super::metrics::AnalysisRunMetrics;
use super::provider::job::{self, JobError, RunRef};
use super::provider::{Measured, Provider, ProviderError, Providers};
use super::secrets;
use super::verdict::{self, METADATA_FAILURE_CONDITION_MET};
use crate::api::analysis::{
    AnalysisPhase, AnalysisRun, AnalysisRunSpec, AnalysisRunStatus, Measurement, Metric,
    MetricResult,
};
use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::reconcile_guard::{Panicked, ReconcileGuard};

/// Field manager of every write of this controller.
pub const FIELD_MANAGER: &str = crate::api::keys::ANALYSIS_FIELD_MANAGER;
/// Retry delay after a failed reconcile (e.g. the status write failed).
const RETRY: Duration = Duration::from_secs(5);
/// How long a running run with nothing scheduled waits before it is looked at again anyway.
const RESYNC: Duration = Duration::from_secs(300);

/// What the lead passes from the controller's flags.
#[derive(Clone, Debug, Default)]
pub struct AnalysisContext {
    /// `--prometheus-url` / `PROMETHEUS_URL`: the address for templates that give none.
    pub prometheus_url: Option<String>,
    /// `--namespace`: watch one namespace only.
    pub namespace: Option<String>,
    /// Where the AnalysisRun metric families are registered.
    pub metrics: Metrics,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("writing the status of AnalysisRun {namespace}/{name}: {source}")]
    WriteStatus {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("AnalysisRun {namespace}/{name}: {source}")]
    Job {
        namespace: String,
        name: String,
        #[source]
        source: JobError,
    },
    #[error("serializing the status of AnalysisRun {namespace}/{name}: {source}")]
    Serialize {
        namespace: String,
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

struct Context {
    client: Client,
    providers: Providers,
}

/// Runs the AnalysisRun reconciler until the process stops.
pub async fn run(client: Client, ctx: AnalysisContext, readiness: Readiness) {
    let providers = match Providers::new(ctx.prometheus_url.clone(), Some(client.clone())) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "analysis controller cannot start");
            return;
        }
    };
    let runs: Api<AnalysisRun> = match ctx.namespace.as_deref() {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let guard = ReconcileGuard::new("analysis", &ctx.metrics).reporting(
        client.clone(),
        FIELD_MANAGER,
        Some(panic_status),
    );
    let context = Arc::new(Context { client, providers });
    tracing::info!(
        namespace = ctx.namespace.as_deref().unwrap_or("<all>"),
        "analysis controller running"
    );
    let (cached, changed) = readiness.watch("analysisruns", runs, watcher::Config::default());
    let jobs: Api<PartialObjectMeta<Job>> = match ctx.namespace.as_deref() {
        Some(ns) => Api::namespaced(context.client.clone(), ns),
        None => Api::all(context.client.clone()),
    };
    // Metadata only, and only the Jobs of analysis runs: a change reconciles the owning run, which
    // then reads that Job itself.
    let job_changes = watcher(jobs, watcher::Config::default().labels(job::UID_LABEL))
        .default_backoff()
        .touched_objects();
    let controller = Controller::for_stream(changed, cached.clone()).owns_stream(job_changes);
    ctx.metrics.register(|r| {
        r.register_collector(Box::new(AnalysisRunMetrics { runs: cached }));
    });
    controller
        .run(
            guard.reconcile(reconcile),
            guard.error_policy(error_policy),
            context,
        )
        .for_each(crate::reconcile_guard::log_result("analysis"))
        .await;
}

/// The plan of one reconcile (PURE): the run assessed at `now`, and the metrics to measure now.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub status: AnalysisRunStatus,
    /// Names of the metrics whose measurement is due, in spec order.
    pub due: Vec<String>,
    /// The run takes no more measurements (completed, terminated, or a metric ended badly): the
    /// measurements still in flight are to be terminated rather than resumed.
    pub terminating: bool,
}

/// Assesses the run at `now` (A2, A4) and lists the metrics due (A3). A completed run, a terminated
/// one, or one where a metric ended badly takes no more measurements.
pub fn plan(spec: &AnalysisRunSpec, status: &AnalysisRunStatus, now: Timestamp) -> Plan {
    let status = verdict::assess(spec, status, now);
    if status.phase().is_completed() || verdict::is_terminating(spec, &status) {
        return Plan {
            status,
            due: Vec::new(),
            terminating: true,
        };
    }
    let started = status.started_at.as_ref().map_or(now, |t| t.0);
    let due = spec
        .metrics
        .iter()
        .filter(|m| {
            let result = status.metric_result(&m.name);
            matches!(verdict::next_measurement_at(m, result, started), Ok(Some(at)) if at <= now)
        })
        .map(|m| m.name.clone())
        .collect();
    Plan {
        status,
        due,
        terminating: false,
    }
}

/// How long until the next measurement of any metric (PURE); `None` when the run is done.
pub fn requeue_after(
    spec: &AnalysisRunSpec,
    status: &AnalysisRunStatus,
    now: Timestamp,
) -> Option<Duration> {
    if status.phase().is_completed() {
        return None;
    }
    let started = status.started_at.as_ref().map_or(now, |t| t.0);
    let measurements = spec.metrics.iter().filter_map(|m| {
        verdict::next_measurement_at(m, status.metric_result(&m.name), started).ok()?
    });
    // An unfinished measurement (a running Job) is looked at again at its `resumeAt`.
    let resumes = status
        .metric_results
        .iter()
        .filter_map(verdict::in_flight)
        .map(|m| m.resume_at.as_ref().map_or(now, |t| t.0));
    let next = measurements.chain(resumes).min()?;
    let wait = now.duration_until(next);
    Some(
        Duration::try_from(wait)
            .unwrap_or(Duration::ZERO)
            .max(Duration::from_millis(50)),
    )
}

/// The run ended in Error before measuring, e.g. an argument that cannot be resolved (A7).
pub fn error_run(status: &AnalysisRunStatus, message: String, now: Timestamp) -> AnalysisRunStatus {
    let mut next = status.clone();
    next.phase = Some(AnalysisPhase::Error);
    next.message = Some(message);
    next.started_at.get_or_insert(Time(now));
    next.completed_at = Some(Time(now));
    next
}

/// The status patch recording a contained reconcile panic: the run ends in Error with the panic
/// as its message (it fails this run only; the Rollout treats it as any errored analysis).
fn panic_status(run: &AnalysisRun, panic: &Panicked, now: Timestamp) -> Option<serde_json::Value> {
    let current = run.status.clone().unwrap_or_default();
    if current.phase().is_completed() {
        return None;
    }
    let status = error_run(&current, panic.to_string(), now);
    Some(serde_json::json!({ "status": serde_json::to_value(status).ok()? }))
}

/// A finished measurement from what the provider answered (PURE): the conditions judge the value (A1);
/// a provider error or a condition that cannot be evaluated is an Error measurement (A11), never a
/// success. Secret argument values are masked in the message and metadata.
pub fn measurement(
    metric: &Metric,
    outcome: Result<Measured, String>,
    started: Timestamp,
    finished: Timestamp,
    args: &ResolvedArgs,
) -> Measurement {
    let mut m = Measurement {
        started_at: Some(Time(started)),
        finished_at: Some(Time(finished)),
        ..Measurement::default()
    };
    match outcome {
        Err(message) => {
            m.phase = AnalysisPhase::Error;
            m.message = Some(args.mask(&message));
        }
        Ok(Measured { value, metadata }) => {
            m.metadata = metadata
                .into_iter()
                .map(|(k, v)| (k, args.mask(&v)))
                .collect();
            m.value = Some(value.to_string());
            let success = metric.success_condition.as_deref();
            let failure = metric.failure_condition.as_deref();
            match condition::evaluate(success, failure, &value) {
                Ok(phase) => {
                    m.phase = phase;
                    if phase == AnalysisPhase::Failed && failure_met(failure, &value) {
                        m.metadata
                            .insert(METADATA_FAILURE_CONDITION_MET.into(), "true".into());
                    }
                }
                Err(e) => {
                    m.phase = AnalysisPhase::Error;
                    m.message = Some(args.mask(&e.to_string()));
                }
            }
        }
    }
    m
}

fn failure_met(failure: Option<&str>, value: &MetricValue) -> bool {
    failure
        .filter(|f| !f.trim().is_empty())
        .is_some_and(|f| condition::eval_condition(f, value) == Ok(true))
}

/// A change to a metric's measurements.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// A new measurement (finished, or a Job just started).
    Add(Measurement),
    /// The unfinished measurement, read again: finished, terminated, or still running.
    Replace(Measurement),
}

/// Adds new measurements to the status and assesses the run again (PURE).
pub fn record(
    spec: &AnalysisRunSpec,
    status: &AnalysisRunStatus,
    measurements: Vec<(String, Measurement)>,
    now: Timestamp,
) -> AnalysisRunStatus {
    let changes = measurements
        .into_iter()
        .map(|(name, m)| (name, Change::Add(m)))
        .collect();
    apply(spec, status, changes, now)
}

/// Applies the changes, in order, to the status and assesses the run again (PURE). A completed
/// run keeps its verdict (only its terminated measurements are recorded).
pub fn apply(
    spec: &AnalysisRunSpec,
    status: &AnalysisRunStatus,
    changes: Vec<(String, Change)>,
    now: Timestamp,
) -> AnalysisRunStatus {
    let mut next = status.clone();
    for (name, change) in changes {
        let retention = spec.measurement_retention_limit(&name);
        let index = match next.metric_results.iter().position(|r| r.name == name) {
            Some(i) => i,
            None => {
                next.metric_results.push(MetricResult {
                    name: name.clone(),
                    ..MetricResult::default()
                });
                next.metric_results.len() - 1
            }
        };
        let result = &mut next.metric_results[index];
        match change {
            Change::Add(m) => verdict::record_measurement(result, m, retention),
            Change::Replace(m) => verdict::replace_in_flight(result, m, retention),
        }
    }
    verdict::assess(spec, &next, now)
}

/// Whether any metric has an unfinished measurement.
fn has_in_flight(status: &AnalysisRunStatus) -> bool {
    status
        .metric_results
        .iter()
        .any(|r| verdict::in_flight(r).is_some())
}

async fn reconcile(run: Arc<AnalysisRun>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let namespace = run.namespace().unwrap_or_default();
    let span = tracing::info_span!("reconcile", %namespace, analysisrun = %run.name_any());
    reconcile_run(run, ctx, namespace).instrument(span).await
}

async fn reconcile_run(
    run: Arc<AnalysisRun>,
    ctx: Arc<Context>,
    namespace: String,
) -> Result<Action, ReconcileError> {
    let current = run.status.clone().unwrap_or_default();
    let run_ref = RunRef::of(&run);
    let job_err = |source: JobError| ReconcileError::Job {
        namespace: namespace.clone(),
        name: run.name_any(),
        source,
    };
    if current.phase().is_completed() {
        // Ended with a Job still running (e.g. it ended in Error on an argument): stop it.
        if has_in_flight(&current) {
            let now = Timestamp::now();
            let changes = terminate_in_flight(&ctx.client, run_ref.as_ref(), &current, now)
                .await
                .map_err(job_err)?;
            let status = apply(&run.spec, &current, changes, now);
            write_status(&ctx.client, &run, &current, &status).await?;
        }
        return Ok(Action::await_change());
    }
    let now = Timestamp::now();
    let spec = &run.spec;

    // An Argo field Sluice does not implement ends the run before anything is measured: measuring
    // without it would judge something other than what was written.
    let unsupported = spec.unsupported_fields();
    if !unsupported.is_empty() {
        let message = crate::api::unsupported::message(&unsupported);
        let status = error_run(&current, message, now);
        write_status(&ctx.client, &run, &current, &status).await?;
        return Ok(Action::await_change());
    }

    // Arguments first: an unresolvable one fails the run before any query is sent (A7).
    let resolved = match observe_args(&ctx.client, &namespace, spec).await {
        Ok(a) => a,
        Err(e) => {
            let status = error_run(&current, format!("unable to resolve arguments: {e}"), now);
            tracing::info!(error = %e, "analysis run arguments cannot be resolved");
            write_status(&ctx.client, &run, &current, &status).await?;
            return Ok(Action::await_change());
        }
    };
    let metrics: Result<Vec<Metric>, ArgsError> = spec
        .metrics
        .iter()
        .map(|m| args::resolve_metric(m, &resolved))
        .collect();
    let metrics = match metrics {
        Ok(m) => m,
        Err(e) => {
            let status = error_run(&current, format!("unable to resolve arguments: {e}"), now);
            write_status(&ctx.client, &run, &current, &status).await?;
            return Ok(Action::await_change());
        }
    };
    let resolved_spec = AnalysisRunSpec {
        metrics,
        ..spec.clone()
    };

    let (status, started) = measure(
        &ctx,
        run_ref.as_ref(),
        &namespace,
        &resolved_spec,
        &current,
        &resolved,
        now,
    )
    .await
    .map_err(job_err)?;
    write_status(&ctx.client, &run, &current, &status).await?;
    if status.phase() != current.phase() {
        tracing::info!(
            phase = %status.phase(),
            message = status.message.as_deref().unwrap_or(""),
            "analysis run phase changed"
        );
    }
    if let Some(run_ref) = &run_ref {
        collect_jobs(&ctx.client, run_ref, &resolved_spec, &current, &started).await;
    }
    Ok(
        match requeue_after(&resolved_spec, &status, Timestamp::now()) {
            None => Action::await_change(),
            Some(after) => Action::requeue(after.min(RESYNC)),
        },
    )
}

/// The act of one reconcile: the measurements in flight terminated (the run takes no more) or read
/// again, the due ones taken or started, and, if that ended the run, the Jobs still running
/// stopped. Returns the new status and the metrics that started a Job.
async fn measure(
    ctx: &Context,
    run_ref: Option<&RunRef>,
    namespace: &str,
    resolved_spec: &AnalysisRunSpec,
    current: &AnalysisRunStatus,
    resolved: &ResolvedArgs,
    now: Timestamp,
) -> Result<(AnalysisRunStatus, Vec<String>), JobError> {
    let planned = plan(resolved_spec, current, now);
    let mut changes = if planned.terminating {
        terminate_in_flight(&ctx.client, run_ref, current, now).await
    } else {
        resume_in_flight(&ctx.client, run_ref, current, now).await
    }?;
    for (_, change) in &mut changes {
        mask(change, resolved);
    }
    let takes = planned.due.iter().filter_map(|due| {
        let metric = resolved_spec.metrics.iter().find(|m| &m.name == due)?;
        Some(measure_or_start(
            ctx,
            run_ref,
            namespace,
            metric,
            current.metric_result(due),
            resolved,
        ))
    });
    let taken = futures::future::join_all(takes).await;
    let started: Vec<String> = taken
        .iter()
        .filter(|(_, c)| matches!(c, Change::Add(m) if job::in_flight(m)))
        .map(|(name, _)| name.clone())
        .collect();
    changes.extend(taken);
    let mut status = apply(resolved_spec, current, changes.clone(), Timestamp::now());
    if status.phase().is_completed() && has_in_flight(&status) {
        // A metric ended the run in this pass: the Jobs still running are no longer needed.
        let stop = terminate_in_flight(&ctx.client, run_ref, &status, Timestamp::now()).await?;
        changes.extend(stop);
        status = apply(resolved_spec, current, changes, Timestamp::now());
    }
    Ok((status, started))
}

async fn take_measurement(
    providers: &Providers,
    namespace: &str,
    metric: &Metric,
    args: &ResolvedArgs,
) -> (String, Measurement) {
    let started = Timestamp::now();
    let outcome = providers
        .measure(namespace, metric)
        .await
        .map_err(|e: ProviderError| e.to_string());
    if let Err(e) = &outcome {
        tracing::debug!(metric = %metric.name, error = %args.mask(e), "measurement error");
    }
    let m = measurement(metric, outcome, started, Timestamp::now(), args);
    tracing::debug!(metric = %metric.name, phase = %m.phase, value = m.value.as_deref().unwrap_or(""), "measured");
    (metric.name.clone(), m)
}

/// Takes a due measurement: a `job` metric starts its Job (numbered after the measurements taken
/// so far), any other is measured now.
async fn measure_or_start(
    ctx: &Context,
    run: Option<&RunRef>,
    namespace: &str,
    metric: &Metric,
    result: Option<&MetricResult>,
    args: &ResolvedArgs,
) -> (String, Change) {
    if metric.provider.job.is_none() {
        let (name, m) = take_measurement(&ctx.providers, namespace, metric, args).await;
        return (name, Change::Add(m));
    }
    let now = Timestamp::now();
    let mut change = match run {
        Some(run) => {
            let id = job::next_job_id(result);
            Change::Add(job::start(&ctx.client, run, metric, id, FIELD_MANAGER, now).await)
        }
        None => Change::Add(job::errored(
            &Measurement::default(),
            "the AnalysisRun has no uid yet".into(),
            now,
        )),
    };
    mask(&mut change, args);
    if let Change::Add(m) = &change {
        tracing::debug!(metric = %metric.name, phase = %m.phase, message = m.message.as_deref().unwrap_or(""), "job measurement started");
    }
    (metric.name.clone(), change)
}

/// Secret argument values never reach the status, whatever a Job's message says.
fn mask(change: &mut Change, args: &ResolvedArgs) {
    let (Change::Add(m) | Change::Replace(m)) = change;
    if let Some(message) = &m.message {
        m.message = Some(args.mask(message));
    }
}

/// Reads the Job of each unfinished measurement and finishes, errors or reschedules it
/// ([`job::resume`]); one GET per running Job.
async fn resume_in_flight(
    client: &Client,
    run: Option<&RunRef>,
    status: &AnalysisRunStatus,
    now: Timestamp,
) -> Result<Vec<(String, Change)>, JobError> {
    let mut changes = Vec::new();
    for result in &status.metric_results {
        let Some(m) = verdict::in_flight(result) else {
            continue;
        };
        let next = match run.ok_or_else(no_uid).and_then(|run| job::job_ref(m, run)) {
            Err(reason) => Some(job::errored(m, reason, now)),
            Ok((namespace, name)) => {
                let observed = job::observe(client, &namespace, &name).await?;
                job::resume(m, &observed, now)
            }
        };
        if let Some(next) = next {
            tracing::debug!(metric = %result.name, phase = %next.phase, "job measurement read");
            changes.push((result.name.clone(), Change::Replace(next)));
        }
    }
    Ok(changes)
}

/// Deletes the Job of each unfinished measurement: the measurement is Inconclusive, "Metric
/// Terminated" (Argo's `Terminate`). A failed delete is returned, so the reconcile retries it
/// rather than leaving the Job running.
async fn terminate_in_flight(
    client: &Client,
    run: Option<&RunRef>,
    status: &AnalysisRunStatus,
    now: Timestamp,
) -> Result<Vec<(String, Change)>, JobError> {
    let mut changes = Vec::new();
    for result in &status.metric_results {
        let Some(m) = verdict::in_flight(result) else {
            continue;
        };
        let next = match run.ok_or_else(no_uid).and_then(|run| job::job_ref(m, run)) {
            Err(reason) => job::errored(m, reason, now),
            Ok((namespace, name)) => {
                job::delete(client, &namespace, &name).await?;
                tracing::info!(metric = %result.name, job = %name, "running analysis Job deleted: the run takes no more measurements");
                job::terminated(m, now)
            }
        };
        changes.push((result.name.clone(), Change::Replace(next)));
    }
    Ok(changes)
}

fn no_uid() -> String {
    "the AnalysisRun has no uid yet".to_string()
}

/// After a metric started a Job beyond its measurement retention, deletes its oldest Jobs (Argo
/// keeps as many as the measurements it keeps). A failure is logged; the next Job retries it.
async fn collect_jobs(
    client: &Client,
    run: &RunRef,
    spec: &AnalysisRunSpec,
    before: &AnalysisRunStatus,
    started: &[String],
) {
    for metric in started {
        let keep = spec.measurement_retention_limit(metric);
        if job::next_job_id(before.metric_result(metric)) <= i64::from(keep.max(1)) {
            continue;
        }
        if let Err(e) = job::collect_garbage(client, run, metric, keep).await {
            tracing::warn!(metric = %metric, error = %e, "old analysis Jobs not collected");
        }
    }
}

/// Reads the Secrets the arguments name (only those labelled for analysis, see [`secrets`]) and
/// resolves the arguments.
async fn observe_args(
    client: &Client,
    namespace: &str,
    spec: &AnalysisRunSpec,
) -> Result<ResolvedArgs, ArgsError> {
    let mut ctx = ArgContext::default();
    for arg in spec.args.iter().filter(|a| a.value.is_none()) {
        let Some(r) = arg
            .value_from
            .as_ref()
            .and_then(|f| f.secret_key_ref.as_ref())
        else {
            continue;
        };
        let value = secrets::read(client, namespace, &r.name, &r.key)
            .await
            .map_err(|source| ArgsError::SecretUnusable {
                name: arg.name.clone(),
                source,
            })?;
        ctx.secrets.insert((r.name.clone(), r.key.clone()), value);
    }
    args::resolve_args(&spec.args, &ctx)
}

async fn write_status(
    client: &Client,
    run: &AnalysisRun,
    current: &AnalysisRunStatus,
    status: &AnalysisRunStatus,
) -> Result<(), ReconcileError> {
    if status == current {
        return Ok(());
    }
    let namespace = run.namespace().unwrap_or_default();
    let name = run.name_any();
    let status_json = serde_json::to_value(status).map_err(|source| ReconcileError::Serialize {
        namespace: namespace.clone(),
        name: name.clone(),
        source,
    })?;
    let patch = serde_json::json!({
        "apiVersion": AnalysisRun::api_version(&()),
        "kind": AnalysisRun::kind(&()),
        "status": status_json,
    });
    Api::<AnalysisRun>::namespaced(client.clone(), &namespace)
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|source| ReconcileError::WriteStatus {
            namespace,
            name,
            source,
        })?;
    Ok(())
}

fn error_policy(run: Arc<AnalysisRun>, error: &ReconcileError, _ctx: Arc<Context>) -> Action {
    tracing::warn!(
        namespace = run.namespace().unwrap_or_default(),
        analysisrun = %run.name_any(),
        error = %error,
        "analysis reconcile failed"
    );
    Action::requeue(RETRY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn spec(v: serde_json::Value) -> AnalysisRunSpec {
        serde_json::from_value(v).unwrap()
    }

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn measured(values: &[f64]) -> Result<Measured, String> {
        Ok(Measured {
            value: MetricValue::List(values.to_vec()),
            metadata: BTreeMap::from([("query".to_string(), "q".to_string())]),
        })
    }

    #[test]
    fn plan_schedules_and_records_until_count() {
        let spec = spec(json!({"metrics": [{
            "name": "rate", "interval": "10s", "count": 2, "initialDelay": "5s",
            "successCondition": "result[0] >= 0.95",
            "provider": {"prometheus": {"query": "q"}}
        }]}));
        let empty = AnalysisRunStatus::default();
        let p = plan(&spec, &empty, ts(100));
        assert!(p.due.is_empty());
        assert_eq!(p.status.phase(), AnalysisPhase::Running);
        assert_eq!(
            requeue_after(&spec, &p.status, ts(100)),
            Some(Duration::from_secs(5))
        );

        let p = plan(&spec, &p.status, ts(105));
        assert_eq!(p.due, ["rate"]);
        let m = measurement(
            &spec.metrics[0],
            measured(&[0.99]),
            ts(105),
            ts(105),
            &ResolvedArgs::default(),
        );
        assert_eq!(m.phase, AnalysisPhase::Successful);
        let s = record(&spec, &p.status, vec![("rate".into(), m)], ts(105));
        assert_eq!(s.phase(), AnalysisPhase::Running);
        assert_eq!(
            requeue_after(&spec, &s, ts(106)),
            Some(Duration::from_secs(9))
        );
        assert!(plan(&spec, &s, ts(110)).due.is_empty());

        let p = plan(&spec, &s, ts(115));
        assert_eq!(p.due, ["rate"]);
        let m = measurement(
            &spec.metrics[0],
            measured(&[0.97]),
            ts(115),
            ts(115),
            &ResolvedArgs::default(),
        );
        let s = record(&spec, &p.status, vec![("rate".into(), m)], ts(115));
        assert_eq!(s.phase(), AnalysisPhase::Successful);
        assert_eq!(requeue_after(&spec, &s, ts(116)), None);
        assert!(plan(&spec, &s, ts(200)).due.is_empty());
        assert_eq!(s.metric_results[0].measurements[1].metadata["query"], "q");
    }

    #[test]
    fn a12_failed_run_message_names_metric_value_and_condition() {
        let spec = spec(json!({"metrics": [{
            "name": "success-rate", "successCondition": "result[0] >= 0.95",
            "provider": {"prometheus": {"query": "q"}}
        }]}));
        let m = measurement(
            &spec.metrics[0],
            measured(&[0.7]),
            ts(1),
            ts(1),
            &ResolvedArgs::default(),
        );
        let s = record(
            &spec,
            &AnalysisRunStatus::default(),
            vec![("success-rate".into(), m)],
            ts(1),
        );
        assert_eq!(s.phase(), AnalysisPhase::Failed);
        assert_eq!(
            s.message.as_deref(),
            Some(
                "metric \"success-rate\" assessed Failed due to failed (1) > failureLimit (0): \
                 value [0.7] did not meet successCondition \"result[0] >= 0.95\""
            )
        );
    }

    #[test]
    fn a11_provider_errors_are_error_measurements_never_successful() {
        let spec = spec(json!({"metrics": [{
            "name": "m", "interval": "1s", "consecutiveErrorLimit": 1,
            "provider": {"prometheus": {"query": "q"}}
        }]}));
        let err = || {
            measurement(
                &spec.metrics[0],
                Err("connection refused".into()),
                ts(1),
                ts(1),
                &ResolvedArgs::default(),
            )
        };
        assert_eq!(err().phase, AnalysisPhase::Error);
        let s = record(
            &spec,
            &AnalysisRunStatus::default(),
            vec![("m".into(), err())],
            ts(1),
        );
        assert_eq!(s.phase(), AnalysisPhase::Running);
        let s = record(&spec, &s, vec![("m".into(), err())], ts(2));
        assert_eq!(s.phase(), AnalysisPhase::Error);
        assert!(s.message.unwrap().contains("connection refused"));
    }

    #[test]
    fn a8_empty_result_with_index_is_an_error_measurement() {
        let spec = spec(json!({"metrics": [{
            "name": "m", "successCondition": "result[0] >= 0.95",
            "provider": {"prometheus": {"query": "q"}}
        }]}));
        let m = measurement(
            &spec.metrics[0],
            measured(&[]),
            ts(1),
            ts(1),
            &ResolvedArgs::default(),
        );
        assert_eq!(m.phase, AnalysisPhase::Error);
        assert_eq!(m.value.as_deref(), Some("[]"));
    }

    #[test]
    fn terminate_stops_measuring_and_succeeds() {
        let mut spec = spec(json!({"metrics": [{
            "name": "m", "interval": "1s",
            "provider": {"prometheus": {"query": "q"}}
        }]}));
        let m = measurement(
            &spec.metrics[0],
            measured(&[1.0]),
            ts(1),
            ts(1),
            &ResolvedArgs::default(),
        );
        let s = record(
            &spec,
            &AnalysisRunStatus::default(),
            vec![("m".into(), m)],
            ts(1),
        );
        assert_eq!(s.phase(), AnalysisPhase::Running);
        spec.terminate = Some(true);
        let p = plan(&spec, &s, ts(5));
        assert!(p.due.is_empty());
        assert_eq!(p.status.phase(), AnalysisPhase::Successful);
        assert_eq!(p.status.message.as_deref(), Some("run terminated"));
    }

    #[test]
    fn secrets_are_masked_in_measurements() {
        let spec =
            spec(json!({"metrics": [{"name": "m", "provider": {"prometheus": {"query": "q"}}}]}));
        let mut ctx = ArgContext::default();
        ctx.secrets
            .insert(("s".into(), "k".into()), "hunter2".into());
        let resolved = args::resolve_args(
            &[serde_json::from_value(
                json!({"name": "t", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}),
            )
            .unwrap()],
            &ctx,
        )
        .unwrap();
        let outcome = Ok(Measured {
            value: MetricValue::Scalar(1.0),
            metadata: BTreeMap::from([("query".into(), "up{token=\"hunter2\"}".into())]),
        });
        let m = measurement(&spec.metrics[0], outcome, ts(1), ts(1), &resolved);
        assert_eq!(m.metadata["query"], "up{token=\"*****\"}");
        let m = measurement(
            &spec.metrics[0],
            Err("bad hunter2".into()),
            ts(1),
            ts(1),
            &resolved,
        );
        assert_eq!(m.message.as_deref(), Some("bad *****"));
    }

    #[test]
    fn a_contained_panic_ends_a_running_run_in_error_only() {
        let run = |status: AnalysisRunStatus| {
            let mut run = AnalysisRun::new(
                "r",
                spec(
                    json!({"metrics": [{"name": "m", "provider": {"prometheus": {"query": "q"}}}]}),
                ),
            );
            run.status = Some(status);
            run
        };
        let panic = Panicked {
            message: "boom".into(),
        };
        let patch = panic_status(&run(AnalysisRunStatus::default()), &panic, ts(7))
            .expect("a status patch");
        let status: AnalysisRunStatus =
            serde_json::from_value(patch["status"].clone()).expect("a status");
        assert_eq!(status.phase(), AnalysisPhase::Error);
        assert_eq!(status.message.as_deref(), Some("reconcile panicked: boom"));
        let done = error_run(&AnalysisRunStatus::default(), "finished".into(), ts(1));
        assert_eq!(panic_status(&run(done), &panic, ts(7)), None);
    }

    #[test]
    fn a7_missing_arg_fails_the_run_clearly() {
        let s = error_run(
            &AnalysisRunStatus::default(),
            format!(
                "unable to resolve arguments: {}",
                ArgsError::Missing {
                    name: "service".into()
                }
            ),
            ts(1),
        );
        assert_eq!(s.phase(), AnalysisPhase::Error);
        assert!(s.completed_at.is_some());
        assert_eq!(
            s.message.as_deref(),
            Some(
                "unable to resolve arguments: args.service has no value: give it a value in the Rollout's analysis args"
            )
        );
    }

    fn job_spec(extra: serde_json::Value) -> AnalysisRunSpec {
        let mut v = json!({"metrics": [{"name": "smoke", "provider": {"job": {"spec": {"template": {}}}}}]});
        if let (Some(into), Some(from)) = (v.as_object_mut(), extra.as_object()) {
            into.extend(from.clone());
        }
        spec(v)
    }

    fn add(name: &str, m: Measurement) -> (String, Change) {
        (name.into(), Change::Add(m))
    }

    fn replace(name: &str, m: Measurement) -> (String, Change) {
        (name.into(), Change::Replace(m))
    }

    #[test]
    fn a_job_measurement_spans_reconciles_until_its_job_ends() {
        use job::{JobOutcome, Observed};
        let spec = job_spec(json!({}));
        let p = plan(&spec, &AnalysisRunStatus::default(), ts(100));
        assert_eq!(p.due, ["smoke"]);
        assert!(!p.terminating);
        let running = job::started("ns", "u.smoke.1", ts(100));
        let s = apply(
            &spec,
            &p.status,
            vec![add("smoke", running.clone())],
            ts(100),
        );
        assert_eq!(s.phase(), AnalysisPhase::Running);
        assert_eq!(s.metric_results[0].phase, AnalysisPhase::Running);
        assert_eq!(s.metric_results[0].count, 0);
        assert!(has_in_flight(&s));
        // In flight: not due again, looked at again at its resumeAt (now).
        let p = plan(&spec, &s, ts(101));
        assert!(p.due.is_empty());
        assert!(!p.terminating);
        assert_eq!(
            requeue_after(&spec, &s, ts(101)),
            Some(Duration::from_millis(50))
        );
        // Still running: the next look sqrt(2 × 2) = 2 s later; the measurement replaced, not added.
        let later = job::resume(&running, &Observed::Found(JobOutcome::Running), ts(102)).unwrap();
        let s = apply(&spec, &s, vec![replace("smoke", later.clone())], ts(102));
        assert_eq!(s.metric_results[0].measurements, vec![later.clone()]);
        assert_eq!(
            requeue_after(&spec, &s, ts(102)),
            Some(Duration::from_secs(2))
        );
        // The Job completes: Successful, counted once, the run done.
        let done = job::resume(&later, &Observed::Found(JobOutcome::Complete), ts(110)).unwrap();
        let s = apply(&spec, &s, vec![replace("smoke", done)], ts(110));
        assert_eq!(s.phase(), AnalysisPhase::Successful);
        let r = &s.metric_results[0];
        assert_eq!((r.count, r.successful, r.measurements.len()), (1, 1, 1));
        assert!(!has_in_flight(&s));
        assert_eq!(requeue_after(&spec, &s, ts(110)), None);
    }

    #[test]
    fn a_failed_job_fails_the_run_with_the_jobs_reason() {
        use job::{JobOutcome, Observed};
        let spec = job_spec(json!({}));
        let running = job::started("ns", "u.smoke.1", ts(1));
        let s = apply(
            &spec,
            &AnalysisRunStatus::default(),
            vec![add("smoke", running.clone())],
            ts(1),
        );
        let failed = Observed::Found(JobOutcome::Failed {
            message: "Job u.smoke.1 failed: DeadlineExceeded".into(),
        });
        let s = apply(
            &spec,
            &s,
            vec![replace(
                "smoke",
                job::resume(&running, &failed, ts(5)).unwrap(),
            )],
            ts(5),
        );
        assert_eq!(s.phase(), AnalysisPhase::Failed);
        assert_eq!(
            s.message.as_deref(),
            Some(
                "metric \"smoke\" assessed Failed due to failed (1) > failureLimit (0): \
                 Job u.smoke.1 failed: DeadlineExceeded"
            )
        );
        // A vanished Job is an Error measurement, retried as any error.
        let s = apply(
            &spec,
            &AnalysisRunStatus::default(),
            vec![add("smoke", running.clone())],
            ts(1),
        );
        let gone = job::resume(&running, &Observed::Missing, ts(5)).unwrap();
        let s = apply(&spec, &s, vec![replace("smoke", gone)], ts(5));
        assert_eq!(s.phase(), AnalysisPhase::Running);
        assert_eq!(s.metric_results[0].error, 1);
        let p = plan(&spec, &s, ts(15));
        assert_eq!(p.due, ["smoke"], "retried after the error interval");
    }

    #[test]
    fn a_terminated_run_stops_its_job_inconclusive_as_argo() {
        let mut spec = job_spec(json!({}));
        let running = job::started("ns", "u.smoke.1", ts(1));
        let s = apply(
            &spec,
            &AnalysisRunStatus::default(),
            vec![add("smoke", running.clone())],
            ts(1),
        );
        spec.terminate = Some(true);
        let p = plan(&spec, &s, ts(5));
        assert!(p.terminating);
        assert!(p.due.is_empty());
        let s = apply(
            &spec,
            &s,
            vec![replace("smoke", job::terminated(&running, ts(5)))],
            ts(5),
        );
        assert!(s.phase().is_completed());
        let r = &s.metric_results[0];
        assert_eq!(r.measurements[0].phase, AnalysisPhase::Inconclusive);
        assert_eq!(
            r.measurements[0].message.as_deref(),
            Some(job::TERMINATED_MESSAGE)
        );
        // Argo counts the terminated measurement: the metric and the run are Inconclusive.
        assert_eq!(r.phase, AnalysisPhase::Inconclusive);
        assert_eq!(s.phase(), AnalysisPhase::Inconclusive);
        assert!(s.message.unwrap().ends_with(": Metric Terminated"));
    }

    #[test]
    fn a_sibling_failing_ends_the_run_with_the_job_still_in_flight_until_stopped() {
        let spec = spec(json!({"metrics": [
            {"name": "smoke", "provider": {"job": {"spec": {"template": {}}}}},
            {"name": "rate", "successCondition": "result[0] >= 0.95", "provider": {"prometheus": {"query": "q"}}}
        ]}));
        let running = job::started("ns", "u.smoke.1", ts(1));
        let s = apply(
            &spec,
            &AnalysisRunStatus::default(),
            vec![add("smoke", running.clone())],
            ts(1),
        );
        let bad = measurement(
            &spec.metrics[1],
            measured(&[0.5]),
            ts(2),
            ts(2),
            &ResolvedArgs::default(),
        );
        let mut changes = vec![add("rate", bad)];
        let ended = apply(&spec, &s, changes.clone(), ts(2));
        assert_eq!(ended.phase(), AnalysisPhase::Failed);
        assert!(has_in_flight(&ended), "the Job is still to be stopped");
        changes.push(replace("smoke", job::terminated(&running, ts(2))));
        let stopped = apply(&spec, &s, changes, ts(2));
        assert_eq!(stopped.phase(), AnalysisPhase::Failed);
        assert!(!has_in_flight(&stopped));
        assert_eq!(stopped.metric_results[0].phase, AnalysisPhase::Inconclusive);
        assert!(stopped.message.unwrap().contains("\"rate\""));
        // A completed run records what is stopped later without changing its verdict.
        let mut late = ended.clone();
        late.metric_results[0].measurements = vec![running.clone()];
        let after = apply(
            &spec,
            &late,
            vec![replace("smoke", job::terminated(&running, ts(9)))],
            ts(9),
        );
        assert_eq!(after.phase(), AnalysisPhase::Failed);
        assert!(!has_in_flight(&after));
    }

    fn cases() -> proptest::prelude::ProptestConfig {
        crate::proptest_config()
    }

    fn int_or_string() -> impl proptest::strategy::Strategy<Value = Option<serde_json::Value>> {
        use proptest::prelude::*;
        proptest::option::of(prop_oneof![
            any::<i32>().prop_map(|n| json!(n)),
            (-2..5i32).prop_map(|n| json!(n)),
            "\\PC{0,6}".prop_map(|s| json!(s)),
            "-?[0-9]{1,12}".prop_map(|s| json!(s)),
        ])
    }

    fn duration_text() -> impl proptest::strategy::Strategy<Value = Option<String>> {
        use proptest::prelude::*;
        proptest::option::of(prop_oneof![
            proptest::sample::select(vec![
                "1s",
                "0s",
                "500ms",
                "10s",
                "1h",
                "2562047h",
                "2562047h47m16.854775807s",
                "inf",
                "1e30",
                "é",
                ""
            ])
            .prop_map(str::to_string),
            "\\PC{0,8}",
        ])
    }

    proptest::proptest! {
        #![proptest_config(cases())]

        /// Any metric settings and any counters a user could write into the status: planning,
        /// recording and scheduling never panic, the requeue is never a busy loop, and a run that
        /// cannot be measured ends instead of spinning.
        #[test]
        fn analysis_runs_of_any_spec_plan_record_and_schedule(
            interval in duration_text(),
            initial_delay in duration_text(),
            count in int_or_string(),
            limits in (int_or_string(), int_or_string(), int_or_string(), int_or_string()),
            counters in proptest::collection::vec(proptest::prelude::any::<i32>(), 6),
            values in proptest::collection::vec(proptest::num::f64::ANY, 0..3),
            now in 0..4_000_000_000i64,
            retention in proptest::prelude::any::<i32>(),
        ) {
            let mut metric = json!({
                "name": "m",
                "successCondition": "result[0] >= 0.95",
                "provider": {"prometheus": {"query": "q"}}
            });
            for (field, value) in [
                ("interval", interval.map(|s| json!(s))),
                ("initialDelay", initial_delay.map(|s| json!(s))),
                ("count", count),
                ("failureLimit", limits.0),
                ("inconclusiveLimit", limits.1),
                ("consecutiveErrorLimit", limits.2),
                ("consecutiveSuccessLimit", limits.3),
            ] {
                if let Some(v) = value {
                    metric[field] = v;
                }
            }
            let spec = spec(json!({
                "metrics": [metric],
                "measurementRetention": [{"metricName": "*", "limit": retention}]
            }));
            let status = AnalysisRunStatus {
                started_at: Some(Time(ts(now / 2))),
                metric_results: vec![MetricResult {
                    name: "m".into(),
                    count: counters[0],
                    successful: counters[1],
                    failed: counters[2],
                    inconclusive: counters[3],
                    error: counters[4],
                    consecutive_error: counters[5],
                    ..MetricResult::default()
                }],
                ..AnalysisRunStatus::default()
            };
            let p = plan(&spec, &status, ts(now));
            let m = measurement(&spec.metrics[0], measured(&values), ts(now), ts(now), &ResolvedArgs::default());
            let recorded = record(&spec, &p.status, vec![("m".into(), m)], ts(now));
            proptest::prop_assert!(recorded.metric_results[0].measurements.len() <= usize::try_from(retention.max(1)).unwrap_or(1));
            for status in [&p.status, &recorded] {
                if let Some(after) = requeue_after(&spec, status, ts(now)) {
                    proptest::prop_assert!(after >= Duration::from_millis(50));
                }
            }
        }
    }
}
