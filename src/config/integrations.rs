//! The schedulers and hooks around the machine that a switch tells: Slurm
//! (the node drained when the machine leaves compute, resumed when it
//! enters it) and `exec` steps, root-owned executables run with the
//! transition as JSON on stdin. Each becomes a step of the plan.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::mode::Mode;

/// The longest one integration command may be given.
pub const MAX_COMMAND_SECS: u64 = 600;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Integrations {
    /// The Slurm node this machine is; `null` (the default) leaves Slurm out.
    pub slurm: Option<SlurmIntegration>,
    /// Executables run as the last steps of a switch into their modes.
    pub exec: Vec<ExecIntegration>,
}

/// What a scheduler that cannot be reached does to a switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unreachable {
    /// Named and recorded as a warning on the step; the switch goes on.
    Warn,
    /// The step fails and the switch rolls back.
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmIntegration {
    /// The node name in slurm.conf; `null`: this machine's host name.
    pub node: Option<String>,
    /// Where `sinfo`, `squeue`, `scontrol` and `scancel` are.
    pub bin_dir: PathBuf,
    /// How long one Slurm command may take (a stopped slurmctld makes them hang).
    pub command_timeout_secs: u64,
    pub when_unreachable: Unreachable,
}

impl Default for SlurmIntegration {
    fn default() -> Self {
        Self {
            node: None,
            bin_dir: PathBuf::from("/usr/bin"),
            command_timeout_secs: 10,
            when_unreachable: Unreachable::Warn,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecIntegration {
    /// Names the step in plans and records.
    pub name: String,
    /// An absolute path to a root-owned executable.
    pub path: PathBuf,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default = "default_exec_timeout")]
    pub timeout_secs: u64,
    /// The modes a switch into which runs it; empty: every mode.
    #[serde(default)]
    pub modes: Vec<Mode>,
}

fn default_exec_timeout() -> u64 {
    30
}

impl ExecIntegration {
    pub fn runs_for(&self, to: Mode) -> bool {
        self.modes.is_empty() || self.modes.contains(&to)
    }
}

fn bounded(field: String, secs: u64) -> Result<(), (String, String)> {
    if (1..=MAX_COMMAND_SECS).contains(&secs) {
        Ok(())
    } else {
        Err((
            field,
            format!("{secs} is out of range: between 1 and {MAX_COMMAND_SECS} seconds"),
        ))
    }
}

impl Integrations {
    /// What serde cannot see, each error naming its field.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if let Some(s) = &self.slurm {
            bounded(
                "integrations.slurm.command_timeout_secs".into(),
                s.command_timeout_secs,
            )?;
            if !s.bin_dir.is_absolute() {
                return Err((
                    "integrations.slurm.bin_dir".into(),
                    "must be an absolute path".into(),
                ));
            }
            if let Some(node) = &s.node {
                let ok = !node.is_empty()
                    && node
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
                if !ok {
                    return Err((
                        "integrations.slurm.node".into(),
                        format!("'{node}' is not a Slurm node name"),
                    ));
                }
            }
        }
        let mut names = Vec::new();
        for (i, e) in self.exec.iter().enumerate() {
            let at = format!("integrations.exec[{i}]");
            let ok = !e.name.is_empty()
                && e.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
            if !ok {
                return Err((
                    format!("{at}.name"),
                    format!("'{}' must be letters, digits, - and _", e.name),
                ));
            }
            if names.contains(&e.name) {
                return Err((format!("{at}.name"), format!("'{}' is used twice", e.name)));
            }
            names.push(e.name.clone());
            if !e.path.is_absolute() {
                return Err((format!("{at}.path"), "must be an absolute path".into()));
            }
            bounded(format!("{at}.timeout_secs"), e.timeout_secs)?;
        }
        Ok(())
    }
}
