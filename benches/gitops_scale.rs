//! `make bench`, GitOps at scale: 200 Applications of 10 objects each, every one a directory of the
//! same repository, synced by a `sluice controller` of their own on the local cluster
//! (`e2e/cluster/up`). Prints the time to converge from empty, the controller's peak RSS, the CPU it
//! uses at idle and the Git fetches it makes per poll tick.
//!
//! The controller is the release binary run as a separate process, so that RSS and CPU are its own
//! (read from `/proc`), not this harness's; it logs at the default level, as deployed.

// The GitOps e2e harness (Git repositories on the local git daemon, a namespace with its own
// controller): the bench drives the same setup the tests do.
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/proc_stats.rs"]
mod proc_stats;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{StreamExt, TryStreamExt};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use sluice::api::application::{Application, HealthStatusCode, SyncStatusCode};

use proc_stats::{alive, cpu_seconds, load_average, proc_status_kib};

use common::gitops::{
    GitRepo, GitopsHarness, config_map, deployment, health, revision, sync_status,
};

const APPS: usize = 200;
const CONFIG_MAPS_PER_APP: usize = 8;
/// A Deployment, a Service and the ConfigMaps.
const OBJECTS_PER_APP: usize = 2 + CONFIG_MAPS_PER_APP;
const POLL: Duration = Duration::from_secs(10);
const IDLE_WINDOW: Duration = Duration::from_secs(60);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(600);
/// Poll ticks are aligned on the Unix epoch and each Application's slot lies in the first quarter
/// of the tick; starting the idle window this far into a tick puts exactly one tick's fetch in
/// each interval of the window, so edge effects do not move the fetches-per-tick figure.
const WINDOW_OFFSET: Duration = Duration::from_secs(5);
/// The controller's `RUST_LOG`: its default level, as deployed, unless `SLUICE_BENCH_LOG` asks for
/// more to diagnose a run (at the cost of CPU figures that include the logging).
const LOG_FILTER: &str = "info";

#[tokio::main]
async fn main() {
    println!(
        "== GitOps at scale: {APPS} Applications × {OBJECTS_PER_APP} objects from one repository =="
    );
    let log_filter = std::env::var("SLUICE_BENCH_LOG").unwrap_or_else(|_| LOG_FILTER.to_string());
    // The figures move with whatever else runs on the machine: say how busy it was.
    println!(
        "host: {} CPUs, load average {} at start; controller RUST_LOG={log_filter}",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        load_average(),
    );
    let h = GitopsHarness::start_with("bench-gitops", &fmt_duration(POLL), &[], &log_filter).await;
    let log = std::env::temp_dir().join(format!("sluice-gitops-e2e-{}.log", h.ns.name));
    let outcome = run(&h).await;
    let pid = h.controller.child.id();
    let peak_rss = proc_status_kib(pid, "VmHWM");
    drop(h.controller);
    h.ns.delete().await;
    match outcome {
        Ok(figures) => figures.print(peak_rss),
        Err(message) => {
            eprintln!(
                "gitops_scale: {message} (controller log: {})",
                log.display()
            );
            std::process::exit(1);
        }
    }
}

struct Figures {
    converge: Duration,
    converge_cpu: f64,
    head: String,
    idle_cpu: f64,
    fetches: f64,
    ticks: f64,
}

impl Figures {
    fn print(&self, peak_rss_kib: Option<u64>) {
        let pods = APPS; // one replica per Deployment
        println!(
            "API objects: {} from Git ({APPS} Applications × 1 Deployment, 1 Service, \
             {CONFIG_MAPS_PER_APP} ConfigMaps) + {pods} Pods",
            APPS * OBJECTS_PER_APP
        );
        println!("repo poll interval: {}", fmt_duration(POLL));
        println!(
            "time to converge from empty: {:.1} s (all {APPS} Synced + Healthy at {})",
            self.converge.as_secs_f64(),
            &self.head[..7]
        );
        println!("controller CPU to converge: {:.1} s", self.converge_cpu);
        match peak_rss_kib {
            Some(kib) => println!(
                "controller peak RSS: {:.1} MiB (VmHWM)",
                kib as f64 / 1024.0
            ),
            None => println!("controller peak RSS: unknown (no VmHWM in /proc)"),
        }
        println!(
            "controller CPU at idle: {:.2} s per {} s ({:.1}% of one core)",
            self.idle_cpu,
            IDLE_WINDOW.as_secs(),
            100.0 * self.idle_cpu / IDLE_WINDOW.as_secs_f64()
        );
        println!(
            "git fetches per poll tick: {:.2} ({} fetches in {} ticks of {}, one repository)",
            self.fetches / self.ticks,
            self.fetches,
            self.ticks,
            fmt_duration(POLL)
        );
    }
}

async fn run(h: &GitopsHarness) -> Result<Figures, String> {
    let repo = GitRepo::create(&h.env, "bench-gitops");
    let files = app_files();
    let changes: Vec<(&str, Option<&str>)> = files
        .iter()
        .map(|(path, text)| (path.as_str(), Some(text.as_str())))
        .collect();
    let head = repo.commit(&format!("{APPS} applications"), &changes);
    wait_ready(h).await?;

    let pid = h.controller.child.id();
    let cpu_at_start = cpu_seconds(pid)?;
    let started = Instant::now();
    futures::stream::iter(0..APPS)
        .map(|i| {
            let (name, repo) = (app_name(i), &repo);
            async move {
                let policy = json!({"syncPolicy": {"automated": {}}});
                h.create_app(&name, repo, &format!("apps/{name}"), policy)
                    .await;
            }
        })
        .buffer_unordered(16)
        .collect::<()>()
        .await;
    wait_converged(h, &head).await?;
    let converge = started.elapsed();
    let converge_cpu = cpu_seconds(pid)? - cpu_at_start;

    sleep_until_window_start().await;
    let (cpu_before, fetches_before) = (cpu_seconds(pid)?, fetches(h).await?);
    tokio::time::sleep(IDLE_WINDOW).await;
    let (cpu_after, fetches_after) = (cpu_seconds(pid)?, fetches(h).await?);
    Ok(Figures {
        converge,
        converge_cpu,
        head,
        idle_cpu: cpu_after - cpu_before,
        fetches: fetches_after - fetches_before,
        ticks: IDLE_WINDOW.as_secs_f64() / POLL.as_secs_f64(),
    })
}

fn app_name(i: usize) -> String {
    format!("app-{i:03}")
}

/// `apps/app-NNN/`: one Deployment of one replica (pods run on the KWOK node), its Service, and
/// the ConfigMaps.
fn app_files() -> Vec<(String, String)> {
    let mut files = Vec::with_capacity(APPS * OBJECTS_PER_APP);
    for i in 0..APPS {
        let name = app_name(i);
        let dir = format!("apps/{name}");
        files.push((
            format!("{dir}/deployment.yaml"),
            deployment(&name, 1, "registry.local/web:1"),
        ));
        let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                             "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}});
        files.push((format!("{dir}/service.yaml"), service.to_string()));
        for c in 0..CONFIG_MAPS_PER_APP {
            files.push((
                format!("{dir}/config-{c}.yaml"),
                config_map(&format!("{name}-config-{c}"), &format!("value {c}")),
            ));
        }
    }
    files
}

/// Waits for the controller's `/readyz`, so that its start-up is not counted as converging.
async fn wait_ready(h: &GitopsHarness) -> Result<(), String> {
    let url = format!("{}/readyz", h.controller.metrics_url);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if matches!(common::http_get(&url).await, Some((200, _))) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("the controller was not ready after 60 s".to_string())
}

/// Watches the Applications (cheaper for the shared CPUs than listing 200 statuses in a loop) until
/// every one is Synced and Healthy at `head`.
async fn wait_converged(h: &GitopsHarness, head: &str) -> Result<(), String> {
    let mut states: BTreeMap<String, String> = BTreeMap::new();
    let converged = |a: &Application| {
        sync_status(a) == SyncStatusCode::Synced
            && health(a) == HealthStatusCode::Healthy
            && revision(a).as_deref() == Some(head)
    };
    let mut events = watcher(h.apps(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    let pid = h.controller.child.id();
    let start = Instant::now();
    loop {
        let done = states.values().filter(|s| s.is_empty()).count();
        if done == APPS {
            return Ok(());
        }
        if !alive(pid) {
            return Err(format!(
                "the controller exited while {done} of {APPS} Applications had converged"
            ));
        }
        if start.elapsed() >= CONVERGE_TIMEOUT {
            let mut pending: BTreeMap<&str, usize> = BTreeMap::new();
            for state in states.values().filter(|s| !s.is_empty()) {
                *pending.entry(state.as_str()).or_default() += 1;
            }
            return Err(format!(
                "{done} of {APPS} Applications Synced + Healthy at {head} after {} s; \
                 the others (sync/health): {pending:?}",
                CONVERGE_TIMEOUT.as_secs()
            ));
        }
        // The timeout only wakes the loop to check the controller and the deadline.
        match tokio::time::timeout(Duration::from_secs(1), events.try_next()).await {
            Ok(Ok(Some(app))) => {
                let state = if converged(&app) {
                    String::new()
                } else {
                    format!("{:?}/{:?}", sync_status(&app), health(&app))
                };
                states.insert(app.metadata.name.clone().unwrap_or_default(), state);
            }
            Ok(Ok(None)) => return Err("the Application watch ended".to_string()),
            Ok(Err(e)) => return Err(format!("watching Applications: {e}")),
            Err(_) => {}
        }
    }
}

async fn sleep_until_window_start() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let poll = POLL.as_millis();
    let into_tick = now.as_millis() % poll;
    let offset = WINDOW_OFFSET.as_millis();
    let wait = (offset + poll - into_tick) % poll;
    tokio::time::sleep(Duration::from_millis(
        u64::try_from(wait).unwrap_or_default(),
    ))
    .await;
}

async fn fetches(h: &GitopsHarness) -> Result<f64, String> {
    h.controller
        .metric_with("sluice_git_requests_total", &[("type", "fetch")])
        .await
        .ok_or_else(|| "no sluice_git_requests_total{type=\"fetch\"} in /metrics".to_string())
}

fn fmt_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}
