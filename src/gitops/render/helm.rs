//! A Helm chart, rendered by `helm template` as Argo CD runs it: release name (default the
//! Application's name), `--namespace` the destination namespace, CRDs included unless `skipCrds`, value
//! files relative to the chart (a leading `/` means the repository root), then `values` /
//! `valuesObject`, then `parameters` as `--set` / `--set-string`.
//!
//! Charts are rendered as they are in Git: dependencies must be vendored in `charts/` (no
//! `helm dependency build`, which would need the network).

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use serde_json::Value;
use tempfile::NamedTempFile;

use super::{RenderContext, RenderError, Tools, display_path, ensure_inside, manifests};
use crate::api::application::{ApplicationSourceHelm, HelmParameter};
use crate::gitops::source::tree_path_stays_inside;

pub(super) fn render(
    root: &Path,
    chart_dir: &Path,
    options: &ApplicationSourceHelm,
    ctx: &RenderContext,
    tools: &Tools,
) -> Result<Vec<Value>, RenderError> {
    let helm = tools.find("helm").ok_or_else(|| RenderError::ToolMissing {
        tool: "helm".into(),
    })?;
    let value_files = value_files(root, chart_dir, options)?;
    // Lives until helm has read it.
    let inline_values = inline_values_file(options)?;
    let args = arguments(
        chart_dir,
        options,
        ctx,
        &value_files,
        inline_values.as_ref().map(NamedTempFile::path),
    );
    let output = tools.run("helm template", &helm, args, chart_dir, root)?;
    let name = format!("{} (helm template output)", display_path(root, chart_dir));
    let text = String::from_utf8(output).map_err(|e| RenderError::Io {
        path: name.clone(),
        message: e.to_string(),
    })?;
    manifests::parse_yaml(&name, &text)
}

fn arguments(
    chart_dir: &Path,
    options: &ApplicationSourceHelm,
    ctx: &RenderContext,
    value_files: &[PathBuf],
    inline_values: Option<&Path>,
) -> Vec<OsString> {
    let release = options
        .release_name
        .as_deref()
        .filter(|r| !r.is_empty())
        .unwrap_or(&ctx.app_name);
    let mut args: Vec<OsString> = vec!["template".into(), release.into(), chart_dir.into()];
    if !ctx.namespace.is_empty() {
        args.extend(["--namespace".into(), ctx.namespace.clone().into()]);
    }
    if !options.skip_crds() {
        args.push("--include-crds".into());
    }
    for file in value_files {
        args.extend(["--values".into(), file.into()]);
    }
    if let Some(file) = inline_values {
        args.extend(["--values".into(), file.into()]);
    }
    for parameter in &options.parameters {
        args.extend(set_flag(parameter).map(OsString::from));
    }
    args
}

fn set_flag(parameter: &HelmParameter) -> [String; 2] {
    let flag = if parameter.force_string.unwrap_or(false) {
        "--set-string"
    } else {
        "--set"
    };
    let value = escape_commas(parameter.value.as_deref().unwrap_or_default());
    [flag.to_string(), format!("{}={value}", parameter.name)]
}

/// Helm splits `--set` on commas; a value's own commas are escaped, except in a `{a,b}` list (Argo
/// CD's `cleanSetParameters`).
fn escape_commas(value: &str) -> String {
    if value.starts_with('{') && value.ends_with('}') {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len());
    let mut previous = None;
    for c in value.chars() {
        if c == ',' && previous != Some('\\') {
            out.push('\\');
        }
        out.push(c);
        previous = Some(c);
    }
    out
}

/// The value files to pass, in order: inside the repository, existing (or skipped when
/// `ignoreMissingValueFiles`), remote `http(s)://` ones passed through to helm.
fn value_files(
    root: &Path,
    chart_dir: &Path,
    options: &ApplicationSourceHelm,
) -> Result<Vec<PathBuf>, RenderError> {
    let mut files = Vec::new();
    for file in &options.value_files {
        if file.starts_with("http://") || file.starts_with("https://") {
            files.push(PathBuf::from(file));
            continue;
        }
        let path = value_file_path(root, chart_dir, file)?;
        if path.is_file() {
            ensure_inside(root, &path, file).map_err(|_| escape(file))?;
            files.push(path);
        } else if !options.ignore_missing_value_files() {
            return Err(RenderError::ValueFile {
                file: file.clone(),
                message: format!("{} does not exist", display_path(root, &path)),
            });
        }
    }
    Ok(files)
}

fn value_file_path(root: &Path, chart_dir: &Path, file: &str) -> Result<PathBuf, RenderError> {
    let chart_in_repo = chart_dir.strip_prefix(root).unwrap_or(Path::new(""));
    let in_repo = match file.strip_prefix('/') {
        Some(from_root) => PathBuf::from(from_root),
        None => chart_in_repo.join(file),
    };
    if !tree_path_stays_inside(&in_repo) {
        return Err(escape(file));
    }
    Ok(root.join(lexically_normal(&in_repo)))
}

/// `path` with `.` and `a/..` removed (it is known not to climb above its start).
fn lexically_normal(path: &Path) -> PathBuf {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                normal.pop();
            }
            Component::CurDir => {}
            other => normal.push(other),
        }
    }
    normal
}

fn escape(file: &str) -> RenderError {
    RenderError::ValueFile {
        file: file.to_string(),
        message: "leaves the repository".into(),
    }
}

/// `valuesObject` (which wins) or `values`, written to a temporary file for `--values`.
fn inline_values_file(
    options: &ApplicationSourceHelm,
) -> Result<Option<NamedTempFile>, RenderError> {
    let text = match (&options.values_object, &options.values) {
        (Some(object), _) if !object.is_empty() => Value::Object(object.clone()).to_string(),
        (_, Some(values)) if !values.trim().is_empty() => values.clone(),
        _ => return Ok(None),
    };
    let io = |e: std::io::Error| RenderError::Io {
        path: "helm values".into(),
        message: e.to_string(),
    };
    let file = tempfile::Builder::new()
        .prefix("sluice-values-")
        .suffix(".yaml")
        .tempfile()
        .map_err(io)?;
    std::fs::write(file.path(), text).map_err(io)?;
    Ok(Some(file))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ctx() -> RenderContext {
        RenderContext {
            app_name: "shop".into(),
            namespace: "prod".into(),
        }
    }

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn arguments_follow_argo_cd() {
        let options: ApplicationSourceHelm = serde_json::from_value(json!({
            "parameters": [
                {"name": "image.tag", "value": "1.2,3"},
                {"name": "port", "value": "8080", "forceString": true},
                {"name": "hosts", "value": "{a,b}"},
                {"name": "empty"},
            ]
        }))
        .unwrap();
        let args = arguments(
            Path::new("/t/chart"),
            &options,
            &ctx(),
            &[PathBuf::from("/t/chart/values-prod.yaml")],
            Some(Path::new("/tmp/v.yaml")),
        );
        assert_eq!(
            strings(args),
            [
                "template",
                "shop",
                "/t/chart",
                "--namespace",
                "prod",
                "--include-crds",
                "--values",
                "/t/chart/values-prod.yaml",
                "--values",
                "/tmp/v.yaml",
                "--set",
                "image.tag=1.2\\,3",
                "--set-string",
                "port=8080",
                "--set",
                "hosts={a,b}",
                "--set",
                "empty=",
            ]
        );
        let options = ApplicationSourceHelm {
            release_name: Some("web".into()),
            skip_crds: Some(true),
            ..Default::default()
        };
        let args = strings(arguments(Path::new("/c"), &options, &ctx(), &[], None));
        assert_eq!(args, ["template", "web", "/c", "--namespace", "prod"]);
    }

    #[test]
    fn commas_already_escaped_stay_single() {
        assert_eq!(escape_commas("a\\,b,c"), "a\\,b\\,c");
    }

    #[test]
    fn value_files_must_stay_in_the_repository() {
        let root = tempfile::tempdir().unwrap();
        let chart = root.path().join("charts/shop");
        std::fs::create_dir_all(&chart).unwrap();
        std::fs::write(chart.join("values-prod.yaml"), "a: 1").unwrap();
        std::fs::write(root.path().join("common.yaml"), "b: 1").unwrap();
        let options = |files: &[&str], ignore: bool| ApplicationSourceHelm {
            value_files: files.iter().map(|f| f.to_string()).collect(),
            ignore_missing_value_files: Some(ignore),
            ..Default::default()
        };

        let files = value_files(
            root.path(),
            &chart,
            &options(
                &["values-prod.yaml", "../../common.yaml", "/common.yaml"],
                false,
            ),
        )
        .unwrap();
        assert_eq!(
            files,
            [
                chart.join("values-prod.yaml"),
                root.path().join("common.yaml"),
                root.path().join("common.yaml")
            ]
        );

        for bad in ["../../../etc/passwd", "/../etc/passwd"] {
            let err = value_files(root.path(), &chart, &options(&[bad], true)).unwrap_err();
            assert_eq!(err, escape(bad));
        }

        let err = value_files(root.path(), &chart, &options(&["missing.yaml"], false)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "helm value file \"missing.yaml\": charts/shop/missing.yaml does not exist"
        );
        assert!(
            value_files(root.path(), &chart, &options(&["missing.yaml"], true))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn values_object_wins_over_values() {
        let options: ApplicationSourceHelm = serde_json::from_value(json!({
            "values": "replicas: 1\n", "valuesObject": {"replicas": 3}
        }))
        .unwrap();
        let file = inline_values_file(&options).unwrap().unwrap();
        assert_eq!(
            std::fs::read_to_string(file.path()).unwrap(),
            r#"{"replicas":3}"#
        );
        let options = ApplicationSourceHelm {
            values: Some("replicas: 2\n".into()),
            ..Default::default()
        };
        let file = inline_values_file(&options).unwrap().unwrap();
        assert_eq!(
            std::fs::read_to_string(file.path()).unwrap(),
            "replicas: 2\n"
        );
        assert!(
            inline_values_file(&ApplicationSourceHelm::default())
                .unwrap()
                .is_none()
        );
    }
}
