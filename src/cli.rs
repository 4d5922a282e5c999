//! Command-line interface of the `sluice` binary. Every controller flag is also read from the
//! environment as `SLUICE_<FLAG>` (the public contract in DESIGN.md).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use thiserror::Error;

use crate::gitops::render::{RemotePolicy, ValueFileScheme};
use crate::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "Progressive delivery for Kubernetes: GitOps sync, canary and blue-green rollouts gated by analysis, Git revert on failure"
)]
pub struct Cli {
    /// Log format on stderr (the level comes from RUST_LOG, default info).
    #[arg(long, global = true, env = "SLUICE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controllers against the cluster of KUBECONFIG (or the in-cluster config).
    // Boxed: the controller's many flags would make every `Command` as large as they are.
    Controller(Box<ControllerArgs>),
    /// Print every CRD as multi-document YAML, or write one file per kind with --out-dir.
    Crdgen(CrdgenArgs),
}

#[derive(Debug, Args)]
pub struct ControllerArgs {
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "SLUICE_METRICS_ADDR", default_value = "0.0.0.0:8090")]
    pub metrics_addr: SocketAddr,

    /// Address of the Git push webhook (POST /api/webhook).
    #[arg(long, env = "SLUICE_WEBHOOK_ADDR", default_value = "0.0.0.0:8091")]
    pub webhook_addr: SocketAddr,

    /// Accept webhook events of a provider whose secret is not configured, unverified (without
    /// it they get 403).
    #[arg(long, env = "SLUICE_WEBHOOK_INSECURE")]
    pub webhook_insecure: bool,

    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "SLUICE_NAMESPACE")]
    pub namespace: Option<String>,

    /// Elect a leader through the Lease `sluice-controller`; only the leader reconciles.
    #[arg(long, env = "SLUICE_LEADER_ELECT")]
    pub leader_elect: bool,

    /// Where Git repositories are cached [default: $XDG_CACHE_HOME/sluice, else ~/.cache/sluice].
    #[arg(long, env = "SLUICE_GIT_CACHE_DIR")]
    pub git_cache_dir: Option<PathBuf>,

    /// Author and committer of the revert commits, as `Name <email>`.
    #[arg(
        long,
        env = "SLUICE_GIT_AUTHOR",
        default_value = "Sluice <sluice@localhost>"
    )]
    pub git_author: GitAuthor,

    /// How often tracked repositories are fetched (e.g. 30s, 2m).
    #[arg(long, env = "SLUICE_REPO_POLL_INTERVAL", default_value = "60s", value_parser = parse_interval)]
    pub repo_poll_interval: Duration,

    /// Prometheus address for analysis templates that name none [env: SLUICE_PROMETHEUS_URL, PROMETHEUS_URL].
    #[arg(long, env = "SLUICE_PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,

    /// URL schemes Helm value files may be fetched with, comma-separated (http, https); by default
    /// every value file must be a file of the repository.
    #[arg(long, env = "SLUICE_HELM_VALUE_SCHEMES", value_delimiter = ',')]
    pub helm_value_schemes: Vec<ValueFileScheme>,

    /// Let Kustomize load remote resources, bases and components (URLs, `github.com/org/repo`
    /// targets); by default every one must be a path of the repository.
    #[arg(long, env = "SLUICE_KUSTOMIZE_REMOTE")]
    pub kustomize_remote: bool,

    /// Sync as the ServiceAccount the Application's project names for the destination
    /// (`destinationServiceAccounts`, Kubernetes impersonation): dry run, apply, prune and cascade
    /// delete are then authorized by that account's RBAC, and a project naming none fails its
    /// syncs. Off: syncs write as the controller.
    #[arg(long, env = "SLUICE_SYNC_IMPERSONATION")]
    pub sync_impersonation: bool,

    /// Rollouts reconciled at the same time (Argo Rollouts' `--rollout-threads`); more are queued,
    /// each Rollout at most once.
    #[arg(long, env = "SLUICE_ROLLOUT_WORKERS", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub rollout_workers: u16,

    #[command(flatten)]
    pub git_limits: GitLimitArgs,
}

/// Bounds on what a Git server or a repository may cost (hostile or broken ones included).
#[derive(Debug, Args)]
pub struct GitLimitArgs {
    /// Give up connecting to a Git server after this long.
    #[arg(long, env = "SLUICE_GIT_CONNECT_TIMEOUT", default_value = "15s", value_parser = parse_interval)]
    pub git_connect_timeout: Duration,

    /// Fail a Git request when the server sends (or accepts) nothing for this long.
    #[arg(long, env = "SLUICE_GIT_TIMEOUT", default_value = "60s", value_parser = parse_interval)]
    pub git_timeout: Duration,

    /// Stop a fetch that is not done after this long, however steadily the server sends.
    #[arg(long, env = "SLUICE_GIT_FETCH_TIMEOUT", default_value = "5m", value_parser = parse_interval)]
    pub git_fetch_timeout: Duration,

    /// Stop a fetch that receives more than this (e.g. 512Mi, 2Gi).
    #[arg(long, env = "SLUICE_GIT_MAX_FETCH_BYTES", default_value = "512Mi", value_parser = parse_bytes)]
    pub git_max_fetch_bytes: u64,

    /// Stop a fetch that receives more objects than this.
    #[arg(long, env = "SLUICE_GIT_MAX_FETCH_OBJECTS", default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub git_max_fetch_objects: u64,

    /// Refuse a commit whose tree holds more files and directories than this.
    #[arg(long, env = "SLUICE_GIT_MAX_TREE_FILES", default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub git_max_tree_files: u64,

    /// Refuse a commit whose files hold more bytes than this (e.g. 256Mi).
    #[arg(long, env = "SLUICE_GIT_MAX_TREE_BYTES", default_value = "256Mi", value_parser = parse_bytes)]
    pub git_max_tree_bytes: u64,

    /// Accept plain http:// repository URLs (unencrypted, unauthenticated server).
    #[arg(long, env = "SLUICE_GIT_ALLOW_INSECURE_HTTP")]
    pub git_allow_insecure_http: bool,
}

impl GitLimitArgs {
    /// The limits the Git cache runs with; trees unused for three poll intervals (at least an
    /// hour) are removed.
    pub fn limits(&self, poll_interval: Duration) -> crate::gitops::source::GitLimits {
        let defaults = crate::gitops::source::GitLimits::default();
        crate::gitops::source::GitLimits {
            connect_timeout: self.git_connect_timeout,
            server_timeout: self.git_timeout,
            fetch_timeout: self.git_fetch_timeout,
            max_fetch_bytes: self.git_max_fetch_bytes,
            max_fetch_objects: self.git_max_fetch_objects,
            max_tree_files: self.git_max_tree_files,
            max_tree_bytes: self.git_max_tree_bytes,
            allow_insecure_http: self.git_allow_insecure_http,
            fetch_wait: defaults.fetch_wait.min(self.git_fetch_timeout),
            tree_ttl: defaults.tree_ttl.max(poll_interval.saturating_mul(3)),
        }
    }
}

/// A byte count: a whole number, optionally with a binary suffix `Ki`, `Mi` or `Gi`; at least 1.
fn parse_bytes(input: &str) -> Result<u64, String> {
    let (digits, unit) = match input.trim().find(|c: char| !c.is_ascii_digit()) {
        Some(at) => input.trim().split_at(at),
        None => (input.trim(), ""),
    };
    let factor: u64 = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return Err(format!("unknown unit {unit:?}: use Ki, Mi or Gi")),
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| "expected a whole number of bytes, e.g. 512Mi".to_string())?;
    match number.checked_mul(factor) {
        Some(0) => Err("must be greater than zero".to_string()),
        Some(bytes) => Ok(bytes),
        None => Err("too large".to_string()),
    }
}

impl ControllerArgs {
    /// The Git cache directory, with the documented fallbacks applied.
    pub fn git_cache_dir(&self) -> PathBuf {
        self.git_cache_dir.clone().unwrap_or_else(|| {
            default_cache_dir(
                std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from),
                std::env::var_os("HOME").map(PathBuf::from),
            )
        })
    }

    /// What renders may fetch from outside their repository.
    pub fn render_remote_policy(&self) -> RemotePolicy {
        RemotePolicy {
            helm_value_schemes: self.helm_value_schemes.clone(),
            kustomize_remote: self.kustomize_remote,
        }
    }

    /// The Prometheus address: the flag, else `PROMETHEUS_URL`.
    pub fn prometheus_url(&self) -> Option<String> {
        self.prometheus_url
            .clone()
            .or_else(|| std::env::var("PROMETHEUS_URL").ok())
            .filter(|url| !url.is_empty())
    }
}

#[derive(Debug, Args)]
pub struct CrdgenArgs {
    /// Write one `<kind>.yaml` per CRD into this directory instead of printing the stream.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

fn default_cache_dir(xdg_cache_home: Option<PathBuf>, home: Option<PathBuf>) -> PathBuf {
    let base = xdg_cache_home
        .filter(|p| p.is_absolute())
        .or_else(|| home.map(|h| h.join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("sluice")
}

fn parse_interval(input: &str) -> Result<Duration, String> {
    match crate::duration::parse_duration(input) {
        Ok(d) if d.is_zero() => Err("must be greater than zero".to_string()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// A Git identity written as `Name <email>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitAuthor {
    pub name: String,
    pub email: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid Git author {0:?}: expected `Name <email>`")]
pub struct GitAuthorError(String);

impl FromStr for GitAuthor {
    type Err = GitAuthorError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = || GitAuthorError(input.to_string());
        let (name, rest) = input.split_once('<').ok_or_else(err)?;
        let email = rest.strip_suffix('>').ok_or_else(err)?.trim();
        let name = name.trim();
        if name.is_empty() || email.is_empty() || email.contains(['<', '>']) {
            return Err(err());
        }
        Ok(Self {
            name: name.to_string(),
            email: email.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn controller_runs_with_no_flags_and_documented_defaults() {
        let cli = Cli::try_parse_from(["sluice", "controller"]).unwrap();
        let Command::Controller(args) = cli.command else {
            panic!("expected the controller command");
        };
        assert_eq!(args.metrics_addr, "0.0.0.0:8090".parse().unwrap());
        assert_eq!(args.webhook_addr, "0.0.0.0:8091".parse().unwrap());
        assert_eq!(args.repo_poll_interval, Duration::from_secs(60));
        assert_eq!(
            args.git_author,
            GitAuthor {
                name: "Sluice".into(),
                email: "sluice@localhost".into()
            }
        );
        assert!(!args.leader_elect);
        assert_eq!(args.namespace, None);
        let limits = args.git_limits.limits(args.repo_poll_interval);
        assert_eq!(
            limits,
            crate::gitops::source::GitLimits::default(),
            "the flags' defaults are the library's"
        );
        assert_eq!(args.render_remote_policy(), RemotePolicy::default());
        assert!(!args.sync_impersonation, "off unless asked for");
    }

    #[test]
    fn sync_impersonation_is_a_flag() {
        let cli = Cli::try_parse_from(["sluice", "controller", "--sync-impersonation"]).unwrap();
        let Command::Controller(args) = cli.command else {
            panic!("expected the controller command");
        };
        assert!(args.sync_impersonation);
    }

    #[test]
    fn remote_render_sources_are_allowed_only_by_flag() {
        let cli = Cli::try_parse_from([
            "sluice",
            "controller",
            "--helm-value-schemes=https,HTTP",
            "--kustomize-remote",
        ])
        .unwrap();
        let Command::Controller(args) = cli.command else {
            panic!("expected the controller command");
        };
        assert_eq!(
            args.render_remote_policy(),
            RemotePolicy {
                helm_value_schemes: vec![ValueFileScheme::Https, ValueFileScheme::Http],
                kustomize_remote: true,
            }
        );
        for bad in [
            "--helm-value-schemes=file",
            "--helm-value-schemes=https,oci",
        ] {
            let err = Cli::try_parse_from(["sluice", "controller", bad]).unwrap_err();
            assert!(err.to_string().contains("invalid value"), "{bad}: {err}");
        }
    }

    #[test]
    fn git_limit_flags() {
        let cli = Cli::try_parse_from([
            "sluice",
            "controller",
            "--git-timeout=5s",
            "--git-connect-timeout=2s",
            "--git-max-fetch-bytes=1Gi",
            "--git-max-tree-files=10",
            "--git-allow-insecure-http",
        ])
        .unwrap();
        let Command::Controller(args) = cli.command else {
            panic!("expected the controller command");
        };
        let limits = args.git_limits.limits(Duration::from_secs(7200));
        assert_eq!(limits.server_timeout, Duration::from_secs(5));
        assert_eq!(limits.connect_timeout, Duration::from_secs(2));
        assert_eq!(limits.max_fetch_bytes, 1 << 30);
        assert_eq!(limits.max_tree_files, 10);
        assert!(limits.allow_insecure_http);
        assert_eq!(limits.tree_ttl, Duration::from_secs(6 * 3600));
        for bad in [
            "--git-max-fetch-bytes=0",
            "--git-max-fetch-bytes=12MB",
            "--git-max-tree-files=0",
            "--git-timeout=0s",
        ] {
            let err = Cli::try_parse_from(["sluice", "controller", bad]).unwrap_err();
            assert!(err.to_string().contains("invalid value"), "{bad}: {err}");
        }
        assert_eq!(parse_bytes("512Mi"), Ok(512 << 20));
        assert_eq!(parse_bytes("3Ki"), Ok(3072));
        assert_eq!(parse_bytes("100"), Ok(100));
    }

    #[test]
    fn flags_override_defaults() {
        let cli = Cli::try_parse_from([
            "sluice",
            "controller",
            "--metrics-addr=127.0.0.1:9000",
            "--repo-poll-interval=2m",
            "--namespace=team-a",
            "--leader-elect",
            "--git-author=Release Bot <bot@example.org>",
        ])
        .unwrap();
        let Command::Controller(args) = cli.command else {
            panic!("expected the controller command");
        };
        assert_eq!(args.metrics_addr, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(args.repo_poll_interval, Duration::from_secs(120));
        assert_eq!(args.namespace.as_deref(), Some("team-a"));
        assert!(args.leader_elect);
        assert_eq!(args.git_author.name, "Release Bot");
        assert_eq!(args.git_author.email, "bot@example.org");
    }

    #[test]
    fn bad_flag_values_are_refused_with_a_clear_message() {
        for bad in [
            "--repo-poll-interval=0s",
            "--repo-poll-interval=soon",
            "--git-author=nobody",
            "--metrics-addr=localhost",
        ] {
            let err = Cli::try_parse_from(["sluice", "controller", bad]).unwrap_err();
            assert!(err.to_string().contains("invalid value"), "{bad}: {err}");
        }
    }

    #[test]
    fn git_author_parsing() {
        assert_eq!(
            "A B <a@b>".parse(),
            Ok(GitAuthor {
                name: "A B".into(),
                email: "a@b".into()
            })
        );
        for bad in ["", "<a@b>", "A <>", "A a@b", "A <a@b", "A <<a@b>"] {
            assert!(bad.parse::<GitAuthor>().is_err(), "{bad}");
        }
    }

    #[test]
    fn cache_dir_fallbacks() {
        assert_eq!(
            default_cache_dir(Some("/xdg".into()), Some("/home/u".into())),
            PathBuf::from("/xdg/sluice")
        );
        assert_eq!(
            default_cache_dir(None, Some("/home/u".into())),
            PathBuf::from("/home/u/.cache/sluice")
        );
        // A relative XDG_CACHE_HOME is invalid per the XDG spec and ignored.
        assert_eq!(
            default_cache_dir(Some("rel".into()), Some("/home/u".into())),
            PathBuf::from("/home/u/.cache/sluice")
        );
    }
}
