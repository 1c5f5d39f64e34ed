//! Starting every enabled family once, with its counter maps pinned, and reading all of them at
//! one instant through each family's own snapshot (the one path from a map to a number).

use crate::sinks::pipeline::LiveStats;
use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use super::{
    config::Config,
    outbox::Outbox,
    pins,
    xdp::{XdpSeam, XdpSnapshot},
};
use crate::{
    exec::{self, ExecOptions, ExecTracer},
    loader::Family,
    malloc::{self, MallocStats, Options, Target},
    syscalls::{self, Selection, SyscallCounter},
};

/// Why a family did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    // The source is printed by the chain (anyhow's `{:#}`, `error::one_line`), not here too.
    #[error("{family}")]
    Family {
        family: &'static str,
        #[source]
        source: crate::Error,
    },
    #[error("xdp")]
    Xdp(#[from] super::xdp::SeamError),
    #[error(transparent)]
    Pins(#[from] pins::PinError),
}

/// The pinned maps of each family the agent pins (xdp's pinning belongs to its attachment).
pub fn pinned_maps() -> [(Family, &'static [&'static str]); 3] {
    [
        (Family::Exec, &exec::PINNED_MAPS),
        (Family::Syscalls, &syscalls::PINNED_MAPS),
        (Family::Malloc, &malloc::PINNED_MAPS),
    ]
}

/// Every running family; dropping it detaches their programs (pins stay).
pub struct Families {
    pub xdp: Option<XdpSeam>,
    pub exec: Option<Mutex<ExecTracer>>,
    pub syscalls: Option<Mutex<SyscallCounter>>,
    pub malloc: Option<Mutex<MallocStats>>,
    /// Exec events drained from the ring (none are kept: counters are what the agent serves).
    pub exec_events: Arc<AtomicU64>,
    /// Every drained exec event for live subscribers (the dashboard's SSE stream): a subscriber
    /// that falls behind loses its oldest events and is told how many; the reader never waits.
    pub exec_tx: tokio::sync::broadcast::Sender<Arc<exec::Exec>>,
    drain: Option<tokio::task::JoinHandle<()>>,
    /// Tells the exec drain to stop reading and flush its sinks ([`Families::stop`]).
    drain_stop: Arc<tokio::sync::Notify>,
    /// Map ids of the pinned counters, to tell the agent's programs apart in bpf_stats.
    pub map_ids: Vec<u32>,
    /// The configured sinks (exec events, the rule endpoints' and the feed's events).
    pub outbox: Option<Arc<Outbox>>,
}

impl Families {
    /// Each configured sink's running delivery totals, by sink name.
    pub fn sinks(&self) -> &[(&'static str, Arc<LiveStats>)] {
        self.outbox.as_deref().map_or(&[], Outbox::live)
    }

    /// Stops reading exec events and flushes the sinks (what they could not deliver is spooled).
    pub async fn stop(&mut self) {
        self.drain_stop.notify_one();
        if let Some(d) = self.drain.take() {
            let _ = d.await;
        }
        if let Some(o) = &self.outbox {
            o.finish().await;
        }
    }
}

impl Drop for Families {
    fn drop(&mut self) {
        if let Some(d) = self.drain.take() {
            d.abort();
        }
    }
}

/// Exec events each live subscriber may fall behind by before it loses the oldest ones.
pub const EXEC_SUBSCRIBER_BUFFER: usize = 1024;

/// Lines reporting what happened to existing pins (mismatches recreated), for stderr.
pub type PinReports = Vec<String>;

impl Families {
    /// Starts the enabled families (inside a tokio runtime: exec's reader needs it).
    pub fn start(
        cfg: &Config,
        outbox: Option<Arc<Outbox>>,
    ) -> Result<(Self, PinReports), StartError> {
        let mut reports = Vec::new();
        let mut dir = |family: Family, maps: &[&str]| -> Result<PathBuf, StartError> {
            let (d, r) = pins::prepare(&cfg.pin_dir, family, maps)?;
            reports.extend(r);
            Ok(d)
        };
        let fam = |family: &'static str| move |source| StartError::Family { family, source };
        let mut out = Families {
            xdp: None,
            exec: None,
            syscalls: None,
            malloc: None,
            exec_events: Arc::new(AtomicU64::new(0)),
            exec_tx: tokio::sync::broadcast::channel(EXEC_SUBSCRIBER_BUFFER).0,
            drain: None,
            drain_stop: Arc::new(tokio::sync::Notify::new()),
            map_ids: Vec::new(),
            outbox: outbox.clone(),
        };
        // XDP first: it pins nothing, so if its interfaces are wrong nothing is left behind.
        if cfg.xdp.enabled {
            out.xdp = Some(XdpSeam::start(
                &cfg.xdp.interfaces,
                cfg.xdp.netns.as_deref(),
                cfg.xdp.mode.into(),
                &cfg.xdp.drop,
            )?);
        }
        if cfg.exec.enabled {
            let d = dir(Family::Exec, &exec::PINNED_MAPS)?;
            let mut tracer =
                ExecTracer::attach_pinned(ExecOptions::default(), Some(&d)).map_err(fam("exec"))?;
            let mut events = tracer.events(4096).map_err(fam("exec"))?;
            let count = out.exec_events.clone();
            let tx = out.exec_tx.clone();
            let stop = out.drain_stop.clone();
            out.drain = Some(tokio::spawn(async move {
                loop {
                    let e = tokio::select! {
                        e = events.recv() => e,
                        () = stop.notified() => None,
                    };
                    let Some(e) = e else { break };
                    count.fetch_add(1, Ordering::Relaxed);
                    if let Some(o) = &outbox {
                        o.send(e.json()).await;
                    }
                    // Err only means nobody is subscribed right now.
                    let _ = tx.send(Arc::new(e));
                }
            }));
            out.exec = Some(Mutex::new(tracer));
            out.map_ids.extend(ids(&d, &exec::PINNED_MAPS));
        }
        if cfg.syscalls.enabled {
            let d = dir(Family::Syscalls, &syscalls::PINNED_MAPS)?;
            let filter = Selection::default().to_filter().map_err(fam("syscalls"))?;
            let counter =
                SyscallCounter::attach_pinned(filter, Some(&d)).map_err(fam("syscalls"))?;
            out.syscalls = Some(Mutex::new(counter));
            out.map_ids.extend(ids(&d, &syscalls::PINNED_MAPS));
        }
        if cfg.malloc.enabled {
            let d = dir(Family::Malloc, &malloc::PINNED_MAPS)?;
            let stats =
                MallocStats::attach_pinned(Target::AllProcesses, Options::default(), Some(&d))
                    .map_err(fam("malloc"))?;
            out.malloc = Some(Mutex::new(stats));
            out.map_ids.extend(ids(&d, &malloc::PINNED_MAPS));
        }
        // Started: from here on the XDP attachments outlive the agent.
        if let Some(x) = &out.xdp {
            x.keep();
        }
        Ok((out, reports))
    }

    /// Every family's snapshot now; a family whose read fails is reported and left out.
    pub fn read(&self) -> Readings {
        fn take<T, E: std::error::Error + 'static>(family: &str, r: Result<T, E>) -> Option<T> {
            r.map_err(|e| tracing::warn!("reading {family}: {}", crate::error::one_line(&e)))
                .ok()
        }
        Readings {
            xdp: self.xdp.as_ref().and_then(|x| take("xdp", x.snapshot())),
            exec: self
                .exec
                .as_ref()
                .and_then(|e| take("exec", lock(e).snapshot())),
            syscalls: self
                .syscalls
                .as_ref()
                .and_then(|s| take("syscalls", lock(s).snapshot())),
            malloc: self
                .malloc
                .as_ref()
                .and_then(|m| take("malloc", lock(m).snapshot())),
            programs: program_stats(&self.map_ids),
            sinks: self.sinks().iter().map(|(n, l)| (*n, l.read())).collect(),
        }
    }
}

/// Locks `m`, taking the value even if a panicking holder poisoned it (counters stay valid).
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn ids(dir: &Path, maps: &[&str]) -> Vec<u32> {
    maps.iter()
        .filter_map(|m| crate::maps::MapHandle::from_pin(&dir.join(m)).ok())
        .map(|h| h.meta.id)
        .collect()
}

/// All families read at one instant: what `/metrics` renders.
pub struct Readings {
    pub xdp: Option<XdpSnapshot>,
    pub exec: Option<exec::Snapshot>,
    pub syscalls: Option<syscalls::Snapshot>,
    pub malloc: Option<malloc::Snapshot>,
    /// Per-program run statistics, when `kernel.bpf_stats_enabled` is 1.
    pub programs: Option<Vec<ProgramStats>>,
    /// Each sink's (delivered, dropped, rejected) events so far.
    pub sinks: Vec<(&'static str, (u64, u64, u64))>,
}

/// One of the agent's programs as the kernel's run statistics see it.
pub struct ProgramStats {
    pub name: String,
    pub id: u32,
    pub run_count: u64,
    pub run_time_ns: u64,
}

/// Run count and time of every program using the agent's pinned maps, when the kernel collects
/// them (`sysctl kernel.bpf_stats_enabled=1`; off by default because it costs every run).
fn program_stats(map_ids: &[u32]) -> Option<Vec<ProgramStats>> {
    let on = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").ok()?;
    if on.trim() != "1" {
        return None;
    }
    let mut out = Vec::new();
    for info in aya::programs::loaded_programs().flatten() {
        let Ok(Some(maps)) = info.map_ids() else {
            continue;
        };
        if maps.iter().any(|m| map_ids.contains(m)) {
            out.push(ProgramStats {
                name: info.name_as_str().unwrap_or("").to_string(),
                id: info.id(),
                run_count: info.run_count(),
                run_time_ns: u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX),
            });
        }
    }
    Some(out)
}
