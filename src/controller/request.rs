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

use super::requester::{self, Instance, Requester, What};
use super::{Context, Error};

/// How a request ended.
#[derive(Debug)]
pub enum RequestOutcome {
    /// `--no-wait`: the job is queued.
    Queued { unit: String, job: u32 },
    /// The transition ran; `exit` is the contract code for how it ended,
    /// `why` the sentence when no record tells it.
    Finished {
        record: Option<Box<TransitionRecord>>,
        exit: u8,
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

/// `mode reconcile` by a user who is not root: the oneshot reconciles for
/// them (`mode-controller@reconcile:USER.service`). Finished without a
/// record and exit 0: there was nothing to do.
pub async fn reconcile_through_polkit(
    ctx: &Context,
    bus: &Bus,
    timeout: Duration,
) -> Result<RequestOutcome, Error> {
    ask_through_polkit(ctx, bus, What::Reconcile, true, timeout).await
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
            exit: 7,
            why: Some(format!(
                "systemd did not run {unit} (job {}: {}; the unit's last {why}); see `journalctl -u {unit}`",
                job.id, job.result
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
            exit: 0,
            why: None,
        });
    }
    let (exit, mut why) = served_code(&unit, record.as_ref(), &end);
    if record.is_none() && exit == 7 {
        // It stopped before recording anything: say what was in its way.
        if let Some(e) = ctx.state.obstacle() {
            why = Some(format!(
                "{unit} stopped before it could record a transition: {e}"
            ));
        }
    }
    Ok(RequestOutcome::Finished {
        record: record.map(Box::new),
        exit,
        why,
    })
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

/// The exit code of a request served by the run that wrote `record` (if
/// any), given how the unit ended.
fn served_code(
    unit: &str,
    record: Option<&TransitionRecord>,
    end: &ServiceEnd,
) -> (u8, Option<String>) {
    match record {
        // Its run ended before the end of the transition: how it ended.
        Some(r) if r.outcome == TransitionOutcome::InProgress => match unit_end_code(unit, end) {
            (code, Some(why)) if end.settled && code != 0 => (code, Some(why)),
            _ => (
                4,
                Some(format!(
                    "{unit} ended before its transition {} finished; `sudo mode reconcile` completes it",
                    r.id
                )),
            ),
        },
        // The machine switched but a state file could not be written.
        Some(r) if r.record_error.is_some() => (7, None),
        Some(r) => (outcome_code(r.outcome), None),
        None if !end.settled => (
            1,
            Some(format!(
                "{unit} ran again before its result could be read; see `mode status`"
            )),
        ),
        None => match unit_end_code(unit, end) {
            (0, _) => (
                1,
                Some(format!(
                    "{unit} exited with code 0 without recording a transition; see `journalctl -u {unit}`"
                )),
            ),
            (5, None) => (
                5,
                Some(
                    "busy: another transition held the lock; try again when `mode status` no longer shows it"
                        .into(),
                ),
            ),
            other => other,
        },
    }
}

fn outcome_code(o: TransitionOutcome) -> u8 {
    match o {
        TransitionOutcome::Converged | TransitionOutcome::Noop => 0,
        TransitionOutcome::Refused => 3,
        TransitionOutcome::Failed | TransitionOutcome::InProgress => 4,
    }
}

/// Every way the unit can end, as a contract code and (where the code
/// alone does not say it) one sentence.
pub fn unit_end_code(unit: &str, end: &ServiceEnd) -> (u8, Option<String>) {
    let journal = format!("see `journalctl -u {unit}`");
    match (end.code, end.status) {
        // Exited: `mode apply`'s own codes pass through.
        (1, s @ 0..=8) => (s as u8, None),
        (1, 101) => (
            1,
            Some(format!(
                "{unit} crashed (a panic, exit 101): a bug; {journal}; `mode status` shows how far it got and `sudo mode reconcile` completes it"
            )),
        ),
        (1, s @ 200..=243) => (
            7,
            Some(format!(
                "systemd could not run {unit} (exit {s}, {}); {journal}",
                exec_failure(s)
            )),
        ),
        (1, s) => (
            1,
            Some(format!("{unit} exited with unexpected code {s}; {journal}")),
        ),
        (2 | 3, sig) => {
            let name = nix::sys::signal::Signal::try_from(sig)
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|_| format!("signal {sig}"));
            let how = if end.result == "timeout" {
                format!("ran past its TimeoutStartSec and was killed ({name})")
            } else {
                format!("was killed by {name}")
            };
            (
                4,
                Some(format!(
                    "{unit} {how} mid-transition; no rollback ran: `mode status` shows how far it got, `sudo mode reconcile` completes it"
                )),
            )
        }
        _ => (
            1,
            Some(format!(
                "{unit} ended without running (result {}); {journal}",
                end.result
            )),
        ),
    }
}

/// systemd's own exit codes for a service it could not start (systemd.exec(5)).
fn exec_failure(status: i32) -> &'static str {
    match status {
        200 => "CHDIR",
        201 => "NICE",
        202 => "FDS",
        203 => "EXEC: the binary is missing or not executable",
        204 => "MEMORY",
        205 => "LIMITS",
        206 => "OOM_ADJUST",
        207 => "SIGNAL_MASK",
        208 => "STDIN",
        209 => "STDOUT",
        210 => "CHROOT",
        211 => "IOPRIO",
        212 => "TIMERSLACK",
        213 => "SECUREBITS",
        214 => "SETSCHEDULER",
        215 => "CPUAFFINITY",
        216 => "GROUP",
        217 => "USER",
        218 => "CAPABILITIES",
        219 => "CGROUP",
        220 => "SETSID",
        221 => "CONFIRM",
        222 => "STDERR",
        224 => "PAM",
        225 => "NETWORK",
        226 => "NAMESPACE: a sandboxing option failed",
        227 => "NO_NEW_PRIVILEGES",
        228 => "SECCOMP",
        229 => "SELINUX_CONTEXT",
        230 => "PERSONALITY",
        231 => "APPARMOR_PROFILE",
        232 => "ADDRESS_FAMILIES",
        233 => "RUNTIME_DIRECTORY: the state directory could not be set up",
        234 => "CHOWN",
        235 => "SMACK_PROCESS_LABEL",
        236 => "KEYRING",
        237 => "STATE_DIRECTORY",
        238 => "CACHE_DIRECTORY",
        239 => "LOGS_DIRECTORY",
        240 => "CONFIGURATION_DIRECTORY",
        241 => "NUMA_POLICY",
        242 => "CREDENTIALS",
        243 => "BPF",
        _ => "a setup step failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(code: i32, status: i32, result: &str) -> ServiceEnd {
        ServiceEnd {
            result: result.into(),
            code,
            status,
            started_usec: 42,
            settled: true,
        }
    }

    const UNIT: &str = "mode-controller@compute.service";

    #[test]
    fn every_way_the_unit_ends_is_a_contract_code_with_one_sentence() {
        for (e, want, words) in [
            (end(2, 9, "signal"), 4, "killed by SIGKILL"),
            (end(3, 6, "core-dump"), 4, "killed by SIGABRT"),
            (end(2, 15, "timeout"), 4, "TimeoutStartSec"),
            (end(1, 101, "exit-code"), 1, "panic"),
            (end(1, 233, "exit-code"), 7, "RUNTIME_DIRECTORY"),
            (end(1, 203, "exit-code"), 7, "EXEC"),
            (end(1, 77, "exit-code"), 1, "unexpected code 77"),
            (end(0, 0, "resources"), 1, "without running"),
        ] {
            let (code, why) = unit_end_code(UNIT, &e);
            let why = why.unwrap_or_default();
            assert_eq!(code, want, "{e:?}: {why}");
            assert!(why.contains(words), "{e:?}: {why}");
            assert_eq!(why.lines().count(), 1);
            assert!(matches!(code, 0..=8));
        }
        for s in 0..=8 {
            assert_eq!(unit_end_code(UNIT, &end(1, s, "exit-code")).0, s as u8);
        }
    }

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
        assert_eq!(served_code(UNIT, Some(&r), &end(1, 5, "exit-code")).0, 0);
        let r = record(7, "abc", TransitionOutcome::Refused);
        assert_eq!(served_code(UNIT, Some(&r), &end(1, 0, "success")).0, 3);
        // Switched, but recording failed: 7.
        let mut r = record(7, "abc", TransitionOutcome::Converged);
        r.record_error = Some("/var/lib/mode-controller/desired: No space left on device".into());
        assert_eq!(served_code(UNIT, Some(&r), &end(1, 7, "exit-code")).0, 7);
        // Killed mid-way: 4 with the sentence.
        let r = record(7, "abc", TransitionOutcome::InProgress);
        let (code, why) = served_code(UNIT, Some(&r), &end(2, 9, "signal"));
        assert_eq!(code, 4);
        assert!(why.unwrap().contains("SIGKILL"));
        // No record: busy is 5, a silent 0 is 1.
        assert_eq!(served_code(UNIT, None, &end(1, 5, "exit-code")).0, 5);
        assert_eq!(served_code(UNIT, None, &end(1, 0, "success")).0, 1);
    }
}
