//! The state directory (`/run/mode-controller`) and the audit log: every file
//! of the contract, written atomically (temporary file in the same directory,
//! fsync, rename, fsync of the directory), read with errors that name the
//! file, never a panic on corrupt content.

mod lock;
mod record;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use mode_guards::GuardReport;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use lock::{LockHolder, TransitionLock};
pub use record::{RollbackRecord, StepOutcome, StepRecord, TransitionOutcome, TransitionRecord};

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
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            proc_locks: lock::default_proc_locks(),
        }
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
        let path = self.path(name);
        let tmp = self.path(&format!(".{name}.tmp.{}", std::process::id()));
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
            File::open(&self.root)?.sync_all()
        })();
        result.map_err(|source| {
            let _ = fs::remove_file(&tmp);
            self.io(&path, source)
        })
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
        self.write_atomic("desired", format!("{mode}\n").as_bytes())
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

    pub fn placement(&self) -> Result<Option<BTreeMap<String, String>>, StateError> {
        self.read_json("capability-placement.json")
    }
    pub fn set_placement(&self, placement: &BTreeMap<String, String>) -> Result<(), StateError> {
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

    /// Take the transition lock (busy -> `StateError::Busy` naming the holder).
    pub fn lock(&self, transition_id: &str) -> Result<TransitionLock, StateError> {
        lock::acquire(&self.path("lock"), transition_id)
    }

    /// The live holder of the transition lock, if any.
    pub fn lock_holder(&self) -> Option<LockHolder> {
        lock::holder(&self.path("lock"), &self.proc_locks)
    }
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
