//! Pure builders and readers of the ReplicaSets a Rollout owns: one per revision, named
//! `<rollout>-<hash>` and labelled with [`POD_TEMPLATE_HASH_LABEL`].
//!
//! Everything here is a function of its arguments (no client, no clock), so the planner and its
//! tests can use it directly; the act step applies what [`new_replica_set`] builds.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use thiserror::Error;

use crate::api::rollout::{POD_TEMPLATE_HASH_LABEL, Rollout};

pub use crate::api::keys::{
    ARGO_ROLLOUT_REVISION_ANNOTATION, GIT_REVISION_ANNOTATION, ROLLOUT_REVISION_ANNOTATION,
};
/// When a ReplicaSet kept for `scaleDownDelaySeconds` may be scaled to 0 (RFC 3339, UTC).
pub const SCALE_DOWN_DEADLINE_ANNOTATION: &str = "rollout.sluice.dev/scale-down-deadline";
use crate::api::keys::APPLICATION_ANNOTATION;

/// Why a ReplicaSet could not be built or one of its annotations could not be read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ReplicaSetError {
    /// The Rollout has no name or uid (it was not read from the API server), so no
    /// ownerReference can be made and the garbage collector could never remove the ReplicaSet.
    #[error(
        "Rollout {namespace}/{name} has no metadata.name or metadata.uid; its ReplicaSets need both for their ownerReference"
    )]
    NoOwnerIdentity {
        /// The Rollout's namespace, or empty.
        namespace: String,
        /// The Rollout's name, or empty.
        name: String,
    },
    /// An annotation holds a value that does not parse.
    #[error("ReplicaSet {replica_set}: annotation {annotation} is {value:?}: {reason}")]
    InvalidAnnotation {
        /// The ReplicaSet's name.
        replica_set: String,
        /// The annotation key.
        annotation: String,
        /// The value found.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// The Rollout has no `spec.workloadRef`.
    #[error("Rollout {rollout} has no spec.workloadRef")]
    NoWorkloadRef {
        /// The Rollout's name.
        rollout: String,
    },
    /// `spec.workloadRef` names something other than an `apps/v1` Deployment.
    #[error(
        "Rollout {rollout}: spec.workloadRef is {api_version} {kind}; only apps/v1 Deployment is supported"
    )]
    UnsupportedWorkload {
        /// The Rollout's name.
        rollout: String,
        /// `workloadRef.apiVersion`.
        api_version: String,
        /// `workloadRef.kind`.
        kind: String,
    },
    /// The Deployment given is not the one `spec.workloadRef` names.
    #[error("Rollout {rollout}: spec.workloadRef names Deployment {expected}, got {actual}")]
    WrongWorkload {
        /// The Rollout's name.
        rollout: String,
        /// `workloadRef.name`.
        expected: String,
        /// The Deployment's name.
        actual: String,
    },
    /// The Deployment has no `spec` (so no pod template).
    #[error("Deployment {deployment} has no spec, so no pod template to run")]
    NoDeploymentSpec {
        /// The Deployment's name.
        deployment: String,
    },
}

/// The name of the ReplicaSet of a revision: `<rollout>-<hash>`, as Argo names them.
pub fn replica_set_name(rollout_name: &str, hash: &str) -> String {
    format!("{rollout_name}-{hash}")
}

/// The ReplicaSet of one revision of `rollout`, running `template` with `replicas` pods.
///
/// The hash label is added to the ReplicaSet's labels, its selector and its pod labels, so
/// revisions never select each other's pods. The selector is `spec.selector`; when that is unset
/// (allowed with `workloadRef`) it is the template's labels, which the pods carry by construction.
/// The ownerReference makes the Rollout the controller, so deleting the Rollout deletes its
/// ReplicaSets (kube-controller-manager's garbage collector).
pub fn new_replica_set(
    rollout: &Rollout,
    template: &PodTemplateSpec,
    hash: &str,
    revision: i64,
    replicas: i32,
) -> Result<ReplicaSet, ReplicaSetError> {
    let owner = controller_owner_ref(rollout)?;
    let pod_template = with_hash_label(template, hash);
    let labels = pod_template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    Ok(ReplicaSet {
        metadata: ObjectMeta {
            name: Some(replica_set_name(&rollout.name_any(), hash)),
            namespace: rollout.namespace(),
            labels: Some(labels),
            annotations: Some(replica_set_annotations(rollout, revision)),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: rollout.spec.min_ready_seconds,
            selector: selector_with_hash(rollout, template, hash),
            template: Some(pod_template),
        }),
        status: None,
    })
}

/// A controller ownerReference to the Rollout, for everything the Rollout creates, with
/// `blockOwnerDeletion` so a foreground deletion of the Rollout waits for its dependents (as the
/// Deployment controller does for its ReplicaSets). `None` when the Rollout has no name or uid.
pub fn rollout_owner_reference(rollout: &Rollout) -> Option<OwnerReference> {
    let mut owner = rollout.controller_owner_ref(&())?;
    owner.block_owner_deletion = Some(true);
    Some(owner)
}

fn controller_owner_ref(rollout: &Rollout) -> Result<OwnerReference, ReplicaSetError> {
    rollout_owner_reference(rollout).ok_or_else(|| ReplicaSetError::NoOwnerIdentity {
        namespace: rollout.namespace().unwrap_or_default(),
        name: rollout.metadata.name.clone().unwrap_or_default(),
    })
}

fn with_hash_label(template: &PodTemplateSpec, hash: &str) -> PodTemplateSpec {
    let mut template = template.clone();
    template
        .metadata
        .get_or_insert_with(ObjectMeta::default)
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH_LABEL.to_string(), hash.to_string());
    template
}

fn selector_with_hash(rollout: &Rollout, template: &PodTemplateSpec, hash: &str) -> LabelSelector {
    let mut selector = rollout.spec.selector.clone().unwrap_or_else(|| {
        let mut labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.remove(POD_TEMPLATE_HASH_LABEL);
        LabelSelector {
            match_labels: Some(labels),
            match_expressions: None,
        }
    });
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH_LABEL.to_string(), hash.to_string());
    selector
}

/// Revision annotations, plus the Git provenance of the Rollout (DESIGN "The hand-off"): the
/// engine records per revision the commit that introduced it, and the ReplicaSet keeps it too so
/// that it survives a lost status.
fn replica_set_annotations(rollout: &Rollout, revision: i64) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::from([
        (
            ROLLOUT_REVISION_ANNOTATION.to_string(),
            revision.to_string(),
        ),
        (
            ARGO_ROLLOUT_REVISION_ANNOTATION.to_string(),
            revision.to_string(),
        ),
    ]);
    for key in [GIT_REVISION_ANNOTATION, APPLICATION_ANNOTATION] {
        if let Some(value) = rollout_provenance(rollout, key) {
            annotations.insert(key.to_string(), value.to_string());
        }
    }
    annotations
}

/// A provenance key of the Rollout: its annotation, else its label (`<ns>/<name>` does not fit
/// a label value, so the GitOps core may write either).
fn rollout_provenance<'a>(rollout: &'a Rollout, key: &str) -> Option<&'a str> {
    let meta = &rollout.metadata;
    [meta.annotations.as_ref(), meta.labels.as_ref()]
        .into_iter()
        .flatten()
        .find_map(|map| map.get(key))
        .map(String::as_str)
}

// ---------------------------------------------------------------------------------------------
// Reading back
// ---------------------------------------------------------------------------------------------

/// The ReplicaSet's `rollouts-pod-template-hash` label.
pub fn replica_set_hash(rs: &ReplicaSet) -> Option<&str> {
    rs.metadata
        .labels
        .as_ref()?
        .get(POD_TEMPLATE_HASH_LABEL)
        .map(String::as_str)
}

/// The ReplicaSet's revision number: Sluice's annotation, else Argo's (a ReplicaSet adopted from
/// Argo Rollouts keeps its revision). `None` when neither is a number.
pub fn replica_set_revision(rs: &ReplicaSet) -> Option<i64> {
    let annotations = rs.metadata.annotations.as_ref()?;
    [
        ROLLOUT_REVISION_ANNOTATION,
        ARGO_ROLLOUT_REVISION_ANNOTATION,
    ]
    .iter()
    .find_map(|key| annotations.get(*key)?.trim().parse().ok())
}

/// The Git provenance recorded on a ReplicaSet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GitProvenance {
    /// `sluice.dev/revision`: the commit sha.
    pub revision: Option<String>,
    /// `sluice.dev/application`: the Application that applied it.
    pub application: Option<String>,
}

/// The `sluice.dev/revision` and `sluice.dev/application` annotations of a ReplicaSet.
pub fn git_provenance(rs: &ReplicaSet) -> GitProvenance {
    let get = |key: &str| {
        rs.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key).cloned())
    };
    GitProvenance {
        revision: get(GIT_REVISION_ANNOTATION),
        application: get(APPLICATION_ANNOTATION),
    }
}

/// Pod counts of a ReplicaSet. Absent fields are 0, except `desired`, which defaults to 1 as
/// the API server does for `spec.replicas`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicaCounts {
    /// `spec.replicas`.
    pub desired: i32,
    /// `status.replicas`: pods created and not terminated.
    pub current: i32,
    /// `status.readyReplicas`.
    pub ready: i32,
    /// `status.availableReplicas`: ready for at least `minReadySeconds`.
    pub available: i32,
}

/// The ReplicaSet's pod counts.
pub fn replica_counts(rs: &ReplicaSet) -> ReplicaCounts {
    let status = rs.status.as_ref();
    ReplicaCounts {
        desired: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        current: status.map_or(0, |s| s.replicas),
        ready: status.and_then(|s| s.ready_replicas).unwrap_or(0),
        available: status.and_then(|s| s.available_replicas).unwrap_or(0),
    }
}

/// `status.readyReplicas`, 0 when unset.
pub fn ready_replicas(rs: &ReplicaSet) -> i32 {
    replica_counts(rs).ready
}

/// `status.availableReplicas`, 0 when unset.
pub fn available_replicas(rs: &ReplicaSet) -> i32 {
    replica_counts(rs).available
}

/// The scale-down deadline of a ReplicaSet, `None` when it has none. A malformed value is an
/// error rather than "no deadline", so it is reported instead of keeping pods forever.
pub fn scale_down_deadline(rs: &ReplicaSet) -> Result<Option<Timestamp>, ReplicaSetError> {
    let Some(value) = rs
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SCALE_DOWN_DEADLINE_ANNOTATION))
    else {
        return Ok(None);
    };
    value
        .parse::<Timestamp>()
        .map(Some)
        .map_err(|e| ReplicaSetError::InvalidAnnotation {
            replica_set: rs.name_any(),
            annotation: SCALE_DOWN_DEADLINE_ANNOTATION.to_string(),
            value: value.clone(),
            reason: e.to_string(),
        })
}

/// The annotation that sets a scale-down deadline: key and RFC 3339 value in UTC, whole seconds
/// (sub-second precision would only make the annotation noisier).
pub fn scale_down_deadline_annotation(deadline: Timestamp) -> (&'static str, String) {
    (
        SCALE_DOWN_DEADLINE_ANNOTATION,
        deadline.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

/// Whether the ReplicaSet's controller ownerReference is this Rollout (by uid, so a Rollout
/// deleted and re-created under the same name does not adopt its predecessor's ReplicaSets).
pub fn is_owned_by(rs: &ReplicaSet, rollout: &Rollout) -> bool {
    let Some(uid) = rollout.metadata.uid.as_deref() else {
        return false;
    };
    rs.owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

// ---------------------------------------------------------------------------------------------
// workloadRef
// ---------------------------------------------------------------------------------------------

/// What a Rollout with `spec.workloadRef` runs: the Deployment's pod template and the selector.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadTemplate {
    /// The Deployment's `spec.template`.
    pub template: PodTemplateSpec,
    /// The Rollout's `spec.selector`, else the Deployment's.
    pub selector: LabelSelector,
}

/// The template (and selector) to use for a Rollout whose `spec.workloadRef` names `deployment`.
pub fn workload_template(
    rollout: &Rollout,
    deployment: &Deployment,
) -> Result<WorkloadTemplate, ReplicaSetError> {
    let name = rollout.name_any();
    let workload =
        rollout
            .spec
            .workload_ref
            .as_ref()
            .ok_or_else(|| ReplicaSetError::NoWorkloadRef {
                rollout: name.clone(),
            })?;
    if workload.api_version != "apps/v1" || workload.kind != "Deployment" {
        return Err(ReplicaSetError::UnsupportedWorkload {
            rollout: name,
            api_version: workload.api_version.clone(),
            kind: workload.kind.clone(),
        });
    }
    if deployment.name_any() != workload.name {
        return Err(ReplicaSetError::WrongWorkload {
            rollout: name,
            expected: workload.name.clone(),
            actual: deployment.name_any(),
        });
    }
    let spec = deployment
        .spec
        .as_ref()
        .ok_or_else(|| ReplicaSetError::NoDeploymentSpec {
            deployment: deployment.name_any(),
        })?;
    Ok(WorkloadTemplate {
        template: spec.template.clone(),
        selector: rollout
            .spec
            .selector
            .clone()
            .unwrap_or_else(|| spec.selector.clone()),
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::ReplicaSetStatus;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    use super::*;

    fn rollout() -> Rollout {
        let mut r: Rollout = serde_saphyr::from_str(include_str!(
            "../../tests/fixtures/rollout/canary-gatewayapi.yaml"
        ))
        .unwrap();
        r.metadata.uid = Some("uid-1".into());
        r.spec.min_ready_seconds = Some(5);
        r.metadata.annotations =
            Some([(GIT_REVISION_ANNOTATION.to_string(), "a".repeat(40))].into());
        r
    }

    fn template(r: &Rollout) -> PodTemplateSpec {
        r.spec.template.clone().unwrap()
    }

    fn built() -> ReplicaSet {
        let r = rollout();
        new_replica_set(&r, &template(&r), "6c5b7d9f8", 3, 2).unwrap()
    }

    #[test]
    fn new_replica_set_is_named_labelled_selected_and_owned() {
        let rs = built();
        let json = serde_json::to_value(&rs).unwrap();
        assert_eq!(json["metadata"]["name"], json!("web-6c5b7d9f8"));
        assert_eq!(json["metadata"]["namespace"], json!("shop"));
        let hash = json!("6c5b7d9f8");
        assert_eq!(json["metadata"]["labels"][POD_TEMPLATE_HASH_LABEL], hash);
        assert_eq!(json["metadata"]["labels"]["app"], json!("web"));
        assert_eq!(
            json["spec"]["selector"],
            json!({"matchLabels": {"app": "web", POD_TEMPLATE_HASH_LABEL: "6c5b7d9f8"}})
        );
        assert_eq!(
            json["spec"]["template"]["metadata"]["labels"][POD_TEMPLATE_HASH_LABEL],
            hash
        );
        // The rest of the template is the Rollout's.
        assert_eq!(
            json["spec"]["template"]["spec"]["containers"][0]["image"],
            json!("registry.example.com/web:1.4.0")
        );
        assert_eq!(json["spec"]["replicas"], json!(2));
        assert_eq!(json["spec"]["minReadySeconds"], json!(5));
        let annotations = &json["metadata"]["annotations"];
        assert_eq!(annotations[ROLLOUT_REVISION_ANNOTATION], json!("3"));
        assert_eq!(annotations[ARGO_ROLLOUT_REVISION_ANNOTATION], json!("3"));
        // Provenance: the annotation from the Rollout, the label when no annotation exists.
        assert_eq!(annotations[GIT_REVISION_ANNOTATION], json!("a".repeat(40)));
        assert_eq!(annotations[APPLICATION_ANNOTATION], json!("shop-web"));
        assert_eq!(
            json["metadata"]["ownerReferences"],
            json!([{
                "apiVersion": "sluice.dev/v1alpha1",
                "kind": "Rollout",
                "name": "web",
                "uid": "uid-1",
                "controller": true,
                "blockOwnerDeletion": true,
            }])
        );
        // The hash label did not leak into the Rollout's template.
        let r = rollout();
        assert!(
            !template(&r)
                .metadata
                .unwrap()
                .labels
                .unwrap()
                .contains_key(POD_TEMPLATE_HASH_LABEL)
        );
    }

    #[test]
    fn new_replica_set_without_provenance_or_selector() {
        let mut r = rollout();
        r.metadata.annotations = None;
        r.metadata.labels = None;
        r.spec.selector = None;
        let rs = new_replica_set(&r, &template(&r), "h", 1, 0).unwrap();
        let annotations = rs.metadata.annotations.clone().unwrap();
        assert!(!annotations.contains_key(GIT_REVISION_ANNOTATION));
        assert!(!annotations.contains_key(APPLICATION_ANNOTATION));
        assert_eq!(
            rs.spec.unwrap().selector.match_labels.unwrap(),
            BTreeMap::from([
                ("app".to_string(), "web".to_string()),
                (POD_TEMPLATE_HASH_LABEL.to_string(), "h".to_string()),
            ])
        );
    }

    #[test]
    fn new_replica_set_needs_an_owner_identity() {
        let mut r = rollout();
        r.metadata.uid = None;
        let err = new_replica_set(&r, &template(&r), "h", 1, 1).unwrap_err();
        assert!(matches!(err, ReplicaSetError::NoOwnerIdentity { .. }));
        assert!(err.to_string().contains("shop/web"), "{err}");
    }

    #[test]
    fn reads_hash_revision_and_provenance_back() {
        let rs = built();
        assert_eq!(replica_set_hash(&rs), Some("6c5b7d9f8"));
        assert_eq!(replica_set_revision(&rs), Some(3));
        assert_eq!(
            git_provenance(&rs),
            GitProvenance {
                revision: Some("a".repeat(40)),
                application: Some("shop-web".into()),
            }
        );
        // Adopted from Argo: only Argo's annotation.
        let mut argo = ReplicaSet::default();
        argo.metadata.annotations =
            Some([(ARGO_ROLLOUT_REVISION_ANNOTATION.into(), "7".into())].into());
        assert_eq!(replica_set_revision(&argo), Some(7));
        assert_eq!(replica_set_revision(&ReplicaSet::default()), None);
        assert_eq!(replica_set_hash(&ReplicaSet::default()), None);
        argo.metadata.annotations = Some([(ROLLOUT_REVISION_ANNOTATION.into(), "x".into())].into());
        assert_eq!(replica_set_revision(&argo), None);
        assert_eq!(git_provenance(&argo), GitProvenance::default());
    }

    #[test]
    fn replica_counts_default_like_the_api_server() {
        let mut rs = built();
        assert_eq!(
            replica_counts(&rs),
            ReplicaCounts {
                desired: 2,
                current: 0,
                ready: 0,
                available: 0
            }
        );
        rs.status = Some(ReplicaSetStatus {
            replicas: 2,
            ready_replicas: Some(2),
            available_replicas: Some(1),
            ..Default::default()
        });
        assert_eq!(ready_replicas(&rs), 2);
        assert_eq!(available_replicas(&rs), 1);
        assert_eq!(replica_counts(&ReplicaSet::default()).desired, 1);
    }

    #[test]
    fn scale_down_deadline_round_trips() {
        let mut rs = built();
        assert_eq!(scale_down_deadline(&rs), Ok(None));
        let at: Timestamp = "2025-03-01T10:02:00.750Z".parse().unwrap();
        let (key, value) = scale_down_deadline_annotation(at);
        assert_eq!(value, "2025-03-01T10:02:00Z");
        rs.metadata
            .annotations
            .get_or_insert_default()
            .insert(key.into(), value);
        assert_eq!(
            scale_down_deadline(&rs),
            Ok(Some("2025-03-01T10:02:00Z".parse().unwrap()))
        );
        rs.metadata
            .annotations
            .get_or_insert_default()
            .insert(key.into(), "tomorrow".into());
        let err = scale_down_deadline(&rs).unwrap_err();
        assert!(
            err.to_string()
                .contains("web-6c5b7d9f8: annotation rollout.sluice.dev/scale-down-deadline"),
            "{err}"
        );
    }

    #[test]
    fn ownership_is_by_uid_and_controller() {
        let rs = built();
        let mut r = rollout();
        assert!(is_owned_by(&rs, &r));
        r.metadata.uid = Some("other".into());
        assert!(!is_owned_by(&rs, &r));
        r.metadata.uid = None;
        assert!(!is_owned_by(&rs, &r));
        let mut not_controller = built();
        not_controller.metadata.owner_references.as_mut().unwrap()[0].controller = Some(false);
        assert!(!is_owned_by(&not_controller, &rollout()));
    }

    fn deployment(name: &str) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "selector": {"matchLabels": {"app": "from-deploy"}},
                "template": {
                    "metadata": {"labels": {"app": "from-deploy"}},
                    "spec": {"containers": [{"name": "c", "image": "img:1"}]},
                },
            },
        }))
        .unwrap()
    }

    fn workload_rollout() -> Rollout {
        serde_saphyr::from_str(include_str!(
            "../../tests/fixtures/rollout/workloadref.yaml"
        ))
        .unwrap()
    }

    #[test]
    fn workload_ref_uses_the_deployment_template() {
        let mut r = workload_rollout();
        let got = workload_template(&r, &deployment("web")).unwrap();
        assert_eq!(
            got.template,
            deployment("web").spec.unwrap().template,
            "the Deployment's template as is"
        );
        // The Rollout's selector wins; without one, the Deployment's.
        assert_eq!(got.selector.match_labels.unwrap()["app"], "web".to_string());
        r.spec.selector = None;
        let got = workload_template(&r, &deployment("web")).unwrap();
        assert_eq!(got.selector.match_labels.unwrap()["app"], "from-deploy");
    }

    #[test]
    fn workload_ref_errors() {
        let r = workload_rollout();
        assert!(matches!(
            workload_template(&r, &deployment("other")),
            Err(ReplicaSetError::WrongWorkload { .. })
        ));
        let mut no_spec = deployment("web");
        no_spec.spec = None;
        assert!(matches!(
            workload_template(&r, &no_spec),
            Err(ReplicaSetError::NoDeploymentSpec { .. })
        ));
        let mut sts = r.clone();
        if let Some(w) = sts.spec.workload_ref.as_mut() {
            w.kind = "StatefulSet".into();
        }
        let err = workload_template(&sts, &deployment("web")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Rollout web-workloadref: spec.workloadRef is apps/v1 StatefulSet; only apps/v1 Deployment is supported"
        );
        let mut none = r;
        none.spec.workload_ref = None;
        assert!(matches!(
            workload_template(&none, &deployment("web")),
            Err(ReplicaSetError::NoWorkloadRef { .. })
        ));
    }
}
