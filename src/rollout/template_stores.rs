//! The watch caches of AnalysisTemplates and ClusterAnalysisTemplates the Rollout controller resolves
//! a Rollout's template references from (in observe, never a GET per reconcile).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{Stream, TryStreamExt};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::api::analysis::{AnalysisTemplate, AnalysisTemplateSpec, ClusterAnalysisTemplate};
use crate::api::rollout::Rollout;
use crate::readiness::Readiness;
use crate::rollout::template_composition::compose;
use crate::rollout::templates::{ResolvedTemplates, TemplateRef, references};

/// Both template caches, and whether each has been listed once.
pub struct TemplateStores {
    namespaced: Store<AnalysisTemplate>,
    cluster: Store<ClusterAnalysisTemplate>,
    namespaced_synced: Arc<AtomicBool>,
    cluster_synced: Arc<AtomicBool>,
}

type Changes<K> = std::pin::Pin<Box<dyn Stream<Item = Result<K, watcher::Error>> + Send>>;

impl TemplateStores {
    /// Starts both watches (AnalysisTemplates in `namespace`, or everywhere; ClusterAnalysisTemplates
    /// always cluster-wide). The streams of changed templates must be polled (the controller does,
    /// to re-reconcile the Rollouts naming them).
    pub fn watch(
        client: &Client,
        namespace: Option<&str>,
        readiness: &Readiness,
    ) -> (
        Self,
        Changes<AnalysisTemplate>,
        Changes<ClusterAnalysisTemplate>,
    ) {
        let namespaced_api = match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let (namespaced, namespaced_synced, namespaced_changes) =
            cache(namespaced_api, "analysistemplates", readiness);
        let (cluster, cluster_synced, cluster_changes) = cache(
            Api::all(client.clone()),
            "clusteranalysistemplates",
            readiness,
        );
        (
            Self {
                namespaced,
                cluster,
                namespaced_synced,
                cluster_synced,
            },
            namespaced_changes,
            cluster_changes,
        )
    }

    /// The templates `rollout` names that exist, or `None` while a cache has not been listed yet
    /// (then a template missing from it proves nothing).
    pub fn resolve(&self, rollout: &Rollout) -> Option<ResolvedTemplates> {
        let namespace = rollout.namespace().unwrap_or_default();
        self.resolve_refs(
            &namespace,
            references(&rollout.spec).into_iter().map(|(_, r)| r),
        )
    }

    /// The templates of `references` (namespaced ones in `namespace`) that exist, or `None` while
    /// a cache has not been listed yet.
    pub fn resolve_refs(
        &self,
        namespace: &str,
        references: impl IntoIterator<Item = TemplateRef>,
    ) -> Option<ResolvedTemplates> {
        if !self.namespaced_synced.load(Ordering::Acquire)
            || !self.cluster_synced.load(Ordering::Acquire)
        {
            return None;
        }
        let lookup = |reference: &TemplateRef| self.lookup(namespace, reference);
        let mut found = ResolvedTemplates::new();
        for reference in references {
            let Some(spec) = lookup(&reference) else {
                continue;
            };
            // A template built from others is resolved whole: what fails to compose is recorded
            // for the Rollout's InvalidSpec rather than run half.
            let spec =
                compose(&reference, &spec, &lookup).unwrap_or_else(|error| AnalysisTemplateSpec {
                    composition_error: Some(error),
                    ..spec
                });
            found.insert(reference, spec);
        }
        Some(found)
    }

    /// One template as cached (namespaced ones in `namespace`).
    fn lookup(&self, namespace: &str, reference: &TemplateRef) -> Option<AnalysisTemplateSpec> {
        if reference.cluster_scope {
            self.cluster
                .get(&ObjectRef::new(&reference.name))
                .map(|t| t.spec.0.clone())
        } else {
            self.namespaced
                .get(&ObjectRef::new(&reference.name).within(namespace))
                .map(|t| t.spec.clone())
        }
    }
}

/// One watch into a cache, its listed-once flag (also reported to `/readyz` as `name`) and the
/// stream of changed objects (deletions included: a deleted template makes its Rollouts invalid).
fn cache<K>(
    api: Api<K>,
    name: &'static str,
    readiness: &Readiness,
) -> (Store<K>, Arc<AtomicBool>, Changes<K>)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    let synced = Arc::new(AtomicBool::new(false));
    let flag = synced.clone();
    let readiness = readiness.clone();
    let changes = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .inspect_ok(move |event| {
            if matches!(event, watcher::Event::InitDone) {
                flag.store(true, Ordering::Release);
                readiness.cache_synced(name);
            }
        })
        .touched_objects();
    (store, synced, Box::pin(changes))
}
