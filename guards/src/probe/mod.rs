//! Probes: each reads one source of truth (procfs fds, sysfs, NVML, ALSA,
//! PSI, HTTP) from roots given as parameters and returns plain data; the
//! guards decide. Nothing here changes the machine.

pub mod alsa;
pub mod gpu_topology;
pub mod http;
pub mod loadavg;
pub mod meminfo;
pub mod nvml;
pub mod passwd;
pub mod pipewire;
pub mod process;
pub mod procfd;
pub mod prometheus;
pub mod psi;

use std::path::{Path, PathBuf};

/// Why a probe could not read its source.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Malformed { path: PathBuf, message: String },
}

impl ProbeError {
    pub(crate) fn read(path: &Path, source: std::io::Error) -> Self {
        Self::Read {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn malformed(path: &Path, message: impl Into<String>) -> Self {
        Self::Malformed {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    /// True when the source does not exist at all (as opposed to being unreadable).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Read a whole small text file, naming it on failure.
pub(crate) fn read_text(path: &Path) -> Result<String, ProbeError> {
    std::fs::read_to_string(path).map_err(|e| ProbeError::read(path, e))
}
