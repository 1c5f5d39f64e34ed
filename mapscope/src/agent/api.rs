//! `GET /api/v1/<family>` bodies: each family's snapshot rendered by the same report type the
//! CLI's `--json` prints, taken between zero and now, so counts are totals since the (pinned)
//! counters were created and `period_s` is 0.

use mapscope_common::syscalls::SYSCALL_SLOTS;

use super::families::Families;
use crate::{malloc, syscalls};

/// Rows of the malloc process table the API returns: every process the kernel map holds (it is
/// bounded by the map's size), so a client can find any pid.
const MALLOC_TOP: usize = usize::MAX;

/// Why a family's body is not available.
#[derive(Debug)]
pub enum Unavailable {
    /// Not enabled in the config.
    Disabled,
    /// Reading its maps failed (the message).
    Read(String),
}

fn read<T, E: std::error::Error + 'static>(r: Result<T, E>) -> Result<T, Unavailable> {
    r.map_err(|e| Unavailable::Read(crate::error::one_line(&e)))
}

/// How a family's body is built from the running families.
pub type Body = fn(&Families) -> Result<serde_json::Value, Unavailable>;

/// Every family's body by name: what `/api/v1/<family>`, the dashboard's stats stream and the
/// sinks' snapshot events each serve.
pub const BODIES: [(&str, Body); 4] = [
    ("xdp", xdp),
    ("exec", exec),
    ("syscalls", syscalls),
    ("malloc", malloc),
];

/// `/api/v1/xdp`.
pub fn xdp(f: &Families) -> Result<serde_json::Value, Unavailable> {
    let seam = f.xdp.as_ref().ok_or(Unavailable::Disabled)?;
    Ok(read(seam.snapshot())?.json())
}

/// `/api/v1/exec`.
pub fn exec(f: &Families) -> Result<serde_json::Value, Unavailable> {
    let t = f.exec.as_ref().ok_or(Unavailable::Disabled)?;
    let snap = read(t.lock().unwrap_or_else(|p| p.into_inner()).snapshot())?;
    Ok(crate::versioned::versioned(1, &snap))
}

/// `/api/v1/syscalls`.
pub fn syscalls(f: &Families) -> Result<serde_json::Value, Unavailable> {
    let c = f.syscalls.as_ref().ok_or(Unavailable::Disabled)?;
    let cur = read(c.lock().unwrap_or_else(|p| p.into_inner()).snapshot())?;
    let zero = syscalls::Snapshot {
        counts: vec![0; cur.counts.len()],
        compat: vec![0; cur.compat.len()],
        handled: Default::default(),
        tail_call_failed: 0,
        out_of_range: 0,
        compat_out_of_range: 0,
        ..cur.clone()
    };
    let all = SYSCALL_SLOTS as usize;
    Ok(
        syscalls::report::Interval::between("all processes but the agent", &zero, &cur, &[], all)
            .json(),
    )
}

/// `/api/v1/malloc`.
pub fn malloc(f: &Families) -> Result<serde_json::Value, Unavailable> {
    let m = f.malloc.as_ref().ok_or(Unavailable::Disabled)?;
    let stats = m.lock().unwrap_or_else(|p| p.into_inner());
    let cur = read(stats.snapshot())?;
    let zero = malloc::Snapshot {
        at: cur.at,
        per_cpu: Vec::new(),
        processes: Default::default(),
        stacks: None,
    };
    let libcs: Vec<String> = stats
        .libcs()
        .iter()
        .map(|l| l.attach_path.display().to_string())
        .collect();
    let target = stats.target().describe();
    Ok(malloc::report::Interval::between(&libcs, &target, &zero, &cur, MALLOC_TOP).json())
}
