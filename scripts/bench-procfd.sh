#!/bin/sh
# Benchmark of the guards' fd scan (through pidfds) against the number of
# open files, side by side with listing /proc/PID/fd and fuser: builds
# guards/examples/bench_procfd.rs in release mode and runs it with 1k, 10k
# and 100k fds held by child processes (run as root: the holders raise
# RLIMIT_NOFILE). Prints a Markdown table for docs/performance.md.
set -eu
cd "$(dirname "$0")/.."
cargo build --release -q -p mode-guards --example bench_procfd
[ "$#" -gt 0 ] || set -- 1000 10000 100000
exec "${CARGO_TARGET_DIR:-target}/release/examples/bench_procfd" "$@"
