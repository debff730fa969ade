//! What the machine has, as systemd loaded it: a display manager enabled
//! NixOS-style (a unit with `Alias=display-manager.service`), one the
//! configuration says is not there, and configured units that are not
//! installed. (The Debian-style symlink and a real greetd are in
//! real_desktop.rs.)

mod common;

use common::{step_words, Container};

#[test]
fn a_display_manager_enabled_under_its_alias_is_recognised_and_round_trips() {
    let c = Container::boot();
    c.write(
        "/etc/systemd/system/fake-greetd.service",
        "[Unit]\nStartLimitIntervalSec=0\n[Service]\nExecStart=/bin/sleep infinity\n\
         [Install]\nAlias=display-manager.service\nWantedBy=graphical.target\n",
    );
    let r = c.sh("systemctl enable fake-greetd.service && systemctl daemon-reload && systemctl restart display-manager.service");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        c.prop("display-manager.service", "Id"),
        "fake-greetd.service"
    );
    assert_eq!(c.mode("current").stdout.trim(), "desktop");
    assert!(c
        .mode("status")
        .stdout
        .contains("display:    display-manager.service (fake-greetd.service), active"));
    assert_eq!(c.mode("request compute").code, 0);
    assert_eq!(c.state("fake-greetd.service"), "inactive");
    let r = c.mode("request desktop");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(c.state("fake-greetd.service"), "active");
}

#[test]
fn with_display_manager_none_no_mode_touches_it() {
    let c = Container::boot();
    c.write(
        "/etc/mode-controller/config.json",
        r#"{"version": 1, "display_manager": "none"}"#,
    );
    assert_eq!(c.mode("request compute").code, 0);
    assert!(
        !step_words(&c.last_transition())
            .iter()
            .any(|s| s.contains("display-manager")),
        "{}",
        c.last_transition()
    );
    assert!(c.mode("status").stdout.contains("display_manager: none"));
}

#[test]
fn a_configured_unit_that_is_not_installed_is_stopped_as_a_recorded_no_op() {
    let c = Container::boot();
    c.write(
        "/etc/mode-controller/config.json",
        r#"{"version": 1, "modes": {"compute": {"stop": ["desktop.target", "graphical.target",
            "display-manager.service", "hyprland-extras.service"]}}}"#,
    );
    let r = c.mode("--json request compute");
    assert_eq!(r.code, 0, "{r:?}");
    let step = common::entry(&r.json(), "steps", "unit", "hyprland-extras.service");
    assert_eq!(step["outcome"], "done", "{step}");
    assert!(
        step["note"]
            .as_str()
            .unwrap_or("")
            .contains("not installed: nothing to stop"),
        "{step}"
    );
    // A unit a mode must start that does not exist refuses, naming it.
    c.write(
        "/etc/mode-controller/config.json",
        r#"{"version": 1, "modes": {"desktop": {"start": ["graphical.target", "display-manager.service", "hyprland-extras.service"]}}}"#,
    );
    let r = c.mode("request desktop");
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stderr.contains("hyprland-extras.service is not-found"),
        "{}",
        r.stderr
    );
}
