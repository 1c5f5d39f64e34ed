//! `mapscope exec`: live exec events (execsnoop-like lines or JSON lines, optionally posted to a
//! web service), and `mapscope exec uids`: execs per uid every interval (hello-map style).

use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use mapscope::{
    exec::{Exec, ExecOptions, ExecTracer, Transport, event::SCHEMA_VERSION, reader::decode_exec},
    sinks::http::{HttpSink, HttpSinkConfig, SinkStats},
};
use regex::Regex;

use super::{
    schedule::{Schedule, ScheduleArgs},
    shutdown::Shutdown,
};

mod stdout;

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
    #[command(flatten)]
    nats: super::nats_args::NatsArgs,
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
    /// Most events held in memory: waiting to be batched, or in batches the spool has not
    /// taken yet (disk slow, full or failing). When full, reading pauses and the kernel buffer
    /// absorbs, then counts, what does not fit.
    #[arg(long, default_value_t = 10_000, requires = "post")]
    queue: usize,
    /// Where batches wait while the web service is down (replayed in order, also after restart).
    #[arg(long, default_value = "/var/lib/mapscope/spool", requires = "post")]
    spool_dir: std::path::PathBuf,
    /// Largest the spool directory may grow, in bytes: batches waiting for delivery plus, in at
    /// most a quarter of it, batches the service refused (`rejected/`) and unreadable ones
    /// (`*.bad`). Beyond it new batches wait in memory (up to --queue), then are dropped and
    /// counted.
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
        // On a single-threaded runtime of its own: the reader, the printer and the sinks' tasks
        // then share one thread, and the multi-threaded runtime's idle workers are never
        // woken to look for work on each event.
        None => tokio::task::spawn_blocking(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the exec runtime")?;
            let traced = rt.block_on(trace(cmd.trace));
            // What was spawned has been finished and awaited by then (the sinks' delivery).
            rt.shutdown_background();
            traced
        })
        .await
        .context("exec trace thread")?,
    }
}

async fn trace(args: TraceArgs) -> anyhow::Result<()> {
    // --count here counts events, not reports; Schedule checks both the same way.
    Schedule::new(args.interval, args.count)?;
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
    let mut shutdown = Shutdown::install()?;
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
    let nats = args.nats.start().await?;
    let mut out = Outputs {
        name,
        failed: args.failed,
        json: args.json,
        print: (sink.is_none() && nats.is_none()) || args.post.echo || args.nats.nats_echo,
        count: args.count,
        shown: 0,
        nats,
        stdout: stdout::Lines::new(),
    };
    let mut lost = 0;
    // Whatever ends the tracing, an error included, the sink still drains: what it took is
    // delivered, spooled, or counted.
    let traced = follow(&args, &mut out, sink.as_ref(), &mut shutdown, &mut lost).await;
    if let Some(n) = out.nats.take() {
        super::nats_args::finish(n, lost).await?;
    }
    if let Some(sink) = sink {
        sink.set_lost(lost);
        let hurry = sink.hurry_handle();
        let finish = sink.finish();
        tokio::pin!(finish);
        let s = tokio::select! {
            s = &mut finish => s,
            () = shutdown.wait() => {
                eprintln!("mapscope: second signal: spooling what is not delivered yet");
                hurry.notify_one();
                finish.await
            }
        }?;
        eprintln!("mapscope: {}", summary(&s));
    }
    traced
}

/// Attaches, follows events until the end (a signal, `--count`, stdout closed) and drains what
/// the kernel already captured; `lost` is kept current for the caller's sink.
async fn follow(
    args: &TraceArgs,
    out: &mut Outputs,
    sink: Option<&HttpSink>,
    shutdown: &mut Shutdown,
    lost: &mut u64,
) -> anyhow::Result<()> {
    let period = Duration::from_secs_f64(args.interval);
    let mut tracer = ExecTracer::attach(ExecOptions {
        transport: args.transport,
        uid: args.uid,
        ring_bytes: args.ring_bytes,
        ..ExecOptions::default()
    })
    .context("attaching exec tracepoints")?;
    // Read in this loop, no reader task or channel in between: a wake-up decodes the burst
    // the kernel has, then prints it with one write.
    let mut buffers = tracer.buffers()?;
    let mut batch = Vec::new();
    if out.print && !args.json && !(out.stdout.text(Exec::header()) && out.stdout.flush()) {
        out.print = false;
    }

    // With a sink, a closed stdout stops printing but not the run's delivery.
    let sinks = sink.is_some() || out.nats.is_some();
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let (mut seen, mut last_lost, mut drain) = (0u64, 0u64, true);
    // Closed while reading waits for its time (see PACE). Only the ring is paced: it wakes its
    // reader once per empty-to-nonempty (perf buffers wake it per event anyway), and only one
    // large enough for CATCH_UP's margin.
    let pace = args.transport == Transport::Ring && args.ring_bytes >= PACE_MIN_RING;
    let gate = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(gate);
    let (mut gate_open, mut last_read) = (true, None::<tokio::time::Instant>);
    loop {
        tokio::select! {
            read = buffers.read(&mut batch, decode_exec), if gate_open => {
                if read.is_err() { break }
                let now = tokio::time::Instant::now();
                if pace && batch.len() < CATCH_UP && last_read.is_some_and(|t| now - t < PACE) {
                    gate.as_mut().reset(now + PACE);
                    gate_open = false;
                }
                last_read = Some(now);
                match out.burst(&mut batch, sink, &mut seen).await? {
                    Flow::More => {}
                    Flow::CountReached => {
                        drain = false;
                        break;
                    }
                    Flow::StdoutClosed if !sinks => {
                        drain = false;
                        break;
                    }
                    Flow::StdoutClosed => break,
                }
            }
            _ = ticker.tick() => {
                mapscope::exec::event::refresh_clock();
                let counters = tracer.counters()?;
                *lost = counters.lost();
                report_lost(*lost, last_lost, period);
                if let Some(sink) = sink { sink.set_lost(*lost); }
                if let Some(n) = &out.nats { n.set_lost(*lost); }
                if args.json && out.print {
                    let stats = serde_json::json!({
                        "type": "stats", "schema": SCHEMA_VERSION, "events": seen,
                        "lost": *lost, "lost_delta": *lost - last_lost,
                        "malformed": buffers.stats().malformed.load(std::sync::atomic::Ordering::Relaxed),
                        "outside_pidns": counters.outside_pidns,
                    });
                    if !(out.stdout.text(stats) && out.stdout.flush()) {
                        out.print = false;
                        if !sinks {
                            drain = false;
                        }
                        break;
                    }
                }
                last_lost = *lost;
            }
            () = &mut gate, if !gate_open => gate_open = true,
            () = shutdown.wait() => break,
        }
    }
    // Detach first (entries, then outcomes: execs in flight are finished or counted) so nothing
    // new arrives, then hand on what the kernel already captured: stopping must not throw away
    // events sitting in the buffers. A second signal stops the drain.
    tracer.detach();
    *lost = tracer.lost()?;
    drop(tracer);
    if drain {
        loop {
            tokio::select! {
                read = tokio::time::timeout(DRAIN_QUIET, buffers.read(&mut batch, decode_exec)) => {
                    let Ok(Ok(())) = read else { break };
                    match out.burst(&mut batch, sink, &mut seen).await? {
                        Flow::More => {}
                        Flow::StdoutClosed if sinks => {}
                        Flow::StdoutClosed | Flow::CountReached => break,
                    }
                }
                () = shutdown.wait() => break,
            }
        }
    }
    out.stdout.flush();
    report_lost(*lost, last_lost, period);
    Ok(())
}

/// Writes one line on stdout; false once stdout is closed (`| head` exited). Rust ignores
/// SIGPIPE, so a closed pipe is an EPIPE error here, which ends the run instead of a panic.
fn print_line(line: impl std::fmt::Display) -> bool {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").is_ok()
}

/// What the caller does after one event.
enum Flow {
    More,
    /// `--count` events were shown.
    CountReached,
    /// stdout is closed: printing stops (posting goes on while the run drains).
    StdoutClosed,
}

/// The `--post` run's last line: what happened to every event taken, by outcome.
fn summary(s: &SinkStats) -> String {
    let mut line = format!(
        "posted {} events; {} spooled for later; {} dropped at the spool limit",
        s.delivered,
        s.spooled,
        s.dropped.saturating_sub(s.dropped_disk_error)
    );
    if s.dropped_disk_error > 0 {
        line += &format!("; {} dropped on disk errors", s.dropped_disk_error);
    }
    line += &format!("; {} rejected by the service", s.rejected);
    if s.lost_in_crash > 0 {
        line += &format!(
            "; {} lost in an earlier crash (taken by a run that died before they reached the spool)",
            s.lost_in_crash
        );
    }
    line
}

/// How long the buffers must stay empty before shutdown stops draining them.
const DRAIN_QUIET: Duration = Duration::from_millis(200);

/// Shortest time between two reads while events keep coming: a wake-up less than this after
/// the previous one waits out the rest before reading again. What arrives meanwhile waits in
/// the kernel buffer, and the ring buffer wakes its reader only when it was empty, so a busy
/// host costs one wake-up, one read and one write per PACE instead of per exec. A quiet
/// stream's events are read at once; under load an event waits at most this long.
const PACE: Duration = Duration::from_millis(20);

/// A read that brings at least this many events is followed by the next at once: the kernel
/// buffer fills fast enough that waiting could lose events (64 of the largest events take
/// under 300 KiB of the default 1 MiB ring).
const CATCH_UP: usize = 64;

/// Smallest ring read with PACE (smaller ones, chosen with --ring-bytes, are read at once).
const PACE_MIN_RING: u32 = 1 << 20;

/// Filters each event, then prints it and/or queues it for the web service.
struct Outputs {
    name: Option<Regex>,
    failed: bool,
    json: bool,
    print: bool,
    count: Option<u64>,
    shown: u64,
    nats: Option<mapscope::sinks::nats::NatsSink>,
    /// Printed lines, written out once per burst of events.
    stdout: stdout::Lines,
}

impl Outputs {
    /// Handles the events of one wake-up, then writes their lines out in one go. Stops at an
    /// event that ends the run (`--count`, or stdout closed without a sink); with a sink, a
    /// closed stdout stops the printing only, the rest still goes to the sink.
    async fn burst(
        &mut self,
        batch: &mut Vec<Exec>,
        sink: Option<&HttpSink>,
        seen: &mut u64,
    ) -> anyhow::Result<Flow> {
        let sinks = sink.is_some() || self.nats.is_some();
        let mut flow = Flow::More;
        for ev in batch.drain(..) {
            *seen += 1;
            match self.handle(ev, sink).await? {
                Flow::More => {}
                Flow::StdoutClosed if sinks => flow = Flow::StdoutClosed,
                end => {
                    flow = end;
                    break;
                }
            }
        }
        if self.print && !self.stdout.flush() {
            self.print = false;
            if matches!(flow, Flow::More) {
                flow = Flow::StdoutClosed;
            }
        }
        Ok(flow)
    }

    /// Handles one event.
    async fn handle(&mut self, ev: Exec, sink: Option<&HttpSink>) -> anyhow::Result<Flow> {
        if self.failed && ev.ret == 0 {
            return Ok(Flow::More);
        }
        if let Some(re) = &self.name
            && !re.is_match(&ev.comm)
            && !re.is_match(&ev.filename)
        {
            return Ok(Flow::More);
        }
        let mut flow = Flow::More;
        if self.print {
            // Written straight from the event into the burst's buffer.
            let printed = if self.json {
                self.stdout
                    .line(|b| ev.write_json(b).map_err(std::io::Error::from))
            } else {
                self.stdout.line(|b| ev.write_line(b))
            };
            if !printed {
                self.print = false;
                flow = Flow::StdoutClosed;
            }
        }
        // Built once for the sinks (they take a `Value`).
        let json = (sink.is_some() || self.nats.is_some()).then(|| ev.json());
        if let (Some(n), Some(j)) = (&self.nats, &json) {
            n.send(j.clone()).await?;
        }
        if let (Some(sink), Some(j)) = (sink, json) {
            sink.send(j).await?;
        }
        self.shown += 1;
        if self.count.is_some_and(|n| self.shown >= n) {
            flow = Flow::CountReached;
        }
        Ok(flow)
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
            let line = serde_json::json!({"type": "uids", "schema": SCHEMA_VERSION, "counts": map});
            if !print_line(line) {
                break;
            }
        } else {
            let line: Vec<String> = counts.iter().map(|(u, c)| format!("ID {u}: {c}")).collect();
            let line = if line.is_empty() {
                "(no execs yet)".to_string()
            } else {
                line.join("   ")
            };
            if !print_line(line) {
                break;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_each_outcome() {
        let mut s = SinkStats {
            delivered: 5,
            spooled: 1,
            dropped: 4,
            rejected: 2,
            dropped_disk_error: 0,
            lost_in_crash: 0,
        };
        assert_eq!(
            summary(&s),
            "posted 5 events; 1 spooled for later; 4 dropped at the spool limit; 2 rejected by the service"
        );
        s.dropped_disk_error = 3;
        s.lost_in_crash = 7;
        assert_eq!(
            summary(&s),
            "posted 5 events; 1 spooled for later; 1 dropped at the spool limit; 3 dropped on disk errors; 2 rejected by the service; 7 lost in an earlier crash (taken by a run that died before they reached the spool)"
        );
    }
}
