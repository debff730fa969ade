//! `cpu_load_safe`: the CPU is not saturated now: PSI `some avg10` for CPU
//! against a ceiling, or, on kernels without PSI, the 1-minute load average
//! per CPU against its own ceiling.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::probe::{loadavg, psi};
use crate::settings::CpuSettings;
use crate::spec::{Blocked, GuardSpec};
use crate::{Facts, Guard, Outcome, Roots, Severity, Verdict};

pub const SPEC: GuardSpec<Evidence> = GuardSpec {
    name: "cpu_load_safe",
    severity: Severity::Soft,
    hard_when: None,
    after_teardown: None,
    build: |settings, roots| Arc::new(CpuLoadSafe::new(&settings.cpu, roots)),
    advice,
};

/// What the CPU was judged by: PSI, or the load average where there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum Evidence {
    Psi {
        pressure_avg10: f64,
        pressure_avg60: f64,
        max_pressure_avg10: f64,
    },
    Loadavg {
        load_1min: f64,
        cpus: usize,
        load_per_cpu: f64,
        max_load_per_cpu: f64,
    },
}

fn advice(b: &Blocked<Evidence>) -> Option<String> {
    if !b.failed {
        return None;
    }
    let which = match b.evidence {
        Some(Evidence::Loadavg { .. }) => "guard_settings.cpu.max_load_per_cpu",
        _ => "guard_settings.cpu.max_pressure_avg10",
    };
    Some(format!("wait for the CPU load to drop, or raise {which}"))
}

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
                return Verdict::error(format!(
                    "no CPU PSI, and the load average cannot be read: {e}"
                ))
            }
        };
        let per_cpu = load / cpus as f64;
        let ceiling = self.settings.max_load_per_cpu;
        let evidence = Evidence::Loadavg {
            load_1min: load,
            cpus,
            load_per_cpu: per_cpu,
            max_load_per_cpu: ceiling,
        };
        if per_cpu >= ceiling {
            return SPEC.fail(
                format!("load average {load:.2} on {cpus} CPUs is {per_cpu:.2} per CPU, at or above the ceiling of {ceiling:.2} (no CPU PSI here)"),
                &evidence,
            );
        }
        SPEC.verdict(
            Outcome::Pass,
            format!("load average {per_cpu:.2} per CPU, below {ceiling:.2} (no CPU PSI here)"),
            &evidence,
        )
    }
}

impl Guard for CpuLoadSafe {
    fn name(&self) -> &str {
        SPEC.name
    }

    fn check(&self, _facts: &Facts) -> Verdict {
        let pressure = match psi::read(&self.roots.procfs, "cpu") {
            Ok(Some(p)) => p,
            Ok(None) => return self.by_load_average(),
            Err(e) => return Verdict::error(format!("cannot read CPU pressure: {e}")),
        };
        let ceiling = self.settings.max_pressure_avg10;
        let evidence = Evidence::Psi {
            pressure_avg10: pressure.avg10,
            pressure_avg60: pressure.avg60,
            max_pressure_avg10: ceiling,
        };
        if pressure.avg10 >= ceiling {
            return SPEC.fail(
                format!(
                    "CPU pressure avg10 is {:.1}%, at or above the ceiling of {ceiling:.1}%",
                    pressure.avg10
                ),
                &evidence,
            );
        }
        SPEC.verdict(
            Outcome::Pass,
            format!(
                "CPU pressure avg10 {:.1}%, below {ceiling:.1}%",
                pressure.avg10
            ),
            &evidence,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_evidence_keeps_the_words_of_the_contract() {
        let psi = Evidence::Psi {
            pressure_avg10: 55.0,
            pressure_avg60: 20.0,
            max_pressure_avg10: 40.0,
        };
        assert_eq!(
            serde_json::to_value(&psi).unwrap(),
            json!({"source": "psi", "pressure_avg10": 55.0, "pressure_avg60": 20.0, "max_pressure_avg10": 40.0})
        );
        let load = Evidence::Loadavg {
            load_1min: 3.0,
            cpus: 2,
            load_per_cpu: 1.5,
            max_load_per_cpu: 1.5,
        };
        assert_eq!(
            serde_json::to_value(&load).unwrap(),
            json!({"source": "loadavg", "load_1min": 3.0, "cpus": 2, "load_per_cpu": 1.5, "max_load_per_cpu": 1.5})
        );
    }
}
