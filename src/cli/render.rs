//! Turning results into text for people: status, transition outcomes,
//! dry-runs and the prose of `explain`. JSON output is serde's, elsewhere.

use std::fmt::Write;

use mode_guards::{advice, GuardResult, Outcome};

use crate::clock::Stamp;
use crate::controller::{DryRun, Snapshot, Status};
use crate::mode::Mode;
use crate::observe::Observation;
use crate::state::{TransitionOutcome, TransitionRecord};

fn units_line(o: &Observation) -> String {
    o.units
        .iter()
        .map(|u| format!("{} {}", u.label(), u.active_state))
        .collect::<Vec<_>>()
        .join(", ")
}

fn guard_line(g: &GuardResult) -> String {
    let sev = match g.severity {
        mode_guards::Severity::Hard => "hard",
        mode_guards::Severity::Soft => "soft",
    };
    format!(
        "{:<7} {:<25} ({sev}) {}",
        g.outcome.word(),
        g.name,
        g.reason
    )
}

pub fn status(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "observed:   {} ({})",
        s.observed.mode, s.observed.reason
    );
    for d in &s.observed.drift {
        let _ = writeln!(out, "drift:      {}; {}", d.evidence, d.clears);
    }
    let desired = s
        .desired
        .map_or("unreadable".to_string(), |m| m.to_string());
    let _ = writeln!(out, "desired:    {desired} ({})", s.desired_source);
    let current = s.current.map_or("none yet".to_string(), |m| m.to_string());
    let _ = writeln!(out, "recorded:   {current}");
    if let Some(l) = &s.lock {
        let _ = writeln!(out, "lock:       held by {l}");
    }
    if let Some(t) = &s.last_transition {
        let _ = writeln!(out, "last:       {}", transition_summary(t));
    }
    if let (Some(at), Some(target)) = (&s.blocking_as_of, &s.blocking_target) {
        let _ = writeln!(
            out,
            "blocked:    the request for {target} was refused; as of {} (`mode dry-run {target}` checks again):",
            Stamp::local_text(at)
        );
    }
    for g in &s.blocking_guards {
        let _ = writeln!(out, "blocking:   {}: {}", g.name, g.reason);
    }
    let _ = writeln!(out, "display:    {}", s.display_manager);
    if let Some(slurm) = &s.slurm {
        let _ = writeln!(out, "slurm:      {slurm}");
    }
    let placement: Vec<String> = s
        .capability_placement
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| match v.as_str() {
                    Some(text) => format!("{k}={text}"),
                    None => format!("{k}={v}"),
                })
                .collect()
        })
        .unwrap_or_default();
    let _ = writeln!(out, "placement:  {}", placement.join(" "));
    let _ = writeln!(out, "units:      {}", units_line(&s.observed));
    for (slice, budget) in &s.budgets {
        let text = serde_json::to_string(budget).unwrap_or_default();
        let _ = writeln!(out, "budget:     {slice} {text}");
    }
    for p in &s.problems {
        let _ = writeln!(out, "problem:    {p}");
    }
    out
}

pub fn transition_summary(t: &TransitionRecord) -> String {
    let mut line = format!(
        "{} {} -> {} at {} in {} ms (transition {}, by {})",
        t.outcome.word(),
        t.from,
        t.to,
        Stamp::local_text(&t.started_at),
        t.duration_ms,
        t.id,
        t.requested_by
    );
    if let Some(e) = &t.error {
        let _ = write!(line, ": {e}");
    }
    if let Some(r) = &t.rollback {
        let _ = write!(line, "; rollback to {} {}", r.to, r.outcome.word());
    }
    line
}

/// The stdout of `request` / `apply`, and the one stderr line on failure.
pub fn transition(t: &TransitionRecord, state_dir: &std::path::Path) -> (String, Option<String>) {
    let mut out = String::new();
    let _ = writeln!(out, "{}", transition_summary(t));
    for s in &t.steps {
        let err = s
            .error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:<6} {} {} ({} ms){err}",
            s.outcome.word(),
            s.action,
            s.unit,
            s.duration_ms
        );
        if let Some(n) = &s.note {
            let _ = writeln!(out, "         {n}");
        }
        for j in &s.jobs {
            let outcome = serde_json::to_value(j.outcome).unwrap_or_default();
            let _ = writeln!(
                out,
                "         job {} (pids {:?}, {}): {} after {} ms",
                j.unit,
                j.pids,
                j.command,
                outcome.as_str().unwrap_or("?"),
                j.duration_ms
            );
        }
        for w in &s.warnings {
            let _ = writeln!(out, "         warning: {w}");
        }
    }
    for g in t.guards.iter().filter(|g| g.outcome != Outcome::Pass) {
        let _ = writeln!(out, "  guard {}", guard_line(g));
    }
    let record = state_dir.join("last-transition.json");
    let err = match t.outcome {
        TransitionOutcome::Converged | TransitionOutcome::Noop => None,
        TransitionOutcome::Refused => {
            let hints: Vec<String> = t
                .guards
                .iter()
                .filter(|g| g.blocks())
                .filter_map(advice)
                .collect();
            Some(format!(
                "refused: {}; nothing was changed. To clear: {}",
                t.error.as_deref().unwrap_or("a hard guard failed"),
                hints.join("; ")
            ))
        }
        TransitionOutcome::Failed => {
            let back = match &t.rollback {
                Some(r) if r.outcome == TransitionOutcome::Converged => {
                    format!("rolled back to {}", r.to)
                }
                Some(r) => format!("rollback to {} also failed; run `mode reconcile`", r.to),
                None => "no rollback was possible; run `mode reconcile`".into(),
            };
            Some(format!(
                "failed: {}; {back} (details in {})",
                t.error.as_deref().unwrap_or("a step failed"),
                record.display()
            ))
        }
        TransitionOutcome::InProgress => Some(format!(
            "transition {} to {} did not finish ({} steps done); `sudo mode reconcile` completes its record and converges",
            t.id,
            t.to,
            t.steps.len()
        )),
    };
    (out, err)
}

pub fn dry_run(d: &DryRun) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "observed: {} ({})", d.observed.mode, d.observed.reason);
    let _ = writeln!(out, "plan {} -> {}:", d.plan.from, d.plan.to);
    if d.plan.steps.is_empty() {
        let _ = writeln!(out, "  (nothing to do)");
    }
    for (i, s) in d.plan.steps.iter().enumerate() {
        let _ = writeln!(out, "  {}. {}", i + 1, s.describe());
    }
    let _ = writeln!(out, "guards:");
    for g in &d.guards.guards {
        let _ = writeln!(out, "  {}", guard_line(g));
        if let Some(a) = advice(g) {
            let _ = writeln!(out, "          -> {a}");
        }
    }
    let _ = writeln!(out, "would: {}", d.would);
    out
}

/// `mode explain`: the classification in prose, then (with a mode) the plan
/// and what blocks it.
pub fn explain(o: &Observation, dry: Option<&DryRun>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "This machine is in {} mode because {}.",
        o.mode, o.reason
    );
    for d in &o.drift {
        let _ = writeln!(
            out,
            "But it drifted: {}. To clear it: {}.",
            d.evidence, d.clears
        );
    }
    let _ = writeln!(out, "Unit states read from systemd: {}.", units_line(o));
    let Some(d) = dry else {
        let _ = writeln!(
            out,
            "Run `mode explain MODE` to see what switching to MODE would do."
        );
        return out;
    };
    let to: Mode = d.plan.to;
    if d.plan.steps.is_empty() {
        let _ = writeln!(
            out,
            "It is already in {to} mode: a request for {to} changes nothing."
        );
        return out;
    }
    let _ = writeln!(out, "\nTo switch to {to}, the controller would, in order:");
    for (i, s) in d.plan.steps.iter().enumerate() {
        let _ = writeln!(out, "  {}. {}", i + 1, s.describe());
    }
    let _ = writeln!(
        out,
        "then check that the machine really is in {to} mode, and go back to {} if any step fails.",
        d.observed.mode
    );
    let blockers: Vec<&GuardResult> = d.guards.blockers().collect();
    let warnings: Vec<&GuardResult> = d
        .guards
        .guards
        .iter()
        .filter(|g| !g.blocks() && matches!(g.outcome, Outcome::Fail | Outcome::Error))
        .collect();
    if blockers.is_empty() {
        let _ = writeln!(
            out,
            "\nNo hard guard blocks it now ({} guards checked).",
            d.guards.guards.len()
        );
    } else {
        let _ = writeln!(out, "\nIt would be refused now. What blocks it:");
        for g in blockers {
            let _ = writeln!(out, "  - {}: {}", g.name, g.reason);
            if let Some(a) = advice(g) {
                let _ = writeln!(out, "    To clear it: {a}.");
            }
        }
    }
    for g in warnings {
        let _ = writeln!(
            out,
            "Warning (soft, does not block): {}: {}",
            g.name, g.reason
        );
    }
    out
}

/// One `mode watch` line in words.
pub fn watch_line(s: &Snapshot) -> String {
    let mut line = format!("{} ({})", s.observed, s.reason);
    if let Some(d) = s.desired {
        line.push_str(&format!("; desired {d}"));
    }
    if let Some(t) = &s.transition {
        line.push_str(&format!(
            "; last {} {} -> {} ({})",
            t.outcome, t.from, t.to, t.id
        ));
    }
    for b in &s.blockers {
        line.push_str(&format!("; blocked: {b}"));
    }
    for d in &s.drift {
        line.push_str(&format!("; drift: {d}"));
    }
    line
}

/// One `mode watch --json` line: the snapshot plus the fields a waybar
/// custom module with `return-type: json` reads (a CSS class per mode).
pub fn watch_json(s: &Snapshot) -> serde_json::Value {
    let mut doc = serde_json::to_value(s).unwrap_or_default();
    let word = s.observed.word();
    let class = if s.drift.is_empty() {
        serde_json::json!(word)
    } else {
        serde_json::json!([word, "drift"])
    };
    let tooltip = watch_line(s);
    if let Some(o) = doc.as_object_mut() {
        o.insert("text".into(), word.into());
        o.insert("alt".into(), word.into());
        o.insert("class".into(), class);
        o.insert("tooltip".into(), tooltip.into());
    }
    doc
}
