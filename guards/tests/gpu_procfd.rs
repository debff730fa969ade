//! `gpu_display_released` against real processes holding stand-in device
//! files (matched by path or by device number), and against prepared
//! procfs/sysfs trees carrying real DRM/NVIDIA device numbers, held by real
//! processes (their fds are always read through pidfds; the prepared tree
//! names them and says who they are).

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{procfs_of, stand_in_file, write, Holder};
use mode_guards::probe::procfd::{DeviceRule, StandIn, StandInMatch};
use mode_guards::{Facts, GpuDisplayReleased, GpuSettings, Guard, Outcome, Roots};

const DISPLAY: &str = "0000:01:00.0";
const OTHER: &str = "0000:02:00.0";

fn settings(dir: &Path) -> GpuSettings {
    GpuSettings {
        display_gpu: Some(DISPLAY.into()),
        nvml_library: dir.join("no-libnvidia-ml.so.1"),
        ..GpuSettings::default()
    }
}

/// A procfs naming only `pids` (links to the live ones), an empty sysfs
/// (no GPUs listed), the real user database.
fn roots(dir: &Path, pids: &[u32]) -> Roots {
    Roots {
        procfs: procfs_of(dir, pids),
        sysfs: dir.join("empty-sys"),
        ..Roots::system()
    }
}

fn by_path(path: &Path, gpu: &str) -> StandIn {
    StandIn {
        matches: StandInMatch::Path(path.to_path_buf()),
        gpu: gpu.into(),
    }
}

fn guard(dir: &Path, stand_ins: Vec<StandIn>, pids: &[u32]) -> GpuDisplayReleased {
    GpuDisplayReleased::new(&settings(dir), &roots(dir, pids))
        .with_device_rule(DeviceRule::stand_ins(stand_ins))
}

fn holders(v: &mode_guards::Verdict) -> Vec<u64> {
    v.evidence["holders"]
        .as_array()
        .map(|a| a.iter().filter_map(|h| h["pid"].as_u64()).collect())
        .unwrap_or_default()
}

#[test]
fn fails_naming_a_process_that_holds_the_display_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let card = stand_in_file(dir.path(), "card1");
    let holder = Holder::spawn(&card, None);
    let v = guard(dir.path(), vec![by_path(&card, DISPLAY)], &[holder.pid()])
        .check(&Facts::new("compute"));
    assert_eq!(v.outcome, Outcome::Fail, "{}", v.reason);
    assert_eq!(holders(&v), vec![holder.pid() as u64]);
    let h = &v.evidence["holders"][0];
    assert_eq!(h["comm"], "sleep");
    assert_eq!(h["user"], "root");
    assert_eq!(h["device"], card.display().to_string());
    assert!(
        v.reason
            .contains(&format!("sleep (pid {}, user root", holder.pid())),
        "{}",
        v.reason
    );
}

#[test]
fn names_the_user_of_a_holder_running_as_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let card = stand_in_file(dir.path(), "card1");
    let holder = Holder::spawn(&card, Some(65534));
    let v = guard(dir.path(), vec![by_path(&card, DISPLAY)], &[holder.pid()])
        .check(&Facts::new("compute"));
    assert_eq!(v.outcome, Outcome::Fail, "{}", v.reason);
    let h = &v.evidence["holders"][0];
    assert_eq!(h["pid"], holder.pid());
    assert_eq!(h["uid"], 65534);
    assert_eq!(h["user"], "nobody");
}

#[test]
fn passes_when_the_holder_has_closed_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let card = stand_in_file(dir.path(), "card1");
    let mut holder = Holder::spawn(&card, None);
    let pid = holder.pid();
    holder.stop();
    let v = guard(dir.path(), vec![by_path(&card, DISPLAY)], &[pid]).check(&Facts::new("compute"));
    assert_eq!(v.outcome, Outcome::Pass, "{}", v.reason);
    assert!(
        v.reason
            .contains("no process holds the display GPU 0000:01:00.0"),
        "{}",
        v.reason
    );
}

#[test]
fn with_two_gpus_only_the_display_gpu_must_be_released() {
    let dir = tempfile::tempdir().unwrap();
    let display_card = stand_in_file(dir.path(), "card1");
    let compute_card = stand_in_file(dir.path(), "card2");
    let compositor = Holder::spawn(&display_card, None);
    let trainer = Holder::spawn(&compute_card, None);
    let g = guard(
        dir.path(),
        vec![
            by_path(&display_card, DISPLAY),
            by_path(&compute_card, OTHER),
        ],
        &[compositor.pid(), trainer.pid()],
    );
    let v = g.check(&Facts::new("compute"));
    assert_eq!(v.outcome, Outcome::Fail);
    assert_eq!(holders(&v), vec![compositor.pid() as u64], "{}", v.reason);
    assert!(
        !v.reason.contains(&trainer.pid().to_string()),
        "{}",
        v.reason
    );

    drop(compositor);
    let v = g.check(&Facts::new("compute"));
    assert_eq!(
        v.outcome,
        Outcome::Pass,
        "the compute GPU's holder does not block: {}",
        v.reason
    );
}

#[test]
fn an_allow_listed_holder_does_not_block_but_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let card = stand_in_file(dir.path(), "nvidia0");
    let daemon = Holder::spawn(&card, None);
    let s = GpuSettings {
        allow: vec!["sleep".into()],
        ..settings(dir.path())
    };
    let v = GpuDisplayReleased::new(&s, &roots(dir.path(), &[daemon.pid()]))
        .with_device_rule(DeviceRule::stand_ins(vec![by_path(&card, DISPLAY)]))
        .check(&Facts::new("compute"));
    assert_eq!(v.outcome, Outcome::Pass, "{}", v.reason);
    assert!(
        v.reason
            .contains(&format!("allowed: sleep (pid {})", daemon.pid())),
        "{}",
        v.reason
    );
    assert_eq!(v.evidence["allowed"][0]["pid"], daemon.pid());
}

#[test]
fn matches_a_holder_by_device_number() {
    // /dev/full is 1:7; the holder that does not hold it is not named.
    let dir = tempfile::tempdir().unwrap();
    let holder = Holder::spawn(Path::new("/dev/full"), None);
    let bystander = Holder::spawn(Path::new("/dev/null"), None);
    let rule = DeviceRule::stand_ins(vec![StandIn {
        matches: StandInMatch::CharDevice { major: 1, minor: 7 },
        gpu: DISPLAY.into(),
    }]);
    let pids = [holder.pid(), bystander.pid()];
    let v = GpuDisplayReleased::new(&settings(dir.path()), &roots(dir.path(), &pids))
        .with_device_rule(rule)
        .check(&Facts::new("compute"));
    assert_eq!(v.outcome, Outcome::Fail, "{}", v.reason);
    let ours = v.evidence["holders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["pid"] == holder.pid())
        .cloned()
        .unwrap_or_else(|| panic!("holder {} not found in {}", holder.pid(), v.evidence));
    assert_eq!(ours["device"], "/dev/full");
    assert_eq!(holders(&v), vec![holder.pid() as u64], "{}", v.evidence);
}

#[test]
fn a_process_whose_fds_cannot_be_read_is_unknown_not_passed() {
    // Another user's process, scanned from a thread without CAP_SYS_PTRACE
    // (its scan workers inherit that): pidfd_getfd is refused.
    use rustix::thread::{capabilities, set_capabilities, CapabilitySet};
    let dir = tempfile::tempdir().unwrap();
    let card = stand_in_file(dir.path(), "card1");
    let holder = Holder::spawn(&card, Some(65534));
    let g = guard(dir.path(), vec![by_path(&card, DISPLAY)], &[holder.pid()]);
    let v = std::thread::spawn(move || {
        let mut caps = capabilities(None).unwrap();
        caps.effective.remove(CapabilitySet::SYS_PTRACE);
        set_capabilities(None, caps).unwrap();
        g.check(&Facts::new("compute"))
    })
    .join()
    .unwrap();
    assert_eq!(v.outcome, Outcome::Error, "{}", v.reason);
    assert!(
        v.reason.contains(&format!("sleep (pid {})", holder.pid())),
        "{}",
        v.reason
    );
    assert_eq!(v.evidence["unreadable"][0]["pid"], holder.pid());
    let error = v.evidence["unreadable"][0]["error"].as_str().unwrap();
    assert!(error.starts_with("pidfd_getfd: "), "{error}");
    assert!(error.contains("CAP_SYS_PTRACE"), "{error}");
}

#[test]
fn polling_passes_once_the_holder_lets_go() {
    let dir = tempfile::tempdir().unwrap();
    let card = stand_in_file(dir.path(), "card1");
    let mut holder = Holder::spawn(&card, None);
    let g = guard(dir.path(), vec![by_path(&card, DISPLAY)], &[holder.pid()]);
    let closer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        holder.stop();
    });
    let started = Instant::now();
    let v = g.wait_until_released(Duration::from_secs(5), Duration::from_millis(50));
    closer.join().unwrap();
    assert_eq!(v.outcome, Outcome::Pass, "{}", v.reason);
    assert!(v.reason.starts_with("released after"), "{}", v.reason);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn polling_fails_at_its_timeout_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let card = stand_in_file(dir.path(), "card1");
    let holder = Holder::spawn(&card, None);
    let s = GpuSettings {
        release_timeout_secs: 0,
        poll_interval_ms: 50,
        ..settings(dir.path())
    };
    let g = GpuDisplayReleased::new(&s, &roots(dir.path(), &[holder.pid()]))
        .with_device_rule(DeviceRule::stand_ins(vec![by_path(&card, DISPLAY)]))
        .waiting_until_released();
    let v = g.check(&Facts::new("compute"));
    assert_eq!(v.outcome, Outcome::Fail);
    assert!(
        v.reason.starts_with("still not released after"),
        "{}",
        v.reason
    );
    assert!(
        v.reason.contains(&format!("pid {}", holder.pid())),
        "{}",
        v.reason
    );
}

/// A prepared machine with two GPUs: DRM card0 (display, boot_vga) and
/// card1, NVIDIA on both, real device nodes made with mknod (held by real
/// processes through `O_PATH` fds: no driver needed), and `/proc/devices`
/// giving nvidia-uvm a dynamic major. Its procfs names only its own
/// processes, so machines prepared at once (sharing device numbers) do not
/// see each other's.
struct PreparedMachine {
    dir: tempfile::TempDir,
    holders: Vec<Holder>,
}

impl PreparedMachine {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        write(
            &p.join("proc/devices"),
            "Character devices:\n  1 mem\n195 nvidia-frontend\n226 drm\n508 nvidia-uvm\n\nBlock devices:\n  8 sd\n",
        );
        for (pci, minor, uuid, boot_vga) in [
            ("0000:01:00.0", 0, "GPU-aaaa", "1"),
            ("0000:02:00.0", 1, "GPU-bbbb", "0"),
        ] {
            write(
                &p.join(format!("proc/driver/nvidia/gpus/{pci}/information")),
                &format!("Model: \t\t NVIDIA RTX\nIRQ:   \t\t 90\nGPU UUID: \t {uuid}\nDevice Minor: \t {minor}\nBus Location: \t {pci}\n"),
            );
            let pci_dir = p.join(format!("sys/devices/pci0000:00/{pci}"));
            write(&pci_dir.join("boot_vga"), &format!("{boot_vga}\n"));
            for (node, drm_minor) in [
                (format!("card{minor}"), minor),
                (format!("renderD{}", 128 + minor), 128 + minor),
            ] {
                let node_dir = p.join("sys/class/drm").join(&node);
                write(&node_dir.join("dev"), &format!("226:{drm_minor}\n"));
                symlink(&pci_dir, node_dir.join("device")).unwrap();
            }
        }
        std::fs::create_dir_all(p.join("sys/class/drm/card0-HDMI-A-1")).unwrap();
        std::fs::create_dir_all(p.join("dev/dri")).unwrap();
        for (name, major, minor) in [
            ("dri/card0", 226, 0),
            ("dri/card1", 226, 1),
            ("dri/renderD129", 226, 129),
            ("nvidia0", 195, 0),
            ("nvidia1", 195, 1),
            ("nvidiactl", 195, 255),
            ("nvidia-uvm", 508, 0),
        ] {
            let status = std::process::Command::new("mknod")
                .arg(p.join("dev").join(name))
                .arg("c")
                .arg(major.to_string())
                .arg(minor.to_string())
                .status()
                .unwrap();
            assert!(status.success(), "mknod {name} (tests run as root)");
        }
        Self {
            dir,
            holders: Vec::new(),
        }
    }

    /// A real process holding `nodes` (under dev/, at most three: its
    /// stdin, stdout and stderr), described in the prepared procfs as
    /// `comm` run by `uid` in `cgroup`. Returns its pid.
    fn process(&mut self, comm: &str, uid: u32, cgroup: &str, nodes: &[&str]) -> u32 {
        use rustix::fs::{Mode, OFlags};
        use std::process::{Command, Stdio};
        let p = self.dir.path();
        let mut fds = nodes.iter().map(|node| {
            let fd = rustix::fs::open(
                p.join("dev").join(node),
                OFlags::PATH | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .unwrap();
            Stdio::from(fd)
        });
        let mut cmd = Command::new("sleep");
        cmd.arg("60");
        cmd.stdin(fds.next().unwrap_or_else(Stdio::null));
        cmd.stdout(fds.next().unwrap_or_else(Stdio::null));
        cmd.stderr(fds.next().unwrap_or_else(Stdio::null));
        assert!(fds.next().is_none(), "at most three nodes per process");
        let holder = Holder {
            child: cmd.spawn().unwrap(),
        };
        holder.wait_for_comm("sleep");
        let pid = holder.pid();
        self.holders.push(holder);
        let pd = p.join(format!("proc/{pid}"));
        write(&pd.join("comm"), &format!("{comm}\n"));
        write(
            &pd.join("status"),
            &format!("Name:\t{comm}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n"),
        );
        write(&pd.join("cgroup"), &format!("0::{cgroup}\n"));
        pid
    }

    fn roots(&self) -> Roots {
        let p = self.dir.path();
        Roots {
            procfs: p.join("proc"),
            sysfs: p.join("sys"),
            dev: p.join("dev"),
            users: mode_guards::probe::passwd::UserDb::File(p.join("passwd")),
            ..Roots::system()
        }
    }

    fn check(&self, display_gpu: Option<&str>) -> mode_guards::Verdict {
        write(
            &self.dir.path().join("passwd"),
            "root:x:0:0::/root:/bin/sh\nalice:x:1000:100::/home/alice:/bin/sh\n",
        );
        let s = GpuSettings {
            display_gpu: display_gpu.map(str::to_string),
            nvml_library: self.dir.path().join("missing.so"),
            ..GpuSettings::default()
        };
        GpuDisplayReleased::new(&s, &self.roots()).check(&Facts::new("compute"))
    }
}

#[test]
fn real_device_numbers_are_mapped_to_the_boot_display_gpu_by_pci_address() {
    let mut m = PreparedMachine::new();
    let p1234 = m.process(
        "Hyprland",
        1000,
        "/user.slice/user-1000.slice/session-2.scope",
        &["dri/card0", "nvidia0", "nvidiactl"],
    );
    m.process(
        "python3",
        0,
        "/ai.slice/train.service",
        &["nvidia1", "nvidia-uvm", "dri/renderD129"],
    );
    let p77 = m.process(
        "nvidia-persiste",
        0,
        "/system.slice/nvidia-persistenced.service",
        &["nvidia0", "nvidiactl"],
    );
    let v = m.check(None);
    assert_eq!(v.outcome, Outcome::Fail, "{}", v.reason);
    assert_eq!(holders(&v), vec![p1234 as u64], "{}", v.reason);
    let h = &v.evidence["holders"][0];
    assert_eq!(h["user"], "alice");
    assert_eq!(h["unit"], "session-2.scope");
    assert!(
        h["device"].as_str().unwrap().ends_with("dev/dri/card0"),
        "{h}"
    );
    assert_eq!(v.evidence["display_gpu"]["chosen_by"], "boot_vga");
    let nodes: Vec<String> = v.evidence["display_gpu"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            n.as_str()
                .unwrap()
                .rsplit("/dev/")
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        nodes,
        ["dri/card0", "nvidia0"],
        "renderD128 has no node here"
    );
    assert_eq!(
        v.evidence["allowed"][0]["pid"], p77,
        "nvidia-persistenced is allowed by default"
    );
}

#[test]
fn the_compute_gpu_may_be_configured_as_display_by_uuid() {
    let mut m = PreparedMachine::new();
    m.process(
        "Hyprland",
        1000,
        "/user.slice/user-1000.slice/session-2.scope",
        &["dri/card0", "nvidia0"],
    );
    let p3000 = m.process(
        "python3",
        0,
        "/ai.slice/train.service",
        &["nvidia1", "nvidia-uvm"],
    );
    let v = m.check(Some("GPU-bbbb"));
    assert_eq!(holders(&v), vec![p3000 as u64], "{}", v.reason);
    assert_eq!(v.evidence["display_gpu"]["pci"], "0000:02:00.0");
}

#[test]
fn shared_nvidia_nodes_do_not_count_when_two_nvidia_gpus_exist() {
    let mut m = PreparedMachine::new();
    m.process(
        "nvidia-smi",
        0,
        "/system.slice/x.service",
        &["nvidiactl", "nvidia-uvm"],
    );
    let v = m.check(Some(DISPLAY));
    assert_eq!(v.outcome, Outcome::Pass, "{}", v.reason);
}

#[test]
fn an_unknown_display_gpu_is_an_error_naming_the_gpus_that_exist() {
    let m = PreparedMachine::new();
    let v = m.check(Some("0000:09:00.0"));
    assert_eq!(v.outcome, Outcome::Error);
    assert!(
        v.reason.contains("0000:01:00.0, 0000:02:00.0"),
        "{}",
        v.reason
    );
}

#[test]
fn finds_a_device_at_a_high_fd_behind_closed_ones() {
    use mode_guards::probe::procfd::scan;
    use std::collections::BTreeSet;
    // fds 0-2, then a gap, then /dev/full (1:7) at fd 9.
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg("exec 9</dev/full; exec sleep 60")
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(format!("/proc/{pid}/comm")).map_or(true, |c| c.trim() != "sleep")
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let rule = DeviceRule::stand_ins(vec![StandIn {
        matches: StandInMatch::CharDevice { major: 1, minor: 7 },
        gpu: DISPLAY.into(),
    }]);
    let dir = tempfile::tempdir().unwrap();
    let s = scan(&procfs_of(dir.path(), &[pid]), &rule, &BTreeSet::new()).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let found: Vec<_> = s
        .holders
        .iter()
        .map(|h| (h.pid, h.devices[0].fd, h.devices[0].path.as_str()))
        .collect();
    assert_eq!(found, [(pid, 9, "/dev/full")], "{s:?}");
    assert!(s.unreadable.is_empty(), "{s:?}");
}

#[test]
fn the_compute_guards_block_on_a_display_holder_and_advise_how_to_clear_it() {
    use mode_guards::{
        advice, builtin, evaluate_all, gpu_release_verification, GuardSettings, Severity,
    };
    use std::sync::Arc;
    let mut m = PreparedMachine::new();
    let p2211 = m.process(
        "obs",
        1000,
        "/user.slice/user-1000.slice/app-obs.scope",
        &["dri/renderD129", "dri/card0"],
    );
    write(
        &m.dir.path().join("passwd"),
        "alice:x:1000:100::/home/alice:/bin/sh\n",
    );
    let mut settings = GuardSettings::default();
    settings.gpu.nvml_library = m.dir.path().join("missing.so");
    settings.gpu.release_timeout_secs = 0;
    let roots = m.roots();
    let guards = vec![
        (
            builtin("gpu_display_released", &settings, &roots).unwrap(),
            Severity::Soft,
        ),
        (gpu_release_verification(&settings, &roots), Severity::Hard),
    ];
    let results = evaluate_all(guards, Arc::new(Facts::new("compute")));
    assert!(!results[0].blocks(), "the pre-check is soft");
    assert!(
        results[1].blocks(),
        "the verification is hard: {}",
        results[1].reason
    );
    let a = advice(&results[1]).unwrap();
    assert!(a.starts_with(&format!("close obs (pid {p2211})")), "{a}");
    assert!(a.contains("guard_settings.gpu.allow"), "{a}");
    assert_eq!(results[1].evidence["holders"][0]["unit"], "app-obs.scope");
    assert_eq!(
        results[1].evidence["holders"][0]["device"]
            .as_str()
            .map(|d| d.ends_with("dev/dri/card0")),
        Some(true)
    );
}

#[test]
fn stand_in_devices_can_be_configured_in_guard_settings() {
    use mode_guards::{builtin, GuardSettings};
    let dir = tempfile::tempdir().unwrap();
    let card = stand_in_file(dir.path(), "card1");
    let by_path = Holder::spawn(&card, None);
    let by_number = Holder::spawn(Path::new("/dev/full"), None);
    let settings: GuardSettings = serde_json::from_value(serde_json::json!({
        "gpu": {
            "display_gpu": DISPLAY,
            "nvml_library": dir.path().join("missing.so"),
            "extra_devices": [
                {"device": card, "gpu": DISPLAY},
                {"device": "1:7", "gpu": DISPLAY}
            ]
        }
    }))
    .unwrap();
    assert_eq!(settings.validate(), Ok(()));
    let pids = [by_path.pid(), by_number.pid()];
    let v = builtin("gpu_display_released", &settings, &roots(dir.path(), &pids))
        .unwrap()
        .check(&Facts::new("compute"));
    assert_eq!(v.outcome, Outcome::Fail, "{}", v.reason);
    let found = holders(&v);
    assert!(found.contains(&(by_path.pid() as u64)), "{}", v.reason);
    assert!(found.contains(&(by_number.pid() as u64)), "{}", v.reason);
}

#[test]
fn polling_does_not_wait_out_a_configuration_error() {
    let m = PreparedMachine::new();
    let s = GpuSettings {
        display_gpu: Some("0000:09:00.0".into()),
        nvml_library: m.dir.path().join("missing.so"),
        ..GpuSettings::default()
    };
    let started = Instant::now();
    let v = GpuDisplayReleased::new(&s, &m.roots())
        .wait_until_released(Duration::from_secs(5), Duration::from_millis(50));
    assert_eq!(v.outcome, Outcome::Error);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(
        v.reason.starts_with("guard_settings.gpu.display_gpu"),
        "{}",
        v.reason
    );
}

#[test]
fn the_gpu_advice_names_every_holder_the_check_found_or_the_setting_to_mend() {
    use common::stored;
    use mode_guards::{advice, GPU_DISPLAY_RELEASED};
    let mut m = PreparedMachine::new();
    let p1234 = m.process(
        "Hyprland",
        1000,
        "/user.slice/user-1000.slice/session-2.scope",
        &["dri/card0"],
    );
    let p2211 = m.process(
        "obs",
        1000,
        "/user.slice/user-1000.slice/app-obs.scope",
        &["nvidia0"],
    );
    let r = stored(GPU_DISPLAY_RELEASED.name, m.check(None));
    assert_eq!(r.outcome, Outcome::Fail, "{}", r.reason);
    let mut named = [("Hyprland", p1234), ("obs", p2211)];
    named.sort_by_key(|(_, pid)| *pid);
    assert_eq!(
        advice(&r).unwrap(),
        format!(
            "close {} (pid {}), {} (pid {}) (or stop their units), or add them to guard_settings.gpu.allow if they may keep the display GPU",
            named[0].0, named[0].1, named[1].0, named[1].1
        )
    );
    let r = stored(GPU_DISPLAY_RELEASED.name, m.check(Some("0000:09:00.0")));
    assert_eq!(r.outcome, Outcome::Error, "{}", r.reason);
    assert!(
        advice(&r).unwrap().starts_with("check guard_settings.gpu"),
        "{r:?}"
    );
}
