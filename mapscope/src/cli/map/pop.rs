//! `mapscope map pop MAP`: remove and print the next value of a queue or stack.

use clap::Args;

use super::{EntryOutput, Target};

#[derive(Debug, Args)]
pub struct PopArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    output: EntryOutput,
}

pub fn run(args: PopArgs) -> anyhow::Result<()> {
    let map = args.target.open()?;
    let value = map.pop()?;
    super::print_single(&map, &args.output, None, &value)
}
