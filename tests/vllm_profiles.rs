//! vLLM profiles against a real systemd: compute's profile gets every GPU,
//! the opt-in desktop profile only the non-display one, and a switch drains
//! the old profile before it starts the new one.

mod common;

use common::{step_words, Container};

const PROFILES: &str = r#"{
  "version": 1,
  "modes": {"compute": {"guards": {"gpu_display_released": "off"}}},
  "guard_settings": {"gpu": {"display_gpu": "0000:01:00.0"}},
  "vllm_profiles": {"gpus": ["0000:01:00.0", "0000:41:00.0"], "desktop": {"enabled": true}}
}"#;

#[test]
fn each_mode_runs_its_vllm_profile_on_its_gpus() {
    let c = Container::boot();
    c.write("/etc/mode-controller/config.json", PROFILES);
    assert_eq!(
        c.mode("current").stdout.trim(),
        "failed-transition",
        "desktop AI is not running yet"
    );

    let r = c.mode("request desktop");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(c.state("vllm@desktop.service"), "active");
    assert_eq!(
        c.read("/run/vllm-desktop.gpus"),
        "1 0.5\n",
        "only the non-display GPU, half its memory"
    );

    let r = c.mode("request compute --json");
    assert_eq!(r.code, 0, "{r:?}");
    let t = r.json();
    let actions = step_words(&t);
    let drained = actions
        .iter()
        .position(|a| a == "drain-vllm vllm@desktop.service")
        .unwrap();
    let stopped = actions
        .iter()
        .position(|a| a == "stop vllm@desktop.service")
        .unwrap();
    let started = actions
        .iter()
        .position(|a| a == "start vllm@compute.service")
        .unwrap();
    assert!(drained < stopped && stopped < started, "{actions:?}");
    assert_eq!(c.state("vllm@desktop.service"), "inactive");
    assert_eq!(c.state("vllm@compute.service"), "active");
    assert_eq!(
        c.read("/run/vllm-compute.gpus"),
        "0,1 0.9\n",
        "every GPU in compute"
    );

    let placement: serde_json::Value =
        serde_json::from_str(&c.read("/run/mode-controller/capability-placement.json")).unwrap();
    assert_eq!(placement["vllm"], "local");
    assert_eq!(placement["gpus"]["vllm@compute.service"][1], "0000:41:00.0");
    assert_eq!(
        placement["gpus"]["vllm@desktop.service"],
        serde_json::json!(["0000:41:00.0"])
    );

    assert_eq!(c.mode("request desktop").code, 0);
    assert_eq!(c.state("vllm@compute.service"), "inactive");
    assert_eq!(c.state("vllm@desktop.service"), "active");
}
