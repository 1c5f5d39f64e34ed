//! The agent against the running kernel and real components: every family at once on a test
//! veth, exact counts on /metrics, in the API and through a real Prometheus's PromQL; counters
//! that survive kill -9; one agent per pin root; --reset; API auth; bad configs; and the
//! deploy/prometheus alert rules under `promtool test rules`.

mod harness;
#[path = "agent/http.rs"]
mod http;
#[path = "agent/process.rs"]
mod process;
#[path = "agent/prometheus.rs"]
mod prometheus;

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::Duration,
};

use harness::{PinnedPair, assert_one_line_error, compile_c, driven::Driven, wait_until};
use process::{Agent, Setup};
use prometheus::Prometheus;

fn syscalls_program() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| compile_c("syscalls"))
}

fn malloc_program() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| compile_c("malloc"))
}

/// The value of the sample whose name and labels are exactly `series` (as the agent writes them).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().unwrap())
    })
}

fn metrics(setup: &Setup) -> String {
    let r = http::get(setup.addr, "/metrics");
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

/// Waits until `series` reaches `want` on /metrics, then a little longer so a surplus would show,
/// and returns the final exposition.
fn settle(setup: &Setup, series: &str, want: f64) -> String {
    let ok = wait_until(Duration::from_secs(10), || {
        sample(&metrics(setup), series).is_some_and(|v| v >= want)
    });
    assert!(ok, "{series} never reached {want}: {}", metrics(setup));
    std::thread::sleep(Duration::from_millis(300));
    metrics(setup)
}

/// Runs `/bin/true` `n` times as `uid`: exactly `n` execs by that uid (setpriv itself is uid 0).
fn execs_as(uid: u32, n: usize) {
    for _ in 0..n {
        harness::run(
            "setpriv",
            &[
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
                "--clear-groups",
                "/bin/true",
            ],
        );
    }
}

/// Checks the exposition with Prometheus's own linter.
fn promtool_check_metrics(body: &str) {
    use std::io::Write as _;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running promtool (scripts/setup.sh installs prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_family_counts_exactly_on_metrics_in_the_api_and_in_prometheus() {
    let pair = PinnedPair::new("agent", "ms-ag-all");
    let rx = pair.rx_iface.clone();
    let setup = Setup::new(
        "all",
        &format!(
            "[xdp]\ninterfaces = [\"{rx}\"]\nnetns = \"{}\"\n[malloc]\nenabled = true\n",
            pair.rx
        ),
    );
    // Started before the agent so their own startup is not counted; from here on they make
    // exactly the calls a window asks for.
    let mut sys = Driven::spawn(syscalls_program(), &["msc-agent", "tuxcall:11"]);
    let sizes = ["100", "200", "300", "4000", "5"];
    let mut mal = Driven::spawn(malloc_program(), &sizes);
    let agent = Agent::start(&setup);
    assert!(pair.rx_has_xdp(), "no XDP program on {rx}");

    const PACKETS: u64 = 23;
    const EXECS: usize = 7;
    let frame = pair.send_udp(PACKETS as usize, 100) as u64;
    execs_as(4213, EXECS);
    sys.window(b'g');
    mal.window(b'0');

    let pass = format!("mapscope_xdp_packets_total{{iface=\"{rx}\",action=\"XDP_PASS\"}}");
    let m = settle(&setup, &pass, PACKETS as f64);
    let exec = "mapscope_exec_total{uid=\"4213\"}";
    let m2 = settle(&setup, exec, EXECS as f64);
    for body in [&m, &m2] {
        assert_eq!(sample(body, &pass), Some(PACKETS as f64), "{body}");
        let bytes = format!("mapscope_xdp_bytes_total{{iface=\"{rx}\",action=\"XDP_PASS\"}}");
        assert_eq!(sample(body, &bytes), Some((PACKETS * frame) as f64));
        let drop = format!("mapscope_xdp_packets_total{{iface=\"{rx}\",action=\"XDP_DROP\"}}");
        assert_eq!(sample(body, &drop), Some(0.0));
    }
    assert_eq!(sample(&m2, exec), Some(EXECS as f64));
    let tux = "mapscope_syscalls_total{syscall=\"tuxcall\",abi=\"x86_64\"}";
    assert_eq!(sample(&m2, tux), Some(11.0), "{m2}");
    assert!(sample(&m2, "mapscope_malloc_calls_total").unwrap() >= sizes.len() as f64);
    assert!(sample(&m2, "mapscope_events_lost_total{family=\"exec\"}").is_some());
    assert!(m2.contains("mapscope_build_info{"), "{m2}");
    promtool_check_metrics(&m2);

    // The API serves the same snapshots as JSON.
    let x = http::get(setup.addr, "/api/v1/xdp").json();
    assert_eq!(x["interfaces"][0]["iface"], rx);
    assert_eq!(x["interfaces"][0]["array"]["XDP_PASS"]["packets"], PACKETS);
    assert_eq!(
        x["interfaces"][0]["array"]["XDP_PASS"]["bytes"],
        PACKETS * frame
    );
    let e = http::get(setup.addr, "/api/v1/exec").json();
    assert_eq!(e["uids"]["4213"], EXECS as u64, "{e}");
    let s = http::get(setup.addr, "/api/v1/syscalls").json();
    let tux_row = s["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "tuxcall")
        .unwrap_or_else(|| panic!("no tuxcall in {s}"));
    assert_eq!(tux_row["count"], 11);
    let a = http::get(setup.addr, "/api/v1/malloc").json();
    let row = a["top"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["pid"] == mal.pid())
        .unwrap_or_else(|| panic!("pid {} not in {a}", mal.pid()));
    assert_eq!(row["calls"], sizes.len() as u64, "{a}");
    assert_eq!(row["bytes"], 4605, "{a}");
    let h = http::get(setup.addr, "/healthz").json();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["families"]["malloc"], true);

    // A real Prometheus scrapes the agent (OpenMetrics) and PromQL returns the same numbers.
    let prom = Prometheus::start(setup.addr);
    assert_eq!(prom.wait_for(exec, EXECS as f64), EXECS as f64);
    assert_eq!(prom.wait_for(&pass, PACKETS as f64), PACKETS as f64);
    assert_eq!(prom.wait_for(tux, 11.0), 11.0);
    assert_eq!(
        prom.wait_for("sum(mapscope_exec_total{uid=\"4213\"})", EXECS as f64),
        EXECS as f64
    );
    assert_eq!(prom.wait_for("up{job=\"mapscope\"}", 1.0), 1.0);

    let (status, rest) = agent.stop();
    assert!(status.success(), "exit {status}: {rest}");
    // The firewall is not a tracing program: it keeps filtering with no agent running, and a
    // restarted agent reuses it (see the Agent section of the README).
    assert!(pair.rx_has_xdp(), "XDP attachment gone after SIGTERM");
    assert!(pair.pin_dir().join("link").exists());
    drop(sys);
    mal.finish();
}

/// The agent's exec counter for `uid`, read straight from the pinned map (no agent running).
fn pinned_exec_count(setup: &Setup, uid: u32) -> u64 {
    let map = mapscope::maps::MapHandle::from_pin(&setup.pin_dir.join("exec/EXEC_UIDS")).unwrap();
    match map.get(&uid.to_ne_bytes()) {
        Ok(v) => u64::from_ne_bytes(v[..8].try_into().unwrap()),
        Err(_) => 0,
    }
}

#[test]
fn counters_survive_kill_9_and_restart_and_only_one_agent_runs() {
    let setup = Setup::new("restart", "[xdp]\nenabled = false\n");
    let series = "mapscope_exec_total{uid=\"4214\"}";
    // personality(0xffffffff) is a query nobody else here makes (the other test uses tuxcall).
    let pers = "mapscope_syscalls_total{syscall=\"personality\",abi=\"x86_64\"}";
    let mut sys = Driven::spawn(syscalls_program(), &["msc-agent-rs", "personality:6"]);

    let agent = Agent::start(&setup);
    execs_as(4214, 5);
    sys.window(b'g');
    assert_eq!(sample(&settle(&setup, series, 5.0), series), Some(5.0));
    assert_eq!(sample(&settle(&setup, pers, 6.0), pers), Some(6.0));

    // A second agent on the same pins is refused, naming the running one.
    let second = setup.run(&[]);
    assert_one_line_error(
        &second,
        &format!("another mapscope agent (pid {})", agent.pid()),
    );
    // So is --reset while it runs.
    assert_one_line_error(&setup.run(&["--reset"]), "another mapscope agent");

    agent.kill9();
    let agent = Agent::start(&setup);
    execs_as(4214, 4);
    sys.window(b'g');
    assert_eq!(sample(&settle(&setup, series, 9.0), series), Some(9.0));
    assert_eq!(sample(&settle(&setup, pers, 12.0), pers), Some(12.0));
    let tuples = http::get(setup.addr, "/api/v1/exec").json();
    assert_eq!(tuples["uids"]["4214"], 9);

    // SIGTERM: programs detached, counters left pinned (execs now are not counted).
    let (status, rest) = agent.stop();
    assert!(status.success(), "exit {status}: {rest}");
    execs_as(4214, 3);
    assert_eq!(pinned_exec_count(&setup, 4214), 9);
    let pins = setup.pins();
    for want in [
        "agent/exec/EXEC_UIDS",
        "agent/exec/EXEC_LOST",
        "agent/exec/layout",
        "agent/syscalls/SC_COUNTS",
        "agent/syscalls/layout",
    ] {
        assert!(
            pins.contains(&setup.pin_root.join(want)),
            "{want} not pinned: {pins:?}"
        );
    }

    // A clean restart continues from the pins too.
    let agent = Agent::start(&setup);
    execs_as(4214, 2);
    assert_eq!(sample(&settle(&setup, series, 11.0), series), Some(11.0));
    agent.stop();

    let out = setup.run(&["--reset"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(setup.pins(), Vec::<PathBuf>::new());
    assert!(!setup.pin_dir.exists());
}

#[test]
fn a_pin_of_another_definition_is_reported_and_recreated_never_misread() {
    let setup = Setup::new(
        "layout",
        "[xdp]\nenabled = false\n[syscalls]\nenabled = false\n",
    );
    let agent = Agent::start(&setup);
    execs_as(4215, 2);
    settle(&setup, "mapscope_exec_total{uid=\"4215\"}", 2.0);
    agent.stop();

    // Replace the uid counter with a map of another shape (8-byte keys, 16 entries).
    let uids = setup.pin_dir.join("exec/EXEC_UIDS");
    mapscope::maps::pin::unpin(&uids).unwrap();
    mapscope::maps::create::create(
        &mapscope::maps::create::NewMap {
            kind: mapscope::maps::MapKind::HASH,
            key_size: 8,
            value_size: 8,
            max_entries: 16,
            flags: 0,
            name: "impostor".into(),
        },
        &uids,
    )
    .unwrap();
    let agent = Agent::start(&setup);
    let banner = agent.banner.join("\n");
    assert!(
        banner.contains("EXEC_UIDS") && banner.contains("recreated"),
        "{banner}"
    );
    execs_as(4215, 3);
    let m = settle(&setup, "mapscope_exec_total{uid=\"4215\"}", 3.0);
    assert_eq!(sample(&m, "mapscope_exec_total{uid=\"4215\"}"), Some(3.0));
    let map = mapscope::maps::MapHandle::from_pin(&uids).unwrap();
    assert_eq!((map.meta.key_size, map.meta.value_size), (4, 8));
    agent.stop();
}

#[test]
fn rule_endpoints_need_the_token_and_change_nothing_without_it() {
    let pair = PinnedPair::new("auth", "ms-ag-auth");
    let rx = pair.rx_iface.clone();
    let setup = Setup::new(
        "auth",
        &format!(
            "[xdp]\ninterfaces = [\"{rx}\"]\nnetns = \"{}\"\ndrop = [\"10.213.9.0/24\"]\n\
             [exec]\nenabled = false\n[syscalls]\nenabled = false\n",
            pair.rx
        ),
    );
    let agent = Agent::start(&setup);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&setup.token_file)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "token file mode");
    let token = std::fs::read_to_string(&setup.token_file).unwrap();
    let good = format!("Authorization: Bearer {}", token.trim());
    let rules = || {
        let all = http::get(setup.addr, "/api/v1/xdp/rules").json()["rules"].clone();
        let on_rx: Vec<String> = all[&rx]
            .as_array()
            .unwrap_or_else(|| panic!("no rules for {rx} in {all}"))
            .iter()
            .map(|r| {
                format!(
                    "{} {}",
                    r["verdict"].as_str().unwrap(),
                    r["cidr"].as_str().unwrap()
                )
            })
            .collect();
        serde_json::json!(on_rx)
    };
    assert_eq!(rules(), serde_json::json!(["block 10.213.9.0/24"]));

    let body = r#"{"cidr":"10.213.7.0/24"}"#;
    for method in ["POST", "DELETE"] {
        for headers in [
            &[][..],
            &["Authorization: Bearer wrong"][..],
            &["Authorization: Basic abc"][..],
        ] {
            let r = http::request(setup.addr, method, "/api/v1/xdp/rules", headers, Some(body))
                .unwrap();
            assert_eq!(r.status, 401, "{method} {headers:?}: {}", r.body);
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        }
    }
    assert_eq!(rules(), serde_json::json!(["block 10.213.9.0/24"]));
    let r = http::request(
        setup.addr,
        "POST",
        "/api/v1/xdp/rules",
        &[&good],
        Some(body),
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        rules(),
        serde_json::json!(["block 10.213.7.0/24", "block 10.213.9.0/24"])
    );
    let bad = r#"{"cidr":"10.213.7.1/24"}"#;
    let r = http::request(setup.addr, "POST", "/api/v1/xdp/rules", &[&good], Some(bad)).unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    let r = http::request(
        setup.addr,
        "DELETE",
        "/api/v1/xdp/rules",
        &[&good],
        Some(body),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(rules(), serde_json::json!(["block 10.213.9.0/24"]));
    // A disabled family is a clear 404, not an empty body.
    assert_eq!(http::get(setup.addr, "/api/v1/exec").status, 404);
    agent.stop();
}

#[test]
fn bad_configs_fail_with_one_line_naming_file_and_line_and_touch_nothing() {
    let pair = PinnedPair::new("badcfg", "ms-ag-bad");
    let rx = pair.rx_iface.clone();
    let cases: [(&str, String, &str); 6] = [
        // Setup puts `pin_dir = …` on line 1, so these sections start on line 2.
        ("unknown-key", "[exec]\nenabled = true\ncolour = 1\n".into(), ":4: "),
        (
            "bad-cidr",
            "[xdp]\ninterfaces = [\"ms-rx\"]\ndrop = [\n  \"10.213.0.0/16\",\n  \"10.213.1.0/40\",\n]\n"
                .into(),
            ":6: ",
        ),
        (
            "unknown-iface",
            format!("[xdp]\nnetns = \"{}\"\ninterfaces = [\"{rx}\", \"ms-nope\"]\n", pair.rx),
            ":4: ",
        ),
        (
            "bad-sink-url",
            "[sinks]\nsnapshot_every = \"60s\"\n[sinks.http]\nurl = \"127.0.0.1:8080\"\n".into(),
            ":4: ",
        ),
        // [http] is rewritten below with the bad listen address on line 5.
        ("bad-listen", String::new(), ":5: "),
        ("non-loopback", String::new(), ":5: "),
    ];
    for (tag, extra, needle) in cases {
        let setup = Setup::new(tag, &extra);
        if tag == "bad-listen" || tag == "non-loopback" {
            // Overwrite [http] with a bad listen address (line 4 of this file).
            let listen = if tag == "bad-listen" {
                "127.0.0.1:99999"
            } else {
                "0.0.0.0:9464"
            };
            std::fs::write(
                &setup.config,
                format!(
                    "pin_dir = \"{}\"\n[xdp]\nenabled = false\n[http]\nlisten = \"{listen}\"\n",
                    setup.pin_dir.display()
                ),
            )
            .unwrap();
        }
        let file = setup.config.display().to_string();
        for args in [&[][..], &["--check-config"][..]] {
            let out = setup.run(args);
            assert_one_line_error(&out, &format!("{file}{needle}"));
            assert!(
                !setup.pin_root.exists(),
                "{tag}: pins left: {:?}",
                setup.pins()
            );
            assert!(!setup.token_file.exists(), "{tag}: token written");
        }
        assert!(!pair.rx_has_xdp(), "{tag}: XDP attached");
        assert!(!pair.pin_dir().exists(), "{tag}: XDP attachment pinned");
    }

    // Unreadable: a directory, and a file that does not exist.
    let setup = Setup::new("unreadable", "");
    for path in [setup.path(""), setup.path("missing.toml")] {
        let out = Command::new(harness::BIN)
            .args(["agent", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert_one_line_error(&out, &format!("{}: cannot read", path.display()));
    }
    assert!(!setup.pin_root.exists());
}

#[test]
fn check_config_prints_the_effective_config_with_defaults() {
    let setup = Setup::new("check", "[xdp]\nenabled = false\n");
    let out = setup.run(&["--check-config"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("listen = \"{}\"", setup.addr)),
        "{text}"
    );
    assert!(text.contains("[malloc]\nenabled = false"), "{text}");
    assert!(text.contains("[syscalls]\nenabled = true"), "{text}");
    assert!(!setup.pin_root.exists());
    // The shipped example is valid and means the defaults.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/agent.toml");
    let parsed = mapscope::agent::Config::load(&example, true).unwrap();
    let defaults = mapscope::agent::Config::defaults();
    assert_eq!(parsed.to_toml(), defaults.to_toml());
}

#[test]
fn alert_rules_pass_promtool_unit_tests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus");
    for args in [
        vec!["check", "config", "prometheus.yml"],
        vec!["check", "rules", "mapscope-rules.yml"],
        vec!["test", "rules", "mapscope-rules.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(&args)
            .current_dir(&dir)
            .output()
            .expect("running promtool (scripts/setup.sh installs prometheus)");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Puts `kernel.bpf_stats_enabled` back as it was, even when the test fails.
struct BpfStats(String);

impl BpfStats {
    const PATH: &str = "/proc/sys/kernel/bpf_stats_enabled";

    fn set(on: bool) -> Self {
        let before = std::fs::read_to_string(Self::PATH).unwrap();
        std::fs::write(Self::PATH, if on { "1" } else { "0" }).unwrap();
        Self(before)
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write(Self::PATH, self.0.trim());
    }
}

#[test]
fn program_run_statistics_appear_only_while_the_kernel_collects_them() {
    let setup = Setup::new(
        "runstats",
        "[xdp]\nenabled = false\n[syscalls]\nenabled = false\n",
    );
    let agent = Agent::start(&setup);
    let exec_runs = |m: &str| -> Vec<f64> {
        m.lines()
            .filter(|l| l.starts_with("mapscope_program_runs_total{program=\"exec"))
            .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
            .collect()
    };
    {
        let _off = BpfStats::set(false);
        let m = metrics(&setup);
        assert!(!m.contains("mapscope_program_run"), "{m}");
    }
    let _on = BpfStats::set(true);
    execs_as(4216, 3);
    let m = settle(&setup, "mapscope_exec_total{uid=\"4216\"}", 3.0);
    // All five exec programs (entry and exit of execve and execveat, and sched_process_exec);
    // the execveat pair may not have run (nobody called execveat), the others ran at least once
    // per exec.
    let runs = exec_runs(&m);
    assert_eq!(runs.len(), 5, "{m}");
    let ran = |name: &str| -> f64 {
        let prefix = format!("mapscope_program_runs_total{{program=\"{name}\"");
        let line = m.lines().find(|l| l.starts_with(&prefix));
        let line = line.unwrap_or_else(|| panic!("no {name} in {m}"));
        line.rsplit_once(' ').unwrap().1.parse().unwrap()
    };
    assert!(ran("exec_enter") >= 3.0, "{m}");
    assert!(ran("exec_exit") >= 3.0, "{m}");
    assert!(ran("exec_done") >= 3.0, "{m}");
    assert!(
        m.contains("mapscope_program_run_seconds_total{program=\"exec"),
        "{m}"
    );
    promtool_check_metrics(&m);
    agent.stop();
}

/// The capabilities the systemd unit grants, as setpriv spells them (`+bpf,+perfmon,…`).
fn unit_capabilities() -> String {
    let unit =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/systemd/mapscope-agent.service");
    let text = std::fs::read_to_string(unit).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit names its capabilities");
    line.split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_ascii_lowercase()))
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn the_systemd_units_capabilities_are_enough_for_every_family() {
    let caps = unit_capabilities();
    let pair = PinnedPair::new("caps", "ms-ag-caps");
    let rx = pair.rx_iface.clone();
    let setup = Setup::new(
        "caps",
        &format!(
            "[xdp]\ninterfaces = [\"{rx}\"]\nnetns = \"{}\"\n[malloc]\nenabled = true\n",
            pair.rx
        ),
    );
    // uid 0 with only the unit's capabilities: what systemd gives the service.
    let wrapper: Vec<String> = [
        "setpriv".to_string(),
        // uid 0 gets exactly the bounding set on exec.
        format!("--bounding-set=-all,{caps}"),
        "--".to_string(),
    ]
    .into();
    let agent = Agent::start_under(&setup, &wrapper);
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.pid())).unwrap();
    let bounding = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim()
        .to_string();
    assert_ne!(
        bounding, "000001ffffffffff",
        "setpriv did not drop capabilities"
    );
    let frame = pair.send_udp(4, 100) as u64;
    execs_as(4217, 2);
    let pass = format!("mapscope_xdp_packets_total{{iface=\"{rx}\",action=\"XDP_PASS\"}}");
    let m = settle(&setup, &pass, 4.0);
    let bytes = format!("mapscope_xdp_bytes_total{{iface=\"{rx}\",action=\"XDP_PASS\"}}");
    assert_eq!(sample(&m, &bytes), Some((4 * frame) as f64));
    let m = settle(&setup, "mapscope_exec_total{uid=\"4217\"}", 2.0);
    assert_eq!(sample(&m, "mapscope_exec_total{uid=\"4217\"}"), Some(2.0));
    assert!(
        sample(&m, "mapscope_malloc_calls_total").is_some_and(|v| v > 0.0),
        "{m}"
    );
    let (status, rest) = agent.stop();
    assert!(status.success(), "exit {status}: {rest}");
}
