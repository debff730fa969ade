//! The generic `exec` step: a root-owned executable run as the last step of
//! a switch into its modes, with the transition as JSON on stdin; its exit
//! code decides the step (a failure rolls the switch back), its output goes
//! into the record, its timeout is enforced, and a hook that others could
//! rewrite is refused.

mod common;

use common::{entry, Container};

fn hook(c: &Container, name: &str, script: &str, timeout_secs: u64) {
    let path = format!("/usr/local/libexec/{name}");
    c.write(&path, &format!("#!/bin/sh\n{script}\n"));
    assert_eq!(c.sh(&format!("chmod 0755 {path}")).code, 0);
    c.write(
        "/etc/mode-controller/config.json",
        &format!(
            r#"{{"version": 1, "integrations": {{"exec": [
  {{"name": "{name}", "path": "{path}", "timeout_secs": {timeout_secs}, "modes": ["compute"]}}]}}}}"#
        ),
    );
}

#[test]
fn a_hook_gets_the_transition_on_stdin_and_its_words_land_in_the_record() {
    let c = Container::boot();
    hook(&c, "tell-lab", "cat > /run/told.json; echo told the lab", 5);
    let dry = c.mode("explain compute").stdout;
    assert!(dry.contains("run the exec step tell-lab"), "{dry}");
    let r = c.mode("--json request compute");
    assert_eq!(r.code, 0, "{r:?}");
    let record = r.json();
    let step = entry(&record, "steps", "action", "exec");
    assert_eq!(step["unit"], "tell-lab");
    assert_eq!(step["note"], "tell-lab exited 0: told the lab", "{step}");
    let told: serde_json::Value = serde_json::from_str(&c.read("/run/told.json")).unwrap();
    assert_eq!(told["to"], "compute");
    assert_eq!(told["from"], "desktop");
    assert_eq!(told["transition"], record["id"]);
    assert_eq!(told["requested_by"], "cli uid=0");
    // Only for its modes: the way back runs no hook.
    let r = c.mode("--json request desktop");
    assert!(!common::step_words(&r.json())
        .iter()
        .any(|s| s.starts_with("exec")));
}

#[test]
fn a_failing_or_hanging_hook_rolls_the_switch_back_naming_it() {
    let c = Container::boot();
    hook(&c, "picky", "echo lab says no >&2; exit 2", 5);
    let r = c.mode("request compute");
    assert_eq!(r.code, 4, "{r:?}");
    assert!(
        r.stderr.contains("exec picky: picky exited 2: lab says no"),
        "{}",
        r.stderr
    );
    assert_eq!(c.mode("current").stdout.trim(), "desktop");

    hook(&c, "slow", "sleep 30", 1);
    let r = c.mode("request compute");
    assert_eq!(r.code, 4, "{r:?}");
    assert!(
        r.stderr.contains("did not finish within 1 s"),
        "{}",
        r.stderr
    );
    assert_eq!(c.mode("current").stdout.trim(), "desktop");
}

#[test]
fn a_hook_others_could_rewrite_is_not_run() {
    let c = Container::boot();
    hook(&c, "open", "touch /run/ran", 5);
    c.sh("chmod 0777 /usr/local/libexec/open");
    let r = c.mode("request compute");
    assert_eq!(
        r.code, 7,
        "refused with the configuration, before anything: {r:?}"
    );
    assert!(
        r.stderr.contains("integrations.exec[0].path")
            && r.stderr.contains("writable by users other than root"),
        "{}",
        r.stderr
    );
    assert_eq!(c.state("desktop.target"), "active", "nothing was switched");
    assert_eq!(c.sh("test -e /run/ran").code, 1, "it never ran");
}
