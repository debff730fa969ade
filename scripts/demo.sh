#!/usr/bin/env bash
# The demo for a machine without systemd as init (run as root): installs what
# is missing, builds `mode`, boots a throw-away container with a real systemd,
# our units and stand-ins for the display manager, vLLM and k3s, and switches
# desktop -> compute -> desktop in it, printing `mode status` at each step.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/container.sh
container_start_release

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; inside "$@"; }
echo "A container with systemd $(inside systemctl --version | head -1 | cut -d' ' -f2) is up, in desktop mode."
step mode status
step mode dry-run compute
step mode request compute
step mode status
step systemctl is-active compute.target vllm.service display-manager.service k3s.service
step mode request desktop
step mode status
step mode explain compute
