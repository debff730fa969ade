//! External guards: an executable named in the configuration decides.
//! Exit 0 is pass, 1 fail, anything else error; stdout may carry
//! `{"reason": ..., "evidence": ..., "advice": ...}`. It runs in its own
//! process group, which is killed whole at the timeout.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde_json::json;

use crate::settings::ExternalGuardSettings;
use crate::{Facts, Guard, Outcome, Verdict};

/// Output beyond this is cut (a guard should print one small JSON object).
const MAX_OUTPUT_BYTES: u64 = 256 * 1024;
const POLL: Duration = Duration::from_millis(10);

pub struct ExternalGuard {
    settings: ExternalGuardSettings,
}

impl ExternalGuard {
    pub fn new(settings: &ExternalGuardSettings) -> Self {
        Self {
            settings: settings.clone(),
        }
    }

    fn limit(&self) -> Duration {
        Duration::from_secs(self.settings.timeout_secs.max(1))
    }
}

impl Guard for ExternalGuard {
    fn name(&self) -> &str {
        &self.settings.name
    }

    /// Longer than our own kill deadline, so the kill (not the runner) ends it.
    fn timeout(&self) -> Duration {
        self.limit().saturating_add(Duration::from_secs(2))
    }

    fn check(&self, facts: &Facts) -> Verdict {
        let path = self.settings.path.display().to_string();
        if rustix::process::geteuid().is_root() {
            if let Err(why) = crate::check_trusted(&self.settings.path) {
                return Verdict::error(format!("refusing to run it: {why}"));
            }
        }
        let mut child = match Command::new(&self.settings.path)
            .args(&self.settings.args)
            .env("MODE_TARGET", &facts.target_mode)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
        {
            Ok(c) => c,
            Err(e) => return Verdict::error(format!("cannot run {path}: {e}")),
        };
        let stdout = collect(child.stdout.take());
        let stderr = collect(child.stderr.take());
        let status = match wait_with_deadline(&mut child, self.limit()) {
            Ok(Some(status)) => status,
            Ok(None) => {
                return Verdict::error(format!(
                    "{path} did not finish within {} s and was killed",
                    self.limit().as_secs()
                ))
            }
            Err(e) => return Verdict::error(format!("cannot wait for {path}: {e}")),
        };
        // The pipes close when the group is gone; a stray grandchild that
        // keeps them open only costs this short grace.
        let stdout = stdout
            .recv_timeout(Duration::from_millis(200))
            .unwrap_or_default();
        let stderr = stderr
            .recv_timeout(Duration::from_millis(200))
            .unwrap_or_default();
        verdict_from(&path, status, &stdout, &stderr)
    }
}

/// Read a pipe to its end on a thread, bounded in size.
fn collect(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    if let Some(pipe) = pipe {
        let _ = thread::Builder::new()
            .name("external-guard-pipe".into())
            .spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.take(MAX_OUTPUT_BYTES).read_to_end(&mut bytes);
                let _ = tx.send(String::from_utf8_lossy(&bytes).into_owned());
            });
    }
    rx
}

/// `Ok(None)` when the deadline passed: the whole process group is killed
/// and the child reaped.
fn wait_with_deadline(child: &mut Child, limit: Duration) -> std::io::Result<Option<ExitStatus>> {
    let deadline = crate::Deadline::after(limit);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if deadline.passed() {
            // Not reaped yet, so the group id cannot have been reused.
            kill_group(child.id());
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        thread::sleep(POLL);
    }
}

fn kill_group(pid: u32) {
    if let Some(pgid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
    }
}

fn verdict_from(path: &str, status: ExitStatus, stdout: &str, stderr: &str) -> Verdict {
    let outcome = match status.code() {
        Some(0) => Outcome::Pass,
        Some(1) => Outcome::Fail,
        _ => Outcome::Error,
    };
    let report: Option<serde_json::Value> = serde_json::from_str(stdout.trim())
        .ok()
        .filter(|v: &serde_json::Value| v.is_object());
    let reported_reason = report
        .as_ref()
        .and_then(|r| r.get("reason"))
        .and_then(|r| r.as_str())
        .map(str::to_string);
    let mut evidence = report
        .as_ref()
        .and_then(|r| r.get("evidence"))
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    if let Some(advice) = report
        .as_ref()
        .and_then(|r| r.get("advice"))
        .and_then(|a| a.as_str())
    {
        evidence = match evidence {
            serde_json::Value::Object(mut m) => {
                m.insert("advice".into(), json!(advice));
                serde_json::Value::Object(m)
            }
            serde_json::Value::Null => json!({ "advice": advice }),
            other => json!({ "value": other, "advice": advice }),
        };
    }
    let first_line = |s: &str| {
        s.lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_string)
    };
    let reason = match outcome {
        Outcome::Pass | Outcome::Fail => reported_reason
            .or_else(|| {
                if report.is_none() {
                    first_line(stdout)
                } else {
                    None
                }
            })
            .or_else(|| first_line(stderr))
            .unwrap_or_else(|| format!("{path} exited {}", status.code().unwrap_or(-1))),
        _ => {
            let how = match status.code() {
                Some(code) => format!("exited {code}"),
                None => "was killed by a signal".into(),
            };
            match reported_reason.or_else(|| first_line(stderr)) {
                Some(why) => format!("{path} {how}: {why}"),
                None => format!("{path} {how}"),
            }
        }
    };
    Verdict::new(outcome, reason, evidence)
}
