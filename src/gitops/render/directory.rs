//! A plain directory of manifests: `*.yaml`, `*.yml` and `*.json` files in path order, subdirectories
//! with `recurse`, filtered by the `include` / `exclude` globs (matched against the path relative to
//! the source path; `*` also matches `/`, and `{a,b}` alternatives work, as in Argo CD). With
//! `disableExtensionFilter` files of every name are read (JSON when named `*.json`, else YAML).
//! Argo CD evaluates `*.jsonnet` files of a directory; Sluice does not, so one that the filters
//! accept fails the render, naming it, rather than being skipped without a word.

use std::path::{Path, PathBuf};

use globset::{Glob, GlobMatcher};
use serde_json::Value;

use super::{RenderError, display_path, ensure_inside, manifests};
use crate::api::application::ApplicationSourceDirectory;

const MANIFEST_EXTENSIONS: [&str; 4] = ["yaml", "yml", "json", "jsonnet"];

pub(super) fn render(
    root: &Path,
    app_dir: &Path,
    options: &ApplicationSourceDirectory,
) -> Result<Vec<Value>, RenderError> {
    let filter = Filter::new(options)?;
    let mut files = Vec::new();
    let every_name = options.disable_extension_filter.unwrap_or(false);
    collect_files(root, app_dir, options.recurse(), every_name, &mut files)?;
    let mut objects = Vec::new();
    for file in files {
        let relative = file.strip_prefix(app_dir).unwrap_or(&file);
        if !filter.accepts(relative) {
            continue;
        }
        if file.extension().is_some_and(|e| e == "jsonnet") {
            return Err(RenderError::Io {
                path: display_path(root, &file),
                message: "Jsonnet is not rendered by Sluice (Argo CD evaluates the *.jsonnet files of a directory source); leave it out with spec.source.directory.exclude".into(),
            });
        }
        objects.extend(read_manifest_file(root, &file)?);
    }
    Ok(objects)
}

struct Filter {
    include: Option<GlobMatcher>,
    exclude: Option<GlobMatcher>,
}

impl Filter {
    fn new(options: &ApplicationSourceDirectory) -> Result<Self, RenderError> {
        Ok(Self {
            include: matcher("include", options.include.as_deref())?,
            exclude: matcher("exclude", options.exclude.as_deref())?,
        })
    }

    fn accepts(&self, relative: &Path) -> bool {
        self.include.as_ref().is_none_or(|g| g.is_match(relative))
            && !self.exclude.as_ref().is_some_and(|g| g.is_match(relative))
    }
}

fn matcher(field: &'static str, pattern: Option<&str>) -> Result<Option<GlobMatcher>, RenderError> {
    let Some(pattern) = pattern.filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    Glob::new(pattern)
        .map(|g| Some(g.compile_matcher()))
        .map_err(|e| RenderError::Glob {
            field,
            pattern: pattern.to_string(),
            message: e.kind().to_string(),
        })
}

/// Manifest files under `dir` in path order (files and directories sorted together by name, as
/// `filepath.Walk` visits them). Symlinked directories are not followed (no loops); symlinked files
/// are read when they stay inside the tree.
fn collect_files(
    root: &Path,
    dir: &Path,
    recurse: bool,
    every_name: bool,
    files: &mut Vec<PathBuf>,
) -> Result<(), RenderError> {
    let io = |path: &Path| {
        let shown = display_path(root, path);
        move |e: std::io::Error| RenderError::Io {
            path: shown,
            message: e.to_string(),
        }
    };
    let mut entries = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io(dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let file_type = entry.file_type().map_err(io(&path))?;
        if file_type.is_dir() {
            if recurse {
                collect_files(root, &path, recurse, every_name, files)?;
            }
        } else if (every_name || is_manifest_name(&path)) && (file_type.is_file() || path.is_file())
        {
            files.push(path);
        }
    }
    Ok(())
}

fn is_manifest_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| MANIFEST_EXTENSIONS.contains(&e))
}

fn read_manifest_file(root: &Path, file: &Path) -> Result<Vec<Value>, RenderError> {
    let shown = display_path(root, file);
    ensure_inside(root, file, &shown)?;
    let text = std::fs::read_to_string(file).map_err(|e| RenderError::Io {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    if file.extension().is_some_and(|e| e == "json") {
        manifests::parse_json(&shown, &text)
    } else {
        manifests::parse_yaml(&shown, &text)
    }
}
