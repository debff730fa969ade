//! vLLM profiles against a real systemd: compute's profile gets every GPU,
//! the opt-in desktop profile only the non-display one, and a switch drains
//! the old profile before it starts the new one.

mod common;

use common::{entry, step_words, Container};

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
        "desktop",
        "a healthy desktop whose opt-in AI has not been started yet"
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

    // A training unit reads the GPUs of the mode it starts in, by PCI order.
    let train = |name: &str| {
        let r = c.sh(&format!(
            "systemd-run --unit={name} -p EnvironmentFile=/run/mode-controller/training.env \
             sh -c 'echo \"$CUDA_DEVICE_ORDER $CUDA_VISIBLE_DEVICES\" > /run/{name}.gpus; exec sleep infinity'"
        ));
        assert_eq!(r.code, 0, "{r:?}");
        std::thread::sleep(std::time::Duration::from_millis(300));
        c.read(&format!("/run/{name}.gpus"))
    };
    assert_eq!(
        train("train-compute"),
        "PCI_BUS_ID 0,1\n",
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
    assert_eq!(
        train("train-desktop"),
        "PCI_BUS_ID 1\n",
        "not the display GPU outside compute"
    );
}

#[test]
fn desktop_to_studio_drains_and_stops_the_desktop_profile() {
    let c = Container::boot();
    c.write("/etc/mode-controller/config.json", PROFILES);
    assert_eq!(c.mode("request desktop").code, 0);
    assert_eq!(c.state("vllm@desktop.service"), "active");

    let r = c.mode("request studio-local --json");
    assert_eq!(r.code, 0, "{r:?}");
    let actions = step_words(&r.json());
    let drained = actions
        .iter()
        .position(|a| a == "drain-vllm vllm@desktop.service")
        .unwrap();
    let stopped = actions
        .iter()
        .position(|a| a == "stop vllm@desktop.service")
        .unwrap_or_else(|| panic!("never stopped: {actions:?}"));
    assert!(drained < stopped, "{actions:?}");
    assert_eq!(c.state("vllm@desktop.service"), "inactive");
    assert_eq!(c.mode("current").stdout.trim(), "studio-local");
}

#[test]
fn profile_units_are_workloads_not_user_jobs_and_their_queue_is_what_vllm_drainable_reads() {
    let c = Container::boot();
    c.write("/etc/mode-controller/config.json", PROFILES);
    // vllm@compute serves on the endpoint with two requests running.
    c.write("/run/vllm-standin/running", "2\n");
    c.write(
        "/run/systemd/system/vllm@compute.service.d/standin.conf",
        "[Service]\nExecStart=\nExecStart=/usr/bin/perl /opt/mode-test/vllm-standin.pl 8000\n",
    );
    assert_eq!(c.sh("systemctl daemon-reload").code, 0);
    assert_eq!(c.mode("request compute").code, 0);
    let up = c.sh(
        "bash -c 'for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/8000) 2>/dev/null && exit 0; sleep 0.05; done; exit 1'",
    );
    assert_eq!(up.code, 0, "{up:?}");

    let d = c.mode("dry-run desktop --json");
    let guards = d.json()["guards"].clone();
    let jobs = entry(&guards, "guards", "name", "user_jobs_safe");
    assert_eq!(
        jobs["outcome"], "pass",
        "vllm@compute is no user job: {jobs}"
    );
    let drainable = entry(&guards, "guards", "name", "vllm_drainable");
    assert_eq!(drainable["outcome"], "fail", "{drainable}");
    assert!(
        drainable["reason"].as_str().unwrap().contains("2 running"),
        "the profile unit's queue, not vllm.service's absence: {drainable}"
    );

    let finisher = c.spawn("sleep 1; echo 0 > /run/vllm-standin/running");
    let r = c.mode("request desktop --json");
    assert_eq!(r.code, 0, "{r:?}");
    let _ = finisher.wait_with_output();
    let t = r.json();
    let jobs = entry(&t, "steps", "action", "drain-jobs");
    assert!(
        jobs["jobs"].as_array().is_none_or(|j| j.is_empty()),
        "vLLM is not checkpointed as a job: {jobs}"
    );
    let drained = entry(&t, "steps", "action", "drain-vllm");
    assert_eq!(drained["unit"], "vllm@compute.service");
    assert!(
        drained["note"].as_str().unwrap().contains("drained"),
        "{drained}"
    );
}
