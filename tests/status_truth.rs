//! Status tells the truth: blockers are those of the last refusal only,
//! with when and for which mode they were found; placement is the
//! configuration's as it is now, for status, dry-run and the request alike.

mod common;

use common::Container;

#[test]
fn blockers_carry_their_time_and_target_and_vanish_once_a_later_transition_supersedes_them() {
    let c = Container::boot();
    let session = c.open_wayland_session();
    let r = c.mode("request compute");
    assert_eq!(r.code, 3, "{r:?}");
    let s = c.mode("--json status").json();
    assert_eq!(
        s["blocking_guards"][0]["name"], "graphical_session_absent",
        "{s}"
    );
    assert_eq!(s["blocking_target"], "compute");
    // JSON says when in UTC (RFC 3339); people read the local time, as
    // systemctl prints it (the same moment as date(1) writes it, in TZ).
    let as_of = s["blocking_as_of"].as_str().unwrap_or_default().to_string();
    assert!(as_of.starts_with("20") && as_of.ends_with('Z'), "{s}");
    let local = |stamp: &str| {
        c.sh(&format!(
            "TZ=Asia/Kolkata date -d {stamp} '+%a %Y-%m-%d %H:%M:%S %Z'"
        ))
        .stdout
        .trim()
        .to_string()
    };
    let as_of_local = local(&as_of);
    assert!(as_of_local.ends_with(" IST"), "{as_of_local}");
    let text = c.sh("TZ=Asia/Kolkata mode status").stdout;
    assert!(
        text.contains(&format!(
            "the request for compute was refused; as of {as_of_local}"
        )),
        "{text}"
    );
    let started = s["last_transition"]["started_at"]
        .as_str()
        .unwrap_or_default();
    assert!(
        text.contains(&format!(" at {} in ", local(started))),
        "{text}"
    );
    assert!(
        text.contains(&format!("session {session} of nobody")),
        "{text}"
    );

    // The user leaves and asks for the desktop they are in: nothing is
    // evaluated, and the old refusal's blockers are no longer shown.
    c.sh("systemctl stop fake-wayland.service");
    assert_eq!(c.mode("request desktop").code, 0);
    let s = c.mode("--json status").json();
    assert_eq!(s["blocking_guards"], serde_json::json!([]), "{s}");
    assert!(s["blocking_as_of"].is_null(), "{s}");
    assert!(!c.mode("status").stdout.contains("blocking:"));
}

#[test]
fn a_placement_changed_in_the_configuration_shows_at_once_and_dry_run_agrees_with_the_request() {
    let c = Container::boot();
    // An earlier transition wrote capability-placement.json with the studio local.
    assert_eq!(c.mode("request studio-local").code, 0);
    assert_eq!(c.mode("request desktop").code, 0);
    c.write(
        "/etc/mode-controller/config.json",
        r#"{"version": 1, "capability_placement": {"studio": "studio-pc"}}"#,
    );
    let s = c.mode("--json status").json();
    assert_eq!(s["capability_placement"]["studio"], "studio-pc", "{s}");
    let d = c.mode("--json dry-run studio-local").json();
    assert_eq!(d["would"], "refuse", "{d}");
    let r = c.mode("request studio-local");
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stderr.contains("placed on \"studio-pc\""), "{}", r.stderr);
}
