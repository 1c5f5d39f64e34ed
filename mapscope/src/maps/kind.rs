//! Map types: the kernel's numbers, bpftool's names for them, and what each type lets user space
//! do (per-CPU values, batch lookups, keyless queue/stack operations).

/// bpftool's name for each `enum bpf_map_type` value, indexed by the value.
const NAMES: &[&str] = &[
    "unspec",
    "hash",
    "array",
    "prog_array",
    "perf_event_array",
    "percpu_hash",
    "percpu_array",
    "stack_trace",
    "cgroup_array",
    "lru_hash",
    "lru_percpu_hash",
    "lpm_trie",
    "array_of_maps",
    "hash_of_maps",
    "devmap",
    "sockmap",
    "cpumap",
    "xskmap",
    "sockhash",
    "cgroup_storage",
    "reuseport_sockarray",
    "percpu_cgroup_storage",
    "queue",
    "stack",
    "sk_storage",
    "devmap_hash",
    "struct_ops",
    "ringbuf",
    "inode_storage",
    "task_storage",
    "bloom_filter",
    "user_ringbuf",
    "cgrp_storage",
    "arena",
];

/// A map type, as the kernel numbers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapKind(pub u32);

impl MapKind {
    pub const HASH: MapKind = MapKind(1);
    pub const ARRAY: MapKind = MapKind(2);
    pub const PROG_ARRAY: MapKind = MapKind(3);
    pub const PERF_EVENT_ARRAY: MapKind = MapKind(4);
    pub const PERCPU_HASH: MapKind = MapKind(5);
    pub const PERCPU_ARRAY: MapKind = MapKind(6);
    pub const CGROUP_ARRAY: MapKind = MapKind(8);
    pub const LRU_HASH: MapKind = MapKind(9);
    pub const LRU_PERCPU_HASH: MapKind = MapKind(10);
    pub const LPM_TRIE: MapKind = MapKind(11);
    pub const ARRAY_OF_MAPS: MapKind = MapKind(12);
    pub const PERCPU_CGROUP_STORAGE: MapKind = MapKind(21);
    pub const QUEUE: MapKind = MapKind(22);
    pub const STACK: MapKind = MapKind(23);
    pub const RINGBUF: MapKind = MapKind(27);
    pub const BLOOM_FILTER: MapKind = MapKind(30);
    pub const USER_RINGBUF: MapKind = MapKind(31);
    pub const ARENA: MapKind = MapKind(33);

    /// bpftool's name (`hash`, `percpu_array`, …), None for types newer than this table.
    pub fn name(self) -> Option<&'static str> {
        NAMES.get(self.0 as usize).copied()
    }

    /// The type called `name` by bpftool.
    pub fn from_name(name: &str) -> Option<MapKind> {
        NAMES
            .iter()
            .position(|n| *n == name)
            .filter(|&i| i > 0)
            .map(|i| MapKind(i as u32))
    }

    /// Every type name, for error messages.
    pub fn names() -> impl Iterator<Item = &'static str> {
        NAMES.iter().skip(1).copied()
    }

    /// The name, or the number for a type this table doesn't know.
    pub fn display(self) -> String {
        self.name()
            .map_or_else(|| self.0.to_string(), str::to_string)
    }

    /// Values are per possible CPU (one copy each, 8-byte aligned, in lookups).
    pub fn per_cpu(self) -> bool {
        matches!(
            self,
            Self::PERCPU_HASH
                | Self::PERCPU_ARRAY
                | Self::LRU_PERCPU_HASH
                | Self::PERCPU_CGROUP_STORAGE
        )
    }

    /// BPF_MAP_LOOKUP_BATCH is implemented for this type (kernel 5.6+).
    pub fn batch(self) -> bool {
        matches!(
            self,
            Self::HASH
                | Self::PERCPU_HASH
                | Self::LRU_HASH
                | Self::LRU_PERCPU_HASH
                | Self::ARRAY
                | Self::PERCPU_ARRAY
        )
    }

    /// Array-like: `get_next_key` walks indices and never restarts when an entry changes.
    pub fn indexed(self) -> bool {
        matches!(
            self,
            Self::ARRAY
                | Self::PERCPU_ARRAY
                | Self::PROG_ARRAY
                | Self::PERF_EVENT_ARRAY
                | Self::CGROUP_ARRAY
                | Self::ARRAY_OF_MAPS
        )
    }

    /// Queue or stack: no keys, push/pop/peek instead of get/set/del.
    pub fn keyless(self) -> bool {
        matches!(self, Self::QUEUE | Self::STACK)
    }

    /// Why entries of this type cannot be listed from user space, if they cannot.
    pub fn not_iterable(self) -> Option<&'static str> {
        match self {
            Self::QUEUE | Self::STACK => {
                Some("its entries can only be read by removing them: use `map peek` or `map pop`")
            }
            Self::RINGBUF | Self::USER_RINGBUF => {
                Some("it is a stream of records, not entries: read it with its consumer")
            }
            Self::BLOOM_FILTER => {
                Some("a bloom filter has no keys to list: query it with `map get`")
            }
            Self::ARENA => Some("an arena is memory mapped by its programs, not a key/value map"),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use aya_obj::generated::bpf_map_type as t;

    use super::*;

    #[test]
    fn names_follow_the_kernel_numbering() {
        for (kind, name) in [
            (t::BPF_MAP_TYPE_HASH, "hash"),
            (t::BPF_MAP_TYPE_PERCPU_ARRAY, "percpu_array"),
            (t::BPF_MAP_TYPE_LRU_PERCPU_HASH, "lru_percpu_hash"),
            (t::BPF_MAP_TYPE_LPM_TRIE, "lpm_trie"),
            (t::BPF_MAP_TYPE_QUEUE, "queue"),
            (t::BPF_MAP_TYPE_STACK, "stack"),
            (t::BPF_MAP_TYPE_DEVMAP_HASH, "devmap_hash"),
            (t::BPF_MAP_TYPE_RINGBUF, "ringbuf"),
            (t::BPF_MAP_TYPE_BLOOM_FILTER, "bloom_filter"),
            (t::BPF_MAP_TYPE_CGRP_STORAGE, "cgrp_storage"),
            (t::BPF_MAP_TYPE_ARENA, "arena"),
        ] {
            assert_eq!(MapKind(kind as u32).name(), Some(name));
            assert_eq!(MapKind::from_name(name), Some(MapKind(kind as u32)));
        }
        assert_eq!(MapKind(999).display(), "999");
        assert_eq!(MapKind::from_name("unspec"), None);
        assert_eq!(MapKind::from_name("nope"), None);
    }

    #[test]
    fn capabilities() {
        assert!(MapKind::PERCPU_HASH.per_cpu() && MapKind::PERCPU_HASH.batch());
        assert!(!MapKind::LPM_TRIE.batch() && !MapKind::LPM_TRIE.indexed());
        assert!(MapKind::QUEUE.keyless() && MapKind::QUEUE.not_iterable().is_some());
        assert!(MapKind::HASH.not_iterable().is_none());
    }
}
