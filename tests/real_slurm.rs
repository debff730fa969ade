//! The Slurm integration against a real slurmctld + slurmd + munge (Slurm
//! 22.05 from Debian 12), one node `slurmbox` on loopback in the container
//! (root: tests/real-stack/slurm.sh). Leaving compute drains the node and
//! requeues, waits for, or refuses on its jobs as the drain policy says;
//! entering compute resumes it; a stopped slurmctld is a recorded warning.
//! One test, one container: Slurm needs the host's network namespace, so
//! two of these at once would share its ports.

mod common;

use common::{entry, Container, HOST_NETWORK};

fn slurm(c: &Container, cmd: &str) -> String {
    c.sh(&format!("timeout 10 {cmd}")).stdout
}

/// `idle`, `drained`, `draining`, `mixed`, ... as sinfo's %T prints it.
fn node_state(c: &Container) -> String {
    slurm(c, "sinfo -h -o %T").trim().to_string()
}

/// Submit a batch job as alice; its id.
fn submit(c: &Container, name: &str, script: &str) -> String {
    let r = c.sh(&format!(
        "setpriv --reuid=1000 --regid=1000 --clear-groups sh -c 'cd /tmp && timeout 10 sbatch --requeue -J {name} --wrap \"{script}\"'"
    ));
    assert_eq!(r.code, 0, "{r:?}");
    let id = r.stdout.split_whitespace().last().unwrap_or("").to_string();
    c.wait_for(
        &format!("timeout 10 squeue -h -j {id} -o %T"),
        "RUNNING",
        20,
    );
    id
}

fn job_state(c: &Container, id: &str) -> String {
    slurm(c, &format!("squeue -h -j {id} -o %T"))
        .trim()
        .to_string()
}

fn config(c: &Container, drain: &str) {
    c.write(
        "/etc/mode-controller/config.json",
        &format!(
            r#"{{"version": 1,
  "integrations": {{"slurm": {{"command_timeout_secs": 8}}}},
  "modes": {{"desktop": {{"drain": {drain}}}}}}}"#
        ),
    );
}

#[test]
fn leaving_compute_requeues_waits_for_or_refuses_on_slurm_jobs_and_entering_resumes_the_node() {
    let c = Container::boot_real(
        "slurm",
        &[],
        &["--hostname=slurmbox".to_string(), HOST_NETWORK.to_string()],
        &[],
    );
    c.wait_for("timeout 10 sinfo -h -o %T", "idle", 30);
    config(
        &c,
        r#"{"jobs": "checkpoint", "checkpoint_signal": "SIGUSR1", "grace_secs": 2, "wait_secs": 30, "vllm_timeout_secs": 1}"#,
    );
    let d = c.mode("explain compute").stdout;
    assert!(d.contains("resume the Slurm node slurmbox"), "{d}");

    // Entering compute: the node takes jobs (it already did: a no-op, named).
    let r = c.mode("--json request compute");
    assert_eq!(r.code, 0, "{r:?}");
    let step = entry(&r.json(), "steps", "action", "slurm-resume");
    assert!(
        step["note"]
            .as_str()
            .unwrap_or("")
            .contains("already takes jobs"),
        "{step}"
    );

    // A job that ignores the checkpoint signal is requeued after the grace.
    let id = submit(&c, "train-a", "trap \\\"\\\" USR1; exec sleep 300");
    let d = c.mode("--json dry-run desktop").json();
    let guard = entry(&d["guards"], "guards", "name", "slurm_jobs_safe");
    assert_eq!(guard["severity"], "soft", "{guard}");
    assert!(guard["reason"]
        .as_str()
        .unwrap_or("")
        .contains(&format!("job {id} (train-a) of alice")));
    let r = c.mode("--json request desktop");
    assert_eq!(r.code, 0, "{r:?}");
    let record = r.json();
    assert_eq!(
        common::step_words(&record)[0],
        "slurm-drain slurmbox",
        "drained first"
    );
    let drain = entry(&record, "steps", "action", "slurm-drain");
    assert_eq!(
        drain["jobs"][0]["unit"],
        format!("slurm job {id}"),
        "{drain}"
    );
    assert_eq!(drain["jobs"][0]["outcome"], "requeued", "{drain}");
    assert_eq!(job_state(&c, &id), "PENDING");
    assert_eq!(node_state(&c), "drained");
    let reason = slurm(&c, "sinfo -h -o %E");
    assert!(
        reason.contains("mode-controller: compute -> desktop (transition")
            && reason.contains("by cli uid=0"),
        "{reason}"
    );
    assert!(c
        .mode("status")
        .stdout
        .contains("slurm:      node slurmbox: idle+DRAIN"));

    // Back to compute: the node is resumed (NOT_RESPONDING for a moment is fine).
    let r = c.mode("--json request compute");
    assert_eq!(r.code, 0, "{r:?}");
    let step = entry(&r.json(), "steps", "action", "slurm-resume");
    assert!(
        step["note"].as_str().unwrap_or("").contains("resumed"),
        "{step}"
    );
    assert!(!node_state(&c).contains("drain"), "{}", node_state(&c));
    slurm(&c, &format!("scancel {id}"));

    // wait: the switch waits until the node is drained.
    config(
        &c,
        r#"{"jobs": "wait", "wait_secs": 30, "vllm_timeout_secs": 1}"#,
    );
    let id = submit(&c, "short", "sleep 3");
    let r = c.mode("--json request desktop");
    assert_eq!(r.code, 0, "{r:?}");
    let drain = entry(&r.json(), "steps", "action", "slurm-drain");
    assert_eq!(drain["jobs"][0]["outcome"], "ended", "{drain}");
    assert!(
        drain["duration_ms"].as_u64().unwrap_or(0) >= 1000,
        "{drain}"
    );
    assert_eq!(job_state(&c, &id), "", "the job finished");
    assert_eq!(c.mode("request compute").code, 0);

    // refuse: a running job blocks the switch, named; nothing is drained.
    config(&c, r#"{"jobs": "refuse", "vllm_timeout_secs": 1}"#);
    let id = submit(&c, "long", "sleep 300");
    let r = c.mode("request desktop");
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stderr
            .contains(&format!("job {id} (long) of alice, RUNNING")),
        "{}",
        r.stderr
    );
    assert!(
        !node_state(&c).contains("drain"),
        "a refusal drains nothing"
    );
    slurm(&c, &format!("scancel {id}"));

    // slurmctld stopped: a warning on the step, and the switch goes on.
    config(
        &c,
        r#"{"jobs": "checkpoint", "grace_secs": 2, "vllm_timeout_secs": 1}"#,
    );
    c.sh("systemctl stop slurmctld");
    let r = c.mode("--json request desktop");
    assert_eq!(r.code, 0, "{r:?}");
    let drain = entry(&r.json(), "steps", "action", "slurm-drain");
    assert!(
        drain["warnings"][0]
            .as_str()
            .unwrap_or("")
            .contains("Slurm is unreachable"),
        "{drain}"
    );
}
