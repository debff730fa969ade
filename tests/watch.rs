//! `mode watch --json` in a real systemd container, run by an unprivileged
//! user: the state first, then a line for a switch another process makes
//! (its start and its outcome, in order, within 100 ms), a unit stopped by
//! hand, and a state directory that was removed and made again.

mod common;

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Container;
use serde_json::Value;

/// A running `mode watch --json` and the lines it printed, with when.
struct Watcher {
    _child: std::process::Child,
    lines: mpsc::Receiver<(Instant, Value)>,
}

impl Watcher {
    fn start(c: &Container) -> Watcher {
        let mut child =
            c.spawn("exec setpriv --reuid=65534 --regid=65534 --clear-groups mode --json watch");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if tx.send((Instant::now(), v)).is_err() {
                    break;
                }
            }
        });
        Watcher {
            _child: child,
            lines: rx,
        }
    }

    /// The next line whose `text` is `word`, within `secs`.
    fn until(&self, word: &str, secs: u64) -> (Instant, Value) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((at, v)) if v["text"] == word => return (at, v),
                Ok(_) => continue,
                Err(_) => panic!("no `{word}` line within {secs} s"),
            }
        }
    }
}

#[test]
fn watch_starts_with_the_state_and_follows_a_switch_made_elsewhere() {
    let c = Container::boot();
    let w = Watcher::start(&c);
    let (_, first) = w.until("desktop", 10);
    assert_eq!(first["class"], "desktop");
    assert_eq!(first["alt"], "desktop");
    assert!(first["tooltip"]
        .as_str()
        .unwrap_or("")
        .contains("desktop.target is active"));

    let r = c.mode("request compute");
    let returned = Instant::now();
    assert_eq!(r.code, 0, "{r:?}");
    let (start_at, _) = w.until("transitioning", 5);
    let (done_at, done) = w.until("compute", 5);
    assert!(start_at <= done_at, "the start comes before the outcome");
    assert_eq!(done["transition"]["outcome"], "converged", "{done}");
    assert_eq!(done["transition"]["to"], "compute");
    assert!(
        done_at.saturating_duration_since(returned) < Duration::from_millis(100)
            || done_at < returned,
        "the outcome line came {:?} after the request returned",
        done_at.saturating_duration_since(returned)
    );

    // A unit stopped by hand is a change too (compute's target goes).
    c.sh("systemctl stop compute.target");
    let (_, broken) = w.until("failed-transition", 5);
    assert!(
        broken["reason"]
            .as_str()
            .unwrap_or("")
            .contains("compute.target"),
        "{broken}"
    );
}

#[test]
fn watch_survives_the_state_directory_being_made_again() {
    let c = Container::boot();
    assert_eq!(c.mode("request compute").code, 0);
    let w = Watcher::start(&c);
    w.until("compute", 10);
    c.sh("rm -rf /run/mode-controller");
    std::thread::sleep(Duration::from_millis(300));
    let r = c.mode("request desktop");
    assert_eq!(r.code, 0, "{r:?}");
    let (_, back) = w.until("desktop", 10);
    assert_eq!(back["transition"]["outcome"], "converged", "{back}");
}
