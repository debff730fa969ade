#!/usr/bin/env bash
# make-real-root.sh NAME: builds (once, cached outside the repository) a
# container root with real programs installed, from the test root and the
# recipe tests/real-stack/NAME.sh. The recipe sets `packages` (Debian
# packages to install) and may define `setup ROOT` (files, users, units).
# The root is rebuilt when the recipe, this script or the test root changes.
# The tests boot it with --volatile=overlay, so no test ever changes it.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: make-real-root.sh NAME (a recipe in tests/real-stack/)}
recipe=tests/real-stack/$name.sh
[ -f "$recipe" ] || { echo "make-real-root.sh: no recipe $recipe" >&2; exit 2; }
base=${MODE_TEST_ROOT:-/var/tmp/mode-controller-testroot}
root=${MODE_REAL_ROOT_DIR:-/var/tmp}/mode-controller-root-$name
scripts/make-test-root.sh >/dev/null
stamp=$(cat "$recipe" "$0" "$base/.complete" | sha256sum | cut -d' ' -f1)
if [ -f "$root/.complete" ] && [ "$(cat "$root/.complete")" = "$stamp" ]; then
  echo "real root ready: $root"
  exit 0
fi
packages=()
setup() { :; }
# shellcheck source=/dev/null
. "$recipe"
here=$PWD
shared=$(cd .. && pwd)/shared/design/real-stack
export REAL_STACK=$shared
rm -rf "$root.tmp"
cp -a "$base" "$root.tmp"
cp /etc/resolv.conf "$root.tmp/etc/resolv.conf"
mount --bind /proc "$root.tmp/proc"
mount --bind /dev "$root.tmp/dev"
trap 'umount "$root.tmp/proc" "$root.tmp/dev" 2>/dev/null || true' EXIT
if [ ${#packages[@]} -gt 0 ]; then
  chroot "$root.tmp" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  chroot "$root.tmp" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
  chroot "$root.tmp" apt-get clean
fi
(cd "$here" && setup "$root.tmp")
umount "$root.tmp/proc" "$root.tmp/dev"
trap - EXIT
echo "$stamp" > "$root.tmp/.complete"
rm -rf "$root"
mv "$root.tmp" "$root"
echo "real root ready: $root"
