//! `mode idle-check`: gathers the idle signals (logind sessions, input
//! devices, audio, CPU pressure) and the guards' verdict on compute, decides,
//! and, run by root, requests compute on behalf of `idle`.

mod decide;
mod signals;
pub mod wayback;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use mode_guards::{GuardResult, Roots};

use crate::clock::Stamp;
use crate::config::ConfigError;
use crate::config::IdleConfig;
use crate::controller::{self, Context, Error, RequestOutcome};
use crate::mode::{Mode, ObservedMode};
use crate::state::TransitionRecord;
use mode_guards::SessionInfo;

use crate::systemd::Bus;

pub use decide::Decision;
pub use signals::{Audio, CpuPressure, InputActivity, Presence};

/// The requester recorded for automatic requests.
pub const REQUESTER: &str = "idle";

/// Overrides of the configured idle settings for one run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub threshold_secs: Option<u64>,
    pub input_dir: Option<PathBuf>,
    pub max_cpu_pressure: Option<f64>,
    /// Decide and say so, but change nothing (not even the unattended mark).
    pub dry_run: bool,
}

/// The idle settings in force: the configuration's, overridden by options.
fn settings(ctx: &Context, opts: &Options) -> Result<IdleConfig, Error> {
    let mut s = ctx.config.idle.clone();
    if let Some(t) = opts.threshold_secs {
        s.threshold_secs = t;
    }
    if let Some(dir) = &opts.input_dir {
        s.input_devices = Some(dir.clone());
    }
    if let Some(p) = opts.max_cpu_pressure {
        s.max_cpu_pressure = p;
    }
    s.validate()
        .map_err(|(field, message)| ConfigError::Invalid {
            path: PathBuf::from("(idle settings)"),
            field,
            message,
        })?;
    Ok(s)
}

/// Every figure the decision was made from.
#[derive(Debug, Serialize)]
pub struct Figures {
    pub now: String,
    /// When the seat became idle, all signals considered (`null`: not idle).
    pub idle_since: Option<String>,
    pub idle_secs: Option<u64>,
    pub threshold_secs: u64,
    pub presence: Presence,
    /// The logind sessions that were read.
    pub sessions: Vec<SessionInfo>,
    /// Since when nobody has been logged in, as recorded by idle-check.
    pub unattended_since: Option<String>,
    /// When the last transition finished: idleness is counted from no earlier.
    pub last_transition_at: Option<String>,
    pub input: Option<InputActivity>,
    pub audio: Audio,
    pub cpu_pressure: CpuPressure,
    pub max_cpu_pressure: f64,
}

/// What `mode idle-check` found, decided and did.
#[derive(Debug, Serialize)]
pub struct IdleCheck {
    pub decision: Decision,
    /// Whether compute was requested.
    pub acted: bool,
    /// Why not (every reason), or why.
    pub reasons: Vec<String>,
    pub observed: ObservedMode,
    pub figures: Figures,
    pub blocking_guards: Vec<GuardResult>,
    /// Why a decision to promote was not acted on (dry run, not root).
    pub note: Option<String>,
    /// The transition the request ran, when it acted.
    pub transition: Option<TransitionRecord>,
}

/// Since when nobody has been logged in: the mark left by an earlier check,
/// or (root, not a dry run) now, marked for the next check. The mark is
/// forgotten as soon as anyone is at the seat or the machine leaves desktop.
fn unattended_since(
    ctx: &Context,
    presence: &Presence,
    observed: ObservedMode,
    may_write: bool,
    now: Stamp,
) -> Result<Option<u64>, Error> {
    let counting = matches!(presence, Presence::Nobody) && observed == ObservedMode::Desktop;
    let mark = ctx.state.unattended_since().unwrap_or(None);
    if !may_write {
        return Ok(mark.filter(|_| counting));
    }
    if counting {
        if mark.is_none() {
            ctx.state.ensure()?;
            ctx.state.set_unattended_since(Some(now.0))?;
        }
        Ok(Some(mark.unwrap_or(now.0)))
    } else {
        ctx.state.set_unattended_since(None)?;
        Ok(None)
    }
}

/// Run the check; the exit code is the request's when it acted, else 0.
pub async fn check(ctx: &Context, bus: &Bus, opts: &Options) -> Result<(IdleCheck, u8), Error> {
    let s = settings(ctx, opts)?;
    let roots = Roots::system();
    let now = Stamp::now();
    let root = nix::unistd::getuid().is_root();

    let sessions = bus.sessions().await?;
    let presence = signals::presence(&sessions, &ctx.config.guard_settings.sessions.compositors);
    let input = s.input_devices.as_deref().map(signals::input_activity);
    let audio = signals::audio(&ctx.config.guard_settings.audio, &roots);
    let cpu = signals::cpu_pressure(&roots.procfs);
    let dry = controller::dry_run(ctx, bus, Mode::Compute).await?;
    let observed = dry.observed.mode;
    let blocking_guards: Vec<GuardResult> = dry.guards.blockers().cloned().collect();

    let unattended = unattended_since(ctx, &presence, observed, root && !opts.dry_run, now)?;
    let seat_since = match presence {
        Presence::Nobody => unattended,
        ref p => p.since_ms(),
    };
    let input_ms = input.as_ref().and_then(|i| i.last_ms);
    // Idleness never reaches back before the last transition: right after
    // someone switched to desktop, the machine is not yet unattended.
    let last_transition_ms = ctx
        .state
        .last_transition()
        .unwrap_or(None)
        .and_then(|t| Stamp::parse_rfc3339(&t.finished_at))
        .map(|s| s.0);
    let idle_since = seat_since.map(|since| {
        since
            .max(input_ms.unwrap_or(0))
            .max(last_transition_ms.unwrap_or(0))
    });
    let idle_secs = idle_since.map(|since| now.0.saturating_sub(since) / 1000);

    let (decision, reasons) = decide::decide(&decide::Inputs {
        observed,
        presence: &presence,
        idle_secs,
        threshold_secs: s.threshold_secs,
        audio: &audio,
        cpu: &cpu,
        max_cpu_pressure: s.max_cpu_pressure,
        blockers: blocking_guards
            .iter()
            .map(|g| format!("{}: {}", g.name, g.reason))
            .collect(),
    });
    let mut out = IdleCheck {
        decision,
        acted: false,
        reasons,
        observed,
        figures: Figures {
            now: now.rfc3339(),
            idle_since: idle_since.map(|ms| Stamp(ms).rfc3339()),
            idle_secs,
            threshold_secs: s.threshold_secs,
            presence,
            sessions,
            unattended_since: unattended.map(|ms| Stamp(ms).rfc3339()),
            last_transition_at: last_transition_ms.map(|ms| Stamp(ms).rfc3339()),
            input,
            audio,
            cpu_pressure: cpu,
            max_cpu_pressure: s.max_cpu_pressure,
        },
        blocking_guards,
        note: None,
        transition: None,
    };
    if decision != Decision::Promote {
        return Ok((out, 0));
    }
    if opts.dry_run {
        out.note = Some("dry run: compute would be requested".into());
        return Ok((out, 0));
    }
    if !root {
        out.note = Some(format!(
            "compute would be requested, but only root acts (you are uid {}); mode-idle-check.timer runs this as root",
            nix::unistd::getuid()
        ));
        return Ok((out, 0));
    }
    let timeout = Duration::from_secs(ctx.config.timeouts.request_secs);
    let (exit, why) =
        match controller::request_as(ctx, bus, Mode::Compute, REQUESTER, true, timeout).await? {
            RequestOutcome::Finished { record, exit, why } => {
                out.transition = record.map(|r| *r);
                (exit, why)
            }
            RequestOutcome::Queued { .. } => (0, None),
        };
    out.acted = true;
    // A refused or failed wish never reached `desired` (only a converged
    // transition writes it), so there is nothing to put back.
    if exit == 0 {
        // The machine left desktop: the next stay there counts afresh.
        ctx.state.set_unattended_since(None)?;
    }
    if out.transition.is_none() || why.is_some() {
        out.note = Some(why.unwrap_or_else(|| format!(
            "the transition unit exited with code {exit} without recording a transition; see `journalctl -u mode-controller@compute.service`"
        )));
        return Ok((out, if exit == 0 { 1 } else { exit }));
    }
    Ok((out, exit))
}
