//! The read-only commands: `status`, `current`, `desired`, `dry-run` (and
//! the data `explain` turns into prose). Anyone may run them; corrupt state
//! files are reported as problems next to everything that could still be
//! read, and make status end with the environment's exit code.

use std::collections::BTreeMap;

use futures_util::future::join_all;
use serde::Serialize;

use mode_guards::{GuardReport, GuardResult};

use crate::config::SliceBudget;
use crate::mode::{Mode, ObservedMode};
use crate::observe::{Drift, Observation};
use crate::plan::{plan_clearing, with_missing_starts, Plan};
use crate::state::{LockHolder, TransitionOutcome, TransitionRecord};
use crate::systemd::Bus;

use super::evaluate::evaluate;
use super::{Context, Error, Exit};

#[derive(Debug, Serialize)]
pub struct Status {
    pub observed: Observation,
    pub desired: Option<Mode>,
    /// `recorded` or `default` (nothing requested yet).
    pub desired_source: &'static str,
    /// The `current` file: the last mode the controller verified.
    pub current: Option<ObservedMode>,
    pub lock: Option<LockHolder>,
    pub last_transition: Option<TransitionRecord>,
    /// The blockers of the last refusal, when that is the last transition;
    /// they were true when evaluated (`blocking_as_of`, for
    /// `blocking_target`), and `mode dry-run` checks them again.
    pub blocking_guards: Vec<GuardResult>,
    pub blocking_as_of: Option<String>,
    pub blocking_target: Option<String>,
    /// Where each capability runs, derived from the configuration now.
    pub capability_placement: serde_json::Value,
    /// The display manager the modes start and stop, in words.
    pub display_manager: String,
    /// This machine's Slurm node as slurmctld sees it (with the integration on).
    pub slurm: Option<String>,
    /// The budget each slice has now, read back from systemd.
    pub budgets: BTreeMap<String, SliceBudget>,
    /// State files that could not be read, each naming the file.
    pub problems: Vec<String>,
}

fn keep<T>(
    problems: &mut Vec<String>,
    r: Result<Option<T>, crate::state::StateError>,
) -> Option<T> {
    r.unwrap_or_else(|e| {
        problems.push(e.to_string());
        None
    })
}

async fn slurm_words(ctx: &Context) -> Option<String> {
    let slurm = crate::integrations::slurm::Slurm::new(ctx.config.integrations.slurm.as_ref()?);
    Some(match slurm.node_state().await {
        Ok(n) => format!("node {}: {}", slurm.node, n.words()),
        Err(e) => format!("node {}: {e}", slurm.node),
    })
}

/// The desired mode and where it came from.
pub fn desired_mode(ctx: &Context) -> Result<(Mode, &'static str), Error> {
    Ok(match ctx.state.desired()? {
        Some(m) => (m, "recorded"),
        None => (ctx.config.default_mode, "default"),
    })
}

impl Status {
    /// How `mode status` ends: a state file that could not be read (or a
    /// transition interrupted) is the machine's problem, exit 7, with the
    /// first of them as the line.
    pub fn exit(&self) -> (Exit, Option<String>) {
        match self.problems.first() {
            Some(first) => (
                Exit::Environment,
                Some(format!(
                    "{first}; `sudo mode reconcile` or a new request rewrites it"
                )),
            ),
            None => (Exit::Success, None),
        }
    }
}

/// The live classification, with the lock and the recorded mode as the
/// machine has them now (`mode current`).
pub async fn current(ctx: &Context, bus: &Bus) -> Result<Observation, Error> {
    let lock = ctx.state.lock_holder();
    let recorded = ctx.state.current().unwrap_or(None);
    ctx.observe(bus, lock.as_ref(), recorded).await
}

/// What `mode explain [MODE]` puts into prose.
#[derive(Debug, Serialize)]
pub struct Explanation {
    pub observed: Observation,
    /// What a transition to MODE would do, when one was named.
    pub dry_run: Option<DryRun>,
}

pub async fn explain(ctx: &Context, bus: &Bus, to: Option<Mode>) -> Result<Explanation, Error> {
    let observed = current(ctx, bus).await?;
    let dry_run = match to {
        Some(m) => Some(dry_run(ctx, bus, m).await?),
        None => None,
    };
    Ok(Explanation { observed, dry_run })
}

pub async fn status(ctx: &Context, bus: &Bus) -> Result<Status, Error> {
    let mut problems = Vec::new();
    let lock = ctx.state.lock_holder();
    let current = keep(&mut problems, ctx.state.current());
    let mut observed = ctx.observe(bus, lock.as_ref(), current).await?;
    if observed.mode == ObservedMode::Compute {
        if let Some(holders) = super::evaluate::display_gpu_holders(ctx).await {
            observed.drift.push(Drift {
                kind: "gpu-holder",
                unit: None,
                evidence: format!("the display GPU is held in compute: {holders}"),
                clears:
                    "the holder exits or is stopped by its owner; the controller never kills it"
                        .into(),
            });
        }
    }
    let (desired, desired_source) = match ctx.state.desired() {
        Ok(Some(m)) => (Some(m), "recorded"),
        Ok(None) => (Some(ctx.config.default_mode), "default"),
        Err(e) => {
            problems.push(e.to_string());
            (None, "unreadable")
        }
    };
    let last_transition = keep(&mut problems, ctx.state.last_transition());
    if let Some(t) = &last_transition {
        if t.outcome == TransitionOutcome::InProgress && lock.is_none() {
            problems.push(format!(
                "transition {} to {} was interrupted after {} step(s) (nothing holds the lock); `sudo mode reconcile` completes its record and converges",
                t.id,
                t.to,
                t.steps.len()
            ));
        }
    }
    let report: Option<GuardReport> = keep(&mut problems, ctx.state.last_guards());
    let refused_last = last_transition
        .as_ref()
        .filter(|t| t.outcome == TransitionOutcome::Refused);
    let (blocking_guards, blocking_as_of, blocking_target) = match (report, refused_last) {
        // The report of that very refusal: it was evaluated after it began.
        (Some(r), Some(t)) if r.target == t.to && r.evaluated_at >= t.started_at => {
            let blockers = r.blockers().cloned().collect();
            (blockers, Some(r.evaluated_at), Some(r.target))
        }
        _ => (vec![], None, None),
    };
    let capability_placement = ctx.config.placement_document();
    let slices = ctx.config.budgeted_slices();
    let read = join_all(slices.iter().map(|s| bus.slice_budget(s))).await;
    let mut budgets = BTreeMap::new();
    for (slice, budget) in slices.into_iter().zip(read) {
        budgets.insert(slice, budget?);
    }
    Ok(Status {
        observed,
        desired,
        desired_source,
        current,
        lock,
        last_transition,
        blocking_guards,
        blocking_as_of,
        blocking_target,
        capability_placement,
        display_manager: ctx.display_manager_words(),
        slurm: slurm_words(ctx).await,
        budgets,
        problems,
    })
}

#[derive(Debug, Serialize)]
pub struct DryRun {
    pub observed: Observation,
    pub plan: Plan,
    pub guards: GuardReport,
    pub would: &'static str,
}

/// What `mode apply MODE` would do now, changing nothing.
pub async fn dry_run(ctx: &Context, bus: &Bus, to: Mode) -> Result<DryRun, Error> {
    let lock = ctx.state.lock_holder();
    let recorded = ctx.state.current().unwrap_or(None);
    let observed = ctx.observe(bus, lock.as_ref(), recorded).await?;
    let the_plan = with_missing_starts(
        plan_clearing(observed.mode, to, &ctx.config, &observed.strays()),
        &ctx.config,
        &observed.profile_units_not_running(to, &ctx.config),
    );
    let guards = if the_plan.is_noop() {
        GuardReport {
            evaluated_at: crate::clock::Stamp::now().rfc3339(),
            target: to.word().into(),
            guards: vec![],
        }
    } else {
        evaluate(ctx, bus, &the_plan).await?
    };
    let would = if lock.is_some() {
        "wait: another transition is running"
    } else if the_plan.is_noop() {
        "do nothing: already there"
    } else if guards.blockers().next().is_some() {
        "refuse"
    } else {
        "switch"
    };
    Ok(DryRun {
        observed,
        plan: the_plan,
        guards,
        would,
    })
}
