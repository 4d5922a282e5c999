//! A Kustomize overlay, built by `kustomize build` (preferred) or `kubectl kustomize`.
//!
//! The source's `kustomize` options (name prefix/suffix, images, common labels/annotations, namespace)
//! are applied by a generated overlay in a temporary directory whose only resource is the source path,
//! so the shared checked-out tree is never written (Argo CD runs `kustomize edit` in its own copy).

use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Value, json};
use tempfile::TempDir;

use super::{RenderError, Tools, display_path, manifests};
use crate::api::application::ApplicationSourceKustomize;

pub(super) fn render(
    root: &Path,
    app_dir: &Path,
    options: Option<&ApplicationSourceKustomize>,
    tools: &Tools,
) -> Result<Vec<Value>, RenderError> {
    let overlay = match options.map(overlay_kustomization) {
        Some(Some(kustomization)) => Some(write_overlay(app_dir, &kustomization)?),
        _ => None,
    };
    let target = overlay.as_ref().map_or(app_dir, TempDir::path);
    let output = build(tools, target, root)?;
    let name = format!("{} (kustomize output)", display_path(root, app_dir));
    let text = String::from_utf8(output).map_err(|e| RenderError::Io {
        path: name.clone(),
        message: e.to_string(),
    })?;
    manifests::parse_yaml(&name, &text)
}

fn build(tools: &Tools, dir: &Path, root: &Path) -> Result<Vec<u8>, RenderError> {
    if let Some(kustomize) = tools.find("kustomize") {
        let args = [Path::new("build").as_os_str(), dir.as_os_str()];
        return tools.run("kustomize build", &kustomize, args, dir, root);
    }
    if let Some(kubectl) = tools.find("kubectl") {
        let args = [Path::new("kustomize").as_os_str(), dir.as_os_str()];
        return tools.run("kubectl kustomize", &kubectl, args, dir, root);
    }
    Err(RenderError::ToolMissing {
        tool: "kustomize (or kubectl)".into(),
    })
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
        // `commonLabels` (selectors included) in the form kustomize 5 no longer calls deprecated.
        set(
            "labels",
            json!([{"pairs": options.common_labels, "includeSelectors": true}]),
        );
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

fn write_overlay(
    app_dir: &Path,
    kustomization: &Map<String, Value>,
) -> Result<TempDir, RenderError> {
    let io = |e: std::io::Error| RenderError::Io {
        path: "kustomize overlay".into(),
        message: e.to_string(),
    };
    let dir = tempfile::Builder::new()
        .prefix("sluice-kustomize-")
        .tempdir()
        .map_err(io)?;
    let mut kustomization = kustomization.clone();
    let resource = relative_to(dir.path(), app_dir).map_err(io)?;
    kustomization.insert("resources".into(), json!([resource.display().to_string()]));
    let text = Value::Object(kustomization).to_string();
    std::fs::write(dir.path().join("kustomization.yaml"), text).map_err(io)?;
    Ok(dir)
}

/// `target` as a path relative to `from` (kustomize refuses absolute resource roots): up to the
/// filesystem root, then down to the target.
fn relative_to(from: &Path, target: &Path) -> std::io::Result<PathBuf> {
    let (from, target) = (from.canonicalize()?, target.canonicalize()?);
    let mut relative = PathBuf::new();
    for _ in from
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
    {
        relative.push("..");
    }
    for component in target.components() {
        if let Component::Normal(part) = component {
            relative.push(part);
        }
    }
    Ok(relative)
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

    #[test]
    fn relative_paths_climb_to_the_root() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let rel = relative_to(a.path(), b.path()).unwrap();
        assert!(
            rel.is_relative() && rel.starts_with(".."),
            "{}",
            rel.display()
        );
        assert_eq!(
            a.path().join(&rel).canonicalize().unwrap(),
            b.path().canonicalize().unwrap()
        );
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
}
