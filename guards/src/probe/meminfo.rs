//! `<procfs>/meminfo`: how much memory can be had without swapping
//! (`MemAvailable`), the kernel's own estimate.

use std::path::Path;

use super::{read_text, ProbeError};

/// `MemAvailable` and `MemTotal` in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryFigures {
    pub available_kib: u64,
    pub total_kib: u64,
}

pub fn read(procfs: &Path) -> Result<MemoryFigures, ProbeError> {
    let path = procfs.join("meminfo");
    parse(&path, &read_text(&path)?)
}

pub fn parse(path: &Path, text: &str) -> Result<MemoryFigures, ProbeError> {
    let kib = |key: &str| -> Result<u64, ProbeError> {
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .ok_or_else(|| ProbeError::malformed(path, format!("no {key} line")))?;
        line.trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .map_err(|_| {
                ProbeError::malformed(path, format!("{key} is not a number: {}", line.trim()))
            })
    };
    Ok(MemoryFigures {
        available_kib: kib("MemAvailable")?,
        total_kib: kib("MemTotal")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_available_and_total() {
        let m = parse(
            Path::new("m"),
            "MemTotal:       16000000 kB\nMemFree: 1 kB\nMemAvailable:    8000000 kB\n",
        )
        .unwrap();
        assert_eq!(m.available_kib, 8_000_000);
        assert_eq!(m.total_kib, 16_000_000);
    }
}
