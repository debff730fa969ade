//! `gpu_display_released`: nobody but allowed daemons holds the display GPU.
//! Combines the `/proc/*/fd` scan (device numbers mapped to a GPU by PCI
//! address) with NVML's process lists, names every holder with pid, command,
//! user, unit and device, and treats unreadable processes as unknown.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

use crate::probe::gpu_topology::{self, normalize_pci, GpuTopology};
use crate::probe::nvml::{self, ContextKind, GpuSelector, NvmlAnswer, NvmlProbeError};
use crate::probe::passwd::UserNames;
use crate::probe::process::{self, ProcessIdentity};
use crate::probe::procfd::{self, DeviceKind, DeviceRule, OpenDevice};
use crate::settings::GpuSettings;
use crate::{Facts, Guard, Roots, Verdict};

pub const NAME: &str = "gpu_display_released";

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

/// A process that holds the display GPU.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuHolder {
    #[serde(flatten)]
    pub process: ProcessIdentity,
    /// The most telling device it holds (a per-GPU node before shared ones),
    /// or `nvml` when only NVML lists it.
    pub device: String,
    /// Every matching device node it holds.
    pub devices: Vec<String>,
    /// The context NVML lists for it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nvml_context: Option<ContextKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_memory_mib: Option<u64>,
}

/// A process whose open files could not be read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnknownHolder {
    pub pid: u32,
    pub comm: String,
    pub error: String,
}

/// The display GPU as resolved for this look.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DisplayGpu {
    pub pci: String,
    pub uuid: Option<String>,
    pub nvidia: bool,
    /// How it was chosen: `configured`, `boot_vga` or `only GPU`.
    pub chosen_by: &'static str,
    /// Its device nodes present under the device root (`/dev/dri/card1`,
    /// `/dev/nvidia0`): what a holder would have open.
    pub nodes: Vec<String>,
}

/// Everything one look found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DisplayGpuUse {
    pub display_gpu: DisplayGpu,
    pub holders: Vec<GpuHolder>,
    pub allowed: Vec<GpuHolder>,
    pub unreadable: Vec<UnknownHolder>,
    /// What NVML said, in words (`3 processes listed`, `not asked: ...`).
    pub nvml: String,
    #[serde(skip)]
    nvml_failed: bool,
    pub processes_scanned: usize,
    pub fds_scanned: usize,
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
            if verdict.outcome == crate::Outcome::Pass {
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
        display.nodes = device_nodes(&self.roots.dev, &display.pci, &topology);
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
        let myself = BTreeSet::from([std::process::id()]);
        let scan = procfd::scan(&self.roots.procfs, &rule, &myself, self.settings.fd_scan)
            .map_err(|e| format!("cannot list processes: {e}"))?;
        let users = UserNames::load(&self.roots.passwd);

        let mut on_display: BTreeMap<u32, Vec<OpenDevice>> = BTreeMap::new();
        for holder in scan.holders {
            let devices: Vec<OpenDevice> = holder
                .devices
                .into_iter()
                .filter(|d| touches_display(&d.kind, &display, &topology))
                .collect();
            if !devices.is_empty() {
                on_display.insert(holder.pid, devices);
            }
        }

        let (nvml_processes, nvml_words, nvml_failed) = self.ask_nvml(&display);
        let mut holders: BTreeMap<u32, GpuHolder> = on_display
            .into_iter()
            .map(|(pid, devices)| {
                let identity = process::identify(&self.roots.procfs, &users, pid);
                (pid, holder_from_devices(identity, devices))
            })
            .collect();
        for p in nvml_processes
            .into_iter()
            .filter(|p| !myself.contains(&p.pid))
        {
            let entry = holders.entry(p.pid).or_insert_with(|| GpuHolder {
                process: process::identify(&self.roots.procfs, &users, p.pid),
                device: "nvml".into(),
                devices: Vec::new(),
                nvml_context: None,
                gpu_memory_mib: None,
            });
            entry.nvml_context = Some(match (entry.nvml_context, p.context) {
                (Some(ContextKind::Graphics), _) | (_, ContextKind::Graphics) => {
                    ContextKind::Graphics
                }
                _ => ContextKind::Compute,
            });
            if let Some(bytes) = p.used_memory_bytes {
                *entry.gpu_memory_mib.get_or_insert(0) += bytes / (1024 * 1024);
            }
        }
        let (allowed, holders): (Vec<GpuHolder>, Vec<GpuHolder>) = holders
            .into_values()
            .partition(|h| h.process.is_allowed(&self.settings.allow));
        let unreadable = scan
            .unreadable
            .into_iter()
            .map(|u| UnknownHolder {
                pid: u.pid,
                comm: process::command_name(&self.roots.procfs, u.pid)
                    .unwrap_or_else(|| "?".into()),
                error: u.error,
            })
            .collect();
        Ok(Look::Seen(Box::new(DisplayGpuUse {
            display_gpu: display,
            holders,
            allowed,
            unreadable,
            nvml: nvml_words,
            nvml_failed,
            processes_scanned: scan.processes_scanned,
            fds_scanned: scan.fds_scanned,
        })))
    }

    fn ask_nvml(&self, display: &DisplayGpu) -> (Vec<nvml::NvmlProcess>, String, bool) {
        let selector = match self.settings.display_gpu.as_deref() {
            Some(s) if is_uuid(s) => GpuSelector::Uuid(s.to_string()),
            _ => GpuSelector::Pci(display.pci.clone()),
        };
        match nvml::gpu_processes(&self.settings.nvml_library, &selector) {
            Ok(NvmlAnswer::Processes(list)) => {
                let words = format!("{} processes listed", list.len());
                (list, words, false)
            }
            Ok(NvmlAnswer::NotNvidia) => (Vec::new(), "does not manage this GPU".into(), false),
            Err(e @ NvmlProbeError::LibraryMissing { .. }) | Err(e @ NvmlProbeError::Init(_)) => {
                (Vec::new(), format!("not asked: {e}"), true)
            }
            Err(e @ NvmlProbeError::Query(_)) => (Vec::new(), format!("failed: {e}"), true),
        }
    }

    fn judge(&self, found: DisplayGpuUse) -> Verdict {
        let gpu = found.display_gpu.pci.clone();
        let evidence = json!(found);
        if !found.holders.is_empty() {
            let names: Vec<String> = found.holders.iter().map(describe_holder).collect();
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
            return Verdict::fail(reason, evidence);
        }
        if !found.unreadable.is_empty() {
            let names: Vec<String> = found
                .unreadable
                .iter()
                .take(5)
                .map(|u| format!("{} (pid {}): {}", u.comm, u.pid, u.error))
                .collect();
            return Verdict::new(
                crate::Outcome::Error,
                format!(
                    "cannot tell whether the display GPU {gpu} is released: the open files of {} process{} could not be read: {}",
                    found.unreadable.len(),
                    if found.unreadable.len() == 1 { "" } else { "es" },
                    names.join("; ")
                ),
                evidence,
            );
        }
        if found.nvml_failed && self.settings.require_nvml {
            return Verdict::new(
                crate::Outcome::Error,
                format!(
                    "NVML is required (guard_settings.gpu.require_nvml) but {}",
                    found.nvml
                ),
                evidence,
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
        Verdict::new(crate::Outcome::Pass, reason, evidence)
    }
}

impl Guard for GpuDisplayReleased {
    fn name(&self) -> &str {
        NAME
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

fn is_uuid(s: &str) -> bool {
    s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("GPU-"))
        || s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("MIG-"))
}

/// Which GPU drives the display: the configured one, else the one marked
/// `boot_vga`, else the only one. `Ok(None)`: there is no GPU at all.
pub fn resolve_display(
    configured: Option<&str>,
    topology: &GpuTopology,
) -> Result<Option<DisplayGpu>, String> {
    let listed = || {
        let all: Vec<&str> = topology.gpus.iter().map(|g| g.pci.as_str()).collect();
        if all.is_empty() {
            "none".to_string()
        } else {
            all.join(", ")
        }
    };
    let from_info = |g: &gpu_topology::GpuInfo, chosen_by| DisplayGpu {
        pci: g.pci.clone(),
        uuid: g.uuid.clone(),
        nvidia: g.nvidia,
        chosen_by,
        nodes: Vec::new(),
    };
    match configured {
        Some(uuid) if is_uuid(uuid) => topology
            .gpus
            .iter()
            .find(|g| {
                g.uuid
                    .as_deref()
                    .is_some_and(|u| u.eq_ignore_ascii_case(uuid))
            })
            .map(|g| Some(from_info(g, "configured")))
            .ok_or_else(|| {
                format!(
                    "guard_settings.gpu.display_gpu: no GPU has UUID {uuid} (NVIDIA GPUs here: {})",
                    listed()
                )
            }),
        Some(address) => {
            let pci = normalize_pci(address).ok_or_else(|| {
                format!("guard_settings.gpu.display_gpu: {address:?} is neither a PCI address (0000:01:00.0) nor a GPU UUID (GPU-...)")
            })?;
            match topology.gpu(&pci) {
                Some(g) => Ok(Some(from_info(g, "configured"))),
                None if topology.gpus.is_empty() => Ok(Some(DisplayGpu {
                    pci,
                    uuid: None,
                    nvidia: false,
                    chosen_by: "configured",
                    nodes: Vec::new(),
                })),
                None => Err(format!(
                    "guard_settings.gpu.display_gpu: no GPU at {pci} (GPUs here: {})",
                    listed()
                )),
            }
        }
        None => {
            let boot: Vec<_> = topology.gpus.iter().filter(|g| g.boot_vga).collect();
            match (boot.as_slice(), topology.gpus.as_slice()) {
                ([one], _) => Ok(Some(from_info(one, "boot_vga"))),
                (_, []) => Ok(None),
                (_, [only]) => Ok(Some(from_info(only, "only GPU"))),
                _ => Err(format!(
                    "{} GPUs and none is marked as the boot display: set guard_settings.gpu.display_gpu to one of {}",
                    topology.gpus.len(),
                    listed()
                )),
            }
        }
    }
}

/// The device nodes of the GPU at `pci` that exist under `dev`.
fn device_nodes(dev: &std::path::Path, pci: &str, topology: &GpuTopology) -> Vec<String> {
    let drm = topology
        .gpu(pci)
        .map(|g| {
            g.drm_nodes
                .iter()
                .map(|n| dev.join("dri").join(n))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let nvidia = topology
        .nvidia_minors
        .iter()
        .filter(|(_, p)| p.as_str() == pci)
        .map(|(minor, _)| dev.join(format!("nvidia{minor}")));
    drm.into_iter()
        .chain(nvidia)
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect()
}

/// Whether an open node concerns the display GPU. Nodes that cannot be
/// mapped to a GPU count (better a false blocker than a wedged switch);
/// NVIDIA's shared nodes count only when the display GPU is the only
/// NVIDIA GPU.
fn touches_display(kind: &DeviceKind, display: &DisplayGpu, topology: &GpuTopology) -> bool {
    let is_display = |pci: Option<&String>| pci.is_none_or(|p| *p == display.pci);
    match kind {
        DeviceKind::NvidiaGpu { minor } => is_display(topology.nvidia_minors.get(minor)),
        DeviceKind::Drm { minor } => is_display(topology.drm_minors.get(minor)),
        DeviceKind::NvidiaControl
        | DeviceKind::NvidiaModeset
        | DeviceKind::NvidiaUvm
        | DeviceKind::NvidiaCaps => display.nvidia && topology.nvidia_gpu_count() <= 1,
        DeviceKind::StandIn { gpu } => *gpu == display.pci,
    }
}

fn device_rank(kind: &DeviceKind) -> u8 {
    match kind {
        DeviceKind::NvidiaGpu { .. } | DeviceKind::Drm { .. } | DeviceKind::StandIn { .. } => 0,
        _ => 1,
    }
}

fn holder_from_devices(process: ProcessIdentity, mut devices: Vec<OpenDevice>) -> GpuHolder {
    devices.sort_by_key(|d| (device_rank(&d.kind), d.path.clone()));
    let mut paths: Vec<String> = devices.iter().map(|d| d.path.clone()).collect();
    paths.dedup();
    GpuHolder {
        process,
        device: paths.first().cloned().unwrap_or_default(),
        devices: paths,
        nvml_context: None,
        gpu_memory_mib: None,
    }
}

fn describe_holder(h: &GpuHolder) -> String {
    let mut parts = vec![
        format!("pid {}", h.process.pid),
        format!("user {}", h.process.user),
    ];
    if let Some(unit) = &h.process.unit {
        parts.push(unit.clone());
    }
    parts.push(match h.nvml_context {
        Some(c) if h.devices.is_empty() => {
            format!("NVML {} context", json!(c).as_str().unwrap_or("?"))
        }
        _ => h.device.clone(),
    });
    format!("{} ({})", h.process.comm, parts.join(", "))
}
