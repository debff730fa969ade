//! Transitions against a real systemd in a container: the happy paths, the
//! state files and JSON of the contract, k3s untouched, and the studio.

mod common;

use common::{step_words, Container};

fn k3s_pid(c: &Container) -> String {
    let pid = c.prop("k3s.service", "MainPID");
    assert_ne!(pid, "0", "k3s stand-in is running");
    pid
}

fn assert_desktop_units(c: &Container) {
    assert_eq!(c.state("desktop.target"), "active");
    assert_eq!(c.state("graphical.target"), "active");
    assert_eq!(c.state("display-manager.service"), "active");
    assert_eq!(c.state("compute.target"), "inactive");
    assert_eq!(c.state("vllm.service"), "inactive");
}

#[test]
fn desktop_to_compute_and_back_converges_and_records_per_contract() {
    let c = Container::boot();
    assert_desktop_units(&c);
    assert_eq!(c.mode("current").stdout.trim(), "desktop");
    let k3s = k3s_pid(&c);

    let r = c.mode("request compute");
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("converged desktop -> compute"),
        "{}",
        r.stdout
    );
    assert_eq!(c.state("compute.target"), "active");
    assert_eq!(c.state("vllm.service"), "active");
    for gone in [
        "desktop.target",
        "graphical.target",
        "display-manager.service",
    ] {
        assert_eq!(c.state(gone), "inactive", "{gone}");
    }
    assert_eq!(c.mode("current").stdout.trim(), "compute");
    assert_eq!(c.read("/run/mode-controller/desired"), "compute\n");
    assert_eq!(c.read("/run/mode-controller/current"), "compute\n");
    assert_eq!(k3s_pid(&c), k3s, "k3s kept running");

    let t = c.last_transition();
    assert_eq!(t["from"], "desktop");
    assert_eq!(t["to"], "compute");
    assert_eq!(t["outcome"], "converged");
    assert_eq!(t["requested_by"], "cli uid=0");
    assert!(t["error"].is_null() && t["rollback"].is_null());
    let id = t["id"].as_str().unwrap();
    assert_eq!(id.len(), "20261123T040506Z-4f2a".len(), "{id}");
    let steps: Vec<String> = t["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{} {} {}",
                s["action"].as_str().unwrap(),
                s["unit"].as_str().unwrap(),
                s["outcome"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        steps.contains(&"stop graphical.target done".to_string()),
        "{steps:?}"
    );
    assert!(
        steps.contains(&"start compute.target done".to_string()),
        "{steps:?}"
    );
    for field in ["started_at", "finished_at", "duration_ms", "guards"] {
        assert!(!t[field].is_null(), "{field}");
    }
    let g: serde_json::Value =
        serde_json::from_str(&c.read("/run/mode-controller/last-guards.json")).unwrap();
    assert_eq!(g["for"], "compute");
    let names: Vec<&str> = g["guards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"graphical_session_absent") && names.contains(&"target_reachable"),
        "{names:?}"
    );
    assert_eq!(
        c.sh("stat -c %a /run/mode-controller /run/mode-controller/current")
            .stdout,
        "755\n644\n"
    );

    let s = c.mode("status --json");
    assert_eq!(s.code, 0, "{s:?}");
    let s = s.json();
    assert_eq!(s["observed"]["mode"], "compute");
    assert_eq!(s["desired"], "compute");
    assert_eq!(s["current"], "compute");
    assert_eq!(s["last_transition"]["id"], id);
    assert_eq!(s["capability_placement"]["studio"], "local");
    assert_eq!(
        s["budgets"]["ai.slice"]["CPUWeight"], 1000,
        "read back live: {}",
        s["budgets"]
    );
    assert_eq!(s["budgets"]["interactive.slice"]["CPUWeight"], 100);

    let r = c.mode("request desktop");
    assert_eq!(r.code, 0, "{r:?}");
    assert_desktop_units(&c);
    assert_eq!(c.mode("current").stdout.trim(), "desktop");
    assert_eq!(k3s_pid(&c), k3s, "k3s kept running");
    assert_eq!(c.prop("ai.slice", "CPUWeight"), "100");
    assert_eq!(c.prop("interactive.slice", "CPUWeight"), "1000");

    let audit = c.read("/var/lib/mode-controller/transitions.jsonl");
    let lines: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["to"], "compute");
    assert_eq!(lines[1]["to"], "desktop");
}

#[test]
fn requesting_the_current_mode_is_a_verified_noop() {
    let c = Container::boot();
    let r = c.mode("request desktop --json");
    assert_eq!(r.code, 0, "{r:?}");
    let t = r.json();
    assert_eq!(t["outcome"], "noop");
    assert_eq!(t["steps"].as_array().unwrap().len(), 0);
    assert_desktop_units(&c);
}

#[test]
fn desktop_to_studio_to_compute_to_desktop() {
    let c = Container::boot();
    let k3s = k3s_pid(&c);
    let r = c.mode("request studio-local");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(c.state("studio-local-policy.service"), "active");
    assert_eq!(c.state("audio-priority.service"), "active");
    assert_eq!(c.mode("current").stdout.trim(), "studio-local");
    assert_eq!(
        c.prop("ai.slice", "CPUWeight"),
        "10",
        "background throttled in the studio"
    );
    assert_eq!(c.prop("ai.slice", "CPUQuotaPerSecUSec"), "1s");

    let r = c.mode("request compute --json");
    assert_eq!(r.code, 0, "{r:?}");
    let t = r.json();
    let first: Vec<&str> = t["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["unit"].as_str().unwrap())
        .collect();
    let overlay_stop = first
        .iter()
        .position(|u| *u == "audio-priority.service")
        .unwrap();
    let compute_start = first.iter().position(|u| *u == "compute.target").unwrap();
    assert!(
        overlay_stop < compute_start,
        "overlay removed first: {first:?}"
    );
    assert_eq!(c.state("audio-priority.service"), "inactive");
    assert_eq!(c.state("compute.target"), "active");
    assert_eq!(c.prop("ai.slice", "CPUWeight"), "1000");
    assert_eq!(
        c.prop("ai.slice", "CPUQuotaPerSecUSec"),
        "infinity",
        "the studio quota is lifted"
    );

    let r = c.mode("request desktop");
    assert_eq!(r.code, 0, "{r:?}");
    assert_desktop_units(&c);
    assert_eq!(c.state("studio-local-policy.service"), "inactive");
    assert_eq!(k3s_pid(&c), k3s);
}

#[test]
fn compute_to_studio_goes_through_desktop() {
    let c = Container::boot();
    assert_eq!(c.mode("request compute").code, 0);
    let r = c.mode("request studio-local --json");
    assert_eq!(r.code, 0, "{r:?}");
    let steps = step_words(&r.json());
    assert_eq!(
        steps,
        [
            "drain-vllm vllm.service",
            "drain-jobs ai.slice",
            // Reopened into its own graceful stop (held requests start).
            "resume-vllm vllm.service",
            "stop compute.target",
            "start desktop.target",
            "start graphical.target",
            "start display-manager.service",
            "start studio-local-policy.service",
            "start audio-priority.service",
            "settle desktop.target"
        ]
    );
    assert_eq!(c.mode("current").stdout.trim(), "studio-local");
}

#[test]
fn every_budget_property_is_applied_and_read_back() {
    let c = Container::boot();
    c.write(
        "/etc/mode-controller/config.json",
        r#"{"version": 1, "modes": {"compute": {"slices": {"ai.slice": {
            "CPUWeight": 900, "IOWeight": 800, "CPUQuota": "150%",
            "MemoryHigh": "6G", "MemoryMax": "8G", "AllowedCPUs": "0-1"}}}}}"#,
    );
    let r = c.mode("request compute");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(c.prop("ai.slice", "CPUWeight"), "900");
    assert_eq!(c.prop("ai.slice", "IOWeight"), "800");
    assert_eq!(c.prop("ai.slice", "CPUQuotaPerSecUSec"), "1.500000s");
    assert_eq!(c.prop("ai.slice", "MemoryHigh"), (6u64 << 30).to_string());
    assert_eq!(c.prop("ai.slice", "MemoryMax"), (8u64 << 30).to_string());
    assert_eq!(c.prop("ai.slice", "AllowedCPUs"), "0-1");
    let budget = c.mode("status --json").json()["budgets"]["ai.slice"].clone();
    assert_eq!(budget["MemoryMax"], 8u64 << 30, "{budget}");
    assert_eq!(budget["AllowedCPUs"], "0,1", "{budget}");

    // Back in desktop every property not in desktop's budget is reset.
    assert_eq!(c.mode("request desktop").code, 0);
    assert_eq!(c.prop("ai.slice", "MemoryMax"), "infinity");
    assert_eq!(c.prop("ai.slice", "CPUQuotaPerSecUSec"), "infinity");
    assert_eq!(c.prop("ai.slice", "AllowedCPUs"), "");
}
