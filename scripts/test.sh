#!/usr/bin/env bash
# The whole test suite (run as root): unit tests, and the integration tests
# that boot a real systemd in containers. Installs what the container tests
# need when it is missing, runs `cargo test` over every crate's unit and
# integration tests, and closes with one line totalling them.
#
#   scripts/test.sh --real   the real-vLLM tier instead: builds (once, cached)
#                            the CPU build of vLLM and a tiny model
#                            (scripts/make-vllm-venv.sh, about 7 min and 6 GB
#                            the first time) and runs tests/vllm_real.rs
#                            (about 3 min: two real vLLM starts)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/container.sh
container_prerequisites
if [ "${1:-}" = --real ]; then
  shift
  scripts/make-vllm-venv.sh
  exec cargo test --test vllm_real "$@" -- --ignored --nocapture
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --lib --bins --tests "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
