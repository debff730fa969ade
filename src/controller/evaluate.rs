//! Guard evaluation for one transition: gather the D-Bus facts once, build
//! the guards the configuration names for the target mode (built-in or
//! external), run them all concurrently, and run the post-teardown checks
//! that a plan's `check` steps ask for.

use std::sync::Arc;

use mode_guards::{
    builtin, evaluate_all, external, gpu_release_verification, Facts, Guard, GuardReport,
    GuardResult, Outcome, Roots, Severity,
};

use crate::clock::Stamp;
use crate::config::{GuardSeverity, JobPolicy};
use crate::mode::ObservedMode;
use crate::plan::Plan;
use crate::systemd::Bus;

use super::{Context, Error};

fn roots(ctx: &Context) -> Roots {
    Roots::system_with_state_dir(ctx.state.root())
}

/// The facts the guards read, gathered over D-Bus.
async fn gather(ctx: &Context, bus: &Bus, plan: &Plan) -> Result<Facts, Error> {
    let settings = &ctx.config.guard_settings;
    let mut facts = Facts::new(plan.to.word());
    facts.units_to_start = bus.unit_states(&plan.units_to_start()).await?;
    facts.unit_states = bus.unit_states(&settings.units_of_interest()).await?;
    facts.sessions = bus.sessions().await.map_err(|e| e.to_string());
    facts.slice_units = bus
        .slice_units(&settings.ai_slice.slice)
        .await
        .map_err(|e| e.to_string());
    Ok(facts)
}

fn unavailable(name: &str, severity: Severity) -> GuardResult {
    GuardResult {
        name: name.to_string(),
        severity,
        outcome: Outcome::Error,
        reason: "no built-in or external guard has this name".into(),
        evidence: serde_json::Value::Null,
        duration_ms: 0,
    }
}

/// Evaluate every guard configured for `plan.to`.
pub async fn evaluate(ctx: &Context, bus: &Bus, plan: &Plan) -> Result<GuardReport, Error> {
    let settings = &ctx.config.guard_settings;
    let roots = roots(ctx);
    let externals = external(settings);
    let mut runnable = Vec::new();
    let mut missing = Vec::new();
    let mode = ctx.config.mode(plan.to);
    // With the `refuse` policy, running user jobs block leaving compute.
    let refuse_jobs = plan.from == ObservedMode::Compute && mode.drain.jobs == JobPolicy::Refuse;
    for (name, severity) in &mode.guards {
        let severity = match severity {
            GuardSeverity::Off => continue,
            _ if refuse_jobs && name == "user_jobs_safe" => Severity::Hard,
            GuardSeverity::Hard => Severity::Hard,
            GuardSeverity::Soft => Severity::Soft,
        };
        let guard = builtin(name, settings, &roots)
            .or_else(|| externals.iter().find(|g| g.name() == name).cloned());
        match guard {
            Some(guard) => runnable.push((guard, severity)),
            None => missing.push(unavailable(name, severity)),
        }
    }
    let facts = gather(ctx, bus, plan).await?;
    let mut guards = evaluate_all(runnable, Arc::new(facts));
    guards.extend(missing);
    Ok(GuardReport {
        evaluated_at: Stamp::now().rfc3339(),
        target: plan.to.word().to_string(),
        guards,
    })
}

/// A plan's post-teardown check: the named guard, evaluated as hard, in the
/// form that waits for its condition (the display GPU's release polls).
pub fn verify(ctx: &Context, guard: &str) -> GuardResult {
    let settings = &ctx.config.guard_settings;
    let check: Option<Arc<dyn Guard>> = match guard {
        "gpu_display_released" => Some(gpu_release_verification(settings, &roots(ctx))),
        other => builtin(other, settings, &roots(ctx)),
    };
    match check {
        Some(g) => evaluate_all(vec![(g, Severity::Hard)], Arc::new(Facts::new(guard)))
            .pop()
            .unwrap_or_else(|| unavailable(guard, Severity::Hard)),
        None => unavailable(guard, Severity::Hard),
    }
}
