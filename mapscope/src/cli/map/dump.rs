//! `mapscope map dump MAP`: every entry, streamed in constant memory.

use clap::{Args, ValueEnum};
use mapscope::maps::{
    render::{DumpOptions, Renderer},
    types::MapTypes,
    walk::{self, Flow, Method},
};

use super::{EntryOutput, Target};

/// `--method`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum MethodArg {
    /// Batch lookups where the map type has them, else get_next_key.
    Auto,
    /// BPF_MAP_LOOKUP_BATCH only.
    Batch,
    /// BPF_MAP_GET_NEXT_KEY + lookup per key (what bpftool does).
    NextKey,
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    output: EntryOutput,
    /// Stop after N entries.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// Keys only.
    #[arg(long)]
    keys_only: bool,
    /// Per-CPU maps: add the sum over CPUs of the integer values ("sum").
    #[arg(long)]
    sum: bool,
    /// How to iterate.
    #[arg(long, value_enum, default_value_t = MethodArg::Auto)]
    method: MethodArg,
    /// Print entries and bpf() calls made to stderr when done.
    #[arg(long)]
    stats: bool,
}

pub fn run(args: DumpArgs) -> anyhow::Result<()> {
    let map = args.target.open()?;
    let types = MapTypes::resolve(&map);
    let opts = DumpOptions {
        keys_only: args.keys_only,
        sum: args.sum,
        ..args.output.options()
    };
    let method = match args.method {
        MethodArg::Auto => Method::Auto,
        MethodArg::Batch => Method::Batch,
        MethodArg::NextKey => Method::NextKey,
    };
    let mut r = Renderer::new(super::stdout(), &map, &types, opts)?;
    let limit = args.limit.unwrap_or(u64::MAX);
    let mut written = 0u64;
    let res = (|| -> anyhow::Result<_> {
        r.begin()?;
        let stats = if limit == 0 {
            Default::default()
        } else {
            walk::walk(&map, method, args.keys_only, |k, v| {
                r.entry(k, v)
                    .map_err(|e| mapscope::maps::Error::sys("writing the dump", e))?;
                written += 1;
                Ok(if written >= limit {
                    Flow::Stop
                } else {
                    Flow::Continue
                })
            })?
        };
        Ok(stats)
    })();
    let stats = match res {
        Ok(s) => s,
        Err(e) if is_broken_pipe(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    super::quiet_pipe(r.finish().map(drop))?;
    if stats.incomplete {
        eprintln!(
            "mapscope: warning: {} changed during the walk (a key was deleted under \
             get_next_key); stopped after {} entries rather than repeat keys: rerun for the rest",
            map.label(),
            stats.entries
        );
    }
    if args.stats {
        eprintln!(
            "mapscope: {} entries in {} bpf() calls ({})",
            stats.entries,
            stats.syscalls,
            if stats.batched {
                "batch lookups"
            } else {
                "get_next_key + lookup"
            }
        );
    }
    Ok(())
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
