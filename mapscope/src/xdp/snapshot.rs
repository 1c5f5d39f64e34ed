//! [`XdpSnapshot`]: everything the firewall's maps hold, read at one instant. The one value the
//! CLI table, `--json` and the agent render (one code path from a map to a number).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Instant,
};

use aya::maps::{Array, HashMap, PerCpuArray};
use mapscope_common::xdp::{
    ERR_MAX, MAP_ERRORS, MAP_STATS_ARRAY, MAP_STATS_PERCPU, MAP_TALKERS, MAP_TALKERS4, StatsRecord,
    TalkerEntry, TalkerRecord, XDP_ACTION_MAX,
};

use super::{
    ActionRecords,
    error::{XdpError, XdpResult},
    maps::XdpMaps,
    rules::{self, RuleEntry},
};

/// All counters of one attachment at one instant.
#[derive(Clone, Debug)]
pub struct XdpSnapshot {
    pub at: Instant,
    /// Per-action counters from the shared `Array` (atomic adds).
    pub array: ActionRecords,
    /// Per-action counters from the `PerCpuArray`, summed over all possible CPUs.
    pub percpu: ActionRecords,
    /// Every rule with its counters.
    pub rules: Vec<RuleEntry>,
    /// Every source in the talkers LRUs (IPv4 first, then IPv6).
    pub talkers: Vec<Talker>,
    /// Kernel-side failures by `ERR_*` key, summed over CPUs.
    pub errors: [u64; ERR_MAX as usize],
}

/// One source address of the talkers LRU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Talker {
    /// From the IPv4 map (4-byte keys) or the IPv6 map (16-byte keys).
    pub addr: IpAddr,
    pub rec: TalkerRecord,
}

/// Reads every map of the firewall now.
pub fn read(maps: &XdpMaps) -> XdpResult<XdpSnapshot> {
    let array: Array<_, StatsRecord> =
        Array::try_from(maps.get(MAP_STATS_ARRAY)).map_err(XdpError::map(MAP_STATS_ARRAY))?;
    let percpu: PerCpuArray<_, StatsRecord> = PerCpuArray::try_from(maps.get(MAP_STATS_PERCPU))
        .map_err(XdpError::map(MAP_STATS_PERCPU))?;
    let at = Instant::now();
    let mut snap = XdpSnapshot {
        at,
        array: Default::default(),
        percpu: Default::default(),
        rules: Vec::new(),
        talkers: Vec::new(),
        errors: [0; ERR_MAX as usize],
    };
    for key in 0..XDP_ACTION_MAX {
        snap.array[key as usize] = array.get(&key, 0).map_err(XdpError::map(MAP_STATS_ARRAY))?;
        let per_cpu = percpu
            .get(&key, 0)
            .map_err(XdpError::map(MAP_STATS_PERCPU))?;
        snap.percpu[key as usize] = super::sum(per_cpu.iter());
    }
    snap.rules = rules::list_maps(maps)?;
    let talkers4: HashMap<_, [u8; 4], TalkerEntry> =
        HashMap::try_from(maps.get(MAP_TALKERS4)).map_err(XdpError::map(MAP_TALKERS4))?;
    // An entry evicted between the key walk and its lookup is simply not shown.
    for (key, e) in talkers4.iter().flatten() {
        snap.talkers.push(Talker {
            addr: IpAddr::V4(Ipv4Addr::from(key)),
            rec: e.rec,
        });
    }
    let talkers6: HashMap<_, [u8; 16], TalkerEntry> =
        HashMap::try_from(maps.get(MAP_TALKERS)).map_err(XdpError::map(MAP_TALKERS))?;
    for (key, e) in talkers6.iter().flatten() {
        snap.talkers.push(Talker {
            addr: IpAddr::V6(Ipv6Addr::from(key)),
            rec: e.rec,
        });
    }
    let errors: PerCpuArray<_, u64> =
        PerCpuArray::try_from(maps.get(MAP_ERRORS)).map_err(XdpError::map(MAP_ERRORS))?;
    for key in 0..ERR_MAX {
        let per_cpu = errors.get(&key, 0).map_err(XdpError::map(MAP_ERRORS))?;
        snap.errors[key as usize] = per_cpu.iter().fold(0u64, |a, n| a.wrapping_add(*n));
    }
    Ok(snap)
}
