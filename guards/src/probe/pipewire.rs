//! PipeWire's graph, one per user whose PipeWire runs: `pw-dump` against
//! `RUNTIME/UID/pipewire-0`, cut at a hard deadline (a hung daemon is an
//! error, never "idle"), reduced to the streams and JACK clients that move
//! audio, each with its client's kernel-verified pid, its links and direction.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The socket name PipeWire listens on in a user's runtime directory.
pub const SOCKET: &str = "pipewire-0";

/// Why one user's graph could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    #[error("cannot run {program}: {problem}")]
    Spawn { program: String, problem: String },
    #[error("PipeWire did not answer within {} ms (is the daemon hung or stopped?)", .after.as_millis())]
    Deadline { after: Duration },
    #[error("pw-dump failed ({status}): {stderr}")]
    Failed { status: String, stderr: String },
    #[error("pw-dump printed something that is not a PipeWire graph: {0}")]
    Malformed(String),
}

/// Which way audio flows through a client node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// It takes audio in (records): input ports, or a `Stream/Input` class.
    Capture,
    /// It sends audio out (plays).
    Playback,
    /// Both (a JACK client with inputs and outputs).
    Duplex,
}

impl Direction {
    pub fn verb(self) -> &'static str {
        match self {
            Direction::Capture => "records",
            Direction::Playback => "plays",
            Direction::Duplex => "records and plays",
        }
    }
}

/// A client node that moves audio: a stream, or a JACK client (which has no
/// `media.class`), in state `running`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActiveNode {
    pub node_id: u64,
    /// `node.name` (`pw-record`, `ALSA Playback`, `jack_capture`).
    pub node: String,
    /// `media.class`, absent for JACK clients.
    pub media_class: Option<String>,
    /// `client.api` (`jack`, `alsa`) when the node says.
    pub api: Option<String>,
    pub direction: Direction,
    /// The client's pid as the kernel told PipeWire (`pipewire.sec.pid`,
    /// SO_PEERCRED), not what the client says of itself.
    pub pid: Option<u32>,
    /// `pipewire.sec.uid`, likewise.
    pub uid: Option<u32>,
    /// `application.process.binary`, self-reported (the command is read from
    /// /proc by pid wherever it can be).
    pub binary: Option<String>,
    /// The names of the nodes it is linked to (`studio-in`).
    pub linked_to: Vec<String>,
}

/// One user's graph, reduced to what `audio_idle` decides on.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Graph {
    /// Client nodes in state `running`.
    pub active: Vec<ActiveNode>,
    /// Every device node (`Audio/Sink`, `Audio/Source`, ...) by name, with
    /// the ALSA card id behind it when there is one.
    pub devices: Vec<(String, Option<String>)>,
}

impl Graph {
    /// The active nodes connected (through any chain of links) to the
    /// device named `device` (a node name or an ALSA card id); every active
    /// node when `device` is `None`.
    pub fn active_on(&self, device: Option<&str>, links: &Links) -> Vec<ActiveNode> {
        let Some(device) = device else {
            return self.active.clone();
        };
        let reach = links.reachable_from(device);
        self.active
            .iter()
            .filter(|n| reach.contains(&n.node_id))
            .cloned()
            .collect()
    }
}

/// The links of a graph, kept to follow a device to its clients.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Links {
    /// (output node, input node) of every link.
    pairs: Vec<(u64, u64)>,
    /// Node id by node name, and by the ALSA card id of device nodes.
    named: BTreeMap<String, Vec<u64>>,
}

impl Links {
    fn reachable_from(&self, device: &str) -> BTreeSet<u64> {
        let mut seen: BTreeSet<u64> = self
            .named
            .get(device)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let mut frontier: Vec<u64> = seen.iter().copied().collect();
        while let Some(at) = frontier.pop() {
            for &(a, b) in &self.pairs {
                for next in [(a == at).then_some(b), (b == at).then_some(a)]
                    .into_iter()
                    .flatten()
                {
                    if seen.insert(next) {
                        frontier.push(next);
                    }
                }
            }
        }
        seen
    }
}

/// The users whose PipeWire listens under `runtime` (`/run/user`): every
/// `UID/pipewire-0` that is a socket, by uid.
pub fn sockets(runtime: &Path) -> Vec<(u32, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(runtime) else {
        return Vec::new();
    };
    let mut out: Vec<(u32, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let uid = e.file_name().to_str()?.parse::<u32>().ok()?;
            let socket = e.path().join(SOCKET);
            let meta = std::fs::metadata(&socket).ok()?;
            meta.file_type().is_socket().then_some((uid, socket))
        })
        .collect();
    out.sort();
    out
}

/// One user's graph and its links, or why it could not be read.
pub type GraphReading = Result<(Graph, Links), GraphError>;

/// Read every listed user's graph at once with `pw_dump`, all cut at the
/// same deadline.
pub fn read_graphs(
    pw_dump: &Path,
    users: &[(u32, PathBuf)],
    deadline: Duration,
) -> Vec<(u32, GraphReading)> {
    let until = crate::Deadline::after(deadline);
    let started: Vec<(u32, Result<Running, GraphError>)> = users
        .iter()
        .map(|(uid, socket)| (*uid, Running::start(pw_dump, socket)))
        .collect();
    started
        .into_iter()
        .map(|(uid, running)| {
            let result = running
                .and_then(|r| r.finish(until, deadline))
                .and_then(|text| parse(&text));
            (uid, result)
        })
        .collect()
}

/// One `pw-dump` in flight, its output read by a thread so a full pipe never
/// stalls it.
struct Running {
    child: Child,
    stdout: thread::JoinHandle<Vec<u8>>,
    stderr: thread::JoinHandle<Vec<u8>>,
}

fn drain(mut from: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = from.read_to_end(&mut buf);
        buf
    })
}

impl Running {
    fn start(pw_dump: &Path, socket: &Path) -> Result<Self, GraphError> {
        let dir = socket.parent().unwrap_or(Path::new("/"));
        let spawn_error = |problem: String| GraphError::Spawn {
            program: pw_dump.display().to_string(),
            problem,
        };
        let mut child = Command::new(pw_dump)
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("PIPEWIRE_RUNTIME_DIR", dir)
            .env("PIPEWIRE_REMOTE", SOCKET)
            .env("PIPEWIRE_LOG_SYSTEMD", "false")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| spawn_error(e.to_string()))?;
        let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(spawn_error("no pipes to read it through".into()));
        };
        Ok(Self {
            child,
            stdout: drain(out),
            stderr: drain(err),
        })
    }

    fn finish(mut self, until: crate::Deadline, deadline: Duration) -> Result<String, GraphError> {
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if until.passed() => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err(GraphError::Deadline { after: deadline });
                }
                Ok(None) => thread::sleep(Duration::from_millis(2)),
                Err(e) => {
                    return Err(GraphError::Failed {
                        status: "wait failed".into(),
                        stderr: e.to_string(),
                    })
                }
            }
        };
        let stdout = self.stdout.join().unwrap_or_default();
        let stderr = self.stderr.join().unwrap_or_default();
        if !status.success() {
            return Err(GraphError::Failed {
                status: status.to_string(),
                stderr: String::from_utf8_lossy(&stderr).trim().to_string(),
            });
        }
        String::from_utf8(stdout).map_err(|_| GraphError::Malformed("not UTF-8".into()))
    }
}

fn prop<'a>(object: &'a Value, key: &str) -> Option<&'a Value> {
    object.get("info")?.get("props")?.get(key)
}

fn prop_str(object: &Value, key: &str) -> Option<String> {
    prop(object, key)
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn prop_u64(object: &Value, key: &str) -> Option<u64> {
    let v = prop(object, key)?;
    v.as_u64().or_else(|| v.as_str()?.parse().ok())
}

fn kind(object: &Value) -> &str {
    object
        .get("type")
        .and_then(Value::as_str)
        .and_then(|t| t.rsplit(':').next())
        .unwrap_or("")
}

/// Reduce `pw-dump`'s JSON (an array of objects) to a `Graph` and its links.
pub fn parse(text: &str) -> Result<(Graph, Links), GraphError> {
    let objects: Vec<Value> =
        serde_json::from_str(text).map_err(|e| GraphError::Malformed(e.to_string()))?;
    let id = |o: &Value| o.get("id").and_then(Value::as_u64);
    let clients: BTreeMap<u64, &Value> = objects
        .iter()
        .filter(|o| kind(o) == "Client")
        .filter_map(|o| Some((id(o)?, o)))
        .collect();
    let mut links = Links::default();
    let mut port_dirs: BTreeMap<u64, (bool, bool)> = BTreeMap::new();
    for o in &objects {
        match kind(o) {
            "Link" => {
                let info = o.get("info");
                let end = |k: &str| info.and_then(|i| i.get(k)).and_then(Value::as_u64);
                if let (Some(out), Some(inp)) = (end("output-node-id"), end("input-node-id")) {
                    links.pairs.push((out, inp));
                }
            }
            "Port" => {
                let dir = o
                    .get("info")
                    .and_then(|i| i.get("direction"))
                    .and_then(Value::as_str);
                if let Some(node) = prop_u64(o, "node.id") {
                    let e = port_dirs.entry(node).or_default();
                    match dir {
                        Some("input") => e.0 = true,
                        Some("output") => e.1 = true,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let mut graph = Graph::default();
    let mut names: BTreeMap<u64, String> = BTreeMap::new();
    for o in objects.iter().filter(|o| kind(o) == "Node") {
        let Some(node_id) = id(o) else { continue };
        let name = prop_str(o, "node.name").unwrap_or_else(|| format!("node {node_id}"));
        names.insert(node_id, name.clone());
        links.named.entry(name.clone()).or_default().push(node_id);
        let class = prop_str(o, "media.class");
        let api = prop_str(o, "client.api");
        let is_device = class.as_deref().is_some_and(|c| c.starts_with("Audio/"));
        if is_device {
            let card = prop_str(o, "api.alsa.card.id").or_else(|| prop_str(o, "alsa.card_name"));
            if let Some(card) = &card {
                links.named.entry(card.clone()).or_default().push(node_id);
            }
            graph.devices.push((name, card));
            continue;
        }
        let is_stream = class
            .as_deref()
            .is_some_and(|c| c.starts_with("Stream/") && c.ends_with("/Audio"));
        let is_jack = class.is_none() && api.as_deref() == Some("jack");
        let state = o
            .get("info")
            .and_then(|i| i.get("state"))
            .and_then(Value::as_str);
        if !(is_stream || is_jack) || state != Some("running") {
            continue;
        }
        let (ins, outs) = port_dirs.get(&node_id).copied().unwrap_or_default();
        let direction = match class.as_deref() {
            Some(c) if c.starts_with("Stream/Input") => Direction::Capture,
            Some(_) => Direction::Playback,
            None => match (ins, outs) {
                (true, true) => Direction::Duplex,
                (false, true) => Direction::Playback,
                _ => Direction::Capture,
            },
        };
        let client = prop_u64(o, "client.id").and_then(|c| clients.get(&c).copied());
        let from_client = |k: &str| {
            client
                .and_then(|c| prop_u64(c, k))
                .and_then(|v| u32::try_from(v).ok())
        };
        graph.active.push(ActiveNode {
            node_id,
            node: name,
            media_class: class,
            api: api.or_else(|| client.and_then(|c| prop_str(c, "client.api"))),
            direction,
            pid: from_client("pipewire.sec.pid"),
            uid: from_client("pipewire.sec.uid"),
            binary: client.and_then(|c| prop_str(c, "application.process.binary")),
            linked_to: Vec::new(),
        });
    }
    for node in &mut graph.active {
        let mut peers: BTreeSet<String> = BTreeSet::new();
        for &(a, b) in &links.pairs {
            let peer = if a == node.node_id {
                b
            } else if b == node.node_id {
                a
            } else {
                continue;
            };
            peers.insert(
                names
                    .get(&peer)
                    .cloned()
                    .unwrap_or_else(|| format!("node {peer}")),
            );
        }
        node.linked_to = peers.into_iter().collect();
    }
    Ok((graph, links))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64, state: &str, props: Value) -> Value {
        serde_json::json!({"id": id, "type": "PipeWire:Interface:Node", "info": {"state": state, "props": props}})
    }

    #[test]
    fn a_suspended_stream_and_a_device_are_not_active() {
        let dump = serde_json::json!([
            node(
                30,
                "running",
                serde_json::json!({"node.name": "studio-out", "media.class": "Audio/Sink"})
            ),
            node(
                46,
                "suspended",
                serde_json::json!({"node.name": "pw-record", "media.class": "Stream/Input/Audio"})
            ),
        ]);
        let (g, _) = parse(&dump.to_string()).unwrap();
        assert!(g.active.is_empty(), "{g:?}");
        assert_eq!(g.devices, [("studio-out".to_string(), None)]);
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(parse("{not json"), Err(GraphError::Malformed(_))));
    }
}
