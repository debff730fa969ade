#!/usr/bin/env bash
# Benchmark (run as root): in one container run, our commands side by side
# with the raw systemd ones they compete with, medians and ratios printed as
# the Markdown table kept in docs/performance.md.
#   - `mode status --json` against `systemctl is-active` on the same units
#   - `mode request compute|desktop` against raw `systemctl start
#     compute.target|desktop.target` on the same stand-in units, with the
#     settle window off (what the controller itself costs)
#   - the same switches with the default settle window against the
#     hand-written check it replaces: start, wait as long, `is-active`
# Usage: scripts/bench.sh [STATUS_RUNS] [SWITCH_ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/container.sh
container_start_release
status_runs=${1:-200} switch_rounds=${2:-20}

units="desktop.target compute.target graphical.target studio-local-policy.service audio-priority.service display-manager.service k3s.service"
inside bash -s "$status_runs" "$switch_rounds" "$units" <<'INSIDE'
set -eu
runs=$1 rounds=$2 units=$3
us() { local s=$EPOCHREALTIME; "$@" >/dev/null 2>&1 || true; local e=$EPOCHREALTIME; echo $(( ${e/./} - ${s/./} )); }
median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f", m/1000}'; }
series() { local n=$1; shift; for _ in $(seq "$n"); do us "$@"; done | median; }

mkdir -p /etc/mode-controller
echo '{"version": 1, "timeouts": {"settle_ms": 0}}' > /etc/mode-controller/config.json
mode status --json >/dev/null   # warm the page cache
status_mode=$(series "$runs" mode status --json)
status_raw=$(series "$runs" systemctl is-active $units)

: > /tmp/req_c; : > /tmp/req_d; : > /tmp/raw_c; : > /tmp/raw_d; : > /tmp/app_c; : > /tmp/app_d; : > /tmp/unit
for _ in $(seq "$rounds"); do
  us mode request compute >> /tmp/req_c
  us mode request desktop >> /tmp/req_d
  us mode apply compute >> /tmp/app_c
  us mode apply desktop >> /tmp/app_d
  us systemctl start compute.target >> /tmp/raw_c
  us systemctl start desktop.target >> /tmp/raw_d
  us systemctl start mode-controller@desktop.service >> /tmp/unit
done
# The default settle window against a script that waits as long and checks.
rm /etc/mode-controller/config.json
settle=$(mode config defaults | awk -F': ' '/"settle_ms"/ {gsub(/[^0-9]/, "", $2); print $2}')
pause=$(awk -v ms="$settle" 'BEGIN {printf "%.3f", ms/1000}')
: > /tmp/set_c; : > /tmp/set_d; : > /tmp/hand_c; : > /tmp/hand_d
for _ in $(seq "$rounds"); do
  us mode request compute >> /tmp/set_c
  us mode request desktop >> /tmp/set_d
  us sh -c "systemctl start compute.target && sleep $pause && systemctl is-active --quiet vllm.service" >> /tmp/hand_c
  us sh -c "systemctl start desktop.target && sleep $pause && systemctl is-active --quiet display-manager.service" >> /tmp/hand_d
done
setc=$(median < /tmp/set_c) setd=$(median < /tmp/set_d) hc=$(median < /tmp/hand_c) hd=$(median < /tmp/hand_d)
rc=$(median < /tmp/req_c) rd=$(median < /tmp/req_d) sc=$(median < /tmp/raw_c) sd=$(median < /tmp/raw_d)
ac=$(median < /tmp/app_c) ad=$(median < /tmp/app_d) un=$(median < /tmp/unit)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2fx", a/b}'; }
diff() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%+.1f ms", a-b}'; }
echo "| measurement | mode (median) | raw systemd (median) | ratio | overhead |"
echo "| --- | --- | --- | --- | --- |"
echo "| status of 7 managed units ($runs runs) | \`mode status --json\` $status_mode ms | \`systemctl is-active\` $status_raw ms | $(ratio "$status_mode" "$status_raw") | $(diff "$status_mode" "$status_raw") |"
echo "| switch desktop -> compute ($rounds rounds) | \`mode request compute\` $rc ms | \`systemctl start compute.target\` $sc ms | $(ratio "$rc" "$sc") | $(diff "$rc" "$sc") |"
echo "| switch compute -> desktop ($rounds rounds) | \`mode request desktop\` $rd ms | \`systemctl start desktop.target\` $sd ms | $(ratio "$rd" "$sd") | $(diff "$rd" "$sd") |"
echo "| the same switches in-process, without the unit | \`mode apply compute\` $ac ms, \`mode apply desktop\` $ad ms | $sc ms, $sd ms | $(ratio "$ac" "$sc"), $(ratio "$ad" "$sd") | $(diff "$ac" "$sc"), $(diff "$ad" "$sd") |"
echo "| starting the hardened oneshot for a no-op | \`systemctl start mode-controller@desktop.service\` $un ms | | | |"
echo "| desktop -> compute, default settle window ($settle ms) | \`mode request compute\` $setc ms | start, sleep, \`is-active vllm.service\` $hc ms | $(ratio "$setc" "$hc") | $(diff "$setc" "$hc") |"
echo "| compute -> desktop, default settle window ($settle ms) | \`mode request desktop\` $setd ms | start, sleep, \`is-active display-manager.service\` $hd ms | $(ratio "$setd" "$hd") | $(diff "$setd" "$hd") |"
INSIDE
