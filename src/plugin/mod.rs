//! `kubectl sluice ...`: the kubectl plugin (binary `kubectl-sluice`).
//!
//! Commands mirror Argo Rollouts' plugin (`get rollout`, `promote`, `abort`, `status`, ...) and
//! Argo CD's `app` and `proj` verbs, on the user's kubeconfig, context and namespace. The control
//! actions write the fields of the public contract (DESIGN.md "control actions"). Pure parts
//! (patches, tree, list, lint, status verdicts) are separate from the client code so they are
//! tested without a cluster.
//!
//! Exit codes: 0 success, 1 Degraded (`status`) or problems found (`lint`), 2 timeout (`status`),
//! 3 any error, printed as one line on stderr.

pub mod actions;
pub mod app;
pub mod cli;
pub mod client;
pub mod completion;
pub mod control;
pub mod dashboard;
pub mod error;
pub mod experiment;
pub mod get;
pub mod info;
pub mod lint;
pub mod list;
pub mod proj;
pub mod status;
pub mod style;
pub mod table;
pub mod tree;
pub mod undo;

use std::io::{IsTerminal, Write};

use kube::Api;
use kube::api::ListParams;

use crate::api::rollout::Rollout;
use cli::{GetCommand, ListCommand, SetCommand};
pub use cli::{PluginCli, PluginCommand};
use client::Kube;
pub use error::{EXIT_DEGRADED, EXIT_ERROR, EXIT_OK, EXIT_TIMEOUT, PluginError};
use style::Style;

/// Runs a parsed command to completion on a fresh runtime and returns the process exit code; an
/// error is printed on stderr as one line.
pub fn main(cli: PluginCli) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return EXIT_ERROR;
        }
    };
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    match runtime.block_on(run(cli, &mut out, &mut err)) {
        Ok(code) => code,
        Err(e) => {
            let _ = out.flush();
            eprintln!("error: {}", e.one_line());
            EXIT_ERROR
        }
    }
}

/// Runs a parsed command, writing its output to `out` (and progress notes to `err`); returns the
/// exit code.
pub async fn run(
    cli: PluginCli,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, PluginError> {
    let PluginCli { global, command } = cli;
    let style = Style::detect(global.no_color);
    match command {
        PluginCommand::Version => {
            writeln!(out, "kubectl-sluice {}", crate::VERSION)?;
            Ok(EXIT_OK)
        }
        PluginCommand::Completion(args) => {
            completion::write_completion(args.shell, out);
            Ok(EXIT_OK)
        }
        PluginCommand::Lint(args) => lint_file(&args.file, out),
        command => {
            let kube = Kube::connect(&global).await?;
            run_on_cluster(&kube, command, style, out, err).await
        }
    }
}

async fn run_on_cluster(
    kube: &Kube,
    command: PluginCommand,
    style: Style,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, PluginError> {
    match command {
        PluginCommand::Get(GetCommand::Rollout(args)) => {
            let display = get::Display {
                style,
                redraw: std::io::stdout().is_terminal(),
            };
            if args.watch {
                get::watch_rollout(kube, &args.name, display, out).await
            } else {
                get::get_rollout(kube, &args.name, display, out).await
            }
        }
        PluginCommand::Get(GetCommand::Experiment(args)) => {
            experiment::get_experiment(kube, &args.name, style, out).await
        }
        PluginCommand::List(ListCommand::Rollouts(args)) => {
            list_rollouts(kube, args.all_namespaces, style, out).await
        }
        PluginCommand::Promote(args) => control::promote(kube, &args, out).await,
        PluginCommand::Abort(args) => control::abort(kube, &args, out).await,
        PluginCommand::Retry(args) => {
            control::simple(kube, &args.name, actions::retry(), "retried", out).await
        }
        PluginCommand::Pause(args) => {
            control::simple(kube, &args.name, actions::pause(), "paused", out).await
        }
        PluginCommand::Resume(args) => {
            control::simple(kube, &args.name, actions::resume(), "resumed", out).await
        }
        PluginCommand::Undo(args) => control::undo(kube, &args, out).await,
        PluginCommand::Restart(args) => control::restart(kube, &args.name, out).await,
        PluginCommand::Set(SetCommand::Image(args)) => control::set_image(kube, &args, out).await,
        PluginCommand::Status(args) => status::wait(kube, &args.name, args.timeout, out, err).await,
        PluginCommand::App(command) => app::run(kube, command, style, out, err).await,
        PluginCommand::Proj(command) => proj::run(kube, command, style, out, err).await,
        PluginCommand::Dashboard(args) => dashboard::serve(kube, &args, out).await,
        PluginCommand::Version | PluginCommand::Completion(_) | PluginCommand::Lint(_) => {
            Ok(EXIT_OK)
        }
    }
}

async fn list_rollouts(
    kube: &Kube,
    all_namespaces: bool,
    style: Style,
    out: &mut dyn Write,
) -> Result<u8, PluginError> {
    let api: Api<Rollout> = if all_namespaces {
        Api::all(kube.client.clone())
    } else {
        kube.rollouts()
    };
    let rollouts = api
        .list(&ListParams::default())
        .await
        .map_err(|e| kube.error(e, "Rollout", "", "list Rollouts"))?;
    out.write_all(list::render_rollout_list(&rollouts.items, all_namespaces, style).as_bytes())?;
    Ok(EXIT_OK)
}

fn lint_file(path: &std::path::Path, out: &mut dyn Write) -> Result<u8, PluginError> {
    let text = std::fs::read_to_string(path).map_err(|source| PluginError::ReadFile {
        path: path.display().to_string(),
        source,
    })?;
    let report = lint::lint(&text);
    out.write_all(report.render(&path.display().to_string()).as_bytes())?;
    Ok(if report.findings.is_empty() {
        EXIT_OK
    } else {
        EXIT_DEGRADED
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    async fn run_args(args: &[&str]) -> (Result<u8, PluginError>, String) {
        let cli = PluginCli::try_parse_from(args).unwrap();
        let mut out = Vec::new();
        let mut err = Vec::new();
        let result = run(cli, &mut out, &mut err).await;
        (result, String::from_utf8(out).unwrap())
    }

    #[tokio::test]
    async fn version_prints_the_crate_version() {
        let (result, out) = run_args(&["kubectl-sluice", "version"]).await;
        assert_eq!(result.unwrap(), EXIT_OK);
        assert_eq!(out, format!("kubectl-sluice {}\n", crate::VERSION));
    }

    #[tokio::test]
    async fn lint_of_a_missing_file_is_an_error_naming_it() {
        let (result, _) = run_args(&["kubectl-sluice", "lint", "-f", "/nonexistent/r.yaml"]).await;
        let err = result.unwrap_err().one_line();
        assert!(err.starts_with("cannot read /nonexistent/r.yaml:"), "{err}");
    }
}
