//! audio_idle against a real PipeWire 0.3.65 + WirePlumber (the `studio`
//! real-stack root: alice lingering, a null sink `studio-out` and a null
//! source `studio-in`): a recording with pw-record, an ALSA client through
//! `aplay -D pipewire` and a JACK client through pw-jack each block compute,
//! named by command and pid, and stop blocking once they stop; a stopped
//! (SIGSTOPped) PipeWire is an error within the deadline; and the refusal
//! comes from the hardened mode-controller@.service, which must see
//! /run/user to read the graph at all.

mod common;

use std::time::{Duration, Instant};

use common::{entry, Container};

/// The default guards, with the studio's clients (alice's) in view.
const CONFIG: &str = r#"{"version": 1}"#;

fn boot() -> Container {
    let c = Container::boot_real("studio", &[], &[], &[]);
    c.write("/etc/mode-controller/config.json", CONFIG);
    let started = Instant::now();
    while c.sh("test -S /run/user/1000/pipewire-0").code != 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "alice's PipeWire did not start: {}",
            c.sh("systemctl status user@1000.service; ls -la /run/user/1000")
                .stdout
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // WirePlumber must have linked the graph before clients come.
    while c
        .sh("PIPEWIRE_RUNTIME_DIR=/run/user/1000 pw-dump | grep -q studio-in")
        .code
        != 0
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no studio-in node"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    c
}

/// Run `command` as alice in a transient system unit `unit`; its main pid.
fn run_as_alice(c: &Container, unit: &str, command: &str) -> String {
    let r = c.sh(&format!(
        "systemd-run --unit={unit} --uid=1000 --gid=1000 -p Type=exec \
         -p Environment=XDG_RUNTIME_DIR=/run/user/1000 -p Environment=HOME=/home/alice \
         -p WorkingDirectory=/home/alice {command}"
    ));
    assert_eq!(r.code, 0, "{r:?}");
    c.prop(&format!("{unit}.service"), "MainPID")
}

/// audio_idle of `mode dry-run compute`, polled until `done` says so.
fn audio_idle_until(
    c: &Container,
    within: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> (serde_json::Value, Duration) {
    let started = Instant::now();
    loop {
        let d = c.mode("dry-run compute --json");
        let g = entry(&d.json()["guards"], "guards", "name", "audio_idle");
        if done(&g) || started.elapsed() > within {
            return (g, started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn each_pipewire_client_blocks_compute_by_name_and_pid_until_it_stops() {
    let c = boot();
    let r = c.mode("request studio-local");
    assert_eq!(r.code, 0, "{r:?}");

    let (idle, _) = audio_idle_until(&c, Duration::ZERO, |_| true);
    assert_eq!(idle["outcome"], "pass", "{idle}");
    assert!(
        idle["reason"]
            .as_str()
            .unwrap()
            .contains("PipeWire graph of 1 user"),
        "a machine with PipeWire and no ALSA is read, not skipped: {idle}"
    );

    let clients = [
        (
            "take",
            "pw-record --target studio-in /home/alice/take.wav",
            "pw-record",
            "capture",
        ),
        (
            "player",
            "aplay -D pipewire -f S16_LE -r 48000 -c 2 /dev/zero",
            "aplay",
            "playback",
        ),
        (
            "jack",
            "pw-jack jack_capture --daemon --no-stdin -c 2 /home/alice/x.wav",
            "jack_capture",
            "capture",
        ),
    ];
    for (unit, command, comm, direction) in clients {
        let pid = run_as_alice(&c, unit, command);
        let (g, _) = audio_idle_until(&c, Duration::from_secs(5), |g| g["outcome"] == "fail");
        assert_eq!(g["outcome"], "fail", "{unit}: {g}");
        let reason = g["reason"].as_str().unwrap();
        assert!(
            reason.contains(&format!("{comm} (pid {pid}, alice)")),
            "{unit} named by command and kernel pid: {reason}"
        );
        let ours = g["evidence"]["running"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["pid"].as_u64().map(|p| p.to_string()).as_deref() == Some(pid.as_str()))
            .unwrap_or_else(|| panic!("{unit} pid {pid} not in {g}"))
            .clone();
        assert_eq!(ours["direction"], direction, "{ours}");
        if unit == "jack" {
            assert_eq!(ours["api"], "jack", "a JACK node (no media.class): {ours}");
        }
        if unit == "take" {
            assert_eq!(ours["device"], serde_json::json!(["studio-in"]), "{ours}");
            // The switch itself is refused, by the hardened unit.
            let r = c.mode("request compute");
            assert_eq!(r.code, 3, "refused while a take is recorded: {r:?}");
            assert!(
                r.stderr.contains("audio_idle") && r.stderr.contains(&format!("pid {pid}")),
                "{}",
                r.stderr
            );
            assert_eq!(c.mode("current").stdout.trim(), "studio-local");
            assert_eq!(c.state("take.service"), "active", "the take goes on");
        }
        assert_eq!(c.sh(&format!("systemctl stop {unit}")).code, 0);
        let (g, took) = audio_idle_until(&c, Duration::from_secs(8), |g| g["outcome"] == "pass");
        assert_eq!(g["outcome"], "pass", "after {unit} stopped: {g}");
        eprintln!(
            "{unit}: audio_idle passed {} ms after the client stopped",
            took.as_millis()
        );
    }

    let r = c.mode("request compute");
    assert_eq!(r.code, 0, "{r:?}");
    let t = c.last_transition();
    let g = entry(&t, "guards", "name", "audio_idle");
    assert_eq!(g["severity"], "hard", "{g}");
    assert_eq!(g["outcome"], "pass", "read under the unit's hardening: {g}");
    assert!(
        g["reason"]
            .as_str()
            .unwrap()
            .contains("PipeWire graph of 1 user"),
        "the unit sees /run/user: {g}"
    );
}

#[test]
fn a_stopped_pipewire_is_an_error_within_the_deadline_and_refuses() {
    let c = boot();
    assert_eq!(c.mode("request studio-local").code, 0);
    let pid = c.sh("pgrep -u alice -x pipewire").stdout.trim().to_string();
    assert!(!pid.is_empty());
    assert_eq!(c.sh(&format!("kill -STOP {pid}")).code, 0);

    let started = Instant::now();
    let d = c.mode("dry-run compute --json");
    let took = started.elapsed();
    let g = entry(&d.json()["guards"], "guards", "name", "audio_idle");
    assert_eq!(g["outcome"], "error", "{g}");
    let reason = g["reason"].as_str().unwrap();
    assert!(
        reason.contains("alice (uid 1000)") && reason.contains("did not answer within 2000 ms"),
        "{reason}"
    );
    assert!(took < Duration::from_secs(4), "{took:?}");

    let r = c.mode("request compute");
    assert_eq!(r.code, 3, "a hung PipeWire never passes: {r:?}");
    assert_eq!(c.sh(&format!("kill -CONT {pid}")).code, 0);
    let (g, _) = audio_idle_until(&c, Duration::from_secs(5), |g| g["outcome"] == "pass");
    assert_eq!(g["outcome"], "pass", "answers again once continued: {g}");
}
