//! `mapscope map show MAP`: one map's record, bpftool-style text or JSON.

use std::io::Write as _;

use clap::Args;
use mapscope::maps::info::{Inventory, MapRecord};

use super::Target;

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    target: Target,
    /// One JSON object (bpftool's fields plus pinned, programs, family).
    #[arg(long)]
    json: bool,
}

pub fn run(args: ShowArgs) -> anyhow::Result<()> {
    let map = args.target.open()?;
    let record = Inventory::gather()?.record(&map);
    let mut out = super::stdout();
    if args.json {
        serde_json::to_writer(&mut out, &record)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", text(&record))?;
    }
    super::quiet_pipe(out.flush())
}

/// bpftool's two-line layout, plus a line per extra that is present.
pub fn text(r: &MapRecord) -> String {
    let kind = r
        .kind
        .as_str()
        .map_or_else(|| r.kind.to_string(), str::to_string);
    let name = if r.name.is_empty() {
        String::new()
    } else {
        format!("  name {}", r.name)
    };
    let mut s = format!("{}: {kind}{name}  flags {:#x}\n", r.id, r.flags);
    s.push_str(&format!(
        "\tkey {}B  value {}B  max_entries {}  memlock {}\n",
        r.bytes_key,
        r.bytes_value,
        r.max_entries,
        r.bytes_memlock
            .map_or_else(|| "-".to_string(), |m| format!("{m}B"))
    ));
    if let Some(btf) = r.btf_id {
        s.push_str(&format!("\tbtf_id {btf}\n"));
    }
    if r.frozen != 0 {
        s.push_str("\tfrozen\n");
    }
    for p in &r.pinned {
        s.push_str(&format!("\tpinned {p}\n"));
    }
    if !r.programs.is_empty() {
        let progs: Vec<String> = r
            .programs
            .iter()
            .map(|p| format!("{} ({})", p.id, p.name))
            .collect();
        s.push_str(&format!("\tprograms {}\n", progs.join(", ")));
    }
    if let Some(f) = r.family {
        s.push_str(&format!("\tfamily {f} (mapscope)\n"));
    }
    s
}
