//! The Experiment reconciler: watches Experiments and the ReplicaSets and AnalysisRuns they own,
//! and for each change runs observe → plan → act. The end of the duration, progress deadlines and
//! scale-down delays come back through `requeue_after`, never by waiting in a reconcile.

use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Service;
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use thiserror::Error;

use crate::api::analysis::AnalysisRun;
use crate::api::experiment::Experiment;
use crate::experiment::EXPERIMENT_LABEL;
use crate::experiment::act::{ActError, Actor};
use crate::experiment::observe::{Reads, observe, template_references};
use crate::experiment::plan::plan;
use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::reconcile_guard::ReconcileGuard;
use crate::rollout::controller::{slim_analysis_run, slim_replica_set};
use crate::rollout::observe::controls;
use crate::rollout::template_stores::TemplateStores;
use crate::scope::scoped_api;

/// How long an Experiment with nothing timed waits before it is looked at again anyway.
const RESYNC: Duration = Duration::from_secs(300);
/// Retry delay after a failed reconcile.
const RETRY: Duration = Duration::from_secs(5);
/// Retry after a status conflict when no watch event has triggered one sooner.
const CONFLICT_FALLBACK: Duration = Duration::from_secs(2);
/// Delay before a reconcile that came before the template caches were listed is tried again.
const TEMPLATES_NOT_SYNCED: Duration = Duration::from_millis(500);

#[derive(Debug, Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Act(#[from] ActError),
}

struct Context {
    client: Client,
    recorder: Recorder,
    replica_sets: Store<ReplicaSet>,
    analysis_runs: Store<AnalysisRun>,
    services: Store<Service>,
    templates: TemplateStores,
}

/// Runs the Experiment controller until the process stops. `namespace` limits it to one.
pub async fn run(
    client: Client,
    namespace: Option<String>,
    metrics: Metrics,
    readiness: Readiness,
) {
    let config = watcher::Config::default();
    let (replica_sets, rs_writer) = reflector::store();
    let (analysis_runs, run_writer) = reflector::store();
    // Only what Experiments created (their label): not every ReplicaSet, AnalysisRun and Service
    // of the cluster a second time beside the Rollout controller's caches. Pod specs and managed
    // fields are not read.
    let rs_stream = reflector::reflector(
        rs_writer,
        watcher(
            scoped_api::<ReplicaSet>(&client, namespace.as_deref()),
            config.clone().labels(EXPERIMENT_LABEL),
        )
        .modify(slim_replica_set),
    )
    .default_backoff()
    .touched_objects();
    let run_stream = reflector::reflector(
        run_writer,
        watcher(
            scoped_api::<AnalysisRun>(&client, namespace.as_deref()),
            config.clone().labels(EXPERIMENT_LABEL),
        )
        .modify(slim_analysis_run),
    )
    .default_backoff()
    .touched_objects();
    let (services, svc_writer) = reflector::store();
    let svc_stream = reflector::reflector(
        svc_writer,
        watcher(
            scoped_api::<Service>(&client, namespace.as_deref()),
            config.clone().labels(EXPERIMENT_LABEL),
        )
        .modify(|svc| svc.managed_fields_mut().clear()),
    )
    .default_backoff()
    .touched_objects();
    let (templates, template_stream, cluster_template_stream) =
        TemplateStores::watch(&client, namespace.as_deref(), &readiness);
    let (store, changed) = readiness.watch(
        "experiments",
        scoped_api::<Experiment>(&client, namespace.as_deref()),
        config,
    );
    let guard = ReconcileGuard::new("experiment", &metrics).reporting(
        client.clone(),
        crate::experiment::FIELD_MANAGER,
        None,
    );
    let context = Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "sluice-experiment".into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        ),
        client,
        replica_sets,
        analysis_runs,
        services,
        templates,
    });
    // Template changes matter only before a run exists (then it has its own copy); the resync and
    // the Experiment's own events cover that, so the template streams only keep the caches fed.
    tokio::spawn(template_stream.for_each(|_| async {}));
    tokio::spawn(cluster_template_stream.for_each(|_| async {}));
    Controller::for_stream(changed, store)
        .owns_stream(rs_stream)
        .owns_stream(run_stream)
        .owns_stream(svc_stream)
        .run(
            guard.reconcile(reconcile),
            guard.error_policy(error_policy),
            context,
        )
        .for_each(crate::reconcile_guard::log_result("experiment"))
        .await;
}

async fn reconcile(
    experiment: Arc<Experiment>,
    ctx: Arc<Context>,
) -> Result<Requeue, ReconcileError> {
    let span = tracing::info_span!(
        "reconcile",
        namespace = %experiment.namespace().unwrap_or_default(),
        experiment = %experiment.name_any()
    );
    reconcile_experiment(experiment, ctx).instrument(span).await
}

async fn reconcile_experiment(
    experiment: Arc<Experiment>,
    ctx: Arc<Context>,
) -> Result<Requeue, ReconcileError> {
    let namespace = experiment.namespace().unwrap_or_default();
    let Some(found) = ctx
        .templates
        .resolve_refs(&namespace, template_references(&experiment))
    else {
        return Ok(Requeue::requeue(TEMPLATES_NOT_SYNCED));
    };
    let replica_sets: Vec<ReplicaSet> = ctx
        .replica_sets
        .state()
        .iter()
        .filter(|rs| controls(rs.as_ref(), experiment.as_ref()))
        .map(|rs| rs.as_ref().clone())
        .collect();
    let runs: Vec<AnalysisRun> = ctx
        .analysis_runs
        .state()
        .iter()
        .filter(|run| controls(run.as_ref(), experiment.as_ref()))
        .map(|run| run.as_ref().clone())
        .collect();
    let services: Vec<Service> = ctx
        .services
        .state()
        .iter()
        .filter(|svc| controls(svc.as_ref(), experiment.as_ref()))
        .map(|svc| svc.as_ref().clone())
        .collect();
    let reads = Reads {
        replica_sets: &replica_sets,
        analysis_runs: &runs,
        services: &services,
    };
    let observed = observe(&experiment, &reads, found, jiff::Timestamp::now());
    let plan = plan(&observed);
    tracing::debug!(actions = plan.actions.len(), "planned");
    Actor {
        client: &ctx.client,
        recorder: &ctx.recorder,
        experiment: &experiment,
    }
    .apply(&plan)
    .await?;
    Ok(Requeue::requeue(
        plan.requeue_after.unwrap_or(RESYNC).min(RESYNC),
    ))
}

fn error_policy(experiment: Arc<Experiment>, error: &ReconcileError, _: Arc<Context>) -> Requeue {
    match error {
        // The cache had not seen the latest status; its watch event triggers the next reconcile.
        ReconcileError::Act(ActError::StatusConflict) => Requeue::requeue(CONFLICT_FALLBACK),
        _ => {
            tracing::warn!(
                namespace = experiment.namespace().unwrap_or_default(),
                experiment = %experiment.name_any(),
                error = %error,
                "reconcile failed"
            );
            Requeue::requeue(RETRY)
        }
    }
}
