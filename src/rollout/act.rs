//! The act step: applies a [`Plan`]'s actions to the cluster, then writes the status.
//!
//! Every write is idempotent (create tolerates `AlreadyExists`, delete tolerates `NotFound`, the rest
//! are server-side applies or patches to a target value), so a controller killed between two actions
//! and restarted re-plans and finishes the job without duplicates (R10).

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ObjectReference, Pod, PodTemplateSpec, Service};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, EvictParams, Patch, PatchParams, PostParams,
};
use kube::runtime::events::{Event as KubeEvent, EventType as KubeEventType, Recorder};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::{Value, json};
use thiserror::Error;

use crate::api::analysis::AnalysisRun;
use crate::api::experiment::Experiment;
use crate::api::rollout::{POD_TEMPLATE_HASH_LABEL, PodTemplateMetadata, Rollout, RolloutStatus};
use crate::rollout::FIELD_MANAGER;
use crate::rollout::action::{Action, Event, EventType, Plan};
use crate::rollout::analysis_runs::{AnalysisRunError, build_analysis_run};
use crate::rollout::anti_affinity::{self, ANTI_AFFINITY_ANNOTATION, InjectedAntiAffinity};
use crate::rollout::experiments::{ExperimentSource, build_experiment};
use crate::rollout::managed_routes::ActiveRoute;
use crate::rollout::pod_metadata::{
    ARGO_EPHEMERAL_METADATA_ANNOTATION, EPHEMERAL_METADATA_ANNOTATION, PodMetadataChange,
    TemplateMetadataChange, inject,
};
use crate::rollout::replicasets::{
    ARGO_ROLLOUT_REVISION_ANNOTATION, ROLLOUT_REVISION_ANNOTATION, ReplicaSetError,
    SCALE_DOWN_DEADLINE_ANNOTATION, new_replica_set, scale_down_deadline_annotation,
};
use crate::rollout::templates::ResolvedTemplates;
use crate::rollout::traffic::{
    LiveObjects, ObjectKey, TrafficError, TrafficRouter, TrafficWrite, router_for,
};

/// What the pods of a ReplicaSet created now are born with, besides the Rollout's template.
#[derive(Clone, Copy)]
struct BornWith<'a> {
    ephemeral_metadata: Option<&'a PodTemplateMetadata>,
    anti_affinity: Option<&'a InjectedAntiAffinity>,
}

/// Pods whose ephemeral metadata is patched at the same time (Argo uses 10 threads).
const POD_PATCH_CONCURRENCY: usize = 8;

#[derive(Debug, Error)]
pub enum ActError {
    #[error("{action} failed: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    ReplicaSet(#[from] ReplicaSetError),
    #[error(transparent)]
    Traffic(#[from] TrafficError),
    #[error(transparent)]
    AnalysisRun(#[from] AnalysisRunError),
    #[error("the status write conflicted with a concurrent change; planning again")]
    StatusConflict,
}

/// What the act step needs besides the plan.
pub struct Actor<'a> {
    pub client: &'a Client,
    pub recorder: &'a Recorder,
    pub rollout: &'a Rollout,
    /// The pod template of the current revision (the Rollout's, or its workloadRef's).
    pub template: &'a PodTemplateSpec,
    /// The templates the Rollout names, as observed (the planner checked they all exist).
    pub templates: &'a ResolvedTemplates,
}

impl Actor<'_> {
    fn namespace(&self) -> String {
        self.rollout.namespace().unwrap_or_default()
    }

    fn kube_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> ActError {
        let action = action.into();
        move |source| ActError::Kube { action, source }
    }

    fn apply_params() -> PatchParams {
        PatchParams::apply(FIELD_MANAGER).force()
    }

    /// Applies the actions in order and writes the status if it changed; Events are recorded and
    /// AnalysisRuns created only once that status is written. A reconcile planned from a cache that
    /// missed the previous status write (the run it named may even have finished meanwhile) then
    /// fails on the status conflict instead of creating a second run or telling of changes twice;
    /// a run the status names and the cluster lacks is planned again under the same name, so a
    /// failed create heals.
    pub async fn apply(&self, plan: &Plan) -> Result<(), ActError> {
        let after_status = |action: &&Action| {
            matches!(
                action,
                Action::CreateAnalysisRun { .. }
                    | Action::CreateExperiment { .. }
                    | Action::RecordEvent(_)
            )
        };
        for action in plan.actions.iter().filter(|a| !after_status(a)) {
            self.apply_action(action, &plan.status).await?;
        }
        self.write_status(plan).await?;
        let (events, creates): (Vec<&Action>, Vec<&Action>) = plan
            .actions
            .iter()
            .filter(after_status)
            .partition(|action| matches!(action, Action::RecordEvent(_)));
        for action in events.into_iter().chain(creates) {
            self.apply_action(action, &plan.status).await?;
        }
        Ok(())
    }

    /// `planned` is the status this plan writes: whether the Rollout is fully promoted is judged
    /// from it, since the weight goes to 0 in the same plan that makes the canary stable.
    async fn apply_action(&self, action: &Action, planned: &RolloutStatus) -> Result<(), ActError> {
        match action {
            Action::CreateReplicaSet {
                hash,
                revision,
                replicas,
                ephemeral_metadata,
                anti_affinity,
                ..
            } => {
                let born_with = BornWith {
                    ephemeral_metadata: ephemeral_metadata.as_ref(),
                    anti_affinity: anti_affinity.as_ref(),
                };
                self.create_replica_set(hash, *revision, *replicas, born_with)
                    .await
            }
            Action::SetAntiAffinity {
                replica_set,
                injected,
            } => self.set_anti_affinity(replica_set, injected.as_ref()).await,
            Action::SyncEphemeralMetadata {
                replica_set,
                template,
                pods,
            } => {
                if let Some(template) = template {
                    self.set_template_metadata(replica_set, template).await?;
                }
                self.set_pods_metadata(pods).await
            }
            Action::ScaleReplicaSet { name, replicas } => {
                self.scale_replica_set(name, *replicas).await
            }
            Action::SetScaleDownDeadline { name, at } => {
                let value = at.map(|t| Value::String(scale_down_deadline_annotation(t).1));
                let patch =
                    json!({"metadata": {"annotations": {SCALE_DOWN_DEADLINE_ANNOTATION: value}}});
                self.replica_sets()
                    .patch(name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .map(drop)
                    .map_err(Self::kube_err(format!("annotating ReplicaSet {name}")))
            }
            Action::DeleteAnalysisRun { name } => ignore_not_found(
                self.analysis_runs()
                    .delete(name, &DeleteParams::default())
                    .await,
            )
            .map_err(Self::kube_err(format!("deleting AnalysisRun {name}"))),
            Action::DeleteReplicaSet { name } => ignore_not_found(
                self.replica_sets()
                    .delete(name, &DeleteParams::default())
                    .await,
            )
            .map_err(Self::kube_err(format!("deleting ReplicaSet {name}"))),
            Action::SetReplicaSetRevision { name, revision } => {
                let value = revision.to_string();
                let patch = json!({"metadata": {"annotations": {
                    ROLLOUT_REVISION_ANNOTATION: value,
                    ARGO_ROLLOUT_REVISION_ANNOTATION: value,
                }}});
                self.replica_sets()
                    .patch(name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .map(drop)
                    .map_err(Self::kube_err(format!(
                        "setting the revision of ReplicaSet {name} to {revision}"
                    )))
            }
            Action::EvictPod { name } => self.evict_pod(name).await,
            Action::SetServiceSelector { service, hash } => {
                self.set_service_selector(service, hash).await
            }
            Action::ScaleWorkload { name, replicas } => self.scale_workload(name, *replicas).await,
            Action::SetCanaryWeight { weight } => self.set_canary_weight(*weight, planned).await,
            Action::SetManagedRoutes { routes } => self.set_managed_routes(routes).await,
            Action::CreateAnalysisRun {
                name,
                analysis_type,
                step_index,
                analysis,
                pod_template_hash,
            } => {
                let run = build_analysis_run(
                    self.templates,
                    self.rollout,
                    name,
                    *analysis_type,
                    *step_index,
                    analysis,
                    pod_template_hash,
                )?;
                ignore_already_exists(
                    self.analysis_runs()
                        .create(&PostParams::default(), &run)
                        .await,
                )
                .map_err(Self::kube_err(format!("creating AnalysisRun {name}")))
            }
            Action::TerminateAnalysisRun { name } => {
                let patch = json!({"spec": {"terminate": true}});
                ignore_not_found(
                    self.analysis_runs()
                        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
                        .await,
                )
                .map_err(Self::kube_err(format!("terminating AnalysisRun {name}")))
            }
            Action::CreateExperiment {
                name,
                step_index,
                step,
                stable_hash,
                pod_template_hash,
                revision,
            } => {
                let stable = self.stable_replica_set(stable_hash).await?;
                let spec = stable.spec.unwrap_or_default();
                let source = ExperimentSource {
                    name,
                    step_index: *step_index,
                    revision: *revision,
                    stable_hash,
                    stable_template: &spec.template.unwrap_or_default(),
                    canary_hash: pod_template_hash,
                    canary_template: self.template,
                    selector: &spec.selector,
                };
                let experiment = build_experiment(self.rollout, step, &source)?;
                ignore_already_exists(
                    self.experiments()
                        .create(&PostParams::default(), &experiment)
                        .await,
                )
                .map_err(Self::kube_err(format!("creating Experiment {name}")))
            }
            Action::TerminateExperiment { name } => {
                let patch = json!({"spec": {"terminate": true}});
                ignore_not_found(
                    self.experiments()
                        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
                        .await,
                )
                .map_err(Self::kube_err(format!("terminating Experiment {name}")))
            }
            Action::RecordEvent(event) => {
                self.record(event).await;
                Ok(())
            }
        }
    }

    fn experiments(&self) -> Api<Experiment> {
        Api::namespaced(self.client.clone(), &self.namespace())
    }

    /// The stable revision's ReplicaSet, read whole: the watch cache keeps no pod spec, and an
    /// experiment's `specRef: stable` template is that pod spec.
    async fn stable_replica_set(&self, hash: &str) -> Result<ReplicaSet, ActError> {
        let name = crate::rollout::replicasets::replica_set_name(&self.rollout.name_any(), hash);
        self.replica_sets()
            .get(&name)
            .await
            .map_err(Self::kube_err(format!(
                "reading the stable ReplicaSet {name}"
            )))
    }

    fn replica_sets(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.client.clone(), &self.namespace())
    }

    /// Evicts (rather than deletes) so that PodDisruptionBudgets are honoured, as Argo does. A pod
    /// already gone is fine; one a budget protects now (429) is left for a later reconcile, which
    /// plans the restart again.
    async fn evict_pod(&self, name: &str) -> Result<(), ActError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace());
        match pods.evict(name, &EvictParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 429 => {
                tracing::info!(pod = name, reason = %status.message, "eviction refused for now");
                Ok(())
            }
            Err(source) => Err(ActError::Kube {
                action: format!("evicting Pod {name}"),
                source,
            }),
        }
    }

    fn analysis_runs(&self) -> Api<AnalysisRun> {
        Api::namespaced(self.client.clone(), &self.namespace())
    }

    async fn create_replica_set(
        &self,
        hash: &str,
        revision: i64,
        replicas: i32,
        born_with: BornWith<'_>,
    ) -> Result<(), ActError> {
        let mut rs = new_replica_set(self.rollout, self.template, hash, revision, replicas)?;
        let serde_err = |what: &str| {
            let action = format!("recording the {what} of the ReplicaSet of {hash}");
            move |e| ActError::Kube {
                action,
                source: kube::Error::SerdeError(e),
            }
        };
        if let Some(metadata) = born_with.ephemeral_metadata {
            inject(&mut rs, metadata).map_err(serde_err("ephemeral metadata"))?;
        }
        if let Some(injected) = born_with.anti_affinity {
            let record = serde_json::to_string(injected).map_err(serde_err("anti-affinity"))?;
            rs.annotations_mut()
                .insert(ANTI_AFFINITY_ANNOTATION.to_string(), record);
            if let Some(template) = rs.spec.as_mut().and_then(|s| s.template.as_mut()) {
                anti_affinity::inject(template, injected, &self.namespace());
            }
        }
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PostParams::default()
        };
        ignore_already_exists(self.replica_sets().create(&params, &rs).await)
            .map_err(Self::kube_err(format!("creating the ReplicaSet of {hash}")))
    }

    /// The pod template's affinity is replaced whole (the template's own plus `injected`) in the
    /// same patch as the record of what was injected.
    async fn set_anti_affinity(
        &self,
        name: &str,
        injected: Option<&InjectedAntiAffinity>,
    ) -> Result<(), ActError> {
        let action = || format!("setting the anti-affinity of ReplicaSet {name}");
        let own = self
            .template
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref());
        let affinity = anti_affinity::affinity_with(own, injected, &self.namespace());
        let affinity =
            anti_affinity::affinity_merge_patch(affinity.as_ref()).map_err(|e| ActError::Kube {
                action: action(),
                source: kube::Error::SerdeError(e),
            })?;
        let record = injected
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| ActError::Kube {
                action: action(),
                source: kube::Error::SerdeError(e),
            })?;
        let patch = json!({
            "metadata": {"annotations": {ANTI_AFFINITY_ANNOTATION: record}},
            "spec": {"template": {"spec": {"affinity": affinity}}}
        });
        self.replica_sets()
            .patch(name, &Self::patch_params(), &Patch::Merge(patch))
            .await
            .map(drop)
            .map_err(Self::kube_err(action()))
    }

    /// The ReplicaSet first, then its pods (as Argo): a pod created in between is born with the
    /// new metadata.
    async fn set_template_metadata(
        &self,
        name: &str,
        change: &TemplateMetadataChange,
    ) -> Result<(), ActError> {
        let action = || format!("setting the ephemeral pod metadata of ReplicaSet {name}");
        let record = change
            .record
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| ActError::Kube {
                action: action(),
                source: kube::Error::SerdeError(e),
            })?;
        let patch = json!({
            "metadata": {"annotations": {
                EPHEMERAL_METADATA_ANNOTATION: record,
                // One record: Sluice's replaces the one of a ReplicaSet adopted from Argo.
                ARGO_EPHEMERAL_METADATA_ANNOTATION: Value::Null,
            }},
            "spec": {"template": {"metadata": change.patch.to_merge_patch()}}
        });
        self.replica_sets()
            .patch(name, &Self::patch_params(), &Patch::Merge(patch))
            .await
            .map(drop)
            .map_err(Self::kube_err(action()))
    }

    /// Pods are patched in place, a few at a time; a pod already gone is fine.
    async fn set_pods_metadata(&self, changes: &[PodMetadataChange]) -> Result<(), ActError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace());
        // Owned patches: the futures must not borrow from the plan (the controller's stream needs
        // them valid for any lifetime).
        let patches: Vec<(String, Value)> = changes
            .iter()
            .map(|c| (c.pod.clone(), json!({"metadata": c.patch.to_merge_patch()})))
            .collect();
        let results: Vec<Result<(), ActError>> = futures::stream::iter(patches)
            .map(|(pod, patch)| {
                let pods = pods.clone();
                async move {
                    ignore_not_found(
                        pods.patch(&pod, &Self::patch_params(), &Patch::Merge(patch))
                            .await,
                    )
                    .map_err(Self::kube_err(format!(
                        "setting the ephemeral metadata of Pod {pod}"
                    )))
                }
            })
            .buffer_unordered(POD_PATCH_CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect()
    }

    fn patch_params() -> PatchParams {
        PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        }
    }

    async fn scale_replica_set(&self, name: &str, replicas: i32) -> Result<(), ActError> {
        let body = json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name},
            "spec": {"replicas": replicas}
        });
        self.replica_sets()
            .patch(name, &Self::apply_params(), &Patch::Apply(body))
            .await
            .map(drop)
            .map_err(Self::kube_err(format!(
                "scaling ReplicaSet {name} to {replicas}"
            )))
    }

    /// The Deployment a workloadRef names is scaled per its `scaleDown`; the engine owns its
    /// `spec.replicas` from then on (G15), the rest stays Git's.
    async fn scale_workload(&self, name: &str, replicas: i32) -> Result<(), ActError> {
        let body = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {"replicas": replicas}
        });
        Api::<Deployment>::namespaced(self.client.clone(), &self.namespace())
            .patch(name, &Self::apply_params(), &Patch::Apply(body))
            .await
            .map(drop)
            .map_err(Self::kube_err(format!(
                "scaling Deployment {name} to {replicas}"
            )))
    }

    /// A Service's `spec.selector` is an atomic map: an apply replaces it whole. So the live
    /// selector is written back with the hash key set, keeping the keys Git declares (the GitOps
    /// apply carries the hash over in turn, docs/behaviour.md G15).
    async fn set_service_selector(&self, service: &str, hash: &str) -> Result<(), ActError> {
        let api = Api::<Service>::namespaced(self.client.clone(), &self.namespace());
        let live = api
            .get(service)
            .await
            .map_err(Self::kube_err(format!("reading Service {service}")))?;
        let mut selector = live.spec.and_then(|s| s.selector).unwrap_or_default();
        selector.insert(POD_TEMPLATE_HASH_LABEL.to_string(), hash.to_string());
        let body = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": service},
            "spec": {"selector": selector}
        });
        api.patch(service, &Self::apply_params(), &Patch::Apply(body))
            .await
            .map(drop)
            .map_err(Self::kube_err(format!(
                "pointing Service {service} at {hash}"
            )))
    }

    /// The router is built from the Rollout with the planned status: a router that labels
    /// revisions (Istio's DestinationRule subsets) takes the canary and stable hashes from it.
    async fn set_canary_weight(
        &self,
        weight: i32,
        planned: &RolloutStatus,
    ) -> Result<(), ActError> {
        let promoted = fully_promoted(planned);
        let mut rollout = self.rollout.clone();
        rollout.status = Some(planned.clone());
        let router = router_for(&rollout)?;
        let live = read_live(self.client, router.as_ref()).await?;
        let writes = if weight == 0 && promoted {
            router.after_promotion(&live)?
        } else {
            router.desired(&live, weight)?
        };
        for write in writes {
            self.write_traffic(write).await?;
        }
        Ok(())
    }

    /// Reads the router's objects afresh, after any write of an earlier action: a write based on
    /// stale objects would fail on their `resourceVersion`.
    async fn set_managed_routes(&self, routes: &[ActiveRoute]) -> Result<(), ActError> {
        let router = router_for(self.rollout)?;
        let live = read_live(self.client, router.as_ref()).await?;
        for write in router.managed_routes(&live, routes)? {
            self.write_traffic(write).await?;
        }
        Ok(())
    }

    fn dynamic_api(&self, key: &ObjectKey) -> Api<DynamicObject> {
        dynamic_api(self.client, key)
    }

    async fn write_traffic(&self, write: TrafficWrite) -> Result<(), ActError> {
        match write {
            TrafficWrite::Apply { key, body } => self
                .dynamic_api(&key)
                .patch(&key.name, &Self::apply_params(), &Patch::Apply(body))
                .await
                .map(drop)
                .map_err(Self::kube_err(format!("writing {key}"))),
            TrafficWrite::Delete { key } => ignore_not_found(
                self.dynamic_api(&key)
                    .delete(&key.name, &DeleteParams::default())
                    .await,
            )
            .map_err(Self::kube_err(format!("deleting {key}"))),
        }
    }

    async fn record(&self, event: &Event) {
        let reference: ObjectReference = self.rollout.object_ref(&());
        let kube_event = KubeEvent {
            type_: match event.type_ {
                EventType::Normal => KubeEventType::Normal,
                EventType::Warning => KubeEventType::Warning,
            },
            reason: event.reason.as_str().to_string(),
            note: Some(event.message.clone()),
            action: event.reason.as_str().to_string(),
            secondary: None,
        };
        // Events are informative; failing to record one must not stop the rollout.
        if let Err(e) = self.recorder.publish(&kube_event, &reference).await {
            tracing::warn!(error = %e, reason = event.reason.as_str(), "cannot record event");
        }
    }

    /// Writes the planned status when it differs, with the observed `resourceVersion`: a user's
    /// control action (abort, promote) written meanwhile makes this fail with a conflict instead of
    /// being overwritten, and the next reconcile plans with it.
    async fn write_status(&self, plan: &Plan) -> Result<(), ActError> {
        if self.rollout.status.as_ref() == Some(&plan.status) {
            return Ok(());
        }
        let mut updated = self.rollout.clone();
        updated.status = Some(plan.status.clone());
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PostParams::default()
        };
        let api: Api<Rollout> = Api::namespaced(self.client.clone(), &self.namespace());
        match api
            .replace_status(&self.rollout.name_any(), &params, &updated)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => Err(ActError::StatusConflict),
            Err(source) => Err(ActError::Kube {
                action: "writing the Rollout status".to_string(),
                source,
            }),
        }
    }
}

fn dynamic_api(client: &Client, key: &ObjectKey) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        &key.namespace,
        &ApiResource::from_gvk(&key.gvk()),
    )
}

/// The objects `router` reads, as they are now (a missing one is absent from the map).
pub async fn read_live(
    client: &Client,
    router: &dyn TrafficRouter,
) -> Result<LiveObjects, ActError> {
    let mut live = LiveObjects::new();
    for key in router.reads() {
        let action = || format!("reading {key}");
        let object = dynamic_api(client, &key)
            .get_opt(&key.name)
            .await
            .map_err(|source| ActError::Kube {
                action: action(),
                source,
            })?;
        if let Some(object) = object {
            let json = serde_json::to_value(object).map_err(|e| ActError::Kube {
                action: action(),
                source: kube::Error::SerdeError(e),
            })?;
            live.insert(key, json);
        }
    }
    Ok(live)
}

fn ignore_not_found<T>(result: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

fn ignore_already_exists<T>(result: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// The canary is the stable: no router needs a canary object any more.
fn fully_promoted(status: &RolloutStatus) -> bool {
    let stable = status.stable_rs.as_deref();
    stable.is_some() && stable == status.current_pod_hash.as_deref()
}
