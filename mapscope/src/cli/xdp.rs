//! `mapscope xdp stats`: live per-action packet and byte statistics of one interface.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use mapscope::{
    iface::Interface,
    xdp::{
        AttachMode, XdpStats,
        report::{Interval, MapChoice},
    },
};

use super::{schedule::ScheduleArgs, shutdown::Shutdown};

#[derive(Debug, Subcommand)]
pub enum XdpCommand {
    /// Attach the statistics program and print per-action packets, pps, bytes and Mbit/s.
    Stats(StatsArgs),
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Interface to attach to [default: the interface of the default route].
    #[arg(long, short)]
    iface: Option<String>,
    /// skb (generic, works everywhere) or native (in the driver, needs driver support).
    #[arg(long, value_enum, default_value_t = AttachMode::Skb)]
    mode: AttachMode,
    /// Which map the table shows: the atomic Array or the summed PerCpuArray.
    #[arg(long, value_enum, default_value_t = MapChoice::Array)]
    map: MapChoice,
    /// One JSON object per interval (both maps) instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    every: ScheduleArgs,
}

pub async fn run(cmd: XdpCommand) -> anyhow::Result<()> {
    match cmd {
        XdpCommand::Stats(args) => stats(args).await,
    }
}

async fn stats(args: StatsArgs) -> anyhow::Result<()> {
    let schedule = args.every.schedule()?;
    let iface = Interface::resolve(args.iface.as_deref())?;
    let mut shutdown = Shutdown::install()?;
    let stats = XdpStats::attach(&iface, args.mode)
        .with_context(|| format!("attaching XDP to {}", iface.name))?;
    if !args.json {
        eprintln!(
            "mapscope: counting XDP actions on {} ({} mode); Ctrl-C to stop",
            iface.name,
            args.mode.as_str()
        );
    }

    schedule
        .print_deltas(
            &mut shutdown,
            || Ok(stats.snapshot()?),
            |prev, cur| {
                let report = Interval::between(&iface.name, args.mode.as_str(), prev, cur);
                if args.json {
                    report.json().to_string()
                } else {
                    report.table(args.map)
                }
            },
        )
        .await?;
    // Dropping `stats` detaches the program before we return.
    drop(stats);
    Ok(())
}
