//! XDP firewall and statistics: CIDR block/allow rules in four LPM tries (IPv4/IPv6, source and
//! destination), per-rule per-CPU counters, an LRU of top talkers, and every packet counted under
//! the action it gets in a shared `Array` (atomic adds) and in a `PerCpuArray` (xdp-tutorial
//! basic03/basic04).
//!
//! Per-packet cost (measured through `BPF_PROG_RUN`, `scripts/bench/xdp-filter.sh`, history in
//! `scripts/bench/HISTORY.md`): a map known empty from `XDP_RULE_COUNT` is not looked up, host
//! rules are a hash lookup before any trie walk, the talker update is one inlined shared-LRU
//! lookup plus two atomic adds in place (IPv4 keyed by its 4 bytes) and its record caches the
//! source's rule for the current rules generation (a known source makes no source lookup), and
//! the clock helper runs once per jiffy per CPU, not per packet.
//!
//! Verdict: the source tries are consulted first, then the destination tries; in each, the
//! longest matching prefix decides. A matching `block` drops the packet and is counted; a
//! matching `allow` is counted as passed and stops the search in that direction only, so an
//! allow-hole in a blocked source range still drops packets to a blocked destination.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_NOEXIST, xdp_action},
    helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns},
    macros::{map, xdp},
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, PerCpuHashMap, lpm_trie::Key},
    programs::XdpContext,
};
use mapscope_common::xdp::{
    DEFAULT_RULE_CAPACITY, DEFAULT_TALKER_CAPACITY, ERR_MAX, ERR_RULE_STATS_MISSING,
    ERR_TALKER_INSERT, RULE_ALLOW, RULE_BLOCK, RULE_COUNT_DST4, RULE_COUNT_DST6, RULE_COUNT_HOSTS,
    RULE_COUNT_SRC4, RULE_COUNT_SRC6, RULE_GENERATION, RuleCounts, RuleValue, StatsRecord,
    TalkerEntry, TalkerRecord, XDP_ACTION_MAX, XdpMeta,
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

// Host rules (/32, /128) live in hashes beside the tries: an exact match is the longest prefix
// there is, and a hash lookup (inlined by the verifier, key read in place from the packet) costs
// a fraction of a trie walk. Blocklists are mostly single addresses.
#[map(name = "XDP_SRC4_HOST")]
static XDP_SRC4_HOST: HashMap<[u8; 4], RuleValue> =
    HashMap::with_max_entries(DEFAULT_RULE_CAPACITY, BPF_F_NO_PREALLOC);
#[map(name = "XDP_DST4_HOST")]
static XDP_DST4_HOST: HashMap<[u8; 4], RuleValue> =
    HashMap::with_max_entries(DEFAULT_RULE_CAPACITY, BPF_F_NO_PREALLOC);
#[map(name = "XDP_SRC6_HOST")]
static XDP_SRC6_HOST: HashMap<[u8; 16], RuleValue> =
    HashMap::with_max_entries(DEFAULT_RULE_CAPACITY, BPF_F_NO_PREALLOC);
#[map(name = "XDP_DST6_HOST")]
static XDP_DST6_HOST: HashMap<[u8; 16], RuleValue> =
    HashMap::with_max_entries(DEFAULT_RULE_CAPACITY, BPF_F_NO_PREALLOC);

/// Per-rule counters, per CPU (no shared cache line on the drop path). Not preallocated: memory
/// follows the rules present, not 4 × capacity × CPUs. User space inserts a rule's zeroed record
/// before the rule and deletes it after, so the program only ever updates in place.
#[map(name = "XDP_RULE_STATS")]
static XDP_RULE_STATS: PerCpuHashMap<u32, StatsRecord> =
    PerCpuHashMap::with_max_entries(4 * DEFAULT_RULE_CAPACITY, BPF_F_NO_PREALLOC);

/// Rules per trie and per host hash (`RULE_COUNT_*` index the value): a map counted empty is not
/// looked up. User space raises a count before inserting rules and lowers it after deleting them,
/// so a count is never below what its map holds.
#[map(name = "XDP_RULE_COUNT")]
static XDP_RULE_COUNT: Array<RuleCounts> = Array::with_max_entries(1, 0);

/// Top talkers of IPv6 sources: one shared record per source, atomic adds (the shared LRU's
/// lookup is inlined by the verifier, the per-CPU one is a call; measured in
/// `mapscope::xdp::talkers`).
#[map(name = "XDP_TALKERS")]
static XDP_TALKERS: LruHashMap<[u8; 16], TalkerEntry> =
    LruHashMap::with_max_entries(DEFAULT_TALKER_CAPACITY, 0);

/// Top talkers of IPv4 sources, keyed by the 4 address bytes: hashing and comparing a 4-byte key
/// instead of a 16-byte IPv4-mapped one measured ≈ 18 ns less per packet.
#[map(name = "XDP_TALKERS4")]
static XDP_TALKERS4: LruHashMap<[u8; 4], TalkerEntry> =
    LruHashMap::with_max_entries(DEFAULT_TALKER_CAPACITY, 0);

/// This CPU's last (jiffies, CLOCK_MONOTONIC_COARSE ns): the clock helper is called only when
/// jiffies (an inlined load) moved. The coarse clock only moves on a tick, so the stamps are the
/// same as calling it per packet, at ≈ 1 ns instead of ≈ 30.
#[map(name = "XDP_CLOCK")]
static XDP_CLOCK: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(1, 0);

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
        // Addresses are read in place from the packet (helpers take packet pointers as keys):
        // no copy to the stack unless a trie needs its key.
        // SAFETY: l3 + 20 <= data_end was checked above; [u8; 4] has alignment 1.
        let (src, dst) = unsafe {
            (
                &*((l3 + 12) as *const [u8; 4]),
                &*((l3 + 16) as *const [u8; 4]),
            )
        };
        let n = rule_counts();
        let src_rule = talk(&XDP_TALKERS4, src, bytes, n[RULE_GENERATION], || {
            rule(&XDP_SRC4_HOST, &XDP_SRC4, &n, RULE_COUNT_SRC4, src)
        });
        verdict(
            src_rule,
            rule(&XDP_DST4_HOST, &XDP_DST4, &n, RULE_COUNT_DST4, dst),
            bytes,
        )
    } else if proto == ETH_P_IPV6 {
        if l3 + 40 > end {
            return xdp_action::XDP_PASS;
        }
        // SAFETY: l3 + 40 <= data_end was checked above; [u8; 16] has alignment 1.
        let (src, dst) = unsafe {
            (
                &*((l3 + 8) as *const [u8; 16]),
                &*((l3 + 24) as *const [u8; 16]),
            )
        };
        let n = rule_counts();
        let src_rule = talk(&XDP_TALKERS, src, bytes, n[RULE_GENERATION], || {
            rule(&XDP_SRC6_HOST, &XDP_SRC6, &n, RULE_COUNT_SRC6, src)
        });
        verdict(
            src_rule,
            rule(&XDP_DST6_HOST, &XDP_DST6, &n, RULE_COUNT_DST6, dst),
            bytes,
        )
    } else {
        xdp_action::XDP_PASS
    }
}

/// Rules per map; a missing entry (never: an array's one slot always exists) looks up every map.
#[inline(always)]
fn rule_counts() -> RuleCounts {
    match XDP_RULE_COUNT.get(0) {
        Some(c) => *c,
        // Every map looked up; generation u32::MAX is never cached (see `talk`).
        None => [u32::MAX; 10],
    }
}

/// The rule deciding `addr` in one direction (trie index `t`): its host rule if there is one
/// (the longest prefix possible), else the trie's longest matching prefix.
#[inline(always)]
fn rule<const N: usize>(
    hosts: &'static HashMap<[u8; N], RuleValue>,
    trie: &'static LpmTrie<[u8; N], RuleValue>,
    n: &RuleCounts,
    t: usize,
    addr: &[u8; N],
) -> RuleValue {
    if n[RULE_COUNT_HOSTS + t] != 0 {
        // SAFETY: the value of a successful lookup stays valid while we run; only read.
        if let Some(r) = unsafe { hosts.get(addr) } {
            return *r;
        }
    }
    if n[t] != 0
        && let Some(r) = trie.get(Key::new(N as u32 * 8, *addr))
    {
        return *r;
    }
    NO_RULE
}

/// "No rule matched": action 0 is neither block nor allow. A plain value rather than an
/// `Option`, whose undefined payload the BPF backend may read from a clobbered register.
const NO_RULE: RuleValue = RuleValue { action: 0, id: 0 };

/// A network-order u16 at `at` (bounds already checked by the caller).
#[inline(always)]
fn read_be16(at: usize) -> u16 {
    // SAFETY: the caller checked that two bytes at `at` lie inside the packet.
    u16::from_be(unsafe { core::ptr::read_unaligned(at as *const u16) })
}

/// Source rule first, then destination; counts the deciding rules.
#[inline(always)]
fn verdict(src: RuleValue, dst: RuleValue, bytes: u64) -> u32 {
    if src.action != NO_RULE.action {
        count_rule(src.id, bytes);
        if src.action == RULE_BLOCK {
            return xdp_action::XDP_DROP;
        }
    }
    if dst.action != NO_RULE.action {
        count_rule(dst.id, bytes);
        if dst.action == RULE_BLOCK {
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

/// Adds the packet to its source's talker record in place, creating it on the source's first
/// packet (the LRU evicts the least recently used source when full), and returns the source rule
/// deciding the packet: the one cached in the record when it is of the current rules generation,
/// else `lookup()` (then cached). Atomic adds: the record is shared by all CPUs, and a source
/// racing its own first insert on two CPUs loses nothing (the insert is BPF_NOEXIST; the loser
/// adds to the winner's record).
#[inline(always)]
fn talk<const N: usize>(
    map: &LruHashMap<[u8; N], TalkerEntry>,
    src: &[u8; N],
    bytes: u64,
    generation: u32,
    lookup: impl Fn() -> RuleValue,
) -> RuleValue {
    let now = now_ns();
    if let Some(e) = map.get_ptr_mut(src) {
        // SAFETY: the value of a successful lookup stays valid while we run; shared by all CPUs,
        // so counts use atomic adds (a racing last-seen store is off by at most a tick) and the
        // cached rule is one aligned 64-bit load and store.
        unsafe {
            let rec = &raw mut (*e).rec;
            atomic_add(&raw mut (*rec).packets, 1);
            atomic_add(&raw mut (*rec).bytes, bytes);
            if (*rec).last_seen_ns != now {
                (*rec).last_seen_ns = now;
            }
            let cached = core::ptr::read_volatile(&raw const (*e).src_rule);
            if (cached >> 32) as u32 == generation && generation != u32::MAX {
                return decode_rule(cached as u32);
            }
            let rule = lookup();
            core::ptr::write_volatile(&raw mut (*e).src_rule, encode_rule(generation, rule));
            return rule;
        }
    }
    let rule = lookup();
    let entry = TalkerEntry {
        rec: TalkerRecord {
            packets: 1,
            bytes,
            first_seen_ns: now,
            last_seen_ns: now,
        },
        // Generation u32::MAX never matches, so "not cached" needs no separate flag.
        src_rule: encode_rule(generation, rule),
    };
    if map.insert(src, entry, BPF_NOEXIST as u64).is_err() {
        match map.get_ptr_mut(src) {
            // SAFETY: as above.
            Some(e) => unsafe {
                atomic_add(&raw mut (*e).rec.packets, 1);
                atomic_add(&raw mut (*e).rec.bytes, bytes);
            },
            None => count_error(ERR_TALKER_INSERT),
        }
    }
    rule
}

/// Bit 31 of a cached rule: the rule blocks.
const CACHED_BLOCK: u32 = 1 << 31;

/// Never a rules generation (user space skips it): a cached rule under it is never used.
const NOT_CACHED: u64 = u64::MAX;

/// `generation << 32 | rule` for [`TalkerEntry::src_rule`]; [`NOT_CACHED`] when the rule cannot
/// be cached (an id that does not fit in 31 bits, an unknown action, generation u32::MAX).
#[inline(always)]
fn encode_rule(generation: u32, rule: RuleValue) -> u64 {
    let low = if rule.action == NO_RULE.action {
        0
    } else if rule.id < CACHED_BLOCK - 1 && rule.action == RULE_BLOCK {
        (rule.id + 1) | CACHED_BLOCK
    } else if rule.id < CACHED_BLOCK - 1 && rule.action == RULE_ALLOW {
        rule.id + 1
    } else {
        return NOT_CACHED;
    };
    if generation == u32::MAX {
        return NOT_CACHED;
    }
    (u64::from(generation) << 32) | u64::from(low)
}

/// The rule of a cached [`TalkerEntry::src_rule`] low half.
#[inline(always)]
fn decode_rule(low: u32) -> RuleValue {
    if low == 0 {
        return NO_RULE;
    }
    RuleValue {
        action: if low & CACHED_BLOCK != 0 {
            RULE_BLOCK
        } else {
            RULE_ALLOW
        },
        id: (low & !CACHED_BLOCK) - 1,
    }
}

/// CLOCK_MONOTONIC_COARSE nanoseconds, read through this CPU's per-jiffy cache.
#[inline(always)]
fn now_ns() -> u64 {
    // SAFETY: no preconditions; the verifier inlines it as a load of jiffies_64.
    let jiffies = unsafe { bpf_jiffies64() };
    match XDP_CLOCK.get_ptr_mut(0) {
        // SAFETY: this CPU's value; XDP does not nest on one CPU.
        Some(c) => unsafe {
            if (*c)[0] != jiffies {
                (*c)[0] = jiffies;
                (*c)[1] = bpf_ktime_get_coarse_ns();
            }
            (*c)[1]
        },
        // SAFETY: no preconditions.
        None => unsafe { bpf_ktime_get_coarse_ns() },
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
