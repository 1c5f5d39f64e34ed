//! exec tracing against the running kernel: real execs by a dedicated uid, exact counts and
//! exact event fields for both transports, loss accounting, the CLI, and the web-service sink.
//!
//! Each test uses its own uid and the kernel-side uid filter, so tests running in parallel (and
//! whatever else the host executes) never show up in each other's counts.

mod harness;

use std::{
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    time::Duration,
};

use harness::{
    BIN, assert_one_line_error, compile_c, compile_c_with, require_root, sink::spooled_batches,
    unprivileged, web::TestServer,
};
use mapscope::exec::{
    EventStream, Exec, ExecOptions, ExecTracer, Transport, event::TRUNCATION_MARKER,
};
use mapscope_common::exec::{ARG_MAX_LEN, ARGS_BUDGET, MAX_ARGS};
use tokio::{
    io::{AsyncBufReadExt as _, BufReader, Lines},
    process::ChildStdout,
    time::timeout,
};

fn probe() -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| {
        require_root();
        compile_c("exec_probe")
    })
}

/// Execs `path` with `args` as `uid` and waits for it; returns the child's pid.
fn exec_as(uid: u32, path: &Path, args: &[&str]) -> u32 {
    let mut child = Command::new(path)
        .args(args)
        .uid(uid)
        .gid(uid)
        .spawn()
        .expect("spawn probe");
    let pid = child.id();
    assert!(child.wait().unwrap().success());
    pid
}

fn tracer(uid: u32, transport: Transport) -> ExecTracer {
    ExecTracer::attach(ExecOptions {
        transport,
        uid: Some(uid),
        ..ExecOptions::default()
    })
    .expect("attach exec tracer")
}

/// Receives exactly `n` events, then checks that no further one arrives.
async fn recv_exact(events: &mut EventStream, n: usize) -> Vec<Exec> {
    let mut got = Vec::new();
    while got.len() < n {
        match timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Some(e)) => got.push(e),
            _ => panic!("only {} of {n} events arrived: {got:#?}", got.len()),
        }
    }
    if let Ok(Some(extra)) = timeout(Duration::from_millis(300), events.recv()).await {
        panic!("unexpected extra event {extra:#?}");
    }
    got
}

async fn exact_events(transport: Transport, uid: u32) {
    let probe = probe();
    let mut t = tracer(uid, transport);
    let mut events = t.events(1024).unwrap();
    const N: usize = 5;
    let pids: Vec<u32> = (0..N)
        .map(|i| exec_as(uid, probe, &[&format!("arg-{i}"), "two words"]))
        .collect();
    let mut got = recv_exact(&mut events, N).await;
    match transport {
        // One ring shared by all CPUs: arrival order is exec order.
        Transport::Ring => assert!(got.windows(2).all(|w| w[0].time_ns <= w[1].time_ns)),
        // One buffer per CPU, each with its own reader: order holds only per CPU, so sort by
        // the kernel timestamp.
        Transport::Perf => got.sort_by_key(|e| e.time_ns),
    }
    for (i, (e, pid)) in got.iter().zip(&pids).enumerate() {
        assert_eq!(e.pid, *pid, "{e:#?}");
        assert_eq!(e.tid, *pid);
        assert_eq!(
            e.ppid,
            Some(std::process::id()),
            "ppid must be this test process"
        );
        assert_eq!((e.uid, e.gid), (uid, uid));
        assert_eq!(e.comm, "exec_probe");
        assert_eq!(e.filename, probe.to_str().unwrap());
        assert_eq!(
            e.args,
            [probe.to_str().unwrap(), &format!("arg-{i}"), "two words"]
        );
        assert_eq!(e.ret, 0);
        assert_eq!(e.syscall, "execve");
        assert!(!e.args_truncated && !e.filename_truncated && !e.args_fault);
    }
    assert_eq!(t.uid_counts().unwrap().get(&uid), Some(&(N as u64)));
    assert_eq!(t.lost().unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn ring_buffer_delivers_exact_events_and_uid_count() {
    exact_events(Transport::Ring, 61001).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn perf_buffer_delivers_exact_events_and_uid_count() {
    exact_events(Transport::Perf, 61002).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_path_reports_enoent() {
    let uid = 61003;
    let mut t = tracer(uid, Transport::Ring);
    let mut events = t.events(16).unwrap();
    let missing = "/nonexistent/mapscope-no-such-program";
    let err = Command::new(missing).uid(uid).gid(uid).spawn().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    let got = recv_exact(&mut events, 1).await;
    assert_eq!(got[0].ret, -libc::ENOENT);
    assert_eq!(got[0].filename, missing);
    assert_eq!(got[0].ppid, Some(std::process::id()));
    assert_eq!(t.uid_counts().unwrap().get(&uid), Some(&1));
}

#[tokio::test(flavor = "multi_thread")]
async fn successful_exec_args_come_whole_from_the_new_image() {
    let uid = 61004;
    let probe = probe();
    let mut t = tracer(uid, Transport::Ring);
    let mut events = t.events(16).unwrap();

    // Read as one block from the new image: no per-argument or argument-count limit.
    let long = "a".repeat(3 * ARG_MAX_LEN);
    exec_as(uid, probe, &[&long, "after"]);
    let many: Vec<String> = (0..MAX_ARGS + 10).map(|i| format!("m{i}")).collect();
    let many_refs: Vec<&str> = many.iter().map(String::as_str).collect();
    exec_as(uid, probe, &many_refs);
    exec_as(uid, probe, &[]);
    // Beyond ARGS_BUDGET bytes in all, the block is cut (mid-argument) and marked.
    let big = "b".repeat(1000);
    exec_as(uid, probe, &[&big, &big, &big, &big, &big]);

    let got = recv_exact(&mut events, 4).await;
    let probe_s = probe.to_str().unwrap();
    assert_eq!(got[0].args, [probe_s, long.as_str(), "after"]);
    assert!(!got[0].args_truncated);
    let mut want = vec![probe_s];
    want.extend(&many_refs);
    assert_eq!(got[1].args, want);
    assert!(!got[1].args_truncated);
    assert_eq!(got[2].args, [probe_s]);
    assert!(!got[2].args_truncated);
    let bytes: usize = got[3].args.iter().map(|a| a.len() + 1).sum::<usize>() - 1;
    assert_eq!(bytes, ARGS_BUDGET, "{:?}", got[3].args.len());
    assert!(got[3].args_truncated);
    assert!(
        got[3].line().ends_with(TRUNCATION_MARKER),
        "{}",
        got[3].line()
    );
    assert_eq!(t.lost().unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_exec_args_are_read_from_argv_with_limits() {
    let uid = 61013;
    let mut t = tracer(uid, Transport::Ring);
    let mut events = t.events(16).unwrap();
    let missing = "/nonexistent/mapscope-long-args";
    let long = "a".repeat(3 * ARG_MAX_LEN);
    let err = Command::new(missing)
        .args([long.as_str(), "after"])
        .uid(uid)
        .gid(uid)
        .spawn()
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    let many: Vec<String> = (0..MAX_ARGS + 10).map(|i| format!("m{i}")).collect();
    let _ = Command::new(missing)
        .args(&many)
        .uid(uid)
        .gid(uid)
        .spawn()
        .unwrap_err();
    let got = recv_exact(&mut events, 2).await;
    // One argument cut at ARG_MAX_LEN - 1 bytes (+ NUL); the ones after it still arrive.
    assert_eq!(got[0].args[1], "a".repeat(ARG_MAX_LEN - 1));
    assert_eq!(got[0].args[2], "after");
    assert!(got[0].args_truncated && !got[0].args_fault);
    // argv[0] plus the first MAX_ARGS - 1 extra arguments.
    assert_eq!(got[1].args.len(), MAX_ARGS as usize);
    assert_eq!(
        got[1].args[MAX_ARGS as usize - 1],
        format!("m{}", MAX_ARGS - 2)
    );
    assert!(got[1].args_truncated);
    for e in &got {
        assert_eq!((e.ret, e.filename.as_str()), (-libc::ENOENT, missing));
    }
}

fn literal_program() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| compile_c("exec_literal"))
}

/// Runs `exec_literal MODE` as `uid` and returns the events for its pid (its own exec first).
async fn literal_events(uid: u32, mode: &str) -> Vec<Exec> {
    let prog = literal_program();
    let mut t = tracer(uid, Transport::Ring);
    let mut events = t.events(16).unwrap();
    let pid = exec_as(uid, prog, &[mode]);
    let got = recv_exact(&mut events, 2).await;
    assert!(got.iter().all(|e| e.pid == pid), "{got:#?}");
    assert_eq!(got[0].filename, prog.to_str().unwrap());
    assert_eq!(t.lost().unwrap(), 0);
    got
}

#[tokio::test(flavor = "multi_thread")]
async fn strings_never_paged_in_are_exact_for_a_successful_exec() {
    let got = literal_events(61014, "ok").await;
    let e = &got[1];
    assert_eq!(e.ret, 0);
    assert_eq!(e.filename, "/bin/true");
    assert_eq!(e.args, ["/bin/true", "hello-literal"]);
    assert_eq!(e.comm, "true");
    assert!(
        !e.filename_fault && !e.args_fault && !e.args_truncated,
        "{e:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn strings_never_paged_in_are_flagged_for_a_failed_exec() {
    // The kernel read the filename (so it is paged in and exact); it never reached argv, whose
    // untouched strings cannot be read: flagged, not silently empty.
    let got = literal_events(61015, "missing").await;
    let e = &got[1];
    assert_eq!(e.ret, -libc::ENOENT);
    assert_eq!(e.filename, "/nonexistent/mapscope-literal");
    assert!(!e.filename_fault);
    assert!(e.args.is_empty() && e.args_fault, "{e:#?}");

    let got = literal_events(61016, "efault").await;
    let e = &got[1];
    assert_eq!(e.ret, -libc::EFAULT);
    assert_eq!(e.filename, "");
    assert!(e.filename_fault, "{e:#?}");
    assert!(e.args.is_empty() && e.args_fault, "{e:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_threads_exec_at_once_each_with_its_own_outcome() {
    let prog = compile_c_with("exec_race", &["-pthread"]);
    // No uid filter (the program needs CAP_SYS_PTRACE for its userfaultfd): events are
    // picked by pid.
    let mut t = ExecTracer::attach(ExecOptions::default()).unwrap();
    let mut events = t.events(4096).unwrap();
    let child = Command::new(&prog).stdout(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let thread: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert_ne!(thread, pid);
    let mut got = Vec::new();
    while got.len() < 3 {
        match timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Some(e)) if e.pid == pid => got.push(e),
            Ok(Some(_)) => {}
            _ => panic!("only {} of 3 events for {pid}: {got:#?}", got.len()),
        }
    }
    // The launch, then the main thread's exec, killed by the second thread's, which wins.
    assert_eq!((got[0].tid, got[0].ret), (pid, 0));
    assert_eq!(got[0].filename, prog.to_str().unwrap());
    let failed = &got[1];
    assert_eq!(failed.tid, pid, "{failed:#?}");
    assert_eq!(failed.ret, -libc::EFAULT, "{failed:#?}");
    assert!(
        failed.filename_fault && failed.filename.is_empty(),
        "{failed:#?}"
    );
    let won = &got[2];
    assert_eq!(won.tid, thread, "{won:#?}");
    assert_eq!(won.ret, 0);
    assert_eq!(won.filename, "/bin/true");
    assert_eq!(won.args, ["/bin/true", "from-thread"]);
    assert_eq!(t.lost().unwrap(), 0);
    assert_eq!(t.counters().unwrap().lost_inflight_replaced, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_32_bit_process_exec_is_seen() {
    let uid = 61017;
    let compat = harness::compile_c_as("exec_compat", "exec_compat", "cc", &["-m32", "-static"]);
    let probe = probe();
    let mut t = tracer(uid, Transport::Perf);
    let mut events = t.events(16).unwrap();
    let pid = exec_as(uid, &compat, &[probe.to_str().unwrap()]);
    let got = recv_exact(&mut events, 2).await;
    // Its own launch (by this 64-bit test), then its exec as a 32-bit caller: not seen at
    // syscall entry, reported from sched_process_exec.
    assert_eq!(got[0].syscall, "execve");
    let e = &got[1];
    assert_eq!((e.pid, e.tid, e.uid, e.ret), (pid, pid, uid, 0));
    assert_eq!(e.ppid, Some(std::process::id()));
    assert_eq!(e.syscall, "unknown");
    assert_eq!(e.filename, probe.to_str().unwrap());
    assert_eq!(e.args, [probe.to_str().unwrap(), "from-32-bit"]);
    assert_eq!(e.comm, "exec_probe");
    // Counted once per exec, seen at entry or not.
    assert_eq!(t.uid_counts().unwrap().get(&uid), Some(&2));
}

#[tokio::test(flavor = "multi_thread")]
async fn events_are_sent_at_their_used_length() {
    // 64 KiB held 12 events at their full ~5 KiB; at their used length (header + a few
    // arguments, under 1 KiB) it holds all 40 with nothing read.
    let uid = 61018;
    let probe = probe();
    let mut t = ExecTracer::attach(ExecOptions {
        uid: Some(uid),
        ring_bytes: 64 * 1024,
        ..ExecOptions::default()
    })
    .unwrap();
    for _ in 0..40 {
        exec_as(uid, probe, &["x"]);
    }
    let mut events = t.events(1024).unwrap();
    recv_exact(&mut events, 40).await;
    assert_eq!(t.lost().unwrap(), 0);
}

/// Produces more events than the kernel buffer holds while nothing reads, then checks every
/// event is accounted for: received + lost == produced, exactly.
async fn flood(transport: Transport, uid: u32) {
    let probe = probe();
    const PRODUCED: u64 = 40;
    let mut t = ExecTracer::attach(ExecOptions {
        transport,
        uid: Some(uid),
        ring_bytes: 64 * 1024, // room for 14 events with 4 KiB of arguments
        perf_pages: 2,         // room for 1 such event per CPU
    })
    .unwrap();
    let big = "f".repeat(4000);
    let events = match transport {
        // The ring keeps events until someone reads: don't read at all yet.
        Transport::Ring => None,
        // Perf buffers only exist once opened: open them, but keep the reader blocked on a
        // one-slot channel nobody drains.
        Transport::Perf => Some(t.events(1).unwrap()),
    };
    for _ in 0..PRODUCED {
        exec_as(uid, probe, &[&big]);
    }
    let mut events = match events {
        Some(e) => e,
        None => t.events(1024).unwrap(),
    };
    let mut received = 0u64;
    while let Ok(Some(e)) = timeout(Duration::from_millis(500), events.recv()).await {
        assert_eq!(e.uid, uid);
        received += 1;
    }
    let lost = t.lost().unwrap();
    assert_eq!(
        received + lost,
        PRODUCED,
        "received {received}, lost {lost}"
    );
    assert!(lost > 0, "the buffer never filled: the test proves nothing");
    assert!(received > 0, "nothing was delivered");
    assert_eq!(t.uid_counts().unwrap().get(&uid), Some(&PRODUCED));
}

#[tokio::test(flavor = "multi_thread")]
async fn ring_flood_accounts_for_every_event() {
    flood(Transport::Ring, 61005).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn perf_flood_accounts_for_every_event() {
    flood(Transport::Perf, 61006).await;
}

#[test]
fn bad_buffer_sizes_are_rejected() {
    require_root();
    let ring =
        "ring buffer size must be a power of two of at least 8192 bytes (the largest exec event)";
    for (opts, needle) in [
        (
            ExecOptions {
                ring_bytes: 5000,
                ..ExecOptions::default()
            },
            ring,
        ),
        (
            // A power of two, but smaller than one event with full arguments.
            ExecOptions {
                ring_bytes: 4096,
                ..ExecOptions::default()
            },
            ring,
        ),
        (
            ExecOptions {
                perf_pages: 3,
                ..ExecOptions::default()
            },
            "perf buffer pages must be a power of two",
        ),
    ] {
        let err = ExecTracer::attach(opts).err().expect("accepted a bad size");
        assert!(err.to_string().contains(needle), "{err}");
    }
}

// ---- the CLI -------------------------------------------------------------------------------

struct Cli {
    child: tokio::process::Child,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Cli {
    /// Starts `mapscope ARGS` and waits until its first line (a JSON stats line or the table
    /// header) shows the tracepoints are attached.
    async fn start(args: &[&str]) -> Self {
        let mut child = tokio::process::Command::new(BIN)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        Self { child, stdout }
    }

    async fn line(&mut self) -> String {
        match timeout(Duration::from_secs(15), self.stdout.next_line()).await {
            Ok(Ok(Some(l))) => l,
            other => {
                let mut stderr = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    use tokio::io::AsyncReadExt as _;
                    let _ = timeout(Duration::from_secs(2), e.read_to_string(&mut stderr)).await;
                }
                panic!("no line from mapscope ({other:?}); stderr: {stderr}")
            }
        }
    }

    /// Next JSON line of the given `type`.
    async fn next_of(&mut self, kind: &str) -> serde_json::Value {
        loop {
            let v: serde_json::Value = serde_json::from_str(&self.line().await).unwrap();
            if v["type"] == kind {
                return v;
            }
        }
    }

    /// SIGTERM, then the exit status and stderr.
    async fn stop(self) -> (std::process::ExitStatus, String) {
        // SAFETY: kill on our own child.
        unsafe { libc::kill(self.child.id().unwrap() as i32, libc::SIGTERM) };
        let out = timeout(Duration::from_secs(20), self.child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_json_lines_with_filters() {
    let uid = 61010;
    let probe = probe();
    let uid_s = uid.to_string();
    let mut cli = Cli::start(&[
        "exec",
        "--uid",
        &uid_s,
        "--json",
        "--interval",
        "0.2",
        "--failed",
    ])
    .await;
    let stats = cli.next_of("stats").await;
    assert_eq!(stats["lost"], 0);
    exec_as(uid, probe, &["ok"]);
    let _ = Command::new("/nonexistent/cli-missing")
        .uid(uid)
        .gid(uid)
        .spawn();
    exec_as(uid, probe, &["ok-too"]);
    let e = cli.next_of("exec").await;
    // --failed: the two successful execs are filtered out.
    assert_eq!(e["filename"], "/nonexistent/cli-missing");
    assert_eq!(e["ret"], -libc::ENOENT);
    assert_eq!(e["uid"], uid);
    assert_eq!(e["schema"], 1);
    // All three execs reach the stats counter (filtered or not); a tick may land between them.
    let mut events = serde_json::Value::Null;
    for _ in 0..50 {
        events = cli.next_of("stats").await["events"].clone();
        if events == 3 {
            break;
        }
    }
    assert_eq!(events, 3);
    let (status, _) = cli.stop().await;
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_text_lines_and_name_filter() {
    let uid = 61011;
    let probe = probe();
    let uid_s = uid.to_string();
    let mut cli = Cli::start(&[
        "exec", "--uid", &uid_s, "--name", "^exec_pr", "--count", "2",
    ])
    .await;
    let header = cli.line().await;
    assert!(
        header.starts_with("TIME") && header.contains("PPID"),
        "{header}"
    );
    // The header is printed after attach.
    let _ = Command::new("/nonexistent/filtered-out")
        .uid(uid)
        .gid(uid)
        .spawn();
    let pid = exec_as(uid, probe, &["hello", "world"]);
    exec_as(uid, probe, &[]);
    let line = cli.line().await;
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[1], "exec_probe", "{line}");
    assert_eq!(cols[2], pid.to_string());
    assert_eq!(cols[3], std::process::id().to_string());
    assert_eq!(cols[4], uid_s);
    assert_eq!(cols[5], "0");
    assert!(
        line.ends_with(&format!("{} hello world", probe.display())),
        "{line}"
    );
    let _second = cli.line().await;
    let out = timeout(Duration::from_secs(10), cli.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(out.success(), "--count 2 should exit by itself");
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_uids_view_counts_exactly() {
    let uid = 61012;
    let probe = probe();
    let mut cli = Cli::start(&["exec", "uids", "--interval", "0.3", "--json"]).await;
    let _attached = cli.next_of("uids").await;
    for _ in 0..4 {
        exec_as(uid, probe, &[]);
    }
    let want = serde_json::json!(4);
    let mut seen = false;
    for _ in 0..20 {
        let v = cli.next_of("uids").await;
        if v["counts"][uid.to_string()] == want {
            seen = true;
            break;
        }
    }
    assert!(seen, "uid {uid} never reached 4");
    let (status, _) = cli.stop().await;
    assert!(status.success());

    // The text form, hello-map style.
    let out = Command::new(BIN)
        .args(["exec", "uids", "--interval", "0.2", "--count", "1"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .all(|l| l.starts_with("ID ") || l == "(no execs yet)"),
        "{text}"
    );
}

#[test]
fn cli_bad_input_is_one_line() {
    require_root();
    let cases: [(&[&str], &str); 8] = [
        (
            &["exec", "--interval", "0"],
            "--interval must be a positive",
        ),
        (
            &["exec", "--interval", "1e20"],
            "--interval must be at most 86400",
        ),
        (
            &["exec", "--post", "http://127.0.0.1:9/x", "--batch-max", "0"],
            "--batch-max and --queue must be at least 1",
        ),
        (
            &[
                "exec",
                "--post",
                "http://127.0.0.1:9/x",
                "--spool-dir",
                "/proc/mapscope-spool",
            ],
            "is not usable (choose another with --spool-dir)",
        ),
        (
            &["exec", "--name", "(unclosed"],
            "is not a valid regular expression (unclosed group)",
        ),
        (
            &["exec", "--post", "not a url"],
            "is not a valid http(s) URL",
        ),
        (
            &["exec", "--post", "ftp://127.0.0.1/x"],
            "is not a valid http(s) URL",
        ),
        (&["exec", "--ring-bytes", "4096"], "at least 8192 bytes"),
    ];
    for (args, needle) in cases {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_one_line_error(&out, needle);
    }
    let out = unprivileged(&["exec"]);
    assert_one_line_error(&out, "missing privileges");
}

// ---- the web-service sink ------------------------------------------------------------------

/// Starts `mapscope exec` posting uid's events to `url`, spooling in `spool`, and waits until
/// it is attached.
async fn start_posting(uid: u32, url: &str, spool: &Path, extra: &[&str]) -> Cli {
    let (uid, spool) = (uid.to_string(), spool.to_str().unwrap().to_string());
    let mut args = vec![
        "exec",
        "--uid",
        &uid,
        "--json",
        "--echo",
        "--interval",
        "0.2",
        "--post",
        url,
        "--batch-ms",
        "100",
        "--retry-max-ms",
        "200",
        "--spool-dir",
        &spool,
    ];
    args.extend(extra);
    let mut cli = Cli::start(&args).await;
    cli.next_of("stats").await;
    cli
}

/// Execs the probe as `uid` with `seq-I` as its argument, for each I in `range`.
fn exec_seq(uid: u32, range: std::ops::Range<usize>) {
    for i in range {
        exec_as(uid, probe(), &[&format!("seq-{i}")]);
    }
}

async fn wait_events(server: &TestServer, n: usize) -> Vec<serde_json::Value> {
    for _ in 0..200 {
        let ev = server.events();
        if ev.len() >= n {
            return ev;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server got {} of {n} events", server.events().len());
}

fn assert_in_order(events: &[serde_json::Value], n: usize) {
    let tags: Vec<String> = events
        .iter()
        .map(|e| e["args"][1].as_str().unwrap_or("?").to_string())
        .collect();
    let want: Vec<String> = (0..n).map(|i| format!("seq-{i}")).collect();
    assert_eq!(tags, want, "events missing, duplicated or out of order");
}

#[tokio::test(flavor = "multi_thread")]
async fn web_service_receives_every_event_in_order() {
    let uid = 61020;
    let server = TestServer::start().await;
    let spool = tempfile::tempdir().unwrap();
    let cli = start_posting(uid, &server.url(), spool.path(), &["--batch-max", "3"]).await;
    const N: usize = 10;
    exec_seq(uid, 0..N);
    assert_in_order(&wait_events(&server, N).await, N);
    let bodies = server.bodies();
    for b in &bodies {
        assert_eq!(
            (&b["schema"], &b["agent"], &b["lost_total"]),
            (&1.into(), &"mapscope".into(), &0.into())
        );
        assert!(
            b["events"].as_array().unwrap().len() <= 3,
            "batch over --batch-max: {b}"
        );
    }
    let seqs: Vec<u64> = bodies.iter().map(|b| b["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let (status, stderr) = cli.stop().await;
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("posted {N} events; 0 spooled")),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn web_service_outage_is_spooled_and_replayed_in_order() {
    let uid = 61021;
    let mut server = TestServer::start().await;
    let spool = tempfile::tempdir().unwrap();
    let cli = start_posting(uid, &server.url(), spool.path(), &[]).await;

    exec_seq(uid, 0..4);
    wait_events(&server, 4).await;
    server.stop().await;
    exec_seq(uid, 4..9);
    // Down long enough for the retries to give up and the batches to reach the disk spool.
    let on_disk = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        spooled_batches(spool.path()) > 0
    });
    assert!(on_disk, "nothing was spooled to disk during the outage");
    server.restart().await;
    exec_seq(uid, 9..12);
    wait_events(&server, 12).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_in_order(&server.events(), 12);
    let (status, stderr) = cli.stop().await;
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("posted 12 events; 0 spooled for later; 0 dropped"),
        "{stderr}"
    );
    assert_eq!(spooled_batches(spool.path()), 0, "spool not emptied");
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_at_startup_warns_then_delivers_when_it_comes_up() {
    let uid = 61022;
    let mut server = TestServer::stopped_at(TestServer::unused_addr().await);
    let spool = tempfile::tempdir().unwrap();
    let cli = start_posting(uid, &server.url(), spool.path(), &[]).await;
    exec_seq(uid, 0..3);
    tokio::time::sleep(Duration::from_millis(800)).await;
    server.restart().await;
    assert_in_order(&wait_events(&server, 3).await, 3);
    let (status, stderr) = cli.stop().await;
    assert!(status.success());
    assert!(
        stderr.contains("unreachable") && stderr.contains("will wait in"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn spool_limit_drops_and_counts_and_spool_survives_restart() {
    let uid = 61023;
    let mut server = TestServer::stopped_at(TestServer::unused_addr().await);
    let spool = tempfile::tempdir().unwrap();

    // Service down for the whole run, spool big enough for exactly one batch of one event
    // (a one-event body is about 450 bytes).
    let limits = ["--batch-max", "1", "--spool-max-bytes", "700"];
    let cli = start_posting(uid, &server.url(), spool.path(), &limits).await;
    exec_seq(uid, 0..3);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, stderr) = cli.stop().await;
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("posted 0 events; 1 spooled for later; 2 dropped at the spool limit"),
        "{stderr}"
    );
    assert!(stderr.contains("dropped 1 events"), "{stderr}");

    // The next run replays what the previous one left in the spool, first.
    server.restart().await;
    let cli = start_posting(uid, &server.url(), spool.path(), &[]).await;
    exec_as(uid, probe(), &["later"]);
    let events = wait_events(&server, 2).await;
    assert_eq!(events[0]["args"][1], "seq-0");
    assert_eq!(events[1]["args"][1], "later");
    let (status, stderr) = cli.stop().await;
    assert!(status.success());
    assert!(stderr.contains("from an earlier run"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn seq_grows_across_restarts_and_foreign_spool_files_are_left_alone() {
    let uid = 61024;
    let server = TestServer::start().await;
    let spool = tempfile::tempdir().unwrap();
    for name in ["5.json", "notes.txt"] {
        std::fs::write(spool.path().join(name), b"not ours").unwrap();
    }
    for (run, range) in [(0, 0..2), (1, 2..4)] {
        let cli = start_posting(uid, &server.url(), spool.path(), &["--batch-max", "1"]).await;
        exec_seq(uid, range.clone());
        wait_events(&server, range.end).await;
        let (status, stderr) = cli.stop().await;
        assert!(status.success(), "run {run}: {stderr}");
    }
    assert_in_order(&server.events(), 4);
    let seqs: Vec<u64> = server
        .bodies()
        .iter()
        .map(|b| b["seq"].as_u64().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seq must grow across restarts: {seqs:?}"
    );
    for name in ["5.json", "notes.txt"] {
        assert_eq!(
            std::fs::read(spool.path().join(name)).unwrap(),
            b"not ours",
            "{name} was touched"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unreadable_spool_batch_is_set_aside_not_retried_forever() {
    let uid = 61025;
    let server = TestServer::start().await;
    let spool = tempfile::tempdir().unwrap();
    // Named like a batch, but a directory: reading it fails.
    std::fs::create_dir(spool.path().join("00000000000000000001-1.json")).unwrap();
    let cli = start_posting(uid, &server.url(), spool.path(), &[]).await;
    exec_seq(uid, 0..2);
    assert_in_order(&wait_events(&server, 2).await, 2);
    let (status, stderr) = timeout(Duration::from_secs(10), cli.stop())
        .await
        .expect("shutdown hung");
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("set aside as") && stderr.contains(".bad"),
        "{stderr}"
    );
    assert!(
        stderr.contains("posted 2 events; 0 spooled for later; 1 dropped"),
        "{stderr}"
    );
    assert!(spool.path().join("00000000000000000001-1.bad").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_batch_is_kept_aside_and_the_rest_still_flows() {
    let uid = 61026;
    let server = TestServer::start().await;
    server.reject_containing("reject-me");
    let spool = tempfile::tempdir().unwrap();
    let cli = start_posting(uid, &server.url(), spool.path(), &["--batch-max", "1"]).await;
    exec_seq(uid, 0..2);
    exec_as(uid, probe(), &["reject-me"]);
    exec_seq(uid, 2..4);
    assert_in_order(&wait_events(&server, 4).await, 4);
    let (status, stderr) = cli.stop().await;
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("refused batch") && stderr.contains("HTTP 400"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "posted 4 events; 0 spooled for later; 0 dropped at the spool limit; 1 rejected"
        ),
        "{stderr}"
    );
    let rejected: Vec<_> = std::fs::read_dir(spool.path().join("rejected"))
        .unwrap()
        .collect();
    assert_eq!(rejected.len(), 1);
    let kept = std::fs::read_to_string(rejected[0].as_ref().unwrap().path()).unwrap();
    assert!(kept.contains("reject-me"), "{kept}");
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_with_a_slow_service_loses_nothing() {
    let uid = 61027;
    let server = TestServer::start().await;
    // Each answer takes 1.5 s: during the 10 s shutdown grace only a few of the 20 one-event
    // batches get through; the rest must reach the spool, none may vanish.
    server.set_delay(Duration::from_millis(1500));
    let spool = tempfile::tempdir().unwrap();
    let cli = start_posting(
        uid,
        &server.url(),
        spool.path(),
        &["--batch-max", "1", "--queue", "2"],
    )
    .await;
    const N: usize = 20;
    exec_seq(uid, 0..N);
    let (status, stderr) = timeout(Duration::from_secs(30), cli.stop())
        .await
        .expect("shutdown hung");
    assert!(status.success(), "{stderr}");
    let summary = stderr
        .lines()
        .find(|l| l.starts_with("mapscope: posted "))
        .expect(&stderr);
    let nums: Vec<u64> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let (delivered, spooled, dropped, rejected) = (nums[0], nums[1], nums[2], nums[3]);
    assert_eq!((dropped, rejected), (0, 0), "{stderr}");
    assert_eq!(delivered + spooled, N as u64, "{stderr}");
    assert!(
        spooled > 0,
        "the service was never slow enough to test the spool: {stderr}"
    );
    assert!(!stderr.contains("lost"), "{stderr}");

    // The next run delivers what was left, first.
    server.set_delay(Duration::ZERO);
    let cli = start_posting(uid, &server.url(), spool.path(), &[]).await;
    wait_events(&server, N).await;
    let (status, _) = cli.stop().await;
    assert!(status.success());
    assert_in_order(&server.events(), N);
}

// ---- attach and detach with an exec in flight ----------------------------------------------

/// `exec_block` started and waiting inside its execve.
struct BlockedExec {
    child: std::process::Child,
}

impl BlockedExec {
    fn start() -> Self {
        let prog = compile_c_with("exec_block", &["-pthread"]);
        let mut child = Command::new(prog)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line, "blocked\n");
        Self { child }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lets the exec succeed (`go`) or fail (end of input), and waits.
    fn finish(mut self, succeed: bool) {
        let mut stdin = self.child.stdin.take().unwrap();
        if succeed {
            std::io::Write::write_all(&mut stdin, b"go\n").unwrap();
        }
        drop(stdin);
        let status = self.child.wait().unwrap();
        assert_eq!(status.code(), Some(if succeed { 0 } else { 3 }));
    }
}

impl Drop for BlockedExec {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exec_under_way_at_attach_is_still_reported() {
    require_root();
    let blocked = BlockedExec::start();
    let pid = blocked.pid();
    // No uid filter (the program needs CAP_SYS_PTRACE): its event is picked by pid.
    let mut t = ExecTracer::attach(ExecOptions::default()).unwrap();
    let mut events = t.events(4096).unwrap();
    blocked.finish(true);
    let e = loop {
        match timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Some(e)) if e.pid == pid => break e,
            Ok(Some(_)) => {}
            _ => panic!("no event for {pid}"),
        }
    };
    // Its entry came before the attach: reported from sched_process_exec.
    assert_eq!((e.ret, e.syscall), (0, "unknown"));
    assert_eq!(e.filename, "/bin/true");
    assert_eq!(e.args, ["/bin/true", "blocked-exec"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exec_in_flight_at_detach_is_counted() {
    require_root();
    let mut t = ExecTracer::attach(ExecOptions::default()).unwrap();
    let blocked = BlockedExec::start();
    t.detach();
    let c = t.counters().unwrap();
    // The blocked exec, and nothing else on this host stays in an exec for 200 ms.
    assert_eq!(c.lost_at_detach, 1, "{c:?}");
    assert_eq!(t.lost().unwrap(), c.lost());
    blocked.finish(false);
}

// ---- ending the run --------------------------------------------------------------------------

/// `mapscope exec --json …` whose reader goes away after one exec event (as `| head -n 2`
/// does): the run must end by itself, cleanly.
async fn stdout_closed_after_one_event(
    uid: u32,
    extra: &[&str],
) -> (std::process::ExitStatus, String) {
    let uid_s = uid.to_string();
    let mut args = vec!["exec", "--uid", &uid_s, "--json", "--interval", "0.2"];
    args.extend(extra);
    let mut cli = Cli::start(&args).await;
    cli.next_of("stats").await;
    exec_as(uid, probe(), &["before-close"]);
    assert_eq!(cli.next_of("exec").await["args"][1], "before-close");
    let Cli { mut child, stdout } = cli;
    drop(stdout);
    let out = timeout(Duration::from_secs(20), async {
        let status = child.wait().await.unwrap();
        let mut stderr = String::new();
        use tokio::io::AsyncReadExt as _;
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .await
            .unwrap();
        (status, stderr)
    })
    .await
    .expect("mapscope kept running after its stdout closed");
    assert!(!out.1.contains("panicked"), "{}", out.1);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn closed_stdout_ends_the_run_cleanly() {
    let (status, stderr) = stdout_closed_after_one_event(61032, &[]).await;
    assert!(status.success(), "{status:?} {stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn closed_stdout_with_post_still_delivers() {
    let server = TestServer::start().await;
    let spool = tempfile::tempdir().unwrap();
    let url = server.url();
    let (status, stderr) = stdout_closed_after_one_event(
        61033,
        &[
            "--post",
            &url,
            "--echo",
            "--batch-ms",
            "60000",
            "--spool-dir",
            spool.path().to_str().unwrap(),
        ],
    )
    .await;
    assert!(status.success(), "{status:?} {stderr}");
    // The open batch (it would have waited a minute) is delivered on the way out.
    assert!(stderr.contains("posted 1 events; 0 spooled"), "{stderr}");
    assert_eq!(server.events().len(), 1);
}

/// Lines reaching stdout after `cli` exits by itself or on SIGTERM (`term`), read to the end.
async fn lines_at_exit(cli: Cli, term: bool) -> Vec<String> {
    let Cli { mut child, stdout } = cli;
    if term {
        // SAFETY: kill on our own child.
        unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) };
    }
    let status = timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("mapscope did not exit")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let mut lines = Vec::new();
    let mut stdout = stdout;
    while let Some(l) = timeout(Duration::from_secs(5), stdout.next_line())
        .await
        .unwrap()
        .unwrap()
    {
        lines.push(l);
    }
    lines
}

/// stdout is written once per burst of events, not per line: whatever ends the run, every line
/// printed still reaches stdout before the exit.
#[tokio::test(flavor = "multi_thread")]
async fn every_printed_line_reaches_stdout_at_exit() {
    let uid = 61040;
    let uid_s = uid.to_string();
    // A signal right after the execs: their events are still in the kernel buffer or printed
    // but unwritten; the drain prints them and the exit writes them out.
    let mut cli = Cli::start(&["exec", "--uid", &uid_s, "--json", "--interval", "0.2"]).await;
    cli.next_of("stats").await;
    exec_seq(uid, 0..30);
    let events: Vec<serde_json::Value> = lines_at_exit(cli, true)
        .await
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "exec")
        .collect();
    assert_in_order(&events, 30);

    // --count: exactly that many lines, all of them written before the run ends by itself.
    let mut cli = Cli::start(&["exec", "--uid", &uid_s, "--count", "5"]).await;
    // The header is written as soon as the tracepoints are attached.
    assert!(cli.line().await.starts_with("TIME"));
    exec_seq(uid, 0..8);
    let lines = lines_at_exit(cli, false).await;
    let tags: Vec<&str> = lines
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    assert_eq!(
        tags,
        ["seq-0", "seq-1", "seq-2", "seq-3", "seq-4"],
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn events_lost_in_a_crash_are_reported_by_the_next_run() {
    let uid = 61034;
    let server = TestServer::start().await;
    let spool = tempfile::tempdir().unwrap();
    let (uid_s, url) = (uid.to_string(), server.url());
    let spool_s = spool.path().to_str().unwrap();
    // A batch that never closes by itself: the three events stay in memory.
    let mut cli = Cli::start(&[
        "exec",
        "--uid",
        &uid_s,
        "--json",
        "--echo",
        "--interval",
        "0.2",
        "--post",
        &url,
        "--batch-ms",
        "600000",
        "--spool-dir",
        spool_s,
    ])
    .await;
    cli.next_of("stats").await;
    exec_seq(uid, 0..3);
    for _ in 0..3 {
        cli.next_of("exec").await;
    }
    // Echoed before queued: give the sink a moment to take the last one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    cli.child.kill().await.unwrap();

    let cli = start_posting(uid, &url, spool.path(), &[]).await;
    let (status, stderr) = cli.stop().await;
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("posted 0 events; 0 spooled for later; 0 dropped at the spool limit; 0 rejected by the service; 3 lost in an earlier crash"),
        "{stderr}"
    );
    assert!(server.events().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_signal_ends_the_drain_at_once_and_spools_the_rest() {
    let uid = 61035;
    let server = TestServer::start().await;
    // Every POST takes a minute: the drain would use its whole grace.
    server.set_delay(Duration::from_secs(60));
    let spool = tempfile::tempdir().unwrap();
    let cli = start_posting(uid, &server.url(), spool.path(), &["--batch-max", "1"]).await;
    exec_seq(uid, 0..3);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = cli.child.id().unwrap() as i32;
    // SAFETY: kill on our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    let (status, stderr) = cli.stop().await;
    assert!(status.success(), "{stderr}");
    assert!(
        started.elapsed() < mapscope::sinks::http::SHUTDOWN_GRACE / 2,
        "the second signal did not cut the drain short ({:?})",
        started.elapsed()
    );
    assert!(stderr.contains("second signal"), "{stderr}");
    assert!(
        stderr.contains("posted 0 events; 3 spooled for later"),
        "{stderr}"
    );
    assert_eq!(spooled_batches(spool.path()), 3);
}

/// `mapscope ARGS` as a non-root uid holding exactly `caps` (setpriv names, e.g. "bpf").
fn with_caps(uid: u32, caps: &str) -> Command {
    let id = uid.to_string();
    let mut cmd = Command::new("setpriv");
    cmd.args([
        &format!("--reuid={id}"),
        &format!("--regid={id}"),
        "--clear-groups",
        &format!("--inh-caps=-all,{caps}"),
        &format!("--ambient-caps=-all,{caps}"),
        "--",
        BIN,
    ]);
    cmd
}

#[tokio::test(flavor = "multi_thread")]
async fn unreadable_tracefs_names_the_permission_and_the_capability() {
    require_root();
    let uid = 61036;
    // CAP_BPF + CAP_PERFMON, no root: tracefs (mode 700) cannot be read.
    let out = with_caps(uid, "+bpf,+perfmon")
        .args(["exec", "--uid", &uid.to_string()])
        .output()
        .unwrap();
    assert_one_line_error(
        &out,
        "read access to tracefs at /sys/kernel/tracing: permission denied for uid 61036, add CAP_DAC_READ_SEARCH",
    );
    // The capability named is the one that fixes it.
    let mut child = tokio::process::Command::from(with_caps(uid, "+bpf,+perfmon,+dac_read_search"))
        .args([
            "exec",
            "--uid",
            &uid.to_string(),
            "--json",
            "--interval",
            "0.2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut cli = Cli { child, stdout };
    cli.next_of("stats").await;
    exec_as(uid, probe(), &["with-caps"]);
    assert_eq!(cli.next_of("exec").await["args"][1], "with-caps");
    let (status, stderr) = cli.stop().await;
    assert!(status.success(), "{stderr}");
}

#[test]
fn pids_are_those_of_mapscope_s_pid_namespace() {
    require_root();
    let uid = 61037;
    let probe = probe();
    let dir = tempfile::tempdir().unwrap();
    let (out, pidfile) = (dir.path().join("out"), dir.path().join("pid"));
    // mapscope and the exec both inside a new pid namespace (with its own /proc); the shell
    // that runs them is its pid 1.
    let script = format!(
        r#"{bin} exec --uid {uid} --json --interval 0.1 --count 1 > {out} &
for i in $(seq 300); do grep -q stats {out} && break; sleep 0.05; done
bash -c 'echo $$ > {pidfile}; exec setpriv --reuid={uid} --regid={uid} --clear-groups {probe} in-ns'
wait $!"#,
        bin = BIN,
        out = out.display(),
        pidfile = pidfile.display(),
        probe = probe.display(),
    );
    let status = Command::new("timeout")
        .args([
            "30",
            "unshare",
            "--pid",
            "--fork",
            "--mount-proc",
            "bash",
            "-c",
            &script,
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    let e: serde_json::Value = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["type"] == "exec")
        .unwrap_or_else(|| panic!("no exec event in {text}"));
    assert_eq!(e["args"][1], "in-ns", "{e}");
    // As `ps` inside the namespace shows them: the exec'ing shell and its parent, pid 1.
    assert_eq!(e["pid"], pid, "{e}");
    assert_eq!(e["tid"], pid, "{e}");
    assert_eq!(e["ppid"], 1, "{e}");
    assert!(pid < 100, "pid {pid} is not from a fresh namespace");
    // Execs on the host meanwhile (this test's own, at least) have no pid there: counted aside.
    let stats: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "stats")
        .collect();
    assert!(stats.iter().all(|v| v["lost"] == 0), "{text}");
}
