//! `mapscope map …`: the map toolbox, one file per subcommand under `cli/map/`. Maps are named as
//! bpftool names them: `id N`, `pinned PATH` or `name NAME`.

mod create;
mod del;
mod dump;
mod fill;
mod get;
mod list;
mod peek;
mod pin;
mod pop;
mod push;
mod set;
mod show;
mod unpin;
mod watch;

use std::io::{self, BufWriter};

use anyhow::bail;
use clap::{Args, Subcommand, ValueEnum};
use mapscope::maps::{
    MapHandle, MapRef,
    render::{DumpOptions, Renderer},
    types::MapTypes,
};

#[derive(Debug, Subcommand)]
pub enum MapCommand {
    /// Every BPF map on the host: type, sizes, memory, users, pins, mapscope family.
    List(list::ListArgs),
    /// One map's record, as `list` shows it.
    Show(show::ShowArgs),
    /// Every entry (batch lookups where the kernel has them), as bpftool's JSON or text.
    Dump(dump::DumpArgs),
    /// The value of one key: `map get id 12 key u32:5`.
    Get(get::GetArgs),
    /// Write one entry: `map set id 12 key u32:5 value u64:7 [any|noexist|exist]`.
    Set(set::SetArgs),
    /// Delete one key: `map del id 12 key u32:5`.
    Del(del::DelArgs),
    /// Push a value onto a queue or stack: `map push id 12 value u32:1 [exist]`.
    Push(push::PushArgs),
    /// Remove and print the next value of a queue (oldest) or stack (newest).
    Pop(pop::PopArgs),
    /// Print the next value of a queue or stack without removing it.
    Peek(peek::PeekArgs),
    /// Pin a map on bpffs: `map pin id 12 /sys/fs/bpf/name`.
    Pin(pin::PinArgs),
    /// Remove a map pin (refuses anything that is not a pinned map).
    Unpin(unpin::UnpinArgs),
    /// Re-read a counter map every interval: per-key deltas and rates, hottest first.
    Watch(watch::WatchArgs),
    /// Create a map and pin it (bpftool syntax):
    /// `map create PATH type hash key 4 value 8 entries 1024 [name NAME] [flags N]`.
    Create(create::CreateArgs),
    /// Fill a map with N generated entries by batch update (benchmarks).
    #[command(hide = true)]
    Fill(fill::FillArgs),
}

/// Runs a map subcommand.
pub async fn run(cmd: MapCommand) -> anyhow::Result<()> {
    match cmd {
        MapCommand::List(a) => list::run(a),
        MapCommand::Show(a) => show::run(a),
        MapCommand::Dump(a) => dump::run(a),
        MapCommand::Get(a) => get::run(a),
        MapCommand::Set(a) => set::run(a),
        MapCommand::Del(a) => del::run(a),
        MapCommand::Push(a) => push::run(a),
        MapCommand::Pop(a) => pop::run(a),
        MapCommand::Peek(a) => peek::run(a),
        MapCommand::Pin(a) => pin::run(a),
        MapCommand::Unpin(a) => unpin::run(a),
        MapCommand::Watch(a) => watch::run(a).await,
        MapCommand::Create(a) => create::run(a),
        MapCommand::Fill(a) => fill::run(a),
    }
}

/// The two words naming a map.
#[derive(Debug, Args)]
pub struct Target {
    /// How the map is named: id, pinned or name.
    #[arg(value_name = "id|pinned|name")]
    how: String,
    /// The map's id, pin path or name.
    #[arg(value_name = "N|PATH|NAME")]
    what: String,
}

impl Target {
    /// Opens the map.
    pub fn open(&self) -> anyhow::Result<MapHandle> {
        Ok(MapHandle::open(&MapRef::parse(&self.how, &self.what)?)?)
    }
}

/// How keys and values print.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// bpftool's hex bytes.
    #[default]
    Hex,
    /// Hex plus decoded fields ("formatted"): mapscope's own maps by name, others by BTF.
    Typed,
}

/// `--json` and `--format` for the commands that print entries.
#[derive(Debug, Args)]
pub struct EntryOutput {
    /// bpftool's JSON instead of text.
    #[arg(long)]
    json: bool,
    /// hex (bpftool's bytes) or typed (adds decoded keys and values).
    #[arg(long, value_enum, default_value_t = Format::Hex)]
    format: Format,
}

impl EntryOutput {
    fn options(&self) -> DumpOptions {
        DumpOptions {
            json: self.json,
            typed: self.format == Format::Typed,
            ..Default::default()
        }
    }
}

/// stdout, buffered for streaming output.
fn stdout() -> BufWriter<io::StdoutLock<'static>> {
    BufWriter::with_capacity(256 * 1024, io::stdout().lock())
}

/// Prints one key and value (or a lone value for queues and stacks).
fn print_single(
    map: &MapHandle,
    out: &EntryOutput,
    key: Option<&[u8]>,
    value: &[u8],
) -> anyhow::Result<()> {
    let types = MapTypes::resolve(map);
    let r = Renderer::new(stdout(), map, &types, out.options())?;
    quiet_pipe(r.single(key, value).map(drop))
}

/// A closed stdout (`| head`) ends the output quietly, as it does for other tools.
fn quiet_pipe(res: io::Result<()>) -> anyhow::Result<()> {
    match res {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Splits `key W… value W… [flag]` into its parts; `want` names the sections expected, in order.
fn sections<'a>(
    words: &'a [String],
    want: &[&str],
    flags: &[&str],
) -> anyhow::Result<(Vec<Vec<String>>, Option<&'a str>)> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut flag = None;
    let mut i = 0;
    for (n, section) in want.iter().enumerate() {
        if words.get(i).map(String::as_str) != Some(*section) {
            bail!(
                "expected `{section}` followed by bytes (e.g. `{section} u32:5` or `{section} 0x05 0 0 0`){}",
                words
                    .get(i)
                    .map(|w| format!(", got {w:?}"))
                    .unwrap_or_default()
            );
        }
        i += 1;
        let mut words_here = Vec::new();
        while let Some(w) = words.get(i) {
            if want[n + 1..].contains(&w.as_str()) || flags.contains(&w.as_str()) {
                break;
            }
            words_here.push(w.clone());
            i += 1;
        }
        if words_here.is_empty() {
            bail!("`{section}` needs at least one byte or typed word (e.g. `{section} u32:5`)");
        }
        out.push(words_here);
    }
    if let Some(w) = words.get(i)
        && flags.contains(&w.as_str())
    {
        flag = Some(w.as_str());
        i += 1;
    }
    if let Some(extra) = words.get(i) {
        bail!(
            "unexpected {extra:?} after the {}",
            want.last().unwrap_or(&"map")
        );
    }
    Ok((out, flag))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn splits_key_value_and_flag() {
        let words = w("key u32:5 value 7 0 0 0 0 0 0 0 noexist");
        let (s, flag) = sections(&words, &["key", "value"], &["any", "noexist", "exist"]).unwrap();
        assert_eq!(s, [w("u32:5"), w("7 0 0 0 0 0 0 0")]);
        assert_eq!(flag, Some("noexist"));
        let words = w("key hex 0a 0b");
        let (s, flag) = sections(&words, &["key"], &[]).unwrap();
        assert_eq!(s, [w("hex 0a 0b")]);
        assert_eq!(flag, None);
        assert!(sections(&w("u32:5"), &["key"], &[]).is_err());
        assert!(sections(&w("key"), &["key"], &[]).is_err());
        assert!(sections(&w("key 1 value"), &["key", "value"], &[]).is_err());
        assert!(sections(&w("key 1 any extra"), &["key"], &["any"]).is_err());
    }
}
