//! The malloc uprobe against the running kernel: a test program (tests/programs/malloc.c) calls
//! malloc an exact number of times with known sizes, pinned to known CPUs, and the per-process
//! and per-CPU counts must be exact.

mod harness;

use std::{path::PathBuf, process::Command, sync::OnceLock};

use harness::{
    BIN, JsonView, assert_one_line_error, compile_c, compile_c_with, driven::Driven, require_root,
    unprivileged,
};
use mapscope::{
    Error,
    malloc::{
        MallocStats, Snapshot, Target,
        libc::{for_process, is_libc_name},
    },
};
use mapscope_common::malloc::MallocRecord;

/// Small, odd, page-sized and mmap-sized (above glibc's 128 KiB threshold) requests.
const SIZES: [u64; 5] = [16, 100, 4096, 200_000, 1];

fn program() -> &'static PathBuf {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    PROGRAM.get_or_init(|| compile_c("malloc"))
}

fn nolibc() -> &'static PathBuf {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    PROGRAM.get_or_init(|| compile_c_with("nolibc", &["-static", "-nostdlib"]))
}

fn spawn() -> Driven {
    let args: Vec<String> = SIZES.iter().map(u64::to_string).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Driven::spawn(program(), &args)
}

fn window_bytes() -> u64 {
    SIZES.iter().sum()
}

fn attach(target: Target) -> MallocStats {
    require_root();
    MallocStats::attach(target).expect("attach")
}

fn process(snap: &Snapshot, pid: u32) -> MallocRecord {
    snap.processes
        .get(&pid)
        .map(|p| MallocRecord {
            calls: p.calls,
            bytes: p.bytes,
        })
        .unwrap_or_default()
}

fn minus(a: MallocRecord, b: MallocRecord) -> MallocRecord {
    MallocRecord {
        calls: a.calls - b.calls,
        bytes: a.bytes - b.bytes,
    }
}

/// CPUs this test may pin the program to: the first two it is allowed on.
fn cpus() -> Vec<u8> {
    // SAFETY: sched_getaffinity writes into the zeroed set we own.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set),
            0
        );
        set
    };
    (0..10u8)
        // SAFETY: CPU_ISSET reads the set.
        .filter(|&c| unsafe { libc::CPU_ISSET(c as usize, &set) })
        .take(2)
        .collect()
}

#[test]
fn pid_scope_counts_exact_calls_and_bytes_per_process_and_per_cpu() {
    let mut child = spawn();
    let pid = child.pid();
    let stats = attach(Target::Pid(pid));
    assert!(is_libc_name(&stats.libc_path().to_string_lossy()));

    let s0 = stats.snapshot().unwrap();
    let cpus = cpus();
    // Two windows on each CPU: each window is SIZES.len() mallocs on that CPU.
    for &cpu in &cpus {
        child.window(b'0' + cpu);
        child.window(b'0' + cpu);
    }
    let s1 = stats.snapshot().unwrap();

    let windows = 2 * cpus.len() as u64;
    let want = MallocRecord {
        calls: windows * SIZES.len() as u64,
        bytes: windows * window_bytes(),
    };
    assert_eq!(minus(process(&s1, pid), process(&s0, pid)), want);
    let comm = s1.processes[&pid].comm;
    assert_eq!(&comm[..7], b"malloc\0");
    // Only this process is probed, so the per-CPU values hold exactly its calls, each CPU the
    // two windows pinned to it.
    assert_eq!(minus(s1.total(), s0.total()), want);
    for (cpu, (a, b)) in s0.per_cpu.iter().zip(&s1.per_cpu).enumerate() {
        let expect = if cpus.contains(&(cpu as u8)) {
            MallocRecord {
                calls: 2 * SIZES.len() as u64,
                bytes: 2 * window_bytes(),
            }
        } else {
            MallocRecord::default()
        };
        assert_eq!(minus(*b, *a), expect, "cpu {cpu}");
    }
    assert!(child.finish().success());
}

#[test]
fn all_processes_scope_counts_the_program_exactly_among_others() {
    let mut child = spawn();
    let pid = child.pid();
    let stats = attach(Target::AllProcesses);
    let s0 = stats.snapshot().unwrap();
    for _ in 0..3 {
        child.window(b'g');
    }
    let s1 = stats.snapshot().unwrap();
    let want = MallocRecord {
        calls: 3 * SIZES.len() as u64,
        bytes: 3 * window_bytes(),
    };
    assert_eq!(minus(process(&s1, pid), process(&s0, pid)), want);
    // Every process shares the per-CPU counters here, so they hold at least the program's calls.
    let total = minus(s1.total(), s0.total());
    assert!(
        total.calls >= want.calls && total.bytes >= want.bytes,
        "{total:?}"
    );
}

#[test]
fn bin_target_probes_the_libc_the_binary_links() {
    let mut child = spawn();
    let pid = child.pid();
    let stats = attach(Target::Binary(program().clone()));
    let from_maps = for_process(pid).unwrap();
    assert_eq!(
        std::fs::canonicalize(stats.libc_path()).unwrap(),
        std::fs::canonicalize(&from_maps.path).unwrap()
    );
    let s0 = stats.snapshot().unwrap();
    child.window(b'g');
    let s1 = stats.snapshot().unwrap();
    assert_eq!(
        minus(process(&s1, pid), process(&s0, pid)),
        MallocRecord {
            calls: SIZES.len() as u64,
            bytes: window_bytes()
        }
    );
}

#[test]
fn binary_or_process_without_libc_and_unknown_pid_are_refused() {
    require_root();
    match MallocStats::attach(Target::Binary(nolibc().clone())) {
        Err(e @ Error::NoLibc { .. }) => {
            assert!(e.to_string().contains("statically linked"), "{e}")
        }
        Err(e) => panic!("expected NoLibc, got {e}"),
        Ok(_) => panic!("attached to a binary without libc"),
    }
    let mut static_child = Command::new(nolibc()).spawn().unwrap();
    match MallocStats::attach(Target::Pid(static_child.id())) {
        Err(e @ Error::NoLibc { .. }) => {
            assert!(e.to_string().contains("memory map has no libc.so"), "{e}")
        }
        Err(e) => panic!("expected NoLibc, got {e}"),
        Ok(_) => panic!("attached to a process without libc"),
    }
    static_child.kill().unwrap();
    static_child.wait().unwrap();
    match MallocStats::attach(Target::Pid(1 << 23)) {
        Err(Error::UnknownPid { pid }) => assert_eq!(pid, 1 << 23),
        Err(e) => panic!("expected UnknownPid, got {e}"),
        Ok(_) => panic!("attached to a missing process"),
    }
}

#[test]
fn cli_json_reports_the_pid_exactly_and_stops_on_sigterm() {
    require_root();
    let mut child = spawn();
    let pid = child.pid();
    let mut cmd = Command::new(BIN);
    cmd.args([
        "malloc",
        "--pid",
        &pid.to_string(),
        "--json",
        "--interval",
        "0.2",
    ]);
    let cli = JsonView::spawn(cmd);
    let first = cli.next();
    for _ in 0..4 {
        child.window(b'g');
    }
    let reports: Vec<serde_json::Value> = std::iter::once(first).chain(cli.stop()).collect();
    let want = (4 * SIZES.len() as u64, 4 * window_bytes());
    let mut top = (0, 0);
    let mut per_cpu = (0, 0);
    let mut total = (0, 0);
    for r in &reports {
        assert_eq!(r["schema"], 1);
        assert_eq!(r["target"], format!("pid {pid}"));
        for p in r["top"].as_array().unwrap() {
            assert_eq!(p["pid"], pid, "only the target is probed: {r}");
            top.0 += p["calls"].as_u64().unwrap();
            top.1 += p["bytes"].as_u64().unwrap();
        }
        for c in r["per_cpu"].as_array().unwrap() {
            per_cpu.0 += c["calls"].as_u64().unwrap();
            per_cpu.1 += c["bytes"].as_u64().unwrap();
        }
        total.0 += r["total"]["calls"].as_u64().unwrap();
        total.1 += r["total"]["bytes"].as_u64().unwrap();
    }
    assert_eq!(top, want);
    assert_eq!(per_cpu, want);
    assert_eq!(total, want);
}

#[test]
fn cli_bad_input_fails_with_one_line_naming_the_fix() {
    require_root();
    let nolibc = nolibc().to_str().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (
            &["--pid", "8388608"],
            "no process with pid 8388608: pass the pid of a running process",
        ),
        (
            &["--bin", nolibc],
            "has no libc to probe (it is statically linked",
        ),
        (&["--bin", "/nonexistent/app"], "reading /nonexistent/app"),
        (&["--interval", "0"], "--interval must be a positive"),
        (&["--top", "0"], "--top must be at least 1"),
    ];
    for (args, needle) in cases {
        let out = Command::new(BIN).arg("malloc").args(args).output().unwrap();
        assert_one_line_error(&out, needle);
    }
}

#[test]
fn cli_without_privileges_fails_with_one_line() {
    require_root();
    let out = unprivileged(&["malloc", "--count", "1"]);
    assert_one_line_error(&out, "missing privileges");
}
