//! `mode watch`: the machine's state now, then again at every change, for
//! status bars and scripts. Changes are waited for, never polled: inotify on
//! the state directory (a transition starting, its record, the desired mode)
//! and systemd's `PropertiesChanged` signals for the managed units (a unit
//! stopped by hand). Anyone may watch; nothing is written.

use serde::Serialize;

use crate::mode::{Mode, ObservedMode};
use crate::state::StateWatch;
use crate::systemd::Bus;

use super::{Context, Error};

/// The last transition, in short.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastTransition {
    pub id: String,
    pub from: String,
    pub to: String,
    pub outcome: String,
    pub requested_by: String,
    pub error: Option<String>,
}

/// What one `mode watch` line says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    pub observed: ObservedMode,
    pub reason: String,
    pub desired: Option<Mode>,
    pub transition: Option<LastTransition>,
    /// The blockers of the last transition, when it was refused.
    pub blockers: Vec<String>,
    /// Drift, in one sentence each.
    pub drift: Vec<String>,
}

/// The state now, from the units and the state files (no budgets, no guards).
pub async fn snapshot(ctx: &Context, bus: &Bus) -> Result<Snapshot, Error> {
    let lock = ctx.state.lock_holder();
    let recorded = ctx.state.current().unwrap_or(None);
    let observed = ctx.observe(bus, lock.as_ref(), recorded).await?;
    let desired = ctx
        .state
        .desired()
        .unwrap_or(None)
        .or(Some(ctx.config.default_mode));
    let record = ctx.state.last_transition().unwrap_or(None);
    let blockers = match &record {
        Some(r) if r.outcome == crate::state::TransitionOutcome::Refused => {
            r.error.iter().cloned().collect()
        }
        _ => vec![],
    };
    Ok(Snapshot {
        observed: observed.mode,
        reason: observed.reason,
        desired,
        transition: record.map(|r| LastTransition {
            id: r.id,
            from: r.from,
            to: r.to,
            outcome: r.outcome.word().to_string(),
            requested_by: r.requested_by,
            error: r.error,
        }),
        blockers,
        drift: observed.drift.into_iter().map(|d| d.evidence).collect(),
    })
}

/// Call `emit` with the state now, then with each new state as it changes,
/// until `emit` returns false or the system bus goes away.
pub async fn watch(
    ctx: &Context,
    bus: &Bus,
    mut emit: impl AsyncFnMut(&Snapshot) -> bool,
) -> Result<(), Error> {
    // Subscribe before the first reading, so no change falls in between.
    let mut files = StateWatch::new(ctx.state.root())?;
    let (mut units, _) = bus.watch_units(&ctx.config.managed_units()).await?;
    let mut last = snapshot(ctx, bus).await?;
    if !emit(&last).await {
        return Ok(());
    }
    loop {
        tokio::select! {
            changed = files.changed() => changed?,
            unit = units.next_change() => {
                if unit.is_none() {
                    return Ok(());
                }
            }
        }
        let now = snapshot(ctx, bus).await?;
        if now != last {
            if !emit(&now).await {
                return Ok(());
            }
            last = now;
        }
    }
}

/// What a desktop notification says about the step from `last` to `now`:
/// a switch starting, and its outcome; `None` for any other change.
pub fn news(last: &Snapshot, now: &Snapshot) -> Option<(String, String, bool)> {
    let started =
        now.observed == ObservedMode::Transitioning && last.observed != ObservedMode::Transitioning;
    // A record is news once it is finished: it is written `in-progress`
    // before its first step, and finished under the same id.
    let finished = |s: &Snapshot| {
        s.transition
            .as_ref()
            .filter(|t| t.outcome != "in-progress")
            .map(|t| t.id.clone())
    };
    let new_record = finished(now).is_some() && finished(now) != finished(last);
    if new_record {
        let t = now.transition.as_ref()?;
        return Some(match t.outcome.as_str() {
            "converged" => (
                format!("Now in {}", t.to),
                format!("{} -> {}, asked by {}", t.from, t.to, t.requested_by),
                false,
            ),
            "noop" => return None,
            "refused" => (
                format!("{} refused", t.to),
                t.error
                    .clone()
                    .unwrap_or_default()
                    .chars()
                    .take(200)
                    .collect(),
                true,
            ),
            other => (
                format!("Switch to {} {other}", t.to),
                t.error
                    .clone()
                    .unwrap_or_default()
                    .chars()
                    .take(200)
                    .collect(),
                true,
            ),
        });
    }
    started.then(|| {
        // The desired mode changes only once a switch converged: the
        // target is the one the running transition recorded.
        let running = now
            .transition
            .as_ref()
            .filter(|t| t.outcome == "in-progress")
            .map(|t| t.to.clone());
        let to = running.unwrap_or_else(|| "another mode".into());
        (format!("Switching to {to}"), now.reason.clone(), false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(observed: ObservedMode, outcome: Option<&str>) -> Snapshot {
        Snapshot {
            observed,
            reason: String::new(),
            desired: Some(Mode::Desktop),
            transition: outcome.map(|o| LastTransition {
                id: "t2".into(),
                from: "desktop".into(),
                to: "compute".into(),
                outcome: o.into(),
                requested_by: "cli uid=0".into(),
                error: None,
            }),
            blockers: vec![],
            drift: vec![],
        }
    }

    #[test]
    fn a_journaled_switch_is_news_when_it_starts_and_when_it_finishes() {
        let idle = snap(ObservedMode::Desktop, None);
        let running = snap(ObservedMode::Transitioning, Some("in-progress"));
        let done = snap(ObservedMode::Compute, Some("converged"));
        let (title, _, _) = news(&idle, &running).expect("a start is news");
        assert_eq!(title, "Switching to compute", "the running record's target");
        assert_eq!(news(&running, &running), None);
        let (title, _, _) = news(&running, &done).expect("its end is news");
        assert_eq!(title, "Now in compute");
        assert_eq!(news(&done, &done), None);
    }
}
