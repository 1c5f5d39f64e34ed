//! `mapscope xdp status`: every pinned attachment on the host.

use std::fmt::Write as _;

use clap::Args;
use mapscope::xdp::attachment;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One JSON array instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: StatusArgs) -> anyhow::Result<()> {
    let list = attachment::status()?;
    if args.json {
        println!("{}", serde_json::json!({"schema": 1, "attachments": list}));
        return Ok(());
    }
    if list.is_empty() {
        println!("no mapscope XDP attachments (see `mapscope xdp attach --help`)");
        return Ok(());
    }
    let mut out = format!(
        "{:<15} {:<7} {:<21} {:>6} {:>8}  {}\n",
        "iface", "mode", "attached since", "rules", "prog id", "pin directory"
    );
    for a in &list {
        let since = a.attached_since.map_or("-".to_string(), |s| {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(s);
            humantime::format_rfc3339_seconds(t).to_string()
        });
        let _ = writeln!(
            out,
            "{:<15} {:<7} {:<21} {:>6} {:>8}  {}",
            a.iface,
            a.mode.unwrap_or("-"),
            since,
            a.rules.map_or("-".into(), |n| n.to_string()),
            a.prog_id.map_or("-".into(), |n| n.to_string()),
            a.pin_dir
        );
        if a.state != "attached" {
            let _ = writeln!(out, "  {}", a.state);
        }
    }
    print!("{out}");
    Ok(())
}
