//! exec tracing: attaches the exec programs (syscall entry and exit of `execve`/`execveat`, and
//! `sched_process_exec`), configures them through `EXEC_CONFIG`, and reads per-uid counters,
//! lost-event counters and the event stream.
//!
//! Pids in events are those of mapscope's pid namespace ([`crate::pidns`]), the ones its `/proc`
//! and `ps` show; execs of tasks with no pid there are counted, not reported.

pub mod event;
pub mod offsets;
pub mod reader;

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, PerCpuArray},
    programs::{TracePoint, trace_point::TracePointLinkId},
};
use mapscope_common::exec::{
    EVENT_MAX_LEN, EXEC_LOST_SLOTS, ExecConfig, ExecCounter, ExecInflight, ExecTransport,
    FLAG_SKIP, MAP_EXEC_CONFIG, MAP_EXEC_INFLIGHT, MAP_EXEC_LOST, MAP_EXEC_PERF, MAP_EXEC_RING,
    MAP_EXEC_UIDS,
};
use serde::Serialize;

pub use self::{event::Exec, reader::EventStream};
use crate::{Error, Result, loader, pidns::PidNamespace, requirements::Requirement};

/// The transport events take from kernel to user space.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// `BPF_MAP_TYPE_RINGBUF`: one buffer shared by all CPUs, events in order (the default).
    #[default]
    Ring,
    /// `BPF_MAP_TYPE_PERF_EVENT_ARRAY`: a buffer per CPU, for kernels or tools that expect it.
    Perf,
}

/// How to set up the tracer.
#[derive(Clone, Debug)]
pub struct ExecOptions {
    pub transport: Transport,
    /// Only send events for this uid (counters still count every uid). Filtering in the kernel
    /// keeps other users' execs from competing for buffer space.
    pub uid: Option<u32>,
    /// Ring buffer size in bytes (power of two, at least [`MIN_RING_BYTES`]).
    pub ring_bytes: u32,
    /// Perf buffer pages per CPU (power of two).
    pub perf_pages: usize,
}

impl Default for ExecOptions {
    fn default() -> Self {
        Self {
            transport: Transport::Ring,
            uid: None,
            ring_bytes: 1 << 20,
            perf_pages: 64,
        }
    }
}

/// The smallest ring that holds the largest event (plus the ring's 8-byte record header): a
/// smaller one would lose every event with long arguments.
pub const MIN_RING_BYTES: u32 = (EVENT_MAX_LEN as u32 + 8).next_power_of_two();

/// Entries of the preallocated in-flight map: threads inside an exec at the same moment. An exec
/// is in flight for the time the kernel takes to open and map a binary (microseconds to a few
/// milliseconds), so even a `make -j` burst on a large host stays far below this; beyond it the
/// exec is counted as lost. 64 bytes each.
pub const INFLIGHT_ENTRIES: u32 = 4096;

/// Programs that see an exec's outcome; attached before [`ENTRY_PROGRAMS`] and detached after
/// them, so an exec that entered while tracing is always seen to its end.
const OUTCOME_PROGRAMS: [(&str, &str, &str); 3] = [
    ("exec_done", "sched", "sched_process_exec"),
    ("exec_exit", "syscalls", "sys_exit_execve"),
    ("execat_exit", "syscalls", "sys_exit_execveat"),
];
const ENTRY_PROGRAMS: [(&str, &str, &str); 2] = [
    ("exec_enter", "syscalls", "sys_enter_execve"),
    ("execat_enter", "syscalls", "sys_enter_execveat"),
];

/// How long detaching waits for execs that entered to reach their outcome.
const DETACH_WAIT: Duration = Duration::from_millis(200);

/// Why events were not delivered, and what was left out on purpose.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ExecCounters {
    /// Ring buffer full or perf output failed.
    pub lost_output: u64,
    /// The in-flight map was full at syscall entry.
    pub lost_inflight_full: u64,
    /// A thread's earlier exec had no outcome before its next one.
    pub lost_inflight_replaced: u64,
    /// A tracepoint record or the configuration could not be read.
    pub lost_read: u64,
    /// Execs still in flight when tracing stopped.
    pub lost_at_detach: u64,
    /// Execs of tasks with no pid in mapscope's pid namespace (not reported, not lost).
    pub outside_pidns: u64,
}

impl ExecCounters {
    /// Every event lost, whatever the reason.
    pub fn lost(&self) -> u64 {
        self.lost_output
            + self.lost_inflight_full
            + self.lost_inflight_replaced
            + self.lost_read
            + self.lost_at_detach
    }
}

/// The counter maps a long-running owner (the agent) pins so counts survive restarts.
pub const PINNED_MAPS: [&str; 2] = [MAP_EXEC_UIDS, MAP_EXEC_LOST];

/// The exec counters read at one instant: what the agent's `/metrics` and `/api/v1/exec` render.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    /// Execs per uid since the counters were created.
    pub uids: BTreeMap<u32, u64>,
    /// Events the kernel could not deliver, all CPUs.
    pub lost: u64,
}

/// Attached exec programs; dropping this detaches them (entries first) and stops the readers.
pub struct ExecTracer {
    ebpf: Ebpf,
    opts: ExecOptions,
    entry_links: Vec<(&'static str, TracePointLinkId)>,
    outcome_links: Vec<(&'static str, TracePointLinkId)>,
    lost_at_detach: u64,
}

impl ExecTracer {
    /// Loads, configures and attaches the exec programs. Events accumulate in the kernel buffer
    /// until [`ExecTracer::events`] starts reading them.
    pub fn attach(opts: ExecOptions) -> Result<Self> {
        Self::attach_pinned(opts, None)
    }

    /// [`Self::attach`] with the [`PINNED_MAPS`] pinned in (or reused from) `pins`.
    pub fn attach_pinned(opts: ExecOptions, pins: Option<&Path>) -> Result<Self> {
        if !opts.ring_bytes.is_power_of_two() || opts.ring_bytes < MIN_RING_BYTES {
            return Err(Error::InvalidArgument(format!(
                "ring buffer size must be a power of two of at least {MIN_RING_BYTES} bytes (the largest exec event), got {}",
                opts.ring_bytes
            )));
        }
        if !opts.perf_pages.is_power_of_two() {
            return Err(Error::InvalidArgument(format!(
                "perf buffer pages must be a power of two, got {}",
                opts.perf_pages
            )));
        }
        let ns = PidNamespace::current()?;
        let mut ebpf = loader::load_with(
            loader::Family::Exec,
            &[Requirement::BpfPrivileges, Requirement::Tracefs],
            |l| {
                crate::pidns::configure(l, ns);
                l.map_max_entries(MAP_EXEC_RING, opts.ring_bytes);
                l.map_max_entries(MAP_EXEC_INFLIGHT, INFLIGHT_ENTRIES);
                if let Some(dir) = pins {
                    loader::pin_maps(l, dir, &PINNED_MAPS);
                }
            },
        )?;

        let mut cfg = ExecConfig {
            filter_uid_enabled: u32::from(opts.uid.is_some()),
            filter_uid: opts.uid.unwrap_or(0),
            transport: match opts.transport {
                Transport::Ring => ExecTransport::RingBuf as u32,
                Transport::Perf => ExecTransport::PerfEventArray as u32,
            },
            ..ExecConfig::default()
        };
        offsets::fill(&mut cfg);
        let mut config: Array<_, ExecConfig> = loader::map_mut(&mut ebpf, MAP_EXEC_CONFIG)?;
        config.set(0, cfg, 0).map_err(|source| Error::Map {
            name: MAP_EXEC_CONFIG,
            source,
        })?;

        let mut tracer = Self {
            ebpf,
            opts,
            entry_links: Vec::new(),
            outcome_links: Vec::new(),
            lost_at_detach: 0,
        };
        for (name, ..) in OUTCOME_PROGRAMS.iter().chain(&ENTRY_PROGRAMS) {
            loader::program_mut::<TracePoint>(&mut tracer.ebpf, name)?
                .load()
                .map_err(|source| Error::Program { name, source })?;
        }
        // Outcomes first: an exec whose entry is seen always has its outcome seen too. (If
        // attaching fails part-way, dropping `tracer` detaches what was attached, in order.)
        for (name, category, tracepoint) in OUTCOME_PROGRAMS {
            let id = attach(&mut tracer.ebpf, name, category, tracepoint)?;
            tracer.outcome_links.push((name, id));
        }
        for (name, category, tracepoint) in ENTRY_PROGRAMS {
            let id = attach(&mut tracer.ebpf, name, category, tracepoint)?;
            tracer.entry_links.push((name, id));
        }
        Ok(tracer)
    }

    /// Starts reading events on a task of their own (must run inside a tokio runtime); call
    /// once, this or [`ExecTracer::buffers`].
    pub fn events(&mut self, capacity: usize) -> Result<EventStream> {
        Ok(EventStream::spawn(self.buffers()?, capacity))
    }

    /// The event buffers, for a consumer that reads them in its own loop (must run inside a
    /// tokio runtime; decode with [`reader::decode_exec`]); call once.
    pub fn buffers(&mut self) -> Result<reader::Buffers> {
        let name = match self.opts.transport {
            Transport::Ring => MAP_EXEC_RING,
            Transport::Perf => MAP_EXEC_PERF,
        };
        let map = self
            .ebpf
            .take_map(name)
            .ok_or(Error::InvalidArgument(format!(
                "events already being read from {name}"
            )))?;
        match self.opts.transport {
            Transport::Ring => reader::Buffers::ring(map),
            Transport::Perf => reader::Buffers::perf(map, self.opts.perf_pages),
        }
    }

    /// Exec counts per uid since the programs were loaded.
    pub fn uid_counts(&self) -> Result<BTreeMap<u32, u64>> {
        let map: HashMap<&MapData, u32, u64> = loader::map(&self.ebpf, MAP_EXEC_UIDS)?;
        map.iter()
            .map(|r| {
                r.map_err(|source| Error::Map {
                    name: MAP_EXEC_UIDS,
                    source,
                })
            })
            .collect()
    }

    /// Both counters now.
    pub fn snapshot(&self) -> Result<Snapshot> {
        Ok(Snapshot {
            uids: self.uid_counts()?,
            lost: self.lost()?,
        })
    }

    /// Events the kernel could not deliver, all CPUs and reasons (see [`ExecTracer::counters`]).
    pub fn lost(&self) -> Result<u64> {
        Ok(self.counters()?.lost())
    }

    /// The kernel's loss counters by reason, all CPUs.
    pub fn counters(&self) -> Result<ExecCounters> {
        let map: PerCpuArray<&MapData, u64> = loader::map(&self.ebpf, MAP_EXEC_LOST)?;
        let read = |c: ExecCounter| -> Result<u64> {
            let per_cpu = map.get(&(c as u32), 0).map_err(|source| Error::Map {
                name: MAP_EXEC_LOST,
                source,
            })?;
            Ok(per_cpu.iter().copied().fold(0u64, u64::wrapping_add))
        };
        const _: () = assert!(EXEC_LOST_SLOTS == ExecCounter::OutsidePidns as u32);
        Ok(ExecCounters {
            lost_output: read(ExecCounter::LostOutput)?,
            lost_inflight_full: read(ExecCounter::LostInflightFull)?,
            lost_inflight_replaced: read(ExecCounter::LostInflightReplaced)?,
            lost_read: read(ExecCounter::LostRead)?,
            lost_at_detach: self.lost_at_detach,
            outside_pidns: read(ExecCounter::OutsidePidns)?,
        })
    }

    /// Stops tracing in the order that loses nothing uncounted: entry programs first, then a
    /// short wait for the execs that entered to reach their outcome, then the outcome programs.
    /// Execs still in flight after the wait are counted in `lost_at_detach`. Idempotent; also
    /// run on drop.
    pub fn detach(&mut self) {
        if self.entry_links.is_empty() && self.outcome_links.is_empty() {
            return;
        }
        for (name, id) in self.entry_links.drain(..) {
            if let Ok(p) = loader::program_mut::<TracePoint>(&mut self.ebpf, name) {
                let _ = p.detach(id);
            }
        }
        let deadline = Instant::now() + DETACH_WAIT;
        let mut pending = self.in_flight();
        while pending > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            pending = self.in_flight();
        }
        self.lost_at_detach += pending;
        for (name, id) in self.outcome_links.drain(..) {
            if let Ok(p) = loader::program_mut::<TracePoint>(&mut self.ebpf, name) {
                let _ = p.detach(id);
            }
        }
    }

    /// Execs in flight that will send an event.
    fn in_flight(&self) -> u64 {
        let Ok(map) =
            loader::map::<HashMap<&MapData, u32, ExecInflight>>(&self.ebpf, MAP_EXEC_INFLIGHT)
        else {
            return 0;
        };
        map.iter()
            .filter_map(std::result::Result::ok)
            .filter(|(_, e)| e.flags & FLAG_SKIP == 0)
            .count() as u64
    }
}

impl Drop for ExecTracer {
    fn drop(&mut self) {
        self.detach();
    }
}

fn attach(
    ebpf: &mut Ebpf,
    name: &'static str,
    category: &str,
    tracepoint: &str,
) -> Result<TracePointLinkId> {
    loader::program_mut::<TracePoint>(ebpf, name)?
        .attach(category, tracepoint)
        .map_err(|source| Error::Program { name, source })
}
