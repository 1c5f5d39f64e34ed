//! The one place the kernel side does shared-counter arithmetic.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

/// Adds `n` to a counter shared between CPUs, as one locked BPF add.
///
/// `AtomicU64::fetch_add` does not exist on the bpf target; the intrinsic compiles to
/// `lock *(u64 *)(r + 0) += n`. The return value is ignored because the fetching variant needs
/// a newer instruction set than we want to require.
///
/// # Safety
/// `dst` must point into a map value that stays valid for the duration of the call.
#[inline(always)]
pub unsafe fn atomic_add(dst: *mut u64, n: u64) {
    // SAFETY: the caller guarantees `dst` points into a live map value.
    unsafe {
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(dst, n);
    }
}
