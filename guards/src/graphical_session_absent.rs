//! `graphical_session_absent`: compute needs the display GPU, so nobody may
//! still be logged in to a graphical session. A greeter is fine (the
//! transition stops the display manager); a user's graphical session is not,
//! and is named with its id, user, type and the rule that made it graphical
//! (`SessionInfo::graphical_because`: logind's type, or a compositor among
//! its processes, as with greetd's auto-login or a TTY login).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::spec::{Blocked, GuardSpec};
use crate::{Facts, Guard, SessionInfo, SessionSettings, Severity, Verdict};

pub const SPEC: GuardSpec<Evidence> = GuardSpec {
    name: "graphical_session_absent",
    severity: Severity::Hard,
    hard_when: None,
    after_teardown: None,
    build: |settings, _| Arc::new(GraphicalSessionAbsent::new(&settings.sessions)),
    advice,
};

/// The graphical sessions still open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub sessions: Vec<Open>,
}

/// A session found graphical, and why (the evidence names the rule).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Open {
    #[serde(flatten)]
    pub session: SessionInfo,
    pub graphical_because: String,
}

fn advice(b: &Blocked<Evidence>) -> Option<String> {
    if !b.failed {
        return None;
    }
    let sessions: Vec<String> = b
        .evidence
        .iter()
        .flat_map(|e| &e.sessions)
        .map(|o| format!("session {} ({})", o.session.id, o.session.user))
        .collect();
    Some(format!(
        "log out of {} first (loginctl terminate-session ID)",
        sessions.join(", ")
    ))
}

pub struct GraphicalSessionAbsent {
    compositors: Vec<String>,
}

impl GraphicalSessionAbsent {
    pub fn new(settings: &SessionSettings) -> Self {
        Self {
            compositors: settings.compositors.clone(),
        }
    }
}

impl Guard for GraphicalSessionAbsent {
    fn name(&self) -> &str {
        SPEC.name
    }

    fn check(&self, facts: &Facts) -> Verdict {
        let sessions = match &facts.sessions {
            Ok(s) => s,
            Err(why) => return Verdict::error(format!("cannot list logind sessions: {why}")),
        };
        let open: Vec<Open> = sessions
            .iter()
            .filter_map(|s| {
                s.graphical_because(&self.compositors)
                    .map(|graphical_because| Open {
                        session: s.clone(),
                        graphical_because,
                    })
            })
            .collect();
        if open.is_empty() {
            return Verdict::pass("no graphical user session is open");
        }
        let names: Vec<String> = open
            .iter()
            .map(|o| {
                let s = &o.session;
                format!(
                    "session {} of {} ({}, {}: {})",
                    s.id,
                    s.user,
                    if s.session_type.is_empty() {
                        "unspecified"
                    } else {
                        &s.session_type
                    },
                    s.state,
                    o.graphical_because
                )
            })
            .collect();
        SPEC.fail(
            format!(
                "{} graphical session{} still open: {}; log out first",
                open.len(),
                if open.len() == 1 { " is" } else { "s are" },
                names.join(", ")
            ),
            &Evidence { sessions: open },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::blocked;
    use crate::{Outcome, SliceProcess};

    fn session(id: &str, ty: &str, class: &str, state: &str) -> SessionInfo {
        SessionInfo {
            id: id.into(),
            uid: 1000,
            user: "alice".into(),
            seat: "seat0".into(),
            session_type: ty.into(),
            class: class.into(),
            state: state.into(),
            leader: 42,
            idle_hint: false,
            idle_since_usec: 0,
            started_usec: 0,
            remote: false,
            processes: vec![],
        }
    }

    fn running(mut s: SessionInfo, command: &str) -> SessionInfo {
        s.processes.push(SliceProcess {
            pid: 4242,
            command: command.into(),
        });
        s
    }

    fn facts(sessions: Vec<SessionInfo>) -> Facts {
        Facts {
            sessions: Ok(sessions),
            ..Facts::new("compute")
        }
    }

    fn guard() -> GraphicalSessionAbsent {
        GraphicalSessionAbsent::new(&SessionSettings::default())
    }

    #[test]
    fn fails_naming_an_active_wayland_session() {
        let v = guard().check(&facts(vec![session("2", "wayland", "user", "active")]));
        assert_eq!(v.outcome, Outcome::Fail);
        assert!(
            v.reason
                .contains("session 2 of alice (wayland, active: logind types it wayland)"),
            "{}",
            v.reason
        );
        assert_eq!(v.evidence["sessions"][0]["id"], "2");
        assert_eq!(
            v.evidence["sessions"][0]["graphical_because"],
            "logind types it wayland"
        );
    }

    #[test]
    fn a_session_of_any_type_running_a_compositor_is_graphical_and_names_it() {
        // greetd's auto-login (Type unspecified) and a TTY login, both running sway.
        for ty in ["", "unspecified", "tty"] {
            let s = running(session("5", ty, "user", "active"), "/usr/bin/sway -d");
            let v = guard().check(&facts(vec![s]));
            assert_eq!(v.outcome, Outcome::Fail, "{ty}: {}", v.reason);
            assert!(
                v.reason.contains("runs the compositor sway (pid 4242)"),
                "{}",
                v.reason
            );
        }
    }

    #[test]
    fn passes_with_only_a_greeter_a_plain_tty_a_remote_or_a_closing_session() {
        let mut remote = running(session("6", "tty", "user", "active"), "sway");
        remote.remote = true;
        let greeter = running(session("c1", "wayland", "greeter", "active"), "sway");
        let v = guard().check(&facts(vec![
            greeter,
            running(session("3", "tty", "user", "active"), "-bash"),
            session("4", "x11", "user", "closing"),
            remote,
        ]));
        assert_eq!(v.outcome, Outcome::Pass, "{}", v.reason);
    }

    #[test]
    fn the_compositor_list_is_configurable() {
        let s = running(session("7", "tty", "user", "active"), "my-compositor");
        assert_eq!(
            guard().check(&facts(vec![s.clone()])).outcome,
            Outcome::Pass
        );
        let mine = GraphicalSessionAbsent::new(&SessionSettings {
            compositors: vec!["my-compositor".into()],
        });
        assert_eq!(mine.check(&facts(vec![s])).outcome, Outcome::Fail);
    }

    #[test]
    fn the_advice_names_the_sessions_the_check_found() {
        let mut bob = session("9", "x11", "user", "online");
        bob.user = "bob".into();
        let v = guard().check(&facts(vec![session("2", "wayland", "user", "active"), bob]));
        let r = blocked(SPEC.name, v).unwrap();
        assert_eq!(
            crate::advice(&r).unwrap(),
            "log out of session 2 (alice), session 9 (bob) first (loginctl terminate-session ID)"
        );
    }

    #[test]
    fn errors_when_logind_could_not_be_asked() {
        let mut f = Facts::new("compute");
        f.sessions = Err("no bus".into());
        assert_eq!(guard().check(&f).outcome, Outcome::Error);
    }
}
