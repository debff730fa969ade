//! The environment around a transition: no systemd as init, no bus, a
//! request that outlives its timeout, the journal fields, and the shell
//! completions and man page the packages install.

mod common;

use std::process::Command;

use common::Container;

#[test]
fn without_systemd_as_init_every_command_says_so_with_exit_7() {
    let c = Container::boot();
    let r = c.sh("unshare -m sh -c 'mount -t tmpfs none /run/systemd && mode status'");
    assert_eq!(r.code, 7, "{r:?}");
    assert!(
        r.stderr.contains("systemd is not the init system here"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
}

#[test]
fn an_unreachable_bus_is_exit_7_naming_dbus() {
    let c = Container::boot();
    let r = c.sh("unshare -m sh -c 'mount -t tmpfs none /run/dbus && mode request compute'");
    assert_eq!(r.code, 7, "{r:?}");
    assert!(
        r.stderr.contains("cannot reach the system D-Bus"),
        "{}",
        r.stderr
    );
    assert_eq!(c.state("desktop.target"), "active");
}

#[test]
fn a_request_that_outlives_its_timeout_exits_8_and_the_switch_still_finishes() {
    let c = Container::boot();
    c.write(
        "/run/systemd/system/display-manager.service.d/slow.conf",
        "[Service]\nExecStop=/bin/sleep 3\n",
    );
    assert_eq!(c.sh("systemctl daemon-reload").code, 0);
    let r = c.mode("request compute --timeout 1");
    assert_eq!(r.code, 8, "{r:?}");
    assert!(r.stderr.contains("may still be running"), "{}", r.stderr);
    let finished = c.sh("for i in $(seq 100); do [ \"$(mode current)\" = compute ] && exit 0; sleep 0.1; done; exit 1");
    assert_eq!(
        finished.code, 0,
        "the transition went on without the terminal"
    );
}

#[test]
fn transitions_are_logged_to_the_journal_with_structured_fields() {
    let c = Container::boot();
    assert_eq!(c.mode("request compute").code, 0);
    let id = c.mode("status --json").json()["last_transition"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let log = c.sh(&format!("journalctl --no-pager -o json TRANSITION={id}"));
    assert_eq!(log.code, 0, "{log:?}");
    let finished = log
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["OUTCOME"] == "converged")
        .unwrap_or_else(|| panic!("no finished entry: {}", log.stdout));
    assert_eq!(finished["FROM"], "desktop");
    assert_eq!(finished["TO"], "compute");
    assert_eq!(finished["SYSLOG_IDENTIFIER"], "mode-controller");
}

#[test]
fn completions_and_man_page_are_generated() {
    let bin = env!("CARGO_BIN_EXE_mode");
    let bash = Command::new(bin)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(bash.status.success());
    let text = String::from_utf8_lossy(&bash.stdout);
    assert!(
        text.contains("dry-run") && text.contains("reconcile"),
        "{text}"
    );
    let man = Command::new(bin).arg("manpage").output().unwrap();
    assert!(man.status.success());
    assert!(
        String::from_utf8_lossy(&man.stdout).starts_with(".ie"),
        "roff"
    );
}

/// Every page a page lists (`mode-request(1)` under SUBCOMMANDS, and on
/// down: `mode-config-check(1)`) is written by `mode manpage --dir`, and
/// each renders without a warning; the main page is what `mode manpage`
/// prints.
#[test]
fn every_man_page_the_main_page_lists_exists_and_renders_cleanly() {
    let bin = env!("CARGO_BIN_EXE_mode");
    let dir = tempfile::tempdir().unwrap();
    let r = Command::new(bin)
        .args(["manpage", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(r.status.success(), "{r:?}");
    let main = std::fs::read_to_string(dir.path().join("mode.1")).unwrap();
    let printed = Command::new(bin).arg("manpage").output().unwrap().stdout;
    assert_eq!(String::from_utf8_lossy(&printed), main);

    let mut pages = vec!["mode".to_string()];
    let mut seen = std::collections::BTreeSet::new();
    while let Some(page) = pages.pop() {
        if !seen.insert(page.clone()) {
            continue;
        }
        let path = dir.path().join(format!("{page}.1"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{page}(1) is listed but {}: {e}", path.display()));
        // roff writes `mode\-request(1)` for mode-request(1).
        for line in text.lines() {
            if let Some(name) = line.strip_suffix("(1)") {
                if name.starts_with("mode\\-") && !name.contains(' ') {
                    pages.push(name.replace("\\-", "-"));
                }
            }
        }
        let render = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(&path)
            .output()
            .expect("groff (apt-get install groff-base)");
        assert!(
            render.status.success() && render.stderr.is_empty(),
            "{page}(1): {}",
            String::from_utf8_lossy(&render.stderr)
        );
    }
    for want in [
        "mode",
        "mode-request",
        "mode-reconcile",
        "mode-config",
        "mode-config-check",
    ] {
        assert!(seen.contains(want), "{want} in {seen:?}");
    }
    assert!(
        !seen.contains("mode-help"),
        "no page for a help command that has none"
    );
    let written = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(
        written,
        seen.len(),
        "every page written is listed: {seen:?}"
    );
}

#[test]
fn a_masked_transition_unit_is_exit_7_and_the_desired_mode_is_put_back() {
    let c = Container::boot();
    assert_eq!(c.mode("request studio-local").code, 0);
    assert_eq!(
        c.sh("systemctl mask --runtime mode-controller@compute.service")
            .code,
        0
    );
    let r = c.mode("request compute");
    assert_eq!(r.code, 7, "{r:?}");
    assert!(
        r.stderr
            .contains("mode-controller@compute.service cannot be started"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("docs/install.md"), "{}", r.stderr);
    assert_eq!(
        c.read("/run/mode-controller/desired"),
        "studio-local\n",
        "the wish that could not run is not left behind"
    );
    assert_eq!(c.mode("current").stdout.trim(), "studio-local");
}
