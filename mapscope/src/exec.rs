//! exec tracing: attaches the `sys_enter/exit_execve(at)` tracepoints, configures them through
//! `EXEC_CONFIG`, and reads per-uid counters, lost-event counters and the event stream.

pub mod event;
pub mod reader;

use std::{collections::BTreeMap, path::Path};

use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, PerCpuArray},
    programs::TracePoint,
};
use mapscope_common::exec::{
    ExecConfig, ExecTransport, MAP_EXEC_CONFIG, MAP_EXEC_LOST, MAP_EXEC_PERF, MAP_EXEC_RING,
    MAP_EXEC_UIDS,
};

pub use self::{event::Exec, reader::EventStream};
use crate::{Error, Result, loader, requirements::Requirement};

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
    /// Ring buffer size in bytes (power of two, multiple of the page size).
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

const PROGRAMS: [(&str, &str); 4] = [
    ("exec_enter", "sys_enter_execve"),
    ("execat_enter", "sys_enter_execveat"),
    ("exec_exit", "sys_exit_execve"),
    ("execat_exit", "sys_exit_execveat"),
];

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

/// Attached exec tracepoints; dropping this detaches them and stops the readers.
pub struct ExecTracer {
    ebpf: Ebpf,
    opts: ExecOptions,
}

impl ExecTracer {
    /// Loads, configures and attaches the exec programs. Events accumulate in the kernel buffer
    /// until [`ExecTracer::events`] starts reading them.
    pub fn attach(opts: ExecOptions) -> Result<Self> {
        Self::attach_pinned(opts, None)
    }

    /// [`Self::attach`] with the [`PINNED_MAPS`] pinned in (or reused from) `pins`.
    pub fn attach_pinned(opts: ExecOptions, pins: Option<&Path>) -> Result<Self> {
        if !opts.ring_bytes.is_power_of_two() || opts.ring_bytes < 4096 {
            return Err(Error::InvalidArgument(format!(
                "ring buffer size must be a power of two of at least 4096 bytes, got {}",
                opts.ring_bytes
            )));
        }
        if !opts.perf_pages.is_power_of_two() {
            return Err(Error::InvalidArgument(format!(
                "perf buffer pages must be a power of two, got {}",
                opts.perf_pages
            )));
        }
        let mut ebpf = loader::load_with(
            loader::Family::Exec,
            &[Requirement::BpfPrivileges, Requirement::Tracefs],
            |l| {
                l.map_max_entries(MAP_EXEC_RING, opts.ring_bytes);
                if let Some(dir) = pins {
                    loader::pin_maps(l, dir, &PINNED_MAPS);
                }
            },
        )?;

        // Offsets for ppid. Without BTF the events still flow, with ppid marked unknown.
        let (real_parent_off, tgid_off, offsets_valid) = match crate::btf::task_struct_offsets() {
            Ok((rp, tg)) => (rp, tg, 1),
            Err(e) => {
                tracing::warn!("ppid unavailable: {e}");
                (0, 0, 0)
            }
        };
        let cfg = ExecConfig {
            real_parent_off,
            tgid_off,
            offsets_valid,
            filter_uid_enabled: u32::from(opts.uid.is_some()),
            filter_uid: opts.uid.unwrap_or(0),
            transport: match opts.transport {
                Transport::Ring => ExecTransport::RingBuf as u32,
                Transport::Perf => ExecTransport::PerfEventArray as u32,
            },
        };
        let mut config: Array<_, ExecConfig> = loader::map_mut(&mut ebpf, MAP_EXEC_CONFIG)?;
        config.set(0, cfg, 0).map_err(|source| Error::Map {
            name: MAP_EXEC_CONFIG,
            source,
        })?;

        for (name, tracepoint) in PROGRAMS {
            let prog: &mut TracePoint = loader::program_mut(&mut ebpf, name)?;
            prog.load()
                .map_err(|source| Error::Program { name, source })?;
            prog.attach("syscalls", tracepoint)
                .map_err(|source| Error::Program { name, source })?;
        }
        Ok(Self { ebpf, opts })
    }

    /// Starts reading events (must run inside a tokio runtime); call once.
    pub fn events(&mut self, capacity: usize) -> Result<EventStream> {
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
            Transport::Ring => reader::ring(map, capacity),
            Transport::Perf => reader::perf(map, self.opts.perf_pages, capacity),
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

    /// Events the kernel could not deliver (buffer full, too many execs in flight), all CPUs.
    pub fn lost(&self) -> Result<u64> {
        let map: PerCpuArray<&MapData, u64> = loader::map(&self.ebpf, MAP_EXEC_LOST)?;
        let per_cpu = map.get(&0, 0).map_err(|source| Error::Map {
            name: MAP_EXEC_LOST,
            source,
        })?;
        Ok(per_cpu.iter().copied().fold(0u64, u64::wrapping_add))
    }
}
