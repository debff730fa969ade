//! `mode apply` and `mode reconcile`: lock, observe, plan, guard, execute
//! (aborting at the first failed step), verify by observing again, roll back
//! on failure, and record everything: state files and the audit log.

use tracing::{info, warn};

use crate::clock::{transition_id, Stamp};
use crate::mode::{Mode, ObservedMode};
use crate::plan::{plan, plan_clearing, with_missing_starts, Step};
use crate::state::{append_audit, RollbackRecord, StepRecord, TransitionOutcome, TransitionRecord};
use crate::systemd::Bus;

use super::evaluate::evaluate;
use super::steps::{execute, Transition};
use super::{Context, Error};

/// Execute a plan into `to` and check the machine really is there.
/// `record` names the transition the steps belong to.
async fn converge(
    ctx: &Context,
    bus: &Bus,
    steps: &[Step],
    to: Mode,
    record: &TransitionRecord,
) -> (Vec<StepRecord>, Result<(), String>) {
    let t = Transition {
        transition: &record.id,
        from: &record.from,
        to: to.word(),
        to_mode: to,
        requested_by: &record.requested_by,
    };
    let (records, failure) = execute(ctx, bus, steps, &t).await;
    if let Some(f) = failure {
        return (records, Err(f));
    }
    match ctx.observe(bus, None, None).await {
        Ok(o) if o.mode == ObservedMode::from(to) => (records, Ok(())),
        Ok(o) => (
            records,
            Err(format!(
                "verification failed: expected {to}, observed {} ({})",
                o.mode, o.reason
            )),
        ),
        Err(e) => (records, Err(format!("verification failed: {e}"))),
    }
}

/// Who asked. The unit runs `mode apply` with `MODE_REQUESTED_BY=unit`: then
/// it is the note `mode request` left for this mode. Any other value (the
/// boot unit sets `boot`) is taken as it is; without it, the caller.
fn requester(ctx: &Context, to: Mode, caller: &str) -> String {
    match std::env::var("MODE_REQUESTED_BY").as_deref() {
        Ok("unit") => match ctx.state.request_note() {
            Ok(Some((mode, by))) if mode == to && !by.is_empty() => by,
            _ => format!("unit mode-controller@{to}.service"),
        },
        Ok(other) if !other.is_empty() => other.to_string(),
        _ => caller.to_string(),
    }
}

/// `mode apply MODE`: the whole transition. Refusals and failures come back
/// as records (outcome `refused` / `failed`); `Err` is for what prevented a
/// transition from being attempted at all (busy, no systemd, bad state dir).
pub async fn apply(
    ctx: &Context,
    bus: &Bus,
    to: Mode,
    caller: &str,
) -> Result<TransitionRecord, Error> {
    ctx.state.ensure()?;
    let started = Stamp::now();
    let id = transition_id(started);
    let _lock = ctx.state.lock(&id)?;
    let requested_by = requester(ctx, to, caller);
    info!(transition = %id, to = %to, requested_by = %requested_by, "transition {id} to {to} started");

    ctx.state.set_desired(to)?;
    write_placement(ctx, to)?;
    let recorded = ctx.state.current().unwrap_or_else(|e| {
        warn!("{e}; it will be rewritten");
        None
    });
    let before = ctx.observe(bus, None, recorded).await?;
    let the_plan = with_missing_starts(
        plan_clearing(before.mode, to, &ctx.config, &before.strays()),
        &ctx.config,
        &before.profile_units_not_running(to, &ctx.config),
    );
    let mut record = TransitionRecord {
        id,
        from: before.mode.word().to_string(),
        to: to.word().to_string(),
        requested_by,
        started_at: started.rfc3339(),
        finished_at: String::new(),
        duration_ms: 0,
        outcome: TransitionOutcome::Noop,
        steps: vec![],
        guards: vec![],
        error: None,
        rollback: None,
    };

    let current = if the_plan.is_noop() {
        ObservedMode::from(to)
    } else {
        let report = evaluate(ctx, bus, &the_plan).await?;
        ctx.state.set_last_guards(&report)?;
        record.guards = report.guards.clone();
        let blockers: Vec<String> = report
            .blockers()
            .map(|g| format!("{}: {}", g.name, g.reason))
            .collect();
        if !blockers.is_empty() {
            record.outcome = TransitionOutcome::Refused;
            record.error = Some(blockers.join("; "));
            // Nothing changed: the machine is where it was observed to be.
            before.mode
        } else {
            let (steps, result) = converge(ctx, bus, &the_plan.steps, to, &record).await;
            record.steps = steps;
            match result {
                Ok(()) => {
                    record.outcome = TransitionOutcome::Converged;
                    ObservedMode::from(to)
                }
                Err(e) => {
                    record.outcome = TransitionOutcome::Failed;
                    record.error = Some(e);
                    roll_back(ctx, bus, before.mode, &mut record).await
                }
            }
        }
    };
    finish(ctx, record, current, started)
}

/// `capability-placement.json` and, with vLLM profiles, each profile's
/// environment file (`vllm-PROFILE.env`: its GPUs and memory share), all
/// generated from the configuration before anything starts.
fn write_placement(ctx: &Context, to: Mode) -> Result<(), Error> {
    ctx.state.set_placement(&ctx.config.placement_document())?;
    // Training units (`EnvironmentFile=/run/mode-controller/training.env`)
    // get the GPUs of the mode being entered.
    if let Some(profiles) = &ctx.config.vllm_profiles {
        let display = ctx.config.guard_settings.gpu.display_gpu.as_deref();
        ctx.state.write_atomic(
            "training.env",
            profiles
                .training_env(to == Mode::Compute, display)
                .as_bytes(),
        )?;
    }
    for (profile, placement) in ctx.config.vllm_placements() {
        ctx.state.write_atomic(
            &format!("vllm-{profile}.env"),
            placement.env_file().as_bytes(),
        )?;
    }
    Ok(())
}

/// After a failure, go back to the mode the machine was in; the returned
/// mode is what `current` should now say.
async fn roll_back(
    ctx: &Context,
    bus: &Bus,
    prior: ObservedMode,
    record: &mut TransitionRecord,
) -> ObservedMode {
    let Some(prior_mode) = prior.as_mode() else {
        return ObservedMode::FailedTransition;
    };
    let now = match ctx.observe(bus, None, None).await {
        Ok(o) => o.mode,
        Err(_) => ObservedMode::FailedTransition,
    };
    let back = plan(now, prior_mode, &ctx.config);
    // A drain paused vLLM before the failure: reopen every drained unit that
    // still runs first, so the requests it held are answered.
    let drained: Vec<String> = record
        .steps
        .iter()
        .filter(|s| s.action == "drain-vllm")
        .map(|s| s.unit.clone())
        .collect();
    let still_running = if drained.is_empty() {
        vec![]
    } else {
        bus.unit_states(&drained).await.unwrap_or_default()
    };
    let resumes = drained.into_iter().filter(|u| {
        still_running
            .iter()
            .any(|s| &s.unit == u && s.active_state == "active")
    });
    let steps: Vec<Step> = resumes
        .map(|unit| Step::ResumeVllm { unit })
        .chain(back.steps)
        .collect();
    let (steps, result) = converge(ctx, bus, &steps, prior_mode, record).await;
    warn!(to = %prior_mode, ok = result.is_ok(), "rolled back to {prior_mode}: {}", if result.is_ok() { "converged" } else { "failed" });
    let (outcome, error, current) = match result {
        Ok(()) => (TransitionOutcome::Converged, None, prior),
        Err(e) => (
            TransitionOutcome::Failed,
            Some(e),
            ObservedMode::FailedTransition,
        ),
    };
    record.rollback = Some(RollbackRecord {
        to: prior_mode.word().to_string(),
        outcome,
        steps,
        error,
    });
    current
}

fn finish(
    ctx: &Context,
    mut record: TransitionRecord,
    current: ObservedMode,
    started: Stamp,
) -> Result<TransitionRecord, Error> {
    let finished = Stamp::now();
    record.finished_at = finished.rfc3339();
    record.duration_ms = finished.millis_since(started);
    ctx.state.set_current(current)?;
    ctx.state.set_last_transition(&record)?;
    append_audit(&ctx.config.audit_log, &record)?;
    info!(
        transition = %record.id,
        from = %record.from,
        to = %record.to,
        outcome = record.outcome.word(),
        "transition {} {} -> {}: {}",
        record.id,
        record.from,
        record.to,
        record.outcome.word()
    );
    Ok(record)
}

/// `mode reconcile`: converge to the desired mode (the default when none is
/// recorded). Nothing is done, and nothing written, when the machine is
/// already there and the record agrees.
pub async fn reconcile(ctx: &Context, bus: &Bus) -> Result<Option<TransitionRecord>, Error> {
    let desired = super::desired_mode(ctx)?.0;
    let lock = ctx.state.lock_holder();
    if let Some(holder) = lock {
        return Err(crate::state::StateError::Busy(holder).into());
    }
    let recorded = ctx.state.current().unwrap_or(None);
    let observed = ctx.observe(bus, None, recorded).await?;
    if observed.mode == ObservedMode::from(desired)
        && recorded == Some(observed.mode)
        && observed.strays().is_empty()
    {
        return Ok(None);
    }
    apply(ctx, bus, desired, "reconcile").await.map(Some)
}
