//! Wall-clock stamps in the two forms the state files use: RFC 3339 UTC with
//! milliseconds (`2026-11-23T04:05:06.120Z`) and the compact transition id
//! prefix (`20261123T040506Z`), and the machine's local time for people
//! (`Mon 2026-11-23 05:05:06 CET`, as systemctl prints it: TZ, else
//! /etc/localtime). The calendar is jiff's. Durations are measured on the
//! monotonic clock (`Began`), never as the difference of two stamps: NTP
//! may step the wall clock mid-transition.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use jiff::tz::TimeZone;
use jiff::Timestamp;

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

    /// The moment as jiff's, clamped to jiff's range (year 9999): a
    /// stamp of ours is never near it.
    fn timestamp(self) -> Timestamp {
        i64::try_from(self.0)
            .ok()
            .and_then(|ms| Timestamp::from_millisecond(ms).ok())
            .unwrap_or(Timestamp::MAX)
    }

    /// `2026-11-23T04:05:06.120Z`
    pub fn rfc3339(self) -> String {
        self.timestamp()
            .strftime("%Y-%m-%dT%H:%M:%S.%3fZ")
            .to_string()
    }

    /// `20261123T040506Z`
    pub fn compact(self) -> String {
        self.timestamp().strftime("%Y%m%dT%H%M%SZ").to_string()
    }

    /// `Mon 2026-11-23 05:05:06 CET`: local time as systemctl and
    /// journalctl print it (`%a %Y-%m-%d %H:%M:%S %Z`), in the zone TZ
    /// names or else /etc/localtime's (UTC when neither can be read).
    pub fn local(self) -> String {
        self.timestamp()
            .to_zoned(TimeZone::system())
            .strftime("%a %Y-%m-%d %H:%M:%S %Z")
            .to_string()
    }

    /// What `rfc3339` wrote, in local time for people; anything else as it is.
    pub fn local_text(rfc3339: &str) -> String {
        Stamp::parse_rfc3339(rfc3339).map_or_else(|| rfc3339.to_string(), Stamp::local)
    }

    pub fn millis_since(self, earlier: Stamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// Read back what `rfc3339` wrote (`2026-11-23T04:05:06.120Z`): a UTC
    /// moment at or after the epoch, a real calendar day; `None` for
    /// anything else.
    pub fn parse_rfc3339(text: &str) -> Option<Stamp> {
        if !text.ends_with('Z') {
            return None;
        }
        let at: Timestamp = text.parse().ok()?;
        u64::try_from(at.as_millisecond()).ok().map(Stamp)
    }
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
            "2026-02-31T00:00:00.000Z",
            "2026-11-23T04:05:06.120+01:00",
            "1969-12-31T23:59:59.000Z",
            "yesterday",
        ] {
            assert_eq!(Stamp::parse_rfc3339(bad), None, "{bad}");
        }
    }

    /// The system zone is read once and cached per process, so each zone
    /// is checked in a child: this test binary again, running only this
    /// test with TZ set.
    #[test]
    fn local_time_is_the_zone_of_tz_as_systemctl_prints_it() {
        let cases = [
            ("UTC", 1_795_406_706_120, "Mon 2026-11-23 04:05:06 UTC"),
            (
                "America/New_York",
                1_795_406_706_120,
                "Sun 2026-11-22 23:05:06 EST",
            ),
            // Summer time, and a zone east of UTC.
            (
                "Europe/Berlin",
                1_782_907_200_000,
                "Wed 2026-07-01 14:00:00 CEST",
            ),
            (
                "Asia/Kolkata",
                1_795_406_706_120,
                "Mon 2026-11-23 09:35:06 IST",
            ),
        ];
        if let Ok(tz) = std::env::var("MODE_TEST_TZ") {
            for (zone, ms, want) in cases {
                if zone == tz {
                    assert_eq!(Stamp(ms).local(), want);
                    let text = Stamp(ms).rfc3339();
                    assert_eq!(Stamp::local_text(&text), want);
                    // What is not a stamp of ours stays as it is.
                    assert_eq!(Stamp::local_text("soon"), "soon");
                    // JSON and the state files stay UTC.
                    assert!(text.ends_with('Z'));
                }
            }
            return;
        }
        for (zone, _, _) in cases {
            assert!(
                std::path::Path::new("/usr/share/zoneinfo")
                    .join(zone)
                    .exists(),
                "{zone}: tzdata is needed for this test"
            );
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "clock::tests::local_time_is_the_zone_of_tz_as_systemctl_prints_it",
                    "--test-threads=1",
                ])
                .env("MODE_TEST_TZ", zone)
                .env("TZ", zone)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && text.contains("1 passed"),
                "{zone}: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
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
