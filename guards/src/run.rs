//! Evaluating guards together: every guard runs at once on its own thread,
//! each bounded by its timeout, and every verdict is reported, not the first
//! failure. A guard that overruns is reported as `error` and left behind.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::{Facts, Guard, GuardResult, Outcome, Severity, Verdict};

/// Run `guards` (each with the severity it has for this transition)
/// concurrently against `facts`; results come back in the given order.
pub fn evaluate_all(
    guards: Vec<(Arc<dyn Guard>, Severity)>,
    facts: Arc<Facts>,
) -> Vec<GuardResult> {
    let pending: Vec<_> = guards
        .into_iter()
        .map(|(guard, severity)| {
            let (tx, rx) = mpsc::channel();
            let started = Instant::now();
            let timeout = guard.timeout();
            let name = guard.name().to_string();
            let facts = Arc::clone(&facts);
            let spawned = thread::Builder::new()
                .name(format!("guard-{name}"))
                .spawn(move || {
                    let _ = tx.send(guard.check(&facts));
                });
            (name, severity, started, timeout, rx, spawned.is_ok())
        })
        .collect();

    pending
        .into_iter()
        .map(|(name, severity, started, timeout, rx, spawned)| {
            let verdict = if !spawned {
                Verdict::error("could not start a thread for this guard")
            } else {
                let left = timeout.saturating_sub(started.elapsed());
                match rx.recv_timeout(left) {
                    Ok(v) => v,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        Verdict::error(format!("did not answer within {}", human(timeout)))
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        Verdict::error("the guard crashed")
                    }
                }
            };
            GuardResult::new(
                name,
                severity,
                verdict,
                started.elapsed().as_millis() as u64,
            )
        })
        .collect()
}

fn human(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

impl Outcome {
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Error => "error",
            Outcome::Skipped => "skipped",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sleepy(Duration);
    impl Guard for Sleepy {
        fn name(&self) -> &str {
            "sleepy"
        }
        fn timeout(&self) -> Duration {
            Duration::from_millis(100)
        }
        fn check(&self, _: &Facts) -> Verdict {
            thread::sleep(self.0);
            Verdict::pass("woke up")
        }
    }

    struct Failing;
    impl Guard for Failing {
        fn name(&self) -> &str {
            "failing"
        }
        fn check(&self, _: &Facts) -> Verdict {
            Verdict::fail("always", serde_json::Value::Null)
        }
    }

    #[test]
    fn a_hung_guard_is_cut_at_its_timeout_and_reported_as_error() {
        let started = Instant::now();
        let results = evaluate_all(
            vec![
                (
                    Arc::new(Sleepy(Duration::from_secs(30))) as Arc<dyn Guard>,
                    Severity::Hard,
                ),
                (Arc::new(Failing), Severity::Soft),
            ],
            Arc::new(Facts::new("compute")),
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(results[0].outcome, Outcome::Error);
        assert!(
            results[0].reason.contains("100 ms"),
            "{}",
            results[0].reason
        );
        assert!(results[0].blocks());
        assert_eq!(results[1].outcome, Outcome::Fail);
        assert!(!results[1].blocks(), "a soft failure only warns");
    }

    #[test]
    fn guards_run_concurrently() {
        let started = Instant::now();
        let guards: Vec<(Arc<dyn Guard>, Severity)> = (0..4)
            .map(|_| {
                (
                    Arc::new(Sleepy(Duration::from_millis(60))) as Arc<dyn Guard>,
                    Severity::Hard,
                )
            })
            .collect();
        let results = evaluate_all(guards, Arc::new(Facts::new("compute")));
        assert!(results.iter().all(|r| r.outcome == Outcome::Pass));
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "{:?}",
            started.elapsed()
        );
    }
}
