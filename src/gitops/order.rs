//! Sync order (docs/behaviour.md G7): namespaces and CRDs first, then by sync wave, then by kind in
//! Argo CD's order (gitops-engine `kindOrder`), then by name. Pruning runs in the reverse order.

use serde_json::Value;

use super::object::{annotation, gvk, str_at};

/// Sync wave annotation (an integer, default 0; lower waves are applied first).
pub const SYNC_WAVE_ANNOTATION: &str = "sluice.dev/sync-wave";
/// Argo CD's sync wave annotation, also honoured.
pub const ARGO_SYNC_WAVE_ANNOTATION: &str = "argocd.argoproj.io/sync-wave";

/// Argo CD's apply order of the built-in kinds; other kinds come after them.
const KIND_ORDER: &[&str] = &[
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
];

/// Helm's hook weight, Argo CD's sync wave of an object without one.
pub const HELM_HOOK_WEIGHT_ANNOTATION: &str = "helm.sh/hook-weight";

/// The object's sync wave: Sluice's annotation, else Argo CD's, else Helm's hook weight, else 0
/// (an unparsable value counts as 0, as in Argo CD).
pub fn sync_wave(obj: &Value) -> i64 {
    [
        SYNC_WAVE_ANNOTATION,
        ARGO_SYNC_WAVE_ANNOTATION,
        HELM_HOOK_WEIGHT_ANNOTATION,
    ]
    .iter()
    .find_map(|key| annotation(obj, key))
    .and_then(|v| v.trim().parse().ok())
    .unwrap_or(0)
}

/// Whether the object must exist before anything else: a Namespace or a CRD.
fn is_foundation(obj: &Value) -> bool {
    gvk(obj).is_some_and(|gvk| {
        (gvk.group.is_empty() && gvk.kind == "Namespace")
            || (gvk.group == "apiextensions.k8s.io" && gvk.kind == "CustomResourceDefinition")
    })
}

fn kind_rank(obj: &Value) -> usize {
    let kind = str_at(obj, "/kind").unwrap_or_default();
    KIND_ORDER
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(KIND_ORDER.len())
}

/// The sort key of an object in the apply order.
fn apply_key(obj: &Value) -> (bool, i64, usize, String, String, String) {
    let text = |p: &str| str_at(obj, p).unwrap_or_default().to_string();
    (
        !is_foundation(obj),
        sync_wave(obj),
        kind_rank(obj),
        text("/kind"),
        text("/metadata/namespace"),
        text("/metadata/name"),
    )
}

/// Sorts objects into apply order.
pub fn sort_for_apply(objects: &mut [Value]) {
    objects.sort_by_cached_key(apply_key);
}

/// Sorts objects into prune order: the reverse of the apply order.
pub fn sort_for_prune(objects: &mut [Value]) {
    sort_for_apply(objects);
    objects.reverse();
}

/// Splits objects in apply order into runs of the same sync wave: the sync waits for each run to be
/// healthy before it applies the next (Argo CD's waves).
pub fn wave_groups(objects: &[Value]) -> Vec<&[Value]> {
    let mut groups = Vec::new();
    let mut start = 0;
    for i in 1..=objects.len() {
        let boundary = i == objects.len() || sync_wave(&objects[i]) != sync_wave(&objects[i - 1]);
        if boundary && i > start {
            groups.push(&objects[start..i]);
            start = i;
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(api_version: &str, kind: &str, name: &str, wave: Option<&str>) -> Value {
        let mut o = json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}});
        if let Some(w) = wave {
            o["metadata"]["annotations"] = json!({"argocd.argoproj.io/sync-wave": w});
        }
        o
    }

    fn names(objects: &[Value]) -> Vec<&str> {
        objects
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn g7_namespaces_and_crds_first_then_waves_then_kind_order() {
        let mut objects = vec![
            obj("apps/v1", "Deployment", "web", None),
            obj("v1", "Service", "web-svc", None),
            obj("sluice.dev/v1alpha1", "Rollout", "canary", None),
            obj("v1", "ConfigMap", "late-config", Some("2")),
            obj("batch/v1", "Job", "migrate", Some("-1")),
            obj(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                "crd",
                Some("5"),
            ),
            obj("v1", "Namespace", "ns", Some("3")),
            obj("v1", "ConfigMap", "config", None),
            obj("v1", "Secret", "bad-wave", Some("soon")),
        ];
        sort_for_apply(&mut objects);
        assert_eq!(
            names(&objects),
            [
                "ns",
                "crd",
                "migrate",
                "bad-wave",
                "config",
                "web-svc",
                "web",
                "canary",
                "late-config"
            ]
        );
        sort_for_prune(&mut objects);
        assert_eq!(names(&objects)[0], "late-config");
        assert_eq!(names(&objects)[8], "ns");
    }

    #[test]
    fn g7_objects_are_grouped_by_wave_in_apply_order() {
        let mut objects = vec![
            obj("v1", "ConfigMap", "late", Some("1")),
            obj("batch/v1", "Job", "migrate", Some("-1")),
            obj("v1", "ConfigMap", "a", None),
            obj("apps/v1", "Deployment", "web", None),
        ];
        sort_for_apply(&mut objects);
        let groups: Vec<Vec<&str>> = wave_groups(&objects).into_iter().map(names).collect();
        assert_eq!(groups, [vec!["migrate"], vec!["a", "web"], vec!["late"]]);
        assert!(wave_groups(&[]).is_empty());
    }

    #[test]
    fn sluice_wave_annotation_wins_over_argos() {
        let o = json!({"metadata": {"annotations": {
            "sluice.dev/sync-wave": "4", "argocd.argoproj.io/sync-wave": "1"}}});
        assert_eq!(sync_wave(&o), 4);
        assert_eq!(sync_wave(&json!({})), 0);
    }
}
