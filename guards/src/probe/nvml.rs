//! NVML's view of one GPU: the processes with a graphics or compute context
//! on it, through `nvml-wrapper` loading libnvidia-ml from a configured
//! path. Initialized per question and shut down after, so nothing is held.

use std::path::Path;

use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;
use serde::{Deserialize, Serialize};

/// How NVML is asked for the GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuSelector {
    Pci(String),
    Uuid(String),
}

/// What kind of context a process has on the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContextKind {
    Graphics,
    Compute,
}

/// One process NVML lists on the GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NvmlProcess {
    pub pid: u32,
    pub context: ContextKind,
    /// GPU memory it uses, when NVML can tell.
    pub used_memory_bytes: Option<u64>,
}

/// NVML's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NvmlAnswer {
    Processes(Vec<NvmlProcess>),
    /// NVML does not know this GPU (not an NVIDIA GPU).
    NotNvidia,
}

#[derive(Debug, thiserror::Error)]
pub enum NvmlProbeError {
    #[error("NVML library {path} cannot be loaded: {detail}")]
    LibraryMissing { path: String, detail: String },
    #[error("NVML did not initialize: {0}")]
    Init(String),
    #[error("NVML could not list the processes on the GPU: {0}")]
    Query(String),
}

/// Ask NVML (from `library`) which processes use the GPU `gpu`.
pub fn gpu_processes(library: &Path, gpu: &GpuSelector) -> Result<NvmlAnswer, NvmlProbeError> {
    let nvml = Nvml::builder()
        .lib_path(library.as_os_str())
        .init()
        .map_err(|e| match e {
            NvmlError::LibloadingError(detail) => NvmlProbeError::LibraryMissing {
                path: library.display().to_string(),
                detail: detail.to_string(),
            },
            NvmlError::FailedToLoadSymbol(detail) => NvmlProbeError::LibraryMissing {
                path: library.display().to_string(),
                detail: format!("not an NVML library: {detail}"),
            },
            other => NvmlProbeError::Init(other.to_string()),
        })?;
    let device = match gpu {
        GpuSelector::Pci(pci) => nvml.device_by_pci_bus_id(pci.as_str()),
        GpuSelector::Uuid(uuid) => nvml.device_by_uuid(uuid.as_str()),
    };
    let device = match device {
        Ok(d) => d,
        Err(NvmlError::NotFound) => return Ok(NvmlAnswer::NotNvidia),
        Err(e) => return Err(NvmlProbeError::Query(e.to_string())),
    };
    let query = |e: NvmlError| NvmlProbeError::Query(e.to_string());
    let graphics = device.running_graphics_processes().map_err(query)?;
    let compute = device.running_compute_processes().map_err(query)?;
    let listed = graphics
        .into_iter()
        .map(|p| (p, ContextKind::Graphics))
        .chain(compute.into_iter().map(|p| (p, ContextKind::Compute)))
        .map(|(p, context)| NvmlProcess {
            pid: p.pid,
            context,
            used_memory_bytes: match p.used_gpu_memory {
                nvml_wrapper::enums::device::UsedGpuMemory::Used(b) => Some(b),
                nvml_wrapper::enums::device::UsedGpuMemory::Unavailable => None,
            },
        })
        .collect();
    Ok(NvmlAnswer::Processes(listed))
}
