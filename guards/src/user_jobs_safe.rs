//! `user_jobs_safe`: nothing of the user's runs in the AI slice besides the
//! services the controller manages itself, so leaving compute stops no
//! training run behind the user's back. Units come from `Facts` (D-Bus).

use serde_json::json;

use crate::settings::AiSliceSettings;
use crate::{Facts, Guard, SliceUnit, Verdict};

pub const NAME: &str = "user_jobs_safe";

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
        NAME
    }

    fn check(&self, facts: &Facts) -> Verdict {
        let slice = &self.settings.slice;
        let units = match &facts.slice_units {
            Ok(u) => u,
            Err(why) => return Verdict::error(format!("cannot list the units in {slice}: {why}")),
        };
        let jobs: Vec<&SliceUnit> = units
            .iter()
            .filter(|u| !self.settings.managed.contains(&u.unit))
            .filter(|u| !u.processes.is_empty())
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
        Verdict::fail(
            format!(
                "{} job{} of yours still run{} in {slice}: {}",
                jobs.len(),
                if jobs.len() == 1 { "" } else { "s" },
                if jobs.len() == 1 { "s" } else { "" },
                names.join("; ")
            ),
            json!({ "slice": slice, "jobs": jobs }),
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
