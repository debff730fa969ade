//! Who a process is, from `<procfs>/PID`: command name, real uid and user,
//! the systemd unit its cgroup belongs to, and the names it runs under
//! (for allow-list matching). Only asked for the few processes that matter.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::passwd::UserNames;

/// A process as evidence names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessIdentity {
    pub pid: u32,
    /// `/proc/PID/comm`, or `?` when the process is gone or hidden.
    pub comm: String,
    /// The real uid, when known.
    pub uid: Option<u32>,
    /// The user's name (or the uid as text, or `?`).
    pub user: String,
    /// The systemd unit from the cgroup path (`session-2.scope`, `obs.service`).
    pub unit: Option<String>,
    /// The file name of `/proc/PID/exe`, when readable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe_name: Option<String>,
    /// The file name of `argv[0]`, when readable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argv0_name: Option<String>,
}

impl ProcessIdentity {
    /// Whether any of the names this process runs under is in `allow`.
    pub fn is_allowed(&self, allow: &[String]) -> bool {
        let names = [
            Some(self.comm.as_str()),
            self.exe_name.as_deref(),
            self.argv0_name.as_deref(),
        ];
        allow.iter().any(|a| {
            names
                .iter()
                .flatten()
                .any(|n| n == a || truncated_comm_matches(n, a))
        })
    }
}

/// `comm` is cut at 15 bytes: `nvidia-device-p` stands for `nvidia-device-plugin`.
fn truncated_comm_matches(name: &str, allowed: &str) -> bool {
    name.len() == 15 && allowed.len() > 15 && allowed.starts_with(name)
}

/// Read what procfs says about `pid`. Missing pieces become `?`/`None`
/// rather than errors: the process may have exited meanwhile.
pub fn identify(procfs: &Path, users: &UserNames, pid: u32) -> ProcessIdentity {
    let dir = procfs.join(pid.to_string());
    let comm = command_name(procfs, pid).unwrap_or_else(|| "?".into());
    let uid = std::fs::read_to_string(dir.join("status"))
        .ok()
        .and_then(|s| real_uid(&s));
    let user = uid.map(|u| users.name(u)).unwrap_or_else(|| "?".into());
    let unit = std::fs::read_to_string(dir.join("cgroup"))
        .ok()
        .and_then(|s| unit_from_cgroup(&s));
    let exe_name = std::fs::read_link(dir.join("exe"))
        .ok()
        .and_then(|p| file_name_of(&p.to_string_lossy()));
    let argv0_name = std::fs::read(dir.join("cmdline")).ok().and_then(|bytes| {
        let first = bytes.split(|b| *b == 0).next()?;
        file_name_of(&String::from_utf8_lossy(first))
    });
    ProcessIdentity {
        pid,
        comm,
        uid,
        user,
        unit,
        exe_name,
        argv0_name,
    }
}

/// `/proc/PID/comm` without its newline.
pub fn command_name(procfs: &Path, pid: u32) -> Option<String> {
    std::fs::read_to_string(procfs.join(pid.to_string()).join("comm"))
        .ok()
        .map(|s| s.trim_end_matches('\n').to_string())
}

fn file_name_of(path: &str) -> Option<String> {
    let path = path.strip_suffix(" (deleted)").unwrap_or(path);
    let name = path.rsplit('/').next()?;
    (!name.is_empty()).then(|| name.to_string())
}

/// The real uid from `/proc/PID/status` (`Uid:\treal\teffective\tsaved\tfs`).
pub fn real_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|uid| uid.parse().ok())
}

const UNIT_SUFFIXES: [&str; 3] = [".service", ".scope", ".socket"];

/// The systemd unit a process belongs to, from `/proc/PID/cgroup`: the
/// deepest path component that names a service or scope, in the cgroup v2
/// line (`0::`) or else the v1 `name=systemd` hierarchy (hybrid systems keep
/// the real path there). A process directly in a slice reports the slice.
pub fn unit_from_cgroup(cgroup: &str) -> Option<String> {
    let unified = cgroup.lines().find_map(|l| l.strip_prefix("0::"));
    let named = cgroup
        .lines()
        .find_map(|l| l.split_once(":name=systemd:").map(|(_, p)| p));
    unified
        .and_then(unit_in_path)
        .or_else(|| named.and_then(unit_in_path))
}

fn unit_in_path(path: &str) -> Option<String> {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    components
        .iter()
        .rev()
        .find(|c| UNIT_SUFFIXES.iter().any(|s| c.ends_with(s)))
        .or_else(|| components.iter().rev().find(|c| c.ends_with(".slice")))
        .map(|c| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_is_the_deepest_service_or_scope_in_the_cgroup() {
        assert_eq!(
            unit_from_cgroup("0::/user.slice/user-1000.slice/session-2.scope\n").as_deref(),
            Some("session-2.scope")
        );
        assert_eq!(
            unit_from_cgroup("0::/system.slice/vllm.service/payload\n").as_deref(),
            Some("vllm.service")
        );
        assert_eq!(
            unit_from_cgroup("12:cpu:/\n1:name=systemd:/system.slice/obs.service\n0::/\n")
                .as_deref(),
            Some("obs.service"),
            "on a hybrid system the unified line says / and the v1 line names the unit"
        );
        assert_eq!(
            unit_from_cgroup("1:name=systemd:/ai.slice/train.service\n").as_deref(),
            Some("train.service")
        );
        assert_eq!(
            unit_from_cgroup("0::/ai.slice\n").as_deref(),
            Some("ai.slice")
        );
    }

    #[test]
    fn real_uid_is_the_first_uid_field() {
        assert_eq!(real_uid("Name:\tx\nUid:\t65534\t0\t0\t0\n"), Some(65534));
        assert_eq!(real_uid("Name:\tx\n"), None);
    }

    #[test]
    fn allow_list_matches_comm_truncated_to_15_bytes() {
        let p = ProcessIdentity {
            pid: 1,
            comm: "nvidia-device-p".into(),
            uid: Some(0),
            user: "root".into(),
            unit: None,
            exe_name: None,
            argv0_name: None,
        };
        assert!(p.is_allowed(&["nvidia-device-plugin".into()]));
        assert!(!p.is_allowed(&["obs".into()]));
    }
}
