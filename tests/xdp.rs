//! XDP statistics against the running kernel: exact packet and byte counts for real packets
//! sent across a veth pair between two test-owned network namespaces.

#[path = "xdp/firewall.rs"]
mod firewall;
#[path = "xdp/frames.rs"]
mod frames;
mod harness;
#[path = "xdp/pinned.rs"]
mod pinned;

use std::{process::Command, time::Duration};

use harness::{BIN, JsonView, NetnsPair, RX_IFACE, assert_one_line_error, run, wait_until};
use mapscope::{
    iface::Interface,
    xdp::{AttachMode, XdpError, XdpSnapshot as Snapshot, XdpStats},
};
use mapscope_common::xdp::{StatsRecord, XdpAction};

fn attach(pair: &NetnsPair, mode: AttachMode) -> Result<XdpStats, XdpError> {
    pair.in_rx(|| XdpStats::attach(&Interface::resolve(Some(RX_IFACE))?, mode))
}

/// Waits until the Array shows at least `n` passed packets, then a little longer so that any
/// surplus packet would also have been counted before the exact assertions run.
fn settle(stats: &XdpStats, n: u64) -> Snapshot {
    let reached = wait_until(Duration::from_secs(5), || {
        stats.snapshot().unwrap().array[XdpAction::Pass as usize].packets >= n
    });
    assert!(
        reached,
        "fewer than {n} packets counted: {:?}",
        stats.snapshot().unwrap()
    );
    std::thread::sleep(Duration::from_millis(300));
    stats.snapshot().unwrap()
}

fn assert_exact(snap: &Snapshot, n: u64, frame: u64) {
    let want = StatsRecord {
        packets: n,
        bytes: n * frame,
    };
    for (map, recs) in [("array", &snap.array), ("percpu", &snap.percpu)] {
        for action in XdpAction::ALL {
            let expected = if action == XdpAction::Pass {
                want
            } else {
                StatsRecord::default()
            };
            assert_eq!(recs[action as usize], expected, "{map} {}", action.name());
        }
    }
}

fn counts_exactly(mode: AttachMode, tag: &str) {
    let pair = NetnsPair::new(tag);
    let stats = attach(&pair, mode).expect("attach");
    assert!(pair.rx_has_xdp(), "program not visible on {RX_IFACE}");
    assert_exact(&stats.snapshot().unwrap(), 0, 0);
    assert!(stats.snapshot().unwrap().talkers.is_empty());

    const N: u64 = 37;
    let frame = pair.send_udp(N as usize, 200) as u64;
    assert_eq!(frame, 242);
    assert_exact(&settle(&stats, N), N, frame);

    // A second burst of another size adds exactly on top.
    let frame2 = pair.send_udp(5, 1000) as u64;
    let snap = settle(&stats, N + 5);
    let pass = snap.array[XdpAction::Pass as usize];
    assert_eq!(
        pass,
        StatsRecord {
            packets: N + 5,
            bytes: N * frame + 5 * frame2
        }
    );
    assert_eq!(snap.percpu[XdpAction::Pass as usize], pass);

    drop(stats);
    assert!(!pair.rx_has_xdp(), "XDP program still attached after drop");
}

#[test]
fn skb_mode_counts_exact_packets_and_bytes_in_both_maps() {
    counts_exactly(AttachMode::Skb, "skb");
}

#[test]
fn native_mode_counts_exact_packets_and_bytes_in_both_maps() {
    counts_exactly(AttachMode::Native, "native");
}

#[test]
fn refuses_to_replace_an_attached_program() {
    let pair = NetnsPair::new("busy");
    let first = attach(&pair, AttachMode::Skb).expect("first attach");
    for mode in [AttachMode::Skb, AttachMode::Native] {
        match attach(&pair, mode) {
            Err(XdpError::Busy {
                iface,
                mode,
                holders,
                fix,
            }) => {
                // Issue 14: the mode found and the pid holding the bpf_link (this test).
                assert_eq!(iface, RX_IFACE);
                assert_eq!(mode, "generic");
                let me = std::process::id();
                assert!(
                    holders.contains(&format!("held by pid {me} (")),
                    "{holders}"
                );
                assert!(fix.contains(&format!("kill {me}")), "{fix}");
            }
            Err(e) => panic!("{mode:?}: expected XdpError::Busy, got {e}"),
            Ok(_) => panic!("{mode:?}: second attach replaced the first"),
        }
    }
    // The first program is untouched and still counting.
    let frame = pair.send_udp(3, 10) as u64;
    assert_exact(&settle(&first, 3), 3, frame);
    drop(first);
    assert!(!pair.rx_has_xdp());
}

/// Runs the CLI inside the receiving namespace.
fn cli(pair: &NetnsPair, prefix: &[&str], args: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &pair.rx])
        .args(prefix)
        .arg(BIN)
        .args(args);
    cmd
}

#[test]
fn cli_reports_exact_json_and_detaches_on_sigterm() {
    let pair = NetnsPair::new("cli");
    let view = JsonView::spawn(cli(
        &pair,
        &[],
        &[
            "xdp",
            "stats",
            "--iface",
            RX_IFACE,
            "--json",
            "--interval",
            "0.2",
        ],
    ));
    assert!(
        wait_until(Duration::from_secs(10), || pair.rx_has_xdp()),
        "CLI never attached"
    );

    const N: u64 = 20;
    let frame = pair.send_udp(N as usize, 58) as u64;
    let reports = view.stop();
    let last = reports.last().expect("no JSON line");
    assert_eq!(last["schema"], 1);
    assert_eq!(last["iface"], RX_IFACE);
    assert_eq!(last["mode"], "skb");
    for map in ["array", "percpu"] {
        assert_eq!(last[map]["XDP_PASS"]["packets"], N, "{map}: {last}");
        assert_eq!(last[map]["XDP_PASS"]["bytes"], N * frame, "{map}: {last}");
        assert_eq!(last[map]["XDP_DROP"]["packets"], 0, "{map}: {last}");
    }
    assert!(!pair.rx_has_xdp(), "still attached after SIGTERM");
}

#[test]
fn cli_count_prints_that_many_tables() {
    let pair = NetnsPair::new("count");
    let out = cli(
        &pair,
        &[],
        &[
            "xdp",
            "stats",
            "--iface",
            RX_IFACE,
            "--interval",
            "0.1",
            "--count",
            "3",
            "--map",
            "percpu",
        ],
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches("PerCpuArray").count(), 3, "{stdout}");
    assert_eq!(stdout.matches("XDP_PASS").count(), 3, "{stdout}");
    assert!(!pair.rx_has_xdp());
}

#[test]
fn cli_bad_input_fails_with_one_line_and_attaches_nothing() {
    let pair = NetnsPair::new("bad");
    let cases: [(&[&str], &[&str], &str); 6] = [
        (
            &[],
            &["xdp", "stats", "--iface", "nosuch0", "--count", "1"],
            "unknown interface \"nosuch0\"",
        ),
        (
            &[],
            &["xdp", "stats", "--iface", RX_IFACE, "--interval", "0"],
            "--interval must be a positive",
        ),
        (
            &[],
            &["xdp", "stats", "--iface", RX_IFACE, "--interval", "-1"],
            "--interval must be a positive",
        ),
        (
            &[
                "setpriv",
                "--inh-caps=-all",
                "--ambient-caps=-all",
                "--bounding-set=-all",
                "--",
            ],
            &["xdp", "stats", "--iface", RX_IFACE, "--count", "1"],
            "missing privileges",
        ),
        // Loopback has no native XDP: the driver refuses, and the message names the fix.
        (
            &[],
            &[
                "xdp", "stats", "--iface", "lo", "--mode", "native", "--count", "1",
            ],
            "the driver of lo does not support native XDP: use --mode skb",
        ),
        (
            &[],
            &["xdp", "stats", "--iface", RX_IFACE, "--count", "0"],
            "--count must be at least 1",
        ),
    ];
    for (prefix, args, needle) in cases {
        let out = cli(&pair, prefix, args).output().unwrap();
        assert_one_line_error(&out, needle);
        assert!(!pair.rx_has_xdp(), "{args:?} left a program attached");
    }
    let lo = run("ip", &["-n", &pair.rx, "-d", "link", "show", "lo"]);
    assert!(
        !String::from_utf8_lossy(&lo.stdout).contains("xdp"),
        "left XDP on lo"
    );
}

#[test]
fn cli_refuses_busy_interface_and_leaves_existing_program() {
    let pair = NetnsPair::new("clibusy");
    let first = attach(&pair, AttachMode::Skb).expect("attach");
    let out = cli(
        &pair,
        &[],
        &["xdp", "stats", "--iface", RX_IFACE, "--count", "1"],
    )
    .output()
    .unwrap();
    assert_one_line_error(&out, "already has an XDP program attached");
    assert!(pair.rx_has_xdp(), "the CLI removed the existing program");
    drop(first);
    assert!(!pair.rx_has_xdp());
}
