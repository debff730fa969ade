//! The configuration: its schema (version 1), the built-in defaults that
//! match the contract's unit topology, loading with a deep merge of the file
//! over those defaults, and validation whose errors name the field.
//! Configuration is read-only input; nothing here writes it.

mod budget;
mod drain;
#[cfg(test)]
mod fuzz;
mod idle;
mod integrations;
mod readiness;
mod vllm;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use budget::{Bytes, CpuQuota, CpuSet, SliceBudget, Weight};
pub use drain::{Drain, JobPolicy, UnreadablePolicy};
pub use idle::{BootMode, IdleConfig, WayBackConfig};
pub use integrations::{
    ExecIntegration, Integrations, K3sIntegration, SlurmIntegration, Unreachable,
};
pub use readiness::Readiness;
pub use vllm::{VllmPlacement, VllmProfiles};

use mode_guards::{GuardSettings, BUILTIN_GUARDS, MAX_WAIT_SECS};

use crate::mode::Mode;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/mode-controller/config.json";
pub const SCHEMA_VERSION: u32 = 1;
/// The name every display manager is installed under: Debian's packages
/// make it a symlink to theirs, NixOS declares it as an alias.
pub const DISPLAY_MANAGER: &str = "display-manager.service";
/// The longest settle window a configuration may ask for.
pub const MAX_SETTLE_MS: u64 = 60_000;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {field}: {message}")]
    Invalid {
        path: PathBuf,
        field: String,
        message: String,
    },
}

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
    #[serde(default = "default_settle_ms")]
    pub settle_ms: u64,
}

fn default_settle_ms() -> u64 {
    1500
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
    fn with_vllm_profile_units(mut self) -> Self {
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

impl Default for Config {
    fn default() -> Self {
        defaults()
    }
}

fn units(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn guards(list: &[(&str, GuardSeverity)]) -> BTreeMap<String, GuardSeverity> {
    list.iter().map(|(n, s)| (n.to_string(), *s)).collect()
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
    use GuardSeverity::{Hard, Soft};
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
                guards: guards(&[
                    ("target_reachable", Hard),
                    ("user_jobs_safe", Soft),
                    ("vllm_drainable", Soft),
                ]),
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
                    ("target_reachable", Hard),
                    ("studio_capability_local", Hard),
                    ("user_jobs_safe", Soft),
                    ("vllm_drainable", Soft),
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
                    ("target_reachable", Hard),
                    ("graphical_session_absent", Hard),
                    ("gpu_display_released", Soft),
                    ("audio_idle", Soft),
                    ("memory_headroom", Soft),
                    ("cpu_load_safe", Soft),
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

/// The largest configuration file read (a real one is a few kB).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Load the configuration at `path`; when the file does not exist the
/// built-in defaults apply (the tool works with no configuration at all).
/// Only a regular file of at most `MAX_CONFIG_BYTES` is read.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    match read_config(path)? {
        Some(text) => parse(&text, path),
        None => Ok(defaults()),
    }
}

/// Before root acts on `config` (read from `path`): the file, the external
/// guards and exec steps it names and its audit log must be trustworthy
/// (root's, writable by no one else, as sshd's StrictModes). Read-only
/// commands skip this, so status still explains a machine whose
/// configuration is refused; what they would run is checked again before
/// it runs.
pub fn check_trust(config: &Config, path: &Path) -> Result<(), ConfigError> {
    if nix::unistd::geteuid().is_root() {
        let untrusted = |field: String, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            field,
            message,
        };
        for (i, e) in config.guard_settings.external.iter().enumerate() {
            mode_guards::check_trusted(&e.path)
                .map_err(|m| untrusted(format!("guard_settings.external[{i}].path"), m))?;
        }
        for (i, e) in config.integrations.exec.iter().enumerate() {
            mode_guards::check_trusted(&e.path)
                .map_err(|m| untrusted(format!("integrations.exec[{i}].path"), m))?;
        }
        mode_guards::check_trusted(&config.audit_log)
            .map_err(|m| untrusted("audit_log".into(), m))?;
        if path.exists() {
            mode_guards::check_trusted(path).map_err(|m| untrusted("(file)".into(), m))?;
        }
    }
    Ok(())
}

/// The file's text; `None` when it does not exist.
fn read_config(path: &Path) -> Result<Option<String>, ConfigError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let read = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read(e)),
    };
    let meta = f.metadata().map_err(read)?;
    let invalid = |message: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        field: "(file)".into(),
        message,
    };
    if !meta.is_file() {
        return Err(invalid("is not a regular file".into()));
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(invalid(format!(
            "is {} bytes; a configuration is at most {MAX_CONFIG_BYTES} bytes",
            meta.len()
        )));
    }
    let mut bytes = Vec::new();
    f.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(invalid(format!("is more than {MAX_CONFIG_BYTES} bytes")));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| invalid("is not UTF-8 text".into()))
}

/// Parse a configuration document: merged over the defaults (objects merge
/// key by key, everything else replaces), then typed and validated.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let invalid = |field: String, message: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        field,
        message,
    };
    let user: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| invalid("(document)".into(), format!("not valid JSON: {e}")))?;
    if !user.is_object() {
        return Err(invalid(
            "(document)".into(),
            "expected a JSON object".into(),
        ));
    }
    match user.get("version") {
        Some(serde_json::Value::Number(n)) if n.as_u64() == Some(SCHEMA_VERSION as u64) => {}
        Some(other) => {
            return Err(invalid(
                "version".into(),
                format!("unsupported schema version {other}: this mode-controller reads version {SCHEMA_VERSION}"),
            ))
        }
        None => return Err(invalid("version".into(), format!("missing: add \"version\": {SCHEMA_VERSION}"))),
    }
    let mut merged = serde_json::to_value(defaults())
        .map_err(|e| invalid("(defaults)".into(), e.to_string()))?;
    // An opt-in section given as an object merges over its own defaults.
    if user
        .get("vllm_profiles")
        .is_some_and(serde_json::Value::is_object)
    {
        merged["vllm_profiles"] = serde_json::to_value(VllmProfiles::default())
            .map_err(|e| invalid("(defaults)".into(), e.to_string()))?;
    }
    merge(&mut merged, user);
    let config: Config = serde_path_to_error::deserialize(merged).map_err(|e| {
        let field = e.path().to_string();
        invalid(
            if field == "." {
                "(document)".into()
            } else {
                field
            },
            e.into_inner().to_string(),
        )
    })?;
    validate(&config).map_err(|(field, message)| invalid(field, message))?;
    Ok(config.with_vllm_profile_units())
}

fn merge(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

const UNIT_SUFFIXES: [&str; 8] = [
    ".service", ".target", ".slice", ".scope", ".socket", ".timer", ".mount", ".path",
];

fn check_unit(field: &str, name: &str) -> Result<(), (String, String)> {
    let ok_chars = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.' | '\\' | '@'));
    if ok_chars
        && UNIT_SUFFIXES
            .iter()
            .any(|s| name.ends_with(s) && name.len() > s.len())
    {
        Ok(())
    } else {
        Err((
            field.to_string(),
            format!("'{name}' is not a unit name (expected something like \"vllm.service\" or \"compute.target\")"),
        ))
    }
}

fn validate(c: &Config) -> Result<(), (String, String)> {
    for mode in Mode::ALL {
        let m = c.mode(mode);
        let at = format!("modes.{}", mode.word());
        check_unit(&format!("{at}.target"), &m.target)?;
        if !m.target.ends_with(".target") {
            return Err((
                format!("{at}.target"),
                format!("'{}' must be a .target unit", m.target),
            ));
        }
        for (list, names) in [
            ("stop", &m.stop),
            ("start", &m.start),
            ("overlay", &m.overlay),
        ] {
            for (i, u) in names.iter().enumerate() {
                check_unit(&format!("{at}.{list}[{i}]"), u)?;
            }
        }
        let keep: std::collections::HashSet<&String> = c.keep_running.iter().collect();
        let started: std::collections::HashSet<&String> = std::iter::once(&m.target)
            .chain(&m.start)
            .chain(&m.overlay)
            .collect();
        for (i, u) in m.stop.iter().enumerate() {
            if keep.contains(u) {
                return Err((
                    format!("{at}.stop[{i}]"),
                    format!("'{u}' is in keep_running: a transition never stops it"),
                ));
            }
            if started.contains(u) {
                return Err((
                    format!("{at}.stop[{i}]"),
                    format!("'{u}' is both stopped and started"),
                ));
            }
        }
        let externals: std::collections::HashSet<&str> = c
            .guard_settings
            .external
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        for name in m.guards.keys() {
            if !BUILTIN_GUARDS.contains(&name.as_str()) && !externals.contains(&name.as_str()) {
                return Err((
                    format!("{at}.guards.{name}"),
                    format!(
                        "unknown guard; known guards: {} (external guards are declared in guard_settings.external)",
                        BUILTIN_GUARDS.join(", ")
                    ),
                ));
            }
        }
        let d = &m.drain;
        for (name, value) in [
            ("grace_secs", d.grace_secs),
            ("wait_secs", d.wait_secs),
            ("vllm_timeout_secs", d.vllm_timeout_secs),
        ] {
            bounded(format!("{at}.drain.{name}"), value, 0, MAX_WAIT_SECS, "s")?;
        }
        for slice in m.slices.keys() {
            check_unit(&format!("{at}.slices.{slice}"), slice)?;
            if !slice.ends_with(".slice") {
                return Err((
                    format!("{at}.slices.{slice}"),
                    "budgets apply to .slice units only".into(),
                ));
            }
        }
    }
    for (i, u) in c.keep_running.iter().enumerate() {
        check_unit(&format!("keep_running[{i}]"), u)?;
    }
    c.integrations.validate()?;
    c.way_back.validate()?;
    for (unit, check) in &c.readiness {
        check_unit(&format!("readiness.{unit}"), unit)?;
        check.check(&format!("readiness.{unit}"))?;
    }
    if c.timeouts.settle_ms > MAX_SETTLE_MS {
        return Err((
            "timeouts.settle_ms".into(),
            format!(
                "{} is out of range: at most {MAX_SETTLE_MS} ms",
                c.timeouts.settle_ms
            ),
        ));
    }
    if let Some(profiles) = &c.vllm_profiles {
        profiles.validate(c.guard_settings.gpu.display_gpu.as_deref())?;
    }
    if let Err(errors) = c.guard_settings.validate() {
        if let Some(e) = errors.into_iter().next() {
            return Err((format!("guard_settings.{}", e.field), e.message));
        }
    }
    c.idle.validate()?;
    if !c.audit_log.is_absolute() {
        return Err(("audit_log".into(), "must be an absolute path".into()));
    }
    let system_dirs = [
        "/", "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/boot", "/dev", "/proc", "/sys",
        "/var", "/var/lib", "/var/log", "/run", "/tmp", "/root", "/home",
    ];
    if c.audit_log.extension().and_then(|e| e.to_str()) != Some("jsonl")
        || c.audit_log
            .parent()
            .is_some_and(|d| system_dirs.iter().any(|s| d == Path::new(s)))
    {
        return Err((
            "audit_log".into(),
            format!(
                "'{}' must be a .jsonl file in a directory of its own (the default is /var/lib/mode-controller/transitions.jsonl)",
                c.audit_log.display()
            ),
        ));
    }
    for (field, value) in [
        ("timeouts.job_secs", c.timeouts.job_secs),
        ("timeouts.request_secs", c.timeouts.request_secs),
    ] {
        bounded(field.into(), value, 1, MAX_WAIT_SECS, "s")?;
    }
    Ok(())
}

/// `value` within `min..=max`, or the field and the allowed range.
fn bounded(
    field: String,
    value: u64,
    min: u64,
    max: u64,
    unit: &str,
) -> Result<(), (String, String)> {
    mode_guards::within(value, min, max, unit).map_err(|m| (field, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Config, ConfigError> {
        parse(text, Path::new("/etc/mode-controller/config.json"))
    }

    fn err(text: &str) -> String {
        p(text).unwrap_err().to_string()
    }

    #[test]
    fn defaults_follow_the_contract_topology() {
        let c = defaults();
        assert_eq!(c.modes.compute.target, "compute.target");
        assert!(c
            .modes
            .compute
            .stop
            .contains(&"graphical.target".to_string()));
        assert_eq!(
            c.modes.studio_local.overlay,
            ["studio-local-policy.service", "audio-priority.service"]
        );
        assert_eq!(c.keep_running, ["k3s.service"]);
        assert!(c.managed_units().contains(&"k3s.service".to_string()));
        assert_eq!(
            c.budgeted_slices(),
            ["ai.slice", "interactive.slice", "platform.slice"]
        );
    }

    #[test]
    fn a_configuration_root_cannot_trust_is_refused_naming_why() {
        use std::os::unix::fs::PermissionsExt;
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let file = t.path().join("config.json");
        let log = t.path().join("log/transitions.jsonl");
        let guard = t.path().join("guard");
        std::fs::write(&guard, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&guard, std::fs::Permissions::from_mode(0o755)).unwrap();
        let text = format!(
            r#"{{"version": 1, "audit_log": "{}", "guard_settings": {{"external": [{{"name": "g", "path": "{}"}}]}}}}"#,
            log.display(),
            guard.display()
        );
        std::fs::write(&file, &text).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let trust = |f: &Path| load(f).and_then(|c| check_trust(&c, f));
        assert!(trust(&file).is_ok(), "root's, in root's directories");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = trust(&file).unwrap_err().to_string();
        assert!(
            e.contains("(file)") && e.contains("writable by users other than root"),
            "{e}"
        );
        assert!(load(&file).is_ok(), "read-only commands still read it");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&guard, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = trust(&file).unwrap_err().to_string();
        assert!(e.contains("guard_settings.external[0].path"), "{e}");
        std::fs::set_permissions(&guard, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(t.path().join("log")).unwrap();
        std::os::unix::fs::chown(t.path().join("log"), Some(65534), None).unwrap();
        let e = trust(&file).unwrap_err().to_string();
        assert!(e.contains("audit_log") && e.contains("uid 65534"), "{e}");
    }

    #[test]
    fn the_audit_log_cannot_be_pointed_at_a_system_file() {
        for path in [
            "/etc/passwd",
            "/etc/mode.jsonl",
            "/var/lib/x.jsonl",
            "/x.jsonl",
        ] {
            let e = err(&format!(r#"{{"version": 1, "audit_log": "{path}"}}"#));
            assert!(
                e.contains("audit_log: ") && e.contains("directory of its own"),
                "{e}"
            );
        }
        assert!(p(r#"{"version": 1, "audit_log": "/var/log/mode-controller/t.jsonl"}"#).is_ok());
    }

    #[test]
    fn a_configuration_over_the_size_cap_or_not_a_file_is_refused_at_once() {
        let t = tempfile::tempdir().unwrap();
        let big = t.path().join("big.json");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_CONFIG_BYTES + 1)
            .unwrap();
        let e = load(&big).unwrap_err().to_string();
        assert!(e.contains("at most") && e.lines().count() == 1, "{e}");
        let fifo = t.path().join("fifo.json");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let started = std::time::Instant::now();
        let e = load(&fifo).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        assert!(started.elapsed().as_secs() < 2, "never blocks on a FIFO");
    }

    #[test]
    fn unit_lists_are_handled_in_linear_time() {
        let n = 20_000;
        let names: Vec<String> = (0..n).map(|i| format!("\"w{i}.service\"")).collect();
        let text = format!(
            r#"{{"version": 1, "modes": {{"compute": {{"start": [{}]}}, "desktop": {{"stop": [{}]}}}}}}"#,
            names.join(","),
            names.join(",")
        );
        let started = std::time::Instant::now();
        let c = p(&text).unwrap();
        assert!(c.managed_units().len() > n);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn missing_file_means_defaults() {
        let c = load(Path::new("/nonexistent/mode-controller.json")).unwrap();
        assert_eq!(c, defaults());
    }

    #[test]
    fn a_partial_file_merges_over_defaults() {
        let c = p(r#"{"version": 1, "default_mode": "compute",
                     "modes": {"compute": {"start": ["vllm.service"], "guards": {"audio_idle": "hard"}}}}"#)
        .unwrap();
        assert_eq!(c.default_mode, Mode::Compute);
        assert_eq!(c.modes.compute.start, ["vllm.service"]);
        assert_eq!(
            c.modes.compute.target, "compute.target",
            "untouched fields keep their default"
        );
        assert_eq!(c.modes.compute.guards["audio_idle"], GuardSeverity::Hard);
        assert_eq!(
            c.modes.compute.guards["graphical_session_absent"],
            GuardSeverity::Hard
        );
    }

    #[test]
    fn the_serialized_defaults_are_a_valid_file() {
        let text = serde_json::to_string(&defaults()).unwrap();
        assert_eq!(p(&text).unwrap(), defaults());
    }

    #[test]
    fn errors_name_the_field() {
        assert!(
            err(r#"{"version": 1, "modes": {"compute": {"targt": "x.target"}}}"#)
                .contains("modes.compute")
        );
        assert!(
            err(r#"{"version": 1, "modes": {"compute": {"targt": "x.target"}}}"#).contains("targt")
        );
        assert!(err(r#"{"version": 1, "default_mode": "gaming"}"#).contains("default_mode"));
        assert!(
            err(r#"{"version": 1, "modes": {"compute": {"stop": ["k3s.service"]}}}"#)
                .contains("modes.compute.stop[0]: 'k3s.service' is in keep_running")
        );
        assert!(
            err(r#"{"version": 1, "modes": {"desktop": {"start": ["not a unit"]}}}"#)
                .contains("modes.desktop.start[0]")
        );
        assert!(
            err(r#"{"version": 1, "modes": {"compute": {"guards": {"vibes_ok": "hard"}}}}"#)
                .contains("modes.compute.guards.vibes_ok: unknown guard")
        );
        assert!(err(r#"{"version": 1, "modes": {"compute": {"slices": {"ai.slice": {"MemoryMax": "lots"}}}}}"#)
            .contains("modes.compute.slices.ai.slice.MemoryMax"));
        assert!(err(r#"{"version": 2}"#).contains("unsupported schema version 2"));
        assert!(err(r#"{}"#).contains("version: missing"));
        assert!(err(r#"{"version": 1,"#).contains("not valid JSON"));
        assert!(err(r#"{"version": 1, "surprise": true}"#).contains("surprise"));
    }
}
