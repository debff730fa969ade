//! The classifier: from unit states, the lock and the recorded state to the
//! observed mode, with the evidence that decided it. Pure: the caller reads
//! the world, this only judges it, so every rule is unit-tested.

use serde::Serialize;

use mode_guards::UnitState;

use crate::config::Config;
use crate::mode::{Mode, ObservedMode};
use crate::state::LockHolder;

/// The observed mode and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Observation {
    pub mode: ObservedMode,
    /// One sentence saying what decided it.
    pub reason: String,
    /// The unit states that were read.
    pub units: Vec<UnitState>,
}

fn is_running(u: &UnitState) -> bool {
    matches!(u.active_state.as_str(), "active" | "reloading")
}

fn is_moving(u: &UnitState) -> bool {
    matches!(
        u.active_state.as_str(),
        "activating" | "deactivating" | "reloading"
    )
}

fn find<'a>(units: &'a [UnitState], name: &str) -> Option<&'a UnitState> {
    units.iter().find(|u| u.unit == name)
}

/// Where the units disagree with `mode`: `(unit, state, wanted)` for each.
pub fn mismatches(
    mode: Mode,
    units: &[UnitState],
    config: &Config,
) -> Vec<(String, String, &'static str)> {
    let m = config.mode(mode);
    let state_of =
        |name: &str| find(units, name).map_or("unknown".to_string(), |u| u.active_state.clone());
    let running = |name: &str| find(units, name).is_some_and(is_running);
    let mut wrong = Vec::new();
    let must_run = std::iter::once(&m.target).chain(&m.start).chain(&m.overlay);
    for name in must_run {
        if !running(name) {
            wrong.push((name.clone(), state_of(name), "active"));
        }
    }
    let other_overlays = Mode::ALL
        .iter()
        .flat_map(|o| &config.mode(*o).overlay)
        .filter(|u| !m.overlay.contains(u));
    for name in m.stop.iter().chain(other_overlays) {
        if running(name) && !wrong.iter().any(|w| &w.0 == name) {
            wrong.push((name.clone(), state_of(name), "inactive"));
        }
    }
    wrong
}

/// Classify. `lock` is the live holder of the transition lock (pass `None`
/// from inside the transition that holds it); `recorded` is the `current` file.
pub fn classify(
    units: Vec<UnitState>,
    config: &Config,
    lock: Option<&LockHolder>,
    recorded: Option<ObservedMode>,
) -> Observation {
    let verdict = |mode, reason: String| (mode, reason);
    // A lock held by something that is not the controller is no transition
    // (status names it; requests are busy until it goes).
    let (mode, reason) = if let Some(holder) = lock.filter(|h| h.controller) {
        verdict(
            ObservedMode::Transitioning,
            format!("a transition holds the lock ({holder})"),
        )
    } else if let Some(u) = units
        .iter()
        .filter(|u| !config.keep_running.contains(&u.unit))
        .find(|u| is_moving(u))
    {
        verdict(
            ObservedMode::Transitioning,
            format!("{} is {}", u.unit, u.active_state),
        )
    } else if recorded == Some(ObservedMode::FailedTransition) {
        verdict(
            ObservedMode::FailedTransition,
            "the last transition failed and its rollback did not complete (see last-transition.json); run `mode reconcile`".into(),
        )
    } else {
        // studio-local before desktop: it is desktop plus the overlay.
        let order = [Mode::StudioLocal, Mode::Desktop, Mode::Compute];
        match order
            .into_iter()
            .find(|m| mismatches(*m, &units, config).is_empty())
        {
            Some(m) => {
                let target = &config.mode(m).target;
                let overlay = &config.mode(m).overlay;
                let why = if overlay.is_empty() {
                    format!("{target} is active and nothing of another mode runs")
                } else {
                    format!(
                        "{target} and the overlay ({}) are active",
                        overlay.join(", ")
                    )
                };
                verdict(m.into(), why)
            }
            None => {
                // Name what differs from the nearest modes (all that tie).
                let all: Vec<_> = order
                    .into_iter()
                    .map(|m| (m, mismatches(m, &units, config)))
                    .collect();
                let fewest = all.iter().map(|(_, w)| w.len()).min().unwrap_or(0);
                let detail = all
                    .iter()
                    .filter(|(_, w)| w.len() == fewest)
                    .flat_map(|(m, wrong)| {
                        wrong
                            .iter()
                            .map(move |(u, s, want)| format!("{u} is {s}, {m} wants it {want}"))
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                verdict(
                    ObservedMode::FailedTransition,
                    format!("the units match no mode: {detail}"),
                )
            }
        }
    };
    Observation {
        mode,
        reason,
        units,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::defaults;

    fn world(active: &[&str]) -> Vec<UnitState> {
        let c = defaults();
        c.managed_units()
            .into_iter()
            .map(|name| UnitState {
                active_state: if active.contains(&name.as_str()) {
                    "active"
                } else {
                    "inactive"
                }
                .into(),
                sub_state: "x".into(),
                load_state: "loaded".into(),
                unit: name,
            })
            .collect()
    }

    fn set(units: &mut [UnitState], name: &str, state: &str) {
        units
            .iter_mut()
            .filter(|u| u.unit == name)
            .for_each(|u| u.active_state = state.into());
    }

    fn classify_world(active: &[&str]) -> Observation {
        classify(world(active), &defaults(), None, None)
    }

    const DESKTOP: [&str; 4] = [
        "desktop.target",
        "graphical.target",
        "display-manager.service",
        "k3s.service",
    ];

    #[test]
    fn desktop_studio_and_compute_are_recognised() {
        assert_eq!(classify_world(&DESKTOP).mode, ObservedMode::Desktop);
        let studio = [
            &DESKTOP[..],
            &["studio-local-policy.service", "audio-priority.service"],
        ]
        .concat();
        assert_eq!(classify_world(&studio).mode, ObservedMode::StudioLocal);
        let o = classify_world(&["compute.target", "k3s.service"]);
        assert_eq!(o.mode, ObservedMode::Compute);
        assert!(
            o.reason.contains("compute.target is active"),
            "{}",
            o.reason
        );
    }

    #[test]
    fn half_an_overlay_matches_no_mode_and_says_which_unit() {
        let o = classify_world(&[&DESKTOP[..], &["audio-priority.service"]].concat());
        assert_eq!(o.mode, ObservedMode::FailedTransition);
        assert!(
            o.reason.contains("audio-priority.service is active"),
            "{}",
            o.reason
        );
    }

    #[test]
    fn graphical_and_compute_together_match_no_mode() {
        let o = classify_world(&["compute.target", "graphical.target", "k3s.service"]);
        assert_eq!(o.mode, ObservedMode::FailedTransition);
        assert!(
            o.reason
                .contains("graphical.target is active, compute wants it inactive"),
            "{}",
            o.reason
        );
    }

    #[test]
    fn a_held_lock_or_a_moving_unit_is_transitioning() {
        let holder = LockHolder {
            pid: Some(7),
            transition_id: Some("t".into()),
            controller: true,
            command: None,
        };
        let o = classify(world(&DESKTOP), &defaults(), Some(&holder), None);
        assert_eq!(o.mode, ObservedMode::Transitioning);
        assert!(o.reason.contains("pid 7"));
        let mut units = world(&DESKTOP);
        set(&mut units, "graphical.target", "deactivating");
        assert_eq!(
            classify(units, &defaults(), None, None).mode,
            ObservedMode::Transitioning
        );
    }

    #[test]
    fn k3s_restarting_does_not_make_a_transition() {
        let mut units = world(&DESKTOP);
        set(&mut units, "k3s.service", "activating");
        assert_eq!(
            classify(units, &defaults(), None, None).mode,
            ObservedMode::Desktop
        );
    }

    #[test]
    fn a_recorded_failed_rollback_is_reported_until_fixed() {
        let o = classify(
            world(&DESKTOP),
            &defaults(),
            None,
            Some(ObservedMode::FailedTransition),
        );
        assert_eq!(o.mode, ObservedMode::FailedTransition);
        assert!(o.reason.contains("mode reconcile"));
        let o = classify(
            world(&DESKTOP),
            &defaults(),
            None,
            Some(ObservedMode::Compute),
        );
        assert_eq!(
            o.mode,
            ObservedMode::Desktop,
            "live units win over a stale record"
        );
    }

    #[test]
    fn a_failed_display_manager_counts_as_stopped() {
        let mut units = world(&["compute.target", "k3s.service"]);
        set(&mut units, "display-manager.service", "failed");
        assert_eq!(
            classify(units, &defaults(), None, None).mode,
            ObservedMode::Compute
        );
    }
}
