//! `completion bash|zsh|fish`: shell completion scripts generated from the command definitions.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::{Shell, generate};

use crate::plugin::cli::{CompletionShell, PluginCli};

/// Writes the completion script for `shell`. kubectl looks plugins up as `kubectl-sluice`, so the
/// script completes that command (kubectl 1.26+ also delegates `kubectl sluice <TAB>` to it through
/// a `kubectl_complete-sluice` executable, which can simply run `kubectl-sluice`).
pub fn write_completion(shell: CompletionShell, out: &mut dyn Write) {
    let shell = match shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    let mut command = PluginCli::command();
    generate(shell, &mut command, "kubectl-sluice", out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_a_script_naming_the_commands() {
        for shell in [
            CompletionShell::Bash,
            CompletionShell::Zsh,
            CompletionShell::Fish,
        ] {
            let mut out = Vec::new();
            write_completion(shell, &mut out);
            let script = String::from_utf8(out).unwrap();
            assert!(script.contains("kubectl-sluice"), "{shell:?}");
            for command in ["promote", "abort", "status", "lint", "proj"] {
                assert!(script.contains(command), "{shell:?} lacks {command}");
            }
        }
    }
}
