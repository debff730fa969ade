//! Run one program with a deadline: its arguments, optional standard input,
//! and its output captured and bounded; killed when the deadline passes (a
//! stopped slurmctld makes every Slurm command hang).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

/// Output kept from a command, per stream.
const MAX_OUTPUT: usize = 1024 * 1024;

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// The last line of stderr (or stdout), for an error sentence.
    pub fn last_words(&self) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        let line = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        line.chars().take(300).collect()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    #[error("cannot run {program}: {detail}")]
    Spawn { program: String, detail: String },
    #[error("{program} did not finish within {secs} s (killed)")]
    Timeout { program: String, secs: u64 },
}

fn cut(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_OUTPUT)]).into_owned()
}

/// Run `program args...`, feeding `stdin`, for at most `timeout`.
pub async fn run(
    program: &Path,
    args: &[String],
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<Finished, CommandError> {
    let name = program.display().to_string();
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| CommandError::Spawn {
            program: name.clone(),
            detail: e.to_string(),
        })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A program that does not read its input is not an error.
        let _ = pipe.write_all(input).await;
    }
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => Ok(Finished {
            code: out.status.code(),
            stdout: cut(&out.stdout),
            stderr: cut(&out.stderr),
        }),
        Ok(Err(e)) => Err(CommandError::Spawn {
            program: name,
            detail: e.to_string(),
        }),
        Err(_) => Err(CommandError::Timeout {
            program: name,
            secs: timeout.as_secs(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn output_and_exit_code_come_back_and_stdin_is_fed() {
        let f = rt()
            .block_on(run(
                Path::new("/bin/sh"),
                &["-c".into(), "cat; echo oops >&2; exit 3".into()],
                Some(b"hello"),
                Duration::from_secs(5),
            ))
            .unwrap();
        assert_eq!(f.code, Some(3));
        assert_eq!(f.stdout, "hello");
        assert_eq!(f.last_words(), "oops");
        assert!(!f.ok());
    }

    #[test]
    fn a_command_past_its_deadline_is_killed_and_named() {
        let started = std::time::Instant::now();
        let e = rt()
            .block_on(run(
                Path::new("/bin/sleep"),
                &["30".into()],
                None,
                Duration::from_millis(300),
            ))
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(matches!(e, CommandError::Timeout { .. }), "{e}");
        let e = rt()
            .block_on(run(
                Path::new("/nonexistent/x"),
                &[],
                None,
                Duration::from_secs(1),
            ))
            .unwrap_err();
        assert!(e.to_string().contains("cannot run /nonexistent/x"), "{e}");
    }
}
