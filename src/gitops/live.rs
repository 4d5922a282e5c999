//! The live objects of every kind Applications manage, from watch caches started on first use.
//!
//! A cache holds only the objects Sluice applied: its watch selects the label
//! `sluice.dev/tracked=true` that every applied object carries, so declaring one Secret does not
//! cache every Secret of the cluster. A declared object missing from the cache (not created yet,
//! or applied by a version of Sluice that did not label it: its next sync adds the label) is read
//! with a GET.
//!
//! Each watched kind also feeds the reconciler: a change to an object carrying
//! `sluice.dev/application: <ns>/<name>` queues that Application at once, which is how drift is
//! seen (and self-healed) in seconds rather than at the next poll (docs/behaviour.md G4).
//!
//! With `--namespace` (or the `namespaces` of another cluster's Secret), namespaced kinds are watched
//! in those namespaces only, one watch each; objects an Application puts elsewhere are read with a
//! GET.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use futures::channel::mpsc::UnboundedSender;
use kube::api::{Api, DynamicObject};
use kube::core::{GroupVersionKind, TypeMeta};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::Value;
use thiserror::Error;

use super::kinds::Kind;
use super::object::{APPLICATION_ANNOTATION, TRACKING_LABEL, TRACKING_LABEL_VALUE, is_tracked_by};
use crate::api::application::Application;

/// How long the first list of a newly watched kind may take.
const FIRST_LIST_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a reconcile waiting for a cache's first list looks again.
const LIST_RECHECK: Duration = Duration::from_millis(250);

#[derive(Debug, Error)]
pub enum LiveError {
    #[error(
        "the watch of {kind} did not list its objects within {seconds}s (is it readable by Sluice?)"
    )]
    NotReady { kind: String, seconds: u64 },
    #[error("reading {kind} {namespace}/{name}: {source}")]
    Get {
        kind: String,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

struct Watched {
    kind: Kind,
    /// One per watched namespace (in [`LiveCache`]'s order), or one for the whole cluster.
    stores: Vec<Store<DynamicObject>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Watched {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Watch caches by kind, shared by every reconcile.
#[derive(Clone)]
pub struct LiveCache {
    /// Watches.
    client: Client,
    /// GETs: the same client, or (a remote cluster) one with a request timeout, which a watch cannot
    /// have.
    get_client: Client,
    /// Where namespaced kinds are watched; empty: every namespace.
    namespaces: Vec<String>,
    watched: Arc<Mutex<HashMap<GroupVersionKind, Arc<Watched>>>>,
    trigger: UnboundedSender<ObjectRef<Application>>,
}

impl LiveCache {
    /// `namespaces` (none: all) limits the watches of namespaced kinds; changes of tracked objects
    /// are sent to `trigger`.
    pub fn new(
        client: Client,
        namespaces: Vec<String>,
        trigger: UnboundedSender<ObjectRef<Application>>,
    ) -> Self {
        Self {
            get_client: client.clone(),
            client,
            namespaces,
            watched: Arc::default(),
            trigger,
        }
    }

    /// GETs go through `client` rather than the watches' client.
    #[must_use]
    pub fn with_get_client(mut self, client: Client) -> Self {
        self.get_client = client;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<GroupVersionKind, Arc<Watched>>> {
        // Holds only handles; a panic elsewhere leaves it usable.
        self.watched.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn gvk(kind: &Kind) -> GroupVersionKind {
        GroupVersionKind::gvk(
            &kind.resource.group,
            &kind.resource.version,
            &kind.resource.kind,
        )
    }

    /// The watch caches of `kind`, started and listed if they were not already.
    async fn watch_listed(&self, kind: &Kind) -> Result<Arc<Watched>, LiveError> {
        let gvk = Self::gvk(kind);
        let existing = self.lock().get(&gvk).cloned();
        let watched = match existing {
            Some(w) => w,
            None => {
                let started = Arc::new(self.start(kind));
                self.lock()
                    .entry(gvk)
                    .or_insert_with(|| started.clone())
                    .clone()
            }
        };
        let deadline = tokio::time::Instant::now() + FIRST_LIST_TIMEOUT;
        for store in &watched.stores {
            if !listed(store, deadline).await {
                return Err(LiveError::NotReady {
                    kind: kind.resource.kind.clone(),
                    seconds: FIRST_LIST_TIMEOUT.as_secs(),
                });
            }
        }
        Ok(watched)
    }

    /// Starts (if needed) the watches of `kind` and waits for their first list.
    pub async fn watch(&self, kind: &Kind) -> Result<(), LiveError> {
        self.watch_listed(kind).await.map(|_| ())
    }

    fn start(&self, kind: &Kind) -> Watched {
        let resource = &kind.resource;
        let apis: Vec<Api<DynamicObject>> = if kind.namespaced && !self.namespaces.is_empty() {
            self.namespaces
                .iter()
                .map(|ns| Api::namespaced_with(self.client.clone(), ns, resource))
                .collect()
        } else {
            vec![Api::all_with(self.client.clone(), resource)]
        };
        let (stores, tasks) = apis
            .into_iter()
            .map(|api| self.start_one(kind, api))
            .unzip();
        Watched {
            kind: kind.clone(),
            stores,
            tasks,
        }
    }

    fn start_one(
        &self,
        kind: &Kind,
        api: Api<DynamicObject>,
    ) -> (Store<DynamicObject>, tokio::task::JoinHandle<()>) {
        let resource = kind.resource.clone();
        let writer = reflector::store::Writer::new(resource.clone());
        let store = writer.as_reader();
        let trigger = self.trigger.clone();
        let stream = watcher(api, tracked_objects())
            .default_backoff()
            .reflect(writer)
            .touched_objects();
        let kind_name = resource.kind.clone();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(obj) => {
                        if let Some(app) = application_of(&obj) {
                            // The receiver lives as long as the controller.
                            let _ = trigger.unbounded_send(app);
                        }
                    }
                    Err(e) => tracing::debug!(kind = %kind_name, error = %e, "watch error"),
                }
            }
        });
        (store, task)
    }

    /// Which store of a kind's watches holds objects of `namespace`: `None` when none watches it.
    fn store_index(&self, kind: &Kind, namespace: &str) -> Option<usize> {
        if !kind.namespaced || self.namespaces.is_empty() {
            return Some(0);
        }
        self.namespaces.iter().position(|ns| ns == namespace)
    }

    /// The live object, as JSON with `apiVersion` and `kind` set.
    pub async fn get(
        &self,
        kind: &Kind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, LiveError> {
        let Some(index) = self.store_index(kind, namespace) else {
            return self.read(kind, namespace, name).await;
        };
        let watched = self.watch_listed(kind).await?;
        let Some(store) = watched.stores.get(index) else {
            return self.read(kind, namespace, name).await;
        };
        let mut key = ObjectRef::new_with(name, kind.resource.clone());
        if kind.namespaced {
            key = key.within(namespace);
        }
        match store.get(&key) {
            Some(obj) => Ok(Some(to_value(&obj, kind))),
            // Not labelled (yet): the cache cannot tell whether it exists.
            None => self.read(kind, namespace, name).await,
        }
    }

    /// The object read with a GET.
    async fn read(
        &self,
        kind: &Kind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, LiveError> {
        let api: Api<DynamicObject> = if kind.namespaced {
            Api::namespaced_with(self.get_client.clone(), namespace, &kind.resource)
        } else {
            Api::all_with(self.get_client.clone(), &kind.resource)
        };
        let obj = api.get_opt(name).await.map_err(|source| LiveError::Get {
            kind: kind.resource.kind.clone(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            source,
        })?;
        Ok(obj.map(|o| to_value(&o, kind)))
    }

    /// Every watched object the Application `tracking_id` (`<ns>/<name>`) applied.
    pub fn tracked_by(&self, tracking_id: &str) -> Vec<Value> {
        let watched: Vec<Arc<Watched>> = self.lock().values().cloned().collect();
        watched
            .iter()
            .flat_map(|w| {
                // Every reconcile comes here: converting only the Application's own objects keeps
                // its cost from growing with every other Application's (converting them all took
                // 94% of the controller's CPU with 200 Applications of 10 objects).
                w.stores
                    .iter()
                    .flat_map(Store::state)
                    .filter(|o| {
                        o.annotations()
                            .get(APPLICATION_ANNOTATION)
                            .map(String::as_str)
                            == Some(tracking_id)
                    })
                    .map(|o| to_value(&o, &w.kind))
                    .collect::<Vec<_>>()
            })
            .filter(|o| is_tracked_by(o, tracking_id))
            .collect()
    }
}

/// The watch of a kind: only the objects Sluice applied.
fn tracked_objects() -> watcher::Config {
    watcher::Config::default().labels(&format!("{TRACKING_LABEL}={TRACKING_LABEL_VALUE}"))
}

/// The Application an object names in its tracking annotation (objects another object controls
/// inherit annotations and are left out).
fn application_of(obj: &DynamicObject) -> Option<ObjectRef<Application>> {
    let id = obj.annotations().get(APPLICATION_ANNOTATION)?;
    let (namespace, name) = id.split_once('/')?;
    let owned = obj
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true));
    (!owned && !name.is_empty()).then(|| ObjectRef::new(name).within(namespace))
}

/// A cached object as JSON; list responses leave `apiVersion` and `kind` out of items.
pub fn to_value(obj: &DynamicObject, kind: &Kind) -> Value {
    let mut obj = obj.clone();
    obj.types = Some(TypeMeta {
        api_version: kind.resource.api_version.clone(),
        kind: kind.resource.kind.clone(),
    });
    serde_json::to_value(&obj).unwrap_or(Value::Null)
}

/// Whether `store` has its first complete list within [`FIRST_LIST_TIMEOUT`]. A store's
/// `wait_until_ready` wakes only the last task that polled it, and several reconciles wait on the
/// same cache: each asks again every [`LIST_RECHECK`] rather than sleep through the wake-up.
async fn listed(store: &Store<DynamicObject>, deadline: tokio::time::Instant) -> bool {
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(LIST_RECHECK, store.wait_until_ready()).await {
            Ok(result) => return result.is_ok(),
            Err(_elapsed) => continue,
        }
    }
    false
}
