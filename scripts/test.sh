#!/usr/bin/env bash
# The whole test suite (run as root): unit tests, and the integration tests
# that boot a real systemd in containers. Installs what the container tests
# need when it is missing, then runs `cargo test --workspace`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/container.sh
container_prerequisites
cargo test --workspace "$@"
