//! What serde cannot check in a configuration: unit names, lists that
//! contradict each other, guards that exist, bounds, paths. Every problem is
//! collected, each naming its field, so `mode config check` lists them all
//! at once; the sections' own checks (integrations, vLLM profiles, idle,
//! the way back, readiness, guard settings) add theirs to the same list.

use std::collections::HashSet;
use std::path::Path;

use mode_guards::{MAX_WAIT_SECS, SPECS};

use super::Config;
use crate::mode::Mode;

/// The longest settle window a configuration may ask for.
const MAX_SETTLE_MS: u64 = 60_000;

/// One problem: the field (its path in the file) and what is wrong.
pub type Problem = (String, String);

/// The first of `problems`, for a section checked on its own.
pub(super) fn first(problems: Vec<Problem>) -> Result<(), Problem> {
    problems.into_iter().next().map_or(Ok(()), Err)
}

const UNIT_SUFFIXES: [&str; 8] = [
    ".service", ".target", ".slice", ".scope", ".socket", ".timer", ".mount", ".path",
];

pub(super) fn check_unit(field: &str, name: &str) -> Result<(), Problem> {
    let ok_chars = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.' | '\\' | '@'));
    if ok_chars
        && UNIT_SUFFIXES
            .iter()
            .any(|s| name.ends_with(s) && name.len() > s.len())
    {
        Ok(())
    } else {
        Err((
            field.to_string(),
            format!("'{name}' is not a unit name (expected something like \"vllm.service\" or \"compute.target\")"),
        ))
    }
}

/// `value` within `min..=max`, or the field and the allowed range.
pub(super) fn bounded(
    field: String,
    value: u64,
    min: u64,
    max: u64,
    unit: &str,
) -> Result<(), Problem> {
    mode_guards::within(value, min, max, unit).map_err(|m| (field, m))
}

/// Every problem of `c`, in the order of the file's sections.
pub(super) fn validate(c: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    for mode in Mode::ALL {
        modes(c, mode, &mut out);
    }
    for (i, u) in c.keep_running.iter().enumerate() {
        out.extend(check_unit(&format!("keep_running[{i}]"), u).err());
    }
    c.integrations.problems(&mut out);
    c.way_back.problems(&mut out);
    for (unit, check) in &c.readiness {
        out.extend(check_unit(&format!("readiness.{unit}"), unit).err());
        check.problems(&format!("readiness.{unit}"), &mut out);
    }
    if c.timeouts.settle_ms > MAX_SETTLE_MS {
        out.push((
            "timeouts.settle_ms".into(),
            format!(
                "{} is out of range: at most {MAX_SETTLE_MS} ms",
                c.timeouts.settle_ms
            ),
        ));
    }
    if let Some(profiles) = &c.vllm_profiles {
        profiles.problems(c.guard_settings.gpu.display_gpu.as_deref(), &mut out);
    }
    if let Err(errors) = c.guard_settings.validate() {
        out.extend(
            errors
                .into_iter()
                .map(|e| (format!("guard_settings.{}", e.field), e.message)),
        );
    }
    c.idle.problems(&mut out);
    audit_log(c, &mut out);
    for (field, value) in [
        ("timeouts.job_secs", c.timeouts.job_secs),
        ("timeouts.request_secs", c.timeouts.request_secs),
    ] {
        out.extend(bounded(field.into(), value, 1, MAX_WAIT_SECS, "s").err());
    }
    out
}

/// The problems of one mode's section.
fn modes(c: &Config, mode: Mode, out: &mut Vec<Problem>) {
    let m = c.mode(mode);
    let at = format!("modes.{}", mode.word());
    if let Err(p) = check_unit(&format!("{at}.target"), &m.target) {
        out.push(p);
    } else if !m.target.ends_with(".target") {
        out.push((
            format!("{at}.target"),
            format!("'{}' must be a .target unit", m.target),
        ));
    }
    for (list, names) in [
        ("stop", &m.stop),
        ("start", &m.start),
        ("overlay", &m.overlay),
    ] {
        for (i, u) in names.iter().enumerate() {
            out.extend(check_unit(&format!("{at}.{list}[{i}]"), u).err());
        }
    }
    let keep: HashSet<&String> = c.keep_running.iter().collect();
    let started: HashSet<&String> = std::iter::once(&m.target)
        .chain(&m.start)
        .chain(&m.overlay)
        .collect();
    for (i, u) in m.stop.iter().enumerate() {
        if keep.contains(u) {
            out.push((
                format!("{at}.stop[{i}]"),
                format!("'{u}' is in keep_running: a transition never stops it"),
            ));
        } else if started.contains(u) {
            out.push((
                format!("{at}.stop[{i}]"),
                format!("'{u}' is both stopped and started"),
            ));
        }
    }
    let externals: HashSet<&str> = c
        .guard_settings
        .external
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    for name in m.guards.keys() {
        if mode_guards::spec(name).is_none() && !externals.contains(name.as_str()) {
            let known: Vec<&str> = SPECS.iter().map(|s| s.name()).collect();
            out.push((
                format!("{at}.guards.{name}"),
                format!(
                    "unknown guard; known guards: {} (external guards are declared in guard_settings.external)",
                    known.join(", ")
                ),
            ));
        }
    }
    let d = &m.drain;
    for (name, value) in [
        ("grace_secs", d.grace_secs),
        ("wait_secs", d.wait_secs),
        ("vllm_timeout_secs", d.vllm_timeout_secs),
    ] {
        out.extend(bounded(format!("{at}.drain.{name}"), value, 0, MAX_WAIT_SECS, "s").err());
    }
    for slice in m.slices.keys() {
        if let Err(p) = check_unit(&format!("{at}.slices.{slice}"), slice) {
            out.push(p);
        } else if !slice.ends_with(".slice") {
            out.push((
                format!("{at}.slices.{slice}"),
                "budgets apply to .slice units only".into(),
            ));
        }
    }
}

fn audit_log(c: &Config, out: &mut Vec<Problem>) {
    if !c.audit_log.is_absolute() {
        out.push(("audit_log".into(), "must be an absolute path".into()));
        return;
    }
    let system_dirs = [
        "/", "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/boot", "/dev", "/proc", "/sys",
        "/var", "/var/lib", "/var/log", "/run", "/tmp", "/root", "/home",
    ];
    if c.audit_log.extension().and_then(|e| e.to_str()) != Some("jsonl")
        || c.audit_log
            .parent()
            .is_some_and(|d| system_dirs.iter().any(|s| d == Path::new(s)))
    {
        out.push((
            "audit_log".into(),
            format!(
                "'{}' must be a .jsonl file in a directory of its own (the default is /var/lib/mode-controller/transitions.jsonl)",
                c.audit_log.display()
            ),
        ));
    }
}
