//! The settle step: a switch is reached only when what it started stays up.
//! Every service the switch's jobs started is watched through systemd's
//! `PropertiesChanged` signals for the settle window (a `Type=simple`
//! workload that dies a second after its start job finished fails the
//! switch), and a unit with a readiness check must answer its URL with 2xx
//! within the check's timeout; the step records each unit's time to ready.

use std::time::{Duration, Instant};

use mode_guards::probe::http::{self, HttpUrl};

use crate::config::Readiness;
use crate::mode::Mode;
use crate::state::ReadyRecord;
use crate::systemd::Bus;

use super::steps::units_of_mode;
use super::Context;

/// How often a readiness URL is asked, and how long one answer may take.
const READY_POLL: Duration = Duration::from_millis(200);
const READY_ANSWER: Duration = Duration::from_millis(1000);

/// What the step found: a note for the record, each unit's time to ready,
/// or why the mode was not reached.
pub struct Settled {
    pub note: String,
    pub ready: Vec<ReadyRecord>,
}

struct Pending<'a> {
    unit: String,
    check: &'a Readiness,
    url: HttpUrl,
    deadline: Instant,
}

/// Why a watched unit went down, in the words of the failed-step error.
async fn died(bus: &Bus, unit: &str, state: &str, since: Instant) -> String {
    let after = since.elapsed().as_millis();
    let why = bus
        .failure_reason(unit)
        .await
        .map(|r| format!("{r}; "))
        .unwrap_or_default();
    format!("{unit} went {state} {after} ms into the settle window ({why}see journalctl -u {unit})")
}

/// Ask one readiness URL, off the async thread.
async fn answers(url: &HttpUrl) -> Result<(), String> {
    let url = url.clone();
    let got = tokio::task::spawn_blocking(move || http::get(&url, READY_ANSWER))
        .await
        .map_err(|e| format!("the readiness probe did not run: {e}"))?;
    match got {
        Ok(r) if (200..300).contains(&r.status) => Ok(()),
        Ok(r) => Err(format!("answered HTTP {}", r.status)),
        Err(e) => Err(e.to_string()),
    }
}

/// Settle the services of mode `to` in `started` (unit names as systemd
/// gave them).
pub async fn settle(
    ctx: &Context,
    bus: &Bus,
    to: Mode,
    started: &[String],
    window: Duration,
) -> Result<Settled, String> {
    let t0 = Instant::now();
    let ours = units_of_mode(ctx, bus, to).await?;
    let mut services = Vec::new();
    for unit in started {
        // A oneshot ends by design; what else of the mode ends has died.
        if unit.ends_with(".service")
            && ours.contains(unit)
            && !services.contains(unit)
            && bus.service_type(unit).await.as_deref() != Some("oneshot")
        {
            services.push(unit.clone());
        }
    }
    services.sort();
    if services.is_empty() {
        return Ok(Settled {
            note: "no service was started: nothing to watch".into(),
            ready: vec![],
        });
    }
    let (mut watch, states) = bus
        .watch_units(&services)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(down) = states
        .iter()
        .find(|u| !matches!(u.active_state.as_str(), "active" | "reloading"))
    {
        return Err(died(bus, &down.unit, &down.active_state, t0).await);
    }
    let mut pending = Vec::new();
    for unit in &services {
        if let Some(check) = ctx.config.readiness.get(unit) {
            let url = HttpUrl::parse(&check.http).map_err(|e| e.to_string())?;
            pending.push(Pending {
                unit: unit.clone(),
                check,
                url,
                // Checked (validation bounds it far below overflow).
                deadline: t0
                    .checked_add(Duration::from_secs(check.timeout_secs))
                    .unwrap_or(t0),
            });
        }
    }
    let window_end = t0.checked_add(window).unwrap_or(t0);
    let mut ready = Vec::new();
    loop {
        let mut still = Vec::with_capacity(pending.len());
        for p in pending {
            match answers(&p.url).await {
                Ok(()) => ready.push(ReadyRecord {
                    unit: p.unit,
                    check: p.check.http.clone(),
                    ready_ms: u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX),
                }),
                Err(e) if Instant::now() >= p.deadline => {
                    return Err(format!(
                        "{} was not ready within {} s: {} {e}",
                        p.unit, p.check.timeout_secs, p.check.http
                    ));
                }
                Err(_) => still.push(p),
            }
        }
        pending = still;
        let now = Instant::now();
        if pending.is_empty() && now >= window_end {
            break;
        }
        let wake = if pending.is_empty() {
            window_end
        } else {
            now + READY_POLL
        };
        tokio::select! {
            exit = watch.next_exit() => {
                return Err(match exit {
                    Some((unit, state)) => died(bus, &unit, &state, t0).await,
                    None => "the system bus closed while watching the started services".into(),
                });
            }
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {}
        }
    }
    let mut note = format!(
        "{} stayed active for {} ms: {}",
        plural(services.len(), "service"),
        window.as_millis(),
        services.join(", ")
    );
    for r in &ready {
        note.push_str(&format!(
            "; {} ready after {} ms ({})",
            r.unit, r.ready_ms, r.check
        ));
    }
    Ok(Settled { note, ready })
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}
