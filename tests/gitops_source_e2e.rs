//! GitOps sources against real servers and tools: repositories fetched from the local git daemon
//! (`$GIT_BASE_URL`, git://), from a private smart-HTTP server with a token and from a private sshd
//! with a key; Helm charts and Kustomize overlays rendered by the real `helm` and `kubectl kustomize`
//! of the cluster's PATH.
//! Needs `e2e/cluster/up` (for the env file, the git daemon and the tools).

mod common;
#[path = "gitops_source_e2e/http_git.rs"]
mod http_git;
#[path = "gitops_source_e2e/ssh_git.rs"]
mod ssh_git;

use std::path::Path;
use std::sync::atomic::Ordering;

use git2::build::TreeUpdateBuilder;
use git2::{FileMode, Oid, Repository, Signature};
use serde_json::{Value, json};
use tempfile::TempDir;

use common::E2eEnv;
use sluice::api::application::{ApplicationSource, ApplicationSourceType};
use sluice::gitops::credentials::Credentials;
use sluice::gitops::render::{RenderCache, RenderContext, RenderError, Rendered, Tools};
use sluice::gitops::source::{GitLimits, GitRequestMetrics, RepoCache, SourceError};

/// A poll tick ago: any fetch since then will do.
fn a_tick_ago() -> jiff::Timestamp {
    jiff::Timestamp::now() - jiff::SignedDuration::from_secs(60)
}

/// A bare repository on a Git server, committed to directly (as a push would).
struct ServedRepo {
    _dir: TempDir,
    repo: Repository,
    url: String,
}

impl ServedRepo {
    /// A new repository under `root` (the server's project root), reachable at `base_url/NAME.git`.
    fn create(root: &Path, base_url: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("source-e2e-")
            .suffix(".git")
            .tempdir_in(root)
            .expect("repository directory");
        let repo = Repository::init_bare(dir.path()).expect("init bare");
        repo.set_head("refs/heads/main").expect("HEAD");
        let name = dir
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        Self {
            url: format!("{base_url}/{name}"),
            _dir: dir,
            repo,
        }
    }

    fn on_git_daemon(env: &E2eEnv) -> Self {
        Self::create(Path::new(env.get("GIT_ROOT")), env.get("GIT_BASE_URL"))
    }

    fn commit(&self, files: &[(&str, &str)]) -> String {
        let parent = self
            .repo
            .find_reference("refs/heads/main")
            .ok()
            .and_then(|r| r.peel_to_commit().ok());
        let base = match &parent {
            Some(c) => c.tree().unwrap(),
            None => {
                let empty = self.repo.treebuilder(None).unwrap().write().unwrap();
                self.repo.find_tree(empty).unwrap()
            }
        };
        let mut update = TreeUpdateBuilder::new();
        for (path, content) in files {
            let blob = self.repo.blob(content.as_bytes()).unwrap();
            update.upsert(*path, blob, FileMode::Blob);
        }
        let tree = self
            .repo
            .find_tree(update.create_updated(&self.repo, &base).unwrap())
            .unwrap();
        let sig = Signature::now("Test", "test@localhost").unwrap();
        let parents: Vec<_> = parent.iter().collect();
        let oid: Oid = self
            .repo
            .commit(
                Some("refs/heads/main"),
                &sig,
                &sig,
                "change",
                &tree,
                &parents,
            )
            .unwrap();
        oid.to_string()
    }
}

fn source(url: &str, spec: Value) -> ApplicationSource {
    let mut spec = spec;
    spec["repoURL"] = json!(url);
    serde_json::from_value(spec).expect("source")
}

fn ctx() -> RenderContext {
    RenderContext {
        app_name: "shop".into(),
        namespace: "prod".into(),
    }
}

/// Resolves `main`, checks the commit out and renders `source` with the cluster's tools.
async fn fetch_and_render(
    env: &E2eEnv,
    repo: &ServedRepo,
    source: &ApplicationSource,
) -> Result<Rendered, RenderError> {
    let cache_dir = TempDir::new().unwrap();
    let repos = RepoCache::new(cache_dir.path().to_path_buf(), GitRequestMetrics::default());
    let sha = repos
        .resolve(&repo.url, "main", None, a_tick_ago())
        .await
        .expect("resolve");
    let tree = repos
        .checkout(&repo.url, None, &sha)
        .await
        .expect("checkout");
    let renders = RenderCache::new().with_tools(Tools::with_search_path(env.get("PATH")));
    renders
        .get_or_render(&sha, &tree, source, &ctx())
        .await
        .map(|r| (*r).clone())
}

fn find<'a>(rendered: &'a Rendered, kind: &str, name: &str) -> &'a Value {
    rendered
        .objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {:#?}", rendered.objects))
}

fn kinds_and_names(rendered: &Rendered) -> Vec<String> {
    rendered
        .objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn fetches_over_git_and_sees_new_commits() {
    let env = E2eEnv::load();
    let repo = ServedRepo::on_git_daemon(&env);
    let first = repo.commit(&[(
        "app/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
    )]);
    let cache_dir = TempDir::new().unwrap();
    let cache = RepoCache::new(cache_dir.path().to_path_buf(), GitRequestMetrics::default());

    assert_eq!(
        cache
            .resolve(&repo.url, "HEAD", None, a_tick_ago())
            .await
            .unwrap(),
        first
    );
    let tree = cache.checkout(&repo.url, None, &first).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(tree.join("app/cm.yaml")).unwrap(),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"
    );

    let second = repo.commit(&[(
        "app/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n",
    )]);
    // Within the tick nobody fetches again; a forced fetch (a webhook) sees the push.
    assert_eq!(
        cache
            .resolve(&repo.url, "main", None, a_tick_ago())
            .await
            .unwrap(),
        first
    );
    assert_eq!(
        cache
            .resolve(&repo.url, "main", None, jiff::Timestamp::now())
            .await
            .unwrap(),
        second
    );
    assert_eq!(cache.fetch_count(&repo.url), 2);
    let tree = cache.checkout(&repo.url, None, &second).await.unwrap();
    assert!(
        std::fs::read_to_string(tree.join("app/cm.yaml"))
            .unwrap()
            .contains("name: b")
    );
}

#[tokio::test]
async fn many_applications_on_one_repository_fetch_once_per_tick() {
    let env = E2eEnv::load();
    let repo = ServedRepo::on_git_daemon(&env);
    let head = repo.commit(&[("a.yaml", "x: 1\n")]);
    let cache_dir = TempDir::new().unwrap();
    let cache = RepoCache::new(cache_dir.path().to_path_buf(), GitRequestMetrics::default());
    let apps = (0..20).map(|_| {
        let (cache, url) = (cache.clone(), repo.url.clone());
        tokio::spawn(async move { cache.resolve(&url, "main", None, a_tick_ago()).await })
    });
    for result in futures::future::join_all(apps).await {
        assert_eq!(result.unwrap().unwrap(), head);
    }
    assert_eq!(cache.fetch_count(&repo.url), 1);
}

const CHART: &[(&str, &str)] = &[
    (
        "charts/shop/Chart.yaml",
        "apiVersion: v2\nname: shop\nversion: 0.1.0\n",
    ),
    (
        "charts/shop/values.yaml",
        "replicas: 1\nimage: {repository: nginx, tag: \"1.0\"}\nport: 80\ngreeting: hello\n",
    ),
    ("charts/shop/values-prod.yaml", "replicas: 3\n"),
    (
        "charts/common-values.yaml",
        "greeting: from the repository root\n",
    ),
    (
        "charts/shop/templates/deployment.yaml",
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-web
  namespace: {{ .Release.Namespace }}
spec:
  replicas: {{ .Values.replicas }}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: \"{{ .Values.image.repository }}:{{ .Values.image.tag }}\"
",
    ),
    (
        "charts/shop/templates/configmap.yaml",
        "apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-config
data:
  greeting: {{ .Values.greeting | quote }}
  port: {{ .Values.port | quote }}
",
    ),
    (
        "charts/shop/crds/widgets.yaml",
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  names: {kind: Widget, plural: widgets}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object}}
",
    ),
];

#[tokio::test]
async fn renders_a_helm_chart_with_real_helm() {
    let env = E2eEnv::load();
    let repo = ServedRepo::on_git_daemon(&env);
    repo.commit(CHART);
    let src = source(
        &repo.url,
        json!({
            "path": "charts/shop",
            "helm": {
                "valueFiles": ["values-prod.yaml", "../common-values.yaml"],
                "valuesObject": {"image": {"repository": "ghcr.io/example/shop"}},
                "parameters": [
                    {"name": "image.tag", "value": "2.0"},
                    {"name": "port", "value": "8080", "forceString": true},
                ],
            }
        }),
    );
    let rendered = fetch_and_render(&env, &repo, &src).await.unwrap();
    assert_eq!(rendered.source_type, ApplicationSourceType::Helm);
    assert_eq!(
        kinds_and_names(&rendered),
        [
            "CustomResourceDefinition/widgets.example.com",
            "ConfigMap/shop-config",
            "Deployment/shop-web"
        ]
    );
    let deployment = find(&rendered, "Deployment", "shop-web");
    assert_eq!(deployment["metadata"]["namespace"], "prod");
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/example/shop:2.0"
    );
    let config = find(&rendered, "ConfigMap", "shop-config");
    assert_eq!(
        config["data"],
        json!({"greeting": "from the repository root", "port": "8080"})
    );

    // Detected from Chart.yaml, with the defaults: no CRDs when skipped, the app name as release.
    let detected = source(&repo.url, json!({"path": "charts/shop"}));
    let rendered = fetch_and_render(&env, &repo, &detected).await.unwrap();
    assert_eq!(rendered.source_type, ApplicationSourceType::Helm);
    assert_eq!(
        find(&rendered, "Deployment", "shop-web")["spec"]["replicas"],
        1
    );
    let skip_crds = source(
        &repo.url,
        json!({"path": "charts/shop", "helm": {"skipCrds": true, "releaseName": "web"}}),
    );
    let rendered = fetch_and_render(&env, &repo, &skip_crds).await.unwrap();
    assert_eq!(
        kinds_and_names(&rendered),
        ["ConfigMap/web-config", "Deployment/web-web"]
    );
}

#[tokio::test]
async fn a_broken_chart_fails_with_the_template_named() {
    let env = E2eEnv::load();
    let repo = ServedRepo::on_git_daemon(&env);
    let mut files = CHART.to_vec();
    files.push((
        "charts/shop/templates/broken.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Values.missing.field }}\n",
    ));
    repo.commit(&files);
    let src = source(&repo.url, json!({"path": "charts/shop"}));
    let err = fetch_and_render(&env, &repo, &src).await.unwrap_err();
    let RenderError::ToolFailed { tool, stderr, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(tool, "helm template");
    assert!(stderr.contains("templates/broken.yaml"), "{err}");
    assert!(
        !err.to_string().contains("/trees/"),
        "the cache path leaks: {err}"
    );
}

const KUSTOMIZE: &[(&str, &str)] = &[
    (
        "base/kustomization.yaml",
        "resources: [deployment.yaml, service.yaml]\n",
    ),
    (
        "base/deployment.yaml",
        "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: ghcr.io/example/shop:1.0}
",
    ),
    (
        "base/service.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 80}]\n",
    ),
    (
        "overlays/prod/kustomization.yaml",
        "resources: [../../base]\nreplicas: [{name: web, count: 3}]\n",
    ),
];

#[tokio::test]
async fn renders_a_kustomization_with_real_kubectl_kustomize() {
    let env = E2eEnv::load();
    let repo = ServedRepo::on_git_daemon(&env);
    repo.commit(KUSTOMIZE);

    let detected = source(&repo.url, json!({"path": "overlays/prod"}));
    let rendered = fetch_and_render(&env, &repo, &detected).await.unwrap();
    assert_eq!(rendered.source_type, ApplicationSourceType::Kustomize);
    assert_eq!(
        kinds_and_names(&rendered),
        ["Service/web", "Deployment/web"]
    );
    assert_eq!(find(&rendered, "Deployment", "web")["spec"]["replicas"], 3);

    let with_options = source(
        &repo.url,
        json!({"path": "overlays/prod", "kustomize": {
            "namePrefix": "prod-",
            "images": ["ghcr.io/example/shop=ghcr.io/example/shop:1.4.2"],
            "commonLabels": {"team": "shop"},
            "commonAnnotations": {"owner": "shop-team"},
            "namespace": "shop-prod",
        }}),
    );
    let rendered = fetch_and_render(&env, &repo, &with_options).await.unwrap();
    assert_eq!(
        kinds_and_names(&rendered),
        ["Service/prod-web", "Deployment/prod-web"]
    );
    let deployment = find(&rendered, "Deployment", "prod-web");
    assert_eq!(deployment["metadata"]["namespace"], "shop-prod");
    assert_eq!(deployment["metadata"]["labels"]["team"], "shop");
    assert_eq!(deployment["metadata"]["annotations"]["owner"], "shop-team");
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/example/shop:1.4.2"
    );
    // The shared checked-out tree was not modified by the options.
    let cache_dir = TempDir::new().unwrap();
    let repos = RepoCache::new(cache_dir.path().to_path_buf(), GitRequestMetrics::default());
    let sha = repos
        .resolve(&repo.url, "main", None, a_tick_ago())
        .await
        .unwrap();
    let tree = repos.checkout(&repo.url, None, &sha).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(tree.join("overlays/prod/kustomization.yaml")).unwrap(),
        KUSTOMIZE[3].1
    );
}

#[tokio::test]
async fn invalid_yaml_in_git_names_the_file_and_line() {
    let env = E2eEnv::load();
    let repo = ServedRepo::on_git_daemon(&env);
    repo.commit(&[
        (
            "app/good.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: good}\n",
        ),
        (
            "app/typo.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: typo\n  labels: {a: b\n",
        ),
    ]);
    let src = source(&repo.url, json!({"path": "app"}));
    let err = fetch_and_render(&env, &repo, &src).await.unwrap_err();
    assert!(err.to_string().starts_with("app/typo.yaml:"), "{err}");
    assert!(matches!(err, RenderError::Yaml { line: 5.., .. }), "{err}");
}

/// A private repository fetched without credentials is refused with a message saying what is
/// missing.
async fn refused_without_credentials(cache: &RepoCache, url: &str) {
    let err = cache
        .resolve(url, "main", None, jiff::Timestamp::now())
        .await
        .unwrap_err();
    assert!(matches!(err, SourceError::Fetch { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("no Secret labelled sluice.dev/secret-type=repository"),
        "{err}"
    );
}

#[tokio::test]
async fn private_repository_over_https_with_a_token() {
    let root = TempDir::new().unwrap();
    let server = http_git::PrivateGitServer::start(root.path(), "deploy-bot", "tok_9f8e7d6c");
    let repo = ServedRepo::create(root.path(), &server.base_url);
    let head = repo.commit(&[(
        "app/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
    )]);
    let cache_dir = TempDir::new().unwrap();
    // The test server speaks plain HTTP on 127.0.0.1.
    let cache = RepoCache::new(cache_dir.path().to_path_buf(), GitRequestMetrics::default())
        .with_limits(GitLimits {
            allow_insecure_http: true,
            ..GitLimits::default()
        });

    refused_without_credentials(&cache, &repo.url).await;

    // A wrong token: refused after a bounded number of attempts, the token in no message.
    let wrong = Credentials::Https {
        username: "deploy-bot".into(),
        password: "tok_wrong_0000".into(),
    };
    let refused_before = server.unauthorized.load(Ordering::SeqCst);
    let err = cache
        .resolve(&repo.url, "main", Some(&wrong), jiff::Timestamp::now())
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("tok_wrong_0000"), "{text}");
    let attempts = server.unauthorized.load(Ordering::SeqCst) - refused_before;
    assert!((1..=5).contains(&attempts), "{attempts} refused requests");

    // The right token: fetched and checked out.
    let good = Credentials::Https {
        username: "deploy-bot".into(),
        password: "tok_9f8e7d6c".into(),
    };
    let sha = cache
        .resolve(&repo.url, "main", Some(&good), jiff::Timestamp::now())
        .await
        .unwrap();
    assert_eq!(sha, head);
    let tree = cache.checkout(&repo.url, Some(&good), &sha).await.unwrap();
    assert!(tree.join("app/cm.yaml").is_file());
}

#[tokio::test]
async fn private_repository_over_ssh_with_a_key() {
    let root = TempDir::new().unwrap();
    let server = ssh_git::PrivateSshServer::start();
    let repo = ServedRepo::create(root.path(), &server.base_url(root.path()));
    let head = repo.commit(&[(
        "app/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
    )]);
    let cache_dir = TempDir::new().unwrap();
    let cache = RepoCache::new(cache_dir.path().to_path_buf(), GitRequestMetrics::default());
    let ssh = |username: &str, key: &ssh_git::KeyPair, known_hosts: String| Credentials::Ssh {
        username: username.into(),
        private_key: key.private.clone(),
        known_hosts: Some(known_hosts),
    };
    let counts = || {
        (
            server.refused.load(Ordering::SeqCst),
            server.accepted.load(Ordering::SeqCst),
        )
    };

    refused_without_credentials(&cache, &repo.url).await;

    // A key the server does not know: refused after a bounded number of attempts, no key material in
    // any message.
    let wrong_key = ssh_git::KeyPair::generate("not-authorized");
    let wrong = ssh(&server.user, &wrong_key, server.known_hosts_line());
    let (refused_before, _) = counts();
    let err = cache
        .resolve(&repo.url, "main", Some(&wrong), jiff::Timestamp::now())
        .await
        .unwrap_err();
    assert!(matches!(err, SourceError::Fetch { .. }), "{err}");
    let text = format!("{err} {err:?}");
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    for line in wrong_key
        .private
        .lines()
        .filter(|l| !l.starts_with("-----"))
    {
        assert!(!text.contains(line), "{text}");
    }
    let attempts = counts().0 - refused_before;
    assert!(
        (1..=5).contains(&attempts),
        "{attempts} refused keys:\n{}",
        server.log()
    );

    // knownHosts naming another host key: refused before the key is ever offered to the server.
    let impostor = ssh_git::KeyPair::generate("other-host");
    let untrusted = ssh(
        &server.user,
        &server.client_key,
        format!("[127.0.0.1]:{} {}", server.port, impostor.type_and_key()),
    );
    let before = counts();
    let err = cache
        .resolve(&repo.url, "main", Some(&untrusted), jiff::Timestamp::now())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("SSH host key is not trusted")
            && err.to_string().contains("knownHosts"),
        "{err}"
    );
    assert_eq!(counts(), before, "{}", server.log());

    // The right key and host key: fetched, resolved and checked out.
    let good = ssh(&server.user, &server.client_key, server.known_hosts_line());
    let sha = cache
        .resolve(&repo.url, "main", Some(&good), jiff::Timestamp::now())
        .await
        .unwrap();
    assert_eq!(sha, head);
    let tree = cache.checkout(&repo.url, Some(&good), &sha).await.unwrap();
    assert!(tree.join("app/cm.yaml").is_file());

    // A Secret naming the hosted services' usual user while the URL names another: the URL's wins
    // (libgit2 refuses a credential for a different user than the URL's).
    let next = repo.commit(&[(
        "app/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n",
    )]);
    let git_user = ssh("git", &server.client_key, server.known_hosts_line());
    let sha = cache
        .resolve(&repo.url, "main", Some(&git_user), jiff::Timestamp::now())
        .await
        .unwrap();
    assert_eq!(sha, next);
}
