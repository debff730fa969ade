//! `graphical_session_absent`: compute needs the display GPU, so nobody may
//! still be logged in to a graphical session. A greeter is fine (the
//! transition stops the display manager); a user's Wayland or X11 session is
//! not, and is named with its id, user and type.

use serde_json::json;

use crate::{Facts, Guard, SessionInfo, Verdict};

pub struct GraphicalSessionAbsent;

const GRAPHICAL_TYPES: [&str; 3] = ["wayland", "x11", "mir"];

fn is_graphical_user_session(s: &SessionInfo) -> bool {
    GRAPHICAL_TYPES.contains(&s.session_type.as_str()) && s.class == "user" && s.state != "closing"
}

impl Guard for GraphicalSessionAbsent {
    fn name(&self) -> &str {
        "graphical_session_absent"
    }

    fn check(&self, facts: &Facts) -> Verdict {
        let sessions = match &facts.sessions {
            Ok(s) => s,
            Err(why) => return Verdict::error(format!("cannot list logind sessions: {why}")),
        };
        let open: Vec<&SessionInfo> = sessions
            .iter()
            .filter(|s| is_graphical_user_session(s))
            .collect();
        if open.is_empty() {
            return Verdict::pass("no graphical user session is open");
        }
        let names: Vec<String> = open
            .iter()
            .map(|s| {
                format!(
                    "session {} of {} ({}, {})",
                    s.id, s.user, s.session_type, s.state
                )
            })
            .collect();
        Verdict::fail(
            format!(
                "{} graphical session{} still open: {}; log out first",
                open.len(),
                if open.len() == 1 { " is" } else { "s are" },
                names.join(", ")
            ),
            json!({ "sessions": open }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Outcome;

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
        }
    }

    fn facts(sessions: Vec<SessionInfo>) -> Facts {
        Facts {
            sessions: Ok(sessions),
            ..Facts::new("compute")
        }
    }

    #[test]
    fn fails_naming_an_active_wayland_session() {
        let v =
            GraphicalSessionAbsent.check(&facts(vec![session("2", "wayland", "user", "active")]));
        assert_eq!(v.outcome, Outcome::Fail);
        assert!(
            v.reason.contains("session 2 of alice (wayland, active)"),
            "{}",
            v.reason
        );
        assert_eq!(v.evidence["sessions"][0]["id"], "2");
    }

    #[test]
    fn passes_with_only_a_greeter_tty_or_closing_session() {
        let v = GraphicalSessionAbsent.check(&facts(vec![
            session("c1", "wayland", "greeter", "active"),
            session("3", "tty", "user", "active"),
            session("4", "x11", "user", "closing"),
        ]));
        assert_eq!(v.outcome, Outcome::Pass, "{}", v.reason);
    }

    #[test]
    fn errors_when_logind_could_not_be_asked() {
        let mut f = Facts::new("compute");
        f.sessions = Err("no bus".into());
        assert_eq!(GraphicalSessionAbsent.check(&f).outcome, Outcome::Error);
    }
}
