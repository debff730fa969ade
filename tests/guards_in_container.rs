//! The guards wired into real transitions: a display process that keeps the
//! (stand-in) GPU after teardown, a training job in ai.slice, and external
//! guards from the configuration, each named with its evidence.

mod common;

use common::{entry, Container};

/// A configuration where /dev/full (1:7) stands in for the display GPU.
const STAND_IN_GPU: &str = r#"{
  "version": 1,
  "guard_settings": {
    "gpu": {
      "display_gpu": "0000:01:00.0",
      "extra_devices": [{"device": "1:7", "gpu": "0000:01:00.0"}],
      "release_timeout_secs": 1
    }
  }
}"#;

#[test]
fn rolls_back_to_desktop_when_a_display_process_keeps_the_gpu_after_teardown() {
    let c = Container::boot();
    c.write("/etc/mode-controller/config.json", STAND_IN_GPU);
    let holder =
        c.sh("systemd-run --unit=obs --property=Type=exec sh -c 'exec sleep infinity < /dev/full'");
    assert_eq!(holder.code, 0, "{holder:?}");
    let pid = c.prop("obs.service", "MainPID");

    let r = c.mode("request compute");
    assert_eq!(r.code, 4, "{r:?}");
    assert!(
        r.stderr.contains("check gpu_display_released"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!("pid {pid}")),
        "names the holder: {}",
        r.stderr
    );
    assert!(r.stderr.contains("rolled back to desktop"), "{}", r.stderr);
    assert_eq!(c.mode("current").stdout.trim(), "desktop");
    assert_eq!(c.state("display-manager.service"), "active");
    assert_eq!(
        c.state("obs.service"),
        "active",
        "the holder was not killed"
    );

    let t = c.last_transition();
    let pre = entry(&t, "guards", "name", "gpu_display_released");
    assert_eq!(pre["severity"], "soft", "the pre-check only warned");
    assert_eq!(pre["outcome"], "fail");
    let check = entry(&t, "steps", "action", "check");
    assert_eq!(check["outcome"], "failed");
    assert!(
        check["error"].as_str().unwrap().contains("sleep"),
        "{check}"
    );

    assert_eq!(c.sh("systemctl stop obs.service").code, 0);
    let again = c.mode("request compute");
    assert_eq!(again.code, 0, "released: {again:?}");
}

#[test]
fn user_jobs_safe_names_a_training_job_in_ai_slice() {
    let c = Container::boot();
    assert_eq!(c.mode("request compute").code, 0);
    let job = c.sh("systemd-run --unit=train-llama --slice=ai.slice sleep 3600");
    assert_eq!(job.code, 0, "{job:?}");
    let pid = c.prop("train-llama.service", "MainPID");

    let d = c.mode("dry-run desktop --json");
    assert_eq!(d.code, 0, "{d:?}");
    let guards = d.json()["guards"]["guards"].clone();
    let jobs = guards
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "user_jobs_safe")
        .unwrap()
        .clone();
    assert_eq!(jobs["outcome"], "fail", "{jobs}");
    let reason = jobs["reason"].as_str().unwrap();
    assert!(reason.contains("train-llama.service"), "{reason}");
    assert!(reason.contains(&pid), "{reason}");
    assert!(reason.contains("sleep 3600"), "{reason}");
    assert!(
        !reason.contains("vllm.service"),
        "managed services are not user jobs: {reason}"
    );
}

#[test]
fn an_external_guard_from_the_configuration_can_refuse() {
    let c = Container::boot();
    c.write(
        "/usr/local/lib/mode-guards/no-backup",
        "#!/bin/sh\necho '{\"reason\": \"restic backup is running (pid 4242)\", \"evidence\": {\"pid\": 4242}}'\nexit 1\n",
    );
    assert_eq!(
        c.sh("chmod +x /usr/local/lib/mode-guards/no-backup").code,
        0
    );
    c.write(
        "/etc/mode-controller/config.json",
        r#"{"version": 1,
            "modes": {"compute": {"guards": {"no_backup_running": "hard"}}},
            "guard_settings": {"external": [{"name": "no_backup_running", "path": "/usr/local/lib/mode-guards/no-backup"}]}}"#,
    );
    let r = c.mode("request compute");
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stderr
            .contains("no_backup_running: restic backup is running (pid 4242)"),
        "{}",
        r.stderr
    );
    assert_eq!(c.state("desktop.target"), "active");
}

#[test]
fn a_holder_running_as_a_dynamic_user_is_named_through_the_name_service() {
    let c = Container::boot();
    c.write("/etc/mode-controller/config.json", STAND_IN_GPU);
    let holder = c.sh(
        "systemd-run --unit=obs --property=DynamicUser=yes --property=Type=exec sh -c 'exec sleep infinity < /dev/full'",
    );
    assert_eq!(holder.code, 0, "{holder:?}");
    // DynamicUser= users are in no passwd file: only systemd's NSS module knows them.
    assert_eq!(c.sh("grep -c '^obs:' /etc/passwd").stdout.trim(), "0");
    let d = c.mode("dry-run compute --json");
    let gpu = entry(
        &d.json()["guards"],
        "guards",
        "name",
        "gpu_display_released",
    );
    let holders = gpu["evidence"]["holders"].to_string();
    assert!(
        holders.contains(r#""user":"obs""#),
        "the holder is named as its user, not by number: {holders}"
    );
    assert_eq!(c.sh("systemctl stop obs.service").code, 0);
}
