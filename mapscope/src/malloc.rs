//! malloc calls and bytes: a uprobe on the target's libc `malloc` (on every distinct libc in use
//! for all processes), counted per CPU and per process (see `mapscope-ebpf/src/malloc.rs`).
//!
//! Process ids are those of mapscope's pid namespace ([`crate::pidns`]); tasks outside it are
//! counted under pid [`OUTSIDE_PIDNS`].

pub mod flamegraph;
pub mod libc;
pub mod modules;
pub mod report;
pub mod stacks;
pub mod symbols;

use std::{
    collections::BTreeMap,
    num::NonZeroU32,
    path::{Path, PathBuf},
    time::Instant,
};

use aya::{
    Ebpf,
    maps::{HashMap, MapError, PerCpuArray, StackTraceMap},
    programs::{UProbe, uprobe::UProbeScope},
};
use mapscope_common::malloc::{
    GLOBAL_STACKS_ON, MAP_PER_CPU, MAP_PROCESSES, MAP_STACK_COUNTS, MAP_STACK_ERRORS, MAP_STACKS,
    MallocProcess, MallocRecord, PROG_MALLOC, STACK_ERRORS,
};
pub use mapscope_common::malloc::{OUTSIDE_PIDNS, StackKey};

use crate::{Error, Result, loader, pidns::PidNamespace, requirements::Requirement, tgid};

/// Whose mallocs to count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Every process using any libc mapped on the host when mapscope starts (see
    /// [`libc::in_use`]): the host's, containers' own, musl.
    AllProcesses,
    /// One running process (thread-group id), through the libc it has mapped.
    Pid(u32),
    /// Every process using the libc this binary links, e.g. a binary in a chroot with its own
    /// libc. Processes of other binaries that share that libc are counted too; the per-process
    /// table tells them apart.
    Binary(PathBuf),
}

impl Target {
    /// How reports describe the target.
    pub fn describe(&self) -> String {
        match self {
            Target::AllProcesses => "all processes".to_string(),
            Target::Pid(p) => format!("pid {p}"),
            Target::Binary(b) => format!("users of {}'s libc", b.display()),
        }
    }
}

/// How the probe runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Record user stacks (who allocates); off by default, so the plain counters pay nothing.
    pub stacks: Option<StackOptions>,
}

/// Sizes of the stack maps (fixed at load time: kernel maps do not grow).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackOptions {
    /// Distinct stacks the `StackTrace` map holds (about 1 KiB each: 127 frames of 8 bytes).
    /// Collisions begin well before it is full, and are counted.
    pub max_stacks: u32,
    /// Distinct (process, stack, caller) counters.
    pub max_keys: u32,
}

impl Default for StackOptions {
    /// 8192 stacks (8 MiB) and twice as many counters: a busy service's allocation sites with
    /// room to spare, allocated only when stacks are on.
    fn default() -> Self {
        Self {
            max_stacks: 8192,
            max_keys: 16384,
        }
    }
}

/// Counters read at one instant.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub at: Instant,
    /// Indexed by CPU id over all possible CPUs.
    pub per_cpu: Vec<MallocRecord>,
    /// By process id (tgid); at most `MAX_PROCESSES`, least recently active evicted first.
    pub processes: BTreeMap<u32, MallocProcess>,
    /// Per (process, stack), when stacks are on.
    pub stacks: Option<StackCounts>,
}

/// The stack counters at one instant.
#[derive(Clone, Debug, Default)]
pub struct StackCounts {
    /// Cumulative calls and bytes per key.
    pub counts: BTreeMap<StackKey, MallocRecord>,
    /// Cumulative failed captures, by cause.
    pub failures: stacks::Failures,
}

impl Snapshot {
    /// The per-CPU records summed.
    pub fn total(&self) -> MallocRecord {
        sum(self.per_cpu.iter())
    }
}

/// Sums records; wrapping because the kernel counters wrap.
pub fn sum<'a>(records: impl Iterator<Item = &'a MallocRecord>) -> MallocRecord {
    records.fold(MallocRecord::default(), |acc, r| MallocRecord {
        calls: acc.calls.wrapping_add(r.calls),
        bytes: acc.bytes.wrapping_add(r.bytes),
    })
}

/// The counter maps a long-running owner (the agent) pins so counts survive restarts.
pub const PINNED_MAPS: [&str; 2] = [MAP_PER_CPU, MAP_PROCESSES];

/// The attached uprobes; dropping it detaches.
pub struct MallocStats {
    // Owns the uprobe links.
    ebpf: Ebpf,
    /// Where the probe sits: one libc for a pid or a binary, every distinct one for all.
    libcs: Vec<libc::Libc>,
    /// Libcs in use that could not be probed, and why.
    skipped: Vec<libc::Skipped>,
    target: Target,
    /// Whether stacks are recorded.
    stacks: bool,
}

impl MallocStats {
    /// Finds the target's libcs, loads the program and attaches it to `malloc` in each.
    pub fn attach(target: Target) -> Result<Self> {
        Self::attach_with(target, Options::default())
    }

    /// [`Self::attach`] with options (stacks).
    pub fn attach_with(target: Target, options: Options) -> Result<Self> {
        Self::attach_pinned(target, options, None)
    }

    /// [`Self::attach_with`] with the [`PINNED_MAPS`] pinned in (or reused from) `pins`.
    pub fn attach_pinned(target: Target, options: Options, pins: Option<&Path>) -> Result<Self> {
        let ns = PidNamespace::current()?;
        if let Some(s) = options.stacks
            && (s.max_stacks == 0 || s.max_keys == 0)
        {
            return Err(Error::InvalidArgument(
                "stack maps need at least one entry: pass a positive --max-stacks".to_string(),
            ));
        }
        let (libcs, skipped) = match &target {
            Target::AllProcesses => {
                let found = libc::in_use()?;
                (found.libcs, found.skipped)
            }
            Target::Pid(pid) => {
                let pid = tgid::check_process(*pid)?;
                ns.check_target(pid)?;
                (vec![libc::for_process(pid)?], Vec::new())
            }
            Target::Binary(bin) => (vec![libc::for_binary(bin)?], Vec::new()),
        };
        if libcs.is_empty() {
            return Err(Error::NoLibc {
                target: "this host".to_string(),
                why: "no running process maps a libc mapscope can probe".to_string(),
            });
        }
        let scope = match target {
            Target::Pid(pid) => {
                UProbeScope::OneProcess(NonZeroU32::new(pid).ok_or(Error::UnknownPid { pid })?)
            }
            _ => UProbeScope::AllProcesses,
        };
        // `'static` values for aya's loader, which borrows globals for its own lifetime.
        static STACKS_ON: u32 = 1;
        static STACKS_OFF: u32 = 0;
        let mut ebpf =
            loader::load_with(loader::Family::Malloc, &[Requirement::BpfPrivileges], |l| {
                crate::pidns::configure(l, ns);
                if let Some(dir) = pins {
                    loader::pin_maps(l, dir, &PINNED_MAPS);
                }
                match options.stacks {
                    Some(s) => {
                        l.override_global(GLOBAL_STACKS_ON, &STACKS_ON, true)
                            .map_max_entries(MAP_STACKS, s.max_stacks)
                            .map_max_entries(MAP_STACK_COUNTS, s.max_keys);
                    }
                    None => {
                        l.override_global(GLOBAL_STACKS_ON, &STACKS_OFF, true);
                    }
                }
            })?;
        let name = PROG_MALLOC;
        let prog: &mut UProbe = loader::program_mut(&mut ebpf, name)?;
        prog.load()
            .map_err(|source| Error::Program { name, source })?;
        let scanned = target == Target::AllProcesses;
        let (mut attached, mut skipped) = (Vec::new(), skipped);
        for libc in libcs {
            match prog.attach("malloc", &libc.attach_path, scope) {
                Ok(_) => attached.push(libc),
                // A libc found through a process's root vanishes with the process: the scan
                // raced with its exit. Not a reason to count nothing elsewhere.
                Err(e) if scanned => skipped.push(libc::Skipped {
                    path: libc.attach_path,
                    why: crate::error::one_line(&e),
                }),
                Err(source) => return Err(Error::Program { name, source }),
            }
        }
        if attached.is_empty() {
            return Err(Error::NoLibc {
                target: "this host".to_string(),
                why: skipped
                    .iter()
                    .map(|s| format!("{}: {}", s.path.display(), s.why))
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        }
        let libcs = attached;
        Ok(Self {
            ebpf,
            libcs,
            skipped,
            target,
            stacks: options.stacks.is_some(),
        })
    }

    /// The first libc file the probe sits in, as the target sees it.
    pub fn libc_path(&self) -> &Path {
        &self.libcs[0].path
    }

    /// Every libc the probe sits in (one per distinct file).
    pub fn libcs(&self) -> &[libc::Libc] {
        &self.libcs
    }

    /// Libcs in use that are not probed, and why.
    pub fn skipped(&self) -> &[libc::Skipped] {
        &self.skipped
    }

    /// Whose mallocs are counted.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Reads both maps now.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let map_err = |name| move |source| Error::Map { name, source };
        let per_cpu_map: PerCpuArray<_, MallocRecord> = loader::map(&self.ebpf, MAP_PER_CPU)?;
        let procs_map: HashMap<_, u32, MallocProcess> = loader::map(&self.ebpf, MAP_PROCESSES)?;

        let at = Instant::now();
        let per_cpu = per_cpu_map
            .get(&0, 0)
            .map_err(map_err(MAP_PER_CPU))?
            .iter()
            .copied()
            .collect();
        let mut processes = BTreeMap::new();
        for entry in procs_map.iter() {
            match entry {
                Ok((pid, rec)) => {
                    processes.insert(pid, rec);
                }
                // Evicted between listing the key and reading it.
                Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err(MAP_PROCESSES)(e)),
            }
        }
        let stacks = if self.stacks {
            Some(self.stack_counts()?)
        } else {
            None
        };
        Ok(Snapshot {
            at,
            per_cpu,
            processes,
            stacks,
        })
    }

    fn stack_counts(&self) -> Result<StackCounts> {
        let map_err = |name| move |source| Error::Map { name, source };
        let counts_map: HashMap<_, StackKey, MallocRecord> =
            loader::map(&self.ebpf, MAP_STACK_COUNTS)?;
        let errors_map: PerCpuArray<_, u64> = loader::map(&self.ebpf, MAP_STACK_ERRORS)?;
        let mut counts = BTreeMap::new();
        for entry in counts_map.iter() {
            let (key, rec) = entry.map_err(map_err(MAP_STACK_COUNTS))?;
            counts.insert(key, rec);
        }
        let mut slots = vec![0u64; STACK_ERRORS as usize];
        for (i, slot) in slots.iter_mut().enumerate() {
            let per_cpu = errors_map
                .get(&(i as u32), 0)
                .map_err(map_err(MAP_STACK_ERRORS))?;
            *slot = per_cpu.iter().fold(0u64, |a, v| a.wrapping_add(*v));
        }
        Ok(StackCounts {
            counts,
            failures: stacks::Failures::from_slots(&slots),
        })
    }

    /// The addresses of stack `stack_id`, leaf first (empty if the map no longer has it).
    pub fn stack(&self, stack_id: u32) -> Result<Vec<u64>> {
        let map: StackTraceMap<_> = loader::map(&self.ebpf, MAP_STACKS)?;
        match map.get(&stack_id, 0) {
            Ok(trace) => Ok(trace.frames().iter().map(|f| f.ip).collect()),
            Err(MapError::KeyNotFound) => Ok(Vec::new()),
            Err(source) => Err(Error::Map {
                name: MAP_STACKS,
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_records() {
        let r = [
            MallocRecord {
                calls: 2,
                bytes: 10,
            },
            MallocRecord { calls: 3, bytes: 5 },
        ];
        assert_eq!(
            sum(r.iter()),
            MallocRecord {
                calls: 5,
                bytes: 15
            }
        );
    }

    #[test]
    fn describes_targets() {
        assert_eq!(Target::AllProcesses.describe(), "all processes");
        assert_eq!(Target::Pid(7).describe(), "pid 7");
        assert_eq!(
            Target::Binary("/bin/ls".into()).describe(),
            "users of /bin/ls's libc"
        );
    }
}
