//! Test helpers shared by the guards' unit tests: a verdict as the result
//! `last-guards.json` stores, written and read back as that file's JSON, so
//! an advice test reads exactly what a check wrote.

use crate::{GuardResult, Severity, Verdict};

/// `verdict` of the guard `name`, through the JSON of `last-guards.json`.
pub fn blocked(name: &str, verdict: Verdict) -> serde_json::Result<GuardResult> {
    let text = serde_json::to_string(&GuardResult::new(name, Severity::Hard, verdict, 0))?;
    serde_json::from_str(&text)
}
