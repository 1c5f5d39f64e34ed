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
cargo test --release --workspace
