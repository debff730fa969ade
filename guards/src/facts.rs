//! What the controller learned from systemd and logind before the guards
//! run: gathered once, over D-Bus, and shared by every guard.

use serde::Serialize;

/// One logind session, with properties kept as strings: newer logind
/// versions report classes and types that a strict enum would reject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
}

/// The load and activation state of one unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitState {
    pub unit: String,
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
}

/// One process of a unit, as systemd lists it (`GetUnitProcesses`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SliceProcess {
    pub pid: u32,
    /// The command line systemd reports for the process.
    pub command: String,
}

/// One unit running in the AI slice, with its processes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
        }
    }

    /// The gathered state of `unit`, if the controller gathered it.
    pub fn unit_state(&self, unit: &str) -> Option<&UnitState> {
        self.unit_states.iter().find(|u| u.unit == unit)
    }
}
