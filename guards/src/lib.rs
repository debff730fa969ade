//! Typed guards for mode-controller: each guard looks at one part of the
//! machine and says whether a mode switch is safe, naming every blocker with
//! its evidence. Guards never change anything; they only read and report.

mod facts;
mod graphical_session_absent;
mod report;
mod run;
mod target_reachable;

pub use facts::{Facts, SessionInfo, UnitState};
pub use graphical_session_absent::GraphicalSessionAbsent;
pub use report::{GuardReport, GuardResult, Outcome, Severity, Verdict};
pub use run::evaluate_all;
pub use target_reachable::TargetReachable;

use std::time::Duration;

/// One check that can block (hard) or warn about (soft) a transition.
///
/// `check` reads the world through `facts` (gathered once over D-Bus by the
/// controller) and through whatever roots the guard was built with (procfs,
/// sysfs, ...), so tests can point a guard at a prepared tree.
pub trait Guard: Send + Sync {
    /// The stable name reported in `last-guards.json`.
    fn name(&self) -> &str;
    /// How long `check` may take before it is reported as `error`.
    fn timeout(&self) -> Duration {
        Duration::from_secs(5)
    }
    /// Decide. A guard that cannot decide returns `Outcome::Error`.
    fn check(&self, facts: &Facts) -> Verdict;
}
