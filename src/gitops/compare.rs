//! Comparison of what Git declares with the live objects: per-object sync status and health, the
//! objects that require pruning, and the Application's sync status and health (pure).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::diff::diff;
use super::health::{aggregate, health_of};
use super::health_rules::HealthRules;
use super::ignore::strip_ignored;
use super::object::{ResourceKey, key_of, split_api_version, str_at};
use super::order::{sort_for_prune, sync_wave};
use super::unified::{cap, missing_object, object_diff};
use crate::api::application::{
    HealthStatus, HealthStatusCode, ResourceIgnoreDifferences, ResourceStatus, SyncStatusCode,
};

/// Lines of unified diff kept per object in `status.resources[].diff`, and for all objects of an
/// Application together: the status stays small however many objects differ (an Application
/// created with a manual sync policy has every object missing, each one all `+` lines).
const MAX_DIFF_LINES_PER_OBJECT: usize = 50;
const MAX_DIFF_LINES: usize = 1000;

/// The outcome of a comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// Declared objects in apply order, then the objects that require pruning.
    pub resources: Vec<ResourceStatus>,
    /// OutOfSync when any object is missing, differs or requires pruning.
    pub sync_status: SyncStatusCode,
    /// The worst health of the declared objects.
    pub health: HealthStatus,
    /// Live objects of the Application that Git no longer declares, in prune order.
    pub requires_pruning: Vec<Value>,
}

/// Compares `desired` (normalised, in apply order) with `live` (by key) and `tracked` (every live
/// object carrying the Application's tracking annotation), judging health by the built-in rules and
/// the user's `rules`.
pub fn compare(
    desired: &[Value],
    live: &BTreeMap<ResourceKey, Value>,
    tracked: &[Value],
    ignore: &[ResourceIgnoreDifferences],
    rules: &HealthRules,
) -> Comparison {
    let mut resources = Vec::new();
    let mut healths = Vec::new();
    let mut declared = BTreeSet::new();
    for obj in desired {
        let Some(key) = key_of(obj) else {
            continue;
        };
        let status = declared_status(obj, &key, live.get(&key), ignore, rules);
        if let Some(h) = &status.health {
            healths.push(h.clone());
        }
        resources.push(status);
        declared.insert(key);
    }
    let mut requires_pruning: Vec<Value> = tracked
        .iter()
        .filter(|o| key_of(o).is_some_and(|k| !declared.contains(&k)))
        .cloned()
        .collect();
    sort_for_prune(&mut requires_pruning);
    let mut budget = MAX_DIFF_LINES;
    for status in &mut resources {
        let keep = MAX_DIFF_LINES_PER_OBJECT.min(budget);
        budget -= keep.min(status.diff.len());
        cap(&mut status.diff, keep);
    }
    for obj in &requires_pruning {
        let mut status = identity(obj);
        status.status = Some(SyncStatusCode::OutOfSync);
        status.requires_pruning = true;
        status.health = health_of(obj, rules);
        resources.push(status);
    }
    let in_sync = resources
        .iter()
        .all(|r| r.status == Some(SyncStatusCode::Synced));
    Comparison {
        resources,
        sync_status: if in_sync {
            SyncStatusCode::Synced
        } else {
            SyncStatusCode::OutOfSync
        },
        health: aggregate(&healths),
        requires_pruning,
    }
}

fn identity(obj: &Value) -> ResourceStatus {
    let (group, version) = split_api_version(str_at(obj, "/apiVersion").unwrap_or_default());
    ResourceStatus {
        group: group.to_string(),
        version: version.to_string(),
        kind: str_at(obj, "/kind").unwrap_or_default().to_string(),
        namespace: str_at(obj, "/metadata/namespace")
            .unwrap_or_default()
            .to_string(),
        name: str_at(obj, "/metadata/name")
            .unwrap_or_default()
            .to_string(),
        sync_wave: sync_wave(obj),
        ..ResourceStatus::default()
    }
}

fn declared_status(
    desired: &Value,
    key: &ResourceKey,
    live: Option<&Value>,
    ignore: &[ResourceIgnoreDifferences],
    rules: &HealthRules,
) -> ResourceStatus {
    let mut status = identity(desired);
    let Some(live) = live else {
        status.status = Some(SyncStatusCode::OutOfSync);
        status.health = Some(HealthStatus {
            status: HealthStatusCode::Missing,
            message: None,
            last_transition_time: None,
        });
        status.diff = missing_object(desired);
        return status;
    };
    let (mut d, mut l) = (desired.clone(), live.clone());
    strip_ignored(ignore, key, &mut d, &mut l);
    let drift = diff(&d, &l);
    status.status = Some(if drift.is_empty() {
        SyncStatusCode::Synced
    } else {
        SyncStatusCode::OutOfSync
    });
    status.diff = object_diff(&d, &drift);
    status.health = health_of(live, rules);
    status
}

/// The container images of the declared workloads, sorted and deduplicated (`status.summary`).
pub fn images(desired: &[Value]) -> Vec<String> {
    let mut images = BTreeSet::new();
    for obj in desired {
        for pod_spec in [obj.pointer("/spec/template/spec"), obj.pointer("/spec")]
            .into_iter()
            .flatten()
        {
            for list in ["containers", "initContainers"] {
                for container in pod_spec
                    .get(list)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(image) = container.get("image").and_then(Value::as_str) {
                        images.insert(image.to_string());
                    }
                }
            }
        }
    }
    images.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cm(name: &str, value: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": name, "namespace": "shop",
                            "annotations": {"sluice.dev/application": "argocd/shop"}},
               "data": {"v": value}})
    }

    fn by_key(objects: &[Value]) -> BTreeMap<ResourceKey, Value> {
        objects
            .iter()
            .map(|o| (key_of(o).unwrap(), o.clone()))
            .collect()
    }

    #[test]
    fn per_object_status_missing_drift_and_pruning() {
        let desired = vec![cm("a", "1"), cm("b", "2"), cm("c", "3")];
        let live = vec![cm("a", "1"), cm("b", "changed"), cm("old", "x")];
        let cmp = compare(
            &desired,
            &by_key(&live),
            &live,
            &[],
            &HealthRules::default(),
        );
        let summary: Vec<(&str, Option<SyncStatusCode>, bool)> = cmp
            .resources
            .iter()
            .map(|r| (r.name.as_str(), r.status, r.requires_pruning))
            .collect();
        use SyncStatusCode::*;
        assert_eq!(
            summary,
            [
                ("a", Some(Synced), false),
                ("b", Some(OutOfSync), false),
                ("c", Some(OutOfSync), false),
                ("old", Some(OutOfSync), true),
            ]
        );
        assert_eq!(
            cmp.resources[1].diff,
            [
                "@@ -1,6 +1,6 @@",
                " apiVersion: v1",
                " data:",
                "-  v: changed",
                "+  v: \"2\"",
                " kind: ConfigMap",
                " metadata:",
                "   annotations:",
            ]
        );
        assert_eq!(cmp.resources[2].diff[0], "@@ -0,0 +1,9 @@");
        assert_eq!(cmp.resources[2].diff[3], "+  v: \"3\"");
        // What requires pruning is said by `requiresPruning`, and a Synced object has no diff.
        assert!(cmp.resources[3].diff.is_empty());
        assert!(cmp.resources[0].diff.is_empty());
        assert_eq!(
            cmp.resources[2].health.as_ref().unwrap().status,
            HealthStatusCode::Missing
        );
        assert_eq!(cmp.health.status, HealthStatusCode::Missing);
        assert_eq!(cmp.sync_status, OutOfSync);
        assert_eq!(cmp.requires_pruning, [cm("old", "x")]);
    }

    #[test]
    fn everything_matching_is_synced_and_healthy() {
        let desired = vec![cm("a", "1")];
        let cmp = compare(
            &desired,
            &by_key(&desired),
            &desired,
            &[],
            &HealthRules::default(),
        );
        assert_eq!(cmp.sync_status, SyncStatusCode::Synced);
        assert_eq!(cmp.health.status, HealthStatusCode::Healthy);
        assert!(cmp.resources[0].diff.is_empty());
    }

    #[test]
    fn ignored_differences_do_not_count() {
        let desired = vec![cm("a", "1")];
        let live = vec![cm("a", "2")];
        let ignore: ResourceIgnoreDifferences =
            serde_json::from_value(json!({"kind": "ConfigMap", "jsonPointers": ["/data/v"]}))
                .unwrap();
        let cmp = compare(
            &desired,
            &by_key(&live),
            &live,
            &[ignore],
            &HealthRules::default(),
        );
        assert_eq!(cmp.sync_status, SyncStatusCode::Synced);
    }

    #[test]
    fn diffs_are_capped_per_object_and_for_the_application() {
        let big = |name: &str| {
            let mut obj = cm(name, "1");
            for i in 0..60 {
                obj["data"][format!("k{i:02}")] = json!("x");
            }
            obj
        };
        // 20 missing objects use up the Application's 1000 lines; the others keep their count.
        let desired: Vec<Value> = (0..22).map(|i| big(&format!("c{i:02}"))).collect();
        let cmp = compare(
            &desired,
            &BTreeMap::new(),
            &[],
            &[],
            &HealthRules::default(),
        );
        let first = &cmp.resources[0].diff;
        assert_eq!(first.len(), MAX_DIFF_LINES_PER_OBJECT + 1);
        assert_eq!(first[0], "@@ -0,0 +1,69 @@");
        assert_eq!(first[MAX_DIFF_LINES_PER_OBJECT], "... 20 more lines");
        assert_eq!(cmp.resources[19].diff.len(), MAX_DIFF_LINES_PER_OBJECT + 1);
        assert_eq!(cmp.resources[20].diff, ["... 70 more lines"]);
        assert_eq!(cmp.resources[21].diff, ["... 70 more lines"]);
        assert_eq!(cmp.sync_status, SyncStatusCode::OutOfSync);
    }

    #[test]
    fn images_of_workloads() {
        let objects = vec![
            json!({"kind": "Deployment", "spec": {"template": {"spec": {
                "containers": [{"image": "web:2"}], "initContainers": [{"image": "init:1"}]}}}}),
            json!({"kind": "Pod", "spec": {"containers": [{"image": "web:2"}]}}),
        ];
        assert_eq!(images(&objects), ["init:1", "web:2"]);
    }
}
