//! `make bench-argo`: Argo Rollouts' controller and Sluice's, side by side, on the same N canary
//! Rollouts on the local cluster (`e2e/cluster/up`). For each N, each controller in turn gets a
//! fresh namespace and runs there as a separate process (so that `/proc` gives its own RSS and CPU):
//! N Rollouts of 2 replicas with steps `[setWeight: 50, pause: {}]` are created (time until all are
//! Healthy), their image is changed (time until all are Paused) and all are aborted (time from the
//! last abort until all are Degraded). The manifests are the same for both controllers but for
//! the apiVersion (`argoproj.io/v1alpha1` or `sluice.dev/v1alpha1`); the phase is `status.phase`
//! for both. The namespace is deleted, and gone, before the next controller starts.
//!
//! Settings (environment, since `cargo bench` passes its own arguments):
//! - `BENCH_N`: the sizes, e.g. `"100 1000"` (default `100`; 10 under `cargo test`);
//! - `BENCH_CONTROLLERS`: the controllers in run order (default `"argo sluice"`; under `cargo
//!   test`, Sluice alone unless `ARGO_ROLLOUTS_BIN` is set);
//! - `ARGO_ROLLOUTS_BIN`: the `rollouts-controller` binary (`e2e/argo/build` prints it), with the
//!   CRDs of `argoproj.io` already installed (`scripts/bench-argo` does both);
//! - `BENCH_PHASE_TIMEOUT`: seconds to wait for each phase (default max(120, 0.9 × N)); a phase
//!   not reached by then is reported as "not reached (k of N)" and the later phases are not run.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/proc_stats.rs"]
mod proc_stats;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::sync::Notify;

use common::{E2eEnv, TestNamespace, apply_crds, free_local_addr, http_get};
use proc_stats::{alive, cpu_seconds, load_average, proc_status_kib};

const LABEL_KEY: &str = "sluice.dev/bench";
const LABEL_VALUE: &str = "rollout-scale";
const IMAGE_BEFORE: &str = "registry.local/web:1";
const IMAGE_AFTER: &str = "registry.local/web:2";
/// Writes in flight at once while creating, changing or aborting the N Rollouts.
const WRITE_CONCURRENCY: usize = 16;
const READY_TIMEOUT: Duration = Duration::from_secs(120);
const NAMESPACE_GONE_TIMEOUT: Duration = Duration::from_secs(900);
/// The controllers' log level, as deployed.
const SLUICE_LOG: &str = "info";

#[tokio::main]
async fn main() {
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(message) => fail(&message),
    };
    let env = E2eEnv::load();
    let client = env.client().await;
    apply_crds(&client).await;
    println!(
        "host: {} CPUs, load average {} at start",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        load_average()
    );
    for &n in &settings.sizes {
        let mut runs = Vec::new();
        for &controller in &settings.controllers {
            let timeout = settings.phase_timeout(n);
            println!(
                "\n== {} with N = {n} (phase timeout {} s, load average {}) ==",
                controller.title(),
                timeout.as_secs(),
                load_average()
            );
            match run(&env, &client, &settings, controller, n, timeout).await {
                Ok(figures) => runs.push((controller, figures)),
                Err(message) => fail(&format!("{} at N = {n}: {message}", controller.title())),
            }
        }
        print_table(n, &runs);
        // Under `cargo test` the run is a check: every phase of every controller must be reached.
        if settings.checking {
            let missed = runs.iter().any(|(_, f)| {
                [f.healthy, f.paused, f.degraded]
                    .iter()
                    .any(|o| o.seconds().is_none())
            });
            if missed {
                fail(&format!("N = {n}: a phase was not reached (see the table)"));
            }
        }
    }
}

fn fail(message: &str) -> ! {
    eprintln!("rollout_scale: {message}");
    std::process::exit(1);
}

struct Settings {
    /// Run by `cargo test` (not `cargo bench`): a phase not reached fails the run.
    checking: bool,
    sizes: Vec<usize>,
    controllers: Vec<Controller>,
    argo_bin: Option<PathBuf>,
    phase_timeout: Option<Duration>,
}

impl Settings {
    fn from_env() -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        // `cargo test --all-targets` runs this without `--bench`: then a small run of Sluice alone
        // checks the scenario end to end (every phase reached), Argo's controller only when built.
        let benching = benching();
        let (default_n, default_controllers) = if benching {
            ("100", "argo sluice")
        } else if var("ARGO_ROLLOUTS_BIN").is_some() {
            ("10", "argo sluice")
        } else {
            ("10", "sluice")
        };
        let sizes = var("BENCH_N")
            .unwrap_or_else(|| default_n.to_string())
            .split_whitespace()
            .map(|n| match n.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("BENCH_N: {n:?} is not a positive number")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let controllers = var("BENCH_CONTROLLERS")
            .unwrap_or_else(|| default_controllers.to_string())
            .split_whitespace()
            .map(Controller::parse)
            .collect::<Result<Vec<_>, _>>()?;
        let phase_timeout = var("BENCH_PHASE_TIMEOUT")
            .map(|s| {
                s.parse::<u64>()
                    .map(Duration::from_secs)
                    .map_err(|_| format!("BENCH_PHASE_TIMEOUT: {s:?} is not a number of seconds"))
            })
            .transpose()?;
        let argo_bin = var("ARGO_ROLLOUTS_BIN").map(PathBuf::from);
        if controllers.contains(&Controller::Argo) && argo_bin.is_none() {
            return Err(
                "ARGO_ROLLOUTS_BIN is not set (run e2e/argo/build, or scripts/bench-argo)"
                    .to_string(),
            );
        }
        Ok(Self {
            checking: !benching,
            sizes,
            controllers,
            argo_bin,
            phase_timeout,
        })
    }

    /// 900 s at N = 1,000: about what Argo needs there, with room.
    fn phase_timeout(&self, n: usize) -> Duration {
        self.phase_timeout
            .unwrap_or_else(|| Duration::from_secs((n as u64 * 9 / 10).max(120)))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Controller {
    Argo,
    Sluice,
}

impl Controller {
    fn parse(name: &str) -> Result<Self, String> {
        match name {
            "argo" => Ok(Self::Argo),
            "sluice" => Ok(Self::Sluice),
            other => Err(format!(
                "BENCH_CONTROLLERS: unknown controller {other:?} (argo or sluice)"
            )),
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::Argo => "Argo Rollouts",
            Self::Sluice => "Sluice",
        }
    }

    fn group(self) -> &'static str {
        match self {
            Self::Argo => "argoproj.io",
            Self::Sluice => "sluice.dev",
        }
    }

    fn rollouts(self, client: &Client, ns: &str) -> Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk(self.group(), "v1alpha1", "Rollout");
        let resource = ApiResource::from_gvk_with_plural(&gvk, "rollouts");
        Api::namespaced_with(client.clone(), ns, &resource)
    }
}

/// One controller's run at one N.
struct Figures {
    peak_rss_kib: Option<u64>,
    cpu_seconds: f64,
    healthy: Outcome,
    paused: Outcome,
    degraded: Outcome,
}

#[derive(Clone, Copy)]
enum Outcome {
    Reached(Duration),
    NotReached {
        reached: usize,
        of: usize,
    },
    /// An earlier phase was not reached.
    NotRun,
}

impl Outcome {
    fn seconds(self) -> Option<f64> {
        match self {
            Self::Reached(d) => Some(d.as_secs_f64()),
            _ => None,
        }
    }

    fn cell(self) -> String {
        match self {
            Self::Reached(d) => format!("{:.2} s", d.as_secs_f64()),
            Self::NotReached { reached, of } => format!("not reached ({reached} of {of})"),
            Self::NotRun => "not run".to_string(),
        }
    }
}

async fn run(
    env: &E2eEnv,
    client: &Client,
    settings: &Settings,
    controller: Controller,
    n: usize,
    timeout: Duration,
) -> Result<Figures, String> {
    let prefix = match controller {
        Controller::Argo => "bench-argo",
        Controller::Sluice => "bench-sluice",
    };
    let ns = TestNamespace::create(client, prefix).await;
    let mut process = ControllerProcess::start(env, settings, controller, &ns.name)?;
    println!(
        "controller pid {}, log {}",
        process.child.id(),
        process.log.display()
    );
    let outcome = scenario(client, &process, controller, &ns.name, n, timeout).await;
    let pid = process.child.id();
    let peak_rss_kib = proc_status_kib(pid, "VmHWM");
    let cpu = cpu_seconds(pid);
    // Here too, so that a run's figures survive a later failure of the bench.
    println!(
        "peak RSS {:.1} MiB (VmHWM), CPU {:.1} s",
        peak_rss_kib.unwrap_or_default() as f64 / 1024.0,
        cpu.as_ref().copied().unwrap_or(f64::NAN)
    );
    print_metrics(controller, &process.metrics_url).await;
    process.stop();
    let name = ns.name.clone();
    ns.delete().await;
    wait_namespace_gone(client, &name).await?;
    let (healthy, paused, degraded) = outcome?;
    Ok(Figures {
        peak_rss_kib,
        cpu_seconds: cpu?,
        healthy,
        paused,
        degraded,
    })
}

/// Create → all Healthy, image change → all Paused, abort → all Degraded.
async fn scenario(
    client: &Client,
    process: &ControllerProcess,
    controller: Controller,
    ns: &str,
    n: usize,
    timeout: Duration,
) -> Result<(Outcome, Outcome, Outcome), String> {
    let pid = process.child.id();
    process.wait_ready().await?;
    let api = controller.rollouts(client, ns);
    let phases = Phases::track(api.clone());
    let names: Vec<String> = (0..n).map(|i| format!("web-{i:04}")).collect();

    let started = Instant::now();
    let version = format!("{}/v1alpha1", controller.group());
    let on_bench_nodes = benching();
    for_each(&names, |name| {
        let (api, body) = (api.clone(), rollout(&version, name, on_bench_nodes));
        async move {
            let object: DynamicObject = serde_json::from_value(body).map_err(|e| e.to_string())?;
            api.create(&PostParams::default(), &object)
                .await
                .map(drop)
                .map_err(|e| format!("creating Rollout {name}: {e}"))
        }
    })
    .await?;
    report_wave("created", n, started);
    let healthy = phases.wait(pid, "Healthy", n, started, timeout).await?;
    println!("all Healthy: {}", healthy.cell());
    if !matches!(healthy, Outcome::Reached(_)) {
        return Ok((healthy, Outcome::NotRun, Outcome::NotRun));
    }

    let started = Instant::now();
    let change = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "web", "image": IMAGE_AFTER}]}}}});
    for_each(&names, |name| {
        let (api, change) = (api.clone(), change.clone());
        async move {
            api.patch(name, &PatchParams::default(), &Patch::Merge(change))
                .await
                .map(drop)
                .map_err(|e| format!("changing the image of Rollout {name}: {e}"))
        }
    })
    .await?;
    report_wave("image changed on", n, started);
    let paused = phases.wait(pid, "Paused", n, started, timeout).await?;
    println!("all Paused: {}", paused.cell());
    if !matches!(paused, Outcome::Reached(_)) {
        return Ok((healthy, paused, Outcome::NotRun));
    }

    let abort = json!({"status": {"abort": true}});
    let aborting = Instant::now();
    for_each(&names, |name| {
        let (api, abort) = (api.clone(), abort.clone());
        async move {
            // As `kubectl argo rollouts abort` (and the Sluice plugin) do: the status subresource.
            api.patch_status(name, &PatchParams::default(), &Patch::Merge(abort))
                .await
                .map(drop)
                .map_err(|e| format!("aborting Rollout {name}: {e}"))
        }
    })
    .await?;
    report_wave("aborted", n, aborting);
    let last_abort = Instant::now();
    let degraded = phases.wait(pid, "Degraded", n, last_abort, timeout).await?;
    println!("all Degraded: {}", degraded.cell());
    Ok((healthy, paused, degraded))
}

/// Runs `write` for every name, `WRITE_CONCURRENCY` at a time; the first error ends the wave.
async fn for_each<'a, F, Fut>(names: &'a [String], write: F) -> Result<(), String>
where
    F: Fn(&'a str) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    futures::stream::iter(names.iter().map(|name| write(name)))
        .buffer_unordered(WRITE_CONCURRENCY)
        .try_collect::<()>()
        .await
}

fn report_wave(what: &str, n: usize, started: Instant) {
    println!(
        "{what} {n} Rollouts in {:.2} s",
        started.elapsed().as_secs_f64()
    );
}

/// Run by `cargo bench` (`scripts/bench-argo`, which adds the bench's fake nodes), not `cargo test`.
fn benching() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The same canary Rollout for both controllers but for `api_version`; the image is the only
/// container field, so the image change can replace the containers list (merge patch). Pinned to
/// the bench's own fake nodes when `on_bench_nodes` (`cargo test` runs a few on the cluster's).
fn rollout(api_version: &str, name: &str, on_bench_nodes: bool) -> Value {
    let mut rollout = json!({
        "apiVersion": api_version, "kind": "Rollout",
        "metadata": {"name": name, "labels": {LABEL_KEY: LABEL_VALUE}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{"name": "web", "image": IMAGE_BEFORE}],
                    // On the bench's own fake nodes (e2e/argo/bench-nodes), tainted for it.
                    "nodeSelector": {LABEL_KEY: LABEL_VALUE},
                    "tolerations": [{"key": LABEL_KEY, "operator": "Equal",
                                     "value": LABEL_VALUE, "effect": "NoSchedule"}]
                }
            },
            "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}
        }
    });
    if !on_bench_nodes
        && let Some(pod) = rollout
            .pointer_mut("/spec/template/spec")
            .and_then(Value::as_object_mut)
    {
        pod.remove("nodeSelector");
    }
    rollout
}

/// `status.phase` of every bench Rollout of the namespace, kept by a watch (label-selected), with a
/// wake-up for the one waiter on each change.
struct Phases {
    by_name: Mutex<HashMap<String, String>>,
    changed: Notify,
    /// Watch errors so far and the last one, reported when a phase is not reached.
    watch_errors: Mutex<(usize, String)>,
}

impl Phases {
    fn track(api: Api<DynamicObject>) -> Arc<Self> {
        let me = Arc::new(Self {
            by_name: Mutex::new(HashMap::new()),
            changed: Notify::new(),
            watch_errors: Mutex::new((0, String::new())),
        });
        let phases = Arc::clone(&me);
        tokio::spawn(async move {
            let config = watcher::Config::default().labels(&format!("{LABEL_KEY}={LABEL_VALUE}"));
            let mut events = watcher(api, config)
                .default_backoff()
                .applied_objects()
                .boxed();
            loop {
                match events.try_next().await {
                    Ok(Some(object)) => phases.record(&object),
                    Ok(None) => break,
                    // The watcher re-lists after an error (e.g. 410 Expired when the API server
                    // is busy), with backoff: count it and go on.
                    Err(e) => {
                        let mut errors = lock(&phases.watch_errors);
                        errors.0 += 1;
                        errors.1 = e.to_string();
                    }
                }
            }
        });
        me
    }

    fn record(&self, object: &DynamicObject) {
        let phase = object.data["status"]["phase"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let name = object.metadata.name.clone().unwrap_or_default();
        lock(&self.by_name).insert(name, phase);
        // One waiter: a permit stored while it counts wakes it at once when it waits again.
        self.changed.notify_one();
    }

    fn count(&self, phase: &str) -> usize {
        lock(&self.by_name).values().filter(|p| *p == phase).count()
    }

    /// Waits until `n` Rollouts are in `phase`, timing from `since`.
    async fn wait(
        &self,
        pid: u32,
        phase: &str,
        n: usize,
        since: Instant,
        timeout: Duration,
    ) -> Result<Outcome, String> {
        loop {
            let reached = self.count(phase);
            if reached == n {
                return Ok(Outcome::Reached(since.elapsed()));
            }
            if !alive(pid) {
                return Err(format!(
                    "the controller exited while {reached} of {n} Rollouts were {phase}"
                ));
            }
            if since.elapsed() >= timeout {
                let errors = lock(&self.watch_errors).clone();
                println!(
                    "phases when the wait for {phase} ended: {:?}; watch errors: {} (last: {})",
                    self.summary(),
                    errors.0,
                    errors.1
                );
                return Ok(Outcome::NotReached { reached, of: n });
            }
            // The timeout only wakes the loop to check the controller and the deadline.
            let _ = tokio::time::timeout(Duration::from_secs(1), self.changed.notified()).await;
        }
    }

    fn summary(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for phase in lock(&self.by_name).values() {
            *counts.entry(phase.clone()).or_default() += 1;
        }
        counts
    }
}

/// The guard of `mutex`, also when a panicking holder poisoned it (the map stays usable).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A controller run as a separate process against the cluster's kubeconfig, watching only the
/// bench's namespace; killed when dropped.
struct ControllerProcess {
    child: Child,
    metrics_url: String,
    ready_url: String,
    log: PathBuf,
    _cache: tempfile::TempDir,
}

impl ControllerProcess {
    fn start(
        env: &E2eEnv,
        settings: &Settings,
        controller: Controller,
        ns: &str,
    ) -> Result<Self, String> {
        let (metrics, second) = (free_local_addr(), free_local_addr());
        let cache = tempfile::tempdir().map_err(|e| format!("temporary dir: {e}"))?;
        let log = std::env::temp_dir().join(format!("{ns}.log"));
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let kubeconfig = env.get("KUBECONFIG");
        let mut command = match controller {
            Controller::Argo => {
                let bin = settings
                    .argo_bin
                    .as_ref()
                    .ok_or("ARGO_ROLLOUTS_BIN unset")?;
                let mut c = Command::new(bin);
                // Out of the cluster, on this namespace only, alone (no leader election).
                c.args([
                    "--kubeconfig",
                    kubeconfig,
                    "--namespaced",
                    "--namespace",
                    ns,
                ])
                .arg("--leader-elect=false")
                .arg(format!("--metricsPort={}", metrics.port()))
                .arg(format!("--healthzPort={}", second.port()));
                c
            }
            Controller::Sluice => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_sluice"));
                c.arg("controller")
                    .arg(format!("--namespace={ns}"))
                    .arg(format!("--metrics-addr={metrics}"))
                    .arg(format!("--webhook-addr={second}"))
                    .env("KUBECONFIG", kubeconfig)
                    .env("SLUICE_GIT_CACHE_DIR", cache.path())
                    .env("RUST_LOG", SLUICE_LOG)
                    .env_remove("POD_NAMESPACE");
                c
            }
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", controller.title()))?;
        let ready_url = match controller {
            Controller::Argo => format!("http://{second}/healthz"),
            Controller::Sluice => format!("http://{metrics}/readyz"),
        };
        Ok(Self {
            child,
            metrics_url: format!("http://{metrics}/metrics"),
            ready_url,
            log,
            _cache: cache,
        })
    }

    /// Waits until the controller answers its readiness (Sluice) or health (Argo) endpoint, so
    /// that its start-up is not counted in the first phase.
    async fn wait_ready(&self) -> Result<(), String> {
        let start = Instant::now();
        while start.elapsed() < READY_TIMEOUT {
            if matches!(http_get(&self.ready_url).await, Some((200, _))) {
                return Ok(());
            }
            if !alive(self.child.id()) {
                return Err(format!(
                    "the controller exited at start (log: {})",
                    self.log.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!(
            "{} did not answer after {} s (log: {})",
            self.ready_url,
            READY_TIMEOUT.as_secs(),
            self.log.display()
        ))
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn wait_namespace_gone(client: &Client, name: &str) -> Result<(), String> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let start = Instant::now();
    while start.elapsed() < NAMESPACE_GONE_TIMEOUT {
        match namespaces.get_opt(name).await {
            Ok(None) => {
                println!(
                    "namespace {name} deleted in {:.1} s",
                    start.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            Ok(Some(_)) => tokio::time::sleep(Duration::from_secs(1)).await,
            Err(e) => return Err(format!("reading namespace {name}: {e}")),
        }
    }
    Err(format!(
        "namespace {name} still there after {} s",
        NAMESPACE_GONE_TIMEOUT.as_secs()
    ))
}

/// The controller's own counters of its API requests and reconciles, summed over the labels that
/// matter (Argo labels its request counter per object too).
async fn print_metrics(controller: Controller, url: &str) {
    let Some((200, body)) = http_get(url).await else {
        println!("metrics: {url} did not answer");
        return;
    };
    let (requests, by, reconcile) = match controller {
        Controller::Argo => (
            "controller_clientset_k8s_request_total",
            ["verb", "status_code"],
            "rollout_reconcile",
        ),
        Controller::Sluice => (
            "sluice_kube_requests_total",
            ["method", "code"],
            "sluice_rollout_reconcile_duration_seconds",
        ),
    };
    let sums = sum_by(&body, requests, &by);
    let listed: Vec<String> = sums.iter().map(|(k, v)| format!("{k} {v:.0}")).collect();
    println!("API requests ({requests}): {}", listed.join(", "));
    let total = |suffix: &str| -> f64 {
        sum_by(&body, &format!("{reconcile}_{suffix}"), &[])
            .values()
            .sum()
    };
    let (count, sum) = (total("count"), total("sum"));
    if count > 0.0 {
        println!(
            "reconciles ({reconcile}): {count:.0}, mean duration {:.3} s",
            sum / count
        );
    }
}

/// Sums the samples of `name` in a Prometheus text exposition, grouped by the labels `by`.
fn sum_by(body: &str, name: &str, by: &[&str]) -> BTreeMap<String, f64> {
    let mut sums = BTreeMap::new();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, labels) = series.split_once('{').unwrap_or((series, ""));
        if metric != name {
            continue;
        }
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let key: Vec<&str> = by.iter().map(|l| label(labels, l)).collect();
        *sums.entry(key.join(" ")).or_default() += value;
    }
    sums
}

/// The value of label `key` in `k1="v1",k2="v2"}` (no escaped quotes in the labels read here).
fn label<'a>(labels: &'a str, key: &str) -> &'a str {
    labels
        .split(',')
        .find_map(|pair| pair.trim().strip_prefix(key)?.strip_prefix("=\""))
        .and_then(|v| v.split('"').next())
        .unwrap_or("")
}

/// Which phase's outcome a table row shows.
type PhaseOf = fn(&Figures) -> Outcome;

fn print_table(n: usize, runs: &[(Controller, Figures)]) {
    let find = |c: Controller| runs.iter().find(|(k, _)| *k == c).map(|(_, f)| f);
    let (argo, sluice) = (find(Controller::Argo), find(Controller::Sluice));
    println!("\n| N = {n} | Argo Rollouts | Sluice | Sluice / Argo |");
    println!("|---|---|---|---|");
    let mib = |f: &Figures| f.peak_rss_kib.map(|k| k as f64 / 1024.0);
    row("peak RSS", argo.and_then(mib), sluice.and_then(mib), |v| {
        format!("{v:.0} MiB")
    });
    let cpu = |f: &Figures| Some(f.cpu_seconds);
    row(
        "CPU seconds",
        argo.and_then(cpu),
        sluice.and_then(cpu),
        |v| format!("{v:.1}"),
    );
    let phases: [(&str, PhaseOf); 3] = [
        ("all Healthy from creation", |f| f.healthy),
        ("all Paused after the image change", |f| f.paused),
        ("all Degraded after the last abort", |f| f.degraded),
    ];
    for (title, outcome) in phases {
        let (a, s) = (argo.map(outcome), sluice.map(outcome));
        let cell = |o: Option<Outcome>| o.map_or("—".to_string(), Outcome::cell);
        println!(
            "| {title} | {} | {} | {} |",
            cell(a),
            cell(s),
            ratio(a.and_then(Outcome::seconds), s.and_then(Outcome::seconds))
        );
    }
    println!("(load average {} at the end)", load_average());
}

fn row(title: &str, argo: Option<f64>, sluice: Option<f64>, fmt: impl Fn(f64) -> String) {
    let cell = |v: Option<f64>| v.map_or("—".to_string(), &fmt);
    println!(
        "| {title} | {} | {} | {} |",
        cell(argo),
        cell(sluice),
        ratio(argo, sluice)
    );
}

fn ratio(argo: Option<f64>, sluice: Option<f64>) -> String {
    match (argo, sluice) {
        (Some(a), Some(s)) if a > 0.0 => format!("{:.2}×", s / a),
        _ => "—".to_string(),
    }
}
