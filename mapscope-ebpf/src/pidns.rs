//! The current task's process id in the pid namespace user space chose (see
//! `mapscope-common/src/pidns.rs`): what a family compares `--pid` with and reports.
//!
//! A family that uses it declares the namespace global in its own object with
//! [`crate::pidns_global!`] (a `#[no_mangle]` static in this lib would land in every object, and
//! give families that never translate pids a `.rodata` map), then calls
//! `current_tgid(MAPSCOPE_PIDNS.load())`.

use aya_ebpf::{
    bindings::bpf_pidns_info,
    helpers::{bpf_get_current_pid_tgid, bpf_get_ns_current_pid_tgid},
};
use mapscope_common::pidns::PidNs;

/// Declares `MAPSCOPE_PIDNS`, the `Global<PidNs>` user space sets at load time
/// (`mapscope_common::pidns::GLOBAL`). Read-only to programs, so the verifier sees it as a
/// constant and drops the branch not taken.
#[macro_export]
macro_rules! pidns_global {
    () => {
        #[unsafe(no_mangle)]
        static MAPSCOPE_PIDNS: aya_ebpf::Global<mapscope_common::pidns::PidNs> =
            aya_ebpf::Global::new(mapscope_common::pidns::PidNs::INITIAL);
    };
}

/// The current task's tgid as namespace `ns` numbers it, or `None` when the task's own pid
/// namespace is not exactly that one (a task on the host or in another container, or in a
/// namespace nested below it: the helper matches one namespace, not its descendants).
#[inline(always)]
pub fn current_tgid(ns: PidNs) -> Option<u32> {
    current_pid_tgid(ns).map(|(_, tgid)| tgid)
}

/// The current task's thread id and tgid as namespace `ns` numbers them (see [`current_tgid`]).
#[inline(always)]
pub fn current_pid_tgid(ns: PidNs) -> Option<(u32, u32)> {
    if ns.is_initial() {
        let id = bpf_get_current_pid_tgid();
        return Some((id as u32, (id >> 32) as u32));
    }
    let mut info = bpf_pidns_info { pid: 0, tgid: 0 };
    // SAFETY: `info` is a live stack buffer of exactly the size passed.
    let rc = unsafe {
        bpf_get_ns_current_pid_tgid(
            ns.dev,
            ns.ino,
            &raw mut info,
            core::mem::size_of::<bpf_pidns_info>() as u32,
        )
    };
    (rc == 0).then_some((info.pid, info.tgid))
}
