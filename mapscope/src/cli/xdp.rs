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

use super::{schedule::Schedule, shutdown::Shutdown};

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
    /// Seconds between reports (fractions allowed).
    #[arg(long, default_value_t = 2.0, allow_negative_numbers = true)]
    interval: f64,
    /// Which map the table shows: the atomic Array or the summed PerCpuArray.
    #[arg(long, value_enum, default_value_t = MapChoice::Array)]
    map: MapChoice,
    /// One JSON object per interval (both maps) instead of a table.
    #[arg(long)]
    json: bool,
    /// Stop after this many intervals [default: run until Ctrl-C/SIGTERM].
    #[arg(long)]
    count: Option<u64>,
}

pub async fn run(cmd: XdpCommand) -> anyhow::Result<()> {
    match cmd {
        XdpCommand::Stats(args) => stats(args).await,
    }
}

async fn stats(args: StatsArgs) -> anyhow::Result<()> {
    let schedule = Schedule::new(args.interval, args.count)?;
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

    let mut prev = stats.snapshot()?;
    let mut ticks = schedule.start();
    while ticks.next(&mut shutdown).await {
        let cur = stats.snapshot()?;
        let report = Interval::between(&iface.name, args.mode.as_str(), &prev, &cur);
        if args.json {
            println!("{}", report.json());
        } else {
            println!("{}", report.table(args.map));
        }
        prev = cur;
    }
    // Dropping `stats` detaches the program before we return.
    drop(stats);
    Ok(())
}
