//! `mapscope map get MAP key W…`: one key's value.

use clap::Args;
use mapscope::maps::parse::parse_bytes;

use super::{EntryOutput, Target};

#[derive(Debug, Args)]
pub struct GetArgs {
    #[command(flatten)]
    target: Target,
    /// `key` then bytes (`0x05 0 0 0`, `hex 05 00 00 00`) or typed words (`u32:5`, `ip:10.0.0.0/8`).
    #[arg(value_name = "key W…", required = true, num_args = 1..)]
    words: Vec<String>,
    #[command(flatten)]
    output: EntryOutput,
}

pub fn run(args: GetArgs) -> anyhow::Result<()> {
    let (s, _) = super::sections(&args.words, &["key"], &[])?;
    let key = parse_bytes(&s[0])?;
    let map = args.target.open()?;
    let value = map.get(&key)?;
    super::print_single(&map, &args.output, Some(&key), &value)
}
