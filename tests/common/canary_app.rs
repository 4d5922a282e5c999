//! The canary app of the revert loop's tests (docs/behaviour.md L1-L6): an Application syncing two
//! Services, an HTTPRoute, the success-rate AnalysisTemplate and a canary Rollout from the local
//! git server, and readers of the Rollout and of the bare repository.

use std::path::{Path, PathBuf};
use std::process::Command;

use kube::Api;
use serde_json::{Value, json};
use sluice::api::rollout::{RevertPhase, Rollout, RolloutPhase};

use super::gitops::{GitRepo, GitopsHarness, TIMEOUT};
use super::rollouts::{observed_current, phase, success_rate_template};
use super::{E2eEnv, wait_for};

pub const APP: &str = "demo";

pub fn manifest(value: Value) -> String {
    value.to_string()
}

/// The app's files: the two Services, the HTTPRoute, the success-rate template (measured every 2 s
/// after 10 s, twice) and the Rollout running `image`.
pub fn app_files(ns: &str, image: &str) -> Vec<(String, String)> {
    app_files_labelled(ns, image, json!({}))
}

/// As [`app_files`], with `labels` on the Rollout's metadata (not its pod template, so no new
/// revision; but the same line of `app/rollout.yaml`, which is one JSON line).
pub fn app_files_labelled(ns: &str, image: &str, labels: Value) -> Vec<(String, String)> {
    app_files_with(ns, image, labels, &success_rate_template(2, |_| ()))
}

/// As [`app_files_labelled`], with `template` as the AnalysisTemplate.
pub fn app_files_with(
    ns: &str,
    image: &str,
    labels: Value,
    template: &Value,
) -> Vec<(String, String)> {
    app_files_with_args(ns, image, labels, template, &[])
}

/// As [`app_files_with`], with `extra_args` (`(name, value)`) given to the analysis step too.
pub fn app_files_with_args(
    ns: &str,
    image: &str,
    labels: Value,
    template: &Value,
    extra_args: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut args = json!([
        {"name": "namespace", "value": ns},
        {"name": "rollout", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "revision", "valueFrom": {"podTemplateHashValue": "Latest"}},
        {"name": "window", "value": "10s"}
    ]);
    if let Some(list) = args.as_array_mut() {
        list.extend(
            extra_args
                .iter()
                .map(|(name, value)| json!({"name": name, "value": value})),
        );
    }
    let service = |name: &str| {
        manifest(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
        )
    };
    let route = manifest(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "web"},
        "spec": {"parentRefs": [{"name": "gateway"}], "rules": [{"backendRefs": [
            {"name": "web-stable", "port": 80, "weight": 100},
            {"name": "web-canary", "port": 80, "weight": 0}
        ]}]}
    }));
    let rollout = manifest(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "labels": labels},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "web", "image": image}]}},
            "strategy": {"canary": {
                "stableService": "web-stable", "canaryService": "web-canary",
                "trafficRouting": {"plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": "web"}}},
                "steps": [
                    {"setWeight": 20},
                    {"analysis": {"templates": [{"templateName": "success-rate"}], "args": args}}
                ]
            }}
        }
    }));
    vec![
        ("app/stable-service.yaml".into(), service("web-stable")),
        ("app/canary-service.yaml".into(), service("web-canary")),
        ("app/route.yaml".into(), route),
        ("app/template.yaml".into(), manifest(template.clone())),
        ("app/rollout.yaml".into(), rollout),
    ]
}

pub fn commit(repo: &GitRepo, message: &str, files: &[(String, String)]) -> String {
    let changes: Vec<(&str, Option<&str>)> = files
        .iter()
        .map(|(path, content)| (path.as_str(), Some(content.as_str())))
        .collect();
    repo.commit(message, &changes)
}

/// The bare repository behind `repo`'s URL, for `git log`.
pub fn git_dir(h: &GitopsHarness, repo: &GitRepo) -> PathBuf {
    bare_dir(&h.env, repo)
}

/// The bare repository behind `repo`'s URL on the local Git server of `env`.
pub fn bare_dir(env: &E2eEnv, repo: &GitRepo) -> PathBuf {
    let name = repo.url.rsplit('/').next().expect("repository name");
    PathBuf::from(env.get("GIT_ROOT")).join(name)
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg(format!("--git-dir={}", dir.display()))
        .args(args)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub async fn wait_rollout(
    h: &GitopsHarness,
    what: &str,
    check: impl Fn(&Rollout) -> bool,
) -> Rollout {
    let api: Api<Rollout> = Api::namespaced(h.client.clone(), &h.ns.name);
    wait_for(what, TIMEOUT, || async {
        let r = api.get_opt("web").await.ok()??;
        check(&r).then_some(r)
    })
    .await
}

pub fn healthy(r: &Rollout) -> bool {
    observed_current(r) && phase(r) == Some(RolloutPhase::Healthy)
}

pub fn stable_rs(r: &Rollout) -> Option<String> {
    r.status.as_ref()?.stable_rs.clone()
}

pub fn revert_phase(r: &Rollout) -> Option<RevertPhase> {
    Some(r.status.as_ref()?.revert.as_ref()?.phase)
}

/// An Application syncing the demo app at 1.0, Healthy; returns the repo and the stable hash.
pub async fn app_at_v1(h: &GitopsHarness, prefix: &str) -> (GitRepo, String) {
    app_at_v1_with(h, prefix, &success_rate_template(2, |_| ()), json!({})).await
}

/// As [`app_at_v1`], with `template` as the AnalysisTemplate and `rollback` as the Application's
/// `syncPolicy.rollback`.
pub async fn app_at_v1_with(
    h: &GitopsHarness,
    prefix: &str,
    template: &Value,
    rollback: Value,
) -> (GitRepo, String) {
    let repo = GitRepo::create(&h.env, prefix);
    let files = app_files_with(&h.ns.name, "example/web:1.0", json!({}), template);
    let v1 = commit(&repo, "web v1", &files);
    h.create_app(
        APP,
        &repo,
        "app",
        json!({"syncPolicy": {"automated": {"prune": true, "selfHeal": true},
                              "rollback": rollback}}),
    )
    .await;
    h.wait_synced(APP, &v1).await;
    let blue = stable_rs(&wait_rollout(h, "v1 Healthy", healthy).await).expect("stable");
    (repo, blue)
}

/// Waits until the Application is Synced at `sha`, whatever its health (a canary is Progressing).
pub async fn synced_at(h: &GitopsHarness, sha: &str) {
    h.wait_app(APP, &format!("Synced at {sha}"), |a| {
        super::gitops::sync_status(a) == sluice::api::application::SyncStatusCode::Synced
            && super::gitops::revision(a).as_deref() == Some(sha)
    })
    .await;
}

/// Commits whose message carries `Sluice-Reverts: <sha>` on main.
pub fn reverts_of(dir: &Path, sha: &str) -> usize {
    git(
        dir,
        &[
            "log",
            "--format=%H",
            &format!("--grep=Sluice-Reverts: {sha}"),
            "main",
        ],
    )
    .lines()
    .count()
}
