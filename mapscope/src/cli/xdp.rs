//! `mapscope xdp …`: the XDP firewall (pinned attachment, rules) and its statistics view.

mod attach;
mod rules;
mod stats;
mod status;

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum XdpCommand {
    /// Per-action packets, pps, bytes and Mbit/s, rule drops and top talkers; reads a pinned
    /// attachment, or attaches for its own lifetime where there is none.
    Stats(stats::StatsArgs),
    /// Attach the firewall and pin it under /sys/fs/bpf/mapscope/xdp/IFACE; it keeps running
    /// after mapscope exits.
    Attach(attach::AttachArgs),
    /// Remove a pinned attachment and every pin it made.
    Detach(attach::DetachArgs),
    /// List pinned attachments (stale ones with the command that removes them).
    Status(status::StatusArgs),
    /// Add or delete block rules (CIDR prefixes whose packets are dropped).
    #[command(subcommand)]
    Block(rules::EditCommand),
    /// Add or delete allow rules (holes in wider block rules).
    #[command(subcommand)]
    Allow(rules::EditCommand),
    /// Show the rules with their counters, or replace them from a file (`rules load FILE`).
    Rules(rules::RulesArgs),
}

/// `--iface`, defaulting as for `xdp stats`.
#[derive(Debug, Args)]
pub struct IfaceArg {
    /// Interface [default: the interface of the default route].
    #[arg(long, short)]
    iface: Option<String>,
}

impl IfaceArg {
    /// The interface name (resolved through the default route when not given).
    fn name(&self) -> anyhow::Result<String> {
        Ok(match &self.iface {
            Some(n) => n.clone(),
            None => mapscope::iface::default_route_interface()?,
        })
    }
}

pub async fn run(cmd: XdpCommand) -> anyhow::Result<()> {
    match cmd {
        XdpCommand::Stats(args) => stats::run(args).await,
        XdpCommand::Attach(args) => attach::attach(args),
        XdpCommand::Detach(args) => attach::detach(args),
        XdpCommand::Status(args) => status::run(args),
        XdpCommand::Block(cmd) => rules::edit(mapscope::xdp::rules::Verdict::Block, cmd),
        XdpCommand::Allow(cmd) => rules::edit(mapscope::xdp::rules::Verdict::Allow, cmd),
        XdpCommand::Rules(args) => rules::run(args),
    }
}
