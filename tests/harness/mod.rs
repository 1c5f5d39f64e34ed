//! Shared helpers for the root integration tests: an RAII pair of network namespaces joined by a
//! veth, running code inside a namespace, and sending an exact number of known-size packets.
//!
//! Addresses come from 10.213.0.0/16 and exist only inside the namespaces the tests create.
#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod driven;
pub mod sink;
pub mod web;

use std::{
    fs::File,
    net::{Ipv4Addr, UdpSocket},
    os::fd::AsRawFd,
    path::Path,
    process::{Command, Output},
    time::{Duration, Instant},
};

/// Interface names inside the namespaces (the same in every pair: namespaces keep them apart).
pub const TX_IFACE: &str = "ms-tx";
pub const RX_IFACE: &str = "ms-rx";
pub const TX_ADDR: Ipv4Addr = Ipv4Addr::new(10, 213, 1, 1);
pub const RX_ADDR: Ipv4Addr = Ipv4Addr::new(10, 213, 1, 2);
const TX_MAC: &str = "02:13:00:00:01:01";
const RX_MAC: &str = "02:13:00:00:01:02";
/// The MAC addresses as bytes, for hand-built frames.
pub const TX_MAC_BYTES: [u8; 6] = [0x02, 0x13, 0, 0, 0x01, 0x01];
pub const RX_MAC_BYTES: [u8; 6] = [0x02, 0x13, 0, 0, 0x01, 0x02];
const NS_PREFIX: &str = "msc-";

/// Ethernet + IPv4 + UDP headers in front of a UDP payload on the veth.
pub const UDP_FRAME_OVERHEAD: usize = 14 + 20 + 8;

/// The mapscope binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_mapscope");

/// Asserts a failed run printed exactly one line, `error: …` containing `needle` (the fix).
pub fn assert_one_line_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, stderr: {stderr}");
    let lines: Vec<&str> = stderr.trim_end().lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(lines[0].contains(needle), "missing {needle:?} in: {stderr}");
}

/// Runs `mapscope ARGS` as root with every capability dropped (what "missing privileges" means
/// to the kernel), via setpriv.
pub fn unprivileged(args: &[&str]) -> Output {
    Command::new("setpriv")
        .args([
            "--inh-caps=-all",
            "--ambient-caps=-all",
            "--bounding-set=-all",
            "--",
            BIN,
        ])
        .args(args)
        .output()
        .expect("running setpriv")
}

/// Panics unless running as root: these tests load programs into the running kernel.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "integration tests load eBPF programs and need root: run them with sudo"
    );
}

/// Runs a command and panics with its output when it fails.
pub fn run(cmd: &str, args: &[&str]) -> Output {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("spawning {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Two network namespaces (`tx`, `rx`) joined by a veth pair, removed on drop even when the
/// test panics. IPv6 is disabled and neighbours are static, so the only packets on the wire are
/// the ones a test sends.
pub struct NetnsPair {
    pub tx: String,
    pub rx: String,
    /// Name of the receiving veth end (RX_IFACE unless the test needs a host-unique name, as
    /// pinned XDP attachments do: their pin directory is named after the interface).
    pub rx_iface: String,
}

impl NetnsPair {
    /// Creates the pair; `tag` keeps concurrent tests apart.
    pub fn new(tag: &str) -> Self {
        Self::with_rx_iface(tag, RX_IFACE)
    }

    /// [`NetnsPair::new`] with the receiving end named `rx_iface` (at most 15 bytes).
    pub fn with_rx_iface(tag: &str, rx_iface: &str) -> Self {
        require_root();
        remove_stale_namespaces();
        let pid = std::process::id();
        let pair = Self {
            tx: format!("{NS_PREFIX}{pid}-{tag}-tx"),
            rx: format!("{NS_PREFIX}{pid}-{tag}-rx"),
            rx_iface: rx_iface.to_string(),
        };
        // Constructed before the first command so Drop cleans up whatever got created.
        for ns in [&pair.tx, &pair.rx] {
            run("ip", &["netns", "add", ns]);
            for key in ["all", "default"] {
                run(
                    "ip",
                    &[
                        "netns",
                        "exec",
                        ns,
                        "sysctl",
                        "-qw",
                        &format!("net.ipv6.conf.{key}.disable_ipv6=1"),
                    ],
                );
            }
        }
        run(
            "ip",
            &[
                "link",
                "add",
                TX_IFACE,
                "address",
                TX_MAC,
                "netns",
                &pair.tx,
                "type",
                "veth",
                "peer",
                "name",
                &pair.rx_iface,
                "address",
                RX_MAC,
                "netns",
                &pair.rx,
            ],
        );
        for (ns, dev, addr, peer_addr, peer_mac) in [
            (&pair.tx, TX_IFACE, TX_ADDR, RX_ADDR, RX_MAC),
            (&pair.rx, pair.rx_iface.as_str(), RX_ADDR, TX_ADDR, TX_MAC),
        ] {
            run(
                "ip",
                &["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev],
            );
            run(
                "ip",
                &[
                    "-n",
                    ns,
                    "neigh",
                    "replace",
                    &peer_addr.to_string(),
                    "lladdr",
                    peer_mac,
                    "dev",
                    dev,
                    "nud",
                    "permanent",
                ],
            );
            run("ip", &["-n", ns, "link", "set", dev, "up"]);
        }
        pair.wait_carrier();
        pair
    }

    fn wait_carrier(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let out = run(
                "ip",
                &["-n", &self.rx, "-br", "link", "show", &self.rx_iface],
            );
            if String::from_utf8_lossy(&out.stdout).contains(" UP ") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "veth in {} never came up",
                self.rx
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `f` on a fresh thread that has entered the receiving namespace, so interface names
    /// resolve there; whatever `f` attaches stays attached after the thread ends.
    pub fn in_rx<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_netns(&self.rx, f)
    }

    /// Sends exactly `count` UDP datagrams of `payload` bytes from tx to rx and returns the frame
    /// length each one has on the wire.
    pub fn send_udp(&self, count: usize, payload: usize) -> usize {
        in_netns(&self.tx, || {
            let sock = UdpSocket::bind((TX_ADDR, 0)).expect("bind in tx namespace");
            let buf = vec![0xabu8; payload];
            // Unconnected on purpose: rx answers with ICMP port-unreachable, which a connected
            // socket would turn into ECONNREFUSED on the next send.
            for _ in 0..count {
                assert_eq!(sock.send_to(&buf, (RX_ADDR, 9)).expect("send"), payload);
            }
        });
        payload + UDP_FRAME_OVERHEAD
    }

    /// Sends each frame once from an AF_PACKET socket on the tx end: arbitrary Ethernet frames
    /// (any source address, VLAN tags, IPv6) that no stack of ours generates or answers.
    pub fn send_frames(&self, frames: &[Vec<u8>]) {
        in_netns(&self.tx, || {
            let c = std::ffi::CString::new(TX_IFACE).unwrap();
            // SAFETY: plain socket calls on values we own; the address struct is zeroed first.
            unsafe {
                let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
                assert!(
                    fd >= 0,
                    "AF_PACKET socket: {}",
                    std::io::Error::last_os_error()
                );
                let mut addr: libc::sockaddr_ll = std::mem::zeroed();
                addr.sll_family = libc::AF_PACKET as u16;
                addr.sll_ifindex = libc::if_nametoindex(c.as_ptr()) as i32;
                addr.sll_halen = 6;
                for f in frames {
                    let n = libc::sendto(
                        fd,
                        f.as_ptr().cast(),
                        f.len(),
                        0,
                        (&raw const addr).cast(),
                        size_of::<libc::sockaddr_ll>() as u32,
                    );
                    assert_eq!(n, f.len() as isize, "{}", std::io::Error::last_os_error());
                }
                libc::close(fd);
            }
        });
    }

    /// Whether the receiving interface has any XDP program attached (any mode).
    pub fn rx_has_xdp(&self) -> bool {
        let out = run(
            "ip",
            &["-n", &self.rx, "-d", "link", "show", &self.rx_iface],
        );
        let text = String::from_utf8_lossy(&out.stdout);
        text.contains("prog/xdp") || text.contains(" xdp")
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for ns in [&self.tx, &self.rx] {
            // Deleting a namespace destroys the veth end inside it (and so its peer).
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Runs `f` on a new thread that first joins the named network namespace.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = Path::new("/run/netns").join(ns);
    std::thread::scope(|s| {
        s.spawn(|| {
            let file =
                File::open(&path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
            // SAFETY: setns on a valid namespace fd affects only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Removes namespaces left by earlier test processes that were killed before their Drop ran.
fn remove_stale_namespaces() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).output();
        }
    }
}

/// Polls `f` until it returns true or `timeout` passes; returns the last answer.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The one child of process `pid` (e.g. the program `unshare --fork` started), waiting briefly
/// for it to appear.
pub fn only_child(pid: u32) -> u32 {
    let path = format!("/proc/{pid}/task/{pid}/children");
    let mut found = None;
    wait_until(Duration::from_secs(5), || {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        found = text.split_whitespace().next().and_then(|c| c.parse().ok());
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("process {pid} has no child"))
}

/// Compiles `tests/programs/<name>.c` into a fresh file and returns its path. C rather than a
/// script so the syscalls, execs and mallocs a test counts are exactly the ones the source makes.
pub fn compile_c(name: &str) -> std::path::PathBuf {
    compile_c_with(name, &[])
}

/// [`compile_c`] with extra compiler flags (e.g. `-static -nostdlib` for a program without libc).
pub fn compile_c_with(name: &str, flags: &[&str]) -> std::path::PathBuf {
    compile_c_as(name, name, "cc", flags)
}

/// [`compile_c_with`] into output file `out_name` with compiler `compiler` (e.g. `musl-gcc`, or
/// `cc` with `-m32`).
pub fn compile_c_as(
    name: &str,
    out_name: &str,
    compiler: &str,
    flags: &[&str],
) -> std::path::PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/programs")
        .join(format!("{name}.c"));
    let dir = std::env::temp_dir().join(format!("mapscope-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creating temp dir");
    let out = dir.join(out_name);
    let mut args = vec!["-O1", "-Wall"];
    args.extend_from_slice(flags);
    args.extend(["-o", out.to_str().unwrap(), src.to_str().unwrap()]);
    run(compiler, &args);
    out
}

/// A `mapscope … --json` view running as a child process: one JSON report per stdout line,
/// read on a thread so a test can wait for reports while it works.
pub struct JsonView {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl JsonView {
    /// Starts `cmd` with stdout piped (stderr is inherited by the test's output on failure).
    pub fn spawn(mut cmd: Command) -> Self {
        use std::io::BufRead as _;
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawning mapscope");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// The next report; the first one also proves the programs are attached.
    pub fn next(&self) -> serde_json::Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(15))
            .expect("no report from mapscope");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// Waits for the view to end by itself; returns its exit status, the reports not read yet
    /// and its stderr.
    pub fn wait(mut self) -> (std::process::ExitStatus, Vec<serde_json::Value>, String) {
        let status = self.child.wait().unwrap();
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            use std::io::Read as _;
            let _ = e.read_to_string(&mut stderr);
        }
        let reports = self
            .lines
            .iter()
            .map(|l| serde_json::from_str(&l).unwrap())
            .collect();
        (status, reports, stderr)
    }

    /// SIGKILL, as an OOM kill or `kill -9` would end it; returns once it is gone.
    pub fn kill9(mut self) {
        // SAFETY: kill on a child we own.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }

    /// SIGTERM after a last interval has passed; asserts a clean exit and returns the reports
    /// that had not been read yet.
    pub fn stop(mut self) -> Vec<serde_json::Value> {
        std::thread::sleep(Duration::from_millis(700));
        // SAFETY: kill on a child we own.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            use std::io::Read as _;
            let _ = e.read_to_string(&mut stderr);
        }
        assert!(status.success(), "exit {status}; stderr: {stderr}");
        self.lines
            .iter()
            .map(|l| serde_json::from_str(&l).unwrap())
            .collect()
    }
}

/// A test veth pair whose receiving end has a host-unique name (a pinned XDP attachment's
/// directory is named after its interface, and tests run in parallel), with that attachment
/// removed when the test ends, however it ends: the agent leaves it in place on purpose.
pub struct PinnedPair(NetnsPair);

impl PinnedPair {
    pub fn new(tag: &str, rx_iface: &str) -> Self {
        let pair = Self(NetnsPair::with_rx_iface(tag, rx_iface));
        pair.remove_pins();
        pair
    }

    pub fn pin_dir(&self) -> std::path::PathBuf {
        mapscope::xdp::attachment::pin_dir(&self.0.rx_iface)
    }

    pub fn remove_pins(&self) {
        let _ = std::fs::remove_dir_all(self.pin_dir());
    }
}

impl std::ops::Deref for PinnedPair {
    type Target = NetnsPair;

    fn deref(&self) -> &NetnsPair {
        &self.0
    }
}

impl Drop for PinnedPair {
    fn drop(&mut self) {
        self.remove_pins();
    }
}

/// Execs the probe as `uid` with `seq-I` for each I in `range`.
pub fn exec_seq(uid: u32, probe: &Path, range: std::ops::Range<usize>) {
    use std::os::unix::process::CommandExt as _;
    for i in range {
        let ok = Command::new(probe)
            .arg(format!("seq-{i}"))
            .uid(uid)
            .gid(uid)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}
