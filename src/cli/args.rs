//! The command line: every command of the contract, with help text that
//! teaches by example. Parsing only; no logic.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::mode::Mode;

const EXAMPLES: &str = "\
Examples:
  mode status                      where the machine is, and why
  sudo mode request compute        switch to compute; returns once it is verified
  mode dry-run compute             what a switch would do and what blocks it
  mode explain studio-local        the same, in prose, with how to clear blockers
  mode config check /etc/mode-controller/config.json

Modes: desktop, studio-local, compute.
Exit codes: 0 ok, 1 internal error, 2 usage, 3 refused by a guard, 4 failed (rolled back),
5 busy, 6 not root, 7 environment/configuration problem, 8 timed out waiting.";

/// Switch this workstation between desktop, studio and compute modes as a
/// verified, reversible systemd transition.
#[derive(Debug, Parser)]
#[command(name = "mode", version, about, after_help = EXAMPLES)]
pub struct Cli {
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// The state directory.
    #[arg(long, global = true, env = "MODE_STATE_DIR", default_value = crate::state::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// The configuration file (built-in defaults apply when it is absent).
    #[arg(long, global = true, env = "MODE_CONFIG", default_value = crate::config::DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ask for MODE (root): records it as desired, runs mode-controller@MODE.service and
    /// waits until the switch is verified, refused or rolled back.
    Request {
        mode: Mode,
        /// Return once the transition is queued.
        #[arg(long)]
        no_wait: bool,
        /// Seconds to wait before giving up (exit 8; the switch may still finish).
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// Run the transition to MODE in this process (root; what the unit runs).
    Apply { mode: Mode },
    /// Converge to the desired mode (root); nothing happens when already there.
    Reconcile,
    /// Desired, recorded and observed mode with evidence, last transition, blockers.
    Status,
    /// The observed mode: one of desktop, studio-local, compute, transitioning, failed-transition.
    Current,
    /// The desired mode (the configured default when none was requested).
    Desired,
    /// The plan and every guard's verdict for a switch to MODE, changing nothing.
    DryRun { mode: Mode },
    /// Why the machine is in its mode, and what a switch to MODE would do and what blocks it.
    Explain { mode: Option<Mode> },
    /// Configuration commands.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff).
    Manpage,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration file; errors name the field.
    Check { file: PathBuf },
    /// Print the built-in default configuration.
    Defaults,
}
