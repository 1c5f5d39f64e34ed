//! Running `mapscope map …` and `bpftool -j …` from the map tests, with timeouts so a walk that
//! never ends fails the test instead of hanging it.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Read as _},
    process::{Child, Command, Output, Stdio},
    sync::mpsc::{Receiver, channel},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::harness::BIN;

/// Longest a single command may run before the test calls it stuck.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `mapscope ARGS`.
pub fn ms(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("running mapscope")
}

/// Runs `mapscope ARGS`, which must succeed, and returns its stdout.
pub fn ms_ok(args: &[&str]) -> String {
    let out = ms(args);
    assert!(
        out.status.success(),
        "mapscope {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Runs `mapscope ARGS` and parses its stdout as one JSON document.
pub fn json(args: &[&str]) -> Value {
    let text = ms_ok(args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("mapscope {args:?}: {e}: {text}"))
}

/// Runs `bpftool -j ARGS` and parses its output.
pub fn bpftool(args: &[&str]) -> Value {
    let out = Command::new("bpftool")
        .arg("-j")
        .args(args)
        .output()
        .expect("running bpftool (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "bpftool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("bpftool JSON")
}

/// Runs `mapscope ARGS` to completion within [`TIMEOUT`] and checks it succeeded.
pub fn ms_with_timeout(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning mapscope");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        stdout.read_to_end(&mut buf).map(|_| buf)
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mapscope {args:?} did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = Vec::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    let out = Output {
        status,
        stdout: reader.join().unwrap().unwrap(),
        stderr,
    };
    assert!(
        out.status.success(),
        "mapscope {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn lines(stream: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// A long-running `mapscope` (e.g. `map watch`) whose output lines the test reads; stopped with
/// SIGINT (and killed if need be) on drop.
pub struct Spawned {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
}

impl Spawned {
    pub fn new(args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning mapscope");
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        Self {
            child,
            stdout,
            stderr,
        }
    }

    /// The next stderr line (e.g. the banner printed after the first read).
    pub fn stderr_line(&mut self) -> String {
        self.stderr
            .recv_timeout(TIMEOUT)
            .expect("mapscope printed nothing on stderr")
    }

    fn stdout_json(&mut self) -> Value {
        let line = self.stdout.recv_timeout(TIMEOUT).unwrap_or_else(|_| {
            let err: Vec<String> = self.stderr.try_iter().collect();
            panic!("no report from mapscope; stderr: {err:?}")
        });
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    /// Reads `map watch --json` reports until `done(totals)` holds for the latest total of
    /// each key seen, checking each report is sorted by delta; returns each key's summed delta.
    pub fn sum_deltas(&mut self, done: impl Fn(&BTreeMap<u64, i64>) -> bool) -> BTreeMap<u64, i64> {
        let (mut sums, mut totals) = (BTreeMap::new(), BTreeMap::new());
        for _ in 0..200 {
            let report = self.stdout_json();
            assert_eq!(report["schema"], 1);
            let mut last = i64::MAX;
            for c in report["top"].as_array().unwrap() {
                let key = c["formatted_key"].as_u64().expect("integer key");
                let delta = c["delta"][0].as_i64().unwrap();
                assert!(delta <= last, "not sorted by delta: {report}");
                last = delta;
                let rate = c["rate"][0].as_f64().unwrap();
                let period = report["period_s"].as_f64().unwrap();
                assert!((rate - delta as f64 / period).abs() < 1e-6 * delta.abs().max(1) as f64);
                *sums.entry(key).or_insert(0) += delta;
                totals.insert(key, c["total"][0].as_i64().unwrap());
            }
            if done(&totals) {
                return sums;
            }
        }
        panic!("totals never reached the expected values: {totals:?}");
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
