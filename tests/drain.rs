//! Leaving compute without throwing work away, against a real systemd: user
//! jobs in ai.slice checkpointed, refused, waited for or killed as the
//! policy says, and a vLLM stand-in drained before it stops.

mod common;

use common::{entry, Container};

/// A training stand-in that writes a checkpoint and exits on SIGTERM.
const TRAINER: &str = "systemd-run --unit=train-llama --slice=ai.slice sh -c \
    'trap \"echo step-1234 > /var/tmp/ckpt; exit 0\" TERM; while :; do sleep 0.1; done'";

fn config(c: &Container, desktop_drain: &str) {
    c.write(
        "/etc/mode-controller/config.json",
        &format!(r#"{{"version": 1, "modes": {{"desktop": {{"drain": {desktop_drain}}}}}}}"#),
    );
}

#[test]
fn leaving_compute_checkpoints_a_training_job_and_stops_it() {
    let c = Container::boot();
    assert_eq!(c.mode("request compute").code, 0);
    assert_eq!(c.sh(TRAINER).code, 0);
    let pid = c.prop("train-llama.service", "MainPID");

    let r = c.mode("request desktop");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        c.read("/var/tmp/ckpt"),
        "step-1234\n",
        "the checkpoint was written"
    );
    assert_ne!(c.state("train-llama.service"), "active");
    let job = entry(&c.last_transition(), "steps", "action", "drain-jobs")["jobs"][0].clone();
    assert_eq!(job["unit"], "train-llama.service");
    assert_eq!(job["outcome"], "checkpointed");
    assert_eq!(job["pids"][0].to_string(), pid);
    assert!(job["command"].as_str().unwrap().contains("sh -c"), "{job}");
    assert!(r.stdout.contains("job train-llama.service"), "{}", r.stdout);
    assert_eq!(c.mode("current").stdout.trim(), "desktop");
}

#[test]
fn with_the_refuse_policy_leaving_compute_is_refused_naming_the_job() {
    let c = Container::boot();
    config(&c, r#"{"jobs": "refuse"}"#);
    assert_eq!(c.mode("request compute").code, 0);
    assert_eq!(c.sh(TRAINER).code, 0);

    let r = c.mode("request desktop");
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stderr.contains("user_jobs_safe"), "{}", r.stderr);
    assert!(r.stderr.contains("train-llama.service"), "{}", r.stderr);
    assert_eq!(
        c.state("train-llama.service"),
        "active",
        "the job keeps running"
    );
    assert_eq!(c.state("compute.target"), "active");
}

#[test]
fn a_job_that_ignores_every_signal_is_killed_after_its_stop_timeout_and_recorded() {
    let c = Container::boot();
    config(&c, r#"{"grace_secs": 1}"#);
    assert_eq!(c.mode("request compute").code, 0);
    let stubborn = c.sh(
        "systemd-run --unit=stubborn --slice=ai.slice -p TimeoutStopSec=1 \
         sh -c 'trap \"\" TERM INT; while :; do sleep 0.1; done'",
    );
    assert_eq!(stubborn.code, 0, "{stubborn:?}");

    let r = c.mode("request desktop");
    assert_eq!(r.code, 0, "{r:?}");
    assert_ne!(c.state("stubborn.service"), "active");
    let job = entry(&c.last_transition(), "steps", "action", "drain-jobs")["jobs"][0].clone();
    assert_eq!(job["unit"], "stubborn.service");
    assert_eq!(job["outcome"], "killed", "{job}");
}

#[test]
fn the_wait_policy_gives_up_after_its_timeout_and_rolls_back_to_compute() {
    let c = Container::boot();
    config(&c, r#"{"jobs": "wait", "wait_secs": 1}"#);
    assert_eq!(c.mode("request compute").code, 0);
    assert_eq!(c.sh(TRAINER).code, 0);

    let r = c.mode("request desktop");
    assert_eq!(r.code, 4, "{r:?}");
    assert!(
        r.stderr.contains("user jobs still run after waiting 1 s"),
        "{}",
        r.stderr
    );
    assert_eq!(c.state("train-llama.service"), "active", "left running");
    assert_eq!(c.mode("current").stdout.trim(), "compute");
    let job = entry(&c.last_transition(), "steps", "action", "drain-jobs")["jobs"][0].clone();
    assert_eq!(job["outcome"], "left-running");
}

fn start_vllm_standin(c: &Container, running: u32) {
    c.write("/run/vllm-standin/running", &format!("{running}\n"));
    c.write(
        "/run/systemd/system/vllm.service.d/standin.conf",
        "[Service]\nExecStart=\nExecStart=/usr/bin/perl /opt/mode-test/vllm-standin.pl 8000\n",
    );
    assert_eq!(c.sh("systemctl daemon-reload").code, 0);
    assert_eq!(c.mode("request compute").code, 0);
    let up = c.sh(
        "bash -c 'for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/8000) 2>/dev/null && exit 0; sleep 0.05; done; exit 1'",
    );
    assert_eq!(up.code, 0, "the vLLM stand-in listens: {up:?}");
}

#[test]
fn vllm_is_drained_before_it_stops_once_its_requests_finish() {
    let c = Container::boot();
    start_vllm_standin(&c, 3);
    // The requests finish two seconds into the drain.
    let finisher = c.spawn("sleep 2; echo 0 > /run/vllm-standin/running");
    let r = c.mode("request desktop --json");
    assert_eq!(r.code, 0, "{r:?}");
    let _ = finisher.wait_with_output();
    let step = entry(&r.json(), "steps", "action", "drain-vllm");
    let note = step["note"].as_str().unwrap();
    assert!(note.starts_with("drained in"), "{note}");
    assert!(
        step["duration_ms"].as_u64().unwrap() >= 1500,
        "it waited for the requests: {step}"
    );
    assert_eq!(c.state("vllm.service"), "inactive");
}

#[test]
fn the_vllm_drain_timeout_is_honoured_and_recorded() {
    let c = Container::boot();
    config(&c, r#"{"vllm_timeout_secs": 1}"#);
    start_vllm_standin(&c, 5);
    let r = c.mode("request desktop --json");
    assert_eq!(r.code, 0, "{r:?}");
    let step = entry(&r.json(), "steps", "action", "drain-vllm");
    let note = step["note"].as_str().unwrap();
    assert!(note.contains("drain timeout after 1 s"), "{note}");
    assert!(note.contains("5 running"), "{note}");
    assert_eq!(c.state("vllm.service"), "inactive", "stopped anyway");
}
