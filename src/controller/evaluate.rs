//! Guard evaluation for one transition: gather the D-Bus facts once, build
//! the guards the configuration names for the target mode (built-in or
//! external), run them all concurrently, and run the post-teardown checks
//! that a plan's `check` steps ask for.

use std::collections::BTreeMap;
use std::sync::Arc;

use mode_guards::{
    evaluate_all, external, spec, Facts, Guard, GuardReport, GuardResult, HardWhen, Outcome, Roots,
    Severity, Spec, Verdict, VllmDrainable, GPU_DISPLAY_RELEASED, K3S_GPU_PODS_SAFE,
    SLURM_JOBS_SAFE, VLLM_DRAINABLE,
};

use crate::clock::Stamp;
use crate::config::{Config, GuardSeverity, JobPolicy};
use crate::mode::{Mode, ObservedMode};
use crate::plan::{Plan, Step};
use crate::systemd::Bus;

use super::{Context, Error};

pub(super) fn roots(ctx: &Context) -> Roots {
    Roots::system_with_state_dir(ctx.state.root())
}

/// The facts the guards read, gathered over D-Bus.
async fn gather(ctx: &Context, bus: &Bus, plan: &Plan) -> Result<Facts, Error> {
    let settings = &ctx.config.guard_settings;
    let mut facts = Facts::new(plan.to.word());
    // One ListUnitsByNames call for both lists.
    let to_start = plan.units_to_start();
    let mut of_interest = settings.units_of_interest();
    of_interest.extend(ctx.config.vllm_units());
    let states = bus
        .unit_states(&[to_start.clone(), of_interest.clone()].concat())
        .await?;
    let pick = |names: &[String]| {
        states
            .iter()
            .filter(|u| names.contains(&u.unit))
            .cloned()
            .collect()
    };
    facts.units_to_start = pick(&to_start);
    facts.unit_states = pick(&of_interest);
    facts.capability_placement = ctx.config.placement_document();
    let drains = |f: fn(&Step) -> bool| plan.steps.iter().any(f);
    let integrations = &ctx.config.integrations;
    let slurm = integrations.slurm.as_ref();
    if let Some(slurm) = slurm.filter(|_| drains(|s| matches!(s, Step::SlurmDrain { .. }))) {
        let jobs = crate::integrations::slurm::Slurm::new(slurm).jobs().await;
        facts.slurm_jobs = Some(jobs.map_err(|e| e.to_string()));
    }
    let k3s = integrations.k3s.as_ref();
    if let Some(k3s) = k3s.filter(|_| drains(|s| matches!(s, Step::K3sDrain { .. }))) {
        let pods = match crate::integrations::k3s::K3s::new(k3s) {
            Ok(k) => k
                .pods()
                .await
                .map(|p| p.iter().map(|p| p.as_work()).collect()),
            Err(e) => Err(e),
        };
        facts.k3s_pods = Some(pods.map_err(|e| e.to_string()));
    }
    facts.sessions = bus.sessions().await.map_err(|e| e.to_string());
    facts.slice_units = bus
        .slice_units(&settings.ai_slice.slice)
        .await
        .map_err(|e| e.to_string());
    Ok(facts)
}

fn unavailable(name: &str, severity: Severity) -> GuardResult {
    let why = Verdict::error("no built-in or external guard has this name");
    GuardResult::new(name, severity, why, 0)
}

/// How the guard of `spec` (`None`: an external one), configured as
/// `configured` for the target mode, counts for this transition (`None`:
/// off). A spec's `hard_when` makes it hard whatever the target configures,
/// because of where the machine comes from (`audio_idle` leaving the studio,
/// `user_jobs_safe` leaving compute with the `refuse` job policy).
fn severity_for(
    spec: Option<&dyn Spec>,
    configured: GuardSeverity,
    plan: &Plan,
    config: &Config,
) -> Option<Severity> {
    let leaving = |mode| plan.from == ObservedMode::from(mode);
    let forced_hard = match spec.and_then(|s| s.hard_when()) {
        Some(HardWhen::LeavingStudio) => leaving(Mode::StudioLocal),
        Some(HardWhen::LeavingComputeUnderRefuse) => {
            leaving(Mode::Compute) && config.mode(plan.to).drain.jobs == JobPolicy::Refuse
        }
        None => false,
    };
    match configured {
        GuardSeverity::Off => None,
        _ if forced_hard => Some(Severity::Hard),
        GuardSeverity::Hard => Some(Severity::Hard),
        GuardSeverity::Soft => Some(Severity::Soft),
    }
}

/// The guards of `plan.to` as configured, plus the scheduler's guard
/// (`slurm_jobs_safe`, `k3s_gpu_pods_safe`) when the plan drains the node
/// and the configuration does not name it: hard with the `refuse` job
/// policy, soft (naming the work) otherwise.
fn guards_for(plan: &Plan, config: &Config) -> BTreeMap<String, GuardSeverity> {
    let mut guards = config.mode(plan.to).guards.clone();
    for step in &plan.steps {
        let (guard, policy) = match step {
            Step::SlurmDrain { policy, .. } => (SLURM_JOBS_SAFE.name, policy.jobs),
            Step::K3sDrain { policy, .. } => (K3S_GPU_PODS_SAFE.name, policy.jobs),
            _ => continue,
        };
        let severity = if policy == JobPolicy::Refuse {
            GuardSeverity::Hard
        } else {
            GuardSeverity::Soft
        };
        guards.entry(guard.to_string()).or_insert(severity);
    }
    guards
}

/// Evaluate every guard configured for `plan.to`.
pub async fn evaluate(ctx: &Context, bus: &Bus, plan: &Plan) -> Result<GuardReport, Error> {
    let settings = &ctx.config.guard_settings;
    let roots = roots(ctx);
    let externals = external(settings);
    let mut runnable = Vec::new();
    let mut missing = Vec::new();
    for (name, configured) in &guards_for(plan, &ctx.config) {
        let builtin = spec(name);
        let Some(severity) = severity_for(builtin, *configured, plan, &ctx.config) else {
            continue;
        };
        let guard = match builtin {
            Some(s) if s.name() == VLLM_DRAINABLE.name => Some(vllm_drainable(ctx, plan)),
            Some(s) => Some(s.build(settings, &roots)),
            None => externals.iter().find(|g| g.name() == name).cloned(),
        };
        match guard {
            Some(guard) => runnable.push((guard, severity)),
            None => missing.push(unavailable(name, severity)),
        }
    }
    let facts = gather(ctx, bus, plan).await?;
    let mut guards = off_thread(runnable, facts).await;
    guards.extend(missing);
    Ok(GuardReport {
        evaluated_at: Stamp::now().rfc3339(),
        target: plan.to.word().to_string(),
        guards,
    })
}

/// Run `guards` against `facts` on the blocking pool: they read procfs and
/// sysfs and wait out their timeouts, which the runtime's only thread must
/// not. A pool that cannot run them reports each as an error.
async fn off_thread(guards: Vec<(Arc<dyn Guard>, Severity)>, facts: Facts) -> Vec<GuardResult> {
    let names: Vec<(String, Severity)> = guards
        .iter()
        .map(|(g, s)| (g.name().to_string(), *s))
        .collect();
    match tokio::task::spawn_blocking(move || evaluate_all(guards, Arc::new(facts))).await {
        Ok(results) => results,
        Err(e) => names
            .into_iter()
            .map(|(name, severity)| GuardResult {
                reason: format!("the guard evaluation did not finish: {e}"),
                ..unavailable(&name, severity)
            })
            .collect(),
    }
}

/// `vllm_drainable` for the vLLM units this plan drains (with profiles,
/// the profile unit of the mode being left), or every vLLM unit.
fn vllm_drainable(ctx: &Context, plan: &Plan) -> Arc<dyn Guard> {
    let mut units: Vec<String> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::DrainVllm { unit, .. } => Some(unit.clone()),
            _ => None,
        })
        .collect();
    if units.is_empty() {
        units = ctx.config.vllm_units();
    }
    Arc::new(VllmDrainable::for_units(
        &ctx.config.guard_settings.vllm,
        &units,
    ))
}

/// Whether the display GPU is held now, checked once (for drift in
/// compute): the holders in one sentence, or `None` when it is free or
/// cannot be checked (no GPU, or not root).
pub async fn display_gpu_holders(ctx: &Context) -> Option<String> {
    let settings = &ctx.config.guard_settings;
    let guard = GPU_DISPLAY_RELEASED.build(settings, &roots(ctx));
    let result = off_thread(
        vec![(guard, Severity::Hard)],
        Facts::new(Mode::Compute.word()),
    )
    .await
    .pop()?;
    (result.outcome == Outcome::Fail).then_some(result.reason)
}

/// A plan's post-teardown check on the way to `to`: the named guard,
/// evaluated as hard, in the form its spec gives for after teardown (the
/// display GPU's release polls).
pub async fn verify(ctx: &Context, guard: &str, to: Mode) -> GuardResult {
    let settings = &ctx.config.guard_settings;
    let check = spec(guard).map(|s| s.build_after_teardown(settings, &roots(ctx)));
    match check {
        Some(g) => off_thread(vec![(g, Severity::Hard)], Facts::new(to.word()))
            .await
            .pop()
            .unwrap_or_else(|| unavailable(guard, Severity::Hard)),
        None => unavailable(guard, Severity::Hard),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::defaults;
    use crate::plan::plan;

    fn severity(name: &str, from: Mode, to: Mode, config: &Config) -> Option<Severity> {
        let p = plan(from.into(), to, config);
        severity_for(spec(name), config.mode(to).guards[name], &p, config)
    }

    #[test]
    fn audio_idle_is_hard_when_leaving_the_studio_and_soft_from_desktop() {
        let c = defaults();
        assert_eq!(
            severity("audio_idle", Mode::StudioLocal, Mode::Compute, &c),
            Some(Severity::Hard)
        );
        assert_eq!(
            severity("audio_idle", Mode::Desktop, Mode::Compute, &c),
            Some(Severity::Soft)
        );
    }

    #[test]
    fn user_jobs_safe_is_hard_only_with_the_refuse_policy() {
        let mut c = defaults();
        assert_eq!(
            severity("user_jobs_safe", Mode::Compute, Mode::Desktop, &c),
            Some(Severity::Soft)
        );
        c.modes.desktop.drain.jobs = JobPolicy::Refuse;
        assert_eq!(
            severity("user_jobs_safe", Mode::Compute, Mode::Desktop, &c),
            Some(Severity::Hard)
        );
    }

    #[test]
    fn off_stays_off_even_where_it_would_be_forced() {
        let mut c = defaults();
        c.modes
            .compute
            .guards
            .insert("audio_idle".into(), GuardSeverity::Off);
        assert_eq!(
            severity("audio_idle", Mode::StudioLocal, Mode::Compute, &c),
            None
        );
    }
}
