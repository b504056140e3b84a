//! placeholder
use clap::Subcommand;
#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    Ingest,
}
pub async fn run(_command: BenchCommand) -> anyhow::Result<()> {
    Ok(())
}
