//! What the user can do about a guard that blocks: one sentence per
//! failing or erroring guard, built from its evidence, for `mode dry-run`
//! and `mode explain`. Passing and skipped guards need no advice.

use serde_json::Value;

use crate::{GuardResult, Outcome};

/// Advice for `result`, or `None` when there is nothing to do.
pub fn advice(result: &GuardResult) -> Option<String> {
    if !matches!(result.outcome, Outcome::Fail | Outcome::Error) {
        return None;
    }
    let e = &result.evidence;
    if let Some(a) = e.get("advice").and_then(Value::as_str) {
        return Some(a.to_string());
    }
    let failed = result.outcome == Outcome::Fail;
    let text = match (result.name.as_str(), failed) {
        ("gpu_display_released", true) => {
            let holders = processes(e.get("holders"), "comm");
            format!(
                "close {holders} (or stop their units), or add {} to guard_settings.gpu.allow if {} may keep the display GPU",
                if count(e.get("holders")) == 1 { "it" } else { "them" },
                if count(e.get("holders")) == 1 { "it" } else { "they" },
            )
        }
        ("gpu_display_released", false) if count(e.get("unreadable")) > 0 => {
            "run the check as root (mode apply runs as root) so every process's open files can be read".into()
        }
        ("gpu_display_released", false) => {
            "check guard_settings.gpu (display_gpu, nvml_library) against the GPUs this machine has".into()
        }
        ("audio_idle", true) => format!(
            "stop playback and recording in {} or wait until it finishes",
            processes(e.get("running"), "command")
        ),
        ("audio_idle", false) => {
            "check that every user's PipeWire answers (systemctl --user -M USER@ status pipewire), or raise guard_settings.audio.graph_timeout_ms".into()
        }
        ("memory_headroom", true) => {
            "close memory-hungry programs, or lower guard_settings.memory.min_available_mib / raise max_pressure_avg10".into()
        }
        ("cpu_load_safe", true) => {
            "wait for the CPU load to drop, or raise guard_settings.cpu.max_pressure_avg10".into()
        }
        ("user_jobs_safe", true) => {
            let units: Vec<String> = list(e.get("jobs"))
                .iter()
                .filter_map(|j| j.get("unit").and_then(Value::as_str).map(str::to_string))
                .collect();
            format!(
                "finish or stop {} yourself (systemctl stop {}), or add {} to guard_settings.ai_slice.managed",
                units.join(", "),
                units.join(" "),
                if units.len() == 1 { "it" } else { "them" }
            )
        }
        ("vllm_drainable", true) => {
            "wait for vLLM's requests to finish (or stop sending them), or raise guard_settings.vllm.drain_wait_secs".into()
        }
        ("vllm_drainable", false) => {
            "check the vLLM unit (systemctl status) and guard_settings.vllm.endpoint".into()
        }
        ("studio_capability_local", true) => format!(
            "the studio runs on {}: use that machine, or set capability_placement.studio to \"local\" in the configuration",
            e.get("studio").and_then(Value::as_str).unwrap_or("another host")
        ),
        ("studio_capability_local", false) => {
            "run `mode reconcile` to regenerate the state directory, or check its capability-placement.json".into()
        }
        ("graphical_session_absent", true) => {
            let sessions: Vec<String> = list(e.get("sessions"))
                .iter()
                .map(|s| {
                    format!(
                        "session {} ({})",
                        s.get("id").and_then(Value::as_str).unwrap_or("?"),
                        s.get("user").and_then(Value::as_str).unwrap_or("?")
                    )
                })
                .collect();
            format!("log out of {} first (loginctl terminate-session ID)", sessions.join(", "))
        }
        ("target_reachable", true) => {
            let units: Vec<String> = list(e.get("units"))
                .iter()
                .filter_map(|u| u.get("unit").and_then(Value::as_str).map(str::to_string))
                .collect();
            format!("install, unmask or fix {}", units.join(", "))
        }
        (_, true) => format!("clear what {} reports: {}", result.name, result.reason),
        (_, false) => format!(
            "{} could not decide; fix what it reports: {}",
            result.name, result.reason
        ),
    };
    Some(text)
}

fn list(v: Option<&Value>) -> Vec<Value> {
    v.and_then(Value::as_array).cloned().unwrap_or_default()
}

fn count(v: Option<&Value>) -> usize {
    v.and_then(Value::as_array).map_or(0, Vec::len)
}

/// `obs (pid 2211), Hyprland (pid 1234)` from a list of objects with a pid.
fn processes(v: Option<&Value>, name_key: &str) -> String {
    let names: Vec<String> = list(v)
        .iter()
        .map(|p| {
            let name = p.get(name_key).and_then(Value::as_str).unwrap_or("?");
            match p
                .get("pid")
                .or_else(|| p.get("owner_pid"))
                .and_then(Value::as_u64)
            {
                Some(pid) => format!("{name} (pid {pid})"),
                None => name.to_string(),
            }
        })
        .collect();
    if names.is_empty() {
        "the processes named above".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Severity;
    use serde_json::json;

    fn result(name: &str, outcome: Outcome, evidence: Value) -> GuardResult {
        GuardResult {
            name: name.into(),
            severity: Severity::Hard,
            outcome,
            reason: "r".into(),
            evidence,
            duration_ms: 1,
        }
    }

    #[test]
    fn gpu_advice_names_the_holder_and_the_allow_list() {
        let r = result(
            "gpu_display_released",
            Outcome::Fail,
            json!({"holders": [{"pid": 2211, "comm": "obs", "device": "/dev/nvidia0"}]}),
        );
        let a = advice(&r).unwrap();
        assert!(a.contains("close obs (pid 2211)"), "{a}");
        assert!(a.contains("guard_settings.gpu.allow"), "{a}");
    }

    #[test]
    fn a_pass_needs_no_advice() {
        assert_eq!(
            advice(&result("audio_idle", Outcome::Pass, Value::Null)),
            None
        );
        assert_eq!(
            advice(&result("audio_idle", Outcome::Skipped, Value::Null)),
            None
        );
    }

    #[test]
    fn an_external_guard_can_bring_its_own_advice() {
        let r = result(
            "no_ssh",
            Outcome::Fail,
            json!({"advice": "ask bob to log out"}),
        );
        assert_eq!(advice(&r).as_deref(), Some("ask bob to log out"));
    }

    #[test]
    fn user_jobs_advice_names_the_units() {
        let r = result(
            "user_jobs_safe",
            Outcome::Fail,
            json!({"jobs": [{"unit": "train.service", "processes": [{"pid": 7, "command": "python"}]}]}),
        );
        assert!(advice(&r).unwrap().contains("systemctl stop train.service"));
    }
}
