//! `mapscope map watch MAP`: per-key deltas and rates of a counter map every interval, hottest
//! key first. The first read is taken before the banner prints, so everything after the banner
//! shows up in the deltas.

use std::time::Instant;

use clap::Args;
use mapscope::maps::watch::{Reading, Report, Watcher};

use super::Target;
use crate::cli::{schedule::ScheduleArgs, shutdown::Shutdown};

#[derive(Debug, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    target: Target,
    /// Show the N keys with the largest deltas.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// One JSON object per interval.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    every: ScheduleArgs,
}

pub async fn run(args: WatchArgs) -> anyhow::Result<()> {
    let schedule = args.every.schedule()?;
    if args.top == 0 {
        anyhow::bail!("--top must be at least 1");
    }
    let watcher = Watcher::new(args.target.open()?)?;
    let mut shutdown = Shutdown::install()?;
    let mut first = true;
    schedule
        .print_deltas(
            &mut shutdown,
            || {
                let reading = (Instant::now(), watcher.read()?);
                if std::mem::take(&mut first) {
                    eprintln!(
                        "mapscope: watching {} ({} keys; fields: {}); Ctrl-C to stop",
                        watcher.map().label(),
                        reading.1.values.len(),
                        watcher.fields().join(", ")
                    );
                }
                Ok(reading)
            },
            |prev: &(Instant, Reading), cur: &(Instant, Reading)| {
                let period = cur.0.duration_since(prev.0).as_secs_f64();
                let report = watcher.report(&prev.1, &cur.1, period, args.top);
                if args.json {
                    serde_json::to_string(&report).unwrap_or_default()
                } else {
                    table(&report)
                }
            },
        )
        .await
}

/// A decoded key for the table: strings bare, one-level objects as `name=value` pairs.
fn short(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", short(v)))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

/// The text view of one interval.
fn table(r: &Report) -> String {
    let mut s = format!(
        "map {} {} ({}) over {:.3}s: {} of {} keys changed, {} removed{}\n",
        r.map.id,
        r.map.name,
        r.map.kind,
        r.period_s,
        r.changed,
        r.entries,
        r.removed,
        if r.incomplete {
            " (incomplete read: the map changed under get_next_key)"
        } else {
            ""
        }
    );
    s.push_str(&format!("{:<24}", "KEY"));
    for f in &r.fields {
        s.push_str(&format!(
            " {:>14} {:>14} {:>16}",
            format!("Δ{f}"),
            format!("{f}/s"),
            f
        ));
    }
    s.push('\n');
    for c in &r.top {
        s.push_str(&format!("{:<24}", short(&c.formatted_key)));
        for i in 0..r.fields.len() {
            s.push_str(&format!(
                " {:>14} {:>14.1} {:>16}",
                c.delta.get(i).copied().unwrap_or(0),
                c.rate.get(i).copied().unwrap_or(0.0),
                c.total.get(i).copied().unwrap_or(0)
            ));
        }
        s.push('\n');
    }
    s
}
