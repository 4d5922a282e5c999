//! A chart's `values.schema.json` may make helm load other documents while it validates the values:
//! `$ref` (and `$schema`, `$dynamicRef`, `$recursiveRef`) are resolved against
//! `file:///values.schema.json`, so a relative reference reads a file of the controller's disk and an
//! absolute one fetches any URL, loopback included. Only references inside the document (`#…`), the
//! JSON Schema drafts helm knows without fetching, and URLs whose scheme the controller allows for
//! value files are let through.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::super::{RemotePolicy, RenderError, display_path};
use super::url_scheme;

const SCHEMA_FILE: &str = "values.schema.json";
/// Subcharts nested deeper than this are not a chart but an attack.
const MAX_DEPTH: usize = 10;
/// Keywords whose value is a URI helm's JSON Schema library loads.
const REFERENCE_KEYWORDS: [&str; 4] = ["$ref", "$dynamicRef", "$recursiveRef", "$schema"];
/// Meta-schemas the JSON Schema library has built in (loaded without a request).
const KNOWN_DRAFTS: [&str; 5] = [
    "http://json-schema.org/draft-04/schema",
    "http://json-schema.org/draft-06/schema",
    "http://json-schema.org/draft-07/schema",
    "https://json-schema.org/draft/2019-09/schema",
    "https://json-schema.org/draft/2020-12/schema",
];

/// Checks the schema of the chart at `chart_dir` and of every unpacked subchart in its `charts/`
/// (packed `.tgz` subcharts are not opened here). `root` is the tree, for the paths in errors.
pub(super) fn check_schemas(
    root: &Path,
    chart_dir: &Path,
    remote: &RemotePolicy,
) -> Result<(), RenderError> {
    let mut pending = vec![(chart_dir.to_path_buf(), 0)];
    let mut seen = BTreeSet::new();
    while let Some((chart, depth)) = pending.pop() {
        let real = chart.canonicalize().unwrap_or_else(|_| chart.clone());
        if depth > MAX_DEPTH || !seen.insert(real) {
            continue;
        }
        let schema = chart.join(SCHEMA_FILE);
        if schema.is_file() {
            check_schema_file(root, &schema, remote)?;
        }
        pending.extend(subcharts(&chart).into_iter().map(|c| (c, depth + 1)));
    }
    Ok(())
}

/// The directories in `chart/charts/` (symlinks followed, as helm's loader does).
fn subcharts(chart: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(chart.join("charts")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect()
}

fn check_schema_file(root: &Path, file: &Path, remote: &RemotePolicy) -> Result<(), RenderError> {
    let shown = display_path(root, file);
    let text = std::fs::read_to_string(file).map_err(|e| RenderError::Io {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    // Helm reports a schema that is not JSON itself, without loading anything.
    let Ok(schema) = serde_json::from_str::<Value>(&text) else {
        return Ok(());
    };
    check_value(&schema, remote).map_err(|(keyword, reference)| RenderError::SchemaReference {
        file: shown,
        keyword,
        reference,
    })
}

/// The first reference of `value` helm would load from outside the document, as (keyword, value).
fn check_value(value: &Value, remote: &RemotePolicy) -> Result<(), (String, String)> {
    match value {
        Value::Object(fields) => {
            for (key, item) in fields {
                if let (true, Some(reference)) =
                    (REFERENCE_KEYWORDS.contains(&key.as_str()), item.as_str())
                    && !allowed(key, reference, remote)
                {
                    return Err((key.clone(), reference.to_string()));
                }
                check_value(item, remote)?;
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(|item| check_value(item, remote)),
        _ => Ok(()),
    }
}

fn allowed(keyword: &str, reference: &str, remote: &RemotePolicy) -> bool {
    if reference.starts_with('#') {
        return true;
    }
    if keyword == "$schema" && KNOWN_DRAFTS.contains(&reference.trim_end_matches('#')) {
        return true;
    }
    url_scheme(reference).is_some_and(|scheme| remote.allows_value_scheme(scheme))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::gitops::render::ValueFileScheme;

    fn chart_with_schema(schema: &Value) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("chart/charts/sub")).unwrap();
        std::fs::write(root.path().join("chart/Chart.yaml"), "name: c").unwrap();
        std::fs::write(
            root.path().join("chart/values.schema.json"),
            json!({"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                   "properties": {"a": {"$ref": "#/definitions/a"}},
                   "definitions": {"a": {"type": "string"}}})
            .to_string(),
        )
        .unwrap();
        std::fs::write(
            root.path().join("chart/charts/sub/values.schema.json"),
            schema.to_string(),
        )
        .unwrap();
        root
    }

    fn check(root: &tempfile::TempDir, remote: &RemotePolicy) -> Result<(), RenderError> {
        check_schemas(root.path(), &root.path().join("chart"), remote)
    }

    #[test]
    fn local_references_and_known_drafts_pass() {
        let root = chart_with_schema(&json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "properties": {"$ref": {"type": "string"}, "b": {"$ref": "#/$defs/b"}},
            "$defs": {"b": {"type": "integer"}}
        }));
        check(&root, &RemotePolicy::default()).unwrap();
    }

    #[test]
    fn references_out_of_the_document_are_refused() {
        for (keyword, reference) in [
            ("$ref", "http://127.0.0.1:1/s.json"),
            (
                "$ref",
                "../../../../var/run/secrets/kubernetes.io/serviceaccount/token",
            ),
            ("$ref", "file:///etc/passwd"),
            ("$dynamicRef", "https://example.com/s.json#x"),
            ("$schema", "http://169.254.169.254/latest/meta-data"),
        ] {
            let root = chart_with_schema(&json!({"properties": {"t": {keyword: reference}}}));
            let err = check(&root, &RemotePolicy::default()).unwrap_err();
            assert_eq!(
                err,
                RenderError::SchemaReference {
                    file: "chart/charts/sub/values.schema.json".into(),
                    keyword: keyword.into(),
                    reference: reference.into(),
                }
            );
        }
        // A scheme allowed for value files is allowed here too; `file` never is.
        let https = RemotePolicy {
            helm_value_schemes: vec![ValueFileScheme::Https],
            kustomize_remote: false,
        };
        let root = chart_with_schema(&json!({"$ref": "https://example.com/s.json"}));
        check(&root, &https).unwrap();
        let root = chart_with_schema(&json!({"$ref": "file:///etc/passwd"}));
        assert!(check(&root, &https).is_err());
    }

    #[test]
    fn subchart_loops_end() {
        let root = chart_with_schema(&json!({}));
        std::os::unix::fs::symlink("../..", root.path().join("chart/charts/sub/charts")).unwrap();
        std::os::unix::fs::symlink("..", root.path().join("chart/charts/loop")).unwrap();
        check(&root, &RemotePolicy::default()).unwrap();
    }
}
