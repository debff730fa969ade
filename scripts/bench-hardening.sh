#!/usr/bin/env bash
# Benchmark (run as root): what each hardening option of the transition unit
# costs, against its `systemd-analyze security` exposure. In one container,
# variants of mode-controller@.service (drop-ins on the shipped unit) are
# started for a no-op switch in interleaved rounds, so load on the machine
# falls on all of them alike; the medians, the exposure and the cost over
# the unit without any sandbox are printed as the table kept in
# docs/performance.md.
# Usage: scripts/bench-hardening.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/container.sh
container_start_release
rounds=${1:-30}

inside bash -s "$rounds" <<'INSIDE'
set -eu
rounds=$1
us() { local s=$EPOCHREALTIME; "$@" >/dev/null 2>&1 || true; local e=$EPOCHREALTIME; echo $(( ${e/./} - ${s/./} )); }
median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f", m/1000}'; }
dir=/run/systemd/system/mode-controller@.service.d
variant() { # variant NAME DROP-IN-TEXT
  names+=("$1"); texts+=("$2")
}
names=(); texts=()
variant "no sandbox at all" "[Service]
NoNewPrivileges=no
ProtectSystem=no
ProtectHome=no
ProtectKernelLogs=no
ProtectKernelModules=no
ProtectProc=default
PrivateTmp=no
BindReadOnlyPaths=
ProtectControlGroups=no
ProtectClock=no
ProtectHostname=no
RestrictAddressFamilies=
RestrictNamespaces=no
RestrictRealtime=no
RestrictSUIDSGID=no
LockPersonality=no
MemoryDenyWriteExecute=no
SystemCallArchitectures=
SystemCallFilter=
CapabilityBoundingSet=~"
variant "without ProtectKernelLogs, ProtectKernelModules, ProtectProc, PrivateTmp" "[Service]
ProtectKernelLogs=no
ProtectKernelModules=no
ProtectProc=default
PrivateTmp=no"
variant "as shipped" ""
for option in ProtectKernelTunables=yes "IPAddressDeny=any
IPAddressAllow=localhost" "DevicePolicy=closed
DeviceAllow=char-nvidia-frontend rw"; do
  variant "+ ${option//$'\n'/ }" "[Service]
$option"
done

use() { # use INDEX
  rm -rf "$dir"
  if [ -n "${texts[$1]}" ]; then mkdir -p "$dir"; printf '%s\n' "${texts[$1]}" > "$dir/bench.conf"; fi
  systemctl daemon-reload
}
mkdir -p /etc/mode-controller
echo '{"version": 1, "timeouts": {"settle_ms": 0}}' > /etc/mode-controller/config.json
n=${#names[@]}
for i in $(seq 0 $((n - 1))); do : > /tmp/v$i; done
for _ in $(seq "$rounds"); do
  for i in $(seq 0 $((n - 1))); do
    use "$i"
    us systemctl start mode-controller@desktop.service >> /tmp/v$i
  done
done
echo "| unit configuration | exposure | start of a no-op switch (median of $rounds) | over no sandbox |"
echo "| --- | --- | --- | --- |"
base=$(median < /tmp/v0)
for i in $(seq 0 $((n - 1))); do
  use "$i"
  score=$(systemd-analyze security --no-pager mode-controller@desktop.service | awk '/Overall exposure/ {print $(NF-2)}')
  m=$(median < /tmp/v$i)
  echo "| ${names[$i]} | $score | $m ms | $(awk -v a="$m" -v b="$base" 'BEGIN {printf "%+.1f ms", a-b}') |"
done
rm -rf "$dir"; systemctl daemon-reload
INSIDE
