//! The agent's dashboard against the running kernel: the SSE streams deliver exactly the execs
//! and packets a test drives, a stalled client is told what it missed (and the miss is counted on
//! /metrics) while another client still gets everything, and the page itself, loaded in headless
//! Chromium, shows the driven numbers without a single request leaving 127.0.0.1.

mod harness;

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    os::fd::FromRawFd as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use harness::{BIN, NetnsPair, PinnedPair, require_root, web::TestServer};
use serde_json::Value;

/// One agent at a time: each test drives host-wide execs and counts them.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A `mapscope agent` child with its own config, pin directory and token; stopped (SIGTERM)
/// and its pins removed on drop, even when the test panics.
struct Agent {
    child: Child,
    addr: SocketAddr,
    config: PathBuf,
    pin_dir: PathBuf,
    pub token: String,
    _dir: tempfile::TempDir,
}

impl Agent {
    /// Starts the agent with XDP on the pair's receiving veth and the given extra TOML.
    fn start(pair: &NetnsPair, tag: &str, extra: &str) -> Self {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        let pin_dir = PathBuf::from(format!(
            "/sys/fs/bpf/mapscope-test-dash-{}-{tag}",
            std::process::id()
        ));
        let config = dir.path().join("agent.toml");
        let token_file = dir.path().join("agent.token");
        std::fs::write(
            &config,
            format!(
                "pin_dir = {pin:?}\n{extra}\n[http]\nlisten = \"127.0.0.1:0\"\ntoken_file = {tok:?}\n\
                 [xdp]\ninterfaces = [\"{rx}\"]\nnetns = \"{ns}\"\n",
                rx = pair.rx_iface,
                pin = pin_dir.display().to_string(),
                tok = token_file.display().to_string(),
                ns = pair.rx,
            ),
        )
        .unwrap();
        let mut child = Command::new(BIN)
            .args(["agent", "--config"])
            .arg(&config)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning mapscope agent");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("agent: {line}");
                let _ = tx.send(line);
            }
        });
        let mut agent = Self {
            child,
            addr: ([127, 0, 0, 1], 0).into(),
            config,
            pin_dir,
            token: String::new(),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut saw_dashboard = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .expect("the agent never said where it listens");
            if line.contains("dashboard at http://") {
                saw_dashboard = true;
            }
            if let Some(rest) = line.split("metrics at http://").nth(1) {
                agent.addr = rest.split('/').next().unwrap().parse().unwrap();
            }
            if saw_dashboard && agent.addr.port() != 0 {
                break;
            }
        }
        agent.token = std::fs::read_to_string(token_file_of(&agent.config))
            .unwrap()
            .trim()
            .to_string();
        agent
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `/metrics` value of an unlabelled sample.
    async fn metric(&self, name: &str) -> u64 {
        self.labelled(name).await
    }

    /// `/metrics` value of the sample written exactly `series` (name and labels).
    async fn labelled(&self, series: &str) -> u64 {
        let text = reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{series} ")))
            .unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
            .trim()
            .parse()
            .unwrap()
    }
}

impl Agent {
    /// SIGTERM; asserts a clean exit within 15 s (open streams must not hold the shutdown).
    fn stop(mut self) {
        // SAFETY: kill on a child we own.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "agent exit {status}");
    }
}

fn token_file_of(config: &Path) -> PathBuf {
    config.with_file_name("agent.token")
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SAFETY: kill on a child we own.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        let _ = Command::new(BIN)
            .args(["agent", "--reset", "--config"])
            .arg(&self.config)
            .output();
        let _ = std::fs::remove_dir_all(&self.pin_dir);
    }
}

/// A minimal SSE client over a streaming reqwest response.
struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    async fn connect(url: &str) -> Self {
        let resp = reqwest::get(url).await.unwrap();
        assert_eq!(resp.status(), 200, "{url}");
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        Self {
            resp,
            buf: String::new(),
        }
    }

    /// The next `(event, data)`, skipping keep-alive comments.
    async fn next(&mut self) -> (String, String) {
        loop {
            if let Some(ev) = take_event(&mut self.buf) {
                return ev;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.resp.chunk())
                .await
                .expect("no SSE data for 30 s")
                .unwrap()
                .expect("stream ended");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

/// Cuts the first complete event (`event:`/`data:` lines, blank line) off `buf`.
fn take_event(buf: &mut String) -> Option<(String, String)> {
    loop {
        let end = buf.find("\n\n")?;
        let frame: String = buf.drain(..end + 2).collect();
        let (mut event, mut data) = (String::from("message"), String::new());
        for line in frame.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
        if !data.is_empty() {
            return Some((event, data));
        }
    }
}

/// Runs `/bin/true <marker>-<i> [pad…]` for i in 0..n, one after the other; `pads` arguments
/// of 500 bytes make each event large (about 4 KiB of JSON at 7), so socket buffers hold few.
fn drive_execs(marker: &str, n: usize, pads: usize) {
    let padding = "p".repeat(500);
    for i in 0..n {
        let mut cmd = Command::new("/bin/true");
        cmd.arg(format!("{marker}-{i}"));
        cmd.args(std::iter::repeat_n(&padding, pads));
        let st = cmd.status().unwrap();
        assert!(st.success());
    }
}

/// The index of a driven exec in an `exec` event, if it is one of ours.
fn driven_index(ev: &Value, marker: &str) -> Option<usize> {
    ev["args"][1]
        .as_str()?
        .strip_prefix(marker)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

/// Reads `exec` events until `n` of ours have arrived; returns their indices in arrival order
/// and every `lagged` count seen.
async fn collect_driven(sse: &mut Sse, marker: &str, n: usize) -> (Vec<usize>, Vec<u64>) {
    let (mut got, mut lagged) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(120);
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} driven execs arrived (last {:?}), lagged {lagged:?}",
            got.len(),
            got.last()
        );
        let (event, data) = sse.next().await;
        if std::env::var_os("DASH_DEBUG").is_some() {
            eprintln!("{} {event} {}", got.len(), &data[..data.len().min(120)]);
        }
        let v: Value = serde_json::from_str(&data).unwrap();
        match event.as_str() {
            "exec" => {
                if let Some(i) = driven_index(&v, marker) {
                    assert_eq!(v["type"], "exec");
                    assert_eq!(v["comm"], "true", "{v}");
                    assert_eq!(v["ret"], 0, "{v}");
                    assert_eq!(v["uid"], 0, "{v}");
                    assert_eq!(v["ppid"], std::process::id(), "{v}");
                    got.push(i);
                }
            }
            "lagged" => lagged.push(v["missed"].as_u64().unwrap()),
            other => panic!("unexpected event {other}: {data}"),
        }
    }
    (got, lagged)
}

fn marker(tag: &str) -> String {
    format!("msdash{}{tag}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_stream_delivers_exactly_the_driven_execs_in_order() {
    let _s = SERIAL.lock().await;
    let pair = PinnedPair::new("dexec", "ms-dexec");
    let agent = Agent::start(&pair, "exec", "[malloc]\nenabled = false\n");
    let mut sse = Sse::connect(&agent.url("/api/v1/stream/exec")).await;
    const N: usize = 50;
    let m = marker("order");
    let mm = m.clone();
    tokio::task::spawn_blocking(move || drive_execs(&mm, N, 0))
        .await
        .unwrap();
    let (got, lagged) = collect_driven(&mut sse, &m, N).await;
    assert_eq!(got, (0..N).collect::<Vec<_>>());
    assert!(lagged.is_empty(), "a reading client lagged: {lagged:?}");
    // Nothing beyond the N: the next driven exec is the one that follows.
    let mm = m.clone();
    tokio::task::spawn_blocking(move || {
        Command::new("/bin/true")
            .arg(format!("{mm}-{N}"))
            .status()
            .unwrap()
    })
    .await
    .unwrap();
    let (more, _) = collect_driven(&mut sse, &m, 1).await;
    assert_eq!(more, [N]);
    assert_eq!(
        agent.metric("mapscope_dashboard_lagged_events_total").await,
        0
    );
    // A client still connected does not keep the agent from stopping; its stream just ends.
    agent.stop();
    let end = tokio::time::timeout(Duration::from_secs(10), sse.resp.chunk()).await;
    assert!(
        matches!(end, Ok(Ok(None)) | Ok(Err(_))),
        "stream still open after the agent stopped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_stream_sends_every_family_with_the_driven_packets() {
    let _s = SERIAL.lock().await;
    let pair = PinnedPair::new("dstat", "ms-dstat");
    let agent = Agent::start(&pair, "stats", "");
    let mut sse = Sse::connect(&agent.url("/api/v1/stream/stats")).await;
    const N: u64 = 23;
    let frame = pair.send_udp(N as usize, 100) as u64;
    let mut prev_time = 0.0;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "stats never showed {N} packets");
        let (event, data) = sse.next().await;
        assert_eq!(event, "stats");
        let v: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(v["schema"], 1);
        let t = v["time"].as_f64().unwrap();
        assert!(t > prev_time, "snapshots go forward in time");
        prev_time = t;
        assert!(v["uptime_s"].as_f64().unwrap() > 0.0);
        assert!(v["exec"]["uids"].is_object(), "{v}");
        assert!(v["syscalls"]["syscalls"].is_array(), "{v}");
        assert!(v["malloc"].is_null(), "malloc is off by default: {v}");
        let iface = &v["xdp"]["interfaces"][0];
        assert_eq!(iface["iface"], pair.rx_iface.as_str());
        let pass = &iface["array"]["XDP_PASS"];
        if pass["packets"] == N {
            assert_eq!(pass["bytes"], N * frame);
            assert_eq!(iface["percpu"]["XDP_PASS"]["packets"], N);
            assert_eq!(iface["array"]["XDP_DROP"]["packets"], 0);
            break;
        }
        assert!(pass["packets"].as_u64().unwrap() < N, "{iface}");
    }
    // The same body the API serves, family by family.
    let api: Value = serde_json::from_str(
        &reqwest::get(agent.url("/api/v1/xdp"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(api["interfaces"][0]["array"]["XDP_PASS"]["packets"], N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_stream_names_the_fix_when_exec_is_off_and_stats_say_null() {
    let _s = SERIAL.lock().await;
    let pair = PinnedPair::new("doff", "ms-doff");
    let agent = Agent::start(&pair, "off", "[exec]\nenabled = false\n");
    let r = reqwest::get(agent.url("/api/v1/stream/exec"))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("exec is not enabled in the agent's config"),
        "{body}"
    );
    let mut sse = Sse::connect(&agent.url("/api/v1/stream/stats")).await;
    let (event, data) = sse.next().await;
    assert_eq!(event, "stats");
    let v: Value = serde_json::from_str(&data).unwrap();
    assert!(
        v["exec"].is_null() && v["exec_events_read"].is_null(),
        "{v}"
    );
    assert!(v["syscalls"]["syscalls"].is_array(), "{v}");
}

/// A TCP connection with a tiny receive buffer that asks for `path` and then reads nothing.
fn stalled_client(addr: SocketAddr, path: &str) -> TcpStream {
    // SAFETY: plain socket calls on a fresh fd we own; the buffer size is set before connect so
    // the advertised window stays small.
    let stream = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let size: libc::c_int = 4096;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw const size).cast(),
            size_of::<libc::c_int>() as u32,
        );
        let SocketAddr::V4(v4) = addr else {
            panic!("agent on IPv6")
        };
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            fd,
            (&raw const sa).cast(),
            size_of::<libc::sockaddr_in>() as u32,
        );
        assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
        TcpStream::from_raw_fd(fd)
    };
    let mut s = stream;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_client_gets_lagged_while_another_client_and_the_http_sink_get_everything() {
    let _s = SERIAL.lock().await;
    let pair = PinnedPair::new("dlag", "ms-dlag");
    let service = TestServer::start().await;
    let spool = tempfile::tempdir().unwrap();
    let agent = Agent::start(
        &pair,
        "lag",
        &format!(
            "[sinks]\nsnapshot_every = \"0\"\n[sinks.http]\nurl = {:?}\nspool_dir = {:?}\nbatch_ms = 50\n",
            service.url(),
            spool.path().display().to_string()
        ),
    );
    let url = agent.url("/api/v1/stream/exec");
    let mut reader = Sse::connect(&url).await;
    let mut stalled = stalled_client(agent.addr, "/api/v1/stream/exec");
    // Let the agent subscribe the stalled connection before the burst.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // More than a client may fall behind by (1024 events) plus what the agent's send buffer
    // (tcp_wmem max), hyper (400 KiB) and the 4 KiB receive buffer hold of ~3.5 KiB events.
    let wmem_max: usize = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .unwrap()
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    let n = (1024 + (wmem_max + 500 * 1024) / 3500) * 3 / 2;
    eprintln!("driving {n} execs (tcp_wmem max {wmem_max})");
    let m = marker("lag");
    let mm = m.clone();
    let burst = tokio::task::spawn_blocking(move || drive_execs(&mm, n, 7));
    let (got, lagged) = collect_driven(&mut reader, &m, n).await;
    burst.await.unwrap();
    assert_eq!(got.len(), n);
    assert!(
        got.iter().copied().eq(0..n),
        "the reading client missed or reordered execs"
    );
    assert!(lagged.is_empty(), "the reading client lagged: {lagged:?}");

    // The stalled client now reads: it is told how many it missed, then the stream goes on.
    let missed = tokio::task::spawn_blocking(move || {
        stalled
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut text = String::new();
        let mut buf = vec![0u8; 65536];
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(
                Instant::now() < deadline,
                "the stalled client read {} bytes and no lagged event",
                text.len()
            );
            let n = stalled.read(&mut buf).expect("stalled client read");
            assert!(n > 0, "the agent closed the stalled client");
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            if let Some(at) = text.find("event: lagged\ndata: ") {
                let rest = &text[at + "event: lagged\ndata: ".len()..];
                if let Some(end) = rest.find('\n') {
                    let v: Value = serde_json::from_str(&rest[..end]).unwrap();
                    return v["missed"].as_u64().unwrap();
                }
            }
        }
    })
    .await
    .unwrap();
    assert!(missed > 0);
    let counted = agent.metric("mapscope_dashboard_lagged_events_total").await;
    assert!(
        counted >= missed,
        "/metrics counts {counted} lagged events, the client was told {missed}"
    );
    // The reader is still served after the stall.
    let mm = m.clone();
    tokio::task::spawn_blocking(move || drive_execs(&format!("{mm}x"), 1, 0))
        .await
        .unwrap();
    let (more, _) = collect_driven(&mut reader, &format!("{m}x"), 1).await;
    assert_eq!(more, [0]);

    // The HTTP sink got every driven exec, in order, while the stalled client held its stream.
    let sunk = |events: Vec<Value>| -> Vec<usize> {
        events.iter().filter_map(|e| driven_index(e, &m)).collect()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while sunk(service.events()).len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = sunk(service.events());
    assert!(
        got.iter().copied().eq(0..n),
        "the HTTP sink got {} of {n} driven execs (or out of order)",
        got.len()
    );
    let delivered = agent
        .labelled("mapscope_sink_events_total{sink=\"http\",outcome=\"delivered\"}")
        .await;
    assert!(delivered >= n as u64, "/metrics: {delivered} delivered");
}

/// Reads stdout lines of a child on a thread, so a test can wait with a timeout.
fn lines_of(out: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Kills the browser driver (and so chromium) if the test fails before it exits.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_in_headless_chromium_shows_the_driven_execs_and_packets() {
    let _s = SERIAL.lock().await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let browser_dir = root.join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists()
            && Path::new("/usr/bin/chromium").exists(),
        "chromium or playwright-core missing: run scripts/setup.sh"
    );
    let pair = PinnedPair::new("dweb", "ms-dweb");
    let agent = Agent::start(&pair, "web", "");

    // The page and its assets come from the binary.
    let page = reqwest::get(agent.url("/")).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("/dashboard/uPlot.iife.min.js"), "{html}");
    for asset in [
        "/dashboard/uPlot.iife.min.js",
        "/dashboard/dashboard.js",
        "/dashboard/uPlot.LICENSE",
    ] {
        let r = reqwest::get(agent.url(asset)).await.unwrap();
        assert_eq!(r.status(), 200, "{asset}");
    }

    const EXECS: usize = 5;
    const PACKETS: usize = 11;
    const RULE: &str = "10.213.9.0/24";
    let m = marker("web");
    let work = tempfile::tempdir().unwrap();
    let shot = work.path().join("dashboard.png");
    let expect = work.path().join("expect.json");
    std::fs::write(
        &expect,
        serde_json::json!({
            "marker": m, "execs": EXECS, "packets": PACKETS, "iface": pair.rx_iface,
            "token": agent.token, "rule": RULE,
        })
        .to_string(),
    )
    .unwrap();
    let mut node = KillOnDrop(
        Command::new("node")
            .arg(browser_dir.join("dashboard.mjs"))
            .arg(agent.url("/"))
            .arg(&shot)
            .arg(&expect)
            .current_dir(&browser_dir)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawning node (run scripts/setup.sh)"),
    );
    let lines = lines_of(node.0.stdout.take().unwrap());
    let ready = lines
        .recv_timeout(Duration::from_secs(60))
        .expect("the page never went live in chromium");
    assert_eq!(ready, "ready");

    let mm = m.clone();
    tokio::task::spawn_blocking(move || drive_execs(&mm, EXECS, 0))
        .await
        .unwrap();
    let frame = pair.send_udp(PACKETS, 100);

    let out = tokio::task::spawn_blocking(move || lines.recv_timeout(Duration::from_secs(120)))
        .await
        .unwrap()
        .expect("the browser driver failed (see its stderr above)");
    let status = node.0.wait().unwrap();
    assert!(status.success(), "browser driver exit {status}");
    let r: Value = serde_json::from_str(&out).unwrap();

    // The tail, filtered by the marker, shows exactly the driven commands, newest first.
    let rows = r["filtered"].as_array().unwrap();
    assert_eq!(rows.len(), EXECS, "{rows:?}");
    assert_eq!(r["exec_shown"], EXECS);
    for (row, i) in rows.iter().zip((0..EXECS).rev()) {
        assert_eq!(row[4], "true", "{row}");
        assert_eq!(row[5], format!("/bin/true {m}-{i}"), "{row}");
        assert_eq!(row[6], "0", "{row}");
        assert_eq!(row[3], "0", "{row}");
        assert_eq!(row[2], std::process::id().to_string(), "{row}");
    }
    assert_eq!(r["xdp_pass_packets"], PACKETS);
    assert!(r["exec_total"].as_u64().unwrap() >= EXECS as u64);
    assert!(r["uid0"].as_u64().unwrap() >= EXECS as u64);
    assert!(r["syscall_rows"].as_u64().unwrap() > 0);
    assert!(r["handler_rows"].as_u64().unwrap() > 0);
    assert!(r["charts"].as_u64().unwrap() >= 3, "{}", r["charts"]);
    let health = r["health"].to_string();
    assert!(health.contains("jump-table slots populated"), "{health}");
    // Firewall panel: the wrong token's 401 is shown, the right one is kept for the tab.
    let bad = r["bad_token_error"].as_str().unwrap();
    assert!(bad.contains("401"), "{bad}");
    assert_eq!(r["rule_error_after_add"], "");
    assert_eq!(r["session_token"], agent.token.as_str());
    assert_eq!(r["rule_removed"], true);
    let rules = reqwest::get(agent.url("/api/v1/xdp/rules"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!rules.contains("10.213.9.0"), "{rules}");
    // Nothing left 127.0.0.1, and the page logged no errors.
    assert_eq!(r["external"], serde_json::json!([]), "{}", r["requests"]);
    assert!(r["requests"].as_array().unwrap().len() >= 5);
    // The only error the page logged is the browser's note on the deliberate 401.
    for e in r["console_errors"].as_array().unwrap() {
        assert!(e.as_str().unwrap().contains("401"), "page error: {e}");
    }

    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "no screenshot");
    let artifacts = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(artifacts.join("dashboard.png"), png).unwrap();
    let _ = frame;
}
