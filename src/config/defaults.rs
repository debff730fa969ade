//! The built-in configuration: the unit topology of contract.md, the
//! guards each mode checks (with the severity their specs give) and the
//! slice budgets. A configuration file is merged over these.

use std::collections::BTreeMap;
use std::path::PathBuf;

use mode_guards::{
    GuardSettings, Severity, Spec, AUDIO_IDLE, CPU_LOAD_SAFE, GPU_DISPLAY_RELEASED,
    GRAPHICAL_SESSION_ABSENT, MEMORY_HEADROOM, STUDIO_CAPABILITY_LOCAL, TARGET_REACHABLE,
    USER_JOBS_SAFE, VLLM_DRAINABLE,
};

use super::{
    BootMode, Config, CpuQuota, DisplayManager, Drain, GuardSeverity, IdleConfig, Integrations,
    MissingWorkloads, ModeConfig, Modes, SliceBudget, Timeouts, WayBackConfig, Weight,
    SCHEMA_VERSION,
};
use crate::mode::Mode;

pub(super) fn default_settle_ms() -> u64 {
    1500
}

impl Default for Config {
    fn default() -> Self {
        defaults()
    }
}

fn units(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// The guards a mode checks by default, each with its spec's severity.
fn guards(specs: &[&dyn Spec]) -> BTreeMap<String, GuardSeverity> {
    specs
        .iter()
        .map(|s| {
            let severity = match s.severity() {
                Severity::Hard => GuardSeverity::Hard,
                Severity::Soft => GuardSeverity::Soft,
            };
            (s.name().to_string(), severity)
        })
        .collect()
}

fn budget(cpu: u64, io: u64, quota_percent: Option<u64>) -> SliceBudget {
    SliceBudget {
        cpu_weight: Some(Weight(cpu)),
        io_weight: Some(Weight(io)),
        cpu_quota: quota_percent.map(|p| CpuQuota {
            usec_per_sec: p * 10_000,
        }),
        ..SliceBudget::default()
    }
}

fn slices(
    interactive: SliceBudget,
    ai: SliceBudget,
    platform: SliceBudget,
) -> BTreeMap<String, SliceBudget> {
    BTreeMap::from([
        ("interactive.slice".to_string(), interactive),
        ("ai.slice".to_string(), ai),
        ("platform.slice".to_string(), platform),
    ])
}

/// The built-in configuration: the unit topology of contract.md.
pub fn defaults() -> Config {
    let overlay = units(&["studio-local-policy.service", "audio-priority.service"]);
    Config {
        version: SCHEMA_VERSION,
        default_mode: Mode::Desktop,
        modes: Modes {
            desktop: ModeConfig {
                target: "desktop.target".into(),
                stop: units(&["compute.target"]),
                start: units(&["graphical.target", "display-manager.service"]),
                overlay: vec![],
                guards: guards(&[&TARGET_REACHABLE, &USER_JOBS_SAFE, &VLLM_DRAINABLE]),
                slices: slices(
                    budget(1000, 1000, None),
                    budget(100, 100, None),
                    budget(100, 100, None),
                ),
                drain: Drain::default(),
            },
            studio_local: ModeConfig {
                target: "desktop.target".into(),
                stop: units(&["compute.target"]),
                start: units(&["graphical.target", "display-manager.service"]),
                overlay,
                guards: guards(&[
                    &TARGET_REACHABLE,
                    &STUDIO_CAPABILITY_LOCAL,
                    &USER_JOBS_SAFE,
                    &VLLM_DRAINABLE,
                ]),
                slices: slices(
                    budget(1000, 1000, None),
                    budget(10, 10, Some(100)),
                    budget(50, 50, None),
                ),
                drain: Drain::default(),
            },
            compute: ModeConfig {
                target: "compute.target".into(),
                stop: units(&[
                    "desktop.target",
                    "graphical.target",
                    "display-manager.service",
                ]),
                start: vec![],
                overlay: vec![],
                guards: guards(&[
                    &TARGET_REACHABLE,
                    &GRAPHICAL_SESSION_ABSENT,
                    &GPU_DISPLAY_RELEASED,
                    &AUDIO_IDLE,
                    &MEMORY_HEADROOM,
                    &CPU_LOAD_SAFE,
                ]),
                slices: slices(
                    budget(100, 100, None),
                    budget(1000, 1000, None),
                    budget(200, 200, None),
                ),
                drain: Drain::default(),
            },
        },
        keep_running: units(&["k3s.service"]),
        capability_placement: ["studio", "vllm", "k3s", "training"]
            .iter()
            .map(|c| (c.to_string(), "local".to_string()))
            .collect(),
        audit_log: PathBuf::from("/var/lib/mode-controller/transitions.jsonl"),
        timeouts: Timeouts {
            job_secs: 120,
            request_secs: 900,
            settle_ms: default_settle_ms(),
        },
        guard_settings: GuardSettings::default(),
        vllm_profiles: None,
        idle: IdleConfig::default(),
        boot_mode: BootMode::Default,
        missing_workloads: MissingWorkloads::Warn,
        display_manager: DisplayManager::Auto,
        readiness: BTreeMap::new(),
        integrations: Integrations::default(),
        way_back: WayBackConfig::default(),
    }
}
