//! The rule maps themselves: where each rule is stored (trie or host hash), reading them back
//! with their counters, writing and removing one rule, and the counts the kernel skips by.

use std::net::IpAddr;

use aya::maps::{Array, HashMap, LpmTrie, PerCpuHashMap, PerCpuValues, lpm_trie::Key};
use mapscope_common::xdp::{
    MAP_DST4, MAP_DST4_HOST, MAP_DST6, MAP_DST6_HOST, MAP_RULE_COUNT, MAP_RULE_STATS, MAP_SRC4,
    MAP_SRC4_HOST, MAP_SRC6, MAP_SRC6_HOST, RULE_ALLOW, RULE_COUNT_DST4, RULE_COUNT_DST6,
    RULE_COUNT_SRC4, RULE_COUNT_SRC6, RULE_GENERATION, RuleCounts, RuleValue, StatsRecord,
};

use super::{Cidr, Direction, Rule, RuleEntry, Verdict, trie};
use crate::xdp::{
    attachment::Attachment,
    error::{XdpError, XdpResult},
    maps::XdpMaps,
};

/// A host rule (/32, /128) lives in the hash beside its trie: the kernel checks it first.
pub(super) fn is_host(cidr: &Cidr) -> bool {
    u32::from(cidr.len) == if cidr.addr.is_ipv4() { 32 } else { 128 }
}

/// The map a rule is stored in: its trie, or the trie's host hash.
fn map_of(cidr: &Cidr, dir: Direction) -> &'static str {
    let t = trie(cidr, dir);
    if !is_host(cidr) {
        return t;
    }
    TRIES
        .iter()
        .find(|(name, ..)| *name == t)
        .map_or(t, |(_, host, ..)| host)
}

/// The four tries with their host hashes, in `RULE_COUNT_*` order.
pub(super) const TRIES: [(&str, &str, bool, Direction); 4] = [
    (MAP_SRC4, MAP_SRC4_HOST, true, Direction::Src),
    (MAP_DST4, MAP_DST4_HOST, true, Direction::Dst),
    (MAP_SRC6, MAP_SRC6_HOST, false, Direction::Src),
    (MAP_DST6, MAP_DST6_HOST, false, Direction::Dst),
];
const _: () = assert!(
    RULE_COUNT_SRC4 == 0 && RULE_COUNT_DST4 == 1 && RULE_COUNT_SRC6 == 2 && RULE_COUNT_DST6 == 3
);

/// [`list`] on the maps themselves (a lifetime attachment has no pins).
pub fn list_maps(maps: &XdpMaps) -> XdpResult<Vec<RuleEntry>> {
    let stats: PerCpuHashMap<_, u32, StatsRecord> =
        PerCpuHashMap::try_from(maps.get(MAP_RULE_STATS)).map_err(XdpError::map(MAP_RULE_STATS))?;
    let mut out = Vec::new();
    for (name, host, v4, dir) in TRIES {
        let mut push = |addr: IpAddr, len: u32, v: RuleValue| {
            let rec = stats
                .get(&v.id, 0)
                .map(|per_cpu| crate::xdp::sum(per_cpu.iter()))
                .unwrap_or_default();
            out.push(RuleEntry {
                rule: Rule {
                    verdict: if v.action == RULE_ALLOW {
                        Verdict::Allow
                    } else {
                        Verdict::Block
                    },
                    cidr: Cidr {
                        addr,
                        len: len as u8,
                    },
                    dir,
                },
                id: v.id,
                packets: rec.packets,
                bytes: rec.bytes,
            });
        };
        if v4 {
            each_rule::<4>(maps, name, host, &mut push)?;
        } else {
            each_rule::<16>(maps, name, host, &mut push)?;
        }
    }
    out.sort_by_key(|e| e.rule);
    Ok(out)
}

/// Calls `push(address, prefix length, rule)` for every rule of one trie and its host hash
/// (`N` address bytes: 4 or 16; a host rule's length is all of them).
fn each_rule<const N: usize>(
    maps: &XdpMaps,
    trie: &'static str,
    host: &'static str,
    push: &mut impl FnMut(IpAddr, u32, RuleValue),
) -> XdpResult<()>
where
    IpAddr: From<[u8; N]>,
{
    let t: LpmTrie<_, [u8; N], RuleValue> =
        LpmTrie::try_from(maps.get(trie)).map_err(XdpError::map(trie))?;
    for item in t.iter() {
        let (k, v) = item.map_err(XdpError::map(trie))?;
        push(IpAddr::from(k.data()), k.prefix_len(), v);
    }
    let h: HashMap<_, [u8; N], RuleValue> =
        HashMap::try_from(maps.get(host)).map_err(XdpError::map(host))?;
    for item in h.iter() {
        let (k, v) = item.map_err(XdpError::map(host))?;
        push(IpAddr::from(k), 8 * N as u32, v);
    }
    Ok(())
}

/// Writes the per-map rule counts the kernel reads to skip empty maps, with the next rules
/// generation (u32::MAX, which the kernel never caches under, is skipped).
pub(super) fn set_counts(att: &mut Attachment, mut counts: RuleCounts) -> XdpResult<()> {
    let mut map: Array<_, RuleCounts> =
        Array::try_from(att.maps.get_mut(MAP_RULE_COUNT)).map_err(XdpError::map(MAP_RULE_COUNT))?;
    let now = map.get(&0, 0).map_err(XdpError::map(MAP_RULE_COUNT))?;
    counts[RULE_GENERATION] = match now[RULE_GENERATION].wrapping_add(1) {
        u32::MAX => 0,
        g => g,
    };
    map.set(0, counts, 0).map_err(XdpError::map(MAP_RULE_COUNT))
}

pub(super) fn write_rule(att: &mut Attachment, r: &Rule, id: u32) -> XdpResult<()> {
    let cpus =
        aya::util::nr_cpus().map_err(|(what, e)| XdpError::io(format!("reading {what}"), e))?;
    let mut stats: PerCpuHashMap<_, u32, StatsRecord> =
        PerCpuHashMap::try_from(att.maps.get_mut(MAP_RULE_STATS))
            .map_err(XdpError::map(MAP_RULE_STATS))?;
    let zero = PerCpuValues::try_from(vec![StatsRecord::default(); cpus])
        .map_err(|e| XdpError::io("per-CPU values", e))?;
    stats
        .insert(id, zero, 0)
        .map_err(XdpError::map(MAP_RULE_STATS))?;
    set_trie(att, r, id).inspect_err(|_| {
        let _ = remove_counter(att, id);
    })
}

pub(super) fn set_trie(att: &mut Attachment, r: &Rule, id: u32) -> XdpResult<()> {
    let name = map_of(&r.cidr, r.dir);
    let value = RuleValue {
        action: r.verdict.value(),
        id,
    };
    let len = u32::from(r.cidr.len);
    let host = is_host(&r.cidr);
    let res = match r.cidr.addr {
        IpAddr::V4(a) if host => {
            let mut h: HashMap<_, [u8; 4], RuleValue> =
                HashMap::try_from(att.maps.get_mut(name)).map_err(XdpError::map(name))?;
            h.insert(a.octets(), value, 0)
        }
        IpAddr::V6(a) if host => {
            let mut h: HashMap<_, [u8; 16], RuleValue> =
                HashMap::try_from(att.maps.get_mut(name)).map_err(XdpError::map(name))?;
            h.insert(a.octets(), value, 0)
        }
        IpAddr::V4(a) => {
            let mut t: LpmTrie<_, [u8; 4], RuleValue> =
                LpmTrie::try_from(att.maps.get_mut(name)).map_err(XdpError::map(name))?;
            t.insert(&Key::new(len, a.octets()), value, 0)
        }
        IpAddr::V6(a) => {
            let mut t: LpmTrie<_, [u8; 16], RuleValue> =
                LpmTrie::try_from(att.maps.get_mut(name)).map_err(XdpError::map(name))?;
            t.insert(&Key::new(len, a.octets()), value, 0)
        }
    };
    res.map_err(XdpError::map(name))
}

pub(super) fn remove_trie(att: &mut Attachment, r: &Rule) -> XdpResult<()> {
    let name = map_of(&r.cidr, r.dir);
    let len = u32::from(r.cidr.len);
    let host = is_host(&r.cidr);
    let res = match r.cidr.addr {
        IpAddr::V4(a) if host => {
            let mut h: HashMap<_, [u8; 4], RuleValue> =
                HashMap::try_from(att.maps.get_mut(name)).map_err(XdpError::map(name))?;
            h.remove(&a.octets())
        }
        IpAddr::V6(a) if host => {
            let mut h: HashMap<_, [u8; 16], RuleValue> =
                HashMap::try_from(att.maps.get_mut(name)).map_err(XdpError::map(name))?;
            h.remove(&a.octets())
        }
        IpAddr::V4(a) => {
            let mut t: LpmTrie<_, [u8; 4], RuleValue> =
                LpmTrie::try_from(att.maps.get_mut(name)).map_err(XdpError::map(name))?;
            t.remove(&Key::new(len, a.octets()))
        }
        IpAddr::V6(a) => {
            let mut t: LpmTrie<_, [u8; 16], RuleValue> =
                LpmTrie::try_from(att.maps.get_mut(name)).map_err(XdpError::map(name))?;
            t.remove(&Key::new(len, a.octets()))
        }
    };
    res.map_err(XdpError::map(name))
}

pub(super) fn remove_counter(att: &mut Attachment, id: u32) -> XdpResult<()> {
    let mut stats: PerCpuHashMap<_, u32, StatsRecord> =
        PerCpuHashMap::try_from(att.maps.get_mut(MAP_RULE_STATS))
            .map_err(XdpError::map(MAP_RULE_STATS))?;
    match stats.remove(&id) {
        Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        Err(e) => Err(XdpError::Map {
            name: MAP_RULE_STATS,
            source: e,
        }),
    }
}
