//! The state directory (`/run/mode-controller`) and the audit log: every file
//! of the contract, written atomically (temporary file in the same directory,
//! fsync, rename, fsync of the directory), read with errors that name the
//! file, never a panic on corrupt content. The desired mode is also kept in a
//! persistent directory (`/var/lib/mode-controller`) for the boot policy.

mod lock;
mod record;
mod watch;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use std::os::fd::AsRawFd;

use mode_guards::GuardReport;
use nix::fcntl::OFlag;
use nix::unistd::UnlinkatFlags;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use lock::{LockHolder, TransitionLock};
pub use record::{
    JobOutcome, JobRecord, ReadyRecord, RollbackRecord, StepOutcome, StepRecord, TransitionOutcome,
    TransitionRecord,
};
pub use watch::StateWatch;

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
    /// Something that is not a state file sits where one should be (a
    /// symlink, a FIFO, a directory, a huge file), or a path root must not
    /// trust: named, never followed or read.
    #[error("{file} {detail}")]
    Refused { file: PathBuf, detail: String },
}

impl StateError {
    /// A problem of the machine rather than of the controller: the disk
    /// full or read-only, a quota, a permission (contract exit 7).
    pub fn is_environment(&self) -> bool {
        use std::io::ErrorKind as K;
        match self {
            StateError::Io { source, .. } => matches!(
                source.kind(),
                K::StorageFull | K::ReadOnlyFilesystem | K::QuotaExceeded | K::PermissionDenied
            ),
            StateError::Corrupt { .. } | StateError::Refused { .. } => true,
            StateError::Busy(_) => false,
        }
    }
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

    /// Read a state file; `None` when it does not exist.
    fn read(&self, name: &str) -> Result<Option<String>, StateError> {
        read_file_in(&self.root, name, MAX_STATE_BYTES)
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
            .map_err(|_: T::Err| StateError::Corrupt {
                file: self.path(name),
                detail: format!("holds {}, not a valid value", quoted(text.trim(), 40)),
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
        let Some(text) = read_file_in(dir, "desired", MAX_STATE_BYTES)? else {
            return Ok(None);
        };
        text.trim()
            .parse()
            .map(Some)
            .map_err(|_: crate::mode::UnknownMode| StateError::Corrupt {
                file: dir.join("desired"),
                detail: format!("holds {}, not a mode", quoted(text.trim(), 40)),
            })
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
            .map_err(|_: crate::mode::UnknownMode| StateError::Corrupt {
                file: self.path("requested-by"),
                detail: format!("holds {}, not a mode", quoted(mode, 40)),
            })?;
        Ok(Some((mode, cut(by, 80))))
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

    /// Remove a state file that cannot be read back (never a directory).
    pub fn discard(&self, name: &str) -> Result<(), StateError> {
        let d = open_dir(&self.root).map_err(|e| refusal(&self.root, e))?;
        match nix::unistd::unlinkat(Some(d.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => Ok(()),
            Err(e) => Err(refusal(&self.path(name), e.into())),
        }
    }

    /// The first state file that cannot be read back (a directory, a FIFO,
    /// a symlink, a huge or corrupt file), for a transition that stopped
    /// before it could record anything.
    pub fn obstacle(&self) -> Option<StateError> {
        let checks: [&dyn Fn() -> Result<(), StateError>; 6] = [
            &|| self.last_transition().map(|_| ()),
            &|| self.last_guards().map(|_| ()),
            &|| self.read("capability-placement.json").map(|_| ()),
            &|| self.current().map(|_| ()),
            &|| self.desired().map(|_| ()),
            &|| self.read(lock::HOLDER_FILE).map(|_| ()),
        ];
        checks.iter().find_map(|check| check().err())
    }

    /// Take the transition lock (busy -> `StateError::Busy` naming the
    /// holder), then clear temporary files that dead writers left behind.
    pub fn lock(&self, transition_id: &str) -> Result<TransitionLock, StateError> {
        let lock = lock::acquire(&self.root, &self.proc_locks, transition_id)?;
        clean_stray_temps(&self.root);
        if let Some(dir) = &self.persistent {
            clean_stray_temps(dir);
        }
        Ok(lock)
    }

    /// The live holder of the transition lock, if any.
    pub fn lock_holder(&self) -> Option<LockHolder> {
        lock::holder(&self.root, &self.proc_locks)
    }
}

/// The largest state file read back (state files are tiny; a transition
/// record with many steps and jobs stays far below this).
const MAX_STATE_BYTES: u64 = 1 << 20;

/// `text` quoted (control characters escaped) and cut to `max` characters,
/// for messages that must stay one short line whatever a file holds.
pub fn quoted(text: &str, max: usize) -> String {
    format!("'{}'", cut(text, max))
}

/// `text` with control characters escaped, cut to `max` characters.
pub fn cut(text: &str, max: usize) -> String {
    let escaped: String = text.chars().flat_map(char::escape_debug).collect();
    match escaped.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &escaped[..i]),
        None => escaped,
    }
}

fn refused(file: PathBuf, detail: impl Into<String>) -> StateError {
    StateError::Refused {
        file,
        detail: detail.into(),
    }
}

/// An open error in words: a symlink where a state file should be is
/// refused (O_NOFOLLOW), not an I/O mystery.
fn refusal(file: &Path, e: std::io::Error) -> StateError {
    match e.raw_os_error() {
        Some(nix::libc::ELOOP) => refused(
            file.to_path_buf(),
            "is a symbolic link; refusing to follow it (remove it)",
        ),
        Some(nix::libc::EISDIR) => refused(
            file.to_path_buf(),
            "is a directory, not a regular file (remove it)",
        ),
        _ => StateError::Io {
            file: file.to_path_buf(),
            source: e,
        },
    }
}

/// The directory itself, never through a symlink.
fn open_dir(dir: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(dir)
}

/// `openat(dir, name)`: a file named relative to an open directory.
fn open_in(dir: &File, name: &str, flags: OFlag, mode: u32) -> std::io::Result<File> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let fd = nix::fcntl::openat(
        Some(dir.as_raw_fd()),
        name,
        flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::from_bits_truncate(mode),
    )
    .map_err(std::io::Error::from)?;
    // SAFETY: openat just returned this descriptor and nothing else owns it.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Read `dir/name`, a state file: opened relative to the directory, never
/// through a symlink, without blocking on a FIFO; only a regular file of at
/// most `cap` bytes is read. `None` when it does not exist.
pub(crate) fn read_file_in(dir: &Path, name: &str, cap: u64) -> Result<Option<String>, StateError> {
    use std::io::Read;
    let path = dir.join(name);
    let d = match open_dir(dir) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(refusal(dir, e)),
    };
    let f = match open_in(&d, name, OFlag::O_RDONLY | OFlag::O_NONBLOCK, 0) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(refusal(&path, e)),
    };
    let meta = f.metadata().map_err(|e| refusal(&path, e))?;
    if !meta.file_type().is_file() {
        return Err(refused(
            path,
            format!("is {}, not a regular file (remove it)", kind_of(&meta)),
        ));
    }
    if meta.len() > cap {
        return Err(refused(
            path,
            format!(
                "is {} bytes, more than a state file can be ({cap}); remove it",
                meta.len()
            ),
        ));
    }
    let mut bytes = Vec::new();
    f.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| refusal(&path, e))?;
    if bytes.len() as u64 > cap {
        return Err(refused(
            path,
            format!("is more than {cap} bytes; remove it"),
        ));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| StateError::Corrupt {
            file: path,
            detail: "not UTF-8 text".into(),
        })
}

/// A file of the kernel's (`/proc/locks`), read to at most `cap` bytes.
pub(crate) fn read_capped(path: &Path, cap: u64) -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    File::open(path)?.take(cap).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn kind_of(meta: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

/// Remove `.NAME.tmp.PID` files whose writer is gone (killed mid-write).
fn clean_stray_temps(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Some(pid) = name
            .strip_prefix('.')
            .and_then(|n| n.rsplit_once(".tmp."))
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
        if !alive && entry.file_type().is_ok_and(|t| t.is_file()) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Write `contents` to `dir/name` atomically, mode 0644: a temporary file
/// created exclusively (O_EXCL, O_NOFOLLOW) in the same directory, fsync,
/// rename, fsync of the directory; all relative to the open directory.
pub(crate) fn write_atomic_in(dir: &Path, name: &str, contents: &[u8]) -> Result<(), StateError> {
    let path = dir.join(name);
    let tmp = format!(".{name}.tmp.{}", std::process::id());
    let d = open_dir(dir).map_err(|e| refusal(dir, e))?;
    let create = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL;
    let mut f = match open_in(&d, &tmp, create, 0o644) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // Ours from an earlier pid's life; never written through.
            let _ = nix::unistd::unlinkat(
                Some(d.as_raw_fd()),
                tmp.as_str(),
                UnlinkatFlags::NoRemoveDir,
            );
            open_in(&d, &tmp, create, 0o644)
        }
        other => other,
    }
    .map_err(|e| refusal(&path, e))?;
    let result = (|| {
        f.set_permissions(fs::Permissions::from_mode(0o644))?;
        f.write_all(contents)?;
        f.sync_all()?;
        nix::fcntl::renameat(Some(d.as_raw_fd()), tmp.as_str(), Some(d.as_raw_fd()), name)?;
        d.sync_all()
    })();
    result.map_err(|e| {
        let _ = nix::unistd::unlinkat(
            Some(d.as_raw_fd()),
            tmp.as_str(),
            UnlinkatFlags::NoRemoveDir,
        );
        refusal(&path, e)
    })
}

/// How much of the audit log's end is read to find a recent transition.
const AUDIT_TAIL_BYTES: u64 = 256 * 1024;

/// The last whole lines of the audit log (up to `AUDIT_TAIL_BYTES`), newest
/// last; empty when there is no log.
pub fn audit_tail(log: &Path) -> Result<Vec<String>, StateError> {
    use std::io::{Read, Seek, SeekFrom};
    let io = |source| StateError::Io {
        file: log.to_path_buf(),
        source,
    };
    let mut f = match OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(log)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(io(e)),
    };
    let len = f.metadata().map_err(io)?.len();
    let from = len.saturating_sub(AUDIT_TAIL_BYTES);
    f.seek(SeekFrom::Start(from)).map_err(io)?;
    let mut bytes = Vec::new();
    f.take(AUDIT_TAIL_BYTES)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    // The first piece may be cut by the seek, the last is unterminated.
    if from > 0 && !lines.is_empty() {
        lines.remove(0);
    }
    lines.pop();
    Ok(lines)
}

/// The records in the audit log's tail whose `job_id` or `id` matches.
pub fn audit_find(
    log: &Path,
    matches: impl Fn(&TransitionRecord) -> bool,
) -> Result<Option<TransitionRecord>, StateError> {
    Ok(audit_tail(log)?
        .iter()
        .rev()
        .filter_map(|l| serde_json::from_str::<TransitionRecord>(l).ok())
        .find(|r| matches(r)))
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
    if nix::unistd::geteuid().is_root() {
        // As sshd's StrictModes: root appends only where no one else could
        // have put a link or a file of their own.
        mode_guards::check_trusted(log)
            .map_err(|why| refused(log.to_path_buf(), format!("is not appended to: {why}")))?;
    }
    let mut line = serde_json::to_vec(record).map_err(|e| StateError::Corrupt {
        file: log.to_path_buf(),
        detail: format!("cannot serialize: {e}"),
    })?;
    line.push(b'\n');
    let mut f = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o644)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(log)
        .map_err(|e| refusal(log, e))?;
    let meta = f.metadata().map_err(io)?;
    if !meta.file_type().is_file() {
        return Err(refused(
            log.to_path_buf(),
            "is not a regular file; move it away",
        ));
    }
    cut_partial_line(&mut f, meta.len()).map_err(io)?;
    // One write of the whole line: O_APPEND keeps concurrent lines whole.
    f.write_all(&line).map_err(io)?;
    f.sync_data().map_err(io)
}

/// A line cut short (the controller killed, or the disk full, mid-append)
/// is dropped before the next line goes on, so every line stays whole JSON.
fn cut_partial_line(f: &mut File, len: u64) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    if len == 0 {
        return Ok(());
    }
    let from = len.saturating_sub(AUDIT_TAIL_BYTES);
    f.seek(SeekFrom::Start(from))?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail)?;
    if tail.last() == Some(&b'\n') {
        return Ok(());
    }
    let keep = match tail.iter().rposition(|b| *b == b'\n') {
        Some(i) => from + i as u64 + 1,
        None if from == 0 => 0,
        // A line longer than the tail: leave it rather than guess.
        None => return Ok(()),
    };
    f.set_len(keep)
}

/// A test-only pause point (debug builds): when `MODE_TEST_PAUSE` names
/// `point`, the process writes `test-paused` (`POINT PID`) into the state
/// directory and stops itself (SIGSTOP), so a fault test can kill it at
/// exactly that point. Release builds never read the variable.
pub fn test_pause(state: &StateDir, point: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("MODE_TEST_PAUSE").is_ok_and(|p| p == point) {
        let mark = format!("{point} {}\n", std::process::id());
        let _ = state.write_atomic("test-paused", mark.as_bytes());
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP);
    }
    #[cfg(not(debug_assertions))]
    let _ = (state, point);
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

    /// Each hostile thing that can sit at a state path.
    fn plant(path: &Path, what: &str) {
        match what {
            "symlink" => std::os::unix::fs::symlink("/etc/shadow", path).unwrap(),
            "fifo" => {
                nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap()
            }
            "directory" => fs::create_dir(path).unwrap(),
            "huge" => {
                let f = File::create(path).unwrap();
                f.set_len(100 << 20).unwrap();
            }
            "binary" => fs::write(path, b"compute\x1b[2J\x00\xff".repeat(1000)).unwrap(),
            _ => unreachable!(),
        }
    }

    const HOSTILE: [&str; 5] = ["symlink", "fifo", "directory", "huge", "binary"];
    const STATE_FILES: [&str; 6] = [
        "desired",
        "current",
        "last-transition.json",
        "last-guards.json",
        "capability-placement.json",
        "requested-by",
    ];

    #[test]
    fn hostile_files_at_every_state_path_are_named_never_followed_or_blocked_on() {
        let mut tried = 0;
        for what in HOSTILE {
            for name in STATE_FILES {
                let (_t, s) = dir();
                plant(&s.path(name), what);
                let started = std::time::Instant::now();
                let e = match name {
                    "desired" => s.desired().map(|_| ()),
                    "current" => s.current().map(|_| ()),
                    "last-transition.json" => s.last_transition().map(|_| ()),
                    "last-guards.json" => s.last_guards().map(|_| ()),
                    "capability-placement.json" => s.read("capability-placement.json").map(|_| ()),
                    _ => s.request_note().map(|_| ()),
                }
                .expect_err(&format!("{what} at {name} is refused"))
                .to_string();
                tried += 1;
                assert!(started.elapsed().as_secs() < 2, "{what} at {name}: blocked");
                assert!(e.contains(name), "names the file: {e}");
                assert_eq!(e.lines().count(), 1, "{e}");
                assert!(e.len() < 300, "short: {e}");
                assert!(
                    !e.contains('\x1b') && !e.contains("root:"),
                    "no raw content: {e}"
                );
                let words = match what {
                    "symlink" => "symbolic link",
                    "fifo" => "FIFO",
                    "directory" => "directory",
                    "huge" => "bytes",
                    _ => "",
                };
                assert!(e.contains(words), "{what} at {name}: {e}");
            }
        }
        // Writers replace a symlink or FIFO (rename never follows), and
        // name a directory.
        for what in ["symlink", "fifo"] {
            let (_t, s) = dir();
            plant(&s.path("desired"), what);
            s.set_desired(Mode::Compute).unwrap();
            assert_eq!(s.desired().unwrap(), Some(Mode::Compute), "{what} replaced");
        }
        let (_t, s) = dir();
        plant(&s.path("current"), "directory");
        let e = s
            .set_current(ObservedMode::Compute)
            .unwrap_err()
            .to_string();
        assert!(e.contains("current") && e.contains("directory"), "{e}");
        assert!(tried >= 30);
    }

    #[test]
    fn a_symlink_at_the_temporary_file_is_never_written_through() {
        let (t, s) = dir();
        let victim = t.path().join("victim");
        fs::write(&victim, "untouched").unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
        let tmp = s.path(&format!(".desired.tmp.{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        s.set_desired(Mode::Desktop).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
        assert_eq!(fs::metadata(&victim).unwrap().mode() & 0o777, 0o600);
        assert_eq!(s.desired().unwrap(), Some(Mode::Desktop));
    }

    #[test]
    fn stray_temporary_files_of_dead_writers_are_cleaned_under_the_lock() {
        let (_t, s) = dir();
        fs::write(s.path(".desired.tmp.999999999"), "half").unwrap();
        let mine = s.path(&format!(".current.tmp.{}", std::process::id()));
        fs::write(&mine, "in flight").unwrap();
        let _lock = s.lock("t").unwrap();
        assert!(!s.path(".desired.tmp.999999999").exists(), "dead writer's");
        assert!(mine.exists(), "a live writer's is left alone");
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
            job_id: None,
            invocation_id: None,
            record_error: None,
        };
        append_audit(&log, &rec).unwrap();
        append_audit(&log, &rec).unwrap();
        let text = fs::read_to_string(&log).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let back: TransitionRecord = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(back, rec);
        assert_eq!(audit_tail(&log).unwrap().len(), 2);
        assert!(audit_find(&log, |r| r.id == "id1").unwrap().is_some());
        assert!(audit_find(&log, |r| r.id == "nope").unwrap().is_none());
    }

    #[test]
    fn a_line_cut_short_is_dropped_before_the_next_append() {
        let (t, _s) = dir();
        let log = t.path().join("transitions.jsonl");
        let mut rec: TransitionRecord = serde_json::from_str(
            r#"{"id":"a","from":"desktop","to":"compute","requested_by":"x","started_at":"","finished_at":"","duration_ms":0,"outcome":"converged","steps":[],"guards":[],"error":null,"rollback":null}"#,
        )
        .unwrap();
        append_audit(&log, &rec).unwrap();
        let mut f = OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(b"{\"id\":\"half").unwrap();
        rec.id = "b".into();
        append_audit(&log, &rec).unwrap();
        let text = fs::read_to_string(&log).unwrap();
        let ids: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<TransitionRecord>(l).unwrap().id)
            .collect();
        assert_eq!(ids, ["a", "b"]);
    }
}
