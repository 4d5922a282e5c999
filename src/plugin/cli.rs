//! The command line of `kubectl sluice`: kubectl's connection flags (`--kubeconfig`, `--context`,
//! `-n`) on every command, Argo Rollouts' command names, and Argo CD's `app` and `proj` verbs.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "kubectl-sluice",
    bin_name = "kubectl sluice",
    version,
    about = "Drive Sluice rollouts and applications from kubectl",
    after_help = "Exit codes: 0 success; 1 Degraded (status) or problems found (lint); 2 timed out (status); 3 any error."
)]
pub struct PluginCli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: PluginCommand,
}

/// The flags kubectl users expect on every command.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// Path to the kubeconfig file [default: $KUBECONFIG, else ~/.kube/config, else in-cluster].
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// The kubeconfig context to use [default: the current context].
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,

    /// Namespace [default: the context's namespace, else `default`].
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Never colour the output (colours are only used on a terminal anyway; NO_COLOR is honoured).
    #[arg(long, global = true)]
    pub no_color: bool,
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Show a Rollout as a tree: revisions, ReplicaSets, pods and analysis runs.
    #[command(subcommand)]
    Get(GetCommand),
    /// List Rollouts.
    #[command(subcommand)]
    List(ListCommand),
    /// Promote a paused Rollout one step, or fully with --full.
    Promote(PromoteArgs),
    /// Abort the update in progress: traffic goes back to the stable revision at once.
    Abort(AbortArgs),
    /// Retry an aborted update from its first step.
    Retry(NameArg),
    /// Pause a Rollout (spec.paused).
    Pause(NameArg),
    /// Resume a Rollout paused with `pause`.
    Resume(NameArg),
    /// Roll back to the pod template of an earlier revision.
    Undo(UndoArgs),
    /// Restart the pods of a Rollout (spec.restartAt = now).
    Restart(NameArg),
    /// Change a container's image.
    #[command(subcommand)]
    Set(SetCommand),
    /// Wait until a Rollout is Healthy (exit 0) or Degraded (exit 1); exit 2 on timeout.
    Status(StatusArgs),
    /// Check Rollout and AnalysisTemplate manifests offline.
    Lint(LintArgs),
    /// Applications: list, get, sync, diff, history, rollback.
    #[command(subcommand)]
    App(AppCommand),
    /// AppProjects: list, get (what each allows, which Applications use it).
    ///
    /// Projects live in the controller's control namespace: select it with -n (else the context's
    /// namespace). Their Applications are read in all namespaces, or in that one only when you may
    /// not list them all.
    #[command(subcommand)]
    Proj(ProjCommand),
    /// Serve a live web dashboard of Applications, Rollouts and their Events on 127.0.0.1.
    Dashboard(DashboardArgs),
    /// Print a shell completion script.
    Completion(CompletionArgs),
    /// Print the plugin version.
    Version,
}

#[derive(Debug, Subcommand)]
pub enum GetCommand {
    /// A Rollout with its revisions, ReplicaSets, pods and analysis runs.
    #[command(visible_aliases = ["ro", "rollouts"])]
    Rollout(GetRolloutArgs),
    /// An Experiment with its templates' ReplicaSets and its analysis runs.
    #[command(visible_aliases = ["exp", "experiments"])]
    Experiment(GetExperimentArgs),
}

#[derive(Debug, Args)]
pub struct GetExperimentArgs {
    /// Name of the Experiment.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct GetRolloutArgs {
    /// Name of the Rollout.
    pub name: String,
    /// Redraw the tree whenever the Rollout or what it owns changes.
    #[arg(short, long)]
    pub watch: bool,
}

#[derive(Debug, Subcommand)]
pub enum ListCommand {
    /// The Rollouts of the namespace (or of all namespaces with -A).
    #[command(visible_aliases = ["ro", "rollout"])]
    Rollouts(ListArgs),
}

#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Port on 127.0.0.1 (0: any free port; the URL is printed).
    #[arg(long, default_value_t = 3100)]
    pub port: u16,
    /// Show every namespace instead of one.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// List across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

/// Commands that take just the name of a Rollout.
#[derive(Debug, Args)]
pub struct NameArg {
    /// Name of the Rollout.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// Name of the Rollout.
    pub name: String,
    /// Skip the remaining steps, pauses and analysis.
    #[arg(long)]
    pub full: bool,
}

#[derive(Debug, Args)]
pub struct AbortArgs {
    /// Name of the Rollout.
    pub name: String,
    /// Also revert, in Git, the commit that introduced the aborted revision.
    #[arg(long)]
    pub revert: bool,
}

#[derive(Debug, Args)]
pub struct UndoArgs {
    /// Name of the Rollout.
    pub name: String,
    /// The revision to go back to [default: the one before the current revision].
    #[arg(long, value_name = "N")]
    pub to_revision: Option<i64>,
}

#[derive(Debug, Subcommand)]
pub enum SetCommand {
    /// Set a container's image: `set image NAME CONTAINER=IMAGE` (`*=IMAGE` for every container).
    Image(SetImageArgs),
}

#[derive(Debug, Args)]
pub struct SetImageArgs {
    /// Name of the Rollout.
    pub name: String,
    /// `CONTAINER=IMAGE`.
    #[arg(value_parser = parse_container_image, value_name = "CONTAINER=IMAGE")]
    pub container_image: ContainerImage,
}

/// A `CONTAINER=IMAGE` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerImage {
    /// A container name, or `*` for every container.
    pub container: String,
    pub image: String,
}

/// Parses `CONTAINER=IMAGE`; both sides must be non-empty.
pub fn parse_container_image(value: &str) -> Result<ContainerImage, String> {
    match value.split_once('=') {
        Some((container, image)) if !container.trim().is_empty() && !image.trim().is_empty() => {
            Ok(ContainerImage {
                container: container.trim().to_string(),
                image: image.trim().to_string(),
            })
        }
        _ => Err(format!(
            "expected CONTAINER=IMAGE (e.g. web=registry.example.com/web:1.2), got {value:?}"
        )),
    }
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Name of the Rollout.
    pub name: String,
    /// Give up after this long (e.g. 30s, 5m, 1h) with exit code 2 [default: wait forever].
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub timeout: Option<Duration>,
}

fn parse_timeout(value: &str) -> Result<Duration, String> {
    crate::duration::parse_duration(value).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct LintArgs {
    /// The manifest file (YAML, several documents allowed).
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// List Applications.
    List(ListArgs),
    /// Show an Application: sync, health, revision and its resources.
    Get(AppNameArg),
    /// Request a sync of an Application.
    Sync(AppSyncArgs),
    /// Show what a sync would change (Git vs live), as a unified diff.
    Diff(AppNameArg),
    /// Show the sync history of an Application.
    History(AppNameArg),
    /// Sync an Application back to the revision of a history entry.
    Rollback(AppRollbackArgs),
    /// Wait until an Application is synced, healthy and has no operation in progress.
    Wait(AppWaitArgs),
    /// Create an Application from flags, or from a manifest file (Argo CD's apiVersion is accepted).
    Create(AppCreateArgs),
    /// Change an Application's source, destination, project or sync policy.
    Set(AppSetArgs),
    /// Delete an Application; with --cascade (the default) what it deployed is deleted with it.
    Delete(AppDeleteArgs),
    /// Stop the sync in progress (it ends Failed, "Operation terminated"; running hooks are deleted).
    TerminateOp(AppNameArg),
}

#[derive(Debug, Args)]
pub struct AppWaitArgs {
    /// Name of the Application.
    pub name: String,
    /// Wait for health Healthy (exit 1 as soon as it is Degraded).
    #[arg(long)]
    pub health: bool,
    /// Wait for sync status Synced.
    #[arg(long)]
    pub sync: bool,
    /// Wait until no operation is in progress.
    #[arg(long)]
    pub operation: bool,
    /// Give up after this long, with exit code 2.
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout, default_value = "5m")]
    pub timeout: Duration,
}

/// The source, destination and policy flags `app create` and `app set` share.
#[derive(Debug, Default, Args)]
pub struct AppSpecFlags {
    /// The Git repository (or chart repository) URL.
    #[arg(long = "repo", value_name = "URL")]
    pub repo: Option<String>,
    /// The directory of the repository holding the manifests.
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
    /// A Helm chart of the chart repository given by --repo.
    #[arg(long, value_name = "CHART")]
    pub chart: Option<String>,
    /// The branch, tag, commit (or chart version) to follow.
    #[arg(long, value_name = "REVISION")]
    pub revision: Option<String>,
    /// The namespace the objects go to.
    #[arg(long = "dest-namespace", value_name = "NAMESPACE")]
    pub dest_namespace: Option<String>,
    /// The cluster the objects go to (only the cluster Sluice runs in).
    #[arg(long = "dest-server", value_name = "URL")]
    pub dest_server: Option<String>,
    /// The AppProject.
    #[arg(long, value_name = "PROJECT")]
    pub project: Option<String>,
    /// `automated` (sync on every change) or `none` (sync on request).
    #[arg(long = "sync-policy", value_name = "POLICY", value_parser = ["automated", "none", "manual"])]
    pub sync_policy: Option<String>,
    /// With --sync-policy automated: delete objects no longer in Git.
    #[arg(long = "auto-prune")]
    pub auto_prune: bool,
    /// With --sync-policy automated: undo changes made to live objects.
    #[arg(long = "self-heal")]
    pub self_heal: bool,
    /// A Helm parameter NAME=VALUE (repeatable).
    #[arg(short = 'p', long = "helm-set", value_name = "NAME=VALUE")]
    pub helm_set: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AppCreateArgs {
    /// Name of the Application (not with -f).
    pub name: Option<String>,
    /// A manifest file of one Application.
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        conflicts_with = "name"
    )]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub spec: AppSpecFlags,
}

#[derive(Debug, Args)]
pub struct AppSetArgs {
    /// Name of the Application.
    pub name: String,
    #[command(flatten)]
    pub spec: AppSpecFlags,
}

#[derive(Debug, Args)]
pub struct AppDeleteArgs {
    /// Name of the Application.
    pub name: String,
    /// Delete the objects the Application deployed with it (`--cascade=false` leaves them).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub cascade: bool,
    #[command(flatten)]
    pub wait: OperationWait,
}

#[derive(Debug, Subcommand)]
pub enum ProjCommand {
    /// List AppProjects: repositories, destinations, cluster kinds and how many Applications use each.
    List,
    /// Show what an AppProject allows and denies, and the Applications that use it.
    Get(ProjNameArg),
}

#[derive(Debug, Args)]
pub struct ProjNameArg {
    /// Name of the AppProject.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct AppNameArg {
    /// Name of the Application.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct AppSyncArgs {
    /// Name of the Application.
    pub name: String,
    /// Also delete live objects that are no longer in Git.
    #[arg(long)]
    pub prune: bool,
    /// Sync this branch, tag or commit instead of `targetRevision`.
    #[arg(long, value_name = "REVISION")]
    pub revision: Option<String>,
    /// Sync only this object (repeatable): `GROUP:KIND:NAME` or `GROUP:KIND:NAMESPACE/NAME`, the
    /// group empty for the core group (`:ConfigMap:settings`). No hooks run.
    #[arg(long = "resource", value_name = "GROUP:KIND:NAME", value_parser = parse_sync_resource)]
    pub resources: Vec<crate::api::application::SyncOperationResource>,
    /// Check what would be applied and pruned (server-side dry runs) without changing anything.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub wait: OperationWait,
}

/// Argo CD's `--resource` form: `GROUP:KIND:NAME` or `GROUP:KIND:NAMESPACE/NAME`.
fn parse_sync_resource(
    value: &str,
) -> Result<crate::api::application::SyncOperationResource, String> {
    let invalid = || format!("{value:?}: expected GROUP:KIND:NAME or GROUP:KIND:NAMESPACE/NAME");
    let mut parts = value.splitn(3, ':');
    let (Some(group), Some(kind), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid());
    };
    let (namespace, name) = rest.split_once('/').unwrap_or(("", rest));
    if kind.is_empty() || name.is_empty() || name.contains('/') {
        return Err(invalid());
    }
    Ok(crate::api::application::SyncOperationResource {
        group: group.to_string(),
        kind: kind.to_string(),
        name: name.to_string(),
        namespace: namespace.to_string(),
    })
}

#[derive(Debug, Args)]
pub struct AppRollbackArgs {
    /// Name of the Application.
    pub name: String,
    /// The history id to go back to (see `app history`).
    pub id: i64,
    #[command(flatten)]
    pub wait: OperationWait,
}

/// How long `app sync` / `app rollback` wait for the controller to carry the operation out.
#[derive(Debug, Clone, Copy, Args)]
pub struct OperationWait {
    /// Return as soon as the operation is requested, without waiting for its outcome.
    #[arg(long = "async")]
    pub no_wait: bool,
    /// Give up waiting after this long, with exit code 2.
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout, default_value = "5m")]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell to generate the script for.
    pub shell: CompletionShell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<PluginCli, clap::Error> {
        PluginCli::try_parse_from(std::iter::once("kubectl-sluice").chain(args.iter().copied()))
    }

    #[test]
    fn sync_resources_are_argo_cds_group_kind_namespace_name() {
        let parsed = parse_sync_resource("apps:Deployment:shop/web").unwrap();
        assert_eq!(
            (
                parsed.group.as_str(),
                parsed.kind.as_str(),
                parsed.namespace.as_str(),
                parsed.name.as_str()
            ),
            ("apps", "Deployment", "shop", "web")
        );
        let core = parse_sync_resource(":ConfigMap:settings").unwrap();
        assert_eq!((core.group.as_str(), core.namespace.as_str()), ("", ""));
        for bad in [
            "Deployment:web",
            "apps::web",
            "apps:Deployment:",
            "a:B:c/d/e",
        ] {
            assert!(parse_sync_resource(bad).is_err(), "{bad}");
        }
        let cli = parse(&[
            "app",
            "sync",
            "shop",
            "--dry-run",
            "--resource",
            ":ConfigMap:a",
            "--resource",
            "apps:Deployment:web",
        ]);
        assert!(cli.is_ok(), "{cli:?}");
    }

    #[test]
    fn cli_definition_is_consistent() {
        PluginCli::command().debug_assert();
    }

    #[test]
    fn connection_flags_are_accepted_anywhere_like_kubectl() {
        let cli = parse(&[
            "promote",
            "web",
            "-n",
            "shop",
            "--context",
            "kind",
            "--kubeconfig",
            "/tmp/kc",
            "--no-color",
        ])
        .unwrap();
        assert_eq!(cli.global.namespace.as_deref(), Some("shop"));
        assert_eq!(cli.global.context.as_deref(), Some("kind"));
        assert_eq!(cli.global.kubeconfig, Some(PathBuf::from("/tmp/kc")));
        assert!(cli.global.no_color);
        let before = parse(&["-n", "shop", "status", "web"]).unwrap();
        assert_eq!(before.global.namespace.as_deref(), Some("shop"));
    }

    #[test]
    fn status_timeout_takes_durations_with_units() {
        let cases = [("10s", 10), ("2m", 120), ("1h", 3600)];
        for (text, secs) in cases {
            let cli = parse(&["status", "web", "--timeout", text]).unwrap();
            let PluginCommand::Status(args) = cli.command else {
                panic!("not status");
            };
            assert_eq!(args.timeout, Some(Duration::from_secs(secs)), "{text}");
        }
        let err = parse(&["status", "web", "--timeout", "30"]).unwrap_err();
        assert!(err.to_string().contains("missing unit"), "{err}");
        let none = parse(&["status", "web"]).unwrap();
        let PluginCommand::Status(args) = none.command else {
            panic!("not status");
        };
        assert_eq!(args.timeout, None);
    }

    #[test]
    fn set_image_parses_container_equals_image() {
        assert_eq!(
            parse_container_image("web=example/web:2.0"),
            Ok(ContainerImage {
                container: "web".to_string(),
                image: "example/web:2.0".to_string()
            })
        );
        assert_eq!(
            parse_container_image("*=example/web:2.0").map(|c| c.container),
            Ok("*".to_string())
        );
        for bad in ["web", "=img", "web=", ""] {
            let err = parse_container_image(bad).unwrap_err();
            assert!(err.contains("CONTAINER=IMAGE"), "{bad}: {err}");
        }
    }

    #[test]
    fn argo_aliases_and_flags_parse() {
        let cli = parse(&["get", "ro", "web", "-w"]).unwrap();
        let PluginCommand::Get(GetCommand::Rollout(args)) = cli.command else {
            panic!("not get rollout");
        };
        assert!(args.watch);
        let cli = parse(&["list", "rollouts", "-A"]).unwrap();
        let PluginCommand::List(ListCommand::Rollouts(args)) = cli.command else {
            panic!("not list");
        };
        assert!(args.all_namespaces);
        let cli = parse(&["undo", "web", "--to-revision", "3"]).unwrap();
        let PluginCommand::Undo(args) = cli.command else {
            panic!("not undo");
        };
        assert_eq!(args.to_revision, Some(3));
        let cli = parse(&["lint", "-f", "rollout.yaml"]).unwrap();
        let PluginCommand::Lint(args) = cli.command else {
            panic!("not lint");
        };
        assert_eq!(args.file, PathBuf::from("rollout.yaml"));
        let cli = parse(&["app", "rollback", "shop", "4"]).unwrap();
        let PluginCommand::App(AppCommand::Rollback(args)) = cli.command else {
            panic!("not app rollback");
        };
        assert_eq!((args.name.as_str(), args.id), ("shop", 4));
        let cli = parse(&["proj", "get", "team-a", "-n", "sluice"]).unwrap();
        let PluginCommand::Proj(ProjCommand::Get(args)) = cli.command else {
            panic!("not proj get");
        };
        assert_eq!(args.name, "team-a");
        assert_eq!(cli.global.namespace.as_deref(), Some("sluice"));
        let cli = parse(&["proj", "list"]).unwrap();
        assert!(matches!(
            cli.command,
            PluginCommand::Proj(ProjCommand::List)
        ));
        assert!(parse(&["proj", "get"]).is_err());
    }
}
