//! The integration steps of a plan, run against the world around the
//! machine: the Slurm node drained (its jobs requeued after their checkpoint
//! signal, or waited for) when the machine leaves compute and resumed when it
//! enters it, and the user's `exec` steps. A scheduler that cannot be reached
//! is a warning or a failure, as `integrations.slurm.when_unreachable` says.

use std::time::{Duration, Instant};

use mode_guards::{Deadline, ScheduledWork};

use crate::config::{Drain, JobPolicy, Unreachable};
use crate::integrations::exec::{self, Transition};
use crate::integrations::k3s::{K3s, K3sError, Pod, MODE_LABEL, TAINT_KEY};
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

/// A scheduler that could not be reached: under `when_unreachable: warn` a
/// warning on a step that is done, otherwise (or for any other error) the
/// step's failure.
fn tolerate(
    when: Option<Unreachable>,
    scheduler: &str,
    unreachable: bool,
    error: String,
) -> Result<Told, String> {
    if unreachable && when == Some(Unreachable::Warn) {
        return Ok(Told {
            note: format!("{scheduler} was not told: it is unreachable (when_unreachable is warn)"),
            warnings: vec![error],
            jobs: vec![],
        });
    }
    Err(error)
}

fn unreachable_ok(ctx: &Context, e: SlurmError) -> Result<Told, String> {
    let when = ctx
        .config
        .integrations
        .slurm
        .as_ref()
        .map(|s| s.when_unreachable);
    tolerate(
        when,
        "Slurm",
        matches!(e, SlurmError::Unreachable(_)),
        e.to_string(),
    )
}

fn job_record(job: &ScheduledWork, outcome: JobOutcome, since: Instant) -> JobRecord {
    JobRecord {
        unit: format!("slurm job {}", job.id),
        pids: vec![],
        command: format!("{} (user {})", job.name, job.owner),
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
                s.signal(&j.id, signal).await.map_err(|e| e.to_string())?;
            }
            let deadline = Deadline::from(started, Duration::from_secs(policy.grace_secs));
            let mut running = jobs.clone();
            while !running.is_empty() && !deadline.passed() {
                tokio::time::sleep(POLL).await;
                running = s.jobs().await.map_err(|e| e.to_string())?;
            }
            for j in &jobs {
                let outcome = if running.iter().any(|r| r.id == j.id) {
                    s.requeue(&j.id).await.map_err(|e| e.to_string())?;
                    JobOutcome::Requeued
                } else {
                    JobOutcome::Checkpointed
                };
                told.jobs.push(job_record(j, outcome, started));
            }
        }
        JobPolicy::Wait => {
            let deadline = Deadline::from(started, Duration::from_secs(policy.wait_secs));
            loop {
                let node = s.node_state().await.map_err(|e| e.to_string())?;
                if node.drained() {
                    break;
                }
                if deadline.passed() {
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

fn k3s(ctx: &Context) -> Result<K3s<'_>, String> {
    let config = ctx
        .config
        .integrations
        .k3s
        .as_ref()
        .ok_or_else(|| "the Kubernetes integration is not configured".to_string())?;
    K3s::new(config).map_err(|e| e.to_string())
}

fn k3s_unreachable_ok(ctx: &Context, e: K3sError) -> Result<Told, String> {
    let when = ctx
        .config
        .integrations
        .k3s
        .as_ref()
        .map(|k| k.when_unreachable);
    tolerate(
        when,
        "Kubernetes",
        matches!(e, K3sError::Unreachable(_)),
        e.to_string(),
    )
}

fn pod_record(pod: &Pod, outcome: JobOutcome, since: Instant) -> JobRecord {
    JobRecord {
        unit: format!("pod {}", pod.id()),
        pids: vec![],
        command: format!("phase {}", pod.phase),
        outcome,
        duration_ms: u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

/// Leaving compute for `to`: taint and label the node, then its GPU pods
/// by `policy`.
pub async fn k3s_drain(ctx: &Context, policy: &Drain, to: &str) -> Result<Told, String> {
    let k = k3s(ctx)?;
    let started = Instant::now();
    if let Err(e) = k.mark(to, true).await {
        return k3s_unreachable_ok(ctx, e);
    }
    let pods = k.pods().await.map_err(|e| e.to_string())?;
    let names = |pods: &[Pod]| pods.iter().map(Pod::id).collect::<Vec<_>>().join(", ");
    let mut told = Told::default();
    match policy.jobs {
        _ if pods.is_empty() => {}
        JobPolicy::Refuse => {
            return Err(format!(
                "GPU pods started after the guard passed: {}; the node stays tainted",
                names(&pods)
            ))
        }
        JobPolicy::Checkpoint => {
            let deadline = Deadline::from(started, k.eviction_timeout());
            for pod in &pods {
                while !k.evict(pod).await.map_err(|e| e.to_string())? {
                    if deadline.passed() {
                        return Err(format!(
                            "the eviction of pod {} was held back by a PodDisruptionBudget for {} s",
                            pod.id(),
                            k.eviction_timeout().as_secs()
                        ));
                    }
                    tokio::time::sleep(k.retry()).await;
                }
            }
            let mut left = k.pods().await.map_err(|e| e.to_string())?;
            while !left.is_empty() && !deadline.passed() {
                tokio::time::sleep(POLL).await;
                left = k.pods().await.map_err(|e| e.to_string())?;
            }
            if !left.is_empty() {
                return Err(format!(
                    "evicted pods still run after {} s: {}",
                    k.eviction_timeout().as_secs(),
                    names(&left)
                ));
            }
            told.jobs = pods
                .iter()
                .map(|p| pod_record(p, JobOutcome::Evicted, started))
                .collect();
        }
        JobPolicy::Wait => {
            let deadline = Deadline::from(started, Duration::from_secs(policy.wait_secs));
            let mut left = pods.clone();
            while !left.is_empty() {
                if deadline.passed() {
                    return Err(format!(
                        "GPU pods still run on the Kubernetes node {} after {} s: {}",
                        k.node,
                        policy.wait_secs,
                        names(&left)
                    ));
                }
                tokio::time::sleep(POLL).await;
                left = k.pods().await.map_err(|e| e.to_string())?;
            }
            told.jobs = pods
                .iter()
                .map(|p| pod_record(p, JobOutcome::Ended, started))
                .collect();
        }
    }
    told.note = format!(
        "Kubernetes node {} tainted {}={to}:NoSchedule and labelled {}={to}",
        k.node, TAINT_KEY, MODE_LABEL
    );
    Ok(told)
}

/// Entering compute: the taint taken away, the node labelled compute.
pub async fn k3s_resume(ctx: &Context) -> Result<Told, String> {
    let k = k3s(ctx)?;
    match k.mark("compute", false).await {
        Ok(()) => Ok(Told {
            note: format!(
                "Kubernetes node {} untainted and labelled {}=compute",
                k.node, MODE_LABEL
            ),
            ..Told::default()
        }),
        Err(e) => k3s_unreachable_ok(ctx, e),
    }
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
