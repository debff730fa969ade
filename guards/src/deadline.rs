//! Time limits without `Instant` arithmetic: a deadline is a start and a
//! length, so no configured value, however large, can overflow a clock
//! addition (which panics). Every wait in the guards and the controller
//! goes through this.

use std::time::{Duration, Instant};

/// A point after which a wait gives up, kept as start + length.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    start: Instant,
    limit: Duration,
}

impl Deadline {
    /// `limit` from now.
    pub fn after(limit: Duration) -> Self {
        Self::from(Instant::now(), limit)
    }

    /// `limit` from `start`.
    pub fn from(start: Instant, limit: Duration) -> Self {
        Self { start, limit }
    }

    /// Whether the limit has passed.
    pub fn passed(&self) -> bool {
        self.start.elapsed() >= self.limit
    }

    /// What is left of the limit (zero once it has passed).
    pub fn left(&self) -> Duration {
        self.limit.saturating_sub(self.start.elapsed())
    }

    pub fn limit(&self) -> Duration {
        self.limit
    }
}

/// `secs` seconds plus `ms` milliseconds, saturating instead of overflowing.
pub fn secs_and_ms(secs: u64, ms: u64) -> Duration {
    Duration::from_secs(secs).saturating_add(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_limit_neither_panics_nor_passes() {
        let d = Deadline::after(Duration::MAX);
        assert!(!d.passed());
        assert!(d.left() > Duration::from_secs(u64::MAX / 2));
        assert_eq!(secs_and_ms(u64::MAX, u64::MAX), Duration::MAX);
    }

    #[test]
    fn a_zero_limit_has_passed_at_once() {
        let d = Deadline::after(Duration::ZERO);
        assert!(d.passed());
        assert_eq!(d.left(), Duration::ZERO);
    }
}
