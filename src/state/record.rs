//! The transition record (`last-transition.json` and each audit log line):
//! what was asked, every step with its outcome, the guards, and the rollback.

use serde::{Deserialize, Serialize};

use mode_guards::GuardResult;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransitionOutcome {
    Converged,
    Noop,
    Refused,
    Failed,
    /// Written before the first step and replaced at the end; found by a
    /// later run with nobody holding the lock, it means the transition was
    /// interrupted (the controller killed, the machine down).
    #[serde(rename = "in-progress")]
    InProgress,
}

impl TransitionOutcome {
    pub fn word(self) -> &'static str {
        match self {
            TransitionOutcome::Converged => "converged",
            TransitionOutcome::Noop => "noop",
            TransitionOutcome::Refused => "refused",
            TransitionOutcome::Failed => "failed",
            TransitionOutcome::InProgress => "in-progress",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepOutcome {
    Done,
    Failed,
}

impl StepOutcome {
    pub fn word(self) -> &'static str {
        match self {
            StepOutcome::Done => "done",
            StepOutcome::Failed => "failed",
        }
    }
}

/// One executed step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub action: String,
    pub unit: String,
    pub outcome: StepOutcome,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Units pulled in by the step that failed without belonging to the mode.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// What a drain step found and did (vLLM's queue, the drain timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Every user job a drain step affected, with what happened to it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<JobRecord>,
    /// The settle step: each unit with a readiness check and when it got ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ready: Vec<ReadyRecord>,
}

/// A unit that answered its readiness check, and how long after the settle
/// step began (the unit had just been started).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadyRecord {
    pub unit: String,
    /// The URL that answered 2xx.
    pub check: String,
    pub ready_ms: u64,
}

/// What happened to one user job when the machine left compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobOutcome {
    /// It exited on the checkpoint signal within the grace period.
    Checkpointed,
    /// It did not exit in time and its unit was stopped (SIGTERM).
    Stopped,
    /// It ignored SIGTERM too and was killed after its stop timeout.
    Killed,
    /// It ended by itself while the controller waited.
    Ended,
    /// A Kubernetes pod evicted through the Eviction API.
    Evicted,
    /// A Slurm job put back in the queue (after its checkpoint signal), to
    /// run again where Slurm places it.
    Requeued,
    /// It still runs: the transition did not go ahead.
    LeftRunning,
}

/// One user job in `ai.slice` and what the drain did to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub unit: String,
    pub pids: Vec<u32>,
    pub command: String,
    pub outcome: JobOutcome,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackRecord {
    pub to: String,
    pub outcome: TransitionOutcome,
    pub steps: Vec<StepRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransitionRecord {
    pub id: String,
    pub from: String,
    pub to: String,
    pub requested_by: String,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    pub outcome: TransitionOutcome,
    pub steps: Vec<StepRecord>,
    pub guards: Vec<GuardResult>,
    pub error: Option<String>,
    pub rollback: Option<RollbackRecord>,
    /// The systemd job of `mode-controller@MODE.service` that ran it: how
    /// each `mode request` served by that job finds its transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<u32>,
    /// The unit's invocation id (`$INVOCATION_ID`) when a unit ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_id: Option<String>,
    /// A state file or the audit log that could not be written after the
    /// transition ended (the outcome above still holds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_error: Option<String>,
}
