# Recipe for scripts/make-real-root.sh: Slurm 22.05 (slurmctld + slurmd +
# munge) from Debian 12, one node named slurmbox on loopback, with the
# slurm.conf of ../shared/design/real-stack/. Boot it with the host's
# network namespace (Slurm's resolver refuses 127.0.0.1 when only lo exists)
# and --hostname=slurmbox.
packages=(slurmctld slurmd slurm-client munge)
setup() {
  local root=$1
  install -m 0644 "$REAL_STACK/slurm.conf" "$root/etc/slurm/slurm.conf"
  echo slurmbox > "$root/etc/hostname"
  echo "127.0.0.1 slurmbox" >> "$root/etc/hosts"
  mkdir -p "$root/var/spool/slurmctld" "$root/var/spool/slurmd" "$root/var/log/slurm"
  chroot "$root" chown slurm:slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
  chroot "$root" useradd -m -u 1000 -s /bin/sh alice
}
