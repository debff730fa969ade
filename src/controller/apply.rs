//! `mode apply` and `mode reconcile`: lock, observe, plan, guard, execute
//! (aborting at the first failed step), verify by observing again, roll back
//! on failure, and record everything: state files and the audit log.

use tracing::{info, warn};

use crate::clock::{transition_id, Began, Stamp};
use crate::mode::{Mode, ObservedMode};
use crate::observe::Observation;
use crate::plan::{plan, plan_clearing, with_missing_starts, Step};
use crate::state::{
    append_audit, test_pause, RollbackRecord, StateError, StepRecord, TransitionOutcome,
    TransitionRecord,
};
use crate::systemd::Bus;

use super::evaluate::evaluate;
use super::requester::{Instance, Requester, What};
use super::steps::{execute, Transition};
use super::{Context, Error};

/// The observed mode after steps ran (no drift: only the mode is judged),
/// read again once the system bus is back if it was lost.
async fn observe_riding_out_bus_loss(ctx: &Context, bus: &Bus) -> Result<Observation, Error> {
    let observed = ctx.observe_units(bus, None, None).await;
    if observed.is_err() && matches!(super::steps::ride_out_bus_loss(bus).await, Ok(Some(_))) {
        return ctx.observe_units(bus, None, None).await;
    }
    observed
}

/// Execute a plan into `to` and check the machine really is there.
/// `record` names the transition the steps belong to; while it is
/// in progress, it is rewritten after each step (the journal).
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
    let mut progress = |done: &[StepRecord]| {
        if record.outcome == TransitionOutcome::InProgress {
            let mut r = record.clone();
            r.steps = done.to_vec();
            if let Err(e) = ctx.state.set_last_transition(&r) {
                warn!("{e}");
            }
        }
    };
    let (records, failure) = execute(ctx, bus, steps, &t, &mut progress).await;
    if let Some(f) = failure {
        return (records, Err(f));
    }
    test_pause(&ctx.state, "verify");
    let observed = observe_riding_out_bus_loss(ctx, bus).await;
    match observed {
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

/// Who a transition is for, as the command that runs it knows.
#[derive(Clone, Copy)]
enum Caller<'a> {
    /// This process: `cli uid=0`, `reconcile` (or what the environment says).
    Process(&'a str),
    /// A unit instance that names its requester (`mode-controller@MODE:USER`,
    /// which only polkit's yes let that user start): recorded as `by`.
    Asked { by: &'a str, unit: &'a str },
}

/// Who asked. An instance naming its user says it. The unit runs `mode
/// apply` with `MODE_REQUESTED_BY=unit`: then it is the note `mode request`
/// left for this mode. Any other value (the boot unit sets `boot`) is taken
/// as it is; without it, the caller.
fn requester(ctx: &Context, to: Mode, caller: Caller) -> String {
    let caller = match caller {
        Caller::Asked { by, .. } => return by.to_string(),
        Caller::Process(c) => c,
    };
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
/// transition from being attempted at all (busy, no systemd, bad state dir),
/// or a finished transition that could not be recorded (`Unrecorded`).
pub async fn apply(
    ctx: &Context,
    bus: &Bus,
    to: Mode,
    caller: &str,
) -> Result<TransitionRecord, Error> {
    apply_for(ctx, bus, to, Caller::Process(caller)).await
}

/// What the unit instance `instance` runs when it names its requester
/// (`MODE:USER`, `reconcile:USER`): that transition, recorded as theirs.
/// `None`: a reconcile found nothing to do. An instance without a user is
/// `apply` as before.
pub async fn apply_instance(
    ctx: &Context,
    bus: &Bus,
    instance: &Instance,
    caller: &str,
) -> Result<Option<TransitionRecord>, Error> {
    let Some(user) = &instance.user else {
        return match instance.what {
            What::Mode(to) => apply(ctx, bus, to, caller).await.map(Some),
            What::Reconcile => reconcile(ctx, bus).await,
        };
    };
    let by = Requester::named(user)?.words(instance.what);
    let unit = instance.unit();
    let asked = Caller::Asked {
        by: &by,
        unit: &unit,
    };
    match instance.what {
        What::Mode(to) => apply_for(ctx, bus, to, asked).await.map(Some),
        What::Reconcile => reconcile_for(ctx, bus, asked).await,
    }
}

async fn apply_for(
    ctx: &Context,
    bus: &Bus,
    to: Mode,
    caller: Caller<'_>,
) -> Result<TransitionRecord, Error> {
    ctx.state.ensure()?;
    let started = Began::now();
    let id = transition_id(started.at);
    let _lock = if std::env::var("MODE_REQUESTED_BY").as_deref() == Ok("unit") {
        lock_waiting(ctx, &id).await?
    } else {
        ctx.state.lock(&id)?
    };
    transition(ctx, bus, to, caller, started, id).await
}

/// The unit's run waits its turn: `mode request` answered busy before
/// starting it if a transition was running, so a transition found running
/// now started in the same instant, and every request that got this far is
/// served by a transition of its own (bounded by `timeouts.request_secs`).
async fn lock_waiting(ctx: &Context, id: &str) -> Result<crate::state::TransitionLock, Error> {
    let deadline = mode_guards::Deadline::after(std::time::Duration::from_secs(
        ctx.config.timeouts.request_secs,
    ));
    loop {
        match ctx.state.lock(id) {
            Err(StateError::Busy(holder)) if holder.controller && !deadline.passed() => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            other => return other.map_err(Error::from),
        }
    }
}

/// The transition itself, with the lock held.
async fn transition(
    ctx: &Context,
    bus: &Bus,
    to: Mode,
    caller: Caller<'_>,
    started: Began,
    id: String,
) -> Result<TransitionRecord, Error> {
    test_pause(&ctx.state, "locked");
    complete_interrupted(ctx);
    let requested_by = requester(ctx, to, caller);
    info!(transition = %id, to = %to, requested_by = %requested_by, "transition {id} to {to} started");

    write_placement(ctx)?;
    write_training_env(ctx, to)?;
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
    let own = match caller {
        Caller::Asked { unit, .. } => unit.to_string(),
        Caller::Process(_) => super::request::unit_for(to),
    };
    let (job_id, invocation_id) = own_unit(bus, &own).await;
    let mut record = TransitionRecord {
        id,
        from: before.mode.word().to_string(),
        to: to.word().to_string(),
        requested_by,
        started_at: started.at.rfc3339(),
        finished_at: String::new(),
        duration_ms: 0,
        outcome: TransitionOutcome::Noop,
        steps: vec![],
        guards: vec![],
        error: None,
        rollback: None,
        job_id,
        invocation_id,
        record_error: None,
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
            // Journaled before the first step: a kill from here on leaves
            // an honest record that the next run completes.
            record.outcome = TransitionOutcome::InProgress;
            ctx.state.set_last_transition(&record)?;
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

/// When `mode apply` runs as the unit `unit` (`mode-controller@MODE.service`
/// or an instance naming its user): the unit's current job (what each `mode
/// request` waits on) and its invocation id.
async fn own_unit(bus: &Bus, unit: &str) -> (Option<u32>, Option<String>) {
    let Ok(invocation) = std::env::var("INVOCATION_ID") else {
        return (None, None);
    };
    let job = bus.unit_job(unit).await.unwrap_or_else(|e| {
        warn!("cannot read the job of the transition unit: {e}");
        None
    });
    (job, Some(invocation))
}

/// A record left `in-progress` by a run that died (we hold the lock, so its
/// writer is gone) is completed as failed, saying so, and its target is
/// returned (what reconcile then converges to: the interrupted wish); a
/// finished record the audit log lacks (a kill between the two writes) is
/// appended, and the desired mode it converged to is written if that write
/// was lost.
fn complete_interrupted(ctx: &Context) -> Option<Mode> {
    let log = &ctx.config.audit_log;
    let mut record = match ctx.state.last_transition() {
        Ok(Some(r)) => r,
        Ok(None) => return None,
        Err(e) => {
            warn!("{e}; the next record replaces it");
            return None;
        }
    };
    let mut interrupted = None;
    if record.outcome == TransitionOutcome::InProgress {
        interrupted = record.to.parse::<Mode>().ok();
        let now = Stamp::now();
        record.outcome = TransitionOutcome::Failed;
        record.error = Some(format!(
            "interrupted after {} step(s): the controller stopped before the transition finished (killed, or the machine went down); completed at {} by the next run",
            record.steps.len(),
            now.rfc3339()
        ));
        record.finished_at = now.rfc3339();
        if let Some(t0) = crate::clock::Stamp::parse_rfc3339(&record.started_at) {
            record.duration_ms = now.millis_since(t0);
        }
        warn!(transition = %record.id, "transition {} was interrupted; its record is completed", record.id);
        if let Err(e) = ctx.state.set_last_transition(&record) {
            warn!("{e}");
        }
    }
    match crate::state::audit_find(log, |r| r.id == record.id) {
        Ok(Some(_)) => {}
        Ok(None) => {
            if let Err(e) = append_audit(log, &record) {
                warn!("{e}");
            }
        }
        Err(e) => warn!("{e}"),
    }
    if matches!(
        record.outcome,
        TransitionOutcome::Converged | TransitionOutcome::Noop
    ) {
        if let Ok(to) = record.to.parse::<Mode>() {
            let kept = ctx.state.kept_desired().unwrap_or(None);
            let desired = ctx.state.desired().unwrap_or(None);
            let lost =
                desired != Some(to) || (ctx.state.persistent_dir().is_some() && kept != Some(to));
            if lost {
                if let Err(e) = ctx.state.set_desired(to) {
                    warn!("{e}");
                }
            }
        }
    }
    interrupted
}

/// `capability-placement.json` and, with vLLM profiles, each profile's
/// environment file (`vllm-PROFILE.env`: its GPUs and memory share), all
/// generated from the configuration before anything starts.
fn write_placement(ctx: &Context) -> Result<(), Error> {
    ctx.state.set_placement(&ctx.config.placement_document())?;
    for (profile, placement) in ctx.config.vllm_placements() {
        ctx.state.write_atomic(
            &format!("vllm-{profile}.env"),
            placement.env_file().as_bytes(),
        )?;
    }
    Ok(())
}

/// Training units (`EnvironmentFile=/run/mode-controller/training.env`)
/// get the GPUs of the mode being entered (with vLLM profiles' GPU list).
fn write_training_env(ctx: &Context, to: Mode) -> Result<(), Error> {
    if let Some(profiles) = &ctx.config.vllm_profiles {
        let display = ctx.config.guard_settings.gpu.display_gpu.as_deref();
        ctx.state.write_atomic(
            "training.env",
            profiles
                .training_env(to == Mode::Compute, display)
                .as_bytes(),
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
    let observed = observe_riding_out_bus_loss(ctx, bus).await;
    let now = match observed {
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
    started: Began,
) -> Result<TransitionRecord, Error> {
    record.finished_at = Stamp::now().rfc3339();
    record.duration_ms = started.elapsed_ms();
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
    // Every write is tried even when one fails: the machine is where it is,
    // and as much of it as possible is recorded. The desired mode changes
    // only when the wish was met, so a refusal or failure leaves it as it was.
    let mut failed: Option<StateError> = None;
    let mut keep = |r: Result<(), StateError>| {
        if let Err(e) = r {
            warn!("{e}");
            failed.get_or_insert(e);
        }
    };
    keep(ctx.state.set_last_transition(&record));
    test_pause(&ctx.state, "recorded");
    if matches!(
        record.outcome,
        TransitionOutcome::Converged | TransitionOutcome::Noop
    ) {
        if let Ok(to) = record.to.parse::<Mode>() {
            keep(ctx.state.set_desired(to));
        }
    }
    test_pause(&ctx.state, "desired");
    keep(ctx.state.set_current(current));
    test_pause(&ctx.state, "current");
    keep(append_audit(&ctx.config.audit_log, &record));
    match failed {
        None => Ok(record),
        Some(error) => {
            // Say so in the record too (best effort), for `mode request`.
            record.record_error = Some(error.to_string());
            let _ = ctx.state.set_last_transition(&record);
            Err(Error::Unrecorded {
                record: Box::new(record),
                error,
            })
        }
    }
}

/// What status reports as unreadable and no transition may rewrite soon:
/// a corrupt `last-guards.json` is dropped (no stale blockers are better
/// than unreadable ones), and the placement written again.
fn repair_unreadable(ctx: &Context) -> Result<(), Error> {
    if let Err(e) = ctx.state.last_guards() {
        warn!("{e}; removed by reconcile");
        ctx.state.discard("last-guards.json")?;
    }
    write_placement(ctx)
}

/// `mode reconcile`: converge, under the lock, to the target of a
/// transition that was interrupted (its record completed first), else to
/// the desired mode (the default when none is recorded). Nothing is done,
/// and nothing written, when the machine is already there and the record
/// agrees.
pub async fn reconcile(ctx: &Context, bus: &Bus) -> Result<Option<TransitionRecord>, Error> {
    reconcile_for(ctx, bus, Caller::Process("reconcile")).await
}

async fn reconcile_for(
    ctx: &Context,
    bus: &Bus,
    caller: Caller<'_>,
) -> Result<Option<TransitionRecord>, Error> {
    ctx.state.ensure()?;
    let started = Began::now();
    let id = transition_id(started.at);
    let _lock = ctx.state.lock(&id)?;
    let interrupted = complete_interrupted(ctx);
    repair_unreadable(ctx)?;
    let desired = match interrupted {
        Some(to) => to,
        None => super::desired_mode(ctx)?.0,
    };
    let recorded = ctx.state.current().unwrap_or(None);
    let observed = ctx.observe(bus, None, recorded).await?;
    if observed.mode == ObservedMode::from(desired)
        && recorded == Some(observed.mode)
        && observed.strays().is_empty()
    {
        return Ok(None);
    }
    transition(ctx, bus, desired, caller, started, id)
        .await
        .map(Some)
}
