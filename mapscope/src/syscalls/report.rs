//! Turning two snapshots into syscount's per-interval view: the top syscalls by calls in the
//! interval with their names, the dedicated handlers' own counters, 32-bit (compat) syscalls by
//! their i386 names, and dispatch failures. [`Interval`] is the one typed value every output
//! renders (the table, `--json`).

use std::{fmt::Write as _, time::Duration};

use mapscope_common::syscalls::{Handled, SYSCALL_SLOTS};
use serde::{Serialize, ser::SerializeMap as _};

use super::{Snapshot, names, program_for};

/// Version of the JSON object; bumps only when a field changes meaning.
pub const JSON_SCHEMA: u32 = 1;

/// One syscall's calls in the interval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row {
    pub nr: u32,
    pub name: String,
    pub count: u64,
    /// The program in its jump-table slot.
    pub program: &'static str,
}

/// One 32-bit (compat) syscall's calls in the interval, by i386 number and name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CompatRow {
    pub nr: u32,
    pub name: String,
    pub count: u64,
}

/// One dedicated handler's own counters in the interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandlerRow {
    pub syscall: Handled,
    pub calls: u64,
    /// Meaning given by [`Handled::detail`]; 0 when it has none.
    pub detail: u64,
}

impl Serialize for HandlerRow {
    /// `{"nr", "name", "program", "calls"}` plus the detail under its own name
    /// (`bytes_requested`, `o_creat`) where the handler has one.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let nr = self.syscall.nr();
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("nr", &nr)?;
        m.serialize_entry("name", &display_name(nr))?;
        m.serialize_entry("program", self.syscall.program())?;
        m.serialize_entry("calls", &self.calls)?;
        if let Some(d) = self.syscall.detail() {
            m.serialize_entry(d, &self.detail)?;
        }
        m.end()
    }
}

/// One interval's report: what `mapscope syscalls` prints every `--interval`.
#[derive(Clone, Debug, Serialize)]
pub struct Interval {
    #[serde(rename = "period_s", serialize_with = "secs")]
    pub period: Duration,
    /// Which tasks were counted, in words.
    pub filter: String,
    /// Calls of every 64-bit syscall in the interval, not just the rows shown.
    pub total: u64,
    /// Most called first (ties by number); at most `top` unless syscalls were named.
    #[serde(rename = "syscalls")]
    pub rows: Vec<Row>,
    /// Every dedicated handler, in `Handled` order.
    pub handlers: Vec<HandlerRow>,
    pub tail_call_failed: u64,
    pub out_of_range: u64,
    /// Jump-table slots holding a program at the end of the interval.
    pub dispatch_populated: usize,
    /// Calls of every 32-bit (compat) syscall in the interval; in none of the above.
    pub compat_total: u64,
    /// 32-bit syscalls by i386 number, chosen like `rows`.
    #[serde(rename = "compat_syscalls")]
    pub compat_rows: Vec<CompatRow>,
    pub compat_out_of_range: u64,
    /// False when the kernel gave no way to tell 32-bit syscalls apart (no BTF): they are then
    /// in `rows` under the x86_64 syscall of the same number.
    pub compat_detected: bool,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// The name reports use for `nr`: the x86_64 name, or `sys_<nr>` for a number without one.
pub fn display_name(nr: u32) -> String {
    names::name(nr).map_or_else(|| format!("sys_{nr}"), str::to_string)
}

/// The name reports use for 32-bit syscall `nr`: the i386 name, or `sys32_<nr>`.
pub fn display_name_i386(nr: u32) -> String {
    names::i386_name(nr).map_or_else(|| format!("sys32_{nr}"), str::to_string)
}

/// Picks rows: with `only` empty, the `top` largest nonzero counts (ties by number); otherwise
/// exactly `only`, zero counts included, largest first.
fn choose(delta: impl Fn(u32) -> u64, only: &[u32], top: usize) -> Vec<(u32, u64)> {
    let mut rows: Vec<(u32, u64)> = if only.is_empty() {
        (0..SYSCALL_SLOTS)
            .map(|nr| (nr, delta(nr)))
            .filter(|&(_, c)| c > 0)
            .collect()
    } else {
        only.iter().map(|&nr| (nr, delta(nr))).collect()
    };
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    if only.is_empty() {
        rows.truncate(top);
    }
    rows
}

impl Interval {
    /// Builds the report. With `only` (x86_64 numbers) empty, the `top` most called syscalls
    /// with at least one call; otherwise exactly the syscalls in `only`, zero counts included.
    /// 32-bit syscalls are chosen the same way, `only` mapped to i386 numbers by name.
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
        let rows = choose(delta, only, top)
            .into_iter()
            .map(|(nr, count)| row(nr, count))
            .collect();
        let compat_delta = |nr: u32| cur.compat_count(nr).saturating_sub(prev.compat_count(nr));
        let compat_total = (0..SYSCALL_SLOTS)
            .map(compat_delta)
            .fold(0u64, u64::wrapping_add);
        let compat_only: Vec<u32> = only
            .iter()
            .filter_map(|&nr| names::name(nr).and_then(names::i386_number))
            .collect();
        // Named syscalls a 32-bit process cannot make select nothing, not everything.
        let compat_rows = if !only.is_empty() && compat_only.is_empty() {
            Vec::new()
        } else {
            choose(compat_delta, &compat_only, top)
                .into_iter()
                .map(|(nr, count)| CompatRow {
                    nr,
                    name: display_name_i386(nr),
                    count,
                })
                .collect()
        };
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
            compat_total,
            compat_rows,
            compat_out_of_range: cur
                .compat_out_of_range
                .saturating_sub(prev.compat_out_of_range),
            compat_detected: cur.compat_detected,
        }
    }

    /// The syscount-style table, the handler table, 32-bit syscalls when there were any, and
    /// the dispatch health line.
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
        if self.compat_total > 0 || self.compat_out_of_range > 0 {
            let _ = writeln!(
                out,
                "32-bit (compat) syscalls, i386 numbers: {} calls",
                self.compat_total
            );
            let _ = writeln!(out, "{:<22} {:>4} {:>12}", "SYSCALL", "NR", "COUNT");
            for r in &self.compat_rows {
                let _ = writeln!(out, "{:<22} {:>4} {:>12}", r.name, r.nr, r.count);
            }
        }
        let _ = write!(
            out,
            "tail calls failed: {}  out-of-range syscall numbers: {}",
            self.tail_call_failed, self.out_of_range
        );
        if self.compat_out_of_range > 0 {
            let _ = write!(out, " (32-bit: {})", self.compat_out_of_range);
        }
        out.push('\n');
        if !self.compat_detected {
            let _ = writeln!(
                out,
                "NOTE: 32-bit syscalls are not told apart on this kernel (no BTF for \
                 thread_info.status): they are counted under the x86_64 syscall of the same number"
            );
        }
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

    /// One JSON object per interval: this value with a leading `schema`.
    pub fn json(&self) -> serde_json::Value {
        crate::versioned::versioned(JSON_SCHEMA, self)
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
            compat: vec![0; SYSCALL_SLOTS as usize],
            compat_out_of_range: 0,
            compat_detected: true,
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
    fn compat_syscalls_have_their_own_rows_names_and_total() {
        let (prev, mut cur) = snapshots();
        cur.compat[136] = 7; // i386 personality
        cur.compat[11] = 1; // i386 execve
        cur.compat_out_of_range = 2;
        let r = Interval::between("all processes", &prev, &cur, &[], 10);
        assert_eq!(r.total, 71, "64-bit total unchanged");
        assert_eq!(r.compat_total, 8);
        let got: Vec<(&str, u32, u64)> = r
            .compat_rows
            .iter()
            .map(|c| (c.name.as_str(), c.nr, c.count))
            .collect();
        assert_eq!(got, [("personality", 136, 7), ("execve", 11, 1)]);
        let t = r.table();
        assert!(
            t.contains("32-bit (compat) syscalls, i386 numbers: 8 calls"),
            "{t}"
        );
        assert!(t.contains("(32-bit: 2)"), "{t}");
        let j = r.json();
        assert_eq!(j["compat_total"], 8);
        assert_eq!(j["compat_syscalls"][0]["name"], "personality");
        assert_eq!(j["compat_out_of_range"], 2);
        // Named syscalls select the compat rows by name: personality is 135 on x86_64.
        let named = Interval::between("x", &prev, &cur, &[135, 184], 10);
        let got: Vec<(u32, u64)> = named.compat_rows.iter().map(|c| (c.nr, c.count)).collect();
        assert_eq!(got, [(136, 7)], "tuxcall has no i386 number");
        let none = Interval::between("x", &prev, &cur, &[184], 10);
        assert!(none.compat_rows.is_empty());
        // Without compat calls the table has no compat section.
        let (prev, cur) = snapshots();
        let t = Interval::between("x", &prev, &cur, &[], 10).table();
        assert!(!t.contains("32-bit"), "{t}");
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
