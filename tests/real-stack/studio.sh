# Recipe for scripts/make-real-root.sh: a real studio from Debian 12.
# PipeWire 0.3.65 + WirePlumber 0.4.13 with no sound card, run at boot for
# alice (uid 1000, lingering) by her systemd --user; a null sink `studio-out`
# and a null source `studio-in` stand for the studio interface. pw-record,
# aplay through the pipewire ALSA plugin and pw-jack + jack_capture are the
# clients that REAPER would be. See ../shared/design/real-stack/README.md.
packages=(pipewire pipewire-bin wireplumber dbus-user-session pipewire-alsa
          pipewire-jack alsa-utils jack-capture procps)
setup() {
  local root=$1
  chroot "$root" useradd -m -u 1000 -s /bin/sh alice
  mkdir -p "$root/var/lib/systemd/linger" "$root/etc/pipewire/pipewire.conf.d"
  touch "$root/var/lib/systemd/linger/alice"
  install -m 0644 "$REAL_STACK/90-studio-null.conf" \
    "$root/etc/pipewire/pipewire.conf.d/90-studio-null.conf"
}
