//! XDP firewall and statistics: CIDR block/allow rules in four LPM tries (IPv4/IPv6, source and
//! destination), per-rule per-CPU counters, an LRU of top talkers, and every packet counted under
//! the action it gets in a shared `Array` (atomic adds) and in a `PerCpuArray` (xdp-tutorial
//! basic03/basic04).
//!
//! Verdict: the source tries are consulted first, then the destination tries; in each, the
//! longest matching prefix decides. A matching `block` drops the packet and is counted; a
//! matching `allow` is counted as passed and stops the search in that direction only, so an
//! allow-hole in a blocked source range still drops packets to a blocked destination.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, xdp_action},
    helpers::bpf_ktime_get_coarse_ns,
    macros::{map, xdp},
    maps::{Array, LpmTrie, LruPerCpuHashMap, PerCpuArray, PerCpuHashMap, lpm_trie::Key},
    programs::XdpContext,
};
use mapscope_common::xdp::{
    DEFAULT_RULE_CAPACITY, DEFAULT_TALKER_CAPACITY, ERR_MAX, ERR_RULE_STATS_MISSING,
    ERR_TALKER_INSERT, RULE_BLOCK, RuleValue, StatsRecord, TalkerRecord, XDP_ACTION_MAX, XdpMeta,
};
use mapscope_ebpf::counter::atomic_add;

/// One record per action shared by all CPUs; correct only because updates are atomic.
#[map(name = "XDP_STATS_ARR")]
static XDP_STATS_ARR: Array<StatsRecord> = Array::with_max_entries(XDP_ACTION_MAX, 0);

/// One record per action per CPU: plain adds, no cache-line bouncing; user space sums the CPUs.
#[map(name = "XDP_STATS_PCPU")]
static XDP_STATS_PCPU: PerCpuArray<StatsRecord> = PerCpuArray::with_max_entries(XDP_ACTION_MAX, 0);

// LPM tries must not be preallocated (the kernel refuses them otherwise). Sizes are defaults;
// user space sets them at load from `--rules-capacity`.
#[map(name = "XDP_SRC4")]
static XDP_SRC4: LpmTrie<[u8; 4], RuleValue> =
    LpmTrie::with_max_entries(DEFAULT_RULE_CAPACITY, BPF_F_NO_PREALLOC);
#[map(name = "XDP_DST4")]
static XDP_DST4: LpmTrie<[u8; 4], RuleValue> =
    LpmTrie::with_max_entries(DEFAULT_RULE_CAPACITY, BPF_F_NO_PREALLOC);
#[map(name = "XDP_SRC6")]
static XDP_SRC6: LpmTrie<[u8; 16], RuleValue> =
    LpmTrie::with_max_entries(DEFAULT_RULE_CAPACITY, BPF_F_NO_PREALLOC);
#[map(name = "XDP_DST6")]
static XDP_DST6: LpmTrie<[u8; 16], RuleValue> =
    LpmTrie::with_max_entries(DEFAULT_RULE_CAPACITY, BPF_F_NO_PREALLOC);

/// Per-rule counters, per CPU (no shared cache line on the drop path). Not preallocated: memory
/// follows the rules present, not 4 × capacity × CPUs. User space inserts a rule's zeroed record
/// before the rule and deletes it after, so the program only ever updates in place.
#[map(name = "XDP_RULE_STATS")]
static XDP_RULE_STATS: PerCpuHashMap<u32, StatsRecord> =
    PerCpuHashMap::with_max_entries(4 * DEFAULT_RULE_CAPACITY, BPF_F_NO_PREALLOC);

/// Top talkers: one entry per source on a common LRU list, one value per CPU (plain adds, no
/// atomics; measured in `mapscope::xdp::talkers`).
#[map(name = "XDP_TALKERS")]
static XDP_TALKERS: LruPerCpuHashMap<[u8; 16], TalkerRecord> =
    LruPerCpuHashMap::with_max_entries(DEFAULT_TALKER_CAPACITY, 0);

/// Layout marker of a pinned attachment; written by user space, never read here.
#[map(name = "XDP_META")]
static XDP_META: Array<XdpMeta> = Array::with_max_entries(1, 0);

/// Kernel-side failures, per CPU, keyed by `ERR_*`.
#[map(name = "XDP_ERRORS")]
static XDP_ERRORS: PerCpuArray<u64> = PerCpuArray::with_max_entries(ERR_MAX, 0);

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

#[xdp]
pub fn mapscope_xdp(ctx: XdpContext) -> u32 {
    let verdict = filter(&ctx);
    record(&ctx, verdict)
}

/// Parses Ethernet, up to two VLAN tags and the fixed IPv4/IPv6 header; non-IP and truncated
/// frames pass.
#[inline(always)]
fn filter(ctx: &XdpContext) -> u32 {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + ETH_HLEN > end {
        return xdp_action::XDP_PASS;
    }
    let mut proto = read_be16(start + 12);
    let mut off = ETH_HLEN;
    // Two unrolled steps: 802.1ad outer tag, then 802.1Q inner tag (or one of either).
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        if start + off + 4 > end {
            return xdp_action::XDP_PASS;
        }
        proto = read_be16(start + off + 2);
        off += 4;
        if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
            if start + off + 4 > end {
                return xdp_action::XDP_PASS;
            }
            proto = read_be16(start + off + 2);
            off += 4;
        }
    }
    let bytes = (end - start) as u64;
    let l3 = start + off;
    if proto == ETH_P_IP {
        if l3 + 20 > end {
            return xdp_action::XDP_PASS;
        }
        // SAFETY: l3 + 20 <= data_end was checked above.
        let (src, dst) = unsafe {
            (
                *((l3 + 12) as *const [u8; 4]),
                *((l3 + 16) as *const [u8; 4]),
            )
        };
        let mut mapped = [0u8; 16];
        mapped[10] = 0xff;
        mapped[11] = 0xff;
        mapped[12..].copy_from_slice(&src);
        talk(&mapped, bytes);
        verdict(
            XDP_SRC4.get(Key::new(32, src)),
            XDP_DST4.get(Key::new(32, dst)),
            bytes,
        )
    } else if proto == ETH_P_IPV6 {
        if l3 + 40 > end {
            return xdp_action::XDP_PASS;
        }
        // SAFETY: l3 + 40 <= data_end was checked above.
        let (src, dst) = unsafe {
            (
                *((l3 + 8) as *const [u8; 16]),
                *((l3 + 24) as *const [u8; 16]),
            )
        };
        talk(&src, bytes);
        verdict(
            XDP_SRC6.get(Key::new(128, src)),
            XDP_DST6.get(Key::new(128, dst)),
            bytes,
        )
    } else {
        xdp_action::XDP_PASS
    }
}

/// A network-order u16 at `at` (bounds already checked by the caller).
#[inline(always)]
fn read_be16(at: usize) -> u16 {
    // SAFETY: the caller checked that two bytes at `at` lie inside the packet.
    u16::from_be(unsafe { core::ptr::read_unaligned(at as *const u16) })
}

/// Source rule first, then destination; counts the deciding rules.
#[inline(always)]
fn verdict(src: Option<&RuleValue>, dst: Option<&RuleValue>, bytes: u64) -> u32 {
    if let Some(rule) = src {
        count_rule(rule.id, bytes);
        if rule.action == RULE_BLOCK {
            return xdp_action::XDP_DROP;
        }
    }
    if let Some(rule) = dst {
        count_rule(rule.id, bytes);
        if rule.action == RULE_BLOCK {
            return xdp_action::XDP_DROP;
        }
    }
    xdp_action::XDP_PASS
}

#[inline(always)]
fn count_rule(id: u32, bytes: u64) {
    match XDP_RULE_STATS.get_ptr_mut(id) {
        // SAFETY: per-CPU value from a successful lookup; XDP does not nest on one CPU.
        Some(rec) => unsafe {
            (*rec).packets += 1;
            (*rec).bytes += bytes;
        },
        None => count_error(ERR_RULE_STATS_MISSING),
    }
}

/// Adds the packet to its source's talker record on this CPU, creating it (the LRU evicts the
/// least recently used source when full). Times are CLOCK_MONOTONIC_COARSE: a clock read per
/// packet at tick resolution costs a fraction of a precise one, and "seen" needs no better.
#[inline(always)]
fn talk(src: &[u8; 16], bytes: u64) {
    // SAFETY: bpf_ktime_get_coarse_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    if let Some(rec) = XDP_TALKERS.get_ptr_mut(src) {
        // SAFETY: this CPU's value from a successful lookup; XDP does not nest on one CPU.
        unsafe {
            if (*rec).packets == 0 {
                // The source was seen on other CPUs only: this CPU's slot starts now.
                (*rec).first_seen_ns = now;
            }
            (*rec).packets += 1;
            (*rec).bytes += bytes;
            (*rec).last_seen_ns = now;
        }
        return;
    }
    let rec = TalkerRecord {
        packets: 1,
        bytes,
        first_seen_ns: now,
        last_seen_ns: now,
    };
    // BPF_ANY: a racing insert of the same source on another CPU only set that CPU's slot.
    if XDP_TALKERS.insert(src, rec, 0).is_err() {
        count_error(ERR_TALKER_INSERT);
    }
}

#[inline(always)]
fn count_error(key: u32) {
    if let Some(n) = XDP_ERRORS.get_ptr_mut(key) {
        // SAFETY: per-CPU value from a successful lookup.
        unsafe { *n += 1 };
    }
}

/// Counts the frame under `action` in both maps and returns `action`.
#[inline(always)]
fn record(ctx: &XdpContext, action: u32) -> u32 {
    // Frame length as xdp_stats counts it: Ethernet header included, FCS excluded.
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    if let Some(rec) = XDP_STATS_ARR.get_ptr_mut(action) {
        // SAFETY: the pointer comes from a successful map lookup and stays valid while we run.
        unsafe {
            atomic_add(&raw mut (*rec).packets, 1);
            atomic_add(&raw mut (*rec).bytes, bytes);
        }
    }
    if let Some(rec) = XDP_STATS_PCPU.get_ptr_mut(action) {
        // SAFETY: per-CPU value; no other CPU writes it and XDP does not nest on one CPU.
        unsafe {
            (*rec).packets += 1;
            (*rec).bytes += bytes;
        }
    }
    action
}

mapscope_ebpf::license!();
