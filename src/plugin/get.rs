//! `get rollout NAME [--watch]`: reads the Rollout and what it owns, and prints the tree; with
//! `--watch`, keeps reflectors of those objects and redraws whenever one changes.

use std::io::Write;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, stream};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

use crate::api::analysis::AnalysisRun;
use crate::api::rollout::Rollout;
use crate::plugin::client::Kube;
use crate::plugin::error::{EXIT_OK, PluginError};
use crate::plugin::info::{RolloutObjects, rollout_info};
use crate::plugin::style::Style;
use crate::plugin::tree::render_rollout;
use crate::rollout::observe::ROLLOUT_LABEL;

/// Events closer together than this are drawn once (a step changes several objects at once).
const SETTLE: Duration = Duration::from_millis(150);
/// A redraw happens at least this often while events keep coming.
const MAX_SETTLE: Duration = Duration::from_secs(1);
/// Clears a terminal and puts the cursor top left, so each drawing replaces the previous one.
const CLEAR_SCREEN: &str = "\x1b[H\x1b[2J";

/// How the output is shown.
#[derive(Clone, Copy, Debug)]
pub struct Display {
    pub style: Style,
    /// Redraw in place (a terminal) rather than print one tree after another (a pipe).
    pub redraw: bool,
}

/// Prints the tree once.
pub async fn get_rollout(
    kube: &Kube,
    name: &str,
    display: Display,
    out: &mut dyn Write,
) -> Result<u8, PluginError> {
    let rollout = kube.get_rollout(name).await?;
    let selectors = Selectors::of(&rollout);
    let objects = RolloutObjects {
        replica_sets: list(kube, "ReplicaSet", &selectors.pods).await?,
        pods: list(kube, "Pod", &selectors.pods).await?,
        analysis_runs: list(kube, "AnalysisRun", &selectors.analysis_runs).await?,
        rollout,
    };
    let info = rollout_info(&objects);
    out.write_all(render_rollout(&info, Timestamp::now(), display.style).as_bytes())?;
    Ok(EXIT_OK)
}

/// Label selectors narrowing what is read to the Rollout's own objects.
struct Selectors {
    /// The Rollout's `matchLabels` (its ReplicaSets and pods carry them); empty for all.
    pods: String,
    analysis_runs: String,
}

impl Selectors {
    fn of(rollout: &Rollout) -> Self {
        let pods = rollout
            .spec
            .selector
            .as_ref()
            .and_then(|s| s.match_labels.as_ref())
            .map(|labels| {
                labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        let name = rollout.metadata.name.clone().unwrap_or_default();
        Selectors {
            pods,
            analysis_runs: format!("{ROLLOUT_LABEL}={name}"),
        }
    }
}

async fn list<K>(kube: &Kube, kind: &'static str, labels: &str) -> Result<Vec<K>, PluginError>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let params = ListParams::default().labels(labels);
    kube.namespaced::<K>()
        .list(&params)
        .await
        .map(|l| l.items)
        .map_err(|e| kube.error(e, kind, "", &format!("list {kind}s")))
}

/// Redraws the tree on every change until interrupted.
pub async fn watch_rollout(
    kube: &Kube,
    name: &str,
    display: Display,
    out: &mut dyn Write,
) -> Result<u8, PluginError> {
    let first = kube.get_rollout(name).await?;
    let selectors = Selectors::of(&first);
    let by_name = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let pods = watcher::Config::default().labels(&selectors.pods);
    let runs = watcher::Config::default().labels(&selectors.analysis_runs);
    let (rollouts, rollout_events) = reflect(kube.rollouts(), by_name);
    let (replica_sets, rs_events) = reflect(kube.namespaced::<ReplicaSet>(), pods.clone());
    let (pod_store, pod_events) = reflect(kube.namespaced::<Pod>(), pods);
    let (analysis_runs, run_events) = reflect(kube.namespaced::<AnalysisRun>(), runs);
    let mut events = stream::select_all([rollout_events, rs_events, pod_events, run_events]);
    let key = ObjectRef::<Rollout>::new(name).within(&kube.namespace);
    let mut last = String::new();
    while events.next().await.is_some() {
        settle(&mut events).await;
        // Draw only once every store has listed its objects, not a half-read tree.
        if ![
            ready(&rollouts),
            ready(&replica_sets),
            ready(&pod_store),
            ready(&analysis_runs),
        ]
        .iter()
        .all(|r| *r)
        {
            continue;
        }
        let text = match rollouts.get(&key) {
            Some(rollout) => {
                let objects = RolloutObjects {
                    rollout: (*rollout).clone(),
                    replica_sets: cloned(&replica_sets),
                    pods: cloned(&pod_store),
                    analysis_runs: cloned(&analysis_runs),
                };
                render_rollout(&rollout_info(&objects), Timestamp::now(), display.style)
            }
            None => format!(
                "Rollout {name:?} not found in namespace {:?} (waiting for it)\n",
                kube.namespace
            ),
        };
        if text == last {
            continue;
        }
        if display.redraw {
            out.write_all(CLEAR_SCREEN.as_bytes())?;
        } else if !last.is_empty() {
            out.write_all(b"\n")?;
        }
        out.write_all(text.as_bytes())?;
        out.flush()?;
        last = text;
    }
    Ok(EXIT_OK)
}

/// A reflector store of `api`'s objects and the stream that keeps it up to date (one item per
/// change; watch errors are retried with backoff).
fn reflect<K>(api: Api<K>, config: watcher::Config) -> (Store<K>, BoxStream<'static, ()>)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (store, writer) = reflector::store();
    let events = reflector::reflector(writer, watcher(api, config))
        .default_backoff()
        .filter_map(|event| async move {
            match event {
                // The store is complete again after `InitDone`; draw then, not on each listed item.
                Ok(
                    watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone,
                ) => Some(()),
                _ => None,
            }
        })
        .boxed();
    (store, events)
}

/// Waits until no event has come for [`SETTLE`] (at most [`MAX_SETTLE`]), so a burst of changes
/// is drawn once.
async fn settle(events: &mut (impl futures::Stream<Item = ()> + Unpin)) {
    let started = tokio::time::Instant::now();
    while started.elapsed() < MAX_SETTLE {
        match tokio::time::timeout(SETTLE, events.next()).await {
            Ok(Some(())) => continue,
            _ => return,
        }
    }
}

fn ready<K: Resource + Clone>(store: &Store<K>) -> bool
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store.wait_until_ready().now_or_never().is_some()
}

fn cloned<K: Clone + Resource>(store: &Store<K>) -> Vec<K>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store.state().iter().map(|o| (**o).clone()).collect()
}
