//! The transition lock: an advisory `flock` on `lock` held for the whole of a
//! transition. The lock file is root's alone (0600, opened O_NOFOLLOW), so
//! no other user can open it, let alone hold it. Who holds it is read from
//! `/proc/locks` (the pid) and from `lock-holder` (0644: the controller's
//! pid and transition id, for anyone to read), so looking never takes the
//! lock; a holder that is not the controller is named as such.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::StateError;

/// The public file naming the controller that holds the lock.
pub const HOLDER_FILE: &str = "lock-holder";

/// Who holds the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockHolder {
    pub pid: Option<u32>,
    pub transition_id: Option<String>,
    /// False when the holder is some other process (a stray `flock` by
    /// root, say), not a mode-controller transition.
    pub controller: bool,
    /// The holder's command name, when it is not the controller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.controller {
            let pid = self
                .pid
                .map_or("an unknown process".into(), |p| format!("pid {p}"));
            let comm = self
                .command
                .as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default();
            return write!(
                f,
                "{pid}{comm}, which is not a mode-controller transition; stop it"
            );
        }
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

fn io(path: &Path) -> impl Fn(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        file: path.to_path_buf(),
        source,
    }
}

/// Open (creating) the lock file: never through a symlink, never blocking
/// on a FIFO, only a regular file, and made root's 0600 if it was not.
fn open(path: &Path) -> Result<File, StateError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| super::refusal(path, e))?;
    let meta = file.metadata().map_err(io(path))?;
    if !meta.file_type().is_file() {
        return Err(StateError::Refused {
            file: path.to_path_buf(),
            detail: "is not a regular file; remove it".into(),
        });
    }
    if meta.uid() != 0 || meta.gid() != 0 {
        std::os::unix::fs::fchown(&file, Some(0), Some(0)).map_err(io(path))?;
    }
    if meta.mode() & 0o7777 != 0o600 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io(path))?;
    }
    Ok(file)
}

fn parse_holder(text: &str) -> (Option<u32>, Option<String>) {
    let (mut pid, mut id) = (None, None);
    for word in text.split_whitespace() {
        if let Some(p) = word.strip_prefix("pid=") {
            pid = p.parse().ok();
        } else if let Some(t) = word.strip_prefix("transition=") {
            id = Some(super::cut(t, 64));
        }
    }
    (pid, id)
}

/// Take the lock without waiting; `Busy` names the holder.
pub fn acquire(
    dir: &Path,
    proc_locks: &Path,
    transition_id: &str,
) -> Result<TransitionLock, StateError> {
    let path = dir.join("lock");
    let mut file = open(&path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let holder = holder(dir, proc_locks).unwrap_or(LockHolder {
                pid: None,
                transition_id: None,
                controller: true,
                command: None,
            });
            return Err(StateError::Busy(holder));
        }
        Err(TryLockError::Error(e)) => return Err(io(&path)(e)),
    }
    let line = format!("pid={} transition={}\n", std::process::id(), transition_id);
    file.set_len(0).map_err(io(&path))?;
    file.write_all(line.as_bytes()).map_err(io(&path))?;
    super::write_atomic_in(dir, HOLDER_FILE, line.as_bytes())?;
    Ok(TransitionLock { _file: file })
}

/// The holder, if some live process holds the lock now. Needs no read
/// access to the lock file: its inode is matched in `/proc/locks`.
pub fn holder(dir: &Path, proc_locks: &Path) -> Option<LockHolder> {
    let meta = std::fs::symlink_metadata(dir.join("lock")).ok()?;
    let locks = super::read_capped(proc_locks, 1 << 20).ok()?;
    let pid = locks
        .lines()
        .find_map(|line| flock_holder(line, meta.dev(), meta.ino()))?;
    let named = super::read_file_in(dir, HOLDER_FILE, 4096)
        .ok()
        .flatten()
        .map(|t| parse_holder(&t))
        .unwrap_or((None, None));
    let command = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| super::cut(c.trim(), 32));
    let controller = named.0 == Some(pid) || command.as_deref() == Some("mode");
    Some(LockHolder {
        pid: Some(pid),
        transition_id: if named.0 == Some(pid) { named.1 } else { None },
        controller,
        command: if controller { None } else { command },
    })
}

/// The pid of a `/proc/locks` line such as
/// `1: FLOCK  ADVISORY  WRITE 1234 00:2a:5678 0 EOF` when it locks `dev`/`ino`.
fn flock_holder(line: &str, dev: u64, ino: u64) -> Option<u32> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.get(1) != Some(&"FLOCK") || fields.get(2) == Some(&"->") {
        return None;
    }
    let pid: u32 = fields.get(4)?.parse().ok()?;
    let mut parts = fields.get(5)?.split(':');
    let maj = u64::from_str_radix(parts.next()?, 16).ok()?;
    let min = u64::from_str_radix(parts.next()?, 16).ok()?;
    let i = parts.next()?.parse::<u64>().ok()?;
    (i == ino && nix::sys::stat::makedev(maj, min) == dev).then_some(pid)
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
        let locks = default_proc_locks();
        let held = acquire(dir.path(), &locks, "20261123T040506Z-4f2a").unwrap();
        match acquire(dir.path(), &locks, "other") {
            Err(StateError::Busy(h)) => {
                assert_eq!(h.pid, Some(std::process::id()));
                assert_eq!(h.transition_id.as_deref(), Some("20261123T040506Z-4f2a"));
                assert!(h.controller);
            }
            other => panic!("expected busy, got {other:?}"),
        }
        drop(held);
        assert!(
            acquire(dir.path(), &locks, "third").is_ok(),
            "released on drop"
        );
    }

    #[test]
    fn the_lock_file_is_roots_alone_and_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("lock");
        std::fs::write(&lock, "").unwrap();
        std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o666)).unwrap();
        let held = acquire(dir.path(), &default_proc_locks(), "t").unwrap();
        let meta = std::fs::metadata(&lock).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o600);
        assert_eq!(meta.uid(), 0);
        let public = std::fs::metadata(dir.path().join(HOLDER_FILE)).unwrap();
        assert_eq!(public.mode() & 0o777, 0o644, "anyone can read who holds it");
        drop(held);
        std::fs::remove_file(&lock).unwrap();
        let target = dir.path().join("precious");
        std::fs::write(&target, "keep me").unwrap();
        std::os::unix::fs::symlink(&target, &lock).unwrap();
        let e = acquire(dir.path(), &default_proc_locks(), "t").unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
    }

    #[test]
    fn holder_is_read_from_proc_locks_without_taking_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let locks = default_proc_locks();
        assert_eq!(holder(dir.path(), &locks), None, "no file, no holder");
        let held = acquire(dir.path(), &locks, "t1").unwrap();
        let h = holder(dir.path(), &locks).expect("held");
        assert_eq!(h.transition_id.as_deref(), Some("t1"));
        drop(held);
        assert_eq!(
            holder(dir.path(), &locks),
            None,
            "stale content is not a holder"
        );
    }

    #[test]
    fn a_holder_that_is_not_the_controller_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let locks = default_proc_locks();
        drop(acquire(dir.path(), &locks, "old").unwrap());
        let mut child = std::process::Command::new("flock")
            .arg(dir.path().join("lock"))
            .args(["sleep", "30"])
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        let h = loop {
            if let Some(h) = holder(dir.path(), &locks) {
                break h;
            }
            assert!(started.elapsed().as_secs() < 10, "flock never took it");
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        let _ = child.kill();
        let _ = child.wait();
        assert!(!h.controller, "{h:?}");
        assert_eq!(h.transition_id, None, "the old transition is not named");
        assert!(
            h.to_string().contains("not a mode-controller transition"),
            "{h}"
        );
    }
}
