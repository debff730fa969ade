//! `target_reachable`: every unit the plan would start exists and can be
//! loaded (not missing, not masked, no bad setting), so a transition never
//! stops the current mode only to find it cannot start the next one.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::spec::{Blocked, GuardSpec};
use crate::{Facts, Guard, Severity, UnitState, Verdict};

pub const SPEC: GuardSpec<Evidence> = GuardSpec {
    name: "target_reachable",
    severity: Severity::Hard,
    hard_when: None,
    after_teardown: None,
    build: |_, _| Arc::new(TargetReachable),
    advice,
};

/// The units to start that cannot be loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub units: Vec<UnitState>,
}

fn advice(b: &Blocked<Evidence>) -> Option<String> {
    if !b.failed {
        return None;
    }
    let units: Vec<&str> = b
        .evidence
        .iter()
        .flat_map(|e| &e.units)
        .map(|u| u.unit.as_str())
        .collect();
    Some(format!("install, unmask or fix {}", units.join(", ")))
}

pub struct TargetReachable;

impl Guard for TargetReachable {
    fn name(&self) -> &str {
        SPEC.name
    }

    fn check(&self, facts: &Facts) -> Verdict {
        let broken: Vec<UnitState> = facts
            .units_to_start
            .iter()
            .filter(|u| u.load_state != "loaded")
            .cloned()
            .collect();
        if broken.is_empty() {
            return Verdict::pass(format!(
                "all {} units to start for {} are loaded",
                facts.units_to_start.len(),
                facts.target_mode
            ));
        }
        let names: Vec<String> = broken
            .iter()
            .map(|u| format!("{} is {}", u.unit, u.load_state))
            .collect();
        SPEC.fail(
            format!("cannot reach {}: {}", facts.target_mode, names.join(", ")),
            &Evidence { units: broken },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::blocked;
    use crate::Outcome;

    fn unit(name: &str, load: &str) -> UnitState {
        UnitState {
            unit: name.into(),
            id: name.into(),
            load_state: load.into(),
            active_state: "inactive".into(),
            sub_state: "dead".into(),
        }
    }

    #[test]
    fn fails_naming_a_missing_and_a_masked_unit() {
        let mut f = Facts::new("compute");
        f.units_to_start = vec![
            unit("compute.target", "loaded"),
            unit("vllm.service", "not-found"),
            unit("train.service", "masked"),
        ];
        let v = TargetReachable.check(&f);
        assert_eq!(v.outcome, Outcome::Fail);
        assert!(
            v.reason.contains("vllm.service is not-found"),
            "{}",
            v.reason
        );
        assert!(v.reason.contains("train.service is masked"), "{}", v.reason);
    }

    #[test]
    fn the_advice_names_the_units_the_check_found() {
        let mut f = Facts::new("compute");
        f.units_to_start = vec![
            unit("compute.target", "loaded"),
            unit("vllm.service", "not-found"),
            unit("train.service", "masked"),
        ];
        let r = blocked(SPEC.name, TargetReachable.check(&f)).unwrap();
        assert_eq!(
            crate::advice(&r).unwrap(),
            "install, unmask or fix vllm.service, train.service"
        );
    }

    #[test]
    fn passes_when_every_unit_is_loaded() {
        let mut f = Facts::new("desktop");
        f.units_to_start = vec![unit("desktop.target", "loaded")];
        assert_eq!(TargetReachable.check(&f).outcome, Outcome::Pass);
    }
}
