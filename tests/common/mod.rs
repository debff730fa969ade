//! The container harness: boots a real systemd (with its own D-Bus and
//! logind) under systemd-nspawn with our units, the stand-in world and the
//! freshly built `mode` binary, runs commands inside, and always tears down.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Give as an nspawn argument to share the host's network namespace instead
/// of a private one (Slurm's resolver refuses 127.0.0.1 when only lo exists);
/// such tests must not run two containers at once on the same ports.
pub const HOST_NETWORK: &str = "--host-network";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn test_root() -> PathBuf {
    let root = std::env::var("MODE_TEST_ROOT")
        .unwrap_or_else(|_| "/var/tmp/mode-controller-testroot".into());
    let root = PathBuf::from(root);
    assert!(
        root.join(".complete").exists(),
        "no container root at {}: run scripts/make-test-root.sh first (as root)",
        root.display()
    );
    root
}

/// The root with real programs that `scripts/make-real-root.sh NAME` built
/// from the recipe tests/real-stack/NAME.sh.
fn real_root(name: &str) -> PathBuf {
    let dir = std::env::var("MODE_REAL_ROOT_DIR").unwrap_or_else(|_| "/var/tmp".into());
    let root = PathBuf::from(dir).join(format!("mode-controller-root-{name}"));
    assert!(
        root.join(".complete").exists(),
        "no real-stack root at {}: run scripts/make-real-root.sh {name} first (as root)",
        root.display()
    );
    root
}

/// What a command inside the container printed and returned.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Self {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): stdout={} stderr={}",
                self.stdout, self.stderr
            )
        })
    }
}

pub struct Container {
    pub name: String,
    nspawn: Child,
    pub pid1: u32,
    cgroups: Vec<PathBuf>,
    /// The unit directory bound into the container (removed on drop).
    _units: tempfile::TempDir,
}

/// A directory with the shipped units (pkgs/systemd) and the stand-in world
/// (tests/fixtures/units), bound into the container as one mount where local
/// units live, so the container has one mount more than its root, not one
/// per unit.
/// `omit` names stand-ins left out, for roots that bring the real program.
fn unit_dir(omit: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("mode-ct-units")
        .tempdir()
        .expect("temporary directory");
    for source in ["pkgs/systemd", "tests/fixtures/units"] {
        copy_tree(&repo().join(source), dir.path());
    }
    for unit in omit {
        std::fs::remove_file(dir.path().join(unit)).unwrap_or_else(|e| panic!("{unit}: {e}"));
    }
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

impl Container {
    /// Boot a container with the shipped units (pkgs/systemd), the stand-in
    /// world (tests/fixtures/units) and the `mode` binary at /usr/bin/mode.
    pub fn boot() -> Container {
        Self::boot_with(&[], &[])
    }

    /// Boot with extra nspawn options (say `--bind=HOST:/var/lib/mode-controller`,
    /// to keep state across containers) and extra arguments for the
    /// container's systemd, given after the defaults so that a later
    /// `systemd.unit=` wins.
    pub fn boot_with(nspawn_args: &[String], init_args: &[String]) -> Container {
        Self::boot_in(test_root(), &[], nspawn_args, init_args)
    }

    /// Boot the real-stack root NAME (tests/real-stack/NAME.sh) the same
    /// way, leaving out the stand-ins in `omit` (the root has the real one,
    /// or none: `display-manager.service` for the desktop root).
    pub fn boot_real(
        name: &str,
        omit: &[&str],
        nspawn_args: &[String],
        init_args: &[String],
    ) -> Container {
        Self::boot_in(real_root(name), omit, nspawn_args, init_args)
    }

    fn boot_in(
        root: PathBuf,
        omit: &[&str],
        nspawn_args: &[String],
        init_args: &[String],
    ) -> Container {
        let name = format!(
            "mc{}x{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let units = unit_dir(omit);
        let cgroups: Vec<PathBuf> = ["unified", "systemd"]
            .iter()
            .map(|h| PathBuf::from(format!("/sys/fs/cgroup/{h}/nspawn-{name}")))
            .filter(|p| p.parent().is_some_and(Path::exists))
            .collect();
        for c in &cgroups {
            std::fs::create_dir_all(c).unwrap_or_else(|e| panic!("{}: {e}", c.display()));
        }
        let host_network = nspawn_args.iter().any(|a| a == HOST_NETWORK);
        let nspawn_args: Vec<&String> = nspawn_args.iter().filter(|a| *a != HOST_NETWORK).collect();
        let mut cmd = Command::new("systemd-nspawn");
        cmd.args([
            "--register=no",
            "--keep-unit",
            "-q",
            "--volatile=overlay",
            "-b",
            "--console=pipe",
        ])
        // Its own network namespace (with its own loopback), so tests that
        // run at once never bind or reach each other's ports.
        .args((!host_network).then_some("--private-network"))
        .arg(format!("-D{}", root.display()))
        .arg(format!("-M{name}"))
        // nspawn's own system call filter (systemd 252) refuses
        // pidfd_getfd, the GPU guard's one way of reading other processes'
        // fds (docs/guards.md); a host grants it, as the units' filter does.
        .arg("--system-call-filter=pidfd_getfd")
        .arg(format!(
            "--bind-ro={}:/usr/bin/mode",
            env!("CARGO_BIN_EXE_mode")
        ))
        .arg(format!(
            "--bind-ro={}:/usr/local/lib/systemd/system",
            units.path().display()
        ))
        .args(nspawn_args)
        .arg(format!(
            "--bind-ro={}:/opt/mode-test",
            repo().join("tests/fixtures/bin").display()
        ))
        .args([
            "systemd.mask=systemd-firstboot.service",
            "systemd.unit=desktop.target",
        ])
        .args(init_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let procs: Vec<PathBuf> = cgroups.iter().map(|c| c.join("cgroup.procs")).collect();
        unsafe {
            cmd.pre_exec(move || {
                for p in &procs {
                    std::fs::write(p, b"0")?;
                }
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)?;
                Ok(())
            });
        }
        let nspawn = cmd
            .spawn()
            .expect("systemd-nspawn (apt-get install systemd-container)");
        let mut c = Container {
            name,
            pid1: 0,
            nspawn,
            cgroups,
            _units: units,
        };
        c.pid1 = c.find_pid1();
        let private = format!("/proc/{}/root/run/systemd/private", c.pid1);
        let started = Instant::now();
        while !Path::new(&private).exists() && started.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let state = c.sh("systemctl is-system-running --wait");
        assert!(
            matches!(state.stdout.trim(), "running" | "degraded"),
            "container did not boot: {state:?}\n{}",
            c.sh("systemctl --failed --no-legend").stdout
        );
        c
    }

    fn find_pid1(&mut self) -> u32 {
        let started = Instant::now();
        let child = self.nspawn.id();
        while started.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(status)) = self.nspawn.try_wait() {
                panic!("systemd-nspawn exited early: {status}");
            }
            let children = std::fs::read_to_string(format!("/proc/{child}/task/{child}/children"))
                .unwrap_or_default();
            for pid in children.split_whitespace() {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() == "systemd" {
                    return pid.parse().unwrap();
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the container's systemd did not start");
    }

    fn enter(&self) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t").arg(self.pid1.to_string()).args([
            "-a",
            "--",
            "env",
            "-i",
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG=C.UTF-8",
        ]);
        cmd
    }

    /// Run a shell command inside as root.
    pub fn sh(&self, script: &str) -> Run {
        Run::from(
            self.enter()
                .args(["sh", "-c", script])
                .output()
                .expect("nsenter"),
        )
    }

    /// Run `mode ARGS` inside as root.
    pub fn mode(&self, args: &str) -> Run {
        self.sh(&format!("mode {args}"))
    }

    /// Run a shell command inside as the unprivileged user `nobody`.
    pub fn sh_as_nobody(&self, script: &str) -> Run {
        Run::from(
            self.enter()
                .args([
                    "setpriv",
                    "--reuid=65534",
                    "--regid=65534",
                    "--clear-groups",
                    "sh",
                    "-c",
                    script,
                ])
                .output()
                .expect("nsenter"),
        )
    }

    /// Spawn a shell command inside without waiting for it.
    pub fn spawn(&self, script: &str) -> Child {
        self.enter()
            .args(["sh", "-c", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nsenter")
    }

    /// `systemctl is-active` of a unit.
    pub fn state(&self, unit: &str) -> String {
        self.sh(&format!("systemctl is-active {unit}"))
            .stdout
            .trim()
            .to_string()
    }

    /// A property of a unit, as `systemctl show -P` prints it.
    pub fn prop(&self, unit: &str, prop: &str) -> String {
        self.sh(&format!("systemctl show -P {prop} {unit}"))
            .stdout
            .trim()
            .to_string()
    }

    /// Write a file inside (parent directories created).
    pub fn write(&self, path: &str, content: &str) {
        let mut child = self
            .enter()
            .args([
                "sh",
                "-c",
                &format!("mkdir -p \"$(dirname {path})\" && cat > {path}"),
            ])
            .stdin(Stdio::piped())
            .spawn()
            .expect("nsenter");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(content.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "writing {path}");
    }

    pub fn read(&self, path: &str) -> String {
        self.sh(&format!("cat {path}")).stdout
    }

    /// Run `script` every 50 ms until it prints `want` (trimmed), or panic
    /// after `secs` with what it printed last.
    pub fn wait_for(&self, script: &str, want: &str, secs: u64) -> Run {
        let started = Instant::now();
        loop {
            let r = self.sh(script);
            if r.stdout.trim() == want {
                return r;
            }
            if started.elapsed() > Duration::from_secs(secs) {
                panic!("`{script}` did not print {want:?} within {secs} s: {r:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `last-transition.json`, parsed.
    pub fn last_transition(&self) -> serde_json::Value {
        let text = self.read("/run/mode-controller/last-transition.json");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("no transition record ({e}): {text}"))
    }

    /// Open a graphical-looking logind session for `nobody`; returns its id.
    pub fn open_wayland_session(&self) -> String {
        let r = self.sh(
            "systemd-run --unit=fake-wayland -p PAMName=login -p User=nobody \
             -p Environment=XDG_SESSION_TYPE=wayland -p Environment=XDG_SEAT=seat0 sleep infinity",
        );
        assert_eq!(r.code, 0, "{r:?}");
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            let list = self.sh("loginctl list-sessions --no-legend").stdout;
            if let Some(id) = list.split_whitespace().next() {
                let state = self
                    .sh(&format!("loginctl show-session -P State {id}"))
                    .stdout;
                if state.trim() != "opening" {
                    return id.to_string();
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the wayland session did not open");
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.nspawn.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let started = Instant::now();
        loop {
            match self.nspawn.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if started.elapsed() > Duration::from_secs(5) => {
                    let _ = self.nspawn.kill();
                    let _ = self.nspawn.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        for c in &self.cgroups {
            remove_cgroup(c);
        }
        let _ = std::fs::remove_dir_all(format!("/run/systemd/nspawn/propagate/{}", self.name));
    }
}

fn remove_cgroup(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// The entry of the array `doc[list]` whose `key` is `value`: a step by its
/// action, a guard by its name.
pub fn entry(doc: &serde_json::Value, list: &str, key: &str, value: &str) -> serde_json::Value {
    doc[list]
        .as_array()
        .and_then(|a| a.iter().find(|e| e[key] == value))
        .cloned()
        .unwrap_or_else(|| panic!("no {list} entry with {key} {value}: {doc}"))
}

/// The steps of a transition record as `"action unit"`, in order, leaving
/// out the budget steps (every switch has three).
pub fn step_words(record: &serde_json::Value) -> Vec<String> {
    record["steps"]
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .filter(|s| s["action"] != "set-budget")
                .map(|s| {
                    format!(
                        "{} {}",
                        s["action"].as_str().unwrap_or("?"),
                        s["unit"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
