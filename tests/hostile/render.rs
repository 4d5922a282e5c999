//! Attacks on rendering; see tests/hostile_e2e.rs. Each one asserts that the controller stays up
//! and that the attack ends in nothing but a clear refusal (an API-server refusal naming the field,
//! or a ComparisonError condition naming what was refused), with nothing applied.

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use git2::build::TreeUpdateBuilder;
use git2::{FileMode, Repository, Signature};
use kube::api::{ListParams, PostParams};
use serde_json::{Value, json};
use sluice::api::application::Application;

use crate::common::E2eEnv;
use crate::common::gitops::{GitRepo, GitopsHarness, condition, config_map};

const COMPARISON_ERROR: &str = "ComparisonError";

/// A chart whose ConfigMap shows what it was given: the value `t` and the file `leak` of the chart.
fn chart(name: &str) -> Vec<(String, String)> {
    vec![
        (
            format!("{name}/Chart.yaml"),
            "apiVersion: v2\nname: probe\nversion: 0.1.0\n".into(),
        ),
        (format!("{name}/values.yaml"), "t: none\n".into()),
        (
            format!("{name}/templates/cm.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-probe\ndata:\n  t: {{ .Values.t | quote }}\n  leak: {{ .Files.Get \"leak\" | quote }}\n".into(),
        ),
    ]
}

/// Commits `files` and `symlinks` (path → target) on `main` of the served repository `repo`, as a
/// push would; returns the sha.
fn commit_with_symlinks(
    env: &E2eEnv,
    repo: &GitRepo,
    files: &[(String, String)],
    symlinks: &[(String, String)],
) -> String {
    let name = repo.url.rsplit('/').next().expect("repository name");
    let git = Repository::open_bare(Path::new(env.get("GIT_ROOT")).join(name)).expect("open");
    let parent = git
        .find_reference("refs/heads/main")
        .ok()
        .and_then(|r| r.peel_to_commit().ok());
    let base = match &parent {
        Some(commit) => commit.tree().expect("tree"),
        None => {
            let empty = git.treebuilder(None).unwrap().write().unwrap();
            git.find_tree(empty).unwrap()
        }
    };
    let mut update = TreeUpdateBuilder::new();
    for (path, content) in files {
        update.upsert(path, git.blob(content.as_bytes()).unwrap(), FileMode::Blob);
    }
    for (path, target) in symlinks {
        update.upsert(path, git.blob(target.as_bytes()).unwrap(), FileMode::Link);
    }
    let tree = git
        .find_tree(update.create_updated(&git, &base).expect("tree"))
        .unwrap();
    let sig = Signature::now("E2E", "e2e@localhost").unwrap();
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    git.commit(
        Some("refs/heads/main"),
        &sig,
        &sig,
        "attack",
        &tree,
        &parents,
    )
    .expect("commit")
    .to_string()
}

/// Waits for the Application's ComparisonError containing every one of `parts`; returns it.
async fn wait_refused(h: &GitopsHarness, app: &str, parts: &[&str]) -> String {
    let found = h
        .wait_app(app, &format!("a ComparisonError saying {parts:?}"), |a| {
            condition(a, COMPARISON_ERROR).is_some_and(|m| parts.iter().all(|p| m.contains(p)))
        })
        .await;
    condition(&found, COMPARISON_ERROR).expect("condition")
}

/// The controller still runs and answers: its process has not exited and it still leads.
async fn assert_controller_up(h: &mut GitopsHarness) {
    assert!(
        h.controller.child.try_wait().expect("wait").is_none(),
        "the controller exited; log:\n{}",
        h.controller_log()
    );
    assert_eq!(h.controller.metric("sluice_leader").await, Some(1.0));
}

/// Names of the ConfigMaps in the test namespace, but the one Kubernetes puts in every namespace.
async fn config_map_names(h: &GitopsHarness) -> Vec<String> {
    h.config_maps()
        .list(&ListParams::default())
        .await
        .expect("list ConfigMaps")
        .items
        .into_iter()
        .filter_map(|cm| cm.metadata.name)
        .filter(|n| n != "kube-root-ca.crt")
        .collect()
}

/// The Application's resources as its status lists them (what it applied or would apply).
async fn status_resources(h: &GitopsHarness, app: &str) -> Vec<Value> {
    let app = h.apps().get(app).await.expect("application");
    let status = serde_json::to_value(app.status).expect("status");
    status["resources"].as_array().cloned().unwrap_or_default()
}

fn automated() -> Value {
    json!({"automated": {"prune": true, "selfHeal": true}})
}

/// A TCP server on 127.0.0.1 that counts the connections it is sent (and answers none).
struct Tripwire {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl Tripwire {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("address").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                counter.fetch_add(1, Ordering::SeqCst);
                let mut stream = stream;
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request);
            }
        });
        Self { port, connections }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    fn requests(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn a_flag_as_helm_release_name_never_reaches_helm() {
    let mut h = GitopsHarness::start("hostile-render-release", "2s").await;
    let repo = GitRepo::create(&h.env, "hostile-render-release");
    let files = chart("chart");
    let changes: Vec<(&str, Option<&str>)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), Some(c.as_str())))
        .collect();
    repo.commit("chart", &changes);

    // The attack: the token would land in the ConfigMap.
    let injected = "--set-file=t=/var/run/secrets/kubernetes.io/serviceaccount/token";
    for release in [injected, "--post-renderer=/bin/sh", "Shop_1"] {
        let app: Application = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Application",
            "metadata": {"name": "injected"},
            "spec": {
                "source": {"repoURL": repo.url, "targetRevision": "main", "path": "chart",
                           "helm": {"releaseName": release}},
                "destination": {"namespace": h.ns.name},
                "syncPolicy": automated(),
            }
        }))
        .expect("application");
        let refused = h
            .apps()
            .create(&PostParams::default(), &app)
            .await
            .expect_err("the API server refuses the release name");
        let message = refused.to_string();
        assert!(
            message.contains("spec.source.helm.releaseName"),
            "{release}: {message}"
        );
    }

    // The default release name (the Application's name) may be a valid Kubernetes name Helm
    // refuses (longer than 53): refused before helm runs, with a condition saying what to set.
    let long_name = format!("a{}", "-x".repeat(30));
    h.create_app(
        &long_name,
        &repo,
        "chart",
        json!({"source": {"helm": {}}, "syncPolicy": automated()}),
    )
    .await;
    wait_refused(&h, &long_name, &["helm release name", "helm.releaseName"]).await;

    // A parameter is a value, never a flag: it renders literally.
    h.create_app(
        "literal",
        &repo,
        "chart",
        json!({"source": {"helm": {"parameters": [{"name": "t", "value": "--set-file=t=/etc/hostname"}]}},
               "syncPolicy": automated()}),
    )
    .await;
    let rendered = crate::common::wait_for(
        "ConfigMap literal-probe",
        crate::common::gitops::TIMEOUT,
        || async {
            let cm = h.config_maps().get_opt("literal-probe").await.ok()??;
            cm.data?.get("t").cloned()
        },
    )
    .await;
    assert_eq!(rendered, "--set-file=t=/etc/hostname");

    assert_eq!(config_map_names(&h).await, ["literal-probe"]);
    assert!(status_resources(&h, &long_name).await.is_empty());
    assert_controller_up(&mut h).await;
}

#[tokio::test]
async fn a_symlink_chain_out_of_the_tree_is_refused() {
    let mut h = GitopsHarness::start("hostile-render-symlink", "2s").await;
    let repo = GitRepo::create(&h.env, "hostile-render-symlink");
    // `d1/…/d20/up` climbs back to the tree's root, lexically fine; `k` climbs 20 more levels
    // through it (to `/`) while looking, lexically, like `d1/etc/hostname`; the chart's `leak`
    // reaches it through a path that is lexically inside too.
    let deep: String = (1..=20).map(|i| format!("d{i}/")).collect();
    let up = "../".repeat(20);
    let symlinks = [
        (format!("{deep}up"), up.trim_end_matches('/').to_string()),
        (format!("{deep}k"), format!("up/{up}etc/hostname")),
        ("chart/leak".to_string(), format!("../{deep}k")),
    ];
    let mut files = chart("chart");
    files.push(("plain/cm.yaml".into(), config_map("plain", "1")));
    commit_with_symlinks(&h.env, &repo, &files, &symlinks);

    h.create_app("chain", &repo, "chart", json!({"syncPolicy": automated()}))
        .await;
    let message = wait_refused(
        &h,
        "chain",
        &["symlink \"chart/leak\"", "leads outside the repository"],
    )
    .await;
    assert!(
        !message.contains("/trees/"),
        "the cache path leaks: {message}"
    );
    // Any source of the repository is refused, not only the chart that uses the link.
    h.create_app("plain", &repo, "plain", json!({"syncPolicy": automated()}))
        .await;
    wait_refused(&h, "plain", &["symlink \"chart/leak\""]).await;

    assert!(config_map_names(&h).await.is_empty());
    assert!(status_resources(&h, "chain").await.is_empty());
    assert_controller_up(&mut h).await;
}

#[tokio::test]
async fn another_repositorys_tree_is_out_of_reach() {
    let mut h = GitopsHarness::start("hostile-render-sibling", "2s").await;
    // A victim Application, synced: its tree is in the controller's cache at `trees/<sha>`.
    let victim = GitRepo::create(&h.env, "hostile-render-victim");
    let victim_sha = victim.commit(
        "secret",
        &[(
            "secret-app/cm.yaml",
            Some(&config_map("victim-secret", "s3cr3t")),
        )],
    );
    h.create_app(
        "victim",
        &victim,
        "secret-app",
        json!({"syncPolicy": automated()}),
    )
    .await;
    h.wait_config("victim-secret", Some("s3cr3t")).await;

    // The attacker's overlay names the victim's tree beside its own.
    let attacker = GitRepo::create(&h.env, "hostile-render-attacker");
    let sibling = format!("../{victim_sha}/secret-app");
    attacker.commit(
        "steal",
        &[(
            "kustomization.yaml",
            Some(&format!("namePrefix: stolen-\nresources: [{sibling:?}]\n")),
        )],
    );
    h.create_app(
        "attacker",
        &attacker,
        ".",
        json!({"syncPolicy": automated()}),
    )
    .await;
    wait_refused(
        &h,
        "attacker",
        &[
            "kustomization.yaml",
            "resources[0]",
            &sibling,
            "leads outside the repository",
        ],
    )
    .await;

    assert_eq!(config_map_names(&h).await, ["victim-secret"]);
    assert!(status_resources(&h, "attacker").await.is_empty());
    assert_controller_up(&mut h).await;
}

#[tokio::test]
async fn remote_value_files_and_resources_are_never_fetched() {
    let mut h = GitopsHarness::start("hostile-render-remote", "2s").await;
    let tripwire = Tripwire::start();
    let repo = GitRepo::create(&h.env, "hostile-render-remote");
    let mut files = chart("chart");
    files.push((
        "remote-resource/kustomization.yaml".into(),
        format!("resources: [{:?}]\n", tripwire.url("cm.yaml")),
    ));
    files.push((
        "remote-file/kustomization.yaml".into(),
        format!(
            "configMapGenerator: [{{name: fetched, files: [{:?}]}}]\n",
            tripwire.url("token")
        ),
    ));
    // A chart whose values schema refers to a URL: helm would fetch it while validating.
    files.extend(chart("schema-chart"));
    files.push((
        "schema-chart/values.schema.json".into(),
        json!({"type": "object", "properties": {"t": {"$ref": tripwire.url("schema.json")}}})
            .to_string(),
    ));
    // A legitimate overlay of the same repository still renders, options applied.
    files.push((
        "base/kustomization.yaml".into(),
        "resources: [cm.yaml]\n".into(),
    ));
    files.push(("base/cm.yaml".into(), config_map("local", "1")));
    files.push((
        "overlay/kustomization.yaml".into(),
        "resources: [../base]\n".into(),
    ));
    let changes: Vec<(&str, Option<&str>)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), Some(c.as_str())))
        .collect();
    repo.commit("remote", &changes);
    h.create_app(
        "overlay",
        &repo,
        "overlay",
        json!({"source": {"kustomize": {"namePrefix": "ok-"}}, "syncPolicy": automated()}),
    )
    .await;

    let values_url = tripwire.url("values.yaml");
    h.create_app(
        "values",
        &repo,
        "chart",
        json!({"source": {"helm": {"valueFiles": [values_url]}}, "syncPolicy": automated()}),
    )
    .await;
    h.create_app(
        "schema",
        &repo,
        "schema-chart",
        json!({"syncPolicy": automated()}),
    )
    .await;
    h.create_app(
        "resource",
        &repo,
        "remote-resource",
        json!({"syncPolicy": automated()}),
    )
    .await;
    h.create_app(
        "generator",
        &repo,
        "remote-file",
        json!({"syncPolicy": automated()}),
    )
    .await;
    wait_refused(&h, "values", &[&values_url, "--helm-value-schemes=http"]).await;
    wait_refused(
        &h,
        "schema",
        &[
            "schema-chart/values.schema.json",
            &tripwire.url("schema.json"),
        ],
    )
    .await;
    wait_refused(
        &h,
        "resource",
        &[
            &tripwire.url("cm.yaml"),
            "resources[0]",
            "--kustomize-remote",
        ],
    )
    .await;
    wait_refused(
        &h,
        "generator",
        &[
            &tripwire.url("token"),
            "configMapGenerator[0].files[0]",
            "--kustomize-remote",
        ],
    )
    .await;

    h.wait_config("ok-local", Some("1")).await;

    assert_eq!(tripwire.requests(), 0, "the controller fetched a URL");
    assert_eq!(config_map_names(&h).await, ["ok-local"]);
    for app in ["values", "schema", "resource", "generator"] {
        assert!(status_resources(&h, app).await.is_empty(), "{app}");
    }
    assert_controller_up(&mut h).await;
}
