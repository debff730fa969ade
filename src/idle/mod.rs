//! The idle automation's pure part: the signals (judged from plain data and
//! from the guard results of the check itself), the decision, and the way
//! back's key hold. The use cases that gather them and act, `mode
//! idle-check` and `mode way-back`, are src/controller/idle.rs and
//! src/controller/way_back.rs; nothing here asks the bus or changes anything.

mod decide;
mod signals;
pub mod wayback;

pub use decide::{decide, Decision, Inputs};
pub use signals::{
    audio, cpu_pressure, input_activity, presence, Audio, CpuPressure, InputActivity, Presence,
};

/// The requester recorded for automatic requests.
pub const REQUESTER: &str = "idle";

/// Since when the seat has been idle, all signals considered (milliseconds
/// since the epoch): since the sessions (or the unattended mark) say so, but
/// never before the last input activity, and never before the last
/// transition (right after someone switched to desktop, the machine is not
/// yet unattended). `None`: not idle.
pub fn idle_since(
    seat_since: Option<u64>,
    input_ms: Option<u64>,
    last_transition_ms: Option<u64>,
) -> Option<u64> {
    seat_since.map(|since| {
        since
            .max(input_ms.unwrap_or(0))
            .max(last_transition_ms.unwrap_or(0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idleness_counts_from_the_latest_of_seat_input_and_last_transition() {
        assert_eq!(idle_since(None, Some(5), Some(9)), None);
        assert_eq!(idle_since(Some(3), None, None), Some(3));
        assert_eq!(idle_since(Some(3), Some(5), None), Some(5));
        assert_eq!(idle_since(Some(3), Some(5), Some(9)), Some(9));
        assert_eq!(idle_since(Some(10), Some(5), Some(9)), Some(10));
    }
}
