//! `slurm_jobs_safe`: no Slurm job runs on this node, so leaving compute
//! (with the `refuse` job policy) cuts no one's job short. The controller
//! asks Slurm (`squeue --json`) and hands the jobs in as
//! `Facts::slurm_jobs`; without the Slurm integration the guard is skipped.

use serde_json::json;

use crate::{Facts, Guard, Verdict};

pub const NAME: &str = "slurm_jobs_safe";

pub struct SlurmJobsSafe;

impl Guard for SlurmJobsSafe {
    fn name(&self) -> &str {
        NAME
    }

    fn check(&self, facts: &Facts) -> Verdict {
        let jobs = match &facts.slurm_jobs {
            None => return Verdict::skipped("the Slurm integration is not configured"),
            Some(Err(why)) => {
                return Verdict::error(format!("cannot list the node's Slurm jobs: {why}"))
            }
            Some(Ok(jobs)) => jobs,
        };
        if jobs.is_empty() {
            return Verdict::pass("no Slurm job runs on this node");
        }
        let names: Vec<String> = jobs
            .iter()
            .map(|j| format!("job {} ({}) of {}, {}", j.id, j.name, j.user, j.state))
            .collect();
        Verdict::fail(
            format!(
                "{} Slurm job{} on this node: {}; wait for {}, or `scontrol requeue` {}",
                jobs.len(),
                if jobs.len() == 1 { " runs" } else { "s run" },
                names.join(", "),
                if jobs.len() == 1 { "it" } else { "them" },
                if jobs.len() == 1 { "it" } else { "them" },
            ),
            json!({ "jobs": jobs }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Outcome, SlurmJob};

    fn facts(jobs: Option<Result<Vec<SlurmJob>, String>>) -> Facts {
        Facts {
            slurm_jobs: jobs,
            ..Facts::new("desktop")
        }
    }

    #[test]
    fn fails_naming_each_running_job_with_its_user() {
        let job = SlurmJob {
            id: 12,
            name: "train-x".into(),
            user: "alice".into(),
            state: "RUNNING".into(),
        };
        let v = SlurmJobsSafe.check(&facts(Some(Ok(vec![job]))));
        assert_eq!(v.outcome, Outcome::Fail);
        assert!(
            v.reason.contains("job 12 (train-x) of alice, RUNNING"),
            "{}",
            v.reason
        );
        assert_eq!(v.evidence["jobs"][0]["id"], 12);
    }

    #[test]
    fn passes_without_jobs_is_skipped_without_slurm_and_errors_when_slurm_is_unreachable() {
        assert_eq!(
            SlurmJobsSafe.check(&facts(Some(Ok(vec![])))).outcome,
            Outcome::Pass
        );
        assert_eq!(SlurmJobsSafe.check(&facts(None)).outcome, Outcome::Skipped);
        let v = SlurmJobsSafe.check(&facts(Some(Err("timed out".into()))));
        assert_eq!(v.outcome, Outcome::Error);
    }
}
