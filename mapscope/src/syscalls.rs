//! Syscall counting through tail calls: a `sys_enter` dispatcher jumps by syscall number to
//! per-syscall programs that count per CPU (see `mapscope-ebpf/src/syscalls.rs`).
//!
//! [`SyscallCounter`] loads the handlers, fills the jump table, writes the filter and only then
//! attaches the dispatcher, so nothing is counted against a half-built table.
//!
//! Pids in the filter are those of mapscope's pid namespace ([`crate::pidns`]); 32-bit (compat)
//! syscalls are counted apart by i386 number ([`Snapshot::compat`]).

mod dispatch;
pub mod names;
pub mod report;

use std::{path::Path, sync::OnceLock, time::Instant};

use aya::{
    Ebpf,
    maps::{Array, PerCpuArray},
    programs::RawTracePoint,
};
pub use dispatch::TableView;
use mapscope_common::syscalls::{
    DISPATCH_STATS, DispatchStat, FILTER_COMM, FILTER_TGID, Filter, GLOBAL_TASK_STATUS_OFF,
    GLOBAL_TASK_TGID_OFF, HANDLED_SLOTS, Handled, HandlerRecord, MAP_COMPAT, MAP_COUNTS,
    MAP_DISPATCH, MAP_FILTER, MAP_HANDLED, MAP_STATS, OFFSET_UNKNOWN, PROG_DEFAULT, PROG_DISPATCH,
    PROG_EXECVE, PROG_OPEN, PROG_RW, PROG_TIMER, SYSCALL_SLOTS,
};

use crate::{Error, Result, btf, loader, pidns::PidNamespace, requirements::Requirement, tgid};

/// Every program the jump table points at.
const HANDLER_PROGRAMS: [&str; 5] = [PROG_DEFAULT, PROG_EXECVE, PROG_TIMER, PROG_OPEN, PROG_RW];

/// Which tasks to count, as the user gave it. Validated by [`Selection::to_filter`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Process id (thread-group id): every thread of that process, not its children.
    pub pid: Option<u32>,
    /// Exact command name of the calling thread (at most 15 bytes, as the kernel keeps it).
    pub comm: Option<String>,
}

impl Selection {
    /// The kernel filter for this selection. Fails for a pid that is not a running process (or
    /// one the kernel cannot number in mapscope's pid namespace) and for a comm the kernel could
    /// never report (too long, empty, or with a NUL byte).
    ///
    /// The calling process itself is always excluded: reading the counters every interval is a
    /// thousand `bpf` syscalls that would otherwise top the table. Pids are those of mapscope's
    /// pid namespace, which the kernel side translates to.
    pub fn to_filter(&self) -> Result<Filter> {
        let ns = PidNamespace::current()?;
        let mut filter = Filter {
            exclude_tgid: ns.own_pid(),
            ..Filter::default()
        };
        if let Some(pid) = self.pid {
            filter.tgid = tgid::check_process(pid)?;
            ns.check_target(pid)?;
            filter.flags |= FILTER_TGID;
        }
        if let Some(comm) = &self.comm {
            filter.comm = comm_bytes(comm)?;
            filter.flags |= FILTER_COMM;
        }
        Ok(filter)
    }

    /// How reports describe the selection.
    pub fn describe(&self) -> String {
        match (self.pid, &self.comm) {
            (None, None) => "all processes".to_string(),
            (Some(p), None) => format!("pid {p}"),
            (None, Some(c)) => format!("comm {c:?}"),
            (Some(p), Some(c)) => format!("pid {p} and comm {c:?}"),
        }
    }
}

/// A command name as the kernel stores it: up to 15 bytes and a NUL, NUL-padded.
pub fn comm_bytes(comm: &str) -> Result<[u8; 16]> {
    let bytes = comm.as_bytes();
    if bytes.is_empty() || bytes.contains(&0) {
        return Err(Error::InvalidArgument(format!(
            "--comm {comm:?} can never match: pass a command name as `ps -o comm` shows it"
        )));
    }
    if bytes.len() > 15 {
        return Err(Error::CommTooLong {
            comm: comm.to_string(),
            len: bytes.len(),
        });
    }
    let mut out = [0u8; 16];
    out[..bytes.len()].copy_from_slice(bytes);
    Ok(out)
}

/// Cumulative counters read at one instant, summed over CPUs.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub at: Instant,
    /// Calls per syscall number (`SYSCALL_SLOTS` entries).
    pub counts: Vec<u64>,
    /// The dedicated handlers' own counters, indexed by `Handled as usize`.
    pub handled: [HandlerRecord; HANDLED_SLOTS as usize],
    /// Tail calls that came back to the dispatcher.
    pub tail_call_failed: u64,
    /// Syscall numbers outside the table.
    pub out_of_range: u64,
    /// Slots of the jump table that hold a program right now (all of them unless broken).
    pub dispatch_populated: usize,
    /// Calls per i386 syscall number by 32-bit (compat) tasks (`SYSCALL_SLOTS` entries); they
    /// are in none of the other counters.
    pub compat: Vec<u64>,
    /// 32-bit syscall numbers outside the table.
    pub compat_out_of_range: u64,
    /// Whether 32-bit syscalls are told apart at all (kernel BTF gave the offset it needs);
    /// without it they are counted under x86_64 numbers.
    pub compat_detected: bool,
}

impl Snapshot {
    /// Calls of syscall `nr` (0 outside the table).
    pub fn count(&self, nr: u32) -> u64 {
        self.counts.get(nr as usize).copied().unwrap_or(0)
    }

    /// The handler record of `h`.
    pub fn handler(&self, h: Handled) -> HandlerRecord {
        self.handled[h as usize]
    }

    /// Calls of i386 syscall `nr` by 32-bit tasks (0 outside the table).
    pub fn compat_count(&self, nr: u32) -> u64 {
        self.compat.get(nr as usize).copied().unwrap_or(0)
    }
}

/// The `task_struct` offsets the dispatcher reads the current task through, from kernel BTF.
#[derive(Debug)]
struct TaskOffsets {
    /// `thread_info.status`, where x86 keeps `TS_COMPAT`; [`OFFSET_UNKNOWN`] without BTF.
    status: u32,
    /// `tgid`; [`OFFSET_UNKNOWN`] without BTF (the kernel side then calls the pid helper).
    tgid: u32,
}

/// Reads the [`TaskOffsets`] once from kernel BTF. `'static` for aya's loader.
fn task_offsets() -> &'static TaskOffsets {
    static OFFSETS: OnceLock<TaskOffsets> = OnceLock::new();
    OFFSETS.get_or_init(|| {
        let unknown = TaskOffsets {
            status: OFFSET_UNKNOWN,
            tgid: OFFSET_UNKNOWN,
        };
        let path = "/sys/kernel/btf/vmlinux";
        let Ok(data) = std::fs::read(path) else {
            return unknown;
        };
        let btf = match btf::Btf::parse(&data) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("32-bit syscalls are not told apart: {e}");
                return unknown;
            }
        };
        let status = btf
            .member_offset("task_struct", "thread_info")
            .and_then(|t| Ok(t + btf.member_offset("thread_info", "status")?))
            .unwrap_or_else(|e| {
                tracing::warn!("32-bit syscalls are not told apart: {e}");
                OFFSET_UNKNOWN
            });
        let tgid = btf
            .member_offset("task_struct", "tgid")
            .unwrap_or(OFFSET_UNKNOWN);
        TaskOffsets { status, tgid }
    })
}

/// The counter maps a long-running owner (the agent) pins so counts survive restarts.
pub const PINNED_MAPS: [&str; 4] = [MAP_COUNTS, MAP_HANDLED, MAP_STATS, MAP_COMPAT];

/// The attached dispatcher and its handlers; dropping it detaches everything and closes the
/// jump table.
pub struct SyscallCounter {
    // Owns the sys_enter link and the handler programs. Declared (so dropped) before `table`:
    // the dispatcher is detached before the table it jumps through is closed.
    ebpf: Ebpf,
    // Owns the jump table's fd; see dispatch.rs for why it lives outside `ebpf`.
    table: dispatch::DispatchTable,
    filter: Filter,
}

impl SyscallCounter {
    /// Loads everything, applies `filter` and attaches the dispatcher to `sys_enter`.
    pub fn attach(filter: Filter) -> Result<Self> {
        Self::attach_pinned(filter, None)
    }

    /// [`Self::attach`] with the [`PINNED_MAPS`] pinned in (or reused from) `pins`.
    pub fn attach_pinned(filter: Filter, pins: Option<&Path>) -> Result<Self> {
        if !cfg!(target_arch = "x86_64") {
            return Err(Error::UnsupportedArch {
                what: "mapscope syscalls",
                arch: std::env::consts::ARCH,
            });
        }
        let ns = PidNamespace::current()?;
        let offsets = task_offsets();
        let mut ebpf = loader::load_with(
            loader::Family::Syscalls,
            &[Requirement::BpfPrivileges],
            |l| {
                crate::pidns::configure(l, ns);
                l.override_global(GLOBAL_TASK_STATUS_OFF, &offsets.status, true);
                l.override_global(GLOBAL_TASK_TGID_OFF, &offsets.tgid, true);
                if let Some(dir) = pins {
                    loader::pin_maps(l, dir, &PINNED_MAPS);
                }
            },
        )?;
        for name in HANDLER_PROGRAMS {
            loader::program_mut::<RawTracePoint>(&mut ebpf, name)?
                .load()
                .map_err(|source| Error::Program { name, source })?;
        }
        let map = ebpf
            .take_map(MAP_DISPATCH)
            .ok_or(Error::MissingObject { name: MAP_DISPATCH })?;
        let table = {
            let mut loaded = Vec::new();
            for name in HANDLER_PROGRAMS {
                let prog: &RawTracePoint = loader::program(&ebpf, name)?;
                let fd = prog
                    .fd()
                    .map_err(|source| Error::Program { name, source })?;
                let id = prog
                    .info()
                    .map_err(|source| Error::Program { name, source })?
                    .id();
                loaded.push((name, fd, id));
            }
            dispatch::DispatchTable::fill(map, &loaded)?
        };
        let mut counter = Self {
            ebpf,
            table,
            filter: Filter::default(),
        };
        counter.set_filter(filter)?;
        let name = PROG_DISPATCH;
        let prog: &mut RawTracePoint = loader::program_mut(&mut counter.ebpf, name)?;
        prog.load()
            .map_err(|source| Error::Program { name, source })?;
        prog.attach("sys_enter")
            .map_err(|source| Error::Program { name, source })?;
        Ok(counter)
    }

    /// Replaces the filter; the kernel program uses it from its next syscall on.
    pub fn set_filter(&mut self, filter: Filter) -> Result<()> {
        let map_err = |source| Error::Map {
            name: MAP_FILTER,
            source,
        };
        let mut map: Array<_, Filter> = loader::map_mut(&mut self.ebpf, MAP_FILTER)?;
        map.set(0, filter, 0).map_err(map_err)?;
        self.filter = filter;
        Ok(())
    }

    /// The filter in force.
    pub fn filter(&self) -> Filter {
        self.filter
    }

    /// What the kernel's jump table holds right now, slot by slot.
    pub fn dispatch_table(&self) -> Result<TableView> {
        self.table.view()
    }

    /// Fault injection, for testing the failure path: empties the jump-table slot of syscall
    /// `nr`, so every call of it that passes the filter fails its tail call from now on and is
    /// counted in [`Snapshot::tail_call_failed`] instead of under `nr` (nor in a dedicated
    /// handler's counters). [`Self::restore_dispatch_slot`] undoes it. mapscope itself never
    /// calls this; a healthy table has every slot filled.
    pub fn empty_dispatch_slot(&mut self, nr: u32) -> Result<()> {
        self.table.clear(nr)
    }

    /// Puts the program [`program_for`] names back in the jump-table slot of syscall `nr`,
    /// undoing [`Self::empty_dispatch_slot`]; counting of `nr` resumes with its next call.
    pub fn restore_dispatch_slot(&mut self, nr: u32) -> Result<()> {
        let name = program_for(nr);
        let prog: &RawTracePoint = loader::program(&self.ebpf, name)?;
        let fd = prog
            .fd()
            .map_err(|source| Error::Program { name, source })?;
        self.table.set(nr, fd)
    }

    /// Reads every counter now.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let counts_map = self.percpu::<u64>(MAP_COUNTS)?;
        let handled_map = self.percpu::<HandlerRecord>(MAP_HANDLED)?;
        let stats_map = self.percpu::<u64>(MAP_STATS)?;
        let compat_map = self.percpu::<u64>(MAP_COMPAT)?;
        let map_err = |name| move |source| Error::Map { name, source };

        let at = Instant::now();
        let read_table = |map: &PerCpuArray<&aya::maps::MapData, u64>, name| {
            (0..SYSCALL_SLOTS)
                .map(|nr| {
                    let per_cpu = map.get(&nr, 0).map_err(map_err(name))?;
                    Ok(per_cpu.iter().fold(0u64, |a, v| a.wrapping_add(*v)))
                })
                .collect::<Result<Vec<u64>>>()
        };
        let counts = read_table(&counts_map, MAP_COUNTS)?;
        let compat = read_table(&compat_map, MAP_COMPAT)?;
        let mut handled = [HandlerRecord::default(); HANDLED_SLOTS as usize];
        for h in Handled::ALL {
            let per_cpu = handled_map
                .get(&(h as u32), 0)
                .map_err(map_err(MAP_HANDLED))?;
            handled[h as usize] = sum_records(per_cpu.iter());
        }
        let mut stats = [0u64; DISPATCH_STATS as usize];
        for (i, slot) in stats.iter_mut().enumerate() {
            let per_cpu = stats_map.get(&(i as u32), 0).map_err(map_err(MAP_STATS))?;
            *slot = per_cpu.iter().fold(0u64, |a, v| a.wrapping_add(*v));
        }
        Ok(Snapshot {
            at,
            counts,
            handled,
            tail_call_failed: stats[DispatchStat::TailCallFailed as usize],
            out_of_range: stats[DispatchStat::OutOfRange as usize],
            dispatch_populated: self.table.view()?.populated(),
            compat,
            compat_out_of_range: stats[DispatchStat::CompatOutOfRange as usize],
            compat_detected: task_offsets().status != OFFSET_UNKNOWN,
        })
    }

    fn percpu<V: aya::Pod>(
        &self,
        name: &'static str,
    ) -> Result<PerCpuArray<&aya::maps::MapData, V>> {
        loader::map(&self.ebpf, name)
    }
}

/// Sums per-CPU handler records; wrapping because the kernel counters wrap.
pub fn sum_records<'a>(records: impl Iterator<Item = &'a HandlerRecord>) -> HandlerRecord {
    records.fold(HandlerRecord::default(), |acc, r| HandlerRecord {
        calls: acc.calls.wrapping_add(r.calls),
        detail: acc.detail.wrapping_add(r.detail),
    })
}

/// The program in the jump-table slot of `nr`, as [`SyscallCounter::attach`] fills it.
pub fn program_for(nr: u32) -> &'static str {
    Handled::from_nr(u64::from(nr)).map_or(PROG_DEFAULT, Handled::program)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_is_nul_padded_and_bounded() {
        let c = comm_bytes("bash").unwrap();
        assert_eq!(&c[..5], b"bash\0");
        assert!(c[4..].iter().all(|&b| b == 0));
        assert_eq!(comm_bytes("123456789012345").unwrap()[14], b'5');
        let err = comm_bytes("1234567890123456").unwrap_err();
        assert!(matches!(err, Error::CommTooLong { len: 16, .. }), "{err}");
        assert!(err.to_string().contains("first 15 bytes"), "{err}");
        assert!(comm_bytes("").is_err());
        assert!(comm_bytes("a\0b").is_err());
    }

    #[test]
    fn selection_builds_filter_flags() {
        let me = PidNamespace::current().unwrap().own_pid();
        let none = Selection::default().to_filter().unwrap();
        assert_eq!(
            none,
            Filter {
                exclude_tgid: me,
                ..Filter::default()
            }
        );
        let both = Selection {
            pid: Some(me),
            comm: Some("x".into()),
        };
        let f = both.to_filter().unwrap();
        assert_eq!(f.flags, FILTER_TGID | FILTER_COMM);
        assert_eq!(f.tgid, me);
        assert_eq!(both.describe(), format!("pid {me} and comm \"x\""));
        let gone = Selection {
            pid: Some(1 << 23),
            comm: None,
        };
        assert!(matches!(gone.to_filter(), Err(Error::UnknownPid { .. })));
    }

    #[test]
    fn every_slot_has_a_program() {
        assert_eq!(program_for(0), PROG_RW);
        assert_eq!(program_for(2), PROG_OPEN);
        assert_eq!(program_for(59), PROG_EXECVE);
        assert_eq!(program_for(224), PROG_TIMER);
        assert_eq!(program_for(184), PROG_DEFAULT);
        for p in (0..SYSCALL_SLOTS).map(program_for) {
            assert!(HANDLER_PROGRAMS.contains(&p));
        }
    }
}
