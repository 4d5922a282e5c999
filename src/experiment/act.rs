//! The act step of the Experiment controller: applies a [`Plan`]'s actions, writes the status,
//! then records Events and creates AnalysisRuns (after the status names them, as the Rollout
//! engine does, so a reconcile planned from a stale cache fails on the status conflict instead of
//! acting twice). Every write is idempotent.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{
    ObjectReference, PodTemplateSpec, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::{Value, json};
use thiserror::Error;

use crate::api::analysis::{AnalysisRun, AnalysisRunSpec};
use crate::api::experiment::{
    EXPERIMENT_NAME_ANNOTATION, Experiment, ExperimentTemplate, TEMPLATE_NAME_ANNOTATION,
};
use crate::api::rollout::POD_TEMPLATE_HASH_LABEL;
use crate::experiment::plan::{Action, Plan, run_labels};
use crate::experiment::{EXPERIMENT_LABEL, FIELD_MANAGER, experiment_label_value};
use crate::rollout::replicasets::{SCALE_DOWN_DEADLINE_ANNOTATION, scale_down_deadline_annotation};

#[derive(Debug, Error)]
pub enum ActError {
    #[error("{action} failed: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("experiment {0} has no uid yet; cannot own what it creates")]
    NoOwner(String),
    #[error("experiment has no template {0}")]
    NoTemplate(String),
    #[error("the status write conflicted with a concurrent change; planning again")]
    StatusConflict,
}

/// What the act step needs besides the plan.
pub struct Actor<'a> {
    pub client: &'a Client,
    pub recorder: &'a Recorder,
    pub experiment: &'a Experiment,
}

impl Actor<'_> {
    fn namespace(&self) -> String {
        self.experiment.namespace().unwrap_or_default()
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace())
    }

    fn kube_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> ActError {
        let action = action.into();
        move |source| ActError::Kube { action, source }
    }

    fn params() -> PatchParams {
        PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        }
    }

    /// Applies the plan: cluster changes, the status, then Events and AnalysisRun creates.
    pub async fn apply(&self, plan: &Plan) -> Result<(), ActError> {
        let after_status = |a: &&Action| {
            matches!(
                a,
                Action::CreateAnalysisRun { .. } | Action::RecordEvent { .. }
            )
        };
        for action in plan.actions.iter().filter(|a| !after_status(a)) {
            self.apply_action(action).await?;
        }
        self.write_status(plan).await?;
        for action in plan.actions.iter().filter(after_status) {
            self.apply_action(action).await?;
        }
        Ok(())
    }

    async fn apply_action(&self, action: &Action) -> Result<(), ActError> {
        match action {
            Action::CreateReplicaSet {
                template,
                name,
                hash,
                replicas,
            } => {
                let rs = self.replica_set(template, name, hash, *replicas)?;
                let params = PostParams {
                    field_manager: Some(FIELD_MANAGER.to_string()),
                    ..PostParams::default()
                };
                ignore(self.api::<ReplicaSet>().create(&params, &rs).await, 409)
                    .map_err(Self::kube_err(format!("creating ReplicaSet {name}")))
            }
            Action::ScaleReplicaSet { name, replicas } => {
                let patch = json!({"spec": {"replicas": replicas}});
                self.merge::<ReplicaSet>(name, patch, "scaling ReplicaSet")
                    .await
            }
            Action::SetScaleDownDeadline { name, at } => {
                let value = at.map(|t| Value::String(scale_down_deadline_annotation(t).1));
                let patch =
                    json!({"metadata": {"annotations": {SCALE_DOWN_DEADLINE_ANNOTATION: value}}});
                self.merge::<ReplicaSet>(name, patch, "annotating ReplicaSet")
                    .await
            }
            Action::CreateAnalysisRun { name, spec, .. } => {
                let run = self.analysis_run(name, spec)?;
                ignore(
                    self.api::<AnalysisRun>()
                        .create(&PostParams::default(), &run)
                        .await,
                    409,
                )
                .map_err(Self::kube_err(format!("creating AnalysisRun {name}")))
            }
            Action::TerminateAnalysisRun { name } => {
                let patch = json!({"spec": {"terminate": true}});
                self.merge::<AnalysisRun>(name, patch, "terminating AnalysisRun")
                    .await
            }
            Action::CreateService {
                template,
                name,
                hash,
            } => {
                let service = self.service(template, name, hash)?;
                let params = PostParams {
                    field_manager: Some(FIELD_MANAGER.to_string()),
                    ..PostParams::default()
                };
                ignore(self.api::<Service>().create(&params, &service).await, 409)
                    .map_err(Self::kube_err(format!("creating Service {name}")))
            }
            Action::DeleteService { name } => ignore(
                self.api::<Service>()
                    .delete(name, &DeleteParams::default())
                    .await,
                404,
            )
            .map_err(Self::kube_err(format!("deleting Service {name}"))),
            Action::RecordEvent {
                warning,
                reason,
                message,
            } => {
                self.record(*warning, reason, message).await;
                Ok(())
            }
        }
    }

    async fn merge<K>(&self, name: &str, patch: Value, what: &str) -> Result<(), ActError>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        ignore(
            self.api::<K>()
                .patch(name, &Self::params(), &Patch::Merge(patch))
                .await,
            404,
        )
        .map_err(Self::kube_err(format!("{what} {name}")))
    }

    fn owner(&self) -> Result<OwnerReference, ActError> {
        let mut owner = self
            .experiment
            .controller_owner_ref(&())
            .ok_or_else(|| ActError::NoOwner(self.experiment.name_any()))?;
        owner.block_owner_deletion = Some(true);
        Ok(owner)
    }

    /// A template's ReplicaSet (Argo's `newReplicaSetFromTemplate`): the hash label on it, its
    /// selector and its pods; the annotations naming the Experiment and the template.
    fn replica_set(
        &self,
        template: &str,
        name: &str,
        hash: &str,
        replicas: i32,
    ) -> Result<ReplicaSet, ActError> {
        let spec = self.template(template)?;
        let mut pods: PodTemplateSpec = spec.template.clone();
        let labels = pods
            .metadata
            .get_or_insert_with(ObjectMeta::default)
            .labels
            .get_or_insert_with(BTreeMap::new);
        labels.insert(POD_TEMPLATE_HASH_LABEL.to_string(), hash.to_string());
        let labels = labels.clone();
        let mut selector: LabelSelector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH_LABEL.to_string(), hash.to_string());
        // The ReplicaSet's own labels (not its pods'): what the controller's watch selects by.
        let mut own_labels = labels;
        own_labels.insert(
            EXPERIMENT_LABEL.to_string(),
            experiment_label_value(&self.experiment.name_any()),
        );
        Ok(ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: self.experiment.namespace(),
                labels: Some(own_labels),
                annotations: Some(self.template_annotations(template)),
                owner_references: Some(vec![self.owner()?]),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(pods),
            }),
            status: None,
        })
    }

    /// A template's Service (Argo's `CreateService`): selecting the ReplicaSet's labels (the hash
    /// included), one port per container port.
    fn service(&self, template: &str, name: &str, hash: &str) -> Result<Service, ActError> {
        let spec = self.template(template)?;
        let mut selector = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        selector.insert(POD_TEMPLATE_HASH_LABEL.to_string(), hash.to_string());
        let ports: Vec<ServicePort> = spec
            .template
            .spec
            .iter()
            .flat_map(|s| &s.containers)
            .flat_map(|c| c.ports.iter().flatten())
            .map(|p| ServicePort {
                name: p.name.clone(),
                protocol: p.protocol.clone(),
                port: p.container_port,
                target_port: Some(IntOrString::Int(p.container_port)),
                ..ServicePort::default()
            })
            .collect();
        Ok(Service {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: self.experiment.namespace(),
                labels: Some(BTreeMap::from([(
                    EXPERIMENT_LABEL.to_string(),
                    experiment_label_value(&self.experiment.name_any()),
                )])),
                annotations: Some(self.template_annotations(template)),
                owner_references: Some(vec![self.owner()?]),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(selector),
                ports: Some(ports),
                ..ServiceSpec::default()
            }),
            status: None,
        })
    }

    fn template(&self, template: &str) -> Result<&ExperimentTemplate, ActError> {
        self.experiment
            .spec
            .templates
            .iter()
            .find(|t| t.name == template)
            .ok_or_else(|| ActError::NoTemplate(template.to_string()))
    }

    /// Argo's annotations naming the Experiment and the template.
    fn template_annotations(&self, template: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                EXPERIMENT_NAME_ANNOTATION.to_string(),
                self.experiment.name_any(),
            ),
            (TEMPLATE_NAME_ANNOTATION.to_string(), template.to_string()),
        ])
    }

    fn analysis_run(&self, name: &str, spec: &AnalysisRunSpec) -> Result<AnalysisRun, ActError> {
        let experiment = self.experiment.name_any();
        let mut labels = run_labels(&self.experiment.spec);
        labels.insert(
            EXPERIMENT_LABEL.to_string(),
            experiment_label_value(&experiment),
        );
        let annotations = self
            .experiment
            .spec
            .analysis_run_metadata
            .as_ref()
            .map(|m| m.annotations.clone())
            .filter(|a| !a.is_empty());
        Ok(AnalysisRun {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: self.experiment.namespace(),
                labels: Some(labels),
                annotations,
                owner_references: Some(vec![self.owner()?]),
                ..ObjectMeta::default()
            },
            spec: spec.clone(),
            status: None,
        })
    }

    async fn record(&self, warning: bool, reason: &str, message: &str) {
        let reference: ObjectReference = self.experiment.object_ref(&());
        let event = KubeEvent {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(message.to_string()),
            action: reason.to_string(),
            secondary: None,
        };
        // Events are informative; failing to record one must not stop the experiment.
        if let Err(e) = self.recorder.publish(&event, &reference).await {
            tracing::warn!(error = %e, reason, "cannot record event");
        }
    }

    /// Writes the planned status when it differs, with the observed `resourceVersion`, so a
    /// concurrent change (a user's terminate) makes it conflict rather than be overwritten.
    async fn write_status(&self, plan: &Plan) -> Result<(), ActError> {
        if self.experiment.status.as_ref() == Some(&plan.status) {
            return Ok(());
        }
        let mut updated = self.experiment.clone();
        updated.status = Some(plan.status.clone());
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PostParams::default()
        };
        match self
            .api::<Experiment>()
            .replace_status(&self.experiment.name_any(), &params, &updated)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => Err(ActError::StatusConflict),
            Err(source) => Err(ActError::Kube {
                action: "writing the Experiment status".to_string(),
                source,
            }),
        }
    }
}

/// `result` with the API error `code` (404 Not Found, 409 Already Exists) taken as success.
fn ignore<T>(result: Result<T, kube::Error>, code: u16) -> Result<(), kube::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == code => Ok(()),
        Err(e) => Err(e),
    }
}
