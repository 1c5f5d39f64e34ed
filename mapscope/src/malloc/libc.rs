//! Finding the libcs a target uses, so the malloc uprobe lands in the files processes really map
//! rather than in a hard-coded path: `/proc/PID/maps` for a running process (through
//! `/proc/PID/root` when it lives in another mount namespace, e.g. a container, or when mapscope
//! does); every distinct libc mapped on the host for "all processes"; for a binary, its musl
//! interpreter or its `DT_NEEDED` libc resolved the way the dynamic loader does (RPATH/RUNPATH,
//! `/etc/ld.so.cache`, then the default directories). glibc and musl are both recognised.

use std::{
    fs,
    io::Read as _,
    path::{Path, PathBuf},
};

use object::{
    elf,
    read::elf::{Dyn as _, FileHeader, ProgramHeader as _},
};

use crate::{Error, Result};

mod in_use;
pub use in_use::{InUse, Skipped, in_use};

/// Offsets into `e_ident` (the ELF spec's names; `object` does not export them).
const EI_CLASS: usize = 4;
const EI_DATA: usize = 5;

/// A libc to attach to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Libc {
    /// The path as the target sees it (what reports print).
    pub path: PathBuf,
    /// The path this process opens to attach; differs when the target lives in another mount
    /// namespace (a container), where it goes through `/proc/PID/root`.
    pub attach_path: PathBuf,
}

/// The libc mapped by process `pid`.
pub fn for_process(pid: u32) -> Result<Libc> {
    let maps_path = format!("/proc/{pid}/maps");
    let maps = fs::read_to_string(&maps_path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::UnknownPid { pid },
        std::io::ErrorKind::PermissionDenied => Error::Privileges {
            missing: format!("permission to read {maps_path}"),
        },
        _ => Error::io(format!("reading {maps_path}"), e),
    })?;
    let no_libc = |why: String| Error::NoLibc {
        target: format!("process {pid}"),
        why,
    };
    let path = libc_in_maps(&maps)
        .ok_or_else(|| no_libc("its memory map has no libc.so (statically linked?)".into()))?;
    if path.ends_with(" (deleted)") {
        return Err(no_libc(format!(
            "it still runs {path}, which was replaced on disk since it started; restart it"
        )));
    }
    let path = PathBuf::from(path);
    let attach_path = attach_path_of(pid, &path, &own_mount_ns());
    Ok(Libc { path, attach_path })
}

/// What `/proc/self/ns/mnt` links to (`mnt:[inode]`), to tell which processes share our view of
/// the file system.
pub(super) fn own_mount_ns() -> Option<PathBuf> {
    fs::read_link("/proc/self/ns/mnt").ok()
}

/// The path this process opens for `path` as process `pid` sees it: the same path when we share
/// its mount namespace (`/proc/PID/maps` paths are then ours), else through `/proc/PID/root`, which
/// resolves in the process's own namespace and root.
pub(super) fn attach_path_of(pid: u32, path: &Path, own_ns: &Option<PathBuf>) -> PathBuf {
    let same_ns = own_ns.is_some() && *own_ns == fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
    if same_ns {
        path.to_path_buf()
    } else {
        Path::new(&format!("/proc/{pid}/root")).join(path.strip_prefix("/").unwrap_or(path))
    }
}

/// The libc the dynamically linked binary at `bin` would load.
pub fn for_binary(bin: &Path) -> Result<Libc> {
    let data = fs::read(bin).map_err(|e| Error::BinaryUnreadable {
        path: bin.display().to_string(),
        reason: match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            std::io::ErrorKind::IsADirectory => "a directory".to_string(),
            _ => e.to_string(),
        },
    })?;
    let no_libc = |why: String| Error::NoLibc {
        target: bin.display().to_string(),
        why,
    };
    if !data.starts_with(&elf::ELFMAG) {
        return Err(no_libc("not an ELF file".into()));
    }
    let dynamic = match data.get(EI_CLASS) {
        Some(&elf::ELFCLASS64) => dynamic_info::<elf::FileHeader64<object::Endianness>>(&data),
        Some(&elf::ELFCLASS32) => dynamic_info::<elf::FileHeader32<object::Endianness>>(&data),
        _ => Err("unknown ELF class".to_string()),
    }
    .map_err(no_libc)?;
    if dynamic.soname.as_deref().is_some_and(is_libc_name) {
        // The user named a libc itself.
        return Ok(Libc {
            path: bin.to_path_buf(),
            attach_path: bin.to_path_buf(),
        });
    }
    // musl's dynamic loader is its libc: a musl program maps no other (its DT_NEEDED says
    // `libc.so`, a name only musl's loader resolves, to itself).
    if let Some(interp) = dynamic.interp.as_deref().filter(|i| is_musl_loader(i)) {
        let path = PathBuf::from(interp);
        if file_elf_kind(&path).is_none() {
            return Err(no_libc(format!(
                "its musl loader {interp} is missing; install musl"
            )));
        }
        return Ok(Libc {
            attach_path: path.clone(),
            path,
        });
    }
    if dynamic.needed.is_empty() {
        return Err(no_libc("it is statically linked".into()));
    }
    let Some(soname) = dynamic.needed.iter().find(|n| is_libc_name(n)) else {
        return Err(no_libc(format!(
            "it does not link libc (needs only {})",
            dynamic.needed.join(", ")
        )));
    };
    let kind = elf_kind(&data).ok_or_else(|| no_libc("truncated ELF header".into()))?;
    let origin = bin.parent().unwrap_or(Path::new("/"));
    let cache = fs::read("/etc/ld.so.cache").unwrap_or_default();
    let path = search_path(&dynamic, origin, &cache, soname, kind)
        .into_iter()
        .find(|p| file_elf_kind(p) == Some(kind))
        .ok_or_else(|| {
            no_libc(format!(
                "it needs {soname}, which is in none of its RUNPATH, /etc/ld.so.cache or the \
                 default library directories"
            ))
        })?;
    Ok(Libc {
        attach_path: path.clone(),
        path,
    })
}

/// The libc of this process: the one "every process" means on this host.
pub fn for_self() -> Result<Libc> {
    for_process(std::process::id())
}

/// Whether a file or soname names a C library: glibc's `libc.so.6` (or old `libc-2.x.so`),
/// a bare `libc.so` (musl as Debian installs it), or musl's `ld-musl-<arch>.so.1` and Alpine's
/// `libc.musl-<arch>.so.1`: musl's loader is its libc too.
pub fn is_libc_name(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    base.starts_with("libc.so")
        || (base.starts_with("libc-") && base.ends_with(".so"))
        || is_musl_loader(base)
        || (base.starts_with("libc.musl-") && base.contains(".so"))
}

/// Whether a path names musl's dynamic loader (`/lib/ld-musl-x86_64.so.1`).
fn is_musl_loader(path: &str) -> bool {
    path.rsplit('/')
        .next()
        .is_some_and(|b| b.starts_with("ld-musl-"))
}

/// The first mapped file in a `/proc/PID/maps` text that is a libc, with its ` (deleted)`
/// marker if it has one.
fn libc_in_maps(maps: &str) -> Option<&str> {
    maps.lines().find_map(|line| {
        // address perms offset dev inode, single spaces, then padding and the path.
        let path = line.splitn(6, ' ').nth(5)?.trim_start();
        (path.starts_with('/') && is_libc_name(path.trim_end_matches(" (deleted)"))).then_some(path)
    })
}

/// What the dynamic section says about loading.
#[derive(Debug, Default, PartialEq, Eq)]
struct DynamicInfo {
    /// PT_INTERP: the dynamic loader the kernel starts the program with.
    interp: Option<String>,
    needed: Vec<String>,
    soname: Option<String>,
    rpath: Vec<String>,
    runpath: Vec<String>,
}

fn dynamic_info<Elf: FileHeader<Endian = object::Endianness>>(
    data: &[u8],
) -> std::result::Result<DynamicInfo, String> {
    let bad = |e: object::Error| format!("malformed ELF file ({e})");
    let header = Elf::parse(data).map_err(bad)?;
    let endian = header.endian().map_err(bad)?;
    let mut info = DynamicInfo::default();
    for ph in header.program_headers(endian, data).map_err(bad)? {
        if let Some(interp) = ph.interpreter(endian, data).map_err(bad)? {
            info.interp = Some(String::from_utf8_lossy(interp).into_owned());
        }
    }
    let sections = header.sections(endian, data).map_err(bad)?;
    let table = sections.dynamic_table(endian, data).map_err(bad)?;
    for d in table.dynamics() {
        let tag = d.tag(endian);
        if tag == elf::DT_NULL {
            break;
        }
        if !matches!(
            tag,
            elf::DT_NEEDED | elf::DT_SONAME | elf::DT_RPATH | elf::DT_RUNPATH
        ) {
            continue;
        }
        let s = d.string(endian, *table.strings()).map_err(bad)?;
        let s = String::from_utf8_lossy(s).into_owned();
        match tag {
            elf::DT_NEEDED => info.needed.push(s),
            elf::DT_SONAME => info.soname = Some(s),
            elf::DT_RPATH => info.rpath.extend(s.split(':').map(str::to_string)),
            _ => info.runpath.extend(s.split(':').map(str::to_string)),
        }
    }
    Ok(info)
}

/// ELF class and machine: a library only fits a binary with the same pair.
pub(super) type ElfKind = (u8, u16);

fn elf_kind(head: &[u8]) -> Option<ElfKind> {
    if !head.starts_with(&elf::ELFMAG) || head.len() < 20 {
        return None;
    }
    let machine = [head[18], head[19]];
    let machine = match head[EI_DATA] {
        elf::ELFDATA2LSB => u16::from_le_bytes(machine),
        elf::ELFDATA2MSB => u16::from_be_bytes(machine),
        _ => return None,
    };
    Some((head[EI_CLASS], machine))
}

pub(super) fn file_elf_kind(path: &Path) -> Option<ElfKind> {
    let mut head = [0u8; 20];
    fs::File::open(path).ok()?.read_exact(&mut head).ok()?;
    elf_kind(&head)
}

/// Candidate paths for `soname` in the dynamic loader's order: DT_RPATH (ignored when
/// DT_RUNPATH exists), DT_RUNPATH, the ld.so cache, then the default directories.
fn search_path(
    dynamic: &DynamicInfo,
    origin: &Path,
    cache: &[u8],
    soname: &str,
    (class, machine): ElfKind,
) -> Vec<PathBuf> {
    let expand = |dir: &String| PathBuf::from(dir.replace("$ORIGIN", &origin.to_string_lossy()));
    let mut dirs: Vec<PathBuf> = Vec::new();
    if dynamic.runpath.is_empty() {
        dirs.extend(dynamic.rpath.iter().map(expand));
    }
    dirs.extend(dynamic.runpath.iter().map(expand));
    let mut out: Vec<PathBuf> = dirs.iter().map(|d| d.join(soname)).collect();
    out.extend(cache_lookup(cache, soname));
    let triplet = match (class, machine) {
        (elf::ELFCLASS64, elf::EM_X86_64) => Some("x86_64-linux-gnu"),
        (elf::ELFCLASS64, elf::EM_AARCH64) => Some("aarch64-linux-gnu"),
        (elf::ELFCLASS32, elf::EM_386) => Some("i386-linux-gnu"),
        _ => None,
    };
    let lib = if class == elf::ELFCLASS64 {
        "lib64"
    } else {
        "lib"
    };
    for prefix in ["/lib", "/usr/lib"] {
        if let Some(t) = triplet {
            out.push(Path::new(prefix).join(t).join(soname));
        }
    }
    for dir in [
        format!("/{lib}"),
        format!("/usr/{lib}"),
        "/lib".into(),
        "/usr/lib".into(),
    ] {
        out.push(Path::new(&dir).join(soname));
    }
    out
}

/// Paths the glibc ld.so cache ("glibc-ld.so.cache1.1" format, written by glibc ≥ 2.32) lists
/// for `soname`. Any other format yields nothing and the caller falls back to directories.
fn cache_lookup(cache: &[u8], soname: &str) -> Vec<PathBuf> {
    const MAGIC: &[u8] = b"glibc-ld.so.cache1.1";
    const HEADER: usize = 48;
    const ENTRY: usize = 24;
    let u32_at = |off: usize| {
        cache
            .get(off..off + 4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    // String offsets count from the start of the header, NUL-terminated.
    let str_at = |off: usize| {
        let rest = cache.get(off..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        std::str::from_utf8(&rest[..end]).ok()
    };
    if !cache.starts_with(MAGIC) {
        return Vec::new();
    }
    let Some(nlibs) = u32_at(MAGIC.len()) else {
        return Vec::new();
    };
    (0..nlibs)
        .filter_map(|i| {
            let entry = HEADER + i * ENTRY;
            let key = str_at(u32_at(entry + 4)?)?;
            let value = str_at(u32_at(entry + 8)?)?;
            (key == soname).then(|| PathBuf::from(value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_libc_names() {
        for yes in [
            "libc.so.6",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "libc-2.31.so",
            "libc.so",
            "/lib/ld-musl-x86_64.so.1",
            "/lib/libc.musl-x86_64.so.1",
            "/usr/lib/x86_64-linux-musl/libc.so",
        ] {
            assert!(is_libc_name(yes), "{yes}");
        }
        for no in [
            "libcap.so.2",
            "libcrypt.so.1",
            "libc++.so.1",
            "ld-linux-x86-64.so.2",
        ] {
            assert!(!is_libc_name(no), "{no}");
        }
    }

    #[test]
    fn finds_libc_in_maps_with_padding_and_deleted_marker() {
        let maps = "\
55d0c0a00000-55d0c0a02000 r--p 00000000 fe:01 1234                       /usr/bin/cat
7f1e2a000000-7f1e2a028000 r--p 00000000 fe:01 5678                       /usr/lib/x86_64-linux-gnu/libc.so.6
7ffd5c000000-7ffd5c021000 rw-p 00000000 00:00 0                          [stack]
";
        assert_eq!(
            libc_in_maps(maps),
            Some("/usr/lib/x86_64-linux-gnu/libc.so.6")
        );
        let deleted =
            "7f1e2a000000-7f1e2a028000 r-xp 00000000 fe:01 5678 /lib/libc.so.6 (deleted)\n";
        assert_eq!(libc_in_maps(deleted), Some("/lib/libc.so.6 (deleted)"));
        assert_eq!(libc_in_maps("00-01 r--p 0 00:00 0   [vdso]\n"), None);
    }

    fn cache_with(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut strings = Vec::new();
        let base = 48 + 24 * entries.len();
        let mut offsets = Vec::new();
        for (k, v) in entries {
            let ko = base + strings.len();
            strings.extend_from_slice(k.as_bytes());
            strings.push(0);
            let vo = base + strings.len();
            strings.extend_from_slice(v.as_bytes());
            strings.push(0);
            offsets.push((ko as u32, vo as u32));
        }
        let mut c = b"glibc-ld.so.cache1.1".to_vec();
        c.extend_from_slice(&(entries.len() as u32).to_ne_bytes());
        c.extend_from_slice(&(strings.len() as u32).to_ne_bytes());
        c.resize(48, 0);
        for (ko, vo) in offsets {
            c.extend_from_slice(&0x0303i32.to_ne_bytes());
            c.extend_from_slice(&ko.to_ne_bytes());
            c.extend_from_slice(&vo.to_ne_bytes());
            c.extend_from_slice(&[0; 12]);
        }
        c.extend_from_slice(&strings);
        c
    }

    #[test]
    fn ld_cache_lookup_by_soname() {
        let c = cache_with(&[
            ("libm.so.6", "/lib/x/libm.so.6"),
            ("libc.so.6", "/lib/x/libc.so.6"),
            ("libc.so.6", "/lib32/libc.so.6"),
        ]);
        assert_eq!(
            cache_lookup(&c, "libc.so.6"),
            [
                PathBuf::from("/lib/x/libc.so.6"),
                PathBuf::from("/lib32/libc.so.6")
            ]
        );
        assert!(cache_lookup(&c, "libz.so.1").is_empty());
        assert!(cache_lookup(b"ld.so-1.7.0\0garbage", "libc.so.6").is_empty());
        assert!(cache_lookup(&c[..60], "libc.so.6").is_empty());
    }

    #[test]
    fn runpath_wins_over_rpath_and_expands_origin() {
        let dynamic = DynamicInfo {
            rpath: vec!["/old".into()],
            runpath: vec!["$ORIGIN/../lib".into()],
            ..Default::default()
        };
        let paths = search_path(
            &dynamic,
            Path::new("/opt/app/bin"),
            &[],
            "libc.so.6",
            (elf::ELFCLASS64, elf::EM_X86_64),
        );
        assert_eq!(paths[0], Path::new("/opt/app/bin/../lib/libc.so.6"));
        assert!(!paths.contains(&PathBuf::from("/old/libc.so.6")));
        assert!(paths.contains(&PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6")));
    }

    /// This test binary is itself dynamically linked against libc: both discovery paths must
    /// agree on the file it maps.
    #[test]
    fn own_binary_and_own_process_agree() {
        let from_maps = for_self().unwrap();
        let exe = fs::read_link("/proc/self/exe").unwrap();
        let from_elf = for_binary(&exe).unwrap();
        assert_eq!(
            fs::canonicalize(&from_maps.path).unwrap(),
            fs::canonicalize(&from_elf.path).unwrap()
        );
        assert_eq!(from_maps.path, from_maps.attach_path);
    }

    #[test]
    fn non_elf_is_refused_with_the_reason() {
        let err = for_binary(Path::new("/proc/self/status")).unwrap_err();
        assert!(err.to_string().contains("not an ELF file"), "{err}");
        let err = for_binary(Path::new("/nonexistent/bin")).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "cannot read /nonexistent/bin (no such file): pass the path of an existing program"
            ),
            "{err}"
        );
        let err = for_binary(Path::new("/")).unwrap_err();
        assert!(err.to_string().contains("(a directory)"), "{err}");
    }
}
