//! The three modes a machine can be asked for, and the two extra words an
//! observation can give (`transitioning`, `failed-transition`). Everything
//! else names modes through these types, never through bare strings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A mode that can be requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Mode {
    #[serde(rename = "desktop")]
    Desktop,
    #[serde(rename = "studio-local")]
    StudioLocal,
    #[serde(rename = "compute")]
    Compute,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Desktop, Mode::StudioLocal, Mode::Compute];

    pub fn word(self) -> &'static str {
        match self {
            Mode::Desktop => "desktop",
            Mode::StudioLocal => "studio-local",
            Mode::Compute => "compute",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// A word that names no mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown mode '{0}': expected one of desktop, studio-local, compute")]
pub struct UnknownMode(pub String);

impl FromStr for Mode {
    type Err = UnknownMode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mode::ALL
            .into_iter()
            .find(|m| m.word() == s)
            .ok_or_else(|| UnknownMode(s.to_string()))
    }
}

/// What `mode current` can print: a mode, or one of the two in-between words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObservedMode {
    #[serde(rename = "desktop")]
    Desktop,
    #[serde(rename = "studio-local")]
    StudioLocal,
    #[serde(rename = "compute")]
    Compute,
    #[serde(rename = "transitioning")]
    Transitioning,
    #[serde(rename = "failed-transition")]
    FailedTransition,
}

impl ObservedMode {
    pub fn word(self) -> &'static str {
        match self {
            ObservedMode::Transitioning => "transitioning",
            ObservedMode::FailedTransition => "failed-transition",
            other => other
                .as_mode()
                .map(Mode::word)
                .unwrap_or("failed-transition"),
        }
    }

    /// The mode this is, when it is one.
    pub fn as_mode(self) -> Option<Mode> {
        match self {
            ObservedMode::Desktop => Some(Mode::Desktop),
            ObservedMode::StudioLocal => Some(Mode::StudioLocal),
            ObservedMode::Compute => Some(Mode::Compute),
            ObservedMode::Transitioning | ObservedMode::FailedTransition => None,
        }
    }
}

impl From<Mode> for ObservedMode {
    fn from(m: Mode) -> Self {
        match m {
            Mode::Desktop => ObservedMode::Desktop,
            Mode::StudioLocal => ObservedMode::StudioLocal,
            Mode::Compute => ObservedMode::Compute,
        }
    }
}

impl fmt::Display for ObservedMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

impl FromStr for ObservedMode {
    type Err = UnknownMode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "transitioning" => Ok(ObservedMode::Transitioning),
            "failed-transition" => Ok(ObservedMode::FailedTransition),
            other => Mode::from_str(other).map(ObservedMode::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        for m in Mode::ALL {
            assert_eq!(m.word().parse::<Mode>(), Ok(m));
            assert_eq!(
                serde_json::to_string(&m).unwrap(),
                format!("\"{}\"", m.word())
            );
        }
        assert_eq!(
            "failed-transition".parse::<ObservedMode>(),
            Ok(ObservedMode::FailedTransition)
        );
    }

    #[test]
    fn unknown_word_is_named() {
        let e = "gaming".parse::<Mode>().unwrap_err();
        assert!(e.to_string().contains("'gaming'"));
        assert!("transitioning".parse::<Mode>().is_err());
    }
}
