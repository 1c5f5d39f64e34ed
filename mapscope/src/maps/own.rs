//! mapscope's own maps: which family owns a map, and how its keys and values decode.
//!
//! Ownership comes from the name: every family's maps carry its prefix (`XDP_`, `EXEC_`, `SC_`,
//! `MALLOC_`), and map names are unique per family. The kernel records no owner, so a foreign
//! map that happens to be named like ours is attributed to the family too; its keys and values
//! are decoded with our layouts only when its key and value sizes match them as well.
//! Unnamed data-section maps (`.rodata`, load-time globals) carry no prefix: they belong to a
//! family when every program using them is one of that family's programs.

use mapscope_common::{exec, malloc, syscalls, xdp};

use super::typed::{Field, Layout};

/// Map-name prefix of each family, as the kernel shows the names (at most 15 bytes).
const FAMILIES: &[(&str, &str)] = &[
    ("XDP_", "xdp"),
    ("EXEC_", "exec"),
    ("SC_", "syscalls"),
    ("MALLOC_", "malloc"),
];

/// Program-name prefix of each family's kernel programs (`mapscope-ebpf/src/<family>.rs`).
const PROGRAMS: &[(&str, &str)] = &[
    ("mapscope_xdp", "xdp"),
    ("exec", "exec"),
    ("sc_", "syscalls"),
    ("malloc_", "malloc"),
];

/// The mapscope family that owns a map of this name, if any.
pub fn family(name: &str) -> Option<&'static str> {
    by_prefix(FAMILIES, name)
}

/// The family owning a map: by its name, or for a data-section map (`.rodata`, `.bss`, `.data`)
/// by the programs using it, when they all belong to one family.
pub fn family_of<'a>(
    name: &str,
    programs: impl IntoIterator<Item = &'a str>,
) -> Option<&'static str> {
    if let Some(f) = family(name) {
        return Some(f);
    }
    if !name.starts_with('.') {
        return None;
    }
    let mut owner = None;
    for prog in programs {
        let f = by_prefix(PROGRAMS, prog)?;
        if owner.is_some_and(|o| o != f) {
            return None;
        }
        owner = Some(f);
    }
    owner
}

fn by_prefix(table: &[(&str, &'static str)], name: &str) -> Option<&'static str> {
    table
        .iter()
        .find(|(prefix, _)| name.starts_with(prefix) && name.len() > prefix.len())
        .map(|(_, family)| *family)
}

fn named_key(name: &str, size: usize) -> Layout {
    Layout::Struct {
        size,
        fields: vec![Field::at(name, 0, Layout::Uint(size))],
    }
}

fn enum_key(names: impl Iterator<Item = (u64, String)>) -> Layout {
    Layout::Enum {
        size: 4,
        variants: names.collect(),
    }
}

fn exec_event() -> Layout {
    let u = Layout::Uint(4);
    let mut fields = vec![Field::at("ktime_ns", 0, Layout::Uint(8))];
    for (i, name) in ["pid", "tid", "ppid", "uid", "gid"].iter().enumerate() {
        fields.push(Field::at(name, 8 + 4 * i, u.clone()));
    }
    fields.push(Field::at("retval", 28, Layout::Int(4)));
    fields.push(Field::at("syscall", 32, exec_syscall()));
    for (i, name) in ["flags", "args_count", "args_len"].iter().enumerate() {
        fields.push(Field::at(name, 36 + 4 * i, u.clone()));
    }
    let comm = 48;
    let filename = comm + exec::COMM_LEN;
    let args = filename + exec::FILENAME_LEN;
    fields.push(Field::at("comm", comm, Layout::Text(exec::COMM_LEN)));
    fields.push(Field::at(
        "filename",
        filename,
        Layout::Text(exec::FILENAME_LEN),
    ));
    fields.push(Field::at("args", args, Layout::Strings(exec::ARGS_BUF)));
    Layout::Struct {
        size: args + exec::ARGS_BUF,
        fields,
    }
}

fn exec_syscall() -> Layout {
    enum_key(
        [
            (0, "execve".into()),
            (1, "execveat".into()),
            (2, "unknown".into()),
        ]
        .into_iter(),
    )
}

/// `ExecInflight`: four u64 (time and the caller's pointers), then u32 ids.
fn exec_inflight() -> Layout {
    let mut fields = Vec::new();
    for (i, name) in ["ktime_ns", "filename_ptr", "argv_ptr", "mm"]
        .iter()
        .enumerate()
    {
        fields.push(Field::at(name, 8 * i, Layout::Uint(8)));
    }
    for (i, name) in ["pid", "tid", "ppid", "uid", "gid"].iter().enumerate() {
        fields.push(Field::at(name, 32 + 4 * i, Layout::Uint(4)));
    }
    fields.push(Field::at("syscall", 52, exec_syscall()));
    fields.push(Field::at("flags", 56, Layout::Uint(4)));
    Layout::Struct { size: 64, fields }
}

fn u32_struct(names: &[&str]) -> Layout {
    Layout::Struct {
        size: 4 * names.len(),
        fields: names
            .iter()
            .enumerate()
            .map(|(i, n)| Field::at(n, 4 * i, Layout::Uint(4)))
            .collect(),
    }
}

/// Key and value layouts of mapscope's map `name`, if it is one of ours.
fn table(name: &str) -> Option<(Layout, Layout)> {
    let index = Layout::Uint(4);
    Some(match name {
        xdp::MAP_STATS_ARRAY | xdp::MAP_STATS_PERCPU => (
            enum_key(
                xdp::XdpAction::ALL
                    .iter()
                    .map(|a| (*a as u64, a.name().to_string())),
            ),
            Layout::counters(&["packets", "bytes"]),
        ),
        exec::MAP_EXEC_UIDS => (named_key("uid", 4), Layout::counters(&["execs"])),
        exec::MAP_EXEC_LOST => (
            enum_key(
                [
                    "lost_output",
                    "lost_inflight_full",
                    "lost_inflight_replaced",
                    "lost_read",
                    "outside_pidns",
                    "stale",
                ]
                .iter()
                .enumerate()
                .map(|(i, n)| (i as u64, n.to_string())),
            ),
            Layout::counters(&["count"]),
        ),
        exec::MAP_EXEC_CONFIG => (
            index,
            u32_struct(&[
                "real_parent_off",
                "tgid_off",
                "offsets_valid",
                "filter_uid_enabled",
                "filter_uid",
                "transport",
                "task_mm_off",
                "mm_arg_start_off",
                "mm_arg_end_off",
                "image_offsets_valid",
                "group_leader_off",
                "thread_pid_off",
                "pid_level_off",
                "pid_numbers_off",
                "pidns_inum_off",
                "pidns_offsets_valid",
                "_pad",
            ]),
        ),
        exec::MAP_EXEC_SCRATCH => (index, exec_event()),
        exec::MAP_EXEC_INFLIGHT => (named_key("tid", 4), exec_inflight()),
        syscalls::MAP_COUNTS => (
            enum_key(
                crate::syscalls::names::X86_64
                    .iter()
                    .map(|(nr, n)| (u64::from(*nr), n.to_string())),
            ),
            Layout::counters(&["count"]),
        ),
        syscalls::MAP_HANDLED => (
            enum_key(syscalls::Handled::ALL.iter().map(|h| {
                let name = crate::syscalls::names::name(h.nr()).unwrap_or("?");
                (*h as u64, name.to_string())
            })),
            Layout::counters(&["calls", "detail"]),
        ),
        syscalls::MAP_STATS => (
            enum_key(
                [
                    (
                        syscalls::DispatchStat::TailCallFailed as u64,
                        "tail_call_failed".into(),
                    ),
                    (
                        syscalls::DispatchStat::OutOfRange as u64,
                        "out_of_range".into(),
                    ),
                ]
                .into_iter(),
            ),
            Layout::counters(&["count"]),
        ),
        syscalls::MAP_FILTER => (
            index,
            Layout::Struct {
                size: 32,
                fields: vec![
                    Field::at("flags", 0, Layout::Uint(4)),
                    Field::at("tgid", 4, Layout::Uint(4)),
                    Field::at("comm", 8, Layout::Text(16)),
                    Field::at("exclude_tgid", 24, Layout::Uint(4)),
                    Field::at("reserved", 28, Layout::Uint(4)),
                ],
            },
        ),
        syscalls::MAP_DISPATCH => (
            enum_key(
                crate::syscalls::names::X86_64
                    .iter()
                    .map(|(nr, n)| (u64::from(*nr), n.to_string())),
            ),
            named_key("prog_id", 4),
        ),
        malloc::MAP_PER_CPU => (index, Layout::counters(&["calls", "bytes"])),
        malloc::MAP_PROCESSES => (
            named_key("pid", 4),
            Layout::Struct {
                size: 32,
                fields: vec![
                    Field::at("calls", 0, Layout::Uint(8)),
                    Field::at("bytes", 8, Layout::Uint(8)),
                    Field::at("comm", 16, Layout::Text(16)),
                ],
            },
        ),
        _ => return None,
    })
}

/// Layouts for mapscope's map `name` when its key and value sizes are the ones we declare.
pub fn layouts(name: &str, key_size: u32, value_size: u32) -> Option<(Layout, Layout)> {
    table(name).filter(|(k, v)| k.size() == key_size as usize && v.size() == value_size as usize)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn data_sections_belong_to_the_family_of_all_their_programs() {
        assert_eq!(family_of(".rodata", ["malloc_enter"]), Some("malloc"));
        assert_eq!(
            family_of(".rodata", ["sc_dispatch", "sc_rw"]),
            Some("syscalls")
        );
        assert_eq!(family_of(".rodata", ["sc_dispatch", "malloc_enter"]), None);
        assert_eq!(family_of(".rodata", ["malloc_enter", "someone_else"]), None);
        assert_eq!(family_of(".rodata", []), None);
        assert_eq!(family_of("OTHER", ["malloc_enter"]), None);
    }

    #[test]
    fn family_from_prefix() {
        assert_eq!(family("XDP_STATS_ARR"), Some("xdp"));
        assert_eq!(family("XDP_FW_RULES"), Some("xdp"));
        assert_eq!(family("MALLOC_PROCS"), Some("malloc"));
        assert_eq!(family("SC_COUNTS"), Some("syscalls"));
        assert_eq!(family("EXEC_RING"), Some("exec"));
        assert_eq!(family("XDP_"), None);
        assert_eq!(family("xdp_stats"), None);
        assert_eq!(family("h4hash"), None);
    }

    /// Each layout covers exactly the shared type it decodes.
    #[test]
    fn layouts_match_the_shared_types() {
        use std::mem::size_of;
        let sizes: &[(&str, usize, usize)] = &[
            (xdp::MAP_STATS_ARRAY, 4, size_of::<xdp::StatsRecord>()),
            (exec::MAP_EXEC_UIDS, 4, 8),
            (exec::MAP_EXEC_CONFIG, 4, size_of::<exec::ExecConfig>()),
            (exec::MAP_EXEC_INFLIGHT, 4, size_of::<exec::ExecInflight>()),
            (exec::MAP_EXEC_SCRATCH, 4, size_of::<exec::ExecEvent>()),
            (
                syscalls::MAP_HANDLED,
                4,
                size_of::<syscalls::HandlerRecord>(),
            ),
            (syscalls::MAP_FILTER, 4, size_of::<syscalls::Filter>()),
            (malloc::MAP_PER_CPU, 4, size_of::<malloc::MallocRecord>()),
            (malloc::MAP_PROCESSES, 4, size_of::<malloc::MallocProcess>()),
        ];
        for (name, k, v) in sizes {
            assert!(layouts(name, *k as u32, *v as u32).is_some(), "{name}");
        }
        assert!(layouts(xdp::MAP_STATS_ARRAY, 4, 8).is_none());
        assert!(layouts("h4hash", 4, 8).is_none());
    }

    #[test]
    fn decodes_xdp_and_malloc_records() {
        let (k, v) = layouts(xdp::MAP_STATS_PERCPU, 4, 16).unwrap();
        assert_eq!(k.decode(&2u32.to_le_bytes()), json!("XDP_PASS"));
        let mut rec = 5u64.to_le_bytes().to_vec();
        rec.extend(420u64.to_le_bytes());
        assert_eq!(v.decode(&rec), json!({"packets":5,"bytes":420}));
        let (k, v) = layouts(malloc::MAP_PROCESSES, 4, 32).unwrap();
        assert_eq!(k.decode(&7u32.to_le_bytes()), json!({"pid":7}));
        let mut p = vec![0u8; 32];
        p[0] = 1;
        p[16..20].copy_from_slice(b"bash");
        assert_eq!(v.decode(&p), json!({"calls":1,"bytes":0,"comm":"bash"}));
        let (k, _) = layouts(syscalls::MAP_COUNTS, 4, 8).unwrap();
        assert_eq!(k.decode(&257u32.to_le_bytes()), json!("openat"));
    }
}
