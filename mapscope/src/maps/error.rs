//! The map toolbox's errors. Each one a user can cause names the fix, because the CLI prints it
//! as the one-line diagnostic.

use std::{io, path::PathBuf};

/// Everything the map toolbox can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "missing privileges: reading and changing other programs' BPF maps needs root or \
         CAP_SYS_ADMIN; run it with sudo"
    )]
    Privileges,

    #[error("no BPF map with id {id}: pick one from `mapscope map list`")]
    NoSuchId { id: u32 },

    #[error("no BPF map named {name:?}: pick one from `mapscope map list`")]
    NoSuchName { name: String },

    #[error("{count} BPF maps are named {name:?} (ids {ids}): pick one with `id N`")]
    AmbiguousName {
        name: String,
        count: usize,
        ids: String,
    },

    #[error("{path}: {why}")]
    NotAMapPin { path: PathBuf, why: String },

    #[error(
        "{path} already exists: unpin it first (`mapscope map unpin {path}`) or pick another path"
    )]
    PinExists { path: PathBuf },

    #[error("{path} is not on a bpffs mount: pin under /sys/fs/bpf (mount -t bpf bpf /sys/fs/bpf)")]
    NotBpffs { path: PathBuf },

    #[error("directory {dir} does not exist: create it first (mkdir -p {dir})")]
    NoParent { dir: PathBuf },

    #[error("{0}")]
    BadInput(String),

    #[error("{what} not found in {map}")]
    NotFound { what: String, map: String },

    #[error("{map} is empty: nothing to {op}")]
    Empty { map: String, op: &'static str },

    #[error("{map} is full ({max_entries} entries): delete entries first or recreate it larger")]
    Full { map: String, max_entries: u32 },

    #[error("{map} ({kind}) does not support {op}: {fix}")]
    Unsupported {
        map: String,
        kind: String,
        op: String,
        fix: String,
    },

    #[error("{what}")]
    Syscall {
        what: String,
        #[source]
        source: io::Error,
    },

    #[error(transparent)]
    Core(#[from] crate::Error),
}

/// Shorthand for the map toolbox.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps a failed bpf() or file operation with what was being done; EPERM/EACCES become the
    /// privileges message.
    pub fn sys(what: impl Into<String>, source: io::Error) -> Self {
        match source.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => Error::Privileges,
            _ => Error::Syscall {
                what: what.into(),
                source,
            },
        }
    }

    /// A bad key, value or option, with the message as given.
    pub fn bad(msg: impl Into<String>) -> Self {
        Error::BadInput(msg.into())
    }
}
