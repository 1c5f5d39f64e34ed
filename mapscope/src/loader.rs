//! Loads a family's embedded eBPF object. Attaching is done by each family's module, which owns
//! the returned [`aya::Ebpf`] so that dropping it detaches everything it attached.
//!
//! One object per family (each is its own bin target of `mapscope-ebpf`): loading a family
//! creates only its own maps and programs, so `xdp stats` does not allocate the exec ring buffer
//! or the syscall tables, and the agent loads each enabled family exactly once.

use aya::{Ebpf, EbpfLoader};

use crate::{
    Error, Result,
    requirements::{self, Requirement},
};

/// A program family, named as its object, its modules and its subcommand are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// XDP per-action statistics.
    Xdp,
    /// exec tracing.
    Exec,
    /// syscall counting through tail calls.
    Syscalls,
    /// malloc uprobe counters.
    Malloc,
}

impl Family {
    /// The object build.rs left in `OUT_DIR` for this family, embedded in the binary (public so
    /// the agent can compare pinned maps with the definitions in it).
    pub fn object(self) -> &'static [u8] {
        macro_rules! embedded {
            ($name:literal) => {
                aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/", $name))
            };
        }
        match self {
            Family::Xdp => embedded!("xdp"),
            Family::Exec => embedded!("exec"),
            Family::Syscalls => embedded!("syscalls"),
            Family::Malloc => embedded!("malloc"),
        }
    }
}

/// Checks `reqs`, then loads the family's object (maps are created, programs are not yet loaded).
pub fn load(family: Family, reqs: &[Requirement]) -> Result<Ebpf> {
    load_with(family, reqs, |_| {})
}

/// Like [`load`], letting the caller adjust the loader first (map sizes, pin paths).
pub fn load_with(
    family: Family,
    reqs: &[Requirement],
    configure: impl FnOnce(&mut EbpfLoader<'_>),
) -> Result<Ebpf> {
    let object = family.object();
    if object.is_empty() {
        return Err(Error::NoEmbeddedObject);
    }
    requirements::check(reqs)?;
    raise_memlock();
    let mut loader = EbpfLoader::new();
    configure(&mut loader);
    loader.load(object).map_err(|e| {
        if crate::error::os_error(&e) == Some(libc::EPERM) {
            Error::Privileges {
                missing: "permission to create BPF maps (EPERM)".to_string(),
            }
        } else {
            Error::Load(e)
        }
    })
}

/// Pins maps `names` of the object under `dir` (one file per map, named as the map): an existing
/// pin is reused as is, so callers check pins against the object's definitions first.
pub fn pin_maps(loader: &mut EbpfLoader<'_>, dir: &std::path::Path, names: &[&'static str]) {
    for name in names {
        loader.map_pin_path(name, dir.join(name));
    }
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; newer ones use memcg and ignore it.
/// Raising it is harmless either way, and failing to raise it is not an error by itself.
fn raise_memlock() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit only reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        tracing::debug!("could not raise RLIMIT_MEMLOCK; relying on memcg accounting");
    }
}

/// A program of the loaded object as its concrete type (`Xdp`, `TracePoint`, …), or an error
/// naming it: the one lookup every family needs before load and attach.
pub fn program_mut<'a, P>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut P>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(Error::MissingObject { name })?
        .try_into()
        .map_err(|source| Error::Program { name, source })
}

/// Read-only twin of [`program_mut`], for loaded programs whose fd is needed.
pub fn program<'a, P>(ebpf: &'a Ebpf, name: &'static str) -> Result<&'a P>
where
    &'a P: TryFrom<&'a aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program(name)
        .ok_or(Error::MissingObject { name })?
        .try_into()
        .map_err(|source| Error::Program { name, source })
}

/// A typed view (`Array`, `HashMap`, `PerCpuArray`, …) of a map of the loaded object, or an
/// error naming it: the map twin of [`program`].
pub fn map<'a, M>(ebpf: &'a Ebpf, name: &'static str) -> Result<M>
where
    M: TryFrom<&'a aya::maps::Map, Error = aya::maps::MapError>,
{
    M::try_from(ebpf.map(name).ok_or(Error::MissingObject { name })?)
        .map_err(|source| Error::Map { name, source })
}

/// Writable twin of [`map`], for maps user space configures.
pub fn map_mut<'a, M>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<M>
where
    M: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
{
    M::try_from(ebpf.map_mut(name).ok_or(Error::MissingObject { name })?)
        .map_err(|source| Error::Map { name, source })
}
