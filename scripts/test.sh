#!/usr/bin/env bash
# The whole test suite, as CI runs it: prerequisites, formatting, lints, unit tests and the root
# integration tests that load mapscope's programs into the running kernel.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

echo "== cargo fmt --check" >&2
cargo fmt --all --check
echo "== cargo clippy (user space)" >&2
cargo clippy --release --all-targets -- -D warnings
echo "== cargo clippy (kernel programs, nightly, bpf target)" >&2
(cd mapscope-ebpf && cargo +nightly clippy --release --target bpfel-unknown-none -Z build-std=core -- -D warnings)
echo "== cargo test (unit + integration, real kernel)" >&2
# Default members only: the eBPF crate builds for the bpf target alone (it is covered by the
# integration tests, which load it into the kernel).
cargo test --release
