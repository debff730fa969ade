//! Drift: what contradicts the observed mode's promise while its units say
//! it holds. A compute workload started by hand in desktop, a graphical
//! session and a display-GPU holder in compute: each shown by status and
//! explain with how it clears, the word `mode current` prints unchanged, and
//! reconcile clearing what it can (never a session or a process).

mod common;

use common::Container;

/// /dev/full (1:7) stands in for the display GPU, as in guards_in_container.rs.
const STAND_IN_GPU: &str = r#"{
  "version": 1,
  "guard_settings": {"gpu": {"display_gpu": "0000:01:00.0",
    "extra_devices": [{"device": "1:7", "gpu": "0000:01:00.0"}], "release_timeout_secs": 1}}
}"#;

#[test]
fn a_vllm_started_by_hand_in_desktop_is_drift_that_reconcile_drains_and_stops() {
    let c = Container::boot();
    assert_eq!(c.sh("systemctl start vllm.service").code, 0);
    assert_eq!(c.mode("current").stdout.trim(), "desktop", "the word stays");
    let status = c.mode("status").stdout;
    assert!(
        status.contains("drift:      vllm.service is active in desktop: it is a compute workload"),
        "{status}"
    );
    let json = c.mode("--json status").json();
    assert_eq!(
        json["observed"]["drift"][0]["unit"], "vllm.service",
        "{json}"
    );
    let explain = c.mode("explain").stdout;
    assert!(
        explain.contains("But it drifted") && explain.contains("mode reconcile"),
        "{explain}"
    );

    let r = c.mode("--json reconcile");
    assert_eq!(r.code, 0, "{r:?}");
    let steps = common::step_words(&r.json());
    assert_eq!(
        steps,
        [
            "drain-vllm vllm.service",
            "resume-vllm vllm.service",
            "stop vllm.service"
        ]
    );
    assert_eq!(c.state("vllm.service"), "inactive");
    assert!(!c.mode("status").stdout.contains("drift:"));
    assert_eq!(
        c.mode("reconcile").stdout.trim(),
        "already converged: nothing to do"
    );
}

#[test]
fn a_graphical_session_and_a_display_gpu_holder_in_compute_are_drift_and_nothing_is_killed() {
    let c = Container::boot();
    c.write("/etc/mode-controller/config.json", STAND_IN_GPU);
    assert_eq!(c.mode("request compute").code, 0);
    let session = c.open_wayland_session();
    let holder =
        c.sh("systemd-run --unit=obs -p Type=exec sh -c 'exec sleep infinity < /dev/full'");
    assert_eq!(holder.code, 0, "{holder:?}");
    let pid = c.prop("obs.service", "MainPID");

    assert_eq!(c.mode("current").stdout.trim(), "compute");
    let status = c.mode("status").stdout;
    assert!(
        status.contains(&format!(
            "drift:      session {session} of nobody is a graphical session in compute"
        )),
        "{status}"
    );
    assert!(
        status.contains("the display GPU is held in compute")
            && status.contains(&format!("pid {pid}")),
        "{status}"
    );
    let r = c.mode("reconcile");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        c.state("obs.service"),
        "active",
        "the holder is never killed"
    );
    assert_eq!(c.state("fake-wayland.service"), "active", "nor the session");
}
