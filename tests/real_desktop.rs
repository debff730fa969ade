//! The real desktop: greetd 0.9 (installed the Debian way, as a symlink
//! alias of display-manager.service) logging alice in to a real sway 1.7
//! running headless, real logind sessions of every kind the tool meets
//! (greetd's auto-login, a greeter's login, a TTY login), and a machine with
//! no display manager at all. Root: tests/real-stack/desktop.sh.

mod common;

use common::{step_words, Container};

/// greetd calls mlockall: the container must grant CAP_IPC_LOCK.
fn boot_desktop() -> Container {
    Container::boot_real(
        "desktop",
        &["display-manager.service"],
        &["--capability=CAP_IPC_LOCK".to_string()],
        &[],
    )
}

/// alice's open session id, once logind has it past `opening` and sway's
/// socket exists.
fn alice_session(c: &Container) -> String {
    let id = c.wait_for(
        "loginctl list-sessions --no-legend | awk '$3==\"alice\" {print $1}' | head -1 | grep . >/dev/null && echo yes",
        "yes",
        20,
    );
    drop(id);
    let id = c
        .sh("loginctl list-sessions --no-legend | awk '$3==\"alice\" {print $1}' | head -1")
        .stdout
        .trim()
        .to_string();
    c.wait_for("ls /run/user/1000/ | grep -c '^sway-ipc' || true", "1", 20);
    id
}

fn session_props(c: &Container, id: &str) -> String {
    c.sh(&format!(
        "loginctl show-session {id} -p Type -p Class -p Seat -p Remote -p Service -p State"
    ))
    .stdout
}

fn log_out_alice(c: &Container) {
    c.sh("loginctl terminate-user alice");
    c.wait_for(
        "loginctl list-sessions --no-legend | awk '$3==\"alice\"' | wc -l",
        "0",
        20,
    );
}

#[test]
fn greetd_auto_login_sway_blocks_compute_and_the_switch_round_trips_through_the_alias() {
    let c = boot_desktop();
    // What the real programs did: Debian's greetd package made the alias.
    assert_eq!(
        c.sh("readlink /etc/systemd/system/display-manager.service")
            .stdout
            .trim(),
        "/lib/systemd/system/greetd.service"
    );
    let session = alice_session(&c);
    let props = session_props(&c, &session);
    for want in [
        "Type=unspecified",
        "Class=user",
        "Seat=seat0",
        "Remote=no",
        "Service=greetd",
    ] {
        assert!(props.contains(want), "{want} in {props}");
    }

    // The alias resolves: a healthy desktop reads desktop.
    assert_eq!(c.mode("current").stdout.trim(), "desktop");
    let status = c.mode("--json status").json();
    let dm = status["observed"]["units"]
        .as_array()
        .and_then(|u| u.iter().find(|u| u["unit"] == "display-manager.service"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(dm["id"], "greetd.service", "{status}");
    assert!(c
        .mode("status")
        .stdout
        .contains("display-manager.service (greetd.service)"));

    // alice is in sway: logind types the session unspecified, yet compute
    // is refused, naming her session and the compositor.
    let r = c.mode("request compute");
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stderr.contains(&format!("session {session} of alice"))
            && r.stderr.contains("runs the compositor sway"),
        "{}",
        r.stderr
    );
    assert_eq!(
        c.state("greetd.service"),
        "active",
        "a refusal changes nothing"
    );

    // Logged out, compute converges and greetd is gone.
    log_out_alice(&c);
    let r = c.mode("request compute");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(c.state("greetd.service"), "inactive");
    let record = c.last_transition();
    assert!(
        step_words(&record).contains(&"stop display-manager.service".to_string()),
        "{record}"
    );

    // Back to desktop brings greetd back (it was left in compute before).
    let r = c.mode("request desktop");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(c.state("greetd.service"), "active");
    assert_eq!(c.mode("current").stdout.trim(), "desktop");
    let settle = common::entry(&c.last_transition(), "steps", "action", "settle");
    assert!(
        settle["note"]
            .as_str()
            .unwrap_or("")
            .contains("greetd.service"),
        "the settle step watched the real display manager: {settle}"
    );

    // greetd ran its auto-login once; now its greeter logs alice in with
    // XDG_SESSION_TYPE=wayland, the way gtkgreet and tuigreet do.
    c.wait_for(
        "loginctl list-sessions --no-legend | awk '$3==\"_greetd\"' | wc -l",
        "1",
        20,
    );
    c.write("/run/greeter-go", "alice alice\n");
    let session = alice_session(&c);
    assert!(session_props(&c, &session).contains("Type=wayland"));
    let r = c.mode("--json dry-run compute").json();
    let guard = common::entry(&r["guards"], "guards", "name", "graphical_session_absent")
        .get("evidence")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        guard["sessions"][0]["graphical_because"], "logind types it wayland",
        "{r}"
    );
    assert_eq!(r["would"], "refuse");
}

#[test]
fn without_a_display_manager_a_tty_login_running_sway_blocks_compute_and_desktop_is_two_targets() {
    let c = boot_desktop();
    alice_session(&c);
    // Take greetd away the way a user uninstalls it: its alias goes.
    c.sh("systemctl disable --now greetd.service; systemctl daemon-reload");
    log_out_alice(&c);
    assert_eq!(
        c.sh("systemctl show -P LoadState display-manager.service")
            .stdout
            .trim(),
        "not-found"
    );
    assert_eq!(c.mode("current").stdout.trim(), "desktop");
    let status = c.mode("status").stdout;
    assert!(status.contains("no display manager"), "{status}");

    // Hyprland or sway started from a TTY login: logind types it tty.
    let r = c.sh(
        "systemd-run --unit=tty-sway -p PAMName=login -p User=alice \
         -p Environment=XDG_SESSION_TYPE=tty -p Environment=XDG_SEAT=seat0 \
         -p Environment=WLR_BACKENDS=headless -p Environment=WLR_RENDERER=pixman \
         -p Environment=WLR_LIBINPUT_NO_DEVICES=1 /usr/bin/sway",
    );
    assert_eq!(r.code, 0, "{r:?}");
    let session = alice_session(&c);
    assert!(session_props(&c, &session).contains("Type=tty"));
    let r = c.mode("request compute");
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stderr.contains("runs the compositor sway"),
        "{}",
        r.stderr
    );

    c.sh("systemctl stop tty-sway.service");
    log_out_alice(&c);
    let r = c.mode("request compute");
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        !step_words(&c.last_transition())
            .iter()
            .any(|s| s.contains("display-manager")),
        "no step touches a display manager that is not there"
    );
    let r = c.mode("request desktop");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(c.state("graphical.target"), "active");
    assert_eq!(c.mode("current").stdout.trim(), "desktop");
    // The boot policy works on such a machine too.
    let r = c.mode("boot");
    assert_eq!(r.code, 0, "{r:?}");
}

/// Run `script` as alice in her sway session's environment, with the
/// session bus at /run/user/1000/test-bus.
fn as_alice(script: &str) -> String {
    format!(
        "exec setpriv --reuid=1000 --regid=1000 --init-groups env HOME=/home/alice XDG_RUNTIME_DIR=/run/user/1000 \
         WAYLAND_DISPLAY=wayland-1 DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/1000/test-bus sh -c '{script}'"
    )
}

#[test]
fn mode_notify_shows_a_refusal_and_a_switch_through_a_real_notification_daemon() {
    let c = boot_desktop();
    alice_session(&c);
    c.wait_for("ls /run/user/1000 | grep -c '^wayland-1$' || true", "1", 20);
    let r = c.sh(&as_alice(
        "dbus-daemon --session --address=$DBUS_SESSION_BUS_ADDRESS --fork",
    ));
    assert_eq!(r.code, 0, "{r:?}");
    let mut mako = c.spawn(&as_alice("exec mako"));
    c.wait_for(
        &as_alice("makoctl list >/dev/null 2>&1 && echo up || echo down"),
        "up",
        20,
    );
    let mut notify = c.spawn(&as_alice("exec mode notify"));
    std::thread::sleep(std::time::Duration::from_millis(500));

    // alice is in sway: compute is refused, and she is told why.
    assert_eq!(c.mode("request compute").code, 3);
    c.wait_for(
        &as_alice("makoctl list | grep -c \"compute refused\" || true"),
        "1",
        10,
    );
    let list = c.sh(&as_alice("makoctl list")).stdout;
    assert!(list.contains("graphical_session_absent"), "{list}");

    // A switch that converges replaces that bubble with its outcome.
    assert_eq!(c.mode("request studio-local").code, 0);
    c.wait_for(
        &as_alice("makoctl list | grep -c \"Now in studio-local\" || true"),
        "1",
        10,
    );
    for child in [&mut notify, &mut mako] {
        let _ = child.kill();
        let _ = child.wait();
    }
}
