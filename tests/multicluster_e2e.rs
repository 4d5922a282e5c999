//! Applications that deploy to another cluster, selected by an Argo CD cluster Secret: runs against
//! `e2e/cluster/up --clusters 2` (cluster 2's kubeconfig is `e2e/.run/clusters/2/kubeconfig`). The
//! controller runs against cluster 1 and reaches cluster 2 only through the cluster Secrets the
//! tests create.

mod common;

use std::path::PathBuf;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::{Value, json};
use sluice::api::application::{Application, HealthStatusCode, SyncStatusCode};

use common::gitops::{
    GitRepo, GitopsHarness, TIMEOUT, condition, config_map, deployment, health, sync_status,
};
use common::wait_for;

/// Cluster 2, as the tests reach it directly (to check what landed there).
struct Cluster2 {
    client: Client,
    server: String,
    ca_data: String,
    cert_data: String,
    key_data: String,
}

impl Cluster2 {
    fn kubeconfig_path() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("e2e/.run/clusters/2/kubeconfig")
    }

    async fn connect() -> Self {
        sluice::tls::install_crypto_provider();
        let path = Self::kubeconfig_path();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}: start the clusters first (e2e/cluster/up --clusters 2, or make test)",
                path.display()
            )
        });
        // The file stands alone: its certificates are inline (what a cluster Secret carries).
        let yaml: Value = serde_saphyr::from_str(&text).expect("kubeconfig YAML");
        let text_at = |pointer: &str| {
            yaml.pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("{}: no {pointer}", path.display()))
                .to_string()
        };
        let kubeconfig = Kubeconfig::from_yaml(&text).expect("kubeconfig");
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("cluster 2 config");
        Self {
            client: Client::try_from(config).expect("cluster 2 client"),
            server: text_at("/clusters/0/cluster/server"),
            ca_data: text_at("/clusters/0/cluster/certificate-authority-data"),
            cert_data: text_at("/users/0/user/client-certificate-data"),
            key_data: text_at("/users/0/user/client-key-data"),
        }
    }

    fn config_maps(&self, ns: &str) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), ns)
    }

    async fn config_value(&self, ns: &str, name: &str) -> Option<String> {
        let cm = self.config_maps(ns).get_opt(name).await.ok()??;
        cm.data?.get("v").cloned()
    }

    /// Waits until ConfigMap `ns/name` on cluster 2 has `data.v == value` (`None`: is gone).
    async fn wait_config(&self, ns: &str, name: &str, value: Option<&str>) {
        let what = format!("cluster 2: ConfigMap {ns}/{name} = {value:?}");
        wait_for(&what, TIMEOUT, || async {
            (self.config_value(ns, name).await.as_deref() == value).then_some(())
        })
        .await;
    }

    async fn create_namespace(&self, name: &str) {
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create a namespace on cluster 2");
    }

    async fn delete_namespace(&self, name: &str) {
        let _ = Api::<Namespace>::all(self.client.clone())
            .delete(name, &DeleteParams::default())
            .await;
    }

    async fn namespace_exists(&self, name: &str) -> bool {
        Api::<Namespace>::all(self.client.clone())
            .get_opt(name)
            .await
            .expect("read namespaces of cluster 2")
            .is_some()
    }

    /// A ServiceAccount token with `cluster-admin` on cluster 2 (how Argo CD's `argocd cluster add`
    /// sets a cluster up).
    fn admin_token(&self, env: &common::E2eEnv, account: &str) -> String {
        let kubectl = |args: &[&str]| {
            let output = std::process::Command::new("kubectl")
                .args(args)
                .env("KUBECONFIG", Self::kubeconfig_path())
                .env("PATH", env.get("PATH"))
                .output()
                .expect("run kubectl");
            assert!(
                output.status.success(),
                "kubectl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8_lossy(&output.stdout).trim().to_string()
        };
        kubectl(&["create", "serviceaccount", account, "-n", "kube-system"]);
        kubectl(&[
            "create",
            "clusterrolebinding",
            account,
            "--clusterrole=cluster-admin",
            &format!("--serviceaccount=kube-system:{account}"),
        ]);
        kubectl(&[
            "create",
            "token",
            account,
            "-n",
            "kube-system",
            "--duration=2h",
        ])
    }
}

/// A cluster Secret as Argo CD writes one (`stringData`, as a user applies it).
fn cluster_secret(name: &str, label: &str, data: Value) -> Secret {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {label: "cluster"}},
        "stringData": data,
    }))
    .expect("cluster Secret")
}

/// The cluster Secret of cluster 2 with the admin's client certificate.
fn certificate_secret(name: &str, cluster_name: &str, two: &Cluster2) -> Secret {
    let config = json!({"tlsClientConfig": {
        "caData": two.ca_data, "certData": two.cert_data, "keyData": two.key_data
    }});
    cluster_secret(
        name,
        "sluice.dev/secret-type",
        json!({"name": cluster_name, "server": two.server, "config": config.to_string()}),
    )
}

async fn create_secret(h: &GitopsHarness, secret: &Secret) {
    Api::<Secret>::namespaced(h.client.clone(), &h.ns.name)
        .create(&PostParams::default(), secret)
        .await
        .expect("create the cluster Secret");
}

async fn create_app(h: &GitopsHarness, name: &str, repo: &GitRepo, spec: Value) {
    let mut app = json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Application",
        "metadata": {"name": name},
        "spec": {"source": {"repoURL": repo.url, "targetRevision": "main", "path": "app"}}
    });
    if let (Some(base), Some(extra)) = (app["spec"].as_object_mut(), spec.as_object()) {
        base.extend(extra.clone());
    }
    let app: Application = serde_json::from_value(app).expect("application");
    h.apps()
        .create(&PostParams::default(), &app)
        .await
        .expect("create application");
}

fn automated() -> Value {
    json!({"automated": {"prune": true, "selfHeal": true}, "syncOptions": ["CreateNamespace=true"]})
}

fn synced_and_healthy(app: &Application) -> bool {
    sync_status(app) == SyncStatusCode::Synced && health(app) == HealthStatusCode::Healthy
}

/// `destination.name` selects cluster 2 by its Secret's `name`: Git's objects land there and not
/// in cluster 1, the Application is Synced and Healthy from cluster 2's state, drift there is
/// healed from cluster 2's watch, and what Git drops is pruned there.
#[tokio::test]
async fn destination_name_deploys_syncs_heals_and_prunes_on_the_named_cluster() {
    // A long poll: whatever happens quickly is the watch of cluster 2 or the webhook.
    let h = GitopsHarness::start("mc-name", "120s").await;
    let two = Cluster2::connect().await;
    let ns = h.ns.name.clone();
    let repo = GitRepo::create(&h.env, "mc-name");
    let sha1 = repo.commit(
        "v1",
        &[
            ("app/settings.json", Some(&config_map("settings", "1"))),
            ("app/extra.json", Some(&config_map("extra", "x"))),
            (
                "app/web.json",
                Some(&deployment("web", 2, "example/web:1.0")),
            ),
        ],
    );
    create_secret(&h, &certificate_secret("cluster-two", "two", &two)).await;
    create_app(
        &h,
        "shop",
        &repo,
        json!({"destination": {"name": "two", "namespace": ns}, "syncPolicy": automated()}),
    )
    .await;

    let app = h
        .wait_app("shop", "Synced and Healthy on cluster two", |a| {
            synced_and_healthy(a) && common::gitops::revision(a).as_deref() == Some(&sha1)
        })
        .await;
    assert_eq!(
        two.config_value(&ns, "settings").await.as_deref(),
        Some("1")
    );
    let web: Deployment = Api::namespaced(two.client.clone(), &ns)
        .get("web")
        .await
        .expect("the Deployment is on cluster 2");
    assert_eq!(
        web.status.and_then(|s| s.available_replicas),
        Some(2),
        "Healthy was judged from cluster 2's Deployment"
    );
    assert_eq!(
        h.config_value("settings").await,
        None,
        "nothing lands in cluster 1's namespace of the same name"
    );
    assert!(
        app.status.as_ref().is_some_and(|s| s.resources.len() == 3),
        "{:?}",
        app.status.map(|s| s.resources)
    );

    // Drift on cluster 2 is seen by its watch (the poll is 120 s) and healed there.
    two.config_maps(&ns)
        .patch(
            "settings",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"v": "drifted"}})),
        )
        .await
        .expect("drift on cluster 2");
    two.wait_config(&ns, "settings", Some("1")).await;

    // Git drops `extra`: pruned on cluster 2.
    let sha2 = repo.commit("drop extra", &[("app/extra.json", None)]);
    assert_eq!(h.push_event(&repo, true).await, 200);
    two.wait_config(&ns, "extra", None).await;
    h.wait_app("shop", "Synced at the commit without extra", |a| {
        synced_and_healthy(a) && common::gitops::revision(a).as_deref() == Some(&sha2)
    })
    .await;
    assert_eq!(
        two.config_value(&ns, "settings").await.as_deref(),
        Some("1")
    );
    two.delete_namespace(&ns).await;
}

/// `destination.server` selects the cluster Secret with that server; Argo CD's own label and a
/// bearer token work; deleting the Application with the resources finalizer deletes what it
/// deployed on cluster 2.
#[tokio::test]
async fn destination_server_with_a_bearer_token_deploys_and_cascade_deletes_there() {
    let h = GitopsHarness::start("mc-server", "120s").await;
    let two = Cluster2::connect().await;
    let ns = h.ns.name.clone();
    let token = two.admin_token(&h.env, &format!("sluice-{ns}"));
    let config = json!({"bearerToken": token, "tlsClientConfig": {"caData": two.ca_data}});
    create_secret(
        &h,
        &cluster_secret(
            "argo-style",
            "argocd.argoproj.io/secret-type",
            json!({"name": "second", "server": format!("{}/", two.server),
                   "config": config.to_string()}),
        ),
    )
    .await;
    let repo = GitRepo::create(&h.env, "mc-server");
    let sha = repo.commit(
        "v1",
        &[("app/settings.json", Some(&config_map("settings", "token")))],
    );
    let mut spec =
        json!({"destination": {"server": two.server, "namespace": ns}, "syncPolicy": automated()});
    spec["syncPolicy"]["syncOptions"] = json!([]);
    two.create_namespace(&ns).await;
    create_app(&h, "shop", &repo, spec).await;
    h.wait_synced("shop", &sha).await;
    assert_eq!(
        two.config_value(&ns, "settings").await.as_deref(),
        Some("token")
    );
    assert_eq!(h.config_value("settings").await, None);

    h.apps()
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"finalizers": ["resources-finalizer.argocd.argoproj.io"]}}),
            ),
        )
        .await
        .expect("add the finalizer");
    h.apps()
        .delete("shop", &DeleteParams::default())
        .await
        .expect("delete the Application");
    two.wait_config(&ns, "settings", None).await;
    wait_for("the Application to be gone", TIMEOUT, || async {
        h.apps()
            .get_opt("shop")
            .await
            .expect("read")
            .is_none()
            .then_some(())
    })
    .await;
    two.delete_namespace(&ns).await;
}

/// A destination naming no cluster gets an InvalidSpecError naming it and nothing is applied
/// anywhere; once its cluster Secret appears, the Application syncs at once (the Secret's watch, not
/// the poll). A broken cluster Secret is named with what is wrong in it.
#[tokio::test]
async fn unknown_or_broken_clusters_are_conditions_and_apply_nothing() {
    let h = GitopsHarness::start("mc-unknown", "120s").await;
    let two = Cluster2::connect().await;
    let ns = h.ns.name.clone();
    let repo = GitRepo::create(&h.env, "mc-unknown");
    let sha = repo.commit(
        "v1",
        &[("app/settings.json", Some(&config_map("settings", "1")))],
    );
    create_app(
        &h,
        "later",
        &repo,
        json!({"destination": {"name": "later", "namespace": ns}, "syncPolicy": automated()}),
    )
    .await;
    let mut broken = certificate_secret("broken", "broken", &two);
    broken.string_data.as_mut().expect("stringData").insert(
        "config".into(),
        r#"{"tlsClientConfig": {"caData": "not base64!"}}"#.into(),
    );
    create_secret(&h, &broken).await;
    create_app(
        &h,
        "broken",
        &repo,
        json!({"destination": {"name": "broken", "namespace": ns}, "syncPolicy": automated()}),
    )
    .await;

    let app = h
        .wait_app("later", "an InvalidSpecError naming the cluster", |a| {
            condition(a, "InvalidSpecError").is_some()
        })
        .await;
    let message = condition(&app, "InvalidSpecError").unwrap_or_default();
    assert!(
        message.contains("there are no clusters with this name: later"),
        "{message}"
    );
    let app = h
        .wait_app("broken", "an InvalidSpecError naming the Secret", |a| {
            condition(a, "InvalidSpecError").is_some()
        })
        .await;
    let message = condition(&app, "InvalidSpecError").unwrap_or_default();
    assert_eq!(
        message,
        format!(
            "cluster Secret {ns}/broken: config.tlsClientConfig.caData is not base64; nothing is applied"
        )
    );
    assert!(!message.contains(&two.key_data));

    // A cluster that does not answer: a ComparisonError naming it, in bounded time.
    let dead_server = format!("https://{}", common::free_local_addr());
    let mut dead = certificate_secret("dead", "dead", &two);
    dead.string_data
        .as_mut()
        .expect("stringData")
        .insert("server".into(), dead_server.clone());
    create_secret(&h, &dead).await;
    create_app(
        &h,
        "dead",
        &repo,
        json!({"destination": {"name": "dead", "namespace": ns}, "syncPolicy": automated()}),
    )
    .await;
    let app = h
        .wait_app("dead", "a ComparisonError naming the cluster", |a| {
            condition(a, "ComparisonError").is_some()
        })
        .await;
    let message = condition(&app, "ComparisonError").unwrap_or_default();
    assert!(
        message.contains(&format!("on cluster dead ({dead_server})")),
        "{message}"
    );
    assert_eq!(sync_status(&app), SyncStatusCode::Unknown);
    assert_eq!(h.config_value("settings").await, None);
    assert!(
        !two.namespace_exists(&ns).await,
        "nothing reached cluster 2"
    );

    // The cluster is declared: the Application syncs without waiting for its 120 s poll.
    create_secret(&h, &certificate_secret("later", "later", &two)).await;
    let app = h.wait_synced("later", &sha).await;
    assert_eq!(condition(&app, "InvalidSpecError"), None);
    assert_eq!(
        two.config_value(&ns, "settings").await.as_deref(),
        Some("1")
    );
    two.delete_namespace(&ns).await;
}

/// A project's `destinations` are matched against the resolved cluster (its server and its name):
/// one that permits only the controller's own cluster refuses cluster 2 and applies nothing there,
/// whether the Application names it or gives its server.
#[tokio::test]
async fn a_project_whose_destinations_exclude_the_cluster_refuses_it() {
    let h = GitopsHarness::start("mc-project", "120s").await;
    let two = Cluster2::connect().await;
    let ns = h.ns.name.clone();
    create_secret(&h, &certificate_secret("two", "two", &two)).await;
    let project: sluice::api::project::AppProject = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AppProject",
        "metadata": {"name": "local-only"},
        "spec": {"sourceRepos": ["*"], "destinations": [
            {"server": "https://kubernetes.default.svc", "namespace": "*"},
            {"name": "in-cluster", "namespace": "*"}]}
    }))
    .expect("project");
    Api::<sluice::api::project::AppProject>::namespaced(h.client.clone(), &ns)
        .create(&PostParams::default(), &project)
        .await
        .expect("create the project");
    let repo = GitRepo::create(&h.env, "mc-project");
    let sha = repo.commit(
        "v1",
        &[("app/settings.json", Some(&config_map("settings", "1")))],
    );
    for (name, destination) in [
        ("by-name", json!({"name": "two", "namespace": ns})),
        ("by-server", json!({"server": two.server, "namespace": ns})),
    ] {
        create_app(
            &h,
            name,
            &repo,
            json!({"project": "local-only", "destination": destination,
                   "syncPolicy": automated()}),
        )
        .await;
    }
    for name in ["by-name", "by-server"] {
        let app = h
            .wait_app(name, "refused by its project", |a| {
                condition(a, "InvalidSpecError").is_some()
            })
            .await;
        let message = condition(&app, "InvalidSpecError").unwrap_or_default();
        assert_eq!(
            message,
            format!(
                "destination server {:?} name \"two\" namespace {ns:?} is not permitted by project local-only's destinations",
                two.server
            ),
            "{name}"
        );
    }
    assert!(
        !two.namespace_exists(&ns).await,
        "nothing reached cluster 2"
    );
    assert_eq!(h.config_value("settings").await, None);

    // Argo CD's `namespaces` of a cluster Secret: only those are managed there, nothing else applied.
    let mut scoped = certificate_secret("scoped", "scoped", &two);
    let data = scoped.string_data.as_mut().expect("stringData");
    data.insert("namespaces".into(), "somewhere-else".into());
    create_secret(&h, &scoped).await;
    create_app(
        &h,
        "scoped",
        &repo,
        json!({"destination": {"name": "scoped", "namespace": ns}, "syncPolicy": automated()}),
    )
    .await;
    let app = h
        .wait_app("scoped", "a sync refused by the Secret's namespaces", |a| {
            condition(a, "SyncError").is_some()
        })
        .await;
    let message = condition(&app, "SyncError").unwrap_or_default();
    assert!(
        message.contains(&format!(
            "ConfigMap {ns}/settings: namespace {ns:?} is not managed on cluster scoped ({}): its Secret lists only namespaces somewhere-else",
            two.server
        )),
        "{message}"
    );
    assert!(
        !two.namespace_exists(&ns).await,
        "nothing reached cluster 2"
    );

    // Listed among several namespaces (one watch each): synced there.
    Api::<Secret>::namespaced(h.client.clone(), &ns)
        .patch(
            "scoped",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"namespaces": format!("somewhere-else,{ns}")}})),
        )
        .await
        .expect("widen the Secret's namespaces");
    // Automated sync does not retry a revision whose sync failed (Argo CD's rule): ask for one.
    h.request("scoped", json!({"sync": {}})).await;
    let app = h.wait_synced("scoped", &sha).await;
    assert_eq!(condition(&app, "SyncError"), None);
    assert_eq!(
        two.config_value(&ns, "settings").await.as_deref(),
        Some("1")
    );
    two.delete_namespace(&ns).await;
}

/// With `--sync-impersonation`, a sync to cluster 2 writes as the ServiceAccount the project names
/// for cluster 2's server, on cluster 2: refused by cluster 2's RBAC until the account may write
/// there.
#[tokio::test]
async fn impersonation_uses_the_projects_account_on_the_remote_cluster() {
    let h = GitopsHarness::start_with(
        "mc-imp",
        "120s",
        &["--sync-impersonation"],
        common::gitops::DEBUG_LOG,
    )
    .await;
    let two = Cluster2::connect().await;
    let ns = h.ns.name.clone();
    create_secret(&h, &certificate_secret("two", "two", &two)).await;
    let project: sluice::api::project::AppProject = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AppProject",
        "metadata": {"name": "remote"},
        "spec": {"sourceRepos": ["*"],
                 "destinations": [{"name": "two", "namespace": ns}],
                 "destinationServiceAccounts": [
                     {"server": two.server, "namespace": ns, "defaultServiceAccount": "deployer"}]}
    }))
    .expect("project");
    Api::<sluice::api::project::AppProject>::namespaced(h.client.clone(), &ns)
        .create(&PostParams::default(), &project)
        .await
        .expect("create the project");
    two.create_namespace(&ns).await;
    let account: k8s_openapi::api::core::v1::ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "deployer"}})).expect("account");
    Api::namespaced(two.client.clone(), &ns)
        .create(&PostParams::default(), &account)
        .await
        .expect("create the ServiceAccount on cluster 2");
    let repo = GitRepo::create(&h.env, "mc-imp");
    let sha = repo.commit(
        "v1",
        &[("app/settings.json", Some(&config_map("settings", "1")))],
    );
    let mut policy = automated();
    policy["syncOptions"] = json!([]);
    policy["retry"] = json!({"limit": -1, "backoff": {"duration": "1s", "maxDuration": "2s"}});
    create_app(
        &h,
        "shop",
        &repo,
        json!({"project": "remote", "destination": {"name": "two", "namespace": ns},
               "syncPolicy": policy}),
    )
    .await;
    let user = format!("system:serviceaccount:{ns}:deployer");
    h.wait_app("shop", "a sync refused by cluster 2's RBAC", |a| {
        common::gitops::operation_message(a).contains(&format!("User \"{user}\""))
    })
    .await;
    assert_eq!(two.config_value(&ns, "settings").await, None);

    let binding: k8s_openapi::api::rbac::v1::RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "deployer-edit"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": ns}]
    }))
    .expect("binding");
    Api::namespaced(two.client.clone(), &ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("bind the account on cluster 2");
    h.wait_synced("shop", &sha).await;
    let cm = two
        .config_maps(&ns)
        .get("settings")
        .await
        .expect("applied on cluster 2");
    let managers: Vec<String> = cm
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|f| f.manager)
        .collect();
    assert!(
        managers.iter().any(|m| m == "sluice-gitops"),
        "{managers:?}"
    );
    two.delete_namespace(&ns).await;
}
