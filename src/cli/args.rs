//! The command line: every command of the contract, with help text that
//! teaches by example. Parsing only; no logic.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::controller::requester::Instance;
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
5 busy, 6 not permitted (root, or polkit's group: docs/operations.md), 7 environment/configuration problem, 8 timed out waiting.";

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
    /// Ask for MODE (root, or a user polkit allows): runs mode-controller@MODE.service
    /// and waits until the switch is verified, refused or rolled back.
    Request {
        mode: Mode,
        /// Return once the transition is queued.
        #[arg(long)]
        no_wait: bool,
        /// Seconds to wait before giving up (exit 8; the switch may still finish), 1 to 86400.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=86_400))]
        timeout: Option<u64>,
    },
    /// Run the transition to MODE in this process (root; what the unit runs).
    /// The unit's instance MODE:USER (or reconcile:USER) is a transition that
    /// USER asked for through polkit, recorded as theirs.
    Apply {
        #[arg(value_name = "MODE", value_parser = InstanceParser)]
        mode: Instance,
    },
    /// Converge to the desired mode (root, or a user polkit allows); nothing
    /// happens when already there.
    Reconcile,
    /// Decide whether this unattended desktop should become a compute node, and
    /// say why (not); run by root (mode-idle-check.timer) it requests compute,
    /// recorded as requested by "idle".
    #[command(after_help = IDLE_HELP)]
    IdleCheck(IdleCheckArgs),
    /// Apply the boot policy (root; what mode-controller-boot.service runs): the
    /// default mode, or with boot mode "last" the last desired mode, guards permitting.
    Boot {
        /// Which policy: default or last (overrides the configuration's boot_mode).
        #[arg(long, env = "MODE_BOOT_MODE")]
        boot_mode: Option<crate::config::BootMode>,
    },
    /// The way back from compute (root; what mode-way-back.service runs in
    /// compute): a key held at the seat (way_back.key for way_back.hold_ms)
    /// requests desktop, recorded as "input", unless a hard guard would refuse.
    WayBack,
    /// Desired, recorded and observed mode with evidence, last transition, blockers.
    Status,
    /// Print the state now, then a line at every change (a switch starting,
    /// its outcome, a unit stopped by hand); with --json one JSON object a
    /// line, with the `text`, `alt`, `class` and `tooltip` a waybar custom
    /// module reads. Anyone may run it; it costs nothing while nothing changes.
    Watch,
    /// Follow the state like `watch` and show a desktop notification when a
    /// switch starts, converges, is refused (with the blocker) or fails; run
    /// by the user in their graphical session (mode-notify.service, a user unit).
    Notify,
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
    /// Print the man page mode(1) (roff); with --dir, write it and the page of
    /// every command it lists (mode-request.1, mode-config-check.1, ...) there.
    Manpage {
        /// The directory to write every page into (`/usr/share/man/man1`).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

const IDLE_HELP: &str = "\
Idle means: no graphical user session active (logind IdleHint), or only a greeter / nobody at
the seat; no input on /dev/input/event* since; no audio playing; CPU pressure low. Compute is
requested only from desktop (never from studio-local, never during a transition) and only when no
guard blocks it. Exit 0 when nothing was requested; after a request, the request's exit code.

Examples:
  mode idle-check                  the decision and every reason, changing nothing (not root)
  mode idle-check --json           the same with all figures
  sudo mode idle-check --dry-run   decide as root but request nothing";

#[derive(Debug, clap::Args)]
pub struct IdleCheckArgs {
    /// Decide and explain, but request nothing and record nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Idle seconds needed before compute is requested (overrides idle.threshold_secs).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=2_592_000))]
    pub threshold: Option<u64>,
    /// Directory of the input devices whose event* timestamps count as activity.
    #[arg(long, value_name = "DIR")]
    pub input_dir: Option<PathBuf>,
    /// CPU pressure (PSI some avg60, percent) above which the desktop counts as busy.
    #[arg(long, value_name = "PERCENT", value_parser = percent)]
    pub max_cpu_pressure: Option<f64>,
}

fn percent(s: &str) -> Result<f64, String> {
    match s.trim_end_matches('%').parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("'{s}' is not a percentage from 0 to 100")),
    }
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration file; errors name the field.
    Check { file: PathBuf },
    /// Print the built-in default configuration.
    Defaults,
}

/// `mode apply`'s argument: a mode word (the choices `--help` and the
/// completions offer) or a unit instance naming its requester, parsed by
/// `Instance` alone.
#[derive(Clone)]
struct InstanceParser;

impl clap::builder::TypedValueParser for InstanceParser {
    type Value = Instance;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Instance, clap::Error> {
        let text = value.to_string_lossy();
        text.parse().map_err(|e: String| {
            clap::Error::raw(
                clap::error::ErrorKind::InvalidValue,
                format!("invalid value '{text}' for MODE: {e}\n"),
            )
            .with_cmd(cmd)
        })
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(
            Mode::ALL
                .into_iter()
                .map(|m| clap::builder::PossibleValue::new(m.word())),
        ))
    }
}

/// The mode words as clap's choices, so `--help` lists them and the shell
/// completions offer them.
impl clap::ValueEnum for Mode {
    fn value_variants<'a>() -> &'a [Self] {
        &Mode::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.word()))
    }
}
