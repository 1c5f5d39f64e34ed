//! The NATS JetStream sink against a real `nats-server -js` (Debian's) started by each test on
//! 127.0.0.1 with a temp store and killed even on failure: real execs into the stream exactly
//! once and in order, a server restart on the same store, a publish whose ack a proxy drops,
//! `mapscope tail`, and the start-up errors.
//!
//! Tests named `execs_*` trace real execs (root, kernel lock); the others drive the sink's
//! library API or only reach start-up, and need no kernel programs.

/// `mapscope agent` with `[sinks.nats]`.
#[path = "nats/agent.rs"]
mod agent;
mod harness;

use std::{
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_nats::jetstream::{self, stream::Config};
use harness::{
    BIN, assert_one_line_error, require_root,
    sink::{Messages, spooled_batches},
};
use mapscope::sinks::nats::{NatsConfig, NatsSink, Secret};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
    time::sleep,
};

/// A `nats-server -js` on 127.0.0.1 with its own store; killed on drop.
struct NatsServer {
    port: u16,
    store: tempfile::TempDir,
    token: Option<String>,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl NatsServer {
    fn start(token: Option<&str>) -> Self {
        let mut s = Self {
            port: free_port(),
            store: tempfile::tempdir().unwrap(),
            token: token.map(str::to_string),
            child: None,
        };
        s.resume();
        s
    }

    /// An address nothing listens on yet; [`NatsServer::resume`] starts the server there.
    fn not_started() -> Self {
        Self {
            port: free_port(),
            store: tempfile::tempdir().unwrap(),
            token: None,
            child: None,
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the server on the same port and store.
    fn resume(&mut self) {
        let mut cmd = Command::new("nats-server");
        cmd.args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js"])
            .args(["-sd", self.store.path().to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(t) = &self.token {
            cmd.args(["--auth", t]);
        }
        self.child = Some(
            cmd.spawn()
                .expect("nats-server (scripts/setup.sh installs it)"),
        );
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("nats-server did not listen on {}", self.port);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    async fn js(&self) -> jetstream::Context {
        let mut o = async_nats::ConnectOptions::new();
        if let Some(t) = &self.token {
            o = o.token(t.clone());
        }
        jetstream::new(o.connect(self.url()).await.unwrap())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One stored message: subject, `Nats-Msg-Id`, `Mapscope-Seq`, payload.
#[derive(Debug)]
struct Stored {
    subject: String,
    id: String,
    seq: u64,
    event: Value,
}

/// Every message in stream MAPSCOPE, in stream order.
async fn stored(js: &jetstream::Context) -> Vec<Stored> {
    let Ok(mut stream) = js.get_stream("MAPSCOPE").await else {
        return Vec::new();
    };
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut out = Vec::new();
    for n in 1..=last {
        let Ok(m) = stream.get_raw_message(n).await else {
            continue;
        };
        let h = |k: &str| m.headers.get(k).map(|v| v.to_string()).unwrap_or_default();
        out.push(Stored {
            subject: m.subject.to_string(),
            id: h("Nats-Msg-Id"),
            seq: h("Mapscope-Seq").parse().unwrap_or(0),
            event: serde_json::from_slice(&m.payload).unwrap(),
        });
    }
    out
}

async fn count(js: &jetstream::Context) -> u64 {
    match js.get_stream("MAPSCOPE").await {
        Ok(mut s) => s.info().await.map_or(0, |i| i.state.messages),
        Err(_) => 0,
    }
}

/// Polls until the stream holds `n` messages (20 s at most).
async fn wait_for(js: &jetstream::Context, n: u64) {
    for _ in 0..400 {
        if count(js).await >= n {
            return;
        }
        sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "stream never reached {n} messages (has {})",
        count(js).await
    );
}

/// Checks the stream holds exactly `tags` in order, each once, from this host.
async fn assert_exactly(
    js: &jetstream::Context,
    tags: &[String],
    tag_of: impl Fn(&Value) -> String,
) {
    let msgs = stored(js).await;
    let got: Vec<String> = msgs.iter().map(|m| tag_of(&m.event)).collect();
    assert_eq!(got, tags, "stream content");
    let mut ids: Vec<&str> = msgs.iter().map(|m| m.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), msgs.len(), "message ids not distinct");
    assert!(
        msgs.windows(2).all(|w| w[0].seq < w[1].seq),
        "seq out of order"
    );
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host = mapscope::sinks::nats::subject::token(host.trim());
    for m in &msgs {
        assert_eq!(
            m.subject,
            format!("mapscope.{host}.{}", m.event["type"].as_str().unwrap())
        );
        assert!(
            m.id.starts_with(&format!("{host}.")) && m.id.ends_with(&format!(".{}", m.seq)),
            "{m:?}"
        );
    }
}

fn config(url: &str, spool: &Path) -> NatsConfig {
    NatsConfig {
        url: url.to_string(),
        batch_max: 5,
        batch_ms: 30,
        spool_dir: spool.to_path_buf(),
        retry_max_ms: 300,
        ..NatsConfig::default()
    }
}

fn event(i: usize) -> Value {
    json!({"type": "exec", "tag": format!("ev-{i}")})
}

fn tag(v: &Value) -> String {
    v["tag"].as_str().unwrap_or("?").to_string()
}

fn want(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("ev-{i}")).collect()
}

// ---- the transport ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_at_start_spools_then_delivers_in_order_once_up() {
    let mut server = NatsServer::not_started();
    let spool = tempfile::tempdir().unwrap();
    let m = Messages::default();
    let sink = NatsSink::start_with(config(&server.url(), spool.path()), m.reporter())
        .await
        .unwrap();
    assert!(m.any("unreachable"), "no warning");
    for i in 0..30 {
        sink.send(event(i)).await.unwrap();
    }
    // Batches wait in the spool while nothing listens.
    sleep(Duration::from_millis(800)).await;
    assert!(spooled_batches(spool.path()) > 0, "nothing spooled");
    server.resume();
    let js = server.js().await;
    wait_for(&js, 30).await;
    let stats = sink.finish().await.unwrap();
    assert_eq!(
        (stats.delivered, stats.spooled, stats.dropped),
        (30, 0, 0),
        "{stats:?}"
    );
    assert_exactly(&js, &want(30), tag).await;
}

/// A proxy that forwards a NATS connection and, on the first connection, cuts it right after
/// forwarding the first JetStream publish (HPUB on `mapscope.`), holding back the server's
/// answer: the server stores the message, the client never sees its ack.
struct AckDropper {
    port: u16,
    /// How many times the cut message was sent again.
    resent: Arc<AtomicUsize>,
}

impl AckDropper {
    async fn start(upstream: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let resent = Arc::new(AtomicUsize::new(0));
        let cut_id: Arc<Mutex<Option<String>>> = Arc::default();
        let done = Arc::new(AtomicBool::new(false));
        let r = Arc::clone(&resent);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(("127.0.0.1", upstream)).await.unwrap();
                tokio::spawn(relay(
                    client,
                    server,
                    Arc::clone(&done),
                    Arc::clone(&cut_id),
                    Arc::clone(&r),
                ));
            }
        });
        Self { port, resent }
    }
}

/// Relays one connection, parsing the client's side into protocol operations.
async fn relay(
    client: TcpStream,
    server: TcpStream,
    done: Arc<AtomicBool>,
    cut_id: Arc<Mutex<Option<String>>>,
    resent: Arc<AtomicUsize>,
) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let hold = Arc::new(AtomicBool::new(false));
    let h = Arc::clone(&hold);
    let down = tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = sr.read(&mut buf).await {
            if n == 0 || h.load(Ordering::SeqCst) {
                break;
            }
            if cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    });
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 65536];
    'conn: while let Ok(n @ 1..) = cr.read(&mut buf).await {
        pending.extend_from_slice(&buf[..n]);
        // Forward whole operations only, so a cut lands between them.
        while let Some(eol) = pending.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&pending[..eol]).to_string();
            let words: Vec<&str> = line.split_whitespace().collect();
            let op = words
                .first()
                .map(|w| w.to_ascii_uppercase())
                .unwrap_or_default();
            let body = match op.as_str() {
                "PUB" | "HPUB" => words.last().unwrap().parse::<usize>().unwrap() + 2,
                _ => 0,
            };
            let len = eol + 2 + body;
            if pending.len() < len {
                break;
            }
            let frame: Vec<u8> = pending.drain(..len).collect();
            let publish = op == "HPUB" && words[1].starts_with("mapscope.");
            let id = publish.then(|| {
                let text = String::from_utf8_lossy(&frame);
                text.split("\r\n")
                    .find_map(|l| l.strip_prefix("Nats-Msg-Id: ").map(str::to_string))
                    .unwrap_or_default()
            });
            if let Some(id) = &id
                && cut_id.lock().unwrap().as_deref() == Some(id.as_str())
            {
                resent.fetch_add(1, Ordering::SeqCst);
            }
            let cut = publish && !done.swap(true, Ordering::SeqCst);
            if cut {
                *cut_id.lock().unwrap() = id;
                hold.store(true, Ordering::SeqCst);
            }
            if sw.write_all(&frame).await.is_err() {
                break 'conn;
            }
            if cut {
                // The server stores it and answers; the answer is held back, then the line dies.
                sleep(Duration::from_millis(300)).await;
                break 'conn;
            }
        }
    }
    down.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_publish_whose_ack_was_lost_is_resent_and_stored_once() {
    let server = NatsServer::start(None);
    let proxy = AckDropper::start(server.port).await;
    let spool = tempfile::tempdir().unwrap();
    let m = Messages::default();
    let sink = NatsSink::start_with(
        config(&format!("nats://127.0.0.1:{}", proxy.port), spool.path()),
        m.reporter(),
    )
    .await
    .unwrap();
    for i in 0..12 {
        sink.send(event(i)).await.unwrap();
    }
    let js = server.js().await;
    wait_for(&js, 12).await;
    // The stream had the cut message before its resend: wait for the resend to be answered.
    for _ in 0..400 {
        if proxy.resent.load(Ordering::SeqCst) >= 1 {
            break;
        }
        sleep(Duration::from_millis(50)).await;
    }
    let stats = sink.finish().await.unwrap();
    assert!(
        proxy.resent.load(Ordering::SeqCst) >= 1,
        "the publish whose ack was dropped was never resent"
    );
    assert_eq!(
        (stats.delivered, stats.spooled, stats.dropped),
        (12, 0, 0),
        "{stats:?}"
    );
    assert_eq!(count(&js).await, 12);
    assert_exactly(&js, &want(12), tag).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tail_prints_what_another_process_published() {
    let server = NatsServer::start(None);
    let spool = tempfile::tempdir().unwrap();
    let sink = NatsSink::start_with(
        config(&server.url(), spool.path()),
        Messages::default().reporter(),
    )
    .await
    .unwrap();
    let ev = |i: usize| {
        json!({"type": "exec", "schema": 1, "time_ns": 1_700_000_000_000_000_000u64 + i as u64,
            "pid": 100 + i, "tid": 100 + i, "ppid": 1, "uid": 0, "gid": 0, "comm": "probe",
            "filename": "/bin/probe", "filename_truncated": false,
            "args": ["/bin/probe", format!("tail-{i}")], "args_truncated": false,
            "args_fault": false, "ret": 0, "syscall": "execve"})
    };
    for i in 0..5 {
        sink.send(ev(i)).await.unwrap();
    }
    assert_eq!(sink.finish().await.unwrap().delivered, 5);
    let run = |extra: &[&str]| {
        let out = Command::new(BIN)
            .args(["tail", "--nats", &server.url(), "--all", "--count", "5"])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let lines: Vec<Value> = run(&["--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, (0..5).map(ev).collect::<Vec<_>>());
    let table = run(&[]);
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 6, "{table}");
    assert!(
        rows[0].starts_with("HOST") && rows[0].contains("COMM"),
        "{table}"
    );
    for (i, r) in rows[1..].iter().enumerate() {
        assert!(
            r.contains("probe") && r.ends_with(&format!("/bin/probe tail-{i}")),
            "{r}"
        );
    }
}

// ---- start-up errors -------------------------------------------------------------------------

fn exec_nats(args: &[&str]) -> std::process::Output {
    let spool = tempfile::tempdir().unwrap();
    Command::new(BIN)
        .args(["exec", "--nats-spool-dir", spool.path().to_str().unwrap()])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_malformed_url_is_one_line() {
    for bad in ["http://127.0.0.1:4222", "nats://", "nats://h:4222/path"] {
        assert_one_line_error(&exec_nats(&["--nats", bad]), "is not a valid NATS URL");
    }
}

#[test]
fn refused_credentials_are_one_line() {
    let server = NatsServer::start(Some("right-token"));
    let out = exec_nats(&["--nats", &server.url(), "--nats-token", "wrong-token"]);
    assert_one_line_error(&out, "refused mapscope's credentials");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("wrong-token"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_right_token_publishes() {
    let server = NatsServer::start(Some("right-token"));
    let spool = tempfile::tempdir().unwrap();
    let mut cfg = config(&server.url(), spool.path());
    cfg.token = Some(Secret("right-token".into()));
    let sink = NatsSink::start_with(cfg, Messages::default().reporter())
        .await
        .unwrap();
    sink.send(event(0)).await.unwrap();
    assert_eq!(sink.finish().await.unwrap().delivered, 1);
    assert_eq!(count(&server.js().await).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_not_covering_our_subjects_is_one_line() {
    let server = NatsServer::start(None);
    server
        .js()
        .await
        .create_stream(Config {
            name: "MAPSCOPE".into(),
            subjects: vec!["other.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let out = exec_nats(&["--nats", &server.url()]);
    assert_one_line_error(&out, "do not cover");
}

// ---- real execs ------------------------------------------------------------------------------

/// `mapscope exec --nats` for `uid`'s execs, started and attached (its first stats line).
struct Publisher {
    child: tokio::process::Child,
    _spool: tempfile::TempDir,
}

impl Publisher {
    async fn start(uid: u32, url: &str) -> Self {
        use tokio::io::{AsyncBufReadExt as _, BufReader};
        let spool = tempfile::tempdir().unwrap();
        let mut child = tokio::process::Command::new(BIN)
            .args([
                "exec",
                "--uid",
                &uid.to_string(),
                "--json",
                "--interval",
                "0.2",
            ])
            .args([
                "--nats",
                url,
                "--nats-echo",
                "--nats-batch-ms",
                "50",
                "--nats-retry-max-ms",
                "300",
            ])
            .args(["--nats-spool-dir", spool.path().to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        loop {
            let l = tokio::time::timeout(Duration::from_secs(15), lines.next_line())
                .await
                .expect("no stats line: not attached")
                .unwrap()
                .expect("mapscope exec exited");
            if l.contains("\"stats\"") {
                break;
            }
        }
        // Keep draining stdout so the pipe never fills.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            child,
            _spool: spool,
        }
    }

    /// SIGTERM, then its stderr.
    async fn stop(self) -> String {
        // SAFETY: kill on our own child.
        unsafe { libc::kill(self.child.id().unwrap() as i32, libc::SIGTERM) };
        let out = self.child.wait_with_output().await.unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

fn seq_tag(v: &Value) -> String {
    v["args"][1].as_str().unwrap_or("?").to_string()
}

fn seqs(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("seq-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn execs_land_in_the_stream_once_each_in_order() {
    require_root();
    const UID: u32 = 61210;
    let probe = harness::compile_c("exec_probe");
    let server = NatsServer::start(None);
    let publisher = Publisher::start(UID, &server.url()).await;
    harness::exec_seq(UID, &probe, 0..25);
    let js = server.js().await;
    wait_for(&js, 25).await;
    let stderr = publisher.stop().await;
    assert!(
        stderr.contains("published 25 events to NATS; 0 spooled"),
        "{stderr}"
    );
    assert_exactly(&js, &seqs(0..25), seq_tag).await;
    for m in stored(&js).await {
        assert_eq!(
            (m.event["uid"].as_u64(), m.event["schema"].as_u64()),
            (Some(UID.into()), Some(1))
        );
        assert_eq!(m.event["comm"], "exec_probe");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn execs_survive_a_server_restart_exactly_once() {
    require_root();
    const UID: u32 = 61211;
    let probe = harness::compile_c("exec_probe");
    let mut server = NatsServer::start(None);
    let publisher = Publisher::start(UID, &server.url()).await;
    harness::exec_seq(UID, &probe, 0..10);
    wait_for(&server.js().await, 10).await;
    server.stop();
    // Down longer than a publish waits for its ack: these wait in memory and the spool.
    harness::exec_seq(UID, &probe, 10..20);
    sleep(mapscope::sinks::nats::ACK_TIMEOUT + Duration::from_secs(2)).await;
    server.resume();
    let js = server.js().await;
    wait_for(&js, 20).await;
    harness::exec_seq(UID, &probe, 20..25);
    wait_for(&js, 25).await;
    let stderr = publisher.stop().await;
    assert!(
        stderr.contains("published 25 events to NATS; 0 spooled"),
        "{stderr}"
    );
    assert!(stderr.contains("is back"), "{stderr}");
    assert_eq!(count(&js).await, 25);
    assert_exactly(&js, &seqs(0..25), seq_tag).await;
}
