#!/usr/bin/env bash
# Idempotent prerequisites for building and testing mapscope on a root Debian 12 machine.
# Every step checks first, so a second run with everything present takes a few seconds.
set -euo pipefail

log() { printf 'setup: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: must run as root (it installs packages and mounts bpffs/tracefs); rerun with sudo" >&2
  exit 1
fi

# cargo/rustup live in root's home on these machines; make them visible to non-login shells.
if [ -d "$HOME/.cargo/bin" ]; then export PATH="$HOME/.cargo/bin:$PATH"; fi

# --- Debian packages -------------------------------------------------------------------------
# llvm-22-dev & co: bpf-linker links against LLVM 22. iproute2/iputils-ping/procps (sysctl): netns tests.
# bpftool: cross-checks and the test harness's "nothing left attached" assertions.
# util-linux: setpriv for the privilege test. python3: the test web service.
# gcc/libc6-dev: tests compile small C programs (tests/programs/) whose syscalls and mallocs are exact.
# e2fsprogs/mount: tests/sinks.rs puts the spool on a loop-mounted ext4 it freezes (fsfreeze, util-linux).
# time: GNU time measures peak RSS in scripts/bench/map-dump.sh.
# gcc-multilib: a 32-bit program for the compat-syscall test; musl-tools (musl-gcc, musl): musl malloc.
# nats-server: tests/nats.rs starts a JetStream server (-js, temp store) on 127.0.0.1.
# chromium: tests/dashboard.rs loads the agent's page headless (driven by playwright-core, below).
# bpftrace/libbpf-tools (execsnoop, syscount)/xdp-tools: the peers scripts/bench.sh measures against;
# linux-perf/valgrind: profiling what the benchmarks show (callgrind where the VM has no PMU).
# One package per line, so that features add theirs without touching anyone else's line.
PKGS=(
  llvm-22-dev libpolly-22-dev zlib1g-dev libzstd-dev
  iproute2
  iputils-ping
  procps
  bpftool
  util-linux
  python3
  ca-certificates
  gcc
  libc6-dev
  e2fsprogs
  mount
  time
  gcc-multilib
  musl-tools
  prometheus
  nats-server
  chromium
  xdp-tools
  bpftrace
  libbpf-tools
  linux-perf
  valgrind
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Rust toolchains -------------------------------------------------------------------------
command -v rustup >/dev/null || { echo "setup: rustup not found; install Rust (https://rustup.rs) first" >&2; exit 1; }
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  log "installing nightly toolchain"
  rustup toolchain install nightly --profile minimal
fi
if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'; then
  log "adding rust-src to nightly"
  rustup component add rust-src --toolchain nightly
fi
for c in clippy rustfmt; do
  rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
done

# --- bpf-linker ------------------------------------------------------------------------------
BPF_LINKER_VERSION=0.13.0
if ! bpf-linker --version 2>/dev/null | grep -q "$BPF_LINKER_VERSION"; then
  log "building bpf-linker $BPF_LINKER_VERSION against LLVM 22 (about a minute)"
  PATH=/usr/lib/llvm-22/bin:$PATH cargo install --locked bpf-linker --version "$BPF_LINKER_VERSION" \
    --no-default-features --features llvm-22 --force
fi

# --- the dashboard's browser test driver (tests/browser: playwright-core, pinned by its lock) ---
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ! command -v npm >/dev/null; then
  log "installing nodejs and npm"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
BROWSER_DIR="$REPO_ROOT/tests/browser"
# The lock copied into node_modules marks an install of exactly that lock.
if ! cmp -s "$BROWSER_DIR/package-lock.json" "$BROWSER_DIR/node_modules/.mapscope-installed-lock"; then
  log "installing tests/browser node modules (npm ci)"
  (cd "$BROWSER_DIR" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$BROWSER_DIR/package-lock.json" "$BROWSER_DIR/node_modules/.mapscope-installed-lock"
fi

# --- kernel filesystems ----------------------------------------------------------------------
if ! mountpoint -q /sys/fs/bpf; then
  log "mounting bpffs on /sys/fs/bpf"
  mount -t bpf bpf /sys/fs/bpf
fi
if ! mountpoint -q /sys/kernel/tracing; then
  log "mounting tracefs on /sys/kernel/tracing"
  mount -t tracefs tracefs /sys/kernel/tracing
fi

log "ok"
