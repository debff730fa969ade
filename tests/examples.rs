//! The example configurations in docs/examples/ are ones users start from:
//! each is accepted by `mode config check` and turns on what it says.

use std::process::Command;

fn check(name: &str) -> serde_json::Value {
    let path = format!("{}/docs/examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO_BIN_EXE_mode"))
        .args(["--json", "config", "check", &path])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_slurm_example_is_valid_and_turns_the_integration_on() {
    let doc = check("slurm.json");
    let slurm = &doc["config"]["integrations"]["slurm"];
    assert_eq!(slurm["when_unreachable"], "warn");
    assert_eq!(
        doc["config"]["modes"]["desktop"]["drain"]["checkpoint_signal"],
        "SIGUSR1"
    );
}

#[test]
fn the_k3s_example_is_valid_and_reaches_the_api_through_kubectl_proxy() {
    let doc = check("k3s.json");
    let k3s = &doc["config"]["integrations"]["k3s"];
    assert_eq!(k3s["api"], "http://127.0.0.1:8001");
    assert_eq!(k3s["gpu_resource"], "nvidia.com/gpu");
}

#[test]
fn every_example_in_docs_is_valid() {
    let dir = format!("{}/docs/examples", env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") {
            check(&name);
            n += 1;
        }
    }
    assert!(n >= 1);
}

#[test]
fn the_shell_completions_and_help_offer_the_mode_words() {
    let out = Command::new(env!("CARGO_BIN_EXE_mode"))
        .args(["completions", "bash"])
        .output()
        .unwrap();
    let script = String::from_utf8_lossy(&out.stdout);
    assert!(
        script.contains("desktop studio-local compute"),
        "the words are offered"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_mode"))
        .args(["dry-run", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("[possible values: desktop, studio-local, compute]"));
}
