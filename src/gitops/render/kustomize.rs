//! A Kustomize overlay, built by `kustomize build` (preferred) or `kubectl kustomize`.
//!
//! The source's `kustomize` options (name prefix/suffix, images, common labels/annotations, namespace,
//! replicas, components, patches) are applied by a generated overlay beside the tree in the render's
//! workspace, whose only resource is the source path, so the checked-out tree is never written (Argo
//! CD runs `kustomize edit` in its own copy): they act on the kustomization's output, after its own
//! transformers.
//!
//! Before kustomize runs, every kustomization it would load is read here: an entry of `resources`,
//! `bases`, `components`, `generators`, `transformers` or `validators` must be a path inside the
//! repository (symlinks followed), or, only with `--kustomize-remote`, a remote target; any other
//! field naming a URL (kustomize fetches `http(s)://` patches, generator files, ...) is refused the
//! same way. Files are left to kustomize's default load restrictor (inside their kustomization's
//! directory), which is never relaxed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Map, Value, json};

use super::symlinks::{ResolveError, Resolved, resolve};
use super::workspace::Workspace;
use super::{KUSTOMIZATION_FILES, RenderError, RenderSettings, Tools, display_path, manifests};
use crate::api::application::ApplicationSourceKustomize;

/// Kustomizations read while checking one render: a deeper graph is not an overlay but an attack.
const MAX_KUSTOMIZATIONS: usize = 500;

/// Fields whose entries kustomize loads as a file, a directory with a kustomization, or a remote
/// target (a URL, `github.com/org/repo//path?ref=…`), whichever works.
const REFERENCE_FIELDS: [&str; 6] = [
    "resources",
    "bases",
    "components",
    "generators",
    "transformers",
    "validators",
];

/// Fields that hold content, never something kustomize loads: not searched for URLs (a label or a
/// literal may well be one).
const CONTENT_FIELDS: [&str; 12] = [
    "metadata",
    "commonLabels",
    "commonAnnotations",
    "labels",
    "images",
    "replicas",
    "vars",
    "literals",
    "patch",
    "target",
    "options",
    "buildMetadata",
];

pub(super) fn render(
    workspace: &Workspace,
    app_dir: &Path,
    options: Option<&ApplicationSourceKustomize>,
    settings: &RenderSettings,
) -> Result<Vec<Value>, RenderError> {
    let root = workspace.tree();
    let allow_remote = settings.remote.kustomize_remote;
    check_references(
        root,
        app_dir.strip_prefix(root).unwrap_or(Path::new("")),
        allow_remote,
    )?;
    let app_in_tree = app_dir.strip_prefix(root).unwrap_or(Path::new(""));
    let overlay = match options {
        Some(options) => {
            let mut overlay = overlay_kustomization(options);
            add_components_and_patches(&mut overlay, options, root, app_in_tree, allow_remote)?;
            overlay
        }
        None => None,
    };
    let target = match overlay {
        Some(kustomization) => write_overlay(workspace, app_dir, kustomization)?,
        None => app_dir.to_path_buf(),
    };
    let output = build(&settings.tools, &target, workspace, !allow_remote)?;
    let name = format!("{} (kustomize output)", display_path(root, app_dir));
    let text = String::from_utf8(output).map_err(|e| RenderError::Io {
        path: name.clone(),
        message: e.to_string(),
    })?;
    manifests::parse_yaml(&name, &text)
}

fn build(
    tools: &Tools,
    dir: &Path,
    workspace: &Workspace,
    offline: bool,
) -> Result<Vec<u8>, RenderError> {
    // `--` first: the directory is positional whatever its name.
    let args = [Path::new("--").as_os_str(), dir.as_os_str()];
    if let Some(kustomize) = tools.find("kustomize") {
        let args = [Path::new("build").as_os_str()].into_iter().chain(args);
        return tools.run("kustomize build", &kustomize, args, workspace, offline);
    }
    if let Some(kubectl) = tools.find("kubectl") {
        let args = [Path::new("kustomize").as_os_str()].into_iter().chain(args);
        return tools.run("kubectl kustomize", &kubectl, args, workspace, offline);
    }
    Err(RenderError::ToolMissing {
        tool: "kustomize (or kubectl)".into(),
    })
}

/// Reads the kustomization of `app_dir` (a directory of the tree at `root`) and every local one it
/// loads, refusing references that leave the tree, and remote ones unless `allow_remote`.
fn check_references(root: &Path, app_dir: &Path, allow_remote: bool) -> Result<(), RenderError> {
    let start = match resolve(root, app_dir) {
        Ok(Resolved::Inside(dir)) => dir,
        _ => app_dir.to_path_buf(),
    };
    let mut pending = vec![start];
    let mut seen = BTreeSet::new();
    while let Some(dir) = pending.pop() {
        if !seen.insert(dir.clone()) {
            continue;
        }
        if seen.len() > MAX_KUSTOMIZATIONS {
            return Err(RenderError::Io {
                path: display(&dir),
                message: format!("more than {MAX_KUSTOMIZATIONS} kustomizations to build"),
            });
        }
        for file in KUSTOMIZATION_FILES {
            let path = dir.join(file);
            if root.join(&path).is_file() {
                let checked = Kustomization {
                    root,
                    dir: &dir,
                    file: display(&path),
                    allow_remote,
                };
                for document in read_kustomization(root, &path)? {
                    pending.extend(checked.local_directories(&document)?);
                }
            }
        }
    }
    Ok(())
}

fn read_kustomization(root: &Path, path: &Path) -> Result<Vec<Value>, RenderError> {
    let shown = display(path);
    let text = std::fs::read_to_string(root.join(path)).map_err(|e| RenderError::Io {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    manifests::parse_documents(&shown, &text)
}

/// Whether `key` is one of `fields`, as kustomize reads keys (Go's JSON decoding ignores case).
fn is_one_of(key: &str, fields: &[&str]) -> bool {
    fields.iter().any(|f| f.eq_ignore_ascii_case(key))
}

fn display(path: &Path) -> String {
    if path.as_os_str().is_empty() {
        ".".into()
    } else {
        path.display().to_string()
    }
}

/// One kustomization file being checked.
struct Kustomization<'a> {
    root: &'a Path,
    /// Its directory, relative to the tree's root.
    dir: &'a Path,
    /// Its path, as shown in errors.
    file: String,
    allow_remote: bool,
}

impl Kustomization<'_> {
    /// Checks `kustomization` and returns the directories of the tree it loads (to check next).
    fn local_directories(&self, kustomization: &Value) -> Result<Vec<PathBuf>, RenderError> {
        let Some(fields) = kustomization.as_object() else {
            return Ok(Vec::new());
        };
        let mut directories = Vec::new();
        for (field, value) in fields {
            if let (true, Some(entries)) = (is_one_of(field, &REFERENCE_FIELDS), value.as_array()) {
                for (i, entry) in entries.iter().enumerate() {
                    let at = format!("{field}[{i}]");
                    match entry.as_str() {
                        // Generators and transformers may be given inline, as YAML text.
                        Some(inline) if inline.contains('\n') => {
                            let config = manifests::parse_documents(&self.file, inline)?;
                            self.no_urls(&at, &Value::Array(config))?;
                        }
                        Some(reference) => directories.extend(self.reference(&at, reference)?),
                        None => self.no_urls(&at, entry)?,
                    }
                }
            } else if !is_one_of(field, &CONTENT_FIELDS) {
                self.no_urls(field, value)?;
            }
        }
        Ok(directories)
    }

    /// An entry of a [`REFERENCE_FIELDS`] field: a directory of the tree to check next, a file of
    /// the tree (nothing to do), or remote (what kustomize makes of anything else).
    fn reference(&self, field: &str, reference: &str) -> Result<Option<PathBuf>, RenderError> {
        // Kustomize tries these as remote first, whatever the tree holds at that path.
        if is_remote_target(reference) {
            return if self.allow_remote {
                Ok(None)
            } else {
                Err(self.remote(field, reference))
            };
        }
        let resolved = resolve(self.root, &self.dir.join(reference)).map_err(|e| match e {
            ResolveError::Loop => RenderError::SymlinkLoop {
                path: reference.to_string(),
            },
            ResolveError::Io(e) => RenderError::Io {
                path: reference.to_string(),
                message: e.to_string(),
            },
        })?;
        let in_tree = match resolved {
            Resolved::Inside(path) if self.root.join(&path).exists() => path,
            // Absolute or climbing out: kustomize would read the controller's disk, or another
            // repository's tree.
            Resolved::Outside => return Err(self.escape(field, reference)),
            // Not in the tree: kustomize would try it as a remote target.
            Resolved::Inside(_) if self.allow_remote => return Ok(None),
            Resolved::Inside(_) => return Err(self.remote(field, reference)),
        };
        Ok(self.root.join(&in_tree).is_dir().then_some(in_tree))
    }

    /// Refuses any URL in `value` (a field kustomize may load files of), unless remote loads are
    /// allowed.
    fn no_urls(&self, field: &str, value: &Value) -> Result<(), RenderError> {
        if self.allow_remote {
            return Ok(());
        }
        match value {
            Value::String(text) if is_url(text.trim()) => Err(self.remote(field, text)),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .try_for_each(|(i, item)| self.no_urls(&format!("{field}[{i}]"), item)),
            Value::Object(fields) => fields
                .iter()
                .filter(|(key, _)| !is_one_of(key, &CONTENT_FIELDS))
                .try_for_each(|(key, item)| self.no_urls(&format!("{field}.{key}"), item)),
            _ => Ok(()),
        }
    }

    fn remote(&self, field: &str, reference: &str) -> RenderError {
        RenderError::KustomizeRemote {
            kustomization: self.file.clone(),
            field: field.to_string(),
            reference: reference.to_string(),
        }
    }

    fn escape(&self, field: &str, reference: &str) -> RenderError {
        RenderError::KustomizeEscape {
            kustomization: self.file.clone(),
            field: field.to_string(),
            reference: reference.to_string(),
        }
    }
}

/// Whether kustomize reads `reference` as a remote target (its `NewRepoSpecFromURL`): a URL (any
/// scheme, `git::` forced or not), a `github.com/` or `github.com:` path, or scp-like `user@host:`.
fn is_remote_target(reference: &str) -> bool {
    let target = reference.strip_prefix("git::").unwrap_or(reference);
    let first = target.split('/').next().unwrap_or_default();
    is_url(target)
        || target.starts_with("github.com/")
        || target.starts_with("github.com:")
        || first.contains('@')
}

/// Whether `text` is a URL (`scheme://…`, also `git::https://…`): kustomize fetches those wherever
/// it loads a file.
fn is_url(text: &str) -> bool {
    let Some((scheme, _)) = text.split_once("://") else {
        return false;
    };
    let scheme = scheme.strip_prefix("git::").unwrap_or(scheme);
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// The overlay's `kustomization.yaml` (as JSON, which is YAML) applying `options` to the source path
/// (filled in by [`write_overlay`]); `None` when no option is set and the path is built as it is.
fn overlay_kustomization(options: &ApplicationSourceKustomize) -> Option<Map<String, Value>> {
    let mut k = Map::new();
    let mut set = |key: &str, value: Value| {
        k.insert(key.to_string(), value);
    };
    if let Some(prefix) = options.name_prefix.as_deref().filter(|s| !s.is_empty()) {
        set("namePrefix", json!(prefix));
    }
    if let Some(suffix) = options.name_suffix.as_deref().filter(|s| !s.is_empty()) {
        set("nameSuffix", json!(suffix));
    }
    if let Some(namespace) = options.namespace.as_deref().filter(|s| !s.is_empty()) {
        set("namespace", json!(namespace));
    }
    if !options.images.is_empty() {
        set(
            "images",
            Value::Array(options.images.iter().map(|i| image_override(i)).collect()),
        );
    }
    if !options.common_labels.is_empty() {
        // `commonLabels` (selectors included) in the form kustomize 5 no longer calls deprecated;
        // `labelWithoutSelector` leaves selectors (and, unless `labelIncludeTemplates`, pod
        // templates) alone, as Argo CD's `kustomize edit add label --without-selector`. The
        // overlay's labels win over the kustomization's own, which is what `forceCommonLabels`
        // asks for (without it Argo CD fails on a label the kustomization sets too).
        let mut labels = json!({"pairs": options.common_labels, "includeSelectors": true});
        if options.label_without_selector.unwrap_or(false) {
            labels["includeSelectors"] = json!(false);
            if options.label_include_templates.unwrap_or(false) {
                labels["includeTemplates"] = json!(true);
            }
        }
        set("labels", json!([labels]));
    }
    if !options.replicas.is_empty() {
        let replicas: Vec<Value> = options
            .replicas
            .iter()
            .map(|r| json!({"name": r.name, "count": replica_count(&r.count)}))
            .collect();
        set("replicas", Value::Array(replicas));
    }
    if !options.common_annotations.is_empty() {
        set("commonAnnotations", json!(options.common_annotations));
    }
    if k.is_empty() {
        return None;
    }
    k.insert(
        "apiVersion".into(),
        json!("kustomize.config.k8s.io/v1beta1"),
    );
    k.insert("kind".into(), json!("Kustomization"));
    Some(k)
}

/// A replica count as kustomize takes it: a number (Argo CD accepts a string of digits too; any
/// other string is passed on for kustomize to refuse).
fn replica_count(count: &IntOrString) -> Value {
    match count {
        IntOrString::Int(n) => json!(n),
        IntOrString::String(text) => text
            .trim()
            .parse::<i64>()
            .map_or_else(|_| json!(text), |n| json!(n)),
    }
}

/// How the Application's kustomize options are named in errors.
const OPTIONS: &str = "spec.source.kustomize";

/// Adds the Application's `components` and `patches` to the overlay (creating it when no other
/// option did). Both are written relative to the source path, as Argo CD takes them, and checked as
/// the kustomization's own references are: inside the tree, remote only when allowed. A component
/// missing from the tree fails the render unless `ignoreMissingComponents`; a patch `path` is read
/// and inlined (kustomize loads no file outside the overlay's directory).
fn add_components_and_patches(
    overlay: &mut Option<Map<String, Value>>,
    options: &ApplicationSourceKustomize,
    root: &Path,
    app_in_tree: &Path,
    allow_remote: bool,
) -> Result<(), RenderError> {
    let patches = options.patches.as_deref().unwrap_or_default();
    if options.components.is_empty() && patches.is_empty() {
        return Ok(());
    }
    let checker = Kustomization {
        root,
        dir: app_in_tree,
        file: OPTIONS.to_string(),
        allow_remote,
    };
    let from_overlay = Path::new("../tree").join(app_in_tree);
    let mut components = Vec::new();
    for (i, component) in options.components.iter().enumerate() {
        let field = format!("components[{i}]");
        if is_remote_target(component) {
            checker.reference(&field, component)?;
            components.push(json!(component));
            continue;
        }
        let missing = matches!(
            resolve(root, &app_in_tree.join(component)),
            Ok(Resolved::Inside(path)) if !root.join(&path).exists()
        );
        if missing && options.ignore_missing_components.unwrap_or(false) {
            continue;
        }
        if missing {
            return Err(RenderError::Io {
                path: format!("{OPTIONS}.{field}"),
                message: format!(
                    "component {component:?} is not in the repository (set ignoreMissingComponents to skip missing components)"
                ),
            });
        }
        if let Some(dir) = checker.reference(&field, component)? {
            check_references(root, &dir, allow_remote)?;
        }
        components.push(json!(from_overlay.join(component).display().to_string()));
    }
    let mut inlined = Vec::new();
    for (i, patch) in patches.iter().enumerate() {
        inlined.push(inline_patch(&checker, root, i, patch)?);
    }
    let k = overlay.get_or_insert_with(empty_kustomization);
    if !components.is_empty() {
        k.insert("components".into(), Value::Array(components));
    }
    if !inlined.is_empty() {
        k.insert("patches".into(), Value::Array(inlined));
    }
    Ok(())
}

/// One of the Application's `patches` as the overlay takes it: `patch`, `target` and `options` as
/// written, a `path` read from the tree into `patch`.
fn inline_patch(
    checker: &Kustomization<'_>,
    root: &Path,
    index: usize,
    patch: &Map<String, Value>,
) -> Result<Value, RenderError> {
    let field = format!("patches[{index}]");
    let invalid = |message: String| RenderError::Io {
        path: format!("{OPTIONS}.{field}"),
        message,
    };
    let mut out = Map::new();
    for (key, value) in patch {
        match key.as_str() {
            "patch" | "target" | "options" => {
                out.insert(key.clone(), value.clone());
            }
            "path" => {}
            other => return Err(invalid(format!("unknown field {other:?}"))),
        }
    }
    if let Some(path) = patch
        .get("path")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
    {
        if out.contains_key("patch") {
            return Err(invalid("set either patch or path, not both".into()));
        }
        if is_remote_target(path) {
            return Err(checker.remote(&format!("{field}.path"), path));
        }
        let file = match resolve(root, &checker.dir.join(path)) {
            Ok(Resolved::Inside(file)) => root.join(file),
            Ok(Resolved::Outside) => return Err(checker.escape(&format!("{field}.path"), path)),
            Err(_) => return Err(invalid(format!("path {path:?} cannot be read"))),
        };
        let text =
            std::fs::read_to_string(&file).map_err(|e| invalid(format!("path {path:?}: {e}")))?;
        out.insert("patch".into(), Value::String(text));
    }
    if !out.contains_key("patch") {
        return Err(invalid("a patch needs patch or path".into()));
    }
    Ok(Value::Object(out))
}

fn empty_kustomization() -> Map<String, Value> {
    let mut k = Map::new();
    k.insert(
        "apiVersion".into(),
        json!("kustomize.config.k8s.io/v1beta1"),
    );
    k.insert("kind".into(), json!("Kustomization"));
    k
}

/// Writes the overlay beside the tree in the workspace; its resource is `app_dir`, relative (kustomize
/// refuses absolute resource roots).
fn write_overlay(
    workspace: &Workspace,
    app_dir: &Path,
    mut kustomization: Map<String, Value>,
) -> Result<PathBuf, RenderError> {
    let io = |e: std::io::Error| RenderError::Io {
        path: "kustomize overlay".into(),
        message: e.to_string(),
    };
    let dir = workspace.path().join("overlay");
    std::fs::create_dir(&dir).map_err(io)?;
    let in_tree = app_dir
        .strip_prefix(workspace.tree())
        .unwrap_or(Path::new(""));
    let resource = Path::new("../tree").join(in_tree);
    kustomization.insert("resources".into(), json!([resource.display().to_string()]));
    let text = Value::Object(kustomization).to_string();
    std::fs::write(dir.join("kustomization.yaml"), text).map_err(io)?;
    Ok(dir)
}

/// `kustomize edit set image` syntax, `[name=]newName[:newTag][@digest]`, as a `images` entry.
fn image_override(spec: &str) -> Value {
    let (name, image) = match spec.split_once('=') {
        Some((name, image)) => (Some(name), image),
        None => (None, spec),
    };
    let (image, digest) = match image.split_once('@') {
        Some((image, digest)) => (image, Some(digest)),
        None => (image, None),
    };
    // A `:` after the last `/` starts the tag; one before it is a registry port.
    let tag_start = image
        .rfind(':')
        .filter(|&colon| image.rfind('/').is_none_or(|slash| colon > slash));
    let (new_name, tag) = match tag_start {
        Some(colon) => (&image[..colon], Some(&image[colon + 1..])),
        None => (image, None),
    };
    let mut entry = Map::new();
    entry.insert("name".into(), json!(name.unwrap_or(new_name)));
    if name.is_some_and(|n| n != new_name) && new_name != "*" {
        entry.insert("newName".into(), json!(new_name));
    }
    if let Some(tag) = tag {
        entry.insert("newTag".into(), json!(tag));
    }
    if let Some(digest) = digest {
        entry.insert("digest".into(), json!(digest));
    }
    Value::Object(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_overrides_parse_like_kustomize_edit_set_image() {
        let cases = [
            ("nginx:1.27", json!({"name": "nginx", "newTag": "1.27"})),
            (
                "nginx=nginx:1.27",
                json!({"name": "nginx", "newTag": "1.27"}),
            ),
            (
                "ghcr.io/example/shop=ghcr.io/example/shop:1.4.2",
                json!({"name": "ghcr.io/example/shop", "newTag": "1.4.2"}),
            ),
            (
                "nginx=registry.local:5000/mirror/nginx",
                json!({"name": "nginx", "newName": "registry.local:5000/mirror/nginx"}),
            ),
            (
                "app=registry.local:5000/app:v2@sha256:abc",
                json!({"name": "app", "newName": "registry.local:5000/app", "newTag": "v2", "digest": "sha256:abc"}),
            ),
            ("nginx=*:1.28", json!({"name": "nginx", "newTag": "1.28"})),
        ];
        for (spec, want) in cases {
            assert_eq!(image_override(spec), want, "{spec}");
        }
    }

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        dir
    }

    fn check(root: &tempfile::TempDir, app: &str, allow_remote: bool) -> Result<(), RenderError> {
        check_references(root.path(), Path::new(app), allow_remote)
    }

    const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n";

    #[test]
    fn local_references_inside_the_tree_pass() {
        let root = tree(&[
            ("base/kustomization.yaml", "resources: [cm.yaml]\n"),
            ("base/cm.yaml", CM),
            (
                "overlays/prod/kustomization.yaml",
                "resources: [../../base, ./extra.yaml]\ncomponents: [../../comp]\n\
                 commonAnnotations: {docs: 'https://example.com/runbook'}\n\
                 configMapGenerator: [{name: g, literals: ['URL=http://api.example.com']}]\n\
                 transformers:\n- |\n  apiVersion: builtin\n  kind: LabelTransformer\n  metadata: {name: x, annotations: {a: 'https://x'}}\n",
            ),
            ("overlays/prod/extra.yaml", CM),
            ("comp/kustomization.yaml", "kind: Component\n"),
        ]);
        check(&root, "overlays/prod", false).unwrap();
    }

    #[test]
    fn a_sibling_tree_or_any_path_outside_is_refused() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        for (reference, field) in [
            (format!("../{sha}/secret-app"), "resources[0]"),
            (
                "/var/run/secrets/kubernetes.io/serviceaccount".to_string(),
                "resources[0]",
            ),
            ("../../../etc".to_string(), "resources[0]"),
        ] {
            let root = tree(&[(
                "kustomization.yaml",
                &format!("resources: [{reference:?}]\n"),
            )]);
            let err = check(&root, "", false).unwrap_err();
            assert_eq!(
                err,
                RenderError::KustomizeEscape {
                    kustomization: "kustomization.yaml".into(),
                    field: field.into(),
                    reference: reference.clone(),
                }
            );
        }
        // Through a symlink chain of the tree.
        let root = tree(&[("a/b/kustomization.yaml", "bases: [up/../../x]\n")]);
        std::os::unix::fs::symlink("../..", root.path().join("a/b/up")).unwrap();
        let err = check(&root, "a/b", true).unwrap_err();
        assert!(matches!(err, RenderError::KustomizeEscape { .. }), "{err}");
    }

    #[test]
    fn remote_resources_are_refused_unless_allowed() {
        for reference in [
            "https://127.0.0.1:1/cm.yaml",
            "github.com/example/repo//deploy?ref=v1",
            "git@github.com:example/repo.git//deploy",
            "git::https://example.com/repo.git",
        ] {
            let root = tree(&[(
                "app/kustomization.yaml",
                &format!("resources: [cm.yaml, {reference:?}]\n"),
            )]);
            std::fs::write(root.path().join("app/cm.yaml"), CM).unwrap();
            let err = check(&root, "app", false).unwrap_err();
            assert_eq!(
                err,
                RenderError::KustomizeRemote {
                    kustomization: "app/kustomization.yaml".into(),
                    field: "resources[1]".into(),
                    reference: reference.into(),
                },
            );
            assert!(err.to_string().contains("--kustomize-remote"), "{err}");
            check(&root, "app", true).unwrap();
        }
    }

    #[test]
    fn urls_in_fields_kustomize_loads_files_of_are_refused() {
        for (kustomization, field) in [
            (
                "configMapGenerator: [{name: g, files: ['http://127.0.0.1:1/token']}]",
                "configMapGenerator[0].files[0]",
            ),
            (
                "patches: [{path: 'https://example.com/p.yaml'}]",
                "patches[0].path",
            ),
            (
                "patchesStrategicMerge: ['http://169.254.169.254/latest']",
                "patchesStrategicMerge[0]",
            ),
            ("openapi: {path: 'https://x/schema.json'}", "openapi.path"),
            ("Resources: ['https://x/cm.yaml']", "Resources[0]"),
            (
                "transformers:\n- |\n  apiVersion: builtin\n  kind: PatchTransformer\n  metadata: {name: p}\n  path: https://x/p.yaml\n",
                "transformers[0][0].path",
            ),
        ] {
            let root = tree(&[("kustomization.yaml", kustomization)]);
            let err = check(&root, "", false).unwrap_err();
            assert!(
                matches!(&err, RenderError::KustomizeRemote { field: f, .. } if f == field),
                "{kustomization}: {err}"
            );
            check(&root, "", true).unwrap();
        }
    }

    #[test]
    fn kustomizations_loaded_from_the_tree_are_checked_too() {
        let root = tree(&[
            ("overlay/kustomization.yaml", "resources: [../base]\n"),
            (
                "base/Kustomization",
                "resources: ['https://127.0.0.1:1/x.yaml']\n",
            ),
        ]);
        let err = check(&root, "overlay", false).unwrap_err();
        assert!(
            matches!(&err, RenderError::KustomizeRemote { kustomization, .. } if kustomization == "base/Kustomization"),
            "{err}"
        );
        // A directory of the tree named like a remote target is fetched by kustomize, not read.
        let root = tree(&[
            (
                "app/kustomization.yaml",
                "resources: [github.com/evil/repo]\n",
            ),
            (
                "app/github.com/evil/repo/kustomization.yaml",
                "resources: []\n",
            ),
        ]);
        let err = check(&root, "app", false).unwrap_err();
        assert!(matches!(err, RenderError::KustomizeRemote { .. }), "{err}");
        // A loop of kustomizations is checked once each (kustomize itself reports the cycle).
        let root = tree(&[
            ("a/kustomization.yaml", "resources: [../b]\n"),
            ("b/kustomization.yaml", "resources: [../a]\n"),
        ]);
        check(&root, "a", false).unwrap();
    }

    #[test]
    fn the_overlay_lives_beside_the_tree() {
        let root = tree(&[("apps/web/kustomization.yaml", "resources: []\n")]);
        let workspace = Workspace::with_copy_of(root.path()).unwrap();
        let options = ApplicationSourceKustomize {
            name_prefix: Some("prod-".into()),
            ..Default::default()
        };
        let dir = write_overlay(
            &workspace,
            &workspace.tree().join("apps/web"),
            overlay_kustomization(&options).unwrap(),
        )
        .unwrap();
        assert_eq!(dir, workspace.path().join("overlay"));
        let written: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap())
                .unwrap();
        assert_eq!(written["resources"], json!(["../tree/apps/web"]));
        assert!(dir.join("../tree/apps/web/kustomization.yaml").is_file());
    }

    #[test]
    fn overlay_only_when_an_option_is_set() {
        assert_eq!(
            overlay_kustomization(&ApplicationSourceKustomize::default()),
            None
        );
        let options = ApplicationSourceKustomize {
            name_prefix: Some("prod-".into()),
            namespace: Some("shop".into()),
            common_labels: [("team".to_string(), "shop".to_string())].into(),
            ..Default::default()
        };
        let overlay = Value::Object(overlay_kustomization(&options).unwrap());
        assert_eq!(
            overlay,
            json!({
                "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                "namePrefix": "prod-", "namespace": "shop",
                "labels": [{"pairs": {"team": "shop"}, "includeSelectors": true}]
            })
        );
    }

    #[test]
    fn replicas_and_label_placement_go_into_the_overlay() {
        let options: ApplicationSourceKustomize = serde_json::from_value(json!({
            "commonLabels": {"team": "shop"}, "labelWithoutSelector": true,
            "labelIncludeTemplates": true, "forceCommonLabels": true,
            "replicas": [{"name": "web", "count": 3}, {"name": "worker", "count": "2"}]
        }))
        .unwrap();
        let overlay = Value::Object(overlay_kustomization(&options).unwrap());
        assert_eq!(
            overlay["labels"],
            json!([{"pairs": {"team": "shop"}, "includeSelectors": false, "includeTemplates": true}])
        );
        assert_eq!(
            overlay["replicas"],
            json!([{"name": "web", "count": 3}, {"name": "worker", "count": 2}])
        );
        let without_templates: ApplicationSourceKustomize = serde_json::from_value(json!({
            "commonLabels": {"team": "shop"}, "labelWithoutSelector": true
        }))
        .unwrap();
        assert_eq!(
            overlay_kustomization(&without_templates).unwrap()["labels"],
            json!([{"pairs": {"team": "shop"}, "includeSelectors": false}])
        );
    }

    fn options(v: Value) -> ApplicationSourceKustomize {
        serde_json::from_value(v).unwrap()
    }

    fn components_and_patches(
        root: &tempfile::TempDir,
        v: Value,
    ) -> Result<Option<Map<String, Value>>, RenderError> {
        let mut overlay = None;
        add_components_and_patches(
            &mut overlay,
            &options(v),
            root.path(),
            Path::new("apps/web"),
            false,
        )?;
        Ok(overlay)
    }

    #[test]
    fn components_and_patches_are_checked_and_go_into_the_overlay() {
        let root = tree(&[
            (
                "apps/web/kustomization.yaml",
                "resources: [deployment.yaml]\n",
            ),
            ("apps/web/deployment.yaml", "kind: Deployment\n"),
            ("apps/web/patch.yaml", "- op: add\n  path: /x\n  value: 1\n"),
            (
                "components/monitoring/kustomization.yaml",
                "kind: Component\nresources: [monitor.yaml]\n",
            ),
            (
                "components/monitoring/monitor.yaml",
                "kind: ServiceMonitor\n",
            ),
            (
                "components/leaky/kustomization.yaml",
                "kind: Component\nresources: [../../../x]\n",
            ),
        ]);
        let overlay = components_and_patches(
            &root,
            json!({"components": ["../../components/monitoring"],
                   "patches": [{"path": "patch.yaml", "target": {"kind": "Deployment"}},
                               {"patch": "inline", "options": {"allowNameChange": true}}]}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            Value::Object(overlay),
            json!({
                "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                "components": ["../tree/apps/web/../../components/monitoring"],
                "patches": [
                    {"patch": "- op: add\n  path: /x\n  value: 1\n", "target": {"kind": "Deployment"}},
                    {"patch": "inline", "options": {"allowNameChange": true}}
                ]
            })
        );

        let missing = json!({"components": ["../../components/none"]});
        let err = components_and_patches(&root, missing)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("components[0]") && err.contains("ignoreMissingComponents"),
            "{err}"
        );
        let skipped = components_and_patches(
            &root,
            json!({"components": ["../../components/none"], "ignoreMissingComponents": true}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(skipped.get("components"), None);

        for (bad, why) in [
            (
                json!({"components": ["../../../etc"]}),
                "leads outside the repository",
            ),
            (
                json!({"components": ["../../components/leaky"]}),
                "leads outside the repository",
            ),
            (
                json!({"components": ["https://github.com/x/y//c"]}),
                "remote Kustomize resources are refused",
            ),
            (
                json!({"patches": [{"path": "../../../etc/passwd"}]}),
                "leads outside the repository",
            ),
            (
                json!({"patches": [{"path": "https://example.com/p.yaml"}]}),
                "remote Kustomize resources are refused",
            ),
            (
                json!({"patches": [{"path": "patch.yaml", "patch": "x"}]}),
                "not both",
            ),
            (
                json!({"patches": [{"target": {"kind": "Deployment"}}]}),
                "needs patch or path",
            ),
            (
                json!({"patches": [{"patch": "x", "bogus": 1}]}),
                "unknown field",
            ),
        ] {
            let err = components_and_patches(&root, bad.clone())
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert_eq!(components_and_patches(&root, json!({})).unwrap(), None);
    }
}
