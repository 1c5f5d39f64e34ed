//! Where a map's key and value layouts come from: mapscope's own table for its maps, else the
//! map's BTF (`btf_key_type_id`/`btf_value_type_id` in the BTF object `btf_id`), else the sizes
//! alone (1, 2, 4 or 8 bytes read as unsigned integers, anything else as bytes).

use std::os::fd::AsFd as _;

use serde::Serialize;

use super::{Error, MapHandle, Result, objinfo, own, sys, typed::Layout};
use crate::btf::Btf;

/// Where the layouts came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// mapscope's own table (`own.rs`).
    Mapscope,
    /// The map's BTF.
    Btf,
    /// Only the key and value sizes.
    Size,
}

/// The layouts of one map's keys and values.
#[derive(Clone, Debug)]
pub struct MapTypes {
    pub key: Layout,
    pub value: Layout,
    pub source: Source,
}

fn by_size(size: u32) -> Layout {
    match size {
        1 | 2 | 4 | 8 => Layout::Uint(size as usize),
        n => Layout::Bytes(n as usize),
    }
}

impl MapTypes {
    /// Resolves the layouts of `map`. A BTF object that cannot be read or decoded falls back to
    /// the sizes (with a debug log): the dump itself never fails for want of types.
    pub fn resolve(map: &MapHandle) -> Self {
        let m = &map.meta;
        if let Some((key, value)) = own::layouts(&m.name, m.key_size, m.value_size) {
            return Self {
                key,
                value,
                source: Source::Mapscope,
            };
        }
        if m.btf_id != 0 && m.btf_value_type_id != 0 {
            match from_btf(map) {
                Ok(t) => return t,
                Err(e) => tracing::debug!("map {}: BTF not usable: {e}", m.id),
            }
        }
        Self {
            key: by_size(m.key_size),
            value: by_size(m.value_size),
            source: Source::Size,
        }
    }
}

fn from_btf(map: &MapHandle) -> Result<MapTypes> {
    let m = &map.meta;
    let fd = sys::btf_fd_by_id(m.btf_id)
        .map_err(|e| Error::sys(format!("opening BTF object {}", m.btf_id), e))?;
    let blob = objinfo::btf_blob(fd.as_fd())
        .map_err(|e| Error::sys(format!("reading BTF object {}", m.btf_id), e))?;
    let btf = Btf::parse(&blob)?;
    let key = if m.btf_key_type_id != 0 {
        Layout::from_btf(&btf, m.btf_key_type_id)?
    } else {
        by_size(m.key_size)
    };
    let value = Layout::from_btf(&btf, m.btf_value_type_id)?;
    if key.size() != m.key_size as usize || value.size() != m.value_size as usize {
        return Err(Error::bad(format!(
            "BTF sizes {}/{} differ from the map's {}/{}",
            key.size(),
            value.size(),
            m.key_size,
            m.value_size
        )));
    }
    Ok(MapTypes {
        key,
        value,
        source: Source::Btf,
    })
}
