//! XDP firewall and statistics: CIDR block/allow rules in LPM tries, per-rule counters, top
//! talkers and per-action counters of the `mapscope_xdp` program.
//!
//! Library API (used by the CLI and by the agent):
//! - [`attachment`]: `attach`, `open_existing`, `detach`, `status` of a pinned attachment that
//!   outlives the process, under `/sys/fs/bpf/mapscope/xdp/<ifname>/`;
//! - [`rules`]: `add`, `del`, `list`, `load` on such an attachment (serialised by its lock);
//! - [`snapshot::read`] → [`XdpSnapshot`], the one value every output renders;
//! - [`XdpStats`]: an attachment for the lifetime of the caller (no pins), as `xdp stats` uses
//!   on an interface without a pinned attachment.

pub mod attachment;
pub mod error;
pub mod hook;
pub mod maps;
pub mod report;
pub mod rules;
pub mod snapshot;
pub mod talkers;

use aya::{
    Ebpf,
    programs::{Xdp, XdpMode, xdp::XdpLinkId},
};
use mapscope_common::xdp::{
    MAP_DST4, MAP_DST4_HOST, MAP_DST6, MAP_DST6_HOST, MAP_RULE_STATS, MAP_SRC4, MAP_SRC4_HOST,
    MAP_SRC6, MAP_SRC6_HOST, MAP_TALKERS, MAP_TALKERS4, StatsRecord, XDP_ACTION_MAX,
};

pub use self::{
    error::{XdpError, XdpResult},
    maps::{Capacity, XdpMaps},
    snapshot::XdpSnapshot,
};
use crate::{Error, iface::Interface, loader, requirements::Requirement};

const PROGRAM: &str = "mapscope_xdp";

/// Where the XDP program runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AttachMode {
    /// Generic XDP in the kernel stack: works on every interface (the safe default).
    #[default]
    Skb,
    /// Native XDP in the driver: faster, but only where the driver supports it.
    Native,
}

impl AttachMode {
    fn aya(self) -> XdpMode {
        match self {
            AttachMode::Skb => XdpMode::Skb,
            AttachMode::Native => XdpMode::Driver,
        }
    }

    /// Name as the CLI and JSON spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            AttachMode::Skb => "skb",
            AttachMode::Native => "native",
        }
    }
}

/// Counters of every action, indexed by `XdpAction as usize`.
pub type ActionRecords = [StatsRecord; XDP_ACTION_MAX as usize];

/// Loads the firewall object with the capacities applied (maps created, program not loaded).
pub(crate) fn load(cap: Capacity) -> XdpResult<Ebpf> {
    Ok(loader::load_with(
        loader::Family::Xdp,
        &[Requirement::BpfPrivileges, Requirement::NetAdmin],
        |l| {
            for name in [
                MAP_SRC4,
                MAP_DST4,
                MAP_SRC6,
                MAP_DST6,
                MAP_SRC4_HOST,
                MAP_DST4_HOST,
                MAP_SRC6_HOST,
                MAP_DST6_HOST,
            ] {
                l.map_max_entries(name, cap.rules);
            }
            l.map_max_entries(MAP_RULE_STATS, cap.rules.saturating_mul(4));
            l.map_max_entries(MAP_TALKERS, cap.talkers);
            l.map_max_entries(MAP_TALKERS4, cap.talkers);
        },
    )?)
}

/// Loads the program and attaches it to `iface`, refusing to replace another XDP program.
pub(crate) fn attach_program(
    ebpf: &mut Ebpf,
    iface: &Interface,
    mode: AttachMode,
) -> XdpResult<XdpLinkId> {
    let prog: &mut Xdp = loader::program_mut(ebpf, PROGRAM)?;
    prog.load().map_err(|source| Error::Program {
        name: PROGRAM,
        source,
    })?;
    prog.attach_to_if_index(iface.index, mode.aya())
        .map_err(|source| attach_error(iface, mode, source))
}

/// The firewall attached for the lifetime of this value (no pins, no rules unless added through
/// [`XdpStats::maps_mut`]); dropping it detaches the program.
pub struct XdpStats {
    // Owns the link: aya detaches the program when this is dropped.
    _ebpf: Ebpf,
    maps: XdpMaps,
    iface: Interface,
    mode: AttachMode,
}

impl XdpStats {
    /// Loads and attaches the program to `iface` (in the caller's network namespace).
    ///
    /// Refuses to replace a program already attached to the interface.
    pub fn attach(iface: &Interface, mode: AttachMode) -> XdpResult<Self> {
        let mut ebpf = load(Capacity::default())?;
        attach_program(&mut ebpf, iface, mode)?;
        let maps = XdpMaps::take(&mut ebpf)?;
        Ok(Self {
            _ebpf: ebpf,
            maps,
            iface: iface.clone(),
            mode,
        })
    }

    /// The interface the program is attached to.
    pub fn interface(&self) -> &Interface {
        &self.iface
    }

    /// The mode it was attached in.
    pub fn mode(&self) -> AttachMode {
        self.mode
    }

    /// The program's maps.
    pub fn maps(&self) -> &XdpMaps {
        &self.maps
    }

    /// Reads every map now.
    pub fn snapshot(&self) -> XdpResult<XdpSnapshot> {
        snapshot::read(&self.maps)
    }
}

/// Sums per-CPU records; wrapping because the kernel counters themselves wrap.
pub fn sum<'a>(records: impl Iterator<Item = &'a StatsRecord>) -> StatsRecord {
    records.fold(StatsRecord::default(), |acc, r| StatsRecord {
        packets: acc.packets.wrapping_add(r.packets),
        bytes: acc.bytes.wrapping_add(r.bytes),
    })
}

/// Turns the kernel's errno into the message a user can act on.
fn attach_error(
    iface: &Interface,
    mode: AttachMode,
    source: aya::programs::ProgramError,
) -> XdpError {
    match crate::error::os_error(&source) {
        // EBUSY: a link already owns the hook; EEXIST: a netlink-attached program is there.
        Some(libc::EBUSY | libc::EEXIST) => hook::busy(&iface.name, iface.index),
        Some(libc::EOPNOTSUPP | libc::EINVAL) if mode == AttachMode::Native => {
            Error::XdpNativeUnsupported {
                iface: iface.name.clone(),
            }
            .into()
        }
        Some(libc::EPERM) => Error::Privileges {
            missing: "CAP_NET_ADMIN (attach failed with EPERM)".to_string(),
        }
        .into(),
        _ => Error::Program {
            name: PROGRAM,
            source,
        }
        .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_per_cpu_records() {
        let recs = [
            StatsRecord {
                packets: 1,
                bytes: 100,
            },
            StatsRecord {
                packets: 2,
                bytes: 50,
            },
        ];
        assert_eq!(
            sum(recs.iter()),
            StatsRecord {
                packets: 3,
                bytes: 150
            }
        );
    }
}
