//! `mapscope malloc`: malloc calls and bytes per CPU and the busiest processes, per interval;
//! with `--stacks`, who allocates: the top user stacks, symbolized, and a folded profile or an
//! SVG flame graph of the whole run.

use std::{cell::RefCell, path::PathBuf};

use anyhow::bail;
use clap::{Args, ValueEnum};
use mapscope::{
    Error,
    malloc::{
        MallocStats, Options, StackOptions, Target, flamegraph, report,
        stacks::{HotSpots, Weight},
    },
};

use super::{schedule::ScheduleArgs, shutdown::Shutdown, target_exit::TargetExit};

#[derive(Debug, Args)]
pub struct MallocArgs {
    /// Count only this process, probing the libc it has mapped. Pids are those of mapscope's pid
    /// namespace. The view stops when the process exits.
    #[arg(long, short, conflicts_with = "bin")]
    pid: Option<u32>,
    /// Probe the libc this binary links (its musl loader or its DT_NEEDED libc); every process
    /// using that libc is counted. Default: every distinct libc mapped on the host.
    #[arg(long, short)]
    bin: Option<PathBuf>,
    /// Rows in the process table, and stacks shown with --stacks.
    #[arg(long, short = 'T', default_value_t = 10)]
    top: usize,
    #[command(flatten)]
    every: ScheduleArgs,
    /// One JSON object per interval instead of tables.
    #[arg(long)]
    json: bool,
    /// Record the user stack of every malloc and show the top stacks each interval, symbolized
    /// (needs frame pointers in the code to walk; see the README).
    #[arg(long)]
    stacks: bool,
    /// What ranks stacks and weighs the folded profile and flame graph.
    #[arg(long, value_enum, default_value_t = By::Bytes, requires = "stacks")]
    by: By,
    /// At the end, write the whole run's stacks to FILE in folded format (`a;b;malloc N`).
    #[arg(long, value_name = "FILE", requires = "stacks")]
    folded: Option<PathBuf>,
    /// At the end, write the whole run's stacks to FILE as an SVG flame graph.
    #[arg(long, value_name = "FILE.svg", requires = "stacks")]
    flamegraph: Option<PathBuf>,
    /// Distinct stacks the kernel map holds (about 1 KiB each); captures beyond are counted as
    /// failed.
    #[arg(long, default_value_t = StackOptions::default().max_stacks, requires = "stacks")]
    max_stacks: u32,
}

/// `--by`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum By {
    Bytes,
    Calls,
}

pub async fn run(args: MallocArgs) -> anyhow::Result<()> {
    let schedule = args.every.schedule()?;
    if args.top == 0 {
        bail!("--top must be at least 1");
    }
    if args.max_stacks == 0 {
        bail!("--max-stacks must be at least 1");
    }
    let by = match args.by {
        By::Bytes => Weight::Bytes,
        By::Calls => Weight::Calls,
    };
    if let Some(f) = &args.folded {
        flamegraph::check_writable(f, "--folded")?;
    }
    if let Some(f) = &args.flamegraph {
        flamegraph::check_writable(f, "--flamegraph")?;
    }
    let target = match (args.pid, args.bin) {
        (Some(pid), _) => Target::Pid(pid),
        (None, Some(bin)) => Target::Binary(bin),
        (None, None) => Target::AllProcesses,
    };
    let described = target.describe();
    let watch = TargetExit::watch(args.pid)?;
    let options = Options {
        stacks: args.stacks.then(|| StackOptions {
            max_stacks: args.max_stacks,
            max_keys: args.max_stacks.saturating_mul(2),
        }),
    };

    let mut shutdown = Shutdown::install()?;
    // Library errors name their fix; the context only says where it happened for the others.
    let stats = MallocStats::attach_with(target, options).map_err(|e| match e {
        e @ (Error::NoLibc { .. }
        | Error::BinaryUnreadable { .. }
        | Error::UnknownPid { .. }
        | Error::ThreadId { .. }
        | Error::NestedPidNs { .. }
        | Error::ProcOfAnotherPidNs { .. }
        | Error::Privileges { .. }) => anyhow::Error::new(e),
        e => anyhow::Error::new(e).context("attaching the malloc uprobe"),
    })?;
    // As mapscope opens them: a libc of another mount namespace shows as /proc/PID/root/…, so
    // the host's libc and a container's at the same path stay apart.
    let libcs: Vec<String> = stats
        .libcs()
        .iter()
        .map(|l| l.attach_path.display().to_string())
        .collect();
    if !args.json {
        let what = if args.stacks {
            "malloc and its stacks"
        } else {
            "malloc"
        };
        eprintln!(
            "mapscope: counting {what} in {} for {described}; Ctrl-C to stop",
            libcs.join(", ")
        );
        for s in stats.skipped() {
            eprintln!("mapscope: not probing {}: {}", s.path.display(), s.why);
        }
    }
    // Resolution runs at every snapshot (while processes live); rendering reads the result.
    let hot = RefCell::new(HotSpots::new());
    if let Some(pid) = args.pid {
        hot.borrow_mut().preload(pid);
    }
    let snapshot = || -> anyhow::Result<_> {
        let snap = stats.snapshot()?;
        hot.borrow_mut().resolve(&stats, &snap)?;
        Ok(snap)
    };
    watch
        .print_deltas(schedule, &mut shutdown, snapshot, |prev, cur| {
            let mut interval = report::Interval::between(&libcs, &described, prev, cur, args.top);
            if args.stacks {
                interval = interval.with_stacks(hot.borrow().report(prev, cur, by, args.top));
            }
            if args.json {
                interval.json().to_string()
            } else {
                interval.table()
            }
        })
        .await?;
    if args.folded.is_some() || args.flamegraph.is_some() {
        // Everything counted since attach, resolved once more for stacks seen last.
        let last = snapshot()?;
        let lines = hot.borrow().folded(&last, by);
        if let Some(path) = &args.folded {
            flamegraph::write_folded(path, &lines)?;
        }
        if let Some(path) = &args.flamegraph {
            let title = format!("mapscope malloc: {described}, by {}", by_name(by));
            flamegraph::write_flamegraph(path, &lines, by, &title)?;
        }
    }
    // Dropping the stats detaches the uprobes.
    drop(stats);
    Ok(())
}

fn by_name(by: Weight) -> &'static str {
    match by {
        Weight::Bytes => "bytes",
        Weight::Calls => "calls",
    }
}
