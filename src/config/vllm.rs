//! vLLM profiles and GPU placement (opt-in): `vllm@compute.service` gets
//! every GPU; an optional, bounded `vllm@desktop.service` gets only the GPUs
//! that do not drive the display. Each profile's GPUs and memory share are
//! written to `/run/mode-controller/vllm-PROFILE.env`, and training units'
//! GPUs for the mode being entered to `training.env`. GPUs are named by
//! identity: UUIDs as they are, PCI addresses as indices in PCI order with
//! `CUDA_DEVICE_ORDER=PCI_BUS_ID`, so CUDA and NVML count them alike
//! (CUDA's default order is fastest-first, not PCI order).

use serde::{Deserialize, Serialize};

use super::Problem;

/// One vLLM profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VllmProfile {
    /// Whether the profile runs at all.
    pub enabled: bool,
    /// The share of each GPU's memory vLLM may use (0 < x <= 1).
    pub memory_fraction: f64,
}

/// The profiles, and the machine's GPUs in the order CUDA numbers them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VllmProfiles {
    /// Every GPU, all by PCI address or all by UUID (`GPU-…`), in any
    /// order. The one named by `guard_settings.gpu.display_gpu` drives the
    /// display.
    pub gpus: Vec<String>,
    pub compute: VllmProfile,
    /// Desktop-mode AI on the non-display GPU: off until switching is trusted.
    pub desktop: VllmProfile,
}

impl Default for VllmProfiles {
    fn default() -> Self {
        Self {
            gpus: vec![],
            compute: VllmProfile {
                enabled: true,
                memory_fraction: 0.9,
            },
            desktop: VllmProfile {
                enabled: false,
                memory_fraction: 0.5,
            },
        }
    }
}

pub const COMPUTE_UNIT: &str = "vllm@compute.service";
pub const DESKTOP_UNIT: &str = "vllm@desktop.service";

/// Where one profile runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VllmPlacement {
    pub unit: String,
    pub gpus: Vec<String>,
    /// `gpus` as `CUDA_VISIBLE_DEVICES` takes them: UUIDs, or indices in
    /// PCI order (with `CUDA_DEVICE_ORDER=PCI_BUS_ID`).
    pub cuda_visible_devices: String,
    /// `PCI_BUS_ID` when `cuda_visible_devices` holds indices.
    pub cuda_device_order: Option<&'static str>,
    pub memory_fraction: f64,
}

impl VllmPlacement {
    /// The CUDA part of an environment file.
    pub fn cuda_env(&self) -> String {
        let order = self
            .cuda_device_order
            .map(|o| format!("CUDA_DEVICE_ORDER={o}\n"))
            .unwrap_or_default();
        format!(
            "{order}CUDA_VISIBLE_DEVICES={}\n",
            self.cuda_visible_devices
        )
    }

    /// The environment file the profile's unit reads.
    pub fn env_file(&self) -> String {
        format!(
            "{}VLLM_GPU_MEMORY_UTILIZATION={}\n",
            self.cuda_env(),
            self.memory_fraction
        )
    }
}

fn is_uuid(gpu: &str) -> bool {
    gpu.get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("GPU-") || p.eq_ignore_ascii_case("MIG-"))
}

/// `chosen` (a subset of `all`) as CUDA names them: UUIDs as they are, PCI
/// addresses as their indices among `all` sorted by address.
fn cuda_names(all: &[String], chosen: &[&String]) -> (String, Option<&'static str>) {
    if chosen.iter().all(|g| is_uuid(g)) && all.iter().all(|g| is_uuid(g)) {
        let names: Vec<&str> = chosen.iter().map(|g| g.as_str()).collect();
        return (names.join(","), None);
    }
    let key = |g: &String| {
        mode_guards::probe::gpu_topology::normalize_pci(g).unwrap_or_else(|| g.to_ascii_lowercase())
    };
    let mut by_address: Vec<&String> = all.iter().collect();
    by_address.sort_by_key(|g| key(g));
    let mut indices: Vec<usize> = chosen
        .iter()
        .filter_map(|c| by_address.iter().position(|g| same_gpu(g, c)))
        .collect();
    indices.sort_unstable();
    let text: Vec<String> = indices.iter().map(usize::to_string).collect();
    (text.join(","), Some("PCI_BUS_ID"))
}

fn same_gpu(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.trim()
            .to_ascii_lowercase()
            .trim_start_matches("0000:")
            .to_string()
    };
    norm(a) == norm(b)
}

impl VllmProfiles {
    /// The enabled profiles with their GPUs: compute gets every GPU, desktop
    /// every GPU but the display one.
    pub fn placements(&self, display_gpu: Option<&str>) -> Vec<(&'static str, VllmPlacement)> {
        let place = |unit: &str, profile: &VllmProfile, keep: &dyn Fn(&str) -> bool| {
            let chosen: Vec<&String> = self.gpus.iter().filter(|g| keep(g)).collect();
            let (cuda_visible_devices, cuda_device_order) = cuda_names(&self.gpus, &chosen);
            VllmPlacement {
                unit: unit.to_string(),
                gpus: chosen.iter().map(|g| (*g).clone()).collect(),
                cuda_visible_devices,
                cuda_device_order,
                memory_fraction: profile.memory_fraction,
            }
        };
        let not_display = |g: &str| display_gpu.is_none_or(|d| !same_gpu(g, d));
        let mut out = Vec::new();
        if self.compute.enabled {
            out.push(("compute", place(COMPUTE_UNIT, &self.compute, &|_| true)));
        }
        if self.desktop.enabled {
            out.push(("desktop", place(DESKTOP_UNIT, &self.desktop, &not_display)));
        }
        out
    }

    /// The GPUs training units get in `mode` (`training.env`): every GPU in
    /// compute, every GPU but the display one elsewhere (none when there is
    /// no other).
    pub fn training_env(&self, compute: bool, display_gpu: Option<&str>) -> String {
        let chosen: Vec<&String> = self
            .gpus
            .iter()
            .filter(|g| compute || display_gpu.is_none_or(|d| !same_gpu(g, d)))
            .collect();
        let (visible, order) = cuda_names(&self.gpus, &chosen);
        VllmPlacement {
            unit: String::new(),
            gpus: vec![],
            cuda_visible_devices: visible,
            cuda_device_order: order,
            memory_fraction: 1.0,
        }
        .cuda_env()
    }

    /// `(field, message)` for the first unusable value.
    #[cfg(test)]
    pub fn validate(&self, display_gpu: Option<&str>) -> Result<(), Problem> {
        let mut out = Vec::new();
        self.problems(display_gpu, &mut out);
        super::validate::first(out)
    }

    /// Every unusable value, each naming its field.
    pub fn problems(&self, display_gpu: Option<&str>, out: &mut Vec<Problem>) {
        for (name, p) in [("compute", &self.compute), ("desktop", &self.desktop)] {
            if !(p.memory_fraction > 0.0 && p.memory_fraction <= 1.0) {
                out.push((
                    format!("vllm_profiles.{name}.memory_fraction"),
                    format!(
                        "{} is not a share: use a number above 0 and at most 1",
                        p.memory_fraction
                    ),
                ));
            }
        }
        let uuids = self.gpus.iter().filter(|g| is_uuid(g)).count();
        let bad = self
            .gpus
            .iter()
            .find(|g| !is_uuid(g) && mode_guards::probe::gpu_topology::normalize_pci(g).is_none());
        let list_problem = if self.gpus.is_empty() {
            Some("list the GPUs, by PCI address or by UUID".to_string())
        } else if uuids != 0 && uuids != self.gpus.len() {
            Some("name every GPU the same way, all by PCI address or all by UUID: a UUID's place in PCI order is not known here".to_string())
        } else {
            bad.map(|bad| {
                format!("{bad:?} is neither a PCI address (0000:01:00.0) nor a GPU UUID (GPU-...)")
            })
        };
        let list_ok = list_problem.is_none();
        if let Some(message) = list_problem {
            out.push(("vllm_profiles.gpus".into(), message));
        }
        if self.desktop.enabled {
            let Some(display) = display_gpu else {
                out.push((
                    "vllm_profiles.desktop.enabled".into(),
                    "the desktop profile needs guard_settings.gpu.display_gpu to know which GPU to leave alone".into(),
                ));
                return;
            };
            if !list_ok {
                return;
            }
            if !self.gpus.iter().any(|g| same_gpu(g, display)) {
                out.push((
                    "vllm_profiles.gpus".into(),
                    format!("the display GPU {display} is not in the list"),
                ));
            } else if self.gpus.len() < 2 {
                out.push((
                    "vllm_profiles.desktop.enabled".into(),
                    "the desktop profile needs a GPU besides the display one".into(),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_gpus(desktop: bool) -> VllmProfiles {
        VllmProfiles {
            gpus: vec!["0000:01:00.0".into(), "0000:41:00.0".into()],
            desktop: VllmProfile {
                enabled: desktop,
                memory_fraction: 0.5,
            },
            ..VllmProfiles::default()
        }
    }

    #[test]
    fn compute_gets_every_gpu_and_desktop_only_the_non_display_one() {
        let p = two_gpus(true).placements(Some("01:00.0"));
        assert_eq!(p[0].1.unit, COMPUTE_UNIT);
        assert_eq!(p[0].1.cuda_visible_devices, "0,1");
        assert_eq!(p[1].1.unit, DESKTOP_UNIT);
        assert_eq!(p[1].1.gpus, ["0000:41:00.0"]);
        assert_eq!(
            p[1].1.env_file(),
            "CUDA_DEVICE_ORDER=PCI_BUS_ID\nCUDA_VISIBLE_DEVICES=1\nVLLM_GPU_MEMORY_UTILIZATION=0.5\n"
        );
        assert_eq!(
            two_gpus(false).placements(Some("01:00.0")).len(),
            1,
            "desktop AI is off by default"
        );
    }

    #[test]
    fn indices_follow_pci_order_whatever_order_the_gpus_are_listed_in() {
        let mut p = two_gpus(true);
        // Listed display-GPU last: in PCI order the display GPU is still 0.
        p.gpus = vec!["0000:41:00.0".into(), "0000:01:00.0".into()];
        let placed = p.placements(Some("0000:01:00.0"));
        assert_eq!(placed[1].1.gpus, ["0000:41:00.0"]);
        assert_eq!(
            placed[1].1.cuda_visible_devices, "1",
            "41:00.0 is second by address"
        );
        assert_eq!(placed[1].1.cuda_device_order, Some("PCI_BUS_ID"));
        assert_eq!(placed[0].1.cuda_visible_devices, "0,1");
    }

    #[test]
    fn uuids_are_written_as_uuids_and_need_no_order() {
        let mut p = two_gpus(true);
        p.gpus = vec!["GPU-aaaa".into(), "GPU-bbbb".into()];
        let placed = p.placements(Some("GPU-aaaa"));
        assert_eq!(
            placed[1].1.env_file(),
            "CUDA_VISIBLE_DEVICES=GPU-bbbb\nVLLM_GPU_MEMORY_UTILIZATION=0.5\n"
        );
        p.gpus = vec!["GPU-aaaa".into(), "0000:41:00.0".into()];
        assert!(p
            .validate(Some("GPU-aaaa"))
            .unwrap_err()
            .1
            .contains("the same way"));
    }

    #[test]
    fn training_gets_every_gpu_in_compute_and_the_non_display_ones_elsewhere() {
        let p = two_gpus(false);
        assert_eq!(
            p.training_env(true, Some("0000:01:00.0")),
            "CUDA_DEVICE_ORDER=PCI_BUS_ID\nCUDA_VISIBLE_DEVICES=0,1\n"
        );
        assert_eq!(
            p.training_env(false, Some("0000:01:00.0")),
            "CUDA_DEVICE_ORDER=PCI_BUS_ID\nCUDA_VISIBLE_DEVICES=1\n"
        );
    }

    #[test]
    fn bad_profiles_name_the_field() {
        assert_eq!(
            two_gpus(true).validate(None).unwrap_err().0,
            "vllm_profiles.desktop.enabled"
        );
        assert!(two_gpus(true)
            .validate(Some("0000:02:00.0"))
            .unwrap_err()
            .1
            .contains("not in the list"));
        let mut p = two_gpus(false);
        p.compute.memory_fraction = 1.5;
        assert_eq!(
            p.validate(None).unwrap_err().0,
            "vllm_profiles.compute.memory_fraction"
        );
        assert!(two_gpus(true).validate(Some("0000:01:00.0")).is_ok());
    }
}
