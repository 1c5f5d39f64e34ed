//! Turning two snapshots into syscount's per-interval view: the top syscalls by calls in the
//! interval with their names, the dedicated handlers' own counters, and dispatch failures.

use std::{fmt::Write as _, time::Duration};

use mapscope_common::syscalls::{Handled, SYSCALL_SLOTS};
use serde::Serialize;

use super::{Snapshot, names, program_for};

/// One syscall's calls in the interval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row {
    pub nr: u32,
    pub name: String,
    pub count: u64,
    /// The program in its jump-table slot.
    pub program: &'static str,
}

/// One dedicated handler's own counters in the interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandlerRow {
    pub syscall: Handled,
    pub calls: u64,
    /// Meaning given by [`Handled::detail`]; 0 when it has none.
    pub detail: u64,
}

/// One interval's report: what `mapscope syscalls` prints every `--interval`.
#[derive(Clone, Debug)]
pub struct Interval {
    pub period: Duration,
    /// Which tasks were counted, in words.
    pub filter: String,
    /// Calls of every syscall in the interval, not just the rows shown.
    pub total: u64,
    /// Most called first (ties by number); at most `top` unless syscalls were named.
    pub rows: Vec<Row>,
    /// Every dedicated handler, in `Handled` order.
    pub handlers: Vec<HandlerRow>,
    pub tail_call_failed: u64,
    pub out_of_range: u64,
    /// Jump-table slots holding a program at the end of the interval.
    pub dispatch_populated: usize,
}

/// The name reports use for `nr`: the x86_64 name, or `sys_<nr>` for a number without one.
pub fn display_name(nr: u32) -> String {
    names::name(nr).map_or_else(|| format!("sys_{nr}"), str::to_string)
}

impl Interval {
    /// Builds the report. With `only` empty, the `top` most called syscalls with at least one
    /// call; otherwise exactly the syscalls in `only`, zero counts included.
    pub fn between(
        filter: &str,
        prev: &Snapshot,
        cur: &Snapshot,
        only: &[u32],
        top: usize,
    ) -> Self {
        // A counter that went backwards (map recreated) counts as no calls, not a wrap.
        let delta = |nr: u32| cur.count(nr).saturating_sub(prev.count(nr));
        let total = (0..SYSCALL_SLOTS).map(delta).fold(0u64, u64::wrapping_add);
        let mut rows: Vec<Row> = if only.is_empty() {
            (0..SYSCALL_SLOTS)
                .filter(|&nr| delta(nr) > 0)
                .map(|nr| row(nr, delta(nr)))
                .collect()
        } else {
            only.iter().map(|&nr| row(nr, delta(nr))).collect()
        };
        rows.sort_by(|a, b| b.count.cmp(&a.count).then(a.nr.cmp(&b.nr)));
        if only.is_empty() {
            rows.truncate(top);
        }
        let handlers = Handled::ALL
            .iter()
            .map(|&h| {
                let (p, c) = (prev.handler(h), cur.handler(h));
                HandlerRow {
                    syscall: h,
                    calls: c.calls.saturating_sub(p.calls),
                    detail: c.detail.saturating_sub(p.detail),
                }
            })
            .collect();
        Self {
            period: cur.at.saturating_duration_since(prev.at),
            filter: filter.to_string(),
            total,
            rows,
            handlers,
            tail_call_failed: cur.tail_call_failed.saturating_sub(prev.tail_call_failed),
            out_of_range: cur.out_of_range.saturating_sub(prev.out_of_range),
            dispatch_populated: cur.dispatch_populated,
        }
    }

    /// The syscount-style table, the handler table and the dispatch health line.
    pub fn table(&self) -> String {
        let mut out = format!(
            "syscalls over {:.3}s for {}: {} calls, jump table {}/{} slots\n",
            self.period.as_secs_f64(),
            self.filter,
            self.total,
            self.dispatch_populated,
            SYSCALL_SLOTS
        );
        let _ = writeln!(
            out,
            "{:<22} {:>4} {:>12}  PROGRAM",
            "SYSCALL", "NR", "COUNT"
        );
        for r in &self.rows {
            let _ = writeln!(
                out,
                "{:<22} {:>4} {:>12}  {}",
                r.name, r.nr, r.count, r.program
            );
        }
        let _ = writeln!(out, "dedicated handlers, their own counters:");
        let _ = writeln!(
            out,
            "{:<22} {:>4} {:>12}  {:<10}  DETAIL",
            "SYSCALL", "NR", "CALLS", "PROGRAM"
        );
        for h in &self.handlers {
            let detail = h
                .syscall
                .detail()
                .map_or_else(|| "-".to_string(), |d| format!("{d}={}", h.detail));
            let _ = writeln!(
                out,
                "{:<22} {:>4} {:>12}  {:<10}  {detail}",
                display_name(h.syscall.nr()),
                h.syscall.nr(),
                h.calls,
                h.syscall.program(),
            );
        }
        let _ = writeln!(
            out,
            "tail calls failed: {}  out-of-range syscall numbers: {}",
            self.tail_call_failed, self.out_of_range
        );
        if self.dispatch_populated < SYSCALL_SLOTS as usize {
            let _ = writeln!(
                out,
                "WARNING: only {} of {SYSCALL_SLOTS} jump-table slots hold a program; calls to \
                 the empty ones are counted as failed tail calls",
                self.dispatch_populated
            );
        }
        out
    }

    /// One JSON object per interval (stable field names; `schema` bumps on change).
    pub fn json(&self) -> serde_json::Value {
        let handlers: Vec<serde_json::Value> = self
            .handlers
            .iter()
            .map(|h| {
                let mut v = serde_json::json!({
                    "nr": h.syscall.nr(),
                    "name": display_name(h.syscall.nr()),
                    "program": h.syscall.program(),
                    "calls": h.calls,
                });
                if let Some(d) = h.syscall.detail() {
                    v[d] = h.detail.into();
                }
                v
            })
            .collect();
        serde_json::json!({
            "schema": 1,
            "period_s": self.period.as_secs_f64(),
            "filter": self.filter,
            "total": self.total,
            "syscalls": self.rows,
            "handlers": handlers,
            "tail_call_failed": self.tail_call_failed,
            "out_of_range": self.out_of_range,
            "dispatch_populated": self.dispatch_populated,
        })
    }
}

fn row(nr: u32, count: u64) -> Row {
    Row {
        nr,
        name: display_name(nr),
        count,
        program: program_for(nr),
    }
}

/// Every x86_64 syscall with the program in its slot, for `mapscope syscalls --list`.
pub fn list() -> String {
    let mut out = format!("{:>4}  {:<24} PROGRAM\n", "NR", "SYSCALL");
    for &(nr, name) in names::X86_64 {
        let _ = writeln!(out, "{nr:>4}  {name:<24} {}", program_for(nr));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use mapscope_common::syscalls::HandlerRecord;

    use super::*;

    fn snapshots() -> (Snapshot, Snapshot) {
        let t0 = Instant::now();
        let mut prev = Snapshot {
            at: t0,
            counts: vec![0; SYSCALL_SLOTS as usize],
            handled: Default::default(),
            tail_call_failed: 1,
            out_of_range: 0,
            dispatch_populated: SYSCALL_SLOTS as usize,
        };
        prev.counts[0] = 100;
        prev.counts[222] = 5;
        let mut cur = prev.clone();
        cur.at = t0 + Duration::from_secs(2);
        cur.counts[0] = 130; // read +30
        cur.counts[1] = 30; // write +30
        cur.counts[222] = 12; // timer_create +7
        cur.counts[184] = 3; // tuxcall +3
        cur.counts[336] = 1; // no name
        cur.handled[Handled::Read as usize] = HandlerRecord {
            calls: 30,
            detail: 30 * 64,
        };
        cur.handled[Handled::TimerCreate as usize] = HandlerRecord {
            calls: 7,
            detail: 0,
        };
        cur.tail_call_failed = 4;
        (prev, cur)
    }

    #[test]
    fn top_rows_are_deltas_sorted_by_count_then_number() {
        let (prev, cur) = snapshots();
        let r = Interval::between("all processes", &prev, &cur, &[], 3);
        assert_eq!(r.total, 30 + 30 + 7 + 3 + 1);
        let got: Vec<(u32, u64)> = r.rows.iter().map(|r| (r.nr, r.count)).collect();
        assert_eq!(got, [(0, 30), (1, 30), (222, 7)]);
        assert_eq!(r.rows[0].name, "read");
        assert_eq!(r.rows[0].program, "sc_rw");
        assert_eq!(r.rows[2].program, "sc_timer");
        assert_eq!(r.tail_call_failed, 3);
        assert_eq!(r.period, Duration::from_secs(2));
    }

    #[test]
    fn named_syscalls_are_shown_even_without_calls() {
        let (prev, cur) = snapshots();
        let r = Interval::between("pid 1", &prev, &cur, &[184, 226, 336], 1);
        let got: Vec<(&str, u64)> = r.rows.iter().map(|r| (r.name.as_str(), r.count)).collect();
        assert_eq!(got, [("tuxcall", 3), ("sys_336", 1), ("timer_delete", 0)]);
    }

    #[test]
    fn table_shows_rows_handlers_and_failures() {
        let (prev, cur) = snapshots();
        let t = Interval::between("pid 7", &prev, &cur, &[], 10).table();
        assert!(t.starts_with("syscalls over 2.000s for pid 7: 71 calls, jump table 512/512"));
        let read = t.lines().find(|l| l.starts_with("read ")).unwrap();
        assert_eq!(
            read.split_whitespace().collect::<Vec<_>>(),
            ["read", "0", "30", "sc_rw"]
        );
        let rows: Vec<&str> = t.lines().filter(|l| l.starts_with("read ")).collect();
        assert_eq!(rows.len(), 2, "read in both tables: {t}");
        assert_eq!(
            rows[1].split_whitespace().collect::<Vec<_>>(),
            ["read", "0", "30", "sc_rw", "bytes_requested=1920"]
        );
        let tc = t.lines().rfind(|l| l.starts_with("timer_create"));
        assert_eq!(
            tc.unwrap().split_whitespace().collect::<Vec<_>>(),
            ["timer_create", "222", "7", "sc_timer", "-"]
        );
        assert!(t.contains("tail calls failed: 3"), "{t}");
        assert!(!t.contains("WARNING"), "{t}");
    }

    #[test]
    fn table_warns_about_an_emptied_jump_table() {
        let (prev, mut cur) = snapshots();
        cur.dispatch_populated = 0;
        let t = Interval::between("x", &prev, &cur, &[], 10).table();
        assert!(t.contains("WARNING: only 0 of 512"), "{t}");
    }

    #[test]
    fn json_has_rows_handlers_and_detail_names() {
        let (prev, cur) = snapshots();
        let j = Interval::between("all processes", &prev, &cur, &[], 2).json();
        assert_eq!(j["schema"], 1);
        assert_eq!(j["total"], 71);
        assert_eq!(j["syscalls"].as_array().unwrap().len(), 2);
        assert_eq!(j["syscalls"][0]["name"], "read");
        assert_eq!(j["syscalls"][0]["program"], "sc_rw");
        let handlers = j["handlers"].as_array().unwrap();
        assert_eq!(handlers.len(), Handled::ALL.len());
        assert_eq!(handlers[0]["bytes_requested"], 1920);
        let create = handlers.iter().find(|h| h["nr"] == 222).unwrap();
        assert_eq!(create["calls"], 7);
        assert_eq!(create["program"], "sc_timer");
        assert!(create.get("bytes_requested").is_none());
        assert_eq!(j["tail_call_failed"], 3);
        assert_eq!(j["dispatch_populated"], 512);
    }

    #[test]
    fn list_names_every_syscall_and_its_program() {
        let l = list();
        assert_eq!(l.lines().count(), names::X86_64.len() + 1);
        assert!(
            l.lines()
                .any(|x| x.split_whitespace().eq(["222", "timer_create", "sc_timer"]))
        );
        assert!(
            l.lines()
                .any(|x| x.split_whitespace().eq(["184", "tuxcall", "sc_default"]))
        );
    }
}
