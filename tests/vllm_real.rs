//! The real-vLLM tier (`scripts/test.sh --real`): vLLM 0.32, the CPU build,
//! serving a tiny local model (scripts/make-vllm-venv.sh builds both, cached
//! in /var/tmp/mode-controller-vllm) as vllm.service in the `vllm` real-stack
//! root. One boot and two vLLM starts (about 45-75 s each on 2 cores), many
//! assertions:
//!
//! - `mode request compute` returns only once `/health` answers (readiness);
//! - a request held by the drain's pause is answered after a rollback
//!   resumes vLLM;
//! - leaving compute with requests running and queued: every one gets HTTP
//!   200 with its full length, and a request sent during the drain is
//!   answered too (or refused with HTTP 500, never left hanging);
//! - side by side: the time to ready against a hand-run `systemctl start` +
//!   `/health` poll, and the drain against vLLM's own `--shutdown-timeout`
//!   stop under the same load.
//!
//! The figures are printed (`--nocapture`) for docs/performance.md.

mod common;

use std::time::{Duration, Instant};

use common::{entry, Container};

/// vllm.service as docs/configuration.md recommends for a real vLLM:
/// VLLM_SERVER_DEV_MODE=1 for /pause and /resume, its own graceful stop
/// (`--shutdown-timeout`), KillMode=mixed so that only the API server gets
/// systemd's SIGTERM (with the default control-group, the engine and its
/// workers get it too and every request in flight ends in HTTP 500), and
/// TimeoutStopSec above the shutdown timeout.
const VLLM_UNIT: &str = "[Unit]
Description=vLLM (CPU build) serving a tiny local model
PartOf=compute.target
StartLimitIntervalSec=0

[Service]
Slice=ai.slice
Environment=HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_CPU_KVCACHE_SPACE=1 VLLM_SERVER_DEV_MODE=1
Environment=VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 HOME=/root VLLM_ALLOW_LONG_MAX_MODEL_LEN=1
ExecStart=/opt/vllm/bin/python -m vllm.entrypoints.openai.api_server --model /opt/vllm/tiny-model \
  --served-model-name tiny --host 127.0.0.1 --port 8000 --max-model-len 8192 --max-num-seqs 2 \
  --enforce-eager --dtype float32 --shutdown-timeout 30
KillMode=mixed
TimeoutStopSec=45
";

const CONFIG: &str = r#"{
  "version": 1,
  "readiness": {"vllm.service": {"http": "http://127.0.0.1:8000/health", "timeout_secs": 300}},
  "modes": {"desktop": {"drain": {"vllm_timeout_secs": 120}}}
}"#;

/// A client: `/v1/completions` for TOKENS tokens; "code bytes
/// completion_tokens milliseconds" lands in /run/req-NAME.
const CLIENT: &str = r#"#!/bin/sh
name=$1 tokens=$2
out=$(curl -s -m 300 -o /run/body-$name -w '%{http_code} %{size_download} %{time_total}' \
  http://127.0.0.1:8000/v1/completions -H 'Content-Type: application/json' \
  -d "{\"model\":\"tiny\",\"prompt\":\"the quick brown fox\",\"max_tokens\":$tokens,\"ignore_eos\":true}")
got=$(grep -o '"completion_tokens":[0-9]*' /run/body-$name | cut -d: -f2)
set -- $out
echo "$1 $2 ${got:-0} $(awk "BEGIN{print int($3 * 1000)}")" > /run/req-$name
"#;

fn vllm_venv() -> String {
    std::env::var("MODE_VLLM_VENV").unwrap_or_else(|_| "/var/tmp/mode-controller-vllm".into())
}

fn boot() -> Container {
    let venv = vllm_venv();
    assert!(
        std::path::Path::new(&venv).join(".complete").exists(),
        "no vLLM at {venv}: run scripts/make-vllm-venv.sh first (as root)"
    );
    let c = Container::boot_real(
        "vllm",
        &["vllm.service"],
        &[format!("--bind-ro={venv}:/opt/vllm")],
        &[],
    );
    c.write("/etc/systemd/system/vllm.service", VLLM_UNIT);
    c.write("/etc/mode-controller/config.json", CONFIG);
    c.write("/usr/local/bin/client", CLIENT);
    assert_eq!(
        c.sh("chmod +x /usr/local/bin/client && systemctl daemon-reload")
            .code,
        0
    );
    c
}

/// Start clients NAME:TOKENS at once, in the background.
fn send(c: &Container, requests: &[(&str, u32)]) {
    for (name, tokens) in requests {
        let r = c.sh(&format!(
            "rm -f /run/req-{name}; systemd-run -q --unit=client-{name} -p Type=exec /usr/local/bin/client {name} {tokens}"
        ));
        assert_eq!(r.code, 0, "{r:?}");
    }
}

/// Wait for the client NAME to finish: (HTTP status, completion tokens).
fn answer(c: &Container, name: &str) -> (u32, u32) {
    let (code, tokens, _) = answer_timed(c, name);
    (code, tokens)
}

/// Wait for the client NAME to finish: (HTTP status, completion tokens,
/// milliseconds).
fn answer_timed(c: &Container, name: &str) -> (u32, u32, u32) {
    let started = Instant::now();
    loop {
        let text = c.read(&format!("/run/req-{name}"));
        let f: Vec<u32> = text
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        if f.len() == 4 {
            return (f[0], f[2], f[3]);
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "client {name} never finished"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// vLLM's `num_requests_running` + `num_requests_waiting`, polled until
/// `done` says so.
fn queue_until(c: &Container, done: impl Fn(f64, f64) -> bool) -> (f64, f64) {
    let started = Instant::now();
    loop {
        let m = c.sh("curl -s -m 5 http://127.0.0.1:8000/metrics").stdout;
        let sum = |name: &str| -> f64 {
            m.lines()
                .filter(|l| l.starts_with(&format!("{name}{{")))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        let q = (
            sum("vllm:num_requests_running"),
            sum("vllm:num_requests_waiting"),
        );
        if done(q.0, q.1) || started.elapsed() > Duration::from_secs(60) {
            return q;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How many tokens one request must ask for to run for about `secs` on this
/// machine: two requests of 100 tokens, one after the other, measure the
/// rate (the first pays the warm-up). Requests of a fixed length are over
/// before the metrics show them queued on a fast machine (a CI run served
/// 300 tokens in about a second), and drain for minutes on a slow one.
fn tokens_lasting(c: &Container, secs: u32) -> u32 {
    let mut ms = 0;
    for name in ["warm", "measure"] {
        send(c, &[(name, 100)]);
        let (code, tokens, took) = answer_timed(c, name);
        assert_eq!((code, tokens), (200, 100), "{name}: {}", diagnose(c));
        ms = took.max(1);
    }
    (100 * 1000 * secs / ms).clamp(300, 6000)
}

fn wait_paused(c: &Container) {
    let r = c.sh(
        "for i in $(seq 600); do curl -s -m 1 http://127.0.0.1:8000/is_paused | grep -q true && exit 0; sleep 0.05; done; exit 1",
    );
    assert_eq!(r.code, 0, "the drain paused vLLM");
}

fn diagnose(c: &Container) -> String {
    c.sh("grep . /run/req-*; echo; curl -s -m 2 http://127.0.0.1:8000/is_paused; echo; \
          curl -s -m 5 http://127.0.0.1:8000/metrics | grep -E '^vllm:num_requests_(running|waiting)'; \
          systemctl list-units --no-legend --all 'client-*' 'mode-controller*'; cat /run/leave.json; \
          journalctl -u vllm --no-pager | grep -E 'pause|resume|POST' | tail -20 | cut -c1-200")
        .stdout
}

fn health(c: &Container) -> String {
    c.sh("curl -s -m 2 -o /dev/null -w '%{http_code}' http://127.0.0.1:8000/health")
        .stdout
}

#[test]
#[ignore = "real-vLLM tier: scripts/test.sh --real (needs scripts/make-vllm-venv.sh)"]
fn a_real_vllm_is_left_without_losing_a_request_and_compute_returns_when_it_serves() {
    let c = boot();

    // Readiness: `mode request compute` returns when the model serves.
    let t0 = Instant::now();
    let r = c.mode("request compute --json");
    let request_ms = t0.elapsed().as_millis();
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(health(&c), "200", "serving when the request returned");
    let record = r.json();
    let settle = entry(&record, "steps", "action", "settle");
    let ready = settle["ready"][0]["ready_ms"].as_u64().unwrap_or_default();
    assert!(ready > 1000, "the model took its time to load: {settle}");
    eprintln!("time to ready: mode request compute {request_ms} ms (readiness {ready} ms)");

    // Leaving compute under load: two running, one queued behind them, one
    // sent during the drain.
    let long = tokens_lasting(&c, 8);
    eprintln!("a request of {long} tokens lasts about 8 s here");
    send(&c, &[("a", long), ("b", long), ("c", long)]);
    let q = queue_until(&c, |running, waiting| running >= 2.0 && waiting >= 1.0);
    assert_eq!(
        q,
        (2.0, 1.0),
        "two running, one queued (--max-num-seqs 2): {}",
        diagnose(&c)
    );
    let t0 = Instant::now();
    let leave = c.spawn("mode request desktop --json > /run/leave.json; echo $? > /run/leave.code");
    wait_paused(&c);
    send(&c, &[("late", 50)]);
    let _ = leave.wait_with_output();
    let leave_ms = t0.elapsed().as_millis();
    assert_eq!(
        c.read("/run/leave.code").trim(),
        "0",
        "{}",
        c.read("/run/leave.json")
    );
    let left: serde_json::Value = serde_json::from_str(&c.read("/run/leave.json")).unwrap();
    let drained = entry(&left, "steps", "action", "drain-vllm");
    let note = drained["note"].as_str().unwrap_or_default().to_string();
    assert!(note.starts_with("paused"), "{drained}");
    for name in ["a", "b", "c"] {
        assert_eq!(answer(&c, name), (200, long), "{name}: the whole answer");
    }
    let (late, tokens) = answer(&c, "late");
    assert!(
        (late, tokens) == (200, 50) || late == 500,
        "sent during the drain: answered, or refused with a clear answer ({late}, {tokens})"
    );
    assert_eq!(c.state("vllm.service"), "inactive");
    eprintln!(
        "drain: mode request desktop {leave_ms} ms, drain-vllm step {} ms ({note}); late request {late}",
        drained["duration_ms"]
    );

    // Side by side: a hand-run start + poll of /health ...
    let t0 = Instant::now();
    assert_eq!(c.sh("systemctl start vllm.service").code, 0);
    while health(&c) != "200" {
        assert!(t0.elapsed() < Duration::from_secs(300), "vLLM never served");
        std::thread::sleep(Duration::from_millis(100));
    }
    let hand_ms = t0.elapsed().as_millis();
    // ... and vLLM's own graceful stop (--shutdown-timeout 30) under the same load.
    send(&c, &[("d", long), ("e", long), ("f", long)]);
    queue_until(&c, |running, waiting| running >= 2.0 && waiting >= 1.0);
    let t0 = Instant::now();
    let stop = c.spawn("systemctl stop vllm.service");
    std::thread::sleep(Duration::from_millis(500));
    send(&c, &[("refused", 50)]);
    let _ = stop.wait_with_output();
    let own_stop_ms = t0.elapsed().as_millis();
    for name in ["d", "e", "f"] {
        assert_eq!(
            answer(&c, name),
            (200, long),
            "{name} under vLLM's own stop"
        );
    }
    assert_eq!(
        answer(&c, "refused").0,
        500,
        "a new request during vLLM's own stop"
    );
    eprintln!(
        "side by side: time to ready {request_ms} ms (mode request compute) vs {hand_ms} ms (systemctl start + /health poll); \
         leaving {leave_ms} ms (mode request desktop, pause + drain + stop) vs {own_stop_ms} ms (systemctl stop with --shutdown-timeout 30)"
    );

    // Back in compute (a second readiness), then a rollback resumes vLLM: a
    // request held by the pause is answered. Last: in 2 of 7 runs, requests
    // sent after such a rollback were neither counted nor answered (an open
    // question, in docs/performance.md); nothing here depends on them.
    c.sh("systemctl stop vllm.service");
    let t0 = Instant::now();
    let r = c.mode("request compute --json");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(health(&c), "200", "serving again when the request returned");
    eprintln!(
        "time to ready, warm (after the hand-run start): mode request compute {} ms",
        t0.elapsed().as_millis()
    );
    // A rollback resumes vLLM: a request held by the pause is answered.
    c.write(
        "/etc/mode-controller/config.json",
        &CONFIG.replace(
            r#""vllm_timeout_secs": 120"#,
            r#""vllm_timeout_secs": 120, "jobs": "wait", "wait_secs": 2"#,
        ),
    );
    assert_eq!(
        c.sh("systemd-run -q --unit=train-x --slice=ai.slice sleep 3600")
            .code,
        0
    );
    send(&c, &[("r1", long)]);
    queue_until(&c, |running, _| running >= 1.0);
    let leave = c.spawn("mode request desktop --json > /run/leave.json; echo $? > /run/leave.code");
    wait_paused(&c);
    send(&c, &[("held", 50)]);
    let _ = leave.wait_with_output();
    assert_eq!(
        c.read("/run/leave.code").trim(),
        "4",
        "the job outlives the wait: {}",
        c.read("/run/leave.json")
    );
    let failed: serde_json::Value = serde_json::from_str(&c.read("/run/leave.json")).unwrap();
    let drained = entry(&failed, "steps", "action", "drain-vllm");
    assert_eq!(drained["outcome"], "done", "{drained}");
    let resumed = entry(&failed["rollback"], "steps", "action", "resume-vllm");
    assert_eq!(resumed["outcome"], "done", "{resumed}");
    assert_eq!(answer(&c, "r1"), (200, long), "in flight at the pause");
    assert_eq!(
        answer(&c, "held"),
        (200, 50),
        "held, answered after the resume"
    );
    assert_eq!(c.mode("current").stdout.trim(), "compute");
    assert_eq!(c.state("vllm.service"), "active");
    assert_eq!(c.sh("systemctl stop train-x").code, 0);
    c.write("/etc/mode-controller/config.json", CONFIG);
}
