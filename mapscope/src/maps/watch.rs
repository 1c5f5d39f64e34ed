//! `map watch`: read a counter map every interval and report which keys moved, by how much and
//! how fast. Each read is one walk (batch where possible); values become their integer leaves
//! (per-CPU copies summed), so any map of integers or of structs of integers works.
//!
//! A watch keeps one read in memory (key → integer leaves) to diff against the next: memory is
//! proportional to the number of keys, unlike `dump`.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

use super::{
    Error, MapHandle, Result,
    render::split_copies,
    types::MapTypes,
    walk::{self, Flow, Method},
};

/// One read of a map: integer leaves per key.
#[derive(Clone, Debug, Default)]
pub struct Reading {
    pub values: HashMap<Vec<u8>, Vec<i128>>,
    /// The walk stopped early because the map changed under get_next_key (see `walk.rs`).
    pub incomplete: bool,
}

/// What `map watch` reads: the map, its layouts and the names of the value's integer leaves.
pub struct Watcher {
    map: MapHandle,
    types: MapTypes,
    fields: Vec<String>,
}

impl Watcher {
    /// Checks that the map's values have integer parts to watch.
    pub fn new(map: MapHandle) -> Result<Self> {
        if let Some(why) = map.meta.kind.not_iterable() {
            return Err(Error::Unsupported {
                map: format!("map {}", map.meta.id),
                kind: map.meta.kind.display(),
                op: "watch".to_string(),
                fix: why.to_string(),
            });
        }
        let types = MapTypes::resolve(&map);
        let fields = types.value.leaf_names();
        if fields.is_empty() {
            return Err(Error::bad(format!(
                "{} has {}-byte values with no known integer fields (no BTF): map watch needs \
                 integer counters",
                map.label(),
                map.meta.value_size
            )));
        }
        Ok(Self { map, types, fields })
    }

    /// The open map.
    pub fn map(&self) -> &MapHandle {
        &self.map
    }

    /// Names of the watched integer fields (`value` for a plain integer).
    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    /// Reads every entry once.
    pub fn read(&self) -> Result<Reading> {
        let mut reading = Reading::default();
        let stride = self.map.stride();
        let size = self.map.meta.value_size as usize;
        let cpus = self.map.cpus();
        let mut leaves = Vec::with_capacity(self.fields.len());
        let stats = walk::walk(&self.map, Method::Auto, false, |key, value| {
            let copies: Vec<&[u8]> = split_copies(value, stride, size, cpus).collect();
            self.types.value.leaves(&copies, &mut leaves);
            reading.values.insert(key.to_vec(), leaves.clone());
            Ok(Flow::Continue)
        })?;
        reading.incomplete = stats.incomplete;
        Ok(reading)
    }

    /// The report between two readings `period_s` seconds apart.
    pub fn report(&self, prev: &Reading, cur: &Reading, period_s: f64, top: usize) -> Report {
        let mut changes: Vec<Change> = cur
            .values
            .iter()
            .filter_map(|(key, now)| {
                let before = prev.values.get(key);
                let delta: Vec<i128> = now
                    .iter()
                    .enumerate()
                    .map(|(i, v)| v - before.map_or(0, |b| b.get(i).copied().unwrap_or(0)))
                    .collect();
                delta.iter().any(|d| *d != 0).then(|| Change {
                    key: key.clone(),
                    formatted_key: self.types.key.decode(key),
                    rate: delta.iter().map(|d| rate(*d, period_s)).collect(),
                    delta,
                    total: now.clone(),
                })
            })
            .collect();
        sort_changes(&mut changes);
        let changed = changes.len();
        changes.truncate(top);
        Report {
            schema: 1,
            map: MapLabel {
                id: self.map.meta.id,
                name: self.map.meta.name.clone(),
                kind: self.map.meta.kind.display(),
            },
            period_s,
            fields: self.fields.clone(),
            entries: cur.values.len(),
            changed,
            removed: prev
                .values
                .keys()
                .filter(|k| !cur.values.contains_key(*k))
                .count(),
            incomplete: prev.incomplete || cur.incomplete,
            top: changes,
        }
    }
}

/// Per-second rate of `delta` over `period_s` (0 for an empty period).
fn rate(delta: i128, period_s: f64) -> f64 {
    if period_s > 0.0 {
        delta as f64 / period_s
    } else {
        0.0
    }
}

/// Largest first-field delta first, then the following fields, then key bytes for a stable order.
pub fn sort_changes(changes: &mut [Change]) {
    changes.sort_by(|a, b| b.delta.cmp(&a.delta).then_with(|| a.key.cmp(&b.key)));
}

/// The watched map.
#[derive(Clone, Debug, Serialize)]
pub struct MapLabel {
    pub id: u32,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// One key that changed.
#[derive(Clone, Debug, Serialize)]
pub struct Change {
    /// Key bytes, as bpftool's hex words in JSON.
    #[serde(serialize_with = "hex_bytes")]
    pub key: Vec<u8>,
    /// The key decoded by the map's layout.
    pub formatted_key: Value,
    /// Change since the previous read, per field.
    #[serde(serialize_with = "numbers")]
    pub delta: Vec<i128>,
    /// `delta` per second.
    pub rate: Vec<f64>,
    /// Current value, per field (per-CPU copies summed).
    #[serde(serialize_with = "numbers")]
    pub total: Vec<i128>,
}

/// One interval of `map watch`.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub schema: u32,
    pub map: MapLabel,
    pub period_s: f64,
    /// Names of the fields `delta`, `rate` and `total` hold, in order.
    pub fields: Vec<String>,
    /// Keys in the map now.
    pub entries: usize,
    /// Keys whose value changed (new keys count as changed from 0).
    pub changed: usize,
    /// Keys gone since the previous read.
    pub removed: usize,
    /// A read stopped early because the map changed under get_next_key: keys it missed count
    /// as removed (or as new next time).
    pub incomplete: bool,
    /// The `--top` largest changes, sorted by delta.
    pub top: Vec<Change>,
}

fn hex_bytes<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(b.iter().map(|b| format!("0x{b:02x}")))
}

fn numbers<S: serde::Serializer>(v: &[i128], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(
        v.iter()
            .map(|n| i64::try_from(*n).map_or_else(|_| Value::String(n.to_string()), Value::from)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(key: u8, delta: &[i128]) -> Change {
        Change {
            key: vec![key],
            formatted_key: Value::Null,
            delta: delta.to_vec(),
            rate: vec![],
            total: vec![],
        }
    }

    #[test]
    fn sorted_by_delta_then_key() {
        let mut c = vec![
            change(1, &[5, 0]),
            change(2, &[100, 1]),
            change(3, &[-4, 0]),
            change(0, &[5, 0]),
            change(4, &[100, 7]),
        ];
        sort_changes(&mut c);
        let keys: Vec<u8> = c.iter().map(|c| c.key[0]).collect();
        assert_eq!(keys, [4, 2, 0, 1, 3]);
    }

    #[test]
    fn rates() {
        assert_eq!(rate(10, 2.0), 5.0);
        assert_eq!(rate(10, 0.0), 0.0);
        assert_eq!(rate(-3, 1.5), -2.0);
    }
}
