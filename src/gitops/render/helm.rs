//! A Helm chart, rendered by `helm template` as Argo CD runs it: release name (default the
//! Application's name), `--namespace` the destination namespace, CRDs included unless `skipCrds`, value
//! files relative to the chart (a leading `/` means the repository root), then `values` /
//! `valuesObject`, then `parameters` as `--set` / `--set-string`.
//!
//! Charts are rendered as they are in Git: dependencies must be vendored in `charts/` (no
//! `helm dependency build`, which would need the network).
//!
//! Every argument is built here from a fixed set of flags, each user-given value glued to its flag
//! (`--values=…`, `--set=…`) and the release name and chart after `--`: no spec field can become a
//! flag (`--post-renderer`, `--kubeconfig`); `--set-file` (`fileParameters`) only reads files of
//! the repository, checked as value files are. The release name and namespace are checked
//! as Helm and Kubernetes would, before helm runs.

mod schema;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::names::{dns1123_label_error, helm_release_name_error};
use super::symlinks::resolve_inside;
use super::workspace::Workspace;
use super::{RenderContext, RenderError, RenderSettings, display_path, manifests};
use crate::api::application::{ApplicationSourceHelm, HelmParameter};

pub(super) fn render(
    workspace: &Workspace,
    chart_dir: &Path,
    options: &ApplicationSourceHelm,
    ctx: &RenderContext,
    settings: &RenderSettings,
) -> Result<Vec<Value>, RenderError> {
    let root = workspace.tree();
    let helm = settings
        .tools
        .find("helm")
        .ok_or_else(|| RenderError::ToolMissing {
            tool: "helm".into(),
        })?;
    let release = release_name(options, ctx)?;
    check_namespace(namespace(options, ctx))?;
    let value_files = value_files(root, chart_dir, options, settings)?;
    let file_parameters = file_parameters(root, chart_dir, options)?;
    schema::check_schemas(root, chart_dir, &settings.remote)?;
    let inline_values = inline_values_file(workspace, options)?;
    let args = arguments(
        chart_dir,
        &release,
        options,
        ctx,
        &value_files,
        inline_values.as_deref(),
    );
    let args = with_file_parameters(args, &file_parameters);
    // Without remote value files allowed, helm has no reason to reach the network at all.
    let offline = settings.remote.helm_value_schemes.is_empty();
    let output = settings
        .tools
        .run("helm template", &helm, args, workspace, offline)?;
    let name = format!("{} (helm template output)", display_path(root, chart_dir));
    let text = String::from_utf8(output).map_err(|e| RenderError::Io {
        path: name.clone(),
        message: e.to_string(),
    })?;
    manifests::parse_yaml(&name, &text)
}

/// `helm.releaseName`, else the Application's name, as Helm accepts it.
fn release_name(
    options: &ApplicationSourceHelm,
    ctx: &RenderContext,
) -> Result<String, RenderError> {
    let release = options
        .release_name
        .as_deref()
        .filter(|r| !r.is_empty())
        .unwrap_or(&ctx.app_name);
    match helm_release_name_error(release) {
        None => Ok(release.to_string()),
        Some(reason) => Err(RenderError::ReleaseName {
            name: release.to_string(),
            reason,
        }),
    }
}

/// `helm.namespace`, else the destination namespace (Argo CD's order).
fn namespace<'a>(options: &'a ApplicationSourceHelm, ctx: &'a RenderContext) -> &'a str {
    options
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(&ctx.namespace)
}

fn check_namespace(namespace: &str) -> Result<(), RenderError> {
    if namespace.is_empty() {
        return Ok(());
    }
    match dns1123_label_error(namespace) {
        None => Ok(()),
        Some(reason) => Err(RenderError::Namespace {
            name: namespace.to_string(),
            reason,
        }),
    }
}

/// A value file as passed to helm: a file of the workspace's tree, or a URL the policy allows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ValueFile {
    Local(PathBuf),
    Remote(String),
}

impl ValueFile {
    fn argument(&self) -> OsString {
        let mut arg = OsString::from("--values=");
        match self {
            Self::Local(path) => arg.push(path),
            Self::Remote(url) => arg.push(url),
        }
        arg
    }
}

fn arguments(
    chart_dir: &Path,
    release: &str,
    options: &ApplicationSourceHelm,
    ctx: &RenderContext,
    value_files: &[ValueFile],
    inline_values: Option<&Path>,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["template".into()];
    let namespace = namespace(options, ctx);
    if !namespace.is_empty() {
        args.push(format!("--namespace={namespace}").into());
    }
    if !options.skip_crds() {
        args.push("--include-crds".into());
    }
    if options.skip_tests() {
        args.push("--skip-tests".into());
    }
    if options.skip_schema_validation() {
        args.push("--skip-schema-validation".into());
    }
    if let Some(version) = options.kube_version.as_deref().filter(|v| !v.is_empty()) {
        args.push(format!("--kube-version={version}").into());
    }
    for version in options.api_versions.iter().filter(|v| !v.is_empty()) {
        args.push(format!("--api-versions={version}").into());
    }
    args.extend(value_files.iter().map(ValueFile::argument));
    if let Some(file) = inline_values {
        args.push(ValueFile::Local(file.to_path_buf()).argument());
    }
    for parameter in &options.parameters {
        args.push(set_flag(parameter).into());
    }
    // Positional from here on, whatever they look like.
    args.extend(["--".into(), release.into(), chart_dir.into()]);
    args
}

fn set_flag(parameter: &HelmParameter) -> String {
    let flag = if parameter.force_string.unwrap_or(false) {
        "--set-string"
    } else {
        "--set"
    };
    let value = escape_commas(parameter.value.as_deref().unwrap_or_default());
    format!("{flag}={}={value}", parameter.name)
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

/// The value files to pass, in order: files of the repository (symlinks followed, refused when they
/// lead outside it), existing (or skipped when `ignoreMissingValueFiles`); URLs only with a scheme
/// the policy allows (Helm itself would fetch any, or read `file://` from the controller's disk).
fn value_files(
    root: &Path,
    chart_dir: &Path,
    options: &ApplicationSourceHelm,
    settings: &RenderSettings,
) -> Result<Vec<ValueFile>, RenderError> {
    let mut files = Vec::new();
    for file in &options.value_files {
        if let Some(scheme) = url_scheme(file) {
            if !settings.remote.allows_value_scheme(scheme) {
                return Err(RenderError::RemoteValueFile {
                    file: file.clone(),
                    scheme: scheme.to_ascii_lowercase(),
                });
            }
            files.push(ValueFile::Remote(file.clone()));
            continue;
        }
        let path = root.join(value_file_in_repo(root, chart_dir, file)?);
        if path.is_file() {
            files.push(ValueFile::Local(path));
        } else if !options.ignore_missing_value_files() {
            return Err(RenderError::ValueFile {
                file: file.clone(),
                message: format!("{} does not exist", display_path(root, &path)),
            });
        }
    }
    Ok(files)
}

/// `fileParameters` as `--set-file` arguments: each file of the repository (relative to the chart,
/// or to the repository's root with a leading `/`; symlinks followed, refused when they lead
/// outside it), which must exist. Helm splits `--set-file` at `,` and at the first `=`: a name with
/// either, or a path with a `,`, would set other parameters from other files, and is refused.
fn file_parameters(
    root: &Path,
    chart_dir: &Path,
    options: &ApplicationSourceHelm,
) -> Result<Vec<OsString>, RenderError> {
    let mut args = Vec::new();
    for parameter in &options.file_parameters {
        let name = parameter.name.as_deref().unwrap_or_default();
        let file = parameter.path.as_deref().unwrap_or_default();
        let refuse = |message: String| RenderError::ValueFile {
            file: format!("fileParameters {name}={file}"),
            message,
        };
        if name.is_empty() || file.is_empty() {
            return Err(refuse("a file parameter needs a name and a path".into()));
        }
        if name.contains([',', '=']) || name.starts_with('-') {
            return Err(refuse(
                "the name must not contain ',' or '=' nor start with '-' (helm would read it as more parameters)".into(),
            ));
        }
        if url_scheme(file).is_some() {
            return Err(refuse(
                "a file parameter is a file of the repository, not a URL".into(),
            ));
        }
        let path = root.join(value_file_in_repo(root, chart_dir, file)?);
        if !path.is_file() {
            return Err(refuse(format!(
                "{} does not exist",
                display_path(root, &path)
            )));
        }
        let mut arg = OsString::from(format!("--set-file={name}="));
        arg.push(&path);
        if arg.to_string_lossy().matches(',').count() > 0 {
            return Err(refuse(
                "the path must not contain ',' (helm would read it as more parameters)".into(),
            ));
        }
        args.push(arg);
    }
    Ok(args)
}

/// `args` with the `--set-file` arguments before the positional `--`.
fn with_file_parameters(mut args: Vec<OsString>, file_parameters: &[OsString]) -> Vec<OsString> {
    let at = args.iter().position(|a| a == "--").unwrap_or(args.len());
    args.splice(at..at, file_parameters.iter().cloned());
    args
}

/// The scheme of `file` when it is a URL (`scheme://…`, RFC 3986 scheme characters).
fn url_scheme(file: &str) -> Option<&str> {
    let (scheme, _) = file.split_once("://")?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme)
}

/// The repository path `file` leads to, every symlink followed: relative to the chart, or to the
/// repository's root with a leading `/`.
fn value_file_in_repo(root: &Path, chart_dir: &Path, file: &str) -> Result<PathBuf, RenderError> {
    let chart_in_repo = chart_dir.strip_prefix(root).unwrap_or(Path::new(""));
    let in_repo = match file.strip_prefix('/') {
        Some(from_root) => PathBuf::from(from_root),
        None => chart_in_repo.join(file),
    };
    resolve_inside(root, &in_repo, file).map_err(|e| match e {
        RenderError::PathEscape { .. } => escape(file),
        other => other,
    })
}

fn escape(file: &str) -> RenderError {
    RenderError::ValueFile {
        file: file.to_string(),
        message: "leaves the repository".into(),
    }
}

/// `valuesObject` (which wins) or `values`, written to a file of the workspace for `--values`.
fn inline_values_file(
    workspace: &Workspace,
    options: &ApplicationSourceHelm,
) -> Result<Option<PathBuf>, RenderError> {
    let text = match (&options.values_object, &options.values) {
        (Some(object), _) if !object.is_empty() => Value::Object(object.clone()).to_string(),
        (_, Some(values)) if !values.trim().is_empty() => values.clone(),
        _ => return Ok(None),
    };
    let path = workspace.path().join("values.yaml");
    std::fs::write(&path, text).map_err(|e| RenderError::Io {
        path: "helm values".into(),
        message: e.to_string(),
    })?;
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::gitops::render::{RemotePolicy, ValueFileScheme};

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
    fn arguments_follow_argo_cd_with_every_value_glued_to_its_flag() {
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
            "shop",
            &options,
            &ctx(),
            &[
                ValueFile::Local(PathBuf::from("/t/chart/values-prod.yaml")),
                ValueFile::Remote("https://example.com/v.yaml".into()),
            ],
            Some(Path::new("/ws/values.yaml")),
        );
        assert_eq!(
            strings(args),
            [
                "template",
                "--namespace=prod",
                "--include-crds",
                "--values=/t/chart/values-prod.yaml",
                "--values=https://example.com/v.yaml",
                "--values=/ws/values.yaml",
                "--set=image.tag=1.2\\,3",
                "--set-string=port=8080",
                "--set=hosts={a,b}",
                "--set=empty=",
                "--",
                "shop",
                "/t/chart",
            ]
        );
        let options = ApplicationSourceHelm {
            skip_crds: Some(true),
            ..Default::default()
        };
        let args = strings(arguments(
            Path::new("/c"),
            "web",
            &options,
            &ctx(),
            &[],
            None,
        ));
        assert_eq!(args, ["template", "--namespace=prod", "--", "web", "/c"]);
    }

    #[test]
    fn file_parameters_are_files_of_the_repository_passed_with_set_file() {
        let root = tempfile::TempDir::new().unwrap();
        let chart = root.path().join("chart");
        std::fs::create_dir_all(chart.join("files")).unwrap();
        std::fs::write(chart.join("files/config.json"), "{}").unwrap();
        std::fs::write(root.path().join("shared.txt"), "x").unwrap();
        let options = |parameters: serde_json::Value| -> ApplicationSourceHelm {
            serde_json::from_value(json!({"fileParameters": parameters})).unwrap()
        };
        let args = file_parameters(
            root.path(),
            &chart,
            &options(json!([{"name": "config", "path": "files/config.json"},
                            {"name": "shared", "path": "/shared.txt"}])),
        )
        .unwrap();
        assert_eq!(
            strings(args.clone()),
            [
                format!(
                    "--set-file=config={}",
                    chart.join("files/config.json").display()
                ),
                format!(
                    "--set-file=shared={}",
                    root.path().join("shared.txt").display()
                ),
            ]
        );
        let with = with_file_parameters(
            strings_to_os(&["template", "--include-crds", "--", "web", "/c"]),
            &args,
        );
        assert_eq!(
            strings(with)[2],
            format!(
                "--set-file=config={}",
                chart.join("files/config.json").display()
            )
        );
        for (bad, why) in [
            (
                json!({"name": "a", "path": "../../etc/passwd"}),
                "leaves the repository",
            ),
            (
                json!({"name": "a", "path": "missing.txt"}),
                "does not exist",
            ),
            (
                json!({"name": "a,b", "path": "files/config.json"}),
                "must not contain",
            ),
            (
                json!({"name": "a=b", "path": "files/config.json"}),
                "must not contain",
            ),
            (
                json!({"name": "a", "path": "https://example.com/x"}),
                "not a URL",
            ),
            (json!({"name": "a"}), "needs a name and a path"),
        ] {
            let err = file_parameters(root.path(), &chart, &options(json!([bad.clone()])))
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    fn strings_to_os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn argo_cds_helm_options_become_glued_flags() {
        let options: ApplicationSourceHelm = serde_json::from_value(serde_json::json!({
            "namespace": "other", "skipTests": true, "skipSchemaValidation": true,
            "kubeVersion": "1.30.0", "apiVersions": ["monitoring.coreos.com/v1", "--post-renderer=x"],
            "skipCrds": true
        }))
        .unwrap();
        let args = strings(arguments(
            Path::new("/c"),
            "web",
            &options,
            &ctx(),
            &[],
            None,
        ));
        assert_eq!(
            args,
            [
                "template",
                "--namespace=other",
                "--skip-tests",
                "--skip-schema-validation",
                "--kube-version=1.30.0",
                "--api-versions=monitoring.coreos.com/v1",
                "--api-versions=--post-renderer=x",
                "--",
                "web",
                "/c"
            ]
        );
        assert!(check_namespace(namespace(&options, &ctx())).is_ok());
        let bad: ApplicationSourceHelm =
            serde_json::from_value(serde_json::json!({"namespace": "--kubeconfig=/x"})).unwrap();
        assert!(check_namespace(namespace(&bad, &ctx())).is_err());
    }

    #[test]
    fn a_flag_in_the_release_name_is_refused_before_helm_runs() {
        let token = "--set-file=t=/var/run/secrets/kubernetes.io/serviceaccount/token";
        for bad in [
            token,
            "--post-renderer=/bin/sh",
            "Shop",
            "a_b",
            &"x".repeat(54),
        ] {
            let options = ApplicationSourceHelm {
                release_name: Some(bad.to_string()),
                ..Default::default()
            };
            let err = release_name(&options, &ctx()).unwrap_err();
            assert!(
                matches!(&err, RenderError::ReleaseName { name, .. } if name == bad),
                "{err}"
            );
            assert!(err.to_string().contains("helm.releaseName"), "{err}");
        }
        // The Application's name is the default and is checked the same way (Kubernetes names may
        // be longer than Helm's 53 characters).
        let long_app = RenderContext {
            app_name: "a".repeat(60),
            namespace: "prod".into(),
        };
        assert!(release_name(&ApplicationSourceHelm::default(), &long_app).is_err());
        assert_eq!(
            release_name(&ApplicationSourceHelm::default(), &ctx()).unwrap(),
            "shop"
        );
        let dotted = ApplicationSourceHelm {
            release_name: Some("shop.v2".into()),
            ..Default::default()
        };
        assert_eq!(release_name(&dotted, &ctx()).unwrap(), "shop.v2");
        assert!(check_namespace("--kubeconfig=/x").is_err());
        assert!(check_namespace("").is_ok() && check_namespace("team-a").is_ok());
    }

    #[test]
    fn commas_already_escaped_stay_single() {
        assert_eq!(escape_commas("a\\,b,c"), "a\\,b\\,c");
    }

    fn options(files: &[&str], ignore: bool) -> ApplicationSourceHelm {
        ApplicationSourceHelm {
            value_files: files.iter().map(|f| f.to_string()).collect(),
            ignore_missing_value_files: Some(ignore),
            ..Default::default()
        }
    }

    #[test]
    fn value_files_must_stay_in_the_repository() {
        let root = tempfile::tempdir().unwrap();
        let chart = root.path().join("charts/shop");
        std::fs::create_dir_all(&chart).unwrap();
        std::fs::write(chart.join("values-prod.yaml"), "a: 1").unwrap();
        std::fs::write(root.path().join("common.yaml"), "b: 1").unwrap();
        std::os::unix::fs::symlink("../../common.yaml", chart.join("linked.yaml")).unwrap();
        let settings = RenderSettings::default();
        let local = |p: PathBuf| ValueFile::Local(p);

        let files = value_files(
            root.path(),
            &chart,
            &options(
                &[
                    "values-prod.yaml",
                    "../../common.yaml",
                    "/common.yaml",
                    "linked.yaml",
                ],
                false,
            ),
            &settings,
        )
        .unwrap();
        assert_eq!(
            files,
            [
                local(chart.join("values-prod.yaml")),
                local(root.path().join("common.yaml")),
                local(root.path().join("common.yaml")),
                local(root.path().join("common.yaml")),
            ]
        );

        for bad in ["../../../etc/passwd", "/../etc/passwd"] {
            let err =
                value_files(root.path(), &chart, &options(&[bad], true), &settings).unwrap_err();
            assert_eq!(err, escape(bad));
        }

        let err = value_files(
            root.path(),
            &chart,
            &options(&["missing.yaml"], false),
            &settings,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "helm value file \"missing.yaml\": charts/shop/missing.yaml does not exist"
        );
        assert!(
            value_files(
                root.path(),
                &chart,
                &options(&["missing.yaml"], true),
                &settings
            )
            .unwrap()
            .is_empty()
        );
    }

    #[test]
    fn a_value_file_through_a_symlink_chain_out_of_the_tree_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let chart = root.path().join("d1/d2");
        std::fs::create_dir_all(&chart).unwrap();
        std::os::unix::fs::symlink("../..", chart.join("up")).unwrap();
        let file = "up/../../var/run/secrets/kubernetes.io/serviceaccount/token";
        let err = value_files(
            root.path(),
            &chart,
            &options(&[file], true),
            &RenderSettings::default(),
        )
        .unwrap_err();
        assert_eq!(err, escape(file));
    }

    #[test]
    fn remote_value_files_need_their_scheme_allowed() {
        let root = tempfile::tempdir().unwrap();
        let chart = root.path().join("chart");
        std::fs::create_dir_all(&chart).unwrap();
        let imds = "http://169.254.169.254/latest/meta-data/iam/security-credentials/";
        let none = RenderSettings::default();
        let https_only = RenderSettings {
            remote: RemotePolicy {
                helm_value_schemes: vec![ValueFileScheme::Https],
                kustomize_remote: false,
            },
            ..Default::default()
        };
        for (file, settings, scheme) in [
            (imds, &none, "http"),
            (imds, &https_only, "http"),
            ("HTTPS://example.com/v.yaml", &none, "https"),
            ("file:///var/run/secrets/token", &https_only, "file"),
            ("oci://registry/values", &https_only, "oci"),
        ] {
            let err =
                value_files(root.path(), &chart, &options(&[file], false), settings).unwrap_err();
            assert_eq!(
                err,
                RenderError::RemoteValueFile {
                    file: file.into(),
                    scheme: scheme.into()
                }
            );
            assert!(err.to_string().contains("--helm-value-schemes"), "{err}");
            let hint = format!("--helm-value-schemes={scheme}");
            assert_eq!(
                err.to_string().contains(&hint),
                scheme.starts_with("http"),
                "{err}"
            );
        }
        let allowed = "https://example.com/values.yaml";
        assert_eq!(
            value_files(
                root.path(),
                &chart,
                &options(&[allowed], false),
                &https_only
            )
            .unwrap(),
            [ValueFile::Remote(allowed.into())]
        );
        // A colon in a plain file name is no scheme.
        assert_eq!(url_scheme("values:prod.yaml"), None);
        assert_eq!(url_scheme("a b://x"), None);
    }

    #[test]
    fn values_object_wins_over_values() {
        let root = tempfile::tempdir().unwrap();
        let workspace = Workspace::with_copy_of(root.path()).unwrap();
        let options: ApplicationSourceHelm = serde_json::from_value(json!({
            "values": "replicas: 1\n", "valuesObject": {"replicas": 3}
        }))
        .unwrap();
        let file = inline_values_file(&workspace, &options).unwrap().unwrap();
        assert!(file.starts_with(workspace.path()) && !file.starts_with(workspace.tree()));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), r#"{"replicas":3}"#);
        let options = ApplicationSourceHelm {
            values: Some("replicas: 2\n".into()),
            ..Default::default()
        };
        let file = inline_values_file(&workspace, &options).unwrap().unwrap();
        assert_eq!(std::fs::read_to_string(file).unwrap(), "replicas: 2\n");
        assert!(
            inline_values_file(&workspace, &ApplicationSourceHelm::default())
                .unwrap()
                .is_none()
        );
    }
}
