//! Ephemeral pod metadata, as Argo Rollouts has it: `canaryMetadata` / `stableMetadata` (canary)
//! and `previewMetadata` / `activeMetadata` (blue-green) are labels and annotations a ReplicaSet's
//! pods carry only while the ReplicaSet plays that role.
//!
//! The role is read from the planned status: the ReplicaSet of the current template is the canary
//! (preview) while `status.stableRS` is another revision, and the stable (active) once it is the
//! stable; the stable ReplicaSet is the stable; every other revision has no role, and loses what
//! was injected. The metadata goes into the ReplicaSet's pod template (so new pods are born with
//! it) and onto its live pods, patched in place. What was injected is recorded in a ReplicaSet
//! annotation, so that a role change (promotion, a new update) or a metadata change in the spec
//! takes exactly those keys off again and leaves the rest of the pods' metadata alone.
//!
//! The pod template hash is computed from the Rollout's template, which never holds these keys, so
//! they never make a new revision.
//!
//! As Argo, an aborted update's revision keeps the canary (preview) metadata while it runs: it is
//! still the revision being rolled out; it loses it when another revision replaces it (a new
//! update, or the revert to the stable template). Beyond Argo: the metadata moves in the reconcile
//! that promotes (Argo: the next one); a spec without any metadata still takes recorded metadata
//! off; a key the Rollout's template sets too goes back to the template's value on the current
//! revision (Argo deletes it); and pods converge on every key the strategy declares, so pods a
//! crash left between the template write and the pod writes are still put right.
//!
//! Everything here is pure: the planner decides, per ReplicaSet, which template keys and which
//! pods differ from what the role wants, and plans nothing when they all match.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Map, Value};
use thiserror::Error;

use crate::api::common::{name_part, qualified_name};
use crate::api::rollout::{POD_TEMPLATE_HASH_LABEL, PodTemplateMetadata, RolloutSpec};
use crate::rollout::action::Action;
use crate::rollout::observed::ObservedReplicaSet;
use crate::rollout::plan::Ctx;

/// The ephemeral metadata injected into a ReplicaSet's pod template (JSON of a
/// `PodTemplateMetadata`).
pub const EPHEMERAL_METADATA_ANNOTATION: &str = "rollout.sluice.dev/ephemeral-metadata";
/// Argo's name for the same record, read on ReplicaSets adopted from Argo Rollouts.
pub const ARGO_EPHEMERAL_METADATA_ANNOTATION: &str = "rollout.argoproj.io/ephemeral-metadata";
/// Kubernetes refuses an object whose annotations take more than this many bytes.
const ANNOTATIONS_SIZE_LIMIT: usize = 256 * 1024;

/// Changes to a labels or annotations map: `Some(value)` sets the key, `None` removes it (as a
/// JSON merge patch does).
pub type KeyChanges = BTreeMap<String, Option<String>>;

/// Changes to the labels and annotations of one object (a pod, or a ReplicaSet's pod template).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetadataPatch {
    pub labels: KeyChanges,
    pub annotations: KeyChanges,
}

impl MetadataPatch {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.annotations.is_empty()
    }

    /// The `metadata` part of a JSON merge patch (`null` removes a key).
    pub fn to_merge_patch(&self) -> Value {
        let mut metadata = Map::new();
        for (field, changes) in [("labels", &self.labels), ("annotations", &self.annotations)] {
            if changes.is_empty() {
                continue;
            }
            let values: Map<String, Value> = changes
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().map_or(Value::Null, Value::String)))
                .collect();
            metadata.insert(field.to_string(), Value::Object(values));
        }
        Value::Object(metadata)
    }

    /// Applies the changes to `labels` and `annotations`.
    pub fn apply(
        &self,
        labels: &mut BTreeMap<String, String>,
        annotations: &mut BTreeMap<String, String>,
    ) {
        for (changes, map) in [(&self.labels, labels), (&self.annotations, annotations)] {
            for (key, value) in changes {
                match value {
                    Some(value) => map.insert(key.clone(), value.clone()),
                    None => map.remove(key),
                };
            }
        }
    }
}

/// A change to a ReplicaSet's pod template: `patch` its metadata and record `record` as what is
/// injected now (`None`: nothing).
#[derive(Clone, Debug, PartialEq)]
pub struct TemplateMetadataChange {
    pub patch: MetadataPatch,
    pub record: Option<PodTemplateMetadata>,
}

/// A change to one live pod's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodMetadataChange {
    pub pod: String,
    pub patch: MetadataPatch,
}

/// The role a ReplicaSet plays, which decides its ephemeral metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The stable revision (`stableMetadata` / `activeMetadata`).
    Stable,
    /// The revision being rolled out while another is stable (`canaryMetadata` /
    /// `previewMetadata`).
    Updating,
    /// Any other revision: no ephemeral metadata.
    Retired,
}

/// The role of the revision `hash`, given the current template's hash and the stable one.
pub fn role_of(hash: &str, new_hash: &str, stable: Option<&str>) -> Role {
    if hash == new_hash {
        if stable.is_none_or(|stable| stable == new_hash) {
            Role::Stable
        } else {
            Role::Updating
        }
    } else if stable == Some(hash) {
        Role::Stable
    } else {
        Role::Retired
    }
}

/// The metadata the strategy declares for `role`; `None` when it declares none (or an empty one).
pub fn declared(spec: &RolloutSpec, role: Role) -> Option<&PodTemplateMetadata> {
    let (updating, stable) = strategy_metadata(spec);
    match role {
        Role::Stable => stable,
        Role::Updating => updating,
        Role::Retired => None,
    }
    .filter(|m| !is_empty(m))
}

/// (canary or preview, stable or active) metadata of the strategy.
fn strategy_metadata(
    spec: &RolloutSpec,
) -> (Option<&PodTemplateMetadata>, Option<&PodTemplateMetadata>) {
    if let Some(canary) = spec.canary() {
        (
            canary.canary_metadata.as_ref(),
            canary.stable_metadata.as_ref(),
        )
    } else if let Some(blue_green) = spec.blue_green() {
        (
            blue_green.preview_metadata.as_ref(),
            blue_green.active_metadata.as_ref(),
        )
    } else {
        (None, None)
    }
}

fn is_empty(metadata: &PodTemplateMetadata) -> bool {
    metadata.labels.is_empty() && metadata.annotations.is_empty()
}

/// Every label and annotation key the strategy declares as ephemeral, for either role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct EphemeralKeys {
    labels: BTreeSet<String>,
    annotations: BTreeSet<String>,
}

impl EphemeralKeys {
    fn add(&mut self, metadata: Option<&PodTemplateMetadata>) {
        if let Some(metadata) = metadata {
            self.labels.extend(metadata.labels.keys().cloned());
            self.annotations
                .extend(metadata.annotations.keys().cloned());
        }
    }
}

/// Plans the ephemeral metadata of every ReplicaSet for the role it plays in the planned status.
/// Runs after the strategy, so a promotion planned in this reconcile moves the metadata at once.
pub(crate) fn plan_pod_metadata(ctx: &mut Ctx<'_>) {
    let spec = ctx.spec();
    let (updating, stable) = strategy_metadata(spec);
    let mut declared_keys = EphemeralKeys::default();
    declared_keys.add(updating);
    declared_keys.add(stable);
    let deleted: Vec<&str> = ctx
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::DeleteReplicaSet { name } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    let stable_hash = ctx.status.stable_rs.as_deref();
    let actions: Vec<Action> = ctx
        .obs
        .replica_sets
        .iter()
        .filter(|rs| !deleted.contains(&rs.name.as_str()))
        .filter_map(|rs| {
            let role = role_of(&rs.pod_template_hash, ctx.new_hash(), stable_hash);
            // The Rollout's own template is known for the current revision only.
            let base = (rs.pod_template_hash == ctx.new_hash())
                .then(|| spec.template.as_ref()?.metadata.as_ref())
                .flatten();
            sync_replica_set(rs, declared(spec, role), &declared_keys, base)
        })
        .collect();
    ctx.actions.extend(actions);
}

/// The metadata the ReplicaSet the planner creates now gets in its pod template: its pods are
/// born with the metadata of its role.
pub(crate) fn for_new_replica_set(ctx: &Ctx<'_>) -> Option<PodTemplateMetadata> {
    let role = role_of(
        ctx.new_hash(),
        ctx.new_hash(),
        ctx.status.stable_rs.as_deref(),
    );
    declared(ctx.spec(), role).cloned()
}

/// The action that brings one ReplicaSet's template and pods to `desired`, `None` when they are
/// there already. `base` is the metadata of the Rollout's template when the ReplicaSet runs it:
/// a key the role no longer wants goes back to the template's own value rather than away.
fn sync_replica_set(
    rs: &ObservedReplicaSet,
    desired: Option<&PodTemplateMetadata>,
    declared_keys: &EphemeralKeys,
    base: Option<&ObjectMeta>,
) -> Option<Action> {
    let record = rs.ephemeral_metadata.as_ref().filter(|m| !is_empty(m));
    let protected = |key: &str| key == POD_TEMPLATE_HASH_LABEL || rs.selector_keys.contains(key);
    let patch = MetadataPatch {
        labels: template_changes(
            &rs.template_labels,
            record.map(|r| &r.labels),
            desired.map(|d| &d.labels),
            base.and_then(|b| b.labels.as_ref()),
            &protected,
        ),
        annotations: template_changes(
            &rs.template_annotations,
            record.map(|r| &r.annotations),
            desired.map(|d| &d.annotations),
            base.and_then(|b| b.annotations.as_ref()),
            &|_| false,
        ),
    };
    let mut labels = rs.template_labels.clone();
    let mut annotations = rs.template_annotations.clone();
    patch.apply(&mut labels, &mut annotations);
    let template = (!patch.is_empty() || record != desired).then(|| TemplateMetadataChange {
        patch,
        record: desired.cloned(),
    });

    // The pods follow the template on every key that is or was ephemeral. Keys the strategy
    // declares count too, so that pods a crash left half-done between the template write and
    // the pod writes still lose the previous role's keys once the record names the new role.
    let mut keys = declared_keys.clone();
    keys.add(record);
    keys.add(desired);
    keys.labels.retain(|k| !protected(k));
    let pods: Vec<PodMetadataChange> = rs
        .pods
        .iter()
        .filter(|pod| !pod.deleting)
        .filter_map(|pod| {
            let patch = MetadataPatch {
                labels: converge(&pod.labels, &labels, &keys.labels),
                annotations: converge(&pod.annotations, &annotations, &keys.annotations),
            };
            (!patch.is_empty()).then(|| PodMetadataChange {
                pod: pod.name.clone(),
                patch,
            })
        })
        .collect();
    if template.is_none() && pods.is_empty() {
        return None;
    }
    Some(Action::SyncEphemeralMetadata {
        replica_set: rs.name.clone(),
        template,
        pods,
    })
}

/// The changes that inject `desired` into `current` and take off what `record` injected and
/// `desired` no longer has (back to `base`'s value when it has the key). Protected keys are
/// never touched.
fn template_changes(
    current: &BTreeMap<String, String>,
    record: Option<&BTreeMap<String, String>>,
    desired: Option<&BTreeMap<String, String>>,
    base: Option<&BTreeMap<String, String>>,
    protected: &dyn Fn(&str) -> bool,
) -> KeyChanges {
    let mut changes = KeyChanges::new();
    for (key, value) in desired.into_iter().flatten() {
        if !protected(key) && current.get(key) != Some(value) {
            changes.insert(key.clone(), Some(value.clone()));
        }
    }
    let still_desired = |key: &String| desired.is_some_and(|d| d.contains_key(key));
    for key in record.into_iter().flatten().map(|(key, _)| key) {
        if protected(key) || still_desired(key) {
            continue;
        }
        let own = base.and_then(|b| b.get(key));
        if current.get(key) != own {
            changes.insert(key.clone(), own.cloned());
        }
    }
    changes
}

/// The changes that make `current` equal `target` on `keys`.
fn converge(
    current: &BTreeMap<String, String>,
    target: &BTreeMap<String, String>,
    keys: &BTreeSet<String>,
) -> KeyChanges {
    keys.iter()
        .filter(|key| current.get(*key) != target.get(*key))
        .map(|key| (key.clone(), target.get(key).cloned()))
        .collect()
}

/// Puts `metadata` into a ReplicaSet about to be created: into its pod template (never on the
/// hash label or a key of its selector) and into the record annotation.
pub fn inject(
    rs: &mut ReplicaSet,
    metadata: &PodTemplateMetadata,
) -> Result<(), serde_json::Error> {
    let record = serde_json::to_string(metadata)?;
    let selector_keys = rs
        .spec
        .as_ref()
        .map(|s| selector_keys(&s.selector))
        .unwrap_or_default();
    let protected = |key: &str| key == POD_TEMPLATE_HASH_LABEL || selector_keys.contains(key);
    if let Some(template) = rs.spec.as_mut().and_then(|s| s.template.as_mut()) {
        let meta = template.metadata.get_or_insert_with(Default::default);
        let mut labels = meta.labels.take().unwrap_or_default();
        let mut annotations = meta.annotations.take().unwrap_or_default();
        let patch = MetadataPatch {
            labels: template_changes(&labels, None, Some(&metadata.labels), None, &protected),
            annotations: template_changes(
                &annotations,
                None,
                Some(&metadata.annotations),
                None,
                &|_| false,
            ),
        };
        patch.apply(&mut labels, &mut annotations);
        meta.labels = (!labels.is_empty()).then_some(labels);
        meta.annotations = (!annotations.is_empty()).then_some(annotations);
    }
    rs.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(EPHEMERAL_METADATA_ANNOTATION.to_string(), record);
    Ok(())
}

/// The label keys a selector constrains.
pub fn selector_keys(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> BTreeSet<String> {
    let mut keys: BTreeSet<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, _)| k.clone())
        .collect();
    keys.extend(
        selector
            .match_expressions
            .iter()
            .flatten()
            .map(|e| e.key.clone()),
    );
    keys
}

/// The ephemeral metadata a ReplicaSet records (Sluice's annotation, else Argo's). An unreadable
/// record counts as none, as in Argo: the metadata the role wants is then injected again.
pub fn recorded(rs: &ReplicaSet) -> Option<PodTemplateMetadata> {
    let annotations = rs.metadata.annotations.as_ref()?;
    let text = annotations
        .get(EPHEMERAL_METADATA_ANNOTATION)
        .or_else(|| annotations.get(ARGO_EPHEMERAL_METADATA_ANNOTATION))?;
    serde_json::from_str(text).ok()
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

/// Ephemeral metadata the API server would refuse on a pod, or that would take a revision's pods
/// out of its own ReplicaSet.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PodMetadataError {
    /// A label key that is not a Kubernetes qualified name.
    #[error("{field}.labels: {key:?} is not a valid label key: {reason}")]
    InvalidLabelKey {
        field: &'static str,
        key: String,
        reason: &'static str,
    },
    /// A label value that Kubernetes refuses.
    #[error("{field}.labels.{key}: {value:?} is not a valid label value: {reason}")]
    InvalidLabelValue {
        field: &'static str,
        key: String,
        value: String,
        reason: &'static str,
    },
    /// A label the engine or the selector needs on every pod of a revision.
    #[error(
        "{field}.labels.{key}: {key} is {why}; ephemeral metadata cannot set it, the pods of a revision must keep it"
    )]
    ReservedLabel {
        field: &'static str,
        key: String,
        why: &'static str,
    },
    /// An annotation key that is not a Kubernetes qualified name.
    #[error("{field}.annotations: {key:?} is not a valid annotation key: {reason}")]
    InvalidAnnotationKey {
        field: &'static str,
        key: String,
        reason: &'static str,
    },
    /// Annotations larger than Kubernetes allows on an object.
    #[error("{field}.annotations: {bytes} bytes, more than the {limit} bytes Kubernetes allows")]
    AnnotationsTooLarge {
        field: &'static str,
        bytes: usize,
        limit: usize,
    },
}

impl PodMetadataError {
    /// The field the error is about, e.g. `spec.strategy.canary.canaryMetadata.labels.role`
    /// (for `kubectl sluice lint`, which reports at that field's line).
    pub fn field_path(&self) -> String {
        match self {
            PodMetadataError::InvalidLabelKey { field, key, .. }
            | PodMetadataError::InvalidLabelValue { field, key, .. }
            | PodMetadataError::ReservedLabel { field, key, .. } => format!("{field}.labels.{key}"),
            PodMetadataError::InvalidAnnotationKey { field, key, .. } => {
                format!("{field}.annotations.{key}")
            }
            PodMetadataError::AnnotationsTooLarge { field, .. } => format!("{field}.annotations"),
        }
    }
}

/// Checks the strategy's ephemeral metadata: valid label and annotation keys and values, bounded
/// size, and never the hash label or a key of `spec.selector`.
pub fn validate(spec: &RolloutSpec) -> Result<(), PodMetadataError> {
    let fields: [(&'static str, Option<&PodTemplateMetadata>); 4] = [
        (
            "spec.strategy.canary.canaryMetadata",
            spec.canary().and_then(|c| c.canary_metadata.as_ref()),
        ),
        (
            "spec.strategy.canary.stableMetadata",
            spec.canary().and_then(|c| c.stable_metadata.as_ref()),
        ),
        (
            "spec.strategy.blueGreen.previewMetadata",
            spec.blue_green().and_then(|b| b.preview_metadata.as_ref()),
        ),
        (
            "spec.strategy.blueGreen.activeMetadata",
            spec.blue_green().and_then(|b| b.active_metadata.as_ref()),
        ),
    ];
    let selector = spec
        .selector
        .as_ref()
        .map(selector_keys)
        .unwrap_or_default();
    for (field, metadata) in fields {
        let Some(metadata) = metadata else {
            continue;
        };
        validate_labels(field, &metadata.labels, &selector)?;
        validate_annotations(field, &metadata.annotations)?;
    }
    Ok(())
}

fn validate_labels(
    field: &'static str,
    labels: &BTreeMap<String, String>,
    selector: &BTreeSet<String>,
) -> Result<(), PodMetadataError> {
    for (key, value) in labels {
        qualified_name(key).map_err(|reason| PodMetadataError::InvalidLabelKey {
            field,
            key: key.clone(),
            reason,
        })?;
        label_value(value).map_err(|reason| PodMetadataError::InvalidLabelValue {
            field,
            key: key.clone(),
            value: value.clone(),
            reason,
        })?;
        let reserved = if key == POD_TEMPLATE_HASH_LABEL {
            Some("the pod template hash label the engine sets")
        } else if selector.contains(key) {
            Some("a key of spec.selector")
        } else {
            None
        };
        if let Some(why) = reserved {
            return Err(PodMetadataError::ReservedLabel {
                field,
                key: key.clone(),
                why,
            });
        }
    }
    Ok(())
}

fn validate_annotations(
    field: &'static str,
    annotations: &BTreeMap<String, String>,
) -> Result<(), PodMetadataError> {
    let mut bytes = 0usize;
    for (key, value) in annotations {
        qualified_name(key).map_err(|reason| PodMetadataError::InvalidAnnotationKey {
            field,
            key: key.clone(),
            reason,
        })?;
        bytes = bytes.saturating_add(key.len()).saturating_add(value.len());
    }
    if bytes > ANNOTATIONS_SIZE_LIMIT {
        return Err(PodMetadataError::AnnotationsTooLarge {
            field,
            bytes,
            limit: ANNOTATIONS_SIZE_LIMIT,
        });
    }
    Ok(())
}

/// A label value: empty, or at most 63 characters of the name alphabet.
fn label_value(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Ok(());
    }
    name_part(value)
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;
    use crate::api::rollout::{Rollout, RolloutPhase};
    use crate::rollout::action::Plan;
    use crate::rollout::observed::{Observed, ObservedPod};
    use crate::rollout::plan::plan;
    use crate::rollout::plan::testkit::*;

    fn metadata(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> PodTemplateMetadata {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        PodTemplateMetadata {
            labels: map(labels),
            annotations: map(annotations),
        }
    }

    fn canary_metadata() -> PodTemplateMetadata {
        metadata(
            &[("role", "canary"), ("track", "canary")],
            &[("example.com/phase", "canary")],
        )
    }

    fn stable_metadata() -> PodTemplateMetadata {
        metadata(&[("role", "stable")], &[])
    }

    fn with_canary_metadata(mut rollout: Rollout) -> Rollout {
        let c = canary_spec(&mut rollout);
        c.canary_metadata = Some(canary_metadata());
        c.stable_metadata = Some(stable_metadata());
        rollout
    }

    fn with_blue_green_metadata(mut rollout: Rollout) -> Rollout {
        let bg = bg_spec(&mut rollout);
        bg.auto_promotion_enabled = Some(false);
        bg.preview_metadata = Some(metadata(&[("role", "preview")], &[]));
        bg.active_metadata = Some(metadata(&[("role", "active")], &[]));
        rollout
    }

    /// Plans and applies with the ReplicaSet controller running pods, until nothing changes.
    fn settle_pods(obs: &mut Observed) -> Vec<Plan> {
        let mut plans = Vec::new();
        for _ in 0..30 {
            let plan = step(obs);
            run_pods(obs);
            let done = plan.changes().next().is_none()
                && plan.status == crate::rollout::plan::plan(obs).status;
            plans.push(plan);
            if done {
                return plans;
            }
        }
        panic!("did not settle: last plan {:#?}", plans.last());
    }

    fn deployed_with_pods(rollout: Rollout) -> Observed {
        let mut obs = observed(rollout);
        settle_pods(&mut obs);
        assert_eq!(phase(&obs), RolloutPhase::Healthy);
        obs
    }

    fn pods(obs: &Observed, hash: &str) -> Vec<ObservedPod> {
        obs.replica_set(hash)
            .map(|rs| rs.pods.clone())
            .unwrap_or_default()
    }

    fn pod_names(obs: &Observed, hash: &str) -> Vec<String> {
        pods(obs, hash).into_iter().map(|p| p.name).collect()
    }

    /// The value of `key` on every pod of `hash` (`None` where a pod lacks it).
    fn pod_label(obs: &Observed, hash: &str, key: &str) -> Vec<Option<String>> {
        pods(obs, hash)
            .iter()
            .map(|p| p.labels.get(key).cloned())
            .collect()
    }

    /// The pods a Service selecting `key=value` would select, by revision.
    fn selected(obs: &Observed, key: &str, value: &str) -> Vec<String> {
        let mut names: Vec<String> = obs
            .replica_sets
            .iter()
            .flat_map(|rs| &rs.pods)
            .filter(|p| p.labels.get(key).map(String::as_str) == Some(value))
            .map(|p| p.name.clone())
            .collect();
        names.sort();
        names
    }

    fn template_label(obs: &Observed, hash: &str, key: &str) -> Option<String> {
        obs.replica_set(hash)?.template_labels.get(key).cloned()
    }

    /// Steps (pods running) up to the plan that makes `h2` the stable, and returns that plan
    /// without applying it.
    fn plan_of_promotion(obs: &mut Observed) -> Plan {
        for _ in 0..30 {
            let next = plan(obs);
            if next.status.stable_rs.as_deref() == Some("h2") {
                return next;
            }
            apply(obs, &next);
            run_pods(obs);
        }
        panic!("never promoted: {:#?}", obs.rollout.status);
    }

    fn syncs(plans: &[Plan]) -> usize {
        plans
            .iter()
            .flat_map(|p| &p.actions)
            .filter(|a| matches!(a, Action::SyncEphemeralMetadata { .. }))
            .count()
    }

    #[test]
    fn first_deploy_is_born_with_stable_metadata_and_needs_no_pod_patch() {
        let mut obs = observed(with_canary_metadata(canary(3, vec![weight(25), pause()])));
        let plans = settle_pods(&mut obs);
        let created = plans[0].actions.iter().find_map(|a| match a {
            Action::CreateReplicaSet {
                ephemeral_metadata, ..
            } => Some(ephemeral_metadata.clone()),
            _ => None,
        });
        assert_eq!(created, Some(Some(stable_metadata())));
        assert_eq!(syncs(&plans), 0, "pods are born with it");
        assert_eq!(
            pod_label(&obs, "h1", "role"),
            vec![Some("stable".into()); 3]
        );
        assert_eq!(
            obs.replica_set("h1").unwrap().ephemeral_metadata,
            Some(stable_metadata())
        );
    }

    #[test]
    fn canary_start_labels_canary_pods_canary_and_stable_pods_stable() {
        let mut obs =
            deployed_with_pods(with_canary_metadata(canary(4, vec![weight(25), pause()])));
        update(&mut obs, "h2");
        let plans = settle_pods(&mut obs);
        assert_eq!(phase(&obs), RolloutPhase::Paused);
        assert_eq!(syncs(&plans), 0, "the canary is born with its metadata");
        assert_eq!(selected(&obs, "role", "canary"), pod_names(&obs, "h2"));
        assert_eq!(selected(&obs, "role", "stable"), pod_names(&obs, "h1"));
        assert!(!pod_names(&obs, "h2").is_empty());
        let canary_pod = &pods(&obs, "h2")[0];
        assert_eq!(canary_pod.labels["track"], "canary");
        assert_eq!(canary_pod.annotations["example.com/phase"], "canary");
        assert_eq!(
            plan(&obs).changes().count(),
            0,
            "nothing to write when all match"
        );
    }

    #[test]
    fn promotion_replaces_canary_metadata_with_stable_metadata_in_place_and_retires_the_old_stable()
    {
        let mut obs = deployed_with_pods(with_canary_metadata(canary_with_router(
            4,
            vec![weight(50), pause()],
        )));
        update(&mut obs, "h2");
        settle_pods(&mut obs);
        let canary_pods = pod_names(&obs, "h2");
        assert_eq!(selected(&obs, "role", "canary"), canary_pods);
        user_promotes(&mut obs);
        // The reconcile that promotes moves the metadata too.
        let promoting = plan_of_promotion(&mut obs);
        assert!(syncs(std::slice::from_ref(&promoting)) > 0);
        apply(&mut obs, &promoting);
        run_pods(&mut obs);
        settle_pods(&mut obs);
        assert_eq!(phase(&obs), RolloutPhase::Healthy);
        assert_eq!(selected(&obs, "role", "canary"), Vec::<String>::new());
        let mut stable_pods = pod_names(&obs, "h2");
        stable_pods.sort();
        assert_eq!(selected(&obs, "role", "stable"), stable_pods);
        // The same pods, patched in place, without the canary-only keys.
        assert!(canary_pods.iter().all(|p| stable_pods.contains(p)));
        for pod in pods(&obs, "h2") {
            assert_eq!(pod.labels.get("track"), None, "{}", pod.name);
            assert_eq!(pod.annotations.get("example.com/phase"), None);
            assert_eq!(pod.labels[POD_TEMPLATE_HASH_LABEL], "h2");
        }
        assert_eq!(
            template_label(&obs, "h2", "role").as_deref(),
            Some("stable")
        );
        assert_eq!(template_label(&obs, "h2", "track"), None);
        // The old stable still runs for scaleDownDelaySeconds, without the stable label.
        assert_eq!(spec_replicas(&obs, "h1"), 4);
        assert_eq!(pod_label(&obs, "h1", "role"), vec![None; 4]);
        assert_eq!(template_label(&obs, "h1", "role"), None);
        assert_eq!(obs.replica_set("h1").unwrap().ephemeral_metadata, None);
    }

    #[test]
    fn abort_keeps_each_role_until_the_canary_revision_is_retired_by_a_revert() {
        let mut obs = deployed_with_pods(with_canary_metadata(canary_with_router(
            4,
            vec![weight(50), pause()],
        )));
        update(&mut obs, "h2");
        settle_pods(&mut obs);
        edit_status(&mut obs, |s| s.abort = Some(true));
        let plans = settle_pods(&mut obs);
        assert_eq!(phase(&obs), RolloutPhase::Degraded);
        // As Argo: the aborted revision is still the one being rolled out, so it keeps the canary
        // metadata while it runs (abortScaleDownDelaySeconds); the stable keeps its own.
        assert_eq!(syncs(&plans), 0);
        assert_eq!(selected(&obs, "role", "canary"), pod_names(&obs, "h2"));
        assert_eq!(selected(&obs, "role", "stable"), pod_names(&obs, "h1"));
        // The Git revert brings the stable template back: the aborted revision has no role any more.
        update(&mut obs, "h1");
        settle_pods(&mut obs);
        assert_eq!(phase(&obs), RolloutPhase::Healthy);
        assert_eq!(selected(&obs, "role", "canary"), Vec::<String>::new());
        assert_eq!(template_label(&obs, "h2", "role"), None);
        assert_eq!(selected(&obs, "role", "stable"), pod_names(&obs, "h1"));
    }

    #[test]
    fn blue_green_preview_metadata_until_promotion_then_active_metadata_in_place() {
        let mut obs = deployed_with_pods(with_blue_green_metadata(blue_green(2)));
        assert_eq!(
            pod_label(&obs, "h1", "role"),
            vec![Some("active".into()); 2]
        );
        update(&mut obs, "h2");
        settle_pods(&mut obs);
        assert_eq!(phase(&obs), RolloutPhase::Paused);
        assert_eq!(selected(&obs, "role", "preview"), pod_names(&obs, "h2"));
        assert_eq!(selected(&obs, "role", "active"), pod_names(&obs, "h1"));
        let preview_pods = pod_names(&obs, "h2");
        user_promotes(&mut obs);
        settle_pods(&mut obs);
        assert_eq!(status(&obs).stable_rs.as_deref(), Some("h2"));
        assert_eq!(obs.service_hash("web-active"), Some("h2"));
        assert_eq!(selected(&obs, "role", "preview"), Vec::<String>::new());
        assert_eq!(selected(&obs, "role", "active"), preview_pods);
        // The previous active still runs for scaleDownDelaySeconds, without a role.
        assert_eq!(spec_replicas(&obs, "h1"), 2);
        assert_eq!(pod_label(&obs, "h1", "role"), vec![None; 2]);
    }

    #[test]
    fn changing_or_removing_the_metadata_spec_rewrites_templates_and_pods() {
        let mut obs =
            deployed_with_pods(with_canary_metadata(canary(2, vec![weight(50), pause()])));
        let stable = canary_spec(&mut obs.rollout)
            .stable_metadata
            .as_mut()
            .unwrap();
        stable.labels.insert("role".into(), "primary".into());
        stable
            .annotations
            .insert("example.com/tier".into(), "gold".into());
        settle_pods(&mut obs);
        assert_eq!(
            pod_label(&obs, "h1", "role"),
            vec![Some("primary".into()); 2]
        );
        assert!(
            pods(&obs, "h1")
                .iter()
                .all(|p| p.annotations["example.com/tier"] == "gold")
        );

        canary_spec(&mut obs.rollout).stable_metadata = None;
        let plans = settle_pods(&mut obs);
        assert!(syncs(&plans) > 0);
        assert_eq!(pod_label(&obs, "h1", "role"), vec![None; 2]);
        assert!(pods(&obs, "h1").iter().all(|p| p.annotations.is_empty()));
        let rs = obs.replica_set("h1").unwrap();
        assert_eq!(rs.ephemeral_metadata, None);
        assert_eq!(
            rs.template_labels,
            BTreeMap::from([(POD_TEMPLATE_HASH_LABEL.to_string(), "h1".to_string())])
        );
        assert_eq!(obs.replica_sets.len(), 1, "no new revision");
    }

    #[test]
    fn a_key_the_rollout_template_also_sets_goes_back_to_the_template_value_on_promotion() {
        let mut rollout = with_canary_metadata(canary_with_router(2, vec![weight(50), pause()]));
        canary_spec(&mut rollout).stable_metadata = None;
        rollout.spec.template.as_mut().unwrap().metadata = Some(ObjectMeta {
            labels: Some(BTreeMap::from([("role".to_string(), "web".to_string())])),
            ..Default::default()
        });
        let mut obs = deployed_with_pods(rollout);
        update(&mut obs, "h2");
        settle_pods(&mut obs);
        // The canary metadata overrides the template's own `role` while the revision is the canary.
        assert_eq!(pod_label(&obs, "h2", "role"), vec![Some("canary".into())]);
        user_promotes(&mut obs);
        settle_pods(&mut obs);
        assert_eq!(status(&obs).stable_rs.as_deref(), Some("h2"));
        assert_eq!(template_label(&obs, "h2", "role").as_deref(), Some("web"));
        assert_eq!(pod_label(&obs, "h2", "role"), vec![Some("web".into()); 2]);
        assert_eq!(pod_label(&obs, "h2", "track"), vec![None; 2]);
    }

    #[test]
    fn pods_a_crash_left_behind_the_template_still_lose_the_previous_role() {
        let mut obs = deployed_with_pods(with_canary_metadata(canary_with_router(
            2,
            vec![weight(50), pause()],
        )));
        update(&mut obs, "h2");
        settle_pods(&mut obs);
        user_promotes(&mut obs);
        let promoting = plan_of_promotion(&mut obs);
        // Only the template writes land: the controller died before patching the pods.
        let mut partial = promoting.clone();
        for action in &mut partial.actions {
            if let Action::SyncEphemeralMetadata { pods, .. } = action {
                pods.clear();
            }
        }
        apply(&mut obs, &partial);
        assert_eq!(
            pod_label(&obs, "h2", "track"),
            vec![Some("canary".into()); 2]
        );
        assert_eq!(template_label(&obs, "h2", "track"), None);
        assert_eq!(
            obs.replica_set("h2").unwrap().ephemeral_metadata,
            Some(stable_metadata()),
            "the record already names the new role"
        );
        settle_pods(&mut obs);
        assert_eq!(
            pod_label(&obs, "h2", "role"),
            vec![Some("stable".into()); 2]
        );
        assert_eq!(pod_label(&obs, "h2", "track"), vec![None; 2]);
        assert!(pods(&obs, "h2").iter().all(|p| p.annotations.is_empty()));
    }

    #[test]
    fn hash_and_selector_labels_and_foreign_metadata_are_never_touched() {
        let rs = ObservedReplicaSet {
            name: "web-h1".into(),
            pod_template_hash: "h1".into(),
            template_labels: BTreeMap::from([
                ("app".to_string(), "web".to_string()),
                (POD_TEMPLATE_HASH_LABEL.to_string(), "h1".to_string()),
            ]),
            // A hand-written record claiming the selector's and the hash's keys.
            ephemeral_metadata: Some(metadata(
                &[
                    ("app", "web"),
                    (POD_TEMPLATE_HASH_LABEL, "h1"),
                    ("role", "x"),
                ],
                &[],
            )),
            selector_keys: ["app".to_string(), POD_TEMPLATE_HASH_LABEL.to_string()].into(),
            pods: vec![ObservedPod {
                name: "p".into(),
                labels: BTreeMap::from([
                    ("app".to_string(), "web".to_string()),
                    (POD_TEMPLATE_HASH_LABEL.to_string(), "h1".to_string()),
                    ("role".to_string(), "x".to_string()),
                    ("istio.io/rev".to_string(), "1".to_string()),
                ]),
                annotations: BTreeMap::from([("sidecar".to_string(), "injected".to_string())]),
                ..Default::default()
            }],
            ..Default::default()
        };
        let Some(Action::SyncEphemeralMetadata { template, pods, .. }) =
            sync_replica_set(&rs, None, &EphemeralKeys::default(), None)
        else {
            panic!("the record's role key is taken off");
        };
        assert_eq!(
            template.unwrap(),
            TemplateMetadataChange {
                patch: MetadataPatch::default(),
                record: None
            },
            "the template lacks `role`: only the record changes"
        );
        assert_eq!(
            pods,
            vec![PodMetadataChange {
                pod: "p".into(),
                patch: MetadataPatch {
                    labels: KeyChanges::from([("role".to_string(), None)]),
                    annotations: KeyChanges::new(),
                },
            }]
        );
    }

    #[test]
    fn roles_follow_the_stable_revision() {
        assert_eq!(role_of("h1", "h1", None), Role::Stable);
        assert_eq!(role_of("h1", "h1", Some("h1")), Role::Stable);
        assert_eq!(role_of("h2", "h2", Some("h1")), Role::Updating);
        assert_eq!(role_of("h1", "h2", Some("h1")), Role::Stable);
        assert_eq!(role_of("h0", "h2", Some("h1")), Role::Retired);
    }

    #[test]
    fn merge_patch_sets_and_removes_keys() {
        let patch = MetadataPatch {
            labels: KeyChanges::from([
                ("role".to_string(), Some("canary".to_string())),
                ("old".to_string(), None),
            ]),
            annotations: KeyChanges::new(),
        };
        assert_eq!(
            patch.to_merge_patch(),
            serde_json::json!({"labels": {"role": "canary", "old": null}})
        );
        assert_eq!(
            MetadataPatch::default().to_merge_patch(),
            serde_json::json!({})
        );
    }

    #[test]
    fn inject_puts_metadata_into_a_new_replica_set_and_records_it() {
        let mut rollout: Rollout = serde_saphyr::from_str(include_str!(
            "../../tests/fixtures/rollout/canary-gatewayapi.yaml"
        ))
        .unwrap();
        rollout.metadata.uid = Some("uid-1".into());
        let template = rollout.spec.template.clone().unwrap();
        let mut rs =
            crate::rollout::replicasets::new_replica_set(&rollout, &template, "h9", 2, 1).unwrap();
        let wanted = metadata(
            &[
                ("role", "canary"),
                ("app", "evil"),
                (POD_TEMPLATE_HASH_LABEL, "evil"),
            ],
            &[("example.com/phase", "canary")],
        );
        inject(&mut rs, &wanted).unwrap();
        let meta = rs
            .spec
            .as_ref()
            .unwrap()
            .template
            .as_ref()
            .unwrap()
            .metadata
            .clone()
            .unwrap();
        let labels = meta.labels.unwrap();
        assert_eq!(labels["role"], "canary");
        assert_eq!(labels["app"], "web", "a selector key stays");
        assert_eq!(labels[POD_TEMPLATE_HASH_LABEL], "h9");
        assert_eq!(meta.annotations.unwrap()["example.com/phase"], "canary");
        assert_eq!(recorded(&rs), Some(wanted));
    }

    #[test]
    fn the_record_is_read_from_sluice_or_argo_and_unreadable_counts_as_none() {
        let mut rs = ReplicaSet::default();
        assert_eq!(recorded(&rs), None);
        rs.metadata.annotations = Some(BTreeMap::from([(
            ARGO_EPHEMERAL_METADATA_ANNOTATION.to_string(),
            r#"{"labels":{"role":"canary"}}"#.to_string(),
        )]));
        assert_eq!(recorded(&rs), Some(metadata(&[("role", "canary")], &[])));
        rs.metadata.annotations = Some(BTreeMap::from([(
            EPHEMERAL_METADATA_ANNOTATION.to_string(),
            "{not json".to_string(),
        )]));
        assert_eq!(recorded(&rs), None);
    }

    fn invalid_spec_message(rollout: Rollout) -> String {
        let obs = observed(rollout);
        let p = plan(&obs);
        assert_eq!(p.status.phase, Some(RolloutPhase::Degraded));
        assert!(p.changes().next().is_none(), "nothing is created");
        p.status.message.unwrap_or_default()
    }

    #[test]
    fn invalid_or_reserved_metadata_is_invalid_spec_naming_the_field() {
        let cases: Vec<(PodTemplateMetadata, &str)> = vec![
            (
                metadata(&[("role", "not valid!")], &[]),
                "spec.strategy.canary.canaryMetadata.labels.role: \"not valid!\" is not a valid label value",
            ),
            (
                metadata(&[("-role", "x")], &[]),
                "spec.strategy.canary.canaryMetadata.labels: \"-role\" is not a valid label key",
            ),
            (
                metadata(&[("Example.com/role", "x")], &[]),
                "the prefix must be a lowercase DNS subdomain",
            ),
            (
                metadata(&[(POD_TEMPLATE_HASH_LABEL, "x")], &[]),
                "spec.strategy.canary.canaryMetadata.labels.rollouts-pod-template-hash: rollouts-pod-template-hash is the pod template hash label",
            ),
            (
                metadata(&[("app", "other")], &[]),
                "spec.strategy.canary.canaryMetadata.labels.app: app is a key of spec.selector",
            ),
            (
                metadata(&[], &[("bad key", "x")]),
                "spec.strategy.canary.canaryMetadata.annotations: \"bad key\" is not a valid annotation key",
            ),
            (
                metadata(&[], &[("big", &"x".repeat(300 * 1024))]),
                "more than the 262144 bytes Kubernetes allows",
            ),
        ];
        for (bad, expected) in cases {
            let mut rollout = canary(2, vec![weight(50)]);
            rollout.spec.selector = Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                    match_labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
                    match_expressions: None,
                },
            );
            canary_spec(&mut rollout).canary_metadata = Some(bad);
            let message = invalid_spec_message(rollout);
            assert!(message.contains(expected), "{message}\nwanted: {expected}");
        }
        let mut rollout = blue_green(2);
        bg_spec(&mut rollout).active_metadata = Some(metadata(&[("a/b/c", "x")], &[]));
        let message = invalid_spec_message(rollout);
        assert!(
            message.contains("spec.strategy.blueGreen.activeMetadata.labels: \"a/b/c\""),
            "{message}"
        );
        assert!(validate(&with_canary_metadata(canary(1, vec![])).spec).is_ok());
        let mut rollout = blue_green(2);
        bg_spec(&mut rollout).preview_metadata = Some(metadata(&[("role", "no way")], &[]));
        assert_eq!(
            validate(&rollout.spec).unwrap_err().field_path(),
            "spec.strategy.blueGreen.previewMetadata.labels.role"
        );
    }
}
