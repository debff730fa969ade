//! The transition plan as data: one exhaustive `match` over (observed,
//! target) producing ordered steps. `apply`, `dry-run` and `explain` all read
//! the same plan, so what is explained is what will run.

use serde::Serialize;

use crate::config::{Config, SliceBudget};
use crate::mode::{Mode, ObservedMode};

/// One step of a transition.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Step {
    /// Apply a mode's budget to a slice (runtime properties).
    SetBudget {
        unit: String,
        budget: SliceBudget,
    },
    Stop {
        unit: String,
    },
    Start {
        unit: String,
    },
}

impl Step {
    pub fn action(&self) -> &'static str {
        match self {
            Step::SetBudget { .. } => "set-budget",
            Step::Stop { .. } => "stop",
            Step::Start { .. } => "start",
        }
    }

    pub fn unit(&self) -> &str {
        match self {
            Step::SetBudget { unit, .. } | Step::Stop { unit } | Step::Start { unit } => unit,
        }
    }

    /// The step in words, for `explain`.
    pub fn describe(&self) -> String {
        match self {
            Step::SetBudget { unit, budget } => {
                let text = serde_json::to_string(budget).unwrap_or_default();
                format!("set the budget of {unit} to {text}")
            }
            Step::Stop { unit } => format!("stop {unit}"),
            Step::Start { unit } => format!("start {unit}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub from: ObservedMode,
    pub to: Mode,
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn is_noop(&self) -> bool {
        self.steps.is_empty()
    }

    /// Units the plan starts, for the `target_reachable` guard.
    pub fn units_to_start(&self) -> Vec<String> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::Start { unit } => Some(unit.clone()),
                _ => None,
            })
            .collect()
    }
}

fn budgets(config: &Config, to: Mode) -> Vec<Step> {
    config
        .mode(to)
        .slices
        .iter()
        .map(|(slice, budget)| Step::SetBudget {
            unit: slice.clone(),
            budget: budget.clone(),
        })
        .collect()
}

/// Stop the overlay of `from` (last started, first stopped).
fn leave_overlay(config: &Config, from: Mode) -> Vec<Step> {
    config
        .mode(from)
        .overlay
        .iter()
        .rev()
        .map(|u| Step::Stop { unit: u.clone() })
        .collect()
}

fn enter_overlay(config: &Config, to: Mode) -> Vec<Step> {
    config
        .mode(to)
        .overlay
        .iter()
        .map(|u| Step::Start { unit: u.clone() })
        .collect()
}

/// Stop what `to` excludes, then start its target and companions.
fn switch_target(config: &Config, to: Mode) -> Vec<Step> {
    let m = config.mode(to);
    let stops = m.stop.iter().map(|u| Step::Stop { unit: u.clone() });
    let starts = std::iter::once(&m.target)
        .chain(&m.start)
        .map(|u| Step::Start { unit: u.clone() });
    stops.chain(starts).collect()
}

/// From an unknown state: stop every overlay `to` does not have, then the
/// full switch into `to`.
fn recover(config: &Config, to: Mode) -> Vec<Step> {
    let foreign_overlays = Mode::ALL
        .iter()
        .flat_map(|m| config.mode(*m).overlay.iter().rev())
        .filter(|u| !config.mode(to).overlay.contains(u))
        .fold(Vec::<String>::new(), |mut acc, u| {
            if !acc.contains(u) {
                acc.push(u.clone());
            }
            acc
        })
        .into_iter()
        .map(|unit| Step::Stop { unit });
    foreign_overlays
        .chain(switch_target(config, to))
        .chain(enter_overlay(config, to))
        .collect()
}

/// The ordered steps that take the machine from `from` to `to`.
pub fn plan(from: ObservedMode, to: Mode, config: &Config) -> Plan {
    use Mode as M;
    use ObservedMode as O;
    let moves: Vec<Step> = match (from, to) {
        (O::Desktop, M::Desktop) | (O::StudioLocal, M::StudioLocal) | (O::Compute, M::Compute) => {
            vec![]
        }
        (O::Desktop, M::StudioLocal) => enter_overlay(config, to),
        (O::StudioLocal, M::Desktop) => leave_overlay(config, M::StudioLocal),
        (O::Desktop, M::Compute) | (O::Compute, M::Desktop) => switch_target(config, to),
        (O::StudioLocal, M::Compute) => [
            leave_overlay(config, M::StudioLocal),
            switch_target(config, to),
        ]
        .concat(),
        // The studio is entered from a verified desktop: desktop first, then the overlay.
        (O::Compute, M::StudioLocal) => {
            [switch_target(config, M::Desktop), enter_overlay(config, to)].concat()
        }
        (O::Transitioning | O::FailedTransition, _) => recover(config, to),
    };
    let steps = if moves.is_empty() {
        moves
    } else {
        [budgets(config, to), moves].concat()
    };
    Plan { from, to, steps }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::defaults;

    fn words(p: &Plan) -> Vec<String> {
        p.steps
            .iter()
            .filter(|s| !matches!(s, Step::SetBudget { .. }))
            .map(|s| format!("{} {}", s.action(), s.unit()))
            .collect()
    }

    fn run(from: Mode, to: Mode) -> Plan {
        plan(from.into(), to, &defaults())
    }

    #[test]
    fn same_mode_is_a_noop_for_all_three() {
        for m in Mode::ALL {
            assert!(run(m, m).is_noop(), "{m}");
        }
    }

    #[test]
    fn desktop_to_compute_stops_the_graphical_stack_then_starts_compute() {
        assert_eq!(
            words(&run(Mode::Desktop, Mode::Compute)),
            [
                "stop desktop.target",
                "stop graphical.target",
                "stop display-manager.service",
                "start compute.target"
            ]
        );
    }

    #[test]
    fn compute_to_desktop_stops_compute_then_starts_the_desktop() {
        assert_eq!(
            words(&run(Mode::Compute, Mode::Desktop)),
            [
                "stop compute.target",
                "start desktop.target",
                "start graphical.target",
                "start display-manager.service"
            ]
        );
    }

    #[test]
    fn desktop_and_studio_only_touch_the_overlay() {
        assert_eq!(
            words(&run(Mode::Desktop, Mode::StudioLocal)),
            [
                "start studio-local-policy.service",
                "start audio-priority.service"
            ]
        );
        assert_eq!(
            words(&run(Mode::StudioLocal, Mode::Desktop)),
            [
                "stop audio-priority.service",
                "stop studio-local-policy.service"
            ]
        );
    }

    #[test]
    fn studio_to_compute_removes_the_overlay_first() {
        let w = words(&run(Mode::StudioLocal, Mode::Compute));
        assert_eq!(
            w[..2],
            [
                "stop audio-priority.service",
                "stop studio-local-policy.service"
            ]
        );
        assert_eq!(w.last().map(String::as_str), Some("start compute.target"));
    }

    #[test]
    fn compute_to_studio_goes_through_desktop() {
        let w = words(&run(Mode::Compute, Mode::StudioLocal));
        let desktop = words(&run(Mode::Compute, Mode::Desktop));
        assert_eq!(
            w[..desktop.len()],
            desktop[..],
            "the desktop switch comes first"
        );
        assert_eq!(
            w[desktop.len()..],
            [
                "start studio-local-policy.service",
                "start audio-priority.service"
            ]
        );
    }

    #[test]
    fn budgets_come_first_and_only_when_something_moves() {
        let p = run(Mode::Desktop, Mode::Compute);
        let budget_steps: Vec<&str> = p.steps.iter().take(3).map(Step::unit).collect();
        assert_eq!(
            budget_steps,
            ["ai.slice", "interactive.slice", "platform.slice"]
        );
        assert!(matches!(p.steps[0], Step::SetBudget { .. }));
    }

    #[test]
    fn recovery_from_an_unknown_state_clears_every_foreign_unit() {
        for from in [ObservedMode::FailedTransition, ObservedMode::Transitioning] {
            let w = words(&plan(from, Mode::Compute, &defaults()));
            assert!(w.contains(&"stop audio-priority.service".to_string()));
            assert!(w.contains(&"stop graphical.target".to_string()));
            assert_eq!(w.last().map(String::as_str), Some("start compute.target"));
            let d = words(&plan(from, Mode::StudioLocal, &defaults()));
            assert!(
                !d.contains(&"stop audio-priority.service".to_string()),
                "keeps its own overlay"
            );
            assert_eq!(
                d.last().map(String::as_str),
                Some("start audio-priority.service")
            );
        }
    }

    #[test]
    fn every_pair_ends_in_the_target_mode_shape() {
        for from in Mode::ALL {
            for to in Mode::ALL {
                let p = run(from, to);
                if from != to {
                    assert!(!p.is_noop(), "{from}->{to}");
                    let starts = p.units_to_start();
                    let wanted = defaults().mode(to).target.clone();
                    let overlay_change = matches!(
                        (from, to),
                        (Mode::Desktop, Mode::StudioLocal) | (Mode::StudioLocal, Mode::Desktop)
                    );
                    assert!(
                        overlay_change || starts.contains(&wanted),
                        "{from}->{to} starts {wanted}"
                    );
                }
            }
        }
    }
}
