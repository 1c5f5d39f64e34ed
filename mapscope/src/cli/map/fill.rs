//! `mapscope map fill MAP --count N` (hidden): N generated entries by batch update, so
//! `scripts/bench/map-dump.sh` can build a million-entry map in about a second.

use clap::Args;
use mapscope::maps::create;

use super::Target;

#[derive(Debug, Args)]
pub struct FillArgs {
    #[command(flatten)]
    target: Target,
    /// Entries to write: keys 0..N, values key*7+1.
    #[arg(long)]
    count: u64,
}

pub fn run(args: FillArgs) -> anyhow::Result<()> {
    let map = args.target.open()?;
    let n = create::fill(&map, args.count)?;
    eprintln!("mapscope: wrote {n} entries to {}", map.label());
    Ok(())
}
