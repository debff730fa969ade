//! `audio_idle` reading PipeWire graphs: the graph recorded from a real
//! PipeWire 0.3.65 with pw-record, `aplay -D pipewire` and a JACK client
//! running (tests/fixtures/pw-dump-three-clients.json), served by a `pw-dump`
//! script to a real socket in a prepared runtime directory; and a `pw-dump`
//! that never answers, cut at the deadline. The real daemon is exercised in
//! the container tests (tests/pipewire_studio.rs).

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mode_guards::{AudioIdle, AudioSettings, Facts, Guard, Outcome, Roots};

struct Tree {
    dir: tempfile::TempDir,
    _socket: UnixListener,
}

impl Tree {
    /// `run/user/1000/pipewire-0` as a listening socket, `proc/PID/comm`
    /// for the given processes, an empty passwd with alice.
    fn new(processes: &[(u32, &str)]) -> Tree {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run/user/1000");
        std::fs::create_dir_all(&run).unwrap();
        let socket = UnixListener::bind(run.join("pipewire-0")).unwrap();
        for (pid, comm) in processes {
            let p = dir.path().join(format!("proc/{pid}"));
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("comm"), format!("{comm}\n")).unwrap();
        }
        std::fs::write(
            dir.path().join("passwd"),
            "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        )
        .unwrap();
        Tree {
            dir,
            _socket: socket,
        }
    }

    fn roots(&self) -> Roots {
        Roots {
            procfs: self.dir.path().join("proc"),
            asound: self.dir.path().join("no-asound"),
            user_runtime: self.dir.path().join("run/user"),
            users: mode_guards::probe::passwd::UserDb::File(self.dir.path().join("passwd")),
            ..Roots::system()
        }
    }

    /// A `pw-dump` that prints `body` (shell) when asked for alice's socket.
    fn pw_dump(&self, body: &str) -> PathBuf {
        let path = self.dir.path().join("pw-dump");
        let want = self.dir.path().join("run/user/1000");
        let script = format!(
            "#!/bin/sh\n[ \"$PIPEWIRE_RUNTIME_DIR\" = {} ] || {{ echo wrong dir >&2; exit 3; }}\n{body}\n",
            want.display()
        );
        // Written by a child process, not here: a test on another thread
        // forking while this process held the file open for writing would
        // keep it open in its child until that exec'd, and running the
        // script then fails with ETXTBSY ("Text file busy").
        let mut child = std::process::Command::new("sh")
            .args(["-c", "cat > \"$1\" && chmod 0755 \"$1\"", "sh"])
            .arg(&path)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
        path
    }
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pw-dump-three-clients.json")
}

fn settings(pw_dump: PathBuf, device: Option<&str>) -> AudioSettings {
    AudioSettings {
        pw_dump,
        graph_timeout_ms: 1000,
        device: device.map(str::to_string),
    }
}

#[test]
fn every_running_stream_and_jack_client_is_named_by_kernel_pid_and_command() {
    let t = Tree::new(&[(61, "pw-record"), (62, "aplay")]);
    let dump = t.pw_dump(&format!("cat {}", fixture().display()));
    let v = AudioIdle::new(&settings(dump, None), &t.roots()).check(&Facts::new("compute"));
    assert_eq!(v.outcome, Outcome::Fail, "{}", v.reason);
    let running = v.evidence["running"].as_array().unwrap();
    let by_node = |node: &str| {
        running
            .iter()
            .find(|r| r["node"] == node)
            .unwrap_or_else(|| panic!("no {node}: {running:?}"))
            .clone()
    };
    let rec = by_node("pw-record");
    assert_eq!(rec["pid"], 61);
    assert_eq!(rec["command"], "pw-record", "from /proc, not pw-cat");
    assert_eq!(rec["direction"], "capture");
    assert_eq!(rec["user"], "alice");
    assert_eq!(rec["device"], serde_json::json!(["studio-in"]));
    let alsa = by_node("ALSA Playback");
    assert_eq!(alsa["pid"], 62);
    assert_eq!(alsa["direction"], "playback");
    assert_eq!(alsa["api"], "alsa");
    let jack = by_node("jack_capture");
    assert_eq!(jack["pid"], 63);
    assert_eq!(
        jack["command"], "jack_capture",
        "gone from /proc: the client's own word"
    );
    assert_eq!(jack["api"], "jack");
    assert_eq!(
        jack["direction"], "capture",
        "a JACK node with input ports only"
    );
    assert!(
        v.reason
            .contains("pw-record (pid 61, alice) records on studio-in (pw-record)"),
        "{}",
        v.reason
    );
    assert_eq!(running.len(), 3, "devices and drivers are not clients");
}

#[test]
fn a_named_studio_device_counts_only_clients_connected_to_it() {
    let t = Tree::new(&[]);
    let dump = t.pw_dump(&format!("cat {}", fixture().display()));
    let v = AudioIdle::new(&settings(dump.clone(), Some("studio-in")), &t.roots())
        .check(&Facts::new("compute"));
    let nodes: Vec<&str> = v.evidence["running"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["pw-record"], "{}", v.reason);
    // jack_capture records what aplay plays to studio-out: both reach it.
    let v = AudioIdle::new(&settings(dump, Some("studio-out")), &t.roots())
        .check(&Facts::new("compute"));
    assert_eq!(
        v.evidence["running"].as_array().unwrap().len(),
        2,
        "{}",
        v.reason
    );
}

#[test]
fn a_graph_with_nothing_running_passes_and_is_not_skipped() {
    let t = Tree::new(&[]);
    let dump = t.pw_dump("echo '[]'");
    let v = AudioIdle::new(&settings(dump, None), &t.roots()).check(&Facts::new("compute"));
    assert_eq!(v.outcome, Outcome::Pass, "{}", v.reason);
    assert!(
        v.reason.contains("PipeWire graph of 1 user"),
        "{}",
        v.reason
    );
}

#[test]
fn a_pipewire_that_does_not_answer_is_an_error_at_the_deadline() {
    let t = Tree::new(&[]);
    let dump = t.pw_dump("exec sleep 30");
    let started = Instant::now();
    let v = AudioIdle::new(&settings(dump, None), &t.roots()).check(&Facts::new("compute"));
    assert!(
        started.elapsed() < Duration::from_millis(1800),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(v.outcome, Outcome::Error, "{}", v.reason);
    assert!(
        v.reason.contains("alice (uid 1000)") && v.reason.contains("within 1000 ms"),
        "{}",
        v.reason
    );
}

#[test]
fn a_missing_pw_dump_with_pipewire_running_is_an_error() {
    let t = Tree::new(&[]);
    let v = AudioIdle::new(
        &settings(t.dir.path().join("no-such-pw-dump"), None),
        &t.roots(),
    )
    .check(&Facts::new("compute"));
    assert_eq!(v.outcome, Outcome::Error, "{}", v.reason);
    assert!(v.reason.contains("cannot run"), "{}", v.reason);
}

#[test]
fn a_device_pipewire_holds_open_is_left_to_its_graph_but_raw_alsa_use_counts() {
    let t = Tree::new(&[(42, "pipewire"), (77, "reaper")]);
    for (pid, uid) in [(42, 1000), (77, 1000)] {
        std::fs::write(
            t.dir.path().join(format!("proc/{pid}/status")),
            format!("Name:\tx\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n"),
        )
        .unwrap();
    }
    let asound = t.dir.path().join("no-asound");
    let sub = |path: &str, pid: u32| {
        let d = asound.join(path);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("status"),
            format!("state: RUNNING\nowner_pid   : {pid}\n"),
        )
        .unwrap();
    };
    std::fs::create_dir_all(asound.join("card0")).unwrap();
    std::fs::write(asound.join("card0/id"), "PCH\n").unwrap();
    // node.pause-on-idle = false: PipeWire keeps the device running with
    // nobody playing; its (empty) graph decides.
    sub("card0/pcm0p/sub0", 42);
    let dump = t.pw_dump("echo '[]'");
    let v = AudioIdle::new(&settings(dump.clone(), None), &t.roots()).check(&Facts::new("compute"));
    assert_eq!(v.outcome, Outcome::Pass, "{}", v.reason);
    assert!(v.reason.contains("and ALSA"), "{}", v.reason);
    // A program on raw hw: beside PipeWire is still named.
    sub("card0/pcm0c/sub0", 77);
    let v = AudioIdle::new(&settings(dump, None), &t.roots()).check(&Facts::new("compute"));
    assert_eq!(v.outcome, Outcome::Fail, "{}", v.reason);
    assert!(
        v.reason
            .contains("reaper (pid 77, alice) records on PCH (card0/pcm0c/sub0)"),
        "{}",
        v.reason
    );
}
