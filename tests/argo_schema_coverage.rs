//! Every field of Argo Rollouts' Rollout, AnalysisTemplate and AnalysisRun specs is in Sluice's CRD
//! schemas (typed, or under a preserved node), so the API server never prunes a field an Argo user
//! wrote: Sluice either honours it or refuses the object naming it (`sluice::api::unsupported`).
//! The path lists in `tests/fixtures/argo/` were read from Argo's CRDs.

use serde_json::Value;

fn schema_of(crd_file: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crds")
        .join(crd_file);
    let text = std::fs::read_to_string(&path).unwrap();
    let crd: Value = serde_saphyr::from_str(&text).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn argo_paths(file: &str) -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/argo")
        .join(file);
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

fn preserved(node: &Value) -> bool {
    node["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true)
}

/// Whether `path` (`spec.a[].b{}.c`) is in the schema, or below a node that keeps unknown fields.
fn covered(root: &Value, path: &str) -> bool {
    let mut node = root;
    for segment in path.split('.') {
        if preserved(node) {
            return true;
        }
        let (key, suffixes) = match segment.find(['[', '{']) {
            Some(at) => (&segment[..at], &segment[at..]),
            None => (segment, ""),
        };
        node = &node["properties"][key];
        if node.is_null() {
            return false;
        }
        for suffix in [suffixes] {
            let mut rest = suffix;
            while !rest.is_empty() {
                if preserved(node) {
                    return true;
                }
                node = if let Some(r) = rest.strip_prefix("[]") {
                    rest = r;
                    &node["items"]
                } else if let Some(r) = rest.strip_prefix("{}") {
                    rest = r;
                    &node["additionalProperties"]
                } else {
                    return false;
                };
                if node.is_null() {
                    return false;
                }
            }
        }
    }
    true
}

fn assert_covers(crd_file: &str, paths_file: &str) {
    assert_covers_at_least(crd_file, paths_file, 100);
}

/// [`assert_covers`] for a list known to hold more than `min` paths (so an empty read fails).
fn assert_covers_at_least(crd_file: &str, paths_file: &str, min: usize) {
    let schema = schema_of(crd_file);
    let paths = argo_paths(paths_file);
    assert!(paths.len() > min, "{paths_file}: {} paths", paths.len());
    let missing: Vec<&String> = paths.iter().filter(|p| !covered(&schema, p)).collect();
    assert!(
        missing.is_empty(),
        "{crd_file} would prune these Argo fields: {missing:#?}"
    );
}

#[test]
fn the_rollout_schema_keeps_every_argo_rollout_field() {
    assert_covers("rollout.yaml", "rollout-spec-paths.txt");
}

#[test]
fn the_analysis_template_schemas_keep_every_argo_template_field() {
    assert_covers("analysistemplate.yaml", "analysistemplate-spec-paths.txt");
    assert_covers(
        "clusteranalysistemplate.yaml",
        "analysistemplate-spec-paths.txt",
    );
}

#[test]
fn the_analysis_run_schema_keeps_every_argo_run_field() {
    assert_covers("analysisrun.yaml", "analysisrun-spec-paths.txt");
}

#[test]
fn the_experiment_schema_keeps_every_argo_experiment_field() {
    assert_covers_at_least("experiment.yaml", "experiment-spec-paths.txt", 30);
}

#[test]
fn a_field_missing_from_the_schema_is_found() {
    let schema = schema_of("rollout.yaml");
    assert!(covered(&schema, "spec.strategy.canary.steps[].setWeight"));
    assert!(covered(
        &schema,
        "spec.strategy.canary.trafficRouting.istio.virtualService.name"
    ));
    assert!(!covered(&schema, "spec.strategy.canary.steps[].setWieght"));
    assert!(!covered(&schema, "spec.strategy.canary.noSuchField"));
}
