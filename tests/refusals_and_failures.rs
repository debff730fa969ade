//! What goes wrong, against a real systemd: guards that refuse, workloads
//! that fail (and the rollback), two requests at once, a controller killed
//! mid-transition, a user who is not root, and corrupt state or config.

mod common;

use std::time::{Duration, Instant};

use common::Container;

fn units_snapshot(c: &Container) -> Vec<String> {
    [
        "desktop.target",
        "graphical.target",
        "display-manager.service",
        "compute.target",
        "vllm.service",
    ]
    .iter()
    .map(|u| format!("{u}={}", c.state(u)))
    .collect()
}

/// Make the display manager take `secs` to stop, so a transition stays in flight.
fn slow_display_manager_stop(c: &Container, secs: u32) {
    c.write(
        "/run/systemd/system/display-manager.service.d/slow.conf",
        &format!("[Service]\nExecStop=/bin/sleep {secs}\n"),
    );
    assert_eq!(c.sh("systemctl daemon-reload").code, 0);
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn refuses_compute_while_wayland_session_active() {
    let c = Container::boot();
    let session = c.open_wayland_session();
    let before = units_snapshot(&c);
    // A stale record (say from before a crash) is corrected by what is observed.
    c.write("/run/mode-controller/current", "compute\n");

    let r = c.mode("request compute");
    assert_eq!(r.code, 3, "{r:?}");
    let line = r.stderr.trim();
    assert_eq!(line.lines().count(), 1, "one stderr line: {line}");
    assert!(
        line.starts_with("mode: refused: graphical_session_absent"),
        "{line}"
    );
    assert!(
        line.contains(&format!("session {session} of nobody (wayland")),
        "{line}"
    );
    assert!(line.contains("log out"), "says what to do: {line}");

    assert_eq!(units_snapshot(&c), before, "nothing changed");
    assert_eq!(c.read("/run/mode-controller/current"), "desktop\n");
    let t = c.last_transition();
    assert_eq!(t["outcome"], "refused");
    assert_eq!(t["steps"].as_array().unwrap().len(), 0);
    let g: serde_json::Value =
        serde_json::from_str(&c.read("/run/mode-controller/last-guards.json")).unwrap();
    let blocker = g["guards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "graphical_session_absent")
        .unwrap();
    assert_eq!(blocker["outcome"], "fail");
    assert_eq!(blocker["severity"], "hard");
    assert_eq!(blocker["evidence"]["sessions"][0]["id"], session.as_str());
    assert_eq!(blocker["evidence"]["sessions"][0]["type"], "wayland");

    let s = c.mode("status --json").json();
    assert_eq!(s["observed"]["mode"], "desktop");
    assert_eq!(s["blocking_guards"][0]["name"], "graphical_session_absent");
    let explain = c.mode("explain compute");
    assert_eq!(explain.code, 0, "{explain:?}");
    assert!(
        explain.stdout.contains("It would be refused now"),
        "{}",
        explain.stdout
    );
    assert!(
        explain.stdout.contains("To clear it: log out"),
        "{}",
        explain.stdout
    );
}

#[test]
fn rolls_back_to_desktop_when_workload_fails_to_start() {
    let c = Container::boot();
    c.write(
        "/run/systemd/system/vllm.service.d/broken.conf",
        "[Service]\nExecStartPre=/bin/false\n",
    );
    assert_eq!(c.sh("systemctl daemon-reload").code, 0);

    let r = c.mode("request compute");
    assert_eq!(r.code, 4, "{r:?}");
    assert!(
        r.stderr.contains(
            "vllm.service ended 'failed' (result exit-code; see journalctl -u vllm.service)"
        ),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("rolled back to desktop"), "{}", r.stderr);

    assert_eq!(c.state("desktop.target"), "active");
    assert_eq!(c.state("display-manager.service"), "active");
    assert_eq!(c.state("compute.target"), "inactive");
    assert_eq!(c.mode("current").stdout.trim(), "desktop");
    assert_eq!(c.read("/run/mode-controller/current"), "desktop\n");
    let t = c.last_transition();
    assert_eq!(t["outcome"], "failed");
    assert!(
        t["error"].as_str().unwrap().contains("vllm.service"),
        "{}",
        t["error"]
    );
    let failed: Vec<&serde_json::Value> = t["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["outcome"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["unit"], "compute.target");
    assert_eq!(t["rollback"]["to"], "desktop");
    assert_eq!(t["rollback"]["outcome"], "converged");
    assert!(!t["rollback"]["steps"].as_array().unwrap().is_empty());
}

#[test]
fn a_second_request_during_a_transition_is_busy_and_state_stays_consistent() {
    let c = Container::boot();
    slow_display_manager_stop(&c, 1);
    let first = c.spawn("mode request compute");
    wait_until("the first transition to take the lock", || {
        c.mode("current").stdout.trim() == "transitioning"
    });
    let second = c.mode("request studio-local");
    assert_eq!(second.code, 5, "{second:?}");
    assert!(
        second.stderr.contains("another transition is running (pid"),
        "{}",
        second.stderr
    );
    assert!(
        second.stderr.contains("transition 20"),
        "names the transition id: {}",
        second.stderr
    );

    let first = first.wait_with_output().unwrap();
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(c.mode("current").stdout.trim(), "compute");
    assert_eq!(c.read("/run/mode-controller/current"), "compute\n");
    assert_eq!(
        c.read("/run/mode-controller/desired"),
        "compute\n",
        "the loser did not change desired"
    );
    let audit = c.read("/var/lib/mode-controller/transitions.jsonl");
    for line in audit.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("whole JSON lines only");
    }
}

#[test]
fn two_applies_at_once_one_wins_the_other_is_busy() {
    let c = Container::boot();
    let audit = "/var/lib/mode-controller/transitions.jsonl";
    let before = c.read(audit).lines().count();
    // The first holds the lock, stopped at the test pause point just after
    // taking it, while the second asks: one outcome only, every run.
    let _ = c.sh("rm -f /run/mode-controller/test-paused");
    let first = c.spawn("MODE_TEST_PAUSE=locked exec mode apply compute");
    wait_until("the first apply to hold the lock", || {
        c.read("/run/mode-controller/test-paused")
            .starts_with("locked ")
    });
    let second = c.mode("apply compute");
    // nsenter stopped itself with its child; continuing it continues both.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first.id() as i32),
        nix::sys::signal::Signal::SIGCONT,
    )
    .unwrap();
    let first = first.wait_with_output().unwrap();
    let codes = [first.status.code().unwrap(), second.code];
    assert_eq!(codes, [0, 5], "{second:?}");
    assert!(
        second.stderr.contains("another transition is running (pid"),
        "{}",
        second.stderr
    );
    assert_eq!(c.mode("current").stdout.trim(), "compute");
    let lines: Vec<serde_json::Value> = c
        .read(audit)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        before + 1,
        "the winner's transition only: {lines:?}"
    );
}

#[test]
fn reconcile_converges_after_the_controller_is_killed_mid_transition() {
    let c = Container::boot();
    slow_display_manager_stop(&c, 2);
    let r = c.mode("request compute --no-wait");
    assert_eq!(r.code, 0, "{r:?}");
    let mut seen = String::new();
    wait_until("the transition to be in flight", || {
        seen = c.mode("status --json").json()["observed"]["mode"]
            .as_str()
            .unwrap()
            .to_string();
        seen == "transitioning"
    });
    assert_eq!(
        c.sh("systemctl kill --signal=KILL mode-controller@compute.service")
            .code,
        0
    );
    wait_until("the unit to die", || {
        c.state("mode-controller@compute.service") != "activating"
    });

    let s = c.mode("status --json");
    let observed = s.json()["observed"]["mode"].as_str().unwrap().to_string();
    assert!(
        ["transitioning", "failed-transition"].contains(&observed.as_str()),
        "between: {observed} {s:?}"
    );
    wait_until("systemd's jobs to settle", || {
        c.sh("systemctl list-jobs --no-legend")
            .stdout
            .trim()
            .is_empty()
    });

    let r = c.mode("reconcile");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(c.mode("current").stdout.trim(), "compute");
    assert_eq!(c.state("compute.target"), "active");
    let again = c.mode("reconcile");
    assert_eq!(again.code, 0);
    assert!(
        again.stdout.contains("already converged"),
        "{}",
        again.stdout
    );
}

#[test]
fn a_non_root_user_may_look_but_not_switch() {
    let c = Container::boot();
    let r = c.sh_as_nobody("mode request compute");
    assert_eq!(r.code, 6, "{r:?}");
    // No polkit in this root: systemd refuses the instance that names them.
    assert!(
        r.stderr.contains("needs root or polkit's permission")
            && r.stderr.contains("mode-controller@compute:nobody.service"),
        "{}",
        r.stderr
    );
    for cmd in ["mode apply compute", "mode reconcile"] {
        assert_eq!(c.sh_as_nobody(cmd).code, 6, "{cmd}");
    }
    assert_eq!(c.state("desktop.target"), "active", "nothing changed");

    let s = c.sh_as_nobody("mode status --json");
    assert_eq!(s.code, 0, "{s:?}");
    assert_eq!(s.json()["observed"]["mode"], "desktop");
    assert_eq!(c.sh_as_nobody("mode current").stdout.trim(), "desktop");
    let d = c.sh_as_nobody("mode dry-run compute");
    assert_eq!(d.code, 0, "{d:?}");
    assert!(d.stdout.contains("start compute.target"), "{}", d.stdout);
}

#[test]
fn corrupt_state_files_are_named_and_repaired_by_the_next_transition() {
    let c = Container::boot();
    c.write("/run/mode-controller/desired", "gaming\n");
    c.write(
        "/run/mode-controller/last-transition.json",
        "{\"id\": \"x\", \"fro",
    );

    let d = c.mode("desired");
    assert_eq!(d.code, 7, "{d:?}");
    assert!(
        d.stderr.contains("/run/mode-controller/desired is corrupt"),
        "{}",
        d.stderr
    );
    assert!(d.stderr.contains("'gaming'"), "{}", d.stderr);

    let s = c.mode("status --json");
    assert_eq!(s.code, 7, "{s:?}");
    let j = s.json();
    assert_eq!(
        j["observed"]["mode"], "desktop",
        "still answers what it can"
    );
    let problems = j["problems"].to_string();
    assert!(problems.contains("desired is corrupt"), "{problems}");
    assert!(
        problems.contains("last-transition.json is corrupt"),
        "{problems}"
    );

    let r = c.mode("request studio-local");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(c.read("/run/mode-controller/desired"), "studio-local\n");
    assert_eq!(c.mode("status").code, 0, "repaired");
    assert_eq!(c.state("audio-priority.service"), "active");
}

#[test]
fn an_invalid_config_is_refused_naming_the_field_and_nothing_changes() {
    let c = Container::boot();
    c.write(
        "/etc/mode-controller/config.json",
        r#"{"version": 1, "modes": {"compute": {"stop": ["k3s.service"]}}}"#,
    );
    let check = c.mode("config check /etc/mode-controller/config.json");
    assert_eq!(check.code, 7, "{check:?}");
    assert!(
        check.stderr.contains("modes.compute.stop[0]"),
        "{}",
        check.stderr
    );

    let r = c.mode("request compute");
    assert_eq!(r.code, 7, "{r:?}");
    assert!(
        r.stderr
            .contains("modes.compute.stop[0]: 'k3s.service' is in keep_running"),
        "{}",
        r.stderr
    );
    assert_eq!(c.state("desktop.target"), "active");
    assert_eq!(
        c.sh("test -e /run/mode-controller/desired").code,
        1,
        "no state written"
    );
}

#[test]
fn an_unknown_mode_word_is_a_usage_error() {
    let c = Container::boot();
    let r = c.mode("request gaming");
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("'gaming'") && r.stderr.contains("desktop, studio-local, compute"),
        "names the word and the modes: {}",
        r.stderr
    );
}
