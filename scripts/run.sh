#!/usr/bin/env bash
# Installs prerequisites, builds, and runs mapscope. With no arguments it runs the main job:
# live XDP statistics on the default-route interface. Any arguments go to mapscope instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --quiet 2>/dev/null || cargo build --release
if [ "$#" -eq 0 ]; then set -- xdp stats; fi
exec ./target/release/mapscope "$@"
