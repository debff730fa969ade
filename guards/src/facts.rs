//! What the controller learned from systemd and logind before the guards
//! run: gathered once, over D-Bus, and shared by every guard.

use serde::{Deserialize, Serialize};

/// One logind session, with properties kept as strings: newer logind
/// versions report classes and types that a strict enum would reject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub id: String,
    pub uid: u32,
    pub user: String,
    pub seat: String,
    #[serde(rename = "type")]
    pub session_type: String,
    pub class: String,
    pub state: String,
    pub leader: u32,
    pub idle_hint: bool,
    /// `IdleSinceHint`: when the idle hint last changed, in microseconds of
    /// CLOCK_REALTIME (0: never set).
    pub idle_since_usec: u64,
    /// `Timestamp`: when the session started, likewise.
    pub started_usec: u64,
    /// `Remote`: logged in over the network (ssh), not at a seat.
    pub remote: bool,
    /// The processes of the session's scope, gathered only for local user
    /// sessions on a seat that logind does not type graphical (a compositor
    /// started by greetd's auto-login, or from a TTY login).
    #[serde(skip)]
    pub processes: Vec<SliceProcess>,
}

/// Session types logind gives graphical sessions.
pub const GRAPHICAL_TYPES: [&str; 3] = ["wayland", "x11", "mir"];

impl SessionInfo {
    /// Why this is a user's graphical session, or `None`: logind types it
    /// wayland/x11/mir, or it is a local session on a seat (whatever its
    /// type) that runs one of `compositors`. Greeters and closing sessions
    /// are no user's.
    pub fn graphical_because(&self, compositors: &[String]) -> Option<String> {
        if self.class != "user" || self.state == "closing" {
            return None;
        }
        if GRAPHICAL_TYPES.contains(&self.session_type.as_str()) {
            return Some(format!("logind types it {}", self.session_type));
        }
        if self.seat.is_empty() || self.remote {
            return None;
        }
        self.processes.iter().find_map(|p| {
            let program = p.program();
            compositors.iter().any(|c| c == program).then(|| {
                format!(
                    "it runs the compositor {program} (pid {}) though logind types it {}",
                    p.pid,
                    if self.session_type.is_empty() {
                        "unspecified"
                    } else {
                        &self.session_type
                    }
                )
            })
        })
    }

    /// Whether this is a greeter on the display (the display manager's
    /// login screen), not closing.
    pub fn is_graphical_greeter(&self) -> bool {
        self.class == "greeter"
            && GRAPHICAL_TYPES.contains(&self.session_type.as_str())
            && self.state != "closing"
    }

    /// Whether the session's processes are worth gathering: only those can
    /// be graphical by what they run.
    pub fn needs_processes(&self) -> bool {
        self.class == "user"
            && !self.remote
            && !self.seat.is_empty()
            && !GRAPHICAL_TYPES.contains(&self.session_type.as_str())
    }
}

/// The load and activation state of one unit, under the name it was asked
/// by (`unit`) and the name systemd loaded it as (`id`): they differ for an
/// alias, such as `display-manager.service` for `greetd.service`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitState {
    pub unit: String,
    /// The unit's own name (its `Id`); equal to `unit` unless that is an alias.
    pub id: String,
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
}

impl UnitState {
    /// The unit in words: its name, and its own name where that differs
    /// (`display-manager.service (greetd.service)`).
    pub fn label(&self) -> String {
        if self.id.is_empty() || self.id == self.unit {
            self.unit.clone()
        } else {
            format!("{} ({})", self.unit, self.id)
        }
    }

    /// Not installed at all (as opposed to masked, or broken).
    pub fn is_not_found(&self) -> bool {
        self.load_state == "not-found"
    }
}

/// One process of a unit, as systemd lists it (`GetUnitProcesses`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliceProcess {
    pub pid: u32,
    /// The command line systemd reports for the process.
    pub command: String,
}

impl SliceProcess {
    /// The program's file name: the first word of the command line, without
    /// its directory (`/usr/bin/sway -d` is `sway`).
    pub fn program(&self) -> &str {
        let first = self.command.split_whitespace().next().unwrap_or("");
        first.rsplit('/').next().unwrap_or(first)
    }
}

/// One unit running in the AI slice, with its processes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliceUnit {
    pub unit: String,
    pub processes: Vec<SliceProcess>,
}

/// Everything gathered over D-Bus for one evaluation.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The mode being entered.
    pub target_mode: String,
    /// The units the plan would start, with their load state.
    pub units_to_start: Vec<UnitState>,
    /// logind sessions, or why logind could not be asked.
    pub sessions: Result<Vec<SessionInfo>, String>,
    /// Units (services and scopes) in the AI slice (`GuardSettings::ai_slice.slice`)
    /// with their processes, or why systemd could not be asked.
    pub slice_units: Result<Vec<SliceUnit>, String>,
    /// The current state of the units named by
    /// `GuardSettings::units_of_interest()` (the vLLM unit); a unit missing
    /// here was not gathered.
    pub unit_states: Vec<UnitState>,
    /// Where each capability runs, from the configuration as it is now.
    pub capability_placement: serde_json::Value,
    /// The Slurm jobs holding this node, or why Slurm could not be asked;
    /// `None` without the Slurm integration.
    pub slurm_jobs: Option<Result<Vec<ScheduledWork>, String>>,
    /// The GPU pods on this node, likewise for the Kubernetes integration.
    pub k3s_pods: Option<Result<Vec<ScheduledWork>, String>>,
}

/// Work a cluster scheduler placed on this node: a Slurm job (`id` its job
/// id, `owner` its user) or a pod (`id` namespace/name, `owner` its namespace).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledWork {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub state: String,
}

impl Facts {
    /// Facts for `target_mode` with nothing gathered yet.
    pub fn new(target_mode: impl Into<String>) -> Self {
        Self {
            target_mode: target_mode.into(),
            units_to_start: Vec::new(),
            sessions: Err("logind sessions were not gathered".into()),
            slice_units: Err("units in the AI slice were not gathered".into()),
            unit_states: Vec::new(),
            capability_placement: serde_json::Value::Null,
            slurm_jobs: None,
            k3s_pods: None,
        }
    }

    /// The gathered state of `unit`, if the controller gathered it.
    pub fn unit_state(&self, unit: &str) -> Option<&UnitState> {
        self.unit_states.iter().find(|u| u.unit == unit)
    }
}
