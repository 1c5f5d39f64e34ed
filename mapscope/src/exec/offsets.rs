//! Kernel struct offsets the exec programs follow, read from the running kernel's BTF (aya
//! cannot emit CO-RE relocations from Rust). Each group is optional: without it the events
//! still flow, with the affected field flagged.

use mapscope_common::exec::ExecConfig;

use crate::{Result, btf::Btf};

/// Fills the offset fields of `cfg`; a group whose offsets are missing stays invalid, with a
/// warning naming what is lost.
pub fn fill(cfg: &mut ExecConfig) {
    let path = "/sys/kernel/btf/vmlinux";
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(
                "reading {path}: {e}; ppid and the arguments of successful execs are unavailable"
            );
            return;
        }
    };
    let btf = match Btf::parse(&data) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!("{e}; ppid and the arguments of successful execs are unavailable");
            return;
        }
    };
    match parent(&btf) {
        Ok((rp, tg)) => {
            (cfg.real_parent_off, cfg.tgid_off, cfg.offsets_valid) = (rp, tg, 1);
        }
        Err(e) => tracing::warn!("ppid unavailable: {e}"),
    }
    match image(&btf) {
        Ok((mm, start, end)) => {
            (
                cfg.task_mm_off,
                cfg.mm_arg_start_off,
                cfg.mm_arg_end_off,
                cfg.image_offsets_valid,
            ) = (mm, start, end, 1);
        }
        Err(e) => tracing::warn!("arguments of successful execs unavailable: {e}"),
    }
    match pid(&btf) {
        Ok([leader, thread_pid, level, numbers, inum]) => {
            cfg.group_leader_off = leader;
            cfg.thread_pid_off = thread_pid;
            cfg.pid_level_off = level;
            cfg.pid_numbers_off = numbers;
            cfg.pidns_inum_off = inum;
            cfg.pidns_offsets_valid = 1;
        }
        Err(e) => tracing::warn!("ppid outside the initial pid namespace unavailable: {e}"),
    }
}

fn parent(btf: &Btf<'_>) -> Result<(u32, u32)> {
    Ok((
        btf.member_offset("task_struct", "real_parent")?,
        btf.member_offset("task_struct", "tgid")?,
    ))
}

fn image(btf: &Btf<'_>) -> Result<(u32, u32, u32)> {
    Ok((
        btf.member_offset("task_struct", "mm")?,
        btf.member_offset("mm_struct", "arg_start")?,
        btf.member_offset("mm_struct", "arg_end")?,
    ))
}

fn pid(btf: &Btf<'_>) -> Result<[u32; 5]> {
    Ok([
        btf.member_offset("task_struct", "group_leader")?,
        btf.member_offset("task_struct", "thread_pid")?,
        btf.member_offset("pid", "level")?,
        btf.member_offset("pid", "numbers")?,
        btf.member_offset("pid_namespace", "ns")? + btf.member_offset("ns_common", "inum")?,
    ])
}
