//! Rendered output cached by (commit, path, options): a commit's content never changes, so the same
//! source options at the same commit always render the same objects, and a tick that finds no new
//! commit renders nothing.
//!
//! The cache is bounded by the size of what it holds (a chart may render megabytes): the least
//! recently used renders go first, and a render larger than the whole budget is returned, not kept.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use super::{
    RemotePolicy, RenderContext, RenderError, RenderSettings, Rendered, Tools, render_with,
};
use crate::api::application::ApplicationSource;

/// Bytes of rendered objects kept (as JSON text; in memory they take a few times more). Enough for
/// every Application at its current and previous commit in a large installation; a miss only costs
/// a render.
const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// What a render depends on. The repository URL and `targetRevision` are not part of it: the commit
/// sha already fixes the content, whatever the repository or ref it was reached through.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RenderKey {
    sha: String,
    path: String,
    options: String,
    ctx: RenderContext,
}

impl RenderKey {
    pub fn new(sha: &str, source: &ApplicationSource, ctx: &RenderContext) -> Self {
        let options = serde_json::json!({
            "directory": source.directory,
            "kustomize": source.kustomize,
            "helm": source.helm,
        });
        Self {
            sha: sha.to_string(),
            path: source.path().trim_start_matches("./").to_string(),
            // Equal options serialize to equal text (struct fields in declaration order, BTreeMaps
            // sorted); at worst a differently ordered `valuesObject` costs one extra render.
            options: options.to_string(),
            ctx: ctx.clone(),
        }
    }
}

/// Shared cache of rendered sources. Cheap to clone (an `Arc` inside). Failures are not cached: a
/// missing tool installed meanwhile or a fixed chart renders on the next attempt.
#[derive(Clone)]
pub struct RenderCache {
    inner: Arc<Mutex<Entries>>,
    settings: RenderSettings,
}

/// The renders kept, and their use order for eviction.
struct Entries {
    map: HashMap<RenderKey, Entry>,
    /// Last use → key; the first is the least recently used.
    by_use: BTreeMap<u64, RenderKey>,
    clock: u64,
    bytes: u64,
    max_bytes: u64,
}

struct Entry {
    rendered: Arc<Rendered>,
    bytes: u64,
    last_use: u64,
}

impl Entries {
    fn get(&mut self, key: &RenderKey) -> Option<Arc<Rendered>> {
        self.clock += 1;
        let entry = self.map.get_mut(key)?;
        self.by_use.remove(&entry.last_use);
        entry.last_use = self.clock;
        self.by_use.insert(self.clock, key.clone());
        Some(entry.rendered.clone())
    }

    fn insert(&mut self, key: RenderKey, rendered: Arc<Rendered>, bytes: u64) {
        self.remove(&key);
        if bytes > self.max_bytes {
            return;
        }
        while self.bytes + bytes > self.max_bytes {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            self.remove(&oldest);
        }
        self.clock += 1;
        self.by_use.insert(self.clock, key.clone());
        self.bytes += bytes;
        let last_use = self.clock;
        self.map.insert(
            key,
            Entry {
                rendered,
                bytes,
                last_use,
            },
        );
    }

    fn remove(&mut self, key: &RenderKey) {
        if let Some(entry) = self.map.remove(key) {
            self.by_use.remove(&entry.last_use);
            self.bytes -= entry.bytes;
        }
    }
}

/// The size a render is counted with: its objects as JSON text.
fn size_of(rendered: &Rendered) -> u64 {
    rendered
        .objects
        .iter()
        .map(|o| serde_json::to_vec(o).map_or(0, |v| v.len() as u64))
        .sum()
}

impl Default for RenderCache {
    fn default() -> Self {
        Self::with_max_bytes(DEFAULT_MAX_BYTES)
    }
}

impl RenderCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// A cache keeping at most `max_bytes` of rendered objects (as JSON text).
    pub fn with_max_bytes(max_bytes: u64) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Entries {
                map: HashMap::new(),
                by_use: BTreeMap::new(),
                clock: 0,
                bytes: 0,
                max_bytes,
            })),
            settings: RenderSettings::default(),
        }
    }

    /// The same cache, rendering with `tools` instead of the tools on the process's `PATH`.
    pub fn with_tools(mut self, tools: Tools) -> Self {
        self.settings.tools = tools;
        self
    }

    /// The same cache, rendering with what `remote` allows to be fetched (default: nothing).
    pub fn with_remote_policy(mut self, remote: RemotePolicy) -> Self {
        self.settings.remote = remote;
        self
    }

    /// The objects of `source` at commit `sha`, whose tree is checked out at `root`: from the cache,
    /// else rendered on the blocking pool and cached.
    pub async fn get_or_render(
        &self,
        sha: &str,
        root: &Path,
        source: &ApplicationSource,
        ctx: &RenderContext,
    ) -> Result<Arc<Rendered>, RenderError> {
        let key = RenderKey::new(sha, source, ctx);
        if let Some(hit) = self.get(&key) {
            return Ok(hit);
        }
        self.render(key, root, source, ctx).await
    }

    /// Renders `source` at commit `sha` again, whatever is cached (a hard refresh), and caches it.
    pub async fn render_again(
        &self,
        sha: &str,
        root: &Path,
        source: &ApplicationSource,
        ctx: &RenderContext,
    ) -> Result<Arc<Rendered>, RenderError> {
        self.render(RenderKey::new(sha, source, ctx), root, source, ctx)
            .await
    }

    async fn render(
        &self,
        key: RenderKey,
        root: &Path,
        source: &ApplicationSource,
        ctx: &RenderContext,
    ) -> Result<Arc<Rendered>, RenderError> {
        let (root, source, ctx) = (root.to_path_buf(), source.clone(), ctx.clone());
        let settings = self.settings.clone();
        let rendered =
            tokio::task::spawn_blocking(move || render_with(&root, &source, &ctx, &settings))
                .await
                .map_err(|e| RenderError::Worker(e.to_string()))??;
        Ok(self.insert(key, rendered))
    }

    /// The cached render for `key`, if any (it becomes the most recently used).
    pub fn get(&self, key: &RenderKey) -> Option<Arc<Rendered>> {
        self.entries().get(key)
    }

    /// Caches `rendered` under `key` (evicting the least recently used renders until it fits) and
    /// returns it shared.
    pub fn insert(&self, key: RenderKey, rendered: Rendered) -> Arc<Rendered> {
        let bytes = size_of(&rendered);
        let rendered = Arc::new(rendered);
        self.entries().insert(key, rendered.clone(), bytes);
        rendered
    }

    /// How many renders are cached.
    pub fn len(&self) -> usize {
        self.entries().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes the cached renders count for.
    pub fn bytes(&self) -> u64 {
        self.entries().bytes
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::application::ApplicationSourceType;

    fn source(v: serde_json::Value) -> ApplicationSource {
        serde_json::from_value(v).unwrap()
    }

    fn ctx(app: &str) -> RenderContext {
        RenderContext {
            app_name: app.into(),
            namespace: "ns".into(),
        }
    }

    #[test]
    fn key_covers_commit_path_options_and_context() {
        let base = source(
            json!({"repoURL": "https://a/x.git", "path": "app", "helm": {"releaseName": "r"}}),
        );
        let key = RenderKey::new("abc", &base, &ctx("a"));
        // Same content reached through another URL, revision or spelling of the path: same key.
        let same = source(
            json!({"repoURL": "https://mirror/x.git", "targetRevision": "v1", "path": "./app", "helm": {"releaseName": "r"}}),
        );
        assert_eq!(RenderKey::new("abc", &same, &ctx("a")), key);
        // Anything the output depends on: another key.
        let different = [
            RenderKey::new("abd", &base, &ctx("a")),
            RenderKey::new(
                "abc",
                &source(
                    json!({"repoURL": "https://a/x.git", "path": "app2", "helm": {"releaseName": "r"}}),
                ),
                &ctx("a"),
            ),
            RenderKey::new(
                "abc",
                &source(
                    json!({"repoURL": "https://a/x.git", "path": "app", "helm": {"releaseName": "s"}}),
                ),
                &ctx("a"),
            ),
            RenderKey::new(
                "abc",
                &source(json!({"repoURL": "https://a/x.git", "path": "app"})),
                &ctx("a"),
            ),
            RenderKey::new("abc", &base, &ctx("b")),
        ];
        for other in different {
            assert_ne!(other, key);
        }
    }

    fn rendered_of(bytes: usize) -> Rendered {
        // `{"v":"…"}` is 8 bytes around the string.
        Rendered {
            source_type: ApplicationSourceType::Directory,
            objects: vec![json!({"v": "x".repeat(bytes - 8)})],
        }
    }

    #[test]
    fn the_least_recently_used_renders_go_when_the_bytes_run_out() {
        let cache = RenderCache::with_max_bytes(300);
        let src = source(json!({"repoURL": "r"}));
        let keys: Vec<_> = ["1", "2", "3", "4"]
            .iter()
            .map(|s| RenderKey::new(s, &src, &ctx("a")))
            .collect();
        cache.insert(keys[0].clone(), rendered_of(100));
        cache.insert(keys[1].clone(), rendered_of(100));
        cache.insert(keys[2].clone(), rendered_of(100));
        assert_eq!((cache.len(), cache.bytes()), (3, 300));
        // Using the oldest makes the second the least recently used.
        assert!(cache.get(&keys[0]).is_some());
        cache.insert(keys[3].clone(), rendered_of(150));
        assert!(cache.get(&keys[1]).is_none() && cache.get(&keys[2]).is_none());
        assert!(cache.get(&keys[0]).is_some() && cache.get(&keys[3]).is_some());
        assert_eq!((cache.len(), cache.bytes()), (2, 250));
        // Replacing an entry counts it once.
        cache.insert(keys[3].clone(), rendered_of(50));
        assert_eq!((cache.len(), cache.bytes()), (2, 150));
        // Larger than the whole budget: returned, not kept, nothing evicted for it.
        let huge = cache.insert(keys[1].clone(), rendered_of(301));
        assert_eq!(huge.objects.len(), 1);
        assert!(cache.get(&keys[1]).is_none());
        assert_eq!((cache.len(), cache.bytes()), (2, 150));
    }

    #[tokio::test]
    async fn a_cached_render_is_not_redone() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(
            root.path().join("cm.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
        )
        .unwrap();
        let cache = RenderCache::new();
        let src = source(json!({"repoURL": "r"}));
        let first = cache
            .get_or_render("sha1", root.path(), &src, &ctx("a"))
            .await
            .unwrap();
        assert_eq!(first.objects.len(), 1);
        // The tree of a commit never changes; a cached render does not read it again.
        std::fs::remove_file(root.path().join("cm.yaml")).unwrap();
        let again = cache
            .get_or_render("sha1", root.path(), &src, &ctx("a"))
            .await
            .unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        let other = cache
            .get_or_render("sha2", root.path(), &src, &ctx("a"))
            .await
            .unwrap();
        assert!(other.objects.is_empty());
    }
}
