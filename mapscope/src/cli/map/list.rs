//! `mapscope map list`: every map on the host, as a table or bpftool-shaped JSON.

use std::io::Write as _;

use clap::Args;
use mapscope::maps::info::{self, MapRecord};

#[derive(Debug, Args)]
pub struct ListArgs {
    /// A JSON array of records (bpftool's fields plus pinned, programs, family).
    #[arg(long)]
    json: bool,
}

pub fn run(args: ListArgs) -> anyhow::Result<()> {
    let maps = info::list()?;
    let mut out = super::stdout();
    if args.json {
        serde_json::to_writer(&mut out, &maps)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", table(&maps))?;
    }
    super::quiet_pipe(out.flush())
}

/// Human-readable size: bytes below 10 KiB, then KiB/MiB.
pub fn size(bytes: Option<u64>) -> String {
    match bytes {
        None => "-".to_string(),
        Some(b) if b < 10 * 1024 => format!("{b}B"),
        Some(b) if b < 10 * 1024 * 1024 => format!("{}KiB", b / 1024),
        Some(b) => format!("{}MiB", b / (1024 * 1024)),
    }
}

fn kind(r: &MapRecord) -> String {
    r.kind
        .as_str()
        .map_or_else(|| r.kind.to_string(), str::to_string)
}

/// The `map list` table.
pub fn table(maps: &[MapRecord]) -> String {
    let mut s = format!(
        "{:<6} {:<16} {:<16} {:>4} {:>6} {:>8} {:>5} {:>8}  {:<8} {:<16} {}\n",
        "ID",
        "TYPE",
        "NAME",
        "KEY",
        "VALUE",
        "ENTRIES",
        "FLAGS",
        "MEMLOCK",
        "FAMILY",
        "PROGRAMS",
        "PINNED"
    );
    for r in maps {
        let progs = if r.programs.is_empty() {
            "-".to_string()
        } else {
            r.programs
                .iter()
                .map(|p| p.id.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let pinned = if r.pinned.is_empty() {
            "-".to_string()
        } else {
            r.pinned.join(",")
        };
        s.push_str(&format!(
            "{:<6} {:<16} {:<16} {:>4} {:>6} {:>8} {:>5} {:>8}  {:<8} {:<16} {}\n",
            r.id,
            kind(r),
            if r.name.is_empty() { "-" } else { &r.name },
            r.bytes_key,
            r.bytes_value,
            r.max_entries,
            format!("{:#x}", r.flags),
            size(r.bytes_memlock),
            r.family.unwrap_or("-"),
            progs,
            pinned
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size(Some(2320)), "2320B");
        assert_eq!(size(Some(426_880)), "416KiB");
        assert_eq!(size(Some(80 << 20)), "80MiB");
        assert_eq!(size(None), "-");
    }
}
