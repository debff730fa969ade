//! The world around the machine that a switch tells: the Slurm node this
//! workstation is, and the user's own `exec` hooks. Each runs programs with
//! a deadline (`command::run`) and returns plain data; the controller makes
//! them plan steps. Nothing here speaks D-Bus.

pub mod command;
pub mod exec;
pub mod k3s;
pub mod slurm;

/// This machine's host name: the node name Slurm and k3s give it by default.
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}
