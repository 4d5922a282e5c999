//! `render` on trees written to a temporary directory (plain directories; Helm and Kustomize with the
//! real tools are in `tests/gitops_source_e2e.rs`).

use serde_json::json;
use tempfile::TempDir;

use super::*;

fn tree(files: &[(&str, &str)]) -> TempDir {
    let dir = TempDir::new().unwrap();
    for (path, content) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    dir
}

fn source(v: serde_json::Value) -> ApplicationSource {
    let mut v = v;
    v["repoURL"] = json!("https://git.example.com/shop.git");
    serde_json::from_value(v).unwrap()
}

fn ctx() -> RenderContext {
    RenderContext {
        app_name: "shop".into(),
        namespace: "prod".into(),
    }
}

fn cm(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n")
}

fn names(rendered: &Rendered) -> Vec<String> {
    rendered
        .objects
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

fn app_tree() -> TempDir {
    tree(&[
        ("app/b.yaml", &cm("b")),
        ("app/a.yml", &format!("{}---\n{}", cm("a1"), cm("a2"))),
        (
            "app/c.json",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}"#,
        ),
        ("app/README.md", "# not a manifest\n"),
        ("app/values.yaml", "replicas: 3\n"),
        ("app/sub/d.yaml", &cm("d")),
        ("app/sub/deeper/e.yaml", &cm("e")),
        ("app/zz/f.yaml", &cm("f")),
        ("other/x.yaml", &cm("x")),
    ])
}

#[test]
fn directory_in_file_order() {
    let root = app_tree();
    let rendered = render(root.path(), &source(json!({"path": "app"})), &ctx()).unwrap();
    assert_eq!(rendered.source_type, ApplicationSourceType::Directory);
    assert_eq!(names(&rendered), ["a1", "a2", "b", "c"]);
}

#[test]
fn directory_recurse_include_exclude() {
    let root = app_tree();
    let cases = [
        (
            json!({"recurse": true}),
            vec!["a1", "a2", "b", "c", "d", "e", "f"],
        ),
        (
            json!({"recurse": true, "exclude": "sub/*"}),
            vec!["a1", "a2", "b", "c", "f"],
        ),
        (
            json!({"recurse": true, "include": "*.yaml"}),
            vec!["b", "d", "e", "f"],
        ),
        (
            json!({"recurse": true, "include": "{b.yaml,c.json}"}),
            vec!["b", "c"],
        ),
        (
            json!({"recurse": true, "include": "sub/**", "exclude": "*e.yaml"}),
            vec!["d"],
        ),
        (json!({"recurse": false, "include": "sub/*"}), vec![]),
    ];
    for (directory, want) in cases {
        let src = source(json!({"path": "app", "directory": directory.clone()}));
        let rendered = render(root.path(), &src, &ctx()).unwrap();
        assert_eq!(names(&rendered), want, "{directory}");
    }
}

#[test]
fn invalid_glob_is_an_error() {
    let root = app_tree();
    let src = source(json!({"path": "app", "directory": {"include": "{a,"}}));
    let err = render(root.path(), &src, &ctx()).unwrap_err();
    assert!(
        matches!(
            err,
            RenderError::Glob {
                field: "include",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn invalid_yaml_fails_the_whole_render_naming_file_and_line() {
    let root = tree(&[
        ("app/a.yaml", &cm("a")),
        (
            "app/b.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [b\n",
        ),
        ("app/c.yaml", &cm("c")),
    ]);
    let err = render(root.path(), &source(json!({"path": "app"})), &ctx()).unwrap_err();
    let RenderError::Yaml { file, line, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(file, "app/b.yaml");
    assert!((4..=5).contains(line), "{err}");
    let text = err.to_string();
    assert!(!text.contains(&root.path().display().to_string()), "{text}");
}

#[test]
fn source_type_detection_as_argo_cd() {
    let root = tree(&[
        ("helm/Chart.yaml", "name: x\n"),
        ("kust/kustomization.yaml", "resources: []\n"),
        ("kust2/Kustomization", "resources: []\n"),
        ("plain/a.yaml", &cm("a")),
    ]);
    let detect = |path: &str, extra: serde_json::Value| {
        let mut v = json!({"path": path});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        detect_source_type(&root.path().join(path), &source(v))
    };
    use ApplicationSourceType::*;
    assert_eq!(detect("helm", json!({})), Helm);
    assert_eq!(detect("kust", json!({})), Kustomize);
    assert_eq!(detect("kust2", json!({})), Kustomize);
    assert_eq!(detect("plain", json!({})), Directory);
    // An explicit block wins over the files.
    assert_eq!(detect("helm", json!({"directory": {}})), Directory);
    assert_eq!(detect("plain", json!({"kustomize": {}})), Kustomize);
    assert_eq!(detect("kust", json!({"helm": {}})), Helm);
}

#[test]
fn paths_leaving_the_repository_are_refused() {
    let outside = tree(&[("secret.yaml", &cm("stolen"))]);
    let root = tree(&[("app/a.yaml", &cm("a"))]);
    std::os::unix::fs::symlink(outside.path(), root.path().join("link")).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.yaml"),
        root.path().join("app/leak.yaml"),
    )
    .unwrap();
    for path in ["..", "app/../..", "/etc", "link"] {
        let err = render(root.path(), &source(json!({"path": path})), &ctx()).unwrap_err();
        assert_eq!(err, RenderError::PathEscape { path: path.into() }, "{path}");
    }
    // Any symlink leading out of the tree refuses every render of it, the first one named.
    let err = render(root.path(), &source(json!({"path": "app"})), &ctx()).unwrap_err();
    assert_eq!(
        err,
        RenderError::SymlinkEscape {
            path: "app/leak.yaml".into(),
            target: outside.path().join("secret.yaml").display().to_string(),
        }
    );
    let err = render(root.path(), &source(json!({"path": "nope"})), &ctx()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "path \"nope\" does not exist in the repository"
    );
}

#[test]
fn default_path_is_the_repository_root() {
    let root = tree(&[("a.yaml", &cm("a")), ("sub/b.yaml", &cm("b"))]);
    for path in [json!(null), json!(""), json!("."), json!("./")] {
        let rendered = render(root.path(), &source(json!({"path": path})), &ctx()).unwrap();
        assert_eq!(names(&rendered), ["a"], "{path}");
    }
}

#[test]
fn directory_extension_filter_and_jsonnet_files() {
    let root = tree(&[
        ("app/a.yaml", &cm("a")),
        ("app/extra.txt", &cm("txt")),
        ("app/Manifest", &cm("bare")),
        ("app/lib/x.jsonnet", "{}"),
    ]);
    let render_with = |directory: serde_json::Value| {
        let src = source(json!({"path": "app", "directory": directory}));
        render(root.path(), &src, &ctx())
    };
    let names_of = |directory: serde_json::Value| names(&render_with(directory).unwrap());
    assert_eq!(names_of(json!({})), ["a"]);
    assert_eq!(
        names_of(json!({"disableExtensionFilter": true})),
        ["bare", "a", "txt"]
    );
    assert_eq!(
        names_of(json!({"disableExtensionFilter": true, "include": "*.txt"})),
        ["txt"]
    );
    let err = render_with(json!({"recurse": true}))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("app/lib/x.jsonnet") && err.contains("Jsonnet is not rendered"),
        "{err}"
    );
    assert_eq!(
        names_of(json!({"recurse": true, "exclude": "**.jsonnet"})),
        ["a"]
    );
}
