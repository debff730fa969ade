//! The `Guard` trait: one check that reads the machine and returns a
//! verdict. Built-in guards implement it next to their spec; external
//! guards implement it in `external.rs`.

use std::time::Duration;

use crate::{Facts, Verdict};

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
