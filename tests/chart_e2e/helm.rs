//! Runs the real `helm` (the local cluster's, from `e2e/.run/env`) on `charts/sluice` and parses what it
//! renders.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::E2eEnv;

pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn chart_dir() -> PathBuf {
    repo_dir().join("charts/sluice")
}

/// `helm <args>` with the e2e environment's PATH (helm, kubectl) and KUBECONFIG.
pub fn helm(env: &E2eEnv, args: &[&str]) -> Output {
    Command::new("helm")
        .args(args)
        .env("PATH", env.get("PATH"))
        .env("KUBECONFIG", env.get("KUBECONFIG"))
        .output()
        .expect("run helm (on the PATH of e2e/.run/env)")
}

/// Fails the test with helm's output unless it succeeded; returns stdout.
pub fn success(what: &str, output: Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    stdout
}

/// `--set` arguments from `key=value` pairs.
fn set_args(values: &[&str]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| ["--set".into(), v.to_string()])
        .collect()
}

/// `helm template` of the chart as release `release` in namespace `namespace`, with `--set` values.
pub fn template(namespace: &str, values: &[&str], extra: &[&str]) -> Vec<Value> {
    let env = E2eEnv::load();
    let chart = chart_dir();
    let mut args: Vec<String> = vec![
        "template".into(),
        "rel".into(),
        chart.display().to_string(),
        "--namespace".into(),
        namespace.into(),
    ];
    args.extend(set_args(values));
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = success("helm template", helm(&env, &args));
    documents(&out)
}

/// `helm install` of the chart into `namespace` (which exists), with `--set` values.
pub fn install(env: &E2eEnv, release: &str, namespace: &str, values: &[&str]) {
    let chart = chart_dir();
    let mut args: Vec<String> = vec![
        "install".into(),
        release.into(),
        chart.display().to_string(),
        "--namespace".into(),
        namespace.into(),
    ];
    args.extend(set_args(values));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    success("helm install", helm(env, &args));
}

pub fn uninstall(env: &E2eEnv, release: &str, namespace: &str) {
    success(
        "helm uninstall",
        helm(
            env,
            &["uninstall", release, "--namespace", namespace, "--wait"],
        ),
    );
}

/// The non-empty documents of a multi-document YAML stream, as JSON.
pub fn documents(yaml: &str) -> Vec<Value> {
    yaml.split("\n---")
        .map(|doc| doc.trim_start_matches("---"))
        .filter(|doc| {
            doc.lines()
                .any(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
        })
        .map(|doc| {
            serde_saphyr::from_str::<Value>(doc)
                .unwrap_or_else(|e| panic!("rendered YAML does not parse: {e}\n{doc}"))
        })
        .collect()
}

/// The rendered objects of `kind`.
pub fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// The one rendered object of `kind`.
pub fn only<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found = of_kind(objects, kind);
    assert_eq!(
        found.len(),
        1,
        "expected one {kind}, rendered {}",
        found.len()
    );
    found[0]
}
