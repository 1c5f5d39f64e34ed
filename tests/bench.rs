//! `scripts/bench.sh --quick` (issue 7): the benchmark command's smoke mode runs every module
//! against the real kernel and the real peers, and renders BENCHMARKS.md and BENCHMARKS.json
//! with a number in every row. Run under the kernel lock, as root:
//! `flock /tmp/mapscope-kernel.lock cargo test --release --test bench`.
//! No timing is asserted: the numbers of a smoke run mean nothing, only their presence does.

use std::{path::Path, process::Command};

/// The areas the modules in scripts/bench/ must produce (other issues add theirs).
const AREAS: [&str; 8] = [
    "exec",
    "exec-cpu",
    "malloc",
    "malloc-stacks",
    "map-dump",
    "percpu",
    "syscalls",
    "transport",
];

#[test]
fn quick_mode_renders_every_area_with_numbers() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = tempfile::tempdir().unwrap();
    let md = out.path().join("BENCHMARKS.md");
    let status = Command::new("bash")
        .arg(repo.join("scripts/bench.sh"))
        .arg("--quick")
        .env("BENCH_OUT", out.path().join("areas"))
        .env("BENCH_MD", &md)
        // The test already holds /tmp/mapscope-kernel.lock; the packages come from setup.sh, and
        // `cargo test --release` has built the binary and examples/bench (no build under the lock).
        .env("BENCH_NO_LOCK", "1")
        .env("BENCH_NO_SETUP", "1")
        .env("BENCH_NO_BUILD", "1")
        .status()
        .expect("running scripts/bench.sh");
    assert!(status.success(), "scripts/bench.sh --quick failed");

    let text = std::fs::read_to_string(&md).unwrap();
    assert!(text.contains("Machine: "), "no machine line:\n{text}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("BENCHMARKS.json")).unwrap())
            .unwrap();
    assert_eq!(json["failed"], serde_json::json!([]));
    assert!(json["machine"]["nproc"].as_u64().unwrap() >= 1);
    let areas = json["areas"].as_array().unwrap();
    for want in AREAS {
        let area = areas
            .iter()
            .find(|a| a["area"] == want)
            .unwrap_or_else(|| panic!("area {want} missing from BENCHMARKS.json"));
        let title = area["title"].as_str().unwrap();
        assert!(text.contains(&format!("## {title}")), "{want} not rendered");
        let rows = area["rows"].as_array().unwrap();
        assert!(!rows.is_empty(), "{want} has no rows");
        for row in rows {
            assert!(
                row["mapscope"].as_f64().is_some_and(f64::is_finite),
                "{want}: row without a mapscope number: {row}"
            );
            for key in ["what", "unit", "better"] {
                assert!(row[key].is_string(), "{want}: row without {key}: {row}");
            }
            assert!(
                text.contains(row["what"].as_str().unwrap()),
                "{want}: row not rendered: {row}"
            );
        }
    }
}
