//! The cache against real repositories: bare "upstream" repositories built with git2 in a temporary
//! directory and fetched over `file://`.

use std::path::Path;

use git2::build::TreeUpdateBuilder;
use git2::{FileMode, Oid, Repository, Signature};
use tempfile::TempDir;

use std::os::unix::fs::PermissionsExt;

use super::*;

/// "Any fetch of the last hour will do": the first call fetches, later ones reuse it.
fn an_hour_ago() -> Timestamp {
    Timestamp::now() - jiff::SignedDuration::from_hours(1)
}

/// A bare upstream repository to commit to directly.
struct Upstream {
    _dir: TempDir,
    repo: Repository,
    url: String,
}

impl Upstream {
    fn new() -> Self {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("upstream.git");
        let repo = Repository::init_bare(&path).unwrap();
        repo.set_head("refs/heads/main").unwrap();
        let url = format!("file://{}", path.display());
        Self {
            _dir: dir,
            repo,
            url,
        }
    }

    /// Commits `files` (path, content, mode) on top of `branch` and returns the commit.
    fn commit_files(&self, branch: &str, files: &[(&str, &str, FileMode)]) -> Oid {
        let refname = format!("refs/heads/{branch}");
        let parent = self
            .repo
            .find_reference(&refname)
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
        for (path, content, mode) in files {
            let blob = self.repo.blob(content.as_bytes()).unwrap();
            update.upsert(*path, blob, *mode);
        }
        let tree_id = update.create_updated(&self.repo, &base).unwrap();
        let tree = self.repo.find_tree(tree_id).unwrap();
        let sig = Signature::now("Test", "test@localhost").unwrap();
        let parents: Vec<_> = parent.iter().collect();
        self.repo
            .commit(Some(&refname), &sig, &sig, "change", &tree, &parents)
            .unwrap()
    }

    fn commit(&self, branch: &str, files: &[(&str, &str)]) -> Oid {
        let files: Vec<_> = files
            .iter()
            .map(|(p, c)| (*p, *c, FileMode::Blob))
            .collect();
        self.commit_files(branch, &files)
    }

    fn annotated_tag(&self, name: &str, target: Oid) {
        let object = self.repo.find_object(target, None).unwrap();
        let sig = Signature::now("Test", "test@localhost").unwrap();
        self.repo
            .tag(name, &object, &sig, "release", false)
            .unwrap();
    }
}

fn cache() -> (TempDir, RepoCache) {
    let dir = TempDir::new().unwrap();
    let cache = RepoCache::new(dir.path().to_path_buf(), GitRequestMetrics::default())
        .allowing_local_repositories();
    (dir, cache)
}

#[tokio::test]
async fn a_semver_range_resolves_to_the_highest_matching_tag() {
    let up = Upstream::new();
    let v1 = up.commit("main", &[("app.yaml", "a: 1\n")]);
    let v1_4 = up.commit("main", &[("app.yaml", "a: 2\n")]);
    let v2 = up.commit("main", &[("app.yaml", "a: 3\n")]);
    let rc = up.commit("main", &[("app.yaml", "a: 4\n")]);
    up.annotated_tag("v1.0.0", v1);
    up.annotated_tag("1.4.2", v1_4);
    up.annotated_tag("v2.0.0", v2);
    up.annotated_tag("v2.1.0-rc.1", rc);
    up.repo
        .reference("refs/tags/not-a-version", rc, false, "other tag")
        .unwrap();
    let (_dir, cache) = cache();
    for (range, want) in [
        ("^1.0", v1_4),
        ("~1.0.0", v1),
        (">=1.0.0", v2),
        ("*", v2),
        ("1.x || 2.x", v2),
    ] {
        let got = cache
            .resolve(&up.url, range, None, an_hour_ago())
            .await
            .unwrap();
        assert_eq!(got, want.to_string(), "{range}");
    }
    let err = cache
        .resolve(&up.url, "^3.0", None, an_hour_ago())
        .await
        .unwrap_err();
    assert!(matches!(err, SourceError::UnknownRevision { .. }), "{err}");
}

#[tokio::test]
async fn resolves_branches_tags_shas_and_head() {
    let up = Upstream::new();
    let first = up.commit("main", &[("app.yaml", "a: 1\n")]);
    let second = up.commit("main", &[("app.yaml", "a: 2\n")]);
    let dev = up.commit("dev", &[("dev.yaml", "d: 1\n")]);
    up.annotated_tag("v1.0.0", first);
    up.repo
        .reference("refs/tags/light", second, false, "lightweight tag")
        .unwrap();
    let (_dir, cache) = cache();

    let cases = [
        ("HEAD", second),
        ("", second),
        ("main", second),
        ("refs/heads/main", second),
        ("dev", dev),
        ("v1.0.0", first),
        ("refs/tags/v1.0.0", first),
        ("light", second),
    ];
    for (revision, want) in cases {
        let got = cache
            .resolve(&up.url, revision, None, an_hour_ago())
            .await
            .unwrap();
        assert_eq!(got, want.to_string(), "{revision:?}");
    }
    let full = first.to_string();
    assert_eq!(
        cache
            .resolve(&up.url, &full, None, an_hour_ago())
            .await
            .unwrap(),
        full
    );
    assert_eq!(
        cache
            .resolve(&up.url, &full[..8], None, an_hour_ago())
            .await
            .unwrap(),
        full
    );
    assert_eq!(cache.fetch_count(&up.url), 1);
}

#[tokio::test]
async fn unknown_revision_is_a_clear_error() {
    let up = Upstream::new();
    up.commit("main", &[("app.yaml", "a: 1\n")]);
    let (_dir, cache) = cache();
    for revision in ["nope", "deadbeef", &"0".repeat(40)] {
        let err = cache
            .resolve(&up.url, revision, None, an_hour_ago())
            .await
            .unwrap_err();
        assert_eq!(
            err,
            SourceError::UnknownRevision {
                url: up.url.clone(),
                revision: revision.to_string()
            }
        );
        assert!(err.to_string().contains(&format!(
            "revision {revision:?} is not a branch, tag or commit"
        )));
    }
}

#[tokio::test]
async fn new_commits_are_seen_once_the_cache_is_stale() {
    let up = Upstream::new();
    let first = up.commit("main", &[("app.yaml", "a: 1\n")]);
    let (_dir, cache) = cache();
    assert_eq!(
        cache
            .resolve(&up.url, "main", None, an_hour_ago())
            .await
            .unwrap(),
        first.to_string()
    );

    let second = up.commit("main", &[("app.yaml", "a: 2\n")]);
    // Fresh enough: no fetch, the old commit.
    assert_eq!(
        cache
            .resolve(&up.url, "main", None, an_hour_ago())
            .await
            .unwrap(),
        first.to_string()
    );
    assert_eq!(cache.fetch_count(&up.url), 1);
    // Forced (a webhook push): fetched again.
    assert_eq!(
        cache
            .resolve(&up.url, "main", None, Timestamp::now())
            .await
            .unwrap(),
        second.to_string()
    );
    assert_eq!(cache.fetch_count(&up.url), 2);
}

#[tokio::test]
async fn deleted_branches_are_pruned() {
    let up = Upstream::new();
    up.commit("main", &[("app.yaml", "a: 1\n")]);
    up.commit("feature", &[("f.yaml", "f: 1\n")]);
    let (_dir, cache) = cache();
    cache
        .resolve(&up.url, "feature", None, an_hour_ago())
        .await
        .unwrap();
    up.repo
        .find_reference("refs/heads/feature")
        .unwrap()
        .delete()
        .unwrap();
    let err = cache
        .resolve(&up.url, "feature", None, Timestamp::now())
        .await
        .unwrap_err();
    assert!(matches!(err, SourceError::UnknownRevision { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_share_one_fetch() {
    let up = Upstream::new();
    let head = up.commit("main", &[("app.yaml", "a: 1\n")]);
    let (_dir, cache) = cache();
    // Every Application of a tick asks for a fetch made since the tick began; those queued behind
    // the first caller's fetch must take it, however long they waited.
    let tick = Timestamp::now();
    let calls = (0..20).map(|_| {
        let (cache, url) = (cache.clone(), up.url.clone());
        tokio::spawn(async move { cache.resolve(&url, "main", None, tick).await })
    });
    for result in futures::future::join_all(calls).await {
        assert_eq!(result.unwrap().unwrap(), head.to_string());
    }
    assert_eq!(cache.fetch_count(&up.url), 1);
}

#[tokio::test]
async fn a_failed_fetch_is_remembered_for_max_age() {
    let dir = TempDir::new().unwrap();
    let url = format!("file://{}/missing.git", dir.path().display());
    let (_cache_dir, cache) = cache();
    let err = cache
        .resolve(&url, "main", None, an_hour_ago())
        .await
        .unwrap_err();
    assert!(matches!(err, SourceError::Fetch { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot fetch {url}: ")),
        "{err}"
    );
    let again = cache
        .resolve(&url, "main", None, an_hour_ago())
        .await
        .unwrap_err();
    assert_eq!(again, err);
    assert_eq!(cache.fetch_count(&url), 1);
}

#[tokio::test]
async fn fetch_errors_never_show_credentials() {
    let (_dir, cache) = limited_cache(GitLimits {
        allow_insecure_http: true,
        ..GitLimits::default()
    });
    // Nothing listens on port 9 of localhost: the connection is refused at once.
    let url = "http://bot:s3cr3t-token@127.0.0.1:9/shop.git";
    let creds = Credentials::Https {
        username: "bot".into(),
        password: "s3cr3t-token".into(),
    };
    let err = cache
        .resolve(url, "main", Some(&creds), an_hour_ago())
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(
        !text.contains("s3cr3t-token") && !text.contains("bot:"),
        "{text}"
    );
    assert!(text.contains("http://127.0.0.1:9/shop.git"), "{text}");
    assert!(matches!(err, SourceError::Fetch { .. }), "{text}");
    assert_eq!(cache.fetch_count(url), 1);
}

#[tokio::test]
async fn checkout_writes_the_tree_once() {
    let up = Upstream::new();
    let sha = up
        .commit_files(
            "main",
            &[
                ("app/deploy.yaml", "kind: Deployment\n", FileMode::Blob),
                ("app/nested/svc.yaml", "kind: Service\n", FileMode::Blob),
                ("hooks/run.sh", "#!/bin/sh\n", FileMode::BlobExecutable),
                ("app/link.yaml", "deploy.yaml", FileMode::Link),
            ],
        )
        .to_string();
    let (dir, cache) = cache();
    cache
        .resolve(&up.url, "main", None, an_hour_ago())
        .await
        .unwrap();

    let tree = cache.checkout(&up.url, None, &sha).await.unwrap();
    let tree_name = format!("{}-{sha}", RepoKey::new(&up.url, None).dir_name());
    assert_eq!(tree, dir.path().join("trees").join(&tree_name));
    let read = |p: &str| std::fs::read_to_string(tree.join(p)).unwrap();
    assert_eq!(read("app/deploy.yaml"), "kind: Deployment\n");
    assert_eq!(read("app/nested/svc.yaml"), "kind: Service\n");
    assert_eq!(read("app/link.yaml"), "kind: Deployment\n");
    let mode = std::fs::metadata(tree.join("hooks/run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111);

    // A second checkout reuses the tree; no staging directory is left behind.
    std::fs::write(tree.join("marker"), "kept").unwrap();
    let again = cache.checkout(&up.url, None, &sha).await.unwrap();
    assert_eq!(again, tree);
    assert!(again.join("marker").exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("trees"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, [std::ffi::OsString::from(&tree_name)]);
}

#[tokio::test]
async fn checkout_refuses_symlinks_out_of_the_tree() {
    let up = Upstream::new();
    let sha = up
        .commit_files(
            "main",
            &[("leak.yaml", "../../../etc/passwd", FileMode::Link)],
        )
        .to_string();
    let (dir, cache) = cache();
    cache
        .resolve(&up.url, "main", None, an_hour_ago())
        .await
        .unwrap();
    let err = cache.checkout(&up.url, None, &sha).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("leak.yaml: symlink to ../../../etc/passwd points outside"),
        "{err}"
    );
    assert_eq!(tree_entries(&dir.path().join("trees")), 0);
}

#[tokio::test]
async fn checkout_validates_the_sha() {
    let (_dir, cache) = cache();
    let err = cache
        .checkout("file:///nowhere.git", None, "../../etc")
        .await
        .unwrap_err();
    assert_eq!(
        err,
        SourceError::InvalidSha {
            sha: "../../etc".into()
        }
    );
    let unknown = "1".repeat(40);
    let err = cache
        .checkout("file:///nowhere.git", None, &unknown)
        .await
        .unwrap_err();
    assert!(matches!(err, SourceError::UnknownCommit { .. }), "{err}");
}

#[test]
fn cache_paths_are_stable_hashes() {
    let cache = RepoCache::new("/cache".into(), GitRequestMetrics::default());
    let git_dir = |url: &str, creds: Option<&Credentials>| cache.git_dir(&RepoKey::new(url, creds));
    let dir = git_dir("https://git.example.com/shop.git", None);
    assert_eq!(dir.parent(), Some(Path::new("/cache/repos")));
    let name = dir.file_name().unwrap().to_str().unwrap();
    assert_eq!(
        name,
        format!(
            "{}-anonymous.git",
            url_hash("https://git.example.com/shop.git")
        )
    );
    assert_eq!(dir, git_dir("https://git.example.com/shop.git", None));
    assert_ne!(dir, git_dir("https://git.example.com/web.git", None));
    // Per credentials too, named by a hash of them, never by them.
    let token = Credentials::Https {
        username: "bot".into(),
        password: "ghp_SECRET".into(),
    };
    let with_token = git_dir("https://git.example.com/shop.git", Some(&token));
    assert_ne!(with_token, dir);
    let name = with_token.file_name().unwrap().to_str().unwrap();
    assert_eq!(name.len(), 40 + 1 + 32 + 4, "{name}");
    assert!(
        !name.contains("ghp_SECRET") && !name.contains("bot"),
        "{name}"
    );
}

impl Upstream {
    /// Commits a "git bomb" on `main`: `width` entries per level, all the same subtree, `depth`
    /// levels deep over one small file: width^depth files from a few KiB of objects.
    fn commit_bomb(&self, width: usize, depth: usize) -> Oid {
        let blob = self.repo.blob(b"kind: ConfigMap\n").unwrap();
        let mut leaf = self.repo.treebuilder(None).unwrap();
        leaf.insert("cm.yaml", blob, 0o100_644).unwrap();
        let mut subtree = leaf.write().unwrap();
        for _ in 0..depth {
            let mut level = self.repo.treebuilder(None).unwrap();
            for i in 0..width {
                level.insert(format!("d{i}"), subtree, 0o040_000).unwrap();
            }
            subtree = level.write().unwrap();
        }
        let tree = self.repo.find_tree(subtree).unwrap();
        let sig = Signature::now("Test", "test@localhost").unwrap();
        self.repo
            .commit(Some("refs/heads/main"), &sig, &sig, "bomb", &tree, &[])
            .unwrap()
    }
}

fn limited_cache(limits: GitLimits) -> (TempDir, RepoCache) {
    let (dir, cache) = cache();
    (dir, cache.with_limits(limits).allowing_local_repositories())
}

fn tree_entries(dir: &Path) -> usize {
    walk_count(dir)
}

fn walk_count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| {
                1 + if e.path().is_dir() {
                    walk_count(&e.path())
                } else {
                    0
                }
            })
            .sum()
    })
}

#[tokio::test]
async fn a_git_bomb_stops_at_the_file_limit_and_leaves_nothing() {
    let up = Upstream::new();
    // 10^6 files and 111110 directories in Git.
    let sha = up.commit_bomb(10, 6).to_string();
    let (dir, cache) = limited_cache(GitLimits {
        max_tree_files: 2000,
        ..GitLimits::default()
    });
    cache
        .resolve(&up.url, "main", None, an_hour_ago())
        .await
        .unwrap();
    let started = Instant::now();
    let err = cache.checkout(&up.url, None, &sha).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("the tree holds more than 2000 files and directories (--git-max-tree-files)"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(tree_entries(&dir.path().join("trees")), 0);
    assert_eq!(
        tree_entries(&dir.path().join("trees")),
        0,
        "staging left behind"
    );
    // Refused once, refused again without a second walk.
    assert_eq!(cache.checkout(&up.url, None, &sha).await.unwrap_err(), err);
}

#[tokio::test]
async fn a_tree_over_the_byte_limit_is_refused_before_its_content_is_read() {
    let up = Upstream::new();
    let big = "x".repeat(4096);
    let sha = up
        .commit(
            "main",
            &[("a.yaml", big.as_str()), ("b.yaml", big.as_str())],
        )
        .to_string();
    let (_dir, cache) = limited_cache(GitLimits {
        max_tree_bytes: 6 * 1024,
        ..GitLimits::default()
    });
    cache
        .resolve(&up.url, "main", None, an_hour_ago())
        .await
        .unwrap();
    let err = cache.checkout(&up.url, None, &sha).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("b.yaml: the tree holds more than 6Ki of files (--git-max-tree-bytes)"),
        "{err}"
    );
}

#[tokio::test]
async fn a_fetch_over_the_object_limit_is_stopped_with_the_limit_named() {
    let up = Upstream::new();
    for i in 0..5 {
        up.commit("main", &[(&format!("f{i}.yaml"), &format!("v: {i}\n"))]);
    }
    let (_dir, cache) = limited_cache(GitLimits {
        max_fetch_objects: 3,
        ..GitLimits::default()
    });
    let err = cache
        .resolve(&up.url, "main", None, an_hour_ago())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("more than 3 objects (--git-max-fetch-objects)"),
        "{err}"
    );
}

#[tokio::test]
async fn local_and_insecure_urls_are_refused_without_a_fetch() {
    let dir = TempDir::new().unwrap();
    let cache = RepoCache::new(dir.path().to_path_buf(), GitRequestMetrics::default());
    for url in [
        "file:///etc",
        "/var/lib/repo.git",
        "http://127.0.0.1:9/r.git",
    ] {
        let err = cache
            .resolve(url, "main", None, an_hour_ago())
            .await
            .unwrap_err();
        assert!(matches!(err, SourceError::Url(_)), "{url}: {err}");
        assert!(err.to_string().contains("is refused"), "{err}");
        assert_eq!(cache.fetch_count(url), 0);
    }
    assert!(!dir.path().join("repos").exists());
}

/// A server on 127.0.0.1 that accepts connections and never answers, until released.
struct Tarpit {
    url_base: String,
    release: std::sync::mpsc::Sender<()>,
    accepted: Arc<AtomicU64>,
}

impl Tarpit {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url_base = format!("git://{}", listener.local_addr().unwrap());
        let (release, released) = std::sync::mpsc::channel::<()>();
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&accepted);
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while let Err(std::sync::mpsc::TryRecvError::Empty) = released.try_recv() {
                match listener.accept() {
                    Ok((stream, _)) => {
                        counter.fetch_add(1, Ordering::SeqCst);
                        held.push(stream);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Self {
            url_base,
            release,
            accepted,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_fetch_frees_its_callers_and_delays_no_other_repository() {
    let tarpit = Tarpit::start();
    let stuck = format!("{}/stuck.git", tarpit.url_base);
    let up = Upstream::new();
    let head = up.commit("main", &[("app.yaml", "a: 1\n")]);
    // A caller that waited for the stuck fetch would take this long; the bounds below sit well
    // apart from it so that a loaded machine does not blur the difference.
    let fetch_wait = Duration::from_secs(3);
    let (_dir, cache) = limited_cache(GitLimits {
        fetch_wait,
        ..GitLimits::default()
    });

    let started = Instant::now();
    let err = cache
        .resolve(&stuck, "main", None, an_hour_ago())
        .await
        .unwrap_err();
    assert!(matches!(err, SourceError::FetchInProgress { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("fetch of {stuck} in progress")),
        "{err}"
    );
    assert!(started.elapsed() < fetch_wait * 3);

    // Later callers neither wait nor start a second fetch while the first one hangs.
    let again = Instant::now();
    let calls = (0..8).map(|_| {
        let (cache, url) = (cache.clone(), stuck.clone());
        tokio::spawn(async move { cache.resolve(&url, "main", None, an_hour_ago()).await })
    });
    for result in futures::future::join_all(calls).await {
        assert!(matches!(
            result.unwrap(),
            Err(SourceError::FetchInProgress { .. })
        ));
    }
    assert!(
        again.elapsed() < fetch_wait * 2 / 3,
        "later callers waited: {:?}",
        again.elapsed()
    );
    assert_eq!(cache.fetch_count(&stuck), 1);
    assert_eq!(tarpit.accepted.load(Ordering::SeqCst), 1);

    // Another repository is fetched meanwhile as if nothing happened.
    let healthy = Instant::now();
    let sha = cache
        .resolve(&up.url, "main", None, an_hour_ago())
        .await
        .unwrap();
    assert_eq!(sha, head.to_string());
    assert!(healthy.elapsed() < Duration::from_secs(15));

    // The server hangs up: the fetch ends, its failure is what callers see from then on.
    tarpit.release.send(()).unwrap();
    let failure = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match cache.resolve(&stuck, "main", None, an_hour_ago()).await {
                Err(SourceError::FetchInProgress { .. }) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => break other,
            }
        }
    })
    .await
    .expect("the fetch ends once the server hangs up");
    assert!(
        matches!(failure, Err(SourceError::Fetch { .. })),
        "{failure:?}"
    );
    assert_eq!(cache.fetch_count(&stuck), 1);

    // Its server is known to be slow now: the next tick's fetch starts, and is not waited for.
    let quick = Instant::now();
    let err = cache
        .resolve(&stuck, "main", None, Timestamp::now())
        .await
        .unwrap_err();
    assert!(matches!(err, SourceError::Fetch { .. }), "{err}");
    assert!(
        quick.elapsed() < Duration::from_millis(400),
        "{:?}",
        quick.elapsed()
    );
    assert_eq!(cache.fetch_count(&stuck), 2);
}

#[tokio::test]
async fn checkouts_mark_their_tree_used() {
    let up = Upstream::new();
    let sha = up.commit("main", &[("app.yaml", "a: 1\n")]).to_string();
    let (dir, cache) = cache();
    cache
        .resolve(&up.url, "main", None, an_hour_ago())
        .await
        .unwrap();
    let tree = cache.checkout(&up.url, None, &sha).await.unwrap();
    let long_ago = SystemTime::now() - Duration::from_secs(7200);
    tree::mark_used(&tree, long_ago).unwrap();
    cache.checkout(&up.url, None, &sha).await.unwrap();
    let used = std::fs::metadata(&tree).unwrap().modified().unwrap();
    assert!(used > long_ago + Duration::from_secs(3600));
    // Unused for longer than the TTL: collected; the next checkout extracts it again.
    tree::mark_used(&tree, long_ago).unwrap();
    assert_eq!(
        tree::remove_unused(
            &dir.path().join("trees"),
            SystemTime::now(),
            Duration::from_secs(3600)
        ),
        1
    );
    assert!(!tree.exists());
    assert_eq!(cache.checkout(&up.url, None, &sha).await.unwrap(), tree);
    assert!(tree.join("app.yaml").is_file());
}

fn token(password: &str) -> Credentials {
    Credentials::Https {
        username: "bot".into(),
        password: password.into(),
    }
}

/// A team's Application reads only what was fetched with the credentials it holds: after team A
/// fetched with its token, an anonymous caller (or one with another token) of the same URL finds
/// neither the commits, nor the resolved branch, nor the extracted tree in the cache: it fetches
/// for itself, which (the upstream gone, as a server refusing it would) fails.
#[tokio::test]
async fn the_cache_is_kept_apart_by_credentials() {
    let up = Upstream::new();
    let sha = up.commit("main", &[("app.yaml", "a: 1\n")]).to_string();
    let (dir, cache) = cache();
    let team_a = token("team-a-token");
    assert_eq!(
        cache
            .resolve(&up.url, "main", Some(&team_a), an_hour_ago())
            .await
            .unwrap(),
        sha
    );
    let tree = cache.checkout(&up.url, Some(&team_a), &sha).await.unwrap();
    assert!(tree.join("app.yaml").is_file());

    // The server now refuses everyone else (here: is gone).
    let upstream = Path::new(up.url.trim_start_matches("file://"));
    std::fs::rename(upstream, upstream.with_file_name("away.git")).unwrap();

    for other in [None, Some(token("team-b-token"))] {
        let other = other.as_ref();
        // Not even a commit sha known to team A's fetch is found without a fetch of one's own.
        let err = cache.checkout(&up.url, other, &sha).await.unwrap_err();
        assert!(
            matches!(err, SourceError::UnknownCommit { .. }),
            "{other:?}: {err}"
        );
        let err = cache
            .resolve(&up.url, &sha, other, an_hour_ago())
            .await
            .unwrap_err();
        assert!(matches!(err, SourceError::Fetch { .. }), "{other:?}: {err}");
    }
    // Their failed fetches did not touch team A's: its last fetch still answers, its tree is
    // still there.
    assert_eq!(
        cache
            .resolve(&up.url, "main", Some(&team_a), an_hour_ago())
            .await
            .unwrap(),
        sha
    );
    assert_eq!(
        cache.checkout(&up.url, Some(&team_a), &sha).await.unwrap(),
        tree
    );
    // Three fetches of one URL, whoever made them.
    assert_eq!(cache.fetch_count(&up.url), 3);
    // Nothing secret in any path of the cache.
    for entry in walk_names(dir.path()) {
        assert!(
            !entry.contains("team-a-token") && !entry.contains("bot"),
            "{entry}"
        );
    }
}

fn walk_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).map_or(Vec::new(), |entries| {
        entries
            .flatten()
            .flat_map(|e| {
                let mut names = vec![e.file_name().to_string_lossy().into_owned()];
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    names.extend(walk_names(&e.path()));
                }
                names
            })
            .collect()
    })
}
