//! The generic `exec` step: a root-owned executable the user wires up
//! themselves, run with the transition as JSON on standard input
//! (`{"transition", "from", "to", "requested_by"}`), within its timeout. Its
//! exit code decides the step; its output goes into the record. An
//! executable that someone other than root could change is refused before
//! it runs, as sshd's StrictModes refuses such files.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
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

/// Refuse a file that a non-root user could write, or whose directories
/// they could: root would run what they put there.
pub fn check_owned_by_root(path: &Path) -> Result<(), String> {
    let mut at = Some(path);
    while let Some(p) = at {
        let meta = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        if meta.uid() != 0 {
            return Err(format!(
                "{} is owned by uid {}, not root: refusing to run {} as root",
                p.display(),
                meta.uid(),
                path.display()
            ));
        }
        let sticky_dir = meta.is_dir() && meta.mode() & 0o1000 != 0;
        if meta.mode() & 0o022 != 0 && !sticky_dir {
            return Err(format!(
                "{} is writable by others than root (mode {:o}): refusing to run {} as root",
                p.display(),
                meta.mode() & 0o7777,
                path.display()
            ));
        }
        at = p.parent();
    }
    Ok(())
}

/// Run the step: `Ok(note)` when it exits 0, `Err(sentence)` otherwise.
pub async fn run(step: &ExecIntegration, transition: &Transition<'_>) -> Result<String, String> {
    check_owned_by_root(&step.path)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_file_others_can_write_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("hook");
        std::fs::write(&f, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = check_owned_by_root(&f).unwrap_err();
        assert!(e.contains("writable by others than root"), "{e}");
        // /bin/sh is root's, and so is every directory above it.
        check_owned_by_root(Path::new("/bin/sh")).unwrap();
    }
}
