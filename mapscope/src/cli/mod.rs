//! Command-line shape: `mapscope <family> [<action>] [flags]`, one file per family.

mod agent;
mod exec;
mod malloc;
mod map;
mod nats_args;
mod schedule;
mod shutdown;
mod syscalls;
mod tail;
mod target_exit;
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
    /// Every family in one long-running process: pinned counters, Prometheus /metrics and an
    /// HTTP API.
    Agent(agent::AgentArgs),
    /// XDP traffic statistics.
    #[command(subcommand)]
    Xdp(xdp::XdpCommand),
    /// exec tracing: live events, per-uid counts, web-service streaming.
    Exec(Box<exec::ExecCommand>),
    /// Syscall counts per interval through a tail-call dispatcher, like syscount.
    Syscalls(syscalls::SyscallsArgs),
    /// malloc calls and bytes per CPU and per process, from a uprobe on libc.
    Malloc(malloc::MallocArgs),
    /// The map toolbox: list, show, dump, get/set/del, push/pop/peek, pin/unpin and watch any
    /// BPF map on the host.
    #[command(subcommand)]
    Map(map::MapCommand),
    /// The fleet's events from NATS JetStream (what `exec --nats` publishes), as a table or JSON.
    Tail(tail::TailArgs),
}

/// Runs the chosen subcommand.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Agent(args) => agent::run(args).await,
        Command::Xdp(cmd) => xdp::run(cmd).await,
        Command::Exec(cmd) => exec::run(*cmd).await,
        Command::Syscalls(args) => syscalls::run(args).await,
        Command::Malloc(args) => malloc::run(args).await,
        Command::Map(cmd) => map::run(cmd).await,
        Command::Tail(args) => tail::run(args).await,
    }
}
