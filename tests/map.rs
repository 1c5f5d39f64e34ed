//! The map toolbox against the real kernel and bpftool: maps the test creates itself with raw
//! bpf() calls (`map/raw.rs`), listed, dumped, edited, pinned and watched by `mapscope map`, and
//! compared field by field and entry by entry with what `bpftool -j` reports for the same map.

mod harness;
#[path = "map/raw.rs"]
mod raw;
#[path = "map/run.rs"]
mod run;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::atomic::{AtomicBool, Ordering},
};

use raw::{
    ARRAY, BtfBuilder, HASH, LPM_TRIE, LRU_HASH, MapBtf, PERCPU_ARRAY, PERCPU_HASH, QUEUE, STACK,
    TestMap,
};
use run::{bpftool, json, ms, ms_ok};
use serde_json::Value;

fn setup() {
    harness::require_root();
    raw::remove_stale_pins();
}

fn u32k(k: u32) -> Vec<u8> {
    k.to_ne_bytes().to_vec()
}

/// Canonical text of an entry's key and value(s), ignoring extra members, for set comparisons.
fn canon(e: &Value) -> String {
    let mut m = serde_json::Map::new();
    for f in ["key", "value", "values"] {
        if let Some(v) = e.get(f) {
            m.insert(f.into(), v.clone());
        }
    }
    Value::Object(m).to_string()
}

fn entry_set(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .expect("a JSON array")
        .iter()
        .map(canon)
        .collect()
}

/// A per-CPU value with `f(cpu)` as a u64 in each CPU's copy.
fn per_cpu_u64(f: impl Fn(usize) -> u64) -> Vec<u8> {
    (0..raw::cpus()).flat_map(|c| f(c).to_ne_bytes()).collect()
}

const SHOW_FIELDS: &[&str] = &[
    "id",
    "type",
    "name",
    "flags",
    "bytes_key",
    "bytes_value",
    "max_entries",
    "bytes_memlock",
    "frozen",
    "btf_id",
    "pinned",
];

#[test]
fn list_and_show_match_bpftool() {
    setup();
    let btf = value_btf();
    let maps = [
        TestMap::new("ms_hash", HASH, 4, 8, 64),
        TestMap::new("ms_array", ARRAY, 4, 8, 16),
        TestMap::new("ms_pc_hash", PERCPU_HASH, 4, 16, 32),
        TestMap::new("ms_pc_array", PERCPU_ARRAY, 4, 8, 8),
        TestMap::new("ms_lru", LRU_HASH, 8, 8, 128),
        TestMap::new("ms_lpm", LPM_TRIE, 8, 4, 32),
        TestMap::new("ms_queue", QUEUE, 0, 4, 8),
        TestMap::new("ms_stack", STACK, 0, 8, 8),
        TestMap::with_btf("ms_btf", HASH, 4, 32, 8, Some(&btf)),
    ];
    let list = json(&["map", "list", "--json"]);
    let by_id: BTreeMap<u64, &Value> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_u64().unwrap(), r))
        .collect();
    for m in &maps {
        let ours = json(&["map", "show", "pinned", m.path(), "--json"]);
        let theirs = bpftool(&["-f", "map", "show", "pinned", m.path()]);
        for f in SHOW_FIELDS {
            assert_eq!(
                ours.get(*f),
                theirs.get(*f),
                "{f} of {}: {ours} vs {theirs}",
                m.path()
            );
        }
        assert_eq!(ours["pinned"], serde_json::json!([m.path()]));
        assert_eq!(ours["programs"], serde_json::json!([]));
        assert_eq!(ours["family"], Value::Null);
        let id = ours["id"].as_u64().unwrap();
        assert_eq!(by_id.get(&id), Some(&&ours), "map list record of {id}");
        // The same map by id and by its (unique) name.
        let by_id = json(&["map", "show", "id", &id.to_string(), "--json"]);
        assert_eq!(by_id, ours);
    }
    let by_name = json(&["map", "show", "name", "ms_lpm", "--json"]);
    assert_eq!(by_name["type"], "lpm_trie");
    assert!(
        json(&["map", "show", "name", "ms_btf", "--json"])["btf_id"]
            .as_u64()
            .unwrap()
            > 0
    );
    // The text table names every map.
    let table = ms_ok(&["map", "list"]);
    for m in &maps {
        assert!(table.contains(m.path()), "{table}");
    }
}

#[test]
fn dump_of_100k_hash_equals_bpftool() {
    setup();
    let n = 100_000u32;
    let h = TestMap::new("ms_big", HASH, 4, 8, n);
    for i in 0..n {
        // An odd multiplier is a bijection on u32: 100 000 distinct, scattered keys.
        let key = i.wrapping_mul(2_654_435_761).to_ne_bytes();
        let value = (u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_ne_bytes();
        h.update(&key, &value);
    }
    let theirs = entry_set(&bpftool(&["map", "dump", "pinned", h.path()]));
    assert_eq!(theirs.len(), n as usize);
    let ours = json(&["map", "dump", "pinned", h.path(), "--json"]);
    assert_eq!(entry_set(&ours), theirs, "batch dump differs from bpftool");
    let ours = json(&[
        "map",
        "dump",
        "pinned",
        h.path(),
        "--json",
        "--method",
        "next-key",
    ]);
    assert_eq!(
        entry_set(&ours),
        theirs,
        "get_next_key dump differs from bpftool"
    );

    let keys = json(&["map", "dump", "pinned", h.path(), "--json", "--keys-only"]);
    let keys: BTreeSet<String> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].to_string())
        .collect();
    assert_eq!(keys.len(), n as usize);
    let limited = json(&["map", "dump", "pinned", h.path(), "--json", "--limit", "10"]);
    let limited = entry_set(&limited);
    assert_eq!(limited.len(), 10);
    assert!(limited.is_subset(&theirs));
    let text = ms_ok(&["map", "dump", "pinned", h.path()]);
    assert!(text.ends_with(&format!("Found {n} elements\n")));
}

#[test]
fn dumps_of_every_iterable_type_equal_bpftool() {
    setup();
    let cpus = raw::cpus();
    let array = TestMap::new("ms_d_array", ARRAY, 4, 8, 16);
    let pc_hash = TestMap::new("ms_d_pchash", PERCPU_HASH, 4, 8, 16);
    let pc_array = TestMap::new("ms_d_pcarr", PERCPU_ARRAY, 4, 8, 4);
    let lru = TestMap::new("ms_d_lru", LRU_HASH, 4, 8, 64);
    let lpm = TestMap::new("ms_d_lpm", LPM_TRIE, 8, 4, 16);
    for i in 0..5u32 {
        array.update(&u32k(i * 3), &u64::from(i + 100).to_ne_bytes());
        pc_hash.update(&u32k(i + 1), &per_cpu_u64(|c| u64::from(i) * 10 + c as u64));
        lru.update(&u32k(i * 7), &u64::from(i).to_ne_bytes());
    }
    pc_array.update(&u32k(2), &per_cpu_u64(|c| 1000 + c as u64));
    for (addr, len) in [
        ([10, 0, 0, 0], 8u32),
        ([10, 213, 0, 0], 16),
        ([192, 168, 1, 0], 24),
    ] {
        let mut key = len.to_ne_bytes().to_vec();
        key.extend(addr);
        lpm.update(&key, &len.to_ne_bytes());
    }
    for m in [&array, &pc_hash, &pc_array, &lru, &lpm] {
        let theirs = entry_set(&bpftool(&["map", "dump", "pinned", m.path()]));
        for method in ["auto", "next-key"] {
            let ours = json(&[
                "map",
                "dump",
                "pinned",
                m.path(),
                "--json",
                "--method",
                method,
            ]);
            assert_eq!(entry_set(&ours), theirs, "{} ({method})", m.path());
        }
    }
    // --sum adds the CPUs' copies.
    let ours = json(&["map", "dump", "pinned", pc_hash.path(), "--json", "--sum"]);
    for e in ours.as_array().unwrap() {
        let key = u32::from_str_radix(e["key"][0].as_str().unwrap().trim_start_matches("0x"), 16)
            .unwrap();
        let i = u64::from(key - 1);
        let want: u64 = (0..cpus).map(|c| i * 10 + c as u64).sum();
        assert_eq!(e["sum"], want, "{e}");
    }
    let typed = json(&[
        "map",
        "dump",
        "pinned",
        pc_array.path(),
        "--json",
        "--format",
        "typed",
        "--sum",
    ]);
    let e = &typed[2];
    assert_eq!(e["formatted"]["key"], 2);
    assert_eq!(
        e["formatted"]["values"][0],
        serde_json::json!({"cpu": 0, "value": 1000})
    );
    assert_eq!(e["sum"], (0..cpus).map(|c| 1000 + c as u64).sum::<u64>());
}

#[test]
fn get_set_del_round_trip() {
    setup();
    let h = TestMap::new("ms_rt_hash", HASH, 4, 8, 4);
    let p = h.path();
    ms_ok(&["map", "set", "pinned", p, "key", "u32:5", "value", "u64:7"]);
    assert_eq!(h.lookup(&u32k(5)), Some(7u64.to_ne_bytes().to_vec()));
    let got = json(&[
        "map", "get", "pinned", p, "key", "5", "0", "0", "0", "--json",
    ]);
    assert_eq!(
        got["value"],
        serde_json::json!([
            "0x07", "0x00", "0x00", "0x00", "0x00", "0x00", "0x00", "0x00"
        ])
    );
    // bpftool hex words, `hex`, and exist/noexist.
    ms_ok(&[
        "map", "set", "pinned", p, "key", "hex", "05", "00", "00", "00", "value", "0x2a", "0", "0",
        "0", "0", "0", "0", "0", "exist",
    ]);
    assert_eq!(h.lookup(&u32k(5)), Some(42u64.to_ne_bytes().to_vec()));
    let out = ms(&[
        "map", "set", "pinned", p, "key", "u32:5", "value", "u64:1", "noexist",
    ]);
    harness::assert_one_line_error(&out, "already exists");
    let out = ms(&[
        "map", "set", "pinned", p, "key", "u32:6", "value", "u64:1", "exist",
    ]);
    harness::assert_one_line_error(&out, "not found");
    assert_eq!(h.lookup(&u32k(6)), None);
    let typed = json(&[
        "map", "get", "pinned", p, "key", "u32:5", "--json", "--format", "typed",
    ]);
    assert_eq!(
        typed["formatted"],
        serde_json::json!({"key": 5, "value": 42})
    );
    assert_eq!(
        ms_ok(&["map", "get", "pinned", p, "key", "u32:5"]),
        "key: 05 00 00 00  value: 2a 00 00 00 00 00 00 00\n"
    );
    ms_ok(&["map", "del", "pinned", p, "key", "u32:5"]);
    assert_eq!(h.lookup(&u32k(5)), None);
    harness::assert_one_line_error(
        &ms(&["map", "get", "pinned", p, "key", "u32:5"]),
        "not found",
    );
    harness::assert_one_line_error(
        &ms(&["map", "del", "pinned", p, "key", "u32:5"]),
        "not found",
    );

    // Per-CPU: the value lands on every CPU.
    let pc = TestMap::new("ms_rt_pc", PERCPU_HASH, 4, 8, 4);
    ms_ok(&[
        "map",
        "set",
        "pinned",
        pc.path(),
        "key",
        "u32:1",
        "value",
        "u64:9",
    ]);
    assert_eq!(pc.lookup(&u32k(1)), Some(per_cpu_u64(|_| 9)));
    let got = json(&["map", "get", "pinned", pc.path(), "key", "u32:1", "--json"]);
    assert_eq!(got["values"].as_array().unwrap().len(), raw::cpus());

    // LPM keys in the typed syntax.
    let lpm = TestMap::new("ms_rt_lpm", LPM_TRIE, 8, 4, 4);
    ms_ok(&[
        "map",
        "set",
        "pinned",
        lpm.path(),
        "key",
        "ip:10.213.0.0/16",
        "value",
        "u32:3",
    ]);
    let mut key = 16u32.to_ne_bytes().to_vec();
    key.extend([10, 213, 0, 0]);
    assert_eq!(lpm.lookup(&key), Some(3u32.to_ne_bytes().to_vec()));
    ms_ok(&[
        "map",
        "del",
        "pinned",
        lpm.path(),
        "key",
        "ip:10.213.0.0/16",
    ]);
    assert_eq!(lpm.lookup(&key), None);

    // Arrays: every index exists; deleting is refused, out-of-range indices too.
    let a = TestMap::new("ms_rt_array", ARRAY, 4, 8, 4);
    ms_ok(&[
        "map",
        "set",
        "pinned",
        a.path(),
        "key",
        "u32:3",
        "value",
        "u64:11",
    ]);
    assert_eq!(a.lookup(&u32k(3)), Some(11u64.to_ne_bytes().to_vec()));
    harness::assert_one_line_error(
        &ms(&["map", "del", "pinned", a.path(), "key", "u32:3"]),
        "set it to zero",
    );
    harness::assert_one_line_error(
        &ms(&[
            "map",
            "set",
            "pinned",
            a.path(),
            "key",
            "u32:4",
            "value",
            "u64:1",
        ]),
        "out of range",
    );
}

#[test]
fn queue_pops_fifo_and_stack_lifo() {
    setup();
    let q = TestMap::new("ms_queue_ops", QUEUE, 0, 4, 3);
    let s = TestMap::new("ms_stack_ops", STACK, 0, 4, 3);
    for m in [&q, &s] {
        for v in 1..=3 {
            ms_ok(&[
                "map",
                "push",
                "pinned",
                m.path(),
                "value",
                &format!("u32:{v}"),
            ]);
        }
        harness::assert_one_line_error(
            &ms(&["map", "push", "pinned", m.path(), "value", "u32:4"]),
            "is full",
        );
    }
    let pop = |m: &TestMap| -> u32 {
        let v = json(&[
            "map",
            "pop",
            "pinned",
            m.path(),
            "--json",
            "--format",
            "typed",
        ]);
        v["formatted"]["value"].as_u64().unwrap() as u32
    };
    let peek = json(&["map", "peek", "pinned", q.path(), "--json"]);
    assert_eq!(peek["value"][0], "0x01");
    assert_eq!(
        [pop(&q), pop(&q), pop(&q)],
        [1, 2, 3],
        "queue is first in, first out"
    );
    assert_eq!(
        [pop(&s), pop(&s), pop(&s)],
        [3, 2, 1],
        "stack is last in, first out"
    );
    for m in [&q, &s] {
        harness::assert_one_line_error(&ms(&["map", "pop", "pinned", m.path()]), "is empty");
        harness::assert_one_line_error(&ms(&["map", "peek", "pinned", m.path()]), "is empty");
    }
    // `exist` overwrites the oldest entry of a full queue.
    for v in [1, 2, 3, 4] {
        let mut args = vec!["map", "push", "pinned", q.path(), "value"];
        let word = format!("u32:{v}");
        args.push(&word);
        if v == 4 {
            args.push("exist");
        }
        ms_ok(&args);
    }
    assert_eq!([pop(&q), pop(&q), pop(&q)], [2, 3, 4]);
    // Pushed with raw bpf() too, popped by mapscope.
    s.push(&9u32.to_ne_bytes());
    assert_eq!(pop(&s), 9);
}

#[test]
fn dump_terminates_and_never_repeats_keys_under_a_concurrent_writer() {
    setup();
    const STABLE: u32 = 1000;
    let h = TestMap::new("ms_churn", HASH, 4, 8, 20_000);
    for k in 0..10_000u32 {
        h.update(&u32k(k), &u64::from(k).to_ne_bytes());
    }
    let lpm = TestMap::new("ms_churn_lpm", LPM_TRIE, 8, 4, 4096);
    let stop = AtomicBool::new(false);
    /// Stops the writer however the scope ends, so a failed assertion can't leave it spinning.
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    std::thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        // The writer never touches keys below STABLE.
        scope.spawn(|| {
            let mut x = 12_345u32;
            while !stop.load(Ordering::Relaxed) {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let k = STABLE + (x >> 8) % 19_000;
                if x & 1 == 0 {
                    h.delete(&u32k(k));
                } else {
                    let _ = h.try_update(&u32k(k), &1u64.to_ne_bytes()); // may be full
                }
                let len = 8 + (x >> 4) % 17;
                let mut key = len.to_ne_bytes().to_vec();
                key.extend((x >> 3).to_be_bytes());
                if x & 2 == 0 {
                    lpm.delete(&key);
                } else {
                    let _ = lpm.try_update(&key, &len.to_ne_bytes()); // may be full
                }
            }
        });
        for round in 0..12 {
            let method = if round % 3 == 0 { "auto" } else { "next-key" };
            let out = run::ms_with_timeout(&[
                "map",
                "dump",
                "pinned",
                h.path(),
                "--json",
                "--method",
                method,
            ]);
            let dump: Value =
                serde_json::from_slice(&out.stdout).expect("valid JSON while the map changes");
            let mut seen = BTreeSet::new();
            for e in dump.as_array().unwrap() {
                assert!(
                    seen.insert(e["key"].to_string()),
                    "key repeated ({method}): {e}"
                );
            }
            if method == "auto" {
                // Keys present for the whole walk appear exactly once, with their value.
                for k in 0..STABLE {
                    let key: Vec<String> = u32k(k).iter().map(|b| format!("0x{b:02x}")).collect();
                    assert!(
                        seen.contains(&serde_json::json!(key).to_string()),
                        "stable key {k} missing"
                    );
                }
            }
            let out = run::ms_with_timeout(&["map", "dump", "pinned", lpm.path(), "--json"]);
            let dump: Value = serde_json::from_slice(&out.stdout).unwrap();
            let keys: Vec<String> = dump
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["key"].to_string())
                .collect();
            let unique: BTreeSet<&String> = keys.iter().collect();
            assert_eq!(unique.len(), keys.len(), "LPM walk repeated a key");
        }
    });
}

#[test]
fn watch_deltas_are_exact() {
    setup();
    let h = TestMap::new("ms_watch", HASH, 4, 8, 64);
    for k in 1..=5u32 {
        h.update(&u32k(k), &100u64.to_ne_bytes());
    }
    let mut watch = run::Spawned::new(&[
        "map",
        "watch",
        "pinned",
        h.path(),
        "--interval",
        "0.3",
        "--json",
    ]);
    let banner = watch.stderr_line();
    assert!(
        banner.contains("watching map") && banner.contains("5 keys"),
        "{banner}"
    );
    // The test is the only writer: key 7 appears and grows to 1000, key 3 grows by 5.
    let add = |k: u32, n: u64| {
        let cur = h
            .lookup(&u32k(k))
            .map_or(0, |v| u64::from_ne_bytes(v.try_into().unwrap()));
        h.update(&u32k(k), &(cur + n).to_ne_bytes());
    };
    for _ in 0..10 {
        add(7, 100);
    }
    add(3, 5);
    let sums =
        watch.sum_deltas(|totals| totals.get(&7) == Some(&1000) && totals.get(&3) == Some(&105));
    assert_eq!(
        sums,
        BTreeMap::from([(3, 5), (7, 1000)]),
        "summed deltas over every report"
    );
    drop(watch);

    // Per-CPU counters: the deltas are summed over CPUs.
    let pc = TestMap::new("ms_watch_pc", PERCPU_ARRAY, 4, 8, 4);
    let mut watch = run::Spawned::new(&[
        "map",
        "watch",
        "pinned",
        pc.path(),
        "--interval",
        "0.3",
        "--json",
        "--top",
        "2",
    ]);
    watch.stderr_line();
    pc.update(&u32k(1), &per_cpu_u64(|c| 10 * (c as u64 + 1)));
    pc.update(&u32k(2), &per_cpu_u64(|_| 1));
    let cpus = raw::cpus() as i64;
    let want1 = 10 * cpus * (cpus + 1) / 2;
    let sums = watch.sum_deltas(|t| t.get(&1) == Some(&want1) && t.get(&2) == Some(&cpus));
    assert_eq!(sums, BTreeMap::from([(1, want1), (2, cpus)]));
}

#[test]
fn typed_dump_matches_bpftool_btf_output() {
    setup();
    let btf = value_btf();
    let h = TestMap::with_btf("ms_typed", HASH, 4, 32, 8, Some(&btf));
    let pc = TestMap::with_btf("ms_typed_pc", PERCPU_HASH, 4, 32, 8, Some(&btf));
    let rec = |packets: u64, name: &[u8], color: u32, flags: u32| {
        let mut v = packets.to_ne_bytes().to_vec();
        v.extend((packets * 1500).to_ne_bytes());
        let mut n = [0u8; 8];
        n[..name.len()].copy_from_slice(name);
        v.extend(n);
        v.extend(color.to_ne_bytes());
        v.extend(flags.to_ne_bytes());
        v
    };
    h.update(&u32k(1), &rec(3, b"eth0", 7, 9));
    h.update(&u32k(2), &rec(4, b"abcdefgh", 5, 0));
    h.update(&u32k(3), &rec(0, b"", 0, u32::MAX));
    let cpus = raw::cpus();
    let pcv: Vec<u8> = (0..cpus)
        .flat_map(|c| rec(c as u64 + 1, b"lo", 0, 1))
        .collect();
    pc.update(&u32k(9), &pcv);
    for m in [&h, &pc] {
        let theirs = bpftool(&["map", "dump", "pinned", m.path()]);
        let ours = json(&[
            "map",
            "dump",
            "pinned",
            m.path(),
            "--json",
            "--format",
            "typed",
        ]);
        assert_eq!(entry_set(&ours), entry_set(&theirs));
        let theirs: BTreeMap<String, Value> = theirs
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["key"].to_string(), e["formatted"].clone()))
            .collect();
        for e in ours.as_array().unwrap() {
            assert_eq!(
                Some(&e["formatted"]),
                theirs.get(&e["key"].to_string()),
                "{e}"
            );
        }
    }
    let sum = json(&["map", "dump", "pinned", pc.path(), "--json", "--sum"]);
    let n = cpus as u64;
    assert_eq!(
        sum[0]["sum"],
        serde_json::json!({"packets": n * (n + 1) / 2, "bytes": 1500 * n * (n + 1) / 2, "flags": n})
    );
}

#[rustfmt::skip]
/// BTF for `u32` keys and `struct rec { u64 packets; u64 bytes; char name[8]; enum color c;
/// u32 flags; }` values (ids: key 1, value 6).
fn value_btf() -> MapBtf {
    let mut b = BtfBuilder::new();
    let u32n = b.name("unsigned int");
    let u64n = b.name("long long unsigned int");
    let charn = b.name("char");
    let key = b.add(&[u32n, 1 << 24, 4, 32]);
    let u64t = b.add(&[u64n, 1 << 24, 8, 64]);
    let chart = b.add(&[charn, 1 << 24, 1, (1 << 24) | 8]);
    let name_arr = b.add(&[0, 3 << 24, 0, chart, key, 8]);
    let (color, red, blue) = (b.name("color"), b.name("RED"), b.name("BLUE"));
    let colort = b.add(&[color, (6 << 24) | 2, 4, red, 0, blue, 7]);
    let n: Vec<u32> = ["rec", "packets", "bytes", "name", "c", "flags"].iter().map(|s| b.name(s)).collect();
    let value = b.add(&[
        n[0], (4 << 24) | 5, 32,
        n[1], u64t, 0,
        n[2], u64t, 64,
        n[3], name_arr, 128,
        n[4], colort, 192,
        n[5], key, 224,
    ]);
    MapBtf {
        fd: b.load(),
        key,
        value,
    }
}

#[test]
fn own_maps_show_their_family_and_programs() {
    setup();
    use aya::programs::UProbe;
    use mapscope::loader::{self, Family};
    let mut ebpf = loader::load(Family::Malloc, &[]).expect("loading the malloc object");
    let prog: &mut UProbe = loader::program_mut(&mut ebpf, "malloc_enter").unwrap();
    prog.load().expect("loading malloc_enter");
    let prog_id = prog.info().unwrap().id();
    let their_prog = bpftool(&["prog", "show", "id", &prog_id.to_string()]);
    let list = json(&["map", "list", "--json"]);
    let mut found = BTreeSet::new();
    for r in list.as_array().unwrap() {
        let Some(progs) = r["programs"].as_array() else {
            continue;
        };
        if !progs.iter().any(|p| p["id"] == prog_id) {
            continue;
        }
        found.insert(r["name"].as_str().unwrap().to_string());
        assert_eq!(r["family"], "malloc", "{r}");
        let name = r["name"].as_str().unwrap();
        assert!(name.starts_with("MALLOC_") || name == ".rodata", "{r}");
        assert!(
            their_prog["map_ids"].as_array().unwrap().contains(&r["id"]),
            "{their_prog}"
        );
        assert!(progs.iter().any(|p| p["name"] == "malloc_enter"));
        if r["name"] == "MALLOC_PCPU" {
            let id = r["id"].to_string();
            let dump = json(&[
                "map", "dump", "id", &id, "--json", "--format", "typed", "--sum",
            ]);
            assert_eq!(
                dump[0]["formatted"]["values"][0]["value"],
                serde_json::json!({"calls": 0, "bytes": 0})
            );
            assert_eq!(dump[0]["sum"], serde_json::json!({"calls": 0, "bytes": 0}));
        }
    }
    assert_eq!(found.len(), their_prog["map_ids"].as_array().unwrap().len());
    let expected = [
        ".rodata",
        "MALLOC_PCPU",
        "MALLOC_PROCS",
        "MALLOC_STACKS",
        "MALLOC_STK_CNT",
        "MALLOC_STK_ERR",
    ];
    assert_eq!(found, expected.iter().map(|n| n.to_string()).collect());
    let table = ms_ok(&["map", "list"]);
    assert!(
        table
            .lines()
            .any(|l| l.contains("MALLOC_PROCS") && l.contains("malloc")),
        "{table}"
    );
}

#[test]
fn pin_and_unpin() {
    setup();
    let h = TestMap::new("ms_pin", HASH, 4, 8, 4);
    let id = json(&["map", "show", "pinned", h.path(), "--json"])["id"].to_string();
    let second = format!("{}-second", h.path());
    ms_ok(&["map", "pin", "id", &id, &second]);
    let shown = bpftool(&["-f", "map", "show", "id", &id]);
    let pins: BTreeSet<&str> = shown["pinned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(pins, BTreeSet::from([h.path(), second.as_str()]));
    assert_eq!(
        json(&["map", "show", "pinned", &second, "--json"])["id"].to_string(),
        id
    );
    ms_ok(&["map", "unpin", &second]);
    assert!(!std::path::Path::new(&second).exists());
    // The map lives on through its other pin.
    assert_eq!(
        json(&["map", "show", "id", &id, "--json"])["pinned"],
        serde_json::json!([h.path()])
    );
}

#[test]
fn bad_input_is_one_line_and_changes_nothing() {
    setup();
    let h = TestMap::new("ms_bad", HASH, 4, 8, 1);
    let q = TestMap::new("ms_bad_q", QUEUE, 0, 4, 2);
    let a = TestMap::new("ms_bad_arr", ARRAY, 4, 8, 2);
    h.update(&u32k(1), &1u64.to_ne_bytes());
    let p = h.path();
    let tmp = tempfile::NamedTempFile::new().unwrap();
    let tmp_path = tmp.path().to_str().unwrap();
    let not_bpffs = format!("{}.pin", tmp_path);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["map", "show", "id", "4294967295"],
            "no BPF map with id 4294967295",
        ),
        (
            vec!["map", "show", "id", "twelve"],
            "map id must be a number",
        ),
        (
            vec!["map", "show", "tag", "x"],
            "`id N`, `pinned PATH` or `name NAME`",
        ),
        (
            vec!["map", "show", "name", "ms_no_such_map"],
            "no BPF map named",
        ),
        (
            vec!["map", "show", "pinned", "/sys/fs/bpf/mapscope-test-none"],
            "no such pin",
        ),
        (
            vec!["map", "get", "pinned", p, "key", "u32:1", "u8:0"],
            "key is 5 bytes",
        ),
        (
            vec!["map", "get", "pinned", p, "key", "0x01", "0", "0", "0xzz"],
            "\"0xzz\" is not a byte",
        ),
        (vec!["map", "get", "pinned", p, "key", "u32:2"], "not found"),
        (vec!["map", "get", "pinned", p, "u32:1"], "expected `key`"),
        (
            vec!["map", "set", "pinned", p, "key", "u32:1", "value", "u32:1"],
            "value is 4 bytes",
        ),
        (
            vec!["map", "set", "pinned", p, "key", "u32:2", "value", "u64:1"],
            "is full",
        ),
        (vec!["map", "pin", "pinned", p, p], "already exists"),
        (
            vec!["map", "pin", "pinned", p, &not_bpffs],
            "not on a bpffs mount",
        ),
        (vec!["map", "unpin", tmp_path], "not a BPF map pin"),
        (vec!["map", "pop", "pinned", q.path()], "is empty"),
        (vec!["map", "pop", "pinned", p], "only queue and stack maps"),
        (
            vec!["map", "get", "pinned", q.path(), "key", "u32:1"],
            "use `map push`",
        ),
        (
            vec!["map", "dump", "pinned", q.path()],
            "can only be read by removing them",
        ),
        (
            vec!["map", "dump", "pinned", p, "--sum"],
            "not a per-CPU map",
        ),
        (
            vec!["map", "del", "pinned", a.path(), "key", "u32:0"],
            "set it to zero",
        ),
        (
            vec!["map", "watch", "pinned", q.path()],
            "can only be read by removing them",
        ),
        (
            vec!["map", "watch", "pinned", p, "--interval", "0"],
            "--interval must be a positive",
        ),
        (
            vec![
                "map", "create", p, "type", "hash", "key", "4", "value", "8", "entries", "4",
            ],
            "already exists",
        ),
        (
            vec![
                "map", "create", &not_bpffs, "type", "nope", "key", "4", "value", "8", "entries",
                "4",
            ],
            "unknown map type",
        ),
    ];
    for (args, needle) in &cases {
        let out = ms(args);
        harness::assert_one_line_error(&out, needle);
    }
    // Nothing changed: the entry is intact, the regular file and the queue are still there.
    assert_eq!(h.lookup(&u32k(1)), Some(1u64.to_ne_bytes().to_vec()));
    assert!(tmp.path().exists());
    assert!(!std::path::Path::new(&not_bpffs).exists());
    let shown = json(&["map", "show", "pinned", p, "--json"]);
    assert_eq!(shown["pinned"], serde_json::json!([p]));

    // Without privileges: one line naming the fix.
    let out = harness::unprivileged(&["map", "list"]);
    harness::assert_one_line_error(&out, "missing privileges");
}

#[test]
fn ambiguous_names_list_the_ids() {
    setup();
    let a = TestMap::new("ms_twin", HASH, 4, 4, 1);
    let b = TestMap::new("ms_twin", HASH, 4, 4, 1);
    let ids: Vec<String> = [&a, &b]
        .iter()
        .map(|m| json(&["map", "show", "pinned", m.path(), "--json"])["id"].to_string())
        .collect();
    let out = ms(&["map", "show", "name", "ms_twin"]);
    harness::assert_one_line_error(&out, "are named \"ms_twin\"");
    let line = String::from_utf8_lossy(&out.stderr);
    for id in &ids {
        assert!(line.contains(id.as_str()), "{line}");
    }
}
