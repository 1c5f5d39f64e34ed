//! Top talkers: ranking the sources of the talkers LRU by what they sent during an interval.
//!
//! The kernel maps are two shared `LruHashMap`s (IPv4 sources keyed by their 4 bytes, IPv6 by
//! their 16), one record per source updated in place with atomic adds. Chosen by measurement
//! through `BPF_PROG_RUN` (same object otherwise, same run, 1 000 000 repeats, IPv4 frame, no
//! rules; history in `scripts/bench/HISTORY.md`): whole program 66 ns per packet with the shared
//! map against 78 ns with `LruPerCpuHashMap` (the verifier inlines a shared LRU's lookup, the
//! per-CPU one stays a helper call), and still 70.5 against 78 ns with two CPUs hammering the same
//! source at once (the atomic adds' cache-line bouncing costs less than the call).
//! `BPF_F_NO_COMMON_LRU` gained nothing (113 against 111 ns) and would break the one LRU order
//! eviction follows. The 4-byte IPv4 key saved ≈ 18 ns over a 16-byte IPv4-mapped key, and the
//! key is read in place from the packet. The stamps are CLOCK_MONOTONIC_COARSE through a per-CPU
//! per-jiffy cache: the clock helper per packet cost ≈ 30 ns. Each record also caches the rule
//! that decided its source's packets under the current rules generation (bumped by every rule
//! change), so a known source skips the source-rule lookups (≈ 20 ns per hash or trie lookup).
//!
//! Eviction: when the map is full the kernel frees `min(entries / possible CPUs / 2, 128)`
//! least recently seen entries at once (its LRU refills a per-CPU free list in batches), so a
//! full map briefly holds fewer than `--talkers` sources (each family's map has `--talkers`
//! entries). `tests/xdp.rs` checks that exactly the least recently seen ones go.

use std::net::IpAddr;

use serde::Serialize;

use super::snapshot::Talker;

/// One source's traffic, totals and over the interval.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TalkerRate {
    pub addr: IpAddr,
    pub packets: u64,
    pub bytes: u64,
    /// Packets and bytes during the interval (all of it for a source new in the interval).
    pub interval_packets: u64,
    pub interval_bytes: u64,
    /// CLOCK_MONOTONIC_COARSE nanoseconds of the first and the latest packet.
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
}

/// The `top` sources by bytes sent between `prev` and `cur` (ties by address), busiest first.
/// A source whose first-seen time changed was evicted and re-inserted: counted from zero.
/// Takes the talkers lists of two snapshots (empty `prev`: everything is new).
pub fn top(prev: &[Talker], cur: &[Talker], top: usize) -> Vec<TalkerRate> {
    let before: std::collections::HashMap<IpAddr, &Talker> =
        prev.iter().map(|t| (t.addr, t)).collect();
    let mut rates: Vec<TalkerRate> = cur
        .iter()
        .map(|t| {
            let (p, b) = match before.get(&t.addr) {
                Some(o) if o.rec.first_seen_ns == t.rec.first_seen_ns => {
                    (o.rec.packets, o.rec.bytes)
                }
                _ => (0, 0),
            };
            TalkerRate {
                addr: t.addr,
                packets: t.rec.packets,
                bytes: t.rec.bytes,
                interval_packets: t.rec.packets.saturating_sub(p),
                interval_bytes: t.rec.bytes.saturating_sub(b),
                first_seen_ns: t.rec.first_seen_ns,
                last_seen_ns: t.rec.last_seen_ns,
            }
        })
        .collect();
    rates.sort_by(|a, b| {
        b.interval_bytes
            .cmp(&a.interval_bytes)
            .then(b.bytes.cmp(&a.bytes))
            .then(a.addr.cmp(&b.addr))
    });
    rates.truncate(top);
    rates
}

#[cfg(test)]
mod tests {
    use mapscope_common::xdp::TalkerRecord;

    use super::*;

    fn snap(talkers: &[(&str, u64, u64)]) -> Vec<Talker> {
        talkers
            .iter()
            .map(|&(a, bytes, first)| Talker {
                addr: a.parse().unwrap(),
                rec: TalkerRecord {
                    packets: bytes / 100,
                    bytes,
                    first_seen_ns: first,
                    last_seen_ns: first,
                },
            })
            .collect()
    }

    #[test]
    fn ranks_by_interval_bytes_and_restarts_evicted_sources() {
        let prev = snap(&[
            ("10.0.0.1", 10_000, 1),
            ("10.0.0.2", 500, 1),
            ("10.0.0.3", 900, 1),
        ]);
        // .1 sent nothing new; .2 sent 1000; .3 was evicted and came back with 300; .4 is new.
        let cur = snap(&[
            ("10.0.0.1", 10_000, 1),
            ("10.0.0.2", 1_500, 1),
            ("10.0.0.3", 300, 7),
            ("fd00::4", 200, 9),
        ]);
        let t = top(&prev, &cur, 3);
        let got: Vec<(String, u64)> = t
            .iter()
            .map(|r| (r.addr.to_string(), r.interval_bytes))
            .collect();
        assert_eq!(
            got,
            [
                ("10.0.0.2".into(), 1000),
                ("10.0.0.3".into(), 300),
                ("fd00::4".into(), 200)
            ]
        );
    }
}
