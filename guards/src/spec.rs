//! `GuardSpec`: everything the program knows about one built-in guard, in
//! one value kept in that guard's file: its name, the severity it has where
//! a mode checks it by default, when the controller counts it hard whatever
//! the mode says, whether the plan checks it again after teardown, how it is
//! built, and its advice. The evidence is a serde type `E`: `check` writes
//! it through the spec (`SPEC.fail(reason, &evidence)`) and the advice reads
//! the same type back, so renaming a field breaks the build, not the advice.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Guard, GuardResult, GuardSettings, Outcome, Roots, Severity, Verdict};

/// How a spec builds its guard from the settings and the roots.
pub type Build = fn(&GuardSettings, &Roots) -> Arc<dyn Guard>;

/// Where the machine comes from can make a guard hard whatever the target
/// mode configures (off stays off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HardWhen {
    /// Leaving studio-local: a recording must not be cut.
    LeavingStudio,
    /// Leaving compute for a mode whose job policy is `refuse`.
    LeavingComputeUnderRefuse,
}

/// What the advice of a guard reads: a failing or erroring result, with
/// its evidence read back as the type its check wrote (`None`: there was
/// none, as when a guard could not decide before it gathered any, or it does
/// not have that shape).
#[derive(Debug)]
pub struct Blocked<'a, E> {
    /// `true` for `fail`, `false` for `error`.
    pub failed: bool,
    pub reason: &'a str,
    pub evidence: Option<E>,
}

/// One built-in guard, with its evidence type `E`.
pub struct GuardSpec<E> {
    /// The stable name (contract.md, `last-guards.json`).
    pub name: &'static str,
    /// Its severity where the defaults check it.
    pub severity: Severity,
    /// When it counts as hard whatever the mode configures.
    pub hard_when: Option<HardWhen>,
    /// The form the plan checks again, as hard, after a switch's teardown
    /// (`None`: it is checked before the switch only).
    pub after_teardown: Option<Build>,
    pub build: Build,
    /// What the user can do, for a failing or erroring result; `None` gives
    /// the generic sentence (`advice.rs`).
    pub advice: fn(&Blocked<E>) -> Option<String>,
}

impl<E: Serialize> GuardSpec<E> {
    /// A verdict carrying `evidence` as this guard's evidence type.
    pub fn verdict(&self, outcome: Outcome, reason: impl Into<String>, evidence: &E) -> Verdict {
        match serde_json::to_value(evidence) {
            Ok(value) => Verdict::new(outcome, reason, value),
            Err(e) => Verdict::error(format!("cannot write the evidence: {e}")),
        }
    }

    pub fn fail(&self, reason: impl Into<String>, evidence: &E) -> Verdict {
        self.verdict(Outcome::Fail, reason, evidence)
    }
}

impl<E: DeserializeOwned> GuardSpec<E> {
    /// The evidence of `result` (a result of this guard) read back as the
    /// type its check wrote; `None` when it has none or another shape.
    pub fn evidence(&self, result: &GuardResult) -> Option<E> {
        match &result.evidence {
            serde_json::Value::Null => None,
            value => E::deserialize(value).ok(),
        }
    }
}

/// A `GuardSpec` whatever its evidence type: what the registry lists and
/// the controller and the plan read.
pub trait Spec: Sync {
    fn name(&self) -> &'static str;
    fn severity(&self) -> Severity;
    fn hard_when(&self) -> Option<HardWhen>;
    /// Whether the plan checks it again after teardown.
    fn after_teardown(&self) -> bool;
    /// The guard, checked once.
    fn build(&self, settings: &GuardSettings, roots: &Roots) -> Arc<dyn Guard>;
    /// The guard as checked after teardown (the plain one if it has no
    /// form of its own).
    fn build_after_teardown(&self, settings: &GuardSettings, roots: &Roots) -> Arc<dyn Guard>;
    /// Its advice for `result`, a failing or erroring result of this guard.
    fn advice(&self, result: &GuardResult) -> Option<String>;
}

impl<E: Serialize + DeserializeOwned> Spec for GuardSpec<E> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn severity(&self) -> Severity {
        self.severity
    }
    fn hard_when(&self) -> Option<HardWhen> {
        self.hard_when
    }
    fn after_teardown(&self) -> bool {
        self.after_teardown.is_some()
    }
    fn build(&self, settings: &GuardSettings, roots: &Roots) -> Arc<dyn Guard> {
        (self.build)(settings, roots)
    }
    fn build_after_teardown(&self, settings: &GuardSettings, roots: &Roots) -> Arc<dyn Guard> {
        self.after_teardown.unwrap_or(self.build)(settings, roots)
    }
    fn advice(&self, result: &GuardResult) -> Option<String> {
        let evidence = match &result.evidence {
            serde_json::Value::Null => None,
            value => E::deserialize(value).ok(),
        };
        (self.advice)(&Blocked {
            failed: result.outcome == Outcome::Fail,
            reason: &result.reason,
            evidence,
        })
    }
}
