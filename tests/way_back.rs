//! The way back from compute in a real systemd container: mode-way-back.service
//! (wanted by compute.target) reads the seat's evdev devices, here a FIFO fed
//! with the records a keyboard writes (the kernel has no uinput here); a key
//! held for the configured time requests desktop, recorded as `input`; a bump
//! does nothing; a hold while a hard guard would refuse says so and stays.

mod common;

use std::time::Duration;

use common::Container;

/// Write key events (code, value) to the FIFO, with a pause after each. The
/// reader may go away before the last ones (the switch it asked for stops
/// its unit): those writes are dropped, as a keyboard's would be.
fn keys(c: &Container, events: &[(u16, i32, u64)]) {
    let script: String = events
        .iter()
        .map(|(code, value, pause_ms)| {
            format!("print F pack(\"qqSSl\", 0, 0, 1, {code}, {value}); F->flush; select(undef,undef,undef,{});", *pause_ms as f64 / 1000.0)
        })
        .collect();
    let r = c.sh(&format!(
        "perl -MIO::Handle -e '$SIG{{PIPE}}=\"IGNORE\"; open(F, \">\", \"/run/kbd\") or die; {script} close F'"
    ));
    assert_eq!(r.code, 0, "{r:?}");
}

fn setup(c: &Container, extra: &str) {
    c.write(
        "/etc/mode-controller/config.json",
        &format!(
            r#"{{"version": 1, "way_back": {{"devices": "/run/kbd", "hold_ms": 1000}}{extra}}}"#
        ),
    );
    assert_eq!(
        c.sh("mkfifo /run/kbd && systemctl enable mode-way-back.service")
            .code,
        0
    );
    let r = c.mode("request compute");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(c.state("mode-way-back.service"), "active");
    c.wait_for(
        "test -s /run/issue.d/50-mode-controller.issue && echo yes",
        "yes",
        5,
    );
}

#[test]
fn a_held_enter_brings_the_desktop_back_and_a_bump_does_not() {
    let c = Container::boot();
    setup(&c, "");
    assert!(c
        .read("/run/issue.d/50-mode-controller.issue")
        .contains("hold Enter for 1 s to get the desktop back"));

    // A bump: pressed and released within 300 ms.
    keys(&c, &[(28, 1, 300), (28, 0, 0)]);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        c.mode("current").stdout.trim(),
        "compute",
        "a bump ends nothing"
    );
    // Another key held does not count either.
    keys(&c, &[(57, 1, 1300), (57, 0, 0)]);
    assert_eq!(c.mode("current").stdout.trim(), "compute");

    // Enter held (with autorepeat) for 1.3 s.
    keys(&c, &[(28, 1, 400), (28, 2, 400), (28, 2, 500), (28, 0, 0)]);
    c.wait_for("mode current", "desktop", 20);
    assert_eq!(c.last_transition()["requested_by"], "input");
    assert_eq!(
        c.state("mode-way-back.service"),
        "inactive",
        "it stops with compute"
    );
    assert_eq!(
        c.sh("test -e /run/issue.d/50-mode-controller.issue").code,
        1
    );
}

#[test]
fn a_hold_while_a_hard_guard_would_refuse_says_so_and_stays_in_compute() {
    let c = Container::boot();
    setup(
        &c,
        r#", "modes": {"desktop": {"start": ["graphical.target", "display-manager.service", "missing-greeter.service"]}}"#,
    );
    keys(&c, &[(28, 1, 1300), (28, 0, 0)]);
    c.wait_for(
        "grep -c 'Not now' /run/issue.d/50-mode-controller.issue || true",
        "1",
        10,
    );
    assert!(c
        .read("/run/issue.d/50-mode-controller.issue")
        .contains("missing-greeter.service"));
    assert_eq!(c.mode("current").stdout.trim(), "compute");
}
