//! The unified diff of one object, as `status.resources[].diff` records it and `kubectl sluice app
//! diff` prints it (pure).
//!
//! The direction is `argocd app diff`'s (it runs `diff LIVE TARGET`): `-` lines are the live
//! object, `+` lines what Git declares, so the hunks read as what a sync would change, and an
//! object missing from the cluster is all `+`.
//!
//! Both sides are YAML of the same shape, keys sorted: what Git declares, and the live object
//! restricted to those fields plus the ones Git no longer declares ([`live_view`]). Defaults,
//! `status`, other managers' fields and the `sluice.dev/revision` annotation are on neither side,
//! so the hunks hold the drift [`diff`](super::diff::diff) found and nothing else. The text depends
//! only on the two objects' compared fields (no timestamps, no `resourceVersion`), so a status
//! write happens only when the drift itself changes. Secret values are masked.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use similar::TextDiff;

use super::diff::{Drift, live_view, normalize_desired};
use super::object::{GIT_REVISION_ANNOTATION, gvk};

/// Unchanged lines shown around each change, as `diff -u`.
pub const CONTEXT_LINES: usize = 3;

/// The metadata fields compared (and the name and namespace, to read the YAML by); the others are
/// the API server's or not compared.
const SHOWN_METADATA: &[&str] = &["name", "namespace", "labels", "annotations", "finalizers"];

/// The hunks (`@@` headers, context, `-` live and `+` Git lines) of an object whose drift
/// [`diff`](super::diff::diff) found; `desired` as compared (ignored differences removed).
pub fn object_diff(desired: &Value, drifts: &[Drift]) -> Vec<String> {
    if drifts.is_empty() {
        return Vec::new();
    }
    let git = normalize_desired(desired);
    let live = live_view(&git, drifts);
    let mut masks = SecretMasks::default();
    let git_text = yaml(&shown(&git, &mut masks));
    let live_text = yaml(&shown(&live, &mut masks));
    let lines = hunks(&live_text, &git_text);
    if lines.is_empty() {
        // Never an OutOfSync object without a word on why, even if a drift could not be placed
        // in the YAML.
        return drifts
            .iter()
            .map(|d| format!("{} differs from Git", d.path))
            .collect();
    }
    lines
}

/// The hunk of an object Git declares that is not in the cluster: every line added.
pub fn missing_object(desired: &Value) -> Vec<String> {
    let git = normalize_desired(desired);
    hunks("", &yaml(&shown(&git, &mut SecretMasks::default())))
}

/// `lines` cut to `max`, with a last line saying how many were left out.
pub fn cap(lines: &mut Vec<String>, max: usize) {
    if lines.len() > max {
        let more = lines.len() - max;
        lines.truncate(max);
        lines.push(format!("... {more} more lines"));
    }
}

fn hunks(old: &str, new: &str) -> Vec<String> {
    TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(CONTEXT_LINES)
        .missing_newline_hint(false)
        .to_string()
        .lines()
        .map(String::from)
        .collect()
}

fn yaml(value: &Value) -> String {
    match serde_saphyr::to_string(value) {
        Ok(text) => text,
        Err(e) => format!("# not shown: the object could not be written as YAML: {e}\n"),
    }
}

/// The object as shown: without `status`, the metadata that is not compared and the revision
/// annotation (it changes with every commit and is not drift); Secret values masked.
fn shown(obj: &Value, masks: &mut SecretMasks) -> Value {
    let mut obj = obj.clone();
    let is_secret = gvk(&obj).is_some_and(|g| g.group.is_empty() && g.kind == "Secret");
    let Some(root) = obj.as_object_mut() else {
        return obj;
    };
    root.remove("status");
    if let Some(Value::Object(metadata)) = root.get_mut("metadata") {
        metadata.retain(|field, _| SHOWN_METADATA.contains(&field.as_str()));
        let no_annotations = match metadata.get_mut("annotations") {
            Some(Value::Object(annotations)) => {
                annotations.remove(GIT_REVISION_ANNOTATION);
                annotations.is_empty()
            }
            _ => false,
        };
        if no_annotations {
            metadata.remove("annotations");
        }
    }
    if is_secret {
        for field in ["data", "stringData"] {
            if let Some(Value::Object(values)) = root.get_mut(field) {
                masks.mask(values);
            }
        }
    }
    obj
}

/// Argo CD's masking of Secret values: `+` runs, one length per distinct value, so a diff shows
/// that a value changed without showing it.
#[derive(Default)]
struct SecretMasks {
    by_value: BTreeMap<String, String>,
}

impl SecretMasks {
    fn mask(&mut self, values: &mut Map<String, Value>) {
        for value in values.values_mut() {
            let next = "+".repeat(8 + self.by_value.len());
            let mask = self
                .by_value
                .entry(value.to_string())
                .or_insert(next)
                .clone();
            *value = Value::String(mask);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitops::diff::diff;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    /// The lines of [`object_diff`] for `desired` against `live`.
    fn unified(desired: &Value, live: &Value) -> String {
        let drifts = diff(desired, live);
        object_diff(desired, &drifts).join("\n") + "\n"
    }

    fn deployment(replicas: i64) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"},
                         "annotations": {"sluice.dev/application": "argocd/shop",
                                         "sluice.dev/revision": "a".repeat(40)}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "web:1",
                                      "resources": {"requests": {"cpu": "0.5"}}}]}}}
        })
    }

    /// As the API server returns it: defaults filled in, a quantity canonical, status and
    /// server metadata.
    fn live_deployment(replicas: i64) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"},
                         "uid": "0d4c", "resourceVersion": "4711", "generation": 3,
                         "creationTimestamp": "2025-03-01T10:00:00Z",
                         "annotations": {"sluice.dev/application": "argocd/shop",
                                         "sluice.dev/revision": "b".repeat(40),
                                         "deployment.kubernetes.io/revision": "2"}},
            "spec": {"replicas": replicas, "progressDeadlineSeconds": 600,
                     "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "web:1",
                                      "imagePullPolicy": "IfNotPresent",
                                      "resources": {"requests": {"cpu": "500m"}}}],
                                      "restartPolicy": "Always"}}},
            "status": {"replicas": replicas, "readyReplicas": replicas}
        })
    }

    #[test]
    fn g4_a_deployment_scaled_live_shows_only_its_replicas() {
        assert_eq!(
            unified(&deployment(2), &live_deployment(5)),
            r#"@@ -8,7 +8,7 @@
   name: web
   namespace: shop
 spec:
-  replicas: 5
+  replicas: 2
   selector:
     matchLabels:
       app: web
"#
        );
    }

    #[test]
    fn g3_a_changed_config_map_key_and_a_key_removed_from_git() {
        let desired = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "config", "namespace": "shop"},
            "data": {"greeting": "hello", "mode": "fast", "size": "3"}});
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "config", "namespace": "shop", "resourceVersion": "12",
                "managedFields": [{"manager": "sluice-gitops", "operation": "Apply",
                    "fieldsV1": {"f:data": {"f:greeting": {}, "f:mode": {}, "f:size": {},
                                            "f:old": {}}}}]},
            "data": {"greeting": "hello", "mode": "slow", "size": "3", "old": "x",
                     "theirs": "kept"}});
        assert_eq!(
            unified(&desired, &live),
            r#"@@ -1,8 +1,7 @@
 apiVersion: v1
 data:
   greeting: hello
-  mode: slow
-  old: x
+  mode: fast
   size: "3"
 kind: ConfigMap
 metadata:
"#
        );
    }

    #[test]
    fn an_object_missing_from_the_cluster_is_all_added() {
        let desired = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "config", "namespace": "shop",
                         "annotations": {"sluice.dev/revision": "a".repeat(40)}},
            "data": {"v": "1"}});
        assert_eq!(
            missing_object(&desired).join("\n"),
            r#"@@ -0,0 +1,7 @@
+apiVersion: v1
+data:
+  v: "1"
+kind: ConfigMap
+metadata:
+  name: config
+  namespace: shop"#
        );
    }

    #[test]
    fn a_container_missing_live_and_an_atomic_list_keep_to_what_git_declares() {
        let desired = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a", "args": ["x", "y"]}, {"name": "b"}],
                     "tolerations": [{"key": "k", "operator": "Exists"}]}});
        let live = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a", "args": ["x"],
                                     "terminationMessagePath": "/dev/termination-log"}],
                     "tolerations": [{"key": "k", "operator": "Exists", "effect": ""},
                                     {"key": "node.kubernetes.io/not-ready",
                                      "operator": "Exists", "effect": "NoExecute"}]}});
        assert_eq!(
            unified(&desired, &live),
            r#"@@ -6,10 +6,9 @@
   containers:
   - args:
     - x
+    - "y"
     name: a
+  - name: b
   tolerations:
   - key: k
-    operator: Exists
-  - effect: NoExecute
-    key: node.kubernetes.io/not-ready
     operator: Exists
"#
        );
    }

    #[test]
    fn an_item_removed_from_git_shows_what_the_last_apply_owned_of_it() {
        let desired = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"template": {"spec": {"containers": [
                {"name": "web", "env": [{"name": "A", "value": "1"}],
                 "ports": [{"containerPort": 8080}]}]}}}});
        let live = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "managedFields": [{"manager": "sluice-gitops",
                "operation": "Apply", "fieldsV1": {"f:spec": {"f:template": {"f:spec": {
                    "f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:name": {},
                        "f:env": {"k:{\"name\":\"A\"}": {".": {}, "f:name": {}, "f:value": {}},
                                  "k:{\"name\":\"B\"}": {".": {}, "f:value": {},
                                      "f:valueFrom": {"f:fieldRef": {"f:fieldPath": {}}}}},
                        "f:ports": {"k:{\"containerPort\":8080,\"protocol\":\"TCP\"}": {
                            ".": {}, "f:containerPort": {}}}}}}}}}}]},
            "spec": {"template": {"spec": {"containers": [
                {"name": "web", "imagePullPolicy": "Always",
                 "env": [{"name": "A", "value": "1"},
                         {"name": "B", "valueFrom": {"fieldRef": {
                             "apiVersion": "v1", "fieldPath": "metadata.name"}}}],
                 "ports": [{"containerPort": 8080, "protocol": "TCP"},
                           {"containerPort": 9090, "protocol": "TCP"}]}]}}}});
        assert_eq!(
            unified(&desired, &live),
            r#"@@ -9,10 +9,6 @@
       - env:
         - name: A
           value: "1"
-        - name: B
-          valueFrom:
-            fieldRef:
-              fieldPath: metadata.name
         name: web
         ports:
         - containerPort: 8080
"#
        );
    }

    #[test]
    fn secret_values_are_masked() {
        let desired = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "stringData": {"token": "abc", "user": "me"}});
        let live = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"token": "eHl6", "user": "bWU="}});
        let text = unified(&desired, &live);
        assert_eq!(
            text,
            r#"@@ -1,6 +1,6 @@
 apiVersion: v1
 data:
-  token: ++++++++++
+  token: ++++++++
   user: +++++++++
 kind: Secret
 metadata:
"#
        );
        assert!(!text.contains("eHl6") && !text.contains("YWJj"), "{text}");
    }

    #[test]
    fn the_same_drift_gives_the_same_text() {
        let live = live_deployment(5);
        let mut relisted = live.clone();
        relisted["metadata"]["resourceVersion"] = json!("9999");
        relisted["status"]["readyReplicas"] = json!(1);
        assert_eq!(
            unified(&deployment(2), &live),
            unified(&deployment(2), &relisted)
        );
    }

    #[test]
    fn cap_keeps_the_first_lines_and_counts_the_rest() {
        let mut lines: Vec<String> = (1..=5).map(|i| format!("+line {i}")).collect();
        cap(&mut lines, 3);
        assert_eq!(lines, ["+line 1", "+line 2", "+line 3", "... 2 more lines"]);
        let mut short = vec!["+a".to_string()];
        cap(&mut short, 3);
        assert_eq!(short, ["+a"]);
    }
}
