//! `user_jobs_safe`: nothing of the user's runs in the AI slice besides the
//! services the controller manages itself, so leaving compute stops no
//! training run behind the user's back. Units come from `Facts` (D-Bus).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::settings::AiSliceSettings;
use crate::spec::{Blocked, GuardSpec, HardWhen};
use crate::{Facts, Guard, Severity, SliceUnit, Verdict};

pub const SPEC: GuardSpec<Evidence> = GuardSpec {
    name: "user_jobs_safe",
    severity: Severity::Soft,
    hard_when: Some(HardWhen::LeavingComputeUnderRefuse),
    after_teardown: None,
    build: |settings, _| Arc::new(UserJobsSafe::new(&settings.ai_slice)),
    advice,
};

/// The user's units still running in the AI slice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub slice: String,
    pub jobs: Vec<SliceUnit>,
}

fn advice(b: &Blocked<Evidence>) -> Option<String> {
    if !b.failed {
        return None;
    }
    let units: Vec<&str> = b
        .evidence
        .iter()
        .flat_map(|e| &e.jobs)
        .map(|j| j.unit.as_str())
        .collect();
    Some(format!(
        "finish or stop {} yourself (systemctl stop {}), or add {} to guard_settings.ai_slice.managed",
        units.join(", "),
        units.join(" "),
        crate::advice::them(units.len()).0
    ))
}

pub struct UserJobsSafe {
    settings: AiSliceSettings,
}

impl UserJobsSafe {
    pub fn new(settings: &AiSliceSettings) -> Self {
        Self {
            settings: settings.clone(),
        }
    }
}

impl Guard for UserJobsSafe {
    fn name(&self) -> &str {
        SPEC.name
    }

    fn check(&self, facts: &Facts) -> Verdict {
        let slice = &self.settings.slice;
        let units = match &facts.slice_units {
            Ok(u) => u,
            Err(why) => return Verdict::error(format!("cannot list the units in {slice}: {why}")),
        };
        let jobs: Vec<SliceUnit> = units
            .iter()
            .filter(|u| !self.settings.managed.contains(&u.unit))
            .filter(|u| !u.processes.is_empty())
            .cloned()
            .collect();
        if jobs.is_empty() {
            return Verdict::pass(format!(
                "nothing but managed services runs in {slice} ({} units)",
                units.len()
            ));
        }
        let names: Vec<String> = jobs
            .iter()
            .map(|u| {
                let procs: Vec<String> = u
                    .processes
                    .iter()
                    .take(3)
                    .map(|p| format!("pid {} {}", p.pid, short_command(&p.command)))
                    .collect();
                let more = u.processes.len().saturating_sub(3);
                if more > 0 {
                    format!("{} ({}, and {more} more)", u.unit, procs.join(", "))
                } else {
                    format!("{} ({})", u.unit, procs.join(", "))
                }
            })
            .collect();
        SPEC.fail(
            format!(
                "{} job{} of yours still run{} in {slice}: {}",
                jobs.len(),
                if jobs.len() == 1 { "" } else { "s" },
                if jobs.len() == 1 { "s" } else { "" },
                names.join("; ")
            ),
            &Evidence {
                slice: slice.clone(),
                jobs,
            },
        )
    }
}

/// The command line cut to a readable length.
fn short_command(command: &str) -> String {
    const MAX: usize = 60;
    if command.chars().count() <= MAX {
        command.to_string()
    } else {
        let cut: String = command.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::blocked;
    use crate::{Outcome, SliceProcess};

    fn unit(name: &str, procs: &[(u32, &str)]) -> SliceUnit {
        SliceUnit {
            unit: name.into(),
            processes: procs
                .iter()
                .map(|(pid, c)| SliceProcess {
                    pid: *pid,
                    command: c.to_string(),
                })
                .collect(),
        }
    }

    fn check(units: Result<Vec<SliceUnit>, String>) -> Verdict {
        let mut f = Facts::new("desktop");
        f.slice_units = units;
        UserJobsSafe::new(&AiSliceSettings::default()).check(&f)
    }

    #[test]
    fn fails_naming_a_training_job_by_unit_pid_and_command() {
        let v = check(Ok(vec![
            unit(
                "vllm.service",
                &[(100, "python3 -m vllm.entrypoints.openai.api_server")],
            ),
            unit(
                "run-r1234.service",
                &[(4242, "python3 train.py --epochs 3")],
            ),
        ]));
        assert_eq!(v.outcome, Outcome::Fail);
        assert_eq!(
            v.reason,
            "1 job of yours still runs in ai.slice: run-r1234.service (pid 4242 python3 train.py --epochs 3)"
        );
        assert_eq!(v.evidence["jobs"][0]["processes"][0]["pid"], 4242);
    }

    #[test]
    fn passes_with_only_managed_services_or_empty_units() {
        let v = check(Ok(vec![
            unit("vllm.service", &[(100, "vllm")]),
            unit("done.service", &[]),
        ]));
        assert_eq!(v.outcome, Outcome::Pass, "{}", v.reason);
    }

    #[test]
    fn errors_when_systemd_could_not_be_asked() {
        let v = check(Err("no bus".into()));
        assert_eq!(v.outcome, Outcome::Error);
        assert!(v.reason.contains("no bus"));
        let v = UserJobsSafe::new(&AiSliceSettings::default()).check(&Facts::new("desktop"));
        assert_eq!(v.outcome, Outcome::Error, "ungathered is not a pass");
    }

    #[test]
    fn the_advice_names_the_units_the_check_found() {
        let v = check(Ok(vec![
            unit("run-a.service", &[(7, "python train.py")]),
            unit("run-b.service", &[(8, "python eval.py")]),
        ]));
        let a = crate::advice(&blocked(SPEC.name, v).unwrap()).unwrap();
        assert_eq!(
            a,
            "finish or stop run-a.service, run-b.service yourself (systemctl stop run-a.service run-b.service), or add them to guard_settings.ai_slice.managed"
        );
        let v = check(Err("no bus".into()));
        let a = crate::advice(&blocked(SPEC.name, v).unwrap()).unwrap();
        assert!(
            a.contains("could not decide") && a.contains("no bus"),
            "{a}"
        );
    }

    #[test]
    fn long_command_lines_are_cut() {
        let long = "x".repeat(200);
        let v = check(Ok(vec![unit("job.service", &[(1, &long)])]));
        assert!(v.reason.len() < 150, "{}", v.reason);
    }
}
