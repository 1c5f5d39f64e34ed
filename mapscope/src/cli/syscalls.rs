//! `mapscope syscalls`: syscount-style top syscalls per interval, counted through the tail-call
//! dispatcher, with each dedicated handler's own counters.

use anyhow::{Context as _, bail};
use clap::Args;
use mapscope::{
    Error,
    syscalls::{Selection, SyscallCounter, names, report},
};
use mapscope_common::syscalls::{HANDLED_SLOTS, SYSCALL_SLOTS};

use super::{schedule::ScheduleArgs, shutdown::Shutdown, target_exit::TargetExit};

#[derive(Debug, Args)]
pub struct SyscallsArgs {
    /// Count only this process: its pid (thread-group id) covers all its threads, not children.
    /// Pids are those of mapscope's pid namespace. The view stops when the process exits.
    #[arg(long, short)]
    pid: Option<u32>,
    /// Count only threads with exactly this command name (at most 15 bytes, as `ps -o comm`
    /// prints it). With --pid, both must match.
    #[arg(long, short)]
    comm: Option<String>,
    /// Show only these syscalls, zero counts included (x86_64 names, comma-separated or
    /// repeated); --top then does not apply.
    #[arg(long = "syscall", short = 's', value_delimiter = ',')]
    syscalls: Vec<String>,
    /// Rows in the top table.
    #[arg(long, short = 'T', default_value_t = 10)]
    top: usize,
    #[command(flatten)]
    every: ScheduleArgs,
    /// One JSON object per interval instead of tables.
    #[arg(long)]
    json: bool,
    /// Print every x86_64 syscall with the program in its jump-table slot, then exit.
    #[arg(long)]
    list: bool,
}

pub async fn run(args: SyscallsArgs) -> anyhow::Result<()> {
    if args.list {
        print!("{}", report::list());
        return Ok(());
    }
    let schedule = args.every.schedule()?;
    if args.top == 0 {
        bail!("--top must be at least 1");
    }
    let only = args
        .syscalls
        .iter()
        .map(|name| names::number(name).ok_or_else(|| Error::UnknownSyscall { name: name.clone() }))
        .collect::<Result<Vec<u32>, _>>()?;
    let selection = Selection {
        pid: args.pid,
        comm: args.comm,
    };
    let filter = selection.to_filter()?;
    let described = selection.describe();
    let target = TargetExit::watch(args.pid)?;

    let mut shutdown = Shutdown::install()?;
    let counter = SyscallCounter::attach(filter).context("attaching the syscall counter")?;
    if !args.json {
        eprintln!(
            "mapscope: counting syscalls of {described} through a {SYSCALL_SLOTS}-slot tail-call \
             table ({HANDLED_SLOTS} syscalls with dedicated handlers); Ctrl-C to stop"
        );
    }
    target
        .print_deltas(
            schedule,
            &mut shutdown,
            || Ok(counter.snapshot()?),
            |prev, cur| {
                let interval = report::Interval::between(&described, prev, cur, &only, args.top);
                if args.json {
                    interval.json().to_string()
                } else {
                    interval.table()
                }
            },
        )
        .await?;
    // Dropping the counter detaches the dispatcher and closes the jump table.
    drop(counter);
    Ok(())
}
