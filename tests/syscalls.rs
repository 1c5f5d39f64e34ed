//! Syscall counting through the tail-call dispatcher against the running kernel: a test program
//! (tests/programs/syscalls.c) makes an exact set of syscalls in a window, and the counts for
//! it must be exact — per syscall, in the dedicated handlers' own counters, with the jump
//! table still populated after a delay, and as failed tail calls when a slot is emptied.

mod harness;

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::Duration,
};

use harness::{
    BIN, JsonView, assert_one_line_error, compile_c, compile_c_as, driven::Driven, only_child,
    require_root, unprivileged,
};
use mapscope::{
    Error,
    syscalls::{Selection, Snapshot, SyscallCounter, names, program_for},
};
use mapscope_common::syscalls::{
    FILTER_COMM, FILTER_TGID, Filter, Handled, HandlerRecord, SYSCALL_SLOTS,
};

fn program() -> &'static PathBuf {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    PROGRAM.get_or_init(|| compile_c("syscalls"))
}

/// The same program built as a 32-bit static binary: every syscall it makes is an ia32 one.
fn program32() -> &'static PathBuf {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    PROGRAM.get_or_init(|| compile_c_as("syscalls", "syscalls32", "cc", &["-m32", "-static"]))
}

/// Sums the `count` of syscall `name` in `key` ("syscalls" or "compat_syscalls") over reports.
fn sum_of(reports: &[serde_json::Value], key: &str, name: &str) -> u64 {
    reports
        .iter()
        .flat_map(|r| r[key].as_array().unwrap().clone())
        .filter(|s| s["name"] == name)
        .map(|s| s["count"].as_u64().unwrap())
        .sum()
}

/// `nsenter` into the pid and mount namespaces of `host_pid`, running mapscope (`exe`) there.
fn in_namespaces_of(host_pid: u32, exe: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.args(["--target", &host_pid.to_string(), "--pid", "--mount", "--"])
        .arg(exe)
        .args(args);
    cmd
}

fn nr(name: &str) -> u32 {
    names::number(name).unwrap_or_else(|| panic!("{name} not in the table"))
}

fn pid_filter(pid: u32) -> Filter {
    Filter {
        flags: FILTER_TGID,
        tgid: pid,
        ..Filter::default()
    }
}

fn attach(filter: Filter) -> SyscallCounter {
    require_root();
    SyscallCounter::attach(filter).expect("attach")
}

/// Per-syscall deltas between two snapshots, only the nonzero ones, by name, without `poll`:
/// the test program idles in poll between windows and may enter it just before or just after a
/// snapshot, so poll is the one syscall whose count is not deterministic.
fn deltas(prev: &Snapshot, cur: &Snapshot) -> Vec<(String, u64)> {
    (0..SYSCALL_SLOTS)
        .filter(|&n| n != nr("poll"))
        .filter_map(|n| {
            let d = cur.count(n) - prev.count(n);
            (d > 0).then(|| (mapscope::syscalls::report::display_name(n), d))
        })
        .collect()
}

fn delta(prev: &Snapshot, cur: &Snapshot, name: &str) -> u64 {
    cur.count(nr(name)) - prev.count(nr(name))
}

fn handler_delta(prev: &Snapshot, cur: &Snapshot, h: Handled) -> HandlerRecord {
    let (p, c) = (prev.handler(h), cur.handler(h));
    HandlerRecord {
        calls: c.calls - p.calls,
        detail: c.detail - p.detail,
    }
}

/// Asserts that the window's syscalls are exactly `want` plus the one read of the go byte and
/// the one write of the answer (poll aside, see [`deltas`]).
fn assert_window(prev: &Snapshot, cur: &Snapshot, want: &[(&str, u64)]) {
    let mut want: Vec<(String, u64)> = want.iter().map(|&(n, c)| (n.to_string(), c)).collect();
    for rw in ["read", "write"] {
        match want.iter_mut().find(|(n, _)| n == rw) {
            Some((_, c)) => *c += 1,
            None => want.push((rw.to_string(), 1)),
        }
    }
    let mut got = deltas(prev, cur);
    want.sort();
    got.sort();
    assert_eq!(got, want, "window counts");
    assert_eq!(
        cur.tail_call_failed, prev.tail_call_failed,
        "failed tail calls"
    );
}

#[test]
fn pid_filter_counts_a_rare_syscall_exactly_and_can_be_changed_at_run_time() {
    let mut a = Driven::spawn(program(), &["msc-pid-a", "personality:17"]);
    let mut b = Driven::spawn(program(), &["msc-pid-b", "personality:3"]);
    let mut counter = attach(pid_filter(a.pid()));

    let s0 = counter.snapshot().unwrap();
    a.window(b'g');
    b.window(b'g');
    let s1 = counter.snapshot().unwrap();
    assert_window(&s0, &s1, &[("personality", 17)]);

    // Point the same loaded program at the other process: only b is counted now.
    counter.set_filter(pid_filter(b.pid())).unwrap();
    assert_eq!(counter.filter().tgid, b.pid());
    a.window(b'g');
    b.window(b'g');
    let s2 = counter.snapshot().unwrap();
    assert_window(&s1, &s2, &[("personality", 3)]);
    assert!(a.finish().success());
    assert!(b.finish().success());
}

#[test]
fn comm_filter_counts_exactly_and_combines_with_pid() {
    let comm = format!("msc-c{}", std::process::id() % 100_000);
    let mut child = Driven::spawn(program(), &[&comm, "personality:9"]);
    let mut counter = attach(
        Selection {
            pid: None,
            comm: Some(comm.clone()),
        }
        .to_filter()
        .unwrap(),
    );
    assert_eq!(counter.filter().flags, FILTER_COMM);

    let s0 = counter.snapshot().unwrap();
    child.window(b'g');
    let s1 = counter.snapshot().unwrap();
    assert_window(&s0, &s1, &[("personality", 9)]);

    // pid AND comm: a matching pid with another comm counts nothing.
    counter
        .set_filter(
            Selection {
                pid: Some(child.pid()),
                comm: Some("msc-nomatch".into()),
            }
            .to_filter()
            .unwrap(),
        )
        .unwrap();
    child.window(b'g');
    let s2 = counter.snapshot().unwrap();
    assert_eq!(deltas(&s1, &s2), [], "nothing matches pid AND comm");
}

#[test]
fn timer_syscalls_reach_their_own_handler_with_exact_counts() {
    let mut child = Driven::spawn(program(), &["msc-timers", "timers:7"]);
    let counter = attach(pid_filter(child.pid()));
    let s0 = counter.snapshot().unwrap();
    child.window(b'g');
    let s1 = counter.snapshot().unwrap();
    let want = [
        ("timer_create", 7),
        ("timer_settime", 7),
        ("timer_gettime", 14),
        ("timer_getoverrun", 21),
        ("timer_delete", 7),
    ];
    assert_window(&s0, &s1, &want);
    for (h, calls) in [
        (Handled::TimerCreate, 7),
        (Handled::TimerSettime, 7),
        (Handled::TimerGettime, 14),
        (Handled::TimerGetoverrun, 21),
        (Handled::TimerDelete, 7),
    ] {
        assert_eq!(
            handler_delta(&s0, &s1, h),
            HandlerRecord { calls, detail: 0 },
            "{h:?}"
        );
        assert_eq!(program_for(h.nr()), "sc_timer");
    }
}

#[test]
fn read_write_and_open_handlers_keep_their_own_counters() {
    const N: u64 = 11;
    let mut child = Driven::spawn(program(), &["msc-rw", &format!("rw:{N}")]);
    let counter = attach(pid_filter(child.pid()));
    let s0 = counter.snapshot().unwrap();
    child.window(b'g');
    let s1 = counter.snapshot().unwrap();
    assert_window(
        &s0,
        &s1,
        &[
            ("open", 1),
            ("openat", 1),
            ("read", N),
            ("write", N),
            ("close", 2),
        ],
    );
    // Plus the 1-byte read of the go byte and the 1-byte write of the answer.
    let expect = [
        (Handled::Read, N + 1, 64 * N + 1),
        (Handled::Write, N + 1, 100 * N + 1),
        (Handled::Open, 1, 0),
        (Handled::Openat, 1, 1),
    ];
    for (h, calls, detail) in expect {
        assert_eq!(
            handler_delta(&s0, &s1, h),
            HandlerRecord { calls, detail },
            "{h:?}"
        );
    }
}

#[test]
fn execve_reaches_its_handler() {
    let child = Driven::spawn(program(), &["msc-exec"]);
    let counter = attach(pid_filter(child.pid()));
    let s0 = counter.snapshot().unwrap();
    assert!(child.send_and_wait(b'e').success());
    let s1 = counter.snapshot().unwrap();
    assert_eq!(delta(&s0, &s1, "execve"), 1);
    assert_eq!(
        handler_delta(&s0, &s1, Handled::Execve),
        HandlerRecord {
            calls: 1,
            detail: 0
        }
    );
    assert_eq!(handler_delta(&s0, &s1, Handled::Execveat).calls, 0);
}

#[test]
fn unfiltered_counter_sees_a_syscall_nobody_else_makes() {
    let mut child = Driven::spawn(program(), &["msc-tux", "tuxcall:5"]);
    let counter = attach(Selection::default().to_filter().unwrap());
    let s0 = counter.snapshot().unwrap();
    child.window(b'g');
    let s1 = counter.snapshot().unwrap();
    assert_eq!(delta(&s0, &s1, "tuxcall"), 5);
}

#[test]
fn dispatch_table_stays_populated_for_the_whole_run() {
    let mut child = Driven::spawn(program(), &["msc-table", "timers:3", "personality:4"]);
    let counter = attach(pid_filter(child.pid()));
    let check_table = |when: &str| {
        let view = counter.dispatch_table().unwrap();
        assert_eq!(view.populated(), SYSCALL_SLOTS as usize, "{when}");
        for n in 0..SYSCALL_SLOTS {
            assert_eq!(view.program(n), Some(program_for(n)), "{when}: slot {n}");
        }
    };
    check_table("after attach");
    // Long enough for any fd-close emptying of the table to have happened.
    std::thread::sleep(Duration::from_secs(3));
    check_table("after 3 s");

    let s0 = counter.snapshot().unwrap();
    assert_eq!(s0.dispatch_populated, SYSCALL_SLOTS as usize);
    child.window(b'g');
    let s1 = counter.snapshot().unwrap();
    assert_window(
        &s0,
        &s1,
        &[
            ("timer_create", 3),
            ("timer_settime", 3),
            ("timer_gettime", 6),
            ("timer_getoverrun", 9),
            ("timer_delete", 3),
            ("personality", 4),
        ],
    );
    assert_eq!(handler_delta(&s0, &s1, Handled::TimerDelete).calls, 3);
}

#[test]
fn emptied_slot_counts_each_call_as_a_failed_tail_call_and_restoring_it_resumes_counting() {
    const N: u64 = 13;
    let personality = nr("personality");
    let mut child = Driven::spawn(program(), &["msc-tcfail", &format!("personality:{N}")]);
    let mut counter = attach(pid_filter(child.pid()));

    // Fault injection: personality's slot goes empty, every other slot stays as it was.
    counter.empty_dispatch_slot(personality).unwrap();
    let view = counter.dispatch_table().unwrap();
    assert_eq!(view.program(personality), None);
    assert_eq!(view.populated(), SYSCALL_SLOTS as usize - 1);
    for n in (0..SYSCALL_SLOTS).filter(|&n| n != personality) {
        assert_eq!(view.program(n), Some(program_for(n)), "slot {n}");
    }

    let s0 = counter.snapshot().unwrap();
    assert_eq!(s0.dispatch_populated, SYSCALL_SLOTS as usize - 1);
    child.window(b'g');
    let s1 = counter.snapshot().unwrap();
    assert_eq!(
        s1.tail_call_failed - s0.tail_call_failed,
        N,
        "every personality call is a failed tail call"
    );
    assert_eq!(delta(&s0, &s1, "personality"), 0, "personality not counted");
    assert_eq!(s1.out_of_range, s0.out_of_range);
    // The window's other syscalls still reach their handlers.
    assert_eq!(
        deltas(&s0, &s1),
        [("read".to_string(), 1), ("write".to_string(), 1)]
    );
    let table = mapscope::syscalls::report::Interval::between("x", &s0, &s1, &[], 10).table();
    assert!(
        table.contains(&format!("tail calls failed: {N} ")),
        "{table}"
    );
    assert!(table.contains("WARNING: only 511 of 512"), "{table}");

    counter.restore_dispatch_slot(personality).unwrap();
    let view = counter.dispatch_table().unwrap();
    assert_eq!(view.program(personality), Some("sc_default"));
    assert_eq!(view.populated(), SYSCALL_SLOTS as usize);
    child.window(b'g');
    let s2 = counter.snapshot().unwrap();
    // Exact counts again, and no new failed tail call (assert_window checks both).
    assert_window(&s1, &s2, &[("personality", N)]);
    assert_eq!(s2.dispatch_populated, SYSCALL_SLOTS as usize);
    assert!(child.finish().success());
}

#[test]
fn cli_json_counts_the_pid_exactly_and_stops_on_sigterm() {
    require_root();
    let mut target = Driven::spawn(program(), &["msc-cli", "personality:13", "timers:2"]);
    let pid = target.pid().to_string();
    let mut cmd = Command::new(BIN);
    cmd.args(["syscalls", "--pid", &pid, "--json", "--interval", "0.2"])
        .args(["--syscall", "personality,timer_create,tuxcall"]);
    let cli = JsonView::spawn(cmd);
    // The first report means the dispatcher is attached.
    let first = cli.next();
    target.window(b'g');
    target.window(b'g');
    let reports: Vec<serde_json::Value> = std::iter::once(first).chain(cli.stop()).collect();
    assert!(reports.len() >= 3, "{reports:?}");
    let sum = |name: &str| -> u64 {
        reports
            .iter()
            .flat_map(|r| r["syscalls"].as_array().unwrap().clone())
            .filter(|s| s["name"] == name)
            .map(|s| s["count"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(sum("personality"), 26);
    assert_eq!(sum("timer_create"), 4);
    assert_eq!(sum("tuxcall"), 0);
    let last = reports.last().unwrap();
    assert_eq!(last["schema"], 1);
    assert_eq!(last["filter"], format!("pid {pid}"));
    assert_eq!(last["syscalls"].as_array().unwrap().len(), 3);
    assert_eq!(last["dispatch_populated"], SYSCALL_SLOTS);
    assert_eq!(last["tail_call_failed"], 0);
    let timer_delete_calls: u64 = reports
        .iter()
        .map(|r| {
            r["handlers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|h| h["name"] == "timer_delete")
                .unwrap()["calls"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(timer_delete_calls, 4);
}

#[test]
fn cli_tables_count_and_list() {
    require_root();
    let out = Command::new(BIN)
        .args([
            "syscalls",
            "--interval",
            "0.1",
            "--count",
            "2",
            "--top",
            "3",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.matches("jump table 512/512 slots").count(),
        2,
        "{stdout}"
    );
    assert_eq!(stdout.matches("dedicated handlers").count(), 2, "{stdout}");
    // Every handler table lists all handled syscalls (the top-3 table may add more rows).
    assert!(stdout.matches("timer_create").count() >= 2, "{stdout}");

    let list = Command::new(BIN)
        .args(["syscalls", "--list"])
        .output()
        .unwrap();
    assert!(list.status.success());
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().eq(["226", "timer_delete", "sc_timer"])),
        "{list}"
    );
}

#[test]
fn cli_bad_input_fails_with_one_line_naming_the_fix() {
    require_root();
    let cases: [(&[&str], &str); 6] = [
        (
            &["--pid", "8388608"],
            "no process with pid 8388608: pass the pid of a running process",
        ),
        (
            &["--syscall", "openat,nosuchcall"],
            "unknown syscall name \"nosuchcall\"",
        ),
        (&["--interval", "0"], "--interval must be a positive"),
        (&["--count", "0"], "--count must be at least 1"),
        (&["--top", "0"], "--top must be at least 1"),
        (
            &["--comm", "a-very-long-command"],
            "pass the first 15 bytes",
        ),
    ];
    for (args, needle) in cases {
        let out = Command::new(BIN)
            .arg("syscalls")
            .args(args)
            .output()
            .unwrap();
        assert_one_line_error(&out, needle);
    }
}

#[test]
fn library_refuses_unknown_pid_before_loading() {
    let err = Selection {
        pid: Some(1 << 23),
        comm: None,
    }
    .to_filter()
    .unwrap_err();
    assert!(matches!(err, Error::UnknownPid { .. }), "{err}");
}

#[test]
fn cli_without_privileges_fails_with_one_line() {
    require_root();
    let out = unprivileged(&["syscalls", "--count", "1"]);
    assert_one_line_error(&out, "missing privileges");
}

#[test]
fn in_a_pid_namespace_pids_are_the_namespace_pids_and_mapscope_still_excludes_itself() {
    require_root();
    // The program is pid 1 of a new pid namespace (with its own /proc, as in a container).
    let args = [
        "--pid",
        "--fork",
        "--mount-proc",
        program().to_str().unwrap(),
        "msc-pidns",
        "personality:11",
    ];
    let mut target = Driven::spawn(Path::new("unshare"), &args);
    let host_pid = only_child(target.pid());
    assert_ne!(host_pid, 1);
    let cli = JsonView::spawn(in_namespaces_of(
        host_pid,
        Path::new(BIN),
        &[
            "syscalls",
            "--pid",
            "1",
            "--syscall",
            "personality",
            "--json",
            "--interval",
            "0.2",
            "--count",
            "6",
        ],
    ));
    let first = cli.next();
    target.window(b'g');
    target.window(b'g');
    let (status, rest, stderr) = cli.wait();
    assert!(status.success(), "{stderr}");
    let reports: Vec<serde_json::Value> = std::iter::once(first).chain(rest).collect();
    assert_eq!(reports.len(), 6);
    assert_eq!(sum_of(&reports, "syscalls", "personality"), 22);
    assert!(reports.iter().all(|r| r["filter"] == "pid 1"));

    // mapscope never counts itself, also where its own pid is a namespace pid: a copy of it
    // under a name nothing else has, counting that name, sees nothing.
    let name = format!("msc-self{}", std::process::id() % 100_000);
    let copy = std::env::temp_dir()
        .join(format!("mapscope-test-{}", std::process::id()))
        .join(&name);
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    std::fs::copy(BIN, &copy).unwrap();
    let out = in_namespaces_of(
        host_pid,
        &copy,
        &[
            "syscalls",
            "--comm",
            &name,
            "--json",
            "--interval",
            "0.2",
            "--count",
            "3",
        ],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let totals: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["total"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(totals, [0, 0, 0], "mapscope counted its own syscalls");
    assert!(target.finish().success());
}

#[test]
fn pid_namespace_mismatches_are_refused_with_one_line() {
    require_root();
    // A new pid namespace without its own /proc: /proc still numbers processes as the host does.
    let out = Command::new("unshare")
        .args([
            "--pid", "--fork", "--", BIN, "syscalls", "--pid", "1", "--count", "1",
        ])
        .output()
        .unwrap();
    assert_one_line_error(
        &out,
        "/proc belongs to another pid namespace than mapscope's",
    );
    // A process in a pid namespace nested inside mapscope's: the kernel helper cannot number it.
    let script = format!(
        "unshare --pid --fork sleep 30 & sleep 0.5; p=$(pgrep -x sleep); \
         {BIN} syscalls --pid $p --count 1; rc=$?; kill $p; exit $rc"
    );
    let out = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "sh", "-c", &script])
        .output()
        .unwrap();
    assert_one_line_error(&out, "lives in a pid namespace nested inside mapscope's");
}

#[test]
fn cli_pid_view_stops_when_the_process_exits_after_its_last_interval() {
    require_root();
    let target = Driven::spawn(program(), &["msc-exit", "personality:5"]);
    // EOF: the program exits (exit_group) and mapscope, with no --count, must notice by itself.
    let reports = target.pid_view_until_exit(
        &["syscalls", "--syscall", "personality,exit_group"],
        b'g',
        2,
    );
    // The last, partial interval is printed: every call up to the exit is in some report.
    assert_eq!(sum_of(&reports, "syscalls", "personality"), 10);
    assert_eq!(sum_of(&reports, "syscalls", "exit_group"), 1);
}

#[test]
fn compat_syscalls_of_a_32_bit_process_are_counted_by_their_i386_numbers() {
    const N: u64 = 7;
    require_root();
    let mut target = Driven::spawn(program32(), &["msc-32bit", &format!("personality:{N}")]);
    let counter = attach(pid_filter(target.pid()));
    let s0 = counter.snapshot().unwrap();
    assert!(s0.compat_detected, "BTF gives thread_info.status here");
    target.window(b'g');
    let s1 = counter.snapshot().unwrap();
    let compat = |name: &str| {
        let nr = names::i386_number(name).unwrap();
        s1.compat_count(nr) - s0.compat_count(nr)
    };
    assert_eq!(compat("personality"), N);
    assert_eq!(compat("read"), 1);
    assert_eq!(compat("write"), 1);
    // Not one of them is an x86_64 syscall: before compat detection, i386 personality (136)
    // was counted as x86_64 136 (ustat), read (3) as close, and so on.
    assert_eq!(deltas(&s0, &s1), [], "64-bit counts of a 32-bit process");
    assert_eq!(s1.tail_call_failed, s0.tail_call_failed);
    let table = mapscope::syscalls::report::Interval::between("x", &s0, &s1, &[], 10).table();
    assert!(
        table.contains("32-bit (compat) syscalls, i386 numbers"),
        "{table}"
    );

    // Its execve is an i386 one (11) too; /bin/true, 64-bit, then makes x86_64 syscalls only.
    let s2 = counter.snapshot().unwrap();
    assert!(target.send_and_wait(b'e').success());
    let s3 = counter.snapshot().unwrap();
    let execve32 = names::i386_number("execve").unwrap();
    assert_eq!(s3.compat_count(execve32) - s2.compat_count(execve32), 1);
    assert_eq!(delta(&s2, &s3, "execve"), 0);
    assert_eq!(
        handler_delta(&s2, &s3, Handled::Execve).calls,
        0,
        "the x86_64 execve handler never sees a 32-bit execve"
    );
    assert!(
        delta(&s2, &s3, "exit_group") == 1,
        "/bin/true ran as a 64-bit program"
    );
}
