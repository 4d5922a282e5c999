use std::io::Write;

use anyhow::Context;
use clap::Parser;
use sluice::cli::{Cli, Command, CrdgenArgs};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Controller(args) => {
            sluice::telemetry::init(cli.log_format, "info")?;
            sluice::manager::run(*args).await?;
        }
        Command::Crdgen(args) => crdgen(&args)?,
    }
    Ok(())
}

fn crdgen(args: &CrdgenArgs) -> anyhow::Result<()> {
    match &args.out_dir {
        None => {
            let stream = sluice::crdgen::crd_stream()?;
            std::io::stdout()
                .write_all(stream.as_bytes())
                .context("cannot write to stdout")?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            for doc in sluice::crdgen::crd_documents()? {
                let path = dir.join(&doc.file_name);
                std::fs::write(&path, doc.yaml)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
        }
    }
    Ok(())
}
