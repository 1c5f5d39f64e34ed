//! One load per family: each family's object creates only that family's maps, so e.g.
//! `xdp stats` never allocates the exec ring buffer or the syscall jump table.

mod harness;

use mapscope::{
    loader::{self, Family},
    requirements::Requirement,
};

/// Loads `family`'s object into the running kernel and returns the names of the maps it created.
fn created_maps(family: Family) -> Vec<String> {
    harness::require_root();
    let ebpf = loader::load(family, &[Requirement::BpfPrivileges]).expect("loading the object");
    let mut names: Vec<String> = ebpf.maps().map(|(name, _)| name.to_string()).collect();
    names.sort();
    names
}

#[test]
fn each_family_creates_only_its_own_maps() {
    let expected: [(Family, &[&str]); 4] = [
        (
            Family::Xdp,
            &[
                "XDP_CLOCK",
                "XDP_DST4",
                "XDP_DST4_HOST",
                "XDP_DST6",
                "XDP_DST6_HOST",
                "XDP_ERRORS",
                "XDP_META",
                "XDP_RULE_COUNT",
                "XDP_RULE_STATS",
                "XDP_SRC4",
                "XDP_SRC4_HOST",
                "XDP_SRC6",
                "XDP_SRC6_HOST",
                "XDP_STATS_ARR",
                "XDP_STATS_PCPU",
                "XDP_TALKERS",
                "XDP_TALKERS4",
            ],
        ),
        (
            Family::Exec,
            // .rodata: the pid-namespace global.
            &[
                ".rodata",
                "EXEC_CONFIG",
                "EXEC_INFLIGHT",
                "EXEC_LOST",
                "EXEC_PERF",
                "EXEC_RING",
                "EXEC_SCRATCH",
                "EXEC_UIDS",
            ],
        ),
        (
            Family::Syscalls,
            // .rodata: the load-time globals (pid namespace, task status offset).
            &[
                ".rodata",
                "SC_COMPAT",
                "SC_COUNTS",
                "SC_DISPATCH",
                "SC_FILTER",
                "SC_HANDLED",
                "SC_STATS",
            ],
        ),
        (
            Family::Malloc,
            &[
                ".rodata",
                "MALLOC_PCPU",
                "MALLOC_PROCS",
                "MALLOC_STACKS",
                "MALLOC_STK_CNT",
                "MALLOC_STK_ERR",
            ],
        ),
    ];
    for (family, maps) in expected {
        assert_eq!(created_maps(family), maps, "{family:?}");
    }
}
