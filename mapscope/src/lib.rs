//! mapscope: a host observability agent built around eBPF maps.
//!
//! Each program family has a module here named like its kernel twin in `mapscope-ebpf/src/` and
//! its shared types in `mapscope-common/src/`.

pub mod agent;
pub mod btf;
pub mod dashboard;
pub mod error;
pub mod exec;
pub mod iface;
pub mod loader;
pub mod malloc;
pub mod maps;
pub mod pidns;
pub mod requirements;
pub mod sinks;
pub mod syscalls;
pub mod tgid;
pub mod versioned;
pub mod xdp;

pub use error::{Error, Result};
