//! `mapscope map create PATH type T key K value V entries N [name NAME] [flags F]`: bpftool's
//! syntax. The map is pinned at PATH so it outlives the command; `map unpin PATH` frees it.

use std::{io::Write as _, path::PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;
use mapscope::maps::{
    MapKind,
    create::{self, NewMap},
    info::Inventory,
};

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Where to pin the new map (on bpffs).
    path: PathBuf,
    /// `type T key K value V entries N [name NAME] [flags F]`.
    #[arg(value_name = "type T key K value V entries N [name NAME] [flags F]", required = true, num_args = 1..)]
    words: Vec<String>,
    /// Print the new map's record as JSON.
    #[arg(long)]
    json: bool,
}

fn number(word: &str, v: &str) -> anyhow::Result<u32> {
    let parsed = match v.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16),
        None => v.parse(),
    };
    parsed.with_context(|| format!("`{word}` needs a number, got {v:?}"))
}

fn spec(words: &[String]) -> anyhow::Result<NewMap> {
    let (mut kind, mut key, mut value, mut entries) = (None, None, None, None);
    let (mut name, mut flags) = (String::new(), 0);
    let mut it = words.iter();
    while let Some(word) = it.next() {
        let Some(v) = it.next() else {
            bail!("`{word}` needs a value");
        };
        match word.as_str() {
            "type" => {
                kind = Some(MapKind::from_name(v).with_context(|| {
                    format!(
                        "unknown map type {v:?}: use one of {}",
                        MapKind::names().collect::<Vec<_>>().join(", ")
                    )
                })?);
            }
            "key" => key = Some(number(word, v)?),
            "value" => value = Some(number(word, v)?),
            "entries" => entries = Some(number(word, v)?),
            "name" => name = v.clone(),
            "flags" => flags = number(word, v)?,
            other => bail!(
                "unexpected {other:?}: map create takes type, key, value, entries, name and flags"
            ),
        }
    }
    let missing = |what: &str| {
        format!("map create needs `{what}` (e.g. type hash key 4 value 8 entries 1024)")
    };
    Ok(NewMap {
        kind: kind.with_context(|| missing("type"))?,
        key_size: key.with_context(|| missing("key"))?,
        value_size: value.with_context(|| missing("value"))?,
        max_entries: entries.with_context(|| missing("entries"))?,
        flags,
        name,
    })
}

pub fn run(args: CreateArgs) -> anyhow::Result<()> {
    let spec = spec(&args.words)?;
    let map = create::create(&spec, &args.path)?;
    let record = Inventory::gather()?.record(&map);
    let mut out = super::stdout();
    if args.json {
        serde_json::to_writer(&mut out, &record)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", super::show::text(&record))?;
    }
    super::quiet_pipe(out.flush())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn bpftool_syntax() {
        let s = spec(&w(
            "type lru_hash key 4 value 8 entries 0x100 name lru flags 0",
        ))
        .unwrap();
        assert_eq!(s.kind, MapKind::LRU_HASH);
        assert_eq!((s.key_size, s.value_size, s.max_entries), (4, 8, 256));
        assert_eq!(s.name, "lru");
        for bad in [
            "type hash key 4 value 8",
            "type nope key 4 value 8 entries 1",
            "type hash key x",
            "type hash key",
        ] {
            assert!(spec(&w(bad)).is_err(), "{bad}");
        }
    }
}
