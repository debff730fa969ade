//! `cpu_load_safe`: the CPU is not saturated now: PSI `some avg10` for CPU
//! against a ceiling, or, on kernels without PSI, the 1-minute load average
//! per CPU against its own ceiling.

use serde_json::json;

use crate::probe::{loadavg, psi};
use crate::settings::CpuSettings;
use crate::{Facts, Guard, Roots, Verdict};

pub const NAME: &str = "cpu_load_safe";

pub struct CpuLoadSafe {
    settings: CpuSettings,
    roots: Roots,
}

impl CpuLoadSafe {
    pub fn new(settings: &CpuSettings, roots: &Roots) -> Self {
        Self {
            settings: settings.clone(),
            roots: roots.clone(),
        }
    }

    fn by_load_average(&self) -> Verdict {
        let (load, cpus) = match (
            loadavg::one_minute(&self.roots.procfs),
            loadavg::cpu_count(&self.roots.procfs),
        ) {
            (Ok(l), Ok(c)) => (l, c),
            (Err(e), _) | (_, Err(e)) => {
                return Verdict::new(
                    crate::Outcome::Error,
                    format!("no CPU PSI, and the load average cannot be read: {e}"),
                    json!({ "source": "loadavg" }),
                )
            }
        };
        let per_cpu = load / cpus as f64;
        let ceiling = self.settings.max_load_per_cpu;
        let evidence = json!({
            "source": "loadavg",
            "load_1min": load,
            "cpus": cpus,
            "load_per_cpu": per_cpu,
            "max_load_per_cpu": ceiling,
        });
        if per_cpu >= ceiling {
            return Verdict::fail(
                format!("load average {load:.2} on {cpus} CPUs is {per_cpu:.2} per CPU, at or above the ceiling of {ceiling:.2} (no CPU PSI here)"),
                evidence,
            );
        }
        Verdict::new(
            crate::Outcome::Pass,
            format!("load average {per_cpu:.2} per CPU, below {ceiling:.2} (no CPU PSI here)"),
            evidence,
        )
    }
}

impl Guard for CpuLoadSafe {
    fn name(&self) -> &str {
        NAME
    }

    fn check(&self, _facts: &Facts) -> Verdict {
        let pressure = match psi::read(&self.roots.procfs, "cpu") {
            Ok(Some(p)) => p,
            Ok(None) => return self.by_load_average(),
            Err(e) => return Verdict::error(format!("cannot read CPU pressure: {e}")),
        };
        let ceiling = self.settings.max_pressure_avg10;
        let evidence = json!({
            "source": "psi",
            "pressure_avg10": pressure.avg10,
            "pressure_avg60": pressure.avg60,
            "max_pressure_avg10": ceiling,
        });
        if pressure.avg10 >= ceiling {
            return Verdict::fail(
                format!(
                    "CPU pressure avg10 is {:.1}%, at or above the ceiling of {ceiling:.1}%",
                    pressure.avg10
                ),
                evidence,
            );
        }
        Verdict::new(
            crate::Outcome::Pass,
            format!(
                "CPU pressure avg10 {:.1}%, below {ceiling:.1}%",
                pressure.avg10
            ),
            evidence,
        )
    }
}
