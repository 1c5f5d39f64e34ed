//! Pieces every kernel object shares (the counter helper, the pid-namespace helper, the panic
//! handler, the license). Each program family is its own bin target (`src/<family>.rs`)
//! and so its own object: loading one family creates only that family's maps and programs.
//!
//! The lib is also compiled for the host (mapscope names it as a build-dependency so cargo rebuilds
//! when kernel code changes), so everything bpf-only sits behind `cfg(target_arch = "bpf")`.
#![no_std]
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
#![cfg_attr(target_arch = "bpf", allow(internal_features))]

#[cfg(target_arch = "bpf")]
pub mod counter;
#[cfg(target_arch = "bpf")]
pub mod pidns;

#[cfg(all(target_arch = "bpf", not(test)))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path, so this is never actually entered.
    loop {}
}

/// Declares the object's license section: the kernel requires "GPL" for GPL-only helpers
/// (bpf_probe_read_*, perf/ring output of traces). A macro because the section must be in the
/// bin's own object, not in a library whose unreferenced statics the linker may drop.
#[macro_export]
macro_rules! license {
    () => {
        #[unsafe(link_section = "license")]
        #[unsafe(no_mangle)]
        static LICENSE: [u8; 4] = *b"GPL\0";
    };
}
