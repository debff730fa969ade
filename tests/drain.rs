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

/// The vLLM stand-in as vllm.service, set up as docs/configuration.md
/// says a vLLM unit should be: VLLM_SERVER_DEV_MODE=1 (for /pause, unless
/// `pause` is false), its own graceful stop (--shutdown-timeout) and
/// KillMode=mixed so that only the server gets the SIGTERM.
fn start_vllm_standin(c: &Container, running: u32, pause: bool) {
    c.write("/run/vllm-standin/running", &format!("{running}\n"));
    c.write(
        "/run/systemd/system/vllm.service.d/standin.conf",
        &format!(
            "[Service]\nExecStart=\nExecStart=/usr/bin/perl /opt/mode-test/vllm-standin.pl 8000 --shutdown-timeout 5\n\
             KillMode=mixed\nTimeoutStopSec=10\n{}",
            if pause { "Environment=VLLM_SERVER_DEV_MODE=1\n" } else { "" }
        ),
    );
    assert_eq!(c.sh("systemctl daemon-reload").code, 0);
    assert_eq!(c.mode("request compute").code, 0);
    let up = c.sh(
        "bash -c 'for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/8000) 2>/dev/null && exit 0; sleep 0.05; done; exit 1'",
    );
    assert_eq!(up.code, 0, "the vLLM stand-in listens: {up:?}");
}

/// A client request to the stand-in, in the background: its HTTP status
/// lands in /run/client-NAME.
fn client(c: &Container, name: &str) -> std::process::Child {
    c.spawn(&format!(
        "bash -c 'exec 3<>/dev/tcp/127.0.0.1/8000; \
         printf \"POST /v1/completions HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 0\\r\\n\\r\\n\" >&3; \
         head -1 <&3 | cut -d\" \" -f2 > /run/client-{name}'"
    ))
}

#[test]
fn vllm_is_paused_then_drained_before_it_stops_once_its_requests_finish() {
    let c = Container::boot();
    start_vllm_standin(&c, 3, true);
    // The requests finish two seconds into the drain.
    let finisher = c.spawn("sleep 2; echo 0 > /run/vllm-standin/running");
    let watcher = c.spawn(
        "for i in $(seq 100); do [ \"$(cat /run/vllm-standin/paused)\" = 1 ] && { echo paused-while-running=$(cat /run/vllm-standin/running); exit; }; sleep 0.02; done",
    );
    let r = c.spawn("mode request desktop --json > /run/req.json; echo $? > /run/req.code");
    let watched = String::from_utf8_lossy(&watcher.wait_with_output().unwrap().stdout).into_owned();
    assert_eq!(
        watched.trim(),
        "paused-while-running=3",
        "the door closed before the wait"
    );
    // A request that comes once the door is closed is held, then let go
    // right before the stop, into vLLM's own graceful stop: answered.
    let late = client(&c, "late");
    let _ = r.wait_with_output();
    let _ = finisher.wait_with_output();
    let _ = late.wait_with_output();
    assert_eq!(
        c.read("/run/req.code").trim(),
        "0",
        "{}",
        c.read("/run/req.json")
    );
    assert_eq!(c.read("/run/client-late").trim(), "200", "never dropped");
    let r = common::Run {
        code: 0,
        stdout: c.read("/run/req.json"),
        stderr: String::new(),
    };
    let words = common::step_words(&r.json());
    let resumed = words.iter().position(|w| w == "resume-vllm vllm.service");
    let stopped = words.iter().position(|w| w == "stop compute.target");
    assert!(resumed.is_some() && resumed < stopped, "{words:?}");
    let step = entry(&r.json(), "steps", "action", "drain-vllm");
    let note = step["note"].as_str().unwrap();
    assert!(
        note.starts_with("paused (new requests are held) and drained in"),
        "{note}"
    );
    assert!(
        step["duration_ms"].as_u64().unwrap() >= 1500,
        "it waited for the requests: {step}"
    );
    assert_eq!(c.state("vllm.service"), "inactive");
}

#[test]
fn requests_queued_before_the_pause_are_let_in_before_vllm_stops() {
    let c = Container::boot();
    start_vllm_standin(&c, 2, true);
    c.write("/run/vllm-standin/waiting", "1\n");
    // What real vLLM did: the running two finish, the queued one stays
    // queued while paused; once resumed it runs, then finishes.
    let engine = c.spawn(
        "sleep 1; echo 0 > /run/vllm-standin/running; \
         while [ \"$(cat /run/vllm-standin/paused)\" = 1 ]; do sleep 0.02; done; \
         echo 1 > /run/vllm-standin/running; echo 0 > /run/vllm-standin/waiting; sleep 1; \
         echo 0 > /run/vllm-standin/running",
    );
    let r = c.mode("request desktop --json");
    assert_eq!(r.code, 0, "{r:?}");
    let _ = engine.wait_with_output();
    let note = entry(&r.json(), "steps", "action", "drain-vllm")["note"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(note.contains("(2 pauses)"), "{note}");
}

#[test]
fn a_failed_scrape_fails_the_drain_and_the_rollback_resumes_vllm_for_the_held_request() {
    let c = Container::boot();
    start_vllm_standin(&c, 1, true);
    let r = c.spawn("mode request desktop --json > /run/req.json; echo $? > /run/req.code");
    let paused = c.sh("for i in $(seq 100); do [ \"$(cat /run/vllm-standin/paused)\" = 1 ] && exit 0; sleep 0.02; done; exit 1");
    assert_eq!(paused.code, 0, "the drain paused vLLM");
    let held = client(&c, "held");
    assert_eq!(
        c.sh("for i in $(seq 100); do [ \"$(cat /run/vllm-standin/held)\" = 1 ] && exit 0; sleep 0.02; done; exit 1").code,
        0,
        "the request is held"
    );
    // A scrape slower than request_timeout_ms (1 s), as real vLLM under load.
    c.write("/run/vllm-standin/metrics-delay-ms", "1500\n");
    c.write("/run/vllm-standin/running", "0\n");
    let _ = r.wait_with_output();
    let _ = held.wait_with_output();
    assert_eq!(
        c.read("/run/req.code").trim(),
        "4",
        "{}",
        c.read("/run/req.json")
    );
    let t: serde_json::Value = serde_json::from_str(&c.read("/run/req.json")).unwrap();
    let step = entry(&t, "steps", "action", "drain-vllm");
    assert_eq!(step["outcome"], "failed", "never done: {step}");
    let error = step["error"].as_str().unwrap();
    assert!(
        error.contains("could not read vLLM's queue") && error.contains("no answer within 1000 ms"),
        "{error}"
    );
    let resumed = entry(&t["rollback"], "steps", "action", "resume-vllm");
    assert_eq!(resumed["outcome"], "done", "{resumed}");
    assert_eq!(
        c.read("/run/client-held").trim(),
        "200",
        "the held request is answered"
    );
    assert_eq!(c.read("/run/vllm-standin/paused").trim(), "0");
    assert_eq!(c.state("vllm.service"), "active");
    assert_eq!(c.mode("current").stdout.trim(), "compute");
}

#[test]
fn with_vllm_unreadable_stop_a_failed_scrape_stops_vllm_anyway_and_says_so() {
    let c = Container::boot();
    config(&c, r#"{"vllm_unreadable": "stop"}"#);
    start_vllm_standin(&c, 0, true);
    c.write("/run/vllm-standin/metrics-status", "500\n");
    let r = c.mode("request desktop --json");
    assert_eq!(r.code, 0, "{r:?}");
    let step = entry(&r.json(), "steps", "action", "drain-vllm");
    let warning = step["warnings"][0].as_str().unwrap_or_default();
    assert!(
        warning.contains("stopped without a drained queue")
            && warning.contains("HTTP 500")
            && warning.contains("drain.vllm_unreadable is stop"),
        "{step}"
    );
    assert_eq!(c.state("vllm.service"), "inactive");
}

#[test]
fn a_vllm_without_pause_is_drained_by_its_metrics_and_the_record_says_so() {
    let c = Container::boot();
    start_vllm_standin(&c, 2, false);
    let finisher = c.spawn("sleep 1; echo 0 > /run/vllm-standin/running");
    let r = c.mode("request desktop --json");
    assert_eq!(r.code, 0, "{r:?}");
    let _ = finisher.wait_with_output();
    let note = entry(&r.json(), "steps", "action", "drain-vllm")["note"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        note.contains("offers no /pause") && note.contains("VLLM_SERVER_DEV_MODE=1"),
        "{note}"
    );
    assert!(note.contains("drained in"), "{note}");
}

#[test]
fn the_vllm_drain_timeout_is_honoured_and_recorded() {
    let c = Container::boot();
    config(&c, r#"{"vllm_timeout_secs": 1}"#);
    start_vllm_standin(&c, 5, true);
    // vLLM's own graceful stop finishes them (the stand-in exits when they do).
    let finisher = c.spawn("sleep 3; echo 0 > /run/vllm-standin/running");
    let r = c.mode("request desktop --json");
    assert_eq!(r.code, 0, "{r:?}");
    let _ = finisher.wait_with_output();
    let step = entry(&r.json(), "steps", "action", "drain-vllm");
    let note = step["note"].as_str().unwrap();
    assert!(note.contains("drain timeout of 1 s"), "{note}");
    assert!(note.contains("stopped anyway"), "{note}");
    assert_eq!(c.state("vllm.service"), "inactive", "stopped anyway");
}
