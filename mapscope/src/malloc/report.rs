//! Turning two snapshots into one interval's view: calls and bytes per CPU and in total, and
//! the processes that called malloc most (as bcc memleak / trace_malloc users expect).
//! [`Interval`] is the one typed value every output renders (the table, `--json`).

use std::{fmt::Write as _, time::Duration};

use mapscope_common::malloc::MallocRecord;
use serde::Serialize;

use super::{OUTSIDE_PIDNS, Snapshot, stacks::StackReport, sum};

/// Version of the JSON object; bumps only when a field changes meaning (2: `libc` became the
/// list `libcs`).
pub const JSON_SCHEMA: u32 = 2;

/// What the process table calls the tasks outside mapscope's pid namespace (pid 0).
pub const OUTSIDE_COMM: &str = "[other pid namespaces]";

/// One process's mallocs in the interval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProcessRow {
    /// In mapscope's pid namespace; 0 for every task outside it.
    pub pid: u32,
    pub comm: String,
    pub calls: u64,
    pub bytes: u64,
}

/// One CPU's mallocs in the interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct CpuRow {
    pub cpu: usize,
    pub calls: u64,
    pub bytes: u64,
}

/// Calls and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub calls: u64,
    pub bytes: u64,
}

impl From<MallocRecord> for Totals {
    fn from(r: MallocRecord) -> Self {
        Self {
            calls: r.calls,
            bytes: r.bytes,
        }
    }
}

/// One interval's report: what `mapscope malloc` prints every `--interval`.
#[derive(Clone, Debug, Serialize)]
pub struct Interval {
    #[serde(rename = "period_s", serialize_with = "secs")]
    pub period: Duration,
    /// Every libc the probe sits in.
    pub libcs: Vec<String>,
    pub target: String,
    /// Per CPU id.
    pub per_cpu: Vec<CpuRow>,
    pub total: Totals,
    /// Most calls first (ties by pid); only processes that called malloc in the interval.
    pub top: Vec<ProcessRow>,
    /// Who allocates, with `--stacks`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stacks: Option<StackReport>,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// A kernel command name: bytes up to the first NUL.
pub fn comm_str(comm: &[u8; 16]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..end]).into_owned()
}

fn delta(prev: &MallocRecord, cur: &MallocRecord) -> MallocRecord {
    // A counter that went backwards (entry evicted and recreated) is not a wrap-around.
    MallocRecord {
        calls: cur.calls.saturating_sub(prev.calls),
        bytes: cur.bytes.saturating_sub(prev.bytes),
    }
}

impl Interval {
    /// Builds the report; `top` bounds the process table.
    pub fn between(
        libcs: &[String],
        target: &str,
        prev: &Snapshot,
        cur: &Snapshot,
        top: usize,
    ) -> Self {
        let per_cpu: Vec<MallocRecord> = cur
            .per_cpu
            .iter()
            .enumerate()
            .map(|(cpu, c)| delta(&prev.per_cpu.get(cpu).copied().unwrap_or_default(), c))
            .collect();
        let mut rows: Vec<ProcessRow> = cur
            .processes
            .iter()
            .filter_map(|(&pid, c)| {
                let before = prev
                    .processes
                    .get(&pid)
                    .map(|p| MallocRecord {
                        calls: p.calls,
                        bytes: p.bytes,
                    })
                    .unwrap_or_default();
                let d = delta(
                    &before,
                    &MallocRecord {
                        calls: c.calls,
                        bytes: c.bytes,
                    },
                );
                (d.calls > 0).then(|| ProcessRow {
                    pid,
                    comm: if pid == OUTSIDE_PIDNS {
                        OUTSIDE_COMM.to_string()
                    } else {
                        comm_str(&c.comm)
                    },
                    calls: d.calls,
                    bytes: d.bytes,
                })
            })
            .collect();
        rows.sort_by(|a, b| b.calls.cmp(&a.calls).then(a.pid.cmp(&b.pid)));
        rows.truncate(top);
        Self {
            period: cur.at.saturating_duration_since(prev.at),
            libcs: libcs.to_vec(),
            target: target.to_string(),
            total: sum(per_cpu.iter()).into(),
            per_cpu: per_cpu
                .iter()
                .enumerate()
                .map(|(cpu, r)| CpuRow {
                    cpu,
                    calls: r.calls,
                    bytes: r.bytes,
                })
                .collect(),
            top: rows,
            stacks: None,
        }
    }

    /// Adds the stacks part.
    pub fn with_stacks(mut self, stacks: StackReport) -> Self {
        self.stacks = Some(stacks);
        self
    }

    /// The per-CPU table followed by the top processes.
    pub fn table(&self) -> String {
        let mut out = format!(
            "malloc over {:.3}s for {} ({})\n",
            self.period.as_secs_f64(),
            self.target,
            self.libcs.join(", ")
        );
        let _ = writeln!(out, "{:<8} {:>12} {:>16}", "CPU", "CALLS", "BYTES");
        for r in &self.per_cpu {
            let _ = writeln!(out, "{:<8} {:>12} {:>16}", r.cpu, r.calls, r.bytes);
        }
        let _ = writeln!(
            out,
            "{:<8} {:>12} {:>16}",
            "total", self.total.calls, self.total.bytes
        );
        let _ = writeln!(
            out,
            "{:<8} {:<16} {:>12} {:>16}",
            "PID", "COMM", "CALLS", "BYTES"
        );
        for p in &self.top {
            let pid = if p.pid == OUTSIDE_PIDNS {
                "-".to_string()
            } else {
                p.pid.to_string()
            };
            let _ = writeln!(
                out,
                "{pid:<8} {:<16} {:>12} {:>16}",
                p.comm, p.calls, p.bytes
            );
        }
        if let Some(stacks) = &self.stacks {
            out.push_str(&stacks.table());
        }
        out
    }

    /// One JSON object per interval: this value with a leading `schema`.
    pub fn json(&self) -> serde_json::Value {
        crate::versioned::versioned(JSON_SCHEMA, self)
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, time::Instant};

    use mapscope_common::malloc::MallocProcess;

    use super::*;

    fn rec(calls: u64, bytes: u64) -> MallocRecord {
        MallocRecord { calls, bytes }
    }

    fn proc_rec(calls: u64, bytes: u64, comm: &str) -> MallocProcess {
        let mut c = [0u8; 16];
        c[..comm.len()].copy_from_slice(comm.as_bytes());
        MallocProcess {
            calls,
            bytes,
            comm: c,
        }
    }

    fn snapshots() -> (Snapshot, Snapshot) {
        let t0 = Instant::now();
        let prev = Snapshot {
            at: t0,
            per_cpu: vec![rec(10, 1000), rec(5, 50)],
            processes: BTreeMap::from([
                (100, proc_rec(10, 1000, "a")),
                (200, proc_rec(5, 50, "b")),
            ]),
            stacks: None,
        };
        let cur = Snapshot {
            at: t0 + Duration::from_millis(500),
            per_cpu: vec![rec(14, 1400), rec(15, 1050)],
            processes: BTreeMap::from([
                (100, proc_rec(14, 1400, "a")),
                (200, proc_rec(5, 50, "b")),
                (300, proc_rec(10, 1000, "new")),
            ]),
            stacks: None,
        };
        (prev, cur)
    }

    #[test]
    fn deltas_per_cpu_total_and_top() {
        let (prev, cur) = snapshots();
        let r = Interval::between(&["/lib/libc.so.6".into()], "all processes", &prev, &cur, 10);
        assert_eq!(
            r.per_cpu
                .iter()
                .map(|c| (c.cpu, c.calls, c.bytes))
                .collect::<Vec<_>>(),
            [(0, 4, 400), (1, 10, 1000)]
        );
        assert_eq!(
            r.total,
            Totals {
                calls: 14,
                bytes: 1400
            }
        );
        let top: Vec<(u32, &str, u64, u64)> = r
            .top
            .iter()
            .map(|p| (p.pid, p.comm.as_str(), p.calls, p.bytes))
            .collect();
        // pid 200 made no calls in the interval; pid 300 is new and counts from zero.
        assert_eq!(top, [(300, "new", 10, 1000), (100, "a", 4, 400)]);
        let one = Interval::between(&["l".into()], "t", &prev, &cur, 1);
        assert_eq!(one.top.len(), 1);
    }

    #[test]
    fn evicted_and_recreated_process_is_not_a_wrap() {
        let (mut prev, cur) = snapshots();
        prev.processes.insert(300, proc_rec(50, 5000, "old"));
        let r = Interval::between(&["l".into()], "t", &prev, &cur, 10);
        assert!(r.top.iter().all(|p| p.pid != 300), "{:?}", r.top);
    }

    #[test]
    fn table_and_json() {
        let (prev, cur) = snapshots();
        let r = Interval::between(&["/lib/libc.so.6".into()], "pid 100", &prev, &cur, 10);
        let t = r.table();
        assert!(
            t.starts_with("malloc over 0.500s for pid 100 (/lib/libc.so.6)"),
            "{t}"
        );
        let total = t.lines().find(|l| l.starts_with("total")).unwrap();
        assert_eq!(
            total.split_whitespace().collect::<Vec<_>>(),
            ["total", "14", "1400"]
        );
        let cpu1 = t.lines().find(|l| l.starts_with("1 ")).unwrap();
        assert_eq!(
            cpu1.split_whitespace().collect::<Vec<_>>(),
            ["1", "10", "1000"]
        );
        assert!(
            t.lines()
                .any(|l| l.split_whitespace().eq(["300", "new", "10", "1000"]))
        );
        let j = r.json();
        assert_eq!(j["schema"], 2);
        assert_eq!(j["per_cpu"][1]["bytes"], 1000);
        assert_eq!(j["total"]["calls"], 14);
        assert_eq!(j["top"][0]["comm"], "new");
        assert_eq!(j["libcs"][0], "/lib/libc.so.6");
        assert_eq!(j["per_cpu"][1]["cpu"], 1);
    }

    #[test]
    fn tasks_outside_the_pid_namespace_have_one_row_without_a_pid() {
        let (prev, mut cur) = snapshots();
        cur.processes
            .insert(OUTSIDE_PIDNS, proc_rec(3, 30, "whoever-last"));
        let r = Interval::between(&["l".into()], "t", &prev, &cur, 10);
        let outside = r.top.iter().find(|p| p.pid == 0).unwrap();
        assert_eq!(outside.comm, OUTSIDE_COMM);
        assert_eq!((outside.calls, outside.bytes), (3, 30));
        let t = r.table();
        assert!(
            t.lines().any(|l| l.split_whitespace().eq([
                "-",
                "[other",
                "pid",
                "namespaces]",
                "3",
                "30"
            ])),
            "{t}"
        );
    }

    #[test]
    fn comm_stops_at_nul() {
        assert_eq!(comm_str(b"bash\0\0\0\0\0\0\0\0\0\0\0\0"), "bash");
        assert_eq!(comm_str(b"0123456789abcdef"), "0123456789abcdef");
    }
}
