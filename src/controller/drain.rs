//! The drain ladder when leaving compute: vLLM's queue emptied (or the
//! drain timeout recorded) before it stops, and every user job in `ai.slice`
//! handled by the mode's policy, each named with what happened to it.

use std::time::{Duration, Instant};

use mode_guards::{Deadline, Facts, Guard, Outcome, SliceUnit, VllmDrainable, VllmSettings};

use crate::config::{Drain, JobPolicy};
use crate::state::{JobOutcome, JobRecord};
use crate::systemd::{Bus, JobKind};

use super::Context;

const POLL: Duration = Duration::from_millis(100);

/// Wait for vLLM's running and waiting requests to reach 0 (two scrapes in
/// a row) or for `timeout_secs`; either way it is then stopped with compute.
/// Returns the note for the record.
pub async fn drain_vllm(
    ctx: &Context,
    bus: &Bus,
    unit: &str,
    timeout_secs: u64,
) -> Result<String, String> {
    let settings = VllmSettings {
        unit: unit.to_string(),
        drain_wait_secs: timeout_secs,
        ..ctx.config.guard_settings.vllm.clone()
    };
    let mut facts = Facts::new("drain");
    facts.unit_states = bus
        .unit_states(&[unit.to_string()])
        .await
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let verdict = VllmDrainable::new(&settings).check(&facts);
    let took = started.elapsed().as_millis();
    Ok(match verdict.outcome {
        Outcome::Pass => format!("drained in {took} ms: {}", verdict.reason),
        Outcome::Skipped => format!("nothing to drain: {}", verdict.reason),
        Outcome::Fail => format!(
            "drain timeout after {timeout_secs} s: {}; stopped anyway",
            verdict.reason
        ),
        Outcome::Error => format!(
            "could not read the queue: {}; stopped anyway",
            verdict.reason
        ),
    })
}

/// The user jobs in the AI slice: its units minus the managed services.
async fn user_jobs(ctx: &Context, bus: &Bus) -> Result<Vec<SliceUnit>, String> {
    let settings = &ctx.config.guard_settings;
    let managed = &settings.ai_slice.managed;
    let units = bus
        .slice_units(&settings.ai_slice.slice)
        .await
        .map_err(|e| e.to_string())?;
    Ok(units
        .into_iter()
        .filter(|u| !managed.contains(&u.unit) && u.unit != settings.vllm.unit)
        .collect())
}

fn record(job: &SliceUnit, outcome: JobOutcome, since: Instant) -> JobRecord {
    JobRecord {
        unit: job.unit.clone(),
        pids: job.processes.iter().map(|p| p.pid).collect(),
        command: job
            .processes
            .first()
            .map(|p| p.command.clone())
            .unwrap_or_default(),
        outcome,
        duration_ms: since.elapsed().as_millis() as u64,
    }
}

fn names(jobs: &[SliceUnit]) -> String {
    jobs.iter()
        .map(|j| match j.processes.first() {
            Some(p) => format!("{} (pid {}, {})", j.unit, p.pid, p.command),
            None => j.unit.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `unit` still runs.
async fn running(bus: &Bus, unit: &str) -> bool {
    match bus.unit_states(&[unit.to_string()]).await {
        Ok(states) => states.iter().any(|s| {
            matches!(
                s.active_state.as_str(),
                "active" | "activating" | "deactivating" | "reloading"
            )
        }),
        Err(_) => true,
    }
}

/// Handle the user jobs by `drain.jobs`. `Err` carries the sentence for the
/// record and the jobs as they were left.
pub async fn drain_jobs(
    ctx: &Context,
    bus: &Bus,
    drain: &Drain,
) -> Result<Vec<JobRecord>, (String, Vec<JobRecord>)> {
    let jobs = user_jobs(ctx, bus).await.map_err(|e| (e, vec![]))?;
    if jobs.is_empty() {
        return Ok(vec![]);
    }
    let started = Instant::now();
    match drain.jobs {
        JobPolicy::Refuse => Err((
            format!(
                "user jobs run in the AI slice and the policy is refuse: {}",
                names(&jobs)
            ),
            jobs.iter()
                .map(|j| record(j, JobOutcome::LeftRunning, started))
                .collect(),
        )),
        JobPolicy::Wait => wait_for_jobs(ctx, bus, jobs, drain.wait_secs, started).await,
        JobPolicy::Checkpoint => Ok(checkpoint(bus, jobs, drain, started).await),
    }
}

async fn wait_for_jobs(
    ctx: &Context,
    bus: &Bus,
    jobs: Vec<SliceUnit>,
    wait_secs: u64,
    started: Instant,
) -> Result<Vec<JobRecord>, (String, Vec<JobRecord>)> {
    let deadline = Deadline::from(started, Duration::from_secs(wait_secs));
    let mut done: Vec<JobRecord> = Vec::new();
    loop {
        let now_running = user_jobs(ctx, bus).await.map_err(|e| (e, done.clone()))?;
        for job in &jobs {
            let gone = !now_running.iter().any(|r| r.unit == job.unit);
            if gone && !done.iter().any(|d| d.unit == job.unit) {
                done.push(record(job, JobOutcome::Ended, started));
            }
        }
        if now_running.is_empty() {
            return Ok(done);
        }
        if deadline.passed() {
            let left: Vec<JobRecord> = now_running
                .iter()
                .map(|j| record(j, JobOutcome::LeftRunning, started))
                .collect();
            let why = format!(
                "user jobs still run after waiting {wait_secs} s: {}",
                names(&now_running)
            );
            return Err((why, [done, left].concat()));
        }
        tokio::time::sleep(POLL * 5).await;
    }
}

/// Signal every job, give them the grace period together, then stop the
/// units of those still running (SIGTERM, SIGKILL after their stop timeout).
async fn checkpoint(
    bus: &Bus,
    jobs: Vec<SliceUnit>,
    drain: &Drain,
    started: Instant,
) -> Vec<JobRecord> {
    for job in &jobs {
        // A job that exited since it was listed needs no signal.
        let _ = bus
            .signal_main(&job.unit, drain.checkpoint_signal.number())
            .await;
    }
    let deadline = Deadline::from(started, Duration::from_secs(drain.grace_secs));
    let mut records: Vec<Option<JobRecord>> = vec![None; jobs.len()];
    loop {
        for (i, job) in jobs.iter().enumerate() {
            if records[i].is_none() && !running(bus, &job.unit).await {
                records[i] = Some(record(job, JobOutcome::Checkpointed, started));
            }
        }
        if records.iter().all(Option::is_some) || deadline.passed() {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    for (i, job) in jobs.iter().enumerate() {
        if records[i].is_some() {
            continue;
        }
        let limit = bus
            .stop_timeout(&job.unit)
            .await
            .unwrap_or(Duration::from_secs(90));
        let stop_started = Instant::now();
        let _ = bus
            .run_job(
                &job.unit,
                JobKind::Stop,
                limit.saturating_add(Duration::from_secs(10)),
            )
            .await;
        // systemd sends SIGKILL when the stop timeout runs out.
        let outcome = if stop_started.elapsed().saturating_add(POLL) >= limit {
            JobOutcome::Killed
        } else {
            JobOutcome::Stopped
        };
        records[i] = Some(record(job, outcome, started));
    }
    records.into_iter().flatten().collect()
}
