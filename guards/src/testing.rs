//! Test helpers shared by the guards' unit tests: a verdict as the result
//! `last-guards.json` stores, written and read back as that file's JSON, so
//! an advice test reads exactly what a check wrote.

use crate::{GuardResult, Severity, Verdict};

/// `verdict` of the guard `name`, through the JSON of `last-guards.json`.
pub fn blocked(name: &str, verdict: Verdict) -> GuardResult {
    let result = GuardResult {
        name: name.into(),
        severity: Severity::Hard,
        outcome: verdict.outcome,
        reason: verdict.reason,
        evidence: verdict.evidence,
        duration_ms: 0,
    };
    let text = serde_json::to_string(&result).unwrap();
    serde_json::from_str(&text).unwrap()
}
