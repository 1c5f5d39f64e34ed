//! Who allocates: the user stacks the probe recorded per process, resolved to modules and
//! symbols, ranked per interval, and folded for flame graphs.
//!
//! The probe stores each stack once in a `StackTrace` map and counts calls and bytes per
//! (process, stack id, caller) ([`StackKey`]). [`HotSpots::resolve`] runs at every report, in user
//! space: it fetches the stacks it has not seen, turns their addresses into module + offset while
//! the processes still run ([`super::modules`]), and symbolizes through a per-module cache
//! ([`super::symbols`]). Stacks are immutable once stored (the map is never told to reuse ids), so
//! each is resolved once.
//!
//! Frames are leaf first: malloc itself, then its caller, and so on towards `main`.

use std::{collections::HashMap, fmt::Write as _};

use mapscope_common::malloc::{MallocRecord, StackError, StackKey};
use serde::Serialize;

use super::{
    MallocStats, OUTSIDE_PIDNS, Snapshot,
    modules::{Location, ModuleCache},
    report::{OUTSIDE_COMM, comm_str},
    symbols::{Inlined, Symbols},
};
use crate::Result;

/// The function the probe sits on, which is every stack's leaf.
const PROBED: &str = "malloc";

/// What ranks stacks and weighs flame graphs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Weight {
    /// Requested bytes (the default: where the memory goes).
    #[default]
    Bytes,
    /// malloc calls (where the allocator is busiest).
    Calls,
}

impl Weight {
    fn of(self, r: &MallocRecord) -> u64 {
        match self {
            Weight::Bytes => r.bytes,
            Weight::Calls => r.calls,
        }
    }
}

/// One frame of a stack.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Frame {
    /// The mapped file as the process sees it; `[unknown]` when mapscope never saw its mapping.
    pub module: String,
    /// File offset in `module` (for `[unknown]`, the address itself).
    pub offset: u64,
    /// The function, when the module has symbols.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// Offset from the function's start (of the return address, for callers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// Calls inlined at this address, outermost first (so the innermost is the real leaf).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inlined: Vec<Inlined>,
}

impl Frame {
    fn module_name(&self) -> &str {
        self.module.rsplit('/').next().unwrap_or(&self.module)
    }

    /// `function+0x12 (module)`, or `module+0x1234` without a symbol.
    pub fn display(&self) -> String {
        match (&self.function, self.function_offset) {
            (Some(f), Some(o)) => format!("{f}+{o:#x} ({})", self.module_name()),
            (Some(f), None) => format!("{f} ({})", self.module_name()),
            _ => format!("{}+{:#x}", self.module_name(), self.offset),
        }
    }

    /// The names this frame contributes to a folded line, root side first.
    fn folded(&self) -> Vec<String> {
        let clean = |s: &str| s.replace(';', ":");
        match &self.function {
            Some(f) => std::iter::once(clean(f))
                .chain(self.inlined.iter().map(|i| clean(&i.function)))
                .collect(),
            None => vec![format!("{}+{:#x}", clean(self.module_name()), self.offset)],
        }
    }
}

/// Failed stack captures, by cause.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Failures {
    /// Hash collisions in the stack map (`-EEXIST`): it is filling up.
    pub collisions: u64,
    /// The kernel could not walk the user stack (`-EFAULT`).
    pub unreadable: u64,
    /// No free stack slot (`-ENOMEM`).
    pub stack_map_full: u64,
    /// Any other `bpf_get_stackid` error.
    pub other: u64,
    /// The (process, stack) counts map is full.
    pub counts_full: u64,
    /// The caller's return address could not be read (the stack is counted without it).
    pub caller_unreadable: u64,
}

impl Failures {
    /// From the per-cause totals of a snapshot.
    pub fn from_slots(slots: &[u64]) -> Self {
        let at = |e: StackError| slots.get(e as usize).copied().unwrap_or(0);
        Self {
            collisions: at(StackError::Collision),
            unreadable: at(StackError::Unreadable),
            stack_map_full: at(StackError::StackMapFull),
            other: at(StackError::Other),
            counts_full: at(StackError::CountsFull),
            caller_unreadable: at(StackError::CallerUnreadable),
        }
    }

    /// Calls whose stack was not counted at all.
    pub fn lost(&self) -> u64 {
        self.collisions + self.unreadable + self.stack_map_full + self.other + self.counts_full
    }

    fn minus(&self, o: &Self) -> Self {
        Self {
            collisions: self.collisions.saturating_sub(o.collisions),
            unreadable: self.unreadable.saturating_sub(o.unreadable),
            stack_map_full: self.stack_map_full.saturating_sub(o.stack_map_full),
            other: self.other.saturating_sub(o.other),
            counts_full: self.counts_full.saturating_sub(o.counts_full),
            caller_unreadable: self.caller_unreadable.saturating_sub(o.caller_unreadable),
        }
    }
}

/// One stack's mallocs in an interval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StackRow {
    pub pid: u32,
    pub comm: String,
    pub calls: u64,
    pub bytes: u64,
    /// Leaf (malloc) first.
    pub frames: Vec<Frame>,
}

/// The stacks part of an interval's report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StackReport {
    pub by: Weight,
    /// Stacks with mallocs in the interval (not just the rows shown).
    pub stacks: usize,
    /// The top stacks by `by`.
    pub top: Vec<StackRow>,
    /// Failed captures in the interval.
    pub failed: Failures,
}

impl StackReport {
    /// The top stacks, leaf first, one frame per line.
    pub fn table(&self) -> String {
        let f = &self.failed;
        let mut out = format!(
            "top {} of {} stacks by {}; failed captures: {} collisions, {} unreadable, {} \
             stack map full, {} other, {} counts full ({} without caller)\n",
            self.top.len(),
            self.stacks,
            match self.by {
                Weight::Bytes => "bytes",
                Weight::Calls => "calls",
            },
            f.collisions,
            f.unreadable,
            f.stack_map_full,
            f.other,
            f.counts_full,
            f.caller_unreadable,
        );
        for (i, row) in self.top.iter().enumerate() {
            let pid = if row.pid == OUTSIDE_PIDNS {
                "-".to_string()
            } else {
                row.pid.to_string()
            };
            let _ = writeln!(
                out,
                "#{} pid {pid} {}: {} calls, {} bytes",
                i + 1,
                row.comm,
                row.calls,
                row.bytes
            );
            for frame in &row.frames {
                for inl in frame.inlined.iter().rev() {
                    let _ = writeln!(out, "    {} (inlined)", inl.function);
                }
                let _ = writeln!(out, "    {}", frame.display());
            }
        }
        out
    }
}

/// Stack resolution state kept across reports.
#[derive(Default)]
pub struct HotSpots {
    modules: ModuleCache,
    symbols: Symbols,
    /// Addresses per stack id, leaf first, as the kernel stored them.
    ips: HashMap<u32, Vec<u64>>,
    frames: HashMap<StackKey, Vec<Frame>>,
}

impl HotSpots {
    /// Empty caches.
    pub fn new() -> Self {
        Self {
            modules: ModuleCache::new(),
            ..Self::default()
        }
    }

    /// Reads the mappings of process `pid` now, so its stacks resolve even if it exits before
    /// the first report (a `--pid` target is known from the start).
    pub fn preload(&mut self, pid: u32) {
        self.modules.locate(pid, &[]);
    }

    /// Resolves every stack of `snap` seen for the first time. Call it at each snapshot: the
    /// mappings of processes are read here, while they (most likely) still run.
    pub fn resolve(&mut self, stats: &MallocStats, snap: &Snapshot) -> Result<()> {
        let Some(stacks) = &snap.stacks else {
            return Ok(());
        };
        let new: Vec<StackKey> = stacks
            .counts
            .keys()
            .filter(|k| !self.frames.contains_key(k))
            .copied()
            .collect();
        for key in new {
            if let std::collections::hash_map::Entry::Vacant(e) = self.ips.entry(key.stack_id) {
                e.insert(stats.stack(key.stack_id)?);
            }
            let frames = self.resolve_one(&key);
            self.frames.insert(key, frames);
        }
        Ok(())
    }

    fn resolve_one(&mut self, key: &StackKey) -> Vec<Frame> {
        let mut ips = self.ips.get(&key.stack_id).cloned().unwrap_or_default();
        // The walk starts at the caller's frame pointer: insert the caller unless the kernel
        // already did (see `StackKey::caller`).
        if key.caller != 0 && ips.get(1) != Some(&key.caller) {
            ips.insert(1.min(ips.len()), key.caller);
        }
        let locations = self.modules.locate(key.tgid, &ips);
        // Return addresses point after their call; look up the call itself (offset - 1).
        let lookup = |i: usize, offset: u64| {
            if i == 0 {
                offset
            } else {
                offset.saturating_sub(1)
            }
        };
        let mut by_module: HashMap<usize, Vec<u64>> = HashMap::new();
        for (i, loc) in locations.iter().enumerate() {
            if let Location::Module { module, offset } = *loc {
                by_module.entry(module).or_default().push(lookup(i, offset));
            }
        }
        for (module, offsets) in by_module {
            self.symbols
                .resolve(module, self.modules.module(module), &offsets);
        }
        locations
            .iter()
            .enumerate()
            .map(|(i, loc)| match *loc {
                Location::Module { module, offset } => {
                    let sym = self.symbols.get(module, lookup(i, offset));
                    let adjust = offset - lookup(i, offset);
                    // The leaf is the probed instruction, the `malloc` symbol itself: name it
                    // so rather than by whichever alias the symbol table lists first
                    // (glibc's is `__GI___libc_malloc`).
                    let function = match sym {
                        Some(s) if i == 0 && s.offset == 0 => Some(PROBED.to_string()),
                        Some(s) => Some(s.function.clone()),
                        None => None,
                    };
                    Frame {
                        module: self.modules.module(module).path.display().to_string(),
                        offset,
                        function,
                        function_offset: sym.map(|s| s.offset + adjust),
                        file: sym.and_then(|s| s.file.clone()),
                        line: sym.and_then(|s| s.line),
                        inlined: sym.map(|s| s.inlined.clone()).unwrap_or_default(),
                    }
                }
                Location::Unknown { addr } => Frame {
                    module: "[unknown]".to_string(),
                    offset: addr,
                    function: None,
                    function_offset: None,
                    file: None,
                    line: None,
                    inlined: Vec::new(),
                },
            })
            .collect()
    }

    /// The frames of a resolved stack.
    pub fn frames(&self, key: &StackKey) -> &[Frame] {
        self.frames.get(key).map_or(&[], Vec::as_slice)
    }

    /// The interval's stacks: deltas from `prev` to `cur`, the `top` heaviest by `by`.
    pub fn report(&self, prev: &Snapshot, cur: &Snapshot, by: Weight, top: usize) -> StackReport {
        let empty = Default::default();
        let before = prev.stacks.as_ref().map_or(&empty, |s| &s.counts);
        let Some(now) = &cur.stacks else {
            return StackReport {
                by,
                stacks: 0,
                top: Vec::new(),
                failed: Failures::default(),
            };
        };
        let mut rows: Vec<StackRow> = now
            .counts
            .iter()
            .filter_map(|(key, c)| {
                let p = before.get(key).copied().unwrap_or_default();
                let d = MallocRecord {
                    calls: c.calls.saturating_sub(p.calls),
                    bytes: c.bytes.saturating_sub(p.bytes),
                };
                (d.calls > 0).then(|| StackRow {
                    pid: key.tgid,
                    comm: comm_of(cur, key.tgid),
                    calls: d.calls,
                    bytes: d.bytes,
                    frames: self.frames(key).to_vec(),
                })
            })
            .collect();
        let weigh = |r: &StackRow| {
            by.of(&MallocRecord {
                calls: r.calls,
                bytes: r.bytes,
            })
        };
        rows.sort_by(|a, b| {
            weigh(b)
                .cmp(&weigh(a))
                .then(a.pid.cmp(&b.pid))
                .then(a.calls.cmp(&b.calls))
        });
        let stacks = rows.len();
        rows.truncate(top);
        let failed = prev
            .stacks
            .as_ref()
            .map_or(now.failures, |p| now.failures.minus(&p.failures));
        StackReport {
            by,
            stacks,
            top: rows,
            failed,
        }
    }

    /// Brendan Gregg's folded format for everything counted up to `snap` (one line per distinct
    /// call path: `comm;root;…;malloc VALUE`, sorted), the input of flame graph tools.
    pub fn folded(&self, snap: &Snapshot, by: Weight) -> Vec<String> {
        let mut merged: HashMap<String, u64> = HashMap::new();
        for (key, rec) in snap.stacks.iter().flat_map(|s| s.counts.iter()) {
            let mut names = vec![comm_of(snap, key.tgid).replace(';', ":")];
            for frame in self.frames(key).iter().rev() {
                names.extend(frame.folded());
            }
            *merged.entry(names.join(";")).or_default() += by.of(rec);
        }
        let mut lines: Vec<String> = merged
            .into_iter()
            .filter(|&(_, v)| v > 0)
            .map(|(path, v)| format!("{path} {v}"))
            .collect();
        lines.sort();
        lines
    }
}

/// The name reports give process `pid`.
fn comm_of(snap: &Snapshot, pid: u32) -> String {
    if pid == OUTSIDE_PIDNS {
        return OUTSIDE_COMM.to_string();
    }
    snap.processes
        .get(&pid)
        .map_or_else(|| format!("pid {pid}"), |p| comm_str(&p.comm))
}
