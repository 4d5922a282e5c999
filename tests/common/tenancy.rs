//! The multi-tenancy harness: one cluster-wide `sluice controller` (no `--namespace`, the control
//! namespace from `POD_NAMESPACE`, as the chart runs it), a control namespace for the projects, and
//! two teams, each with a namespace, an AppProject and a ServiceAccount `deployer` allowed by a
//! namespaced Role to manage ConfigMaps, Services and Deployments there.
//!
//! A cluster-wide controller sees every namespace, so tests using this harness run one at a time
//! (the harness holds a lock for its lifetime); test binaries run one after another.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client};
use serde_json::{Value, json};
use sluice::api::application::Application;
use tempfile::TempDir;
use tokio::sync::{Mutex, MutexGuard};

use super::gitops::{
    DEBUG_LOG, GitRepo, Scope, TIMEOUT, controller_log_path, start_scoped_controller,
};
use super::{ControllerProcess, E2eEnv, TestNamespace, apply_crds, wait_for};

static CLUSTER_WIDE: Mutex<()> = Mutex::const_new(());

/// The ServiceAccount each team's namespace gets, bound to the team's namespaced Role.
pub const DEPLOYER: &str = "deployer";

/// An Application to create: `path` of `repo` (branch main) synced to namespace `destination`.
pub struct NewApp<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub project: &'a str,
    pub repo: &'a GitRepo,
    pub path: &'a str,
    pub destination: &'a str,
}

impl<'a> NewApp<'a> {
    /// `name` in `team`'s namespace and project, syncing `app/` of `repo` into that namespace.
    pub fn of(team: &'a Team, name: &'a str, repo: &'a GitRepo) -> Self {
        NewApp {
            namespace: &team.ns.name,
            name,
            project: &team.project,
            repo,
            path: "app",
            destination: &team.ns.name,
        }
    }
}

/// A team: its namespace and the name of its AppProject.
pub struct Team {
    pub ns: TestNamespace,
    pub project: String,
}

pub struct TenancyHarness {
    pub env: E2eEnv,
    pub client: Client,
    pub control: TestNamespace,
    pub team_a: Team,
    pub team_b: Team,
    pub controller: ControllerProcess,
    pub webhook_url: String,
    _cache: TempDir,
    _one_at_a_time: MutexGuard<'static, ()>,
}

impl TenancyHarness {
    /// The namespaces, ServiceAccounts and two team projects (each: any repository of the local Git
    /// server, its own namespace only, no cluster-scoped kind, Applications from its own namespace),
    /// then the controller with `extra` flags.
    pub async fn start(prefix: &str, extra: &[&str]) -> Self {
        Self::start_with_projects(prefix, extra, |_, _| {}).await
    }

    /// [`TenancyHarness::start`], with `adjust(team_namespace, project_spec)` changing each team's
    /// project before it is created.
    pub async fn start_with_projects(
        prefix: &str,
        extra: &[&str],
        adjust: impl Fn(&str, &mut Value),
    ) -> Self {
        let lock = CLUSTER_WIDE.lock().await;
        let env = E2eEnv::load();
        let client = env.client().await;
        apply_crds(&client).await;
        let control = TestNamespace::create(&client, &format!("{prefix}-ctl")).await;
        let git_base = env.get("GIT_BASE_URL").to_string();
        let mut teams = Vec::new();
        for team in ["a", "b"] {
            let ns = TestNamespace::create(&client, &format!("{prefix}-{team}")).await;
            let project = format!("team-{team}");
            let mut spec = json!({
                "description": format!("team {team}"),
                "sourceRepos": [format!("{git_base}/*")],
                "destinations": [{"server": "https://kubernetes.default.svc", "namespace": ns.name}],
                "sourceNamespaces": [ns.name],
            });
            adjust(&ns.name, &mut spec);
            create_project(&client, &control.name, &project, spec).await;
            create_deployer(&client, &ns.name).await;
            teams.push(Team { ns, project });
        }
        let cache = tempfile::tempdir().expect("cache dir");
        let scope = Scope::ClusterWide {
            control_namespace: &control.name,
        };
        let (controller, webhook_url) =
            start_scoped_controller(&env, scope, "10s", cache.path(), extra, DEBUG_LOG);
        let team_b = teams.pop().expect("team b");
        let team_a = teams.pop().expect("team a");
        Self {
            env,
            client,
            control,
            team_a,
            team_b,
            controller,
            webhook_url,
            _cache: cache,
            _one_at_a_time: lock,
        }
    }

    pub fn apps(&self, namespace: &str) -> Api<Application> {
        Api::namespaced(self.client.clone(), namespace)
    }

    pub fn config_maps(&self, namespace: &str) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Creates `app`, automated with prune unless `spec_extra` says otherwise (its keys replace
    /// those of `spec`).
    pub async fn create_app(&self, app: NewApp<'_>, spec_extra: Value) {
        let mut spec = json!({
            "project": app.project,
            "source": {"repoURL": app.repo.url, "targetRevision": "main", "path": app.path},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": app.destination},
            "syncPolicy": {"automated": {"prune": true}},
        });
        for (k, v) in spec_extra.as_object().cloned().unwrap_or_default() {
            spec[k] = v;
        }
        let object: Application = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Application",
            "metadata": {"name": app.name, "namespace": app.namespace}, "spec": spec,
        }))
        .expect("application");
        self.apps(app.namespace)
            .create(&PostParams::default(), &object)
            .await
            .expect("create application");
    }

    /// Waits until Application `namespace/name` satisfies `check`.
    pub async fn wait_app(
        &self,
        namespace: &str,
        name: &str,
        what: &str,
        check: impl Fn(&Application) -> bool,
    ) -> Application {
        let api = self.apps(namespace);
        wait_for(&format!("{namespace}/{name}: {what}"), TIMEOUT, || async {
            let app = api.get(name).await.ok()?;
            check(&app).then_some(app)
        })
        .await
    }

    /// Replaces the spec of AppProject `name` (rules take effect at once).
    pub async fn set_project(&self, name: &str, spec: Value) {
        projects(&self.client, &self.control.name)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": spec})),
            )
            .await
            .expect("patch AppProject");
    }

    /// The controller's log so far.
    pub fn controller_log(&self) -> String {
        let port = self
            .controller
            .metrics_url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("metrics URL ends with its port");
        std::fs::read_to_string(controller_log_path(&self.control.name, port))
            .expect("controller log")
    }
}

/// The AppProjects of `namespace`.
pub fn projects(client: &Client, namespace: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "sluice.dev",
        "v1alpha1",
        "AppProject",
    ));
    Api::namespaced_with(client.clone(), namespace, &resource)
}

/// Creates AppProject `name` in `namespace`.
pub async fn create_project(client: &Client, namespace: &str, name: &str, spec: Value) {
    let project: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AppProject",
        "metadata": {"name": name}, "spec": spec,
    }))
    .expect("AppProject object");
    projects(client, namespace)
        .create(&PostParams::default(), &project)
        .await
        .unwrap_or_else(|e| panic!("create AppProject {name}: {e}"));
}

/// ServiceAccount [`DEPLOYER`] in `namespace`, with a Role there to manage the kinds the tests deploy.
pub async fn create_deployer(client: &Client, namespace: &str) {
    let objects = [
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": DEPLOYER, "namespace": namespace}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": DEPLOYER, "namespace": namespace},
        "rules": [
            {"apiGroups": [""], "resources": ["configmaps", "services", "serviceaccounts"],
             "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
            {"apiGroups": ["apps"], "resources": ["deployments", "replicasets"],
             "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
            {"apiGroups": ["sluice.dev"], "resources": ["rollouts", "analysistemplates"],
             "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
        ]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": DEPLOYER, "namespace": namespace},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": DEPLOYER},
               "subjects": [{"kind": "ServiceAccount", "name": DEPLOYER, "namespace": namespace}]}),
    ];
    for object in objects {
        apply(client, namespace, object).await;
    }
}

/// Server-side applies `object` (a namespaced manifest with `apiVersion` and `kind`) in `namespace`,
/// as the tests' field manager: objects a test makes without an Application.
pub async fn apply(client: &Client, namespace: &str, object: Value) {
    let object: DynamicObject = serde_json::from_value(object).expect("object");
    let types = object.types.clone().expect("types");
    let gvk = GroupVersionKind::try_from(&types).expect("gvk");
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &ApiResource::from_gvk(&gvk));
    api.patch(
        object.metadata.name.as_deref().expect("name"),
        &PatchParams::apply("sluice-e2e-tests").force(),
        &Patch::Apply(&object),
    )
    .await
    .unwrap_or_else(|e| panic!("apply {} in {namespace}: {e}", types.kind));
}
