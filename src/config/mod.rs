//! The configuration: loading a file (a regular file, bounded in size),
//! merged key by key over the built-in defaults, then typed by the schema
//! and validated, every error naming its field. The schema, the defaults
//! and the validation are each in their own file. Configuration is
//! read-only input; nothing here writes it.

mod budget;
mod defaults;
mod drain;
#[cfg(test)]
mod fuzz;
mod idle;
mod integrations;
mod readiness;
mod schema;
mod validate;
mod vllm;

use std::path::{Path, PathBuf};

pub use budget::{Bytes, CpuQuota, CpuSet, SliceBudget, Weight};
pub use defaults::defaults;
pub use drain::{Drain, JobPolicy, UnreadablePolicy};
pub use idle::{BootMode, IdleConfig, WayBackConfig};
pub use integrations::{
    ExecIntegration, Integrations, K3sIntegration, SlurmIntegration, Unreachable,
};
pub use readiness::Readiness;
pub use schema::{
    Config, DisplayManager, GuardSeverity, MissingWorkloads, ModeConfig, Modes, Timeouts,
    DISPLAY_MANAGER, SCHEMA_VERSION,
};
pub use validate::Problem;
pub use vllm::{VllmPlacement, VllmProfiles};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/mode-controller/config.json";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {field}: {message}")]
    Invalid {
        path: PathBuf,
        field: String,
        message: String,
    },
    /// More than one problem: one line each, as `Invalid` words one.
    #[error("{}", lines(path, problems))]
    Several {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

fn lines(path: &Path, problems: &[Problem]) -> String {
    let lines: Vec<String> = problems
        .iter()
        .map(|(field, message)| format!("{}: {field}: {message}", path.display()))
        .collect();
    lines.join("\n")
}

/// The largest configuration file read (a real one is a few kB).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Load the configuration at `path`; when the file does not exist the
/// built-in defaults apply (the tool works with no configuration at all).
/// Only a regular file of at most `MAX_CONFIG_BYTES` is read.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    match read_config(path)? {
        Some(text) => parse(&text, path),
        None => Ok(defaults()),
    }
}

/// Before root acts on `config` (read from `path`): the file, the external
/// guards and exec steps it names and its audit log must be trustworthy
/// (root's, writable by no one else, as sshd's StrictModes). Read-only
/// commands skip this, so status still explains a machine whose
/// configuration is refused; what they would run is checked again before
/// it runs.
pub fn check_trust(config: &Config, path: &Path) -> Result<(), ConfigError> {
    if nix::unistd::geteuid().is_root() {
        let untrusted = |field: String, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            field,
            message,
        };
        for (i, e) in config.guard_settings.external.iter().enumerate() {
            mode_guards::check_trusted(&e.path)
                .map_err(|m| untrusted(format!("guard_settings.external[{i}].path"), m))?;
        }
        for (i, e) in config.integrations.exec.iter().enumerate() {
            mode_guards::check_trusted(&e.path)
                .map_err(|m| untrusted(format!("integrations.exec[{i}].path"), m))?;
        }
        mode_guards::check_trusted(&config.audit_log)
            .map_err(|m| untrusted("audit_log".into(), m))?;
        if path.exists() {
            mode_guards::check_trusted(path).map_err(|m| untrusted("(file)".into(), m))?;
        }
    }
    Ok(())
}

/// The file's text; `None` when it does not exist.
fn read_config(path: &Path) -> Result<Option<String>, ConfigError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let read = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read(e)),
    };
    let meta = f.metadata().map_err(read)?;
    let invalid = |message: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        field: "(file)".into(),
        message,
    };
    if !meta.is_file() {
        return Err(invalid("is not a regular file".into()));
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(invalid(format!(
            "is {} bytes; a configuration is at most {MAX_CONFIG_BYTES} bytes",
            meta.len()
        )));
    }
    let mut bytes = Vec::new();
    f.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(invalid(format!("is more than {MAX_CONFIG_BYTES} bytes")));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| invalid("is not UTF-8 text".into()))
}

/// Parse a configuration document: merged over the defaults (objects merge
/// key by key, everything else replaces), then typed and validated.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let invalid = |field: String, message: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        field,
        message,
    };
    let user: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| invalid("(document)".into(), format!("not valid JSON: {e}")))?;
    if !user.is_object() {
        return Err(invalid(
            "(document)".into(),
            "expected a JSON object".into(),
        ));
    }
    match user.get("version") {
        Some(serde_json::Value::Number(n)) if n.as_u64() == Some(SCHEMA_VERSION as u64) => {}
        Some(other) => {
            return Err(invalid(
                "version".into(),
                format!("unsupported schema version {other}: this mode-controller reads version {SCHEMA_VERSION}"),
            ))
        }
        None => return Err(invalid("version".into(), format!("missing: add \"version\": {SCHEMA_VERSION}"))),
    }
    let mut merged = serde_json::to_value(defaults())
        .map_err(|e| invalid("(defaults)".into(), e.to_string()))?;
    // An opt-in section given as an object merges over its own defaults.
    if user
        .get("vllm_profiles")
        .is_some_and(serde_json::Value::is_object)
    {
        merged["vllm_profiles"] = serde_json::to_value(VllmProfiles::default())
            .map_err(|e| invalid("(defaults)".into(), e.to_string()))?;
    }
    merge(&mut merged, user);
    let config: Config = serde_path_to_error::deserialize(merged).map_err(|e| {
        let field = e.path().to_string();
        invalid(
            if field == "." {
                "(document)".into()
            } else {
                field
            },
            e.into_inner().to_string(),
        )
    })?;
    let mut problems = validate::validate(&config);
    match problems.len() {
        0 => Ok(config.with_vllm_profile_units()),
        1 => {
            let (field, message) = problems.remove(0);
            Err(invalid(field, message))
        }
        _ => Err(ConfigError::Several {
            path: path.to_path_buf(),
            problems,
        }),
    }
}

fn merge(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mode::Mode;

    fn p(text: &str) -> Result<Config, ConfigError> {
        parse(text, Path::new("/etc/mode-controller/config.json"))
    }

    fn err(text: &str) -> String {
        p(text).unwrap_err().to_string()
    }

    #[test]
    fn defaults_follow_the_contract_topology() {
        let c = defaults();
        assert_eq!(c.modes.compute.target, "compute.target");
        assert!(c
            .modes
            .compute
            .stop
            .contains(&"graphical.target".to_string()));
        assert_eq!(
            c.modes.studio_local.overlay,
            ["studio-local-policy.service", "audio-priority.service"]
        );
        assert_eq!(c.keep_running, ["k3s.service"]);
        assert!(c.managed_units().contains(&"k3s.service".to_string()));
        assert_eq!(
            c.budgeted_slices(),
            ["ai.slice", "interactive.slice", "platform.slice"]
        );
    }

    #[test]
    fn a_configuration_root_cannot_trust_is_refused_naming_why() {
        use std::os::unix::fs::PermissionsExt;
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let file = t.path().join("config.json");
        let log = t.path().join("log/transitions.jsonl");
        let guard = t.path().join("guard");
        std::fs::write(&guard, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&guard, std::fs::Permissions::from_mode(0o755)).unwrap();
        let text = format!(
            r#"{{"version": 1, "audit_log": "{}", "guard_settings": {{"external": [{{"name": "g", "path": "{}"}}]}}}}"#,
            log.display(),
            guard.display()
        );
        std::fs::write(&file, &text).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let trust = |f: &Path| load(f).and_then(|c| check_trust(&c, f));
        assert!(trust(&file).is_ok(), "root's, in root's directories");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = trust(&file).unwrap_err().to_string();
        assert!(
            e.contains("(file)") && e.contains("writable by users other than root"),
            "{e}"
        );
        assert!(load(&file).is_ok(), "read-only commands still read it");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&guard, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = trust(&file).unwrap_err().to_string();
        assert!(e.contains("guard_settings.external[0].path"), "{e}");
        std::fs::set_permissions(&guard, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(t.path().join("log")).unwrap();
        std::os::unix::fs::chown(t.path().join("log"), Some(65534), None).unwrap();
        let e = trust(&file).unwrap_err().to_string();
        assert!(e.contains("audit_log") && e.contains("uid 65534"), "{e}");
    }

    #[test]
    fn the_audit_log_cannot_be_pointed_at_a_system_file() {
        for path in [
            "/etc/passwd",
            "/etc/mode.jsonl",
            "/var/lib/x.jsonl",
            "/x.jsonl",
        ] {
            let e = err(&format!(r#"{{"version": 1, "audit_log": "{path}"}}"#));
            assert!(
                e.contains("audit_log: ") && e.contains("directory of its own"),
                "{e}"
            );
        }
        assert!(p(r#"{"version": 1, "audit_log": "/var/log/mode-controller/t.jsonl"}"#).is_ok());
    }

    #[test]
    fn a_configuration_over_the_size_cap_or_not_a_file_is_refused_at_once() {
        let t = tempfile::tempdir().unwrap();
        let big = t.path().join("big.json");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_CONFIG_BYTES + 1)
            .unwrap();
        let e = load(&big).unwrap_err().to_string();
        assert!(e.contains("at most") && e.lines().count() == 1, "{e}");
        let fifo = t.path().join("fifo.json");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let started = std::time::Instant::now();
        let e = load(&fifo).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        assert!(started.elapsed().as_secs() < 2, "never blocks on a FIFO");
    }

    #[test]
    fn unit_lists_are_handled_in_linear_time() {
        let n = 20_000;
        let names: Vec<String> = (0..n).map(|i| format!("\"w{i}.service\"")).collect();
        let text = format!(
            r#"{{"version": 1, "modes": {{"compute": {{"start": [{}]}}, "desktop": {{"stop": [{}]}}}}}}"#,
            names.join(","),
            names.join(",")
        );
        let started = std::time::Instant::now();
        let c = p(&text).unwrap();
        assert!(c.managed_units().len() > n);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn missing_file_means_defaults() {
        let c = load(Path::new("/nonexistent/mode-controller.json")).unwrap();
        assert_eq!(c, defaults());
    }

    #[test]
    fn a_partial_file_merges_over_defaults() {
        let c = p(r#"{"version": 1, "default_mode": "compute",
                     "modes": {"compute": {"start": ["vllm.service"], "guards": {"audio_idle": "hard"}}}}"#)
        .unwrap();
        assert_eq!(c.default_mode, Mode::Compute);
        assert_eq!(c.modes.compute.start, ["vllm.service"]);
        assert_eq!(
            c.modes.compute.target, "compute.target",
            "untouched fields keep their default"
        );
        assert_eq!(c.modes.compute.guards["audio_idle"], GuardSeverity::Hard);
        assert_eq!(
            c.modes.compute.guards["graphical_session_absent"],
            GuardSeverity::Hard
        );
    }

    #[test]
    fn the_serialized_defaults_are_a_valid_file() {
        let text = serde_json::to_string(&defaults()).unwrap();
        assert_eq!(p(&text).unwrap(), defaults());
    }

    #[test]
    fn every_bad_field_is_reported_one_per_line() {
        let e = err(r#"{"version": 1,
                        "timeouts": {"settle_ms": 60001},
                        "guard_settings": {"gpu": {"poll_interval_ms": 0},
                                           "vllm": {"endpoint": "https://x"}},
                        "modes": {"compute": {"guards": {"vibes_ok": "hard"}}}}"#);
        let fields: Vec<&str> = e
            .lines()
            .map(|l| {
                let rest = l
                    .strip_prefix("/etc/mode-controller/config.json: ")
                    .unwrap();
                rest.split(": ").next().unwrap()
            })
            .collect();
        assert_eq!(
            fields,
            [
                "modes.compute.guards.vibes_ok",
                "timeouts.settle_ms",
                "guard_settings.gpu.poll_interval_ms",
                "guard_settings.vllm.endpoint",
            ],
            "{e}"
        );
    }

    #[test]
    fn errors_name_the_field() {
        assert!(
            err(r#"{"version": 1, "modes": {"compute": {"targt": "x.target"}}}"#)
                .contains("modes.compute")
        );
        assert!(
            err(r#"{"version": 1, "modes": {"compute": {"targt": "x.target"}}}"#).contains("targt")
        );
        assert!(err(r#"{"version": 1, "default_mode": "gaming"}"#).contains("default_mode"));
        assert!(
            err(r#"{"version": 1, "modes": {"compute": {"stop": ["k3s.service"]}}}"#)
                .contains("modes.compute.stop[0]: 'k3s.service' is in keep_running")
        );
        assert!(
            err(r#"{"version": 1, "modes": {"desktop": {"start": ["not a unit"]}}}"#)
                .contains("modes.desktop.start[0]")
        );
        assert!(
            err(r#"{"version": 1, "modes": {"compute": {"guards": {"vibes_ok": "hard"}}}}"#)
                .contains("modes.compute.guards.vibes_ok: unknown guard")
        );
        assert!(err(r#"{"version": 1, "modes": {"compute": {"slices": {"ai.slice": {"MemoryMax": "lots"}}}}}"#)
            .contains("modes.compute.slices.ai.slice.MemoryMax"));
        assert!(err(r#"{"version": 2}"#).contains("unsupported schema version 2"));
        assert!(err(r#"{}"#).contains("version: missing"));
        assert!(err(r#"{"version": 1,"#).contains("not valid JSON"));
        assert!(err(r#"{"version": 1, "surprise": true}"#).contains("surprise"));
    }
}
