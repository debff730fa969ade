//! Executing a plan's steps: each a systemd job, a slice budget set and read
//! back, a post-teardown check, or a drain; aborting at the first failure and
//! recording every step with its outcome, warnings, notes and affected jobs.

use std::time::Duration;

use tracing::info;

use mode_guards::Outcome;

use crate::clock::Stamp;
use crate::config::SliceBudget;
use crate::mode::Mode;
use crate::plan::Step;
use crate::state::{JobRecord, StepOutcome, StepRecord};
use crate::systemd::{Bus, JobKind};

use super::drain::{drain_jobs, drain_vllm, resume_vllm};
use super::evaluate::verify;
use super::Context;

/// What running one step produced; `error` set means it failed.
#[derive(Default)]
struct StepReport {
    error: Option<String>,
    warnings: Vec<String>,
    note: Option<String>,
    jobs: Vec<JobRecord>,
}

impl StepReport {
    fn failed(error: impl Into<String>) -> Self {
        Self {
            error: Some(error.into()),
            ..Self::default()
        }
    }

    fn from_result(result: Result<(), String>) -> Self {
        match result {
            Ok(()) => Self::default(),
            Err(e) => Self::failed(e),
        }
    }
}

async fn run_step(ctx: &Context, bus: &Bus, step: &Step, to: Mode) -> StepReport {
    match step {
        Step::Stop { unit } => run_job(ctx, bus, unit, JobKind::Stop, to).await,
        Step::Start { unit } => run_job(ctx, bus, unit, JobKind::Start, to).await,
        Step::SetBudget { unit, budget } => {
            StepReport::from_result(set_budget(bus, unit, budget).await)
        }
        Step::Check { guard } => {
            let result = verify(ctx, guard);
            match result.outcome {
                Outcome::Pass | Outcome::Skipped => StepReport::default(),
                Outcome::Fail | Outcome::Error => StepReport::failed(result.reason),
            }
        }
        Step::DrainVllm { unit, timeout_secs } => {
            let unreadable = ctx.config.mode(to).drain.vllm_unreadable;
            match drain_vllm(ctx, bus, unit, *timeout_secs, unreadable).await {
                Ok(d) => StepReport {
                    note: Some(d.note),
                    warnings: d.warning.into_iter().collect(),
                    ..StepReport::default()
                },
                Err(e) => StepReport::failed(e),
            }
        }
        Step::ResumeVllm { unit } => match resume_vllm(ctx, unit) {
            Ok(note) => StepReport {
                note: Some(note),
                ..StepReport::default()
            },
            Err(e) => StepReport::failed(e),
        },
        Step::DrainJobs { policy, .. } => match drain_jobs(ctx, bus, policy).await {
            Ok(jobs) => StepReport {
                jobs,
                ..StepReport::default()
            },
            Err((error, jobs)) => StepReport {
                error: Some(error),
                jobs,
                ..StepReport::default()
            },
        },
    }
}

async fn run_job(ctx: &Context, bus: &Bus, unit: &str, kind: JobKind, to: Mode) -> StepReport {
    let timeout = Duration::from_secs(ctx.config.timeouts.job_secs);
    let job = match bus.run_job(unit, kind, timeout).await {
        Ok(job) => job,
        Err(e) => return StepReport::failed(e.to_string()),
    };
    if job.result != "done" {
        return StepReport::failed(format!("the {} job ended '{}'", kind.word(), job.result));
    }
    if job.failed_companions.is_empty() {
        return StepReport::default();
    }
    // A companion that fails matters when it belongs to the mode: a unit the
    // configuration names, or one the mode's target wants (its workloads).
    // Others (say systemd-update-utmp-runlevel, which graphical.target pulls
    // in) are recorded as warnings.
    let mut ours = ctx.config.managed_units();
    match bus.unit_dependencies(&ctx.config.mode(to).target).await {
        Ok(deps) => ours.extend(deps),
        Err(e) => return StepReport::failed(e.to_string()),
    }
    let (fatal, others) = job.failed_split(&ours);
    let words = |(unit, result): &(String, String)| format!("{unit} ended '{result}'");
    if fatal.is_empty() {
        return StepReport {
            warnings: others.iter().map(words).collect(),
            ..StepReport::default()
        };
    }
    let mut reasons = Vec::with_capacity(fatal.len());
    for failed in &fatal {
        reasons.push(match bus.failure_reason(&failed.0).await {
            Some(why) => format!("{} ({why}; see journalctl -u {})", words(failed), failed.0),
            None => words(failed),
        });
    }
    StepReport::failed(reasons.join("; "))
}

async fn set_budget(bus: &Bus, unit: &str, budget: &SliceBudget) -> Result<(), String> {
    bus.set_slice_budget(unit, budget)
        .await
        .map_err(|e| e.to_string())?;
    let read = bus.slice_budget(unit).await.map_err(|e| e.to_string())?;
    if &read == budget {
        Ok(())
    } else {
        Err(format!(
            "{unit} reads back {} instead of {}",
            serde_json::to_string(&read).unwrap_or_default(),
            serde_json::to_string(budget).unwrap_or_default()
        ))
    }
}

/// Execute steps in order, stopping at the first failure (returned as the
/// sentence for the record).
pub async fn execute(
    ctx: &Context,
    bus: &Bus,
    steps: &[Step],
    to: Mode,
) -> (Vec<StepRecord>, Option<String>) {
    let mut done = Vec::with_capacity(steps.len());
    for step in steps {
        let t0 = Stamp::now();
        let report = run_step(ctx, bus, step, to).await;
        let failed = report
            .error
            .as_ref()
            .map(|e| format!("{} {}: {e}", step.action(), step.unit()));
        info!(
            action = step.action(),
            unit = step.unit(),
            ok = failed.is_none(),
            "{}",
            failed.as_deref().unwrap_or("step done")
        );
        done.push(StepRecord {
            action: step.action().to_string(),
            unit: step.unit().to_string(),
            outcome: if failed.is_some() {
                StepOutcome::Failed
            } else {
                StepOutcome::Done
            },
            duration_ms: Stamp::now().millis_since(t0),
            error: report.error,
            warnings: report.warnings,
            note: report.note,
            jobs: report.jobs,
        });
        if failed.is_some() {
            return (done, failed);
        }
    }
    (done, None)
}
