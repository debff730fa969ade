//! vLLM profiles and GPU placement (opt-in): `vllm@compute.service` gets
//! every GPU; an optional, bounded `vllm@desktop.service` gets only the GPUs
//! that do not drive the display. Each profile's `CUDA_VISIBLE_DEVICES` and
//! memory share are written to `/run/mode-controller/vllm-PROFILE.env`.

use serde::{Deserialize, Serialize};

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
    /// Every GPU, by PCI address or UUID, in CUDA order. The one named by
    /// `guard_settings.gpu.display_gpu` drives the display.
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
    /// CUDA indices of `gpus`, as `CUDA_VISIBLE_DEVICES` takes them.
    pub cuda_visible_devices: String,
    pub memory_fraction: f64,
}

impl VllmPlacement {
    /// The environment file the profile's unit reads.
    pub fn env_file(&self) -> String {
        format!(
            "CUDA_VISIBLE_DEVICES={}\nVLLM_GPU_MEMORY_UTILIZATION={}\n",
            self.cuda_visible_devices, self.memory_fraction
        )
    }
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
            let chosen: Vec<(usize, &String)> = self
                .gpus
                .iter()
                .enumerate()
                .filter(|(_, g)| keep(g))
                .collect();
            VllmPlacement {
                unit: unit.to_string(),
                gpus: chosen.iter().map(|(_, g)| (*g).clone()).collect(),
                cuda_visible_devices: chosen
                    .iter()
                    .map(|(i, _)| i.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
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

    /// `(field, message)` for the first unusable value.
    pub fn validate(&self, display_gpu: Option<&str>) -> Result<(), (String, String)> {
        for (name, p) in [("compute", &self.compute), ("desktop", &self.desktop)] {
            if !(p.memory_fraction > 0.0 && p.memory_fraction <= 1.0) {
                return Err((
                    format!("vllm_profiles.{name}.memory_fraction"),
                    format!(
                        "{} is not a share: use a number above 0 and at most 1",
                        p.memory_fraction
                    ),
                ));
            }
        }
        if self.gpus.is_empty() {
            return Err((
                "vllm_profiles.gpus".into(),
                "list the GPUs (PCI address or UUID) in CUDA order".into(),
            ));
        }
        if self.desktop.enabled {
            let Some(display) = display_gpu else {
                return Err((
                    "vllm_profiles.desktop.enabled".into(),
                    "the desktop profile needs guard_settings.gpu.display_gpu to know which GPU to leave alone".into(),
                ));
            };
            if !self.gpus.iter().any(|g| same_gpu(g, display)) {
                return Err((
                    "vllm_profiles.gpus".into(),
                    format!("the display GPU {display} is not in the list"),
                ));
            }
            if self.gpus.len() < 2 {
                return Err((
                    "vllm_profiles.desktop.enabled".into(),
                    "the desktop profile needs a GPU besides the display one".into(),
                ));
            }
        }
        Ok(())
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
            "CUDA_VISIBLE_DEVICES=1\nVLLM_GPU_MEMORY_UTILIZATION=0.5\n"
        );
        assert_eq!(
            two_gpus(false).placements(Some("01:00.0")).len(),
            1,
            "desktop AI is off by default"
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
