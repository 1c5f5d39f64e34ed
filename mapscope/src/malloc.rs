//! malloc calls and bytes: a uprobe on the target's libc `malloc`, counted per CPU and per
//! process (see `mapscope-ebpf/src/malloc.rs`).

pub mod libc;
pub mod report;

use std::{
    collections::BTreeMap,
    num::NonZeroU32,
    path::{Path, PathBuf},
    time::Instant,
};

use aya::{
    Ebpf,
    maps::{HashMap, MapError, PerCpuArray},
    programs::{UProbe, uprobe::UProbeScope},
};
use mapscope_common::malloc::{
    MAP_PER_CPU, MAP_PROCESSES, MallocProcess, MallocRecord, PROG_MALLOC,
};

use crate::{Error, Result, loader, requirements::Requirement, tgid};

/// Whose mallocs to count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Every process using the libc this host's programs use (the one mapscope itself maps).
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

/// Counters read at one instant.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub at: Instant,
    /// Indexed by CPU id over all possible CPUs.
    pub per_cpu: Vec<MallocRecord>,
    /// By process id (tgid); at most `MAX_PROCESSES`, least recently active evicted first.
    pub processes: BTreeMap<u32, MallocProcess>,
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

/// The attached uprobe; dropping it detaches.
pub struct MallocStats {
    // Owns the uprobe link.
    ebpf: Ebpf,
    libc: libc::Libc,
    target: Target,
}

impl MallocStats {
    /// Finds the target's libc, loads the program and attaches it to `malloc` there.
    pub fn attach(target: Target) -> Result<Self> {
        let libc = match &target {
            Target::AllProcesses => libc::for_self()?,
            Target::Pid(pid) => libc::for_process(tgid::check_process(*pid)?)?,
            Target::Binary(bin) => libc::for_binary(bin)?,
        };
        let scope = match target {
            Target::Pid(pid) => {
                UProbeScope::OneProcess(NonZeroU32::new(pid).ok_or(Error::UnknownPid { pid })?)
            }
            _ => UProbeScope::AllProcesses,
        };
        let mut ebpf = loader::load(&[Requirement::BpfPrivileges])?;
        let name = PROG_MALLOC;
        let prog: &mut UProbe = loader::program_mut(&mut ebpf, name)?;
        prog.load()
            .map_err(|source| Error::Program { name, source })?;
        prog.attach("malloc", &libc.attach_path, scope)
            .map_err(|source| Error::Program { name, source })?;
        Ok(Self { ebpf, libc, target })
    }

    /// The libc file the probe sits in, as the target sees it.
    pub fn libc_path(&self) -> &Path {
        &self.libc.path
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
        Ok(Snapshot {
            at,
            per_cpu,
            processes,
        })
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
