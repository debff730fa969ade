//! The transition lock: an advisory `flock` on `lock` held for the whole of a
//! transition, with the holder's pid and transition id written inside. Whether
//! it is held is read from `/proc/locks`, so looking never takes the lock and
//! can never make a real transition fail as busy.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::StateError;

/// Who holds (or last held) the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockHolder {
    pub pid: Option<u32>,
    pub transition_id: Option<String>,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.pid, &self.transition_id) {
            (Some(pid), Some(id)) => write!(f, "pid {pid}, transition {id}"),
            (Some(pid), None) => write!(f, "pid {pid}"),
            _ => f.write_str("an unknown process"),
        }
    }
}

/// The lock, held until dropped (the kernel releases it if the holder dies).
#[derive(Debug)]
pub struct TransitionLock {
    _file: File,
}

fn open(path: &Path) -> Result<File, StateError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)
        .map_err(|source| StateError::Io {
            file: path.to_path_buf(),
            source,
        })
}

fn parse_holder(text: &str) -> LockHolder {
    let mut holder = LockHolder {
        pid: None,
        transition_id: None,
    };
    for word in text.split_whitespace() {
        if let Some(p) = word.strip_prefix("pid=") {
            holder.pid = p.parse().ok();
        } else if let Some(id) = word.strip_prefix("transition=") {
            holder.transition_id = Some(id.to_string());
        }
    }
    holder
}

/// Take the lock without waiting; `Busy` names the holder.
pub fn acquire(path: &Path, transition_id: &str) -> Result<TransitionLock, StateError> {
    let mut file = open(path)?;
    let io = |source| StateError::Io {
        file: path.to_path_buf(),
        source,
    };
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            return Err(StateError::Busy(parse_holder(&text)));
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    let line = format!("pid={} transition={}\n", std::process::id(), transition_id);
    file.write_all(line.as_bytes()).map_err(io)?;
    file.sync_data().map_err(io)?;
    Ok(TransitionLock { _file: file })
}

/// The holder, if some live process holds the lock now.
pub fn holder(path: &Path, proc_locks: &Path) -> Option<LockHolder> {
    let meta = std::fs::metadata(path).ok()?;
    let locks = std::fs::read_to_string(proc_locks).ok()?;
    let held = locks
        .lines()
        .any(|line| flock_matches(line, meta.dev(), meta.ino()));
    if !held {
        return None;
    }
    let text = std::fs::read_to_string(path).unwrap_or_default();
    Some(parse_holder(&text))
}

/// A `/proc/locks` line such as `1: FLOCK  ADVISORY  WRITE 1234 00:2a:5678 0 EOF`.
fn flock_matches(line: &str, dev: u64, ino: u64) -> bool {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.get(1) != Some(&"FLOCK") || fields.get(2) == Some(&"->") {
        return false;
    }
    let Some(id) = fields.get(5) else {
        return false;
    };
    let mut parts = id.split(':');
    let (Some(maj), Some(min), Some(i)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let (Ok(maj), Ok(min), Ok(i)) = (
        u64::from_str_radix(maj, 16),
        u64::from_str_radix(min, 16),
        i.parse::<u64>(),
    ) else {
        return false;
    };
    i == ino && nix::sys::stat::makedev(maj, min) == dev
}

pub fn default_proc_locks() -> PathBuf {
    PathBuf::from("/proc/locks")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_is_told_who_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = acquire(&path, "20261123T040506Z-4f2a").unwrap();
        match acquire(&path, "other") {
            Err(StateError::Busy(h)) => {
                assert_eq!(h.pid, Some(std::process::id()));
                assert_eq!(h.transition_id.as_deref(), Some("20261123T040506Z-4f2a"));
            }
            other => panic!("expected busy, got {other:?}"),
        }
        drop(held);
        assert!(acquire(&path, "third").is_ok(), "released on drop");
    }

    #[test]
    fn holder_is_read_from_proc_locks_without_taking_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        assert_eq!(
            holder(&path, &default_proc_locks()),
            None,
            "no file, no holder"
        );
        let held = acquire(&path, "t1").unwrap();
        let h = holder(&path, &default_proc_locks()).expect("held");
        assert_eq!(h.transition_id.as_deref(), Some("t1"));
        drop(held);
        assert_eq!(
            holder(&path, &default_proc_locks()),
            None,
            "stale content is not a holder"
        );
    }
}
