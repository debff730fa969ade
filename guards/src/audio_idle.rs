//! `audio_idle`: nobody is playing or recording. Where PipeWire runs, each
//! user's graph decides (streams and JACK clients in state running, named by
//! the client's kernel-verified pid and command); ALSA's procfs covers raw
//! `hw:` use beside it and machines without PipeWire. Idle automation reads
//! audio through the same `read_audio`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::probe::alsa::{self, AlsaView};
use crate::probe::passwd::UserNames;
use crate::probe::pipewire::{self, Direction};
use crate::probe::process;
use crate::settings::AudioSettings;
use crate::spec::{Blocked, GuardSpec, HardWhen};
use crate::{Facts, Guard, Roots, Severity, Verdict};

pub const SPEC: GuardSpec<Evidence> = GuardSpec {
    name: "audio_idle",
    severity: Severity::Soft,
    hard_when: Some(HardWhen::LeavingStudio),
    after_teardown: None,
    build: |settings, roots| Arc::new(AudioIdle::new(&settings.audio, roots)),
    advice,
};

/// Every client moving audio, and the sources that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub running: Vec<AudioClient>,
    pub problems: Vec<String>,
}

fn advice(b: &Blocked<Evidence>) -> Option<String> {
    Some(if b.failed {
        let running = b.evidence.iter().flat_map(|e| &e.running);
        format!(
            "stop playback and recording in {} or wait until it finishes",
            crate::advice::processes(running.map(|c| (c.command.as_str(), c.pid)))
        )
    } else {
        "check that every user's PipeWire answers (systemctl --user -M USER@ status pipewire), or raise guard_settings.audio.graph_timeout_ms".into()
    })
}

/// Where a client was seen moving audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioSource {
    /// A node of a user's PipeWire graph.
    Pipewire,
    /// A PCM substream in ALSA's procfs.
    Alsa,
}

/// The command name of the PipeWire daemon: an ALSA substream it holds is
/// the graph's business, not a blocker of its own.
const PIPEWIRE_DAEMON: &str = "pipewire";

/// One client moving audio, as evidence names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioClient {
    /// `pipewire` (a node of a user's graph) or `alsa` (a PCM substream).
    pub source: AudioSource,
    pub pid: Option<u32>,
    /// `/proc/PID/comm`, or what the client said of itself, or `?`.
    pub command: String,
    pub user: String,
    /// The PipeWire node (`pw-record`) or ALSA substream (`card1/pcm0c/sub0`).
    pub node: String,
    /// `capture`, `playback` or `duplex`.
    pub direction: Direction,
    /// The client API (`jack`, `alsa`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// What it is connected to: PipeWire nodes, or the ALSA card.
    pub device: Vec<String>,
}

impl AudioClient {
    pub fn sentence(&self) -> String {
        let who = match self.pid {
            Some(pid) => format!("{} (pid {pid}, {})", self.command, self.user),
            None => format!("{} (pid unknown, {})", self.command, self.user),
        };
        let through = match &self.api {
            Some(api) if self.source == AudioSource::Pipewire => format!(" through {api}"),
            _ => String::new(),
        };
        let on = if self.device.is_empty() {
            String::new()
        } else {
            format!(" on {}", self.device.join(", "))
        };
        format!(
            "{who} {}{through}{on} ({})",
            self.direction.verb(),
            self.node
        )
    }
}

/// What audio is doing on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AudioReading {
    /// Users whose PipeWire listens, by uid.
    pub pipewire_users: Vec<u32>,
    /// Whether ALSA's procfs exists.
    pub alsa: bool,
    /// Every client moving audio.
    pub active: Vec<AudioClient>,
    /// Sources that could not be read (a hung PipeWire, unreadable ALSA).
    pub problems: Vec<String>,
}

impl AudioReading {
    /// Neither PipeWire nor ALSA is here: nothing can play or record.
    pub fn nothing_here(&self) -> bool {
        self.pipewire_users.is_empty() && !self.alsa
    }
}

/// Read every user's PipeWire graph and ALSA's substreams.
pub fn read_audio(settings: &AudioSettings, roots: &Roots) -> AudioReading {
    let users = UserNames::load(&roots.users);
    let mut reading = AudioReading::default();
    let sockets = pipewire::sockets(&roots.user_runtime);
    reading.pipewire_users = sockets.iter().map(|(uid, _)| *uid).collect();
    let deadline = std::time::Duration::from_millis(settings.graph_timeout_ms.max(1));
    for (uid, graph) in pipewire::read_graphs(&settings.pw_dump, &sockets, deadline) {
        let owner = users.name(uid);
        match graph {
            Err(e) => reading.problems.push(format!(
                "cannot read the PipeWire graph of {owner} (uid {uid}): {e}"
            )),
            Ok((graph, links)) => {
                for n in graph.active_on(settings.device.as_deref(), &links) {
                    let command = n
                        .pid
                        .and_then(|pid| process::command_name(&roots.procfs, pid))
                        .or(n.binary.clone())
                        .unwrap_or_else(|| "?".into());
                    reading.active.push(AudioClient {
                        source: AudioSource::Pipewire,
                        pid: n.pid,
                        command,
                        user: users.name(n.uid.unwrap_or(uid)),
                        node: n.node,
                        direction: n.direction,
                        api: n.api,
                        device: n.linked_to,
                    });
                }
            }
        }
    }
    match alsa::substreams(&roots.asound) {
        Ok(AlsaView::Absent) => {}
        Ok(AlsaView::Open(open)) => {
            reading.alsa = true;
            for s in open.iter().filter(|s| s.is_active()) {
                let who = s
                    .owner_pid
                    .map(|pid| process::identify(&roots.procfs, &users, pid));
                let held_by_pipewire = who.as_ref().is_some_and(|p| {
                    p.comm == PIPEWIRE_DAEMON
                        && p.uid.is_some_and(|u| reading.pipewire_users.contains(&u))
                });
                if held_by_pipewire {
                    continue;
                }
                if settings
                    .device
                    .as_deref()
                    .is_some_and(|d| d != s.card_id && !reading.pipewire_users.is_empty())
                {
                    // Naming the studio device narrows raw ALSA use to its card too.
                    continue;
                }
                reading.active.push(AudioClient {
                    source: AudioSource::Alsa,
                    pid: s.owner_pid,
                    command: who.as_ref().map_or("?".into(), |p| p.comm.clone()),
                    user: who.as_ref().map_or("?".into(), |p| p.user.clone()),
                    node: s.name.clone(),
                    direction: if s.direction == "capture" {
                        Direction::Capture
                    } else {
                        Direction::Playback
                    },
                    api: None,
                    device: vec![s.card_id.clone()],
                });
            }
        }
        Err(e) => reading
            .problems
            .push(format!("cannot read ALSA substreams: {e}")),
    }
    reading
}

pub struct AudioIdle {
    settings: AudioSettings,
    roots: Roots,
}

impl AudioIdle {
    pub fn new(settings: &AudioSettings, roots: &Roots) -> Self {
        Self {
            settings: settings.clone(),
            roots: roots.clone(),
        }
    }
}

/// The verdict on a reading: any client moving audio fails (every one
/// named, with any source that could not be read); otherwise an unreadable
/// source is an error, never a pass; `skipped` only with neither PipeWire
/// nor ALSA.
pub fn verdict(reading: &AudioReading, device: Option<&str>) -> Verdict {
    let unread = if reading.problems.is_empty() {
        String::new()
    } else {
        format!("; also {}", reading.problems.join("; "))
    };
    if !reading.active.is_empty() {
        let names: Vec<String> = reading.active.iter().map(AudioClient::sentence).collect();
        return SPEC.fail(
            format!("audio is in use: {}{unread}", names.join(", ")),
            &Evidence {
                running: reading.active.clone(),
                problems: reading.problems.clone(),
            },
        );
    }
    if !reading.problems.is_empty() {
        return Verdict::error(reading.problems.join("; "));
    }
    if reading.nothing_here() {
        return Verdict::skipped(
            "neither PipeWire (no /run/user/UID/pipewire-0) nor ALSA (no /proc/asound) is here",
        );
    }
    let mut read = Vec::new();
    if !reading.pipewire_users.is_empty() {
        read.push(format!(
            "the PipeWire graph of {} user(s)",
            reading.pipewire_users.len()
        ));
    }
    if reading.alsa {
        read.push("ALSA's substreams".to_string());
    }
    let scope = device.map_or(String::new(), |d| format!(" on {d}"));
    Verdict::pass(format!(
        "nothing plays or records{scope} ({} read)",
        read.join(" and ")
    ))
}

impl Guard for AudioIdle {
    fn name(&self) -> &str {
        SPEC.name
    }

    fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.settings.graph_timeout_ms)
            + std::time::Duration::from_secs(2)
    }

    fn check(&self, _facts: &Facts) -> Verdict {
        verdict(
            &read_audio(&self.settings, &self.roots),
            self.settings.device.as_deref(),
        )
    }
}
