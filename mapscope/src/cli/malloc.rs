//! `mapscope malloc`: malloc calls and bytes per CPU and the busiest processes, per interval.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Args;
use mapscope::malloc::{MallocStats, Target, report};

use super::{schedule::ScheduleArgs, shutdown::Shutdown};

#[derive(Debug, Args)]
pub struct MallocArgs {
    /// Count only this process, probing the libc it has mapped.
    #[arg(long, short, conflicts_with = "bin")]
    pid: Option<u32>,
    /// Probe the libc this binary links; every process using that libc is counted.
    #[arg(long, short)]
    bin: Option<PathBuf>,
    /// Rows in the process table.
    #[arg(long, short = 'T', default_value_t = 10)]
    top: usize,
    #[command(flatten)]
    every: ScheduleArgs,
    /// One JSON object per interval instead of tables.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: MallocArgs) -> anyhow::Result<()> {
    let schedule = args.every.schedule()?;
    if args.top == 0 {
        bail!("--top must be at least 1");
    }
    let target = match (args.pid, args.bin) {
        (Some(pid), _) => Target::Pid(pid),
        (None, Some(bin)) => Target::Binary(bin),
        (None, None) => Target::AllProcesses,
    };
    let described = target.describe();

    let mut shutdown = Shutdown::install()?;
    let stats = MallocStats::attach(target).context("attaching the malloc uprobe")?;
    let libc = stats.libc_path().display().to_string();
    if !args.json {
        eprintln!("mapscope: counting malloc in {libc} for {described}; Ctrl-C to stop");
    }
    schedule
        .print_deltas(
            &mut shutdown,
            || Ok(stats.snapshot()?),
            |prev, cur| {
                let interval = report::Interval::between(&libc, &described, prev, cur, args.top);
                if args.json {
                    interval.json().to_string()
                } else {
                    interval.table()
                }
            },
        )
        .await?;
    // Dropping the stats detaches the uprobe.
    drop(stats);
    Ok(())
}
