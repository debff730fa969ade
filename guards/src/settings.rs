//! `GuardSettings`: every threshold, allow-list and endpoint the guards read,
//! in the shape the controller embeds in its JSON configuration under
//! `guard_settings`. Defaults are sensible for one NixOS workstation.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::probe::procfd::ScanMethod;

/// All guard settings. Every part has defaults, so `{}` is a valid value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct GuardSettings {
    /// `gpu_display_released`: which GPU drives the display and who may hold it.
    pub gpu: GpuSettings,
    /// `memory_headroom`: free memory floor and memory pressure ceiling.
    pub memory: MemorySettings,
    /// `cpu_load_safe`: CPU pressure ceiling (and the load-average fallback).
    pub cpu: CpuSettings,
    /// `user_jobs_safe`: the slice that holds AI work and the services the
    /// controller manages there itself.
    pub ai_slice: AiSliceSettings,
    /// `audio_idle`: how PipeWire's graph is read, and the studio device.
    pub audio: AudioSettings,
    /// `vllm_drainable`: where vLLM answers and how long to wait for it to drain.
    pub vllm: VllmSettings,
    /// External guards: executables that report under their own names.
    pub external: Vec<ExternalGuardSettings>,
    /// `graphical_session_absent` and idle automation: what makes a session
    /// graphical when logind does not type it so.
    pub sessions: SessionSettings,
}

/// What makes a session graphical besides logind's type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionSettings {
    /// Program names (as the command line starts, without directory) of
    /// compositors and display servers: a local session on a seat running
    /// one of them is graphical whatever type logind gives it.
    pub compositors: Vec<String>,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            compositors: [
                "Hyprland",
                "sway",
                "river",
                "niri",
                "weston",
                "kwin_wayland",
                "gnome-shell",
                "labwc",
                "wayfire",
                "cage",
                "hikari",
                "cosmic-comp",
                "Xorg",
                "Xwayland",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        }
    }
}

/// Settings of `gpu_display_released`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GpuSettings {
    /// The GPU that drives the display: a PCI address (`0000:01:00.0`) or an
    /// NVML UUID (`GPU-...`). Absent: the GPU the firmware booted the display
    /// on (`boot_vga`), or the only GPU there is.
    pub display_gpu: Option<String>,
    /// Processes allowed to hold the display GPU, matched against the
    /// command name (`comm`), the executable's file name and `argv[0]`'s.
    pub allow: Vec<String>,
    /// Where libnvidia-ml lives (NixOS: `/run/opengl-driver/lib/libnvidia-ml.so.1`).
    pub nvml_library: PathBuf,
    /// When true, NVML being unavailable (library missing, driver not
    /// loaded) is an `error`; when false the `/proc` scan decides alone and
    /// the reason says NVML was not asked.
    pub require_nvml: bool,
    /// How long the post-teardown verification waits for the display to let go.
    pub release_timeout_secs: u64,
    /// How often the post-teardown verification looks again.
    pub poll_interval_ms: u64,
    /// How processes' fds are read: `pidfd` (default; duplicates each fd for
    /// a moment through `pidfd_getfd`, about twice as fast) or
    /// `proc-listing` (lists `/proc/PID/fd`, as `fuser` does).
    pub fd_scan: ScanMethod,
    /// More device nodes to count as nodes of a GPU, beyond NVIDIA's and
    /// DRM's: an unusual driver, or a stand-in device in a test machine.
    pub extra_devices: Vec<ExtraDevice>,
}

/// One extra device node counted as a node of `gpu`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraDevice {
    /// `MAJOR:MINOR` of a character device (`1:7`), or the absolute path an
    /// fd must point to (costs a readlink per fd and forces `proc-listing`).
    pub device: String,
    /// The PCI address of the GPU it belongs to.
    pub gpu: String,
}

impl ExtraDevice {
    /// The fd-scan rule for this device, or why it has none.
    pub fn stand_in(&self) -> Result<crate::probe::procfd::StandIn, String> {
        use crate::probe::procfd::{StandIn, StandInMatch};
        let gpu = crate::probe::gpu_topology::normalize_pci(&self.gpu)
            .ok_or_else(|| format!("gpu {:?} is not a PCI address", self.gpu))?;
        let matches = if self.device.starts_with('/') {
            StandInMatch::Path(self.device.clone().into())
        } else {
            let parsed = self
                .device
                .split_once(':')
                .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
            let (major, minor) = parsed.ok_or_else(|| {
                format!(
                    "device {:?} is neither MAJOR:MINOR nor an absolute path",
                    self.device
                )
            })?;
            StandInMatch::CharDevice { major, minor }
        };
        Ok(StandIn { matches, gpu })
    }
}

impl Default for GpuSettings {
    fn default() -> Self {
        Self {
            display_gpu: None,
            allow: [
                "nvidia-persistenced",
                "nvidia-powerd",
                "nv-hostengine",
                "nvidia-device-plugin",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            nvml_library: PathBuf::from("/run/opengl-driver/lib/libnvidia-ml.so.1"),
            require_nvml: false,
            release_timeout_secs: 10,
            poll_interval_ms: 100,
            fd_scan: ScanMethod::default(),
            extra_devices: Vec::new(),
        }
    }
}

/// Settings of `audio_idle` (and of idle automation's audio signal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AudioSettings {
    /// The `pw-dump` that reads a user's PipeWire graph: an absolute path,
    /// or a bare name looked up in `PATH` (NixOS: the module sets the
    /// package's).
    pub pw_dump: PathBuf,
    /// The hard deadline for reading one user's graph (all users are read
    /// at once): a PipeWire that does not answer by then is an `error`.
    pub graph_timeout_ms: u64,
    /// The studio device, by PipeWire node name (`alsa_input.usb-...`,
    /// `studio-in`) or ALSA card id (`USB`): only clients connected to it
    /// count. Absent: any client moving audio counts.
    pub device: Option<String>,
}

impl Default for AudioSettings {
    fn default() -> Self {
        Self {
            pw_dump: PathBuf::from("pw-dump"),
            graph_timeout_ms: 2000,
            device: None,
        }
    }
}

/// Settings of `memory_headroom`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemorySettings {
    /// `MemAvailable` must be at least this many MiB.
    pub min_available_mib: u64,
    /// Memory pressure (`some avg10`, percent of time stalled) must stay below this.
    pub max_pressure_avg10: f64,
}

impl Default for MemorySettings {
    fn default() -> Self {
        Self {
            min_available_mib: 4096,
            max_pressure_avg10: 10.0,
        }
    }
}

/// Settings of `cpu_load_safe`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CpuSettings {
    /// CPU pressure (`some avg10`, percent of time runnable tasks waited) must stay below this.
    pub max_pressure_avg10: f64,
    /// Without PSI: the 1-minute load average divided by the CPU count must stay below this.
    pub max_load_per_cpu: f64,
}

impl Default for CpuSettings {
    fn default() -> Self {
        Self {
            max_pressure_avg10: 40.0,
            max_load_per_cpu: 1.5,
        }
    }
}

/// Settings of `user_jobs_safe`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AiSliceSettings {
    /// The slice whose units the controller lists into `Facts::slice_units`.
    pub slice: String,
    /// Units in that slice that the controller itself stops and starts;
    /// anything else running there is the user's work.
    pub managed: Vec<String>,
}

impl Default for AiSliceSettings {
    fn default() -> Self {
        Self {
            slice: "ai.slice".into(),
            managed: vec!["vllm.service".into()],
        }
    }
}

/// Settings of `vllm_drainable`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VllmSettings {
    /// Base URL of the vLLM OpenAI server (`http://host:port`, plain HTTP).
    pub endpoint: String,
    /// The unit that runs vLLM; its state (in `Facts::unit_states`) decides
    /// whether an unreachable endpoint is an error or the guard is skipped.
    pub unit: String,
    /// Time between the two scrapes that must both show no requests.
    pub scrape_interval_ms: u64,
    /// How long to keep scraping for the queue to drain before failing
    /// (0: two scrapes, then decide).
    pub drain_wait_secs: u64,
    /// Connect, write and read timeout of one HTTP request.
    pub request_timeout_ms: u64,
}

impl Default for VllmSettings {
    fn default() -> Self {
        Self {
            endpoint: "http://127.0.0.1:8000".into(),
            unit: "vllm.service".into(),
            scrape_interval_ms: 500,
            drain_wait_secs: 0,
            request_timeout_ms: 1000,
        }
    }
}

/// One external guard: an executable that exits 0 (pass), 1 (fail) or
/// anything else (error), optionally printing `{"reason": ..., "evidence": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalGuardSettings {
    /// The name it reports under (must not be a built-in guard's name).
    pub name: String,
    /// Absolute path of the executable.
    pub path: PathBuf,
    /// Arguments passed to it.
    #[serde(default)]
    pub args: Vec<String>,
    /// It is killed, and reported as `error`, after this many seconds.
    #[serde(default = "default_external_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_external_timeout_secs() -> u64 {
    5
}

/// A setting that cannot work, with the field it is in (relative to
/// `guard_settings`, e.g. `external[1].path`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SettingsError {
    pub field: String,
    pub message: String,
}

/// The longest wait any setting may ask for (a day): longer is a typo, and
/// bounding it here keeps every deadline computed from it far from overflow.
pub const MAX_WAIT_SECS: u64 = 86_400;
/// The longest interval or single-request timeout, in milliseconds (a minute).
pub const MAX_INTERVAL_MS: u64 = 60_000;
/// The longest an external guard may run (an hour).
pub const MAX_EXTERNAL_SECS: u64 = 3_600;
/// The largest memory floor (1 PiB, in MiB).
pub const MAX_MIB: u64 = 1 << 30;

/// `Ok` when `min <= value <= max`; the message names the allowed range.
pub fn within(value: u64, min: u64, max: u64, unit: &str) -> Result<(), String> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "{value} {unit} is out of range: use {min} to {max} {unit}"
        ))
    }
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> SettingsError {
    SettingsError {
        field: field.into(),
        message: message.into(),
    }
}

impl GuardSettings {
    /// Check what serde cannot: addresses, URLs, names and ranges. Every
    /// problem is returned, each naming its field.
    pub fn validate(&self) -> Result<(), Vec<SettingsError>> {
        let mut errors = Vec::new();
        if let Some(gpu) = &self.gpu.display_gpu {
            let uuid = gpu
                .get(..4)
                .is_some_and(|p| p.eq_ignore_ascii_case("GPU-") || p.eq_ignore_ascii_case("MIG-"));
            if !uuid && crate::probe::gpu_topology::normalize_pci(gpu).is_none() {
                errors.push(invalid(
                    "gpu.display_gpu",
                    format!(
                        "{gpu:?} is neither a PCI address (0000:01:00.0) nor a GPU UUID (GPU-...)"
                    ),
                ));
            }
        }
        for (i, extra) in self.gpu.extra_devices.iter().enumerate() {
            if let Err(e) = extra.stand_in() {
                errors.push(invalid(format!("gpu.extra_devices[{i}]"), e));
            }
        }
        if !self.gpu.nvml_library.is_absolute() {
            errors.push(invalid("gpu.nvml_library", "must be an absolute path"));
        }
        let mut bounded = |field: String, value: u64, min: u64, max: u64, unit: &str| {
            if let Err(message) = within(value, min, max, unit) {
                errors.push(invalid(field, message));
            }
        };
        bounded(
            "gpu.release_timeout_secs".into(),
            self.gpu.release_timeout_secs,
            0,
            MAX_WAIT_SECS,
            "s",
        );
        bounded(
            "gpu.poll_interval_ms".into(),
            self.gpu.poll_interval_ms,
            1,
            MAX_INTERVAL_MS,
            "ms",
        );
        bounded(
            "memory.min_available_mib".into(),
            self.memory.min_available_mib,
            0,
            MAX_MIB,
            "MiB",
        );
        bounded(
            "vllm.scrape_interval_ms".into(),
            self.vllm.scrape_interval_ms,
            1,
            MAX_INTERVAL_MS,
            "ms",
        );
        bounded(
            "vllm.drain_wait_secs".into(),
            self.vllm.drain_wait_secs,
            0,
            MAX_WAIT_SECS,
            "s",
        );
        bounded(
            "vllm.request_timeout_ms".into(),
            self.vllm.request_timeout_ms,
            1,
            MAX_INTERVAL_MS,
            "ms",
        );
        for (i, e) in self.external.iter().enumerate() {
            bounded(
                format!("external[{i}].timeout_secs"),
                e.timeout_secs,
                1,
                MAX_EXTERNAL_SECS,
                "s",
            );
        }
        for (field, value) in [
            ("memory.max_pressure_avg10", self.memory.max_pressure_avg10),
            ("cpu.max_pressure_avg10", self.cpu.max_pressure_avg10),
        ] {
            if !(value > 0.0 && value <= 100.0) {
                errors.push(invalid(
                    field,
                    format!("{value} is not a percentage in (0, 100]"),
                ));
            }
        }
        if !(self.cpu.max_load_per_cpu.is_finite() && self.cpu.max_load_per_cpu > 0.0) {
            errors.push(invalid("cpu.max_load_per_cpu", "must be a positive number"));
        }
        if !self.ai_slice.slice.ends_with(".slice") {
            errors.push(invalid(
                "ai_slice.slice",
                format!("{:?} is not a slice unit name", self.ai_slice.slice),
            ));
        }
        if !(1..=30_000).contains(&self.audio.graph_timeout_ms) {
            errors.push(invalid(
                "audio.graph_timeout_ms",
                "must be between 1 and 30000",
            ));
        }
        if self.audio.pw_dump.as_os_str().is_empty() {
            errors.push(invalid("audio.pw_dump", "must name pw-dump"));
        }
        if let Err(e) = crate::probe::http::HttpUrl::parse(&self.vllm.endpoint) {
            errors.push(invalid("vllm.endpoint", e.to_string()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, e) in self.external.iter().enumerate() {
            let at = format!("external[{i}]");
            if e.name.is_empty()
                || !e
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                errors.push(invalid(
                    format!("{at}.name"),
                    format!("{:?}: use letters, digits, _ and -", e.name),
                ));
            } else if crate::spec(&e.name).is_some() {
                errors.push(invalid(
                    format!("{at}.name"),
                    format!("{} is a built-in guard's name", e.name),
                ));
            } else if !seen.insert(e.name.as_str()) {
                errors.push(invalid(
                    format!("{at}.name"),
                    format!("{} is used twice", e.name),
                ));
            }
            if !e.path.is_absolute() {
                errors.push(invalid(format!("{at}.path"), "must be an absolute path"));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The units whose state the controller should put into
    /// `Facts::unit_states` for these guards (today: the vLLM unit).
    pub fn units_of_interest(&self) -> Vec<String> {
        vec![self.vllm.unit.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_object_gives_the_defaults() {
        let s: GuardSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(s, GuardSettings::default());
        assert_eq!(
            s.gpu.nvml_library,
            PathBuf::from("/run/opengl-driver/lib/libnvidia-ml.so.1")
        );
    }

    #[test]
    fn a_misspelled_field_is_rejected_by_name() {
        let e = serde_json::from_str::<GuardSettings>(r#"{"gpu": {"alow": []}}"#).unwrap_err();
        assert!(e.to_string().contains("alow"), "{e}");
    }

    #[test]
    fn defaults_round_trip_through_json() {
        let s = GuardSettings {
            external: vec![ExternalGuardSettings {
                name: "no_ssh_sessions".into(),
                path: "/usr/lib/mode/no-ssh-sessions".into(),
                args: vec![],
                timeout_secs: 3,
            }],
            ..GuardSettings::default()
        };
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<GuardSettings>(&text).unwrap(), s);
    }

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(GuardSettings::default().validate(), Ok(()));
    }

    #[test]
    fn validation_names_every_bad_field() {
        let s: GuardSettings = serde_json::from_str(
            r#"{"gpu": {"display_gpu": "card0"},
                "vllm": {"endpoint": "https://x"},
                "external": [{"name": "audio_idle", "path": "rel/x"},
                             {"name": "ok", "path": "/x", "timeout_secs": 0}]}"#,
        )
        .unwrap();
        let fields: Vec<String> = s
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "gpu.display_gpu",
                "external[1].timeout_secs",
                "vllm.endpoint",
                "external[0].name",
                "external[0].path",
            ]
        );
    }

    #[test]
    fn every_duration_is_bounded_with_its_field_named() {
        for (json, field) in [
            (
                r#"{"gpu": {"release_timeout_secs": 18446744073709551615}}"#,
                "gpu.release_timeout_secs",
            ),
            (
                r#"{"gpu": {"poll_interval_ms": 0}}"#,
                "gpu.poll_interval_ms",
            ),
            (
                r#"{"vllm": {"drain_wait_secs": 86401}}"#,
                "vllm.drain_wait_secs",
            ),
            (
                r#"{"vllm": {"scrape_interval_ms": 18446744073709551615}}"#,
                "vllm.scrape_interval_ms",
            ),
            (
                r#"{"vllm": {"request_timeout_ms": 60001}}"#,
                "vllm.request_timeout_ms",
            ),
            (
                r#"{"memory": {"min_available_mib": 18446744073709551615}}"#,
                "memory.min_available_mib",
            ),
            (
                r#"{"external": [{"name": "x", "path": "/x", "timeout_secs": 18446744073709551615}]}"#,
                "external[0].timeout_secs",
            ),
        ] {
            let s: GuardSettings = serde_json::from_str(json).unwrap();
            let errors = s.validate().unwrap_err();
            assert_eq!(errors.len(), 1, "{json}: {errors:?}");
            assert_eq!(errors[0].field, field);
            assert!(
                errors[0].message.contains("out of range"),
                "{}",
                errors[0].message
            );
        }
        let mut top = GuardSettings::default();
        top.gpu.release_timeout_secs = MAX_WAIT_SECS;
        top.vllm.drain_wait_secs = MAX_WAIT_SECS;
        assert_eq!(top.validate(), Ok(()), "the bounds themselves are allowed");
    }

    #[test]
    fn an_external_guard_gets_a_default_timeout() {
        let s: GuardSettings =
            serde_json::from_str(r#"{"external": [{"name": "x", "path": "/bin/true"}]}"#).unwrap();
        assert_eq!(s.external[0].timeout_secs, 5);
    }
}
