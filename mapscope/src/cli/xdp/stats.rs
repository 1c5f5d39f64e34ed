//! `mapscope xdp stats`: live per-action statistics, rule counters and top talkers of one
//! interface, from its pinned attachment or from one attached for this run.

use anyhow::Context as _;
use clap::Args;
use mapscope::{
    iface::Interface,
    xdp::{
        AttachMode, XdpError, XdpStats, attachment,
        report::{Interval, MapChoice},
        snapshot,
    },
};

use crate::cli::{schedule::ScheduleArgs, shutdown::Shutdown};

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Interface to attach to [default: the interface of the default route].
    #[arg(long, short)]
    iface: Option<String>,
    /// skb (generic, works everywhere) or native (in the driver, needs driver support); only
    /// used where there is no pinned attachment.
    #[arg(long, value_enum, default_value_t = AttachMode::Skb)]
    mode: AttachMode,
    /// Which map the table shows: the atomic Array or the summed PerCpuArray.
    #[arg(long, value_enum, default_value_t = MapChoice::Array)]
    map: MapChoice,
    /// One JSON object per interval (both maps) instead of a table.
    #[arg(long)]
    json: bool,
    /// How many top talkers (by bytes over the interval) to show.
    #[arg(long, default_value_t = 10)]
    top: usize,
    #[command(flatten)]
    every: ScheduleArgs,
}

/// Where the counters come from.
enum Source {
    /// `xdp attach` made it; it stays after this view.
    Pinned(attachment::Attachment),
    /// Attached by this view; detached when it is dropped.
    Lifetime(XdpStats),
}

impl Source {
    fn snapshot(&self) -> Result<snapshot::XdpSnapshot, XdpError> {
        match self {
            Source::Pinned(a) => snapshot::read(&a.maps),
            Source::Lifetime(s) => s.snapshot(),
        }
    }

    /// Whether the interface (and, when pinned, the link) is still there.
    fn alive(&self, iface: &Interface) -> bool {
        match self {
            Source::Pinned(a) => a.still_attached(),
            Source::Lifetime(_) => {
                Interface::resolve(Some(&iface.name)).is_ok_and(|i| i.index == iface.index)
            }
        }
    }
}

pub async fn run(args: StatsArgs) -> anyhow::Result<()> {
    let schedule = args.every.schedule()?;
    let iface = Interface::resolve(args.iface.as_deref())?;
    let mut shutdown = Shutdown::install()?;
    let source = if attachment::pin_dir(&iface.name).exists() {
        Source::Pinned(attachment::open_existing(&iface.name)?)
    } else {
        Source::Lifetime(
            XdpStats::attach(&iface, args.mode)
                .with_context(|| format!("attaching XDP to {}", iface.name))?,
        )
    };
    let (mode, kind) = match &source {
        Source::Pinned(a) => (a.mode().as_str(), "pinned"),
        Source::Lifetime(_) => (args.mode.as_str(), "lifetime"),
    };
    if !args.json {
        match &source {
            Source::Pinned(a) => eprintln!(
                "mapscope: reading the pinned attachment on {} ({} mode, {}); Ctrl-C to stop",
                iface.name,
                mode,
                a.dir.display()
            ),
            Source::Lifetime(_) => eprintln!(
                "mapscope: counting XDP actions on {} ({} mode); Ctrl-C to stop",
                iface.name, mode
            ),
        }
    }

    schedule
        .print_deltas(
            &mut shutdown,
            || {
                if !source.alive(&iface) {
                    return Err(XdpError::InterfaceGone {
                        iface: iface.name.clone(),
                    }
                    .into());
                }
                Ok(source.snapshot()?)
            },
            |prev, cur| {
                let mut report = Interval::between(&iface.name, mode, prev, cur, args.top);
                report.attachment = kind;
                if args.json {
                    report.json().to_string()
                } else {
                    report.table(args.map)
                }
            },
        )
        .await?;
    // Dropping a lifetime source detaches the program before we return.
    drop(source);
    Ok(())
}
