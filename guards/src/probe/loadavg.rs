//! The load average (`<procfs>/loadavg`) and the number of CPUs
//! (`cpuN` lines of `<procfs>/stat`): the fallback when there is no CPU PSI.

use std::path::Path;

use super::{read_text, ProbeError};

/// The 1-minute load average.
pub fn one_minute(procfs: &Path) -> Result<f64, ProbeError> {
    let path = procfs.join("loadavg");
    let text = read_text(&path)?;
    text.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            ProbeError::malformed(&path, format!("unexpected content {:?}", text.trim()))
        })
}

/// The number of CPUs the kernel accounts for.
pub fn cpu_count(procfs: &Path) -> Result<usize, ProbeError> {
    let path = procfs.join("stat");
    let text = read_text(&path)?;
    let n = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|first| {
            first
                .strip_prefix("cpu")
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .count();
    if n == 0 {
        return Err(ProbeError::malformed(&path, "no cpuN lines"));
    }
    Ok(n)
}
