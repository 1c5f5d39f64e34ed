//! `mapscope map unpin PATH`: remove a map pin, and nothing else.

use std::path::PathBuf;

use clap::Args;
use mapscope::maps::pin;

#[derive(Debug, Args)]
pub struct UnpinArgs {
    /// The pinned map's path on bpffs.
    path: PathBuf,
}

pub fn run(args: UnpinArgs) -> anyhow::Result<()> {
    Ok(pin::unpin(&args.path)?)
}
