//! `mapscope xdp block|allow add|del CIDR…` and `xdp rules [load FILE]`: the rule set of a
//! pinned attachment, changed live.

use std::fmt::Write as _;

use clap::{Args, Subcommand};
use mapscope::xdp::{
    attachment,
    rules::{self, Cidr, Direction, Rule, Verdict},
};

use super::IfaceArg;

#[derive(Debug, Subcommand)]
pub enum EditCommand {
    /// Add rules for these prefixes (a bare address is a /32 or /128).
    Add(EditArgs),
    /// Delete the rules for these prefixes (all must exist, or nothing is deleted).
    Del(EditArgs),
}

#[derive(Debug, Args)]
pub struct EditArgs {
    /// CIDR prefixes, e.g. 10.0.0.0/8 2001:db8::/32 192.0.2.7.
    #[arg(required = true)]
    cidrs: Vec<String>,
    /// Match the destination address instead of the source.
    #[arg(long)]
    dst: bool,
    #[command(flatten)]
    iface: IfaceArg,
}

#[derive(Debug, Args)]
pub struct RulesArgs {
    #[command(subcommand)]
    cmd: Option<RulesCommand>,
    /// One JSON object instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    iface: IfaceArg,
}

#[derive(Debug, Subcommand)]
enum RulesCommand {
    /// Replace the rule set with a file's (one `block|allow CIDR [dst]` per line, `#` comments),
    /// adding new rules before removing old ones.
    Load {
        file: std::path::PathBuf,
        #[command(flatten)]
        iface: IfaceArg,
    },
}

pub fn edit(verdict: Verdict, cmd: EditCommand) -> anyhow::Result<()> {
    let (args, adding) = match cmd {
        EditCommand::Add(a) => (a, true),
        EditCommand::Del(a) => (a, false),
    };
    // Every CIDR is checked before the attachment is touched.
    let cidrs = args
        .cidrs
        .iter()
        .map(|c| c.parse::<Cidr>())
        .collect::<Result<Vec<_>, _>>()?;
    let dir = if args.dst {
        Direction::Dst
    } else {
        Direction::Src
    };
    let mut att = attachment::open_existing(&args.iface.name()?)?;
    if adding {
        let list: Vec<Rule> = cidrs
            .iter()
            .map(|&cidr| Rule { verdict, cidr, dir })
            .collect();
        rules::add(&mut att, &list)?;
    } else {
        rules::del(&mut att, verdict, &cidrs, dir)?;
    }
    Ok(())
}

pub fn run(args: RulesArgs) -> anyhow::Result<()> {
    if let Some(RulesCommand::Load { file, iface }) = args.cmd {
        let parsed = rules::parse_file(&file)?;
        let name = match iface.iface {
            Some(_) => iface.name()?,
            None => args.iface.name()?,
        };
        let mut att = attachment::open_existing(&name)?;
        rules::load(&mut att, &parsed)?;
        println!("{} rules loaded on {name}", parsed.len());
        return Ok(());
    }
    let name = args.iface.name()?;
    let att = attachment::open_existing(&name)?;
    let list = rules::list(&att)?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"schema": 1, "iface": name, "rules": list})
        );
        return Ok(());
    }
    let mut out = format!(
        "{:<6} {:<44} {:<4} {:>12} {:>15}\n",
        "rule", "prefix", "dir", "packets", "bytes"
    );
    for e in &list {
        let _ = writeln!(
            out,
            "{:<6} {:<44} {:<4} {:>12} {:>15}",
            e.rule.verdict.as_str(),
            e.rule.cidr.to_string(),
            if e.rule.dir == Direction::Dst {
                "dst"
            } else {
                "src"
            },
            e.packets,
            e.bytes
        );
    }
    print!("{out}");
    Ok(())
}
