//! Builds the kernel programs (`mapscope-ebpf`) with nightly for the bpf target and leaves one
//! object per family in `$OUT_DIR/<family>`, where `loader.rs` embeds them.

use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

/// The bin targets of `mapscope-ebpf`, one object per program family (see `loader::Family`).
/// `bench` is not a family: bench-only programs that only `examples/bench.rs` embeds and loads.
const FAMILIES: [&str; 5] = ["xdp", "exec", "syscalls", "malloc", "bench"];

fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| anyhow!("OUT_DIR not set"))?);
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        // aya-build returns without writing anything; empty stubs keep include_bytes_aligned!
        // compiling for clippy/check, and the loader refuses them at run time with a clear error.
        for family in FAMILIES {
            let object = out_dir.join(family);
            if !object.exists() {
                fs::write(&object, [])
                    .with_context(|| format!("writing stub {}", object.display()))?;
            }
        }
    }
    let manifest_dir = env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?;
    let root_dir = PathBuf::from(manifest_dir)
        .parent()
        .ok_or_else(|| anyhow!("mapscope crate has no parent directory"))?
        .join("mapscope-ebpf");
    let root_dir = root_dir
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path to mapscope-ebpf"))?;
    aya_build::build_ebpf(
        [Package {
            name: "mapscope-ebpf",
            root_dir,
            ..Default::default()
        }],
        Toolchain::default(),
    )
}
