#!/usr/bin/env bash
# Installs prerequisites, builds, and runs mapscope. With no arguments it runs the main job: the
# agent with its defaults (or /etc/mapscope/agent.toml when present) — every default family,
# counters pinned in /sys/fs/bpf/mapscope/agent, Prometheus metrics on
# http://127.0.0.1:9464/metrics and the API on http://127.0.0.1:9464/api/v1/ (it prints both).
# Any arguments go to mapscope instead (e.g. `bash scripts/run.sh xdp stats --iface eth0`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --quiet 2>/dev/null || cargo build --release
if [ "$#" -eq 0 ]; then set -- agent; fi
exec ./target/release/mapscope "$@"
