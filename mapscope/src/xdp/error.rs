//! Errors of the XDP firewall library. Each user-caused variant names the fix, because the CLI
//! prints it as its one-line diagnostic.

use std::path::PathBuf;

/// Everything the firewall (pinned attachment, rules, snapshots) can fail with.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// The general library errors (privileges, load, unknown interface, …).
    #[error(transparent)]
    Core(#[from] crate::Error),

    #[error(
        "interface {iface} already has an XDP program attached ({mode} mode{holders}); mapscope \
         will not replace it: {fix}"
    )]
    Busy {
        iface: String,
        /// "generic" or "native".
        mode: &'static str,
        /// ", held by pid 123 (name)" when a bpf_link is held by processes, else empty.
        holders: String,
        /// The command that removes it, for the mode and the kind of attachment found.
        fix: String,
    },

    #[error(
        "no mapscope XDP attachment on {iface}: run `mapscope xdp attach --iface {iface}` first"
    )]
    NotAttached { iface: String },

    #[error("{iface} already has a mapscope XDP attachment (see `mapscope xdp status`)")]
    AlreadyAttached { iface: String },

    #[error("stale mapscope XDP pins in {}: {reason}; remove them with `{cleanup}`", dir.display())]
    Stale {
        dir: PathBuf,
        reason: String,
        cleanup: String,
    },

    #[error(
        "the XDP attachment in {} belongs to another network namespace (net:[{netns}]): run \
         mapscope in that namespace (`nsenter --net=/proc/<pid>/ns/net mapscope …`)",
        dir.display()
    )]
    OtherNetns { dir: PathBuf, netns: u64 },

    #[error("{0}")]
    BadRule(String),

    #[error(
        "rule capacity exceeded: the {trie} trie holds at most {capacity} rules and {used} are \
         in use, so {fits} more fit; re-attach with a larger --rules-capacity"
    )]
    Full {
        trie: &'static str,
        capacity: u32,
        used: u32,
        fits: u32,
    },

    #[error("{iface} is gone (interface deleted or renamed): stopping")]
    InterfaceGone { iface: String },

    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error("map {name}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
}

impl XdpError {
    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        XdpError::Io {
            what: what.into(),
            source,
        }
    }

    /// A map error naming the map.
    pub fn map(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> Self {
        move |source| XdpError::Map { name, source }
    }
}

/// Shorthand for the firewall's results.
pub type XdpResult<T> = std::result::Result<T, XdpError>;
