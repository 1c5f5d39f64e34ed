//! `mapscope map del MAP key W…`: delete one key.

use clap::Args;
use mapscope::maps::parse::parse_bytes;

use super::Target;

#[derive(Debug, Args)]
pub struct DelArgs {
    #[command(flatten)]
    target: Target,
    /// `key` then bytes or typed words.
    #[arg(value_name = "key W…", required = true, num_args = 1..)]
    words: Vec<String>,
}

pub fn run(args: DelArgs) -> anyhow::Result<()> {
    let (s, _) = super::sections(&args.words, &["key"], &[])?;
    let key = parse_bytes(&s[0])?;
    let map = args.target.open()?;
    Ok(map.del(&key)?)
}
