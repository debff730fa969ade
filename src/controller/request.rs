//! `mode request MODE`: hand the transition to `mode-controller@MODE.service`
//! (so it survives this terminal and the GUI going away), wait for its job,
//! and report what the run that served that job recorded. The desired mode
//! is written by the transition itself, under the lock, once it converged:
//! a request never writes it, so nothing has to be put back and a late
//! request can never overwrite a newer wish.

use std::time::Duration;

use crate::clock::Stamp;
use crate::mode::Mode;
use crate::state::{audit_find, StateError, TransitionOutcome, TransitionRecord};
use crate::systemd::{Bus, JobKind, ServiceEnd, SystemdError};

use super::exit::{journal_hint, unrecorded};
use super::requester::{self, Instance, Requester, What};
use super::{Context, Error, Exit};

/// How a request ended.
#[derive(Debug)]
pub enum RequestOutcome {
    /// `--no-wait`: the job is queued.
    Queued { unit: String, job: u32 },
    /// The transition ran; `exit` is how the request ends, `why` the
    /// line for it where the record's own outcome does not say it (always
    /// there when no record was found).
    Finished {
        record: Option<Box<TransitionRecord>>,
        exit: Exit,
        why: Option<String>,
    },
}

pub fn unit_for(mode: Mode) -> String {
    format!("mode-controller@{mode}.service")
}

/// `mode request MODE` from the command line: the requester is the caller's
/// uid. A caller who is not root asks through polkit (see `requester`).
pub async fn request(
    ctx: &Context,
    bus: &Bus,
    mode: Mode,
    wait: bool,
    timeout: Duration,
) -> Result<RequestOutcome, Error> {
    if !nix::unistd::getuid().is_root() {
        return ask_through_polkit(ctx, bus, What::Mode(mode), wait, timeout).await;
    }
    let by = format!("cli uid={}", nix::unistd::getuid());
    request_as(ctx, bus, mode, &by, wait, timeout).await
}

/// How `mode reconcile` ended for the caller.
pub enum Reconciled {
    /// Root reconciled in this process: its record.
    Ran(Box<TransitionRecord>),
    /// For a caller who is not root, the oneshot reconciled
    /// (`mode-controller@reconcile:USER.service`).
    Served(RequestOutcome),
    /// The machine had converged: nothing to do.
    Nothing,
}

/// `mode reconcile` from the command line: root reconciles here; anyone
/// else asks through polkit, and a served run without a record that ended
/// well found nothing to do.
pub async fn reconcile_as_caller(ctx: &Context, bus: &Bus) -> Result<Reconciled, Error> {
    if nix::unistd::getuid().is_root() {
        return Ok(match super::reconcile(ctx, bus).await? {
            Some(record) => Reconciled::Ran(Box::new(record)),
            None => Reconciled::Nothing,
        });
    }
    let timeout = Duration::from_secs(ctx.config.timeouts.request_secs);
    Ok(
        match ask_through_polkit(ctx, bus, What::Reconcile, true, timeout).await? {
            RequestOutcome::Finished {
                record: None,
                exit: Exit::Success,
                ..
            } => Reconciled::Nothing,
            outcome => Reconciled::Served(outcome),
        },
    )
}

/// Start the instance that names the caller; systemd asks polkit whether
/// they may. Nothing is written here: the state directory is root's.
async fn ask_through_polkit(
    ctx: &Context,
    bus: &Bus,
    what: What,
    wait: bool,
    timeout: Duration,
) -> Result<RequestOutcome, Error> {
    if let Some(holder) = ctx.state.lock_holder() {
        return Err(StateError::Busy(holder).into());
    }
    let who = Requester::caller()?;
    let instance = Instance {
        what,
        user: Some(who.name),
    };
    let words = match what {
        What::Mode(m) => format!("request {m}"),
        What::Reconcile => "reconcile".into(),
    };
    let mode = match what {
        What::Mode(m) => Some(m),
        What::Reconcile => None,
    };
    run_unit(ctx, bus, &instance.unit(), mode, wait, timeout)
        .await
        .map_err(|e| match e {
            Error::Systemd(e @ SystemdError::Denied { .. }) => requester::denied(&words, e),
            other => other,
        })
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
    ctx.state.set_request_note(mode, by)?;
    run_unit(ctx, bus, &unit_for(mode), Some(mode), wait, timeout).await
}

/// Start `unit` (a transition for `mode`; `None`: a reconcile) and, with
/// `wait`, report what the run that served its job recorded.
async fn run_unit(
    ctx: &Context,
    bus: &Bus,
    unit: &str,
    mode: Option<Mode>,
    wait: bool,
    timeout: Duration,
) -> Result<RequestOutcome, Error> {
    let unit = unit.to_string();
    if !wait {
        let job = bus.enqueue_start(&unit).await?;
        return Ok(RequestOutcome::Queued { unit, job });
    }
    // Which run was there before: if the same run is there after the job
    // and it was not running already, systemd never ran the unit for us
    // (its start rate limit, say). A unit that ended well is unloaded
    // (its properties read as zero), so only a kept, failed run counts.
    let (run_before, was_running) = bus.unit_run(&unit).await?;
    let job = match bus.run_job(&unit, JobKind::Start, timeout).await {
        Ok(job) => job,
        Err(SystemdError::JobTimeout { .. }) => {
            return Err(Error::TimedOut(format!(
                "{unit} did not finish within {} s; it may still be running: watch `mode status`",
                timeout.as_secs()
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let end = bus.service_end(&unit).await?;
    if run_before != 0 && end.started_usec == run_before && !was_running && end.settled {
        let why = bus
            .failure_reason(&unit)
            .await
            .unwrap_or_else(|| "no reason given".into());
        return Ok(RequestOutcome::Finished {
            record: None,
            exit: Exit::Environment,
            why: Some(format!(
                "systemd did not run {unit} (job {}: {}; the unit's last {why}); {}",
                job.id,
                job.result,
                journal_hint(&unit)
            )),
        });
    }
    // The record of the run that served our job (several requests for the
    // same mode share one job): the last one, or one the audit log has.
    // Job ids start again at every boot, and the audit log outlives boots:
    // ours is for this mode and started since this boot.
    let booted = boot_stamp();
    let ours = |r: &TransitionRecord| {
        r.job_id == Some(job.id)
            && mode.is_none_or(|m| r.to == m.word())
            && Stamp::parse_rfc3339(&r.started_at).is_some_and(|t| t >= booted)
    };
    let record = match ctx.state.last_transition() {
        Ok(Some(r)) if ours(&r) => Some(r),
        _ => audit_find(&ctx.config.audit_log, ours).unwrap_or(None),
    };
    if record.is_none() && mode.is_none() && job.result == "done" {
        // A reconcile that found the machine where it should be records
        // nothing (and its unit, ended well, is unloaded: no exit status).
        return Ok(RequestOutcome::Finished {
            record: None,
            exit: Exit::Success,
            why: None,
        });
    }
    let (exit, mut why) = served_code(&unit, record.as_ref(), &end);
    if record.is_none() && exit == Exit::Environment {
        // It stopped before recording anything: say what was in its way.
        if let Some(e) = ctx.state.obstacle() {
            why = Some(format!(
                "{unit} stopped before it could record a transition: {e}"
            ));
        }
    }
    Ok(finished(&unit, record, exit, why))
}

/// The request's end, with the line that says it wherever the record's
/// outcome alone does not: a converged transition that could not be
/// recorded, or no record at all (never a success then).
fn finished(
    unit: &str,
    record: Option<TransitionRecord>,
    exit: Exit,
    why: Option<String>,
) -> RequestOutcome {
    let (exit, why) = match &record {
        Some(r)
            if why.is_none()
                && exit != Exit::of_outcome(r.outcome)
                && Exit::of_outcome(r.outcome).is_success() =>
        {
            let cause = r.record_error.clone().unwrap_or_else(|| journal_hint(unit));
            (exit, Some(unrecorded(r, &cause)))
        }
        Some(_) => (exit, why),
        None => (
            if exit.is_success() {
                Exit::Internal
            } else {
                exit
            },
            Some(why.unwrap_or_else(|| {
                format!(
                    "the transition unit exited with code {exit}; {}",
                    journal_hint(unit)
                )
            })),
        ),
    };
    RequestOutcome::Finished {
        record: record.map(Box::new),
        exit,
        why,
    }
}

/// When this boot began (now less the uptime), a little early to be safe.
fn boot_stamp() -> Stamp {
    let uptime_ms = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0, |secs| (secs * 1000.0) as u64);
    Stamp(
        Stamp::now()
            .0
            .saturating_sub(uptime_ms.saturating_add(60_000)),
    )
}

/// The exit of a request served by the run that wrote `record` (if any),
/// given how the unit ended.
fn served_code(
    unit: &str,
    record: Option<&TransitionRecord>,
    end: &ServiceEnd,
) -> (Exit, Option<String>) {
    match record {
        // Its run ended before the end of the transition: how it ended.
        Some(r) if r.outcome == TransitionOutcome::InProgress => match Exit::of_unit_end(unit, end) {
            (exit, Some(why)) if end.settled && !exit.is_success() => (exit, Some(why)),
            _ => (
                Exit::Failed,
                Some(format!(
                    "{unit} ended before its transition {} finished; `sudo mode reconcile` completes it",
                    r.id
                )),
            ),
        },
        // The machine switched but a state file could not be written.
        Some(r) if r.record_error.is_some() => (Exit::Environment, None),
        Some(r) => (Exit::of_outcome(r.outcome), None),
        None if !end.settled => (
            Exit::Internal,
            Some(format!(
                "{unit} ran again before its result could be read; see `mode status`"
            )),
        ),
        None => match Exit::of_unit_end(unit, end) {
            (Exit::Success, _) => (
                Exit::Internal,
                Some(format!(
                    "{unit} exited with code 0 without recording a transition; {}",
                    journal_hint(unit)
                )),
            ),
            (Exit::Busy, None) => (
                Exit::Busy,
                Some(
                    "busy: another transition held the lock; try again when `mode status` no longer shows it"
                        .into(),
                ),
            ),
            other => other,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(code: i32, status: i32, result: &str) -> ServiceEnd {
        ServiceEnd::ended(code, status, result)
    }

    const UNIT: &str = "mode-controller@compute.service";

    fn record(job: u32, invocation: &str, outcome: TransitionOutcome) -> TransitionRecord {
        let mut r: TransitionRecord = serde_json::from_str(
            r#"{"id":"t1","from":"desktop","to":"compute","requested_by":"x","started_at":"","finished_at":"","duration_ms":0,"outcome":"converged","steps":[],"guards":[],"error":null,"rollback":null}"#,
        )
        .unwrap();
        r.job_id = Some(job);
        r.invocation_id = Some(invocation.into());
        r.outcome = outcome;
        r
    }

    #[test]
    fn a_served_request_exits_with_its_transitions_code() {
        let r = record(7, "abc", TransitionOutcome::Converged);
        let code = |r: Option<&TransitionRecord>, e: &ServiceEnd| served_code(UNIT, r, e).0.code();
        assert_eq!(code(Some(&r), &end(1, 5, "exit-code")), 0);
        let r = record(7, "abc", TransitionOutcome::Refused);
        assert_eq!(code(Some(&r), &end(1, 0, "success")), 3);
        // Switched, but recording failed: 7.
        let mut r = record(7, "abc", TransitionOutcome::Converged);
        r.record_error = Some("/var/lib/mode-controller/desired: No space left on device".into());
        assert_eq!(code(Some(&r), &end(1, 7, "exit-code")), 7);
        // Killed mid-way: 4 with the sentence.
        let r = record(7, "abc", TransitionOutcome::InProgress);
        let (exit, why) = served_code(UNIT, Some(&r), &end(2, 9, "signal"));
        assert_eq!(exit, Exit::Failed);
        assert!(why.unwrap().contains("SIGKILL"));
        // No record: busy is 5, a silent 0 is 1.
        assert_eq!(code(None, &end(1, 5, "exit-code")), 5);
        assert_eq!(code(None, &end(1, 0, "success")), 1);
    }

    #[test]
    fn a_request_that_ends_unlike_its_record_or_without_one_says_why_in_one_line() {
        let line = |o: RequestOutcome| match o {
            RequestOutcome::Finished { exit, why, .. } => (exit, why.unwrap_or_default()),
            RequestOutcome::Queued { .. } => unreachable!(),
        };
        // Converged, but recording failed: the record's own error names it.
        let mut r = record(7, "abc", TransitionOutcome::Converged);
        r.record_error = Some("/run/mode-controller/current: No space left on device".into());
        let (exit, why) = line(finished(UNIT, Some(r), Exit::Environment, None));
        assert_eq!(exit, Exit::Environment);
        assert!(
            why.starts_with("the transition to compute converged, but recording it failed: /run/mode-controller/current"),
            "{why}"
        );
        // A refusal says it itself (the renderer's line): nothing added.
        let r = record(7, "abc", TransitionOutcome::Refused);
        assert_eq!(
            line(finished(UNIT, Some(r), Exit::Refused, None)),
            (Exit::Refused, String::new())
        );
        // No record: never a success, and the journal is named.
        let (exit, why) = line(finished(UNIT, None, Exit::Success, None));
        assert_eq!(exit, Exit::Internal);
        assert!(
            why.contains("see `journalctl -u mode-controller@compute.service`"),
            "{why}"
        );
        let (exit, why) = line(finished(UNIT, None, Exit::Failed, None));
        assert_eq!(exit, Exit::Failed);
        assert!(
            why.starts_with("the transition unit exited with code 4;"),
            "{why}"
        );
    }
}
