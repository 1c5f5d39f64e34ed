//! The tail-call table (`SC_DISPATCH`): filling it, and reading back what the kernel holds.
//!
//! The map is taken out of the [`aya::Ebpf`] and owned here on purpose: the kernel empties a
//! program array when the last user-space reference to it goes away, after which every tail call
//! fails silently. Holding the `Map` keeps our fd — and so the table — alive exactly as long as
//! the counter.

use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd},
};

use aya::{
    maps::{Map, ProgramArray},
    programs::ProgramFd,
};
use mapscope_common::syscalls::{MAP_DISPATCH, SYSCALL_SLOTS};

use crate::{Error, Result};

/// The jump table and the ids of the programs we put in it.
pub(super) struct DispatchTable {
    map: Map,
    /// `(program id, program name)` of every program placed in a slot.
    programs: Vec<(u32, &'static str)>,
}

/// What one look at the kernel's table found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableView {
    /// Per syscall number: the program in the slot, `Some("?")` for a program that is not ours,
    /// `None` for an empty slot.
    pub slots: Vec<Option<&'static str>>,
}

impl TableView {
    /// Slots that hold a program.
    pub fn populated(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// The program in slot `nr`.
    pub fn program(&self, nr: u32) -> Option<&'static str> {
        self.slots.get(nr as usize).copied().flatten()
    }
}

impl DispatchTable {
    /// Takes ownership of `map` and fills every slot with [`super::program_for`]: a dedicated
    /// handler where `Handled` has one, the default handler everywhere else, so a failed tail
    /// call always means something broke. `loaded` holds `(name, fd, id)` of every handler.
    pub(super) fn fill(mut map: Map, loaded: &[(&'static str, &ProgramFd, u32)]) -> Result<Self> {
        let map_err = |source| Error::Map {
            name: MAP_DISPATCH,
            source,
        };
        {
            let mut table = ProgramArray::try_from(&mut map).map_err(map_err)?;
            for nr in 0..SYSCALL_SLOTS {
                let name = super::program_for(nr);
                let &(_, fd, _) = loaded
                    .iter()
                    .find(|&&(n, _, _)| n == name)
                    .ok_or(Error::MissingObject { name })?;
                table.set(nr, fd, 0).map_err(map_err)?;
            }
        }
        let programs = loaded.iter().map(|&(name, _, id)| (id, name)).collect();
        Ok(Self { map, programs })
    }

    /// Empties slot `nr`: a tail call through it fails from now on. Fault injection only, see
    /// [`super::SyscallCounter::empty_dispatch_slot`].
    pub(super) fn clear(&mut self, nr: u32) -> Result<()> {
        let map_err = |source| Error::Map {
            name: MAP_DISPATCH,
            source,
        };
        ProgramArray::try_from(&mut self.map)
            .map_err(map_err)?
            .clear_index(&nr)
            .map_err(map_err)
    }

    /// Puts `fd` (one of the programs given to [`Self::fill`]) back in slot `nr`.
    pub(super) fn set(&mut self, nr: u32, fd: &ProgramFd) -> Result<()> {
        let map_err = |source| Error::Map {
            name: MAP_DISPATCH,
            source,
        };
        ProgramArray::try_from(&mut self.map)
            .map_err(map_err)?
            .set(nr, fd, 0)
            .map_err(map_err)
    }

    /// Reads every slot back from the kernel.
    pub(super) fn view(&self) -> Result<TableView> {
        let Map::ProgramArray(data) = &self.map else {
            return Err(Error::MissingObject { name: MAP_DISPATCH });
        };
        let fd = std::os::fd::AsFd::as_fd(data.fd());
        let mut slots = Vec::with_capacity(SYSCALL_SLOTS as usize);
        for nr in 0..SYSCALL_SLOTS {
            let id = lookup(fd, nr)
                .map_err(|e| Error::io(format!("reading {MAP_DISPATCH} slot {nr}"), e))?;
            slots.push(id.map(|id| {
                self.programs
                    .iter()
                    .find(|&&(i, _)| i == id)
                    .map_or("?", |&(_, name)| name)
            }));
        }
        Ok(TableView { slots })
    }
}

/// BPF_MAP_LOOKUP_ELEM on a program array: the kernel answers with the id of the program in the
/// slot, or ENOENT for an empty slot. aya 0.14's `ProgramArray` has no getter, hence the syscall.
fn lookup(map: BorrowedFd<'_>, index: u32) -> io::Result<Option<u32>> {
    const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
    // The first fields of `union bpf_attr` for map element commands.
    #[repr(C)]
    struct Attr {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    let mut id: u32 = 0;
    let attr = Attr {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: (&raw const index) as u64,
        value: (&raw mut id) as u64,
        flags: 0,
    };
    // SAFETY: `attr` points at a live key and a 4-byte value buffer (value_size of a program
    // array); the kernel reads size_of::<Attr>() bytes of `attr` and writes only `id`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_LOOKUP_ELEM,
            &raw const attr,
            std::mem::size_of::<Attr>() as libc::c_uint,
        )
    };
    if rc == 0 {
        return Ok(Some(id));
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ENOENT) {
        Ok(None)
    } else {
        Err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_counts_populated_slots() {
        let view = TableView {
            slots: vec![Some("sc_rw"), None, Some("sc_default")],
        };
        assert_eq!(view.populated(), 2);
        assert_eq!(view.program(0), Some("sc_rw"));
        assert_eq!(view.program(1), None);
        assert_eq!(view.program(99), None);
    }
}
