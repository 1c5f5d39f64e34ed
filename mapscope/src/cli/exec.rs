//! `mapscope exec`: live exec events (execsnoop-like lines or JSON lines, optionally posted to a
//! web service), and `mapscope exec uids`: execs per uid every interval (hello-map style).

use std::{io::Write as _, time::Duration};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use mapscope::{
    exec::{Exec, ExecOptions, ExecTracer, Transport, event::SCHEMA_VERSION},
    sinks::http::{HttpSink, HttpSinkConfig},
};
use regex::Regex;

use super::{
    schedule::{Schedule, ScheduleArgs},
    shutdown::Shutdown,
};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ExecCommand {
    #[command(subcommand)]
    view: Option<ExecView>,
    #[command(flatten)]
    trace: TraceArgs,
}

#[derive(Debug, Subcommand)]
enum ExecView {
    /// Print exec counts per uid every interval ("ID 0: 12   ID 1000: 3").
    Uids(UidsArgs),
}

#[derive(Debug, Args)]
struct TraceArgs {
    /// Event transport from the kernel: ring (BPF ring buffer) or perf (per-CPU perf buffers).
    #[arg(long, value_enum, default_value_t = Transport::Ring)]
    transport: Transport,
    /// Only execs by this uid (filtered in the kernel).
    #[arg(long)]
    uid: Option<u32>,
    /// Only execs whose comm or filename matches this regular expression.
    #[arg(long, value_name = "REGEX")]
    name: Option<String>,
    /// Only failed execs (non-zero return).
    #[arg(long)]
    failed: bool,
    /// JSON lines on stdout (events, and a stats line every interval) instead of text.
    #[arg(long)]
    json: bool,
    /// Seconds between lost-event reports (stderr, and JSON stats lines).
    #[arg(long, default_value_t = 2.0, allow_negative_numbers = true)]
    interval: f64,
    /// Stop after this many matching events.
    #[arg(long)]
    count: Option<u64>,
    /// Kernel ring buffer size in bytes (power of two).
    #[arg(long, default_value_t = 1 << 20)]
    ring_bytes: u32,
    #[command(flatten)]
    post: PostArgs,
}

/// Web-service sink options.
#[derive(Debug, Args)]
struct PostArgs {
    /// POST events as JSON batches to this http(s) URL.
    #[arg(long, value_name = "URL")]
    post: Option<String>,
    /// Most events per POST.
    #[arg(long, default_value_t = 100, requires = "post")]
    batch_max: usize,
    /// Longest an event waits for its batch to fill, in milliseconds.
    #[arg(long, default_value_t = 500, requires = "post")]
    batch_ms: u64,
    /// Events held in memory before they go to the disk spool.
    #[arg(long, default_value_t = 10_000, requires = "post")]
    queue: usize,
    /// Where batches wait while the web service is down (replayed in order, also after restart).
    #[arg(long, default_value = "/var/lib/mapscope/spool", requires = "post")]
    spool_dir: std::path::PathBuf,
    /// Largest the spool may grow, in bytes; beyond it new batches are dropped and counted.
    #[arg(long, default_value_t = 64 << 20, requires = "post")]
    spool_max_bytes: u64,
    /// Longest wait between retries of a down service, in milliseconds.
    #[arg(long, default_value_t = 30_000, requires = "post")]
    retry_max_ms: u64,
    /// Print events on stdout too while posting.
    #[arg(long, requires = "post")]
    echo: bool,
}

#[derive(Debug, Args)]
struct UidsArgs {
    #[command(flatten)]
    every: ScheduleArgs,
    /// One JSON object per interval.
    #[arg(long)]
    json: bool,
}

pub async fn run(cmd: ExecCommand) -> anyhow::Result<()> {
    match cmd.view {
        Some(ExecView::Uids(args)) => uids(args).await,
        // On a worker thread, like the reader task: a reader waking the consumer then stays on
        // one thread (tokio's LIFO slot), not a futex wake of the main thread per event.
        None => tokio::spawn(trace(cmd.trace))
            .await
            .context("exec trace task")?,
    }
}

async fn trace(args: TraceArgs) -> anyhow::Result<()> {
    // --count here counts events, not reports; Schedule checks both the same way.
    Schedule::new(args.interval, args.count)?;
    let period = Duration::from_secs_f64(args.interval);
    let name = args
        .name
        .as_deref()
        .map(|re| {
            // regex's own message spans several lines; keep its last line, the reason.
            Regex::new(re).map_err(|e| {
                let why = e
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim_start_matches("error: ")
                    .to_string();
                anyhow::anyhow!("--name {re:?} is not a valid regular expression ({why})")
            })
        })
        .transpose()?;
    // The sink is set up first: a malformed URL must fail before anything is attached.
    let sink = match &args.post.post {
        Some(url) => Some(
            HttpSink::start(HttpSinkConfig {
                url: url.clone(),
                batch_max: args.post.batch_max,
                batch_wait: Duration::from_millis(args.post.batch_ms),
                queue: args.post.queue,
                spool_dir: args.post.spool_dir.clone(),
                spool_max_bytes: args.post.spool_max_bytes,
                retry_max: Duration::from_millis(args.post.retry_max_ms),
            })
            .await?,
        ),
        None => None,
    };
    let print = sink.is_none() || args.post.echo;

    let mut shutdown = Shutdown::install()?;
    let mut tracer = ExecTracer::attach(ExecOptions {
        transport: args.transport,
        uid: args.uid,
        ring_bytes: args.ring_bytes,
        ..ExecOptions::default()
    })
    .context("attaching exec tracepoints")?;
    let mut events = tracer.events(4096)?;
    if print && !args.json {
        println!("{}", Exec::header());
    }

    let mut out = Outputs {
        out: std::io::BufWriter::with_capacity(1 << 16, std::io::stdout()),
        name,
        failed: args.failed,
        json: args.json,
        print,
        count: args.count,
        shown: 0,
    };
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let (mut seen, mut last_lost, mut drain) = (0u64, 0u64, true);
    loop {
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else { break };
                seen += 1;
                if out.handle(ev, sink.as_ref()).await? {
                    drain = false;
                    break;
                }
                // Handle the rest of a burst, then write the lines out once, not per event.
                let mut done = false;
                while let Some(ev) = events.try_recv() {
                    seen += 1;
                    if out.handle(ev, sink.as_ref()).await? {
                        done = true;
                        break;
                    }
                }
                out.flush()?;
                if done {
                    drain = false;
                    break;
                }
            }
            _ = ticker.tick() => {
                let lost = tracer.lost()?;
                report_lost(lost, last_lost, period);
                if let Some(sink) = &sink { sink.set_lost(lost); }
                if args.json && print {
                    out.flush()?;
                    println!("{}", serde_json::json!({
                        "type": "stats", "schema": SCHEMA_VERSION, "events": seen,
                        "lost": lost, "lost_delta": lost - last_lost,
                        "malformed": events.stats().malformed.load(std::sync::atomic::Ordering::Relaxed),
                    }));
                }
                last_lost = lost;
            }
            _ = shutdown.wait() => break,
        }
    }
    let lost = tracer.lost()?;
    // Detach first so nothing new arrives, then hand on what the kernel already captured:
    // stopping must not throw away events sitting in the buffers or the channel.
    drop(tracer);
    if drain {
        while let Ok(Some(ev)) = tokio::time::timeout(DRAIN_QUIET, events.recv()).await {
            if out.handle(ev, sink.as_ref()).await? {
                break;
            }
        }
    }
    out.flush()?;
    report_lost(lost, last_lost, period);
    drop(events);
    if let Some(sink) = sink {
        sink.set_lost(lost);
        let s = sink.finish().await?;
        eprintln!(
            "mapscope: posted {} events; {} spooled for later; {} dropped at the spool limit; {} rejected by the service",
            s.delivered, s.spooled, s.dropped, s.rejected
        );
    }
    Ok(())
}

/// How long the buffers must stay empty before shutdown stops draining them.
const DRAIN_QUIET: Duration = Duration::from_millis(200);

/// Filters each event, then prints it and/or queues it for the web service.
struct Outputs {
    /// Block-buffered stdout, flushed after each burst of events: Rust's own stdout writes
    /// every line with its own write(2).
    out: std::io::BufWriter<std::io::Stdout>,
    name: Option<Regex>,
    failed: bool,
    json: bool,
    print: bool,
    count: Option<u64>,
    shown: u64,
}

impl Outputs {
    /// Handles one event; true once `--count` events have been shown.
    async fn handle(&mut self, ev: Exec, sink: Option<&HttpSink>) -> anyhow::Result<bool> {
        if self.failed && ev.ret == 0 {
            return Ok(false);
        }
        if let Some(re) = &self.name
            && !re.is_match(&ev.comm)
            && !re.is_match(&ev.filename)
        {
            return Ok(false);
        }
        // Built once for the sink, and then also the line printed; printed alone, written
        // straight from the event.
        let value = sink.map(|_| ev.json());
        if self.print {
            match &value {
                Some(j) if self.json => serde_json::to_writer(&mut self.out, j)?,
                None if self.json => ev.write_json(&mut self.out)?,
                _ => write!(self.out, "{}", ev.line())?,
            }
            self.out.write_all(b"\n")?;
        }
        if let (Some(sink), Some(j)) = (sink, value) {
            sink.send(j).await?;
        }
        self.shown += 1;
        Ok(self.count.is_some_and(|n| self.shown >= n))
    }
}

impl Outputs {
    /// Writes out what the last burst of events printed.
    fn flush(&mut self) -> anyhow::Result<()> {
        self.out.flush().context("writing to stdout")
    }
}

/// One stderr line when the kernel could not deliver events since the last report.
fn report_lost(total: u64, last: u64, period: Duration) {
    if total > last {
        eprintln!(
            "mapscope: {} exec events lost in the last {:.1}s (kernel buffer full; raise --ring-bytes or filter with --uid); {} lost in all",
            total - last,
            period.as_secs_f64(),
            total
        );
    }
}

async fn uids(args: UidsArgs) -> anyhow::Result<()> {
    let schedule = args.every.schedule()?;
    let mut shutdown = Shutdown::install()?;
    let tracer =
        ExecTracer::attach(ExecOptions::default()).context("attaching exec tracepoints")?;
    let mut ticks = schedule.start();
    while ticks.next(&mut shutdown).await {
        let counts = tracer.uid_counts()?;
        if args.json {
            let map: serde_json::Map<String, serde_json::Value> = counts
                .iter()
                .map(|(u, c)| (u.to_string(), (*c).into()))
                .collect();
            println!(
                "{}",
                serde_json::json!({"type": "uids", "schema": SCHEMA_VERSION, "counts": map})
            );
        } else {
            let line: Vec<String> = counts.iter().map(|(u, c)| format!("ID {u}: {c}")).collect();
            if line.is_empty() {
                println!("(no execs yet)");
            } else {
                println!("{}", line.join("   "));
            }
        }
    }
    Ok(())
}
