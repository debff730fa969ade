//! The contract's exit codes (docs/contract.md, "Exit codes") in one place:
//! `Exit` is built here from the controller's errors, from a transition's
//! outcome and from how a transition unit ended, and is the only place an
//! exit number is written. The sentences that go with the codes of a
//! request (the journal hint, "recording it failed") live here too.

use serde::{Serialize, Serializer};

use crate::state::{StateError, TransitionOutcome, TransitionRecord};
use crate::systemd::{ServiceEnd, SystemdError};

use super::Error;

/// How a command ended, as the contract numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: converged, already there (no-op), or a query answered.
    Success,
    /// 1: unexpected internal error.
    Internal,
    /// 2: usage error (unknown command, unknown mode word).
    Usage,
    /// 3: a hard guard failed; nothing was changed.
    Refused,
    /// 4: an action or the final verification failed; rollback attempted.
    Failed,
    /// 5: another transition holds the lock.
    Busy,
    /// 6: a mutating command run by a non-root user.
    NotPermitted,
    /// 7: environment or configuration problem.
    Environment,
    /// 8: timed out waiting; the transition may still be running.
    TimedOut,
}

impl Exit {
    pub const ALL: [Exit; 9] = [
        Exit::Success,
        Exit::Internal,
        Exit::Usage,
        Exit::Refused,
        Exit::Failed,
        Exit::Busy,
        Exit::NotPermitted,
        Exit::Environment,
        Exit::TimedOut,
    ];

    /// The number the process exits with.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Internal => 1,
            Exit::Usage => 2,
            Exit::Refused => 3,
            Exit::Failed => 4,
            Exit::Busy => 5,
            Exit::NotPermitted => 6,
            Exit::Environment => 7,
            Exit::TimedOut => 8,
        }
    }

    /// The contract code a process exited with (`mode apply` run by the
    /// transition unit), or `None` for a number the contract does not use.
    pub fn from_code(code: i32) -> Option<Exit> {
        Self::ALL.into_iter().find(|e| i32::from(e.code()) == code)
    }

    pub fn is_success(self) -> bool {
        self == Exit::Success
    }

    /// A transition's outcome: converged and no-op succeed, a refusal is
    /// 3, a failure (or a run that ended mid-way) is 4.
    pub fn of_outcome(outcome: TransitionOutcome) -> Exit {
        match outcome {
            TransitionOutcome::Converged | TransitionOutcome::Noop => Exit::Success,
            TransitionOutcome::Refused => Exit::Refused,
            TransitionOutcome::Failed | TransitionOutcome::InProgress => Exit::Failed,
        }
    }

    /// The controller's errors.
    pub fn of_error(e: &Error) -> Exit {
        match e {
            Error::Config(_) => Exit::Environment,
            Error::State(StateError::Busy(_)) => Exit::Busy,
            Error::State(StateError::Corrupt { .. } | StateError::Refused { .. }) => {
                Exit::Environment
            }
            Error::State(e) if e.is_environment() => Exit::Environment,
            // Recording a finished transition is the machine's problem
            // (disk, permissions, something in the way): always 7.
            Error::Unrecorded { .. } => Exit::Environment,
            Error::State(StateError::Io { .. }) => Exit::Internal,
            Error::Systemd(
                SystemdError::NotInit
                | SystemdError::Unreachable(_)
                | SystemdError::NotInstalled { .. },
            ) => Exit::Environment,
            Error::Systemd(_) => Exit::Internal,
            Error::NotPermitted(_) => Exit::NotPermitted,
            Error::TimedOut(_) => Exit::TimedOut,
            Error::Internal(_) => Exit::Internal,
        }
    }

    /// Every way a transition unit can end, as a contract code and (where
    /// the code alone does not say it) one sentence.
    pub fn of_unit_end(unit: &str, end: &ServiceEnd) -> (Exit, Option<String>) {
        match end.code {
            EXITED => exited(unit, end.status),
            KILLED | DUMPED => {
                let sig = end.status;
                let name = nix::sys::signal::Signal::try_from(sig)
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_else(|_| format!("signal {sig}"));
                let how = if end.result == "timeout" {
                    format!("ran past its TimeoutStartSec and was killed ({name})")
                } else {
                    format!("was killed by {name}")
                };
                (
                    Exit::Failed,
                    Some(format!(
                        "{unit} {how} mid-transition; no rollback ran: `mode status` shows how far it got, `sudo mode reconcile` completes it"
                    )),
                )
            }
            _ => (
                Exit::Internal,
                Some(format!(
                    "{unit} ended without running (result {}); {}",
                    end.result,
                    journal_hint(unit)
                )),
            ),
        }
    }
}

/// A transition unit whose main process exited with `status`.
fn exited(unit: &str, status: i32) -> (Exit, Option<String>) {
    // `mode apply`'s own codes pass through.
    if let Some(exit) = Exit::from_code(status) {
        return (exit, None);
    }
    let journal = journal_hint(unit);
    if status == PANIC {
        return (
            Exit::Internal,
            Some(format!(
                "{unit} crashed (a panic, exit {PANIC}): a bug; {journal}; `mode status` shows how far it got and `sudo mode reconcile` completes it"
            )),
        );
    }
    if EXEC_FAILURES.contains(&status) {
        return (
            Exit::Environment,
            Some(format!(
                "systemd could not run {unit} (exit {status}, {}); {journal}",
                exec_failure(status)
            )),
        );
    }
    (
        Exit::Internal,
        Some(format!(
            "{unit} exited with unexpected code {status}; {journal}"
        )),
    )
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.code())
    }
}

/// Under `--json` an exit is its number (`"exit_code": 7`).
impl Serialize for Exit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.code())
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e.code())
    }
}

/// Where to read what a unit said.
pub fn journal_hint(unit: &str) -> String {
    format!("see `journalctl -u {unit}`")
}

/// The line for a transition that ran but could not be fully recorded.
pub fn unrecorded(record: &TransitionRecord, why: &str) -> String {
    format!(
        "the transition to {} {}, but recording it failed: {why}",
        record.to,
        record.outcome.word()
    )
}

/// `ExecMainCode` (the `si_code` of the main process's end).
const EXITED: i32 = nix::libc::CLD_EXITED;
const KILLED: i32 = nix::libc::CLD_KILLED;
const DUMPED: i32 = nix::libc::CLD_DUMPED;
/// The status of a Rust program that panicked.
const PANIC: i32 = 101;
/// systemd's own exit statuses for a service it could not start.
const EXEC_FAILURES: std::ops::RangeInclusive<i32> = 200..=243;

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
        ServiceEnd::ended(code, status, result)
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
            let (exit, why) = Exit::of_unit_end(UNIT, &e);
            let why = why.unwrap_or_default();
            assert_eq!(exit.code(), want, "{e:?}: {why}");
            assert!(why.contains(words), "{e:?}: {why}");
            assert_eq!(why.lines().count(), 1);
        }
        for s in 0..=8 {
            assert_eq!(
                i32::from(Exit::of_unit_end(UNIT, &end(1, s, "exit-code")).0.code()),
                s
            );
        }
    }

    #[test]
    fn the_codes_are_the_contracts_and_each_number_comes_back_as_its_exit() {
        let codes: Vec<u8> = Exit::ALL.iter().map(|e| e.code()).collect();
        assert_eq!(codes, (0..=8).collect::<Vec<u8>>());
        for e in Exit::ALL {
            assert_eq!(Exit::from_code(i32::from(e.code())), Some(e));
            assert_eq!(serde_json::to_value(e).unwrap(), u64::from(e.code()));
        }
        assert_eq!(Exit::from_code(9), None);
        assert_eq!(Exit::from_code(-1), None);
    }

    #[test]
    fn outcomes_and_errors_map_to_their_codes() {
        assert_eq!(Exit::of_outcome(TransitionOutcome::Noop), Exit::Success);
        assert_eq!(Exit::of_outcome(TransitionOutcome::Refused), Exit::Refused);
        assert_eq!(
            Exit::of_outcome(TransitionOutcome::InProgress),
            Exit::Failed
        );
        assert_eq!(Exit::of_error(&Error::NotPermitted("x".into())).code(), 6);
        assert_eq!(Exit::of_error(&Error::TimedOut("x".into())).code(), 8);
        assert_eq!(
            Exit::of_error(&Error::Systemd(SystemdError::NotInit)),
            Exit::Environment
        );
    }
}
