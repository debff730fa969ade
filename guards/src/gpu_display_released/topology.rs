//! Which GPU is the display GPU and what belongs to it: the configured
//! one, the firmware's boot display or the only GPU (`resolve_display`);
//! its device nodes under `/dev`; and whether a device node someone holds
//! concerns it. Reads only the topology `probe::gpu_topology` gathered.

use serde::{Deserialize, Serialize};

use crate::probe::gpu_topology::{normalize_pci, GpuInfo, GpuTopology};
use crate::probe::procfd::DeviceKind;

/// The display GPU as resolved for this look.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DisplayGpu {
    pub pci: String,
    pub uuid: Option<String>,
    pub nvidia: bool,
    /// How it was chosen: `configured`, `boot_vga` or `only GPU`.
    pub chosen_by: ChosenBy,
    /// Its device nodes present under the device root (`/dev/dri/card1`,
    /// `/dev/nvidia0`): what a holder would have open.
    pub nodes: Vec<String>,
}

/// How the display GPU was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChosenBy {
    /// `guard_settings.gpu.display_gpu` names it.
    #[serde(rename = "configured")]
    Configured,
    /// The firmware booted the display on it.
    #[serde(rename = "boot_vga")]
    BootVga,
    /// It is the machine's only GPU.
    #[serde(rename = "only GPU")]
    OnlyGpu,
}

pub(super) fn is_uuid(s: &str) -> bool {
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
    let from_info = |g: &GpuInfo, chosen_by| DisplayGpu {
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
            .map(|g| Some(from_info(g, ChosenBy::Configured)))
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
                Some(g) => Ok(Some(from_info(g, ChosenBy::Configured))),
                None if topology.gpus.is_empty() => Ok(Some(DisplayGpu {
                    pci,
                    uuid: None,
                    nvidia: false,
                    chosen_by: ChosenBy::Configured,
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
                ([one], _) => Ok(Some(from_info(one, ChosenBy::BootVga))),
                (_, []) => Ok(None),
                (_, [only]) => Ok(Some(from_info(only, ChosenBy::OnlyGpu))),
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
pub(super) fn device_nodes(
    dev: &std::path::Path,
    pci: &str,
    topology: &GpuTopology,
) -> Vec<String> {
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
pub(super) fn touches_display(
    kind: &DeviceKind,
    display: &DisplayGpu,
    topology: &GpuTopology,
) -> bool {
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
