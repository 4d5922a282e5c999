//! The Argo CD Application fields Sluice keeps in its schema but does not implement, in one list.
//!
//! The CRD stores them as written (typed, or as preserved JSON), so the API server never prunes
//! them silently; an Application that sets one is refused with an `InvalidSpecError` condition
//! naming the concrete path (`spec.source.plugin is not supported by Sluice: ...`),
//! its sync status Unknown and nothing fetched or applied. A field set to its zero value (`false`,
//! `""`, `[]`, `{}`, or an object of such values, as Argo CD's `omitempty` writes them) means
//! Argo CD's default, which is what Sluice does, and is not refused.

use serde_json::Value;

use crate::api::application::Application;

/// One unimplemented field: a path pattern over the Application's JSON (`.`-separated; `[]` after
/// a segment means every item of that list) and why it is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsupported {
    pub pattern: String,
    pub reason: &'static str,
}

impl Unsupported {
    fn new(pattern: impl Into<String>, reason: &'static str) -> Self {
        Self {
            pattern: pattern.into(),
            reason,
        }
    }
}

const MULTI_SOURCE: &str =
    "multiple sources are not implemented yet; use spec.source (one Git repository)";
const PLUGIN: &str = "config management plugins are not implemented";
const JSONNET: &str = "Jsonnet is not rendered by Sluice";
const TAG_PREFIX: &str =
    "a tag prefix is not implemented; a semver targetRevision is matched against every tag";
const KUSTOMIZE_HELM: &str =
    "Sluice does not inflate Helm charts of kustomizations with chosen capabilities";

/// The source fields refused wherever a source is written (`spec.source`, `operation.sync.source`).
const SOURCE_FIELDS: &[(&str, &str)] = &[
    (
        "ref",
        "refs only serve the $ref/... value files of spec.sources; multiple sources are not implemented yet",
    ),
    ("tagPrefix", TAG_PREFIX),
    ("plugin", PLUGIN),
    ("directory.jsonnet", JSONNET),
    (
        "kustomize.commonAnnotationsEnvsubst",
        "environment substitution in commonAnnotations is not implemented",
    ),
    (
        "kustomize.version",
        "Sluice runs one kustomize, the one on its PATH",
    ),
    ("kustomize.kubeVersion", KUSTOMIZE_HELM),
    ("kustomize.apiVersions", KUSTOMIZE_HELM),
];

/// Every unimplemented field, as patterns (the source fields under both places a source is written).
pub fn unsupported_fields() -> Vec<Unsupported> {
    let mut all = vec![
        Unsupported::new("spec.sources", MULTI_SOURCE),
        Unsupported::new(
            "spec.sourceHydrator",
            "the source hydrator is not implemented",
        ),
        Unsupported::new("operation.sync.sources", MULTI_SOURCE),
        Unsupported::new("operation.sync.revisions", MULTI_SOURCE),
        Unsupported::new(
            "operation.sync.manifests",
            "a sync applies the source's manifests only",
        ),
        Unsupported::new(
            "operation.sync.syncStrategy",
            "Sluice always applies server-side (use the Force=true and Replace=true sync options)",
        ),
    ];
    for prefix in ["spec.source", "operation.sync.source"] {
        for (field, reason) in SOURCE_FIELDS {
            all.push(Unsupported::new(format!("{prefix}.{field}"), reason));
        }
    }
    all
}

/// A field of the Application that is set and not implemented.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The concrete path, e.g. `spec.source.kustomize.patches` or `spec.sources`.
    pub path: String,
    pub reason: &'static str,
}

impl std::fmt::Display for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is not supported by Sluice: {}",
            self.path, self.reason
        )
    }
}

/// The unimplemented fields `app` sets, plus the values Sluice cannot honour of fields it has
/// (`helm.version` other than 3).
pub fn find_unsupported(app: &Application) -> Vec<Found> {
    let Ok(json) = serde_json::to_value(app) else {
        return Vec::new();
    };
    let mut found = find_in(&json, &unsupported_fields());
    for prefix in ["spec.source", "operation.sync.source"] {
        let path = format!("{prefix}.helm.version");
        if let Some(version) = lookup(&json, &path).and_then(Value::as_str)
            && !matches!(version.trim(), "" | "3" | "v3")
        {
            found.push(Found {
                path,
                reason: "Sluice renders with Helm 3; only version 3 (or v3, or unset) is accepted",
            });
        }
    }
    found
}

/// The InvalidSpecError message for the unimplemented fields `app` sets, if any.
pub fn unsupported_message(app: &Application) -> Option<String> {
    let found = find_unsupported(app);
    (!found.is_empty()).then(|| {
        found
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// Every concrete path of `root` that one of `fields` matches and that holds a non-zero value.
pub fn find_in(root: &Value, fields: &[Unsupported]) -> Vec<Found> {
    let mut found = Vec::new();
    for field in fields {
        let segments: Vec<&str> = field.pattern.split('.').collect();
        walk(root, &segments, String::new(), &mut |path| {
            found.push(Found {
                path,
                reason: field.reason,
            });
        });
    }
    found
}

/// Visits the values at `segments` below `value` (`name[]` iterates a list), calling `hit` with the
/// concrete path of each one that is set.
fn walk(value: &Value, segments: &[&str], path: String, hit: &mut dyn FnMut(String)) {
    let Some((first, rest)) = segments.split_first() else {
        if !is_zero(value) {
            hit(path);
        }
        return;
    };
    let (name, each) = match first.strip_suffix("[]") {
        Some(name) => (name, true),
        None => (*first, false),
    };
    let Some(child) = value.as_object().and_then(|o| o.get(name)) else {
        return;
    };
    let path = if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    };
    if each {
        for (index, item) in child.as_array().into_iter().flatten().enumerate() {
            walk(item, rest, format!("{path}[{index}]"), hit);
        }
    } else {
        walk(child, rest, path, hit);
    }
}

/// Argo CD's zero values (what `omitempty` leaves out): the default, not a setting.
fn is_zero(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.values().all(is_zero),
    }
}

fn lookup<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(root, |v, key| v.get(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn app(extra: Value) -> Application {
        let mut wire = json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Application",
            "metadata": {"name": "shop", "namespace": "sluice"},
            "spec": {"source": {"repoURL": "https://git.example.com/shop.git"}, "destination": {}}
        });
        merge(&mut wire, extra);
        serde_json::from_value(wire).unwrap()
    }

    fn merge(into: &mut Value, from: Value) {
        match (into, from) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (slot, v) => *slot = v,
        }
    }

    /// A value that is set for `field` (a list for list fields, an object for object fields...).
    fn sample(pattern: &str) -> Value {
        let last = pattern.rsplit('.').next().unwrap();
        match last {
            "sources" | "patches" => json!([{"repoURL": "x", "patch": "p"}]),
            "fileParameters" => json!([{"name": "a", "path": "b"}]),
            "components" | "apiVersions" | "manifests" | "revisions" => json!(["x"]),
            "plugin" | "jsonnet" | "sourceHydrator" | "syncStrategy" => {
                json!({"name": "x", "tlas": [{"name": "a", "value": "b"}], "apply": {"force": true}})
            }
            "disableExtensionFilter"
            | "passCredentials"
            | "ignoreMissingComponents"
            | "commonAnnotationsEnvsubst" => json!(true),
            _ => json!("x"),
        }
    }

    /// `{"a": {"b": value}}` for `a.b`.
    fn nested(pattern: &str, value: Value) -> Value {
        pattern
            .rsplit('.')
            .fold(value, |inner, key| json!({ key: inner }))
    }

    /// Every entry of the list: an Application setting it (and only it) is refused naming the
    /// concrete path; the same field at its zero value is not.
    #[test]
    fn every_unsupported_field_is_found_by_its_path_and_only_when_set() {
        let fields = unsupported_fields();
        assert_eq!(fields.len(), 6 + 2 * SOURCE_FIELDS.len());
        for field in &fields {
            let pattern = field.pattern.as_str();
            let mut extra = nested(pattern, sample(pattern));
            if field.pattern.starts_with("operation.") {
                merge(
                    &mut extra,
                    json!({"operation": {"sync": {"source": {"repoURL": "r"}}}}),
                );
            }
            let app = app(extra);
            let found = find_unsupported(&app);
            assert_eq!(
                found,
                [Found {
                    path: pattern.to_string(),
                    reason: field.reason
                }],
                "{pattern}: the typed Application must keep the field"
            );
            let message = unsupported_message(&app).unwrap();
            assert!(
                message.starts_with(&format!("{pattern} is not supported by Sluice")),
                "{message}"
            );

            let zero = match sample(pattern) {
                Value::Array(_) => json!([]),
                Value::Object(_) => json!({}),
                Value::Bool(_) => json!(false),
                _ => json!(""),
            };
            let mut extra = nested(pattern, zero);
            if field.pattern.starts_with("operation.") {
                merge(
                    &mut extra,
                    json!({"operation": {"sync": {"source": {"repoURL": "r"}}}}),
                );
            }
            assert_eq!(find_unsupported(&self::tests::app(extra)), [], "{pattern}");
        }
    }

    #[test]
    fn argo_cds_empty_jsonnet_block_is_the_default() {
        let app = app(json!({"spec": {"source": {"directory": {
            "recurse": true, "jsonnet": {"extVars": [], "tlas": [], "libs": []}}}}}));
        assert_eq!(find_unsupported(&app), []);
        let app = self::tests::app(json!({"spec": {"source": {"directory": {
            "jsonnet": {"libs": ["vendor"]}}}}}));
        assert_eq!(
            find_unsupported(&app)[0].path,
            "spec.source.directory.jsonnet"
        );
    }

    #[test]
    fn several_fields_are_all_named() {
        let app = app(json!({"spec": {
            "sources": [{"repoURL": "a"}, {"repoURL": "b"}],
            "source": {"chart": "nginx", "ref": "values", "helm": {"version": "v2", "passCredentials": true}}
        }}));
        let paths: Vec<String> = find_unsupported(&app).into_iter().map(|f| f.path).collect();
        assert_eq!(
            paths,
            [
                "spec.sources",
                "spec.source.ref",
                "spec.source.helm.version"
            ]
        );
        let message = unsupported_message(&app).unwrap();
        assert!(message.contains("spec.sources is not supported by Sluice: multiple sources"));
        assert!(message.contains("; spec.source.ref is not supported by Sluice"));
    }

    #[test]
    fn helm_version_3_is_what_sluice_runs() {
        for version in ["3", "v3", ""] {
            let app = app(json!({"spec": {"source": {"helm": {"version": version}}}}));
            assert_eq!(find_unsupported(&app), [], "{version}");
        }
    }

    #[test]
    fn implemented_fields_are_not_refused() {
        let app = app(json!({"spec": {
            "info": [{"name": "owner", "value": "team-shop"}],
            "source": {"name": "main", "chart": "nginx", "helm": {"passCredentials": true}, "kustomize": {
                "replicas": [{"name": "web", "count": 3}], "forceCommonLabels": true,
                "labelWithoutSelector": true, "labelIncludeTemplates": true}},
            "syncPolicy": {"retry": {"refresh": true},
                "managedNamespaceMetadata": {"labels": {"team": "shop"}}}
        }}));
        assert_eq!(find_unsupported(&app), []);
    }

    #[test]
    fn list_patterns_name_each_item() {
        let root = json!({"spec": {"sources": [{"chart": "a"}, {"chart": ""}, {"chart": "c"}]}});
        let found = find_in(&root, &[Unsupported::new("spec.sources[].chart", "r")]);
        let paths: Vec<&str> = found.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["spec.sources[0].chart", "spec.sources[2].chart"]);
    }

    const EVERY_FIELD: &str =
        include_str!("../../tests/fixtures/application/argo-every-field.yaml");
    const JSONNET: &str =
        include_str!("../../tests/fixtures/application/argo-directory-jsonnet.yaml");

    /// Argo CD Applications setting every field of Argo CD's schema: the typed Application keeps
    /// each one (what the controller reads is what was written), and each one Sluice does not
    /// implement is named.
    #[test]
    fn argo_applications_with_every_field_are_read_losslessly_and_refused_by_name() {
        for (text, expected) in [
            (
                EVERY_FIELD,
                &[
                    "operation.sync.manifests",
                    "operation.sync.revisions",
                    "operation.sync.source.kustomize.apiVersions",
                    "operation.sync.source.kustomize.commonAnnotationsEnvsubst",
                    "operation.sync.source.kustomize.kubeVersion",
                    "operation.sync.source.kustomize.version",
                    "operation.sync.sources",
                    "operation.sync.syncStrategy",
                    "spec.source.plugin",
                    "spec.source.ref",
                    "spec.source.tagPrefix",
                    "spec.sourceHydrator",
                    "spec.sources",
                ][..],
            ),
            (JSONNET, &["spec.source.directory.jsonnet"][..]),
        ] {
            let written: Value = serde_saphyr::from_str(text).unwrap();
            let app: Application = serde_json::from_value(written.clone()).unwrap();
            let read = serde_json::to_value(&app).unwrap();
            assert_eq!(read["spec"], written["spec"]);
            assert_eq!(read.get("operation"), written.get("operation"));
            let mut paths: Vec<String> =
                find_unsupported(&app).into_iter().map(|f| f.path).collect();
            paths.sort();
            assert_eq!(paths, expected);
        }
    }
}
