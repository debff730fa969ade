//! What the user can do about a guard that blocks: one sentence per
//! failing or erroring guard, for `mode dry-run` and `mode explain`. A
//! built-in guard's spec says it from its typed evidence; an external guard
//! may bring its own (`"advice"` in its evidence); anything else gets the
//! generic sentence. Passing and skipped guards need no advice.

use serde_json::Value;

use crate::{registry, GuardResult, Outcome};

/// Advice for `result`, or `None` when there is nothing to do.
pub fn advice(result: &GuardResult) -> Option<String> {
    if !matches!(result.outcome, Outcome::Fail | Outcome::Error) {
        return None;
    }
    let specific = match registry::spec(&result.name) {
        Some(spec) => spec.advice(result),
        None => result
            .evidence
            .get("advice")
            .and_then(Value::as_str)
            .map(str::to_string),
    };
    Some(specific.unwrap_or_else(|| generic(result)))
}

fn generic(result: &GuardResult) -> String {
    if result.outcome == Outcome::Fail {
        format!("clear what {} reports: {}", result.name, result.reason)
    } else {
        format!(
            "{} could not decide; fix what it reports: {}",
            result.name, result.reason
        )
    }
}

/// `obs (pid 2211), Hyprland (pid 1234)`, or the fallback for an empty list.
pub(crate) fn processes<'a>(named: impl Iterator<Item = (&'a str, Option<u32>)>) -> String {
    let names: Vec<String> = named
        .map(|(name, pid)| match pid {
            Some(pid) => format!("{name} (pid {pid})"),
            None => name.to_string(),
        })
        .collect();
    if names.is_empty() {
        "the processes named above".into()
    } else {
        names.join(", ")
    }
}

/// `it` or `them`, `it` or `they` for `n` things.
pub(crate) fn them(n: usize) -> (&'static str, &'static str) {
    if n == 1 {
        ("it", "it")
    } else {
        ("them", "they")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Severity;
    use serde_json::json;

    fn result(name: &str, outcome: Outcome, evidence: Value) -> GuardResult {
        GuardResult {
            name: name.into(),
            severity: Severity::Hard,
            outcome,
            reason: "r".into(),
            evidence,
            duration_ms: 1,
        }
    }

    #[test]
    fn a_pass_needs_no_advice() {
        for outcome in [Outcome::Pass, Outcome::Skipped] {
            let r = result("no_ssh", outcome, json!({"advice": "ask bob to log out"}));
            assert_eq!(advice(&r), None);
        }
    }

    #[test]
    fn an_external_guard_can_bring_its_own_advice() {
        let r = result(
            "no_ssh",
            Outcome::Fail,
            json!({"advice": "ask bob to log out"}),
        );
        assert_eq!(advice(&r).as_deref(), Some("ask bob to log out"));
    }

    #[test]
    fn a_guard_without_advice_gets_the_generic_sentence() {
        let r = result("no_ssh", Outcome::Fail, Value::Null);
        assert_eq!(advice(&r).as_deref(), Some("clear what no_ssh reports: r"));
        let r = result("no_ssh", Outcome::Error, Value::Null);
        assert_eq!(
            advice(&r).as_deref(),
            Some("no_ssh could not decide; fix what it reports: r")
        );
    }
}
