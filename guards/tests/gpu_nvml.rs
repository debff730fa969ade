//! `gpu_display_released` through the real `nvml-wrapper` path, loading a
//! stand-in libnvidia-ml built here from `fake_nvml.c`, whose answers come
//! from environment variables: holders, no holders, driver missing, library
//! missing. The environment is process-wide, so these tests take turns.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use common::{procfs_of, Holder};
use mode_guards::probe::procfd::DeviceRule;
use mode_guards::{Facts, GpuDisplayReleased, GpuSettings, Guard, Outcome, Roots, Verdict};

const DISPLAY: &str = "0000:01:00.0";

fn fake_library() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fake-libnvidia-ml.so.1");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake_nvml.c");
        let status = std::process::Command::new("cc")
            .args(["-shared", "-fPIC", "-Wall", "-Werror", "-o"])
            .arg(&out)
            .arg(&source)
            .status()
            .expect("a C compiler (cc) builds the NVML stand-in");
        assert!(status.success(), "cc failed on {}", source.display());
        out
    })
}

/// Serialize the tests and set the fake's answers.
fn answers(vars: &[(&str, &str)]) -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    for key in [
        "FAKE_NVML_INIT",
        "FAKE_NVML_GPUS",
        "FAKE_NVML_GRAPHICS_0",
        "FAKE_NVML_COMPUTE_0",
        "FAKE_NVML_GRAPHICS_1",
        "FAKE_NVML_COMPUTE_1",
    ] {
        std::env::remove_var(key);
    }
    for (k, v) in vars {
        std::env::set_var(k, v);
    }
    turn
}

/// The guard with NVML at `library`, over a procfs naming only `pids`.
fn check(library: &Path, require_nvml: bool, pids: &[u32]) -> Verdict {
    let dir = tempfile::tempdir().unwrap();
    let s = GpuSettings {
        display_gpu: Some(DISPLAY.into()),
        nvml_library: library.to_path_buf(),
        require_nvml,
        ..GpuSettings::default()
    };
    let roots = Roots {
        procfs: procfs_of(dir.path(), pids),
        sysfs: dir.path().join("no-sys"),
        ..Roots::system()
    };
    // No fd matches: NVML alone decides what is held.
    GpuDisplayReleased::new(&s, &roots)
        .with_device_rule(DeviceRule::stand_ins(vec![]))
        .check(&Facts::new("compute"))
}

#[test]
fn fails_naming_a_process_nvml_lists_on_the_display_gpu() {
    let worker = Holder::spawn(Path::new("/dev/null"), None);
    let compute = format!("{}:{}", worker.pid(), 2u64 << 30);
    let _turn = answers(&[
        ("FAKE_NVML_INIT", "0"),
        (
            "FAKE_NVML_GPUS",
            "0000:01:00.0=GPU-aaaa,0000:02:00.0=GPU-bbbb",
        ),
        ("FAKE_NVML_COMPUTE_0", &compute),
        ("FAKE_NVML_COMPUTE_1", "1"),
    ]);
    let v = check(fake_library(), false, &[worker.pid()]);
    assert_eq!(v.outcome, Outcome::Fail, "{}", v.reason);
    let holders = v.evidence["holders"].as_array().unwrap();
    assert_eq!(
        holders.len(),
        1,
        "pid 1 is on the other GPU: {}",
        v.evidence
    );
    assert_eq!(holders[0]["pid"], worker.pid());
    assert_eq!(holders[0]["comm"], "sleep");
    assert_eq!(holders[0]["nvml_context"], "compute");
    assert_eq!(holders[0]["gpu_memory_mib"], 2048);
    assert!(v.reason.contains("NVML compute context"), "{}", v.reason);
}

#[test]
fn passes_when_nvml_lists_no_process_on_the_display_gpu() {
    let _turn = answers(&[
        ("FAKE_NVML_INIT", "0"),
        ("FAKE_NVML_GPUS", "0000:01:00.0=GPU-aaaa"),
    ]);
    let v = check(fake_library(), true, &[]);
    assert_eq!(v.outcome, Outcome::Pass, "{}", v.reason);
    assert!(v.reason.contains("NVML 0 processes listed"), "{}", v.reason);
}

#[test]
fn a_display_gpu_nvml_does_not_know_is_left_to_the_fd_scan() {
    let _turn = answers(&[
        ("FAKE_NVML_INIT", "0"),
        ("FAKE_NVML_GPUS", "0000:02:00.0=GPU-bbbb"),
        ("FAKE_NVML_GRAPHICS_0", "1"),
    ]);
    let v = check(fake_library(), true, &[]);
    assert_eq!(v.outcome, Outcome::Pass, "{}", v.reason);
    assert!(
        v.reason.contains("does not manage this GPU"),
        "{}",
        v.reason
    );
}

#[test]
fn driver_not_loaded_is_an_error_when_nvml_is_required() {
    let _turn = answers(&[("FAKE_NVML_INIT", "9")]);
    let v = check(fake_library(), true, &[]);
    assert_eq!(v.outcome, Outcome::Error, "{}", v.reason);
    assert!(v.reason.contains("NVML did not initialize"), "{}", v.reason);
}

#[test]
fn driver_not_loaded_leaves_the_fd_scan_to_decide_and_says_so() {
    let _turn = answers(&[("FAKE_NVML_INIT", "9")]);
    let v = check(fake_library(), false, &[]);
    assert_eq!(v.outcome, Outcome::Pass, "{}", v.reason);
    assert!(
        v.reason.contains("NVML not asked: NVML did not initialize"),
        "{}",
        v.reason
    );
}

#[test]
fn a_missing_library_is_named() {
    let _turn = answers(&[]);
    let missing = Path::new("/nonexistent/libnvidia-ml.so.1");
    let v = check(missing, false, &[]);
    assert_eq!(v.outcome, Outcome::Pass, "{}", v.reason);
    assert!(
        v.reason
            .contains("/nonexistent/libnvidia-ml.so.1 cannot be loaded"),
        "{}",
        v.reason
    );
    let v = check(missing, true, &[]);
    assert_eq!(v.outcome, Outcome::Error, "{}", v.reason);
}
