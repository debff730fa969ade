//! Wall-clock stamps in the two forms the state files use: RFC 3339 UTC with
//! milliseconds (`2026-11-23T04:05:06.120Z`) and the compact transition id
//! prefix (`20261123T040506Z`). Small enough not to need a date crate.
//! Durations are measured on the monotonic clock (`Began`), never as the
//! difference of two stamps: NTP may step the wall clock mid-transition.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A moment, as milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(pub u64);

impl Stamp {
    pub fn now() -> Self {
        Stamp(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        )
    }

    fn parts(self) -> (i64, u32, u32, u64, u64, u64, u64) {
        let secs = self.0 / 1000;
        let (y, m, d) = civil_from_days((secs / 86_400) as i64);
        let rem = secs % 86_400;
        (
            y,
            m,
            d,
            rem / 3600,
            rem % 3600 / 60,
            rem % 60,
            self.0 % 1000,
        )
    }

    /// `2026-11-23T04:05:06.120Z`
    pub fn rfc3339(self) -> String {
        let (y, mo, d, h, mi, s, ms) = self.parts();
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
    }

    /// `20261123T040506Z`
    pub fn compact(self) -> String {
        let (y, mo, d, h, mi, s, _) = self.parts();
        format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
    }

    pub fn millis_since(self, earlier: Stamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// Read back what `rfc3339` wrote (`2026-11-23T04:05:06.120Z`); `None`
    /// for anything else.
    pub fn parse_rfc3339(text: &str) -> Option<Stamp> {
        let (date, time) = text.strip_suffix('Z')?.split_once('T')?;
        let mut d = date.splitn(3, '-').map(|p| p.parse::<u32>().ok());
        let (y, mo, day) = (d.next()??, d.next()??, d.next()??);
        let (hms, ms) = time.split_once('.').unwrap_or((time, "0"));
        let mut t = hms.splitn(3, ':').map(|p| p.parse::<u64>().ok());
        let (h, mi, sec) = (t.next()??, t.next()??, t.next()??);
        let ms: u64 = ms.parse().ok()?;
        if !(1..=12).contains(&mo)
            || !(1..=31).contains(&day)
            || h > 23
            || mi > 59
            || sec > 60
            || ms > 999
        {
            return None;
        }
        let days = u64::try_from(days_from_civil(i64::from(y), mo, day)).ok()?;
        let secs = days
            .checked_mul(86_400)?
            .checked_add(h * 3600 + mi * 60 + sec)?;
        Some(Stamp(secs.checked_mul(1000)?.checked_add(ms)?))
    }
}

/// (year, month, day) to days since 1970-01-01: the inverse of
/// `civil_from_days`, after the same public-domain algorithm.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's
/// public-domain `civil_from_days` algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// When something began, on both clocks: the wall clock for its
/// timestamps, the monotonic clock for how long it took.
#[derive(Debug, Clone, Copy)]
pub struct Began {
    pub at: Stamp,
    mono: Instant,
}

impl Began {
    pub fn now() -> Self {
        Self {
            at: Stamp::now(),
            mono: Instant::now(),
        }
    }

    /// Milliseconds since then, by the monotonic clock.
    pub fn elapsed_ms(&self) -> u64 {
        elapsed_ms(self.mono)
    }
}

/// Milliseconds since `since`, by the monotonic clock.
pub fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A new transition id: `20261123T040506Z-4f2a`.
pub fn transition_id(at: Stamp) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let salt = (nanos ^ std::process::id().rotate_left(16)) & 0xffff;
    format!("{}-{salt:04x}", at.compact())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_moments() {
        // 2026-11-23T04:05:06.120Z
        let s = Stamp(1_795_406_706_120);
        assert_eq!(s.rfc3339(), "2026-11-23T04:05:06.120Z");
        assert_eq!(s.compact(), "20261123T040506Z");
        assert_eq!(Stamp(0).rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(Stamp(951_782_400_000).rfc3339(), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn parses_what_it_formats_and_nothing_else() {
        for ms in [0, 951_782_400_000, 1_795_406_706_120, 4_102_444_799_999] {
            let text = Stamp(ms).rfc3339();
            assert_eq!(Stamp::parse_rfc3339(&text), Some(Stamp(ms)), "{text}");
        }
        for bad in [
            "",
            "2026-11-23",
            "2026-13-01T00:00:00.000Z",
            "2026-11-23T04:05:06.120",
            "yesterday",
        ] {
            assert_eq!(Stamp::parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_duration_is_the_monotonic_clocks() {
        let began = Began {
            at: Stamp(0),
            mono: Instant::now() - std::time::Duration::from_millis(250),
        };
        // The wall-clock stamp says 1970; the duration does not care.
        assert!((250..10_000).contains(&began.elapsed_ms()));
    }

    #[test]
    fn ids_have_the_contract_shape() {
        let id = transition_id(Stamp(1_795_406_706_120));
        assert!(id.starts_with("20261123T040506Z-"), "{id}");
        assert_eq!(id.len(), "20261123T040506Z-4f2a".len());
    }
}
