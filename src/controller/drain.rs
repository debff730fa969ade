//! The drain ladder when leaving compute: vLLM paused (no new request
//! starts) and its running requests finished (or the drain timeout
//! recorded) before it stops, resumed on a rollback, and every user job in `ai.slice`
//! handled by the mode's policy, each named with what happened to it. The
//! HTTP calls to vLLM block, so they run on the blocking pool.

use std::time::{Duration, Instant};

use mode_guards::probe::http::{self, HttpError, HttpUrl};
use mode_guards::{Deadline, Facts, Outcome, QueueWait, SliceUnit, VllmDrainable, VllmSettings};

use crate::config::{Drain, JobPolicy, UnreadablePolicy};
use crate::mode::Mode;
use crate::state::{JobOutcome, JobRecord};
use crate::systemd::{Bus, JobKind};

use super::Context;

const POLL: Duration = Duration::from_millis(100);

/// What a drain step leaves in the record: its note, and a warning when
/// it stopped vLLM without knowing its queue.
pub struct Drained {
    pub note: String,
    pub warning: Option<String>,
}

fn base_url(ctx: &Context) -> Result<HttpUrl, String> {
    HttpUrl::parse(&ctx.config.guard_settings.vllm.endpoint)
        .map_err(|e| format!("guard_settings.vllm.endpoint: {e}"))
}

/// How one `POST /pause?mode=wait` went.
enum Pause {
    /// No new request starts; it returned when the running ones finished.
    Done,
    /// It still waited for running requests when the drain time ran out.
    TimedOut,
    /// The server has no `/pause` (started without `VLLM_SERVER_DEV_MODE=1`).
    NotOffered,
}

/// Leaving a mode that runs `unit`: close the door first (`POST
/// /pause?mode=wait`, where the server offers it: it returns when the
/// running requests are done), then read the queue. A paused vLLM never
/// runs the requests queued before the pause, so while some are queued it
/// is resumed until they have started and paused again; all within
/// `timeout_secs`. vLLM is then stopped with the mode: requests that
/// arrived after the door closed are held by the server and get its
/// shutdown answer (HTTP 500), or are answered after a rollback resumes it.
/// A queue that cannot be read fails the step (the transition rolls back
/// and vLLM is resumed), unless `drain.vllm_unreadable` is `stop`; then it
/// is stopped anyway with a warning saying so.
pub async fn drain_vllm(
    ctx: &Context,
    bus: &Bus,
    unit: &str,
    to: Mode,
    timeout_secs: u64,
    unreadable: UnreadablePolicy,
) -> Result<Drained, String> {
    let mut facts = Facts::new(to.word());
    facts.unit_states = bus
        .unit_states(&[unit.to_string()])
        .await
        .map_err(|e| e.to_string())?;
    let live = facts.unit_states.iter().any(|s| {
        s.load_state != "not-found"
            && matches!(
                s.active_state.as_str(),
                "active" | "activating" | "reloading"
            )
    });
    if !live {
        return Ok(Drained {
            note: format!("nothing to drain: {unit} is not running"),
            warning: None,
        });
    }
    let started = Instant::now();
    let deadline = Deadline::from(started, Duration::from_secs(timeout_secs));
    let cannot_read = |why: String| match unreadable {
        UnreadablePolicy::Rollback => Err(format!(
            "could not read vLLM's queue: {why} (drain.vllm_unreadable is rollback)"
        )),
        UnreadablePolicy::Stop => Ok(Drained {
            note: format!("could not read vLLM's queue: {why}"),
            warning: Some(format!(
                "{unit} stopped without a drained queue: {why} (drain.vllm_unreadable is stop)"
            )),
        }),
    };
    let base = base_url(ctx)?;
    let settings = VllmSettings {
        unit: unit.to_string(),
        ..ctx.config.guard_settings.vllm.clone()
    };
    let interval = Duration::from_millis(settings.scrape_interval_ms);
    let scrape = |base: &HttpUrl| {
        let (base, settings) = (base.clone(), settings.clone());
        off_thread(move || VllmDrainable::new(&settings).scrape(&base))
    };
    let left = || deadline.left();
    let mut rounds = 0;
    loop {
        rounds += 1;
        let paused = off_thread({
            let (base, left) = (base.clone(), left());
            move || pause(&base, left)
        });
        let pause = match paused.await? {
            Ok(p) => p,
            // Nothing listens (the model is still loading, or the server
            // died): no client can have a request in flight to it.
            Err(PauseError::Refused(e)) if rounds == 1 => {
                return Ok(Drained {
                    note: format!("nothing to drain: {unit} is active but {e}"),
                    warning: None,
                })
            }
            Err(PauseError::Refused(e) | PauseError::Other(e)) => return cannot_read(e),
        };
        match pause {
            Pause::Done => {}
            Pause::TimedOut => {
                return Ok(Drained {
                    note: format!(
                        "paused (new requests are held), but its running requests outlasted the drain timeout of {timeout_secs} s; stopped anyway"
                    ),
                    warning: None,
                })
            }
            Pause::NotOffered => {
                let open = off_thread({
                    let waiting = VllmSettings {
                        drain_wait_secs: left().as_secs(),
                        ..settings.clone()
                    };
                    let facts = facts.clone();
                    move || VllmDrainable::new(&waiting).wait(&facts, QueueWait::RunningAndWaiting)
                })
                .await?;
                let words = "not paused: the server offers no /pause (start it with VLLM_SERVER_DEV_MODE=1), so it took new requests during the drain";
                return match open.outcome {
                    Outcome::Pass | Outcome::Skipped => Ok(Drained {
                        note: format!(
                            "{words}; drained in {} ms: {}",
                            started.elapsed().as_millis(),
                            open.reason
                        ),
                        warning: None,
                    }),
                    Outcome::Fail => Ok(Drained {
                        note: format!(
                            "{words}; drain timeout after {timeout_secs} s: {}; stopped anyway",
                            open.reason
                        ),
                        warning: None,
                    }),
                    Outcome::Error => cannot_read(open.reason),
                };
            }
        }
        // Paused, and what ran is done: the queue must be empty on two scrapes.
        let first = match scrape(&base).await? {
            Ok(q) => q,
            Err(e) => return cannot_read(e),
        };
        tokio::time::sleep(interval).await;
        let second = match scrape(&base).await? {
            Ok(q) => q,
            Err(e) => return cannot_read(e),
        };
        if first.is_empty() && second.is_empty() {
            return Ok(Drained {
                note: format!(
                    "paused (new requests are held) and drained in {} ms ({rounds} pause{}): no running or waiting requests on 2 scrapes {} ms apart",
                    started.elapsed().as_millis(),
                    if rounds == 1 { "" } else { "s" },
                    interval.as_millis()
                ),
                warning: None,
            });
        }
        if left().is_zero() {
            return Ok(Drained {
                note: format!(
                    "paused, but {} requests queued before the pause were still waiting at the drain timeout of {timeout_secs} s; stopped anyway (they get vLLM's shutdown answer)",
                    second.waiting
                ),
                warning: None,
            });
        }
        // Requests queued before the pause never run while it is paused:
        // let them start, then close the door again.
        let resumed = off_thread({
            let (base, settings) = (base.clone(), settings.clone());
            move || resume(&base, &settings)
        });
        if let Err(e) = resumed.await? {
            return cannot_read(e);
        }
        loop {
            tokio::time::sleep(interval).await;
            match scrape(&base).await? {
                Ok(q) if q.waiting == 0.0 => break,
                Ok(_) if left().is_zero() => break,
                Ok(_) => {}
                Err(e) => return cannot_read(e),
            }
        }
    }
}

/// Blocking work (HTTP to vLLM, the queue wait's polling sleeps) on the
/// blocking pool, off the runtime's only thread.
async fn off_thread<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| format!("the drain's worker stopped: {e}"))
}

enum PauseError {
    /// Nothing listens on the endpoint.
    Refused(String),
    Other(String),
}

fn pause(base: &HttpUrl, left: Duration) -> Result<Pause, PauseError> {
    let url = base.with_path("/pause?mode=wait");
    match http::post(&url, left.max(Duration::from_millis(100))) {
        Ok(r) if r.status == 200 => Ok(Pause::Done),
        Ok(r) if r.status == 404 || r.status == 405 => Ok(Pause::NotOffered),
        Ok(r) => Err(PauseError::Other(format!(
            "{} answered HTTP {}",
            url.to_url(),
            r.status
        ))),
        Err(HttpError::Timeout { .. }) => Ok(Pause::TimedOut),
        Err(e @ HttpError::Refused { .. }) => Err(PauseError::Refused(e.to_string())),
        Err(e) => Err(PauseError::Other(e.to_string())),
    }
}

fn resume(base: &HttpUrl, settings: &VllmSettings) -> Result<(), String> {
    let url = base.with_path("/resume");
    let timeout = Duration::from_millis(settings.request_timeout_ms.max(1));
    match http::post(&url, timeout) {
        Ok(r) if r.status == 200 => Ok(()),
        Ok(r) => Err(format!("{} answered HTTP {}", url.to_url(), r.status)),
        Err(e) => Err(e.to_string()),
    }
}

/// Reopen `unit`'s server after a failed transition: `POST /resume`.
pub fn resume_vllm(ctx: &Context, unit: &str) -> Result<String, String> {
    let url = base_url(ctx)?.with_path("/resume");
    let timeout = Duration::from_millis(ctx.config.guard_settings.vllm.request_timeout_ms.max(1));
    match http::post(&url, timeout) {
        Ok(r) if r.status == 200 => Ok(format!("{unit} resumed: the requests it held go on")),
        Ok(r) if r.status == 404 || r.status == 405 => {
            Ok(format!("{unit} offers no /resume: it was never paused"))
        }
        Ok(r) => Err(format!("{} answered HTTP {}", url.to_url(), r.status)),
        Err(HttpError::Refused { .. }) => {
            Ok(format!("nothing listens for {unit}: nothing to resume"))
        }
        Err(e) => Err(e.to_string()),
    }
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
