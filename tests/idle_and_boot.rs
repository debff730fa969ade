//! Idle automation and the boot policy against a real systemd and logind in a
//! container: `mode idle-check` with sessions whose idle hint the test sets
//! (as the session's own user, the way hypridle or swayidle would), and boots
//! of a second container on the first one's /var/lib/mode-controller.

mod common;

use std::time::{Duration, Instant};

use common::{Container, Run};

/// Open a graphical logind session of class `class` for `nobody` in a unit
/// named `unit`; returns the session id once it has left `opening`.
fn open_session(c: &Container, unit: &str, class: &str) -> String {
    let r = c.sh(&format!(
        "systemd-run --unit={unit} -p PAMName=login -p User=nobody \
         -p Environment=XDG_SESSION_TYPE=wayland -p Environment=XDG_SESSION_CLASS={class} \
         -p Environment=XDG_SEAT=seat0 sleep infinity"
    ));
    assert_eq!(r.code, 0, "{r:?}");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let leader = c
            .sh(&format!("systemctl show -P MainPID {unit}.service"))
            .stdout;
        let list = c.sh("loginctl list-sessions --no-legend").stdout;
        for sid in list.lines().filter_map(|l| l.split_whitespace().next()) {
            let props = c
                .sh(&format!("loginctl show-session -P Leader -P State {sid}"))
                .stdout;
            let mut lines = props.lines();
            let (pid, state) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
            if pid == leader.trim() && state != "opening" {
                return sid.to_string();
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the {class} session did not open");
}

/// Set a session's idle hint as its own user does (logind checks the caller).
fn set_idle_hint(c: &Container, session: &str, idle: bool) {
    let r = c.sh_as_nobody(&format!(
        "path=$(busctl call org.freedesktop.login1 /org/freedesktop/login1 \
           org.freedesktop.login1.Manager GetSession s {session} | cut -d'\"' -f2) && \
         busctl call org.freedesktop.login1 \"$path\" org.freedesktop.login1.Session SetIdleHint b {idle}"
    ));
    assert_eq!(r.code, 0, "SetIdleHint: {r:?}");
}

/// `mode idle-check --json` with the figures the container cannot vouch for
/// pinned: no input devices, and CPU pressure (the host's) never in the way.
fn idle_check(c: &Container, extra: &str) -> (Run, serde_json::Value) {
    let r = c.mode(&format!(
        "idle-check --json --input-dir /run/no-input --max-cpu-pressure 100 {extra}"
    ));
    let j = r.json();
    (r, j)
}

fn reasons(j: &serde_json::Value) -> String {
    j["reasons"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .unwrap_or_default()
}

#[test]
fn idle_greeter_past_the_threshold_promotes_to_compute_as_idle() {
    let c = Container::boot();
    let greeter = open_session(&c, "greeter", "greeter");
    set_idle_hint(&c, &greeter, true);
    std::thread::sleep(Duration::from_millis(1100));

    // Anyone may ask; only root acts.
    let r = c.sh_as_nobody(
        "mode idle-check --json --input-dir /run/no-input --max-cpu-pressure 100 --threshold 1",
    );
    assert_eq!(r.code, 0, "{r:?}");
    let j = r.json();
    assert_eq!(j["decision"], "promote", "{j:#}");
    assert_eq!(j["acted"], false);
    assert!(
        j["note"].as_str().unwrap().contains("only root acts"),
        "{j:#}"
    );
    assert_eq!(c.mode("current").stdout.trim(), "desktop");

    let (r, j) = idle_check(&c, "--threshold 1");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(j["decision"], "promote", "{j:#}");
    assert_eq!(j["acted"], true);
    assert_eq!(j["figures"]["presence"]["kind"], "greeter", "{j:#}");
    assert!(j["figures"]["idle_secs"].as_u64().unwrap() >= 1, "{j:#}");
    assert_eq!(j["transition"]["outcome"], "converged", "{j:#}");
    assert_eq!(j["transition"]["requested_by"], "idle");
    assert_eq!(c.mode("current").stdout.trim(), "compute");
    let t = c.last_transition();
    assert_eq!(t["requested_by"], "idle");
    assert_eq!(t["to"], "compute");

    // Once there, the next check leaves it alone and says so.
    let (r, j) = idle_check(&c, "--threshold 1");
    assert_eq!((r.code, &j["decision"]), (0, &"stay".into()), "{j:#}");
    assert!(reasons(&j).contains("already in compute"), "{j:#}");
}

#[test]
fn a_failed_idle_promotion_rolls_back_and_leaves_desktop_desired() {
    let c = Container::boot();
    c.write(
        "/run/systemd/system/vllm.service.d/broken.conf",
        "[Service]\nExecStartPre=/bin/false\n",
    );
    assert_eq!(c.sh("systemctl daemon-reload").code, 0);
    let greeter = open_session(&c, "greeter", "greeter");
    set_idle_hint(&c, &greeter, true);
    std::thread::sleep(Duration::from_millis(1100));
    let (r, j) = idle_check(&c, "--threshold 1");
    assert_eq!(r.code, 4, "the request's exit code: {r:?}");
    assert_eq!(j["acted"], true);
    assert_eq!(j["transition"]["outcome"], "failed", "{j:#}");
    assert_eq!(j["transition"]["requested_by"], "idle");
    assert!(r.stderr.contains("rolled back to desktop"), "{}", r.stderr);
    assert_eq!(c.mode("current").stdout.trim(), "desktop");
    assert_eq!(c.mode("desired").stdout, "desktop\n");
    // Exactly as before the request: nothing was desired, in either place.
    for kept in [
        "/run/mode-controller/desired",
        "/var/lib/mode-controller/desired",
    ] {
        assert_ne!(c.sh(&format!("test -e {kept}")).code, 0, "{kept} written");
    }
}

#[test]
fn idle_check_stays_while_a_user_session_is_active_and_says_why() {
    let c = Container::boot();
    let session = open_session(&c, "alice", "user");
    let (r, j) = idle_check(&c, "--threshold 1");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(j["decision"], "stay", "{j:#}");
    assert_eq!(j["acted"], false);
    let why = reasons(&j);
    assert!(
        why.contains(&format!(
            "not idle: session {session} of nobody (wayland, user) active"
        )),
        "{why}"
    );
    assert_eq!(j["figures"]["presence"]["kind"], "active");
    assert_eq!(c.mode("current").stdout.trim(), "desktop");

    // Idle but still logged in: the session's hint is read, and the
    // graphical-session guard keeps the machine on desktop (never kill).
    set_idle_hint(&c, &session, true);
    std::thread::sleep(Duration::from_millis(1100));
    let (r, j) = idle_check(&c, "--threshold 1");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(j["decision"], "stay", "{j:#}");
    assert_eq!(j["figures"]["presence"]["kind"], "idle_sessions", "{j:#}");
    let why = reasons(&j);
    assert!(!why.contains("not idle"), "{why}");
    assert!(why.contains("guard graphical_session_absent"), "{why}");
    assert_eq!(j["blocking_guards"][0]["name"], "graphical_session_absent");
    assert_eq!(c.mode("current").stdout.trim(), "desktop");
    assert!(
        !c.read("/run/mode-controller/last-transition.json")
            .contains("idle"),
        "nothing was requested"
    );
}

#[test]
fn an_idle_hint_set_from_inside_the_session_as_the_docs_snippet_does_is_read() {
    let c = Container::boot();
    // What docs/operations.md has hypridle run: a process of the session
    // marks its own session (`session/self`) idle.
    let r = c.sh("systemd-run --unit=alice -p PAMName=login -p User=nobody \
         -p Environment=XDG_SESSION_TYPE=wayland -p Environment=XDG_SEAT=seat0 \
         sh -c 'busctl call org.freedesktop.login1 /org/freedesktop/login1/session/self \
                org.freedesktop.login1.Session SetIdleHint b true && exec sleep infinity'");
    assert_eq!(r.code, 0, "{r:?}");
    let started = Instant::now();
    let j = loop {
        let (_, j) = idle_check(&c, "--threshold 1");
        if j["figures"]["presence"]["kind"] == "idle_sessions"
            || started.elapsed() > Duration::from_secs(10)
        {
            break j;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(j["figures"]["presence"]["kind"], "idle_sessions", "{j:#}");
    assert_eq!(j["figures"]["sessions"][0]["idle_hint"], true);
    assert_eq!(j["decision"], "stay", "an open session still blocks: {j:#}");
}

#[test]
fn idle_check_never_promotes_from_studio_local() {
    let c = Container::boot();
    let r = c.mode("request studio-local");
    assert_eq!(r.code, 0, "{r:?}");
    let greeter = open_session(&c, "greeter", "greeter");
    set_idle_hint(&c, &greeter, true);
    std::thread::sleep(Duration::from_millis(1100));
    let (r, j) = idle_check(&c, "--threshold 1");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(j["decision"], "stay", "{j:#}");
    assert_eq!(j["observed"], "studio-local");
    assert!(
        reasons(&j).contains("never leaves the studio"),
        "{}",
        reasons(&j)
    );
    assert_eq!(c.mode("current").stdout.trim(), "studio-local");
}

#[test]
fn recent_input_activity_keeps_an_idle_greeter_on_desktop() {
    let c = Container::boot();
    let greeter = open_session(&c, "greeter", "greeter");
    set_idle_hint(&c, &greeter, true);
    std::thread::sleep(Duration::from_millis(2100));
    // A key pressed just now: the event node's times move.
    c.sh("mkdir -p /run/test-input && touch /run/test-input/event0 /run/test-input/mice");
    let r = c
        .mode("idle-check --json --input-dir /run/test-input --max-cpu-pressure 100 --threshold 2");
    let j = r.json();
    assert_eq!((r.code, &j["decision"]), (0, &"stay".into()), "{j:#}");
    assert_eq!(j["figures"]["input"]["devices"], 1, "{j:#}");
    assert!(j["figures"]["input"]["last_activity"].is_string());
    assert!(
        reasons(&j).contains("less than the threshold of 2 s"),
        "{}",
        reasons(&j)
    );
    assert_eq!(c.mode("current").stdout.trim(), "desktop");
}

#[test]
fn with_nobody_logged_in_idle_time_counts_from_the_first_check() {
    let c = Container::boot();
    // --dry-run records nothing, so it cannot start the count.
    let (_, j) = idle_check(&c, "--threshold 1 --dry-run");
    assert_eq!(j["figures"]["presence"]["kind"], "nobody", "{j:#}");
    assert!(reasons(&j).contains("none yet"), "{}", reasons(&j));
    assert_eq!(
        c.sh("test -e /run/mode-controller/unattended-since").code,
        1
    );

    let (_, j) = idle_check(&c, "--threshold 1");
    assert_eq!(j["decision"], "stay", "{j:#}");
    assert!(
        reasons(&j).contains("less than the threshold of 1 s"),
        "{}",
        reasons(&j)
    );
    assert!(j["figures"]["unattended_since"].is_string());
    std::thread::sleep(Duration::from_millis(1100));

    let (_, j) = idle_check(&c, "--threshold 1 --dry-run");
    assert_eq!(j["decision"], "promote", "{j:#}");
    assert_eq!(j["acted"], false);
    assert_eq!(j["note"], "dry run: compute would be requested");
    assert_eq!(c.mode("current").stdout.trim(), "desktop");

    let (r, j) = idle_check(&c, "--threshold 1");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(j["transition"]["requested_by"], "idle", "{j:#}");
    assert_eq!(c.mode("current").stdout.trim(), "compute");
    assert_eq!(
        c.sh("test -e /run/mode-controller/unattended-since").code,
        1,
        "the count is forgotten once the machine leaves desktop"
    );
}

#[test]
fn a_switch_back_to_desktop_restarts_the_idle_count() {
    let c = Container::boot();
    let greeter = open_session(&c, "greeter", "greeter");
    set_idle_hint(&c, &greeter, true);
    std::thread::sleep(Duration::from_millis(1100));
    for mode in ["compute", "desktop"] {
        let r = c.mode(&format!("request {mode}"));
        assert_eq!(r.code, 0, "{r:?}");
    }
    // The greeter has been idle for more than a second, but someone switched
    // to desktop just now.
    let (_, j) = idle_check(&c, "--threshold 1 --dry-run");
    assert_eq!(j["decision"], "stay", "{j:#}");
    assert!(
        reasons(&j).contains("less than the threshold of 1 s"),
        "{}",
        reasons(&j)
    );
    assert_eq!(
        j["figures"]["idle_since"],
        j["figures"]["last_transition_at"]
    );
    std::thread::sleep(Duration::from_millis(1100));
    let (_, j) = idle_check(&c, "--threshold 1 --dry-run");
    assert_eq!(j["decision"], "promote", "{j:#}");
}

#[test]
fn the_idle_check_unit_runs_the_check_as_root_and_logs_the_decision() {
    let c = Container::boot();
    let r = c.sh("systemctl start mode-idle-check.service");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(c.prop("mode-idle-check.service", "Result"), "success");
    let log = c
        .sh("journalctl -b -u mode-idle-check.service --no-pager -o cat")
        .stdout;
    assert!(log.contains("decision:  stay"), "{log}");
    assert!(log.contains("of 1800 s"), "the configured default: {log}");
    let r =
        c.sh("systemctl start mode-idle-check.timer && systemctl is-active mode-idle-check.timer");
    assert_eq!(r.stdout.trim(), "active", "{r:?}");
}

#[test]
fn idle_check_rejects_bad_thresholds_with_a_usage_error() {
    let c = Container::boot();
    for bad in [
        "--threshold 0",
        "--threshold soon",
        "--max-cpu-pressure 140",
    ] {
        let r = c.mode(&format!("idle-check {bad}"));
        assert_eq!(r.code, 2, "{bad}: {r:?}");
        assert!(r.stderr.contains("invalid value"), "{bad}: {}", r.stderr);
    }
}

/// Boot a container on `lib` as /var/lib/mode-controller, into
/// multi-user.target (no mode yet), with mode-controller-boot.service wanted,
/// and optionally a drop-in for it and a configuration directory.
fn boot_on(
    lib: &std::path::Path,
    dropin: Option<&std::path::Path>,
    etc: Option<&std::path::Path>,
) -> Container {
    let mut nspawn = vec![format!("--bind={}:/var/lib/mode-controller", lib.display())];
    if let Some(d) = dropin {
        nspawn.push(format!(
            "--bind-ro={}:/etc/systemd/system/mode-controller-boot.service.d",
            d.display()
        ));
    }
    if let Some(e) = etc {
        nspawn.push(format!("--bind-ro={}:/etc/mode-controller", e.display()));
    }
    Container::boot_with(
        &nspawn,
        &[
            "systemd.unit=multi-user.target".to_string(),
            "systemd.wants=mode-controller-boot.service".to_string(),
        ],
    )
}

/// A first life: boot, ask for compute, and shut down.
fn desire_compute(lib: &std::path::Path) {
    let first = Container::boot_with(
        &[format!("--bind={}:/var/lib/mode-controller", lib.display())],
        &[],
    );
    let r = first.mode("request compute");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        first.read("/var/lib/mode-controller/desired"),
        "compute\n",
        "the desired mode is kept across reboots"
    );
}

fn last_transition(c: &Container) -> serde_json::Value {
    serde_json::from_str(&c.read("/run/mode-controller/last-transition.json")).unwrap_or_else(|e| {
        panic!(
            "no transition recorded at boot ({e}): {}",
            c.sh("journalctl -b -u mode-controller-boot --no-pager")
                .stdout
        )
    })
}

#[test]
fn boot_normalizes_to_the_default_mode_whatever_was_desired() {
    let lib = tempfile::tempdir().unwrap();
    desire_compute(lib.path());
    let c = boot_on(lib.path(), None, None);
    assert_eq!(c.state("mode-controller-boot.service"), "active");
    assert_eq!(c.mode("current").stdout.trim(), "desktop");
    assert_eq!(c.state("desktop.target"), "active");
    let t = last_transition(&c);
    assert_eq!(
        (&t["to"], &t["requested_by"]),
        (&"desktop".into(), &"boot".into()),
        "{t:#}"
    );
    assert_eq!(c.read("/run/mode-controller/desired"), "desktop\n");
}

/// A configuration directory holding `config.json` with `json`.
fn config_dir(json: &str) -> tempfile::TempDir {
    let etc = tempfile::tempdir().unwrap();
    std::fs::write(etc.path().join("config.json"), json).unwrap();
    etc
}

#[test]
fn boot_mode_last_replays_the_last_desired_mode() {
    let lib = tempfile::tempdir().unwrap();
    let etc = config_dir(r#"{"version": 1, "boot_mode": "last"}"#);
    desire_compute(lib.path());
    let c = boot_on(lib.path(), None, Some(etc.path()));
    assert_eq!(
        c.mode("current").stdout.trim(),
        "compute",
        "{}",
        c.sh("journalctl -b -u mode-controller-boot --no-pager")
            .stdout
    );
    assert_eq!(c.state("compute.target"), "active");
    let t = last_transition(&c);
    assert_eq!(
        (&t["to"], &t["requested_by"]),
        (&"compute".into(), &"boot".into()),
        "{t:#}"
    );

    // Starting the boot unit again in the same boot changes nothing.
    let id = t["id"].clone();
    c.sh("systemctl restart mode-controller-boot.service");
    assert_eq!(last_transition(&c)["id"], id);
}

#[test]
fn boot_mode_last_falls_back_to_the_default_when_the_kept_mode_fails() {
    let lib = tempfile::tempdir().unwrap();
    let dropin = tempfile::tempdir().unwrap();
    std::fs::write(
        dropin.path().join("last.conf"),
        "[Service]\nEnvironment=MODE_BOOT_MODE=last\n",
    )
    .unwrap();
    desire_compute(lib.path());
    // In this boot, compute's workload cannot start.
    let broken = tempfile::tempdir().unwrap();
    std::fs::write(
        broken.path().join("broken.conf"),
        "[Service]\nExecStartPre=/bin/false\n",
    )
    .unwrap();
    let c = Container::boot_with(
        &[
            format!("--bind={}:/var/lib/mode-controller", lib.path().display()),
            format!(
                "--bind-ro={}:/etc/systemd/system/mode-controller-boot.service.d",
                dropin.path().display()
            ),
            format!(
                "--bind-ro={}:/etc/systemd/system/vllm.service.d",
                broken.path().display()
            ),
        ],
        &[
            "systemd.unit=multi-user.target".to_string(),
            "systemd.wants=mode-controller-boot.service".to_string(),
        ],
    );
    assert_eq!(c.mode("current").stdout.trim(), "desktop");
    let t = last_transition(&c);
    assert_eq!(
        (&t["to"], &t["requested_by"]),
        (&"desktop".into(), &"boot".into()),
        "{t:#}"
    );
    let audit = c.read("/var/lib/mode-controller/transitions.jsonl");
    let boots: Vec<serde_json::Value> = audit
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|r: &serde_json::Value| r["requested_by"] == "boot")
        .collect();
    let seen: Vec<String> = boots
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["to"].as_str().unwrap(),
                r["outcome"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(seen[0], "compute failed", "{seen:?}");
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[1].starts_with("desktop "), "{seen:?}");
    let log = c
        .sh("journalctl -b -u mode-controller-boot.service -o cat --no-pager")
        .stdout;
    assert!(
        log.contains("falling back to the default mode, desktop"),
        "{log}"
    );
    assert_eq!(c.read("/var/lib/mode-controller/desired"), "desktop\n");
}

#[test]
fn a_drop_in_overrides_the_configured_boot_mode() {
    let lib = tempfile::tempdir().unwrap();
    let etc = config_dir(r#"{"version": 1, "boot_mode": "last"}"#);
    let dropin = tempfile::tempdir().unwrap();
    std::fs::write(
        dropin.path().join("default.conf"),
        "[Service]\nEnvironment=MODE_BOOT_MODE=default\n",
    )
    .unwrap();
    desire_compute(lib.path());
    let c = boot_on(lib.path(), Some(dropin.path()), Some(etc.path()));
    assert_eq!(c.mode("current").stdout.trim(), "desktop");
    assert_eq!(last_transition(&c)["requested_by"], "boot");
}

#[test]
fn the_configured_idle_threshold_and_input_devices_apply() {
    let c = Container::boot();
    c.write(
        "/etc/mode-controller/config.json",
        r#"{"version": 1, "idle": {"threshold_secs": 1, "input_devices": null, "max_cpu_pressure": 100}}"#,
    );
    let greeter = open_session(&c, "greeter", "greeter");
    set_idle_hint(&c, &greeter, true);
    std::thread::sleep(Duration::from_millis(1100));
    let r = c.mode("idle-check --json --dry-run");
    let j = r.json();
    assert_eq!(j["figures"]["threshold_secs"], 1, "{j:#}");
    assert!(j["figures"]["input"].is_null(), "{j:#}");
    assert_eq!(j["decision"], "promote", "{j:#}");
}

#[test]
fn config_check_names_a_bad_idle_or_boot_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.json");
    for (json, field) in [
        (
            r#"{"version": 1, "idle": {"threshold_secs": 0}}"#,
            "idle.threshold_secs",
        ),
        (
            r#"{"version": 1, "idle": {"treshold_secs": 60}}"#,
            "treshold_secs",
        ),
        (r#"{"version": 1, "boot_mode": "previous"}"#, "boot_mode"),
    ] {
        std::fs::write(&file, json).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mode"))
            .args(["config", "check"])
            .arg(&file)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(7), "{json}: {err}");
        assert!(err.contains(field), "{json}: {err}");
    }
}
