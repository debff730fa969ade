//! The idle signals, judged from plain data: who is at the seat (logind
//! sessions, by the guards' graphical-session rule), input devices'
//! timestamps (a directory, a parameter so tests can use a prepared tree),
//! and audio and CPU pressure as the check's own guard evaluation found them
//! (`audio_idle`, `cpu_load_safe`): nothing here reads them again, asks the
//! bus, decides or changes anything.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::Serialize;

use mode_guards::{
    AudioClient, CpuLoadEvidence as CpuEvidence, GuardResult, Outcome, SessionInfo, AUDIO_IDLE,
    CPU_LOAD_SAFE,
};

use crate::clock::Stamp;

/// Who is at the seat, as far as idleness goes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Presence {
    /// At least one graphical user session is not idle.
    Active { sessions: Vec<String> },
    /// Every graphical user session says it is idle; `since` is the latest
    /// moment one of them became idle.
    IdleSessions {
        since: String,
        #[serde(skip)]
        since_ms: u64,
        sessions: Vec<String>,
    },
    /// Nobody is logged in; a greeter has been up (or idle) since `since`.
    Greeter {
        since: String,
        #[serde(skip)]
        since_ms: u64,
        session: String,
    },
    /// Nobody is logged in and no greeter runs.
    Nobody,
}

fn describe(s: &SessionInfo) -> String {
    format!(
        "session {} of {} ({}, {})",
        s.id, s.user, s.session_type, s.class
    )
}

/// Judge the sessions. A user session counts as idle only when logind's
/// `IdleHint` says so. A greeter that has never set its hint
/// (`IdleSinceHint` 0: most greeters) counts as idle since it started; one
/// that manages its hint is judged by it, like a user session. A user's
/// session is graphical by the guard's rule (`SessionInfo::graphical_because`
/// with `compositors`), so a compositor in a TTY login counts.
pub fn presence(sessions: &[SessionInfo], compositors: &[String]) -> Presence {
    let users: Vec<&SessionInfo> = sessions
        .iter()
        .filter(|s| s.graphical_because(compositors).is_some())
        .collect();
    if !users.is_empty() {
        let active: Vec<String> = users
            .iter()
            .filter(|s| !s.idle_hint)
            .map(|s| describe(s))
            .collect();
        if !active.is_empty() {
            return Presence::Active { sessions: active };
        }
        // A hint without a time (never seen from logind, but cheap to guard
        // against) counts from the session's start, not from 1970.
        let since_ms = users
            .iter()
            .map(|s| match s.idle_since_usec {
                0 => s.started_usec,
                t => t,
            })
            .max()
            .unwrap_or(0)
            / 1000;
        return Presence::IdleSessions {
            since: Stamp(since_ms).rfc3339(),
            since_ms,
            sessions: users.iter().map(|s| describe(s)).collect(),
        };
    }
    let greeters: Vec<&SessionInfo> = sessions
        .iter()
        .filter(|s| s.is_graphical_greeter())
        .collect();
    let active: Vec<String> = greeters
        .iter()
        .filter(|s| s.idle_since_usec != 0 && !s.idle_hint)
        .map(|s| describe(s))
        .collect();
    if !active.is_empty() {
        return Presence::Active { sessions: active };
    }
    match greeters
        .iter()
        .max_by_key(|s| s.started_usec.max(s.idle_since_usec))
    {
        Some(g) => {
            let since_ms = g.started_usec.max(g.idle_since_usec) / 1000;
            Presence::Greeter {
                since: Stamp(since_ms).rfc3339(),
                since_ms,
                session: describe(g),
            }
        }
        None => Presence::Nobody,
    }
}

impl Presence {
    /// When the seat became idle (milliseconds since the epoch), as far as
    /// the sessions tell.
    pub fn since_ms(&self) -> Option<u64> {
        match self {
            Presence::IdleSessions { since_ms, .. } | Presence::Greeter { since_ms, .. } => {
                Some(*since_ms)
            }
            Presence::Active { .. } | Presence::Nobody => None,
        }
    }
}

/// The last input activity seen on the input devices (`event*` nodes).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InputActivity {
    pub dir: String,
    pub devices: usize,
    /// The latest access or change time of any device, or `null`.
    pub last_activity: Option<String>,
    #[serde(skip)]
    pub last_ms: Option<u64>,
    /// Why the devices could not be read, if they could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Scan `dir` for `event*` nodes and take the latest of their access and
/// change times. A missing directory is no activity (no input devices).
pub fn input_activity(dir: &Path) -> InputActivity {
    let mut out = InputActivity {
        dir: dir.display().to_string(),
        devices: 0,
        last_activity: None,
        last_ms: None,
        problem: None,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return out,
        Err(e) => {
            out.problem = Some(format!("cannot read {}: {e}", dir.display()));
            return out;
        }
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with("event") {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        out.devices += 1;
        let ms = |secs: i64, nsecs: i64| {
            (secs.max(0) as u64)
                .saturating_mul(1000)
                .saturating_add((nsecs.max(0) as u64) / 1_000_000)
        };
        let latest = ms(meta.atime(), meta.atime_nsec()).max(ms(meta.mtime(), meta.mtime_nsec()));
        out.last_ms = Some(out.last_ms.map_or(latest, |l| l.max(latest)));
    }
    out.last_activity = out.last_ms.map(|ms| Stamp(ms).rfc3339());
    out
}

/// Whether audio is moving: the same reading as `audio_idle` (each user's
/// PipeWire graph, and ALSA's procfs).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Audio {
    /// Neither PipeWire nor ALSA here: not considered.
    Absent,
    Idle,
    /// Clients moving audio: `pw-record (pid 61, alice) records on studio-in (pw-record)`.
    Playing {
        clients: Vec<String>,
    },
    Unreadable {
        problem: String,
    },
}

/// Audio as `audio_idle` found it: clients moving audio fail it (each
/// named, as its evidence lists them), an unreadable source is its error,
/// neither PipeWire nor ALSA here its skip.
pub fn audio(audio_idle: &GuardResult) -> Audio {
    match audio_idle.outcome {
        Outcome::Pass => Audio::Idle,
        Outcome::Skipped => Audio::Absent,
        Outcome::Error => Audio::Unreadable {
            problem: audio_idle.reason.clone(),
        },
        Outcome::Fail => Audio::Playing {
            clients: AUDIO_IDLE.evidence(audio_idle).map_or_else(
                || vec![audio_idle.reason.clone()],
                |e| e.running.iter().map(AudioClient::sentence).collect(),
            ),
        },
    }
}

/// CPU pressure (PSI `some avg60`, percent).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CpuPressure {
    /// No PSI in this kernel: not considered.
    Absent,
    Read {
        avg60: f64,
    },
    Unreadable {
        problem: String,
    },
}

/// CPU pressure as `cpu_load_safe` read it: PSI's `avg60` when it judged
/// by PSI; absent when the kernel has none (it judged by the load average);
/// its error otherwise.
pub fn cpu_pressure(cpu_load_safe: &GuardResult) -> CpuPressure {
    match CPU_LOAD_SAFE.evidence(cpu_load_safe) {
        Some(CpuEvidence::Psi { pressure_avg60, .. }) => CpuPressure::Read {
            avg60: pressure_avg60,
        },
        Some(CpuEvidence::Loadavg { .. }) => CpuPressure::Absent,
        None => CpuPressure::Unreadable {
            problem: cpu_load_safe.reason.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compositors() -> Vec<String> {
        mode_guards::SessionSettings::default().compositors
    }

    pub fn session(
        id: &str,
        class: &str,
        idle: bool,
        idle_since_s: u64,
        started_s: u64,
    ) -> SessionInfo {
        SessionInfo {
            id: id.into(),
            leader: 42,
            uid: 1000,
            user: "alice".into(),
            seat: "seat0".into(),
            session_type: "wayland".into(),
            class: class.into(),
            state: "active".into(),
            idle_hint: idle,
            idle_since_usec: idle_since_s * 1_000_000,
            started_usec: started_s * 1_000_000,
            remote: false,
            processes: vec![],
        }
    }

    #[test]
    fn an_active_user_session_is_named() {
        let s = [session("3", "user", false, 0, 100)];
        assert_eq!(
            presence(&s, &compositors()),
            Presence::Active {
                sessions: vec!["session 3 of alice (wayland, user)".into()]
            }
        );
    }

    #[test]
    fn idle_user_sessions_are_idle_since_the_latest_of_them() {
        let s = [
            session("3", "user", true, 500, 100),
            session("4", "user", true, 700, 100),
        ];
        let p = presence(&s, &compositors());
        assert!(matches!(p, Presence::IdleSessions { .. }), "{p:?}");
        assert_eq!(p.since_ms(), Some(700_000));
    }

    #[test]
    fn an_idle_hint_without_a_time_counts_from_the_session_start() {
        let s = [session("3", "user", true, 0, 400)];
        assert_eq!(presence(&s, &compositors()).since_ms(), Some(400_000));
    }

    #[test]
    fn one_active_user_session_among_idle_ones_keeps_the_seat_active() {
        let s = [
            session("3", "user", true, 500, 100),
            session("4", "user", false, 0, 100),
        ];
        assert!(matches!(
            presence(&s, &compositors()),
            Presence::Active { .. }
        ));
    }

    #[test]
    fn a_greeter_without_a_hint_is_idle_since_it_started() {
        let s = [session("c1", "greeter", false, 0, 900)];
        let p = presence(&s, &compositors());
        assert!(matches!(p, Presence::Greeter { .. }), "{p:?}");
        assert_eq!(p.since_ms(), Some(900_000));
    }

    #[test]
    fn a_greeter_that_manages_its_hint_is_judged_by_it() {
        let active = [session("c1", "greeter", false, 950, 900)];
        assert!(matches!(
            presence(&active, &compositors()),
            Presence::Active { .. }
        ));
        let idle = [session("c1", "greeter", true, 950, 900)];
        assert_eq!(presence(&idle, &compositors()).since_ms(), Some(950_000));
    }

    #[test]
    fn tty_and_closing_sessions_do_not_count() {
        let mut tty = session("5", "user", false, 0, 100);
        tty.session_type = "tty".into();
        let mut closing = session("6", "user", false, 0, 100);
        closing.state = "closing".into();
        assert_eq!(
            presence(&[tty.clone(), closing], &compositors()),
            Presence::Nobody
        );
        // The same TTY login running a compositor is someone at the desktop.
        tty.processes.push(mode_guards::SliceProcess {
            pid: 77,
            command: "Hyprland".into(),
        });
        assert!(matches!(
            presence(&[tty], &compositors()),
            Presence::Active { .. }
        ));
    }

    #[test]
    fn input_activity_is_the_latest_event_node_time() {
        let t = tempfile::tempdir().unwrap();
        for (name, secs) in [("event0", 1_000), ("event1", 2_000), ("mice", 9_000)] {
            let p = t.path().join(name);
            std::fs::write(&p, "").unwrap();
            let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
            let f = std::fs::File::options().write(true).open(&p).unwrap();
            f.set_times(
                std::fs::FileTimes::new()
                    .set_accessed(when)
                    .set_modified(when),
            )
            .unwrap();
        }
        let a = input_activity(t.path());
        assert_eq!(a.devices, 2, "only event* nodes count");
        assert_eq!(a.last_ms, Some(2_000_000));
        let none = input_activity(&t.path().join("absent"));
        assert_eq!((none.devices, none.last_ms, none.problem), (0, None, None));
    }

    fn result(outcome: Outcome, reason: &str, evidence: serde_json::Value) -> GuardResult {
        GuardResult {
            name: "guard".into(),
            severity: mode_guards::Severity::Soft,
            outcome,
            reason: reason.into(),
            evidence,
            duration_ms: 1,
        }
    }

    /// The audio figure is the guard's reading of a prepared ALSA tree.
    fn audio_of(roots: &mode_guards::Roots) -> Audio {
        let guard = mode_guards::AudioIdle::new(&mode_guards::AudioSettings::default(), roots);
        let v = mode_guards::Guard::check(&guard, &mode_guards::Facts::new("compute"));
        audio(&result(v.outcome, &v.reason, v.evidence))
    }

    #[test]
    fn running_alsa_substreams_are_named_and_absent_alsa_is_absent() {
        let t = tempfile::tempdir().unwrap();
        let roots = mode_guards::Roots {
            asound: t.path().join("asound"),
            user_runtime: t.path().join("run-user"),
            procfs: t.path().join("proc"),
            ..mode_guards::Roots::system()
        };
        assert_eq!(audio_of(&roots), Audio::Absent);
        let sub = t.path().join("asound/card0/pcm0p/sub0");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("status"), "closed\n").unwrap();
        assert_eq!(audio_of(&roots), Audio::Idle);
        std::fs::write(sub.join("status"), "state: RUNNING\nowner_pid   : 42\n").unwrap();
        assert_eq!(
            audio_of(&roots),
            Audio::Playing {
                clients: vec!["? (pid 42, ?) plays on card0 (card0/pcm0p/sub0)".into()]
            }
        );
        let unread = result(
            Outcome::Error,
            "cannot read ALSA substreams: EIO",
            serde_json::Value::Null,
        );
        assert_eq!(
            audio(&unread),
            Audio::Unreadable {
                problem: "cannot read ALSA substreams: EIO".into()
            }
        );
    }

    #[test]
    fn cpu_pressure_reads_avg60_and_absent_psi_is_absent() {
        let t = tempfile::tempdir().unwrap();
        let roots = mode_guards::Roots {
            procfs: t.path().to_path_buf(),
            ..mode_guards::Roots::system()
        };
        let cpu_of = |roots: &mode_guards::Roots| {
            let guard = mode_guards::CpuLoadSafe::new(&mode_guards::CpuSettings::default(), roots);
            let v = mode_guards::Guard::check(&guard, &mode_guards::Facts::new("compute"));
            cpu_pressure(&result(v.outcome, &v.reason, v.evidence))
        };
        // No PSI and no load average either: the guard's error.
        assert!(matches!(cpu_of(&roots), CpuPressure::Unreadable { .. }));
        std::fs::write(t.path().join("loadavg"), "0.50 0.40 0.30 1/100 42\n").unwrap();
        std::fs::write(t.path().join("stat"), "cpu 1 2 3\ncpu0 1 2 3\n").unwrap();
        assert_eq!(cpu_of(&roots), CpuPressure::Absent);
        std::fs::create_dir_all(t.path().join("pressure")).unwrap();
        std::fs::write(
            t.path().join("pressure/cpu"),
            "some avg10=70.00 avg60=55.50 avg300=10.00 total=1\n",
        )
        .unwrap();
        assert_eq!(cpu_of(&roots), CpuPressure::Read { avg60: 55.5 });
        std::fs::write(t.path().join("pressure/cpu"), "garbage\n").unwrap();
        assert!(matches!(cpu_of(&roots), CpuPressure::Unreadable { .. }));
    }
}
