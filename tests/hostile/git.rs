//! Attacks of this area; see tests/hostile_e2e.rs. Git servers and repositories as an attacker
//! would run them: a server that accepts connections and never answers (a tarpit), a "git bomb"
//! (a few KiB of trees that expand to 10^8 files), and repository URLs pointing at the controller's
//! own filesystem.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use git2::Signature;
use kube::api::PostParams;
use serde_json::json;
use sluice::api::application::{Application, SyncStatusCode};
use tempfile::TempDir;

use crate::common::gitops::{
    DEBUG_LOG, GitRepo, GitopsHarness, TIMEOUT, condition, config_map, revision, sync_status,
};
use crate::common::{E2eEnv, http_get, wait_for};

const COMPARISON_ERROR: &str = "ComparisonError";

fn automated() -> serde_json::Value {
    json!({"syncPolicy": {"automated": {"prune": true}}})
}

/// Creates Application `name` on `repo_url` (any URL, unlike `GitopsHarness::create_app`).
async fn create_app_on(h: &GitopsHarness, name: &str, repo_url: &str) -> Result<(), kube::Error> {
    let app = json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Application",
        "metadata": {"name": name},
        "spec": {"source": {"repoURL": repo_url, "targetRevision": "main", "path": "."},
                 "destination": {"namespace": h.ns.name},
                 "syncPolicy": automated()["syncPolicy"]}
    });
    let app: Application = serde_json::from_value(app).expect("application");
    h.apps()
        .create(&PostParams::default(), &app)
        .await
        .map(|_| ())
}

/// Waits until Application `name` has a ComparisonError whose message contains `needle`.
async fn wait_comparison_error(h: &GitopsHarness, name: &str, needle: &str) -> String {
    let api = h.apps();
    wait_for(
        &format!("{name}: a {COMPARISON_ERROR} saying {needle:?}"),
        TIMEOUT,
        || async {
            let app = api.get(name).await.ok()?;
            condition(&app, COMPARISON_ERROR).filter(|m| m.contains(needle))
        },
    )
    .await
}

/// The controller process is still running and answers /healthz.
async fn assert_controller_up(h: &mut GitopsHarness) {
    assert!(
        h.controller
            .child
            .try_wait()
            .expect("controller status")
            .is_none(),
        "the controller exited; log:\n{}",
        h.controller_log()
    );
    let health = http_get(&format!("{}/healthz", h.controller.metrics_url)).await;
    assert_eq!(health.map(|(status, _)| status), Some(200));
}

/// A TCP server on 127.0.0.1 that accepts every connection and never sends a byte; the
/// connections are held until the test ends.
struct Tarpit {
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Tarpit {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the tarpit");
        let addr = listener.local_addr().expect("tarpit address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
        Self {
            addr,
            accepted,
            task,
        }
    }
}

impl Drop for Tarpit {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// docs/behaviour.md G14 under attack: 16 Applications (as many as there are reconcile slots) on a
/// git server that never answers, created before 10 healthy ones. The healthy ones converge within
/// 30 s; the stuck ones show that their fetch is in progress, then that the server did not answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tarpit_git_server_delays_no_other_application() {
    let tarpit = Tarpit::start().await;
    let mut h = GitopsHarness::start_with(
        "hostile-tarpit",
        "10s",
        &["--git-timeout=20s", "--git-connect-timeout=5s"],
        DEBUG_LOG,
    )
    .await;
    for i in 0..16 {
        let url = format!("git://{}/stuck-{i}.git", tarpit.addr);
        create_app_on(&h, &format!("stuck-{i}"), &url)
            .await
            .expect("create a stuck Application");
    }
    let mut healthy = Vec::new();
    for i in 0..10 {
        let repo = GitRepo::create(&h.env, &format!("healthy-{i}"));
        let sha = repo.commit(
            "first",
            &[("cm.yaml", Some(&config_map(&format!("cm-{i}"), "v1")))],
        );
        healthy.push((format!("healthy-{i}"), repo, sha));
    }
    let created = Instant::now();
    for (name, repo, _) in &healthy {
        h.create_app(name, repo, ".", automated()).await;
    }

    let api = h.apps();
    wait_for(
        "the 10 healthy Applications Synced",
        Duration::from_secs(30),
        || async {
            for (name, _, sha) in &healthy {
                let app = api.get(name).await.ok()?;
                let synced = sync_status(&app) == SyncStatusCode::Synced
                    && revision(&app).as_deref() == Some(sha.as_str());
                if !synced {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    let converged = created.elapsed();
    for i in 0..10 {
        assert_eq!(
            h.config_value(&format!("cm-{i}")).await.as_deref(),
            Some("v1")
        );
    }

    let in_progress = wait_comparison_error(&h, "stuck-0", "in progress").await;
    assert!(
        in_progress.contains(&format!("fetch of git://{}/stuck-0.git", tarpit.addr)),
        "{in_progress}"
    );
    let timed_out = wait_comparison_error(&h, "stuck-3", "did not answer for 20s").await;
    assert!(timed_out.contains("--git-timeout"), "{timed_out}");
    assert!(tarpit.accepted.load(Ordering::SeqCst) >= 1);
    for i in 0..16 {
        let app = api
            .get(&format!("stuck-{i}"))
            .await
            .expect("stuck Application");
        assert_ne!(sync_status(&app), SyncStatusCode::Synced, "stuck-{i}");
    }

    // From now on the stuck repositories are known to be slow: their retries hold no reconcile
    // slot, and a new commit of a healthy one is synced within its poll (10 s) and a margin.
    let (name, repo, _) = &healthy[0];
    let second = repo.commit("second", &[("cm.yaml", Some(&config_map("cm-0", "v2")))]);
    let pushed = Instant::now();
    wait_for(
        &format!("{name} Synced at the second commit"),
        Duration::from_secs(25),
        || async {
            let app = api.get(name).await.ok()?;
            (revision(&app).as_deref() == Some(second.as_str())
                && sync_status(&app) == SyncStatusCode::Synced)
                .then_some(())
        },
    )
    .await;
    assert_eq!(h.config_value("cm-0").await.as_deref(), Some("v2"));
    assert_controller_up(&mut h).await;
    eprintln!(
        "healthy Applications converged in {converged:?} next to 16 stuck ones; a later commit in {:?}",
        pushed.elapsed()
    );
}

/// A repository of the local git server whose `main` is a git bomb: `width` entries per tree level,
/// all the same subtree, `depth` levels over one ConfigMap: width^depth files from a few KiB.
fn git_bomb_repository(env: &E2eEnv, width: usize, depth: usize) -> GitRepo {
    let bomb = GitRepo::create(env, "bomb");
    commit_bomb(bomb.repository(), width, depth);
    bomb
}

fn commit_bomb(repo: &git2::Repository, width: usize, depth: usize) {
    let blob = repo.blob(config_map("boom", "v").as_bytes()).expect("blob");
    let mut leaf = repo.treebuilder(None).expect("treebuilder");
    leaf.insert("cm.yaml", blob, 0o100_644).expect("leaf entry");
    let mut subtree = leaf.write().expect("leaf tree");
    for _ in 0..depth {
        let mut level = repo.treebuilder(None).expect("treebuilder");
        for i in 0..width {
            level
                .insert(format!("d{i}"), subtree, 0o040_000)
                .expect("tree entry");
        }
        subtree = level.write().expect("tree");
    }
    let tree = repo.find_tree(subtree).expect("root tree");
    let sig = Signature::now("E2E", "e2e@localhost").expect("signature");
    repo.commit(Some("refs/heads/main"), &sig, &sig, "boom", &tree, &[])
        .expect("commit");
}

fn reconciled_at(app: &Application) -> Option<String> {
    let status = app.status.as_ref()?;
    status.reconciled_at.as_ref().map(|t| t.0.to_string())
}

fn disk_usage(path: &Path) -> u64 {
    std::fs::read_dir(path).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => disk_usage(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    })
}

fn tree_dirs(cache: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(cache.join("trees")).map_or_else(
        |_| Vec::new(),
        |entries| entries.flatten().map(|e| e.path()).collect(),
    )
}

/// A repository of 10^8 files (10 entries per level, 8 levels, all one subtree): the Application
/// gets a ComparisonError naming --git-max-tree-files, the cache stays small, and another
/// Application of the same controller still syncs. The limit is lowered from its default (50000)
/// so that the debug build on a loaded test machine writes (and removes) fewer files before it
/// stops; the default is the same code path.
#[tokio::test]
async fn a_git_bomb_ends_in_a_condition_and_the_cache_stays_small() {
    let cache = TempDir::new().expect("cache dir");
    let cache_flag = format!("--git-cache-dir={}", cache.path().display());
    let mut h = GitopsHarness::start_with(
        "hostile-bomb",
        "10s",
        &[cache_flag.as_str(), "--git-max-tree-files=5000"],
        DEBUG_LOG,
    )
    .await;
    let bomb = git_bomb_repository(&h.env, 10, 8);
    create_app_on(&h, "bomb", &bomb.url)
        .await
        .expect("create the bomb Application");
    let good = GitRepo::create(&h.env, "beside-bomb");
    let sha = good.commit("first", &[("cm.yaml", Some(&config_map("good", "v1")))]);
    h.create_app("good", &good, ".", automated()).await;

    let message = wait_comparison_error(&h, "bomb", "--git-max-tree-files").await;
    assert!(
        message.contains("more than 5000 files and directories"),
        "{message}"
    );
    h.wait_synced("good", &sha).await;
    // Compared again a poll later: refused again, never extracted.
    let api = h.apps();
    let first = reconciled_at(&api.get("bomb").await.expect("bomb Application"));
    let app = wait_for("bomb: compared again", TIMEOUT, || async {
        let app = api.get("bomb").await.ok()?;
        (reconciled_at(&app) > first).then_some(app)
    })
    .await;
    assert!(condition(&app, COMPARISON_ERROR).is_some_and(|m| m.contains("--git-max-tree-files")));
    assert_eq!(
        h.config_value("boom").await,
        None,
        "nothing of the bomb applied"
    );

    let used = disk_usage(cache.path());
    assert!(used < 20 * 1024 * 1024, "the cache holds {used} bytes");
    let trees = tree_dirs(cache.path());
    assert_eq!(trees.len(), 1, "only the good tree is extracted: {trees:?}");
    // Tree directories are named `<url hash>-<credential hash>-<sha>`.
    let name = trees[0].file_name().and_then(|n| n.to_str()).unwrap_or("");
    assert!(name.ends_with(&format!("-{sha}")), "{trees:?}");
    assert_controller_up(&mut h).await;
}

/// Repository URLs naming the controller's own filesystem are refused: by the API server if the
/// CRD validates `repoURL`, else by the controller with a ComparisonError; nothing is read.
#[tokio::test]
async fn local_repository_urls_are_refused() {
    let mut h = GitopsHarness::start("hostile-local-url", "10s").await;
    let secret_dir = TempDir::new().expect("a local directory");
    let cases = [
        (
            "file-url",
            format!("file://{}", secret_dir.path().display()),
        ),
        ("local-path", secret_dir.path().display().to_string()),
        ("plain-http", "http://127.0.0.1:1/repo.git".to_string()),
    ];
    for (name, url) in &cases {
        match create_app_on(&h, name, url).await {
            Err(kube::Error::Api(status)) => {
                assert!(
                    status.message.contains("repoURL"),
                    "{name}: {}",
                    status.message
                );
            }
            Err(e) => panic!("{name}: {e}"),
            Ok(()) => {
                let needle = if *name == "plain-http" {
                    "--git-allow-insecure-http"
                } else {
                    "local paths and file:// are never fetched"
                };
                let message = wait_comparison_error(&h, name, needle).await;
                assert!(message.contains("is refused"), "{message}");
            }
        }
    }
    assert_controller_up(&mut h).await;
}
