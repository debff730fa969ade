//! The Slurm node this workstation is, read and driven with the tools Slurm
//! ships (22.05 and later): `sinfo --json` for the node's state (draining is
//! the DRAIN flag while CPUs are still allocated, drained the DRAIN flag with
//! none), `squeue --json` for its jobs, `scontrol update` to drain and
//! resume it, `scancel --signal` and `scontrol requeue` for its jobs. Every
//! command runs with the configured deadline: a stopped slurmctld makes them
//! hang rather than fail.

use std::time::Duration;

use serde::Deserialize;

use mode_guards::ScheduledWork;

use super::command::{self, CommandError, Finished};
use crate::config::SlurmIntegration;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SlurmError {
    /// slurmctld did not answer (stopped, or the network is down).
    #[error("Slurm is unreachable: {0}")]
    Unreachable(String),
    #[error("{command} failed: {detail}")]
    Failed { command: String, detail: String },
    #[error("Slurm's answer could not be read: {0}")]
    Malformed(String),
    #[error("Slurm does not know the node {0} (set integrations.slurm.node)")]
    NoSuchNode(String),
}

/// The node's state as `sinfo --json` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    pub state: String,
    pub flags: Vec<String>,
    pub alloc_cpus: u64,
    pub reason: String,
}

impl NodeState {
    pub fn drain_set(&self) -> bool {
        self.flags.iter().any(|f| f == "DRAIN")
    }

    /// Drained: no new job lands, and none runs.
    pub fn drained(&self) -> bool {
        self.drain_set() && self.alloc_cpus == 0
    }

    /// `mixed+DRAIN, 1 CPU allocated (reason: ...)`, for status and records.
    pub fn words(&self) -> String {
        let mut s = self.state.clone();
        for f in &self.flags {
            s.push('+');
            s.push_str(f);
        }
        s.push_str(&format!(", {} CPUs allocated", self.alloc_cpus));
        if !self.reason.is_empty() {
            s.push_str(&format!(" (reason: {})", self.reason));
        }
        s
    }
}

#[derive(Deserialize)]
struct SinfoNode {
    name: String,
    state: String,
    #[serde(default)]
    state_flags: Vec<String>,
    #[serde(default)]
    alloc_cpus: u64,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
struct Sinfo {
    nodes: Vec<SinfoNode>,
}

#[derive(Deserialize)]
struct SqueueJob {
    job_id: u64,
    name: String,
    user_name: String,
    job_state: String,
}

#[derive(Deserialize)]
struct Squeue {
    jobs: Vec<SqueueJob>,
}

/// The state of `node` in `sinfo --json` output.
pub fn parse_node(json: &str, node: &str) -> Result<NodeState, SlurmError> {
    let doc: Sinfo =
        serde_json::from_str(json).map_err(|e| SlurmError::Malformed(format!("sinfo: {e}")))?;
    let n = doc
        .nodes
        .into_iter()
        .find(|n| n.name == node)
        .ok_or_else(|| SlurmError::NoSuchNode(node.to_string()))?;
    Ok(NodeState {
        state: n.state,
        flags: n.state_flags,
        alloc_cpus: n.alloc_cpus,
        reason: n.reason,
    })
}

/// The jobs in `squeue --json` output that hold the node (running,
/// completing, configuring or suspended on it).
pub fn parse_jobs(json: &str) -> Result<Vec<ScheduledWork>, SlurmError> {
    let doc: Squeue =
        serde_json::from_str(json).map_err(|e| SlurmError::Malformed(format!("squeue: {e}")))?;
    Ok(doc
        .jobs
        .into_iter()
        .filter(|j| {
            matches!(
                j.job_state.as_str(),
                "RUNNING" | "COMPLETING" | "CONFIGURING" | "SUSPENDED"
            )
        })
        .map(|j| ScheduledWork {
            id: j.job_id.to_string(),
            name: j.name,
            owner: j.user_name,
            state: j.job_state,
        })
        .collect())
}

/// One configured Slurm node.
pub struct Slurm<'a> {
    config: &'a SlurmIntegration,
    pub node: String,
}

impl<'a> Slurm<'a> {
    /// The node of `config`, by default this machine's host name.
    pub fn new(config: &'a SlurmIntegration) -> Self {
        let node = config.node.clone().unwrap_or_else(super::host_name);
        Self { config, node }
    }

    async fn run(&self, program: &str, args: &[String]) -> Result<Finished, SlurmError> {
        let path = self.config.bin_dir.join(program);
        let timeout = Duration::from_secs(self.config.command_timeout_secs);
        let words = format!("{program} {}", args.join(" "));
        let out = command::run(&path, args, None, timeout)
            .await
            .map_err(|e| match e {
                CommandError::Timeout { .. } => SlurmError::Unreachable(format!("`{words}`: {e}")),
                CommandError::Spawn { .. } => SlurmError::Failed {
                    command: words.clone(),
                    detail: e.to_string(),
                },
            })?;
        if out.ok() {
            return Ok(out);
        }
        let detail = out.last_words();
        if detail.contains("Unable to contact slurm controller")
            || detail.contains("Connection refused")
        {
            return Err(SlurmError::Unreachable(format!("`{words}`: {detail}")));
        }
        Err(SlurmError::Failed {
            command: words,
            detail,
        })
    }

    pub async fn node_state(&self) -> Result<NodeState, SlurmError> {
        let out = self
            .run(
                "sinfo",
                &["--json".into(), "--nodes".into(), self.node.clone()],
            )
            .await?;
        parse_node(&out.stdout, &self.node)
    }

    pub async fn jobs(&self) -> Result<Vec<ScheduledWork>, SlurmError> {
        let out = self
            .run(
                "squeue",
                &["--json".into(), "--nodelist".into(), self.node.clone()],
            )
            .await?;
        parse_jobs(&out.stdout)
    }

    /// No new job lands on the node; the running ones go on.
    pub async fn drain(&self, reason: &str) -> Result<(), SlurmError> {
        self.run(
            "scontrol",
            &[
                "update".into(),
                format!("nodename={}", self.node),
                "state=drain".into(),
                format!("reason={reason}"),
            ],
        )
        .await
        .map(drop)
    }

    pub async fn resume(&self) -> Result<(), SlurmError> {
        self.run(
            "scontrol",
            &[
                "update".into(),
                format!("nodename={}", self.node),
                "state=resume".into(),
            ],
        )
        .await
        .map(drop)
    }

    /// Send `signal` (`USR1`, `TERM`, ...) to the whole job: its batch
    /// shell and every step.
    pub async fn signal(&self, job: &str, signal: &str) -> Result<(), SlurmError> {
        self.run(
            "scancel",
            &[
                format!("--signal={signal}"),
                "--full".into(),
                job.to_string(),
            ],
        )
        .await
        .map(drop)
    }

    /// Put a job back in the queue, to run again where Slurm places it.
    pub async fn requeue(&self, job: &str) -> Result<(), SlurmError> {
        self.run("scontrol", &["requeue".into(), job.to_string()])
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from a real slurmctld 22.05 (Debian 12) with one node.
    const SINFO: &str = include_str!("../../tests/fixtures/slurm/sinfo-idle.json");
    const SQUEUE: &str = include_str!("../../tests/fixtures/slurm/squeue-running.json");

    #[test]
    fn the_node_state_of_real_sinfo_output_is_read() {
        let n = parse_node(SINFO, "slurmbox").unwrap();
        assert_eq!(n.state, "idle");
        assert!(!n.drain_set() && !n.drained());
        assert_eq!(n.words(), "idle, 0 CPUs allocated");
        assert_eq!(
            parse_node(SINFO, "other"),
            Err(SlurmError::NoSuchNode("other".into()))
        );
    }

    #[test]
    fn draining_is_the_drain_flag_with_cpus_allocated_and_drained_without() {
        let mut n = parse_node(SINFO, "slurmbox").unwrap();
        n.flags = vec!["DRAIN".into()];
        n.alloc_cpus = 1;
        n.state = "mixed".into();
        assert!(n.drain_set() && !n.drained());
        n.alloc_cpus = 0;
        assert!(n.drained());
    }

    #[test]
    fn the_running_jobs_of_real_squeue_output_are_read() {
        let jobs = parse_jobs(SQUEUE).unwrap();
        assert_eq!(
            jobs,
            [ScheduledWork {
                id: "1".into(),
                name: "train-x".into(),
                owner: "alice".into(),
                state: "RUNNING".into()
            }]
        );
        let pending = SQUEUE.replace("\"RUNNING\"", "\"PENDING\"");
        assert!(parse_jobs(&pending).unwrap().is_empty());
        assert!(matches!(parse_jobs("{"), Err(SlurmError::Malformed(_))));
    }
}
