//! The dashboard's picture of the cluster: one reflector per kind over the namespace (or all
//! namespaces), the caller's own credentials, and a change counter the pages' event streams follow.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::api::analysis::AnalysisRun;
use crate::api::application::Application;
use crate::api::rollout::Rollout;
use crate::plugin::info::RolloutObjects;

/// Which namespaces the dashboard shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Namespace(String),
    All,
}

impl Scope {
    pub fn api<K>(&self, client: Client) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match self {
            Scope::Namespace(ns) => Api::namespaced(client, ns),
            Scope::All => Api::all(client),
        }
    }

    pub fn contains(&self, namespace: &str) -> bool {
        match self {
            Scope::Namespace(ns) => ns == namespace,
            Scope::All => true,
        }
    }
}

/// The last watch error per kind (RBAC refusals, a missing CRD), shown on the pages instead of an
/// empty list that would look like "nothing there".
type Errors = Arc<Mutex<BTreeMap<&'static str, String>>>;

/// The stores of every kind the pages read, and the change counter.
#[derive(Clone)]
pub struct Cache {
    pub applications: Store<Application>,
    pub rollouts: Store<Rollout>,
    pub replica_sets: Store<ReplicaSet>,
    pub pods: Store<Pod>,
    pub analysis_runs: Store<AnalysisRun>,
    pub events: Store<Event>,
    errors: Errors,
    changes: watch::Receiver<u64>,
}

impl Cache {
    /// Starts the watches on the current runtime; they run until the process ends.
    pub fn start(client: &Client, scope: &Scope) -> Self {
        let (tx, changes) = watch::channel(0u64);
        let tx = Arc::new(tx);
        let errors: Errors = Arc::default();
        let start = Watches {
            client,
            scope,
            tx: &tx,
            errors: &errors,
        };
        Cache {
            applications: start.kind("Application"),
            rollouts: start.kind("Rollout"),
            replica_sets: start.kind("ReplicaSet"),
            pods: start.kind("Pod"),
            analysis_runs: start.kind("AnalysisRun"),
            events: start.kind("Event"),
            errors,
            changes,
        }
    }

    /// A receiver that wakes on every change of any watched object.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }

    /// The watch errors now standing, `kind: message`.
    pub fn errors(&self) -> BTreeMap<&'static str, String> {
        self.errors.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// A Rollout with what it owns, as the plugin's `get rollout` reads them.
    pub fn rollout_objects(&self, namespace: &str, name: &str) -> Option<RolloutObjects> {
        let rollout = find(&self.rollouts, namespace, name)?;
        Some(RolloutObjects {
            rollout,
            replica_sets: in_namespace(&self.replica_sets, namespace),
            pods: in_namespace(&self.pods, namespace),
            analysis_runs: in_namespace(&self.analysis_runs, namespace),
        })
    }
}

/// The object `namespace/name` of a store.
pub fn find<K>(store: &Store<K>, namespace: &str, name: &str) -> Option<K>
where
    K: Resource + Clone,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    store
        .get(&reflector::ObjectRef::new(name).within(namespace))
        .map(|o| (*o).clone())
}

/// Every object of a store, sorted by namespace and name.
pub fn all<K>(store: &Store<K>) -> Vec<K>
where
    K: Resource + Clone,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    let mut objects: Vec<K> = store.state().iter().map(|o| (**o).clone()).collect();
    objects.sort_by_key(|o| (o.namespace(), o.name_any()));
    objects
}

fn in_namespace<K>(store: &Store<K>, namespace: &str) -> Vec<K>
where
    K: Resource + Clone,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store
        .state()
        .iter()
        .filter(|o| o.namespace().as_deref() == Some(namespace))
        .map(|o| (**o).clone())
        .collect()
}

struct Watches<'a> {
    client: &'a Client,
    scope: &'a Scope,
    tx: &'a Arc<watch::Sender<u64>>,
    errors: &'a Errors,
}

impl Watches<'_> {
    /// A store of `K` kept up to date by a task; each change bumps the counter, each watch error is
    /// recorded under `kind` until the watch works again. `managedFields` are dropped: no page
    /// shows them and they are most of an object's bytes.
    fn kind<K>(&self, kind: &'static str) -> Store<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
        K::DynamicType: Default + Eq + std::hash::Hash + Clone,
    {
        let (store, writer) = reflector::store();
        let api: Api<K> = self.scope.api(self.client.clone());
        let tx = Arc::clone(self.tx);
        let errors = Arc::clone(self.errors);
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(|o| o.meta_mut().managed_fields = None)
            .reflect(writer);
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                let mut errors = match errors.lock() {
                    Ok(errors) => errors,
                    Err(poisoned) => poisoned.into_inner(),
                };
                match event {
                    Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                    Ok(_) => {
                        errors.remove(kind);
                        tx.send_modify(|n| *n = n.wrapping_add(1));
                    }
                    Err(e) => {
                        errors.insert(kind, watch_error_text(&e));
                        tx.send_modify(|n| *n = n.wrapping_add(1));
                    }
                }
            }
        });
        store
    }
}

/// A watch error in words: the two a user can act on (kind missing, not allowed) said plainly.
fn watch_error_text(error: &watcher::Error) -> String {
    let api_error = match error {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => match e {
            kube::Error::Api(status) => Some(status),
            _ => None,
        },
        _ => None,
    };
    match api_error {
        Some(status) if status.code == 404 => {
            "not installed in the cluster (apply crds/ first)".to_string()
        }
        Some(status) if status.code == 403 => format!("forbidden: {}", status.message),
        _ => crate::plugin::client::root_cause(error),
    }
}
