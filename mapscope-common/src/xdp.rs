//! XDP per-action statistics, as in xdp-tutorial basic03/basic04.

/// Packets and bytes seen for one XDP action; the value type of both stats maps.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsRecord {
    pub packets: u64,
    pub bytes: u64,
}

const _: () = assert!(core::mem::size_of::<StatsRecord>() == 16);

crate::impl_pod!(StatsRecord);

/// The verdicts an XDP program can return; the value is the key into the stats maps.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum XdpAction {
    Aborted = 0,
    Drop = 1,
    Pass = 2,
    Tx = 3,
    Redirect = 4,
}

/// Number of XDP actions, and so the number of entries in each stats map.
pub const XDP_ACTION_MAX: u32 = 5;

impl XdpAction {
    /// All actions in key order, for iterating the stats maps.
    pub const ALL: [XdpAction; XDP_ACTION_MAX as usize] = [
        XdpAction::Aborted,
        XdpAction::Drop,
        XdpAction::Pass,
        XdpAction::Tx,
        XdpAction::Redirect,
    ];

    /// The kernel's name for the action, as xdp_stats prints it.
    pub const fn name(self) -> &'static str {
        match self {
            XdpAction::Aborted => "XDP_ABORTED",
            XdpAction::Drop => "XDP_DROP",
            XdpAction::Pass => "XDP_PASS",
            XdpAction::Tx => "XDP_TX",
            XdpAction::Redirect => "XDP_REDIRECT",
        }
    }
}

/// Names of the XDP stats maps, shared so user space looks up exactly what the kernel declares.
/// Kept under 16 bytes: the kernel truncates longer map names (BPF_OBJ_NAME_LEN).
pub const MAP_STATS_ARRAY: &str = "XDP_STATS_ARR";
/// Per-CPU twin of [`MAP_STATS_ARRAY`]: no atomics needed, summed in user space.
pub const MAP_STATS_PERCPU: &str = "XDP_STATS_PCPU";

/// Version of the pinned layout under `/sys/fs/bpf/mapscope/xdp/<ifname>/`: bumped whenever a
/// map, key or value changes, so an older mapscope's pins are reported instead of reused.
/// 2: talkers in shared `LruHashMap`s (IPv4 with a 4-byte key in their own map), host rules in
/// hashes beside the tries, and the rule counts map; 3: talker values are [`TalkerEntry`] (the
/// source's cached rule) and the counts carry the rules generation.
pub const LAYOUT_VERSION: u32 = 3;

/// Rule verdict stored in an LPM trie value: the packet is dropped.
pub const RULE_BLOCK: u32 = 1;
/// Rule verdict stored in an LPM trie value: the packet passes (a hole in a wider block).
pub const RULE_ALLOW: u32 = 2;

/// The value of every rule trie: what to do, and the rule's slot in the per-rule counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleValue {
    /// [`RULE_BLOCK`] or [`RULE_ALLOW`].
    pub action: u32,
    /// Key of this rule's record in the per-rule counter map; unique across the four tries.
    pub id: u32,
}

const _: () = assert!(core::mem::size_of::<RuleValue>() == 8);

/// Per-source traffic in the top-talkers LRUs, one shared record per source: IPv4 sources in
/// their own map keyed by the 4 address bytes, IPv6 sources keyed by the 16.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TalkerRecord {
    pub packets: u64,
    pub bytes: u64,
    /// CLOCK_MONOTONIC_COARSE nanoseconds (tick resolution) of the first and the latest packet.
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
}

const _: () = assert!(core::mem::size_of::<TalkerRecord>() == 32);

/// The value of the talkers maps: the source's counters, and the source rule that decided its
/// packets, cached so a known source skips its source lookups.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TalkerEntry {
    pub rec: TalkerRecord,
    /// `generation << 32 | rule`, one 64-bit store so no CPU sees half of it: valid while the
    /// rules generation ([`RULE_GENERATION`]) is unchanged; `rule` 0 = no source rule, else
    /// `id + 1` with bit 31 set for a block rule.
    pub src_rule: u64,
}

const _: () = assert!(core::mem::size_of::<TalkerEntry>() == 40);

/// What a pinned attachment is, written once at attach into the one-entry `meta` map: the
/// layout marker user space checks before reusing any pin (bpffs holds no regular files).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpMeta {
    /// [`LAYOUT_VERSION`] of the mapscope that made the pins.
    pub layout: u32,
    /// Interface index at attach time (a re-created interface of the same name has another).
    pub ifindex: u32,
    /// 0 = skb (generic), 1 = native.
    pub mode: u32,
    /// Capacity of each of the four rule tries.
    pub rule_capacity: u32,
    /// Capacity of each talkers LRU (IPv4 and IPv6 sources are in separate maps).
    pub talker_capacity: u32,
    pub _pad: u32,
    /// Unix time of the attach, in seconds.
    pub attached_at: u64,
    /// Inode of the network namespace the interface lives in (names repeat across namespaces).
    pub netns_ino: u64,
}

const _: () = assert!(core::mem::size_of::<XdpMeta>() == 40);

/// Kernel-side failures, the keys of the per-CPU error counter map.
pub const ERR_TALKER_INSERT: u32 = 0;
/// A rule matched but its counter record was missing (only between a rule's insert steps).
pub const ERR_RULE_STATS_MISSING: u32 = 1;
/// Number of error counters.
pub const ERR_MAX: u32 = 2;

crate::impl_pod!(RuleValue, TalkerRecord, TalkerEntry, XdpMeta);

/// Rule trie of IPv4 source prefixes (key: prefix length + 4 network-order bytes).
pub const MAP_SRC4: &str = "XDP_SRC4";
/// Rule trie of IPv4 destination prefixes.
pub const MAP_DST4: &str = "XDP_DST4";
/// Rule trie of IPv6 source prefixes (key: prefix length + 16 network-order bytes).
pub const MAP_SRC6: &str = "XDP_SRC6";
/// Rule trie of IPv6 destination prefixes.
pub const MAP_DST6: &str = "XDP_DST6";
/// Host rules (/32) of IPv4 sources: hash of the 4 address bytes → [`RuleValue`]; checked
/// before [`MAP_SRC4`] (an exact match is the longest prefix).
pub const MAP_SRC4_HOST: &str = "XDP_SRC4_HOST";
/// Host rules (/32) of IPv4 destinations.
pub const MAP_DST4_HOST: &str = "XDP_DST4_HOST";
/// Host rules (/128) of IPv6 sources: hash of the 16 address bytes → [`RuleValue`].
pub const MAP_SRC6_HOST: &str = "XDP_SRC6_HOST";
/// Host rules (/128) of IPv6 destinations.
pub const MAP_DST6_HOST: &str = "XDP_DST6_HOST";
/// Per-rule packets and bytes, per CPU, keyed by [`RuleValue::id`].
pub const MAP_RULE_STATS: &str = "XDP_RULE_STATS";
/// Top talkers of IPv6 sources: LRU hash of the 16-byte address → [`TalkerRecord`].
pub const MAP_TALKERS: &str = "XDP_TALKERS";
/// Top talkers of IPv4 sources: LRU hash of the 4-byte address → [`TalkerRecord`].
pub const MAP_TALKERS4: &str = "XDP_TALKERS4";
/// One-entry array of [`RuleCounts`]: rules per trie and host hash, so the program skips empty
/// ones.
pub const MAP_RULE_COUNT: &str = "XDP_RULE_COUNT";

/// Rules held by each trie (prefixes shorter than a host) and each host hash (/32, /128), indexed
/// by the `RULE_COUNT_*` constants (a host hash at `RULE_COUNT_HOSTS +` its trie's index). Never
/// below the real count (raised before inserts, lowered after deletes): 0 means empty.
/// Slot 8 is the rules generation, bumped by user space before and after every rule change: a
/// talker's cached source rule from another generation is looked up again. Slot 9 is padding.
pub type RuleCounts = [u32; 10];
/// Offset of the host hashes' counts in [`RuleCounts`].
pub const RULE_COUNT_HOSTS: usize = 4;
/// Index of the rules generation in [`RuleCounts`].
pub const RULE_GENERATION: usize = 8;
/// Index of [`MAP_SRC4`] in [`RuleCounts`].
pub const RULE_COUNT_SRC4: usize = 0;
/// Index of [`MAP_DST4`] in [`RuleCounts`].
pub const RULE_COUNT_DST4: usize = 1;
/// Index of [`MAP_SRC6`] in [`RuleCounts`].
pub const RULE_COUNT_SRC6: usize = 2;
/// Index of [`MAP_DST6`] in [`RuleCounts`].
pub const RULE_COUNT_DST6: usize = 3;
/// One-entry array holding the [`XdpMeta`] layout marker of a pinned attachment.
pub const MAP_META: &str = "XDP_META";
/// Per-CPU kernel-side failure counters, keyed by the `ERR_*` constants.
pub const MAP_ERRORS: &str = "XDP_ERRORS";

/// Default capacity of each rule trie.
pub const DEFAULT_RULE_CAPACITY: u32 = 65_536;
/// Default capacity of the talkers LRU.
pub const DEFAULT_TALKER_CAPACITY: u32 = 16_384;
