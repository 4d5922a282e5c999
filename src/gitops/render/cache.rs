//! Rendered output cached by (commit, path, options): a commit's content never changes, so the same
//! source options at the same commit always render the same objects, and a tick that finds no new
//! commit renders nothing.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use super::{RenderContext, RenderError, Rendered, Tools, render_with};
use crate::api::application::ApplicationSource;

/// Entries kept; the oldest goes first (enough for every Application at its current and previous
/// commit in a large installation; a miss only costs a render).
const DEFAULT_CAPACITY: usize = 512;

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
    tools: Tools,
}

#[derive(Default)]
struct Entries {
    map: HashMap<RenderKey, Arc<Rendered>>,
    order: VecDeque<RenderKey>,
    capacity: usize,
}

impl Default for RenderCache {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }
}

impl RenderCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Entries {
                capacity: capacity.max(1),
                ..Entries::default()
            })),
            tools: Tools::default(),
        }
    }

    /// The same cache, rendering with `tools` instead of the tools on the process's `PATH`.
    pub fn with_tools(mut self, tools: Tools) -> Self {
        self.tools = tools;
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
        let (root, source, ctx) = (root.to_path_buf(), source.clone(), ctx.clone());
        let tools = self.tools.clone();
        let rendered =
            tokio::task::spawn_blocking(move || render_with(&root, &source, &ctx, &tools))
                .await
                .map_err(|e| RenderError::Worker(e.to_string()))??;
        Ok(self.insert(key, rendered))
    }

    /// The cached render for `key`, if any.
    pub fn get(&self, key: &RenderKey) -> Option<Arc<Rendered>> {
        self.entries().map.get(key).cloned()
    }

    /// Caches `rendered` under `key` (evicting the oldest entry when full) and returns it shared.
    pub fn insert(&self, key: RenderKey, rendered: Rendered) -> Arc<Rendered> {
        let rendered = Arc::new(rendered);
        let mut entries = self.entries();
        if entries.map.insert(key.clone(), rendered.clone()).is_none() {
            entries.order.push_back(key);
        }
        while entries.order.len() > entries.capacity {
            if let Some(oldest) = entries.order.pop_front() {
                entries.map.remove(&oldest);
            }
        }
        rendered
    }

    /// How many renders are cached.
    pub fn len(&self) -> usize {
        self.entries().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

    #[test]
    fn oldest_entries_are_evicted() {
        let cache = RenderCache::with_capacity(2);
        let src = source(json!({"repoURL": "r"}));
        let rendered = Rendered {
            source_type: ApplicationSourceType::Directory,
            objects: vec![],
        };
        let keys: Vec<_> = ["1", "2", "3"]
            .iter()
            .map(|s| RenderKey::new(s, &src, &ctx("a")))
            .collect();
        for key in &keys {
            cache.insert(key.clone(), rendered.clone());
        }
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&keys[0]).is_none());
        assert!(cache.get(&keys[2]).is_some());
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
