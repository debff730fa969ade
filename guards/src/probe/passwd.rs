//! The user database: turns the uid of a process into a user name for
//! evidence; an unknown uid stays a number. On the machine it is the name
//! service (NSS: /etc/passwd, and systemd's DynamicUser= and homed users,
//! LDAP, ... as nsswitch.conf says); a prepared tree in tests brings its own
//! passwd file.

use std::collections::HashMap;
use std::path::PathBuf;

use nix::unistd::{Uid, User};

/// Where user names come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserDb {
    /// The system's name service.
    System,
    /// A passwd-format file (a prepared tree).
    File(PathBuf),
}

/// uid -> user name, for one evaluation.
#[derive(Debug, Clone)]
pub enum UserNames {
    System,
    Table(HashMap<u32, String>),
}

impl UserNames {
    /// A missing or unreadable file gives an empty table (users are then
    /// shown by number, which is still evidence).
    pub fn load(db: &UserDb) -> Self {
        match db {
            UserDb::System => Self::System,
            UserDb::File(path) => Self::parse(&std::fs::read_to_string(path).unwrap_or_default()),
        }
    }

    pub fn parse(text: &str) -> Self {
        let names = text
            .lines()
            .filter_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let _password = fields.next()?;
                let uid = fields.next()?.parse().ok()?;
                Some((uid, name.to_string()))
            })
            .collect();
        Self::Table(names)
    }

    /// The user's name, or the uid as text when it has none.
    pub fn name(&self, uid: u32) -> String {
        let known = match self {
            Self::System => user_name(uid),
            Self::Table(names) => names.get(&uid).cloned(),
        };
        known.unwrap_or_else(|| uid.to_string())
    }
}

/// The name service's name for `uid`, if it has one.
pub fn user_name(uid: u32) -> Option<String> {
    User::from_uid(Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// The name service's uid for the user `name`, if it knows one.
pub fn user_id(name: &str) -> Option<u32> {
    User::from_name(name).ok().flatten().map(|u| u.uid.as_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_names_known_uids_and_numbers_unknown_ones() {
        let u = UserNames::parse(
            "root:x:0:0::/root:/bin/sh\nalice:x:1000:100::/home/alice:/bin/sh\nbroken line\n",
        );
        assert_eq!(u.name(1000), "alice");
        assert_eq!(u.name(0), "root");
        assert_eq!(u.name(4242), "4242");
    }

    #[test]
    fn the_system_names_root_through_the_name_service() {
        let u = UserNames::load(&UserDb::System);
        assert_eq!(u.name(0), "root");
        assert_eq!(user_id("root"), Some(0));
        // No name service has a user for this uid (the overflow uid's
        // neighbour, never allocated).
        assert_eq!(u.name(4_294_967_294), "4294967294");
    }
}
