//! [`XdpSnapshot`]: everything the firewall's maps hold, read at one instant. The one value the
//! CLI table, `--json` and the agent render (one code path from a map to a number).

use std::{net::IpAddr, time::Instant};

use aya::maps::{Array, PerCpuArray, PerCpuHashMap};
use mapscope_common::xdp::{
    ERR_MAX, MAP_ERRORS, MAP_STATS_ARRAY, MAP_STATS_PERCPU, MAP_TALKERS, StatsRecord, TalkerRecord,
    XDP_ACTION_MAX,
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
    /// Every source in the talkers LRU.
    pub talkers: Vec<Talker>,
    /// Kernel-side failures by `ERR_*` key, summed over CPUs.
    pub errors: [u64; ERR_MAX as usize],
}

/// One source address of the talkers LRU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Talker {
    /// IPv4 sources are stored IPv4-mapped and shown as IPv4 here.
    pub addr: IpAddr,
    pub rec: TalkerRecord,
}

/// The 16-byte talker key as an address (IPv4-mapped keys become IPv4).
pub fn talker_addr(key: [u8; 16]) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(key);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
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
    let talkers: PerCpuHashMap<_, [u8; 16], TalkerRecord> =
        PerCpuHashMap::try_from(maps.get(MAP_TALKERS)).map_err(XdpError::map(MAP_TALKERS))?;
    for item in talkers.iter() {
        // An entry evicted between the key walk and its lookup is simply not shown.
        let Ok((key, per_cpu)) = item else { continue };
        snap.talkers.push(Talker {
            addr: talker_addr(key),
            rec: merge_cpus(per_cpu.iter()),
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

/// One source's per-CPU talker records as one: sums, earliest first and latest last seen
/// (CPUs that never saw the source hold zeros and are skipped).
pub fn merge_cpus<'a>(recs: impl Iterator<Item = &'a TalkerRecord>) -> TalkerRecord {
    recs.filter(|r| r.packets > 0)
        .fold(None::<TalkerRecord>, |acc, r| {
            Some(match acc {
                None => *r,
                Some(a) => TalkerRecord {
                    packets: a.packets.wrapping_add(r.packets),
                    bytes: a.bytes.wrapping_add(r.bytes),
                    first_seen_ns: a.first_seen_ns.min(r.first_seen_ns),
                    last_seen_ns: a.last_seen_ns.max(r.last_seen_ns),
                },
            })
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_per_cpu_talker_records() {
        let r = |packets, first, last| TalkerRecord {
            packets,
            bytes: packets * 100,
            first_seen_ns: first,
            last_seen_ns: last,
        };
        let m = merge_cpus([r(2, 50, 90), r(0, 0, 0), r(3, 10, 70)].iter());
        assert_eq!(m, r(5, 10, 90));
    }

    #[test]
    fn ipv4_mapped_keys_show_as_ipv4() {
        let mut k = [0u8; 16];
        k[10] = 0xff;
        k[11] = 0xff;
        k[12..].copy_from_slice(&[10, 213, 1, 1]);
        assert_eq!(talker_addr(k).to_string(), "10.213.1.1");
        let v6: std::net::Ipv6Addr = "fd00:213::1".parse().unwrap();
        assert_eq!(talker_addr(v6.octets()).to_string(), "fd00:213::1");
    }
}
