//! [`XdpSnapshot`]: everything the firewall's maps hold, read at one instant. The one value the
//! CLI table, `--json` and the agent render (one code path from a map to a number).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Instant,
};

use std::os::fd::AsFd as _;

use aya::maps::{Array, Map, PerCpuArray};
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
    snap.talkers = talkers(maps)?;
    let errors: PerCpuArray<_, u64> =
        PerCpuArray::try_from(maps.get(MAP_ERRORS)).map_err(XdpError::map(MAP_ERRORS))?;
    for key in 0..ERR_MAX {
        let per_cpu = errors.get(&key, 0).map_err(XdpError::map(MAP_ERRORS))?;
        snap.errors[key as usize] = per_cpu.iter().fold(0u64, |a, n| a.wrapping_add(*n));
    }
    Ok(snap)
}

/// Every source of both talkers maps (IPv4 first), read in batches: one `bpf()` call per
/// 16 384 entries rather than two per entry, and each key at most once even while the kernel
/// evicts (a `get_next_key` walk restarts from the first key when its key is evicted). The
/// agent's new-talker scan reads only this, once a second.
pub fn talkers(maps: &XdpMaps) -> XdpResult<Vec<Talker>> {
    let mut out = Vec::new();
    walk_talkers(
        maps,
        MAP_TALKERS4,
        |k: [u8; 4]| IpAddr::V4(Ipv4Addr::from(k)),
        &mut out,
    )?;
    walk_talkers(
        maps,
        MAP_TALKERS,
        |k: [u8; 16]| IpAddr::V6(Ipv6Addr::from(k)),
        &mut out,
    )?;
    Ok(out)
}

fn walk_talkers<const N: usize>(
    maps: &XdpMaps,
    name: &'static str,
    addr: impl Fn([u8; N]) -> IpAddr,
    out: &mut Vec<Talker>,
) -> XdpResult<()> {
    use crate::maps::{
        MapHandle,
        walk::{Flow, Method, walk},
    };
    let fd = match maps.get(name) {
        Map::LruHashMap(d) | Map::HashMap(d) => d.fd().as_fd().try_clone_to_owned(),
        _ => unreachable!("the talkers maps are hashes"),
    }
    .map_err(|e| XdpError::io(format!("duplicating the fd of map {name}"), e))?;
    let failed = |e: crate::maps::Error| {
        XdpError::io(
            format!("reading map {name}"),
            std::io::Error::other(e.to_string()),
        )
    };
    let handle = MapHandle::from_fd(fd).map_err(failed)?;
    walk(&handle, Method::Auto, false, |k, v| {
        if let (Ok(key), true) = (<[u8; N]>::try_from(k), v.len() >= size_of::<TalkerEntry>()) {
            // SAFETY: `v` holds at least one TalkerEntry (checked), a plain repr(C) struct of
            // integers; read_unaligned does not need the buffer's alignment.
            let e: TalkerEntry = unsafe { std::ptr::read_unaligned(v.as_ptr().cast()) };
            out.push(Talker {
                addr: addr(key),
                rec: e.rec,
            });
        }
        Ok(Flow::Continue)
    })
    .map_err(failed)?;
    Ok(())
}
