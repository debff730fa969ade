//! The way back from compute: deliberate input at the local seat. Reads
//! Linux evdev records (`struct input_event`: a timeval, then type, code
//! and value) and tells a held key from a bump: the configured key pressed
//! and not released for `hold_ms`. Pure; `mode way-back`
//! (src/controller/way_back.rs) feeds it the bytes of the seat's devices (or
//! of a FIFO in tests, through the same reader).

use std::time::{Duration, Instant};

/// `EV_KEY`, and the values of a key event.
const EV_KEY: u16 = 1;
const RELEASED: i32 = 0;
/// 64-bit Linux: 16 bytes of timeval, 2 + 2 + 4 of type, code, value.
pub const EVENT_SIZE: usize = 24;

/// One key event of an evdev record, or `None` for any other event.
pub fn key_event(record: &[u8; EVENT_SIZE]) -> Option<(u16, i32)> {
    let kind = u16::from_ne_bytes([record[16], record[17]]);
    let code = u16::from_ne_bytes([record[18], record[19]]);
    let value = i32::from_ne_bytes([record[20], record[21], record[22], record[23]]);
    (kind == EV_KEY).then_some((code, value))
}

/// Tells a held key from a bump.
pub struct Hold {
    key: u16,
    hold: Duration,
    pressed_at: Option<Instant>,
}

impl Hold {
    pub fn new(key: u16, hold_ms: u64) -> Self {
        Self {
            key,
            hold: Duration::from_millis(hold_ms),
            pressed_at: None,
        }
    }

    /// Feed one key event seen at `at`.
    pub fn event(&mut self, code: u16, value: i32, at: Instant) {
        if code != self.key {
            return;
        }
        if value == RELEASED {
            self.pressed_at = None;
        } else if self.pressed_at.is_none() {
            // A press (1); autorepeats (2) keep the first press's time.
            self.pressed_at = Some(at);
        }
    }

    /// Whether the key has been held long enough at `now`; once true, the
    /// hold is spent (the next trigger needs a new press).
    pub fn fired(&mut self, now: Instant) -> bool {
        match self.pressed_at {
            Some(t) if now.duration_since(t) >= self.hold => {
                self.pressed_at = None;
                true
            }
            _ => false,
        }
    }

    /// How long until the current hold would fire, if a key is down.
    pub fn due_in(&self, now: Instant) -> Option<Duration> {
        self.pressed_at
            .map(|t| (t + self.hold).saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An evdev record of a key event, as a keyboard sends it.
    fn record(code: u16, value: i32) -> [u8; EVENT_SIZE] {
        let mut r = [0u8; EVENT_SIZE];
        r[16..18].copy_from_slice(&EV_KEY.to_ne_bytes());
        r[18..20].copy_from_slice(&code.to_ne_bytes());
        r[20..24].copy_from_slice(&value.to_ne_bytes());
        r
    }

    #[test]
    fn a_key_held_past_the_hold_fires_once_and_a_bump_never_does() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut h = Hold::new(28, 2000);
        h.event(28, 1, ms(0));
        h.event(28, 2, ms(500));
        assert!(!h.fired(ms(1999)));
        assert_eq!(h.due_in(ms(1500)), Some(Duration::from_millis(500)));
        assert!(h.fired(ms(2000)));
        assert!(!h.fired(ms(2500)), "spent until the next press");

        let mut bump = Hold::new(28, 2000);
        bump.event(28, 1, ms(0));
        bump.event(28, 0, ms(300));
        assert!(!bump.fired(ms(5000)));
        let mut other = Hold::new(28, 2000);
        other.event(57, 1, ms(0));
        assert!(!other.fired(ms(5000)), "another key does not count");
    }

    #[test]
    fn evdev_records_are_read_as_the_kernel_writes_them() {
        assert_eq!(key_event(&record(28, 1)), Some((28, 1)));
        let mut sync = record(0, 0);
        sync[16] = 0; // EV_SYN
        assert_eq!(key_event(&sync), None);
    }
}
