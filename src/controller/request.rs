//! `mode request MODE`: record the wish, hand the transition to
//! `mode-controller@MODE.service` (so it survives this terminal and the GUI
//! going away), wait for its job, and report what `mode apply` recorded.

use std::time::Duration;

use crate::clock::Stamp;
use crate::mode::Mode;
use crate::state::{StateError, TransitionRecord};
use crate::systemd::{Bus, JobKind, SystemdError};

use super::{Context, Error};

/// How a request ended.
#[derive(Debug)]
pub enum RequestOutcome {
    /// `--no-wait`: the job is queued.
    Queued { unit: String, job: u32 },
    /// The transition ran; `exit` is `mode apply`'s exit code.
    Finished {
        record: Option<Box<TransitionRecord>>,
        exit: u8,
    },
}

pub fn unit_for(mode: Mode) -> String {
    format!("mode-controller@{mode}.service")
}

/// `mode request MODE` from the command line: the requester is the caller's uid.
pub async fn request(
    ctx: &Context,
    bus: &Bus,
    mode: Mode,
    wait: bool,
    timeout: Duration,
) -> Result<RequestOutcome, Error> {
    let by = format!("cli uid={}", nix::unistd::getuid());
    request_as(ctx, bus, mode, &by, wait, timeout).await
}

/// A request on behalf of `by` (recorded as `requested_by`; `idle` for the
/// idle automation).
pub async fn request_as(
    ctx: &Context,
    bus: &Bus,
    mode: Mode,
    by: &str,
    wait: bool,
    timeout: Duration,
) -> Result<RequestOutcome, Error> {
    if let Some(holder) = ctx.state.lock_holder() {
        return Err(StateError::Busy(holder).into());
    }
    ctx.state.ensure()?;
    let previous = ctx.state.desired().unwrap_or(None);
    let asked_at = Stamp::now();
    ctx.state.set_desired(mode)?;
    ctx.state.set_request_note(mode, by)?;
    let unit = unit_for(mode);

    // Until the unit has run, a failure means the wish did not happen: put
    // back the desired mode it replaced.
    let undo = |e: Error| match restore_desired(ctx, mode, previous) {
        Ok(()) => e,
        Err(restore) => restore,
    };
    if !wait {
        let job = bus.enqueue_start(&unit).await.map_err(|e| undo(e.into()))?;
        return Ok(RequestOutcome::Queued { unit, job });
    }
    let job = match bus.run_job(&unit, JobKind::Start, timeout).await {
        Ok(job) => job,
        Err(SystemdError::JobTimeout { .. }) => {
            return Err(Error::TimedOut(format!(
                "{unit} did not finish within {} s; it may still be running: watch `mode status`",
                timeout.as_secs()
            )))
        }
        Err(e) => return Err(undo(e.into())),
    };
    let exit = if job.result == "done" {
        0
    } else {
        let status = bus.service_exit_status(&unit).await?;
        u8::try_from(status).ok().filter(|c| *c != 0).unwrap_or(1)
    };
    if exit == 5 {
        // Another transition won the lock: our wish did not happen either.
        restore_desired(ctx, mode, previous)?;
    }
    // The record is ours only if it was written for this mode after we asked.
    let record = ctx
        .state
        .last_transition()?
        .filter(|r| r.to == mode.word() && r.started_at >= asked_at.rfc3339())
        .map(Box::new);
    Ok(RequestOutcome::Finished { record, exit })
}

/// Put back the desired mode a request replaced (the default when there was
/// none), unless someone has changed it since.
fn restore_desired(ctx: &Context, ours: Mode, previous: Option<Mode>) -> Result<(), Error> {
    if ctx.state.desired().unwrap_or(None) == Some(ours) {
        ctx.state
            .set_desired(previous.unwrap_or(ctx.config.default_mode))?;
    }
    Ok(())
}
