//! `mapscope map set MAP key W… value W… [any|noexist|exist]`: write one entry.

use clap::Args;
use mapscope::maps::{UpdateMode, parse::parse_bytes};

use super::Target;

#[derive(Debug, Args)]
pub struct SetArgs {
    #[command(flatten)]
    target: Target,
    /// `key W… value W…` (bytes or typed words) and optionally any (default), noexist
    /// (only create) or exist (only replace). Per-CPU maps get the value on every CPU.
    #[arg(value_name = "key W… value W… [any|noexist|exist]", required = true, num_args = 1..)]
    words: Vec<String>,
}

pub fn run(args: SetArgs) -> anyhow::Result<()> {
    let (s, flag) = super::sections(&args.words, &["key", "value"], &["any", "noexist", "exist"])?;
    let key = parse_bytes(&s[0])?;
    let value = parse_bytes(&s[1])?;
    let mode = match flag {
        Some("noexist") => UpdateMode::NoExist,
        Some("exist") => UpdateMode::Exist,
        _ => UpdateMode::Any,
    };
    let map = args.target.open()?;
    Ok(map.set(&key, &value, mode)?)
}
