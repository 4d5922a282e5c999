//! From measurements to verdicts (PURE): measurement counters, metric phase (A2), run phase (A4, A10),
//! measurement retention (A10), scheduling (A3) and the status messages that explain a verdict (A12).
//!
//! The rules are Argo Rollouts' (`analysis.go`: `assessMetricStatus`, `assessRunStatus`), with the
//! defaults taken from the accessors of [`Metric`].

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::analysis::{
    AnalysisPhase, AnalysisRunSpec, AnalysisRunStatus, AnalysisSpecError, Measurement, Metric,
    MetricResult, RunSummary,
};

/// Time before retrying a measurement that ended in Error (Argo's `DefaultErrorRetryInterval`), or the
/// metric's `interval` when that is shorter.
pub const ERROR_RETRY_INTERVAL: Duration = Duration::from_secs(10);

/// Adds a finished measurement to a metric's result: counters as Argo keeps them (`count` counts the
/// measurements without error; an error-free measurement resets `consecutiveError`; anything but a
/// success resets `consecutiveSuccess`), then trims the stored list to `retention` (A10) keeping the
/// newest. The counters, not the list, decide the phase, so trimming changes no verdict.
pub fn record_measurement(result: &mut MetricResult, measurement: Measurement, retention: i32) {
    match measurement.phase {
        AnalysisPhase::Successful => {
            bump(&mut result.successful);
            bump(&mut result.count);
            result.consecutive_error = 0;
            bump(&mut result.consecutive_success);
        }
        AnalysisPhase::Failed => {
            bump(&mut result.failed);
            bump(&mut result.count);
            result.consecutive_error = 0;
            result.consecutive_success = 0;
        }
        AnalysisPhase::Inconclusive => {
            bump(&mut result.inconclusive);
            bump(&mut result.count);
            result.consecutive_error = 0;
            result.consecutive_success = 0;
        }
        AnalysisPhase::Error => {
            bump(&mut result.error);
            bump(&mut result.consecutive_error);
            result.consecutive_success = 0;
        }
        AnalysisPhase::Pending | AnalysisPhase::Running => {}
    }
    result.measurements.push(measurement);
    let keep = usize::try_from(retention.max(1)).unwrap_or(1);
    if result.measurements.len() > keep {
        let excess = result.measurements.len() - keep;
        result.measurements.drain(..excess);
    }
}

/// Replaces the unfinished (last) measurement of a metric by `measurement`, counting it when it is
/// finished, as [`record_measurement`]. Without an unfinished one, `measurement` is added.
pub fn replace_in_flight(result: &mut MetricResult, measurement: Measurement, retention: i32) {
    if result
        .measurements
        .last()
        .is_some_and(|m| !m.phase.is_completed())
    {
        result.measurements.pop();
    }
    record_measurement(result, measurement, retention);
}

/// The metric's unfinished measurement (a Job still running), if its last one is.
pub fn in_flight(result: &MetricResult) -> Option<&Measurement> {
    result
        .measurements
        .last()
        .filter(|m| !m.phase.is_completed())
}

/// Counters live in the status, which users can write: a hand-set `i32::MAX` stays there.
fn bump(counter: &mut i32) {
    *counter = counter.saturating_add(1);
}

/// The phase of a metric from its counters (A2), and why when it is final for a reason other than
/// reaching its count. Limits from the metric's accessors; the checks run in Argo's order, each later
/// one overriding: failures > `failureLimit` (unless -1) → Failed; inconclusives > `inconclusiveLimit`
/// → Inconclusive; consecutive errors > `consecutiveErrorLimit` → Error. Then: `count` reached or
/// `consecutiveSuccessLimit` reached → Successful; terminating → Successful; else Running (Pending
/// before the first measurement, Successful when terminated before it).
pub fn metric_phase(
    metric: &Metric,
    result: &MetricResult,
    terminating: bool,
) -> Result<(AnalysisPhase, Option<String>), AnalysisSpecError> {
    if result.phase.is_completed() {
        return Ok((result.phase, result.message.clone()));
    }
    let failure_limit = metric.failure_limit()?;
    let inconclusive_limit = metric.inconclusive_limit()?;
    let consecutive_error_limit = metric.consecutive_error_limit()?;
    let consecutive_success_limit = metric.consecutive_success_limit()?;
    let effective_count = metric.effective_count()?;

    if result.measurements.is_empty() && result.count == 0 && result.error == 0 {
        let phase = if terminating {
            AnalysisPhase::Successful
        } else {
            AnalysisPhase::Pending
        };
        return Ok((phase, None));
    }
    if in_flight(result).is_some() {
        // A measurement is still being taken (Argo: "we still have an in-flight measurement").
        return Ok((AnalysisPhase::Running, None));
    }
    let mut verdict: Option<(AnalysisPhase, String)> = None;
    if failure_limit >= 0 && result.failed > failure_limit {
        verdict = Some((
            AnalysisPhase::Failed,
            format!(
                "failed ({}) > failureLimit ({failure_limit})",
                result.failed
            ),
        ));
    }
    if inconclusive_limit >= 0 && result.inconclusive > inconclusive_limit {
        verdict = Some((
            AnalysisPhase::Inconclusive,
            format!(
                "inconclusive ({}) > inconclusiveLimit ({inconclusive_limit})",
                result.inconclusive
            ),
        ));
    }
    if consecutive_error_limit >= 0 && result.consecutive_error > consecutive_error_limit {
        verdict = Some((
            AnalysisPhase::Error,
            format!(
                "consecutiveErrors ({}) > consecutiveErrorLimit ({consecutive_error_limit})",
                result.consecutive_error
            ),
        ));
    }
    if let Some((phase, why)) = verdict {
        return Ok((phase, Some(explain(metric, result, phase, &why))));
    }
    if effective_count.is_some_and(|count| result.count >= count) {
        return Ok((AnalysisPhase::Successful, None));
    }
    if consecutive_success_limit > 0 && result.consecutive_success >= consecutive_success_limit {
        return Ok((AnalysisPhase::Successful, None));
    }
    if terminating {
        return Ok((AnalysisPhase::Successful, None));
    }
    Ok((AnalysisPhase::Running, None))
}

/// The message of a metric that ended badly (A12): the metric, the verdict and its reason, the last
/// value and the condition it did (not) meet.
pub fn explain(metric: &Metric, result: &MetricResult, phase: AnalysisPhase, why: &str) -> String {
    let mut message = format!("metric {:?} assessed {phase} due to {why}", metric.name);
    let last = result.measurements.iter().rev().find(|m| m.phase == phase);
    if let Some(last) = last {
        let judged_without_value =
            matches!(phase, AnalysisPhase::Failed | AnalysisPhase::Inconclusive)
                && last.value.is_none();
        if judged_without_value {
            // A Job measurement: no value and no condition, the Job's outcome is the reason.
            if let Some(m) = &last.message {
                message.push_str(&format!(": {m}"));
            }
            return message;
        }
        if let Some(value) = &last.value {
            message.push_str(&format!(": value {value}"));
        }
        let success = metric.success_condition.as_deref();
        let failure = metric.failure_condition.as_deref();
        match phase {
            AnalysisPhase::Failed => match (success, failure) {
                (_, Some(f)) if !f.trim().is_empty() && last_met_failure(last) => {
                    message.push_str(&format!(" met failureCondition {f:?}"));
                }
                (Some(s), _) => message.push_str(&format!(" did not meet successCondition {s:?}")),
                (None, Some(f)) => message.push_str(&format!(" met failureCondition {f:?}")),
                (None, None) => {}
            },
            AnalysisPhase::Inconclusive => message.push_str(&format!(
                " met neither successCondition {:?} nor failureCondition {:?}",
                success.unwrap_or_default(),
                failure.unwrap_or_default()
            )),
            _ => {
                if let Some(m) = &last.message {
                    message.push_str(&format!("; last error: {m}"));
                }
            }
        }
    }
    message
}

/// Metadata key a provider-independent evaluation sets on a Failed measurement whose failure condition
/// was true (as opposed to a success condition that was false).
pub const METADATA_FAILURE_CONDITION_MET: &str = "failureConditionMet";

fn last_met_failure(m: &Measurement) -> bool {
    m.metadata
        .get(METADATA_FAILURE_CONDITION_MET)
        .is_some_and(|v| v == "true")
}

/// Whether the run stops measuring: `spec.terminate`, or a metric that is not dry-run ended Failed,
/// Error or Inconclusive (A4).
pub fn is_terminating(spec: &AnalysisRunSpec, status: &AnalysisRunStatus) -> bool {
    spec.is_terminated()
        || status.metric_results.iter().any(|r| {
            !spec.is_dry_run(&r.name)
                && matches!(
                    r.phase,
                    AnalysisPhase::Failed | AnalysisPhase::Error | AnalysisPhase::Inconclusive
                )
        })
}

/// Assesses every metric and the run (A2, A4, A10), returning the new status. `now` stamps
/// `startedAt` and `completedAt`. A spec value that cannot be read (e.g. an unresolved `{{args.x}}` in
/// `failureLimit`) makes the run Error with that message.
pub fn assess(
    spec: &AnalysisRunSpec,
    status: &AnalysisRunStatus,
    now: Timestamp,
) -> AnalysisRunStatus {
    let mut next = status.clone();
    if next.phase().is_completed() {
        return next;
    }
    if next.started_at.is_none() {
        next.started_at = Some(Time(now));
    }
    // One result per metric, in spec order.
    let mut results = Vec::with_capacity(spec.metrics.len());
    for metric in &spec.metrics {
        let mut result = status
            .metric_result(&metric.name)
            .cloned()
            .unwrap_or_else(|| MetricResult {
                name: metric.name.clone(),
                ..MetricResult::default()
            });
        result.dry_run = spec.is_dry_run(&metric.name);
        results.push(result);
    }
    next.metric_results = results;

    // Two passes: a metric that ended badly terminates the others (A4).
    for pass in 0..2 {
        let terminating = is_terminating(spec, &next);
        for (metric, result) in spec.metrics.iter().zip(next.metric_results.iter_mut()) {
            match metric_phase(metric, result, terminating) {
                Ok((phase, message)) => {
                    result.phase = phase;
                    if message.is_some() {
                        result.message = message;
                    }
                }
                Err(e) => {
                    result.phase = AnalysisPhase::Error;
                    result.message = Some(e.to_string());
                }
            }
        }
        if pass == 0 && !is_terminating(spec, &next) {
            break;
        }
    }

    let mut worst: Option<AnalysisPhase> = None;
    let mut message = None;
    let mut everything_completed = true;
    let mut summary = RunSummary::default();
    let mut dry_summary = RunSummary::default();
    for result in &next.metric_results {
        let s = if result.dry_run {
            &mut dry_summary
        } else {
            &mut summary
        };
        s.count += 1;
        match result.phase {
            AnalysisPhase::Successful => s.successful += 1,
            AnalysisPhase::Failed => s.failed += 1,
            AnalysisPhase::Inconclusive => s.inconclusive += 1,
            AnalysisPhase::Error => s.error += 1,
            AnalysisPhase::Pending | AnalysisPhase::Running => {}
        }
        if !result.phase.is_completed() {
            everything_completed = false;
            continue;
        }
        if result.dry_run {
            continue;
        }
        if worst.is_none_or(|w| result.phase.severity() > w.severity()) {
            worst = Some(result.phase);
            message = result.message.clone();
        }
    }
    next.run_summary = Some(summary);
    next.dry_run_summary = (dry_summary.count > 0).then_some(dry_summary);
    let terminating = is_terminating(spec, &next);
    if everything_completed || terminating {
        let phase = worst.unwrap_or(AnalysisPhase::Successful);
        next.phase = Some(phase);
        next.message = if phase == AnalysisPhase::Successful {
            spec.is_terminated().then(|| "run terminated".to_string())
        } else {
            message
        };
        next.completed_at = Some(Time(now));
    } else {
        next.phase = Some(AnalysisPhase::Running);
        next.message = None;
    }
    next
}

/// When the metric's next measurement is due (A3), or `None` when it takes no more:
/// the first at `startedAt + initialDelay`; later ones `interval` after the previous one finished
/// (the sooner of `interval` and [`ERROR_RETRY_INTERVAL`] after an Error); none once `count` is
/// reached; without `interval` and `count` exactly one.
pub fn next_measurement_at(
    metric: &Metric,
    result: Option<&MetricResult>,
    run_started_at: Timestamp,
) -> Result<Option<Timestamp>, AnalysisSpecError> {
    if result.is_some_and(|r| r.phase.is_completed()) {
        return Ok(None);
    }
    let count = metric.effective_count()?;
    let interval = metric.interval()?;
    let taken = result.map_or(0, |r| r.count);
    if count.is_some_and(|c| taken >= c) {
        return Ok(None);
    }
    if result.and_then(in_flight).is_some() {
        // The next one is taken once this one has finished.
        return Ok(None);
    }
    let last = result.and_then(|r| r.measurements.last());
    let Some(last) = last else {
        let delay = metric.initial_delay()?.unwrap_or_default();
        return Ok(Some(add(run_started_at, delay)));
    };
    let finished = last
        .finished_at
        .as_ref()
        .or(last.started_at.as_ref())
        .map_or(run_started_at, |t| t.0);
    let wait = match (last.phase, interval) {
        (AnalysisPhase::Error, Some(i)) => i.min(ERROR_RETRY_INTERVAL),
        (AnalysisPhase::Error, None) => ERROR_RETRY_INTERVAL,
        (_, Some(i)) => i,
        (_, None) => Duration::ZERO,
    };
    Ok(Some(add(finished, wait)))
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::analysis::{DryRun, MeasurementRetention};
    use AnalysisPhase::*;
    use serde_json::json;

    fn metric(extra: serde_json::Value) -> Metric {
        let mut v = json!({
            "name": "m",
            "successCondition": "result[0] >= 0.95",
            "provider": {"prometheus": {"query": "up"}}
        });
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v).unwrap()
    }

    fn measurement(phase: AnalysisPhase) -> Measurement {
        Measurement {
            phase,
            value: Some("[0.5]".into()),
            ..Measurement::default()
        }
    }

    fn result_of(phases: &[AnalysisPhase]) -> MetricResult {
        let mut r = MetricResult {
            name: "m".into(),
            ..MetricResult::default()
        };
        for p in phases {
            record_measurement(&mut r, measurement(*p), 100);
        }
        r
    }

    fn phase(extra: serde_json::Value, phases: &[AnalysisPhase]) -> AnalysisPhase {
        metric_phase(&metric(extra), &result_of(phases), false)
            .unwrap()
            .0
    }

    #[test]
    fn counters_follow_argo() {
        let r = result_of(&[Error, Error, Successful, Successful, Failed, Error]);
        assert_eq!((r.count, r.successful, r.failed, r.error), (3, 2, 1, 3));
        assert_eq!((r.consecutive_error, r.consecutive_success), (1, 0));
        let r = result_of(&[Failed, Successful, Successful]);
        assert_eq!(r.consecutive_success, 2);
    }

    #[test]
    fn a2_failure_limit_default_zero() {
        let unbounded = json!({"interval": "1m"});
        assert_eq!(phase(unbounded.clone(), &[Successful]), Running);
        assert_eq!(phase(unbounded.clone(), &[Successful, Failed]), Failed);
    }

    #[test]
    fn a2_failure_limit_tolerates_and_minus_one_disables() {
        let limit2 = json!({"interval": "1m", "failureLimit": 2});
        assert_eq!(phase(limit2.clone(), &[Failed, Failed]), Running);
        assert_eq!(phase(limit2, &[Failed, Failed, Failed]), Failed);
        let disabled = json!({"interval": "1m", "failureLimit": -1});
        assert_eq!(phase(disabled, &[Failed; 20]), Running);
        let as_string = json!({"interval": "1m", "failureLimit": "1"});
        assert_eq!(phase(as_string, &[Failed]), Running);
    }

    #[test]
    fn a2_inconclusive_limit() {
        assert_eq!(
            phase(json!({"interval": "1m"}), &[Inconclusive]),
            Inconclusive
        );
        let limit1 = json!({"interval": "1m", "inconclusiveLimit": 1});
        assert_eq!(phase(limit1.clone(), &[Inconclusive]), Running);
        assert_eq!(phase(limit1, &[Inconclusive, Inconclusive]), Inconclusive);
    }

    #[test]
    fn a2_consecutive_error_limit_default_four() {
        let m = json!({"interval": "1m"});
        assert_eq!(phase(m.clone(), &[Error; 4]), Running);
        assert_eq!(phase(m.clone(), &[Error; 5]), Error);
        // A good measurement resets the streak.
        assert_eq!(
            phase(m, &[Error, Error, Error, Error, Successful, Error]),
            Running
        );
        assert_eq!(
            phase(json!({"consecutiveErrorLimit": 1}), &[Error, Error]),
            Error
        );
    }

    #[test]
    fn a2_consecutive_error_checked_last_and_overrides() {
        let m = json!({"interval": "1m", "failureLimit": 0, "consecutiveErrorLimit": 0});
        assert_eq!(phase(m.clone(), &[Failed, Error]), Error);
        assert_eq!(phase(m, &[Inconclusive, Error]), Error);
        // Inconclusive is checked after failure, so it overrides too.
        let both = json!({"interval": "1m"});
        assert_eq!(phase(both, &[Failed, Inconclusive]), Inconclusive);
    }

    #[test]
    fn a2_consecutive_success_limit() {
        let m = json!({"interval": "1m", "consecutiveSuccessLimit": 2, "failureLimit": 5});
        assert_eq!(phase(m.clone(), &[Successful]), Running);
        assert_eq!(phase(m.clone(), &[Successful, Failed, Successful]), Running);
        assert_eq!(phase(m, &[Failed, Successful, Successful]), Successful);
        // 0 = off
        assert_eq!(phase(json!({"interval": "1m"}), &[Successful; 10]), Running);
    }

    #[test]
    fn a2_count_reached_is_successful_within_limits() {
        let m = json!({"interval": "1m", "count": 3, "failureLimit": 1});
        assert_eq!(phase(m.clone(), &[Successful, Failed]), Running);
        assert_eq!(phase(m, &[Successful, Failed, Successful]), Successful);
        // Errors do not count towards `count`.
        let m = json!({"interval": "1m", "count": 2});
        assert_eq!(phase(m, &[Successful, Error]), Running);
    }

    #[test]
    fn a2_pending_then_terminated() {
        let m = metric(json!({"interval": "1m"}));
        let empty = MetricResult::default();
        assert_eq!(metric_phase(&m, &empty, false).unwrap().0, Pending);
        assert_eq!(metric_phase(&m, &empty, true).unwrap().0, Successful);
        assert_eq!(
            metric_phase(&m, &result_of(&[Successful]), true).unwrap().0,
            Successful
        );
    }

    #[test]
    fn a2_unresolved_limit_is_an_error() {
        let m = metric(json!({"failureLimit": "{{args.limit}}"}));
        assert!(metric_phase(&m, &result_of(&[Successful]), false).is_err());
        let spec = AnalysisRunSpec {
            metrics: vec![m],
            ..AnalysisRunSpec::default()
        };
        let status = assess(&spec, &AnalysisRunStatus::default(), Timestamp::UNIX_EPOCH);
        assert_eq!(status.phase(), Error);
        assert!(status.message.unwrap().contains("{{args.limit}}"));
    }

    fn run_spec(metrics: Vec<Metric>) -> AnalysisRunSpec {
        AnalysisRunSpec {
            metrics,
            ..AnalysisRunSpec::default()
        }
    }

    fn named(name: &str, extra: serde_json::Value) -> Metric {
        let mut m = metric(extra);
        m.name = name.into();
        m
    }

    fn status_with(results: Vec<(&str, &[AnalysisPhase])>) -> AnalysisRunStatus {
        AnalysisRunStatus {
            metric_results: results
                .into_iter()
                .map(|(name, phases)| {
                    let mut r = result_of(phases);
                    r.name = name.into();
                    r
                })
                .collect(),
            ..AnalysisRunStatus::default()
        }
    }

    #[test]
    fn a4_run_phase_is_the_worst_and_a_bad_metric_terminates_the_others() {
        let spec = run_spec(vec![
            named("a", json!({"interval": "1m"})),
            named("b", json!({"interval": "1m"})),
        ]);
        let now = Timestamp::UNIX_EPOCH;
        let running = assess(
            &spec,
            &status_with(vec![("a", &[Successful]), ("b", &[])]),
            now,
        );
        assert_eq!(running.phase(), Running);
        assert_eq!(running.metric_results[1].phase, Pending);
        assert!(running.completed_at.is_none());

        let failed = assess(
            &spec,
            &status_with(vec![("a", &[Successful]), ("b", &[Failed])]),
            now,
        );
        assert_eq!(failed.phase(), Failed);
        // "a" was running indefinitely: terminated, it is Successful.
        assert_eq!(failed.metric_results[0].phase, Successful);
        assert!(failed.completed_at.is_some());
        assert!(failed.message.unwrap().contains("\"b\""));

        let worst = assess(
            &spec,
            &status_with(vec![("a", &[Inconclusive]), ("b", &[Error; 5])]),
            now,
        );
        assert_eq!(worst.phase(), Error);
    }

    #[test]
    fn a4_completed_metrics_give_the_worst_and_terminated_is_successful() {
        let spec = run_spec(vec![
            named("a", json!({})),
            named("b", json!({"count": 2, "interval": "1s"})),
        ]);
        let now = Timestamp::UNIX_EPOCH;
        let done = assess(
            &spec,
            &status_with(vec![("a", &[Successful]), ("b", &[Successful, Successful])]),
            now,
        );
        assert_eq!(done.phase(), Successful);
        assert_eq!(done.run_summary.as_ref().unwrap().successful, 2);

        let mut terminated = spec.clone();
        terminated.terminate = Some(true);
        terminated.metrics[1] = named("b", json!({"interval": "1s"}));
        let t = assess(
            &terminated,
            &status_with(vec![("a", &[]), ("b", &[Successful])]),
            now,
        );
        assert_eq!(t.phase(), Successful);
        assert_eq!(t.metric_results[0].phase, Successful);
        // A completed run is not reassessed.
        assert_eq!(assess(&spec, &t, now), t);
    }

    #[test]
    fn a10_dry_run_metrics_never_fail_the_run() {
        let mut spec = run_spec(vec![named("real", json!({})), named("dry", json!({}))]);
        spec.dry_run = vec![DryRun {
            metric_name: "dry".into(),
        }];
        let now = Timestamp::UNIX_EPOCH;
        let s = assess(
            &spec,
            &status_with(vec![("real", &[Successful]), ("dry", &[Failed])]),
            now,
        );
        assert_eq!(s.phase(), Successful);
        assert_eq!(s.metric_results[1].phase, Failed);
        assert!(s.metric_results[1].dry_run);
        assert_eq!(s.dry_run_summary.unwrap().failed, 1);
        // A dry-run failure does not terminate the others.
        let mut spec2 = spec.clone();
        spec2.metrics[0] = named("real", json!({"interval": "1m"}));
        let s = assess(
            &spec2,
            &status_with(vec![("real", &[Successful]), ("dry", &[Failed])]),
            now,
        );
        assert_eq!(s.phase(), Running);
    }

    #[test]
    fn a10_measurement_retention_caps_stored_measurements() {
        let mut r = MetricResult::default();
        for i in 0..15 {
            let mut m = measurement(Successful);
            m.value = Some(format!("[{i}]"));
            record_measurement(&mut r, m, 10);
        }
        assert_eq!(r.measurements.len(), 10);
        assert_eq!(r.measurements[0].value.as_deref(), Some("[5]"));
        assert_eq!(r.count, 15);
        let spec = AnalysisRunSpec {
            measurement_retention: vec![MeasurementRetention {
                metric_name: "m".into(),
                limit: 3,
            }],
            ..AnalysisRunSpec::default()
        };
        assert_eq!(spec.measurement_retention_limit("m"), 3);
        record_measurement(&mut r, measurement(Failed), 3);
        assert_eq!(r.measurements.len(), 3);
    }

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    fn finished(phase: AnalysisPhase, at: i64) -> Measurement {
        Measurement {
            phase,
            finished_at: Some(Time(ts(at))),
            ..Measurement::default()
        }
    }

    fn after(m: &Metric, measurements: Vec<Measurement>) -> Option<Timestamp> {
        let mut r = MetricResult::default();
        for x in measurements {
            record_measurement(&mut r, x, 100);
        }
        next_measurement_at(m, Some(&r), ts(1000)).unwrap()
    }

    #[test]
    fn a3_neither_count_nor_interval_is_one_measurement() {
        let m = metric(json!({}));
        assert_eq!(
            next_measurement_at(&m, None, ts(1000)).unwrap(),
            Some(ts(1000))
        );
        assert_eq!(after(&m, vec![finished(Successful, 1001)]), None);
    }

    #[test]
    fn a3_initial_delay_then_interval_until_count() {
        let m = metric(json!({"initialDelay": "30s", "interval": "10s", "count": 2}));
        assert_eq!(
            next_measurement_at(&m, None, ts(1000)).unwrap(),
            Some(ts(1030))
        );
        assert_eq!(after(&m, vec![finished(Successful, 1031)]), Some(ts(1041)));
        assert_eq!(
            after(&m, vec![finished(Successful, 1031), finished(Failed, 1041)]),
            None
        );
    }

    #[test]
    fn a3_interval_without_count_runs_until_terminated() {
        let m = metric(json!({"interval": "1m", "failureLimit": -1}));
        let many: Vec<_> = (0..50)
            .map(|i| finished(Successful, 1000 + i * 60))
            .collect();
        assert_eq!(after(&m, many), Some(ts(1000 + 49 * 60 + 60)));
        let mut r = result_of(&[Successful]);
        r.phase = Successful; // terminated
        assert_eq!(next_measurement_at(&m, Some(&r), ts(1000)).unwrap(), None);
    }

    #[test]
    fn a3_errors_are_retried_sooner() {
        let m = metric(json!({"interval": "5m"}));
        assert_eq!(after(&m, vec![finished(Error, 2000)]), Some(ts(2010)));
        let fast = metric(json!({"interval": "2s"}));
        assert_eq!(after(&fast, vec![finished(Error, 2000)]), Some(ts(2002)));
        // An error does not use up the single measurement.
        let once = metric(json!({}));
        assert_eq!(after(&once, vec![finished(Error, 2000)]), Some(ts(2010)));
    }

    #[test]
    fn a12_messages_name_metric_value_and_condition() {
        let m = metric(json!({"name": "success-rate"}));
        let r = result_of(&[Failed]);
        let (p, msg) = metric_phase(&m, &r, false).unwrap();
        assert_eq!(p, Failed);
        assert_eq!(
            msg.unwrap(),
            "metric \"success-rate\" assessed Failed due to failed (1) > failureLimit (0): \
             value [0.5] did not meet successCondition \"result[0] >= 0.95\""
        );

        let m = metric(json!({"name": "errors", "failureCondition": "result[0] > 0.1"}));
        let mut r = MetricResult::default();
        let mut x = measurement(Failed);
        x.metadata
            .insert(METADATA_FAILURE_CONDITION_MET.into(), "true".into());
        record_measurement(&mut r, x, 10);
        let msg = metric_phase(&m, &r, false).unwrap().1.unwrap();
        assert!(
            msg.ends_with("met failureCondition \"result[0] > 0.1\""),
            "{msg}"
        );

        let m = metric(json!({"name": "i", "failureCondition": "result[0] < 0.1"}));
        let msg = metric_phase(&m, &result_of(&[Inconclusive]), false)
            .unwrap()
            .1
            .unwrap();
        assert!(msg.contains("met neither successCondition \"result[0] >= 0.95\" nor failureCondition \"result[0] < 0.1\""), "{msg}");

        let m = metric(json!({"name": "e", "consecutiveErrorLimit": 0}));
        let mut r = MetricResult::default();
        let mut x = measurement(Error);
        x.value = None;
        x.message = Some("connection refused".into());
        record_measurement(&mut r, x, 10);
        let msg = metric_phase(&m, &r, false).unwrap().1.unwrap();
        assert_eq!(
            msg,
            "metric \"e\" assessed Error due to consecutiveErrors (1) > consecutiveErrorLimit (0); \
             last error: connection refused"
        );
    }
}
