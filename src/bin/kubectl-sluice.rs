use clap::Parser;
use sluice::plugin::{PluginCli, run};

fn main() {
    let cli = PluginCli::parse();
    if let Err(e) = run(cli, &mut std::io::stdout()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
