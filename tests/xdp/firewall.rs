//! The firewall's kernel side through the library: exact per-rule, per-action and per-source
//! counts for raw frames (IPv4, IPv6, 802.1Q and 802.1ad tags), an allow-hole, and LRU eviction.

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use mapscope::{
    iface::Interface,
    xdp::{
        AttachMode, Capacity, XdpSnapshot,
        attachment::{self, AttachOptions, Attachment},
        rules::{self, Cidr, Direction, Rule, Verdict},
        snapshot,
    },
};
use mapscope_common::xdp::{StatsRecord, XdpAction};

use crate::{
    frames::{ip, times, udp},
    harness::{NetnsPair, wait_until},
};

/// Removes a pinned attachment even when the test panics.
pub struct Detach(pub String);

impl Drop for Detach {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(attachment::pin_dir(&self.0));
    }
}

fn attach(pair: &NetnsPair, capacity: Capacity) -> (Attachment, Detach) {
    let guard = Detach(pair.rx_iface.clone());
    let att = pair.in_rx(|| {
        let iface = Interface::resolve(Some(&pair.rx_iface)).unwrap();
        attachment::attach(
            &iface,
            AttachOptions {
                mode: AttachMode::Skb,
                capacity,
            },
        )
        .expect("attach")
    });
    (att, guard)
}

fn rule(verdict: Verdict, cidr: &str, dir: Direction) -> Rule {
    Rule {
        verdict,
        cidr: cidr.parse::<Cidr>().unwrap(),
        dir,
    }
}

/// Waits until both stats maps together count `n` packets, then a little longer so a surplus
/// would show.
fn settle(att: &Attachment, n: u64) -> XdpSnapshot {
    let total = |s: &XdpSnapshot| s.array.iter().map(|r| r.packets).sum::<u64>();
    let ok = wait_until(Duration::from_secs(5), || {
        total(&snapshot::read(&att.maps).unwrap()) >= n
    });
    assert!(
        ok,
        "fewer than {n} packets: {:?}",
        snapshot::read(&att.maps).unwrap()
    );
    std::thread::sleep(Duration::from_millis(300));
    snapshot::read(&att.maps).unwrap()
}

fn rec(packets: u64, bytes: u64) -> StatsRecord {
    StatsRecord { packets, bytes }
}

fn assert_actions(snap: &XdpSnapshot, drop: StatsRecord, pass: StatsRecord) {
    for (map, recs) in [("array", &snap.array), ("percpu", &snap.percpu)] {
        for action in XdpAction::ALL {
            let want = match action {
                XdpAction::Drop => drop,
                XdpAction::Pass => pass,
                _ => StatsRecord::default(),
            };
            assert_eq!(recs[action as usize], want, "{map} {}", action.name());
        }
    }
}

fn rule_counts(snap: &XdpSnapshot) -> BTreeMap<String, (u64, u64)> {
    snap.rules
        .iter()
        .map(|e| (e.rule.to_string(), (e.packets, e.bytes)))
        .collect()
}

fn talker_counts(snap: &XdpSnapshot) -> BTreeMap<IpAddr, (u64, u64)> {
    snap.talkers
        .iter()
        .map(|t| (t.addr, (t.rec.packets, t.rec.bytes)))
        .collect()
}

#[test]
fn rules_drop_exactly_and_count_per_rule_per_action_and_per_source() {
    let pair = NetnsPair::with_rx_iface("fwexact", "msfw-exact");
    let (mut att, _guard) = attach(&pair, Capacity::default());
    pair.in_rx(|| {
        rules::add(
            &mut att,
            &[
                rule(Verdict::Block, "10.213.0.0/16", Direction::Src),
                rule(Verdict::Allow, "10.213.8.0/24", Direction::Src),
                rule(Verdict::Block, "fd00:213:7::/48", Direction::Src),
                rule(Verdict::Block, "10.213.99.0/24", Direction::Dst),
            ],
        )
        .unwrap()
    });
    let rx = ip("10.213.1.2");
    let rx6 = ip("fd00:213::2");
    let mut frames = Vec::new();
    frames.extend(times(udp(ip("10.213.7.1"), rx, &[], 100), 5)); // 142 B, blocked
    frames.extend(times(udp(ip("10.213.7.2"), rx, &[], 200), 3)); // 242 B, blocked
    frames.extend(times(udp(ip("10.213.8.1"), rx, &[], 100), 4)); // 142 B, allow-hole
    frames.extend(times(udp(ip("10.213.7.3"), rx, &[100], 100), 2)); // 146 B, 802.1Q, blocked
    frames.extend(times(udp(ip("10.213.7.4"), rx, &[10, 20], 50), 2)); // 100 B, QinQ, blocked
    frames.extend(times(udp(ip("fd00:213:7::1"), rx6, &[], 100), 3)); // 162 B, blocked
    frames.extend(times(udp(ip("fd00:213:9::1"), rx6, &[], 100), 4)); // 162 B, no rule
    // Inside the allow-hole, but to a blocked destination: counted by both rules, dropped.
    frames.extend(times(udp(ip("10.213.8.2"), ip("10.213.99.1"), &[], 100), 3)); // 142 B
    pair.send_frames(&frames);

    let snap = pair.in_rx(|| settle(&att, 26));
    assert_actions(&snap, rec(18, 1928 + 486 + 426), rec(8, 4 * 142 + 4 * 162));
    let want: BTreeMap<String, (u64, u64)> = [
        (
            "block 10.213.0.0/16",
            (12, 5 * 142 + 3 * 242 + 2 * 146 + 2 * 100),
        ),
        ("allow 10.213.8.0/24", (7, 7 * 142)),
        ("block fd00:213:7::/48", (3, 3 * 162)),
        ("block 10.213.99.0/24 dst", (3, 3 * 142)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(rule_counts(&snap), want);
    let talkers: BTreeMap<IpAddr, (u64, u64)> = [
        ("10.213.7.1", (5, 710)),
        ("10.213.7.2", (3, 726)),
        ("10.213.8.1", (4, 568)),
        ("10.213.7.3", (2, 292)),
        ("10.213.7.4", (2, 200)),
        ("fd00:213:7::1", (3, 486)),
        ("fd00:213:9::1", (4, 648)),
        ("10.213.8.2", (3, 426)),
    ]
    .into_iter()
    .map(|(k, v)| (ip(k), v))
    .collect();
    assert_eq!(talker_counts(&snap), talkers);
    assert_eq!(snap.errors, [0, 0]);
}

#[test]
fn lru_evicts_the_least_recently_seen_sources() {
    const CAP: u32 = 64;
    let pair = NetnsPair::with_rx_iface("fwlru", "msfw-lru");
    let (att, _guard) = attach(
        &pair,
        Capacity {
            rules: 16,
            talkers: CAP,
        },
    );
    let src = |i: u32| ip(&format!("10.213.{}.{}", 10 + i / 200, 1 + i % 200));
    let rx = ip("10.213.1.2");
    // One frame per source, oldest first; then sources 0..8 are seen again (most recent).
    let mut frames: Vec<Vec<u8>> = (0..CAP).map(|i| udp(src(i), rx, &[], 10)).collect();
    frames.extend((0..8).map(|i| udp(src(i), rx, &[], 10)));
    pair.send_frames(&frames);
    let before = pair.in_rx(|| settle(&att, u64::from(CAP) + 8));
    assert_eq!(before.talkers.len(), CAP as usize);
    // The kernel's LRU frees `target_free` entries at a time when full (min(entries / possible
    // CPUs / 2, 128)): K new sources evict exactly the K least recently seen.
    let k = (CAP / possible_cpus() / 2).clamp(1, 128);
    let extra: Vec<Vec<u8>> = (CAP..CAP + k).map(|i| udp(src(i), rx, &[], 10)).collect();
    pair.send_frames(&extra);
    let after = pair.in_rx(|| settle(&att, u64::from(CAP + 8 + k)));
    let have: std::collections::BTreeSet<IpAddr> = after.talkers.iter().map(|t| t.addr).collect();
    let gone: Vec<u32> = (0..CAP + k).filter(|&i| !have.contains(&src(i))).collect();
    eprintln!("gone: {gone:?}, {} left", have.len());
    assert_eq!(gone, (8..8 + k).collect::<Vec<_>>(), "evicted sources");
}

fn possible_cpus() -> u32 {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap();
    text.trim()
        .split(',')
        .map(|r| match r.split_once('-') {
            Some((a, b)) => b.parse::<u32>().unwrap() - a.parse::<u32>().unwrap() + 1,
            None => 1,
        })
        .sum()
}

#[test]
fn host_rules_decide_before_prefixes_in_every_direction_and_family() {
    // Host rules (/32, /128) live in hashes beside the tries; a host allow inside a blocked
    // prefix is a hole, a host block in the other direction still drops.
    let pair = NetnsPair::with_rx_iface("fwhost", "msfw-host");
    let (mut att, _guard) = attach(&pair, Capacity::default());
    pair.in_rx(|| {
        rules::add(
            &mut att,
            &[
                rule(Verdict::Block, "10.213.0.0/16", Direction::Src),
                rule(Verdict::Allow, "10.213.7.9", Direction::Src),
                rule(Verdict::Block, "10.213.99.5/32", Direction::Dst),
                rule(Verdict::Block, "fd00:213:5::1", Direction::Src),
                rule(Verdict::Block, "fd00:213:6::7/128", Direction::Dst),
            ],
        )
        .unwrap()
    });
    let rx = ip("10.213.1.2");
    let rx6 = ip("fd00:213::2");
    let mut frames = Vec::new();
    frames.extend(times(udp(ip("10.213.7.9"), rx, &[], 100), 4)); // 142 B, host hole
    frames.extend(times(udp(ip("10.213.7.8"), rx, &[], 100), 3)); // 142 B, /16 blocks
    frames.extend(times(udp(ip("10.213.7.9"), ip("10.213.99.5"), &[], 100), 2)); // hole, dst host blocks
    frames.extend(times(udp(ip("fd00:213:5::1"), rx6, &[], 100), 3)); // 162 B, src host blocks
    frames.extend(times(
        udp(ip("fd00:213:9::1"), ip("fd00:213:6::7"), &[], 100),
        2,
    )); // dst host
    frames.extend(times(udp(ip("fd00:213:9::1"), rx6, &[], 100), 1)); // no rule
    pair.send_frames(&frames);

    let snap = pair.in_rx(|| settle(&att, 15));
    assert_actions(&snap, rec(10, 5 * 142 + 5 * 162), rec(5, 4 * 142 + 162));
    let want: BTreeMap<String, (u64, u64)> = [
        ("block 10.213.0.0/16", (3, 3 * 142)),
        ("allow 10.213.7.9/32", (6, 6 * 142)),
        ("block 10.213.99.5/32 dst", (2, 2 * 142)),
        ("block fd00:213:5::1/128", (3, 3 * 162)),
        ("block fd00:213:6::7/128 dst", (2, 2 * 162)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(rule_counts(&snap), want);
    let talkers: BTreeMap<IpAddr, (u64, u64)> = [
        ("10.213.7.9", (6, 6 * 142)),
        ("10.213.7.8", (3, 3 * 142)),
        ("fd00:213:5::1", (3, 3 * 162)),
        ("fd00:213:9::1", (3, 3 * 162)),
    ]
    .into_iter()
    .map(|(k, v)| (ip(k), v))
    .collect();
    assert_eq!(talker_counts(&snap), talkers);
    assert_eq!(snap.errors, [0, 0]);

    // Without the host rules the hole is gone: the /16 decides again, nothing else matches.
    pair.in_rx(|| {
        rules::load(
            &mut att,
            &[rule(Verdict::Block, "10.213.0.0/16", Direction::Src)],
        )
        .unwrap()
    });
    pair.send_frames(&times(
        udp(ip("10.213.7.9"), ip("10.213.99.5"), &[], 100),
        2,
    ));
    pair.send_frames(&times(
        udp(ip("fd00:213:5::1"), ip("fd00:213:6::7"), &[], 100),
        1,
    ));
    let snap = pair.in_rx(|| settle(&att, 18));
    assert_actions(&snap, rec(12, 7 * 142 + 5 * 162), rec(6, 4 * 142 + 2 * 162));
    assert_eq!(
        rule_counts(&snap),
        [("block 10.213.0.0/16".to_string(), (5, 5 * 142))]
            .into_iter()
            .collect()
    );
}
