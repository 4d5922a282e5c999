//! Table tests of the generators, from Argo CD's documented examples.

use super::*;
use serde_json::json;

fn generator(value: Value) -> ApplicationSetGenerator {
    serde_json::from_value(value).unwrap()
}

fn sets(value: Value) -> Vec<ParamSet> {
    serde_json::from_value(value).unwrap()
}

const FAST: Dialect = Dialect::Fast;
const GO: Dialect = Dialect::Go {
    missing_key_error: false,
};

const REPO: &str = "https://github.com/argoproj/argo-cd.git";

/// Argo's example repository `applicationset/examples/git-generator-directory`.
fn sources() -> Sources {
    let mut git = BTreeMap::new();
    git.insert(
        GitQuery {
            repo_url: REPO.into(),
            revision: "HEAD".into(),
            files: vec![],
        },
        Ok(GitData {
            sha: "a".repeat(40),
            directories: [
                "applicationset",
                "applicationset/examples",
                "applicationset/examples/git-generator-directory",
                "applicationset/examples/git-generator-directory/cluster-addons",
                "applicationset/examples/git-generator-directory/cluster-addons/argo-workflows",
                "applicationset/examples/git-generator-directory/cluster-addons/prometheus-operator",
                "applicationset/examples/git-generator-directory/cluster-addons/prometheus-operator/crds",
            ]
            .map(String::from)
            .to_vec(),
            files: vec![],
        }),
    );
    git.insert(
        GitQuery {
            repo_url: REPO.into(),
            revision: "HEAD".into(),
            files: vec![(
                "applicationset/examples/git-generator-files-discovery/cluster-config/**/config.json"
                    .into(),
                false,
            )],
        },
        Ok(GitData {
            sha: "b".repeat(40),
            directories: vec![],
            files: vec![
                (
                    "applicationset/examples/git-generator-files-discovery/cluster-config/engineering/dev/config.json".into(),
                    r#"{"aws_account": "123456", "asset_id": "11223344",
                        "cluster": {"owner": "cluster-admin@company.com", "name": "engineering-dev",
                                    "address": "https://1.2.3.4"}}"#.into(),
                ),
                (
                    "applicationset/examples/git-generator-files-discovery/cluster-config/engineering/prod/config.json".into(),
                    "aws_account: \"123456\"\ncluster:\n  name: engineering-prod\n  address: https://2.4.6.8\n".into(),
                ),
            ],
        }),
    );
    Sources {
        clusters: vec![
            Cluster {
                name: "staging".into(),
                server: "https://1.2.3.4".into(),
                labels: [("env".into(), "staging".into())].into(),
                ..Cluster::default()
            },
            Cluster {
                name: "Production_1".into(),
                server: "https://5.6.7.8".into(),
                project: Some("team".into()),
                labels: [("env".into(), "prod".into())].into(),
                annotations: [("owner".into(), "ops".into())].into(),
            },
        ],
        git,
    }
}

fn run(g: Value, dialect: Dialect) -> Result<Vec<ParamSet>, GenerateError> {
    let sources = sources();
    let mut generation = Generation::new(&sources, dialect);
    let out = generation.generate(&generator(g), "spec.generators[0]", 0);
    assert!(generation.missing.is_empty(), "{:?}", generation.missing);
    out
}

#[test]
fn list_generator_flat_and_nested() {
    let g = json!({"list": {"elements": [
        {"cluster": "engineering-dev", "url": "https://1.2.3.4", "values": {"ns": "dev"}},
        {"cluster": "engineering-prod", "url": "https://2.4.6.8"}]}});
    assert_eq!(
        run(g.clone(), FAST).unwrap(),
        sets(json!([
            {"cluster": "engineering-dev", "url": "https://1.2.3.4", "values.ns": "dev"},
            {"cluster": "engineering-prod", "url": "https://2.4.6.8"}]))
    );
    assert_eq!(run(g, GO).unwrap()[0]["values"], json!({"ns": "dev"}));
    let yaml = json!({"list": {"elementsYaml": "- a: x\n- a: z\n"}});
    assert_eq!(
        run(yaml, FAST).unwrap(),
        sets(json!([{"a": "x"}, {"a": "z"}]))
    );
}

#[test]
fn cluster_generator_with_in_cluster_selector_and_values() {
    let all = run(json!({"clusters": {}}), FAST).unwrap();
    let names: Vec<&str> = all.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["in-cluster", "staging", "Production_1"]);
    assert_eq!(all[0]["server"], "https://kubernetes.default.svc");
    assert_eq!(all[2]["nameNormalized"], "production-1");
    assert_eq!(all[2]["metadata.labels.env"], "prod");
    assert_eq!(all[2]["metadata.annotations.owner"], "ops");
    assert_eq!(all[2]["project"], "team");

    let prod = run(
        json!({"clusters": {"selector": {"matchLabels": {"env": "prod"}},
                            "values": {"revision": "release-{{name}}"}}}),
        FAST,
    )
    .unwrap();
    assert_eq!(
        prod.len(),
        1,
        "the selector leaves the implicit in-cluster out"
    );
    assert_eq!(prod[0]["values.revision"], "release-Production_1");

    let go = run(
        json!({"clusters": {"selector": {"matchExpressions": [{"key": "env", "operator": "In", "values": ["staging"]}]},
                            "values": {"x": "{{ .metadata.labels.env }}"}}}),
        GO,
    )
    .unwrap();
    assert_eq!(go.len(), 1);
    assert_eq!(go[0]["metadata"]["labels"]["env"], "staging");
    assert_eq!(go[0]["values"]["x"], "staging");
}

#[test]
fn git_directories_with_exclude() {
    let g = json!({"git": {"repoURL": REPO, "revision": "HEAD", "directories": [
        {"path": "applicationset/examples/git-generator-directory/cluster-addons/*"},
        {"path": "applicationset/examples/git-generator-directory/cluster-addons/argo-workflows", "exclude": true}]}});
    let out = run(g.clone(), FAST).unwrap();
    assert_eq!(out.len(), 1, "{out:?}");
    let set = &out[0];
    assert_eq!(
        set["path"],
        "applicationset/examples/git-generator-directory/cluster-addons/prometheus-operator"
    );
    assert_eq!(set["path.basename"], "prometheus-operator");
    assert_eq!(set["path.basenameNormalized"], "prometheus-operator");
    assert_eq!(set["path[0]"], "applicationset");
    assert_eq!(set["path[4]"], "prometheus-operator");

    let go = run(g, GO).unwrap();
    assert_eq!(go[0]["path"]["basename"], "prometheus-operator");
    assert_eq!(go[0]["path"]["segments"][3], "cluster-addons");
}

#[test]
fn git_directories_path_param_prefix_and_values() {
    let g = json!({"git": {"repoURL": REPO, "pathParamPrefix": "myRepo",
        "directories": [{"path": "applicationset/examples/git-generator-directory/cluster-addons/argo-*"}],
        "values": {"ns": "{{myRepo.path.basename}}-ns"}}});
    let out = run(g, FAST).unwrap();
    assert_eq!(out[0]["myRepo.path.basename"], "argo-workflows");
    assert_eq!(out[0]["values.ns"], "argo-workflows-ns");
}

#[test]
fn git_files_flattened_and_nested() {
    let g = json!({"git": {"repoURL": REPO, "revision": "HEAD", "files": [
        {"path": "applicationset/examples/git-generator-files-discovery/cluster-config/**/config.json"}]}});
    let out = run(g.clone(), FAST).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0]["cluster.name"], "engineering-dev");
    assert_eq!(out[0]["cluster.address"], "https://1.2.3.4");
    assert_eq!(out[0]["path.basename"], "dev");
    assert_eq!(out[0]["path.filename"], "config.json");
    assert_eq!(
        out[0]["path"],
        "applicationset/examples/git-generator-files-discovery/cluster-config/engineering/dev"
    );
    assert_eq!(out[1]["cluster.name"], "engineering-prod", "YAML files too");
    let go = run(g, GO).unwrap();
    assert_eq!(go[1]["cluster"]["address"], "https://2.4.6.8");
    assert_eq!(go[1]["path"]["filename"], "config.json");
}

#[test]
fn an_unread_tree_is_reported_missing_not_failed() {
    let sources = Sources::default();
    let mut generation = Generation::new(&sources, FAST);
    let out = generation
        .generate(
            &generator(
                json!({"git": {"repoURL": "https://x/y.git", "directories": [{"path": "*"}]}}),
            ),
            "p",
            0,
        )
        .unwrap();
    assert!(out.is_empty());
    assert_eq!(generation.missing.len(), 1);
}

#[test]
fn matrix_of_git_directories_and_list_uses_the_first_generators_params() {
    // Argo's "matrix: git × list" example, with the list reading the git generator's parameters.
    let g = json!({"matrix": {"generators": [
        {"git": {"repoURL": REPO, "revision": "HEAD",
                 "directories": [{"path": "applicationset/examples/git-generator-directory/cluster-addons/*"}]}},
        {"list": {"elements": [{"cluster": "dev", "app": "{{path.basename}}"},
                               {"cluster": "prod", "app": "{{path.basename}}"}]}}]}});
    let out = run(g, FAST).unwrap();
    assert_eq!(out.len(), 4);
    let pairs: Vec<(String, String)> = out
        .iter()
        .map(|s| {
            (
                s["app"].as_str().unwrap().to_string(),
                s["cluster"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        [
            ("argo-workflows", "dev"),
            ("argo-workflows", "prod"),
            ("prometheus-operator", "dev"),
            ("prometheus-operator", "prod")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    assert_eq!(out[0]["path.basename"], "argo-workflows");
}

#[test]
fn matrix_of_clusters_and_git_go_template() {
    let g = json!({"matrix": {"generators": [
        {"clusters": {"selector": {"matchLabels": {"env": "staging"}}}},
        {"git": {"repoURL": REPO, "directories": [{"path": "applicationset/examples/git-generator-directory/cluster-addons/*"}]}}]}});
    let out = run(g, GO).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[1]["name"], "staging");
    assert_eq!(out[1]["path"]["basename"], "prometheus-operator");
}

#[test]
fn matrix_refuses_conflicting_flat_keys_and_wrong_arity() {
    let conflict = json!({"matrix": {"generators": [
        {"list": {"elements": [{"a": "1"}]}}, {"list": {"elements": [{"a": "2"}]}}]}});
    let err = run(conflict, FAST).unwrap_err().to_string();
    assert!(err.contains("duplicate key a"), "{err}");
    let one = json!({"matrix": {"generators": [{"list": {"elements": []}}]}});
    assert!(
        run(one, FAST)
            .unwrap_err()
            .to_string()
            .contains("exactly 2")
    );
}

#[test]
fn nested_matrix_in_matrix_is_read_from_its_json() {
    let g = json!({"matrix": {"generators": [
        {"list": {"elements": [{"a": "1"}, {"a": "2"}]}},
        {"matrix": {"generators": [{"list": {"elements": [{"b": "x"}]}},
                                   {"list": {"elements": [{"c": "y"}, {"c": "z"}]}}]}}]}});
    let out = run(g, FAST).unwrap();
    assert_eq!(out.len(), 4);
    assert_eq!(out[3], sets(json!([{"a": "2", "b": "x", "c": "z"}]))[0]);
    let plugin = json!({"matrix": {"generators": [
        {"list": {"elements": [{"a": "1"}]}},
        {"matrix": {"generators": [{"plugin": {"configMapRef": {"name": "p"}}},
                                   {"list": {"elements": []}}]}}]}});
    assert_eq!(
        run(plugin, FAST).unwrap_err(),
        GenerateError::Unsupported {
            path: "spec.generators[0].matrix.generators[1].matrix.generators[0].plugin".into()
        }
    );
}

#[test]
fn merge_overrides_base_sets_by_key() {
    // Argo's merge example: all clusters, with the staging one's values overridden.
    let g = json!({"merge": {"mergeKeys": ["server"], "generators": [
        {"clusters": {"values": {"kafka": "true", "redis": "false"}}},
        {"clusters": {"selector": {"matchLabels": {"env": "staging"}}, "values": {"kafka": "false"}}},
        {"list": {"elements": [{"server": "https://kubernetes.default.svc", "values.redis": "true"}]}}]}});
    let out = run(g, FAST).unwrap();
    assert_eq!(out.len(), 3);
    let by_name: BTreeMap<&str, &ParamSet> = out
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s))
        .collect();
    assert_eq!(by_name["in-cluster"]["values.redis"], "true");
    assert_eq!(by_name["in-cluster"]["values.kafka"], "true");
    assert_eq!(by_name["staging"]["values.kafka"], "false");
    assert_eq!(by_name["Production_1"]["values.kafka"], "true");
}

#[test]
fn merge_go_template_merges_deeply() {
    let g = json!({"merge": {"mergeKeys": ["name"], "generators": [
        {"list": {"elements": [{"name": "a", "values": {"x": "1", "y": "1"}}]}},
        {"list": {"elements": [{"name": "a", "values": {"y": "2"}}]}}]}});
    let out = run(g, GO).unwrap();
    assert_eq!(out[0]["values"], json!({"x": "1", "y": "2"}));
}

#[test]
fn generator_selector_filters_parameter_sets() {
    let g = json!({"list": {"elements": [{"env": "dev"}, {"env": "prod"}]},
                   "selector": {"matchLabels": {"env": "prod"}}});
    assert_eq!(run(g, FAST).unwrap(), sets(json!([{"env": "prod"}])));
}

#[test]
fn refusals_name_the_path() {
    let cases = [
        (
            json!({"pullRequest": {}}),
            "spec.generators[0].pullRequest is not supported",
        ),
        (
            json!({"clusters": {"flatList": true}}),
            "spec.generators[0].clusters.flatList",
        ),
        (json!({}), "exactly one generator"),
        (
            json!({"list": {"elements": []}, "clusters": {}}),
            "exactly one generator",
        ),
        (
            json!({"list": {"elements": ["x"]}}),
            "spec.generators[0].list.elements[0]",
        ),
        (
            json!({"git": {"repoURL": REPO, "directories": [{"path": "a"}], "files": [{"path": "b"}]}}),
            "exactly one of directories and files",
        ),
    ];
    for (g, want) in cases {
        let err = run(g.clone(), FAST).unwrap_err().to_string();
        assert!(err.contains(want), "{g}: {err}");
    }
}

#[test]
fn too_many_sets_are_refused() {
    let elements: Vec<Value> = (0..40).map(|i| json!({"a": i.to_string()})).collect();
    let b: Vec<Value> = (0..40).map(|i| json!({"b": i.to_string()})).collect();
    let g = json!({"matrix": {"generators": [{"list": {"elements": elements}}, {"list": {"elements": b}}]}});
    assert!(matches!(run(g, FAST), Err(GenerateError::TooMany { .. })));
}

#[test]
fn path_matcher_globs() {
    let m = PathMatcher::new(&[("apps/*".into(), false), ("apps/skip".into(), true)]).unwrap();
    assert!(m.matches("apps/a"));
    assert!(!m.matches("apps/skip"));
    assert!(!m.matches("apps/a/b"), "* stays within a segment");
    assert!(!m.matches("other"));
}
