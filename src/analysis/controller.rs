//! The AnalysisRun reconciler: observe → plan → act.
//!
//! - *observe*: the run from the watch cache, and the Secrets its arguments name;
//! - *plan* (PURE, [`plan`]): assess the run at `now` and list the metrics whose measurement is due;
//! - *act*: take the due measurements through the [`Providers`], record them ([`record`], PURE), and
//!   write the status through the status subresource (server-side apply, field manager
//!   `sluice-analysis`) only when it changed; then requeue at the next measurement time, never polling.
//!
//! All state is in the run's status, so a controller restarted at any point continues where it was.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use tracing::Instrument;

use super::args::{self, ArgContext, ArgsError, ResolvedArgs};
use super::condition::{self, MetricValue};
use super::metrics::AnalysisRunMetrics;
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
pub const FIELD_MANAGER: &str = "sluice-analysis";
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
    let controller = Controller::for_stream(changed, cached.clone());
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
}

/// Assesses the run at `now` (A2, A4) and lists the metrics due (A3). A completed run, a terminated
/// one, or one where a metric ended badly takes no more measurements.
pub fn plan(spec: &AnalysisRunSpec, status: &AnalysisRunStatus, now: Timestamp) -> Plan {
    let status = verdict::assess(spec, status, now);
    if status.phase().is_completed() || verdict::is_terminating(spec, &status) {
        return Plan {
            status,
            due: Vec::new(),
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
    Plan { status, due }
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
    let next = spec
        .metrics
        .iter()
        .filter_map(|m| {
            verdict::next_measurement_at(m, status.metric_result(&m.name), started).ok()?
        })
        .min()?;
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

/// Adds new measurements to the status and assesses the run again (PURE).
pub fn record(
    spec: &AnalysisRunSpec,
    status: &AnalysisRunStatus,
    measurements: Vec<(String, Measurement)>,
    now: Timestamp,
) -> AnalysisRunStatus {
    let mut next = status.clone();
    for (name, m) in measurements {
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
        verdict::record_measurement(&mut next.metric_results[index], m, retention);
    }
    verdict::assess(spec, &next, now)
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
    if current.phase().is_completed() {
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

    let planned = plan(&resolved_spec, &current, now);
    let mut status = planned.status;
    if !planned.due.is_empty() {
        let takes = planned.due.iter().filter_map(|due| {
            let metric = resolved_spec.metrics.iter().find(|m| &m.name == due)?;
            Some(take_measurement(
                &ctx.providers,
                &namespace,
                metric,
                &resolved,
            ))
        });
        let taken = futures::future::join_all(takes).await;
        status = record(&resolved_spec, &status, taken, Timestamp::now());
    }
    write_status(&ctx.client, &run, &current, &status).await?;
    if status.phase() != current.phase() {
        tracing::info!(
            phase = %status.phase(),
            message = status.message.as_deref().unwrap_or(""),
            "analysis run phase changed"
        );
    }
    Ok(
        match requeue_after(&resolved_spec, &status, Timestamp::now()) {
            None => Action::await_change(),
            Some(after) => Action::requeue(after.min(RESYNC)),
        },
    )
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
