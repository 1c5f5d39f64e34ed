//! mapscope's kernel programs: one module per program family, mirrored by the user-side modules
//! of the same name in `mapscope/src/`.
#![no_std]
#![no_main]
// atomic_xadd: the bpf target has no AtomicU64::fetch_add (see counter.rs).
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod counter;
mod exec;
mod malloc;
mod syscalls;
mod xdp;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path, so this is never actually entered.
    loop {}
}

/// Required by the kernel for GPL-only helpers (bpf_probe_read_*, perf/ring output of traces).
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
