//! Repository credentials between tenants (issue 16) on the local cluster: credentials go only to
//! the URL they were chosen for, a Secret naming a project serves only that project, and the Git cache
//! gives nobody objects fetched with credentials they do not hold. The private repository is a real
//! smart-HTTP server behind basic auth on 127.0.0.1 (`git http-backend`); the "other server" is a
//! 127.0.0.1 listener answering 401 that records what it was sent.
//! Needs `e2e/cluster/up` (for the env file and the cluster).

mod common;
// Shared with gitops_source_e2e, which also counts the server's refusals; this binary does not.
#[allow(dead_code)]
#[path = "gitops_source_e2e/http_git.rs"]
mod http_git;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, CustomResourceExt};
use serde_json::json;
use sluice::api::application::{Application, OperationPhase};
use sluice::api::project::AppProject;

use common::gitops::{DEBUG_LOG, GitRepo, GitopsHarness, TIMEOUT, condition, config_map};
use common::wait_for;

const USER: &str = "deploy-bot";
const TOKEN: &str = "tok_team_a_5f4e3d2c";
/// The private server speaks plain HTTP on 127.0.0.1.
const CONTROLLER_FLAGS: &[&str] = &["--git-allow-insecure-http"];

/// A repository of `$GIT_ROOT` reached through the private smart-HTTP server (basic auth).
struct PrivateRepo {
    server: http_git::PrivateGitServer,
    repo: GitRepo,
    url: String,
}

impl PrivateRepo {
    fn create(h: &GitopsHarness, prefix: &str) -> Self {
        let server =
            http_git::PrivateGitServer::start(Path::new(h.env.get("GIT_ROOT")), USER, TOKEN);
        let repo = GitRepo::create(&h.env, prefix);
        let name = repo.url.rsplit('/').next().expect("repository name");
        let url = format!("{}/{name}", server.base_url);
        Self { server, repo, url }
    }
}

/// A repository credentials Secret in the harness's namespace (the controller's) for URLs under
/// `url_prefix`, naming `project` when given.
async fn create_credentials(
    h: &GitopsHarness,
    name: &str,
    url_prefix: &str,
    project: Option<&str>,
) {
    let mut data = json!({"url": url_prefix, "username": USER, "password": TOKEN});
    if let Some(project) = project {
        data["project"] = json!(project);
    }
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "labels": {"sluice.dev/secret-type": "repository"}},
        "stringData": data,
    }))
    .expect("secret");
    Api::<Secret>::namespaced(h.client.clone(), &h.ns.name)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create credentials Secret");
}

/// Application `name` of `project` syncing `path` of `url` into the namespace, automatically.
async fn create_app(h: &GitopsHarness, name: &str, project: &str, url: &str, path: &str) {
    let app: Application = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Application",
        "metadata": {"name": name},
        "spec": {"project": project,
                 "source": {"repoURL": url, "targetRevision": "main", "path": path},
                 "destination": {"namespace": h.ns.name},
                 "syncPolicy": {"automated": {"prune": true}}}
    }))
    .expect("application");
    h.apps()
        .create(&PostParams::default(), &app)
        .await
        .expect("create application");
}

/// The AppProject CRD (served by `crds/` once projects are; applied here until then, the same
/// way) and permissive projects `names` in the harness's namespace.
async fn create_projects(h: &GitopsHarness, names: &[&str]) {
    let crds: Api<CustomResourceDefinition> = Api::all(h.client.clone());
    let crd = AppProject::crd();
    let crd_name = crd.metadata.name.clone().expect("CRD name");
    crds.patch(
        &crd_name,
        &PatchParams::apply("sluice-e2e-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("apply the AppProject CRD");
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(crds, &crd_name, conditions::is_crd_established()),
    )
    .await
    .expect("AppProject CRD established in 30s")
    .expect("watch CRD");
    let projects: Api<AppProject> = Api::namespaced(h.client.clone(), &h.ns.name);
    for name in names {
        let project: AppProject = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "AppProject",
            "metadata": {"name": name},
            "spec": {"sourceRepos": ["*"],
                     "destinations": [{"server": "*", "namespace": "*"}],
                     "clusterResourceWhitelist": [{"group": "*", "kind": "*"}]}
        }))
        .expect("project");
        projects
            .create(&PostParams::default(), &project)
            .await
            .expect("create AppProject");
    }
}

/// A server on 127.0.0.1 that answers every request `401` with `WWW-Authenticate: Basic` (as a Git
/// host does before it gets credentials) and records each request's headers.
struct CredentialTrap {
    base_url: String,
    requests: Arc<Mutex<Vec<BTreeMap<String, String>>>>,
}

impl CredentialTrap {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let base_url = format!("http://{}", listener.local_addr().expect("local addr"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&requests);
        // The thread ends with the test process.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut writer = match stream.try_clone() {
                    Ok(writer) => writer,
                    Err(_) => continue,
                };
                let mut headers = BTreeMap::new();
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                headers.insert(":request".to_string(), line.trim_end().to_string());
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 {
                        break;
                    }
                    let header = header.trim_end();
                    if header.is_empty() {
                        break;
                    }
                    if let Some((name, value)) = header.split_once(':') {
                        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
                    }
                }
                recorded.lock().expect("requests").push(headers);
                let _ = writer.write_all(
                    b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\n\
                      Content-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        Self { base_url, requests }
    }

    fn requests(&self) -> Vec<BTreeMap<String, String>> {
        self.requests.lock().expect("requests").clone()
    }
}

fn operation_state(app: &Application) -> Option<(OperationPhase, String)> {
    let state = app.status.as_ref()?.operation_state.as_ref()?;
    Some((state.phase, state.message.clone().unwrap_or_default()))
}

/// A user who may only sync points the operation's `repoURL` at their own server: the
/// credentials of the Application's repository are not sent there (they are chosen for the URL
/// fetched, and none matches it), and the operation fails naming the URL.
#[tokio::test]
async fn a_sync_operation_to_another_server_is_sent_no_credentials() {
    let h = GitopsHarness::start_with("creds-op", "10s", CONTROLLER_FLAGS, DEBUG_LOG).await;
    let private = PrivateRepo::create(&h, "creds-op");
    let head = private.repo.commit(
        "team A's config",
        &[("app/cm.yaml", Some(&config_map("team-a", "1")))],
    );
    create_credentials(&h, "repo-creds", &private.server.base_url, None).await;
    create_app(&h, "app", "default", &private.url, "app").await;
    h.wait_synced("app", &head).await;

    let trap = CredentialTrap::start();
    let foreign = format!("{}/team-a/app.git", trap.base_url);
    h.request(
        "app",
        json!({"sync": {"revision": "main",
                        "source": {"repoURL": foreign, "targetRevision": "main", "path": "app"}}}),
    )
    .await;
    let app = h
        .wait_app("app", "the operation ended in Failed or Error", |a| {
            operation_state(a).is_some_and(|(phase, _)| {
                matches!(phase, OperationPhase::Failed | OperationPhase::Error)
            })
        })
        .await;
    let (_, message) = operation_state(&app).expect("operation state");
    assert!(message.contains(&foreign), "{message}");
    assert!(message.contains("authentication"), "{message}");

    let requests = trap.requests();
    assert!(!requests.is_empty(), "the fetch never reached the server");
    for request in &requests {
        assert!(
            !request.contains_key("authorization"),
            "credentials were sent to {foreign}: {request:?}"
        );
    }
}

/// Team A's Application syncs its private repository with a Secret naming project `team-a`; team
/// B's Application (project `team-b`, no credentials) on the same URL, created once the cache holds
/// the repository, cannot fetch it, never applies anything of it, and does not disturb team A.
#[tokio::test]
async fn a_team_without_credentials_reads_nothing_of_anothers_repository_from_the_cache() {
    let h = GitopsHarness::start_with("creds-cache", "5s", CONTROLLER_FLAGS, DEBUG_LOG).await;
    create_projects(&h, &["team-a", "team-b"]).await;
    let private = PrivateRepo::create(&h, "creds-cache");
    let first = private.repo.commit(
        "both teams' paths",
        &[
            ("a/cm.yaml", Some(&config_map("team-a", "1"))),
            ("b/cm.yaml", Some(&config_map("team-b", "1"))),
        ],
    );
    create_credentials(&h, "team-a-repo", &private.url, Some("team-a")).await;
    create_app(&h, "team-a", "team-a", &private.url, "a").await;
    h.wait_synced("team-a", &first).await;

    create_app(&h, "team-b", "team-b", &private.url, "b").await;
    let message = wait_for(
        "team-b: a ComparisonError naming authentication",
        TIMEOUT,
        || async {
            let app = h.apps().get("team-b").await.ok()?;
            condition(&app, "ComparisonError").filter(|m| m.contains("authentication"))
        },
    )
    .await;
    assert!(message.contains(&private.url), "{message}");
    assert!(!message.contains(TOKEN), "{message}");

    // Team A keeps syncing new commits meanwhile; team B never gets anything of the repository.
    let second = private.repo.commit(
        "team A's next config",
        &[("a/cm.yaml", Some(&config_map("team-a", "2")))],
    );
    h.wait_synced("team-a", &second).await;
    let team_b = h.apps().get("team-b").await.expect("team-b");
    let status = team_b.status.clone().unwrap_or_default();
    let revision = status.sync.as_ref().and_then(|s| s.revision.clone());
    assert_eq!(revision, None, "{:?}", status.sync);
    assert!(status.resources.is_empty(), "{:?}", status.resources);
    assert_eq!(h.config_value("team-b").await, None);
    assert!(
        condition(&team_b, "ComparisonError").is_some(),
        "{:?}",
        status.conditions
    );
}
