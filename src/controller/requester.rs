//! Who may ask for a switch without a root shell, and who asked. Root starts
//! `mode-controller@MODE.service` (and reconciles in its own process) as
//! always. Anyone else asks systemd to start the instance that names them,
//! `mode-controller@MODE:USER.service` (`reconcile:USER` for `mode
//! reconcile`); systemd lets them only if polkit says yes, and the shipped
//! rule (pkgs/polkit/50-mode-controller.rules) says yes only for the
//! caller's own user name, a member of the configured group, in an active
//! local session. The oneshot parses its instance strictly here, so the
//! requester it records is the one polkit checked.

use std::fmt;
use std::str::FromStr;

use mode_guards::probe::passwd::{user_id, user_name};

use crate::mode::Mode;
use crate::systemd::SystemdError;

use super::Error;

/// The group the shipped polkit rule lets switch (configurable there).
pub const DEFAULT_GROUP: &str = "mode-controller";

/// Where the polkit rule is installed (Debian; NixOS puts it in its own
/// rules file, from services.modeController.polkit).
pub const RULES_FILE: &str = "/etc/polkit-1/rules.d/50-mode-controller.rules";

/// What a unit instance asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    Mode(Mode),
    Reconcile,
}

/// The instance of `mode-controller@.service`: `MODE` (started by root, the
/// requester handed over in the state directory's note), `MODE:USER` or
/// `reconcile:USER` (started by USER through polkit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub what: What,
    pub user: Option<String>,
}

impl Instance {
    /// The unit that runs this instance.
    pub fn unit(&self) -> String {
        format!("mode-controller@{self}.service")
    }
}

impl fmt::Display for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.what {
            What::Mode(m) => f.write_str(m.word())?,
            What::Reconcile => f.write_str("reconcile")?,
        }
        match &self.user {
            Some(u) => write!(f, ":{u}"),
            None => Ok(()),
        }
    }
}

impl FromStr for Instance {
    type Err = String;

    /// Strict: a mode word or `reconcile`, then at most one `:USER` where
    /// USER is a plain login name (so nothing else, no option and no second
    /// user, rides in through the instance string).
    fn from_str(s: &str) -> Result<Self, String> {
        let (what, user) = match s.split_once(':') {
            Some((w, u)) => (w, Some(u)),
            None => (s, None),
        };
        let what = match what {
            "reconcile" => What::Reconcile,
            w => What::Mode(w.parse().map_err(|e: crate::mode::UnknownMode| {
                format!("{e}, optionally followed by :USER")
            })?),
        };
        match user {
            None if what == What::Reconcile => Err(
                "reconcile needs its requester (reconcile:USER); root runs `mode reconcile` itself"
                    .into(),
            ),
            None => Ok(Instance { what, user: None }),
            Some(u) if valid_user_name(u) => Ok(Instance {
                what,
                user: Some(u.to_string()),
            }),
            Some(u) => Err(format!(
                "'{}' is not a login name (letters, digits, '_', '.', '-', not starting with '-' or '.', at most 32)",
                crate::state::cut(u, 40)
            )),
        }
    }
}

/// A plain login name that is also valid inside a unit name.
fn valid_user_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok
        && name.len() <= 32
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// A user, by uid and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester {
    pub uid: u32,
    pub name: String,
}

impl Requester {
    /// The user running this process (its real uid).
    pub fn caller() -> Result<Requester, Error> {
        let uid = nix::unistd::getuid().as_raw();
        let name = user_name(uid).ok_or_else(|| {
                Error::NotPermitted(format!(
                    "you are uid {uid}, which has no user name here, so polkit cannot be asked for you; run it with sudo"
                ))
            })?;
        if !valid_user_name(&name) {
            return Err(Error::NotPermitted(format!(
                "your user name {} cannot name a unit instance, so polkit cannot be asked for you; run it with sudo",
                crate::state::quoted(&name, 40)
            )));
        }
        Ok(Requester { uid, name })
    }

    /// The user an instance names, as this machine knows them.
    pub fn named(name: &str) -> Result<Requester, Error> {
        match user_id(name) {
            Some(uid) => Ok(Requester {
                uid,
                name: name.to_string(),
            }),
            None => Err(Error::NotPermitted(format!(
                "the unit instance names the user {}, who does not exist here",
                crate::state::quoted(name, 40)
            ))),
        }
    }

    /// As the record's `requested_by` says it: `cli uid=1000 user=alice`
    /// (`reconcile uid=1000 user=alice` for a reconcile).
    pub fn words(&self, what: What) -> String {
        let how = match what {
            What::Mode(_) => "cli",
            What::Reconcile => "reconcile",
        };
        format!("{how} uid={} user={}", self.uid, self.name)
    }
}

/// Why an unprivileged caller may not do `what`, and how to get permission:
/// systemd's (polkit's) refusal, in the contract's words.
pub fn denied(what: &str, e: SystemdError) -> Error {
    match e {
        SystemdError::Denied { unit, detail } => Error::NotPermitted(format!(
            "`mode {what}` needs root or polkit's permission, and polkit refused {unit} ({detail}): \
             the rule ({RULES_FILE}; services.modeController.polkit on NixOS) allows members of its group \
             ({DEFAULT_GROUP} by default) in an active local session; join that group, or run it with sudo \
             (docs/operations.md, switching without sudo)"
        )),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_read_back_what_they_write() {
        for text in [
            "desktop",
            "compute",
            "studio-local",
            "compute:alice",
            "studio-local:bob_2",
            "reconcile:a.b-c",
            "desktop:_svc",
        ] {
            let i: Instance = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(i.to_string(), text);
            assert_eq!(i.unit(), format!("mode-controller@{text}.service"));
        }
        let i: Instance = "compute:alice".parse().unwrap();
        assert_eq!(i.what, What::Mode(Mode::Compute));
        assert_eq!(i.user.as_deref(), Some("alice"));
    }

    #[test]
    fn nothing_but_one_plain_user_rides_in_an_instance() {
        for bad in [
            "",
            "gaming",
            "reconcile",
            "compute:",
            "compute:alice:bob",
            "compute:-x",
            "compute:--config=/tmp/evil",
            "--config=/tmp/evil",
            "compute:.hidden",
            "compute:al ice",
            "compute:alice\\x2dbob",
            "compute:al$",
            "compute:ålice",
            "compute:1000",
            "Compute:alice",
            &format!("compute:{}", "a".repeat(33)),
        ] {
            let e = bad.parse::<Instance>().expect_err(bad);
            assert!(!e.is_empty() && e.lines().count() == 1, "{bad}: {e}");
        }
    }

    #[test]
    fn the_record_names_the_uid_and_the_user() {
        let r = Requester {
            uid: 1000,
            name: "alice".into(),
        };
        assert_eq!(
            r.words(What::Mode(Mode::Compute)),
            "cli uid=1000 user=alice"
        );
        assert_eq!(r.words(What::Reconcile), "reconcile uid=1000 user=alice");
        let root = Requester::named("root").unwrap();
        assert_eq!(root.uid, 0);
        assert!(matches!(
            Requester::named("no-such-user-here"),
            Err(Error::NotPermitted(_))
        ));
    }

    #[test]
    fn a_refusal_is_exit_6_and_says_how_to_get_permission() {
        let e = denied(
            "request compute",
            SystemdError::Denied {
                unit: "mode-controller@compute:bob.service".into(),
                detail: "Interactive authentication required.".into(),
            },
        );
        assert_eq!(e.exit().code(), 6);
        let line = e.to_string();
        for want in [
            "mode-controller@compute:bob.service",
            DEFAULT_GROUP,
            "sudo",
            RULES_FILE,
        ] {
            assert!(line.contains(want), "{want} in {line}");
        }
        assert_eq!(line.lines().count(), 1);
        // Anything else keeps its own code.
        let other = denied(
            "request compute",
            SystemdError::JobTimeout {
                unit: "u".into(),
                secs: 1,
            },
        );
        assert_ne!(other.exit().code(), 6);
    }
}
