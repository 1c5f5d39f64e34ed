//! `mapscope map push MAP value W… [exist]`: push onto a queue or stack.

use clap::Args;
use mapscope::maps::parse::parse_bytes;

use super::Target;

#[derive(Debug, Args)]
pub struct PushArgs {
    #[command(flatten)]
    target: Target,
    /// `value` then bytes or typed words; `exist` overwrites the oldest entry when full.
    #[arg(value_name = "value W… [exist]", required = true, num_args = 1..)]
    words: Vec<String>,
}

pub fn run(args: PushArgs) -> anyhow::Result<()> {
    let (s, flag) = super::sections(&args.words, &["value"], &["exist"])?;
    let value = parse_bytes(&s[0])?;
    let map = args.target.open()?;
    Ok(map.push(&value, flag == Some("exist"))?)
}
