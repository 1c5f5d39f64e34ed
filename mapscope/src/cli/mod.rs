//! Command-line shape: `mapscope <family> <action> [flags]`, one file per family.

mod exec;
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
    /// exec tracing: live events, per-uid counts, web-service streaming.
    Exec(exec::ExecCommand),
}

/// Runs the chosen subcommand.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Xdp(cmd) => xdp::run(cmd).await,
        Command::Exec(cmd) => exec::run(cmd).await,
    }
}

/// Validates an `--interval`: positive and finite, or a one-line error naming the fix.
fn interval(secs: f64) -> anyhow::Result<std::time::Duration> {
    if secs.is_nan() || secs <= 0.0 || secs.is_infinite() {
        anyhow::bail!(
            "--interval must be a positive number of seconds (e.g. --interval 2), got {secs}"
        );
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}
