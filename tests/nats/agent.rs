//! `mapscope agent` with `[sinks.nats]`: exec events, XDP rule changes, new talkers and periodic
//! snapshots land in JetStream on their family's subject (root, kernel programs, a real
//! nats-server).

use std::{
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt as _, BufReader, Lines},
    process::{Child, ChildStderr},
    time::sleep,
};

use super::{NatsServer, Stored, seq_tag, seqs, stored};
use crate::harness::{self, BIN, PinnedPair, TX_ADDR, require_root};

/// A running agent with a temp config, token and pin directory (removed however the test ends).
struct NatsAgent {
    child: Child,
    /// What the agent said up to "metrics at".
    said: Vec<String>,
    lines: Option<Lines<BufReader<ChildStderr>>>,
    dir: tempfile::TempDir,
    pin_dir: PathBuf,
}

impl NatsAgent {
    /// Starts `mapscope agent` with `[sinks.nats]` at `server` and `extra` TOML before it; `tag`
    /// keeps the pin directories of concurrent tests apart.
    async fn start(server: &NatsServer, tag: &str, extra: &str) -> Self {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        let pin_dir = PathBuf::from(format!(
            "/sys/fs/bpf/mapscope-test-nats-agent-{}-{tag}",
            std::process::id()
        ));
        let config = dir.path().join("agent.toml");
        std::fs::write(
            &config,
            format!(
                "pin_dir = {pin:?}\n{extra}\n[http]\nlisten = \"127.0.0.1:0\"\ntoken_file = {tok:?}\n\
                 [sinks.nats]\nurl = {url:?}\nspool_dir = {spool:?}\nbatch_ms = 50\nretry_max_ms = 300\n",
                pin = pin_dir.display().to_string(),
                tok = dir.path().join("token").display().to_string(),
                url = server.url(),
                spool = dir.path().join("spool").display().to_string(),
            ),
        )
        .unwrap();
        let mut child = tokio::process::Command::new(BIN)
            .args(["agent", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut agent = Self {
            child,
            said: Vec::new(),
            lines: None,
            dir,
            pin_dir,
        };
        loop {
            let l = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                .await
                .expect("the agent never said it was ready")
                .unwrap()
                .unwrap_or_else(|| panic!("the agent exited: {:?}", agent.said));
            let ready = l.contains("metrics at");
            agent.said.push(l);
            if ready {
                break;
            }
        }
        agent.lines = Some(lines);
        agent
    }

    /// `http://127.0.0.1:PORT` of the agent's API.
    fn base(&self) -> String {
        let metrics = self
            .said
            .last()
            .and_then(|l| l.split("metrics at ").nth(1))
            .and_then(|r| r.split(',').next())
            .unwrap();
        metrics.trim_end_matches("/metrics").to_string()
    }

    fn token(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// SIGTERM; asserts a clean exit and returns what the agent said after it was ready.
    async fn stop(mut self) -> String {
        // SAFETY: kill on our own child.
        unsafe { libc::kill(self.child.id().unwrap() as i32, libc::SIGTERM) };
        let mut rest = Vec::new();
        if let Some(mut lines) = self.lines.take() {
            while let Ok(Some(l)) = lines.next_line().await {
                rest.push(l);
            }
        }
        assert!(self.child.wait().await.unwrap().success());
        rest.join("\n")
    }
}

impl Drop for NatsAgent {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.pin_dir);
    }
}

/// Polls the stream until `enough` holds for its messages (30 s at most).
async fn wait_stored(
    js: &async_nats::jetstream::Context,
    what: &str,
    enough: impl Fn(&[Stored]) -> bool,
) -> Vec<Stored> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let msgs = stored(js).await;
        if enough(&msgs) {
            return msgs;
        }
        assert!(Instant::now() < deadline, "never stored {what}");
        sleep(Duration::from_millis(100)).await;
    }
}

/// `mapscope agent` with `[sinks.nats]` streams its exec events into JetStream, each once and in
/// order, and flushes on SIGTERM.
#[tokio::test(flavor = "multi_thread")]
async fn the_agent_streams_exec_events_into_jetstream() {
    const UID: u32 = 61212;
    let probe = harness::compile_c("exec_probe");
    let server = NatsServer::start(None);
    let agent = NatsAgent::start(
        &server,
        "exec",
        "[xdp]\nenabled = false\n[syscalls]\nenabled = false\n",
    )
    .await;
    harness::exec_seq(UID, &probe, 0..12);
    let js = server.js().await;
    let ours = |msgs: &[Stored]| -> Vec<String> {
        msgs.iter()
            .filter(|m| m.event["uid"].as_u64() == Some(UID.into()))
            .map(|m| seq_tag(&m.event))
            .collect()
    };
    wait_stored(&js, "12 execs", |m| ours(m).len() >= 12).await;
    // /metrics counts what the sink delivered, live (every exec of the host goes out, not only
    // ours, so at least ours).
    let metrics = reqwest::get(format!("{}/metrics", agent.base()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sample = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in {metrics}"))
    };
    assert!(sample("mapscope_sink_events_total{sink=\"nats\",outcome=\"delivered\"}") >= 12.0);
    assert_eq!(
        sample("mapscope_sink_events_total{sink=\"nats\",outcome=\"dropped\"}"),
        0.0
    );
    let stderr = agent.stop().await;
    assert!(stderr.contains("published"), "{stderr}");
    let msgs: Vec<Stored> = stored(&js)
        .await
        .into_iter()
        .filter(|m| m.event["uid"].as_u64() == Some(UID.into()))
        .collect();
    assert_eq!(ours(&msgs), seqs(0..12), "{stderr}");
    let mut ids: Vec<&str> = msgs.iter().map(|m| m.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 12, "message ids not distinct");
    assert!(msgs.iter().all(|m| m.event["type"] == "exec"));
}

/// The XDP side goes through the same sinks: a rule added and deleted through the API are two
/// `xdp_rule` events, a source new to the talkers table is one `xdp_talker` event, and every
/// family's snapshot arrives each `snapshot_every` with the driven packet counts, each on its
/// family's subject.
#[tokio::test(flavor = "multi_thread")]
async fn the_agent_streams_rule_changes_new_talkers_and_snapshots() {
    const N: u64 = 17;
    let pair = PinnedPair::new("natsx", "ms-natsx");
    let server = NatsServer::start(None);
    let agent = NatsAgent::start(
        &server,
        "xdp",
        &format!(
            "[exec]\nenabled = false\n[sinks]\nsnapshot_every = \"1s\"\n\
             [xdp]\ninterfaces = [\"{}\"]\nnetns = \"{}\"\n",
            pair.rx_iface, pair.rx
        ),
    )
    .await;
    // The first talker scan (once a second) learns the empty table before the packets come.
    sleep(Duration::from_millis(1500)).await;
    let frame = pair.send_udp(N as usize, 64) as u64;

    let client = reqwest::Client::new();
    let rules = format!("{}/api/v1/xdp/rules", agent.base());
    let body = serde_json::json!({"cidr": "10.213.77.0/24", "verdict": "block"});
    for req in [client.post(&rules), client.delete(&rules)] {
        let r = req
            .bearer_auth(agent.token())
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }

    let js = server.js().await;
    let of = |msgs: &[Stored], kind: &str| -> Vec<Value> {
        msgs.iter()
            .filter(|m| m.event["type"] == kind)
            .map(|m| m.event.clone())
            .collect()
    };
    let passed = |e: &Value| e["snapshot"]["interfaces"][0]["array"]["XDP_PASS"]["packets"].clone();
    let msgs = wait_stored(
        &js,
        "rules, the talker and a snapshot with the packets",
        |m| {
            of(m, "xdp_rule").len() >= 2
                && !of(m, "xdp_talker").is_empty()
                && of(m, "snapshot")
                    .iter()
                    .any(|e| e["family"] == "xdp" && passed(e) == N)
        },
    )
    .await;
    let stderr = agent.stop().await;

    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host = mapscope::sinks::nats::subject::token(host.trim());
    for m in &msgs {
        let family = m.event["family"]
            .as_str()
            .unwrap_or_else(|| panic!("{m:?}"));
        assert_eq!(m.subject, format!("mapscope.{host}.{family}"));
    }
    let rule_events = of(&msgs, "xdp_rule");
    assert_eq!(rule_events.len(), 2, "{rule_events:?}");
    for (e, op) in rule_events.iter().zip(["add", "del"]) {
        assert_eq!(e["op"], op);
        assert_eq!(e["cidr"], "10.213.77.0/24");
        assert_eq!(e["verdict"], "block");
        assert_eq!(e["dir"], "src");
        assert_eq!(e["interfaces"], serde_json::json!([pair.rx_iface]));
    }
    let talkers = of(&msgs, "xdp_talker");
    assert_eq!(talkers.len(), 1, "one new source: {talkers:?}");
    assert_eq!(talkers[0]["addr"], TX_ADDR.to_string());
    assert_eq!(talkers[0]["iface"], pair.rx_iface.as_str());
    let p = talkers[0]["packets"].as_u64().unwrap();
    assert!((1..=N).contains(&p), "{}", talkers[0]);
    assert_eq!(talkers[0]["bytes"], p * frame);

    // Snapshots of every enabled family (exec is off), each the body its API endpoint serves.
    let snaps = of(&msgs, "snapshot");
    for family in ["xdp", "syscalls"] {
        assert!(
            snaps.iter().any(|e| e["family"] == family),
            "no {family} snapshot: {snaps:?}"
        );
    }
    assert!(snaps.iter().all(|e| e["family"] != "exec"), "exec is off");
    let last_xdp = snaps.iter().rev().find(|e| e["family"] == "xdp").unwrap();
    let iface = &last_xdp["snapshot"]["interfaces"][0];
    assert_eq!(iface["array"]["XDP_PASS"]["bytes"], N * frame);
    assert_eq!(iface["percpu"]["XDP_PASS"]["packets"], N);
    assert!(
        snaps
            .iter()
            .any(|e| e["family"] == "syscalls" && e["snapshot"]["syscalls"].is_array()),
        "{snaps:?}"
    );
    assert!(stderr.contains("published"), "{stderr}");
}
