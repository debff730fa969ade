//! The integration steps of a plan, run against the world around the
//! machine: the Slurm node drained (its jobs requeued after their checkpoint
//! signal, or waited for) when the machine leaves compute and resumed when it
//! enters it, and the user's `exec` steps. A scheduler that cannot be reached
//! is a warning or a failure, as `integrations.slurm.when_unreachable` says.

use std::time::{Duration, Instant};

use crate::config::{Drain, JobPolicy, Unreachable};
use crate::integrations::exec::{self, Transition};
use crate::integrations::slurm::{Slurm, SlurmError};
use crate::state::{JobOutcome, JobRecord};

use super::Context;

const POLL: Duration = Duration::from_millis(500);

/// What an integration step produced: a note, warnings, the jobs it handled.
#[derive(Default)]
pub struct Told {
    pub note: String,
    pub warnings: Vec<String>,
    pub jobs: Vec<JobRecord>,
}

fn slurm(ctx: &Context) -> Result<Slurm<'_>, String> {
    ctx.config
        .integrations
        .slurm
        .as_ref()
        .map(Slurm::new)
        .ok_or_else(|| "the Slurm integration is not configured".to_string())
}

/// An unreachable Slurm under `warn` is a warning on a step that is done.
fn unreachable_ok(ctx: &Context, e: SlurmError) -> Result<Told, String> {
    let warn = ctx
        .config
        .integrations
        .slurm
        .as_ref()
        .is_some_and(|s| s.when_unreachable == Unreachable::Warn);
    match e {
        SlurmError::Unreachable(_) if warn => Ok(Told {
            note: "Slurm was not told: it is unreachable (integrations.slurm.when_unreachable is warn)".into(),
            warnings: vec![e.to_string()],
            jobs: vec![],
        }),
        other => Err(other.to_string()),
    }
}

fn job_record(job: &mode_guards::SlurmJob, outcome: JobOutcome, since: Instant) -> JobRecord {
    JobRecord {
        unit: format!("slurm job {}", job.id),
        pids: vec![],
        command: format!("{} (user {})", job.name, job.user),
        outcome,
        duration_ms: u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

/// Leaving compute: drain the node, then its jobs by `policy`.
pub async fn slurm_drain(ctx: &Context, policy: &Drain, reason: &str) -> Result<Told, String> {
    let s = slurm(ctx)?;
    let started = Instant::now();
    if let Err(e) = s.drain(reason).await {
        return unreachable_ok(ctx, e);
    }
    let jobs = s.jobs().await.map_err(|e| e.to_string())?;
    let mut told = Told::default();
    match policy.jobs {
        JobPolicy::Refuse | JobPolicy::Checkpoint if jobs.is_empty() => {}
        JobPolicy::Refuse => {
            return Err(format!(
                "{} Slurm jobs started after the guard passed; the node stays drained",
                jobs.len()
            ))
        }
        JobPolicy::Checkpoint => {
            let signal = policy.checkpoint_signal.name().trim_start_matches("SIG");
            for j in &jobs {
                s.signal(j.id, signal).await.map_err(|e| e.to_string())?;
            }
            let deadline = started + Duration::from_secs(policy.grace_secs);
            let mut running = jobs.clone();
            while !running.is_empty() && Instant::now() < deadline {
                tokio::time::sleep(POLL).await;
                running = s.jobs().await.map_err(|e| e.to_string())?;
            }
            for j in &jobs {
                let outcome = if running.iter().any(|r| r.id == j.id) {
                    s.requeue(j.id).await.map_err(|e| e.to_string())?;
                    JobOutcome::Requeued
                } else {
                    JobOutcome::Checkpointed
                };
                told.jobs.push(job_record(j, outcome, started));
            }
        }
        JobPolicy::Wait => {
            let deadline = started + Duration::from_secs(policy.wait_secs);
            loop {
                let node = s.node_state().await.map_err(|e| e.to_string())?;
                if node.drained() {
                    break;
                }
                if Instant::now() >= deadline {
                    let left = s.jobs().await.map_err(|e| e.to_string())?;
                    let ids: Vec<String> = left.iter().map(|j| j.id.to_string()).collect();
                    return Err(format!(
                        "the Slurm node {} is still {} after {} s: job{} {} still run",
                        s.node,
                        node.words(),
                        policy.wait_secs,
                        if ids.len() == 1 { "" } else { "s" },
                        ids.join(", ")
                    ));
                }
                tokio::time::sleep(POLL).await;
            }
            for j in &jobs {
                told.jobs.push(job_record(j, JobOutcome::Ended, started));
            }
        }
    }
    let state = s
        .node_state()
        .await
        .map(|n| n.words())
        .unwrap_or_else(|e| e.to_string());
    told.note = format!("Slurm node {} drained: {state}", s.node);
    Ok(told)
}

/// Entering compute (or rolling back into it): the node takes jobs again.
/// Right after a resume slurmctld shows it NOT_RESPONDING for under a
/// second; that is the normal path, not a failure.
pub async fn slurm_resume(ctx: &Context) -> Result<Told, String> {
    let s = slurm(ctx)?;
    let node = match s.node_state().await {
        Ok(n) => n,
        Err(e) => return unreachable_ok(ctx, e),
    };
    if !node.drain_set() {
        return Ok(Told {
            note: format!("Slurm node {} already takes jobs: {}", s.node, node.words()),
            ..Told::default()
        });
    }
    if let Err(e) = s.resume().await {
        return unreachable_ok(ctx, e);
    }
    let now = s
        .node_state()
        .await
        .map(|n| n.words())
        .unwrap_or_else(|e| e.to_string());
    Ok(Told {
        note: format!("Slurm node {} resumed: {now}", s.node),
        ..Told::default()
    })
}

/// The user's exec step `name`.
pub async fn exec_step(ctx: &Context, name: &str, t: &Transition<'_>) -> Result<Told, String> {
    let step = ctx
        .config
        .integrations
        .exec
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| format!("no exec step named {name} in the configuration"))?;
    exec::run(step, t).await.map(|note| Told {
        note,
        ..Told::default()
    })
}
