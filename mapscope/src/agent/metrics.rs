//! `/metrics`: the families' snapshots, read at scrape time, rendered as OpenMetrics text by
//! `prometheus-client`. Label sets are bounded: interfaces and actions are fixed by the config,
//! uids by the kernel map's size, syscalls by the table's 512 slots.

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge, info::Info},
    registry::{Registry, Unit},
};

use super::families::Readings;
use crate::syscalls::report::{display_name, display_name_i386};

/// The OpenMetrics text content type Prometheus negotiates.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Renders one scrape.
pub fn render(readings: Readings, exec_events_read: Option<u64>) -> String {
    let mut registry = Registry::default();
    registry.register(
        "mapscope_build",
        "mapscope version and the kernel it runs on",
        Info::new(vec![
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            ("kernel", kernel_release()),
        ]),
    );
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
            gauges(
                &mut enc,
                "mapscope_xdp_rules",
                "Drop rules in the firewall's rule list",
                &[(vec![], x.rules.len() as i64)],
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
