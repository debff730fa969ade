//! The configuration of the automatic paths into a mode: idle automation
//! (`idle`: when `mode idle-check` may turn an unattended desktop into a
//! compute node), the way back (`way_back`: which held key at the seat
//! brings the desktop back from compute) and the boot policy (`boot_mode`:
//! which mode boot restores).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Problem;

/// `idle`: when an unattended desktop becomes a compute node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdleConfig {
    /// How long the desktop must be idle (no active session, no input, no
    /// audio) before `mode idle-check` requests compute.
    pub threshold_secs: u64,
    /// Where the input devices are (`event*` nodes); their access and change
    /// times count as input activity. `null` leaves input devices out.
    pub input_devices: Option<PathBuf>,
    /// CPU pressure (PSI `some avg60`, percent) above which the desktop is
    /// taken to be still working.
    pub max_cpu_pressure: f64,
}

impl Default for IdleConfig {
    fn default() -> Self {
        Self {
            threshold_secs: 1800,
            input_devices: Some(PathBuf::from("/dev/input")),
            max_cpu_pressure: 40.0,
        }
    }
}

/// The longest idle threshold (30 days).
pub const MAX_THRESHOLD_SECS: u64 = 30 * 86_400;

impl IdleConfig {
    /// `(field, message)` for the first unusable value.
    pub fn validate(&self) -> Result<(), Problem> {
        let mut out = Vec::new();
        self.problems(&mut out);
        super::validate::first(out)
    }

    /// Every unusable value, each naming its field.
    pub fn problems(&self, out: &mut Vec<Problem>) {
        if let Err(m) = mode_guards::within(self.threshold_secs, 1, MAX_THRESHOLD_SECS, "s") {
            out.push(("idle.threshold_secs".to_string(), m));
        }
        if let Some(dir) = &self.input_devices {
            if !dir.is_absolute() {
                out.push((
                    "idle.input_devices".into(),
                    format!("'{}' must be an absolute path (or null)", dir.display()),
                ));
            }
        }
        if !(0.0..=100.0).contains(&self.max_cpu_pressure) {
            out.push((
                "idle.max_cpu_pressure".into(),
                format!("{} is not a percentage (0 to 100)", self.max_cpu_pressure),
            ));
        }
    }
}

/// `boot_mode`: what boot brings the machine to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootMode {
    /// `default_mode`, every boot.
    #[default]
    Default,
    /// The last desired mode (kept under /var/lib/mode-controller), guards
    /// permitting; `default_mode` when none was kept or it is refused.
    Last,
}

impl std::str::FromStr for BootMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "default" => Ok(BootMode::Default),
            "last" => Ok(BootMode::Last),
            other => Err(format!(
                "unknown boot mode '{other}': expected default or last"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_idle_section_keeps_the_other_defaults() {
        let c: IdleConfig = serde_json::from_str(r#"{"threshold_secs": 600}"#).unwrap();
        assert_eq!(c.threshold_secs, 600);
        assert_eq!(c.max_cpu_pressure, 40.0);
        assert_eq!(c.input_devices, Some(PathBuf::from("/dev/input")));
    }

    #[test]
    fn unknown_idle_keys_and_bad_values_are_named() {
        let e = serde_json::from_str::<IdleConfig>(r#"{"treshold_secs": 5}"#).unwrap_err();
        assert!(e.to_string().contains("treshold_secs"), "{e}");
        let zero = IdleConfig {
            threshold_secs: 0,
            ..IdleConfig::default()
        };
        assert_eq!(zero.validate().unwrap_err().0, "idle.threshold_secs");
        let relative = IdleConfig {
            input_devices: Some("dev/input".into()),
            ..IdleConfig::default()
        };
        assert_eq!(relative.validate().unwrap_err().0, "idle.input_devices");
        let pressure = IdleConfig {
            max_cpu_pressure: 140.0,
            ..IdleConfig::default()
        };
        assert_eq!(pressure.validate().unwrap_err().0, "idle.max_cpu_pressure");
        assert!(IdleConfig::default().validate().is_ok());
    }

    #[test]
    fn boot_mode_words_round_trip() {
        assert_eq!(
            serde_json::from_str::<BootMode>(r#""last""#).unwrap(),
            BootMode::Last
        );
        assert_eq!("default".parse::<BootMode>().unwrap(), BootMode::Default);
        assert!("previous"
            .parse::<BootMode>()
            .unwrap_err()
            .contains("default or last"));
    }
}

/// `way_back`: the deliberate input at the local seat that, in compute
/// mode, requests the desktop (`mode way-back`, run by mode-way-back.service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WayBackConfig {
    /// The Linux key code to hold (28: Enter; see linux/input-event-codes.h).
    pub key: u16,
    /// How long it must be held, so a bump does not end a training run.
    pub hold_ms: u64,
    /// The evdev devices read: a directory of `event*` nodes, or one node.
    pub devices: PathBuf,
    /// Written for the console in compute mode (agetty shows /run/issue.d);
    /// `null`: says which key to hold, and how long.
    pub console_message: Option<String>,
}

impl Default for WayBackConfig {
    fn default() -> Self {
        Self {
            key: 28,
            hold_ms: 2000,
            devices: PathBuf::from("/dev/input"),
            console_message: None,
        }
    }
}

impl WayBackConfig {
    /// What the console says in compute mode.
    pub fn message(&self) -> String {
        if let Some(m) = &self.console_message {
            return m.clone();
        }
        let key = match self.key {
            28 => "Enter".to_string(),
            57 => "Space".to_string(),
            1 => "Escape".to_string(),
            other => format!("the key with code {other}"),
        };
        let secs = self.hold_ms as f64 / 1000.0;
        format!("This machine is a compute node: hold {key} for {secs} s to get the desktop back.")
    }

    /// Every unusable value, each naming its field.
    pub fn problems(&self, out: &mut Vec<Problem>) {
        if !(500..=30_000).contains(&self.hold_ms) {
            out.push((
                "way_back.hold_ms".into(),
                format!("{} is out of range: between 500 and 30000", self.hold_ms),
            ));
        }
        if self.key == 0 || self.key > 0x2ff {
            out.push((
                "way_back.key".into(),
                format!("{} is not a key code", self.key),
            ));
        }
        if !self.devices.is_absolute() {
            out.push(("way_back.devices".into(), "must be an absolute path".into()));
        }
    }
}
