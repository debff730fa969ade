//! External guards: exit codes, JSON on stdout, the kill at the timeout
//! (whole process group), and the two shipped examples under
//! `guards/examples/` run against real processes and prepared trees.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::write;
use mode_guards::{
    advice, ExternalGuard, ExternalGuardSettings, Facts, Guard, GuardResult, Outcome, Severity,
    Verdict,
};

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    write(&p, &format!("#!/bin/sh\n{body}\n"));
    Command::new("chmod").arg("+x").arg(&p).status().unwrap();
    p
}

fn run(path: &Path, args: &[&str], timeout_secs: u64) -> Verdict {
    let s = ExternalGuardSettings {
        name: "custom".into(),
        path: path.to_path_buf(),
        args: args.iter().map(|a| a.to_string()).collect(),
        timeout_secs,
    };
    ExternalGuard::new(&s).check(&Facts::new("compute"))
}

#[test]
fn exit_codes_map_to_pass_fail_and_error() {
    let dir = tempfile::tempdir().unwrap();
    let pass = script(dir.path(), "pass", "exit 0");
    let fail = script(dir.path(), "fail", "echo 'the kettle is on'; exit 1");
    let broken = script(
        dir.path(),
        "broken",
        "echo 'cannot read config' >&2; exit 3",
    );
    assert_eq!(run(&pass, &[], 5).outcome, Outcome::Pass);
    let v = run(&fail, &[], 5);
    assert_eq!(
        (v.outcome, v.reason.as_str()),
        (Outcome::Fail, "the kettle is on")
    );
    let v = run(&broken, &[], 5);
    assert_eq!(v.outcome, Outcome::Error);
    assert!(
        v.reason.ends_with("broken exited 3: cannot read config"),
        "{}",
        v.reason
    );
}

#[test]
fn json_on_stdout_gives_reason_evidence_and_advice() {
    let dir = tempfile::tempdir().unwrap();
    let p = script(
        dir.path(),
        "json",
        r#"echo '{"reason": "render job 12 running", "evidence": {"job": 12}, "advice": "wait for job 12"}'; exit 1"#,
    );
    let v = run(&p, &[], 5);
    assert_eq!(v.outcome, Outcome::Fail);
    assert_eq!(v.reason, "render job 12 running");
    assert_eq!(v.evidence["job"], 12);
    let result = GuardResult {
        name: "custom".into(),
        severity: Severity::Hard,
        outcome: v.outcome,
        reason: v.reason,
        evidence: v.evidence,
        duration_ms: 1,
    };
    assert_eq!(advice(&result).as_deref(), Some("wait for job 12"));
}

#[test]
fn arguments_and_the_target_mode_reach_the_executable() {
    let dir = tempfile::tempdir().unwrap();
    let p = script(dir.path(), "echoer", r#"echo "$1 $MODE_TARGET"; exit 0"#);
    assert_eq!(run(&p, &["hello"], 5).reason, "hello compute");
}

#[test]
fn a_missing_executable_is_an_error_naming_it() {
    let v = run(Path::new("/nonexistent/guard"), &[], 5);
    assert_eq!(v.outcome, Outcome::Error);
    assert!(
        v.reason.contains("cannot run /nonexistent/guard"),
        "{}",
        v.reason
    );
}

fn alive(pid: u32) -> bool {
    // A zombie has exited; only a live process counts.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

#[test]
fn a_hung_external_guard_is_killed_at_its_timeout_with_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("child.pid");
    let p = script(
        dir.path(),
        "hang",
        &format!("sleep 60 & echo $! > {}; wait", pidfile.display()),
    );
    let started = Instant::now();
    let v = run(&p, &[], 1);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(v.outcome, Outcome::Error);
    assert!(
        v.reason
            .contains("did not finish within 1 s and was killed"),
        "{}",
        v.reason
    );
    let grandchild: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while alive(grandchild) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !alive(grandchild),
        "the guard's child {grandchild} was left running"
    );
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

/// A real process whose argv[0] (and so its cmdline) is `argv0`.
struct Named(Child);

impl Named {
    fn spawn(argv0: &str) -> Named {
        let child = Command::new("bash")
            .arg("-c")
            .arg(format!("exec -a '{argv0}' sleep 60"))
            .spawn()
            .unwrap();
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if cmdline.starts_with(argv0.as_bytes()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Named(child)
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_example(name: &str, proc_root: &Path, args: &[&str]) -> Verdict {
    // The example reads PROC_ROOT; the guard passes its environment on.
    let dir = tempfile::tempdir().unwrap();
    let wrapper = script(
        dir.path(),
        "wrapper",
        &format!(
            "PROC_ROOT='{}' exec '{}' \"$@\"",
            proc_root.display(),
            example(name).display()
        ),
    );
    run(&wrapper, args, 10)
}

#[test]
fn no_ssh_sessions_fails_naming_a_real_ssh_session_process() {
    let session = Named::spawn("sshd: alice@pts/3");
    let listener = Named::spawn("sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups");
    let v = run_example("no-ssh-sessions", Path::new("/proc"), &[]);
    assert_eq!(v.outcome, Outcome::Fail, "{}", v.reason);
    assert!(
        v.reason
            .contains(&format!("alice@pts/3 (pid {})", session.0.id())),
        "{}",
        v.reason
    );
    assert!(
        !v.reason.contains(&listener.0.id().to_string()),
        "the listener is no session: {}",
        v.reason
    );
}

#[test]
fn no_ssh_sessions_passes_on_a_machine_without_sessions() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("1/cmdline"), "/sbin/init\0");
    write(
        &dir.path().join("200/cmdline"),
        "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups\0",
    );
    let v = run_example("no-ssh-sessions", dir.path(), &[]);
    assert_eq!(v.outcome, Outcome::Pass, "{}", v.reason);
}

#[test]
fn no_backup_running_fails_naming_a_running_restic() {
    let dir = tempfile::tempdir().unwrap();
    let restic = dir.path().join("restic");
    std::fs::copy("/bin/sleep", &restic).unwrap();
    // A copy just written may be briefly "text file busy" while another test
    // thread forks; try again.
    let mut backup = (0..50)
        .find_map(|_| match Command::new(&restic).arg("60").spawn() {
            Ok(c) => Some(c),
            Err(e) if e.raw_os_error() == Some(26) => {
                std::thread::sleep(Duration::from_millis(20));
                None
            }
            Err(e) => panic!("cannot run {}: {e}", restic.display()),
        })
        .expect("restic stand-in started");
    let pid = backup.id();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim() != "restic")
        .unwrap_or(true)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let v = run_example("no-backup-running", Path::new("/proc"), &[]);
    let _ = backup.kill();
    let _ = backup.wait();
    assert_eq!(v.outcome, Outcome::Fail, "{}", v.reason);
    assert!(
        v.reason.contains(&format!("restic (pid {pid})")),
        "{}",
        v.reason
    );
    assert_eq!(v.evidence["processes"][0]["comm"], "restic");
    assert!(v.evidence["advice"].is_string());
}

#[test]
fn no_backup_running_passes_when_the_named_programs_are_absent() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("1/comm"), "init\n");
    write(&dir.path().join("300/comm"), "borgmatic\n");
    let v = run_example("no-backup-running", dir.path(), &["borg", "restic"]);
    assert_eq!(v.outcome, Outcome::Pass, "{}", v.reason);
}

#[test]
fn a_guard_writable_by_another_user_is_refused_and_never_run() {
    use std::os::unix::fs::PermissionsExt;
    if !rustix_is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let guard = script(
        dir.path(),
        "site-ok",
        &format!("touch {}; exit 0", ran.display()),
    );
    std::fs::set_permissions(&guard, std::fs::Permissions::from_mode(0o777)).unwrap();
    let v = run(&guard, &[], 5);
    assert_eq!(v.outcome, Outcome::Error, "{}", v.reason);
    assert!(
        v.reason.contains("refusing to run it")
            && v.reason.contains("writable by users other than root"),
        "{}",
        v.reason
    );
    assert!(!ran.exists(), "it was not run");
    std::fs::set_permissions(&guard, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&guard, Some(65534), Some(65534)).unwrap();
    let v = run(&guard, &[], 5);
    assert!(v.reason.contains("owned by uid 65534"), "{}", v.reason);
    assert!(!ran.exists(), "nor when owned by nobody");
}

fn rustix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        .unwrap_or(false)
}
