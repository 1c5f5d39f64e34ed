//! The event sink against a real HTTP server on 127.0.0.1 (tests/harness/web.rs): status codes,
//! redirects, 413 splitting, the spool's disk limits on a real full filesystem (tmpfs), a frozen
//! disk (fsfreeze on a loop-mounted ext4), and a real crash (kill -9 of `mapscope exec --post`
//! while execs are driven, then a restart).
//!
//! Most tests drive the sink through its library API with synthetic events, so they need
//! neither root nor the kernel; the filesystem tests need root (mount), the crash test loads
//! the exec programs (run it under the kernel lock).

mod harness;

use std::{
    path::Path,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use harness::{BIN, require_root, sink::Messages, web::TestServer};
use mapscope::sinks::http::{HttpSink, HttpSinkConfig, SinkStats};
use serde_json::{Value, json};
use tokio::time::{sleep, timeout};

fn config(url: &str, spool: &Path) -> HttpSinkConfig {
    HttpSinkConfig {
        url: url.to_string(),
        batch_max: 10,
        batch_wait: Duration::from_millis(50),
        queue: 1000,
        spool_dir: spool.to_path_buf(),
        spool_max_bytes: 64 << 20,
        retry_max: Duration::from_millis(200),
    }
}

/// An event tagged `ev-I`, padded to about `pad` bytes.
fn event(i: usize, pad: usize) -> Value {
    json!({"type": "exec", "tag": format!("ev-{i}"), "pad": "x".repeat(pad)})
}

async fn start(cfg: HttpSinkConfig) -> (HttpSink, Messages) {
    let m = Messages::default();
    let sink = HttpSink::start_with(cfg, m.reporter()).await.unwrap();
    (sink, m)
}

/// Polls `f` every 20 ms for up to 20 s.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if f() {
            return;
        }
        sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

fn tags(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["tag"].as_str().unwrap_or("?").to_string())
        .collect()
}

fn want(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("ev-{i}")).collect()
}

/// Bytes of the regular files in `dir` and its subdirectories whose name passes `keep`.
fn bytes_in(dir: &Path, keep: &dyn Fn(&str) -> bool) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.map(|e| e.unwrap())
        .map(|e| {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                bytes_in(&e.path(), keep)
            } else if keep(&e.file_name().to_string_lossy()) {
                m.len()
            } else {
                0
            }
        })
        .sum()
}

fn accounted(s: &SinkStats) -> u64 {
    s.delivered + s.spooled + s.dropped + s.rejected
}

// ---- status codes --------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn auth_failures_and_not_found_are_retried_not_rejected() {
    for status in [401, 403, 404] {
        let server = TestServer::start().await;
        server.answer(status);
        let spool = tempfile::tempdir().unwrap();
        let (sink, m) = start(config(&server.url(), spool.path())).await;
        for i in 0..3 {
            sink.send(event(i, 10)).await.unwrap();
        }
        // Several attempts, all refused: the batch must still be waiting, not set aside.
        eventually("retries", || server.posts() >= 4).await;
        assert!(server.events().is_empty());
        server.answer_normally();
        eventually("delivery", || server.events().len() == 3).await;
        assert_eq!(tags(&server.events()), want(0..3));
        let stats = sink.finish().await.unwrap();
        assert_eq!(
            (stats.delivered, stats.rejected),
            (3, 0),
            "{status}: {stats:?}"
        );
        assert_eq!(
            m.count(&format!("HTTP {status}")),
            1,
            "{status} must be reported once, not per retry: {:?}",
            m.all()
        );
        assert_eq!(m.count("is back"), 1, "{:?}", m.all());
        assert!(
            !spool.path().join("rejected").exists(),
            "{status}: batch set aside"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_are_not_followed_and_the_batch_is_kept() {
    for status in [301, 302, 303, 307, 308] {
        let server = TestServer::start().await;
        server.redirect(status, "/moved");
        let spool = tempfile::tempdir().unwrap();
        let (sink, m) = start(config(&server.url(), spool.path())).await;
        sink.send(event(0, 10)).await.unwrap();
        sink.send(event(1, 10)).await.unwrap();
        eventually("retries", || server.posts() >= 3).await;
        // A client following the redirect would have sent a GET (301-303) or a second POST
        // to /moved (307, 308), and counted the batch delivered.
        assert_eq!(server.gets(), 0, "{status}: redirect followed with a GET");
        assert!(server.events().is_empty(), "{status}: redirect followed");
        let told: Vec<String> = m
            .all()
            .into_iter()
            .filter(|l| l.contains("redirecting to /moved"))
            .collect();
        assert_eq!(told.len(), 1, "{status}: {:?}", m.all());
        assert!(told[0].contains(&format!("HTTP {status}")), "{told:?}");
        server.answer_normally();
        eventually("delivery", || server.events().len() == 2).await;
        let stats = sink.finish().await.unwrap();
        assert_eq!(stats.delivered, 2, "{status}: {stats:?}");
        assert_eq!(tags(&server.events()), want(0..2));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn too_large_batches_are_split_and_a_lone_oversized_event_is_rejected() {
    let server = TestServer::start().await;
    server.max_body(3000);
    let spool = tempfile::tempdir().unwrap();
    let cfg = HttpSinkConfig {
        batch_max: 16,
        batch_wait: Duration::from_millis(300),
        ..config(&server.url(), spool.path())
    };
    let (sink, m) = start(cfg).await;
    // 16 events of ~400 bytes: 6.5 KB, split twice before each part fits.
    for i in 0..16 {
        sink.send(event(i, 370)).await.unwrap();
    }
    // Then one event larger than the service takes at all, among small ones.
    sink.send(json!({"type": "exec", "tag": "giant", "pad": "y".repeat(5000)}))
        .await
        .unwrap();
    for i in 16..19 {
        sink.send(event(i, 370)).await.unwrap();
    }
    eventually("delivery", || server.events().len() == 19).await;
    let stats = sink.finish().await.unwrap();
    assert_eq!(
        tags(&server.events()),
        want(0..19),
        "order kept across splits"
    );
    assert_eq!((stats.delivered, stats.rejected), (19, 1), "{stats:?}");
    assert!(!server.too_large().is_empty());
    let seqs: Vec<u64> = server
        .bodies()
        .iter()
        .map(|b| b["seq"].as_u64().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "halves need distinct, growing seqs: {seqs:?}"
    );
    for b in server.bodies() {
        assert!(
            b.to_string().len() <= 3000,
            "an oversized body was accepted"
        );
    }
    let rejected: Vec<_> = std::fs::read_dir(spool.path().join("rejected"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(rejected.len(), 1);
    assert!(rejected[0].contains("giant"), "{}", rejected[0]);
    assert_eq!(m.count("in halves"), 1, "{:?}", m.all());
    assert_eq!(m.count("single event larger"), 1, "{:?}", m.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn seq_stays_above_the_saved_high_water_mark_when_the_clock_went_back() {
    let server = TestServer::start().await;
    let spool = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    // What a previous run leaves when its clock was an hour ahead of ours.
    let mark = now + 3_600_000_000;
    std::fs::write(spool.path().join(".seq"), format!("{mark:020}\n")).unwrap();
    for run in 0..2 {
        let (sink, _m) = start(config(&server.url(), spool.path())).await;
        sink.send(event(run, 10)).await.unwrap();
        sink.finish().await.unwrap();
    }
    let seqs: Vec<u64> = server
        .bodies()
        .iter()
        .map(|b| b["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.len(), 2);
    assert!(
        seqs[0] >= mark,
        "seq {} reuses the range below {mark}",
        seqs[0]
    );
    assert!(seqs[1] > seqs[0], "{seqs:?}");
    let saved: u64 = std::fs::read_to_string(spool.path().join(".seq"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        saved > seqs[1],
        "high-water mark {saved} not above {seqs:?}"
    );
}

// ---- the spool's limits ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn rejected_batches_and_bad_files_stay_within_the_spool_limit() {
    let server = TestServer::start().await;
    server.reject_containing("refuse-me");
    let spool = tempfile::tempdir().unwrap();
    // Two batches of an earlier run that a power loss cut short (1500 bytes each): unreadable.
    for seq in [1, 2] {
        let mut body = br#"{"schema":1,"events":[{"tag":"cut"#.to_vec();
        body.resize(1500, b'z');
        std::fs::write(spool.path().join(format!("{seq:020}-1.json")), body).unwrap();
    }
    const LIMIT: u64 = 8000;
    let cfg = HttpSinkConfig {
        batch_max: 1,
        spool_max_bytes: LIMIT,
        ..config(&server.url(), spool.path())
    };
    let (sink, m) = start(cfg).await;
    // 20 refused batches of ~600 bytes: 12 KB if all were kept.
    for i in 0..20 {
        sink.send(json!({"tag": format!("refuse-me-{i}"), "pad": "r".repeat(500)}))
            .await
            .unwrap();
    }
    sink.send(event(0, 10)).await.unwrap();
    eventually("delivery", || server.events().len() == 1).await;
    let stats = sink.finish().await.unwrap();
    assert_eq!(
        (stats.delivered, stats.rejected, stats.dropped),
        (1, 20, 2),
        "{stats:?}"
    );
    let aside = bytes_in(spool.path(), &|n| n.ends_with(".bad"))
        + bytes_in(&spool.path().join("rejected"), &|_| true);
    assert!(
        aside <= LIMIT / 4,
        "rejected/ and *.bad hold {aside} bytes, over a quarter of {LIMIT}"
    );
    let all = bytes_in(spool.path(), &|n| !n.starts_with('.'));
    assert!(
        all <= LIMIT,
        "spool holds {all} bytes, over its limit {LIMIT}"
    );
    assert!(m.count("not kept") > 0, "{:?}", m.all());
    assert_eq!(m.count("set aside as"), 1, "{:?}", m.all());
    assert_eq!(m.count("removed ("), 1, "{:?}", m.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_batch_is_never_also_counted_delivered() {
    let server = TestServer::start().await;
    server.set_delay(Duration::from_millis(300));
    let spool = tempfile::tempdir().unwrap();
    // Nothing fits in the spool and only one event may wait in memory, while the service is
    // slow: batches are dropped while an earlier one is in flight.
    let cfg = HttpSinkConfig {
        batch_max: 1,
        queue: 1,
        spool_max_bytes: 1,
        ..config(&server.url(), spool.path())
    };
    let (sink, m) = start(cfg).await;
    const N: u64 = 6;
    for i in 0..N as usize {
        sink.send(event(i, 10)).await.unwrap();
        sleep(Duration::from_millis(20)).await;
    }
    let stats = sink.finish().await.unwrap();
    assert!(
        stats.dropped > 0,
        "nothing was dropped: {stats:?} {:?}",
        m.all()
    );
    assert_eq!(accounted(&stats), N, "every event counted once: {stats:?}");
    assert_eq!(stats.delivered, server.events().len() as u64, "{stats:?}");
    assert_eq!(stats.dropped_disk_error, 0, "{stats:?}");
    assert!(m.count("--spool-max-bytes") > 0, "{:?}", m.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_spool_does_not_stop_a_healthy_stream() {
    let server = TestServer::start().await;
    let spool = tempfile::tempdir().unwrap();
    // Not even one batch fits: every batch waits for its delivery in memory instead.
    let cfg = HttpSinkConfig {
        batch_max: 5,
        spool_max_bytes: 1,
        ..config(&server.url(), spool.path())
    };
    let (sink, m) = start(cfg).await;
    for i in 0..50 {
        sink.send(event(i, 10)).await.unwrap();
    }
    eventually("delivery", || server.events().len() == 50).await;
    let stats = sink.finish().await.unwrap();
    assert_eq!((stats.delivered, stats.dropped), (50, 0), "{stats:?}");
    assert_eq!(tags(&server.events()), want(0..50));
    // Reported once, with what to change, not once per batch.
    assert_eq!(m.count("--spool-max-bytes"), 1, "{:?}", m.all());
}

/// A small filesystem mounted by the test, unmounted on drop.
struct Mount {
    dir: tempfile::TempDir,
    /// Backing image and loop device, for ext4.
    image: Option<tempfile::TempDir>,
}

impl Mount {
    fn tmpfs(size: &str) -> Self {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        harness::run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                dir.path().to_str().unwrap(),
            ],
        );
        Self { dir, image: None }
    }

    fn ext4(megabytes: u32) -> Self {
        require_root();
        let image = tempfile::tempdir().unwrap();
        let file = image.path().join("fs.img");
        harness::run(
            "truncate",
            &["-s", &format!("{megabytes}M"), file.to_str().unwrap()],
        );
        harness::run("mkfs.ext4", &["-q", "-F", file.to_str().unwrap()]);
        let dir = tempfile::tempdir().unwrap();
        harness::run(
            "mount",
            &[
                "-o",
                "loop",
                file.to_str().unwrap(),
                dir.path().to_str().unwrap(),
            ],
        );
        Self {
            dir,
            image: Some(image),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.image.is_some() {
            let _ = Command::new("fsfreeze")
                .args(["-u"])
                .arg(self.path())
                .output();
        }
        let _ = Command::new("umount").arg(self.path()).output();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn spool_on_a_full_filesystem_reports_enospc_and_leaves_no_temporary_files() {
    let fs = Mount::tmpfs("24k");
    let spool = fs.path().join("spool");
    let down = TestServer::stopped_at(TestServer::unused_addr().await);
    let cfg = HttpSinkConfig {
        batch_max: 1,
        queue: 4,
        ..config(&down.url(), &spool)
    };
    let (sink, m) = start(cfg).await;
    const N: u64 = 30;
    for i in 0..N as usize {
        sink.send(event(i, 1000)).await.unwrap();
    }
    let stats = sink.finish().await.unwrap();
    assert!(stats.dropped > 0, "the filesystem never filled: {stats:?}");
    assert_eq!(
        stats.dropped_disk_error, stats.dropped,
        "every drop came from the disk, none from the spool limit: {stats:?}"
    );
    assert_eq!(accounted(&stats), N, "{stats:?}");
    assert!(stats.spooled > 0, "{stats:?}");
    assert!(
        m.count("No space left on device (os error 28) (ENOSPC)") > 0,
        "{:?}",
        m.all()
    );
    assert_eq!(m.count("--spool-max-bytes"), 0, "{:?}", m.all());
    for e in std::fs::read_dir(&spool).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(!name.ends_with(".tmp"), "{name} left behind");
        if name.ends_with(".json") {
            assert!(e.metadata().unwrap().len() > 0, "empty batch file {name}");
        }
    }
}

// ---- a slow disk -----------------------------------------------------------------------------

/// One tokio thread runs both the sink and this test: if any spool I/O ran on it, freezing the
/// spool's filesystem would stop the test too, until the watchdog thaws it.
#[tokio::test(flavor = "current_thread")]
async fn a_frozen_spool_disk_does_not_stall_the_event_readers() {
    let fs = Mount::ext4(16);
    let spool = fs.path().join("spool");
    let down = TestServer::stopped_at(TestServer::unused_addr().await);
    let cfg = HttpSinkConfig {
        batch_max: 1,
        ..config(&down.url(), &spool)
    };
    let (sink, _m) = start(cfg).await;
    harness::run("fsfreeze", &["-f", fs.path().to_str().unwrap()]);
    let done = Arc::new(AtomicBool::new(false));
    let thawed_by_watchdog = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let (done, thawed) = (Arc::clone(&done), Arc::clone(&thawed_by_watchdog));
        let mnt = fs.path().to_path_buf();
        std::thread::spawn(move || {
            for _ in 0..300 {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            thawed.store(!done.load(Ordering::SeqCst), Ordering::SeqCst);
            harness::run("fsfreeze", &["-u", mnt.to_str().unwrap()]);
        })
    };
    // The service is down, so every batch heads for the frozen disk; long enough for the sink
    // to have retried and written several times.
    const N: u64 = 40;
    for i in 0..N as usize {
        sink.send(event(i, 10)).await.unwrap();
        sleep(Duration::from_millis(25)).await;
    }
    done.store(true, Ordering::SeqCst);
    watchdog.join().unwrap();
    assert!(
        !thawed_by_watchdog.load(Ordering::SeqCst),
        "the runtime stalled while the spool's disk was frozen"
    );
    let stats = sink.finish().await.unwrap();
    assert_eq!((stats.spooled, stats.dropped), (N, 0), "{stats:?}");
}

// ---- a real crash ----------------------------------------------------------------------------

/// `mapscope exec` posting uid's events, echoing them as JSON lines.
fn posting(uid: u32, url: &str, spool: &Path, batch: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(BIN)
        .args([
            "exec",
            "--uid",
            &uid.to_string(),
            "--json",
            "--echo",
            "--interval",
            "0.2",
        ])
        .args(["--post", url, "--retry-max-ms", "200"])
        .args(["--spool-dir", spool.to_str().unwrap()])
        .args(batch)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// What a crash left: events printed by the killed run, distinct events the service got
/// (before the kill, and in all after a restart), and the restart's count of lost events.
struct Crash {
    seen: Vec<String>,
    before: usize,
    got: Vec<String>,
    lost: usize,
    stderr: String,
}

/// Runs `mapscope exec --post` with `batch` flags against a slow service, kill -9s it while
/// execs are driven (once 25 events are printed), restarts it on the same spool against a fast
/// service, and stops it once nothing more arrives.
async fn crash_and_restart(uid: u32, batch: &[&str]) -> Crash {
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
    require_root();
    let probe = harness::compile_c("exec_probe");
    let server = TestServer::start().await;
    // A slow service: batches pile up behind the one in flight, as they do in production.
    server.set_delay(Duration::from_millis(250));
    let spool = tempfile::tempdir().unwrap();

    let mut child = posting(uid, &server.url(), spool.path(), batch);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let exec_tag = |l: &str| {
        let v: Value = serde_json::from_str(l).unwrap();
        (v["type"] == "exec").then(|| v["args"][1].as_str().unwrap().to_string())
    };
    // Attached once the first stats line is out.
    loop {
        let l = timeout(Duration::from_secs(15), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if l.contains("\"stats\"") {
            break;
        }
    }
    const N: usize = 60;
    let driver = std::thread::spawn(move || harness::exec_seq(uid, &probe, 0..N));
    let mut seen = Vec::new();
    while seen.len() < 25 {
        let l = timeout(Duration::from_secs(15), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.extend(exec_tag(&l));
    }
    child.start_kill().unwrap();
    while let Ok(Some(l)) = lines.next_line().await {
        seen.extend(exec_tag(&l));
    }
    child.wait().await.unwrap();
    driver.join().unwrap();
    let before = server.events().len();

    server.set_delay(Duration::ZERO);
    let mut child = posting(uid, &server.url(), spool.path(), batch);
    let mut stderr = child.stderr.take().unwrap();
    // Whatever the restart is going to deliver, it delivers within moments of its start.
    let mut last = usize::MAX;
    loop {
        sleep(Duration::from_millis(1500)).await;
        let now = server.events().len();
        if now == last {
            break;
        }
        last = now;
    }
    // SAFETY: kill on our own child.
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) };
    child.wait().await.unwrap();
    let mut err = String::new();
    stderr.read_to_string(&mut err).await.unwrap();
    let lost = err
        .lines()
        .find(|l| l.contains("was killed or crashed with"))
        .map_or(0, |l| {
            l.split("crashed with ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        });
    // Distinct events, in first-arrival order (a batch in flight at the kill may come twice).
    let mut got: Vec<String> = Vec::new();
    for e in server.events() {
        let t = e["args"][1].as_str().unwrap().to_string();
        if !got.contains(&t) {
            got.push(t);
        }
    }
    eprintln!(
        "seen {}, received before the kill {before}, received in all {}, counted lost {lost}",
        seen.len(),
        got.len()
    );
    Crash {
        seen,
        before,
        got,
        lost,
        stderr: err,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_loses_nothing_it_does_not_count_and_a_restart_delivers_the_rest() {
    let c = crash_and_restart(61120, &["--batch-max", "2", "--batch-ms", "100"]).await;
    assert!(
        c.before < c.seen.len(),
        "the kill came after everything was delivered"
    );
    assert_eq!(
        c.got,
        c.seen[..c.got.len()],
        "received events are not a prefix of those seen"
    );
    // What is neither received nor counted can only be the one event mapscope had printed but
    // not yet handed to the sink when it died.
    let missing = c.seen.len() - c.got.len();
    assert!(
        missing == c.lost || missing == c.lost + 1,
        "{} events seen, {} received, {} counted lost: {}",
        c.seen.len(),
        c.got.len(),
        c.lost,
        c.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_counts_the_events_of_the_open_batch() {
    // Batches never close on their own: every event taken sits in the open batch at the kill.
    let c = crash_and_restart(61121, &["--batch-max", "1000", "--batch-ms", "600000"]).await;
    assert!(c.got.is_empty(), "{:?}", c.got);
    assert!(
        c.lost == c.seen.len() || c.lost + 1 == c.seen.len(),
        "{} events seen, {} counted lost: {}",
        c.seen.len(),
        c.lost,
        c.stderr
    );
}
