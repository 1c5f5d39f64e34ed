//! XDP per-action statistics: attaches `mapscope_xdp` to one interface and reads its two maps.

pub mod report;

use std::time::Instant;

use aya::{
    Ebpf,
    maps::{Array, PerCpuArray},
    programs::{Xdp, XdpMode},
};
use mapscope_common::xdp::{MAP_STATS_ARRAY, MAP_STATS_PERCPU, StatsRecord, XDP_ACTION_MAX};

use crate::{Error, Result, iface::Interface, loader, requirements::Requirement};

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

/// Both maps read at one instant.
#[derive(Clone, Copy, Debug)]
pub struct Snapshot {
    pub at: Instant,
    /// From the shared `Array` (atomic adds).
    pub array: ActionRecords,
    /// From the `PerCpuArray`, summed over all possible CPUs.
    pub percpu: ActionRecords,
}

/// An attached XDP statistics program; dropping it detaches the program.
pub struct XdpStats {
    // Owns the link: aya detaches the program when this is dropped.
    ebpf: Ebpf,
    iface: Interface,
    mode: AttachMode,
}

impl XdpStats {
    /// Loads and attaches the statistics program to `iface` (in the caller's network namespace).
    ///
    /// Refuses to replace a program already attached to the interface.
    pub fn attach(iface: &Interface, mode: AttachMode) -> Result<Self> {
        let mut ebpf = loader::load(
            loader::Family::Xdp,
            &[Requirement::BpfPrivileges, Requirement::NetAdmin],
        )?;
        let prog: &mut Xdp = loader::program_mut(&mut ebpf, PROGRAM)?;
        prog.load().map_err(|source| Error::Program {
            name: PROGRAM,
            source,
        })?;
        prog.attach_to_if_index(iface.index, mode.aya())
            .map_err(|source| attach_error(iface, mode, source))?;
        Ok(Self {
            ebpf,
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

    /// Reads both maps now.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let map_err = |name| move |source| Error::Map { name, source };
        let array: Array<_, StatsRecord> = loader::map(&self.ebpf, MAP_STATS_ARRAY)?;
        let percpu: PerCpuArray<_, StatsRecord> = loader::map(&self.ebpf, MAP_STATS_PERCPU)?;

        let at = Instant::now();
        let mut snap = Snapshot {
            at,
            array: Default::default(),
            percpu: Default::default(),
        };
        for key in 0..XDP_ACTION_MAX {
            snap.array[key as usize] = array.get(&key, 0).map_err(map_err(MAP_STATS_ARRAY))?;
            let per_cpu = percpu.get(&key, 0).map_err(map_err(MAP_STATS_PERCPU))?;
            snap.percpu[key as usize] = sum(per_cpu.iter());
        }
        Ok(snap)
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
fn attach_error(iface: &Interface, mode: AttachMode, source: aya::programs::ProgramError) -> Error {
    match crate::error::os_error(&source) {
        // EBUSY: a link already owns the hook; EEXIST: a netlink-attached program is there.
        Some(libc::EBUSY | libc::EEXIST) => Error::XdpBusy {
            iface: iface.name.clone(),
        },
        Some(libc::EOPNOTSUPP | libc::EINVAL) if mode == AttachMode::Native => {
            Error::XdpNativeUnsupported {
                iface: iface.name.clone(),
            }
        }
        Some(libc::EPERM) => Error::Privileges {
            missing: "CAP_NET_ADMIN (attach failed with EPERM)".to_string(),
        },
        _ => Error::Program {
            name: PROGRAM,
            source,
        },
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
