#!/usr/bin/env bash
# Builds the minimal Debian tree the container tests boot (once per machine,
# about 35 s and 240 MB), outside the repository. The tests boot it with
# --volatile=overlay, so it is never changed by a test.
set -euo pipefail
root=${MODE_TEST_ROOT:-/var/tmp/mode-controller-testroot}
if [ -x "$root/usr/lib/systemd/systemd" ] && [ -f "$root/.complete" ]; then
  echo "test root ready: $root"
  exit 0
fi
command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap; }
rm -rf "$root.tmp"
debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,libpam-systemd,procps \
  bookworm "$root.tmp" >/dev/null
touch "$root.tmp/.complete"
rm -rf "$root"
mv "$root.tmp" "$root"
echo "test root ready: $root"
