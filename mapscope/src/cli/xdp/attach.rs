//! `mapscope xdp attach` / `xdp detach`: the pinned attachment's lifecycle.

use clap::Args;
use mapscope::{
    iface::Interface,
    xdp::{
        AttachMode, Capacity,
        attachment::{self, AttachOptions},
        rules,
    },
};

use super::IfaceArg;

#[derive(Debug, Args)]
pub struct AttachArgs {
    #[command(flatten)]
    iface: IfaceArg,
    /// skb (generic, works everywhere) or native (in the driver, needs driver support).
    #[arg(long, value_enum, default_value_t = AttachMode::Skb)]
    mode: AttachMode,
    /// Rules file to apply right after attaching (`block 10.0.0.0/8`, `allow 2001:db8::/48 dst`).
    #[arg(long)]
    rules: Option<std::path::PathBuf>,
    /// Capacity of the top-talkers LRU (sources tracked).
    #[arg(long, default_value_t = Capacity::default().talkers)]
    talkers: u32,
    /// Capacity of each of the four rule tries (IPv4/IPv6 × source/destination).
    #[arg(long, default_value_t = Capacity::default().rules)]
    rules_capacity: u32,
}

#[derive(Debug, Args)]
pub struct DetachArgs {
    #[command(flatten)]
    iface: IfaceArg,
}

pub fn attach(args: AttachArgs) -> anyhow::Result<()> {
    // A bad rules file is refused before anything is attached.
    let parsed = args.rules.as_deref().map(rules::parse_file).transpose()?;
    let iface = Interface::resolve(Some(&args.iface.name()?))?;
    let mut att = attachment::attach(
        &iface,
        AttachOptions {
            mode: args.mode,
            capacity: Capacity {
                rules: args.rules_capacity,
                talkers: args.talkers,
            },
        },
    )?;
    if let Some(parsed) = parsed
        && let Err(e) = rules::load(&mut att, &parsed)
    {
        let _ = attachment::detach(&iface.name);
        return Err(e.into());
    }
    println!(
        "attached to {} ({} mode), program id {}, pinned in {}",
        iface.name,
        args.mode.as_str(),
        att.prog_id,
        att.dir.display()
    );
    Ok(())
}

pub fn detach(args: DetachArgs) -> anyhow::Result<()> {
    let name = args.iface.name()?;
    attachment::detach(&name)?;
    println!(
        "detached from {name}; removed {}",
        attachment::pin_dir(&name).display()
    );
    Ok(())
}
