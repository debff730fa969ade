//! `audio_idle`, `memory_headroom` and `cpu_load_safe` on prepared ALSA,
//! PSI, meminfo and loadavg trees: running, closed, absent and malformed.

mod common;

use std::path::Path;

use common::{stored, write, Holder};
use mode_guards::{
    advice, AudioIdle, AudioSettings, CpuLoadSafe, CpuSettings, Facts, Guard, MemoryHeadroom,
    MemorySettings, Outcome, Roots, AUDIO_IDLE, CPU_LOAD_SAFE, MEMORY_HEADROOM,
};

fn asound_roots(asound: &Path) -> Roots {
    Roots {
        asound: asound.to_path_buf(),
        // No PipeWire: nobody's runtime directory is here.
        user_runtime: asound.with_file_name("no-run-user"),
        ..Roots::system()
    }
}

fn card(asound: &Path, n: u32, id: &str) {
    write(&asound.join(format!("card{n}/id")), &format!("{id}\n"));
}

fn substream(asound: &Path, path: &str, status: &str) {
    write(&asound.join(path).join("status"), status);
}

#[test]
fn audio_fails_naming_the_recording_process_and_card() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("asound");
    let reaper = Holder::spawn(Path::new("/dev/null"), None);
    card(&a, 0, "PCH");
    card(&a, 1, "USB");
    substream(&a, "card0/pcm0p/sub0", "closed\n");
    substream(
        &a,
        "card1/pcm0c/sub0",
        &format!(
            "state: RUNNING\nowner_pid   : {}\ntrigger_time: 100.0\n",
            reaper.pid()
        ),
    );
    substream(&a, "card1/pcm0p/sub0", "state: PREPARED\nowner_pid   : 1\n");
    write(&a.join("cards"), " 0 [PCH ]: HDA-Intel\n");
    let v =
        AudioIdle::new(&AudioSettings::default(), &asound_roots(&a)).check(&Facts::new("compute"));
    assert_eq!(v.outcome, Outcome::Fail, "{}", v.reason);
    assert_eq!(
        v.reason,
        format!(
            "audio is in use: sleep (pid {}, root) records on USB (card1/pcm0c/sub0)",
            reaper.pid()
        )
    );
    assert_eq!(
        v.evidence["running"].as_array().unwrap().len(),
        1,
        "PREPARED is not running"
    );
}

#[test]
fn audio_passes_when_every_substream_is_closed_or_idle() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("asound");
    card(&a, 0, "PCH");
    substream(&a, "card0/pcm0p/sub0", "closed\n");
    substream(&a, "card0/pcm0c/sub0", "state: SETUP\nowner_pid   : 1\n");
    let v =
        AudioIdle::new(&AudioSettings::default(), &asound_roots(&a)).check(&Facts::new("compute"));
    assert_eq!(v.outcome, Outcome::Pass, "{}", v.reason);
}

#[test]
fn audio_is_skipped_without_alsa() {
    let dir = tempfile::tempdir().unwrap();
    let v = AudioIdle::new(
        &AudioSettings::default(),
        &asound_roots(&dir.path().join("asound")),
    )
    .check(&Facts::new("compute"));
    assert_eq!(v.outcome, Outcome::Skipped);
    assert!(
        v.reason.contains("neither PipeWire") && v.reason.contains("nor ALSA"),
        "{}",
        v.reason
    );
}

#[test]
fn a_malformed_substream_status_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("asound");
    card(&a, 0, "PCH");
    substream(
        &a,
        "card0/pcm3p/sub0",
        "state: RUNNING\nowner_pid   : twelve\n",
    );
    let v =
        AudioIdle::new(&AudioSettings::default(), &asound_roots(&a)).check(&Facts::new("compute"));
    assert_eq!(v.outcome, Outcome::Error);
    assert!(v.reason.contains("card0/pcm3p/sub0/status"), "{}", v.reason);
}

fn proc_tree(
    dir: &Path,
    meminfo_available_kib: u64,
    memory_psi: Option<&str>,
    cpu_psi: Option<&str>,
) -> Roots {
    let p = dir.join("proc");
    write(
        &p.join("meminfo"),
        &format!("MemTotal:       32000000 kB\nMemFree:         1000000 kB\nMemAvailable:   {meminfo_available_kib} kB\n"),
    );
    write(&p.join("loadavg"), "3.00 2.00 1.00 2/300 4242\n");
    write(
        &p.join("stat"),
        "cpu  1 2 3\ncpu0 1 2 3\ncpu1 1 2 3\nintr 5\n",
    );
    if let Some(m) = memory_psi {
        write(&p.join("pressure/memory"), m);
    }
    if let Some(c) = cpu_psi {
        write(&p.join("pressure/cpu"), c);
    }
    Roots {
        procfs: p,
        ..Roots::system()
    }
}

const CALM: &str = "some avg10=0.50 avg60=0.20 avg300=0.10 total=100\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
const STALLING: &str = "some avg10=35.00 avg60=20.00 avg300=5.00 total=100\nfull avg10=20.00 avg60=0.00 avg300=0.00 total=0\n";

fn memory(roots: &Roots) -> mode_guards::Verdict {
    MemoryHeadroom::new(&MemorySettings::default(), roots).check(&Facts::new("compute"))
}

#[test]
fn memory_passes_with_room_and_no_pressure() {
    let dir = tempfile::tempdir().unwrap();
    let v = memory(&proc_tree(dir.path(), 16_000_000, Some(CALM), None));
    assert_eq!(v.outcome, Outcome::Pass, "{}", v.reason);
}

#[test]
fn memory_fails_below_the_floor_naming_both_figures() {
    let dir = tempfile::tempdir().unwrap();
    let v = memory(&proc_tree(dir.path(), 1_024_000, Some(CALM), None));
    assert_eq!(v.outcome, Outcome::Fail);
    assert!(
        v.reason
            .contains("only 1000 MiB available, below the floor of 4096 MiB"),
        "{}",
        v.reason
    );
}

#[test]
fn memory_fails_under_pressure_even_with_room() {
    let dir = tempfile::tempdir().unwrap();
    let v = memory(&proc_tree(dir.path(), 16_000_000, Some(STALLING), None));
    assert_eq!(v.outcome, Outcome::Fail);
    assert!(
        v.reason.contains("memory pressure avg10 is 35.0%"),
        "{}",
        v.reason
    );
}

#[test]
fn memory_without_psi_is_skipped_not_passed() {
    let dir = tempfile::tempdir().unwrap();
    let v = memory(&proc_tree(dir.path(), 16_000_000, None, None));
    assert_eq!(v.outcome, Outcome::Skipped, "{}", v.reason);
    assert!(v.reason.contains("no memory PSI"), "{}", v.reason);
    assert_eq!(v.evidence["checked"]["pressure"], "skipped");
    assert_eq!(v.evidence["checked"]["available"], "pass");
}

#[test]
fn malformed_psi_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let v = memory(&proc_tree(
        dir.path(),
        16_000_000,
        Some("some avg10=lots\n"),
        None,
    ));
    assert_eq!(v.outcome, Outcome::Error);
    assert!(v.reason.contains("pressure/memory"), "{}", v.reason);
}

fn cpu(roots: &Roots) -> mode_guards::Verdict {
    CpuLoadSafe::new(&CpuSettings::default(), roots).check(&Facts::new("compute"))
}

#[test]
fn cpu_fails_under_pressure_and_passes_when_calm() {
    let dir = tempfile::tempdir().unwrap();
    let stalled = "some avg10=55.00 avg60=20.00 avg300=5.00 total=100\n";
    let v = cpu(&proc_tree(dir.path(), 1, None, Some(stalled)));
    assert_eq!(v.outcome, Outcome::Fail);
    assert!(
        v.reason.contains("CPU pressure avg10 is 55.0%"),
        "{}",
        v.reason
    );
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        cpu(&proc_tree(dir.path(), 1, None, Some(CALM))).outcome,
        Outcome::Pass
    );
}

#[test]
fn cpu_falls_back_to_load_average_per_cpu_without_psi() {
    // load 3.00 on 2 CPUs = 1.5 per CPU, at the default ceiling.
    let dir = tempfile::tempdir().unwrap();
    let v = cpu(&proc_tree(dir.path(), 1, None, None));
    assert_eq!(v.outcome, Outcome::Fail, "{}", v.reason);
    assert!(v.reason.contains("1.50 per CPU"), "{}", v.reason);
    assert_eq!(v.evidence["source"], "loadavg");
}

#[test]
fn the_real_machine_is_read_without_error() {
    let (memory, cpu) = (memory(&Roots::system()), cpu(&Roots::system()));
    for v in [&memory, &cpu] {
        assert_ne!(v.outcome, Outcome::Error, "{}", v.reason);
    }
    // Read, not waved through: at least one decided, and each names the
    // figures it read from this machine's procfs.
    assert!(
        [&memory, &cpu]
            .iter()
            .any(|v| matches!(v.outcome, Outcome::Pass | Outcome::Fail)),
        "both skipped: {} / {}",
        memory.reason,
        cpu.reason
    );
    assert!(
        memory.evidence["total_mib"].as_u64().is_some_and(|t| t > 0),
        "{}",
        memory.evidence
    );
    let cpu_figure = match cpu.evidence["source"].as_str() {
        Some("psi") => &cpu.evidence["pressure_avg10"],
        Some("loadavg") => &cpu.evidence["load_per_cpu"],
        _ => &serde_json::Value::Null,
    };
    assert!(cpu_figure.is_number(), "{}", cpu.evidence);
}

#[test]
fn the_audio_advice_names_the_clients_the_check_found() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("asound");
    let reaper = Holder::spawn(Path::new("/dev/null"), None);
    card(&a, 1, "USB");
    substream(
        &a,
        "card1/pcm0c/sub0",
        &format!("state: RUNNING\nowner_pid   : {}\n", reaper.pid()),
    );
    let v =
        AudioIdle::new(&AudioSettings::default(), &asound_roots(&a)).check(&Facts::new("compute"));
    let r = stored(AUDIO_IDLE.name, v);
    assert_eq!(
        advice(&r).unwrap(),
        format!(
            "stop playback and recording in sleep (pid {}) or wait until it finishes",
            reaper.pid()
        )
    );
    substream(&a, "card1/pcm0c/sub0", "state: RUNNING\nowner_pid   : x\n");
    let v =
        AudioIdle::new(&AudioSettings::default(), &asound_roots(&a)).check(&Facts::new("compute"));
    let r = stored(AUDIO_IDLE.name, v);
    assert_eq!(r.outcome, Outcome::Error, "{}", r.reason);
    assert!(advice(&r).unwrap().contains("PipeWire answers"), "{r:?}");
}

#[test]
fn the_memory_advice_names_the_setting_of_the_check_that_failed() {
    let dir = tempfile::tempdir().unwrap();
    let low = stored(
        MEMORY_HEADROOM.name,
        memory(&proc_tree(dir.path(), 1_024_000, Some(CALM), None)),
    );
    assert_eq!(
        advice(&low).unwrap(),
        "close memory-hungry programs, or lower guard_settings.memory.min_available_mib"
    );
    let dir = tempfile::tempdir().unwrap();
    let stalling = stored(
        MEMORY_HEADROOM.name,
        memory(&proc_tree(dir.path(), 16_000_000, Some(STALLING), None)),
    );
    assert_eq!(
        advice(&stalling).unwrap(),
        "close memory-hungry programs, or raise guard_settings.memory.max_pressure_avg10"
    );
}

#[test]
fn the_cpu_advice_names_the_ceiling_the_check_measured_against() {
    let dir = tempfile::tempdir().unwrap();
    let stalled = "some avg10=55.00 avg60=20.00 avg300=5.00 total=100\n";
    let psi = stored(
        CPU_LOAD_SAFE.name,
        cpu(&proc_tree(dir.path(), 1, None, Some(stalled))),
    );
    assert_eq!(
        advice(&psi).unwrap(),
        "wait for the CPU load to drop, or raise guard_settings.cpu.max_pressure_avg10"
    );
    let dir = tempfile::tempdir().unwrap();
    let load = stored(
        CPU_LOAD_SAFE.name,
        cpu(&proc_tree(dir.path(), 1, None, None)),
    );
    assert_eq!(
        advice(&load).unwrap(),
        "wait for the CPU load to drop, or raise guard_settings.cpu.max_load_per_cpu"
    );
}
