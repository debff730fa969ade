//! Waiting for the state directory to change, through inotify: no polling,
//! nothing done while nothing changes. The directory's parent is watched
//! too, so a state directory that is removed and made again (a reboot of
//! /run, a test, an admin) is followed.

use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
use rustix::io::Errno;
use tokio::io::unix::AsyncFd;

use super::StateError;

/// The inotify instance, as tokio's reactor needs it (a raw fd).
struct Watches(OwnedFd);

impl AsRawFd for Watches {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl Watches {
    /// Read every queued event: whether there was any (none: `EAGAIN`).
    fn drain(&self) -> Result<bool, Errno> {
        let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
        let mut events = inotify::Reader::new(&self.0, &mut buf);
        let mut any = false;
        loop {
            match events.next() {
                Ok(_) => any = true,
                Err(Errno::AGAIN) => return Ok(any),
                Err(e) => return Err(e),
            }
        }
    }
}

pub struct StateWatch {
    inotify: AsyncFd<Watches>,
    dir: PathBuf,
}

fn io(path: &Path, e: impl Into<std::io::Error>) -> StateError {
    StateError::Io {
        file: path.to_path_buf(),
        source: e.into(),
    }
}

impl StateWatch {
    pub fn new(dir: &Path) -> Result<Self, StateError> {
        let inotify =
            inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC).map_err(|e| io(dir, e))?;
        if let Some(parent) = dir.parent() {
            inotify::add_watch(
                &inotify,
                parent,
                WatchFlags::CREATE | WatchFlags::MOVED_TO | WatchFlags::DELETE,
            )
            .map_err(|e| io(parent, e))?;
        }
        // AsyncFd::new is deprecated for fds its caller could close under
        // it; this one is owned by the wrapper it is given, and closed only
        // when the watch is dropped.
        #[allow(deprecated)]
        let inotify = AsyncFd::new(Watches(inotify)).map_err(|e| io(dir, e))?;
        let watch = Self {
            inotify,
            dir: dir.to_path_buf(),
        };
        watch.watch_dir();
        Ok(watch)
    }

    /// (Re)watch the directory itself; it may not exist (yet).
    fn watch_dir(&self) {
        let flags = WatchFlags::CLOSE_WRITE
            | WatchFlags::MOVED_TO
            | WatchFlags::CREATE
            | WatchFlags::DELETE
            | WatchFlags::DELETE_SELF
            | WatchFlags::MOVE_SELF;
        let _ = inotify::add_watch(&self.inotify.get_ref().0, self.dir.as_path(), flags);
    }

    /// Wait until something in (or of) the state directory changed.
    pub async fn changed(&mut self) -> Result<(), StateError> {
        loop {
            let mut ready = self
                .inotify
                .readable()
                .await
                .map_err(|e| io(&self.dir, e))?;
            // Draining the queue: one wake-up per burst of writes.
            match ready.get_inner().drain() {
                Ok(true) => {
                    drop(ready);
                    self.watch_dir();
                    return Ok(());
                }
                Ok(false) => ready.clear_ready(),
                Err(e) => return Err(io(&self.dir, e)),
            }
        }
    }
}
