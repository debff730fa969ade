#!/usr/bin/env bash
# Builds the minimal Debian tree the container tests boot (once per machine,
# about 35 s and 240 MB), outside the repository. The tests boot it with
# --volatile=overlay, so it is never changed by a test. The package list is
# the recipe: `.recipe` records it, and a root built from another list is
# built again (`.complete` stays an empty marker: the real-stack roots built
# on this one hash it into their own stamps).
set -euo pipefail
root=${MODE_TEST_ROOT:-/var/tmp/mode-controller-testroot}
# libnss-systemd: DynamicUser= users have names, as on a real Debian machine
# with it installed (its postinst adds `systemd` to nsswitch.conf).
packages=systemd,systemd-sysv,dbus,libpam-systemd,libnss-systemd,procps
if [ -x "$root/usr/lib/systemd/systemd" ] && [ -f "$root/.complete" ] \
   && [ "$(cat "$root/.recipe" 2>/dev/null)" = "$packages" ]; then
  echo "test root ready: $root"
  exit 0
fi
command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap; }
rm -rf "$root.tmp"
debootstrap --variant=minbase --include="$packages" bookworm "$root.tmp" >/dev/null
grep -q '^passwd:.*systemd' "$root.tmp/etc/nsswitch.conf" ||
  sed -i -E 's/^(passwd|group):(.*)$/\1:\2 systemd/' "$root.tmp/etc/nsswitch.conf"
echo "$packages" > "$root.tmp/.recipe"
touch "$root.tmp/.complete"
rm -rf "$root"
mv "$root.tmp" "$root"
echo "test root ready: $root"
