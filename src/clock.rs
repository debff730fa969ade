//! Wall-clock stamps in the two forms the state files use: RFC 3339 UTC with
//! milliseconds (`2026-11-23T04:05:06.120Z`) and the compact transition id
//! prefix (`20261123T040506Z`), and the machine's local time for people
//! (`Mon 2026-11-23 05:05:06 CET`, as systemctl prints it: the C library's
//! zone, so TZ and /etc/localtime count). Small enough not to need a date
//! crate. Durations are measured on the monotonic clock (`Began`), never as
//! the difference of two stamps: NTP may step the wall clock mid-transition.

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

    /// `Mon 2026-11-23 05:05:06 CET`: local time as systemctl and
    /// journalctl print it (`%a %Y-%m-%d %H:%M:%S %Z`, the C locale's day
    /// names), in the zone TZ names or else /etc/localtime's. Falls back
    /// to `rfc3339` if the C library cannot convert it.
    pub fn local(self) -> String {
        let Ok(secs) = libc::time_t::try_from(self.0 / 1000) else {
            return self.rfc3339();
        };
        // SAFETY: `tm` is plain data that localtime_r fills in; tzset and
        // localtime_r read the zone (TZ, /etc/localtime) into the C
        // library's own state; strftime writes at most `buf.len()` bytes
        // into `buf` from a NUL-terminated format, returning how many.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        let mut buf = [0u8; 64];
        let n = unsafe {
            tzset();
            if libc::localtime_r(&secs, &mut tm).is_null() {
                return self.rfc3339();
            }
            libc::strftime(
                buf.as_mut_ptr().cast(),
                buf.len(),
                c"%a %Y-%m-%d %H:%M:%S %Z".as_ptr(),
                &tm,
            )
        };
        match n {
            0 => self.rfc3339(),
            n => String::from_utf8_lossy(&buf[..n]).into_owned(),
        }
    }

    /// What `rfc3339` wrote, in local time for people; anything else as it is.
    pub fn local_text(rfc3339: &str) -> String {
        Stamp::parse_rfc3339(rfc3339).map_or_else(|| rfc3339.to_string(), Stamp::local)
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

extern "C" {
    /// POSIX tzset(3), which the libc crate does not declare: (re)reads TZ.
    fn tzset();
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

    /// The zone comes from the environment the C library reads once per
    /// process here, so each zone is checked in a child: this test binary
    /// again, running only this test with TZ set.
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
