//! `mode idle-check`, the use case: gathers the idle signals (logind
//! sessions, input devices, and audio and CPU pressure from the guard
//! evaluation for compute it runs anyway), keeps the unattended mark, lets
//! the pure decision of src/idle/ decide, and, run by root, requests compute
//! on behalf of `idle`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use mode_guards::{
    evaluate_all, Facts, GuardReport, GuardResult, SessionInfo, Severity, Spec, AUDIO_IDLE,
    CPU_LOAD_SAFE,
};

use crate::clock::Stamp;
use crate::config::{ConfigError, IdleConfig};
use crate::idle::{self, Audio, CpuPressure, Decision, InputActivity, Presence, REQUESTER};
use crate::mode::{Mode, ObservedMode};
use crate::state::TransitionRecord;
use crate::systemd::Bus;

use super::request::{request_as, RequestOutcome};
use super::{dry_run, Context, Error, Exit};

/// Overrides of the configured idle settings for one run.
#[derive(Debug, Clone, Default)]
pub struct IdleOptions {
    pub threshold_secs: Option<u64>,
    pub input_dir: Option<PathBuf>,
    pub max_cpu_pressure: Option<f64>,
    /// Decide and say so, but change nothing (not even the unattended mark).
    pub dry_run: bool,
}

/// The idle settings in force: the configuration's, overridden by options.
fn settings(ctx: &Context, opts: &IdleOptions) -> Result<IdleConfig, Error> {
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
    /// Why a decision to promote was not acted on (dry run, not root), or
    /// the line of a request that did not end well.
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

/// The result of `guard` in the evaluation for compute, or, where that
/// evaluation did not run it (configured off, or nothing to switch), the
/// guard run alone now: either way audio and pressure are read once a check.
async fn reading(
    ctx: &Context,
    report: &GuardReport,
    spec: &dyn Spec,
) -> Result<GuardResult, Error> {
    if let Some(r) = report.guards.iter().find(|g| g.name == spec.name()) {
        return Ok(r.clone());
    }
    let guard = spec.build(&ctx.config.guard_settings, &super::evaluate::roots(ctx));
    let facts = Arc::new(Facts::new(Mode::Compute.word()));
    tokio::task::spawn_blocking(move || evaluate_all(vec![(guard, Severity::Soft)], facts))
        .await
        .map_err(|e| Error::Internal(format!("the guard evaluation did not finish: {e}")))?
        .pop()
        .ok_or_else(|| Error::Internal("the guard evaluation returned nothing".into()))
}

/// What one check read: the seat, the input devices, the evaluation for
/// compute, and audio and CPU pressure from it.
struct Reading {
    sessions: Vec<SessionInfo>,
    presence: Presence,
    input: Option<InputActivity>,
    observed: ObservedMode,
    blocking_guards: Vec<GuardResult>,
    audio: Audio,
    cpu: CpuPressure,
}

async fn read(ctx: &Context, bus: &Bus, s: &IdleConfig) -> Result<Reading, Error> {
    let sessions = bus.sessions().await?;
    let presence = idle::presence(&sessions, &ctx.config.guard_settings.sessions.compositors);
    let input = s.input_devices.as_deref().map(idle::input_activity);
    let dry = dry_run(ctx, bus, Mode::Compute).await?;
    Ok(Reading {
        audio: idle::audio(&reading(ctx, &dry.guards, &AUDIO_IDLE).await?),
        cpu: idle::cpu_pressure(&reading(ctx, &dry.guards, &CPU_LOAD_SAFE).await?),
        blocking_guards: dry.guards.blockers().cloned().collect(),
        observed: dry.observed.mode,
        sessions,
        presence,
        input,
    })
}

/// The signals and the decision; nothing acted on yet (but the
/// unattended mark, when `may_write`).
async fn decide(
    ctx: &Context,
    bus: &Bus,
    s: &IdleConfig,
    may_write: bool,
) -> Result<IdleCheck, Error> {
    let now = Stamp::now();
    let r = read(ctx, bus, s).await?;
    let unattended = unattended_since(ctx, &r.presence, r.observed, may_write, now)?;
    let seat_since = match r.presence {
        Presence::Nobody => unattended,
        ref p => p.since_ms(),
    };
    let last_transition_ms = ctx
        .state
        .last_transition()
        .unwrap_or(None)
        .and_then(|t| Stamp::parse_rfc3339(&t.finished_at))
        .map(|s| s.0);
    let idle_since = idle::idle_since(
        seat_since,
        r.input.as_ref().and_then(|i| i.last_ms),
        last_transition_ms,
    );
    let idle_secs = idle_since.map(|since| now.0.saturating_sub(since) / 1000);
    let (decision, reasons) = idle::decide(&idle::Inputs {
        observed: r.observed,
        presence: &r.presence,
        idle_secs,
        threshold_secs: s.threshold_secs,
        audio: &r.audio,
        cpu: &r.cpu,
        max_cpu_pressure: s.max_cpu_pressure,
        blockers: r
            .blocking_guards
            .iter()
            .map(|g| format!("{}: {}", g.name, g.reason))
            .collect(),
    });
    Ok(IdleCheck {
        decision,
        acted: false,
        reasons,
        observed: r.observed,
        figures: Figures {
            now: now.rfc3339(),
            idle_since: idle_since.map(|ms| Stamp(ms).rfc3339()),
            idle_secs,
            threshold_secs: s.threshold_secs,
            presence: r.presence,
            sessions: r.sessions,
            unattended_since: unattended.map(|ms| Stamp(ms).rfc3339()),
            last_transition_at: last_transition_ms.map(|ms| Stamp(ms).rfc3339()),
            input: r.input,
            audio: r.audio,
            cpu_pressure: r.cpu,
            max_cpu_pressure: s.max_cpu_pressure,
        },
        blocking_guards: r.blocking_guards,
        note: None,
        transition: None,
    })
}

/// Act on a decision to promote: request compute as `idle` and end with
/// the request's exit.
async fn promote(ctx: &Context, bus: &Bus, out: &mut IdleCheck) -> Result<Exit, Error> {
    let timeout = Duration::from_secs(ctx.config.timeouts.request_secs);
    let (exit, why) = match request_as(ctx, bus, Mode::Compute, REQUESTER, true, timeout).await? {
        RequestOutcome::Finished { record, exit, why } => {
            out.transition = record.map(|r| *r);
            (exit, why)
        }
        RequestOutcome::Queued { .. } => (Exit::Success, None),
    };
    out.acted = true;
    if exit.is_success() {
        // The machine left desktop: the next stay there counts afresh.
        ctx.state.set_unattended_since(None)?;
    }
    out.note = why;
    Ok(exit)
}

/// Run the check; it ends with the request's exit when it acted, else 0.
pub async fn idle_check(
    ctx: &Context,
    bus: &Bus,
    opts: &IdleOptions,
) -> Result<(IdleCheck, Exit), Error> {
    let s = settings(ctx, opts)?;
    let uid = nix::unistd::getuid();
    let mut out = decide(ctx, bus, &s, uid.is_root() && !opts.dry_run).await?;
    if out.decision != Decision::Promote {
        return Ok((out, Exit::Success));
    }
    if opts.dry_run {
        out.note = Some("dry run: compute would be requested".into());
        return Ok((out, Exit::Success));
    }
    if !uid.is_root() {
        out.note = Some(format!(
            "compute would be requested, but only root acts (you are uid {uid}); mode-idle-check.timer runs this as root"
        ));
        return Ok((out, Exit::Success));
    }
    let exit = promote(ctx, bus, &mut out).await?;
    Ok((out, exit))
}
