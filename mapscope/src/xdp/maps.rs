//! The firewall's maps, whether freshly created by a load or opened from their pins, and the
//! definition check that keeps a pin with another layout from being reused (aya reuses a pinned
//! map without comparing its definition).

use std::path::Path;

use aya::maps::{Map, MapData, MapType};
use mapscope_common::xdp::{
    ERR_MAX, MAP_DST4, MAP_DST4_HOST, MAP_DST6, MAP_DST6_HOST, MAP_ERRORS, MAP_META,
    MAP_RULE_COUNT, MAP_RULE_STATS, MAP_SRC4, MAP_SRC4_HOST, MAP_SRC6, MAP_SRC6_HOST,
    MAP_STATS_ARRAY, MAP_STATS_PERCPU, MAP_TALKERS, MAP_TALKERS4, RuleCounts, RuleValue,
    StatsRecord, TalkerEntry, XDP_ACTION_MAX, XdpMeta,
};

use super::error::{XdpError, XdpResult};

/// Sizes chosen at attach; everything else about the maps is fixed by the layout version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    /// Rules per trie (there are four tries).
    pub rules: u32,
    /// Entries of each talkers LRU (one for IPv4 sources, one for IPv6).
    pub talkers: u32,
}

impl Default for Capacity {
    fn default() -> Self {
        Self {
            rules: mapscope_common::xdp::DEFAULT_RULE_CAPACITY,
            talkers: mapscope_common::xdp::DEFAULT_TALKER_CAPACITY,
        }
    }
}

/// One map of the layout: its pin file name, object name and expected definition.
#[derive(Debug)]
pub struct MapDef {
    /// File name under the pin directory.
    pub pin: &'static str,
    /// Map name in the eBPF object.
    pub name: &'static str,
    pub ty: MapType,
    pub key: u32,
    pub value: u32,
    /// Flags the map must have (BPF_F_NO_PREALLOC for the tries and the rule counters).
    pub flags: u32,
    entries: fn(&Capacity) -> u32,
}

impl MapDef {
    /// max_entries this map has for `cap`.
    pub fn entries(&self, cap: &Capacity) -> u32 {
        (self.entries)(cap)
    }
}

const NO_PREALLOC: u32 = 1;
const LPM4_KEY: u32 = 4 + 4;
const LPM6_KEY: u32 = 4 + 16;
const RULE: u32 = size_of::<RuleValue>() as u32;
const STATS: u32 = size_of::<StatsRecord>() as u32;

const TALKER: u32 = size_of::<TalkerEntry>() as u32;

/// Every map of layout version 3 (`LAYOUT_VERSION`), in pin order (the meta marker first).
pub const DEFS: [MapDef; 16] = [
    def(
        "meta",
        MAP_META,
        MapType::Array,
        4,
        size_of::<XdpMeta>() as u32,
        0,
        |_| 1,
    ),
    def(
        "stats_array",
        MAP_STATS_ARRAY,
        MapType::Array,
        4,
        STATS,
        0,
        |_| XDP_ACTION_MAX,
    ),
    def(
        "stats_percpu",
        MAP_STATS_PERCPU,
        MapType::PerCpuArray,
        4,
        STATS,
        0,
        |_| XDP_ACTION_MAX,
    ),
    def(
        "src4",
        MAP_SRC4,
        MapType::LpmTrie,
        LPM4_KEY,
        RULE,
        NO_PREALLOC,
        |c| c.rules,
    ),
    def(
        "dst4",
        MAP_DST4,
        MapType::LpmTrie,
        LPM4_KEY,
        RULE,
        NO_PREALLOC,
        |c| c.rules,
    ),
    def(
        "src6",
        MAP_SRC6,
        MapType::LpmTrie,
        LPM6_KEY,
        RULE,
        NO_PREALLOC,
        |c| c.rules,
    ),
    def(
        "dst6",
        MAP_DST6,
        MapType::LpmTrie,
        LPM6_KEY,
        RULE,
        NO_PREALLOC,
        |c| c.rules,
    ),
    def(
        "src4_host",
        MAP_SRC4_HOST,
        MapType::Hash,
        4,
        RULE,
        NO_PREALLOC,
        |c| c.rules,
    ),
    def(
        "dst4_host",
        MAP_DST4_HOST,
        MapType::Hash,
        4,
        RULE,
        NO_PREALLOC,
        |c| c.rules,
    ),
    def(
        "src6_host",
        MAP_SRC6_HOST,
        MapType::Hash,
        16,
        RULE,
        NO_PREALLOC,
        |c| c.rules,
    ),
    def(
        "dst6_host",
        MAP_DST6_HOST,
        MapType::Hash,
        16,
        RULE,
        NO_PREALLOC,
        |c| c.rules,
    ),
    def(
        "rule_stats",
        MAP_RULE_STATS,
        MapType::PerCpuHash,
        4,
        STATS,
        NO_PREALLOC,
        |c| 4 * c.rules,
    ),
    def(
        "rule_count",
        MAP_RULE_COUNT,
        MapType::Array,
        4,
        size_of::<RuleCounts>() as u32,
        0,
        |_| 1,
    ),
    def(
        "talkers",
        MAP_TALKERS,
        MapType::LruHash,
        16,
        TALKER,
        0,
        |c| c.talkers,
    ),
    def(
        "talkers4",
        MAP_TALKERS4,
        MapType::LruHash,
        4,
        TALKER,
        0,
        |c| c.talkers,
    ),
    def("errors", MAP_ERRORS, MapType::PerCpuArray, 4, 8, 0, |_| {
        ERR_MAX
    }),
];

const fn def(
    pin: &'static str,
    name: &'static str,
    ty: MapType,
    key: u32,
    value: u32,
    flags: u32,
    entries: fn(&Capacity) -> u32,
) -> MapDef {
    MapDef {
        pin,
        name,
        ty,
        key,
        value,
        flags,
        entries,
    }
}

/// The firewall's maps as aya handles, one per [`DEFS`] row, in the same order.
pub struct XdpMaps {
    maps: Vec<Map>,
}

impl XdpMaps {
    /// Takes the maps out of a freshly loaded object.
    pub(crate) fn take(ebpf: &mut aya::Ebpf) -> XdpResult<Self> {
        let maps = DEFS
            .iter()
            .map(|d| {
                ebpf.take_map(d.name)
                    .ok_or(XdpError::Core(crate::Error::MissingObject { name: d.name }))
            })
            .collect::<XdpResult<_>>()?;
        Ok(Self { maps })
    }

    /// Opens every pin in `dir`, checking each definition against [`DEFS`] for `cap`.
    pub(crate) fn open(dir: &Path, cap: &Capacity) -> Result<Self, String> {
        let mut maps = Vec::with_capacity(DEFS.len());
        for d in &DEFS {
            let path = dir.join(d.pin);
            let data =
                MapData::from_pin(&path).map_err(|e| format!("cannot open pin {}: {e}", d.pin))?;
            check(d, &data, cap)?;
            maps.push(Map::from_map_data(data).map_err(|e| format!("pin {}: {e}", d.pin))?);
        }
        Ok(Self { maps })
    }

    /// Pins every map into `dir`.
    pub(crate) fn pin(&self, dir: &Path) -> XdpResult<()> {
        for (d, map) in DEFS.iter().zip(&self.maps) {
            let path = dir.join(d.pin);
            map.pin(&path).map_err(|e| {
                XdpError::io(
                    format!("pinning {}", path.display()),
                    std::io::Error::other(e.to_string()),
                )
            })?;
        }
        Ok(())
    }

    /// The handle of the map named `name` (one of the `MAP_*` names).
    pub fn get(&self, name: &str) -> &Map {
        let i = index(name);
        &self.maps[i]
    }

    /// Writable twin of [`XdpMaps::get`].
    pub fn get_mut(&mut self, name: &str) -> &mut Map {
        let i = index(name);
        &mut self.maps[i]
    }
}

fn index(name: &str) -> usize {
    DEFS.iter()
        .position(|d| d.name == name)
        .unwrap_or_else(|| panic!("{name} is not an XDP map"))
}

/// Compares a pinned map's kernel definition with the expected one; the error says what differs.
fn check(d: &MapDef, data: &MapData, cap: &Capacity) -> Result<(), String> {
    let info = data
        .info()
        .map_err(|e| format!("reading pin {}: {e}", d.pin))?;
    let ty = info.map_type().ok();
    let want = (d.key, d.value, d.entries(cap), d.flags);
    let got = (
        info.key_size(),
        info.value_size(),
        info.max_entries(),
        info.map_flags() & NO_PREALLOC,
    );
    if ty != Some(d.ty) || got != want {
        return Err(format!(
            "map {} has another definition ({ty:?}, key {} value {} entries {} flags {:#x}; \
             this mapscope expects {:?}, key {} value {} entries {} flags {:#x})",
            d.pin, got.0, got.1, got.2, got.3, d.ty, want.0, want.1, want.2, want.3
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_map_name_fits_the_kernel_limit_and_pins_are_unique() {
        for d in &DEFS {
            assert!(d.name.len() < 16, "{}", d.name);
            assert_eq!(DEFS.iter().filter(|o| o.pin == d.pin).count(), 1);
        }
        let cap = Capacity::default();
        assert_eq!(DEFS[index(MAP_RULE_STATS)].entries(&cap), 4 * 65_536);
        assert_eq!(DEFS[index(MAP_TALKERS)].entries(&cap), 16_384);
        assert_eq!(DEFS[index(MAP_TALKERS4)].entries(&cap), 16_384);
    }
}
