//! What `/readyz` answers: ready once the process is connected to the API server and, while it
//! leads, once every controller's watch cache has listed its objects. A standby has no caches yet
//! and is ready as long as it is connected (it can take over at any moment).

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

use futures::{Stream, TryStreamExt};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

#[derive(Debug, Default)]
struct State {
    connected: bool,
    /// Caches announced and not yet synced.
    pending: BTreeSet<&'static str>,
}

/// Shared readiness, cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    state: Arc<Mutex<State>>,
}

impl Readiness {
    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        // A panic while holding the lock leaves a plain set behind; it stays usable.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut state)
    }

    pub fn set_connected(&self, connected: bool) {
        self.with_state(|s| s.connected = connected);
    }

    /// Announces the caches the controllers about to start will sync, so `/readyz` says not ready
    /// from now until each has synced, not only after a controller got round to registering.
    pub fn expect_caches(&self, names: &[&'static str]) {
        self.with_state(|s| s.pending.extend(names.iter().copied()));
    }

    pub fn cache_synced(&self, name: &'static str) {
        self.with_state(|s| s.pending.remove(name));
    }

    /// A watch of `api` into a new cache, for `Controller::for_stream`: the cache and the stream of
    /// changed objects, `name` reported synced once the watch's first complete list is in the cache.
    /// (The cache's own `wait_until_ready` is not awaited here: it wakes only its last waiter, and
    /// the controller's runner waits on it too.)
    pub fn watch<K>(
        &self,
        name: &'static str,
        api: Api<K>,
        config: watcher::Config,
    ) -> (
        Store<K>,
        impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    )
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
        K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
    {
        let (store, writer) = reflector::store();
        let me = self.clone();
        let objects = watcher(api, config)
            .default_backoff()
            .reflect(writer)
            .inspect_ok(move |event| {
                if matches!(event, watcher::Event::InitDone) {
                    tracing::debug!(cache = name, "cache synced");
                    me.cache_synced(name);
                }
            })
            .applied_objects();
        (store, objects)
    }

    /// `Ok` when ready, else what is missing.
    pub fn check(&self) -> Result<(), String> {
        self.with_state(|s| {
            if !s.connected {
                Err("not connected to the API server".to_string())
            } else if !s.pending.is_empty() {
                let names: Vec<&str> = s.pending.iter().copied().collect();
                Err(format!("caches not synced: {}", names.join(", ")))
            } else {
                Ok(())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_once_connected_and_every_announced_cache_synced() {
        let r = Readiness::default();
        assert_eq!(r.check(), Err("not connected to the API server".into()));
        r.set_connected(true);
        assert_eq!(r.check(), Ok(()), "a standby with no caches is ready");
        r.expect_caches(&["rollouts", "applications"]);
        assert_eq!(
            r.check(),
            Err("caches not synced: applications, rollouts".into())
        );
        r.cache_synced("rollouts");
        assert_eq!(r.check(), Err("caches not synced: applications".into()));
        r.cache_synced("applications");
        assert_eq!(r.check(), Ok(()));
    }
}
