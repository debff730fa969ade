//! The idle decision as a pure function: from the observed mode, the idle
//! signals and the guards' blockers to "promote" or "stay", with every reason
//! that stands in the way (not just the first), so one read says it all.

use serde::Serialize;

use crate::mode::ObservedMode;

use super::signals::{Audio, CpuPressure, Presence};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Request compute.
    Promote,
    /// Leave the machine as it is.
    Stay,
}

/// What the decision is made from.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub observed: ObservedMode,
    pub presence: &'a Presence,
    /// How long the seat has been idle; `None` when it is not idle or it is
    /// not known since when.
    pub idle_secs: Option<u64>,
    pub threshold_secs: u64,
    pub audio: &'a Audio,
    pub cpu: &'a CpuPressure,
    pub max_cpu_pressure: f64,
    /// `name: reason` of each guard that blocks compute.
    pub blockers: Vec<String>,
}

/// Decide, with the reasons: for `Stay`, everything that stands in the way;
/// for `Promote`, what made it idle enough.
pub fn decide(i: &Inputs) -> (Decision, Vec<String>) {
    let mut why_not = Vec::new();
    match i.observed {
        ObservedMode::Desktop => {}
        ObservedMode::Compute => why_not.push("the machine is already in compute".to_string()),
        ObservedMode::StudioLocal => why_not.push(
            "the machine is in studio-local: idle automation never leaves the studio (a quiet studio is not an unattended one)".to_string(),
        ),
        ObservedMode::Transitioning => {
            why_not.push("a transition is running; idle automation waits for it".to_string())
        }
        ObservedMode::FailedTransition => why_not.push(
            "the machine is in failed-transition; `mode reconcile` (or a request) settles it first".to_string(),
        ),
    }
    match (i.presence, i.idle_secs) {
        (Presence::Active { sessions }, _) => why_not.push(format!(
            "not idle: {} active (logind IdleHint=no)",
            sessions.join(", ")
        )),
        // Only a desktop counts unattended time; elsewhere the mode said it all.
        (_, None) if i.observed != ObservedMode::Desktop => {}
        (_, None) => why_not.push(
            "nobody is logged in; unattended time counts from the first check run by root that saw it, and there has been none yet".to_string(),
        ),
        (_, Some(secs)) if secs < i.threshold_secs => why_not.push(format!(
            "idle for {secs} s, less than the threshold of {} s",
            i.threshold_secs
        )),
        _ => {}
    }
    match i.audio {
        Audio::Playing { clients } => {
            why_not.push(format!("audio is in use: {}", clients.join(", ")))
        }
        Audio::Unreadable { problem } => {
            why_not.push(format!("cannot tell whether audio is playing: {problem}"))
        }
        Audio::Absent | Audio::Idle => {}
    }
    if let CpuPressure::Read { avg60 } = i.cpu {
        if *avg60 > i.max_cpu_pressure {
            why_not.push(format!(
                "the desktop is still working: CPU pressure {avg60:.1}% (avg60) is above {:.1}%",
                i.max_cpu_pressure
            ));
        }
    }
    for b in &i.blockers {
        why_not.push(format!("guard {b}"));
    }
    if !why_not.is_empty() {
        return (Decision::Stay, why_not);
    }
    let secs = i.idle_secs.unwrap_or(0);
    let who = match i.presence {
        Presence::IdleSessions { sessions, .. } => {
            format!("every graphical session is idle ({})", sessions.join(", "))
        }
        Presence::Greeter { session, .. } => format!("only the greeter is up ({session})"),
        Presence::Nobody => "nobody is logged in".to_string(),
        Presence::Active { .. } => String::new(),
    };
    (
        Decision::Promote,
        vec![
            format!(
                "idle for {secs} s, at least the threshold of {} s: {who}",
                i.threshold_secs
            ),
            "no guard blocks compute".to_string(),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn greeter() -> Presence {
        Presence::Greeter {
            since: String::new(),
            since_ms: 0,
            session: "session c1 of gdm (wayland, greeter)".into(),
        }
    }

    fn inputs<'a>(presence: &'a Presence, audio: &'a Audio, cpu: &'a CpuPressure) -> Inputs<'a> {
        Inputs {
            observed: ObservedMode::Desktop,
            presence,
            idle_secs: Some(2000),
            threshold_secs: 1800,
            audio,
            cpu,
            max_cpu_pressure: 40.0,
            blockers: vec![],
        }
    }

    #[test]
    fn promotes_an_unattended_desktop_past_the_threshold() {
        let (p, a, c) = (greeter(), Audio::Idle, CpuPressure::Read { avg60: 3.0 });
        let (d, why) = decide(&inputs(&p, &a, &c));
        assert_eq!(d, Decision::Promote, "{why:?}");
        assert!(
            why[0].contains("idle for 2000 s") && why[0].contains("greeter"),
            "{why:?}"
        );
    }

    #[test]
    fn never_promotes_from_studio_local_or_while_transitioning() {
        let (p, a, c) = (greeter(), Audio::Absent, CpuPressure::Absent);
        for (observed, word) in [
            (ObservedMode::StudioLocal, "studio-local"),
            (ObservedMode::Transitioning, "transition is running"),
            (ObservedMode::Compute, "already in compute"),
            (ObservedMode::FailedTransition, "failed-transition"),
        ] {
            let i = Inputs {
                observed,
                ..inputs(&p, &a, &c)
            };
            let (d, why) = decide(&i);
            assert_eq!(d, Decision::Stay);
            assert!(why[0].contains(word), "{why:?}");
        }
    }

    #[test]
    fn an_active_session_short_idle_audio_cpu_and_guards_are_all_named() {
        let p = Presence::Active {
            sessions: vec!["session 3 of alice (wayland, user)".into()],
        };
        let a = Audio::Playing {
            clients: vec!["pw-record (pid 42, alice) records on studio-in (pw-record)".into()],
        };
        let c = CpuPressure::Read { avg60: 63.25 };
        let i = Inputs {
            blockers: vec!["graphical_session_absent: 1 graphical session is still open".into()],
            ..inputs(&p, &a, &c)
        };
        let (d, why) = decide(&i);
        assert_eq!(d, Decision::Stay);
        let all = why.join(" | ");
        for part in [
            "session 3 of alice",
            "pw-record (pid 42, alice) records on studio-in",
            "CPU pressure 63.2%",
            "guard graphical_session_absent",
        ] {
            assert!(all.contains(part), "{part} missing from {all}");
        }
    }

    #[test]
    fn idle_below_the_threshold_stays_and_says_how_long() {
        let (p, a, c) = (greeter(), Audio::Idle, CpuPressure::Absent);
        let i = Inputs {
            idle_secs: Some(120),
            ..inputs(&p, &a, &c)
        };
        let (d, why) = decide(&i);
        assert_eq!(d, Decision::Stay);
        assert_eq!(why, ["idle for 120 s, less than the threshold of 1800 s"]);
    }

    #[test]
    fn outside_desktop_an_uncounted_empty_seat_is_not_a_second_reason() {
        let (p, a, c) = (Presence::Nobody, Audio::Absent, CpuPressure::Absent);
        let i = Inputs {
            observed: ObservedMode::Compute,
            idle_secs: None,
            ..inputs(&p, &a, &c)
        };
        assert_eq!(
            decide(&i),
            (
                Decision::Stay,
                vec!["the machine is already in compute".to_string()]
            )
        );
    }

    #[test]
    fn unknown_idle_time_and_unreadable_audio_stay() {
        let p = Presence::Nobody;
        let a = Audio::Unreadable {
            problem: "cannot read /proc/asound/card0".into(),
        };
        let c = CpuPressure::Absent;
        let i = Inputs {
            idle_secs: None,
            ..inputs(&p, &a, &c)
        };
        let (d, why) = decide(&i);
        assert_eq!(d, Decision::Stay);
        assert!(
            why[0].contains("none yet") && why[1].contains("audio"),
            "{why:?}"
        );
    }
}
