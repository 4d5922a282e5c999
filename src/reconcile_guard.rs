//! Panic containment for every controller: one reconcile that panics fails its own object only.
//!
//! Without it a panic inside a reconcile future unwinds through the controller's stream and takes the
//! process down (or silently ends that controller), and the object that caused it does so again after
//! every restart. [`ReconcileGuard::reconcile`] runs each reconcile under `catch_unwind`; a panic
//! becomes [`Guarded::Panicked`], counted in `sluice_reconcile_panics_total{controller}`, reported as
//! a Warning Event `ReconcilePanicked` on the object (and, where the kind has a place for it, in its
//! status), and requeued after [`PANIC_RETRY`] by [`ReconcileGuard::error_policy`]. Every other error
//! goes to the controller's own error policy unchanged.
//!
//! It also counts and times every reconcile of every controller the same way:
//! `sluice_reconciles_total{controller,result}` and `sluice_reconcile_duration_seconds{controller}`.

use std::any::Any;
use std::fmt::Debug;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use jiff::Timestamp;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use prometheus_client::metrics::counter::Counter;
use serde::de::DeserializeOwned;
use thiserror::Error;

use crate::metrics::{ControllerMetrics, Metrics, ReconcileResult};

/// Requeue delay of an object whose reconcile panicked: a panic is almost always the same input
/// hitting the same bug, so it is retried slowly rather than at the error policy's pace.
pub const PANIC_RETRY: Duration = Duration::from_secs(30);
/// Event reason of a contained panic.
pub const PANIC_EVENT_REASON: &str = "ReconcilePanicked";
/// The longest panic message kept in an Event or a status (Event notes are limited to 1 KiB).
const MAX_MESSAGE_CHARS: usize = 800;

/// A reconcile panicked; `message` is the panic's payload.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("reconcile panicked: {message}")]
pub struct Panicked {
    pub message: String,
}

/// The error of a guarded reconcile: the controller's own, or a contained panic.
#[derive(Debug, Error)]
pub enum Guarded<E: std::error::Error + 'static> {
    #[error(transparent)]
    Reconcile(E),
    #[error(transparent)]
    Panicked(Panicked),
}

/// Builds the status merge patch (`{"status": {...}}`) that records a panic on an object of kind
/// `K`, from the object as the reconcile saw it; `None` leaves the status alone.
pub type StatusPatch<K> = fn(&K, &Panicked, Timestamp) -> Option<serde_json::Value>;

/// Reports a contained panic outside the process (an Event, a status write).
trait Report<K>: Send + Sync {
    fn report<'a>(&'a self, object: &'a K, panic: &'a Panicked) -> BoxFuture<'a, ()>;
}

/// Wraps a controller's reconcile and error policy; cheap to clone.
pub struct ReconcileGuard<K> {
    controller: &'static str,
    panics: Counter,
    reconciles: ControllerMetrics,
    report: Option<Arc<dyn Report<K>>>,
}

impl<K> Clone for ReconcileGuard<K> {
    fn clone(&self) -> Self {
        Self {
            controller: self.controller,
            panics: self.panics.clone(),
            reconciles: self.reconciles.clone(),
            report: self.report.clone(),
        }
    }
}

impl<K> ReconcileGuard<K>
where
    K: Resource + Send + Sync + 'static,
{
    /// A guard counting the panics of `controller` (e.g. `rollout`) in `metrics`; the series exists
    /// at 0 from the start.
    pub fn new(controller: &'static str, metrics: &Metrics) -> Self {
        Self {
            controller,
            panics: metrics.reconcile_panics(controller),
            reconciles: metrics.controller(controller),
            report: None,
        }
    }

    /// Also reports each panic as a Warning Event on the object, from `reporter` (the controller's
    /// field manager), and records it in the status through `status` when given.
    pub fn reporting(
        mut self,
        client: Client,
        reporter: &str,
        status: Option<StatusPatch<K>>,
    ) -> Self
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + Debug
            + DeserializeOwned,
    {
        self.report = Some(Arc::new(KubeReport {
            recorder: Recorder::new(
                client.clone(),
                Reporter {
                    controller: reporter.to_string(),
                    instance: std::env::var("POD_NAME").ok(),
                },
            ),
            client,
            status,
        }));
        self
    }

    /// `reconcile` run under `catch_unwind`, for `Controller::run`.
    pub fn reconcile<C, F, Fut, E>(
        &self,
        reconcile: F,
    ) -> impl FnMut(Arc<K>, Arc<C>) -> BoxFuture<'static, Result<Action, Guarded<E>>>
    where
        C: Send + Sync + 'static,
        F: Fn(Arc<K>, Arc<C>) -> Fut,
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
        E: std::error::Error + Send + 'static,
    {
        let guard = self.clone();
        move |object: Arc<K>, ctx: Arc<C>| {
            let guard = guard.clone();
            // Building the future runs none of its body, so it cannot panic here.
            let future = reconcile(object.clone(), ctx);
            Box::pin(async move {
                let started = std::time::Instant::now();
                let (result, ended) = match AssertUnwindSafe(future).catch_unwind().await {
                    Ok(Ok(action)) => (Ok(action), ReconcileResult::Ok),
                    Ok(Err(e)) => (Err(Guarded::Reconcile(e)), ReconcileResult::Error),
                    Err(payload) => (
                        Err(Guarded::Panicked(guard.contain(&object, payload).await)),
                        ReconcileResult::Panic,
                    ),
                };
                guard
                    .reconciles
                    .observe(ended, started.elapsed().as_secs_f64());
                result
            })
        }
    }

    /// The controller's `error_policy` for its own errors; a contained panic is retried after
    /// [`PANIC_RETRY`].
    pub fn error_policy<C, E>(
        &self,
        policy: impl Fn(Arc<K>, &E, Arc<C>) -> Action,
    ) -> impl Fn(Arc<K>, &Guarded<E>, Arc<C>) -> Action
    where
        E: std::error::Error + 'static,
    {
        move |object, error, ctx| match error {
            Guarded::Reconcile(e) => policy(object, e, ctx),
            Guarded::Panicked(_) => Action::requeue(PANIC_RETRY),
        }
    }

    async fn contain(&self, object: &K, payload: Box<dyn Any + Send>) -> Panicked {
        let panicked = Panicked {
            message: truncate(&panic_message(payload.as_ref()), MAX_MESSAGE_CHARS),
        };
        self.panics.inc();
        tracing::error!(
            controller = self.controller,
            namespace = object.namespace().unwrap_or_default(),
            name = %object.name_any(),
            panic = %panicked.message,
            "reconcile panicked; this object is retried later, the others go on"
        );
        if let Some(report) = &self.report {
            // A report that panics in turn is dropped: containment must not need its own guard.
            let reported = AssertUnwindSafe(report.report(object, &panicked))
                .catch_unwind()
                .await;
            if reported.is_err() {
                tracing::error!(controller = self.controller, "reporting a panic panicked");
            }
        }
        panicked
    }
}

struct KubeReport<K> {
    client: Client,
    recorder: Recorder,
    status: Option<StatusPatch<K>>,
}

impl<K> Report<K> for KubeReport<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    fn report<'a>(&'a self, object: &'a K, panic: &'a Panicked) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let event = Event {
                type_: EventType::Warning,
                reason: PANIC_EVENT_REASON.to_string(),
                note: Some(format!(
                    "{panic}; this object is retried in {}s (a bug in Sluice: please report it)",
                    PANIC_RETRY.as_secs()
                )),
                action: "Reconcile".to_string(),
                secondary: None,
            };
            if let Err(e) = self.recorder.publish(&event, &object.object_ref(&())).await {
                tracing::warn!(error = %e, "cannot record the panic's Event");
            }
            let Some(patch) = self.status.and_then(|f| f(object, panic, Timestamp::now())) else {
                return;
            };
            let api: Api<K> =
                Api::namespaced(self.client.clone(), &object.namespace().unwrap_or_default());
            let params = PatchParams {
                field_manager: Some("sluice-reconcile-guard".to_string()),
                ..PatchParams::default()
            };
            if let Err(e) = api
                .patch_status(&object.name_any(), &params, &Patch::Merge(&patch))
                .await
            {
                tracing::warn!(error = %e, "cannot record the panic in the status");
            }
        })
    }
}

/// The text of a panic payload (`panic!("...")` gives a `&str` or a `String`).
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// The first `max` characters of `s`, with `...` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// What a controller does with each result of its stream (`.for_each(log_result("rollout"))`):
/// failures are already counted and reported by the guard's `error_policy`, so what is left (watch
/// hiccups, objects gone) is logged at debug level under `controller`.
pub fn log_result<T, E: std::fmt::Display>(
    controller: &'static str,
) -> impl FnMut(Result<T, E>) -> std::future::Ready<()> {
    move |result| {
        if let Err(e) = result {
            tracing::debug!(error = %e, controller, "controller event");
        }
        std::future::ready(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::rollout::Rollout;

    #[derive(Debug, Error)]
    #[error("ordinary failure")]
    struct Ordinary;

    struct Ctx;

    fn rollout(name: &str) -> Arc<Rollout> {
        let mut r: Rollout = serde_json::from_value(serde_json::json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"strategy": {"canary": {}}}
        }))
        .unwrap();
        r.metadata.uid = Some("u".into());
        Arc::new(r)
    }

    /// A reconcile that panics on the object named `bad` (with a message built at run time, like
    /// an index out of range) and fails ordinarily on `failing`.
    async fn reconcile(object: Arc<Rollout>, _ctx: Arc<Ctx>) -> Result<Action, Ordinary> {
        match object.name_any().as_str() {
            "bad" => {
                let steps: Vec<i32> = Vec::new();
                let index = object.name_any().len();
                Ok(Action::requeue(Duration::from_secs(
                    steps[index].unsigned_abs().into(),
                )))
            }
            "failing" => Err(Ordinary),
            _ => Ok(Action::await_change()),
        }
    }

    /// The sample of `metric` for the rollout controller (and `result`, when given).
    fn sample(metrics: &Metrics, metric: &str, result: Option<&str>) -> f64 {
        let text = metrics.encode().unwrap();
        let scrape =
            prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == metric
                    && s.labels.get("controller") == Some("rollout")
                    && s.labels.get("result") == result
            })
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
            .unwrap_or_else(|| panic!("{metric}{{controller=\"rollout\"}} in {text}"))
    }

    fn panics_counted(metrics: &Metrics) -> f64 {
        sample(metrics, "sluice_reconcile_panics_total", None)
    }

    #[tokio::test]
    async fn a_panic_fails_its_object_only_is_counted_and_retried_slowly() {
        let metrics = Metrics::new();
        let guard = ReconcileGuard::<Rollout>::new("rollout", &metrics);
        assert_eq!(panics_counted(&metrics), 0.0);
        let mut run = guard.reconcile(reconcile);
        let policy = guard
            .error_policy(|_, _: &Ordinary, _: Arc<Ctx>| Action::requeue(Duration::from_secs(5)));
        let ctx = Arc::new(Ctx);

        let err = run(rollout("bad"), ctx.clone()).await.unwrap_err();
        let Guarded::Panicked(panicked) = &err else {
            panic!("{err:?}")
        };
        assert!(
            panicked.message.contains("index out of bounds"),
            "{panicked}"
        );
        assert_eq!(panics_counted(&metrics), 1.0);
        assert_eq!(
            policy(rollout("bad"), &err, ctx.clone()),
            Action::requeue(PANIC_RETRY)
        );

        // The same process goes on reconciling other objects, and ordinary errors are the
        // controller's own.
        assert_eq!(
            run(rollout("good"), ctx.clone()).await.unwrap(),
            Action::await_change()
        );
        let err = run(rollout("failing"), ctx.clone()).await.unwrap_err();
        assert!(matches!(err, Guarded::Reconcile(Ordinary)));
        assert_eq!(
            policy(rollout("failing"), &err, ctx.clone()),
            Action::requeue(Duration::from_secs(5))
        );
        assert!(run(rollout("bad"), ctx).await.is_err());
        assert_eq!(panics_counted(&metrics), 2.0);

        // Every reconcile counted by how it ended, and timed.
        let reconciles = |result| sample(&metrics, "sluice_reconciles_total", Some(result));
        assert_eq!(
            (reconciles("ok"), reconciles("error"), reconciles("panic")),
            (1.0, 1.0, 2.0)
        );
        assert!(
            metrics
                .encode()
                .unwrap()
                .contains("sluice_reconcile_duration_seconds_count{controller=\"rollout\"} 4")
        );
    }

    #[test]
    fn long_panic_messages_are_cut_on_a_character_boundary() {
        let long = "é".repeat(2000);
        let cut = truncate(&long, MAX_MESSAGE_CHARS);
        assert_eq!(cut.chars().count(), MAX_MESSAGE_CHARS + 3);
        assert!(cut.ends_with("..."));
        assert_eq!(truncate("short", 10), "short");
    }

    /// The release and dev profiles unwind on panic: `catch_unwind` contains nothing under
    /// `panic = "abort"`.
    #[test]
    fn the_build_unwinds_on_panic() {
        let manifest = include_str!("../Cargo.toml");
        assert!(
            !manifest.contains("panic = \"abort\""),
            "Cargo.toml sets panic = \"abort\""
        );
        assert!(std::panic::catch_unwind(|| panic!("contained")).is_err());
    }
}
