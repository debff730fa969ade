//! How a mode treats the work running in compute when the machine leaves it:
//! the vLLM drain timeout and what an unreadable queue means, the policy for user jobs in `ai.slice`
//! (refuse, checkpoint, or wait), per target mode.

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

/// What happens to user jobs in `ai.slice` when the machine leaves compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobPolicy {
    /// Refuse the transition while jobs run (`user_jobs_safe` becomes hard).
    Refuse,
    /// Send the checkpoint signal, wait up to the grace period for the job
    /// to exit, then stop its unit (SIGTERM, then SIGKILL after its stop timeout).
    Checkpoint,
    /// Wait until the jobs end by themselves, up to `wait_secs`.
    Wait,
}

/// What a vLLM drain does when the queue cannot be read (`/metrics`
/// unreachable, slow past `request_timeout_ms`, or an error status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnreadablePolicy {
    /// The drain step fails: the transition rolls back and vLLM is resumed.
    Rollback,
    /// vLLM is stopped anyway (its own `--shutdown-timeout` is the last
    /// word); the step records a warning saying so.
    Stop,
}

/// A signal a job can be sent to checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckpointSignal {
    #[serde(rename = "SIGTERM")]
    Term,
    #[serde(rename = "SIGINT")]
    Int,
    #[serde(rename = "SIGUSR1")]
    Usr1,
    #[serde(rename = "SIGUSR2")]
    Usr2,
    #[serde(rename = "SIGHUP")]
    Hup,
}

impl CheckpointSignal {
    /// The signal as the syscall crate knows it (number and name).
    fn signal(self) -> Signal {
        match self {
            CheckpointSignal::Term => Signal::SIGTERM,
            CheckpointSignal::Int => Signal::SIGINT,
            CheckpointSignal::Usr1 => Signal::SIGUSR1,
            CheckpointSignal::Usr2 => Signal::SIGUSR2,
            CheckpointSignal::Hup => Signal::SIGHUP,
        }
    }

    pub fn number(self) -> i32 {
        self.signal() as i32
    }

    pub fn name(self) -> &'static str {
        self.signal().as_str()
    }
}

/// The drain ladder for entering a mode from compute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drain {
    /// User jobs in `ai.slice`.
    pub jobs: JobPolicy,
    /// The signal `checkpoint` sends (SIGUSR1 for jobs written for Slurm-style requeue).
    pub checkpoint_signal: CheckpointSignal,
    /// How long a signalled job may take to checkpoint and exit.
    pub grace_secs: u64,
    /// How long `wait` waits for the jobs to end.
    pub wait_secs: u64,
    /// How long to wait for vLLM's running and waiting requests to reach 0
    /// before it is stopped anyway (the timeout is recorded).
    pub vllm_timeout_secs: u64,
    /// When vLLM's queue cannot be read during the drain: `rollback` or `stop`.
    pub vllm_unreadable: UnreadablePolicy,
}

impl Default for Drain {
    fn default() -> Self {
        Self {
            jobs: JobPolicy::Checkpoint,
            checkpoint_signal: CheckpointSignal::Term,
            grace_secs: 120,
            wait_secs: 3600,
            vllm_timeout_secs: 120,
            vllm_unreadable: UnreadablePolicy::Rollback,
        }
    }
}
