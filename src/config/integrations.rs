//! The schedulers and hooks around the machine that a switch tells: Slurm
//! (the node drained when the machine leaves compute, resumed when it
//! enters it), Kubernetes (k3s: the node tainted and labelled, its GPU pods
//! evicted through the Eviction API) and `exec` steps, root-owned executables run with the
//! transition as JSON on stdin. Each becomes a step of the plan.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Problem;

use crate::mode::Mode;

/// The longest one integration command may be given.
pub const MAX_COMMAND_SECS: u64 = 600;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Integrations {
    /// The Slurm node this machine is; `null` (the default) leaves Slurm out.
    pub slurm: Option<SlurmIntegration>,
    /// The Kubernetes (k3s) node this machine is; `null` leaves it out.
    pub k3s: Option<K3sIntegration>,
    /// Executables run as the last steps of a switch into their modes.
    pub exec: Vec<ExecIntegration>,
}

/// What a scheduler that cannot be reached does to a switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unreachable {
    /// Named and recorded as a warning on the step; the switch goes on.
    Warn,
    /// The step fails and the switch rolls back.
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmIntegration {
    /// The node name in slurm.conf; `null`: this machine's host name.
    pub node: Option<String>,
    /// Where `sinfo`, `squeue`, `scontrol` and `scancel` are.
    pub bin_dir: PathBuf,
    /// How long one Slurm command may take (a stopped slurmctld makes them hang).
    pub command_timeout_secs: u64,
    pub when_unreachable: Unreachable,
}

impl Default for SlurmIntegration {
    fn default() -> Self {
        Self {
            node: None,
            bin_dir: PathBuf::from("/usr/bin"),
            command_timeout_secs: 10,
            when_unreachable: Unreachable::Warn,
        }
    }
}

/// The Kubernetes node, reached through the API server on plain HTTP on
/// loopback: `kubectl proxy` (run with the node's kubeconfig by
/// `mode-kube-proxy.service`) adds the credentials and TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct K3sIntegration {
    /// The node's name; `null`: this machine's host name (k3s's default).
    pub node: Option<String>,
    /// `http://host:port` of the API (through `kubectl proxy`).
    pub api: String,
    /// The extended resource that makes a pod a GPU pod.
    pub gpu_resource: String,
    /// A label selector (`app=trainer,tier!=platform`): when set, the pods
    /// it selects on the node are the GPU pods, whatever they request.
    pub pod_selector: Option<String>,
    /// How long evictions may be held back by PodDisruptionBudgets (429)
    /// and the evicted pods may take to go.
    pub eviction_timeout_secs: u64,
    /// Between two tries of an eviction a budget refused (kubectl: 5 s).
    pub eviction_retry_ms: u64,
    /// Bound of one API request.
    pub request_timeout_secs: u64,
    pub when_unreachable: Unreachable,
}

impl Default for K3sIntegration {
    fn default() -> Self {
        Self {
            node: None,
            api: "http://127.0.0.1:8001".into(),
            gpu_resource: "nvidia.com/gpu".into(),
            pod_selector: None,
            eviction_timeout_secs: 300,
            eviction_retry_ms: 5000,
            request_timeout_secs: 10,
            when_unreachable: Unreachable::Warn,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecIntegration {
    /// Names the step in plans and records.
    pub name: String,
    /// An absolute path to a root-owned executable.
    pub path: PathBuf,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default = "default_exec_timeout")]
    pub timeout_secs: u64,
    /// The modes a switch into which runs it; empty: every mode.
    #[serde(default)]
    pub modes: Vec<Mode>,
}

fn default_exec_timeout() -> u64 {
    30
}

impl ExecIntegration {
    pub fn runs_for(&self, to: Mode) -> bool {
        self.modes.is_empty() || self.modes.contains(&to)
    }
}

/// An equality-based label selector: terms `k=v`, `k==v`, `k!=v`, `k`,
/// `!k`, joined by commas (the API server evaluates it).
fn is_label_selector(s: &str) -> bool {
    let name = |t: &str| {
        !t.is_empty()
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
    };
    let value = |t: &str| {
        t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    !s.is_empty()
        && s.split(',').all(|term| {
            let term = term.trim();
            if let Some((k, v)) = term.split_once("!=") {
                name(k) && value(v)
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                name(k) && value(v)
            } else {
                name(term.strip_prefix('!').unwrap_or(term))
            }
        })
}

fn bounded(field: String, secs: u64) -> Result<(), Problem> {
    if (1..=MAX_COMMAND_SECS).contains(&secs) {
        Ok(())
    } else {
        Err((
            field,
            format!("{secs} is out of range: between 1 and {MAX_COMMAND_SECS} seconds"),
        ))
    }
}

impl Integrations {
    /// What serde cannot see, every problem naming its field.
    pub fn problems(&self, out: &mut Vec<Problem>) {
        if let Some(s) = &self.slurm {
            out.extend(
                bounded(
                    "integrations.slurm.command_timeout_secs".into(),
                    s.command_timeout_secs,
                )
                .err(),
            );
            if !s.bin_dir.is_absolute() {
                out.push((
                    "integrations.slurm.bin_dir".into(),
                    "must be an absolute path".into(),
                ));
            }
            if let Some(node) = &s.node {
                let ok = !node.is_empty()
                    && node
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
                if !ok {
                    out.push((
                        "integrations.slurm.node".into(),
                        format!("'{node}' is not a Slurm node name"),
                    ));
                }
            }
        }
        if let Some(k) = &self.k3s {
            let at = "integrations.k3s";
            if let Err(e) = mode_guards::probe::http::HttpUrl::parse(&k.api) {
                out.push((format!("{at}.api"), e.to_string()));
            }
            out.extend(
                bounded(
                    format!("{at}.eviction_timeout_secs"),
                    k.eviction_timeout_secs,
                )
                .err(),
            );
            out.extend(bounded(format!("{at}.request_timeout_secs"), k.request_timeout_secs).err());
            if !(100..=60_000).contains(&k.eviction_retry_ms) {
                out.push((
                    format!("{at}.eviction_retry_ms"),
                    format!(
                        "{} is out of range: between 100 and 60000",
                        k.eviction_retry_ms
                    ),
                ));
            }
            if let Some(sel) = &k.pod_selector {
                if !is_label_selector(sel) {
                    out.push((
                        format!("{at}.pod_selector"),
                        format!("'{sel}' is not an equality-based label selector (k=v, k!=v, k, !k, comma-joined)"),
                    ));
                }
            }
        }
        let mut names = Vec::new();
        for (i, e) in self.exec.iter().enumerate() {
            let at = format!("integrations.exec[{i}]");
            let ok = !e.name.is_empty()
                && e.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
            if !ok {
                out.push((
                    format!("{at}.name"),
                    format!("'{}' must be letters, digits, - and _", e.name),
                ));
            } else if names.contains(&e.name) {
                out.push((format!("{at}.name"), format!("'{}' is used twice", e.name)));
            }
            names.push(e.name.clone());
            if !e.path.is_absolute() {
                out.push((format!("{at}.path"), "must be an absolute path".into()));
            }
            out.extend(bounded(format!("{at}.timeout_secs"), e.timeout_secs).err());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selectors_are_told_from_other_text() {
        for ok in [
            "app=trainer",
            "app==x,tier!=platform",
            "gpu",
            "!spot",
            "k8s.io/app=a",
        ] {
            assert!(is_label_selector(ok), "{ok}");
        }
        for bad in ["", "app in (a,b)", "a=b c", "=x", "a=,", "a=b;c"] {
            assert!(!is_label_selector(bad), "{bad}");
        }
    }
}
