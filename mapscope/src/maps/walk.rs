//! Iterating every entry of a map in constant memory: `BPF_MAP_LOOKUP_BATCH` where the type has
//! it, `BPF_MAP_GET_NEXT_KEY` + lookup elsewhere. Entries are handed to a visitor one at a time
//! from a fixed-size buffer, so a dump never holds the map in memory.
//!
//! Consistency while programs write to the map (documented in the README):
//! - Batch walks (hash, LRU, per-CPU hash, arrays) visit each hash bucket or array index once,
//!   so each key appears at most once; a key present for the whole walk appears exactly once,
//!   with the value it had when its bucket was read. Keys added or removed during the walk may or
//!   may not appear. A walk always ends: it is bounded by the number of buckets.
//! - `get_next_key` walks restart from the first key when the key they stand on is deleted. We
//!   detect that (the kernel hands back its first key, which we read just before and just after
//!   each step) and stop instead of repeating keys: the dump is then marked incomplete. Array walks never restart. A hard
//!   step limit (twice `max_entries`) bounds the walk whatever the map does.

use super::{Error, MapHandle, Result, sys};

/// Target size of one batch's key + value buffers.
const BATCH_BYTES: usize = 1 << 20;
/// Most entries per batch call.
const MAX_BATCH: usize = 16_384;

/// How to iterate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Batch where the map type supports it, else get_next_key.
    Auto,
    /// `BPF_MAP_LOOKUP_BATCH` (an error if the kernel refuses it for this map).
    Batch,
    /// `BPF_MAP_GET_NEXT_KEY` + `BPF_MAP_LOOKUP_ELEM`, one key at a time (what bpftool does).
    NextKey,
}

/// What a visitor wants after an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// What a walk did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalkStats {
    /// Entries handed to the visitor.
    pub entries: u64,
    /// bpf() calls made.
    pub syscalls: u64,
    /// Whether batch lookups were used.
    pub batched: bool,
    /// A get_next_key walk stopped early because the map changed under it (entries after the
    /// point of change are missing; none are repeated).
    pub incomplete: bool,
}

/// Visits every entry: `visit(key, value)` where `value` holds every CPU's copy for per-CPU
/// maps (`map.stride()` bytes apart). With `keys_only` a get_next_key walk skips the lookups
/// and `value` is empty.
pub fn walk(
    map: &MapHandle,
    method: Method,
    keys_only: bool,
    mut visit: impl FnMut(&[u8], &[u8]) -> Result<Flow>,
) -> Result<WalkStats> {
    let kind = map.meta.kind;
    if let Some(why) = kind.not_iterable() {
        return Err(Error::Unsupported {
            map: format!("map {}", map.meta.id),
            kind: kind.display(),
            op: "listing entries".to_string(),
            fix: why.to_string(),
        });
    }
    let mut stats = WalkStats::default();
    let try_batch = match method {
        Method::Auto => kind.batch(),
        Method::Batch => true,
        Method::NextKey => false,
    };
    if try_batch {
        match batch_walk(map, &mut stats, &mut visit) {
            Err(BatchError::Unsupported(_)) if method == Method::Auto => {}
            Err(BatchError::Unsupported(e)) => {
                return Err(Error::sys(
                    format!("batch lookup in {} (try without --batch)", map.label()),
                    e,
                ));
            }
            Err(BatchError::Other(e)) => return Err(e),
            Ok(()) => return Ok(stats),
        }
    }
    next_key_walk(map, keys_only, &mut stats, &mut visit)?;
    Ok(stats)
}

enum BatchError {
    /// The kernel has no batch lookup for this map (nothing was visited yet).
    Unsupported(std::io::Error),
    Other(Error),
}

fn batch_walk(
    map: &MapHandle,
    stats: &mut WalkStats,
    visit: &mut impl FnMut(&[u8], &[u8]) -> Result<Flow>,
) -> Result<(), BatchError> {
    let key_size = map.meta.key_size as usize;
    let value_len = map.value_len();
    let mut count = (BATCH_BYTES / (key_size + value_len).max(1))
        .clamp(1, MAX_BATCH)
        .min((map.meta.max_entries as usize).max(1));
    let cursor_len = key_size.max(8);
    let (mut cursor_in, mut cursor_out) = (vec![0u8; cursor_len], vec![0u8; cursor_len]);
    let mut keys = vec![0u8; count * key_size];
    let mut values = vec![0u8; count * value_len];
    let mut first = true;
    loop {
        stats.syscalls += 1;
        let res = sys::lookup_batch(
            map.fd(),
            (!first).then_some(&cursor_in[..]),
            &mut cursor_out,
            &mut keys,
            &mut values,
            count as u32,
        );
        let (n, done) = match res {
            Ok(r) => r,
            // A hash bucket holds more entries than the buffer: grow it and ask again.
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && count < (1 << 24) => {
                count *= 2;
                keys.resize(count * key_size, 0);
                values.resize(count * value_len, 0);
                continue;
            }
            Err(e)
                if first
                    && matches!(
                        e.raw_os_error(),
                        Some(libc::EINVAL | libc::EOPNOTSUPP | sys::ENOTSUPP)
                    ) =>
            {
                return Err(BatchError::Unsupported(e));
            }
            Err(e) => {
                return Err(BatchError::Other(Error::sys(
                    format!("batch lookup in {}", map.label()),
                    e,
                )));
            }
        };
        stats.batched = true;
        for i in 0..n as usize {
            let key = &keys[i * key_size..(i + 1) * key_size];
            let value = &values[i * value_len..(i + 1) * value_len];
            stats.entries += 1;
            if visit(key, value).map_err(BatchError::Other)? == Flow::Stop {
                return Ok(());
            }
        }
        if done {
            return Ok(());
        }
        std::mem::swap(&mut cursor_in, &mut cursor_out);
        first = false;
    }
}

fn next_key_walk(
    map: &MapHandle,
    keys_only: bool,
    stats: &mut WalkStats,
    visit: &mut impl FnMut(&[u8], &[u8]) -> Result<Flow>,
) -> Result<()> {
    let key_size = map.meta.key_size as usize;
    let restarts = !map.meta.kind.indexed();
    let max_steps = 2 * u64::from(map.meta.max_entries) + 16;
    let (mut prev, mut next, mut head) = (
        vec![0u8; key_size],
        vec![0u8; key_size],
        vec![0u8; key_size],
    );
    let mut value = vec![0u8; if keys_only { 0 } else { map.value_len() }];
    let mut started = false;
    let mut steps = 0u64;
    let gnk_err = |e| Error::sys(format!("walking the keys of {}", map.label()), e);
    let mut head_before = vec![0u8; key_size];
    let mut recent = RecentKeys::default();
    loop {
        let check_restart = started && restarts;
        if check_restart {
            stats.syscalls += 1;
            if !sys::next_key(map.fd(), None, &mut head_before).map_err(gnk_err)? {
                // Empty now: everything left was deleted.
                stats.incomplete = true;
                return Ok(());
            }
        }
        stats.syscalls += 1;
        if !sys::next_key(map.fd(), started.then_some(&prev[..]), &mut next).map_err(gnk_err)? {
            return Ok(());
        }
        if check_restart {
            // The kernel restarts from the first key when `prev` was deleted meanwhile; the
            // first key is never the legitimate successor of another key, so equality with the
            // first key read just before or just after the step means a restart. (A restart goes
            // unseen only if the first key changed both before and after it within microseconds.)
            stats.syscalls += 1;
            if !sys::next_key(map.fd(), None, &mut head).map_err(gnk_err)?
                || head == next
                || head_before == next
            {
                stats.incomplete = true;
                return Ok(());
            }
        }
        steps += 1;
        if steps > max_steps {
            stats.incomplete = true;
            return Ok(());
        }
        std::mem::swap(&mut prev, &mut next);
        started = true;
        if restarts && recent.seen_or_insert(&prev) {
            // Updated in place: the kernel re-links a replaced element at the head of its
            // bucket, so the walk runs over that bucket's earlier keys again. Skip them.
            continue;
        }
        if !keys_only {
            stats.syscalls += 1;
            match sys::lookup(map.fd(), Some(&prev), &mut value) {
                Ok(()) => {}
                // Deleted since get_next_key returned it, or an empty slot of a program array.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | sys::ENOTSUPP)) => {
                    return Err(Error::Unsupported {
                        map: format!("map {}", map.meta.id),
                        kind: map.meta.kind.display(),
                        op: "reading values from user space".to_string(),
                        fix: "list its keys with --keys-only".to_string(),
                    });
                }
                Err(e) => {
                    return Err(Error::sys(format!("lookup in {}", map.label()), e));
                }
            }
        }
        stats.entries += 1;
        if visit(&prev, &value)? == Flow::Stop {
            return Ok(());
        }
    }
}

/// How many of the last visited keys a `get_next_key` walk remembers to skip in-bucket repeats.
const RECENT_KEYS: usize = 64;

/// The last [`RECENT_KEYS`] keys of a walk, in constant memory.
#[derive(Default)]
struct RecentKeys {
    keys: std::collections::VecDeque<Vec<u8>>,
}

impl RecentKeys {
    /// True if `key` is among the recent keys; otherwise remembers it (forgetting the oldest).
    fn seen_or_insert(&mut self, key: &[u8]) -> bool {
        if self.keys.iter().any(|k| k == key) {
            return true;
        }
        let mut slot = if self.keys.len() == RECENT_KEYS {
            self.keys.pop_front().unwrap_or_default()
        } else {
            Vec::new()
        };
        slot.clear();
        slot.extend_from_slice(key);
        self.keys.push_back(slot);
        false
    }
}

#[cfg(test)]
mod recent_tests {
    use super::*;

    #[test]
    fn recent_keys_remember_the_last_window_only() {
        let mut r = RecentKeys::default();
        for k in 0..RECENT_KEYS as u32 {
            assert!(!r.seen_or_insert(&k.to_ne_bytes()));
        }
        assert!(r.seen_or_insert(&0u32.to_ne_bytes()));
        assert!(!r.seen_or_insert(&1000u32.to_ne_bytes()));
        // 0 was the oldest and is forgotten now.
        assert!(!r.seen_or_insert(&0u32.to_ne_bytes()));
    }
}
