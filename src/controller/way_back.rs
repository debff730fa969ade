//! `mode way-back`, the use case, run by mode-way-back.service while the
//! machine is in compute: the console message, the seat's devices read, and
//! a held key (told from a bump by src/idle/wayback.rs) turned into a
//! request for desktop (recorded as `input`), unless a hard guard would
//! refuse it now.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::idle::wayback::{key_event, Hold, EVENT_SIZE};
use crate::mode::Mode;
use crate::systemd::Bus;

use super::request::request_as;
use super::{dry_run, Context, Error};

/// Where agetty reads extra lines for its login prompt.
pub const ISSUE: &str = "/run/issue.d/50-mode-controller.issue";

/// The requester recorded for a switch asked at the seat.
pub const REQUESTER: &str = "input";

fn devices(path: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(path) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("event"))
            })
            .collect(),
        // A single node (or a FIFO standing in for one).
        Err(_) => vec![path.to_path_buf()],
    }
}

fn say(message: &str) {
    let written = std::fs::create_dir_all("/run/issue.d")
        .and_then(|()| std::fs::write(ISSUE, format!("{message}\n\n")));
    if let Err(e) = written {
        warn!("cannot write {ISSUE}: {e}");
    }
}

/// Read every device in its own thread; key events come back with the
/// time they were read.
fn listen(paths: Vec<PathBuf>) -> tokio::sync::mpsc::UnboundedReceiver<(u16, i32, Instant)> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    for path in paths {
        let tx = tx.clone();
        std::thread::spawn(move || loop {
            let Ok(mut dev) = std::fs::File::open(&path) else {
                warn!("cannot open {}", path.display());
                return;
            };
            let mut rec = [0u8; EVENT_SIZE];
            while dev.read_exact(&mut rec).is_ok() {
                if let Some((code, value)) = key_event(&rec) {
                    if tx.send((code, value, Instant::now())).is_err() {
                        return;
                    }
                }
            }
            // The end of a FIFO's writer (or an unplugged device): open
            // it again, after a moment.
            std::thread::sleep(Duration::from_millis(100));
        });
    }
    rx
}

/// Run until the unit is stopped (the machine leaves compute).
pub async fn way_back(ctx: &Context, bus: &Bus) -> Result<(), Error> {
    let cfg = &ctx.config.way_back;
    say(&cfg.message());
    let mut events = listen(devices(&cfg.devices));
    let mut hold = Hold::new(cfg.key, cfg.hold_ms);
    loop {
        let wait = hold
            .due_in(Instant::now())
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            got = events.recv() => match got {
                Some((code, value, at)) => hold.event(code, value, at),
                None => return Ok(()),
            },
            _ = tokio::time::sleep(wait) => {}
        }
        if !hold.fired(Instant::now()) {
            continue;
        }
        let dry = dry_run(ctx, bus, Mode::Desktop).await?;
        let blockers: Vec<String> = dry
            .guards
            .blockers()
            .map(|g| format!("{}: {}", g.name, g.reason))
            .collect();
        if !blockers.is_empty() {
            let why = blockers.join("; ");
            warn!("the key was held, but desktop would be refused now: {why}");
            say(&format!("{}\nNot now: {why}", cfg.message()));
            continue;
        }
        info!("the key was held at the seat: requesting desktop");
        say("The key was held: the desktop is coming back.");
        request_as(ctx, bus, Mode::Desktop, REQUESTER, false, Duration::ZERO).await?;
    }
}
