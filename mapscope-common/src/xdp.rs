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
