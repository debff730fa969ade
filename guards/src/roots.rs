//! `Roots`: the directories the guards read the machine through. The real
//! ones come from `Roots::system()`; tests point them at prepared trees.

use std::path::PathBuf;

use crate::probe::passwd::UserDb;

/// Where the guards find procfs, sysfs, `/dev`, ALSA's procfs, users'
/// runtime directories, the user database and the controller's state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    /// procfs (`/proc`): processes, their fds, PSI, meminfo, NVIDIA's GPU list.
    pub procfs: PathBuf,
    /// sysfs (`/sys`): DRM cards and the PCI devices behind them.
    pub sysfs: PathBuf,
    /// The device directory (`/dev`), used to name device nodes.
    pub dev: PathBuf,
    /// ALSA's procfs (`/proc/asound`).
    pub asound: PathBuf,
    /// Users' runtime directories (`/run/user`): `UID/pipewire-0` is where
    /// each user's PipeWire listens.
    pub user_runtime: PathBuf,
    /// The user database, to name the users of processes.
    pub users: UserDb,
    /// The controller's state directory (`/run/mode-controller`).
    pub state_dir: PathBuf,
}

impl Roots {
    /// The real machine's roots.
    pub fn system() -> Self {
        Self {
            procfs: "/proc".into(),
            sysfs: "/sys".into(),
            dev: "/dev".into(),
            asound: "/proc/asound".into(),
            user_runtime: "/run/user".into(),
            users: UserDb::System,
            state_dir: "/run/mode-controller".into(),
        }
    }

    /// The real machine's roots with another state directory (`--state-dir`).
    pub fn system_with_state_dir(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            ..Self::system()
        }
    }
}

impl Default for Roots {
    fn default() -> Self {
        Self::system()
    }
}
