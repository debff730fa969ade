//! Slice budgets: the resource properties a mode sets on `interactive.slice`,
//! `ai.slice` and `platform.slice` at run time, in systemd's own property
//! names, with the value syntaxes systemd users already know ("8G", "200%",
//! "0-3,8", "infinity").

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The budget of one slice in one mode. A property left out is reset to
/// systemd's default when the mode is entered, so every mode is absolute.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SliceBudget {
    #[serde(rename = "CPUWeight", default, skip_serializing_if = "Option::is_none")]
    pub cpu_weight: Option<Weight>,
    #[serde(rename = "IOWeight", default, skip_serializing_if = "Option::is_none")]
    pub io_weight: Option<Weight>,
    #[serde(rename = "CPUQuota", default, skip_serializing_if = "Option::is_none")]
    pub cpu_quota: Option<CpuQuota>,
    #[serde(
        rename = "MemoryHigh",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub memory_high: Option<Bytes>,
    #[serde(rename = "MemoryMax", default, skip_serializing_if = "Option::is_none")]
    pub memory_max: Option<Bytes>,
    #[serde(
        rename = "AllowedCPUs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub allowed_cpus: Option<CpuSet>,
}

/// A cgroup weight, 1..=10000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Weight(pub u64);

impl<'de> Deserialize<'de> for Weight {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        if (1..=10000).contains(&n) {
            Ok(Weight(n))
        } else {
            Err(serde::de::Error::custom(format!(
                "weight {n} is out of range: use 1..10000"
            )))
        }
    }
}

/// CPU time per second of wall time, as systemd's `CPUQuota=` percentage
/// (`"200%"` is two full CPUs). Stored in microseconds per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuQuota {
    pub usec_per_sec: u64,
}

/// A byte count, or `infinity` (no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bytes {
    Limit(u64),
    Infinity,
}

impl Bytes {
    /// The value systemd's D-Bus API takes: `u64::MAX` means no limit.
    pub fn as_dbus(self) -> u64 {
        match self {
            Bytes::Limit(n) => n,
            Bytes::Infinity => u64::MAX,
        }
    }
}

/// A set of CPU numbers, written like `0-3,8`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuSet(pub Vec<u32>);

impl CpuSet {
    /// systemd's `AllowedCPUs` D-Bus form: a little-endian bit mask.
    pub fn as_mask(&self) -> Vec<u8> {
        let len = self.0.iter().max().map_or(0, |m| (*m as usize) / 8 + 1);
        let mut mask = vec![0u8; len];
        for cpu in &self.0 {
            mask[(*cpu / 8) as usize] |= 1 << (cpu % 8);
        }
        mask
    }

    pub fn from_mask(mask: &[u8]) -> Self {
        let cpus = (0..mask.len() * 8)
            .filter(|i| mask[i / 8] & (1 << (i % 8)) != 0)
            .map(|i| i as u32)
            .collect();
        CpuSet(cpus)
    }
}

fn parse_bytes(s: &str) -> Result<Bytes, String> {
    let s = s.trim();
    if s == "infinity" {
        return Ok(Bytes::Infinity);
    }
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'K')) => (&s[..i], 1u64 << 10),
        Some((i, 'M')) => (&s[..i], 1 << 20),
        Some((i, 'G')) => (&s[..i], 1 << 30),
        Some((i, 'T')) => (&s[..i], 1 << 40),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .map(Bytes::Limit)
        .ok_or_else(|| format!("'{s}' is not a size: use bytes, a K/M/G/T suffix, or \"infinity\""))
}

/// The largest CPU quota: 1024 CPUs' worth.
const MAX_QUOTA_PERCENT: u64 = 102_400;

fn parse_quota(s: &str) -> Result<CpuQuota, String> {
    s.strip_suffix('%')
        .and_then(|p| p.trim().parse::<u64>().ok())
        .filter(|p| *p > 0 && *p <= MAX_QUOTA_PERCENT)
        .map(|p| CpuQuota {
            usec_per_sec: p * 10_000,
        })
        .ok_or_else(|| format!("'{s}' is not a CPU quota: use a percentage from 1% to {MAX_QUOTA_PERCENT}%, such as \"200%\""))
}

fn parse_cpuset(s: &str) -> Result<CpuSet, String> {
    let bad = || format!("'{s}' is not a CPU list: use numbers and ranges such as \"0-3,8\"");
    let mut cpus = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (
                a.parse::<u32>().map_err(|_| bad())?,
                b.parse::<u32>().map_err(|_| bad())?,
            ),
            None => {
                let n = part.parse::<u32>().map_err(|_| bad())?;
                (n, n)
            }
        };
        if lo > hi || hi >= 4096 {
            return Err(bad());
        }
        cpus.extend(lo..=hi);
    }
    if cpus.is_empty() {
        return Err(bad());
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(CpuSet(cpus))
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bytes::Infinity => f.write_str("infinity"),
            Bytes::Limit(n) => write!(f, "{n}"),
        }
    }
}

impl fmt::Display for CpuQuota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.usec_per_sec / 10_000)
    }
}

impl fmt::Display for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u32::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

macro_rules! string_serde {
    ($ty:ty, $parse:expr) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_string())
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}
string_serde!(CpuQuota, parse_quota);
string_serde!(CpuSet, parse_cpuset);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Bytes::Infinity => s.serialize_str("infinity"),
            Bytes::Limit(n) => s.serialize_u64(*n),
        }
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected bytes as a number or a string such as \"8G\"")
        })? {
            Raw::N(n) => Ok(Bytes::Limit(n)),
            Raw::S(s) => parse_bytes(&s).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_systemd_value_syntaxes() {
        assert_eq!(parse_bytes("8G"), Ok(Bytes::Limit(8 << 30)));
        assert_eq!(parse_bytes("infinity"), Ok(Bytes::Infinity));
        assert_eq!(parse_quota("200%").map(|q| q.usec_per_sec), Ok(2_000_000));
        assert_eq!(parse_cpuset("0-2,8"), Ok(CpuSet(vec![0, 1, 2, 8])));
        assert_eq!(
            CpuSet(vec![0, 1, 2, 8]).as_mask(),
            vec![0b0000_0111, 0b0000_0001]
        );
        assert_eq!(CpuSet::from_mask(&[0b111, 1]), CpuSet(vec![0, 1, 2, 8]));
    }

    #[test]
    fn rejects_bad_values_with_a_hint() {
        assert!(parse_bytes("8 gigs").unwrap_err().contains("K/M/G/T"));
        assert!(parse_quota("2").unwrap_err().contains("200%"));
        assert!(parse_cpuset("3-1").is_err());
        assert!(serde_json::from_str::<SliceBudget>(r#"{"CPUWeight": 0}"#).is_err());
        assert!(serde_json::from_str::<SliceBudget>(r#"{"CpuWeight": 10}"#).is_err());
    }
}
