//! `target_reachable`: every unit the plan would start exists and can be
//! loaded (not missing, not masked, no bad setting), so a transition never
//! stops the current mode only to find it cannot start the next one.

use serde_json::json;

use crate::{Facts, Guard, UnitState, Verdict};

pub struct TargetReachable;

impl Guard for TargetReachable {
    fn name(&self) -> &str {
        "target_reachable"
    }

    fn check(&self, facts: &Facts) -> Verdict {
        let broken: Vec<&UnitState> = facts
            .units_to_start
            .iter()
            .filter(|u| u.load_state != "loaded")
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
        Verdict::fail(
            format!("cannot reach {}: {}", facts.target_mode, names.join(", ")),
            json!({ "units": broken }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn passes_when_every_unit_is_loaded() {
        let mut f = Facts::new("desktop");
        f.units_to_start = vec![unit("desktop.target", "loaded")];
        assert_eq!(TargetReachable.check(&f).outcome, Outcome::Pass);
    }
}
