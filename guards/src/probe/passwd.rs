//! The user database (`/etc/passwd` under the given root): turns the uid of
//! a process into a user name for evidence; an unknown uid stays a number.

use std::collections::HashMap;
use std::path::Path;

/// uid -> user name, read once per evaluation.
#[derive(Debug, Clone, Default)]
pub struct UserNames {
    names: HashMap<u32, String>,
}

impl UserNames {
    /// Read `passwd`; a missing or unreadable file gives an empty table
    /// (users are then shown by number, which is still evidence).
    pub fn load(passwd: &Path) -> Self {
        let text = std::fs::read_to_string(passwd).unwrap_or_default();
        Self::parse(&text)
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
        Self { names }
    }

    /// The user's name, or the uid as text when it has none.
    pub fn name(&self, uid: u32) -> String {
        self.names
            .get(&uid)
            .cloned()
            .unwrap_or_else(|| uid.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_known_uids_and_numbers_unknown_ones() {
        let u = UserNames::parse(
            "root:x:0:0::/root:/bin/sh\nalice:x:1000:100::/home/alice:/bin/sh\nbroken line\n",
        );
        assert_eq!(u.name(1000), "alice");
        assert_eq!(u.name(0), "root");
        assert_eq!(u.name(4242), "4242");
    }
}
