//! The configuration's schema (version 1): the types a configuration file
//! is read into, with the names and shapes docs/configuration.md documents,
//! and what the controller derives from a configuration (the managed units,
//! the vLLM units, the placement document). Defaults live in `defaults.rs`,
//! the checks serde cannot make in `validate.rs`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use mode_guards::GuardSettings;

use super::{
    BootMode, Drain, IdleConfig, Integrations, Readiness, SliceBudget, VllmPlacement, VllmProfiles,
    WayBackConfig,
};
use crate::mode::Mode;

pub const SCHEMA_VERSION: u32 = 1;
/// The name every display manager is installed under: Debian's packages
/// make it a symlink to theirs, NixOS declares it as an alias.
pub const DISPLAY_MANAGER: &str = "display-manager.service";

/// Whether the machine has a display manager (`display-manager.service`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DisplayManager {
    /// It is part of desktop when it is installed; without it (Hyprland or
    /// sway started from a TTY login, or by uwsm) desktop is
    /// `desktop.target` + `graphical.target`.
    Auto,
    /// It must be installed: a machine without it cannot reach desktop.
    Required,
    /// There is none, even if the unit exists: no mode starts or stops it.
    None,
}

/// What a masked or missing workload of the mode's target does to a switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MissingWorkloads {
    Warn,
    Fail,
}

/// How a guard counts for one mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuardSeverity {
    Hard,
    Soft,
    Off,
}

/// What entering one mode means in units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeConfig {
    /// The target that marks this mode; started in `replace` mode.
    pub target: String,
    /// Units stopped before the target is started (they must be inactive in this mode).
    #[serde(default)]
    pub stop: Vec<String>,
    /// Units started after the target (each must end active).
    #[serde(default)]
    pub start: Vec<String>,
    /// Overlay units started last and stopped first (the studio overlay).
    #[serde(default)]
    pub overlay: Vec<String>,
    /// Guards evaluated before entering this mode, with their severity.
    #[serde(default)]
    pub guards: BTreeMap<String, GuardSeverity>,
    /// Resource budgets applied to slices when this mode is entered.
    #[serde(default)]
    pub slices: BTreeMap<String, SliceBudget>,
    /// How vLLM and the user jobs are drained when this mode is entered
    /// from compute.
    #[serde(default)]
    pub drain: Drain,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Modes {
    pub desktop: ModeConfig,
    #[serde(rename = "studio-local")]
    pub studio_local: ModeConfig,
    pub compute: ModeConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// How long one systemd job (start or stop of a unit) may take.
    pub job_secs: u64,
    /// How long `mode request` waits for the transition by default.
    pub request_secs: u64,
    /// How long every service a transition started must stay active before
    /// the mode counts as reached (0: no settle window).
    #[serde(default = "super::defaults::default_settle_ms")]
    pub settle_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub version: u32,
    /// The mode the machine normalizes to at boot and when nothing is desired.
    pub default_mode: Mode,
    pub modes: Modes,
    /// Units no transition may ever stop (k3s).
    pub keep_running: Vec<String>,
    /// Where each capability runs: "local" or the name of another host.
    pub capability_placement: BTreeMap<String, String>,
    /// The audit log of completed transitions (one JSON object a line).
    pub audit_log: PathBuf,
    pub timeouts: Timeouts,
    /// Thresholds, the display GPU, allow-lists, the vLLM endpoint and the
    /// external guards (see docs/guards.md).
    pub guard_settings: GuardSettings,
    /// vLLM profiles and GPU placement; `null` (the default) leaves vLLM a
    /// plain workload of compute (`guard_settings.vllm.unit`).
    pub vllm_profiles: Option<VllmProfiles>,
    /// Idle automation: when `mode idle-check` turns an unattended desktop into compute.
    pub idle: IdleConfig,
    /// What boot brings the machine to: "default" (default_mode) or "last" (the last desired mode).
    pub boot_mode: BootMode,
    /// What a workload the mode's target wants, found masked or missing
    /// when the target starts, does to the switch: "warn" (recorded, the
    /// switch goes on) or "fail" (the switch fails and rolls back).
    pub missing_workloads: MissingWorkloads,
    /// Whether `display-manager.service` belongs to desktop: "auto" (when
    /// installed), "required" or "none".
    pub display_manager: DisplayManager,
    /// Readiness checks by unit: a started unit with one counts as up only
    /// once its URL answers 2xx (for example vLLM's `/health`).
    pub readiness: BTreeMap<String, Readiness>,
    /// Slurm and `exec` steps (see docs/configuration.md).
    pub integrations: Integrations,
    /// The held key that brings the desktop back from compute.
    pub way_back: WayBackConfig,
}

impl Config {
    pub fn mode(&self, mode: Mode) -> &ModeConfig {
        match mode {
            Mode::Desktop => &self.modes.desktop,
            Mode::StudioLocal => &self.modes.studio_local,
            Mode::Compute => &self.modes.compute,
        }
    }

    pub fn mode_mut(&mut self, mode: Mode) -> &mut ModeConfig {
        match mode {
            Mode::Desktop => &mut self.modes.desktop,
            Mode::StudioLocal => &mut self.modes.studio_local,
            Mode::Compute => &mut self.modes.compute,
        }
    }

    /// Every unit whose state decides the observed mode, in a stable order.
    pub fn managed_units(&self) -> Vec<String> {
        let mut units: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for mode in Mode::ALL {
            let m = self.mode(mode);
            let all = std::iter::once(&m.target)
                .chain(&m.stop)
                .chain(&m.start)
                .chain(&m.overlay);
            for u in all.chain(if mode == Mode::Compute {
                self.keep_running.as_slice()
            } else {
                &[]
            }) {
                if seen.insert(u.as_str()) {
                    units.push(u.clone());
                }
            }
        }
        units
    }

    /// The enabled vLLM profiles with their GPUs.
    pub fn vllm_placements(&self) -> Vec<(&'static str, VllmPlacement)> {
        let display = self.guard_settings.gpu.display_gpu.as_deref();
        self.vllm_profiles
            .as_ref()
            .map(|p| p.placements(display))
            .unwrap_or_default()
    }

    /// Whether vLLM unit `unit` runs in `mode`: a profile's unit where the
    /// mode starts it, or the plain vLLM unit in compute.
    pub fn vllm_runs_in(&self, unit: &str, mode: Mode) -> bool {
        match &self.vllm_profiles {
            Some(_) => self.mode(mode).start.iter().any(|u| u == unit),
            None => mode == Mode::Compute,
        }
    }

    /// Every vLLM unit: the profiles' units, or the plain one.
    pub fn vllm_units(&self) -> Vec<String> {
        match &self.vllm_profiles {
            Some(_) => self
                .vllm_placements()
                .into_iter()
                .map(|(_, p)| p.unit)
                .collect(),
            None => vec![self.guard_settings.vllm.unit.clone()],
        }
    }

    /// `capability-placement.json`: where each capability runs, and with
    /// vLLM profiles which GPUs each profile gets.
    pub fn placement_document(&self) -> serde_json::Value {
        let mut doc = serde_json::Map::new();
        for (k, v) in &self.capability_placement {
            doc.insert(k.clone(), serde_json::Value::String(v.clone()));
        }
        let placements = self.vllm_placements();
        if !placements.is_empty() {
            let gpus: serde_json::Map<String, serde_json::Value> = placements
                .into_iter()
                .map(|(_, p)| (p.unit.clone(), serde_json::json!(p.gpus)))
                .collect();
            doc.insert("gpus".into(), serde_json::Value::Object(gpus));
        }
        serde_json::Value::Object(doc)
    }

    /// With vLLM profiles, each profile's unit joins the start list of the
    /// modes it runs in and the stop list of the others.
    pub(super) fn with_vllm_profile_units(mut self) -> Self {
        let placements = self.vllm_placements();
        let add = |list: &mut Vec<String>, unit: &str| {
            if !list.iter().any(|u| u == unit) {
                list.push(unit.to_string());
            }
        };
        for (profile, p) in &placements {
            // A profile's unit is a workload the controller drains, stops
            // and starts itself, not a user job in the AI slice.
            add(&mut self.guard_settings.ai_slice.managed, &p.unit);
            for mode in Mode::ALL {
                let runs_here = matches!(
                    (*profile, mode),
                    ("compute", Mode::Compute) | ("desktop", Mode::Desktop)
                );
                let m = self.mode_mut(mode);
                if runs_here {
                    add(&mut m.start, &p.unit);
                } else {
                    add(&mut m.stop, &p.unit);
                }
            }
        }
        self
    }

    /// The configuration for a machine without a display manager: no mode
    /// starts, stops or expects `display-manager.service`.
    pub fn without_display_manager(mut self) -> Self {
        for mode in Mode::ALL {
            let m = self.mode_mut(mode);
            for list in [&mut m.stop, &mut m.start, &mut m.overlay] {
                list.retain(|u| u != DISPLAY_MANAGER);
            }
        }
        self
    }

    /// Every slice that some mode budgets.
    pub fn budgeted_slices(&self) -> Vec<String> {
        let mut slices: Vec<String> = Mode::ALL
            .iter()
            .flat_map(|m| self.mode(*m).slices.keys().cloned())
            .collect();
        slices.sort();
        slices.dedup();
        slices
    }
}
