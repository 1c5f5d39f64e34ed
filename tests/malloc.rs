//! The malloc uprobe against the running kernel: a test program (tests/programs/malloc.c) calls
//! malloc an exact number of times with known sizes, pinned to known CPUs, and the per-process
//! and per-CPU counts must be exact.

mod harness;

use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use harness::{
    BIN, JsonView, assert_one_line_error, compile_c, compile_c_as, compile_c_with, driven::Driven,
    only_child, require_root, unprivileged,
};
use mapscope::{
    Error,
    malloc::{
        MallocStats, Options, Snapshot, StackOptions, Target, flamegraph,
        libc::{for_process, for_self, is_libc_name},
        stacks::{Failures, HotSpots, StackReport, Weight},
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

/// The same program linked against musl (Debian's musl-tools).
fn musl_program() -> &'static PathBuf {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    PROGRAM.get_or_init(|| compile_c_as("malloc", "malloc-musl", "musl-gcc", &[]))
}

fn size_args() -> Vec<String> {
    SIZES.iter().map(u64::to_string).collect()
}

fn spawn() -> Driven {
    spawn_via(&[], program())
}

/// Starts `program` with the sizes through a launcher command (`env …`, `unshare …`) that
/// ends up exec'ing it, so the pid is the program's.
fn spawn_via(launcher: &[&str], program: &Path) -> Driven {
    let sizes = size_args();
    let mut args: Vec<&str> = launcher.to_vec();
    args.push(program.to_str().unwrap());
    args.extend(sizes.iter().map(String::as_str));
    match args.split_first() {
        Some((first, rest)) if !launcher.is_empty() => Driven::spawn(Path::new(first), rest),
        _ => Driven::spawn(program, &args[1..]),
    }
}

/// One window's worth of mallocs.
fn one_window() -> MallocRecord {
    MallocRecord {
        calls: SIZES.len() as u64,
        bytes: window_bytes(),
    }
}

/// Sums `calls`/`bytes` of the `top` rows of pid `pid` over JSON reports.
fn sum_top(reports: &[serde_json::Value], pid: u32) -> (u64, u64) {
    reports
        .iter()
        .flat_map(|r| r["top"].as_array().unwrap().clone())
        .filter(|p| p["pid"] == pid)
        .fold((0, 0), |(c, b), p| {
            (
                c + p["calls"].as_u64().unwrap(),
                b + p["bytes"].as_u64().unwrap(),
            )
        })
}

/// A copy of this host's libc (a distinct file: another inode) in a temp directory, as an
/// image's own libc would be.
fn libc_copy() -> &'static PathBuf {
    static COPY: OnceLock<PathBuf> = OnceLock::new();
    COPY.get_or_init(|| {
        let dir = std::env::temp_dir()
            .join(format!("mapscope-test-{}", std::process::id()))
            .join("libc-copy");
        std::fs::create_dir_all(&dir).unwrap();
        let copy = dir.join("libc.so.6");
        std::fs::copy(host_libc(), &copy).unwrap();
        copy
    })
}

/// The libc this test process maps.
fn host_libc() -> PathBuf {
    for_self().unwrap().path
}

fn file_id(path: &Path) -> (u64, u64) {
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.dev(), m.ino())
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
        assert_eq!(r["schema"], 2);
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
        (
            &["--bin", "/nonexistent/app"],
            "cannot read /nonexistent/app (no such file): pass the path of an existing program",
        ),
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

#[test]
fn in_a_pid_namespace_the_process_table_shows_the_namespace_pid() {
    require_root();
    let mut target = spawn_via(&["unshare", "--pid", "--fork", "--mount-proc"], program());
    let host_pid = only_child(target.pid());
    let mut cmd = Command::new("nsenter");
    cmd.args([
        "--target",
        &host_pid.to_string(),
        "--pid",
        "--mount",
        "--",
        BIN,
    ])
    .args([
        "malloc",
        "--pid",
        "1",
        "--json",
        "--interval",
        "0.2",
        "--count",
        "6",
    ]);
    let cli = JsonView::spawn(cmd);
    let first = cli.next();
    target.window(b'g');
    target.window(b'g');
    let (status, rest, stderr) = cli.wait();
    assert!(status.success(), "{stderr}");
    let reports: Vec<serde_json::Value> = std::iter::once(first).chain(rest).collect();
    // Before pid translation the row carried the host's pid of the program.
    for r in &reports {
        for p in r["top"].as_array().unwrap() {
            assert_eq!(p["pid"], 1, "{r}");
        }
    }
    assert_eq!(
        sum_top(&reports, 1),
        (2 * SIZES.len() as u64, 2 * window_bytes())
    );
    assert!(target.finish().success());
}

#[test]
fn cli_pid_view_stops_when_the_process_exits() {
    require_root();
    let child = spawn();
    let pid = child.pid();
    let reports = child.pid_view_until_exit(&["malloc"], b'g', 2);
    assert_eq!(
        sum_top(&reports, pid),
        (2 * SIZES.len() as u64, 2 * window_bytes())
    );
}

#[test]
fn all_processes_probe_every_distinct_libc_once_across_copies_and_mount_namespaces() {
    require_root();
    let host = host_libc();
    let copy = libc_copy();
    // a: the host's libc; b: the copy, found by the loader through LD_LIBRARY_PATH; c: the
    // copy too, bind-mounted over the host's libc path in a mount namespace of its own, as an
    // image's libc sits at the usual path inside a container.
    let mut a = spawn();
    let ld_path = format!("LD_LIBRARY_PATH={}", copy.parent().unwrap().display());
    let mut b = spawn_via(&["env", &ld_path], program());
    let script = format!(
        "mount --bind {} {} && exec \"$0\" \"$@\"",
        copy.display(),
        host.display()
    );
    let mut c = spawn_via(&["unshare", "--mount", "sh", "-c", &script], program());
    assert_eq!(for_process(b.pid()).unwrap().path, *copy);
    let c_libc = for_process(c.pid()).unwrap();
    assert_eq!(
        c_libc.path, host,
        "the copy sits at the host's path in c's namespace"
    );
    assert_eq!(
        file_id(&c_libc.attach_path),
        file_id(copy),
        "resolved in c's namespace"
    );

    let stats = attach(Target::AllProcesses);
    let ids: Vec<(u64, u64)> = stats
        .libcs()
        .iter()
        .map(|l| file_id(&l.attach_path))
        .collect();
    for id in [file_id(&host), file_id(copy)] {
        assert_eq!(
            ids.iter().filter(|&&i| i == id).count(),
            1,
            "each file probed exactly once: {:?}",
            stats.libcs()
        );
    }
    let s0 = stats.snapshot().unwrap();
    for d in [&mut a, &mut b, &mut c] {
        d.window(b'g');
    }
    let s1 = stats.snapshot().unwrap();
    // Exact for each: a probe placed twice in the copy (b's path and c's) would count b and c
    // twice.
    for d in [&a, &b, &c] {
        assert_eq!(
            minus(process(&s1, d.pid()), process(&s0, d.pid())),
            one_window(),
            "pid {}",
            d.pid()
        );
    }
}

#[test]
fn mapscope_in_a_container_like_mount_namespace_still_counts_host_processes() {
    require_root();
    let host = host_libc();
    let copy = libc_copy();
    let mut a = spawn();
    // mapscope itself maps the copy (an image's libc): before, it probed only that one.
    let script = format!(
        "mount --bind {} {} && exec {BIN} malloc --json --interval 0.2 --count 6",
        copy.display(),
        host.display()
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "sh", "-c", &script]);
    let cli = JsonView::spawn(cmd);
    let first = cli.next();
    a.window(b'g');
    a.window(b'g');
    let (status, rest, stderr) = cli.wait();
    assert!(status.success(), "{stderr}");
    let libcs: Vec<String> = first["libcs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    assert!(
        libcs
            .iter()
            .any(|l| l.starts_with("/proc/") && l.ends_with(&*host.to_string_lossy())),
        "the host's libc is reached through another process's root: {libcs:?}"
    );
    let reports: Vec<serde_json::Value> = std::iter::once(first).chain(rest).collect();
    assert_eq!(
        sum_top(&reports, a.pid()),
        (2 * SIZES.len() as u64, 2 * window_bytes())
    );
}

#[test]
fn musl_programs_are_probed_by_pid_by_binary_and_among_all_processes() {
    require_root();
    let musl = musl_program();
    let mut child = spawn_via(&[], musl);
    let pid = child.pid();
    for target in [
        Target::Pid(pid),
        Target::Binary(musl.clone()),
        Target::AllProcesses,
    ] {
        let stats = attach(target.clone());
        let musl_libc = stats
            .libcs()
            .iter()
            .find(|l| l.path.to_string_lossy().contains("musl"))
            .unwrap_or_else(|| panic!("{target:?}: no musl libc in {:?}", stats.libcs()));
        if let Target::Binary(_) = target {
            // musl's loader is its libc.
            assert_eq!(musl_libc.path, Path::new("/lib/ld-musl-x86_64.so.1"));
        }
        let s0 = stats.snapshot().unwrap();
        child.window(b'g');
        let s1 = stats.snapshot().unwrap();
        assert_eq!(
            minus(process(&s1, pid), process(&s0, pid)),
            one_window(),
            "{target:?}"
        );
    }
    assert!(child.finish().success());
}

/// Calls and sizes of the two call paths of tests/programs/malloc_stacks.c.
const A: u64 = 37;
const S: u64 = 24;
const B: u64 = 5;
const BSIZE: u64 = 3000;

/// The two-path program, with frame pointers and debug info.
fn stacks_program() -> &'static PathBuf {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    PROGRAM.get_or_init(|| {
        compile_c_with(
            "malloc_stacks",
            &[
                "-g",
                "-fno-omit-frame-pointer",
                "-mno-omit-leaf-frame-pointer",
                "-fno-inline",
                "-fno-optimize-sibling-calls",
            ],
        )
    })
}

/// The same binary without any symbols.
fn stripped_program() -> &'static PathBuf {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    PROGRAM.get_or_init(|| {
        let stripped = stacks_program().with_file_name("malloc_stacks_stripped");
        std::fs::copy(stacks_program(), &stripped).unwrap();
        harness::run("strip", &["--strip-all", stripped.to_str().unwrap()]);
        stripped
    })
}

fn spawn_stacks(program: &Path) -> Driven {
    Driven::spawn(
        program,
        &[
            &A.to_string(),
            &S.to_string(),
            &B.to_string(),
            &BSIZE.to_string(),
        ],
    )
}

fn attach_stacks(pid: u32, stacks: StackOptions) -> MallocStats {
    require_root();
    MallocStats::attach_with(
        Target::Pid(pid),
        Options {
            stacks: Some(stacks),
        },
    )
    .expect("attach with stacks")
}

/// Runs `windows` windows of the program between two resolved snapshots.
fn stack_windows(
    stats: &MallocStats,
    hot: &mut HotSpots,
    child: &mut Driven,
    windows: usize,
) -> (Snapshot, Snapshot) {
    let s0 = stats.snapshot().unwrap();
    hot.resolve(stats, &s0).unwrap();
    for _ in 0..windows {
        child.window(b'g');
    }
    let s1 = stats.snapshot().unwrap();
    hot.resolve(stats, &s1).unwrap();
    (s0, s1)
}

fn function_names(row: &mapscope::malloc::stacks::StackRow) -> Vec<String> {
    row.frames
        .iter()
        .map(|f| f.function.clone().unwrap_or_else(|| "?".into()))
        .collect()
}

#[test]
fn stacks_name_both_call_paths_with_exact_calls_and_bytes() {
    let mut child = spawn_stacks(stacks_program());
    let pid = child.pid();
    let stats = attach_stacks(pid, StackOptions::default());
    let mut hot = HotSpots::new();
    let (s0, s1) = stack_windows(&stats, &mut hot, &mut child, 2);
    let report: StackReport = hot.report(&s0, &s1, Weight::Bytes, 10);
    assert_eq!(report.failed, Failures::default());
    assert_eq!(report.stacks, 2, "{}", report.table());
    let (big, small) = (&report.top[0], &report.top[1]);
    assert_eq!((big.calls, big.bytes), (2 * B, 2 * B * BSIZE));
    assert_eq!((small.calls, small.bytes), (2 * A, 2 * A * S));
    assert_eq!((big.pid, big.comm.as_str()), (pid, "malloc_stacks"));
    for (row, alloc, path) in [
        (big, "alloc_big", "path_big"),
        (small, "alloc_small", "path_small"),
    ] {
        let names = function_names(row);
        // Leaf first: malloc, then its caller — which a frame-pointer walk from malloc's first
        // instruction skips, and the probe recovers from the return address on the stack.
        assert_eq!(
            names[..4],
            ["malloc", alloc, path, "main"],
            "{}",
            report.table()
        );
        assert!(
            row.frames[0].module.ends_with("libc.so.6"),
            "{:?}",
            row.frames[0]
        );
        assert_eq!(row.frames[1].module, stacks_program().to_string_lossy());
        assert!(
            row.frames[1].line.is_some(),
            "DWARF lines: {:?}",
            row.frames[1]
        );
    }
    let table = report.table();
    assert!(table.contains("alloc_big+0x"), "{table}");
    assert!(
        table.contains("malloc (libc.so.6)") || table.contains("malloc+0x0 (libc.so.6)"),
        "{table}"
    );

    // Calls ranks the other way round.
    let by_calls = hot.report(&s0, &s1, Weight::Calls, 1);
    assert_eq!((by_calls.top.len(), by_calls.top[0].calls), (1, 2 * A));

    // The folded profile of the run: one line per path with its bytes, and the flame graph.
    let folded = hot.folded(&s1, Weight::Bytes);
    let line = |path: &str| {
        let found: Vec<&String> = folded.iter().filter(|l| l.contains(path)).collect();
        assert_eq!(found.len(), 1, "{folded:?}");
        found[0].clone()
    };
    let small_line = line(";main;path_small;alloc_small;malloc ");
    assert!(small_line.starts_with("malloc_stacks;"), "{small_line}");
    assert!(
        small_line.ends_with(&format!(" {}", 2 * A * S)),
        "{small_line}"
    );
    assert!(line(";main;path_big;alloc_big;malloc ").ends_with(&format!(" {}", 2 * B * BSIZE)));
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("malloc.svg");
    flamegraph::write_flamegraph(&svg, &folded, Weight::Bytes, "test").unwrap();
    let svg = std::fs::read_to_string(svg).unwrap();
    assert!(svg.contains("alloc_small") && svg.contains("alloc_big") && svg.contains("path_big"));
    assert!(child.finish().success());
}

#[test]
fn a_stripped_binary_falls_back_to_module_and_offset() {
    let mut child = spawn_stacks(stripped_program());
    let stats = attach_stacks(child.pid(), StackOptions::default());
    let mut hot = HotSpots::new();
    let (s0, s1) = stack_windows(&stats, &mut hot, &mut child, 1);
    let report = hot.report(&s0, &s1, Weight::Bytes, 10);
    assert_eq!(report.stacks, 2);
    for row in &report.top {
        // libc still has its exported symbols; the program has none left.
        assert_eq!(row.frames[0].function.as_deref(), Some("malloc"));
        let caller = &row.frames[1];
        assert_eq!(caller.function, None, "{caller:?}");
        assert_eq!(caller.module, stripped_program().to_string_lossy());
        assert!(caller.offset > 0);
        assert_eq!(
            caller.display(),
            format!("malloc_stacks_stripped+{:#x}", caller.offset)
        );
    }
    // The two callers are two different offsets.
    assert_ne!(
        report.top[0].frames[1].offset,
        report.top[1].frames[1].offset
    );
    let folded = hot.folded(&s1, Weight::Calls);
    assert!(
        folded
            .iter()
            .any(|l| l.contains(";malloc_stacks_stripped+0x") && l.ends_with(&format!(" {A}"))),
        "{folded:?}"
    );
    assert!(child.finish().success());
}

#[test]
fn stacks_of_an_exited_process_still_resolve_by_module_and_offset() {
    let mut child = spawn_stacks(stacks_program());
    let pid = child.pid();
    let stats = attach_stacks(pid, StackOptions::default());
    // `hot` read the process's mappings while it ran (as `--pid` does at start); `late` never
    // saw it alive.
    let mut hot = HotSpots::new();
    hot.preload(pid);
    let mut late = HotSpots::new();
    let s0 = stats.snapshot().unwrap();
    child.window(b'g');
    assert!(child.finish().success());
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    // Both stacks are first seen now, after the exit.
    let s1 = stats.snapshot().unwrap();
    hot.resolve(&stats, &s1).unwrap();
    late.resolve(&stats, &s1).unwrap();
    let r = hot.report(&s0, &s1, Weight::Bytes, 10);
    assert_eq!(r.top.len(), 2);
    for row in &r.top {
        assert_eq!(row.frames[1].module, stacks_program().to_string_lossy());
        assert!(row.frames[1].offset > 0);
    }
    // The binary is still on disk, so even the names come back.
    assert_eq!(
        function_names(&r.top[1])[..3],
        ["malloc", "alloc_small", "path_small"]
    );
    // Without the mappings there is nothing to go on but addresses.
    let unknown = late.report(&s0, &s1, Weight::Bytes, 10);
    assert!(
        unknown
            .top
            .iter()
            .flat_map(|r| &r.frames)
            .all(|f| f.module == "[unknown]")
    );
}

#[test]
fn failed_stack_captures_are_counted_exactly() {
    // One stack slot: path_small's stack takes it, every path_big call then collides.
    let mut child = spawn_stacks(stacks_program());
    let stats = attach_stacks(
        child.pid(),
        StackOptions {
            max_stacks: 1,
            max_keys: 64,
        },
    );
    let mut hot = HotSpots::new();
    let (s0, s1) = stack_windows(&stats, &mut hot, &mut child, 1);
    let r = hot.report(&s0, &s1, Weight::Bytes, 10);
    assert_eq!(
        r.failed,
        Failures {
            collisions: B,
            ..Failures::default()
        }
    );
    assert_eq!((r.stacks, r.top[0].calls), (1, A));
    assert!(
        r.table()
            .contains(&format!("failed captures: {B} collisions")),
        "{}",
        r.table()
    );
    assert_eq!(r.failed.lost(), B);
    drop(stats);

    // One counter: path_small's key takes it, every path_big call finds the map full.
    let stats = attach_stacks(
        child.pid(),
        StackOptions {
            max_stacks: 64,
            max_keys: 1,
        },
    );
    let (s0, s1) = stack_windows(&stats, &mut hot, &mut child, 1);
    let r = hot.report(&s0, &s1, Weight::Bytes, 10);
    assert_eq!(
        r.failed,
        Failures {
            counts_full: B,
            ..Failures::default()
        }
    );
    // The plain counters still see every call.
    assert_eq!(
        minus(process(&s1, child.pid()), process(&s0, child.pid())),
        MallocRecord {
            calls: A + B,
            bytes: A * S + B * BSIZE
        }
    );
    assert!(child.finish().success());
}

#[test]
fn cli_stacks_json_folded_and_flame_graph() {
    require_root();
    let mut child = spawn_stacks(stacks_program());
    let pid = child.pid();
    let dir = tempfile::tempdir().unwrap();
    let (folded, svg) = (dir.path().join("run.folded"), dir.path().join("run.svg"));
    let mut cmd = Command::new(BIN);
    cmd.args(["malloc", "--stacks", "--pid", &pid.to_string(), "--json"])
        .args(["--interval", "0.2", "--top", "5", "--count", "100"])
        .arg("--folded")
        .arg(&folded)
        .arg("--flamegraph")
        .arg(&svg);
    let cli = JsonView::spawn(cmd);
    let first = cli.next();
    for _ in 0..3 {
        child.window(b'g');
    }
    assert!(child.finish().success());
    let (status, rest, stderr) = cli.wait();
    assert!(status.success(), "{stderr}");
    let reports: Vec<serde_json::Value> = std::iter::once(first).chain(rest).collect();
    let mut per_path = std::collections::BTreeMap::<String, (u64, u64)>::new();
    for r in &reports {
        assert_eq!(r["stacks"]["failed"]["collisions"], 0);
        for row in r["stacks"]["top"].as_array().unwrap() {
            let caller = row["frames"][1]["function"].as_str().unwrap().to_string();
            assert_eq!(row["frames"][0]["function"], "malloc");
            let e = per_path.entry(caller).or_default();
            e.0 += row["calls"].as_u64().unwrap();
            e.1 += row["bytes"].as_u64().unwrap();
        }
    }
    assert_eq!(
        per_path,
        [
            ("alloc_big".to_string(), (3 * B, 3 * B * BSIZE)),
            ("alloc_small".to_string(), (3 * A, 3 * A * S))
        ]
        .into()
    );
    let folded = std::fs::read_to_string(&folded).unwrap();
    assert_eq!(folded.lines().count(), 2, "{folded}");
    assert!(
        folded
            .lines()
            .any(|l| l.contains(";path_small;alloc_small;malloc ")
                && l.ends_with(&format!(" {}", 3 * A * S)))
    );
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.contains("alloc_small") && svg.contains("alloc_big"));
}

#[test]
fn cli_stacks_bad_input_fails_with_one_line() {
    require_root();
    let cases: [(&[&str], &str); 4] = [
        (&["--folded", "/tmp/x.folded"], "--stacks"),
        (
            &[
                "--stacks",
                "--flamegraph",
                "/nonexistent/dir/x.svg",
                "--count",
                "1",
            ],
            "cannot write --flamegraph /nonexistent/dir/x.svg",
        ),
        (
            &["--stacks", "--max-stacks", "0"],
            "--max-stacks must be at least 1",
        ),
        (&["--stacks", "--by", "size"], "invalid value 'size'"),
    ];
    for (args, needle) in cases {
        let out = Command::new(BIN).arg("malloc").args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
