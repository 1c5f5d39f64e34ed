//! A pinned attachment that outlives mapscope (the xdp-filter model): the program's bpf_link and
//! every map pinned under `/sys/fs/bpf/mapscope/xdp/<ifname>/`, with the `meta` map as the
//! layout marker. The CLI (`xdp attach/detach/status`, rules, stats) and the agent use these
//! four calls: [`attach`], [`open_existing`], [`detach`], [`status`].
//!
//! Nothing stale is reused: a directory whose interface is gone, whose link is no longer
//! attached, or whose maps have another layout is reported with the command that removes it.

use std::{
    fs::File,
    os::{fd::AsFd as _, unix::fs::MetadataExt as _},
    path::{Path, PathBuf},
};

use aya::programs::{Xdp, links::FdLink};
use mapscope_common::xdp::{LAYOUT_VERSION, MAP_META, XdpMeta};
use serde::Serialize;

use super::{
    AttachMode,
    error::{XdpError, XdpResult},
    hook,
    maps::{Capacity, XdpMaps},
};
use crate::iface::Interface;

/// Root of every pinned XDP attachment.
pub const PIN_ROOT: &str = "/sys/fs/bpf/mapscope/xdp";
const LINK_PIN: &str = "link";

/// The pin directory of `iface`'s attachment.
pub fn pin_dir(iface: &str) -> PathBuf {
    Path::new(PIN_ROOT).join(iface)
}

/// How to attach.
#[derive(Clone, Copy, Debug, Default)]
pub struct AttachOptions {
    pub mode: AttachMode,
    pub capacity: Capacity,
}

/// An open pinned attachment: its marker and maps. Dropping it leaves everything attached.
pub struct Attachment {
    pub iface: String,
    pub dir: PathBuf,
    pub meta: XdpMeta,
    pub maps: XdpMaps,
    /// Program id behind the link.
    pub prog_id: u32,
}

impl Attachment {
    /// The mode it was attached in.
    pub fn mode(&self) -> AttachMode {
        if self.meta.mode == 1 {
            AttachMode::Native
        } else {
            AttachMode::Skb
        }
    }

    /// Capacities chosen at attach.
    pub fn capacity(&self) -> Capacity {
        Capacity {
            rules: self.meta.rule_capacity,
            talkers: self.meta.talker_capacity,
        }
    }

    /// Takes the writers' lock of this attachment (flock on the pin directory; bpffs holds no
    /// regular files), blocking until other rule writers are done. Released on drop.
    pub fn lock(&self) -> XdpResult<File> {
        lock_dir(&self.dir)
    }

    /// Whether the interface still exists with the index it had at attach, and the link is
    /// still attached to it: what a long-running viewer polls.
    pub fn still_attached(&self) -> bool {
        let iface_ok =
            Interface::resolve(Some(&self.iface)).is_ok_and(|i| i.index == self.meta.ifindex);
        iface_ok
            && crate::maps::sys::obj_get(&self.dir.join(LINK_PIN), 0)
                .ok()
                .and_then(|fd| hook::link_info(fd.as_fd()).ok())
                .is_some_and(|l| l.ifindex == self.meta.ifindex)
    }
}

fn lock_dir(dir: &Path) -> XdpResult<File> {
    let f = File::open(dir).map_err(|e| XdpError::io(format!("opening {}", dir.display()), e))?;
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX) } != 0 {
        return Err(XdpError::io(
            format!("locking {}", dir.display()),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(f)
}

/// Inode of the calling thread's network namespace.
pub fn current_netns() -> u64 {
    std::fs::metadata("/proc/thread-self/ns/net").map_or(0, |m| m.ino())
}

fn stale(iface: &str, reason: impl Into<String>) -> XdpError {
    let dir = pin_dir(iface);
    XdpError::Stale {
        cleanup: format!(
            "mapscope xdp detach --iface {iface}` or `rm -r {}",
            dir.display()
        ),
        dir,
        reason: reason.into(),
    }
}

/// Loads the firewall, attaches it to `iface` and pins link and maps; the filter keeps running
/// after this process exits. Refuses an interface with any XDP program, and stale pins.
pub fn attach(iface: &Interface, opts: AttachOptions) -> XdpResult<Attachment> {
    let dir = pin_dir(&iface.name);
    if dir.exists() {
        return match open_existing(&iface.name) {
            Ok(_) => Err(XdpError::AlreadyAttached {
                iface: iface.name.clone(),
            }),
            Err(e) => Err(e),
        };
    }
    if opts.capacity.rules == 0 || opts.capacity.talkers == 0 {
        return Err(XdpError::BadRule(
            "--rules-capacity and --talkers must be at least 1".to_string(),
        ));
    }
    if !crate::maps::pin::on_bpffs(Path::new("/sys/fs/bpf")) {
        return Err(XdpError::Core(crate::Error::InvalidArgument(
            "/sys/fs/bpf is not a bpffs: mount one (`mount -t bpf bpf /sys/fs/bpf`)".to_string(),
        )));
    }
    let mut ebpf = super::load(opts.capacity)?;
    let link_id = super::attach_program(&mut ebpf, iface, opts.mode)?;
    let prog: &mut Xdp = crate::loader::program_mut(&mut ebpf, super::PROGRAM)?;
    let link = prog
        .take_link(link_id)
        .map_err(|source| crate::Error::Program {
            name: super::PROGRAM,
            source,
        })?;
    let link: FdLink = link
        .try_into()
        .map_err(|e: aya::programs::links::LinkError| {
            XdpError::io(
                "the XDP attachment is not a bpf_link",
                std::io::Error::other(e.to_string()),
            )
        })?;
    let maps = XdpMaps::take(&mut ebpf)?;
    let meta = XdpMeta {
        layout: LAYOUT_VERSION,
        ifindex: iface.index,
        mode: u32::from(opts.mode == AttachMode::Native),
        rule_capacity: opts.capacity.rules,
        talker_capacity: opts.capacity.talkers,
        _pad: 0,
        attached_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        netns_ino: current_netns(),
    };
    let pinned = (|| {
        std::fs::create_dir_all(&dir)
            .map_err(|e| XdpError::io(format!("creating {}", dir.display()), e))?;
        let _lock = lock_dir(&dir)?;
        write_meta(&maps, &meta)?;
        maps.pin(&dir)?;
        // The link last: until it is pinned, the program goes away with this process.
        let _pinned = link.pin(dir.join(LINK_PIN)).map_err(|e| {
            XdpError::io("pinning the XDP link", std::io::Error::other(e.to_string()))
        })?;
        let info = hook::link_info(pinned_fd(&dir)?.as_fd())
            .map_err(|e| XdpError::io("reading the XDP link", e))?;
        Ok::<_, XdpError>(info.prog_id)
    })();
    match pinned {
        Ok(prog_id) => Ok(Attachment {
            iface: iface.name.clone(),
            dir,
            meta,
            maps,
            prog_id,
        }),
        Err(e) => {
            remove_pins(&dir);
            Err(e)
        }
    }
}

fn pinned_fd(dir: &Path) -> XdpResult<std::os::fd::OwnedFd> {
    crate::maps::sys::obj_get(&dir.join(LINK_PIN), 0)
        .map_err(|e| XdpError::io(format!("opening {}", dir.join(LINK_PIN).display()), e))
}

fn write_meta(maps: &XdpMaps, meta: &XdpMeta) -> XdpResult<()> {
    let fd = match maps.get(MAP_META) {
        aya::maps::Map::Array(d) => d.fd().as_fd(),
        _ => unreachable!("meta is an array"),
    };
    crate::maps::sys::update(fd, Some(&0u32.to_ne_bytes()), pod_bytes(meta), 0)
        .map_err(|e| XdpError::io("writing the layout marker", e))
}

fn pod_bytes(meta: &XdpMeta) -> &[u8] {
    // SAFETY: XdpMeta is repr(C) without padding (size asserted in mapscope-common).
    unsafe { std::slice::from_raw_parts((meta as *const XdpMeta).cast(), size_of::<XdpMeta>()) }
}

fn read_meta(dir: &Path) -> Result<XdpMeta, String> {
    let fd = crate::maps::sys::obj_get(&dir.join("meta"), 0).map_err(|e| {
        format!("no layout marker ({e}): made by an older mapscope or half-removed")
    })?;
    let info = crate::maps::objinfo::map_info(fd.as_fd()).map_err(|e| e.to_string())?;
    if info.value_size as usize != size_of::<XdpMeta>() {
        return Err(format!(
            "layout marker of {} bytes (this mapscope writes {}): made by another mapscope version",
            info.value_size,
            size_of::<XdpMeta>()
        ));
    }
    let mut meta = XdpMeta::default();
    // SAFETY: the buffer is exactly an XdpMeta and every bit pattern is valid.
    let buf = unsafe {
        std::slice::from_raw_parts_mut((&mut meta as *mut XdpMeta).cast(), size_of::<XdpMeta>())
    };
    crate::maps::sys::lookup(fd.as_fd(), Some(&0u32.to_ne_bytes()), buf)
        .map_err(|e| e.to_string())?;
    if meta.layout != LAYOUT_VERSION {
        return Err(format!(
            "layout version {} (this mapscope uses {LAYOUT_VERSION})",
            meta.layout
        ));
    }
    Ok(meta)
}

/// Opens `iface`'s pinned attachment after checking its marker, interface, link and every map
/// definition. The call the agent uses to share a CLI-made attachment.
pub fn open_existing(iface: &str) -> XdpResult<Attachment> {
    let dir = pin_dir(iface);
    if !dir.exists() {
        return Err(XdpError::NotAttached {
            iface: iface.to_string(),
        });
    }
    let meta = read_meta(&dir).map_err(|r| stale(iface, r))?;
    if meta.netns_ino != current_netns() {
        return Err(XdpError::OtherNetns {
            dir,
            netns: meta.netns_ino,
        });
    }
    match Interface::resolve(Some(iface)) {
        Ok(i) if i.index == meta.ifindex => {}
        Ok(i) => {
            return Err(stale(
                iface,
                format!(
                    "interface {iface} was re-created (index {} now, {} at attach)",
                    i.index, meta.ifindex
                ),
            ));
        }
        Err(_) => return Err(stale(iface, format!("interface {iface} is gone"))),
    }
    let link = pinned_fd(&dir)
        .and_then(|fd| hook::link_info(fd.as_fd()).map_err(|e| XdpError::io("reading the link", e)))
        .map_err(|e| stale(iface, format!("its link is unusable ({e})")))?;
    if link.ifindex != meta.ifindex {
        return Err(stale(
            iface,
            "its link is no longer attached to the interface",
        ));
    }
    let cap = Capacity {
        rules: meta.rule_capacity,
        talkers: meta.talker_capacity,
    };
    let maps = XdpMaps::open(&dir, &cap).map_err(|r| stale(iface, r))?;
    Ok(Attachment {
        iface: iface.to_string(),
        dir,
        meta,
        maps,
        prog_id: link.prog_id,
    })
}

/// Removes `iface`'s attachment: unpinning the link detaches the program (no process holds it),
/// unpinning the maps frees them. Works on stale directories too (interface already gone).
pub fn detach(iface: &str) -> XdpResult<()> {
    let dir = pin_dir(iface);
    if !dir.exists() {
        return Err(XdpError::NotAttached {
            iface: iface.to_string(),
        });
    }
    let _lock = lock_dir(&dir)?;
    unpin_all(&dir);
    std::fs::remove_dir(&dir).map_err(|e| {
        XdpError::io(
            format!(
                "removing {} (something else was pinned there?)",
                dir.display()
            ),
            e,
        )
    })
}

/// Unpins what mapscope made in `dir` (and nothing else); ignores what is already gone.
fn unpin_all(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(LINK_PIN));
    for d in &super::maps::DEFS {
        let _ = std::fs::remove_file(dir.join(d.pin));
    }
}

/// [`unpin_all`], then the directory itself (after a failed attach).
fn remove_pins(dir: &Path) {
    unpin_all(dir);
    let _ = std::fs::remove_dir(dir);
}

/// One line of `xdp status`.
#[derive(Clone, Debug, Serialize)]
pub struct AttachmentStatus {
    pub iface: String,
    pub pin_dir: String,
    /// "attached", or "stale: <reason and cleanup>".
    pub state: String,
    pub mode: Option<&'static str>,
    /// Unix seconds.
    pub attached_since: Option<u64>,
    pub rules: Option<usize>,
    pub prog_id: Option<u32>,
}

/// Every attachment under [`PIN_ROOT`], healthy or not.
pub fn status() -> XdpResult<Vec<AttachmentStatus>> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(PIN_ROOT) else {
        return Ok(out);
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for iface in names {
        let dir = pin_dir(&iface).display().to_string();
        out.push(match open_existing(&iface) {
            Ok(a) => AttachmentStatus {
                rules: super::rules::list(&a).ok().map(|r| r.len()),
                state: "attached".to_string(),
                mode: Some(a.mode().as_str()),
                attached_since: Some(a.meta.attached_at),
                prog_id: Some(a.prog_id),
                iface,
                pin_dir: dir,
            },
            Err(e) => AttachmentStatus {
                iface,
                pin_dir: dir,
                state: format!("stale: {e}"),
                mode: None,
                attached_since: None,
                rules: None,
                prog_id: None,
            },
        });
    }
    Ok(out)
}
