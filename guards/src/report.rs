//! The verdict of one guard and the report of a whole evaluation, in the
//! shape `last-guards.json` promises (contract.md).

use serde::{Deserialize, Serialize};

/// Whether a failing guard blocks the transition (`hard`) or only warns (`soft`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Hard,
    Soft,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    /// The guard itself could not decide (timeout, missing access).
    Error,
    /// Not applicable here; the reason says why.
    Skipped,
}

/// What a guard's `check` returns: an outcome, one line of reason, evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub outcome: Outcome,
    pub reason: String,
    pub evidence: serde_json::Value,
}

impl Verdict {
    pub fn pass(reason: impl Into<String>) -> Self {
        Self::new(Outcome::Pass, reason, serde_json::Value::Null)
    }
    pub fn fail(reason: impl Into<String>, evidence: serde_json::Value) -> Self {
        Self::new(Outcome::Fail, reason, evidence)
    }
    pub fn error(reason: impl Into<String>) -> Self {
        Self::new(Outcome::Error, reason, serde_json::Value::Null)
    }
    pub fn skipped(reason: impl Into<String>) -> Self {
        Self::new(Outcome::Skipped, reason, serde_json::Value::Null)
    }
    pub fn new(outcome: Outcome, reason: impl Into<String>, evidence: serde_json::Value) -> Self {
        Self {
            outcome,
            reason: reason.into(),
            evidence,
        }
    }
}

/// One guard's entry in `last-guards.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardResult {
    pub name: String,
    pub severity: Severity,
    pub outcome: Outcome,
    pub reason: String,
    #[serde(default)]
    pub evidence: serde_json::Value,
    pub duration_ms: u64,
}

impl GuardResult {
    /// The entry for guard `name` at `severity` that gave `verdict`.
    pub fn new(
        name: impl Into<String>,
        severity: Severity,
        verdict: Verdict,
        duration_ms: u64,
    ) -> Self {
        Self {
            name: name.into(),
            severity,
            outcome: verdict.outcome,
            reason: verdict.reason,
            evidence: verdict.evidence,
            duration_ms,
        }
    }

    /// A hard guard that failed or could not decide blocks the transition.
    pub fn blocks(&self) -> bool {
        self.severity == Severity::Hard && matches!(self.outcome, Outcome::Fail | Outcome::Error)
    }
}

/// `last-guards.json`: every guard evaluated for one target mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardReport {
    pub evaluated_at: String,
    #[serde(rename = "for")]
    pub target: String,
    pub guards: Vec<GuardResult>,
}

impl GuardReport {
    pub fn blockers(&self) -> impl Iterator<Item = &GuardResult> {
        self.guards.iter().filter(|g| g.blocks())
    }
}
