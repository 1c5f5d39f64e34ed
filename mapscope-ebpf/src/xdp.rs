//! XDP per-action statistics (xdp-tutorial basic03/basic04): every packet is counted under the
//! action the program returns, in a shared `Array` (atomic adds) and in a `PerCpuArray`.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};
use mapscope_common::xdp::{StatsRecord, XDP_ACTION_MAX};
use mapscope_ebpf::counter::atomic_add;

/// One record per action shared by all CPUs; correct only because updates are atomic.
#[map(name = "XDP_STATS_ARR")]
static XDP_STATS_ARR: Array<StatsRecord> = Array::with_max_entries(XDP_ACTION_MAX, 0);

/// One record per action per CPU: plain adds, no cache-line bouncing; user space sums the CPUs.
#[map(name = "XDP_STATS_PCPU")]
static XDP_STATS_PCPU: PerCpuArray<StatsRecord> = PerCpuArray::with_max_entries(XDP_ACTION_MAX, 0);

#[xdp]
pub fn mapscope_xdp(ctx: XdpContext) -> u32 {
    // Verdict logic (drop rules) arrives in later issues; statistics are kept for whatever it is.
    record(&ctx, xdp_action::XDP_PASS)
}

/// Counts the frame under `action` in both maps and returns `action`, so callers can write
/// `return record(&ctx, verdict)` at every exit.
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
