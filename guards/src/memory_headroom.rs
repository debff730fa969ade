//! `memory_headroom`: enough memory is available for the next mode
//! (`MemAvailable` against a floor) and the machine is not already stalling
//! on memory (PSI `some avg10` against a ceiling; absent PSI is skipped).

use serde_json::json;

use crate::probe::{meminfo, psi};
use crate::settings::MemorySettings;
use crate::{Facts, Guard, Outcome, Roots, Verdict};

pub const NAME: &str = "memory_headroom";

pub struct MemoryHeadroom {
    settings: MemorySettings,
    roots: Roots,
}

impl MemoryHeadroom {
    pub fn new(settings: &MemorySettings, roots: &Roots) -> Self {
        Self {
            settings: settings.clone(),
            roots: roots.clone(),
        }
    }
}

impl Guard for MemoryHeadroom {
    fn name(&self) -> &str {
        NAME
    }

    fn check(&self, _facts: &Facts) -> Verdict {
        let memory = match meminfo::read(&self.roots.procfs) {
            Ok(m) => m,
            Err(e) => return Verdict::error(format!("cannot read available memory: {e}")),
        };
        let available_mib = memory.available_kib / 1024;
        let floor = self.settings.min_available_mib;
        let pressure = match psi::read(&self.roots.procfs, "memory") {
            Ok(p) => p,
            Err(e) => return Verdict::error(format!("cannot read memory pressure: {e}")),
        };
        let ceiling = self.settings.max_pressure_avg10;
        let evidence = json!({
            "available_mib": available_mib,
            "total_mib": memory.total_kib / 1024,
            "min_available_mib": floor,
            "pressure_avg10": pressure.map(|p| p.avg10),
            "max_pressure_avg10": ceiling,
            "checked": {
                "available": if available_mib < floor { "fail" } else { "pass" },
                "pressure": match pressure {
                    None => "skipped",
                    Some(p) if p.avg10 >= ceiling => "fail",
                    Some(_) => "pass",
                },
            },
        });
        let mut problems = Vec::new();
        if available_mib < floor {
            problems.push(format!(
                "only {available_mib} MiB available, below the floor of {floor} MiB"
            ));
        }
        if let Some(p) = pressure.filter(|p| p.avg10 >= ceiling) {
            problems.push(format!(
                "memory pressure avg10 is {:.1}%, at or above the ceiling of {ceiling:.1}%",
                p.avg10
            ));
        }
        if !problems.is_empty() {
            return Verdict::fail(problems.join("; "), evidence);
        }
        match pressure {
            Some(p) => Verdict::new(
                Outcome::Pass,
                format!("{available_mib} MiB available (floor {floor}), memory pressure avg10 {:.1}% (ceiling {ceiling:.1}%)", p.avg10),
                evidence,
            ),
            // MemAvailable alone cannot say the machine is not thrashing.
            None => Verdict::new(
                Outcome::Skipped,
                format!(
                    "{available_mib} MiB available (floor {floor}), but the kernel has no memory PSI ({}/pressure/memory), so pressure was not checked",
                    self.roots.procfs.display()
                ),
                evidence,
            ),
        }
    }
}
