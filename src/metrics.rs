//! The controller's own Prometheus metrics. Every family is prefixed `sluice_`.
//!
//! Controllers register their families on the shared [`Metrics`] registry; `sluice_build_info` is
//! always present so an idle controller still exposes a sample.

use std::sync::{Arc, RwLock};

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// The label set of one sample.
pub type Labels = Vec<(String, String)>;

/// The process-wide metrics registry, cheap to clone.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<RwLock<Registry>>,
    /// `sluice_reconcile_panics_total{controller}`, shared by every controller's reconcile guard.
    reconcile_panics: Family<Labels, Counter>,
    /// `sluice_reconciles_total{controller,result}` (`ok`, `error`, `panic`).
    reconciles: Family<Labels, Counter>,
    /// `sluice_reconcile_duration_seconds{controller}`: how long each reconcile held its slot.
    reconcile_seconds: Family<Labels, Histogram, fn() -> Histogram>,
}

/// Reconcile durations, from a cache read (milliseconds) to a slot held for minutes.
const RECONCILE_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0,
];

fn reconcile_histogram() -> Histogram {
    Histogram::new(RECONCILE_BUCKETS)
}

/// What every controller's reconciles are counted and timed with.
#[derive(Clone, Debug)]
pub struct ControllerMetrics {
    ok: Counter,
    error: Counter,
    panic: Counter,
    seconds: Histogram,
}

/// How one reconcile ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReconcileResult {
    Ok,
    Error,
    Panic,
}

impl ControllerMetrics {
    pub fn observe(&self, result: ReconcileResult, seconds: f64) {
        match result {
            ReconcileResult::Ok => self.ok.inc(),
            ReconcileResult::Error => self.error.inc(),
            ReconcileResult::Panic => self.panic.inc(),
        };
        self.seconds.observe(seconds);
    }
}

impl Metrics {
    /// A registry holding `sluice_build_info{version}`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sluice");
        registry.register(
            "build",
            "Build information of the running Sluice",
            Info::new(vec![("version".to_string(), crate::VERSION.to_string())]),
        );
        let reconcile_panics = Family::<Labels, Counter>::default();
        registry.register(
            "reconcile_panics",
            "Reconciles that panicked, by controller; the panic failed that object only",
            reconcile_panics.clone(),
        );
        let reconciles = Family::<Labels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles by controller and result (ok, error, panic)",
            reconciles.clone(),
        );
        let reconcile_seconds =
            Family::new_with_constructor(reconcile_histogram as fn() -> Histogram);
        registry.register(
            "reconcile_duration_seconds",
            "How long each reconcile took, by controller",
            reconcile_seconds.clone(),
        );
        Self {
            registry: Arc::new(RwLock::new(registry)),
            reconcile_panics,
            reconciles,
            reconcile_seconds,
        }
    }

    /// The reconcile counters and duration histogram of `controller`, created at 0.
    pub fn controller(&self, controller: &str) -> ControllerMetrics {
        let result = |result: &str| {
            self.reconciles
                .get_or_create(&vec![
                    ("controller".to_string(), controller.to_string()),
                    ("result".to_string(), result.to_string()),
                ])
                .clone()
        };
        ControllerMetrics {
            ok: result("ok"),
            error: result("error"),
            panic: result("panic"),
            seconds: self
                .reconcile_seconds
                .get_or_create(&vec![("controller".to_string(), controller.to_string())])
                .clone(),
        }
    }

    /// The panic counter of `controller`, created at 0 so that the series exists before any panic.
    pub fn reconcile_panics(&self, controller: &str) -> Counter {
        self.reconcile_panics
            .get_or_create(&vec![("controller".to_string(), controller.to_string())])
            .clone()
    }

    /// Lets a component add its metric families.
    pub fn register(&self, add: impl FnOnce(&mut Registry)) {
        // A poisoned lock only means a panic elsewhere while registering; the registry is still usable.
        let mut registry = self.registry.write().unwrap_or_else(|e| e.into_inner());
        add(&mut registry);
    }

    /// The OpenMetrics text exposition of every registered family.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let registry = self.registry.read().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        encode(&mut out, &registry)?;
        Ok(out)
    }
}

/// Encodes a gauge family built at scrape time from `samples` (a collector's output): the samples
/// exist only while the objects they describe do, so nothing goes stale.
pub fn encode_gauge_family(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: Vec<(Labels, f64)>,
) -> Result<(), std::fmt::Error> {
    let family = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    for (labels, value) in samples {
        family.get_or_create(&labels).set(value);
    }
    let metric = encoder.encode_descriptor(name, help, None, family.metric_type())?;
    family.encode(metric)
}

/// An info-style gauge: one sample of value 1 per label set.
pub fn encode_info_family(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: Vec<Labels>,
) -> Result<(), std::fmt::Error> {
    let samples = samples.into_iter().map(|labels| (labels, 1.0)).collect();
    encode_gauge_family(encoder, name, help, samples)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_info_is_always_exposed_with_the_version() {
        let text = Metrics::new().encode().unwrap();
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == "sluice_build_info")
            .expect("sluice_build_info sample");
        assert_eq!(sample.labels.get("version"), Some(crate::VERSION));
        assert!(
            matches!(sample.value, prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) if v == 1.0)
        );
    }
}
