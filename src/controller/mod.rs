//! Runs the flow of a transition (apply, request, reconcile) and answers the
//! queries (status, dry-run, explain) on top of the layers below: observe,
//! plan, guards, systemd, state, config. Owns the one error type that the
//! CLI maps to exit codes.

mod apply;
mod boot;
mod drain;
mod evaluate;
mod query;
mod request;
mod steps;

use crate::config::{Config, ConfigError};
use crate::mode::ObservedMode;
use crate::observe::{classify, Observation};
use crate::state::{LockHolder, StateDir, StateError};
use crate::systemd::{Bus, SystemdError};

pub use apply::{apply, reconcile};
pub use boot::{boot, boot_mode, BootOutcome};
pub use query::{desired_mode, dry_run, status, DryRun, Status};
pub use request::{request, request_as, RequestOutcome};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Systemd(#[from] SystemdError),
    #[error("not permitted: {0}")]
    NotPermitted(String),
    #[error("timed out: {0}")]
    TimedOut(String),
    #[error("{0}")]
    Internal(String),
    /// The transition ran (its outcome is in the record) but writing a
    /// state file or the audit log afterwards failed.
    #[error("the transition to {} {}, but recording it failed: {error}", record.to, record.outcome.word())]
    Unrecorded {
        record: Box<crate::state::TransitionRecord>,
        error: StateError,
    },
}

impl Error {
    /// The contract's exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) => 7,
            Error::State(StateError::Busy(_)) => 5,
            Error::State(StateError::Corrupt { .. } | StateError::Refused { .. }) => 7,
            Error::State(e) if e.is_environment() => 7,
            // Recording a finished transition is the machine's problem
            // (disk, permissions, something in the way): always 7.
            Error::Unrecorded { .. } => 7,
            Error::State(StateError::Io { .. }) => 1,
            Error::Systemd(
                SystemdError::NotInit
                | SystemdError::Unreachable(_)
                | SystemdError::NotInstalled { .. },
            ) => 7,
            Error::Systemd(_) => 1,
            Error::NotPermitted(_) => 6,
            Error::TimedOut(_) => 8,
            Error::Internal(_) => 1,
        }
    }
}

/// What every command works from: the configuration and the state directory.
pub struct Context {
    pub config: Config,
    pub state: StateDir,
}

impl Context {
    /// Read the live unit states and classify them. `lock` is the holder of
    /// the transition lock as others see it (`None` inside a transition).
    pub async fn observe(
        &self,
        bus: &Bus,
        lock: Option<&LockHolder>,
        recorded: Option<ObservedMode>,
    ) -> Result<Observation, Error> {
        let units = bus.unit_states(&self.config.managed_units()).await?;
        Ok(classify(units, &self.config, lock, recorded))
    }
}

/// Mutating commands are for root only, judged by the real uid.
pub fn require_root(what: &str) -> Result<(), Error> {
    let uid = nix::unistd::getuid();
    if uid.is_root() {
        Ok(())
    } else {
        Err(Error::NotPermitted(format!(
            "`mode {what}` changes the machine and needs root (you are uid {uid}); run it with sudo, or use `mode status` to look"
        )))
    }
}
