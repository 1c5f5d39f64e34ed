//! Pinned attachment through the CLI: persistence across viewers (kill -9 included), detach,
//! stale pins, live rule commands and their bad input, a deleted interface under `xdp stats`,
//! and the busy-interface message for programs attached by other tools.

use std::{
    process::{Command, Output, Stdio},
    time::Duration,
};

use mapscope_common::xdp::LAYOUT_VERSION;

use crate::{
    firewall::Detach,
    frames::{ip, times, udp},
    harness::{BIN, JsonView, NetnsPair, assert_one_line_error, run, wait_until},
};

/// `mapscope ARGS` in the receiving namespace. `nsenter --net` rather than `ip netns exec`: the
/// latter remounts /sys, which would hide the host's bpffs and so every pin.
fn cli(pair: &NetnsPair, args: &[&str]) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{}", pair.rx))
        .arg(BIN)
        .args(args);
    cmd
}

fn ok(pair: &NetnsPair, args: &[&str]) -> String {
    let out = cli(pair, args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(pair: &NetnsPair, args: &[&str]) -> Output {
    cli(pair, args).output().unwrap()
}

fn rules_json(pair: &NetnsPair) -> serde_json::Value {
    let text = ok(pair, &["xdp", "rules", "--json", "--iface", &pair.rx_iface]);
    serde_json::from_str(&text).unwrap()
}

fn rule_names(pair: &NetnsPair) -> Vec<String> {
    rules_json(pair)["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{} {} {}", r["verdict"], r["cidr"], r["dir"]).replace('"', ""))
        .collect()
}

/// One `xdp stats --json` report of the pinned attachment, after `secs`.
fn one_report(pair: &NetnsPair) -> serde_json::Value {
    let text = ok(
        pair,
        &[
            "xdp",
            "stats",
            "--iface",
            &pair.rx_iface,
            "--json",
            "--interval",
            "0.1",
            "--count",
            "1",
        ],
    );
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

fn attach(pair: &NetnsPair, extra: &[&str]) -> Detach {
    let guard = Detach(pair.rx_iface.clone());
    let mut args = vec!["xdp", "attach", "--iface", &pair.rx_iface];
    args.extend_from_slice(extra);
    let out = ok(pair, &args);
    assert!(out.contains("attached to"), "{out}");
    guard
}

fn pin_dir(pair: &NetnsPair) -> std::path::PathBuf {
    mapscope::xdp::attachment::pin_dir(&pair.rx_iface)
}

#[test]
fn pinned_attachment_outlives_viewers_and_detach_removes_everything() {
    let pair = NetnsPair::with_rx_iface("pin", "msfw-pin");
    let _guard = attach(&pair, &[]);
    assert!(pair.rx_has_xdp());
    ok(
        &pair,
        &[
            "xdp",
            "block",
            "add",
            "10.213.7.0/24",
            "--iface",
            &pair.rx_iface,
        ],
    );
    let status: serde_json::Value =
        serde_json::from_str(&ok(&pair, &["xdp", "status", "--json"])).unwrap();
    let me = status["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["iface"] == pair.rx_iface.as_str())
        .expect("attachment listed")
        .clone();
    assert_eq!(me["state"], "attached");
    assert_eq!(me["mode"], "skb");
    assert_eq!(me["rules"], 1);

    // A viewer that is killed with SIGKILL: the attachment and its counters stay.
    let view = JsonView::spawn({
        let mut c = cli(
            &pair,
            &[
                "xdp",
                "stats",
                "--iface",
                &pair.rx_iface,
                "--json",
                "--interval",
                "0.2",
            ],
        );
        c.stderr(Stdio::null());
        c
    });
    let rx = ip("10.213.1.2");
    let burst = |n| {
        let mut f = times(udp(ip("10.213.7.1"), rx, &[], 100), n);
        f.extend(times(udp(ip("10.213.8.1"), rx, &[], 100), n));
        pair.send_frames(&f);
    };
    burst(5);
    std::thread::sleep(Duration::from_millis(600));
    view.kill9();
    assert!(
        pair.rx_has_xdp(),
        "kill -9 of a viewer detached the program"
    );
    burst(3);
    let r = one_report(&pair);
    assert_eq!(r["attachment"], "pinned", "{r}");
    for map in ["array", "percpu"] {
        assert_eq!(r[map]["XDP_DROP"]["packets"], 8, "{r}");
        assert_eq!(r[map]["XDP_PASS"]["packets"], 8, "{r}");
        assert_eq!(r[map]["XDP_DROP"]["bytes"], 8 * 142, "{r}");
    }
    assert_eq!(r["rules"][0]["cidr"], "10.213.7.0/24");
    assert_eq!(r["rules"][0]["packets"], 8);
    let talkers = r["talkers"].as_array().unwrap();
    assert_eq!(talkers.len(), 2, "{r}");
    for t in talkers {
        assert_eq!(t["packets"], 8, "{r}");
        assert_eq!(t["bytes"], 8 * 142, "{r}");
    }

    let out = ok(&pair, &["xdp", "detach", "--iface", &pair.rx_iface]);
    assert!(out.contains("detached"), "{out}");
    assert!(!pair.rx_has_xdp(), "program still attached after detach");
    assert!(!pin_dir(&pair).exists(), "pins left after detach");
}

#[test]
fn live_rule_changes_apply_exactly_to_the_next_burst() {
    let pair = NetnsPair::with_rx_iface("live", "msfw-live");
    let rules = std::env::temp_dir().join(format!("ms-xdp-live-{}.rules", std::process::id()));
    std::fs::write(
        &rules,
        "# first set\nblock 10.213.7.0/24\nallow 10.213.7.9\n",
    )
    .unwrap();
    let _guard = attach(&pair, &["--rules", rules.to_str().unwrap()]);
    let rx = ip("10.213.1.2");
    let burst = || {
        let mut f = times(udp(ip("10.213.7.1"), rx, &[], 100), 4);
        f.extend(times(udp(ip("10.213.7.9"), rx, &[], 100), 2));
        f.extend(times(udp(ip("10.213.8.1"), rx, &[], 100), 3));
        pair.send_frames(&f);
    };
    burst();
    wait_until(Duration::from_secs(5), || {
        one_report(&pair)["array"]["XDP_PASS"]["packets"] == 5
    });
    // Between the bursts: 10.213.8.0/24 blocked, 10.213.7.0/24 no longer (its allow stays).
    ok(
        &pair,
        &[
            "xdp",
            "block",
            "add",
            "10.213.8.0/24",
            "--iface",
            &pair.rx_iface,
        ],
    );
    ok(
        &pair,
        &[
            "xdp",
            "block",
            "del",
            "10.213.7.0/24",
            "--iface",
            &pair.rx_iface,
        ],
    );
    burst();
    std::thread::sleep(Duration::from_millis(300));
    let r = one_report(&pair);
    // Burst 1: 4 dropped, 5 passed; burst 2: 3 dropped, 6 passed.
    assert_eq!(r["array"]["XDP_DROP"]["packets"], 7, "{r}");
    assert_eq!(r["array"]["XDP_PASS"]["packets"], 11, "{r}");
    assert_eq!(r["percpu"]["XDP_DROP"]["packets"], 7, "{r}");
    assert_eq!(
        rule_names(&pair),
        ["block 10.213.8.0/24 src", "allow 10.213.7.9/32 src"]
    );
    let rules_now = rules_json(&pair);
    let by_cidr = |c: &str| {
        rules_now["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["cidr"] == c)
            .unwrap()["packets"]
            .clone()
    };
    assert_eq!(by_cidr("10.213.8.0/24"), 3);
    assert_eq!(by_cidr("10.213.7.9/32"), 4);

    // rules load: replaces the set; the rule in both sets keeps its counter (never removed).
    std::fs::write(&rules, "allow 10.213.7.9/32\nblock fd00:213::/32 dst\n").unwrap();
    ok(
        &pair,
        &[
            "xdp",
            "rules",
            "load",
            rules.to_str().unwrap(),
            "--iface",
            &pair.rx_iface,
        ],
    );
    assert_eq!(
        rule_names(&pair),
        ["block fd00:213::/32 dst", "allow 10.213.7.9/32 src"]
    );
    let after = rules_json(&pair);
    let kept = after["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["cidr"] == "10.213.7.9/32")
        .unwrap();
    assert_eq!(kept["packets"], 4, "the rule in both sets lost its counter");
    let _ = std::fs::remove_file(&rules);
}

#[test]
fn rules_bad_input_fails_with_one_line_and_changes_nothing() {
    let pair = NetnsPair::with_rx_iface("rbad", "msfw-rbad");
    let iface = pair.rx_iface.clone();
    let out = fails(
        &pair,
        &["xdp", "block", "add", "10.0.0.0/8", "--iface", &iface],
    );
    assert_one_line_error(
        &out,
        "no mapscope XDP attachment on msfw-rbad: run `mapscope xdp attach",
    );
    let _guard = attach(&pair, &["--rules-capacity", "3"]);
    ok(
        &pair,
        &["xdp", "block", "add", "10.213.0.0/16", "--iface", &iface],
    );
    let before = rule_names(&pair);
    let file = std::env::temp_dir().join(format!("ms-xdp-bad-{}.rules", std::process::id()));
    std::fs::write(
        &file,
        "block 10.213.5.0/24\n# ok so far\nblock 10.213.6.1/24\n",
    )
    .unwrap();
    let file_s = file.to_str().unwrap().to_string();
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["xdp", "block", "add", "10.213.1.0/24", "10.213.300.0/24"],
            "bad CIDR \"10.213.300.0/24\"".into(),
        ),
        (
            vec!["xdp", "block", "add", "10.213.1.3/24"],
            "host bits are set: write 10.213.1.0/24".into(),
        ),
        (
            vec!["xdp", "allow", "add", "10.213.0.0/40"],
            "0..=32 for an IPv4 address".into(),
        ),
        (
            vec!["xdp", "block", "add", "::ffff:10.213.0.0/112"],
            "write 10.213.0.0/16".into(),
        ),
        (
            vec!["xdp", "block", "add", "fd00:213::1/32"],
            "write fd00:213::/32".into(),
        ),
        (
            vec![
                "xdp",
                "block",
                "add",
                "10.213.1.0/24",
                "10.213.2.0/24",
                "10.213.3.0/24",
            ],
            "holds at most 3 rules and 1 are in use, so 2 more fit".into(),
        ),
        (
            vec!["xdp", "block", "del", "10.213.0.0/16", "10.213.9.0/24"],
            "no block rule for 10.213.9.0/24".into(),
        ),
        (
            vec!["xdp", "allow", "del", "10.213.0.0/16"],
            "no allow rule for 10.213.0.0/16".into(),
        ),
        (
            vec!["xdp", "rules", "load", &file_s],
            format!("{file_s}:3: bad CIDR"),
        ),
        (
            vec!["xdp", "rules", "load", "/nonexistent/rules"],
            "reading rules file /nonexistent/rules".into(),
        ),
    ];
    for (args, needle) in cases {
        let mut args = args.clone();
        args.extend(["--iface", &iface]);
        let out = fails(&pair, &args);
        assert_one_line_error(&out, &needle);
        assert_eq!(rule_names(&pair), before, "{args:?} changed the rules");
    }
    // attach --rules with a bad file attaches nothing.
    let pair2 = NetnsPair::with_rx_iface("rbad2", "msfw-rbad2");
    let _g2 = Detach(pair2.rx_iface.clone());
    let out = fails(
        &pair2,
        &["xdp", "attach", "--iface", "msfw-rbad2", "--rules", &file_s],
    );
    assert_one_line_error(&out, ":3: bad CIDR");
    assert!(!pair2.rx_has_xdp());
    assert!(!pin_dir(&pair2).exists());
    let _ = std::fs::remove_file(&file);
}

#[test]
fn stale_pin_directory_is_reported_with_its_cleanup_command() {
    let pair = NetnsPair::with_rx_iface("stale", "msfw-stale");
    let _guard = attach(&pair, &[]);
    // The interface goes away under the attachment.
    run("ip", &["-n", &pair.rx, "link", "del", &pair.rx_iface]);
    let text = ok(&pair, &["xdp", "status"]);
    assert!(text.contains("stale mapscope XDP pins in /sys/fs/bpf/mapscope/xdp/msfw-stale: interface msfw-stale is gone"), "{text}");
    assert!(
        text.contains("`mapscope xdp detach --iface msfw-stale`"),
        "{text}"
    );
    let out = fails(&pair, &["xdp", "rules", "--iface", &pair.rx_iface]);
    assert_one_line_error(
        &out,
        "interface msfw-stale is gone; remove them with `mapscope xdp detach --iface msfw-stale`",
    );
    ok(&pair, &["xdp", "detach", "--iface", &pair.rx_iface]);
    assert!(!pin_dir(&pair).exists());
}

#[test]
fn pins_with_another_layout_are_reported_not_reused() {
    // An older mapscope's talkers map (layout 1: a per-CPU LRU, another type): aya would
    // silently reuse it.
    let pair = NetnsPair::with_rx_iface("layout", "msfw-layout");
    let _guard = attach(&pair, &[]);
    let pin = pin_dir(&pair).join("talkers");
    std::fs::remove_file(&pin).unwrap();
    run(
        BIN,
        &[
            "map",
            "create",
            pin.to_str().unwrap(),
            "type",
            "lru_percpu_hash",
            "key",
            "16",
            "value",
            "32",
            "entries",
            "16384",
        ],
    );
    let out = fails(
        &pair,
        &["xdp", "stats", "--iface", &pair.rx_iface, "--count", "1"],
    );
    assert_one_line_error(
        &out,
        "stale mapscope XDP pins in /sys/fs/bpf/mapscope/xdp/msfw-layout: map talkers has \
         another definition (Some(LruPerCpuHash)",
    );
    let out = fails(
        &pair,
        &[
            "xdp",
            "block",
            "add",
            "10.213.0.0/16",
            "--iface",
            &pair.rx_iface,
        ],
    );
    assert_one_line_error(
        &out,
        "remove them with `mapscope xdp detach --iface msfw-layout`",
    );
    ok(&pair, &["xdp", "detach", "--iface", &pair.rx_iface]);
    assert!(!pin_dir(&pair).exists());
    assert!(!pair.rx_has_xdp());
}

#[test]
fn pins_of_an_older_layout_version_are_reported_not_reused() {
    // The marker of an older mapscope (layout 1: per-CPU talkers, no host-rule hashes) in an
    // otherwise current directory: the version alone must stop any reuse.
    let pair = NetnsPair::with_rx_iface("layoutv", "msfw-layoutv");
    let _guard = attach(&pair, &[]);
    let meta = pin_dir(&pair).join("meta");
    let meta = meta.to_str().unwrap();
    let out = run(BIN, &["map", "get", "pinned", meta, "key", "u32:0"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut value: Vec<String> = text
        .split("value:")
        .nth(1)
        .unwrap_or_else(|| panic!("no value in {text:?}"))
        .split_whitespace()
        .map(|b| format!("0x{b}"))
        .collect();
    assert_eq!(value.len(), 40, "{text}");
    assert_eq!(
        value[..4],
        LAYOUT_VERSION.to_ne_bytes().map(|b| format!("0x{b:02x}"))
    );
    value[..4].clone_from_slice(&1u32.to_ne_bytes().map(|b| format!("0x{b:02x}")));
    let mut args = vec!["map", "set", "pinned", meta, "key", "u32:0", "value"];
    args.extend(value.iter().map(String::as_str));
    run(BIN, &args);
    let out = fails(
        &pair,
        &["xdp", "stats", "--iface", &pair.rx_iface, "--count", "1"],
    );
    assert_one_line_error(
        &out,
        &format!(
            "stale mapscope XDP pins in /sys/fs/bpf/mapscope/xdp/msfw-layoutv: layout version 1 \
             (this mapscope uses {LAYOUT_VERSION})"
        ),
    );
    let out = fails(
        &pair,
        &[
            "xdp",
            "allow",
            "add",
            "10.213.1.1",
            "--iface",
            &pair.rx_iface,
        ],
    );
    assert_one_line_error(
        &out,
        "remove them with `mapscope xdp detach --iface msfw-layoutv`",
    );
    ok(&pair, &["xdp", "detach", "--iface", &pair.rx_iface]);
    assert!(!pin_dir(&pair).exists());
    assert!(!pair.rx_has_xdp());
}

#[test]
fn stats_notices_a_deleted_interface_and_exits_nonzero() {
    // Issue 14: without a pinned attachment (attached for the view's lifetime) …
    let pair = NetnsPair::with_rx_iface("gone", "msfw-gone");
    let child = cli(
        &pair,
        &[
            "xdp",
            "stats",
            "--iface",
            &pair.rx_iface,
            "--interval",
            "0.1",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    assert!(wait_until(Duration::from_secs(10), || pair.rx_has_xdp()));
    run("ip", &["-n", &pair.rx, "link", "del", &pair.rx_iface]);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr
            .lines()
            .last()
            .unwrap_or("")
            .contains("msfw-gone is gone (interface deleted or renamed): stopping"),
        "{stderr}"
    );
}

#[test]
fn busy_interface_names_the_command_for_the_mode_found() {
    // Issue 14: a program attached through netlink (by ip, or by xdp-filter's libxdp) needs
    // `xdpgeneric off` in generic mode and `xdp off` in native mode. (A bpf_link held by a
    // process is covered by `refuses_to_replace_an_attached_program`.)
    const OBJ: &str = "/usr/lib/x86_64-linux-gnu/bpf/xdpfilt_alw_all.o";
    for (how, needle) in [
        (
            "xdpgeneric",
            "(generic mode); mapscope will not replace it: detach it first \
             (`ip link set dev msfw-busy xdpgeneric off`)",
        ),
        (
            "xdpdrv",
            "(native mode); mapscope will not replace it: detach it first \
             (`ip link set dev msfw-busy xdp off`)",
        ),
        (
            "xdp-filter",
            "(generic mode); mapscope will not replace it: detach it first \
             (`ip link set dev msfw-busy xdpgeneric off`)",
        ),
    ] {
        let pair = NetnsPair::with_rx_iface(&format!("b{how}"), "msfw-busy");
        if how == "xdp-filter" {
            let out = Command::new("nsenter")
                .arg(format!("--net=/run/netns/{}", pair.rx))
                .args(["xdp-filter", "load", "--mode", "skb", "msfw-busy"])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        } else {
            run(
                "ip",
                &[
                    "-n",
                    &pair.rx,
                    "link",
                    "set",
                    "dev",
                    "msfw-busy",
                    how,
                    "obj",
                    OBJ,
                    "sec",
                    "xdp",
                ],
            );
        }
        let out = fails(
            &pair,
            &["xdp", "stats", "--iface", "msfw-busy", "--count", "1"],
        );
        assert_one_line_error(&out, needle);
        assert!(pair.rx_has_xdp(), "{how}: the program was removed");
        if how == "xdp-filter" {
            let _ = Command::new("nsenter")
                .arg(format!("--net=/run/netns/{}", pair.rx))
                .args(["xdp-filter", "unload", "msfw-busy"])
                .output();
        }
    }
}

#[test]
fn concurrent_rule_writers_are_serialised() {
    // Without the lock both writers would read the same rule set, pick the same free counter ids
    // and overwrite each other's records.
    let pair = NetnsPair::with_rx_iface("lock", "msfw-lock");
    let _guard = attach(&pair, &[]);
    const WRITERS: u32 = 4;
    const EACH: u32 = 1000;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let cidrs: Vec<String> = (0..EACH)
                .map(|i| format!("10.213.{}.{}/32", 100 + w * 4 + i / 250, i % 250 + 1))
                .collect();
            let mut args = vec!["xdp", "block", "add"];
            args.extend(cidrs.iter().map(String::as_str));
            args.extend(["--iface", pair.rx_iface.as_str()]);
            cli(&pair, &args).stderr(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    for w in writers {
        let out = w.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rules = rules_json(&pair);
    let list = rules["rules"].as_array().unwrap();
    assert_eq!(list.len(), (WRITERS * EACH) as usize);
    let ids: std::collections::BTreeSet<u64> =
        list.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(
        ids.len(),
        (WRITERS * EACH) as usize,
        "rules share a counter id"
    );
}
