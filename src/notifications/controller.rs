//! The notifications controller: its own watches of Rollouts, AnalysisRuns and Applications, so a
//! slow or failing receiver never delays another controller's reconcile. Per object: observe (the
//! object, its subscriptions, the ConfigMap, the record) → [`plan`](super::plan) → act (send,
//! then mark the record in the object's annotation under the field manager
//! `sluice-notifications`, one write per delivered notification).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc;
use futures::{Stream, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use thiserror::Error;

use super::config::{CONFIG_NAME, ConfigProblem, NotificationsConfig};
use super::plan::{self, Delivery, Input, Problem};
use super::record::{self, Record};
use super::services::{RetryPolicy, SendError, Sender};
use super::triggers::{self, ObjectKind};
use crate::api::analysis::AnalysisRun;
use crate::api::application::Application;
use crate::api::rollout::Rollout;
use crate::metrics::Metrics;
use crate::scope::scoped_api;

/// Field manager of the record's writes, and the Events' reporter.
pub const FIELD_MANAGER: &str = crate::api::keys::NOTIFICATIONS_FIELD_MANAGER;
/// Reason of the Warning Event on a ConfigMap with keys that cannot be used.
pub const INVALID_CONFIG_REASON: &str = "InvalidNotificationsConfig";
/// When a delivery failed after its retries, the object is looked at again after this.
const REDELIVER_AFTER: Duration = Duration::from_secs(60);
/// An AnalysisRun whose Rollout the cache does not show yet is looked at again after this (its
/// subscriptions are the Rollout's).
const OWNER_NOT_CACHED: Duration = Duration::from_secs(2);
/// Objects reconciled at once per kind (each may wait on a slow receiver).
const CONCURRENCY: u16 = 4;
/// Problems remembered as already logged (and records remembered as written), before the memory
/// starts afresh.
const MAX_REPORTED: usize = 10_000;

/// What the notifications controller needs from the command line.
#[derive(Clone, Debug)]
pub struct NotificationSettings {
    /// `--namespace`: the objects watched (all namespaces when unset).
    pub namespace: Option<String>,
    /// Where the ConfigMap and Secret `sluice-notifications` live.
    pub control_namespace: String,
    pub retry: RetryPolicy,
}

#[derive(Debug, Error)]
pub enum NotifyError {
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] SendError),
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotifyLabels {
    trigger: String,
    service: String,
    result: String,
}

/// The record as this process last wrote it, until the watch cache shows that write.
struct Written {
    resource_version: u64,
    record: Record,
}

struct Context {
    client: Client,
    settings: NotificationSettings,
    sender: Sender,
    config: ConfigCache,
    rollouts: Store<Rollout>,
    recorder: Recorder,
    total: Family<NotifyLabels, Counter>,
    written: Mutex<HashMap<String, Written>>,
    reported: Mutex<HashSet<String>>,
}

/// Runs the notifications controller until the process stops.
pub async fn run(client: Client, settings: NotificationSettings, metrics: Metrics) {
    let total = Family::<NotifyLabels, Counter>::default();
    metrics.register(|r| {
        r.register(
            "notifications",
            "Notifications by trigger, service and result (sent, failed, error)",
            total.clone(),
        );
    });
    if let Err(e) = run_controllers(client, settings, metrics, total).await {
        tracing::error!(error = %e, "notifications controller stopped");
    }
}

async fn run_controllers(
    client: Client,
    settings: NotificationSettings,
    metrics: Metrics,
    total: Family<NotifyLabels, Counter>,
) -> Result<(), NotifyError> {
    let sender = Sender::new(settings.retry)?;
    let config_api: Api<ConfigMap> = Api::namespaced(client.clone(), &settings.control_namespace);
    let (config_store, config_writer) = reflector::store();
    let (rollout_tx, rollout_reload) = mpsc::unbounded();
    let (run_tx, run_reload) = mpsc::unbounded();
    let (app_tx, app_reload) = mpsc::unbounded();
    let (check_tx, mut config_changes) = mpsc::unbounded();
    let reload_senders = [rollout_tx, run_tx, app_tx, check_tx];
    // Whether the ConfigMap exists: without it no service is configured and nothing can be sent,
    // so the watches of Rollouts, AnalysisRuns and Applications (whole caches, a reconcile per
    // change) only start once it does.
    let (configured_tx, mut configured) = tokio::sync::watch::channel(false);
    let configured_store = config_store.clone();
    let config_watch = watcher(
        config_api,
        watcher::Config::default().fields(&format!("metadata.name={CONFIG_NAME}")),
    )
    .default_backoff()
    .reflect(config_writer)
    .for_each(move |event| {
        // Any change of the ConfigMap (also its deletion) is a reason to look at every object.
        if event.is_ok() {
            for tx in &reload_senders {
                let _ = tx.unbounded_send(());
            }
            if !configured_store.state().is_empty() {
                configured_tx.send_replace(true);
            }
        }
        futures::future::ready(())
    });

    let rollouts_api: Api<Rollout> = scoped_api(&client, settings.namespace.as_deref());
    let rollouts = Controller::new(rollouts_api, watcher::Config::default());
    let context = Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        ),
        config: ConfigCache::new(config_store.clone(), &settings.control_namespace),
        rollouts: rollouts.store(),
        client: client.clone(),
        settings: settings.clone(),
        sender,
        total,
        written: Mutex::new(HashMap::new()),
        reported: Mutex::new(HashSet::new()),
    });
    let runs = async {
        // Until the ConfigMap is read, every object would look unsubscribed to any service.
        if config_store.wait_until_ready().await.is_err() {
            tracing::error!("the notifications ConfigMap cache stopped before it was ready");
            return;
        }
        if configured.wait_for(|exists| *exists).await.is_err() {
            return;
        }
        let ns = settings.namespace.as_deref();
        // Each version of the ConfigMap is read (and its problems told) also when nothing
        // subscribes yet.
        let check_config = async {
            while config_changes.next().await.is_some() {
                context.config.current(&context).await;
            }
        };
        tokio::join!(
            check_config,
            drive(
                rollouts,
                ObjectKind::Rollout,
                rollout_reload,
                &context,
                &metrics
            ),
            async {
                // A run's subscriptions are its Rollout's: read before the Rollouts are listed, a
                // failed run would look unsubscribed and (being final) never be looked at again.
                if context.rollouts.wait_until_ready().await.is_err() {
                    tracing::error!("the notifications Rollout cache stopped before it was ready");
                    return;
                }
                drive(
                    Controller::new(
                        scoped_api::<AnalysisRun>(&client, ns),
                        watcher::Config::default(),
                    ),
                    ObjectKind::AnalysisRun,
                    run_reload,
                    &context,
                    &metrics,
                )
                .await
            },
            drive(
                Controller::new(
                    scoped_api::<Application>(&client, ns),
                    watcher::Config::default()
                ),
                ObjectKind::Application,
                app_reload,
                &context,
                &metrics,
            ),
        );
    };
    tokio::join!(config_watch, runs);
    Ok(())
}

/// Runs one kind's controller, reconciling everything again on each ConfigMap change.
async fn drive<K>(
    controller: Controller<K>,
    kind: ObjectKind,
    reload: impl Stream<Item = ()> + Send + Sync + 'static,
    context: &Arc<Context>,
    metrics: &Metrics,
) where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let guard = crate::reconcile_guard::ReconcileGuard::new("notifications", metrics);
    controller
        .with_config(ControllerConfig::default().concurrency(CONCURRENCY))
        .reconcile_all_on(reload)
        .run(
            guard.reconcile(move |object: Arc<K>, ctx: Arc<Context>| reconcile(object, ctx, kind)),
            guard.error_policy(error_policy),
            context.clone(),
        )
        .for_each(crate::reconcile_guard::log_result("notifications"))
        .await;
}

fn error_policy<K: Resource<DynamicType = ()>>(
    object: Arc<K>,
    error: &NotifyError,
    _ctx: Arc<Context>,
) -> Action {
    tracing::warn!(
        namespace = object.namespace().unwrap_or_default(),
        name = %object.name_any(),
        error = %error,
        "notifications: will retry"
    );
    Action::requeue(REDELIVER_AFTER)
}

async fn reconcile<K>(
    object: Arc<K>,
    ctx: Arc<Context>,
    kind: ObjectKind,
) -> Result<Action, NotifyError>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    // Observe.
    let Some(subscriptions) = subscriptions_of(&*object, kind, &ctx.rollouts) else {
        return Ok(Action::requeue(OWNER_NOT_CACHED));
    };
    let annotation = object
        .annotations()
        .get(record::ANNOTATION)
        .map(String::as_str);
    if subscriptions.is_empty() && annotation.is_none() {
        return Ok(Action::await_change());
    }
    let config = ctx.config.current(&ctx).await;
    let before = ctx.effective_record(&*object);
    let mut value = serde_json::to_value(&*object).unwrap_or(Value::Null);
    if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        // Large and of no use to a message.
        metadata.remove("managedFields");
    }

    // Plan.
    let now = jiff::Timestamp::now().as_second();
    let plan = plan::plan(&Input {
        kind,
        object: &value,
        subscriptions: &subscriptions,
        config: &config,
        record: &before,
        now,
    });
    ctx.report_problems(&*object, &plan.problems);

    // Act.
    let mut record = plan.record;
    let mut failed = false;
    let mut wrote = false;
    if !plan.deliveries.is_empty() {
        let secret = ctx.secret().await?;
        for delivery in &plan.deliveries {
            if ctx
                .deliver(&*object, kind, &config, delivery, &secret)
                .await
            {
                // Written after each delivery: a restart in between resends one message at most.
                record.mark_sent(&delivery.key, now);
                ctx.write_record(&*object, &record).await?;
                wrote = true;
            } else {
                failed = true;
            }
        }
    }
    // Entries cleared (their condition is false again) or pruned.
    if !wrote && record != before {
        ctx.write_record(&*object, &record).await?;
    }
    Ok(if failed {
        Action::requeue(REDELIVER_AFTER)
    } else {
        Action::await_change()
    })
}

/// This process's last write of a record, while the cached object (at `seen`) is older than it.
/// Resource versions are compared as numbers, as etcd issues them; one that is not a number
/// trusts the cache.
fn newer_than_cache(written: Option<&Written>, seen: Option<u64>) -> Option<&Record> {
    match (written, seen) {
        (Some(w), Some(seen)) if seen < w.resource_version => Some(&w.record),
        _ => None,
    }
}

/// The object's subscriptions; an AnalysisRun also has its Rollout's (the runs are made by the
/// controller, with names no one knows beforehand, so the Rollout is where users subscribe).
/// None while the run's Rollout is not in the cache yet.
fn subscriptions_of<K: Resource>(
    object: &K,
    kind: ObjectKind,
    rollouts: &Store<Rollout>,
) -> Option<Vec<plan::Subscription>> {
    let mut subscriptions = plan::subscriptions(object.annotations());
    if kind == ObjectKind::AnalysisRun {
        let value = json!({"metadata": {
            "ownerReferences": object.meta().owner_references,
            "labels": object.labels(),
        }});
        let rollout = triggers::rollout_of(&value);
        let namespace = object.namespace().unwrap_or_default();
        let owner = (!rollout.is_empty())
            .then(|| rollouts.get(&ObjectRef::new(&rollout).within(&namespace)))
            .flatten();
        // The owner is in the cache before long (the garbage collector removes its runs once it
        // is gone); a run merely labelled with a Rollout's name has the subscriptions it has.
        if owner.is_none() && owned_by_rollout(object) && object.meta().deletion_timestamp.is_none()
        {
            return None;
        }
        if let Some(owner) = owner {
            for inherited in plan::subscriptions(owner.annotations()) {
                if !subscriptions
                    .iter()
                    .any(|s| s.trigger == inherited.trigger && s.service == inherited.service)
                {
                    subscriptions.push(inherited);
                }
            }
        }
    }
    Some(subscriptions)
}

fn owned_by_rollout<K: Resource>(object: &K) -> bool {
    object
        .owner_references()
        .iter()
        .any(|o| o.kind == "Rollout" && o.controller == Some(true))
}

impl Context {
    /// The object's record: the annotation, unless this process wrote a newer one that the watch
    /// cache does not show yet (else a reconcile right after a send would send again).
    fn effective_record<K: Resource>(&self, object: &K) -> Record {
        let from_annotation = Record::parse(
            object
                .annotations()
                .get(record::ANNOTATION)
                .map(String::as_str),
        );
        let Some(uid) = object.uid() else {
            return from_annotation;
        };
        let seen = object
            .resource_version()
            .and_then(|rv| rv.parse::<u64>().ok());
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        match newer_than_cache(written.get(&uid), seen) {
            Some(record) => record.clone(),
            None => {
                written.remove(&uid);
                from_annotation
            }
        }
    }

    /// The Secret's values (none when it does not exist).
    async fn secret(&self) -> Result<BTreeMap<String, String>, NotifyError> {
        let api: Api<Secret> =
            Api::namespaced(self.client.clone(), &self.settings.control_namespace);
        let secret = api
            .get_opt(CONFIG_NAME)
            .await
            .map_err(|source| NotifyError::Kube {
                what: format!("reading the Secret {CONFIG_NAME}"),
                source,
            })?;
        let mut values = BTreeMap::new();
        if let Some(secret) = secret {
            for (key, bytes) in secret.data.unwrap_or_default() {
                values.insert(key, String::from_utf8_lossy(&bytes.0).into_owned());
            }
            values.extend(secret.string_data.unwrap_or_default());
        }
        Ok(values)
    }

    /// Sends every payload of `delivery`; whether all arrived.
    async fn deliver<K: Resource>(
        &self,
        object: &K,
        kind: ObjectKind,
        config: &NotificationsConfig,
        delivery: &Delivery,
        secret: &BTreeMap<String, String>,
    ) -> bool {
        let Some(service) = config.services.get(&delivery.service) else {
            return false;
        };
        for payload in &delivery.payloads {
            let mut missing = Vec::new();
            let sent = self
                .sender
                .send(service, payload, secret, &mut missing)
                .await;
            for key in missing {
                tracing::warn!(service = %delivery.service, key = %key.0,
                    "notifications: the Secret {CONFIG_NAME} has no key named by the service");
            }
            if let Err(e) = sent {
                self.count(&delivery.trigger, &delivery.service, "failed");
                tracing::warn!(
                    kind = kind.name(),
                    namespace = object.namespace().unwrap_or_default(),
                    name = %object.name_any(),
                    trigger = %delivery.trigger,
                    service = %delivery.service,
                    error = %e,
                    "notification not delivered"
                );
                return false;
            }
        }
        self.count(&delivery.trigger, &delivery.service, "sent");
        tracing::info!(
            kind = kind.name(),
            namespace = object.namespace().unwrap_or_default(),
            name = %object.name_any(),
            trigger = %delivery.trigger,
            service = %delivery.service,
            recipient = %delivery.recipient,
            "notification sent"
        );
        true
    }

    /// Writes the record (a merge patch of the one annotation, under its own field manager).
    async fn write_record<K>(&self, object: &K, record: &Record) -> Result<(), NotifyError>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + Debug
            + DeserializeOwned,
    {
        let api: Api<K> =
            Api::namespaced(self.client.clone(), &object.namespace().unwrap_or_default());
        let value = (!record.is_empty()).then(|| record.to_annotation());
        let patch = json!({"metadata": {"annotations": {record::ANNOTATION: value}}});
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        };
        let written = api
            .patch(&object.name_any(), &params, &Patch::Merge(&patch))
            .await
            .map_err(|source| NotifyError::Kube {
                what: format!("recording the notifications sent on {}", object.name_any()),
                source,
            })?;
        if let (Some(uid), Some(rv)) = (
            written.uid(),
            written
                .resource_version()
                .and_then(|rv| rv.parse::<u64>().ok()),
        ) {
            let mut map = self.written.lock().unwrap_or_else(|e| e.into_inner());
            map.insert(
                uid,
                Written {
                    resource_version: rv,
                    record: record.clone(),
                },
            );
        }
        Ok(())
    }

    fn count(&self, trigger: &str, service: &str, result: &str) {
        self.total
            .get_or_create(&NotifyLabels {
                trigger: trigger.to_string(),
                service: service.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    /// Logs each problem of a subscription once per object (every change of the object plans
    /// again), counting it as `result="error"`.
    fn report_problems<K: Resource>(&self, object: &K, problems: &[Problem]) {
        for problem in problems {
            let id = format!(
                "{}\u{0}{}\u{0}{}\u{0}{}",
                object.uid().unwrap_or_default(),
                problem.trigger,
                problem.service,
                problem.message
            );
            {
                let mut reported = self.reported.lock().unwrap_or_else(|e| e.into_inner());
                if reported.len() >= MAX_REPORTED {
                    reported.clear();
                }
                if !reported.insert(id) {
                    continue;
                }
            }
            self.count(&problem.trigger, &problem.service, "error");
            tracing::warn!(
                namespace = object.namespace().unwrap_or_default(),
                name = %object.name_any(),
                trigger = %problem.trigger,
                service = %problem.service,
                problem = %problem.message,
                "notifications: subscription cannot be served"
            );
        }
    }
}

/// The ConfigMap, parsed once per version of it; its problems reported once per version.
struct ConfigCache {
    store: Store<ConfigMap>,
    key: ObjectRef<ConfigMap>,
    parsed: tokio::sync::Mutex<(Option<String>, Arc<NotificationsConfig>)>,
}

impl ConfigCache {
    fn new(store: Store<ConfigMap>, namespace: &str) -> Self {
        Self {
            store,
            key: ObjectRef::new(CONFIG_NAME).within(namespace),
            parsed: tokio::sync::Mutex::new((None, Arc::new(NotificationsConfig::default()))),
        }
    }

    async fn current(&self, ctx: &Context) -> Arc<NotificationsConfig> {
        let config_map = self.store.get(&self.key);
        let version = config_map.as_ref().and_then(|c| c.resource_version());
        let mut parsed = self.parsed.lock().await;
        if parsed.0 != version {
            let data = config_map
                .as_ref()
                .and_then(|c| c.data.clone())
                .unwrap_or_default();
            let (config, problems) = super::config::parse(&data);
            if let Some(config_map) = &config_map {
                report_config_problems(ctx, config_map, &problems).await;
            }
            *parsed = (version, Arc::new(config));
        }
        parsed.1.clone()
    }
}

/// A Warning Event on the ConfigMap naming each key that cannot be used, a log line per key and
/// `sluice_notifications_total{result="error"}`.
async fn report_config_problems(ctx: &Context, config_map: &ConfigMap, problems: &[ConfigProblem]) {
    if problems.is_empty() {
        return;
    }
    for problem in problems {
        let (trigger, service) = problem_labels(&problem.key);
        ctx.count(trigger, service, "error");
        tracing::warn!(configmap = CONFIG_NAME, key = %problem.key, problem = %problem.message,
            "notifications: ConfigMap key ignored");
    }
    let note = problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    let event = Event {
        type_: EventType::Warning,
        reason: INVALID_CONFIG_REASON.to_string(),
        note: Some(crate::reconcile_guard::truncate(
            &format!("ignored: {note}"),
            1000,
        )),
        action: "Parse".to_string(),
        secondary: None,
    };
    if let Err(e) = ctx
        .recorder
        .publish(&event, &config_map.object_ref(&()))
        .await
    {
        tracing::warn!(error = %e, "cannot record the notifications ConfigMap's Event");
    }
}

/// The metric's `trigger` and `service` of a ConfigMap key.
fn problem_labels(key: &str) -> (&str, &str) {
    if let Some(name) = key.strip_prefix("trigger.") {
        (name, "")
    } else if let Some(rest) = key.strip_prefix("service.") {
        ("", rest.split_once('.').map_or(rest, |(_, name)| name))
    } else {
        ("", "")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configmap_problems_are_labelled_by_trigger_or_service() {
        assert_eq!(problem_labels("trigger.on-x"), ("on-x", ""));
        assert_eq!(problem_labels("service.webhook.ops"), ("", "ops"));
        assert_eq!(problem_labels("service.slack"), ("", "slack"));
        assert_eq!(problem_labels("template.t"), ("", ""));
    }

    #[test]
    fn a_write_the_cache_does_not_show_yet_is_the_record() {
        let mut record = Record::default();
        record.mark_sent("k", 1);
        let written = Written {
            resource_version: 120,
            record: record.clone(),
        };
        assert_eq!(newer_than_cache(Some(&written), Some(119)), Some(&record));
        assert_eq!(newer_than_cache(Some(&written), Some(120)), None);
        assert_eq!(newer_than_cache(Some(&written), Some(500)), None);
        assert_eq!(newer_than_cache(Some(&written), None), None);
        assert_eq!(newer_than_cache(None, Some(1)), None);
    }

    fn run_of(owner: Option<&str>, label: Option<&str>) -> AnalysisRun {
        let owners: Vec<Value> = owner
            .map(|name| json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "name": name, "uid": "u1", "controller": true}))
            .into_iter()
            .collect();
        let labels = label.map(|name| json!({crate::rollout::observe::ROLLOUT_LABEL: name}));
        serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "ns", "ownerReferences": owners, "labels": labels},
            "spec": {"metrics": []}
        }))
        .expect("run")
    }

    #[test]
    fn a_run_waits_for_its_rollout_in_the_cache_and_then_has_its_subscriptions() {
        let (rollouts, mut writer) = kube::runtime::reflector::store::<Rollout>();
        let run = run_of(Some("web"), None);
        assert_eq!(
            subscriptions_of(&run, ObjectKind::AnalysisRun, &rollouts),
            None
        );

        let rollout: Rollout = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "annotations": {
                "notifications.sluice.dev/subscribe.on-analysis-run-failed.slack": "#deploys"
            }},
            "spec": {"selector": {}, "template": {}, "strategy": {"canary": {}}}
        }))
        .expect("rollout");
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(rollout));
        let inherited = subscriptions_of(&run, ObjectKind::AnalysisRun, &rollouts).expect("cached");
        assert_eq!(inherited.len(), 1);
        assert_eq!(inherited[0].trigger, "on-analysis-run-failed");
        assert_eq!(inherited[0].service, "slack");
    }

    #[test]
    fn a_run_only_labelled_with_a_missing_rollout_does_not_wait() {
        let (rollouts, _writer) = kube::runtime::reflector::store::<Rollout>();
        let run = run_of(None, Some("gone"));
        assert_eq!(
            subscriptions_of(&run, ObjectKind::AnalysisRun, &rollouts),
            Some(vec![])
        );
    }
}
