//! `mapscope map pin MAP PATH`: pin a map on bpffs.

use std::path::PathBuf;

use clap::Args;
use mapscope::maps::pin;

use super::Target;

#[derive(Debug, Args)]
pub struct PinArgs {
    #[command(flatten)]
    target: Target,
    /// Where to pin it: a new path on a bpffs mount (e.g. /sys/fs/bpf/mymap).
    path: PathBuf,
}

pub fn run(args: PinArgs) -> anyhow::Result<()> {
    let map = args.target.open()?;
    Ok(pin::pin(&map, &args.path)?)
}
