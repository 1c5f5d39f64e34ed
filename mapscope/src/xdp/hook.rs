//! What holds an interface's XDP hook: bpf_link info read by the raw syscall (aya's `LinkInfo`
//! does not expose the XDP ifindex), the processes holding a link (as `bpftool link` finds
//! them, from `link_id` in /proc/*/fdinfo), and the attach mode `ip -d link` reports. Used to
//! tell a user the exact command that frees a busy interface.

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
};

const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
const BPF_LINK_GET_NEXT_ID: libc::c_long = 31;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_TYPE_XDP: u32 = 6;

/// The fields of `struct bpf_link_info` the firewall needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkInfo {
    pub id: u32,
    pub prog_id: u32,
    /// `BPF_LINK_TYPE_*`.
    pub kind: u32,
    /// For XDP links: the interface, 0 once the interface is gone.
    pub ifindex: u32,
}

fn bpf(cmd: libc::c_long, attr: &mut [u8]) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live buffer of the size we pass.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// BPF_OBJ_GET_INFO_BY_FD on a link fd.
pub fn link_info(fd: BorrowedFd<'_>) -> io::Result<LinkInfo> {
    // struct bpf_link_info: type, id, prog_id, then a union aligned to 8 (xdp: ifindex first).
    let mut info = [0u64; 12];
    let mut attr = [0u8; 16];
    attr[0..4].copy_from_slice(&(fd.as_raw_fd() as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&(size_of_val(&info) as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(info.as_mut_ptr() as u64).to_ne_bytes());
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    let word = |i: usize| {
        let bytes: [u8; 8] = info[i / 2].to_ne_bytes();
        let half = if i.is_multiple_of(2) {
            &bytes[0..4]
        } else {
            &bytes[4..8]
        };
        u32::from_ne_bytes(half.try_into().unwrap())
    };
    Ok(LinkInfo {
        kind: word(0),
        id: word(1),
        prog_id: word(2),
        ifindex: word(4),
    })
}

/// Every XDP link currently attached to interface `ifindex`.
pub fn xdp_links_on(ifindex: u32) -> Vec<LinkInfo> {
    let mut out = Vec::new();
    let mut id = 0u32;
    for _ in 0..100_000 {
        let mut attr = [0u8; 12];
        attr[0..4].copy_from_slice(&id.to_ne_bytes());
        if bpf(BPF_LINK_GET_NEXT_ID, &mut attr).is_err() {
            break;
        }
        id = u32::from_ne_bytes(attr[4..8].try_into().unwrap());
        let mut attr = [0u8; 12];
        attr[0..4].copy_from_slice(&id.to_ne_bytes());
        let Ok(fd) = bpf(BPF_LINK_GET_FD_BY_ID, &mut attr) else {
            continue;
        };
        // SAFETY: the syscall returned a new fd that we now own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        if let Ok(info) = link_info(std::os::fd::AsFd::as_fd(&fd))
            && info.kind == BPF_LINK_TYPE_XDP
            && info.ifindex == ifindex
        {
            out.push(info);
        }
    }
    out
}

/// Processes with an fd on link `link_id`: (pid, command name), like `bpftool link show`.
pub fn link_holders(link_id: u32) -> Vec<(u32, String)> {
    let needle = format!("link_id:\t{link_id}\n");
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fdinfo")) else {
            continue;
        };
        let holds = fds
            .flatten()
            .any(|fd| std::fs::read_to_string(fd.path()).is_ok_and(|t| t.contains(&needle)));
        if holds {
            let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
            out.push((pid, comm.trim().to_string()));
        }
    }
    out
}

/// The bpffs path under `dir` (at most `depth` levels down) where link `id` is pinned.
fn find_pin(dir: &Path, id: u32, depth: u32) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    for e in entries.flatten() {
        let path = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            if depth > 0
                && let Some(p) = find_pin(&path, id, depth - 1)
            {
                return Some(p);
            }
        } else if let Ok(fd) = crate::maps::sys::obj_get(&path, 0)
            && link_info(std::os::fd::AsFd::as_fd(&fd)).is_ok_and(|l| l.id == id)
        {
            return Some(path);
        }
    }
    None
}

/// XDP attach mode as `ip -d -j link` reports it ("generic", "native", "offload" or
/// "unknown"), and the attached program's id.
pub fn netlink_mode(iface: &str) -> (&'static str, Option<u32>) {
    let out = std::process::Command::new("ip")
        .args(["-d", "-j", "link", "show", "dev", iface])
        .output();
    let Ok(out) = out else {
        return ("unknown", None);
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
        return ("unknown", None);
    };
    let xdp = &v[0]["xdp"];
    let prog = xdp["prog"]["id"]
        .as_u64()
        .or_else(|| xdp["attached"][0]["prog"]["id"].as_u64())
        .map(|id| id as u32);
    // XDP_ATTACHED_DRV = 1, SKB = 2, HW = 3, MULTI = 4.
    let mode = match xdp["mode"].as_u64() {
        Some(1) => "native",
        Some(2) => "generic",
        Some(3) => "offload",
        _ => "unknown",
    };
    (mode, prog)
}

/// The error for a busy hook: mode, holders and the command that frees it.
pub fn busy(iface: &str, ifindex: u32) -> super::XdpError {
    let (mode, prog) = netlink_mode(iface);
    // Interface indexes repeat across network namespaces: the link must also run the program
    // the interface reports.
    let links: Vec<LinkInfo> = xdp_links_on(ifindex)
        .into_iter()
        .filter(|l| prog.is_none_or(|p| p == l.prog_id))
        .collect();
    let mut holders = String::new();
    // A pin directory of that name may be stale or another namespace's: only an attachment that
    // opens cleanly here and runs the program found is mapscope's own.
    let ours = super::attachment::pin_dir(iface).exists()
        && super::attachment::open_existing(iface)
            .is_ok_and(|a| prog.is_none_or(|p| p == a.prog_id));
    let fix = if ours {
        format!("it is mapscope's own attachment: `mapscope xdp detach --iface {iface}`")
    } else if let Some(link) = links.first() {
        let pids = link_holders(link.id);
        if pids.is_empty() {
            match find_pin(Path::new("/sys/fs/bpf"), link.id, 4) {
                Some(pin) => format!(
                    "it is bpf_link {} pinned at {} with no process holding it: remove the pin \
                     (`rm {}`; for a libxdp program `xdp-loader unload {iface} --all`)",
                    link.id,
                    pin.display(),
                    pin.display()
                ),
                None => format!(
                    "it is bpf_link {} with no process holding it (pinned on a bpffs): remove \
                     its pin (`bpftool link show id {}` names the program)",
                    link.id, link.id
                ),
            }
        } else {
            let list: Vec<String> = pids.iter().map(|(p, c)| format!("{p} ({c})")).collect();
            holders = format!(", bpf_link {} held by pid {}", link.id, list.join(", pid "));
            let kill: Vec<String> = pids.iter().map(|(p, _)| p.to_string()).collect();
            format!(
                "stop the process holding its link (`kill {}`); `ip link set … xdp off` cannot \
                 remove a bpf_link",
                kill.join(" ")
            )
        }
    } else {
        match mode {
            "generic" => format!("detach it first (`ip link set dev {iface} xdpgeneric off`)"),
            "offload" => format!("detach it first (`ip link set dev {iface} xdpoffload off`)"),
            _ => format!("detach it first (`ip link set dev {iface} xdp off`)"),
        }
    };
    super::XdpError::Busy {
        iface: iface.to_string(),
        mode,
        holders,
        fix,
    }
}
