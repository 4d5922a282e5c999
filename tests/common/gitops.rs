//! The GitOps test harness: bare repositories served by the local git daemon (committed to directly,
//! as a push would), a namespace with its own `sluice controller`, and readers of Applications and
//! of what they applied.

use std::path::Path;
use std::time::{Duration, Instant};

use git2::build::TreeUpdateBuilder;
use git2::{FileMode, Repository, Signature};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use sluice::api::application::{Application, HealthStatusCode, OperationPhase, SyncStatusCode};
use tempfile::TempDir;

use super::{ControllerProcess, E2eEnv, TestNamespace, apply_crds, free_local_addr, wait_for};

pub const TIMEOUT: Duration = Duration::from_secs(90);
/// The controller's `RUST_LOG` in tests: the debug lines are what explains a failure.
pub const DEBUG_LOG: &str = "info,sluice=debug";
/// The GitHub webhook secret the harness's controllers are started with.
pub const WEBHOOK_SECRET: &str = "e2e-webhook-secret";
/// The Bitbucket Cloud webhook UUID the test controllers accept.
pub const BITBUCKET_HOOK_UUID: &str = "{5e8c1f0a-0000-4000-8000-00000000e2e0}";
/// The user Azure DevOps service hooks authenticate as (password: [`WEBHOOK_SECRET`]).
pub const AZURE_DEVOPS_USER: &str = "e2e-hook";

/// A bare repository under `$GIT_ROOT`, served at `$GIT_BASE_URL/NAME.git`.
pub struct GitRepo {
    _dir: TempDir,
    repo: Repository,
    pub url: String,
}

impl GitRepo {
    pub fn create(env: &E2eEnv, prefix: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{prefix}-"))
            .suffix(".git")
            .tempdir_in(Path::new(env.get("GIT_ROOT")))
            .expect("repository directory");
        let repo = Repository::init_bare(dir.path()).expect("init bare");
        repo.set_head("refs/heads/main").expect("HEAD");
        // git daemon serves only repositories it may export.
        std::fs::write(dir.path().join("git-daemon-export-ok"), "").expect("export marker");
        let name = dir
            .path()
            .file_name()
            .and_then(|n| n.to_str())
            .expect("utf-8 name")
            .to_string();
        Self {
            url: format!("{}/{name}", env.get("GIT_BASE_URL")),
            _dir: dir,
            repo,
        }
    }

    /// The bare repository itself, for commits built object by object.
    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    /// Commits on `main`: `Some(content)` writes the file, `None` removes it. Returns the sha.
    pub fn commit(&self, message: &str, changes: &[(&str, Option<&str>)]) -> String {
        let parent = self
            .repo
            .find_reference("refs/heads/main")
            .ok()
            .and_then(|r| r.peel_to_commit().ok());
        let base = match &parent {
            Some(c) => c.tree().expect("tree"),
            None => {
                let empty = self.repo.treebuilder(None).unwrap().write().unwrap();
                self.repo.find_tree(empty).unwrap()
            }
        };
        let mut update = TreeUpdateBuilder::new();
        for (path, content) in changes {
            match content {
                Some(text) => {
                    let blob = self.repo.blob(text.as_bytes()).unwrap();
                    update.upsert(*path, blob, FileMode::Blob);
                }
                None => {
                    update.remove(*path);
                }
            }
        }
        let tree_id = update.create_updated(&self.repo, &base).expect("tree");
        let tree = self.repo.find_tree(tree_id).unwrap();
        let sig = Signature::now("E2E", "e2e@localhost").unwrap();
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        self.repo
            .commit(
                Some("refs/heads/main"),
                &sig,
                &sig,
                message,
                &tree,
                &parents,
            )
            .expect("commit")
            .to_string()
    }
}

/// A namespace with its own controller (scoped to it) and the Applications of a test.
pub struct GitopsHarness {
    pub env: E2eEnv,
    pub client: Client,
    pub ns: TestNamespace,
    pub controller: ControllerProcess,
    pub webhook_url: String,
    _cache: TempDir,
}

impl GitopsHarness {
    /// Starts a controller watching a new namespace, polling Git every `poll`.
    pub async fn start(prefix: &str, poll: &str) -> Self {
        Self::start_with(prefix, poll, &[], DEBUG_LOG).await
    }

    /// [`GitopsHarness::start`] with `extra` controller flags (e.g. `--leader-elect`) and the
    /// controller's `RUST_LOG` set to `log_filter`.
    pub async fn start_with(prefix: &str, poll: &str, extra: &[&str], log_filter: &str) -> Self {
        let env = E2eEnv::load();
        let client = env.client().await;
        apply_crds(&client).await;
        let ns = TestNamespace::create(&client, prefix).await;
        let cache = tempfile::tempdir().expect("cache dir");
        let (controller, webhook_url) =
            start_controller_with(&env, &ns.name, poll, cache.path(), extra, log_filter);
        Self {
            env,
            client,
            ns,
            controller,
            webhook_url,
            _cache: cache,
        }
    }

    pub fn apps(&self) -> Api<Application> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    pub fn config_maps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    pub fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    /// Creates the Application `name` syncing `path` of `repo` into the namespace.
    pub async fn create_app(&self, name: &str, repo: &GitRepo, path: &str, policy: Value) {
        let mut source = json!({"repoURL": repo.url, "targetRevision": "main", "path": path});
        if let Some(extra) = policy.get("source").and_then(Value::as_object) {
            for (k, v) in extra {
                source[k] = v.clone();
            }
        }
        let app = json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Application",
            "metadata": {"name": name},
            "spec": {"source": source, "destination": {"namespace": self.ns.name},
                     "syncPolicy": policy.get("syncPolicy").cloned().unwrap_or(json!({}))}
        });
        let app: Application = serde_json::from_value(app).expect("application");
        self.apps()
            .create(&PostParams::default(), &app)
            .await
            .expect("create application");
    }

    /// Waits until the Application satisfies `check`.
    pub async fn wait_app(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&Application) -> bool,
    ) -> Application {
        let api = self.apps();
        let what = format!("{name}: {what}");
        wait_for(&what, TIMEOUT, || async {
            let app = api.get(name).await.ok()?;
            check(&app).then_some(app)
        })
        .await
    }

    /// Waits until the Application's last operation is in `phase`.
    pub async fn wait_operation(&self, name: &str, phase: OperationPhase) -> Application {
        self.wait_app(name, &format!("last operation {phase:?}"), |a| {
            a.status
                .as_ref()
                .and_then(|s| s.operation_state.as_ref())
                .is_some_and(|o| o.phase == phase)
        })
        .await
    }

    /// Waits until the Application is Synced and Healthy at `sha`.
    pub async fn wait_synced(&self, name: &str, sha: &str) -> Application {
        self.wait_app(name, &format!("Synced and Healthy at {sha}"), |a| {
            sync_status(a) == SyncStatusCode::Synced
                && health(a) == HealthStatusCode::Healthy
                && revision(a).as_deref() == Some(sha)
        })
        .await
    }

    /// Waits for an Event of `type_` and `reason` on the Application whose note contains `note`.
    pub async fn wait_event(&self, app: &str, type_: &str, reason: &str, note: &str) -> Event {
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.ns.name);
        let what = format!("{app}: a {type_} Event {reason} saying {note:?}");
        wait_for(&what, TIMEOUT, || async {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items.into_iter().find(|e| {
                let about = e.regarding.as_ref();
                about.and_then(|r| r.kind.as_deref()) == Some("Application")
                    && about.and_then(|r| r.name.as_deref()) == Some(app)
                    && e.type_.as_deref() == Some(type_)
                    && e.reason.as_deref() == Some(reason)
                    && e.note.as_deref().is_some_and(|n| n.contains(note))
            })
        })
        .await
    }

    /// Writes the Application's top-level `operation`, as `kubectl sluice app sync|rollback` does.
    pub async fn request(&self, name: &str, operation: Value) {
        self.apps()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"operation": operation})),
            )
            .await
            .expect("write operation");
    }

    /// `data.v` of a ConfigMap, `None` when it does not exist.
    pub async fn config_value(&self, name: &str) -> Option<String> {
        let cm = self
            .config_maps()
            .get_opt(name)
            .await
            .expect("read ConfigMap")?;
        cm.data?.get("v").cloned()
    }

    /// Waits until ConfigMap `name` has `data.v == value` (`None`: until it is gone).
    pub async fn wait_config(&self, name: &str, value: Option<&str>) -> Duration {
        let start = Instant::now();
        wait_for(
            &format!("ConfigMap {name} = {value:?}"),
            TIMEOUT,
            || async { (self.config_value(name).await.as_deref() == value).then_some(()) },
        )
        .await;
        start.elapsed()
    }

    /// POSTs a GitHub push event of `repo`, signed with [`WEBHOOK_SECRET`] unless `signed` is false.
    pub async fn push_event(&self, repo: &GitRepo, signed: bool) -> u16 {
        let body =
            json!({"ref": "refs/heads/main", "repository": {"clone_url": repo.url}}).to_string();
        let mut request = reqwest::Client::new()
            .post(&self.webhook_url)
            .header("X-GitHub-Event", "push")
            .header("Content-Type", "application/json");
        if signed {
            request = request.header("X-Hub-Signature-256", github_signature(&body));
        }
        request
            .body(body)
            .send()
            .await
            .expect("webhook answers")
            .status()
            .as_u16()
    }

    /// What the harness's controller has logged so far.
    pub fn controller_log(&self) -> String {
        let port = self
            .controller
            .metrics_url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("metrics URL ends with its port");
        std::fs::read_to_string(controller_log_path(&self.ns.name, port)).expect("controller log")
    }

    /// Runs `kubectl` against the cluster in the test namespace.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let output = std::process::Command::new("kubectl")
            .args(args)
            .arg(format!("--namespace={}", self.ns.name))
            .env("KUBECONFIG", self.env.get("KUBECONFIG"))
            .env("PATH", self.env.get("PATH"))
            .output()
            .expect("run kubectl");
        assert!(
            output.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

pub fn controller_log_path(namespace: &str, metrics_port: u16) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("sluice-gitops-e2e-{namespace}-{metrics_port}.log"))
}

pub fn github_signature(body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, WEBHOOK_SECRET.as_bytes());
    let tag = ring::hmac::sign(&key, body.as_bytes());
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Starts `sluice controller --namespace=<ns> --repo-poll-interval=<poll>` with its own Git cache,
/// the cluster's PATH (helm, kustomize) and the webhook secret; logs go to
/// `$TMPDIR/sluice-gitops-e2e-<ns>-<metrics port>.log`. Returns the process and the webhook URL.
pub fn start_controller(
    env: &E2eEnv,
    namespace: &str,
    poll: &str,
    cache: &Path,
) -> (ControllerProcess, String) {
    start_controller_with(env, namespace, poll, cache, &[], DEBUG_LOG)
}

/// [`start_controller`] with `extra` flags (e.g. `--leader-elect`) and `RUST_LOG=<log_filter>` (the
/// scale bench runs the default level, so that debug logging does not inflate the CPU it measures).
pub fn start_controller_with(
    env: &E2eEnv,
    namespace: &str,
    poll: &str,
    cache: &Path,
    extra: &[&str],
    log_filter: &str,
) -> (ControllerProcess, String) {
    start_scoped_controller(
        env,
        Scope::Namespace(namespace),
        poll,
        cache,
        extra,
        log_filter,
    )
}

/// What a test controller watches.
#[derive(Clone, Copy)]
pub enum Scope<'a> {
    /// `--namespace=<ns>`: that namespace only, which is also its control namespace.
    Namespace(&'a str),
    /// No `--namespace`: every namespace, with `POD_NAMESPACE` naming the control namespace (how the
    /// chart runs it). Only one such controller may run at a time (see `tenancy::TenancyHarness`).
    ClusterWide { control_namespace: &'a str },
}

/// Starts `sluice controller` for `scope` with `--repo-poll-interval=<poll>`, its own Git cache, the
/// cluster's PATH (helm, kustomize) and the webhook secret; logs go to
/// `$TMPDIR/sluice-gitops-e2e-<ns>-<metrics port>.log`. Returns the process and the webhook URL.
pub fn start_scoped_controller(
    env: &E2eEnv,
    scope: Scope<'_>,
    poll: &str,
    cache: &Path,
    extra: &[&str],
    log_filter: &str,
) -> (ControllerProcess, String) {
    let metrics_addr = free_local_addr();
    let webhook_addr = free_local_addr();
    let (log_name, scope_args, pod_namespace) = match scope {
        Scope::Namespace(ns) => (ns, vec![format!("--namespace={ns}")], None),
        Scope::ClusterWide { control_namespace } => {
            (control_namespace, Vec::new(), Some(control_namespace))
        }
    };
    let log_path = controller_log_path(log_name, metrics_addr.port());
    let log = std::fs::File::create(&log_path).expect("controller log");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .args([
            "controller",
            &format!("--metrics-addr={metrics_addr}"),
            &format!("--webhook-addr={webhook_addr}"),
            &format!("--repo-poll-interval={poll}"),
        ])
        .args(scope_args)
        .args(extra)
        .env("KUBECONFIG", env.get("KUBECONFIG"))
        .env("PATH", env.get("PATH"))
        .env("SLUICE_GIT_CACHE_DIR", cache)
        .env("SLUICE_WEBHOOK_GITHUB_SECRET", WEBHOOK_SECRET)
        .env("SLUICE_WEBHOOK_GITEA_SECRET", WEBHOOK_SECRET)
        .env("SLUICE_WEBHOOK_BITBUCKET_SERVER_SECRET", WEBHOOK_SECRET)
        .env("SLUICE_WEBHOOK_BITBUCKET_UUID", BITBUCKET_HOOK_UUID)
        .env("SLUICE_WEBHOOK_AZURE_DEVOPS_USERNAME", AZURE_DEVOPS_USER)
        .env("SLUICE_WEBHOOK_AZURE_DEVOPS_PASSWORD", WEBHOOK_SECRET)
        .env("PROMETHEUS_URL", env.get("PROMETHEUS_URL"))
        .env("RUST_LOG", log_filter)
        .env_remove("POD_NAMESPACE");
    if let Some(ns) = pod_namespace {
        command.env("POD_NAMESPACE", ns);
    }
    let child = command
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start sluice controller");
    (
        ControllerProcess {
            child,
            metrics_url: format!("http://{metrics_addr}"),
        },
        format!("http://{webhook_addr}/api/webhook"),
    )
}

pub fn sync_status(app: &Application) -> SyncStatusCode {
    app.status
        .as_ref()
        .map_or(SyncStatusCode::Unknown, |s| s.sync_status())
}

pub fn health(app: &Application) -> HealthStatusCode {
    app.status
        .as_ref()
        .map_or(HealthStatusCode::Unknown, |s| s.health_status())
}

pub fn revision(app: &Application) -> Option<String> {
    app.status.as_ref()?.sync.as_ref()?.revision.clone()
}

/// The message of condition `type_`, if set.
pub fn condition(app: &Application, type_: &str) -> Option<String> {
    app.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .and_then(|c| c.message.clone())
}

/// The message of the Application's last operation (empty when none).
pub fn operation_message(app: &Application) -> String {
    app.status
        .as_ref()
        .and_then(|s| s.operation_state.as_ref())
        .and_then(|o| o.message.clone())
        .unwrap_or_default()
}

/// A ConfigMap manifest (JSON is YAML) whose `data.v` is `value`.
pub fn config_map(name: &str, value: &str) -> String {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
           "data": {"v": value}})
    .to_string()
}

/// A Deployment manifest of `replicas` pods of `image` (pods become Ready on the KWOK node).
pub fn deployment(name: &str, replicas: i32, image: &str) -> String {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}},
                                 "spec": {"containers": [{"name": "main", "image": image}]}}}})
    .to_string()
}
