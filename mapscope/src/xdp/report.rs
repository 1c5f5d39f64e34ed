//! Turning two snapshots into rates and printing them, in the spirit of xdp-tutorial's
//! `xdp_stats`: per action packets, pps, bytes, Mbit/s and the measured period.

use std::{fmt::Write as _, time::Duration};

use mapscope_common::xdp::{StatsRecord, XdpAction};
use serde::Serialize;

use super::{
    ActionRecords, XdpSnapshot,
    rules::RuleEntry,
    talkers::{self, TalkerRate},
};

/// Which map a table shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum MapChoice {
    /// The shared `Array` updated with atomic adds.
    #[default]
    Array,
    /// The `PerCpuArray`, summed over CPUs.
    Percpu,
}

/// Totals and rates for one action over one period.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ActionRate {
    pub packets: u64,
    pub bytes: u64,
    pub pps: f64,
    pub mbit_s: f64,
}

/// Rate of change of a counter over `period`. A zero or negative period (clock trouble, or two
/// reads in the same instant) yields 0 rather than infinity or NaN, and a counter that went
/// backwards (map recreated) counts as no traffic rather than as a huge wrap-around.
pub fn rate(prev: u64, cur: u64, period_s: f64) -> f64 {
    if period_s.is_nan() || period_s <= 0.0 || period_s.is_infinite() {
        return 0.0;
    }
    cur.saturating_sub(prev) as f64 / period_s
}

/// Rates for one action between two records.
pub fn action_rate(prev: &StatsRecord, cur: &StatsRecord, period_s: f64) -> ActionRate {
    ActionRate {
        packets: cur.packets,
        bytes: cur.bytes,
        pps: rate(prev.packets, cur.packets, period_s),
        // bytes/s × 8 bits ÷ 10^6, as xdp_stats computes Mbit/s.
        mbit_s: rate(prev.bytes, cur.bytes, period_s) * 8.0 / 1_000_000.0,
    }
}

/// Rates for every action of one map.
pub fn map_rates(
    prev: &ActionRecords,
    cur: &ActionRecords,
    period_s: f64,
) -> Vec<(XdpAction, ActionRate)> {
    XdpAction::ALL
        .iter()
        .map(|&a| {
            (
                a,
                action_rate(&prev[a as usize], &cur[a as usize], period_s),
            )
        })
        .collect()
}

/// A rule's counters and its packet rate over the interval.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuleRate {
    #[serde(flatten)]
    pub entry: RuleEntry,
    pub pps: f64,
}

/// One interval's report: what `xdp stats` prints every `--interval`.
#[derive(Clone, Debug)]
pub struct Interval {
    pub iface: String,
    pub mode: &'static str,
    /// "pinned" (a `xdp attach` attachment) or "lifetime" (attached by this viewer).
    pub attachment: &'static str,
    pub period: Duration,
    pub array: Vec<(XdpAction, ActionRate)>,
    pub percpu: Vec<(XdpAction, ActionRate)>,
    pub rules: Vec<RuleRate>,
    pub talkers: Vec<TalkerRate>,
    /// Kernel-side failures (talker inserts, missing rule counters) since attach.
    pub errors: [u64; 2],
}

impl Interval {
    /// Builds the report from the previous and the current snapshot, with the `top` talkers.
    pub fn between(
        iface: &str,
        mode: &'static str,
        prev: &XdpSnapshot,
        cur: &XdpSnapshot,
        top: usize,
    ) -> Self {
        let period = cur.at.saturating_duration_since(prev.at);
        let p = period.as_secs_f64();
        let rules = cur
            .rules
            .iter()
            .map(|e| {
                let before = prev
                    .rules
                    .iter()
                    .find(|o| o.id == e.id && o.rule == e.rule)
                    .map_or(0, |o| o.packets);
                RuleRate {
                    entry: e.clone(),
                    pps: rate(before, e.packets, p),
                }
            })
            .collect();
        Self {
            iface: iface.to_string(),
            mode,
            attachment: "lifetime",
            period,
            array: map_rates(&prev.array, &cur.array, p),
            percpu: map_rates(&prev.percpu, &cur.percpu, p),
            rules,
            talkers: talkers::top(&prev.talkers, &cur.talkers, top),
            errors: cur.errors,
        }
    }

    /// The xdp_stats-style table for one map.
    pub fn table(&self, map: MapChoice) -> String {
        let (rows, title) = match map {
            MapChoice::Array => (&self.array, "Array, atomic adds"),
            MapChoice::Percpu => (&self.percpu, "PerCpuArray, summed over CPUs"),
        };
        let period = self.period.as_secs_f64();
        let mut out = format!("{} ({} mode) — {title}\n", self.iface, self.mode);
        let _ = writeln!(
            out,
            "{:<13} {:>12} {:>12} {:>15} {:>10}  period",
            "XDP-action", "packets", "pps", "bytes", "Mbit/s"
        );
        for (action, r) in rows {
            let _ = writeln!(
                out,
                "{:<13} {:>12} {:>12.0} {:>15} {:>10.3}  {:.6}s",
                action.name(),
                r.packets,
                r.pps,
                r.bytes,
                r.mbit_s,
                period
            );
        }
        if !self.rules.is_empty() {
            let _ = writeln!(
                out,
                "{:<6} {:<44} {:>12} {:>10} {:>15}",
                "rule", "prefix", "packets", "pps", "bytes"
            );
            for r in &self.rules {
                let e = &r.entry;
                let prefix = format!(
                    "{}{}",
                    e.rule.cidr,
                    if e.rule.dir == super::rules::Direction::Dst {
                        " dst"
                    } else {
                        ""
                    }
                );
                let _ = writeln!(
                    out,
                    "{:<6} {:<44} {:>12} {:>10.0} {:>15}",
                    e.rule.verdict.as_str(),
                    prefix,
                    e.packets,
                    r.pps,
                    e.bytes
                );
            }
        }
        if !self.talkers.is_empty() {
            let _ = writeln!(
                out,
                "{:<39} {:>12} {:>15} {:>12} {:>15}",
                "top talker", "packets", "bytes", "+packets", "+bytes"
            );
            for t in &self.talkers {
                let _ = writeln!(
                    out,
                    "{:<39} {:>12} {:>15} {:>12} {:>15}",
                    t.addr.to_string(),
                    t.packets,
                    t.bytes,
                    t.interval_packets,
                    t.interval_bytes
                );
            }
        }
        if self.errors.iter().any(|&n| n > 0) {
            let _ = writeln!(
                out,
                "kernel-side failures: talker inserts {}, missing rule counters {}",
                self.errors[0], self.errors[1]
            );
        }
        out
    }

    /// One JSON object carrying both maps (stable field names; `schema` bumps on change).
    pub fn json(&self) -> serde_json::Value {
        let map = |rows: &[(XdpAction, ActionRate)]| {
            rows.iter()
                .map(|(a, r)| {
                    (
                        a.name().to_string(),
                        serde_json::to_value(r).unwrap_or_default(),
                    )
                })
                .collect::<serde_json::Map<_, _>>()
        };
        serde_json::json!({
            "schema": 1,
            "iface": self.iface,
            "mode": self.mode,
            "period_s": self.period.as_secs_f64(),
            "array": map(&self.array),
            "percpu": map(&self.percpu),
            "attachment": self.attachment,
            "rules": self.rules,
            "talkers": self.talkers,
            "errors": {
                "talker_insert": self.errors[0],
                "rule_stats_missing": self.errors[1],
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn rec(packets: u64, bytes: u64) -> StatsRecord {
        StatsRecord { packets, bytes }
    }

    #[test]
    fn rate_over_positive_period() {
        assert_eq!(rate(100, 300, 2.0), 100.0);
        let r = action_rate(&rec(0, 0), &rec(10, 1_250_000), 1.0);
        assert_eq!(r.pps, 10.0);
        assert_eq!(r.mbit_s, 10.0);
        assert_eq!((r.packets, r.bytes), (10, 1_250_000));
    }

    #[test]
    fn zero_or_negative_period_gives_zero_rate() {
        assert_eq!(rate(0, 10, 0.0), 0.0);
        assert_eq!(rate(0, 10, -1.0), 0.0);
        assert_eq!(rate(0, 10, f64::NAN), 0.0);
        assert_eq!(rate(0, 10, f64::INFINITY), 0.0);
    }

    #[test]
    fn counter_going_backwards_is_not_a_wrap() {
        assert_eq!(rate(500, 10, 1.0), 0.0);
    }

    fn interval() -> Interval {
        let t0 = Instant::now();
        let mut prev = XdpSnapshot {
            at: t0,
            array: Default::default(),
            percpu: Default::default(),
            rules: Vec::new(),
            talkers: Vec::new(),
            errors: [0; 2],
        };
        prev.array[XdpAction::Pass as usize] = rec(10, 1000);
        let mut cur = prev.clone();
        cur.at = t0 + Duration::from_secs(2);
        cur.array[XdpAction::Pass as usize] = rec(30, 3000);
        cur.percpu[XdpAction::Pass as usize] = rec(20, 2000);
        Interval::between("veth0", "skb", &prev, &cur, 10)
    }

    #[test]
    fn table_has_every_action_with_rates() {
        let t = interval().table(MapChoice::Array);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2 + 5, "{t}");
        assert!(lines[0].starts_with("veth0 (skb mode)"), "{t}");
        let pass = lines.iter().find(|l| l.starts_with("XDP_PASS")).unwrap();
        let cols: Vec<&str> = pass.split_whitespace().collect();
        assert_eq!(cols, ["XDP_PASS", "30", "10", "3000", "0.008", "2.000000s"]);
        let percpu = interval().table(MapChoice::Percpu);
        assert!(percpu.contains("PerCpuArray"), "{percpu}");
    }

    #[test]
    fn json_carries_both_maps() {
        let j = interval().json();
        assert_eq!(j["schema"], 1);
        assert_eq!(j["iface"], "veth0");
        assert_eq!(j["period_s"], 2.0);
        assert_eq!(j["array"]["XDP_PASS"]["packets"], 30);
        assert_eq!(j["array"]["XDP_PASS"]["pps"], 10.0);
        assert_eq!(j["percpu"]["XDP_PASS"]["bytes"], 2000);
        assert_eq!(j["percpu"]["XDP_DROP"]["packets"], 0);
        assert_eq!(j["array"].as_object().unwrap().len(), 5);
    }
}
