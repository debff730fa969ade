# Recipe for scripts/make-real-root.sh: a real desktop stack from Debian 12.
# greetd 0.9 (its package makes display-manager.service a symlink alias to
# greetd.service, Debian's way) whose initial session logs alice in and starts
# sway 1.7 headless; test-greeter, a greeter speaking greetd-ipc, for logins
# through start_session; mako, a real notification daemon for that session.
# See ../shared/design/real-stack/README.md.
packages=(greetd sway perl mako-notifier dbus-bin)
setup() {
  local root=$1
  chroot "$root" useradd -m -u 1000 -s /bin/sh alice
  echo 'alice:alice' | chroot "$root" chpasswd
  install -m 0755 "$REAL_STACK/test-greeter" "$root/usr/local/bin/test-greeter"
  install -m 0644 "$REAL_STACK/greetd-config.toml" "$root/etc/greetd/config.toml"
  # The same greeter without the auto-login, for tests that log in through it.
  sed '/^\[initial_session\]/,$d' "$REAL_STACK/greetd-config.toml" > "$root/etc/greetd/greeter-only.toml"
  install -m 0644 "$REAL_STACK/session-type.conf" "$root/etc/greetd/session-type.conf"
}
