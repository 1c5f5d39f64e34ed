//! `/metrics`: the families' snapshots, read at scrape time, rendered as OpenMetrics text by
//! `prometheus-client`. Label sets are bounded: interfaces and actions are fixed by the config,
//! uids by the kernel map's size, syscalls by the table's 512 slots.

use crate::xdp::rules::Verdict;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::{Registry, Unit},
};

use super::families::Readings;
use crate::syscalls::report::{display_name, display_name_i386};

/// The OpenMetrics text content type Prometheus negotiates.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The classic Prometheus text format, for clients that do not ask for OpenMetrics.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether an `Accept` header asks for OpenMetrics (Prometheus itself does).
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// The same exposition in the classic text format (0.0.4) that `promtool check metrics` and
/// older scrapers parse: counter families are named with their `_total` suffix, `# UNIT` and
/// `# EOF` lines go.
pub fn to_classic_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// Renders one scrape.
pub fn render(readings: Readings, exec_events_read: Option<u64>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape {
        readings,
        exec_events_read,
    }));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::warn!("encoding metrics: {e}");
    }
    out
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

struct Scrape {
    readings: Readings,
    exec_events_read: Option<u64>,
}

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrape")
    }
}

type Labels = Vec<(&'static str, String)>;

/// Writes one counter family.
fn counters(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    rows: &[(Labels, u64)],
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, unit, MetricType::Counter)?;
    match rows {
        // An unlabelled metric: `name_total 3`, not `name_total{} 3`.
        [(labels, v)] if labels.is_empty() => ConstCounter::new(*v).encode(m)?,
        _ => {
            for (labels, v) in rows {
                ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
            }
        }
    }
    Ok(())
}

fn gauges(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, i64)],
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    match rows {
        [(labels, v)] if labels.is_empty() => ConstGauge::new(*v).encode(m)?,
        _ => {
            for (labels, v) in rows {
                ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
            }
        }
    }
    Ok(())
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let r = &self.readings;
        // A gauge of 1 rather than an OpenMetrics `info`, which Prometheus-format tools
        // (`promtool check metrics`) do not know.
        gauges(
            &mut enc,
            "mapscope_build_info",
            "mapscope version and the kernel it runs on",
            &[(
                vec![
                    ("version", env!("CARGO_PKG_VERSION").to_string()),
                    ("kernel", kernel_release()),
                ],
                1,
            )],
        )?;
        let mut lost: Vec<(Labels, u64)> = Vec::new();
        if let Some(x) = &r.xdp {
            let (mut packets, mut bytes) = (Vec::new(), Vec::new());
            for (iface, _, snap) in &x.interfaces {
                for action in mapscope_common::xdp::XdpAction::ALL {
                    let rec = snap.array[action as usize];
                    let labels = vec![("iface", iface.clone()), ("action", action.name().into())];
                    packets.push((labels.clone(), rec.packets));
                    bytes.push((labels, rec.bytes));
                }
            }
            counters(
                &mut enc,
                "mapscope_xdp_packets",
                "Packets seen by the XDP program, by interface and verdict",
                None,
                &packets,
            )?;
            counters(
                &mut enc,
                "mapscope_xdp",
                "Bytes of the packets seen by the XDP program, by interface and verdict",
                Some(&Unit::Bytes),
                &bytes,
            )?;
            let (mut rule_packets, mut rule_bytes, mut rule_count) =
                (Vec::new(), Vec::new(), Vec::new());
            let (mut talker_packets, mut talker_bytes) = (Vec::new(), Vec::new());
            for (iface, _, snap) in &x.interfaces {
                rule_count.push((vec![("iface", iface.clone())], snap.rules.len() as i64));
                for e in snap
                    .rules
                    .iter()
                    .filter(|e| e.rule.verdict == Verdict::Block)
                {
                    let labels = vec![("iface", iface.clone()), ("rule", e.rule.to_string())];
                    rule_packets.push((labels.clone(), e.packets));
                    rule_bytes.push((labels, e.bytes));
                }
                // The top talkers by bytes since they were first seen: a bounded gauge set.
                let mut talkers: Vec<_> = snap.talkers.iter().collect();
                talkers.sort_by_key(|t| std::cmp::Reverse(t.rec.bytes));
                for t in talkers.into_iter().take(super::xdp::TOP_TALKERS) {
                    let labels = vec![("iface", iface.clone()), ("source", t.addr.to_string())];
                    talker_packets.push((labels.clone(), t.rec.packets as i64));
                    talker_bytes.push((labels, t.rec.bytes as i64));
                }
            }
            gauges(
                &mut enc,
                "mapscope_xdp_rules",
                "Rules in the firewall's LPM tries, by interface",
                &rule_count,
            )?;
            counters(
                &mut enc,
                "mapscope_xdp_rule_dropped_packets",
                "Packets dropped by each block rule",
                None,
                &rule_packets,
            )?;
            counters(
                &mut enc,
                "mapscope_xdp_rule_dropped",
                "Bytes dropped by each block rule",
                Some(&Unit::Bytes),
                &rule_bytes,
            )?;
            gauges(
                &mut enc,
                "mapscope_xdp_top_talker_packets",
                "Packets from the top sources (by bytes) in the talkers LRU",
                &talker_packets,
            )?;
            gauges(
                &mut enc,
                "mapscope_xdp_top_talker_bytes",
                "Bytes from the top sources (by bytes) in the talkers LRU",
                &talker_bytes,
            )?;
        }
        if let Some(e) = &r.exec {
            let rows: Vec<(Labels, u64)> = e
                .uids
                .iter()
                .map(|(uid, n)| (vec![("uid", uid.to_string())], *n))
                .collect();
            counters(
                &mut enc,
                "mapscope_exec",
                "Successful and failed execve/execveat calls, by uid",
                None,
                &rows,
            )?;
            lost.push((vec![("family", "exec".into())], e.lost));
            if let Some(n) = self.exec_events_read {
                counters(
                    &mut enc,
                    "mapscope_exec_events_read",
                    "Exec events the agent read from the kernel buffer since it started",
                    None,
                    &[(vec![], n)],
                )?;
            }
        }
        if let Some(s) = &r.syscalls {
            let mut rows: Vec<(Labels, u64)> = Vec::new();
            for (nr, &n) in s.counts.iter().enumerate() {
                if n > 0 {
                    let name = display_name(nr as u32);
                    rows.push((vec![("syscall", name), ("abi", "x86_64".into())], n));
                }
            }
            for (nr, &n) in s.compat.iter().enumerate() {
                if n > 0 {
                    let name = display_name_i386(nr as u32);
                    rows.push((vec![("syscall", name), ("abi", "i386".into())], n));
                }
            }
            counters(
                &mut enc,
                "mapscope_syscalls",
                "System calls, by name and ABI (x86_64, or i386 for 32-bit tasks)",
                None,
                &rows,
            )?;
            counters(
                &mut enc,
                "mapscope_syscalls_uncounted",
                "System calls the dispatcher could not count by name, by reason",
                None,
                &[
                    (
                        vec![("reason", "tail_call_failed".into())],
                        s.tail_call_failed,
                    ),
                    (vec![("reason", "out_of_range".into())], s.out_of_range),
                    (
                        vec![("reason", "compat_out_of_range".into())],
                        s.compat_out_of_range,
                    ),
                ],
            )?;
        }
        if let Some(m) = &r.malloc {
            let t = m.total();
            counters(
                &mut enc,
                "mapscope_malloc_calls",
                "malloc calls in every probed libc",
                None,
                &[(vec![], t.calls)],
            )?;
            counters(
                &mut enc,
                "mapscope_malloc",
                "Bytes requested from malloc in every probed libc",
                Some(&Unit::Bytes),
                &[(vec![], t.bytes)],
            )?;
        }
        if !lost.is_empty() {
            counters(
                &mut enc,
                "mapscope_events_lost",
                "Events the kernel could not hand to the agent (buffer full), by family",
                None,
                &lost,
            )?;
        }
        counters(
            &mut enc,
            "mapscope_dashboard_lagged_events",
            "Events the dashboard's stream clients missed because they fell behind",
            None,
            &[(vec![], crate::dashboard::stream::lagged_events())],
        )?;
        if !r.sinks.is_empty() {
            let mut rows = Vec::new();
            for (sink, (delivered, dropped, rejected)) in &r.sinks {
                for (outcome, n) in [
                    ("delivered", delivered),
                    ("dropped", dropped),
                    ("rejected", rejected),
                ] {
                    rows.push((
                        vec![("sink", sink.to_string()), ("outcome", outcome.to_string())],
                        *n,
                    ));
                }
            }
            counters(
                &mut enc,
                "mapscope_sink_events",
                "Events a sink delivered, dropped (spool limit or disk) or had rejected, since the agent started",
                None,
                &rows,
            )?;
        }
        if let Some(progs) = &r.programs {
            let label = |p: &super::families::ProgramStats| {
                vec![("program", p.name.clone()), ("id", p.id.to_string())]
            };
            let runs: Vec<(Labels, u64)> = progs.iter().map(|p| (label(p), p.run_count)).collect();
            counters(
                &mut enc,
                "mapscope_program_runs",
                "Runs of each of the agent's programs (kernel.bpf_stats_enabled=1)",
                None,
                &runs,
            )?;
            let mut m = enc.encode_descriptor(
                "mapscope_program_run",
                "Time spent in each of the agent's programs (kernel.bpf_stats_enabled=1)",
                Some(&Unit::Seconds),
                MetricType::Counter,
            )?;
            for p in progs {
                let l = label(p);
                ConstCounter::new(p.run_time_ns as f64 / 1e9).encode(m.encode_family(&l)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_text_names_counters_with_total() {
        let om = "# HELP a_bytes Bytes.\n# TYPE a_bytes counter\n# UNIT a_bytes bytes\n\
                  a_bytes_total{x=\"1\"} 3\n# HELP g G.\n# TYPE g gauge\ng 1\n# EOF\n";
        assert_eq!(
            to_classic_text(om),
            "# HELP a_bytes_total Bytes.\n# TYPE a_bytes_total counter\n\
             a_bytes_total{x=\"1\"} 3\n# HELP g G.\n# TYPE g gauge\ng 1\n"
        );
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
        )));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(None));
    }
}
