//! `audio_idle`: no PCM substream is moving audio (nobody is playing or
//! recording), read from ALSA's procfs. Names each running substream with
//! card, direction and the owning process.

use serde_json::json;

use crate::probe::alsa::{self, AlsaView};
use crate::probe::process;
use crate::{Facts, Guard, Roots, Verdict};

pub const NAME: &str = "audio_idle";

pub struct AudioIdle {
    roots: Roots,
}

impl AudioIdle {
    pub fn new(roots: &Roots) -> Self {
        Self {
            roots: roots.clone(),
        }
    }
}

impl Guard for AudioIdle {
    fn name(&self) -> &str {
        NAME
    }

    fn check(&self, _facts: &Facts) -> Verdict {
        let open = match alsa::substreams(&self.roots.asound) {
            Ok(AlsaView::Absent) => {
                return Verdict::skipped(format!(
                    "no ALSA here ({} does not exist)",
                    self.roots.asound.display()
                ))
            }
            Ok(AlsaView::Open(open)) => open,
            Err(e) => return Verdict::error(format!("cannot read ALSA substreams: {e}")),
        };
        let running: Vec<serde_json::Value> = open
            .iter()
            .filter(|s| s.is_active())
            .map(|s| {
                let comm = s
                    .owner_pid
                    .and_then(|pid| process::command_name(&self.roots.procfs, pid))
                    .unwrap_or_else(|| "?".into());
                json!({
                    "substream": s.name,
                    "card": s.card_id,
                    "direction": s.direction,
                    "state": s.state,
                    "owner_pid": s.owner_pid,
                    "comm": comm,
                })
            })
            .collect();
        if running.is_empty() {
            return Verdict::pass(format!("no substream is running ({} open)", open.len()));
        }
        let names: Vec<String> = running
            .iter()
            .map(|r| {
                let owner = match r["owner_pid"].as_u64() {
                    Some(pid) => format!("{} (pid {pid})", r["comm"].as_str().unwrap_or("?")),
                    None => "an unknown process".into(),
                };
                format!(
                    "{owner} {} on {} ({})",
                    if r["direction"] == "capture" {
                        "records"
                    } else {
                        "plays"
                    },
                    r["card"].as_str().unwrap_or("?"),
                    r["substream"].as_str().unwrap_or("?"),
                )
            })
            .collect();
        Verdict::fail(
            format!("audio is in use: {}", names.join(", ")),
            json!({ "running": running }),
        )
    }
}
