//! `mode watch`: the machine's state now, then again at every change, for
//! status bars and scripts. Changes are waited for, never polled: inotify on
//! the state directory (a transition starting, its record, the desired mode)
//! and systemd's `PropertiesChanged` signals for the managed units (a unit
//! stopped by hand). Anyone may watch; nothing is written. `mode notify`
//! turns the same changes into desktop notifications.

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

/// `mode notify`: a desktop notification for each switch starting and
/// ending, until the session's notification service goes away (an error)
/// or the system bus does.
pub async fn notify(ctx: &Context, bus: &Bus) -> Result<(), Error> {
    let mut notifier = crate::systemd::Notifier::connect().await?;
    let mut last: Option<Snapshot> = None;
    let mut failure = None;
    watch(ctx, bus, async |s| {
        let said = last.as_ref().and_then(|l| news(l, s));
        last = Some(s.clone());
        let Some((summary, body, urgent)) = said else {
            return true;
        };
        // The notification service gone (the session ending) ends this too.
        match notifier.notify(&summary, &body, urgent).await {
            Ok(()) => true,
            Err(e) => {
                failure = Some(e);
                false
            }
        }
    })
    .await?;
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// What a desktop notification says about the step from `last` to `now`:
/// a switch starting, and its outcome; `None` for any other change.
pub fn news(last: &Snapshot, now: &Snapshot) -> Option<(String, String, bool)> {
    let started =
        now.observed == ObservedMode::Transitioning && last.observed != ObservedMode::Transitioning;
    // A record is new when its id or its outcome is: a transition's record
    // is written in progress first, then finished under the same id.
    let record = |s: &Snapshot| {
        s.transition
            .as_ref()
            .map(|t| (t.id.clone(), t.outcome.clone()))
    };
    if record(now) != record(last) {
        let t = now.transition.as_ref()?;
        let why: String = t
            .error
            .clone()
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect();
        return match t.outcome.as_str() {
            "in-progress" => Some((
                format!("Switching to {}", t.to),
                format!("asked by {}", t.requested_by),
                false,
            )),
            "noop" => None,
            "converged" => Some((
                format!("Now in {}", t.to),
                format!("{} -> {}, asked by {}", t.from, t.to, t.requested_by),
                false,
            )),
            "refused" => Some((format!("{} refused", t.to), why, true)),
            other => Some((format!("Switch to {} {other}", t.to), why, true)),
        };
    }
    started.then(|| {
        // The desired mode changes only once a switch converged: the
        // target is the running transition's, once its record is written.
        let running = now
            .transition
            .as_ref()
            .filter(|t| t.outcome == "in-progress")
            .map(|t| t.to.clone());
        let to = running
            .or_else(|| now.desired.map(|m| m.to_string()))
            .unwrap_or_else(|| "another mode".into());
        (format!("Switching to {to}"), now.reason.clone(), false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(observed: ObservedMode, id: &str, outcome: &str) -> Snapshot {
        Snapshot {
            observed,
            reason: "r".into(),
            desired: Some(Mode::Compute),
            transition: (!id.is_empty()).then(|| LastTransition {
                id: id.into(),
                from: "desktop".into(),
                to: "compute".into(),
                outcome: outcome.into(),
                requested_by: "cli uid=0".into(),
                error: Some("graphical_session_absent: session 2 of alice".into()),
            }),
            blockers: vec![],
            drift: vec![],
        }
    }

    #[test]
    fn news_is_a_start_an_outcome_or_nothing() {
        let before = snap(ObservedMode::Desktop, "t1", "converged");
        let moving = snap(ObservedMode::Transitioning, "t1", "converged");
        assert_eq!(
            news(&before, &moving).map(|n| n.0),
            Some("Switching to compute".into())
        );
        let refused = snap(ObservedMode::Desktop, "t2", "refused");
        let (summary, body, urgent) = news(&before, &refused).unwrap();
        assert_eq!(summary, "compute refused");
        assert!(body.contains("session 2 of alice") && urgent);
        let failed = snap(ObservedMode::Desktop, "t2", "failed");
        assert_eq!(
            news(&before, &failed).map(|n| n.0),
            Some("Switch to compute failed".into())
        );
        // The record of one transition: in progress, then converged.
        let started = snap(ObservedMode::Transitioning, "t3", "in-progress");
        assert_eq!(
            news(&before, &started).map(|n| n.0),
            Some("Switching to compute".into())
        );
        let done = snap(ObservedMode::Compute, "t3", "converged");
        assert_eq!(
            news(&started, &done).map(|n| n.0),
            Some("Now in compute".into())
        );
        let noop = snap(ObservedMode::Desktop, "t2", "noop");
        assert_eq!(news(&before, &noop), None);
        assert_eq!(news(&before, &before.clone()), None, "no change, no news");
    }
}
