//! Rendering a source's path of a checked-out tree into Kubernetes objects: a plain directory of YAML
//! and JSON files, a Kustomize overlay (`kustomize build`, else `kubectl kustomize`) or a Helm chart
//! (`helm template`), the tools being found on `PATH`.
//!
//! A render either returns every object or fails with a message naming the file (and line, for YAML)
//! at fault: nothing is half-returned, so nothing is half-applied (docs/behaviour.md G11). The type
//! is detected as Argo CD does when the spec names none.
//!
//! Everything in a repository and an Application's spec is hostile: a tree with a symlink that leads
//! outside it (chains followed) is refused; `helm` and `kustomize` run in a private copy of the one
//! tree with an environment of their own, their arguments built from fixed flags; remote value files
//! and remote Kustomize resources are refused unless the controller's [`RemotePolicy`] allows them.

mod cache;
mod directory;
mod helm;
mod kustomize;
mod manifests;
pub(crate) mod names;
mod symlinks;
mod tool;
mod workspace;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde_json::Value;
use thiserror::Error;

pub use cache::{RenderCache, RenderKey};
pub use tool::Tools;
use workspace::Workspace;

use crate::api::application::{ApplicationSource, ApplicationSourceType};
use crate::gitops::source::tree_path_stays_inside;

/// File names that make a directory a Kustomize overlay (Argo CD's list).
pub const KUSTOMIZATION_FILES: [&str; 3] =
    ["kustomization.yaml", "kustomization.yml", "Kustomization"];
/// The file that makes a directory a Helm chart.
pub const HELM_CHART_FILE: &str = "Chart.yaml";

/// What a render needs besides the source.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RenderContext {
    /// The Application's name: Helm's default release name.
    pub app_name: String,
    /// The destination namespace: Helm's `--namespace`.
    pub namespace: String,
}

/// A URL scheme Helm value files may be fetched with (`--helm-value-schemes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ValueFileScheme {
    Http,
    Https,
}

impl ValueFileScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

impl fmt::Display for ValueFileScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scheme other than `http` and `https`: Helm would read `file://` from the controller's disk and
/// hand other schemes to plugins.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("unsupported value file scheme {0:?}: expected http or https")]
pub struct ValueFileSchemeError(String);

impl FromStr for ValueFileScheme {
    type Err = ValueFileSchemeError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        match input.trim().to_ascii_lowercase().as_str() {
            "http" => Ok(Self::Http),
            "https" => Ok(Self::Https),
            _ => Err(ValueFileSchemeError(input.to_string())),
        }
    }
}

/// What a render may fetch from outside its repository (the controller's flags). The default
/// allows nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemotePolicy {
    /// Schemes of the Helm value files that may be URLs (`--helm-value-schemes`).
    pub helm_value_schemes: Vec<ValueFileScheme>,
    /// Kustomize may load remote resources, bases and components (`--kustomize-remote`).
    pub kustomize_remote: bool,
}

impl RemotePolicy {
    pub(crate) fn allows_value_scheme(&self, scheme: &str) -> bool {
        self.helm_value_schemes
            .iter()
            .any(|allowed| allowed.as_str().eq_ignore_ascii_case(scheme))
    }
}

/// How renders run: where the tools are, and what they may fetch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RenderSettings {
    pub tools: Tools,
    pub remote: RemotePolicy,
}

/// The objects of a source, in file order, as JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    pub source_type: ApplicationSourceType,
    pub objects: Vec<Value>,
}

/// Why a source could not be rendered. File paths are relative to the repository root.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RenderError {
    #[error("path {path:?} leaves the repository")]
    PathEscape { path: String },
    #[error("path {path:?} does not exist in the repository")]
    PathMissing { path: String },
    #[error("{file}:{line}:{column}: invalid YAML: {message}")]
    Yaml {
        file: String,
        line: u64,
        column: u64,
        message: String,
    },
    #[error("{file}: invalid YAML: {message}")]
    YamlNoLocation { file: String, message: String },
    #[error("{file}:{line}:{column}: invalid JSON: {message}")]
    Json {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: document {document}: {message}")]
    NotAnObject {
        file: String,
        document: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("invalid {field} glob {pattern:?}: {message}")]
    Glob {
        field: &'static str,
        pattern: String,
        message: String,
    },
    #[error("helm value file {file:?}: {message}")]
    ValueFile { file: String, message: String },
    #[error("{tool} is not installed (not found on PATH)")]
    ToolMissing { tool: String },
    #[error("{tool} failed ({status}): {stderr}")]
    ToolFailed {
        tool: String,
        status: String,
        stderr: String,
    },
    #[error("{tool} did not finish within {seconds}s")]
    ToolTimeout { tool: String, seconds: u64 },
    #[error("{tool} printed more than {limit} bytes")]
    OutputTooLarge { tool: String, limit: u64 },
    #[error("symlink {path:?} (-> {target:?}) leads outside the repository")]
    SymlinkEscape { path: String, target: String },
    #[error("symlink {path:?}: too many levels of symlinks")]
    SymlinkLoop { path: String },
    #[error(
        "helm release name {name:?} is invalid: {reason} (set helm.releaseName to a DNS-1123 name of at most 53 characters)"
    )]
    ReleaseName { name: String, reason: String },
    #[error("destination namespace {name:?} is not a valid namespace name: {reason}")]
    Namespace { name: String, reason: String },
    #[error("helm value file {file:?} is a {scheme}:// URL: {}", remote_value_file_hint(.scheme))]
    RemoteValueFile { file: String, scheme: String },
    #[error(
        "{file}: {keyword} {reference:?} would be loaded from outside the schema: only references inside it (\"#...\") are allowed, and URLs with a scheme the controller allows with --helm-value-schemes"
    )]
    SchemaReference {
        file: String,
        keyword: String,
        reference: String,
    },
    #[error(
        "{kustomization}: {field} entry {reference:?} is not a path in the repository: remote Kustomize resources are refused unless the controller runs with --kustomize-remote"
    )]
    KustomizeRemote {
        kustomization: String,
        field: String,
        reference: String,
    },
    #[error("{kustomization}: {field} entry {reference:?} leads outside the repository")]
    KustomizeEscape {
        kustomization: String,
        field: String,
        reference: String,
    },
    #[error("source type {0} is not supported by Sluice")]
    Unsupported(String),
    #[error("render worker failed: {0}")]
    Worker(String),
}

/// What would let a value file of `scheme` be fetched, if anything.
fn remote_value_file_hint(scheme: &str) -> String {
    match scheme.parse::<ValueFileScheme>() {
        Ok(scheme) => format!(
            "remote value files are refused unless the controller runs with --helm-value-schemes={scheme}"
        ),
        Err(_) => "only http and https value files can be allowed (--helm-value-schemes)".into(),
    }
}

/// Renders `source` from the checked-out tree `root` (`source.path` relative to it; `..` escapes and
/// symlinks out of the tree are refused), with the tools found on the process's `PATH` and nothing
/// remote allowed. Returns every object in file order; a `List` is flattened; empty documents are
/// skipped. Runs external tools and reads files: call it off the async runtime
/// ([`RenderCache::get_or_render`] does).
pub fn render(
    root: &Path,
    source: &ApplicationSource,
    ctx: &RenderContext,
) -> Result<Rendered, RenderError> {
    render_with(root, source, ctx, &RenderSettings::default())
}

/// [`render`] with the tools and remote policy of `settings`.
pub fn render_with(
    root: &Path,
    source: &ApplicationSource,
    ctx: &RenderContext,
    settings: &RenderSettings,
) -> Result<Rendered, RenderError> {
    let app_dir = app_dir(root, source.path())?;
    symlinks::check_tree(root)?;
    let source_type = detect_source_type(&app_dir, source);
    // The tools run on a private copy; the app's directory there is the same path of the tree.
    let in_workspace = |workspace: &Workspace| {
        workspace
            .tree()
            .join(app_dir.strip_prefix(root).unwrap_or(Path::new("")))
    };
    let objects = match source_type {
        ApplicationSourceType::Directory => directory::render(
            root,
            &app_dir,
            &source.directory.clone().unwrap_or_default(),
        )?,
        ApplicationSourceType::Kustomize => {
            let workspace = Workspace::with_copy_of(root)?;
            let app_dir = in_workspace(&workspace);
            kustomize::render(&workspace, &app_dir, source.kustomize.as_ref(), settings)?
        }
        ApplicationSourceType::Helm => {
            let workspace = Workspace::with_copy_of(root)?;
            let app_dir = in_workspace(&workspace);
            let options = source.helm.clone().unwrap_or_default();
            helm::render(&workspace, &app_dir, &options, ctx, settings)?
        }
        ApplicationSourceType::Plugin => {
            return Err(RenderError::Unsupported(format!("{source_type:?}")));
        }
    };
    Ok(Rendered {
        source_type,
        objects,
    })
}

/// The type named by the spec, else as Argo CD: `Chart.yaml` → Helm, a kustomization file →
/// Kustomize, anything else → Directory.
pub fn detect_source_type(app_dir: &Path, source: &ApplicationSource) -> ApplicationSourceType {
    if let Some(explicit) = source.explicit_source_type() {
        return explicit;
    }
    if app_dir.join(HELM_CHART_FILE).is_file() {
        ApplicationSourceType::Helm
    } else if KUSTOMIZATION_FILES
        .iter()
        .any(|f| app_dir.join(f).is_file())
    {
        ApplicationSourceType::Kustomize
    } else {
        ApplicationSourceType::Directory
    }
}

/// `root/path`, refused when it leaves `root` lexically or through a symlink.
pub(crate) fn app_dir(root: &Path, path: &str) -> Result<PathBuf, RenderError> {
    let relative = path.trim_start_matches("./");
    let relative = Path::new(if relative.is_empty() { "." } else { relative });
    if relative.is_absolute() || !tree_path_stays_inside(relative) {
        return Err(RenderError::PathEscape {
            path: path.to_string(),
        });
    }
    let dir = root.join(relative);
    if !dir.is_dir() {
        return Err(RenderError::PathMissing {
            path: path.to_string(),
        });
    }
    ensure_inside(root, &dir, path)?;
    Ok(dir)
}

/// Refuses `path` when, symlinks resolved, it is not under `root`.
pub(crate) fn ensure_inside(root: &Path, path: &Path, shown: &str) -> Result<(), RenderError> {
    let io = |e: std::io::Error| RenderError::Io {
        path: shown.to_string(),
        message: e.to_string(),
    };
    let real_root = root.canonicalize().map_err(io)?;
    let real = path.canonicalize().map_err(io)?;
    if real.starts_with(&real_root) {
        Ok(())
    } else {
        Err(RenderError::PathEscape {
            path: shown.to_string(),
        })
    }
}

/// `path` relative to `root`, as shown in messages (never the cache location of the tree).
pub(crate) fn display_path(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

#[cfg(test)]
mod tests;
