//! Helpers shared by the integration tests: real processes that hold files
//! open (killed on drop, even when an assertion fails) and small trees.
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A real `sleep` process holding `path` open as its stdin.
pub struct Holder {
    pub child: Child,
}

impl Holder {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `sleep` holding `path` open, optionally as another user (via setpriv).
    pub fn spawn(path: &Path, as_uid: Option<u32>) -> Holder {
        let file = File::open(path).unwrap();
        let mut cmd = match as_uid {
            Some(uid) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={uid}"))
                    .arg("--clear-groups")
                    .arg("sleep");
                c
            }
            None => Command::new("sleep"),
        };
        let child = cmd
            .arg("60")
            .stdin(Stdio::from(file))
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let holder = Holder { child };
        holder.wait_for_comm("sleep");
        holder
    }

    /// Wait until the process has exec'd into `comm`.
    pub fn wait_for_comm(&self, comm: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let path = format!("/proc/{}/comm", self.pid());
        while Instant::now() < deadline {
            if std::fs::read_to_string(&path).is_ok_and(|c| c.trim() == comm) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("process {} never became {comm}", self.pid());
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A new empty file in `dir`.
pub fn stand_in_file(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, b"").unwrap();
    p
}

pub fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

/// `verdict` of the guard `name` as `last-guards.json` stores it: written
/// to JSON and read back, so advice reads exactly what the check wrote.
pub fn stored(name: &str, verdict: mode_guards::Verdict) -> mode_guards::GuardResult {
    let result = mode_guards::GuardResult::new(name, mode_guards::Severity::Hard, verdict, 0);
    serde_json::from_str(&serde_json::to_string(&result).unwrap()).unwrap()
}

/// A procfs tree in `dir` naming only `pids`, each a link to its live
/// `/proc/PID`, with the live `/proc/devices`: the fd scan reads these processes (through their pidfds)
/// and no other, so other tests' holders and processes out of this test's
/// reach (a sandbox's supervisor) stay out of its answer.
pub fn procfs_of(dir: &Path, pids: &[u32]) -> PathBuf {
    let root = dir.join("proc");
    std::fs::create_dir_all(&root).unwrap();
    std::os::unix::fs::symlink("/proc/devices", root.join("devices")).unwrap();
    for pid in pids {
        std::os::unix::fs::symlink(format!("/proc/{pid}"), root.join(pid.to_string())).unwrap();
    }
    root
}
