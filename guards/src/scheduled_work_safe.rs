//! `slurm_jobs_safe` and `k3s_gpu_pods_safe`: no scheduler work runs on
//! this node, so leaving compute (with the `refuse` job policy) cuts no one's
//! job short. The controller asks the scheduler (`squeue --json`, the pod
//! list of the Kubernetes API) and hands the work in as `Facts::slurm_jobs`
//! and `Facts::k3s_pods`; without the integration the guard is skipped.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::spec::{Blocked, GuardSpec};
use crate::{Facts, Guard, ScheduledWork, Severity, Verdict};

/// Slurm's jobs on this node. Not in any mode's defaults: the controller
/// adds it when a plan drains the node (hard with the `refuse` job policy).
pub const SLURM: GuardSpec<Evidence> = GuardSpec {
    name: "slurm_jobs_safe",
    severity: Severity::Soft,
    hard_when: None,
    after_teardown: None,
    build: |_, _| Arc::new(ScheduledWorkSafe::new(Scheduler::Slurm)),
    advice,
};

/// Kubernetes' GPU pods on this node, likewise.
pub const K3S: GuardSpec<Evidence> = GuardSpec {
    name: "k3s_gpu_pods_safe",
    severity: Severity::Soft,
    hard_when: None,
    after_teardown: None,
    build: |_, _| Arc::new(ScheduledWorkSafe::new(Scheduler::K3s)),
    advice,
};

/// The scheduler's work still on this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub work: Vec<ScheduledWork>,
}

/// The reason already says how to clear it (`wait for it, or ...`).
fn advice(_: &Blocked<Evidence>) -> Option<String> {
    None
}

/// Which scheduler's work a guard watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduler {
    Slurm,
    K3s,
}

pub struct ScheduledWorkSafe {
    scheduler: Scheduler,
}

impl ScheduledWorkSafe {
    pub fn new(scheduler: Scheduler) -> Self {
        Self { scheduler }
    }

    /// `job 12 (train-x) of alice, RUNNING`, `pod ml/train-a of ml, Running`.
    fn describe(&self, w: &ScheduledWork) -> String {
        match self.scheduler {
            Scheduler::Slurm => format!("job {} ({}) of {}, {}", w.id, w.name, w.owner, w.state),
            Scheduler::K3s => format!("pod {} of {}, {}", w.id, w.owner, w.state),
        }
    }

    fn words(&self) -> (&'static str, &'static str, &'static str) {
        match self.scheduler {
            Scheduler::Slurm => (
                "Slurm",
                "Slurm job",
                "wait for it, or `scontrol requeue` it",
            ),
            Scheduler::K3s => ("Kubernetes", "GPU pod", "wait for it, or evict it"),
        }
    }
}

impl Guard for ScheduledWorkSafe {
    fn name(&self) -> &str {
        match self.scheduler {
            Scheduler::Slurm => SLURM.name,
            Scheduler::K3s => K3S.name,
        }
    }

    fn check(&self, facts: &Facts) -> Verdict {
        let (scheduler, what, clear) = self.words();
        let work = match self.scheduler {
            Scheduler::Slurm => &facts.slurm_jobs,
            Scheduler::K3s => &facts.k3s_pods,
        };
        let work = match work {
            None => {
                return Verdict::skipped(format!("the {scheduler} integration is not configured"))
            }
            Some(Err(why)) => {
                return Verdict::error(format!(
                    "cannot ask {scheduler} what runs on this node: {why}"
                ))
            }
            Some(Ok(work)) => work,
        };
        if work.is_empty() {
            return Verdict::pass(format!("no {what} runs on this node"));
        }
        let names: Vec<String> = work.iter().map(|w| self.describe(w)).collect();
        let spec = match self.scheduler {
            Scheduler::Slurm => &SLURM,
            Scheduler::K3s => &K3S,
        };
        spec.fail(
            format!(
                "{} {what}{} on this node: {}; {clear}",
                work.len(),
                if work.len() == 1 { " runs" } else { "s run" },
                names.join(", "),
            ),
            &Evidence { work: work.clone() },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::blocked;
    use crate::Outcome;

    fn facts(jobs: Option<Result<Vec<ScheduledWork>, String>>) -> Facts {
        Facts {
            slurm_jobs: jobs.clone(),
            k3s_pods: jobs,
            ..Facts::new("desktop")
        }
    }

    fn job() -> ScheduledWork {
        ScheduledWork {
            id: "12".into(),
            name: "train-x".into(),
            owner: "alice".into(),
            state: "RUNNING".into(),
        }
    }

    #[test]
    fn fails_naming_each_running_job_with_its_owner() {
        let v = ScheduledWorkSafe::new(Scheduler::Slurm).check(&facts(Some(Ok(vec![job()]))));
        assert_eq!(v.outcome, Outcome::Fail);
        assert!(
            v.reason
                .contains("1 Slurm job runs on this node: job 12 (train-x) of alice, RUNNING"),
            "{}",
            v.reason
        );
        assert_eq!(v.evidence["work"][0]["id"], "12");
        let v = ScheduledWorkSafe::new(Scheduler::K3s).check(&facts(Some(Ok(vec![job()]))));
        assert!(v.reason.contains("1 GPU pod runs"), "{}", v.reason);
    }

    #[test]
    fn the_advice_repeats_how_to_clear_each_schedulers_work() {
        for (scheduler, spec, clear) in [
            (Scheduler::Slurm, &SLURM, "`scontrol requeue` it"),
            (Scheduler::K3s, &K3S, "evict it"),
        ] {
            let v = ScheduledWorkSafe::new(scheduler).check(&facts(Some(Ok(vec![job()]))));
            let r = blocked(spec.name, v).unwrap();
            let evidence: Evidence = serde_json::from_value(r.evidence.clone()).unwrap();
            assert_eq!(evidence.work, [job()], "the evidence reads back");
            let a = crate::advice(&r).unwrap();
            assert!(
                a.starts_with(&format!("clear what {} reports", spec.name)),
                "{a}"
            );
            assert!(a.ends_with(clear), "{a}");
        }
    }

    #[test]
    fn passes_without_work_is_skipped_without_the_integration_and_errors_when_unreachable() {
        let g = ScheduledWorkSafe::new(Scheduler::Slurm);
        assert_eq!(g.check(&facts(Some(Ok(vec![])))).outcome, Outcome::Pass);
        assert_eq!(g.check(&facts(None)).outcome, Outcome::Skipped);
        assert_eq!(
            g.check(&facts(Some(Err("timed out".into())))).outcome,
            Outcome::Error
        );
    }
}
