//! Types that cross the kernel/user boundary. Every type is `#[repr(C)]` with fixed-width fields,
//! no `bool` and no implicit padding, so both sides agree on the layout byte for byte.
#![no_std]

pub mod exec;
pub mod malloc;
pub mod pidns;
pub mod syscalls;
pub mod xdp;

/// Implements `aya::Pod` for user space only; the kernel side has no aya dependency.
#[macro_export]
#[doc(hidden)]
macro_rules! impl_pod {
    ($($t:ty),* $(,)?) => {
        $(
            #[cfg(feature = "user")]
            // SAFETY: the type is repr(C), has no padding (checked by a size assertion beside it)
            // and every bit pattern is valid.
            unsafe impl aya::Pod for $t {}
        )*
    };
}
