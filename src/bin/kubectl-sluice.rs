use std::process::ExitCode;

use clap::Parser;
use sluice::plugin::{EXIT_ERROR, PluginCli};

fn main() -> ExitCode {
    let cli = match PluginCli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Help and --version exit 0; usage errors use the error code, not clap's 2 (a timeout).
            return if e.exit_code() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_ERROR)
            };
        }
    };
    ExitCode::from(sluice::plugin::main(cli))
}
