//! `memory_headroom`: enough memory is available for the next mode
//! (`MemAvailable` against a floor) and the machine is not already stalling
//! on memory (PSI `some avg10` against a ceiling; absent PSI is skipped).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::probe::{meminfo, psi};
use crate::settings::MemorySettings;
use crate::spec::{Blocked, GuardSpec};
use crate::{Facts, Guard, Outcome, Roots, Severity, Verdict};

pub const SPEC: GuardSpec<Evidence> = GuardSpec {
    name: "memory_headroom",
    severity: Severity::Soft,
    hard_when: None,
    after_teardown: None,
    build: |settings, roots| Arc::new(MemoryHeadroom::new(&settings.memory, roots)),
    advice,
};

/// The figures and how each of the two checks came out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub available_mib: u64,
    pub total_mib: u64,
    pub min_available_mib: u64,
    /// `None`: the kernel has no memory PSI.
    pub pressure_avg10: Option<f64>,
    pub max_pressure_avg10: f64,
    pub checked: Checked,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checked {
    /// `pass` or `fail`.
    pub available: Outcome,
    /// `pass`, `fail` or `skipped` (no PSI).
    pub pressure: Outcome,
}

fn advice(b: &Blocked<Evidence>) -> Option<String> {
    if !b.failed {
        return None;
    }
    let checked = b.evidence.as_ref().map(|e| &e.checked);
    let low = checked.is_none_or(|c| c.available == Outcome::Fail);
    let stalling = checked.is_none_or(|c| c.pressure == Outcome::Fail);
    let settings = match (low, stalling) {
        (true, false) => "lower guard_settings.memory.min_available_mib",
        (false, true) => "raise guard_settings.memory.max_pressure_avg10",
        _ => "lower guard_settings.memory.min_available_mib / raise max_pressure_avg10",
    };
    Some(format!("close memory-hungry programs, or {settings}"))
}

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
        SPEC.name
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
        let evidence = Evidence {
            available_mib,
            total_mib: memory.total_kib / 1024,
            min_available_mib: floor,
            pressure_avg10: pressure.map(|p| p.avg10),
            max_pressure_avg10: ceiling,
            checked: Checked {
                available: if available_mib < floor {
                    Outcome::Fail
                } else {
                    Outcome::Pass
                },
                pressure: match pressure {
                    None => Outcome::Skipped,
                    Some(p) if p.avg10 >= ceiling => Outcome::Fail,
                    Some(_) => Outcome::Pass,
                },
            },
        };
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
            return SPEC.fail(problems.join("; "), &evidence);
        }
        match pressure {
            Some(p) => SPEC.verdict(
                Outcome::Pass,
                format!("{available_mib} MiB available (floor {floor}), memory pressure avg10 {:.1}% (ceiling {ceiling:.1}%)", p.avg10),
                &evidence,
            ),
            // MemAvailable alone cannot say the machine is not thrashing.
            None => SPEC.verdict(
                Outcome::Skipped,
                format!(
                    "{available_mib} MiB available (floor {floor}), but the kernel has no memory PSI ({}/pressure/memory), so pressure was not checked",
                    self.roots.procfs.display()
                ),
                &evidence,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_evidence_keeps_the_words_of_the_contract() {
        let e = Evidence {
            available_mib: 1000,
            total_mib: 31250,
            min_available_mib: 4096,
            pressure_avg10: None,
            max_pressure_avg10: 10.0,
            checked: Checked {
                available: Outcome::Fail,
                pressure: Outcome::Skipped,
            },
        };
        // Stored as a `serde_json::Value`, as `SPEC.verdict` stores it.
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({
                "available_mib": 1000,
                "total_mib": 31250,
                "min_available_mib": 4096,
                "pressure_avg10": null,
                "max_pressure_avg10": 10.0,
                "checked": {"available": "fail", "pressure": "skipped"},
            })
        );
    }
}
