//! `kubectl sluice ...`: the kubectl plugin. Commands are added here as the engines land.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "kubectl-sluice",
    bin_name = "kubectl sluice",
    version,
    about = "Drive Sluice rollouts and applications from kubectl"
)]
pub struct PluginCli {
    #[command(subcommand)]
    pub command: PluginCommand,
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Print the plugin version.
    Version,
}

/// Runs a parsed command, writing its output to `out`.
pub fn run(cli: PluginCli, out: &mut impl std::io::Write) -> std::io::Result<()> {
    match cli.command {
        PluginCommand::Version => writeln!(out, "kubectl-sluice {}", crate::VERSION),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        PluginCli::command().debug_assert();
    }

    #[test]
    fn version_prints_the_crate_version() {
        let cli = PluginCli::try_parse_from(["kubectl-sluice", "version"]).unwrap();
        let mut out = Vec::new();
        run(cli, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("kubectl-sluice {}\n", crate::VERSION)
        );
    }
}
