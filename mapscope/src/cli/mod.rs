//! Command-line shape: `mapscope <family> <action> [flags]`, one file per family.

mod shutdown;
mod xdp;

use clap::{Parser, Subcommand};

/// mapscope: host observability built around eBPF maps.
#[derive(Debug, Parser)]
#[command(version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// XDP traffic statistics.
    #[command(subcommand)]
    Xdp(xdp::XdpCommand),
}

/// Runs the chosen subcommand.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Xdp(cmd) => xdp::run(cmd).await,
    }
}
