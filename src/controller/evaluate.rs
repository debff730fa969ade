//! Guard evaluation for one transition: gather the D-Bus facts once, build
//! the guards the configuration names for the target mode, run them all
//! concurrently, and say what the user can do about each failure.

use std::sync::Arc;

use mode_guards::{
    evaluate_all, Facts, GraphicalSessionAbsent, Guard, GuardReport, GuardResult, Outcome,
    Severity, TargetReachable,
};

use crate::clock::Stamp;
use crate::config::GuardSeverity;
use crate::plan::Plan;
use crate::systemd::Bus;

use super::{Context, Error};

fn builtin(name: &str) -> Option<Arc<dyn Guard>> {
    match name {
        "graphical_session_absent" => Some(Arc::new(GraphicalSessionAbsent)),
        "target_reachable" => Some(Arc::new(TargetReachable)),
        _ => None,
    }
}

/// Evaluate every guard configured for `plan.to`.
pub async fn evaluate(ctx: &Context, bus: &Bus, plan: &Plan) -> Result<GuardReport, Error> {
    let mut facts = Facts::new(plan.to.word());
    facts.units_to_start = bus.unit_states(&plan.units_to_start()).await?;
    facts.sessions = bus.sessions().await.map_err(|e| e.to_string());

    let mut runnable = Vec::new();
    let mut unavailable = Vec::new();
    for (name, severity) in &ctx.config.mode(plan.to).guards {
        let severity = match severity {
            GuardSeverity::Off => continue,
            GuardSeverity::Hard => Severity::Hard,
            GuardSeverity::Soft => Severity::Soft,
        };
        match builtin(name) {
            Some(guard) => runnable.push((guard, severity)),
            None => unavailable.push(GuardResult {
                name: name.clone(),
                severity,
                outcome: Outcome::Skipped,
                reason: "this guard is not available in this build".into(),
                evidence: serde_json::Value::Null,
                duration_ms: 0,
            }),
        }
    }
    let mut guards = evaluate_all(runnable, Arc::new(facts));
    guards.extend(unavailable);
    Ok(GuardReport {
        evaluated_at: Stamp::now().rfc3339(),
        target: plan.to.word().to_string(),
        guards,
    })
}

/// What the user can do about a guard that fails, in one sentence.
pub fn advice(result: &GuardResult) -> Option<String> {
    if !matches!(result.outcome, Outcome::Fail | Outcome::Error) {
        return None;
    }
    let text = match result.name.as_str() {
        "graphical_session_absent" => {
            "log out of the graphical session(s) named above (or end them with `loginctl terminate-session ID`), then ask again"
        }
        "target_reachable" => {
            "install or unmask the units named above, or fix the unit names in the configuration (`mode config check`)"
        }
        _ => return Some(format!("clear what {} reports, then ask again", result.name)),
    };
    Some(text.to_string())
}
