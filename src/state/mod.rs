//! The state directory (`/run/mode-controller`) and the audit log: every file
//! of the contract, written atomically (temporary file in the same directory,
//! fsync, rename, fsync of the directory), read with errors that name the
//! file, never a panic on corrupt content. The desired mode is also kept in a
//! persistent directory (`/var/lib/mode-controller`) for the boot policy.

mod lock;
mod record;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use mode_guards::GuardReport;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use lock::{LockHolder, TransitionLock};
pub use record::{
    JobOutcome, JobRecord, ReadyRecord, RollbackRecord, StepOutcome, StepRecord, TransitionOutcome,
    TransitionRecord,
};

use crate::mode::{Mode, ObservedMode};

pub const DEFAULT_STATE_DIR: &str = "/run/mode-controller";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{file}: {source}")]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file} is corrupt: {detail}")]
    Corrupt { file: PathBuf, detail: String },
    #[error("another transition is running ({0})")]
    Busy(LockHolder),
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
    proc_locks: PathBuf,
    /// Where the desired mode is also kept across reboots (`boot_mode` "last").
    persistent: Option<PathBuf>,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            proc_locks: lock::default_proc_locks(),
            persistent: None,
        }
    }

    /// Also keep the desired mode in `dir` (written whenever `desired` is),
    /// so that it survives a reboot.
    pub fn keeping_desired_in(mut self, dir: impl Into<PathBuf>) -> Self {
        self.persistent = Some(dir.into());
        self
    }

    /// The persistent directory, when there is one.
    pub fn persistent_dir(&self) -> Option<&Path> {
        self.persistent.as_deref()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Create the directory (0755) if it is missing.
    pub fn ensure(&self) -> Result<(), StateError> {
        fs::create_dir_all(&self.root).map_err(|source| self.io(&self.root, source))?;
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o755))
            .map_err(|source| self.io(&self.root, source))
    }

    fn io(&self, file: &Path, source: std::io::Error) -> StateError {
        StateError::Io {
            file: file.to_path_buf(),
            source,
        }
    }

    /// Read a file; `None` when it does not exist.
    fn read(&self, name: &str) -> Result<Option<String>, StateError> {
        let path = self.path(name);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(StateError::Corrupt {
                file: path,
                detail: "not UTF-8 text".into(),
            }),
            Err(source) => Err(self.io(&path, source)),
        }
    }

    fn read_json<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StateError> {
        let Some(text) = self.read(name)? else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                file: self.path(name),
                detail: e.to_string(),
            })
    }

    fn read_word<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, StateError>
    where
        T::Err: std::fmt::Display,
    {
        let Some(text) = self.read(name)? else {
            return Ok(None);
        };
        text.trim()
            .parse()
            .map(Some)
            .map_err(|e: T::Err| StateError::Corrupt {
                file: self.path(name),
                detail: e.to_string(),
            })
    }

    /// Write `contents` to `name` atomically, mode 0644.
    pub fn write_atomic(&self, name: &str, contents: &[u8]) -> Result<(), StateError> {
        write_atomic_in(&self.root, name, contents)
    }

    fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StateError> {
        let mut text = serde_json::to_vec_pretty(value).map_err(|e| StateError::Corrupt {
            file: self.path(name),
            detail: format!("cannot serialize: {e}"),
        })?;
        text.push(b'\n');
        self.write_atomic(name, &text)
    }

    pub fn desired(&self) -> Result<Option<Mode>, StateError> {
        self.read_word("desired")
    }
    pub fn set_desired(&self, mode: Mode) -> Result<(), StateError> {
        let line = format!("{mode}\n");
        self.write_atomic("desired", line.as_bytes())?;
        match &self.persistent {
            Some(dir) => {
                fs::create_dir_all(dir).map_err(|source| self.io(dir, source))?;
                write_atomic_in(dir, "desired", line.as_bytes())
            }
            None => Ok(()),
        }
    }

    /// The desired mode kept across reboots; `None` when none was kept (or
    /// there is no persistent directory).
    pub fn kept_desired(&self) -> Result<Option<Mode>, StateError> {
        let Some(dir) = &self.persistent else {
            return Ok(None);
        };
        let path = dir.join("desired");
        match fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|e: crate::mode::UnknownMode| StateError::Corrupt {
                    file: path,
                    detail: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(self.io(&path, source)),
        }
    }

    pub fn current(&self) -> Result<Option<ObservedMode>, StateError> {
        self.read_word("current")
    }
    pub fn set_current(&self, mode: ObservedMode) -> Result<(), StateError> {
        self.write_atomic("current", format!("{mode}\n").as_bytes())
    }

    pub fn last_transition(&self) -> Result<Option<TransitionRecord>, StateError> {
        self.read_json("last-transition.json")
    }
    pub fn set_last_transition(&self, record: &TransitionRecord) -> Result<(), StateError> {
        self.write_json("last-transition.json", record)
    }

    pub fn last_guards(&self) -> Result<Option<GuardReport>, StateError> {
        self.read_json("last-guards.json")
    }
    pub fn set_last_guards(&self, report: &GuardReport) -> Result<(), StateError> {
        self.write_json("last-guards.json", report)
    }

    pub fn set_placement(&self, placement: &serde_json::Value) -> Result<(), StateError> {
        self.write_json("capability-placement.json", placement)
    }

    /// Who asked for the transition about to run (handed from `mode request`
    /// to the `mode apply` that the unit runs): `(mode, requester)`.
    pub fn request_note(&self) -> Result<Option<(Mode, String)>, StateError> {
        let Some(text) = self.read("requested-by")? else {
            return Ok(None);
        };
        let (mode, by) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
        let mode = mode
            .parse()
            .map_err(|e: crate::mode::UnknownMode| StateError::Corrupt {
                file: self.path("requested-by"),
                detail: e.to_string(),
            })?;
        Ok(Some((mode, by.to_string())))
    }
    pub fn set_request_note(&self, mode: Mode, by: &str) -> Result<(), StateError> {
        self.write_atomic("requested-by", format!("{mode} {by}\n").as_bytes())
    }

    /// Since when (milliseconds since the epoch) `mode idle-check` has seen
    /// the desktop with no graphical session at all.
    pub fn unattended_since(&self) -> Result<Option<u64>, StateError> {
        self.read_word("unattended-since")
    }
    /// Record (`Some`) or forget (`None`) when the desktop became unattended.
    pub fn set_unattended_since(&self, millis: Option<u64>) -> Result<(), StateError> {
        match millis {
            Some(ms) => self.write_atomic("unattended-since", format!("{ms}\n").as_bytes()),
            None => match fs::remove_file(self.path("unattended-since")) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(self.io(&self.path("unattended-since"), e))
                }
                _ => Ok(()),
            },
        }
    }

    /// Take the transition lock (busy -> `StateError::Busy` naming the holder).
    pub fn lock(&self, transition_id: &str) -> Result<TransitionLock, StateError> {
        lock::acquire(&self.path("lock"), transition_id)
    }

    /// The live holder of the transition lock, if any.
    pub fn lock_holder(&self) -> Option<LockHolder> {
        lock::holder(&self.path("lock"), &self.proc_locks)
    }
}

/// Write `contents` to `dir/name` atomically, mode 0644: a temporary file in
/// the same directory, fsync, rename, fsync of the directory.
fn write_atomic_in(dir: &Path, name: &str, contents: &[u8]) -> Result<(), StateError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(0o644))?;
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        File::open(dir)?.sync_all()
    })();
    result.map_err(|source| {
        let _ = fs::remove_file(&tmp);
        StateError::Io { file: path, source }
    })
}

/// Append one completed transition to the audit log as a single line.
pub fn append_audit(log: &Path, record: &TransitionRecord) -> Result<(), StateError> {
    let io = |source| StateError::Io {
        file: log.to_path_buf(),
        source,
    };
    if let Some(dir) = log.parent() {
        fs::create_dir_all(dir).map_err(io)?;
    }
    let mut line = serde_json::to_vec(record).map_err(|e| StateError::Corrupt {
        file: log.to_path_buf(),
        detail: format!("cannot serialize: {e}"),
    })?;
    line.push(b'\n');
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(log)
        .map_err(io)?;
    // One write of the whole line: O_APPEND keeps concurrent lines whole.
    f.write_all(&line).map_err(io)?;
    f.sync_data().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn dir() -> (tempfile::TempDir, StateDir) {
        let t = tempfile::tempdir().unwrap();
        let s = StateDir::new(t.path().join("state"));
        s.ensure().unwrap();
        (t, s)
    }

    #[test]
    fn words_round_trip_and_files_are_0644() {
        let (_t, s) = dir();
        assert_eq!(s.desired().unwrap(), None);
        s.set_desired(Mode::Compute).unwrap();
        assert_eq!(s.desired().unwrap(), Some(Mode::Compute));
        assert_eq!(fs::read_to_string(s.path("desired")).unwrap(), "compute\n");
        assert_eq!(
            fs::metadata(s.path("desired")).unwrap().mode() & 0o777,
            0o644
        );
        assert_eq!(fs::metadata(s.root()).unwrap().mode() & 0o777, 0o755);
        s.set_current(ObservedMode::FailedTransition).unwrap();
        assert_eq!(s.current().unwrap(), Some(ObservedMode::FailedTransition));
    }

    #[test]
    fn corrupt_files_are_named_not_panicked_on() {
        let (_t, s) = dir();
        fs::write(s.path("desired"), "gaming\n").unwrap();
        let e = s.desired().unwrap_err().to_string();
        assert!(
            e.contains("desired is corrupt") && e.contains("'gaming'"),
            "{e}"
        );
        fs::write(s.path("last-transition.json"), "{\"id\": \"x\", \"fr").unwrap();
        let e = s.last_transition().unwrap_err().to_string();
        assert!(e.contains("last-transition.json is corrupt"), "{e}");
        fs::write(s.path("current"), [0xff, 0xfe]).unwrap();
        assert!(s.current().unwrap_err().to_string().contains("not UTF-8"));
    }

    #[test]
    fn desired_is_kept_in_the_persistent_dir_whenever_it_is_written() {
        let (t, s) = dir();
        assert_eq!(s.kept_desired().unwrap(), None, "no persistent dir");
        let s = s.keeping_desired_in(t.path().join("var/lib/mode-controller"));
        assert_eq!(s.kept_desired().unwrap(), None, "nothing kept yet");
        s.set_desired(Mode::Compute).unwrap();
        assert_eq!(s.kept_desired().unwrap(), Some(Mode::Compute));
        let kept = t.path().join("var/lib/mode-controller/desired");
        assert_eq!(fs::read_to_string(&kept).unwrap(), "compute\n");
        assert_eq!(fs::metadata(&kept).unwrap().mode() & 0o777, 0o644);
        s.set_desired(Mode::StudioLocal).unwrap();
        assert_eq!(s.kept_desired().unwrap(), Some(Mode::StudioLocal));
        fs::write(&kept, "gaming\n").unwrap();
        let e = s.kept_desired().unwrap_err().to_string();
        assert!(
            e.contains("desired is corrupt") && e.contains("gaming"),
            "{e}"
        );
    }

    #[test]
    fn atomic_write_leaves_no_temporary_file() {
        let (_t, s) = dir();
        s.set_desired(Mode::Desktop).unwrap();
        s.set_desired(Mode::StudioLocal).unwrap();
        let names: Vec<_> = fs::read_dir(s.root())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("desired")]);
    }

    #[test]
    fn audit_log_gets_one_whole_line_per_record() {
        let (t, _s) = dir();
        let log = t.path().join("var/lib/transitions.jsonl");
        let rec = TransitionRecord {
            id: "id1".into(),
            from: "desktop".into(),
            to: "compute".into(),
            requested_by: "cli uid=0".into(),
            started_at: "2026-11-23T04:05:06.120Z".into(),
            finished_at: "2026-11-23T04:05:06.410Z".into(),
            duration_ms: 290,
            outcome: TransitionOutcome::Converged,
            steps: vec![],
            guards: vec![],
            error: None,
            rollback: None,
        };
        append_audit(&log, &rec).unwrap();
        append_audit(&log, &rec).unwrap();
        let text = fs::read_to_string(&log).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let back: TransitionRecord = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(back, rec);
    }
}
