//! Runs the flow of a transition (apply, request, reconcile), the automatic
//! use cases (boot, idle-check, way-back) and answers the queries (status,
//! current, dry-run, explain) on top of the layers below: observe,
//! plan, guards, systemd, state, config. Owns the one error type, and
//! (in exit.rs) the contract's exit codes it and every outcome map to.

mod apply;
mod boot;
mod drain;
mod evaluate;
mod exit;
mod idle;
mod integrate;
mod query;
mod request;
pub mod requester;
mod settle;
mod steps;
mod watch;
mod way_back;

use std::path::{Path, PathBuf};

use mode_guards::UnitState;

use crate::config::{Config, ConfigError, DisplayManager, DISPLAY_MANAGER};
use crate::mode::Mode;
use crate::mode::ObservedMode;
use crate::observe::{classify, drift, DriftFacts, Observation};
use crate::state::{LockHolder, StateDir, StateError};
use crate::systemd::{Bus, SystemdError};

pub use apply::{apply_instance, reconcile};
pub use boot::{boot, boot_mode, BootOutcome};
pub use exit::Exit;
pub use idle::{idle_check, IdleCheck, IdleOptions};
pub use query::{current, desired_mode, dry_run, explain, status, DryRun, Status};
pub use request::{reconcile_as_caller, request, Reconciled, RequestOutcome};
pub use watch::{notify, watch, Snapshot};
pub use way_back::way_back;

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
    #[error("{}", exit::unrecorded(record, &error.to_string()))]
    Unrecorded {
        record: Box<crate::state::TransitionRecord>,
        error: StateError,
    },
}

impl Error {
    /// The contract's exit code for this error.
    pub fn exit(&self) -> Exit {
        Exit::of_error(self)
    }
}

/// What every command works from: the configuration (fitted to this
/// machine by `fit_to_machine`) and the state directory.
pub struct Context {
    pub config: Config,
    pub state: StateDir,
    /// The display manager the modes start and stop, as systemd loaded it;
    /// `None` when this machine has none (or the configuration says so).
    pub display_manager: Option<UnitState>,
}

impl Context {
    /// A command's context: `config`, and the state directory at
    /// `state_root` that also keeps the desired mode next to the audit log
    /// (/var/lib/mode-controller), for the boot policy "last".
    pub fn open(config: Config, state_root: &Path) -> Self {
        let kept = config.audit_log.parent().map_or_else(
            || PathBuf::from("/var/lib/mode-controller"),
            Path::to_path_buf,
        );
        Self::new(config, StateDir::new(state_root).keeping_desired_in(kept))
    }

    pub fn new(config: Config, state: StateDir) -> Self {
        let display_manager = (config.display_manager != DisplayManager::None).then(|| UnitState {
            unit: DISPLAY_MANAGER.into(),
            id: DISPLAY_MANAGER.into(),
            load_state: "unknown".into(),
            active_state: "unknown".into(),
            sub_state: "unknown".into(),
        });
        let mut config = if display_manager.is_none() {
            config.without_display_manager()
        } else {
            config
        };
        if let Some(k3s) = config.integrations.k3s.as_mut() {
            k3s.node.get_or_insert_with(crate::integrations::host_name);
            // kubelet runs the pods in kubepods.slice, outside
            // platform.slice: the platform budget covers them too, unless
            // the configuration budgets that slice itself.
            for mode in Mode::ALL {
                let slices = &mut config.mode_mut(mode).slices;
                if let Some(platform) = slices.get("platform.slice").cloned() {
                    slices.entry("kubepods.slice".into()).or_insert(platform);
                }
            }
        }
        if let Some(slurm) = config.integrations.slurm.as_mut() {
            // The node is this machine unless the configuration names it;
            // its job processes live in slurmd.service, which the
            // integration handles, so user_jobs_safe leaves it alone.
            slurm
                .node
                .get_or_insert_with(crate::integrations::host_name);
            let managed = &mut config.guard_settings.ai_slice.managed;
            if !managed.iter().any(|u| u == "slurmd.service") {
                managed.push("slurmd.service".into());
            }
        }
        Self {
            config,
            state,
            display_manager,
        }
    }

    /// The display manager in words, for status.
    pub fn display_manager_words(&self) -> String {
        match (&self.display_manager, self.config.display_manager) {
            (Some(dm), _) => format!("{}, {}", dm.label(), dm.active_state),
            (None, DisplayManager::None) => {
                "none (the configuration says display_manager: none)".into()
            }
            (None, _) => format!(
                "none: no display manager is installed ({DISPLAY_MANAGER} not found), so desktop is {}",
                std::iter::once(&self.config.modes.desktop.target)
                    .chain(&self.config.modes.desktop.start)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" + ")
            ),
        }
    }

    /// Fit the configuration to what this machine has, once per command:
    /// with `display_manager: auto` and no `display-manager.service`
    /// installed (a compositor started from a TTY login), no mode starts,
    /// stops or expects one, so desktop is desktop.target + graphical.target.
    pub async fn fit_to_machine(&mut self, bus: &Bus) -> Result<(), Error> {
        if self.display_manager.is_none() {
            return Ok(());
        }
        let found = bus
            .unit_states(&[DISPLAY_MANAGER.to_string()])
            .await?
            .into_iter()
            .next();
        let absent = found.as_ref().is_none_or(UnitState::is_not_found);
        if absent && self.config.display_manager == DisplayManager::Auto {
            self.config = self.config.clone().without_display_manager();
            self.display_manager = None;
        } else {
            self.display_manager = found;
        }
        Ok(())
    }

    /// Read the live unit states and classify them. `lock` is the holder of
    /// the transition lock as others see it (`None` inside a transition).
    pub async fn observe(
        &self,
        bus: &Bus,
        lock: Option<&LockHolder>,
        recorded: Option<ObservedMode>,
    ) -> Result<Observation, Error> {
        let mut observed = self.observe_units(bus, lock, recorded).await?;
        observed.drift = drift(
            observed.mode,
            &self.drift_facts(bus, observed.mode).await?,
            &self.config,
        );
        Ok(observed)
    }

    /// The classification alone, without drift (one D-Bus call): what a
    /// transition's verification needs.
    pub async fn observe_units(
        &self,
        bus: &Bus,
        lock: Option<&LockHolder>,
        recorded: Option<ObservedMode>,
    ) -> Result<Observation, Error> {
        let units = bus.unit_states(&self.config.managed_units()).await?;
        Ok(classify(units, &self.config, lock, recorded))
    }

    /// Read what drift of `mode` is judged by: outside compute, the state of
    /// compute's workloads; in compute, the logind sessions.
    async fn drift_facts(&self, bus: &Bus, mode: ObservedMode) -> Result<DriftFacts, Error> {
        let mut facts = DriftFacts::default();
        match mode.as_mode() {
            Some(Mode::Compute) => facts.sessions = bus.sessions().await?,
            Some(_) => {
                facts.workloads = bus.unit_states(&self.compute_workloads(bus).await?).await?
            }
            None => {}
        }
        Ok(facts)
    }

    /// Compute's workloads: the vLLM units and the services compute's
    /// target wants, except what must keep running in every mode.
    pub async fn compute_workloads(&self, bus: &Bus) -> Result<Vec<String>, Error> {
        let mut units = self.config.vllm_units();
        for u in bus
            .unit_dependencies(&self.config.modes.compute.target)
            .await?
        {
            if u.ends_with(".service")
                && !units.contains(&u)
                && !self.config.keep_running.contains(&u)
            {
                units.push(u);
            }
        }
        Ok(units)
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
