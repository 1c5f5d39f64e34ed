//! `mapscope map peek MAP`: print the next value of a queue or stack, leaving it there.

use clap::Args;

use super::{EntryOutput, Target};

#[derive(Debug, Args)]
pub struct PeekArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    output: EntryOutput,
}

pub fn run(args: PeekArgs) -> anyhow::Result<()> {
    let map = args.target.open()?;
    let value = map.peek()?;
    super::print_single(&map, &args.output, None, &value)
}
