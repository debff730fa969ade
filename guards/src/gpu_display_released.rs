//! `gpu_display_released`: nobody but allowed daemons holds the display GPU.
//! Combines the `/proc/*/fd` scan (device numbers mapped to a GPU by PCI
//! address) with NVML's process lists, names every holder with pid, command,
//! user, unit and device, and treats unreadable processes as unknown. This
//! file is the guard: its spec, one look or the post-teardown polling, and
//! the verdict; `topology` says which GPU is the display's, `holders` who
//! holds it.

mod holders;
mod topology;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::probe::gpu_topology;
use crate::probe::procfd::DeviceRule;
use crate::settings::GpuSettings;
use crate::spec::{Blocked, GuardSpec};
use crate::{Facts, Guard, Outcome, Roots, Severity, Verdict};

pub use holders::{DisplayGpuUse, GpuHolder, UnknownHolder};
pub use topology::{resolve_display, ChosenBy, DisplayGpu};

/// Soft before the switch (the display still runs then); checked again,
/// as hard and polling, once the display is stopped.
pub const SPEC: GuardSpec<DisplayGpuUse> = GuardSpec {
    name: "gpu_display_released",
    severity: Severity::Soft,
    hard_when: None,
    after_teardown: Some(|settings, roots| {
        Arc::new(GpuDisplayReleased::new(&settings.gpu, roots).waiting_until_released())
    }),
    build: |settings, roots| Arc::new(GpuDisplayReleased::new(&settings.gpu, roots)),
    advice,
};

fn advice(b: &Blocked<DisplayGpuUse>) -> Option<String> {
    let found = b.evidence.as_ref();
    if b.failed {
        let holders = found.map_or(&[][..], |f| f.holders.as_slice());
        let (them, they) = crate::advice::them(holders.len());
        let names = holders
            .iter()
            .map(|h| (h.process.comm.as_str(), Some(h.process.pid)));
        return Some(format!(
            "close {} (or stop their units), or add {them} to guard_settings.gpu.allow if {they} may keep the display GPU",
            crate::advice::processes(names)
        ));
    }
    Some(if found.is_some_and(|f| !f.unreadable.is_empty()) {
        "run the check as root (mode apply runs as root) so every process's open files can be read"
            .into()
    } else {
        "check guard_settings.gpu (display_gpu, nvml_library) against the GPUs this machine has"
            .into()
    })
}

/// Where the device-number rule comes from.
#[derive(Debug, Clone)]
enum RuleSource {
    /// Read `<procfs>/devices` at every look (dynamic majors can change).
    System,
    Fixed(DeviceRule),
}

/// The guard. `check` looks once; built with `waiting_until_released` it
/// looks again every `poll_interval_ms` until released or
/// `release_timeout_secs` (the post-teardown verification).
#[derive(Debug, Clone)]
pub struct GpuDisplayReleased {
    settings: GpuSettings,
    roots: Roots,
    rule: RuleSource,
    wait: Option<(Duration, Duration)>,
}

enum Look {
    NoGpu(String),
    Seen(Box<DisplayGpuUse>),
}

impl GpuDisplayReleased {
    /// The guard on the real device numbers (NVIDIA 195, DRM 226, and the
    /// dynamic majors in `<procfs>/devices`).
    pub fn new(settings: &GpuSettings, roots: &Roots) -> Self {
        Self {
            settings: settings.clone(),
            roots: roots.clone(),
            rule: RuleSource::System,
            wait: None,
        }
    }

    /// Match fds with `rule` instead (stand-in devices in tests).
    pub fn with_device_rule(mut self, rule: DeviceRule) -> Self {
        self.rule = RuleSource::Fixed(rule);
        self
    }

    /// Poll until released, for the post-teardown verification.
    pub fn waiting_until_released(mut self) -> Self {
        self.wait = Some((
            Duration::from_secs(self.settings.release_timeout_secs),
            Duration::from_millis(self.settings.poll_interval_ms.max(10)),
        ));
        self
    }

    /// One look at who holds the display GPU; `Err` when it cannot be
    /// decided which GPU that is or procfs cannot be listed.
    pub fn inspect(&self) -> Result<Option<DisplayGpuUse>, String> {
        match self.look()? {
            Look::NoGpu(_) => Ok(None),
            Look::Seen(u) => Ok(Some(*u)),
        }
    }

    /// Poll every `interval` until the display GPU is released or `timeout`
    /// passes; the verdict of the last look, saying how long it waited.
    pub fn wait_until_released(&self, timeout: Duration, interval: Duration) -> Verdict {
        let started = Instant::now();
        loop {
            let verdict = match self.look() {
                // Which GPU, or whether procfs can be read, does not change
                // by waiting.
                Err(why) => return Verdict::error(why),
                Ok(Look::NoGpu(why)) => return Verdict::skipped(why),
                Ok(Look::Seen(found)) => self.judge(*found),
            };
            let waited = started.elapsed();
            if verdict.outcome == Outcome::Pass {
                return if waited >= interval {
                    Verdict {
                        reason: format!(
                            "released after {:.1} s: {}",
                            waited.as_secs_f64(),
                            verdict.reason
                        ),
                        ..verdict
                    }
                } else {
                    verdict
                };
            }
            if waited.saturating_add(interval) > timeout {
                return Verdict {
                    reason: format!(
                        "still not released after {:.1} s: {}",
                        waited.as_secs_f64(),
                        verdict.reason
                    ),
                    ..verdict
                };
            }
            std::thread::sleep(interval);
        }
    }

    fn verdict_of_one_look(&self) -> Verdict {
        match self.look() {
            Err(why) => Verdict::error(why),
            Ok(Look::NoGpu(why)) => Verdict::skipped(why),
            Ok(Look::Seen(found)) => self.judge(*found),
        }
    }

    fn look(&self) -> Result<Look, String> {
        let topology = gpu_topology::read(&self.roots.procfs, &self.roots.sysfs)
            .map_err(|e| format!("cannot tell which GPUs exist: {e}"))?;
        let Some(mut display) = resolve_display(self.settings.display_gpu.as_deref(), &topology)?
        else {
            return Ok(Look::NoGpu(
                "no GPU on this machine (none in sysfs DRM or the NVIDIA driver)".into(),
            ));
        };
        display.nodes = topology::device_nodes(&self.roots.dev, &display.pci, &topology);
        let rule = match &self.rule {
            RuleSource::System => {
                let mut rule = DeviceRule::system(&self.roots.procfs)
                    .map_err(|e| format!("cannot read the device numbers: {e}"))?;
                for (i, extra) in self.settings.extra_devices.iter().enumerate() {
                    let stand_in = extra
                        .stand_in()
                        .map_err(|e| format!("guard_settings.gpu.extra_devices[{i}]: {e}"))?;
                    rule.stand_ins.push(stand_in);
                }
                rule
            }
            RuleSource::Fixed(rule) => rule.clone(),
        };
        holders::gather(&self.settings, &self.roots, &rule, display, &topology)
            .map(|found| Look::Seen(Box::new(found)))
    }

    fn judge(&self, found: DisplayGpuUse) -> Verdict {
        let gpu = found.display_gpu.pci.clone();
        if !found.holders.is_empty() {
            let names: Vec<String> = found.holders.iter().map(holders::describe_holder).collect();
            let mut reason = format!(
                "{} process{} still hold{} the display GPU {gpu}: {}",
                found.holders.len(),
                if found.holders.len() == 1 { "" } else { "es" },
                if found.holders.len() == 1 { "s" } else { "" },
                names.join(", ")
            );
            if !found.unreadable.is_empty() {
                reason.push_str(&format!(
                    "; {} more could not be read",
                    found.unreadable.len()
                ));
            }
            return SPEC.fail(reason, &found);
        }
        if !found.unreadable.is_empty() {
            let names: Vec<String> = found
                .unreadable
                .iter()
                .take(5)
                .map(|u| format!("{} (pid {}): {}", u.comm, u.pid, u.error))
                .collect();
            return SPEC.verdict(
                Outcome::Error,
                format!(
                    "cannot tell whether the display GPU {gpu} is released: the open files of {} process{} could not be read: {}",
                    found.unreadable.len(),
                    if found.unreadable.len() == 1 { "" } else { "es" },
                    names.join("; ")
                ),
                &found,
            );
        }
        if found.nvml_failed && self.settings.require_nvml {
            return SPEC.verdict(
                Outcome::Error,
                format!(
                    "NVML is required (guard_settings.gpu.require_nvml) but {}",
                    found.nvml
                ),
                &found,
            );
        }
        let mut reason = format!(
            "no process holds the display GPU {gpu} ({} processes, {} fds scanned; NVML {})",
            found.processes_scanned, found.fds_scanned, found.nvml
        );
        if !found.allowed.is_empty() {
            let names: Vec<String> = found
                .allowed
                .iter()
                .map(|h| format!("{} (pid {})", h.process.comm, h.process.pid))
                .collect();
            reason.push_str(&format!("; allowed: {}", names.join(", ")));
        }
        SPEC.verdict(Outcome::Pass, reason, &found)
    }
}

impl Guard for GpuDisplayReleased {
    fn name(&self) -> &str {
        SPEC.name
    }

    fn timeout(&self) -> Duration {
        match self.wait {
            Some((timeout, interval)) => timeout
                .saturating_add(interval)
                .saturating_add(Duration::from_secs(5)),
            None => Duration::from_secs(5),
        }
    }

    fn check(&self, _facts: &Facts) -> Verdict {
        match self.wait {
            Some((timeout, interval)) => self.wait_until_released(timeout, interval),
            None => self.verdict_of_one_look(),
        }
    }
}
