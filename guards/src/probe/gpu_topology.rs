//! Which GPUs exist and which device numbers belong to which one, by PCI
//! address: DRM nodes from `<sysfs>/class/drm/*/{dev,device}`, NVIDIA minors
//! and UUIDs from `<procfs>/driver/nvidia/gpus/*/information`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::ProbeError;

/// One GPU as the kernel shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuInfo {
    /// PCI address, normalized (`0000:01:00.0`).
    pub pci: String,
    /// Driven by the NVIDIA driver (listed in `/proc/driver/nvidia/gpus`).
    pub nvidia: bool,
    /// NVIDIA's UUID (`GPU-...`), when the driver lists one.
    pub uuid: Option<String>,
    /// The firmware showed the boot console on it (`boot_vga` is 1).
    pub boot_vga: bool,
    /// Its DRM nodes (`card1`, `renderD128`).
    pub drm_nodes: Vec<String>,
}

/// Every GPU and the device numbers that lead to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpuTopology {
    pub gpus: Vec<GpuInfo>,
    /// DRM minor -> PCI address.
    pub drm_minors: BTreeMap<u32, String>,
    /// NVIDIA minor (`/dev/nvidiaN`) -> PCI address.
    pub nvidia_minors: BTreeMap<u32, String>,
}

impl GpuTopology {
    pub fn gpu(&self, pci: &str) -> Option<&GpuInfo> {
        self.gpus.iter().find(|g| g.pci == pci)
    }

    pub fn nvidia_gpu_count(&self) -> usize {
        self.gpus.iter().filter(|g| g.nvidia).count()
    }

    fn gpu_mut(&mut self, pci: &str) -> &mut GpuInfo {
        if let Some(i) = self.gpus.iter().position(|g| g.pci == pci) {
            return &mut self.gpus[i];
        }
        self.gpus.push(GpuInfo {
            pci: pci.to_string(),
            nvidia: false,
            uuid: None,
            boot_vga: false,
            drm_nodes: Vec::new(),
        });
        let last = self.gpus.len() - 1;
        &mut self.gpus[last]
    }
}

/// Read the topology. Absent directories mean "no such GPUs" (no DRM, no
/// NVIDIA driver); an unreadable one is an error.
pub fn read(procfs: &Path, sysfs: &Path) -> Result<GpuTopology, ProbeError> {
    let mut topology = GpuTopology::default();
    read_drm(&sysfs.join("class/drm"), &mut topology)?;
    read_nvidia(&procfs.join("driver/nvidia/gpus"), &mut topology)?;
    topology.gpus.sort_by(|a, b| a.pci.cmp(&b.pci));
    Ok(topology)
}

fn list_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>, ProbeError> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(entries.flatten().collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(ProbeError::read(dir, e)),
    }
}

fn read_drm(class_drm: &Path, topology: &mut GpuTopology) -> Result<(), ProbeError> {
    for entry in list_dir(class_drm)? {
        let name = entry.file_name().to_string_lossy().into_owned();
        // Connectors (`card1-HDMI-A-1`) and `version` are not device nodes.
        if !(name.starts_with("card") || name.starts_with("renderD")) || name.contains('-') {
            continue;
        }
        let node = entry.path();
        let Ok(dev) = std::fs::read_to_string(node.join("dev")) else {
            continue;
        };
        let Some(minor) = dev.trim().split_once(':').and_then(|(_, m)| m.parse().ok()) else {
            return Err(ProbeError::malformed(
                &node.join("dev"),
                format!("expected MAJOR:MINOR, found {:?}", dev.trim()),
            ));
        };
        let Some(pci) = std::fs::read_link(node.join("device"))
            .ok()
            .and_then(|target| target.file_name().map(|n| n.to_string_lossy().into_owned()))
            .and_then(|n| normalize_pci(&n))
        else {
            continue;
        };
        let boot_vga = std::fs::read_to_string(node.join("device/boot_vga"))
            .map(|s| s.trim() == "1")
            .unwrap_or(false);
        topology.drm_minors.insert(minor, pci.clone());
        let gpu = topology.gpu_mut(&pci);
        gpu.boot_vga |= boot_vga;
        gpu.drm_nodes.push(name);
        gpu.drm_nodes.sort();
    }
    Ok(())
}

fn read_nvidia(gpus_dir: &Path, topology: &mut GpuTopology) -> Result<(), ProbeError> {
    for entry in list_dir(gpus_dir)? {
        let dir_name = entry.file_name().to_string_lossy().into_owned();
        let information = entry.path().join("information");
        let text = super::read_text(&information)?;
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim_start_matches(':').trim().to_string())
        };
        let pci = field("Bus Location")
            .and_then(|p| normalize_pci(&p))
            .or_else(|| normalize_pci(&dir_name))
            .ok_or_else(|| ProbeError::malformed(&information, "no PCI bus location"))?;
        let minor = field("Device Minor").and_then(|m| m.parse::<u32>().ok());
        let uuid = field("GPU UUID");
        if let Some(minor) = minor {
            topology.nvidia_minors.insert(minor, pci.clone());
        }
        let gpu = topology.gpu_mut(&pci);
        gpu.nvidia = true;
        gpu.uuid = uuid;
    }
    Ok(())
}

/// Normalize a PCI address to `dddd:bb:dd.f` in lower case; NVML writes
/// the domain with eight digits (`00000000:01:00.0`).
pub fn normalize_pci(address: &str) -> Option<String> {
    let address = address.trim().to_ascii_lowercase();
    let (domain, rest) = match address.matches(':').count() {
        2 => address.split_once(':')?,
        1 => ("0", address.as_str()),
        _ => return None,
    };
    let domain = u32::from_str_radix(domain, 16).ok()?;
    let (bus, devfn) = rest.split_once(':')?;
    let (device, function) = devfn.split_once('.')?;
    let bus = u8::from_str_radix(bus, 16).ok()?;
    let device = u8::from_str_radix(device, 16).ok()?;
    let function = u8::from_str_radix(function, 16).ok()?;
    Some(format!("{domain:04x}:{bus:02x}:{device:02x}.{function:x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_addresses_are_normalized_from_nvml_and_sysfs_forms() {
        assert_eq!(
            normalize_pci("00000000:01:00.0").as_deref(),
            Some("0000:01:00.0")
        );
        assert_eq!(
            normalize_pci("0000:0A:00.1").as_deref(),
            Some("0000:0a:00.1")
        );
        assert_eq!(normalize_pci("01:00.0").as_deref(), Some("0000:01:00.0"));
        assert_eq!(normalize_pci("card0"), None);
    }
}
