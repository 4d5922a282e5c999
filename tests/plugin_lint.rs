//! `kubectl sluice lint`: problems reported at their lines, and no false alarms on valid manifests.

use pretty_assertions::assert_eq;
use sluice::plugin::lint::lint;

const INVALID: &str = include_str!("fixtures/plugin/lint-invalid.yaml");

#[test]
fn every_mistake_is_reported_at_its_line() {
    let report = lint(INVALID);
    assert_eq!(
        report.render("lint-invalid.yaml"),
        r#"lint-invalid.yaml:9: Rollout "web": apiVersion is argoproj.io/v1alpha1: change it to sluice.dev/v1alpha1
lint-invalid.yaml:26: Rollout "web": spec.template.spec.containers[web].resources.requests.memory: invalid quantity "lots"
lint-invalid.yaml:31: Rollout "web": spec.strategy.canary.steps[1].setWieght: unknown field
lint-invalid.yaml:31: Rollout "web": spec.strategy.canary.steps[1]: a step sets exactly one of setWeight, pause, setCanaryScale and analysis
lint-invalid.yaml:43: AnalysisTemplate "success-rate": spec.metrics[0].interval: invalid duration "5x" (expected e.g. 30s, 5m, 1h)
lint-invalid.yaml:44: AnalysisTemplate "success-rate": spec.metrics[0].successCondition: "result[0] >=" is not a valid expression (column 13: expected conditional_if, negation_op, sign_op, value, array, map, or ident)
lint-invalid.yaml:47: AnalysisTemplate "success-rate": spec.metrics[0].provider.prometheus.query: {{args.namespace}} is not declared in spec.args
lint-invalid.yaml:48: AnalysisTemplate "success-rate": spec.metrics[1]: metric name "success-rate" is used twice
lint-invalid.yaml:50: AnalysisTemplate "success-rate": spec.metrics[1].provider: set one provider: prometheus, scrape, web or job
lint-invalid.yaml:57: Rollout "typed": spec.replicas: invalid i32
lint-invalid.yaml: 3 objects checked, 10 problems
"#
    );
}

#[test]
fn valid_fixtures_and_shipped_templates_have_no_findings() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = [
        "tests/fixtures/rollout/canary-replicas.yaml",
        "tests/fixtures/rollout/canary-gatewayapi.yaml",
        "tests/fixtures/rollout/canary-nginx.yaml",
        "tests/fixtures/rollout/bluegreen-analysis.yaml",
        "tests/fixtures/rollout/workloadref.yaml",
        "tests/fixtures/rollout/canary-status.yaml",
        "tests/fixtures/analysis/success-rate-template.yaml",
        "tests/fixtures/analysis/error-rate-cluster-template.yaml",
        "tests/fixtures/analysis/web-template.yaml",
        "tests/fixtures/plugin/canary-paused.yaml",
        "analysis-templates/success-rate.yaml",
        "analysis-templates/error-rate.yaml",
        "analysis-templates/latency-p95.yaml",
        "analysis-templates/latency-p99.yaml",
    ];
    for file in files {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let report = lint(&text);
        assert_eq!(report.findings, vec![], "{file}");
        assert!(report.checked >= 1, "{file}: nothing checked");
    }
}

#[test]
fn a_yaml_syntax_error_is_reported_at_its_line() {
    let text = "apiVersion: sluice.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: web\n spec: [\n";
    let report = lint(text);
    assert_eq!(report.findings.len(), 1, "{report:?}");
    let finding = &report.findings[0];
    assert!(
        (4..=5).contains(&finding.line),
        "line {} for {}",
        finding.line,
        finding.message
    );
    assert_eq!(finding.object, "document 1");
}

#[test]
fn argo_fields_sluice_does_not_implement_are_reported_at_their_lines_as_the_controller_does() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let rollout =
        std::fs::read_to_string(dir.join("tests/fixtures/rollout/argo-unimplemented.yaml"))
            .unwrap();
    let found: Vec<(u64, String)> = lint(&rollout)
        .findings
        .into_iter()
        .map(|f| (f.line, f.message))
        .collect();
    let not_supported = |path: &str| {
        format!("{path} is not supported by Sluice (an Argo field it does not implement)")
    };
    let mut expected: Vec<(u64, String)> = [(
        68,
        "spec.strategy.canary.steps[3].experiment.templates[1].weight",
    )]
    .into_iter()
    .map(|(line, path)| (line, not_supported(path)))
    .collect();
    // Header and mirror routes are implemented, but not for Istio: the first such step says so.
    expected.insert(
        0,
        (
            49,
            "spec.strategy.canary.steps[1]: setHeaderRoute is implemented for the argoproj-labs/gatewayAPI plugin and nginx only".to_string(),
        ),
    );
    assert_eq!(found, expected);

    let template =
        std::fs::read_to_string(dir.join("tests/fixtures/analysis/argo-providers-template.yaml"))
            .unwrap();
    let found: Vec<(u64, String)> = lint(&template)
        .findings
        .into_iter()
        .map(|f| (f.line, f.message))
        .collect();
    // `spec.templates` (composition) and the job provider are implemented: only Datadog is reported.
    let expected: Vec<(u64, String)> = [(32, "spec.metrics[1].provider.datadog")]
        .into_iter()
        .map(|(line, path)| (line, not_supported(path)))
        .collect();
    assert_eq!(found, expected);
}

#[test]
fn reserved_pod_metadata_is_reported_at_its_field() {
    let text = "apiVersion: sluice.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n  strategy:\n    canary:\n      canaryMetadata:\n        labels:\n          rollouts-pod-template-hash: x\n";
    let report = lint(text);
    assert_eq!(report.findings.len(), 1, "{report:?}");
    let finding = &report.findings[0];
    assert!(
        finding
            .message
            .contains("spec.strategy.canary.canaryMetadata.labels"),
        "{finding:?}"
    );
    assert!(finding.line >= 13, "{finding:?}");
}

#[test]
fn an_experiment_is_linted_for_unknown_fields_and_its_duration() {
    let text = "\
apiVersion: sluice.dev/v1alpha1
kind: Experiment
metadata:
  name: compare
spec:
  duration: 5 minutes
  templates:
    - name: canary
      selector:
        matchLabels: {app: web}
      template:
        metadata:
          labels: {app: web}
      serviceName: canary-svc
";
    let report = lint(text);
    assert_eq!(report.checked, 1, "{report:?}");
    let found: Vec<(u64, String)> = report
        .findings
        .into_iter()
        .map(|f| (f.line, f.message))
        .collect();
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].0, 6);
    assert!(found[0].1.starts_with("spec.duration:"), "{found:?}");
    assert_eq!(
        found[1],
        (
            14,
            "spec.templates[0].serviceName: unknown field".to_string()
        )
    );
}
