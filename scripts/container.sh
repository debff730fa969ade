# Sourced by demo.sh and bench.sh: boot a throw-away container with a real
# systemd, our units, the stand-ins of tests/fixtures/units and the given
# `mode` binary; `inside CMD...` runs a command in it; torn down on exit.
# (The Rust tests have the same harness in tests/common/mod.rs.)

container_boot() { # container_boot BINARY
  local binary=$1 root=${MODE_TEST_ROOT:-/var/tmp/mode-controller-testroot}
  CT_NAME=mode-ct-$$
  CT_CGROUPS=()
  for h in unified systemd; do
    if [ -d /sys/fs/cgroup/$h ]; then
      mkdir -p /sys/fs/cgroup/$h/nspawn-$CT_NAME
      CT_CGROUPS+=(/sys/fs/cgroup/$h/nspawn-$CT_NAME)
    fi
  done
  # The units go in as one directory, installed where local units live, so
  # the container has one mount more than its root, not one per unit.
  CT_UNITS=$(mktemp -d /tmp/mode-ct-units.XXXXXX)
  cp -r pkgs/systemd/. tests/fixtures/units/. "$CT_UNITS/"
  local binds=(--bind-ro="$binary:/usr/bin/mode" --bind-ro="$CT_UNITS:/usr/local/lib/systemd/system"
               --bind-ro="$PWD/tests/fixtures/bin:/opt/mode-test")
  # Each container gets its own cgroup: there is no host systemd to make one.
  ( for c in "${CT_CGROUPS[@]}"; do echo $BASHPID > "$c/cgroup.procs"; done
    exec systemd-nspawn --register=no --keep-unit -q --volatile=overlay -b --console=pipe \
      -D "$root" -M "$CT_NAME" "${binds[@]}" \
      systemd.mask=systemd-firstboot.service systemd.unit=desktop.target ) >/dev/null 2>&1 &
  CT_NSPAWN=$!
  trap container_teardown EXIT
  CT_PID1=
  local p
  for _ in $(seq 500); do
    for p in $(cat /proc/$CT_NSPAWN/task/$CT_NSPAWN/children 2>/dev/null); do
      [ "$(cat /proc/$p/comm 2>/dev/null)" = systemd ] && CT_PID1=$p
    done
    [ -n "$CT_PID1" ] && [ -e /proc/$CT_PID1/root/run/systemd/private ] && break
    sleep 0.02
  done
  [ -n "$CT_PID1" ] || { echo "the container did not boot" >&2; exit 1; }
  inside systemctl is-system-running --wait >/dev/null || true
}

inside() { nsenter -t "$CT_PID1" -a -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

container_teardown() {
  kill -TERM "$CT_NSPAWN" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$CT_NSPAWN" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$CT_NSPAWN" 2>/dev/null || true
  wait "$CT_NSPAWN" 2>/dev/null || true
  local c
  for c in "${CT_CGROUPS[@]}"; do find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null || true; done
  rm -rf "/run/systemd/nspawn/propagate/$CT_NAME" "$CT_UNITS"
}

# Everything demo.sh and bench.sh need first: prerequisites, a release
# build, and a booted container running it.
container_start_release() {
  container_prerequisites
  cargo build --release --quiet
  container_boot "$PWD/target/release/mode"
}

container_prerequisites() {
  [ "$(id -u)" = 0 ] || { echo "$0: run as root (it boots a container): sudo $0" >&2; exit 6; }
  local need=()
  command -v systemd-nspawn >/dev/null || need+=(systemd-container)
  command -v debootstrap >/dev/null || need+=(debootstrap)
  command -v cc >/dev/null || need+=(gcc)
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  scripts/make-test-root.sh
  local recipe
  for recipe in tests/real-stack/*.sh; do
    scripts/make-real-root.sh "$(basename "$recipe" .sh)"
  done
}
