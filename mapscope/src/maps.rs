//! The map toolbox: list, inspect, dump, edit, pin and watch any BPF map on the host, mapscope's
//! own and everyone else's, through the bpf() syscall (`sys`), which aya 0.14 does not expose for
//! batch lookups or for maps it did not load.
//!
//! - [`sys`], [`objinfo`]: the bpf() commands and object info;
//! - [`handle`]: finding a map (`id N`, `pinned PATH`, `name NAME`) and element operations;
//! - [`info`]: `list`/`show` records with users, pins and owning family;
//! - [`walk`]: constant-memory iteration (batch, or get_next_key) and its consistency rules;
//! - [`render`]: bpftool-shaped JSON and text; [`typed`], [`types`], [`own`]: decoded views;
//! - [`parse`]: key/value words; [`pin`], [`create`], [`watch`].

pub mod create;
pub mod error;
pub mod handle;
pub mod info;
pub mod kind;
pub mod objinfo;
pub mod own;
pub mod parse;
pub mod pin;
pub mod render;
pub mod sys;
pub mod typed;
pub mod types;
pub mod walk;
pub mod watch;

pub use error::{Error, Result};
pub use handle::{MapHandle, MapRef, UpdateMode};
pub use kind::MapKind;
