//! ALSA's procfs (`/proc/asound/cardN/pcmMD/subK/status`): which PCM
//! substreams are running and which process owns each. A substream that is
//! closed reads `closed`; an open one lists `state:` and `owner_pid:`.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{read_text, ProbeError};

/// States in which a substream is moving audio (or finishing to).
pub const ACTIVE_STATES: [&str; 3] = ["RUNNING", "DRAINING", "XRUN"];

/// One open PCM substream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Substream {
    /// `card0/pcm0c/sub0`.
    pub name: String,
    /// The card's id (`/proc/asound/cardN/id`), e.g. `PCH`.
    pub card_id: String,
    /// `playback` or `capture`.
    pub direction: &'static str,
    /// `RUNNING`, `PREPARED`, ...
    pub state: String,
    pub owner_pid: Option<u32>,
}

impl Substream {
    pub fn is_active(&self) -> bool {
        ACTIVE_STATES.contains(&self.state.as_str())
    }
}

/// Whether ALSA exists here and what its substreams say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlsaView {
    /// No ALSA procfs at all (no sound support in this kernel).
    Absent,
    /// Every open substream (closed ones are left out).
    Open(Vec<Substream>),
}

/// Read every substream status under `asound`.
pub fn substreams(asound: &Path) -> Result<AlsaView, ProbeError> {
    let cards = match std::fs::read_dir(asound) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(AlsaView::Absent),
        Err(e) => return Err(ProbeError::read(asound, e)),
    };
    let mut open = Vec::new();
    for card in sorted_matching(cards, "card", is_card_name) {
        let card_name = file_name(&card);
        let card_id = std::fs::read_to_string(card.join("id"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| card_name.clone());
        let pcms = std::fs::read_dir(&card).map_err(|e| ProbeError::read(&card, e))?;
        for pcm in sorted_matching(pcms, "pcm", is_pcm_name) {
            let pcm_name = file_name(&pcm);
            let direction = if pcm_name.ends_with('c') {
                "capture"
            } else {
                "playback"
            };
            let subs = std::fs::read_dir(&pcm).map_err(|e| ProbeError::read(&pcm, e))?;
            for sub in sorted_matching(subs, "sub", |n| n[3..].parse::<u32>().is_ok()) {
                let status = sub.join("status");
                if let Some((state, owner_pid)) = parse_status(&status, &read_text(&status)?)? {
                    open.push(Substream {
                        name: format!("{card_name}/{pcm_name}/{}", file_name(&sub)),
                        card_id: card_id.clone(),
                        direction,
                        state,
                        owner_pid,
                    });
                }
            }
        }
    }
    Ok(AlsaView::Open(open))
}

fn is_card_name(n: &str) -> bool {
    n[4..].parse::<u32>().is_ok()
}

fn is_pcm_name(n: &str) -> bool {
    let rest = &n[3..];
    (rest.ends_with('p') || rest.ends_with('c'))
        && rest[..rest.len().saturating_sub(1)].parse::<u32>().is_ok()
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn sorted_matching(
    entries: std::fs::ReadDir,
    prefix: &str,
    accept: impl Fn(&str) -> bool,
) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(prefix) && n.len() > prefix.len() && accept(&n)
        })
        .map(|e| e.path())
        .collect();
    paths.sort();
    paths
}

/// `None` for a closed substream; the state and owner for an open one.
pub fn parse_status(path: &Path, text: &str) -> Result<Option<(String, Option<u32>)>, ProbeError> {
    if text.trim() == "closed" {
        return Ok(None);
    }
    let field = |key: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    let state = field("state")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ProbeError::malformed(path, "neither `closed` nor a `state:` line"))?;
    let owner_pid = match field("owner_pid") {
        None => None,
        Some(p) => Some(p.parse().map_err(|_| {
            ProbeError::malformed(path, format!("owner_pid is not a number: {p:?}"))
        })?),
    };
    Ok(Some((state, owner_pid)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_status_gives_state_and_owner() {
        let text = "state: RUNNING\nowner_pid   : 2211\ntrigger_time: 1.2\n";
        assert_eq!(
            parse_status(Path::new("s"), text).unwrap(),
            Some(("RUNNING".into(), Some(2211)))
        );
    }

    #[test]
    fn a_closed_status_is_not_open() {
        assert_eq!(parse_status(Path::new("s"), "closed\n").unwrap(), None);
    }

    #[test]
    fn garbage_is_malformed_naming_the_file() {
        let e = parse_status(Path::new("/x/status"), "hello\n").unwrap_err();
        assert!(e.to_string().contains("/x/status"), "{e}");
    }
}
