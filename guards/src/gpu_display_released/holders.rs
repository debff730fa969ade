//! Who holds the display GPU: the processes with one of its device nodes
//! open (from the `/proc/*/fd` scan) joined with NVML's process lists, each
//! named by pid, command, user and unit, split into holders and allowed
//! daemons; processes whose open files could not be read are kept apart as
//! unknown. What one look found is the guard's evidence (`DisplayGpuUse`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::topology::{is_uuid, touches_display, DisplayGpu};
use crate::probe::gpu_topology::GpuTopology;
use crate::probe::nvml::{self, ContextKind, GpuSelector, NvmlAnswer, NvmlProbeError};
use crate::probe::passwd::UserNames;
use crate::probe::process::{self, ProcessIdentity};
use crate::probe::procfd::{self, DeviceKind, DeviceRule, OpenDevice};
use crate::settings::GpuSettings;
use crate::Roots;

/// A process that holds the display GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuHolder {
    #[serde(flatten)]
    pub process: ProcessIdentity,
    /// The most telling device it holds (a per-GPU node before shared ones),
    /// or `nvml` when only NVML lists it.
    pub device: String,
    /// Every matching device node it holds.
    pub devices: Vec<String>,
    /// The context NVML lists for it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nvml_context: Option<ContextKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_memory_mib: Option<u64>,
}

/// A process whose open files could not be read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnknownHolder {
    pub pid: u32,
    pub comm: String,
    pub error: String,
}

/// Everything one look found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DisplayGpuUse {
    pub display_gpu: DisplayGpu,
    pub holders: Vec<GpuHolder>,
    pub allowed: Vec<GpuHolder>,
    pub unreadable: Vec<UnknownHolder>,
    /// What NVML said, in words (`3 processes listed`, `not asked: ...`).
    pub nvml: String,
    /// NVML could not be asked or failed (the reason's business, not evidence).
    #[serde(skip)]
    pub(crate) nvml_failed: bool,
    pub processes_scanned: usize,
    pub fds_scanned: usize,
}

/// One look at the processes holding `display` (matched by `rule`).
pub(super) fn gather(
    settings: &GpuSettings,
    roots: &Roots,
    rule: &DeviceRule,
    display: DisplayGpu,
    topology: &GpuTopology,
) -> Result<DisplayGpuUse, String> {
    let myself = BTreeSet::from([std::process::id()]);
    let scan = procfd::scan(&roots.procfs, rule, &myself)
        .map_err(|e| format!("cannot list processes: {e}"))?;
    let users = UserNames::load(&roots.users);

    let mut on_display: BTreeMap<u32, Vec<OpenDevice>> = BTreeMap::new();
    for holder in scan.holders {
        let devices: Vec<OpenDevice> = holder
            .devices
            .into_iter()
            .filter(|d| touches_display(&d.kind, &display, topology))
            .collect();
        if !devices.is_empty() {
            on_display.insert(holder.pid, devices);
        }
    }

    let (nvml_processes, nvml_words, nvml_failed) = ask_nvml(settings, &display);
    let mut holders: BTreeMap<u32, GpuHolder> = on_display
        .into_iter()
        .map(|(pid, devices)| {
            let identity = process::identify(&roots.procfs, &users, pid);
            (pid, holder_from_devices(identity, devices))
        })
        .collect();
    for p in nvml_processes
        .into_iter()
        .filter(|p| !myself.contains(&p.pid))
    {
        let entry = holders.entry(p.pid).or_insert_with(|| GpuHolder {
            process: process::identify(&roots.procfs, &users, p.pid),
            device: "nvml".into(),
            devices: Vec::new(),
            nvml_context: None,
            gpu_memory_mib: None,
        });
        entry.nvml_context = Some(match (entry.nvml_context, p.context) {
            (Some(ContextKind::Graphics), _) | (_, ContextKind::Graphics) => ContextKind::Graphics,
            _ => ContextKind::Compute,
        });
        if let Some(bytes) = p.used_memory_bytes {
            *entry.gpu_memory_mib.get_or_insert(0) += bytes / (1024 * 1024);
        }
    }
    let (allowed, holders): (Vec<GpuHolder>, Vec<GpuHolder>) = holders
        .into_values()
        .partition(|h| h.process.is_allowed(&settings.allow));
    let unreadable = scan
        .unreadable
        .into_iter()
        .map(|u| UnknownHolder {
            pid: u.pid,
            comm: process::command_name(&roots.procfs, u.pid).unwrap_or_else(|| "?".into()),
            error: u.error,
        })
        .collect();
    Ok(DisplayGpuUse {
        display_gpu: display,
        holders,
        allowed,
        unreadable,
        nvml: nvml_words,
        nvml_failed,
        processes_scanned: scan.processes_scanned,
        fds_scanned: scan.fds_scanned,
    })
}

fn ask_nvml(
    settings: &GpuSettings,
    display: &DisplayGpu,
) -> (Vec<nvml::NvmlProcess>, String, bool) {
    let selector = match settings.display_gpu.as_deref() {
        Some(s) if is_uuid(s) => GpuSelector::Uuid(s.to_string()),
        _ => GpuSelector::Pci(display.pci.clone()),
    };
    match nvml::gpu_processes(&settings.nvml_library, &selector) {
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

pub(super) fn describe_holder(h: &GpuHolder) -> String {
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
