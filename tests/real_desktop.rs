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

/// Run `mode ARGS` as `user` (uid `uid`) inside their logind session.
fn mode_in_session(c: &Container, user: &str, uid: u32, args: &str) -> (i32, String, String) {
    in_session(c, user, uid, &format!("/usr/bin/mode {args}"))
}

/// Run `command` as `user` inside their logind session: sway (the session's
/// compositor) starts it, as a keybinding would. Its exit code, stdout and
/// stderr.
fn in_session(c: &Container, user: &str, uid: u32, command: &str) -> (i32, String, String) {
    let out = format!("/tmp/in-session-{user}");
    c.write(
        &format!("{out}.sh"),
        &format!("#!/bin/sh\n{command} >{out}.out 2>{out}.err\necho $? >{out}.rc.tmp\nmv {out}.rc.tmp {out}.rc\n"),
    );
    let r = c.sh(&format!(
        "chmod 755 {out}.sh && rm -f {out}.rc && setpriv --reuid={uid} --regid={uid} --init-groups \
         env SWAYSOCK=$(ls /run/user/{uid}/sway-ipc.*.sock | head -1) swaymsg exec {out}.sh"
    ));
    assert_eq!(r.code, 0, "swaymsg exec: {r:?}");
    c.wait_for(&format!("test -e {out}.rc && echo done"), "done", 120);
    let code = c.read(&format!("{out}.rc")).trim().parse().unwrap_or(-1);
    (
        code,
        c.read(&format!("{out}.out")),
        c.read(&format!("{out}.err")),
    )
}

#[test]
fn a_member_of_the_group_in_her_local_session_switches_without_sudo_through_the_real_polkitd() {
    let c = boot_desktop();
    let session = alice_session(&c);
    let props = c
        .sh(&format!(
            "loginctl show-session {session} -p Active -p Remote"
        ))
        .stdout;
    assert!(
        props.contains("Active=yes") && props.contains("Remote=no"),
        "{props}"
    );
    c.write(
        "/etc/polkit-1/rules.d/50-mode-controller.rules",
        include_str!("../pkgs/polkit/50-mode-controller.rules"),
    );
    let setup = c.sh(
        "test -x /usr/lib/polkit-1/polkitd && groupadd -r mode-controller \
         && useradd -m -u 1001 -s /bin/sh bob && echo bob:bob | chpasswd",
    );
    assert_eq!(setup.code, 0, "{setup:?}");
    let record_before = c.read("/run/mode-controller/last-transition.json");

    // alice in her session, but not yet in the group: 6, and nothing changed.
    let (code, _, err) = mode_in_session(&c, "alice", 1000, "request studio-local");
    assert_eq!(code, 6, "{err}");
    assert!(
        err.contains("polkit refused mode-controller@studio-local:alice.service")
            && err.contains("mode-controller")
            && err.contains("sudo"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(c.mode("current").stdout.trim(), "desktop");
    assert_eq!(
        c.read("/run/mode-controller/last-transition.json"),
        record_before
    );

    // In the group, she switches, and the record names her.
    assert_eq!(c.sh("usermod -aG mode-controller alice").code, 0);
    let (code, out, err) = mode_in_session(&c, "alice", 1000, "request studio-local");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("by cli uid=1000 user=alice"), "{out}");
    let record = c.last_transition();
    assert_eq!(
        record["requested_by"], "cli uid=1000 user=alice",
        "{record}"
    );
    assert_eq!(record["to"], "studio-local");
    assert_eq!(c.mode("current").stdout.trim(), "studio-local");
    let log = c
        .sh("tail -1 /var/lib/mode-controller/transitions.jsonl")
        .stdout;
    assert!(
        log.contains("\"requested_by\":\"cli uid=1000 user=alice\""),
        "{log}"
    );

    // compute is refused (she is in sway), and the refusal is hers too.
    let (code, _, err) = mode_in_session(&c, "alice", 1000, "request compute");
    assert_eq!(code, 3, "{err}");
    assert_eq!(
        c.last_transition()["requested_by"],
        "cli uid=1000 user=alice"
    );
    assert_eq!(c.state("greetd.service"), "active");

    // reconcile through polkit: nothing to do, then a lost `current` redone.
    let (code, out, err) = mode_in_session(&c, "alice", 1000, "reconcile");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("already converged"), "{out}");
    c.sh("rm /run/mode-controller/current");
    let (code, out, err) = mode_in_session(&c, "alice", 1000, "reconcile");
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        c.last_transition()["requested_by"],
        "reconcile uid=1000 user=alice"
    );
    assert_eq!(
        c.read("/run/mode-controller/current").trim(),
        "studio-local"
    );

    // Only her own instance, only `start`: another user's, the plain one,
    // a stop, a transient unit of that name: refused, nothing ran.
    let record_before = c.read("/run/mode-controller/last-transition.json");
    for cmd in [
        "systemctl --no-ask-password start mode-controller@desktop:bob.service",
        "systemctl --no-ask-password start mode-controller@desktop.service",
        "systemctl --no-ask-password restart mode-controller@desktop:alice.service",
        "systemd-run --no-ask-password --unit=mode-controller@desktop:alice.service -p User=root true",
    ] {
        let (code, _, err) = in_session(&c, "alice", 1000, cmd);
        assert_ne!(code, 0, "{cmd}: {err}");
    }
    assert_eq!(c.mode("current").stdout.trim(), "studio-local");
    assert_eq!(
        c.read("/run/mode-controller/last-transition.json"),
        record_before
    );

    // An instance that names nobody who exists, started by root: the
    // oneshot refuses it (6), and nothing is recorded.
    let r = c.sh("systemctl start mode-controller@desktop:ghost.service");
    assert_ne!(r.code, 0, "{r:?}");
    assert_eq!(
        c.prop("mode-controller@desktop:ghost.service", "ExecMainStatus"),
        "6"
    );
    assert_eq!(
        c.read("/run/mode-controller/last-transition.json"),
        record_before
    );

    // The same member outside any session (no logind session: neither
    // local nor active for polkit): 6.
    for cmd in [
        "setpriv --reuid=1000 --regid=1000 --init-groups mode request desktop",
        "systemd-run --quiet --uid=1000 --wait --pipe mode request desktop",
    ] {
        let r = c.sh(cmd);
        assert_eq!(r.code, 6, "{cmd}: {r:?}");
        assert!(r.stderr.contains("polkit refused"), "{cmd}: {}", r.stderr);
    }
    assert_eq!(c.mode("current").stdout.trim(), "studio-local");

    // bob, in his own active local session but not in the group: 6.
    log_out_alice(&c);
    c.wait_for(
        "loginctl list-sessions --no-legend | awk '$3==\"_greetd\"' | wc -l",
        "1",
        20,
    );
    c.write("/run/greeter-go", "bob bob\n");
    c.wait_for(
        "ls /run/user/1001/ 2>/dev/null | grep -c '^sway-ipc' || true",
        "1",
        20,
    );
    let (code, _, err) = mode_in_session(&c, "bob", 1001, "request desktop");
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("mode-controller@desktop:bob.service"), "{err}");
    assert_eq!(c.mode("current").stdout.trim(), "studio-local");
    assert_eq!(
        c.read("/run/mode-controller/last-transition.json"),
        record_before
    );
}
