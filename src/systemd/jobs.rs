//! Starting and stopping units and waiting for the outcome: subscribe to
//! `JobRemoved` before enqueueing, then wait for the job and every job its
//! transaction pulled in, so a workload that fails to start is named even
//! when the target it belongs to started fine.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;

use super::{Bus, SystemdError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Start,
    Stop,
}

impl JobKind {
    pub fn word(self) -> &'static str {
        match self {
            JobKind::Start => "start",
            JobKind::Stop => "stop",
        }
    }
}

/// A unit whose job failed, and the job's result (`failed`, `dependency`, ...).
pub type FailedJob = (String, String);

/// How a job and the jobs of its transaction ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobResult {
    /// The job's id (the same for every start merged into one job).
    pub id: u32,
    pub unit: String,
    /// `done`, `failed`, `dependency`, `timeout`, `canceled`, ...
    pub result: String,
    /// Jobs pulled into the same transaction that did not end `done`.
    pub failed_companions: Vec<FailedJob>,
    /// Every unit of the transaction whose start job ended `done` (the
    /// unit itself and the companions it pulled in), by its own name.
    pub started: Vec<String>,
}

impl JobResult {
    /// The failed companions, split into those among `units` and the rest.
    pub fn failed_split(&self, units: &[String]) -> (Vec<FailedJob>, Vec<FailedJob>) {
        self.failed_companions
            .iter()
            .cloned()
            .partition(|(u, _)| units.contains(u))
    }
}

impl Bus {
    /// Enqueue a start or stop job (mode `replace`) and wait up to `timeout`
    /// for it and every job of its transaction to finish.
    pub async fn run_job(
        &self,
        unit: &str,
        kind: JobKind,
        timeout: Duration,
    ) -> Result<JobResult, SystemdError> {
        let mut removed = self.job_removed.lock().await;
        if removed.is_none() {
            let stream = self
                .manager()
                .receive_job_removed()
                .await
                .map_err(|e| SystemdError::call("subscribe to JobRemoved", e))?;
            self.subscribe().await?;
            *removed = Some(stream);
        }
        let Some(removed) = removed.as_mut() else {
            return Err(SystemdError::call("JobRemoved", "no signal stream"));
        };
        let (job_id, affected) = self.queue(unit, kind).await?;

        let mut waiting: BTreeMap<u32, (String, bool)> = affected
            .into_iter()
            .map(|a| (a.0, (a.2, a.4 == "start")))
            .collect();
        waiting.insert(job_id, (unit.to_string(), kind == JobKind::Start));
        let mut result = JobResult {
            id: job_id,
            unit: unit.to_string(),
            result: String::new(),
            failed_companions: Vec::new(),
            started: Vec::new(),
        };
        let wait_all = async {
            while !waiting.is_empty() {
                let Some(signal) = removed.next().await else {
                    break;
                };
                let Ok(args) = signal.args() else { continue };
                let Some((job_unit, starts)) = waiting.remove(&args.id) else {
                    continue;
                };
                if starts && args.result == "done" {
                    // By the unit's own name, as the signal gives it.
                    result.started.push(args.unit.to_string());
                }
                if args.id == job_id {
                    result.result = args.result.clone();
                } else if args.result != "done" && args.result != "skipped" {
                    result
                        .failed_companions
                        .push((job_unit, args.result.clone()));
                }
            }
        };
        if tokio::time::timeout(timeout, wait_all).await.is_err() {
            return Err(SystemdError::JobTimeout {
                unit: unit.to_string(),
                secs: timeout.as_secs(),
            });
        }
        if result.result.is_empty() {
            return Err(SystemdError::call(
                format!("{} {unit}", kind.word()),
                "the bus closed before the job ended",
            ));
        }
        Ok(result)
    }

    /// Enqueue a start job and return without waiting (its job id).
    pub async fn enqueue_start(&self, unit: &str) -> Result<u32, SystemdError> {
        Ok(self.queue(unit, JobKind::Start).await?.0)
    }

    /// Queue the job (mode `replace`): its id and the jobs its transaction
    /// pulled in. systemd's D-Bus policy lets only root call
    /// `EnqueueUnitJob`; anyone else calls `StartUnit` / `StopUnit` (which
    /// systemd checks with polkit) and learns the job alone, from its path.
    async fn queue(&self, unit: &str, kind: JobKind) -> Result<(u32, Vec<Affected>), SystemdError> {
        let manager = self.manager();
        if nix::unistd::geteuid().is_root() {
            let (job_id, _, _, _, _, affected) = manager
                .enqueue_unit_job(unit.to_string(), kind.word().into(), "replace".into())
                .await
                .map_err(|e| enqueue_error(unit, kind, e))?;
            return Ok((job_id, affected));
        }
        // Allowing interactive authorization, as systemctl does: where
        // polkit would ask for an administrator's password (its default for
        // anyone its rules do not let in), a polkit agent of the session
        // may ask; with none, polkit says no at once.
        let method = match kind {
            JobKind::Start => "StartUnit",
            JobKind::Stop => "StopUnit",
        };
        let path: zbus::OwnedObjectPath = manager
            .inner()
            .call_with_flags(
                method,
                zbus::proxy::MethodFlags::ALLOW_INTERACTIVE_AUTH,
                &(unit, "replace"),
            )
            .await
            .map_err(|e| enqueue_error(unit, kind, e))?
            .ok_or_else(|| SystemdError::call(format!("{method} {unit}"), "no reply"))?;
        let job_id = job_id_of(path.as_str()).ok_or_else(|| {
            SystemdError::call(
                format!("{} {unit}", kind.word()),
                format!("systemd answered with {path}, not a job"),
            )
        })?;
        Ok((job_id, vec![]))
    }
}

/// What `EnqueueUnitJob` says of each job of the transaction: (id, path,
/// unit, unit path, job type).
type Affected = (
    u32,
    zbus::OwnedObjectPath,
    String,
    zbus::OwnedObjectPath,
    String,
);

/// The id in a job's object path, `/org/freedesktop/systemd1/job/42`.
fn job_id_of(path: &str) -> Option<u32> {
    path.strip_prefix("/org/freedesktop/systemd1/job/")?
        .parse()
        .ok()
}

/// A unit that is not installed, or masked, is an environment problem worth
/// its own words; anything else is a failed call.
fn enqueue_error(unit: &str, kind: JobKind, e: zbus::Error) -> SystemdError {
    match &e {
        zbus::Error::MethodError(name, detail, _)
            if name.as_str().ends_with(".NoSuchUnit") || name.as_str().ends_with(".UnitMasked") =>
        {
            SystemdError::NotInstalled {
                unit: unit.to_string(),
                detail: detail.clone().unwrap_or_else(|| name.to_string()),
            }
        }
        // zbus reports the bus's own error names (AccessDenied,
        // InteractiveAuthorizationRequired: polkit said no) as `FDO`.
        zbus::Error::FDO(fdo) => match fdo.as_ref() {
            zbus::fdo::Error::AccessDenied(detail)
            | zbus::fdo::Error::InteractiveAuthorizationRequired(detail) => SystemdError::Denied {
                unit: unit.to_string(),
                detail: detail.clone(),
            },
            _ => SystemdError::call(format!("{} {unit}", kind.word()), e),
        },
        _ => SystemdError::call(format!("{} {unit}", kind.word()), e),
    }
}
