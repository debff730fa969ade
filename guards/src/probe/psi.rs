//! Pressure stall information (`<procfs>/pressure/{memory,cpu}`): the share
//! of recent time tasks stalled on a resource. Absent on kernels without
//! PSI (or with `psi=0`), which callers report as "skipped", not "fine".

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::ProbeError;

/// The `some` line of one pressure file.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Pressure {
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
}

/// `Ok(None)` when the kernel has no PSI for `resource` (file absent, or
/// reading it is refused with EOPNOTSUPP as with `psi=0`).
pub fn read(procfs: &Path, resource: &str) -> Result<Option<Pressure>, ProbeError> {
    let path: PathBuf = procfs.join("pressure").join(resource);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(95) => return Ok(None),
        Err(e) => return Err(ProbeError::read(&path, e)),
    };
    parse(&path, &text).map(Some)
}

pub fn parse(path: &Path, text: &str) -> Result<Pressure, ProbeError> {
    let line = text
        .lines()
        .find(|l| l.starts_with("some "))
        .ok_or_else(|| ProbeError::malformed(path, "no `some` line"))?;
    let value = |key: &str| -> Result<f64, ProbeError> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .ok_or_else(|| ProbeError::malformed(path, format!("no {key} in {line:?}")))?
            .parse()
            .map_err(|_| ProbeError::malformed(path, format!("{key} is not a number in {line:?}")))
    };
    Ok(Pressure {
        avg10: value("avg10")?,
        avg60: value("avg60")?,
        avg300: value("avg300")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_some_line() {
        let p = parse(
            Path::new("m"),
            "some avg10=12.50 avg60=3.00 avg300=0.10 total=123\nfull avg10=1.00 avg60=0.00 avg300=0.00 total=5\n",
        )
        .unwrap();
        assert_eq!(p.avg10, 12.5);
        assert_eq!(p.avg300, 0.1);
    }

    #[test]
    fn a_line_without_avg10_is_malformed() {
        assert!(parse(Path::new("m"), "some avg60=1\n").is_err());
    }
}
