//! Waiting for the state directory to change, through inotify: no polling,
//! nothing done while nothing changes. The directory's parent is watched
//! too, so a state directory that is removed and made again (a reboot of
//! /run, a test, an admin) is followed.

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::unix::AsyncFd;

use super::StateError;

/// The inotify instance, as tokio's reactor needs it (a raw fd).
struct Watches(Inotify);

impl AsRawFd for Watches {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
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
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| io(dir, e))?;
        if let Some(parent) = dir.parent() {
            inotify
                .add_watch(
                    parent,
                    AddWatchFlags::IN_CREATE
                        | AddWatchFlags::IN_MOVED_TO
                        | AddWatchFlags::IN_DELETE,
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
        let flags = AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF;
        let _ = self
            .inotify
            .get_ref()
            .0
            .add_watch(self.dir.as_path(), flags);
    }

    /// Wait until something in (or of) the state directory changed.
    pub async fn changed(&mut self) -> Result<(), StateError> {
        loop {
            let mut ready = self
                .inotify
                .readable()
                .await
                .map_err(|e| io(&self.dir, e))?;
            match ready.get_inner().0.read_events() {
                Ok(events) if !events.is_empty() => {
                    ready.retain_ready();
                    drop(ready);
                    // Draining the queue: one wake-up per burst of writes.
                    while let Ok(more) = self.inotify.get_ref().0.read_events() {
                        if more.is_empty() {
                            break;
                        }
                    }
                    self.watch_dir();
                    return Ok(());
                }
                Ok(_) | Err(nix::errno::Errno::EAGAIN) => ready.clear_ready(),
                Err(e) => return Err(io(&self.dir, e)),
            }
        }
    }
}
