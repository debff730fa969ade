//! The generic `exec` step: a root-owned executable the user wires up
//! themselves, run with the transition as JSON on standard input
//! (`{"transition", "from", "to", "requested_by"}`), within its timeout. Its
//! exit code decides the step; its output goes into the record. An
//! executable that someone other than root could change is refused
//! (`mode_guards::check_trusted`, as sshd's StrictModes refuses such files).

use std::time::Duration;

use super::command;
use crate::config::ExecIntegration;

/// What the step tells the executable.
#[derive(serde::Serialize)]
pub struct Transition<'a> {
    pub transition: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub requested_by: &'a str,
}

/// Run the step: `Ok(note)` when it exits 0, `Err(sentence)` otherwise.
pub async fn run(step: &ExecIntegration, transition: &Transition<'_>) -> Result<String, String> {
    // Checked when the configuration was loaded, and again now: it runs as root.
    mode_guards::check_trusted(&step.path)?;
    let input = serde_json::to_vec(transition).map_err(|e| e.to_string())?;
    let out = command::run(
        &step.path,
        &step.args,
        Some(&input),
        Duration::from_secs(step.timeout_secs),
    )
    .await
    .map_err(|e| e.to_string())?;
    let said = out.last_words();
    match out.code {
        Some(0) if said.is_empty() => Ok(format!("{} exited 0", step.name)),
        Some(0) => Ok(format!("{} exited 0: {said}", step.name)),
        Some(code) => Err(format!("{} exited {code}: {said}", step.name)),
        None => Err(format!("{} was killed by a signal: {said}", step.name)),
    }
}
