//! The classifier: from unit states, the lock and the recorded state to the
//! observed mode, with the evidence that decided it; and drift, what
//! contradicts the mode's promise while its units say it holds. Pure: the
//! caller reads the world, this only judges it, so every rule is unit-tested.

use serde::Serialize;

use mode_guards::{SessionInfo, UnitState};

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
    /// What contradicts the mode's promise (it does not change `mode`).
    pub drift: Vec<Drift>,
}

/// One contradiction of the observed mode's promise, with its evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// `workload` (compute's, outside compute), `session` (a graphical
    /// session in compute) or `gpu-holder` (the display GPU held in compute).
    pub kind: &'static str,
    /// The unit that drifted, for a workload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// What was seen, in one sentence.
    pub evidence: String,
    /// How it clears.
    pub clears: String,
}

/// What else was read for drift: the state of compute's workloads (vLLM
/// units and what compute's target wants) and the logind sessions.
#[derive(Debug, Clone, Default)]
pub struct DriftFacts {
    pub workloads: Vec<UnitState>,
    pub sessions: Vec<SessionInfo>,
}

/// Drift of `mode`: compute's workloads running outside compute (unless the
/// mode starts them itself, as a vLLM profile); a graphical user session in
/// compute.
pub fn drift(mode: ObservedMode, facts: &DriftFacts, config: &Config) -> Vec<Drift> {
    let Some(mode) = mode.as_mode() else {
        return vec![];
    };
    let mine = config.mode(mode);
    let mut found = Vec::new();
    if mode != Mode::Compute {
        for u in facts.workloads.iter().filter(|u| is_running(u)) {
            if mine.start.contains(&u.unit) || mine.overlay.contains(&u.unit) {
                continue;
            }
            found.push(Drift {
                kind: "workload",
                unit: Some(u.unit.clone()),
                evidence: format!(
                    "{} is {} in {mode}: it is a compute workload",
                    u.label(),
                    u.active_state
                ),
                clears: format!(
                    "`mode reconcile` (or `mode request {mode}`) stops it, draining vLLM first"
                ),
            });
        }
    } else {
        let compositors = &config.guard_settings.sessions.compositors;
        for s in &facts.sessions {
            if let Some(why) = s.graphical_because(compositors) {
                found.push(Drift {
                    kind: "session",
                    unit: None,
                    evidence: format!("session {} of {} is a graphical session in compute ({why})", s.id, s.user),
                    clears: "the user logs out (`loginctl terminate-session ID`); the controller never ends a session".into(),
                });
            }
        }
    }
    found
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
    // A vLLM profile's unit that has simply not been started yet (boot does
    // not start it; the next switch does) leaves the mode what it is; one
    // that failed does not.
    let profile_units = if config.vllm_profiles.is_some() {
        config.vllm_units()
    } else {
        vec![]
    };
    let not_started = |name: &str| {
        profile_units.iter().any(|u| u == name)
            && find(units, name).is_none_or(|u| u.active_state == "inactive")
    };
    for name in must_run {
        if !running(name) && !not_started(name) {
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

impl Observation {
    /// The vLLM profile units `to` runs that are not running now (inactive
    /// or failed): a switch to `to` starts them.
    pub fn profile_units_not_running(&self, to: Mode, config: &Config) -> Vec<String> {
        if config.vllm_profiles.is_none() {
            return vec![];
        }
        let profile_units = config.vllm_units();
        config
            .mode(to)
            .start
            .iter()
            .filter(|u| profile_units.contains(u))
            .filter(|u| !find(&self.units, u).is_some_and(is_running))
            .cloned()
            .collect()
    }

    /// The workloads that drifted into this mode: what clearing it stops.
    pub fn strays(&self) -> Vec<String> {
        self.drift.iter().filter_map(|d| d.unit.clone()).collect()
    }
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
        drift: vec![],
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
                id: name.clone(),
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

    fn unit(name: &str, state: &str) -> UnitState {
        UnitState {
            unit: name.into(),
            id: name.into(),
            load_state: "loaded".into(),
            active_state: state.into(),
            sub_state: "x".into(),
        }
    }

    #[test]
    fn a_compute_workload_running_outside_compute_is_drift_naming_it() {
        let facts = DriftFacts {
            workloads: vec![
                unit("vllm.service", "active"),
                unit("train.service", "inactive"),
            ],
            sessions: vec![],
        };
        for mode in [ObservedMode::Desktop, ObservedMode::StudioLocal] {
            let d = drift(mode, &facts, &defaults());
            assert_eq!(d.len(), 1, "{d:?}");
            assert_eq!(d[0].kind, "workload");
            assert_eq!(d[0].unit.as_deref(), Some("vllm.service"));
            assert!(
                d[0].evidence.contains("vllm.service is active in"),
                "{}",
                d[0].evidence
            );
            assert!(d[0].clears.contains("mode reconcile"), "{}", d[0].clears);
        }
        assert!(drift(ObservedMode::Compute, &facts, &defaults()).is_empty());
        assert!(drift(ObservedMode::Transitioning, &facts, &defaults()).is_empty());
    }

    #[test]
    fn a_unit_the_mode_starts_itself_is_not_drift() {
        let mut c = defaults();
        c.modes.desktop.start.push("vllm@desktop.service".into());
        let facts = DriftFacts {
            workloads: vec![unit("vllm@desktop.service", "active")],
            sessions: vec![],
        };
        assert!(drift(ObservedMode::Desktop, &facts, &c).is_empty());
    }

    #[test]
    fn a_graphical_session_in_compute_is_drift_and_the_word_stays_compute() {
        let session = SessionInfo {
            id: "3".into(),
            uid: 1000,
            user: "alice".into(),
            seat: "seat0".into(),
            session_type: "wayland".into(),
            class: "user".into(),
            state: "active".into(),
            leader: 1,
            idle_hint: false,
            idle_since_usec: 0,
            started_usec: 0,
            remote: false,
            processes: vec![],
        };
        let facts = DriftFacts {
            workloads: vec![],
            sessions: vec![session],
        };
        let d = drift(ObservedMode::Compute, &facts, &defaults());
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].kind, "session");
        assert!(
            d[0].evidence.contains("session 3 of alice"),
            "{}",
            d[0].evidence
        );
        assert!(drift(ObservedMode::Desktop, &facts, &defaults()).is_empty());
    }
}
