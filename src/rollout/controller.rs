//! The Rollout reconciler: watches Rollouts and what they own or name (ReplicaSets, AnalysisRuns,
//! Services), and for each change runs observe → plan → act. Timed steps come back through
//! `requeue_after`, never by polling.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, Service};
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use thiserror::Error;

use crate::api::analysis::{AnalysisRun, AnalysisTemplate, ClusterAnalysisTemplate};
use crate::api::experiment::Experiment;
use crate::api::rollout::{POD_TEMPLATE_HASH_LABEL, Rollout};
use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::reconcile_guard::ReconcileGuard;
use crate::rollout::act::{ActError, Actor, read_live};
use crate::rollout::hash::pod_template_hash;
use crate::rollout::metrics::RolloutInfo;
use crate::rollout::observe::{Reads, is_controlled_by, observe, referenced_services};
use crate::rollout::phase::invalid_spec_plan;
use crate::rollout::plan::plan;
use crate::rollout::replicasets::{ReplicaSetError, is_owned_by, workload_template};
use crate::rollout::template_stores::TemplateStores;
use crate::rollout::templates::{self, TemplateRef};
use crate::rollout::traffic::{RouterKind, router_for};
use crate::scope::scoped_api;

/// How long a Rollout with nothing timed waits before it is looked at again anyway.
const RESYNC: Duration = Duration::from_secs(300);
/// Retry delay after a failed reconcile.
const RETRY: Duration = Duration::from_secs(5);
/// How soon a Rollout whose router references are invalid is looked at again (they are not watched).
const INVALID_REFERENCE_RETRY: Duration = Duration::from_secs(5);
/// Retry after a status conflict when no watch event has triggered one sooner.
const CONFLICT_FALLBACK: Duration = Duration::from_secs(2);
/// Delay before a reconcile that came before the caches (objects, templates) were listed is tried
/// again.
const CACHES_NOT_LISTED: Duration = Duration::from_millis(500);

#[derive(Debug, Error)]
pub enum ReconcileError {
    #[error("reading the workloadRef Deployment {name}: {source}")]
    Workload {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    ReplicaSet(#[from] ReplicaSetError),
    #[error(transparent)]
    Act(#[from] ActError),
}

/// Shared by every reconcile: the client, the watch caches and the metrics.
pub struct Context {
    client: Client,
    recorder: Recorder,
    replica_sets: Store<ReplicaSet>,
    services: Store<Service>,
    analysis_runs: Store<AnalysisRun>,
    experiments: Store<Experiment>,
    pods: Store<Pod>,
    templates: TemplateStores,
    reconcile_seconds: Histogram,
    reconcile_errors: Counter,
}

/// How the Rollout controller runs.
pub struct RolloutSettings {
    /// Limits it to one namespace.
    pub namespace: Option<String>,
    /// Rollouts reconciled at the same time: unbounded, a wave of N updates would run N reconciles
    /// at once, each slower than the watch that should tell the next one what the last wrote.
    pub workers: u16,
}

/// Runs the Rollout controller until the process stops.
pub async fn run(
    client: Client,
    settings: RolloutSettings,
    metrics: Metrics,
    readiness: Readiness,
) {
    let RolloutSettings { namespace, workers } = settings;
    let reconcile_seconds = Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]);
    let reconcile_errors = Counter::default();
    metrics.register(|r| {
        r.register(
            "rollout_reconcile_duration_seconds",
            "Time to observe, plan and act on one Rollout",
            reconcile_seconds.clone(),
        );
        r.register(
            "rollout_reconcile_errors",
            "Rollout reconciles that failed and were retried",
            reconcile_errors.clone(),
        );
    });

    let rollouts: Api<Rollout> = scoped_api(&client, namespace.as_deref());
    let config = watcher::Config::default();
    let (replica_sets, rs_writer) = reflector::store();
    let (services, svc_writer) = reflector::store();
    let (analysis_runs, run_writer) = reflector::store();
    let (pods, pod_writer) = reflector::store();
    let (experiments, experiment_writer) = reflector::store();
    // Experiments of experiment steps: their phase completes, aborts or pauses the step.
    let experiment_stream = reflector::reflector(
        experiment_writer,
        watcher(
            scoped_api::<Experiment>(&client, namespace.as_deref()),
            config.clone(),
        )
        .modify(|experiment| {
            experiment.managed_fields_mut().clear();
            experiment.spec.templates.clear();
        }),
    )
    .default_backoff()
    .touched_objects();
    // Only ReplicaSets of Rollout revisions carry the hash label (a Deployment's carry
    // `pod-template-hash`), so the Deployments' are never sent.
    let rs_stream = reflector::reflector(
        rs_writer,
        watcher(
            scoped_api::<ReplicaSet>(&client, namespace.as_deref()),
            config.clone().labels(POD_TEMPLATE_HASH_LABEL),
        )
        .modify(slim_replica_set),
    )
    .default_backoff()
    .touched_objects();
    let svc_stream = reflector::reflector(
        svc_writer,
        watcher(
            scoped_api::<Service>(&client, namespace.as_deref()),
            config.clone(),
        ),
    )
    .default_backoff()
    .touched_objects();
    let run_stream = reflector::reflector(
        run_writer,
        watcher(
            scoped_api::<AnalysisRun>(&client, namespace.as_deref()),
            config.clone(),
        )
        .modify(slim_analysis_run),
    )
    .default_backoff()
    .touched_objects();

    // Only pods of Rollout revisions carry the hash label; their spec and managed fields are not
    // read, so they are dropped from the cache.
    let pod_stream = reflector::reflector(
        pod_writer,
        watcher(
            scoped_api::<Pod>(&client, namespace.as_deref()),
            config.clone().labels(POD_TEMPLATE_HASH_LABEL),
        )
        .modify(|pod| {
            pod.spec = None;
            pod.managed_fields_mut().clear();
        }),
    )
    .default_backoff()
    .touched_objects();

    let (templates, template_stream, cluster_template_stream) =
        TemplateStores::watch(&client, namespace.as_deref(), &readiness);

    let (rollout_store, changed) = readiness.watch("rollouts", rollouts, config.clone());
    let controller = Controller::for_stream(changed, rollout_store.clone())
        .with_config(kube::runtime::controller::Config::default().concurrency(workers));
    let info = RolloutInfo {
        rollouts: rollout_store.clone(),
    };
    metrics.register(|r| r.register_collector(Box::new(info)));
    let guard = ReconcileGuard::new("rollout", &metrics).reporting(
        client.clone(),
        crate::rollout::FIELD_MANAGER,
        Some(crate::rollout::phase::panic_status),
    );
    let deployment_rollouts = rollout_store.clone();
    let template_rollouts = rollout_store.clone();
    let cluster_template_rollouts = rollout_store.clone();
    let pod_owners = replica_sets.clone();
    let context = Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: crate::rollout::FIELD_MANAGER.into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        ),
        client: client.clone(),
        replica_sets,
        services,
        analysis_runs,
        experiments,
        pods,
        templates,
        reconcile_seconds,
        reconcile_errors,
    });
    controller
        .owns_stream(rs_stream)
        .owns_stream(run_stream)
        .owns_stream(experiment_stream)
        .watches_stream(pod_stream, move |pod: Pod| {
            rollout_of_pod(&pod_owners, &pod)
        })
        .watches_stream(svc_stream, move |svc: Service| {
            rollouts_naming_service(&rollout_store, &svc)
        })
        .watches_stream(template_stream, move |template: AnalysisTemplate| {
            rollouts_naming_template(
                &template_rollouts,
                &template.name_any(),
                template.namespace(),
            )
        })
        .watches_stream(
            cluster_template_stream,
            move |template: ClusterAnalysisTemplate| {
                rollouts_naming_template(&cluster_template_rollouts, &template.name_any(), None)
            },
        )
        .watches(
            scoped_api::<Deployment>(&client, namespace.as_deref()),
            config,
            move |deployment: Deployment| rollouts_referencing(&deployment_rollouts, &deployment),
        )
        .run(
            guard.reconcile(reconcile),
            guard.error_policy(error_policy),
            context,
        )
        .for_each(crate::reconcile_guard::log_result("rollout"))
        .await;
}

/// What the cache keeps of a ReplicaSet: the planner reads its metadata, selector, counts and the
/// pod template's metadata, never the pod spec or the managed fields, which are most of its bytes.
pub(crate) fn slim_replica_set(rs: &mut ReplicaSet) {
    rs.managed_fields_mut().clear();
    if let Some(template) = rs.spec.as_mut().and_then(|s| s.template.as_mut()) {
        template.spec = None;
    }
}

/// What the cache keeps of an AnalysisRun: labels, owner and phase; its metrics and measurements
/// are the analysis controller's business.
pub(crate) fn slim_analysis_run(run: &mut AnalysisRun) {
    run.managed_fields_mut().clear();
    run.spec.metrics.clear();
    run.spec.args.clear();
    if let Some(status) = run.status.as_mut() {
        status.metric_results.clear();
    }
}

/// The Rollouts naming a template: an AnalysisTemplate (`namespace` set) names only Rollouts of its
/// namespace; a ClusterAnalysisTemplate any Rollout that asks for cluster scope.
fn rollouts_naming_template(
    rollouts: &Store<Rollout>,
    name: &str,
    namespace: Option<String>,
) -> Vec<ObjectRef<Rollout>> {
    let reference = TemplateRef {
        name: name.to_string(),
        cluster_scope: namespace.is_none(),
    };
    rollouts
        .state()
        .iter()
        .filter(|r| namespace.is_none() || r.namespace() == namespace)
        .filter(|r| templates::names(&r.spec, &reference))
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

fn rollouts_naming_service(rollouts: &Store<Rollout>, svc: &Service) -> Vec<ObjectRef<Rollout>> {
    let name = svc.name_any();
    rollouts
        .state()
        .iter()
        .filter(|r| r.namespace() == svc.namespace())
        .filter(|r| referenced_services(r).contains(&name))
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

/// The Rollout owning the ReplicaSet that controls `pod`, if any.
fn rollout_of_pod(replica_sets: &Store<ReplicaSet>, pod: &Pod) -> Option<ObjectRef<Rollout>> {
    let owner = pod
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "ReplicaSet")?;
    let namespace = pod.namespace()?;
    let rs = replica_sets.get(&ObjectRef::new(&owner.name).within(&namespace))?;
    if rs.metadata.uid.as_deref() != Some(owner.uid.as_str()) {
        return None;
    }
    let rollout = rs
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "Rollout")?;
    Some(ObjectRef::new(&rollout.name).within(&namespace))
}

fn rollouts_referencing(
    rollouts: &Store<Rollout>,
    deployment: &Deployment,
) -> Vec<ObjectRef<Rollout>> {
    let name = deployment.name_any();
    rollouts
        .state()
        .iter()
        .filter(|r| r.namespace() == deployment.namespace())
        .filter(|r| {
            r.spec
                .workload_ref
                .as_ref()
                .is_some_and(|w| w.kind == "Deployment" && w.name == name)
        })
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

/// Whether every cache the planner reads has been listed once (checked without waiting).
fn caches_listed(ctx: &Context) -> bool {
    listed(&ctx.replica_sets)
        && listed(&ctx.pods)
        && listed(&ctx.services)
        && listed(&ctx.analysis_runs)
        && listed(&ctx.experiments)
}

fn listed<K>(store: &Store<K>) -> bool
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    use futures::FutureExt;
    store
        .wait_until_ready()
        .now_or_never()
        .is_some_and(|ready| ready.is_ok())
}

async fn reconcile(rollout: Arc<Rollout>, ctx: Arc<Context>) -> Result<Requeue, ReconcileError> {
    let span = tracing::info_span!(
        "reconcile",
        namespace = %rollout.namespace().unwrap_or_default(),
        rollout = %rollout.name_any()
    );
    reconcile_rollout(rollout, ctx).instrument(span).await
}

async fn reconcile_rollout(
    rollout: Arc<Rollout>,
    ctx: Arc<Context>,
) -> Result<Requeue, ReconcileError> {
    let started = Instant::now();
    let namespace = rollout.namespace().unwrap_or_default();

    if !caches_listed(&ctx) {
        // Right after a start: a ReplicaSet or pod missing from a cache still being filled would
        // be planned as gone (a header route or a weight undone, a ReplicaSet created again).
        return Ok(Requeue::requeue(CACHES_NOT_LISTED));
    }
    let Some(found) = ctx.templates.resolve(&rollout) else {
        // The template caches have not listed yet: a template missing from them now proves nothing.
        return Ok(Requeue::requeue(CACHES_NOT_LISTED));
    };
    let (template, workload) = current_template(&ctx.client, &rollout).await?;
    let hash = pod_template_hash(
        &template,
        rollout.status.as_ref().and_then(|s| s.collision_count),
    );
    let in_namespace = |ns: Option<String>| ns.as_deref() == Some(namespace.as_str());
    // Only this Rollout's objects are cloned: cloning the namespace's would make every reconcile
    // cost as much as the namespace holds (O(N²) for N Rollouts updated together).
    let replica_sets: Vec<ReplicaSet> = ctx
        .replica_sets
        .state()
        .iter()
        .filter(|rs| is_owned_by(rs, &rollout))
        .map(|rs| rs.as_ref().clone())
        .collect();
    let wanted = referenced_services(&rollout);
    let services: Vec<Service> = ctx
        .services
        .state()
        .iter()
        .filter(|svc| in_namespace(svc.namespace()) && wanted.contains(&svc.name_any()))
        .map(|svc| svc.as_ref().clone())
        .collect();
    let analysis_runs: Vec<AnalysisRun> = ctx
        .analysis_runs
        .state()
        .iter()
        .filter(|run| is_controlled_by(run, &rollout))
        .map(|run| run.as_ref().clone())
        .collect();
    let experiments: Vec<Experiment> = ctx
        .experiments
        .state()
        .iter()
        .filter(|e| crate::rollout::observe::controls(e.as_ref(), rollout.as_ref()))
        .map(|e| e.as_ref().clone())
        .collect();
    let owned_uids: Vec<&str> = replica_sets
        .iter()
        .filter(|rs| is_owned_by(rs, &rollout))
        .filter_map(|rs| rs.metadata.uid.as_deref())
        .collect();
    let pods: Vec<Pod> = ctx
        .pods
        .state()
        .iter()
        .filter(|pod| in_namespace(pod.namespace()))
        .filter(|pod| {
            pod.owner_references()
                .iter()
                .any(|o| owned_uids.contains(&o.uid.as_str()))
        })
        .map(|pod| pod.as_ref().clone())
        .collect();
    let reads = Reads {
        pods: &pods,
        replica_sets: &replica_sets,
        services: &services,
        analysis_runs: &analysis_runs,
        workload: workload.as_ref(),
        templates: &found,
        experiments: &experiments,
    };
    let observed = observe(&rollout, hash, &reads, jiff::Timestamp::now());

    let plan = match traffic_reference_error(&ctx.client, &rollout).await? {
        Some(reason) => {
            let mut invalid = invalid_spec_plan(&observed, &reason);
            invalid.requeue_after = Some(INVALID_REFERENCE_RETRY);
            invalid
        }
        None => plan(&observed),
    };
    tracing::debug!(actions = plan.actions.len(), "planned");
    Actor {
        client: &ctx.client,
        recorder: &ctx.recorder,
        rollout: &rollout,
        template: &template,
        templates: &found,
    }
    .apply(&plan)
    .await?;
    ctx.reconcile_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok(Requeue::requeue(
        plan.requeue_after.unwrap_or(RESYNC).min(RESYNC),
    ))
}

fn error_policy(rollout: Arc<Rollout>, error: &ReconcileError, ctx: Arc<Context>) -> Requeue {
    ctx.reconcile_errors.inc();
    match error {
        // The cache had not seen the latest status (a user's promote or abort, or this
        // controller's own last write). Its watch event triggers the next reconcile as soon as it
        // arrives; planning again sooner from the same stale cache would only conflict again.
        ReconcileError::Act(ActError::StatusConflict) => Requeue::requeue(CONFLICT_FALLBACK),
        _ => {
            tracing::warn!(
                namespace = rollout.namespace().unwrap_or_default(),
                rollout = %rollout.name_any(),
                error = %error,
                "reconcile failed"
            );
            Requeue::requeue(RETRY)
        }
    }
}

/// Why the traffic router cannot work with this Rollout, if it cannot. As Argo validates the
/// objects a Rollout references on every reconcile, a router configuration Sluice cannot build, and
/// an Istio VirtualService or DestinationRule that is missing or lacks the named routes,
/// destinations or subsets, make the Rollout `InvalidSpec` (naming the object and what is wrong)
/// before anything moves, instead of failing each weight change. Those objects are not watched, so
/// the Rollout is looked at again every [`INVALID_REFERENCE_RETRY`] until they are fixed.
async fn traffic_reference_error(
    client: &Client,
    rollout: &Rollout,
) -> Result<Option<String>, ReconcileError> {
    let router = match router_for(rollout) {
        Ok(router) => router,
        Err(error) => return Ok(Some(error.to_string())),
    };
    if router.kind() != RouterKind::Istio {
        return Ok(None);
    }
    let live = read_live(client, router.as_ref()).await?;
    let weight = rollout
        .status
        .as_ref()
        .and_then(|s| s.canary.as_ref())
        .and_then(|c| c.weights.as_ref())
        .map_or(0, |w| w.canary.weight.clamp(0, 100));
    Ok(router.desired(&live, weight).err().map(|e| e.to_string()))
}

/// The pod template of the current revision (the Rollout's own, or its workloadRef Deployment's),
/// and that Deployment.
async fn current_template(
    client: &Client,
    rollout: &Rollout,
) -> Result<(PodTemplateSpec, Option<Deployment>), ReconcileError> {
    let Some(workload) = &rollout.spec.workload_ref else {
        // Without a template either, the planner reports InvalidSpec; the empty one only feeds the hash.
        return Ok((rollout.spec.template.clone().unwrap_or_default(), None));
    };
    let deployments: Api<Deployment> =
        Api::namespaced(client.clone(), &rollout.namespace().unwrap_or_default());
    let deployment =
        deployments
            .get(&workload.name)
            .await
            .map_err(|source| ReconcileError::Workload {
                name: workload.name.clone(),
                source,
            })?;
    if let Some(template) = &rollout.spec.template {
        // Both set: invalid (R1), reported by the planner; nothing runs from the Deployment.
        return Ok((template.clone(), Some(deployment)));
    }
    let template = workload_template(rollout, &deployment)?.template;
    Ok((template, Some(deployment)))
}
