//! The command line on the host, with no systemd needed: configuration
//! checks (including the file the NixOS module renders), usage errors, the
//! root check that comes before anything else, and help that teaches.

use std::process::{Command, Output};

fn mode(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mode"))
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn the_config_the_nixos_module_renders_is_accepted() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/nixos-modules/example-config.json"
    );
    let out = mode(&["config", "check", example]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("is valid"),
        "{}",
        text(&out.stdout)
    );
    let out = mode(&["--json", "config", "check", example]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["valid"], true);
    assert!(doc["config"]["modes"]["compute"]["target"].is_string());
}

#[test]
fn a_bad_config_names_the_file_and_field_with_exit_7() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.json");
    std::fs::write(
        &file,
        r#"{"version": 1, "modes": {"desktop": {"slices": {"ai.slice": {"CPUWeight": 0}}}}}"#,
    )
    .unwrap();
    let out = mode(&["config", "check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(7));
    let err = text(&out.stderr);
    assert!(
        err.contains("config.json: modes.desktop.slices.ai.slice.CPUWeight"),
        "{err}"
    );
    assert!(err.contains("1..10000"), "{err}");
    assert_eq!(err.lines().count(), 1);

    let missing = mode(&["config", "check", "/nonexistent/config.json"]);
    assert_eq!(missing.status.code(), Some(7));
    assert!(text(&missing.stderr).contains("/nonexistent/config.json"));
}

#[test]
fn config_check_lists_every_bad_field_one_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.json");
    std::fs::write(
        &file,
        r#"{"version": 1, "guard_settings": {"gpu": {"poll_interval_ms": 0}, "cpu": {"max_pressure_avg10": 0}}}"#,
    )
    .unwrap();
    let out = mode(&["config", "check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(7));
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].contains("config.json: guard_settings.gpu.poll_interval_ms: 0 ms is out of range"),
        "{err}"
    );
    assert!(
        lines[1]
            .contains("config.json: guard_settings.cpu.max_pressure_avg10: 0 is not a percentage"),
        "{err}"
    );
}

#[test]
fn json_errors_are_one_document_on_stdout() {
    let out = mode(&["--json", "config", "check", "/nonexistent/config.json"]);
    assert_eq!(out.status.code(), Some(7));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["exit_code"], 7);
    assert!(doc["error"].as_str().unwrap().contains("/nonexistent"));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(mode(&["teleport"]).status.code(), Some(2));
    assert_eq!(mode(&["dry-run", "gaming"]).status.code(), Some(2));
    assert_eq!(mode(&["request"]).status.code(), Some(2));
}

#[test]
fn usage_errors_are_one_line_and_json_under_json() {
    for args in [
        &["teleport"][..],
        &["dry-run", "gaming"],
        &["request"],
        &["request", "compute", "--timeout", "0"],
        &["idle-check", "--max-cpu-pressure", "140"],
        &["status", "--frobnicate"],
    ] {
        let out = mode(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("mode: usage: "), "{err}");
        let mut json_args = vec!["--json"];
        json_args.extend_from_slice(args);
        let out = mode(&json_args);
        assert_eq!(out.status.code(), Some(2));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", text(&out.stdout)));
        assert_eq!(doc["exit_code"], 2);
        assert!(doc["error"].as_str().unwrap().starts_with("usage: "));
    }
    let out = mode(&["request"]);
    assert!(
        text(&out.stderr).contains("<MODE>"),
        "names what is missing"
    );
}

/// `apply`, `boot` and `way-back` are root's alone; `request` and
/// `reconcile` by anyone else go to systemd and polkit (tests/real_desktop.rs).
#[test]
fn a_non_root_caller_is_refused_before_anything_else() {
    for args in [
        &["apply", "compute"][..],
        &["apply", "compute:nobody"],
        &["boot"],
    ] {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_mode"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(6),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains("needs root (you are uid 65534)"),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

/// The transition unit's instance is a mode, or a mode (or reconcile) and
/// one plain user name: nothing else gets through `mode apply`.
#[test]
fn an_instance_smuggling_anything_but_a_user_is_a_usage_error() {
    for bad in [
        "gaming",
        "reconcile",
        "compute:--config=/tmp/x",
        "compute:alice:bob",
        "compute:al ice",
        "compute:",
    ] {
        let out = mode(&["apply", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(
            err.starts_with("mode: usage: ") && err.trim().lines().count() == 1,
            "{err}"
        );
    }
    let help = text(&mode(&["apply", "--help"]).stdout);
    assert!(help.contains("desktop, studio-local, compute"), "{help}");
}

#[test]
fn help_teaches_with_examples_and_exit_codes() {
    let out = mode(&["--help"]);
    let help = text(&out.stdout);
    assert!(help.contains("sudo mode request compute"), "{help}");
    assert!(help.contains("3 refused by a guard"), "{help}");
    let req = text(&mode(&["request", "--help"]).stdout);
    assert!(
        req.contains("--no-wait") && req.contains("--timeout"),
        "{req}"
    );
}

#[test]
fn the_defaults_printed_are_a_valid_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("defaults.json");
    let out = mode(&["config", "defaults"]);
    std::fs::write(&file, &out.stdout).unwrap();
    assert_eq!(
        mode(&["config", "check", file.to_str().unwrap()])
            .status
            .code(),
        Some(0)
    );
}
