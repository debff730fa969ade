//! Executing a plan's steps: each a systemd job, a slice budget set and read
//! back, a post-teardown check, or a drain; aborting at the first failure and
//! recording every step with its outcome, warnings, notes and affected jobs.

use std::time::Duration;

use tracing::info;

use mode_guards::Outcome;

use crate::config::SliceBudget;
use crate::mode::Mode;
use crate::plan::Step;
use crate::state::{JobRecord, ReadyRecord, StepOutcome, StepRecord};
use crate::systemd::{Bus, JobKind};

use super::drain::{drain_jobs, drain_vllm, resume_vllm};
use super::evaluate::verify;
use super::integrate::{self, Told};
use super::settle::settle;
use super::Context;

/// The transition the steps belong to, as integrations are told it.
pub struct Transition<'a> {
    pub transition: &'a str,
    pub from: &'a str,
    /// The mode these steps lead to (the prior mode, for a rollback).
    pub to: &'a str,
    pub to_mode: Mode,
    pub requested_by: &'a str,
}

impl Transition<'_> {
    fn exec(&self) -> crate::integrations::exec::Transition<'_> {
        crate::integrations::exec::Transition {
            transition: self.transition,
            from: self.from,
            to: self.to,
            requested_by: self.requested_by,
        }
    }
}

/// What running one step produced; `error` set means it failed.
#[derive(Default)]
struct StepReport {
    error: Option<String>,
    warnings: Vec<String>,
    note: Option<String>,
    jobs: Vec<JobRecord>,
    ready: Vec<ReadyRecord>,
    /// The units the step's jobs started (by their own names).
    started: Vec<String>,
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

impl From<Result<Told, String>> for StepReport {
    fn from(r: Result<Told, String>) -> Self {
        match r {
            Ok(t) => StepReport {
                note: Some(t.note),
                warnings: t.warnings,
                jobs: t.jobs,
                ..StepReport::default()
            },
            Err(e) => StepReport::failed(e),
        }
    }
}

/// Run one step; `started` is every unit the steps before it started.
async fn run_step(
    ctx: &Context,
    bus: &Bus,
    step: &Step,
    t: &Transition<'_>,
    started: &[String],
) -> StepReport {
    let to = t.to_mode;
    match step {
        Step::SlurmDrain { policy, .. } => {
            let reason = format!(
                "mode-controller: {} -> {} (transition {}, by {})",
                t.from, t.to, t.transition, t.requested_by
            );
            integrate::slurm_drain(ctx, policy, &reason).await.into()
        }
        Step::SlurmResume { .. } => integrate::slurm_resume(ctx).await.into(),
        Step::K3sDrain { policy, .. } => integrate::k3s_drain(ctx, policy, t.to).await.into(),
        Step::K3sResume { .. } => integrate::k3s_resume(ctx).await.into(),
        Step::Exec { name } => integrate::exec_step(ctx, name, &t.exec()).await.into(),
        Step::Settle { window_ms, .. } => {
            match settle(ctx, bus, to, started, Duration::from_millis(*window_ms)).await {
                Ok(s) => StepReport {
                    note: Some(s.note),
                    ready: s.ready,
                    ..StepReport::default()
                },
                Err(e) => StepReport::failed(e),
            }
        }
        Step::Stop { unit } => run_job(ctx, bus, unit, JobKind::Stop, to).await,
        Step::Start { unit } => {
            let report = run_job(ctx, bus, unit, JobKind::Start, to).await;
            if report.error.is_none() && *unit == ctx.config.mode(to).target {
                name_missing_workloads(ctx, bus, unit, report).await
            } else {
                report
            }
        }
        Step::SetBudget { unit, budget } => {
            StepReport::from_result(set_budget(bus, unit, budget).await)
        }
        Step::Check { guard } => {
            let result = verify(ctx, guard, t.to_mode).await;
            match result.outcome {
                Outcome::Pass | Outcome::Skipped => StepReport::default(),
                Outcome::Fail | Outcome::Error => StepReport::failed(result.reason),
            }
        }
        Step::DrainVllm { unit, timeout_secs } => {
            let unreadable = ctx.config.mode(to).drain.vllm_unreadable;
            match drain_vllm(ctx, bus, unit, to, *timeout_secs, unreadable).await {
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
        Err(e) if kind == JobKind::Stop && is_not_installed(bus, unit).await => {
            // A unit this machine does not have is already stopped.
            return StepReport {
                note: Some(format!("{unit} is not installed: nothing to stop ({e})")),
                ..StepReport::default()
            };
        }
        Err(e) => return StepReport::failed(e.to_string()),
    };
    if job.result != "done" {
        return StepReport::failed(format!("the {} job ended '{}'", kind.word(), job.result));
    }
    if job.failed_companions.is_empty() {
        return StepReport {
            started: job.started,
            ..StepReport::default()
        };
    }
    // A companion that fails matters when it belongs to the mode; others
    // (say systemd-update-utmp-runlevel, which graphical.target pulls in)
    // are recorded as warnings.
    let ours = match units_of_mode(ctx, bus, to).await {
        Ok(ours) => ours,
        Err(e) => return StepReport::failed(e),
    };
    let (fatal, others) = job.failed_split(&ours);
    let words = |(unit, result): &(String, String)| format!("{unit} ended '{result}'");
    if fatal.is_empty() {
        return StepReport {
            warnings: others
                .iter()
                .map(|f| format!("{} (not part of the mode; left as it is)", words(f)))
                .collect(),
            started: job.started,
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

/// A workload the target wants that is masked or not installed is named:
/// the target starts without it, which is not the mode it promises. A
/// warning, or with `missing_workloads: "fail"` the step's failure.
async fn name_missing_workloads(
    ctx: &Context,
    bus: &Bus,
    target: &str,
    mut report: StepReport,
) -> StepReport {
    let wanted = match bus.unit_dependencies(target).await {
        Ok(w) => w,
        Err(e) => return StepReport::failed(e.to_string()),
    };
    let states = match bus.unit_states(&wanted).await {
        Ok(s) => s,
        Err(e) => return StepReport::failed(e.to_string()),
    };
    let missing: Vec<String> = states
        .iter()
        .filter(|s| s.load_state == "masked" || s.is_not_found())
        .map(|s| {
            let what = if s.load_state == "masked" {
                "masked (`systemctl unmask` it)"
            } else {
                "not installed"
            };
            format!(
                "{}, which {target} wants, is {what}: the mode runs without it",
                s.unit
            )
        })
        .collect();
    if missing.is_empty() {
        return report;
    }
    match ctx.config.missing_workloads {
        crate::config::MissingWorkloads::Warn => {
            report.warnings.extend(missing);
            report
        }
        crate::config::MissingWorkloads::Fail => StepReport::failed(missing.join("; ")),
    }
}

async fn is_not_installed(bus: &Bus, unit: &str) -> bool {
    bus.unit_states(&[unit.to_string()])
        .await
        .is_ok_and(|s| s.iter().all(mode_guards::UnitState::is_not_found))
}

/// The units that belong to mode `to`, by every name they go by: those the
/// configuration names (and the units their aliases resolve to), and those
/// the mode's target wants (its workloads).
pub(super) async fn units_of_mode(
    ctx: &Context,
    bus: &Bus,
    to: Mode,
) -> Result<Vec<String>, String> {
    let named = bus
        .unit_states(&ctx.config.managed_units())
        .await
        .map_err(|e| e.to_string())?;
    let mut ours: Vec<String> = named.into_iter().flat_map(|u| [u.unit, u.id]).collect();
    let wanted = bus
        .unit_dependencies(&ctx.config.mode(to).target)
        .await
        .map_err(|e| e.to_string())?;
    ours.extend(wanted);
    Ok(ours)
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

/// How long a transition waits for the system bus to come back when it
/// went away mid-transition (dbus restarted, say), before the step fails.
pub const BUS_RETRY: Duration = Duration::from_secs(30);

/// Whether `error` came with the system bus gone; if so, reconnect (for up
/// to `BUS_RETRY`): `Ok(Some(secs))` when it came back, `Err` when it did not.
pub async fn ride_out_bus_loss(bus: &Bus) -> Result<Option<f64>, String> {
    if bus.alive().await {
        return Ok(None);
    }
    match bus.reconnect(BUS_RETRY).await {
        Ok(took) => Ok(Some(took.as_secs_f64())),
        Err(e) => Err(format!(
            "the system bus was lost and did not come back within {} s ({e})",
            BUS_RETRY.as_secs()
        )),
    }
}

/// A step whose failure came from losing the system bus is run again once
/// the bus is back (jobs are idempotent); the record says so.
async fn run_step_riding_out_the_bus(
    ctx: &Context,
    bus: &Bus,
    step: &Step,
    t: &Transition<'_>,
    started: &[String],
) -> StepReport {
    let report = run_step(ctx, bus, step, t, started).await;
    let Some(error) = &report.error else {
        return report;
    };
    match ride_out_bus_loss(bus).await {
        Ok(None) => report,
        Ok(Some(secs)) => {
            let mut again = run_step(ctx, bus, step, t, started).await;
            let note = format!(
                "the system bus went away; reconnected after {secs:.1} s and ran the step again"
            );
            again.note = Some(match again.note {
                Some(n) => format!("{note}; {n}"),
                None => note,
            });
            again
        }
        Err(lost) => StepReport {
            error: Some(format!("{error}; {lost}")),
            ..report
        },
    }
}

/// Execute steps in order, stopping at the first failure (returned as the
/// sentence for the record); `progress` sees the records after each step.
/// Each step has a test pause point `step-N` (1-based) before it runs.
pub async fn execute(
    ctx: &Context,
    bus: &Bus,
    steps: &[Step],
    t: &Transition<'_>,
    progress: &mut dyn FnMut(&[StepRecord]),
) -> (Vec<StepRecord>, Option<String>) {
    let mut done = Vec::with_capacity(steps.len());
    let mut started = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        crate::state::test_pause(&ctx.state, &format!("step-{}", i + 1));
        let t0 = std::time::Instant::now();
        let mut report = run_step_riding_out_the_bus(ctx, bus, step, t, &started).await;
        started.append(&mut report.started);
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
            duration_ms: crate::clock::elapsed_ms(t0),
            error: report.error,
            warnings: report.warnings,
            note: report.note,
            jobs: report.jobs,
            ready: report.ready,
        });
        progress(&done);
        if failed.is_some() {
            return (done, failed);
        }
    }
    (done, None)
}
