//! A switch is reached only when what it started stays up and gets ready:
//! the settle window catches a workload that dies right after its start job
//! finished, and a readiness URL decides when compute serves. Against a real
//! systemd in a container; the readiness endpoint is a small perl server.

mod common;

use common::{entry, Container};

/// A compute workload (wanted by compute.target, stopped with it) running `exec`.
fn workload(c: &Container, name: &str, exec: &str) {
    c.write(
        &format!("/etc/systemd/system/{name}"),
        &format!(
            "[Unit]\nPartOf=compute.target\nStartLimitIntervalSec=0\n\
             [Service]\nExecStart={exec}\n[Install]\nWantedBy=compute.target\n"
        ),
    );
    let r = c.sh(&format!(
        "systemctl daemon-reload && systemctl enable {name}"
    ));
    assert_eq!(r.code, 0, "{r:?}");
}

fn config(c: &Container, json: &str) {
    c.write("/etc/mode-controller/config.json", json);
}

#[test]
fn a_workload_that_dies_a_moment_after_starting_fails_the_switch_and_rolls_back() {
    let c = Container::boot();
    workload(&c, "flaky.service", "/bin/sh -c 'sleep 0.5; exit 1'");
    let r = c.mode("request compute");
    assert_eq!(r.code, 4, "{r:?}");
    assert!(
        r.stderr.contains("flaky.service went failed")
            && r.stderr.contains("result exit-code")
            && r.stderr.contains("journalctl -u flaky.service"),
        "{}",
        r.stderr
    );
    let record = c.last_transition();
    assert_eq!(record["rollback"]["outcome"], "converged", "{record}");
    assert_eq!(c.mode("current").stdout.trim(), "desktop");
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(
        c.mode("current").stdout.trim(),
        "desktop",
        "and it stays there"
    );
}

#[test]
fn compute_waits_for_a_readiness_url_that_answers_after_two_seconds() {
    let c = Container::boot();
    workload(
        &c,
        "model.service",
        "/usr/bin/perl /opt/mode-test/http-after.pl 8701 2",
    );
    config(
        &c,
        r#"{"version": 1, "readiness": {"model.service": {"http": "http://127.0.0.1:8701/health", "timeout_secs": 20}}}"#,
    );
    let dry = c.mode("explain compute").stdout;
    assert!(
        dry.contains("model.service must also answer its readiness check"),
        "{dry}"
    );
    let r = c.mode("--json request compute");
    assert_eq!(r.code, 0, "{r:?}");
    let record = r.json();
    let settle = entry(&record, "steps", "action", "settle");
    let ready = &settle["ready"][0];
    assert_eq!(ready["unit"], "model.service", "{settle}");
    assert_eq!(ready["check"], "http://127.0.0.1:8701/health");
    let ms = ready["ready_ms"].as_u64().unwrap_or(0);
    assert!((1800..10_000).contains(&ms), "ready after {ms} ms");
    // The request returned only once it answered.
    let served =
        c.sh("perl -MIO::Socket::INET -e 'exit !IO::Socket::INET->new(\"127.0.0.1:8701\")'");
    assert_eq!(served.code, 0, "the endpoint serves when request returns");
}

#[test]
fn a_readiness_url_that_never_answers_times_out_and_rolls_back() {
    let c = Container::boot();
    workload(&c, "model.service", "/bin/sleep infinity");
    config(
        &c,
        r#"{"version": 1, "readiness": {"model.service": {"http": "http://127.0.0.1:8702/health", "timeout_secs": 2}}}"#,
    );
    let r = c.mode("request compute");
    assert_eq!(r.code, 4, "{r:?}");
    assert!(
        r.stderr
            .contains("model.service was not ready within 2 s: http://127.0.0.1:8702/health"),
        "{}",
        r.stderr
    );
    assert_eq!(c.state("model.service"), "inactive");
    assert_eq!(c.mode("current").stdout.trim(), "desktop");
}

#[test]
fn a_bad_readiness_entry_is_refused_by_config_check_naming_the_field() {
    let c = Container::boot();
    config(
        &c,
        r#"{"version": 1, "readiness": {"model.service": {"http": "https://x/health"}}}"#,
    );
    let r = c.mode("config check /etc/mode-controller/config.json");
    assert_eq!(r.code, 7, "{r:?}");
    assert!(
        r.stderr.contains("readiness.model.service.http"),
        "{}",
        r.stderr
    );
}
